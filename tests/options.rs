//! rq's other job options (ttl, at_front, meta, unique, repeat), limits,
//! round robin, result history, and the deferred/stopped registries.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ms, secs, Fixture};
use dueq::{DequeueStrategy, Error, Handlers, JobError, Repeat, Status, Worker};

fn echo() -> Handlers {
    let mut h = Handlers::new();
    h.register("echo", |n: u32| -> Result<u32, JobError> { Ok(n) });
    h
}

#[test]
fn ttl_discards_a_job_that_waited_too_long_visibly() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let stale = q.job("echo", &1).ttl(secs(5)).enqueue().unwrap();
    let fresh = q.job("echo", &2).ttl(secs(60)).enqueue().unwrap();
    f.advance(secs(6));
    let stats = f.burst(&echo());
    assert_eq!(stats.expired, 1);
    assert_eq!(stats.succeeded, 1);
    assert_eq!(stale.status().unwrap(), Status::Canceled);
    assert!(stale.error().unwrap().unwrap().starts_with("expired"));
    assert_eq!(fresh.status().unwrap(), Status::Finished);
    assert_eq!(q.canceled().job_ids().unwrap(), vec![stale.id().to_owned()]);
}

#[test]
fn ttl_also_discards_deferred_jobs_and_their_dependents() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q.enqueue_in(secs(100), "echo", &1).unwrap();
    let child = q
        .job("echo", &2)
        .depends_on(&parent)
        .ttl(secs(5))
        .enqueue()
        .unwrap();
    let grandchild = q.job("echo", &3).depends_on(&child).enqueue().unwrap();
    f.advance(secs(6));
    f.burst(&echo()); // the worker's expiry pass
    assert_eq!(child.status().unwrap(), Status::Canceled);
    assert!(child.error().unwrap().unwrap().starts_with("expired"));
    assert_eq!(grandchild.status().unwrap(), Status::Canceled);
    assert!(grandchild.error().unwrap().unwrap().contains("expired"));
}

#[test]
fn at_front_jumps_the_queue_latest_first() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let a = q.enqueue("echo", &1).unwrap();
    let b = q.enqueue("echo", &2).unwrap();
    let front1 = q.job("echo", &3).at_front().enqueue().unwrap();
    let front2 = q.job("echo", &4).at_front().enqueue().unwrap();
    assert_eq!(
        q.job_ids().unwrap(),
        vec![front2.id(), front1.id(), a.id(), b.id()]
    );
    assert!(front2.info().unwrap().due_at.is_some());
}

#[test]
fn meta_is_set_at_enqueue_and_updated_by_key_from_the_run() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let mut h = Handlers::new();
    h.register_with_context("work", |ctx, _: ()| -> Result<(), JobError> {
        ctx.set_meta("progress", &50)?;
        ctx.set_meta("stage", &"upload")?;
        ctx.set_meta("progress", &100)?;
        Ok(())
    });
    let job = q.job("work", &()).meta("owner", &"ana").enqueue().unwrap();
    let before: serde_json::Value = job.meta().unwrap();
    assert_eq!(before, serde_json::json!({"owner": "ana"}));
    f.burst(&h);
    let after: serde_json::Value = job.meta().unwrap();
    assert_eq!(
        after,
        serde_json::json!({"owner": "ana", "progress": 100, "stage": "upload"})
    );
    assert!(job
        .info()
        .unwrap()
        .meta_json
        .contains("\"stage\":\"upload\""));
}

#[test]
fn unique_needs_an_id_and_rejects_existing_ids_for_every_enqueue_form() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let err = q.job("echo", &1).unique().enqueue().unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { what: "unique", .. }),
        "{err:?}"
    );
    q.job("echo", &1).id("only").unique().enqueue().unwrap();
    for attempt in [
        q.job("echo", &2).id("only").unique().enqueue(),
        q.job("echo", &2).id("only").unique().enqueue_in(secs(10)),
        q.job("echo", &2)
            .id("only")
            .unique()
            .enqueue_at(common::t0() + chrono::Duration::seconds(60)),
    ] {
        assert!(
            matches!(attempt, Err(Error::DuplicateJobId { .. })),
            "{attempt:?}"
        );
    }
    let err = q
        .enqueue_many([
            q.job("echo", &3).id("new"),
            q.job("echo", &4).id("only").unique(),
        ])
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateJobId { .. }));
    assert!(
        f.store.job("new").unwrap().is_none(),
        "the batch is all or nothing"
    );
    assert_eq!(
        f.store
            .job("only")
            .unwrap()
            .unwrap()
            .info()
            .unwrap()
            .args_json,
        "1"
    );
}

#[test]
fn repeat_reruns_after_each_success_with_the_stated_interval_order() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let job = q
        .job("echo", &7)
        .repeat(Repeat::times(3).intervals([secs(10), secs(30)]))
        .enqueue()
        .unwrap();
    let mut waits = Vec::new();
    for _ in 0..4 {
        let before = job.info().unwrap().due_at.unwrap();
        assert_eq!(f.burst(&echo()).succeeded, 1);
        let info = job.info().unwrap();
        if info.status == Status::Finished {
            break;
        }
        assert_eq!(info.status, Status::Scheduled);
        let due = info.due_at.unwrap();
        waits.push((due - info.ended_at.unwrap()).num_seconds());
        assert!(due > before);
        f.clock.set(due);
    }
    // Left to right, the last interval repeating.
    assert_eq!(waits, [10, 30, 30]);
    let info = job.info().unwrap();
    assert_eq!(info.status, Status::Finished);
    assert_eq!(info.repeats_done, 3);
    assert_eq!(info.attempts_log.len(), 4);
    assert!(info
        .attempts_log
        .iter()
        .all(|a| a.result_json.as_deref() == Some("7") && a.thread.is_some()));
}

#[test]
fn a_repetition_gets_the_whole_retry_policy() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let mut h = Handlers::new();
    // Fails on odd attempts: 1 fails, 2 succeeds, 3 fails, 4 succeeds.
    h.register_with_context("odd", |ctx, _: ()| -> Result<u32, JobError> {
        if ctx.attempt() % 2 == 1 {
            return Err(JobError::new("odd"));
        }
        Ok(ctx.attempt())
    });
    let job = q
        .job("odd", &())
        .retry(dueq::Retry::max(1))
        .repeat(Repeat::times(1))
        .enqueue()
        .unwrap();
    f.burst(&h);
    let info = job.info().unwrap();
    assert_eq!(info.status, Status::Finished, "{:?}", info.error);
    assert_eq!(info.attempts, 4);
    assert_eq!(job.result::<u32>().unwrap(), Some(4));
}

#[test]
fn a_concurrency_limit_key_keeps_runs_apart_and_order_kept() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let running = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut h = Handlers::new();
    let (r, p, o) = (running.clone(), peak.clone(), order.clone());
    h.register("api", move |n: u32| -> Result<(), JobError> {
        let now = r.fetch_add(1, Ordering::SeqCst) + 1;
        p.fetch_max(now, Ordering::SeqCst);
        o.lock().unwrap().push(n);
        std::thread::sleep(ms(20));
        r.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    });
    for n in 0..6 {
        q.job("api", &n).limit_key("api", 1).enqueue().unwrap();
    }
    let stats = Worker::builder(&f.store, h).threads(4).burst().unwrap();
    assert_eq!(stats.succeeded, 6);
    assert_eq!(peak.load(Ordering::SeqCst), 1, "the limit of 1 held");
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5], "in order");
}

#[test]
fn a_worker_concurrency_limit_applies_to_a_group() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let running = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let mut h = Handlers::new();
    let (r, p) = (running.clone(), peak.clone());
    h.register("api", move |_: u32| -> Result<(), JobError> {
        let now = r.fetch_add(1, Ordering::SeqCst) + 1;
        p.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(ms(20));
        r.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    });
    for n in 0..8 {
        q.job("api", &n).limit_group("api").enqueue().unwrap();
    }
    let stats = Worker::builder(&f.store, h)
        .threads(4)
        .concurrency_limit("api", 2)
        .burst()
        .unwrap();
    assert_eq!(stats.succeeded, 8);
    assert_eq!(peak.load(Ordering::SeqCst), 2);
}

#[test]
fn a_rate_limit_delays_jobs_to_the_next_free_slot() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let jobs: Vec<_> = (0..3)
        .map(|n| q.job("echo", &n).limit_group("mail").enqueue().unwrap())
        .collect();
    let worker = || {
        Worker::builder(&f.store, echo())
            .threads(1)
            .rate_limit("mail", 2, secs(10))
    };
    let stats = worker().burst().unwrap();
    assert_eq!(stats.succeeded, 2, "two starts per 10 s");
    let third = jobs[2].info().unwrap();
    assert_eq!(third.status, Status::Scheduled, "delayed, not failed");
    assert_eq!(
        third.due_at.unwrap(),
        common::t0() + chrono::Duration::seconds(10)
    );
    f.advance(secs(10));
    assert_eq!(worker().burst().unwrap().succeeded, 1);
    assert_eq!(jobs[2].status().unwrap(), Status::Finished);
}

#[test]
fn a_rate_limited_job_waits_for_the_oldest_start_to_leave_the_window() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let worker = || {
        Worker::builder(&f.store, echo())
            .threads(1)
            .rate_limit("mail", 2, secs(10))
    };
    q.job("echo", &0).limit_group("mail").enqueue().unwrap();
    assert_eq!(worker().burst().unwrap().succeeded, 1, "starts at t0");
    f.advance(secs(4));
    q.job("echo", &1).limit_group("mail").enqueue().unwrap();
    let third = q.job("echo", &2).limit_group("mail").enqueue().unwrap();
    assert_eq!(worker().burst().unwrap().succeeded, 1, "starts at t0 + 4 s");
    // The window holds the starts at t0 and t0 + 4 s: a slot frees when the
    // oldest leaves it, at t0 + 10 s (not when the newest does, t0 + 14 s).
    assert_eq!(
        third.info().unwrap().due_at.unwrap(),
        common::t0() + chrono::Duration::seconds(10)
    );
    f.advance(secs(6));
    assert_eq!(worker().burst().unwrap().succeeded, 1);
    assert_eq!(third.status().unwrap(), Status::Finished);
}

#[test]
fn zero_limits_are_clear_errors() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let err = q.job("echo", &1).limit_key("api", 0).enqueue().unwrap_err();
    assert!(err.to_string().contains("is 0"), "{err}");
    let err = Worker::builder(&f.store, echo())
        .concurrency_limit("api", 0)
        .start()
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidArgument {
            what: "concurrency_limit",
            ..
        }
    ));
    let err = Worker::builder(&f.store, echo())
        .rate_limit("api", 1, Duration::ZERO)
        .start()
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidArgument {
            what: "rate_limit",
            ..
        }
    ));
    assert_eq!(q.count().unwrap(), 0);
}

#[test]
fn round_robin_alternates_queues_where_priority_drains_the_first() {
    let order = |strategy| {
        let f = Fixture::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut h = Handlers::new();
        let s = seen.clone();
        h.register("note", move |tag: String| -> Result<(), JobError> {
            s.lock().unwrap().push(tag);
            Ok(())
        });
        for i in 0..3 {
            f.store
                .queue("a")
                .enqueue("note", &format!("a{i}"))
                .unwrap();
            f.store
                .queue("b")
                .enqueue("note", &format!("b{i}"))
                .unwrap();
        }
        Worker::builder(&f.store, h)
            .queues(["a", "b"])
            .threads(1)
            .dequeue_strategy(strategy)
            .burst()
            .unwrap();
        let seen = seen.lock().unwrap().clone();
        seen
    };
    assert_eq!(
        order(DequeueStrategy::Priority),
        ["a0", "a1", "a2", "b0", "b1", "b2"]
    );
    let rr = order(DequeueStrategy::RoundRobin);
    let firsts: Vec<char> = rr.iter().map(|t| t.chars().next().unwrap()).collect();
    assert_eq!(firsts, ['a', 'b', 'a', 'b', 'a', 'b'], "{rr:?}");
}

#[test]
fn result_history_keeps_the_last_ten_attempts_with_values_and_threads() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let mut h = Handlers::new();
    h.register_with_context("n", |ctx, _: ()| -> Result<u32, JobError> {
        if ctx.attempt() % 3 == 0 {
            return Err(JobError::new(format!("no {}", ctx.attempt())));
        }
        Ok(ctx.attempt())
    });
    let job = q
        .job("n", &())
        .retry(dueq::Retry::max(100))
        .repeat(Repeat::times(11))
        .enqueue()
        .unwrap();
    f.burst(&h);
    let info = job.info().unwrap();
    assert_eq!(info.status, Status::Finished);
    assert_eq!(info.attempts_log.len(), 10, "the last ten");
    let last = info.attempts_log.last().unwrap();
    assert_eq!(last.number, info.attempts);
    for a in &info.attempts_log {
        if a.number % 3 == 0 {
            assert_eq!(
                a.error.as_deref(),
                Some(format!("no {}", a.number).as_str())
            );
            assert!(a.result_json.is_none());
        } else {
            assert_eq!(
                a.result_json.as_deref(),
                Some(a.number.to_string().as_str())
            );
        }
        assert!(a.thread.as_deref().unwrap().starts_with("dueq-worker-"));
    }
}

#[test]
fn registries_remove_jobs_of_their_own_state_only() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q.enqueue_in(secs(10), "echo", &1).unwrap();
    let child = q.job("echo", &2).depends_on(&parent).enqueue().unwrap();
    assert!(matches!(
        q.failed().remove(child.id()),
        Err(Error::NoSuchJob { .. })
    ));
    q.deferred().remove(child.id()).unwrap();
    assert!(f.store.job(child.id()).unwrap().is_none());
    q.scheduled().remove(parent.id()).unwrap();
    assert_eq!(q.scheduled().count().unwrap(), 0);
}

#[test]
fn an_expired_job_does_not_use_up_a_rate_slot() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let stale = q
        .job("echo", &1)
        .limit_group("api")
        .ttl(secs(1))
        .enqueue()
        .unwrap();
    let live = q.job("echo", &2).limit_group("api").enqueue().unwrap();
    f.advance(secs(2));
    let stats = Worker::builder(&f.store, echo())
        .threads(1)
        .rate_limit("api", 1, secs(60))
        .burst()
        .unwrap();
    assert_eq!((stats.expired, stats.succeeded), (1, 1));
    assert_eq!(stale.status().unwrap(), Status::Canceled);
    assert_eq!(
        live.status().unwrap(),
        Status::Finished,
        "not delayed a minute"
    );
}

/// A store on the real clock (the dispatcher sleeps with a timeout there,
/// which is where a busy loop would show).
fn real_store() -> (tempfile::TempDir, dueq::Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = dueq::Store::open(dir.path().join("jobs.dueq")).unwrap();
    (dir, store)
}

/// How many times the dispatcher woke up over `over` of real time.
fn rounds_over(worker: &Worker, over: Duration) -> u64 {
    let before = worker.stats().rounds;
    std::thread::sleep(over);
    worker.stats().rounds - before
}

/// Regression: while a concurrency limit held due jobs back, the
/// dispatcher woke for their (past) due time again and again: thousands of
/// transactions a second while nothing could change. It must sleep until a
/// run of the key ends.
#[test]
fn regression_jobs_held_back_by_a_concurrency_limit_do_not_busy_loop_the_dispatcher() {
    let (_dir, store) = real_store();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<u32>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let release_rx = Mutex::new(release_rx);
    let mut h = Handlers::new();
    h.register("hold", move |n: u32| -> Result<(), JobError> {
        started_tx.lock().unwrap().send(n).unwrap();
        release_rx.lock().unwrap().recv_timeout(secs(30)).unwrap();
        Ok(())
    });
    let q = store.queue("default");
    let jobs: Vec<_> = (0..3)
        .map(|n| q.job("hold", &n).limit_key("k", 1).enqueue().unwrap())
        .collect();
    let worker = Worker::builder(&store, h).threads(4).start().unwrap();
    assert_eq!(started_rx.recv_timeout(secs(10)).unwrap(), 0);
    // One job runs, two wait for the key; four runners are free.
    let rounds = rounds_over(&worker, ms(200));
    assert!(
        rounds < 20,
        "{rounds} dispatcher rounds in 200 ms while held back"
    );
    assert_eq!(jobs[1].status().unwrap(), Status::Queued);
    // The end of the run wakes the dispatcher for the next one, in order.
    for n in 1..3 {
        release_tx.send(()).unwrap();
        assert_eq!(started_rx.recv_timeout(secs(10)).unwrap(), n);
        let rounds = rounds_over(&worker, ms(100));
        assert!(rounds < 20, "{rounds} dispatcher rounds in 100 ms");
    }
    release_tx.send(()).unwrap();
    for job in &jobs {
        assert_eq!(job.wait(secs(10)).unwrap(), Status::Finished);
    }
    let stats = worker.shutdown(secs(10)).unwrap();
    assert_eq!(stats.succeeded, 3);
}

/// A job held back by a concurrency limit still expires when its `ttl`
/// runs out, although nothing else wakes the dispatcher then.
#[test]
fn a_job_held_back_by_a_limit_is_still_discarded_when_its_ttl_runs_out() {
    let (_dir, store) = real_store();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let release_rx = Mutex::new(release_rx);
    let mut h = Handlers::new();
    h.register("hold", move |_: ()| -> Result<(), JobError> {
        started_tx.lock().unwrap().send(()).unwrap();
        release_rx.lock().unwrap().recv_timeout(secs(30)).unwrap();
        Ok(())
    });
    let q = store.queue("default");
    let first = q.job("hold", &()).limit_key("k", 1).enqueue().unwrap();
    let worker = Worker::builder(&store, h).threads(2).start().unwrap();
    started_rx.recv_timeout(secs(10)).unwrap();
    let held = q
        .job("hold", &())
        .limit_key("k", 1)
        .ttl(ms(300))
        .enqueue()
        .unwrap();
    assert_eq!(held.wait(secs(10)).unwrap(), Status::Canceled);
    assert_eq!(first.status().unwrap(), Status::Started);
    release_tx.send(()).unwrap();
    assert_eq!(first.wait(secs(10)).unwrap(), Status::Finished);
    worker.shutdown(secs(10)).unwrap();
}

/// A job over a rate limit waits for its slot asleep: the dispatcher wakes
/// at the slot, not before.
#[test]
fn a_job_waiting_for_a_rate_limit_slot_does_not_busy_loop_the_dispatcher() {
    let (_dir, store) = real_store();
    let mut h = Handlers::new();
    h.register("echo", |n: u32| -> Result<u32, JobError> { Ok(n) });
    let q = store.queue("default");
    let first = q.job("echo", &0).limit_group("mail").enqueue().unwrap();
    let second = q.job("echo", &1).limit_group("mail").enqueue().unwrap();
    let worker = Worker::builder(&store, h)
        .threads(2)
        .rate_limit("mail", 1, secs(60))
        .start()
        .unwrap();
    assert_eq!(first.wait(secs(10)).unwrap(), Status::Finished);
    let rounds = rounds_over(&worker, ms(200));
    assert!(rounds < 20, "{rounds} dispatcher rounds in 200 ms");
    assert_eq!(second.status().unwrap(), Status::Scheduled);
    worker.shutdown(secs(10)).unwrap();
}
