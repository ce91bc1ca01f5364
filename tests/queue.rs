//! Queues, enqueueing, job lookup, registries and the store's life cycle:
//! what a user sees without (or around) a worker.

mod common;

use std::collections::HashSet;
use std::sync::mpsc;
use std::time::Duration;

use common::{chrono, copy_dir, ms, open_manual, runs, secs, t0, Fixture};
use dueq::{Durability, Error, Handlers, JobError, ManualClock, Status, Store};
use proptest::prelude::*;

/// "ok" returns its argument; "fail" always fails.
fn handlers() -> Handlers {
    let mut h = Handlers::new();
    h.register("ok", |n: i64| -> Result<i64, JobError> { Ok(n) });
    h.register("fail", |_: i64| -> Result<(), JobError> {
        Err(JobError::new("always fails"))
    });
    h
}

fn ids(jobs: &[dueq::Job]) -> Vec<String> {
    jobs.iter().map(|j| j.id().to_owned()).collect()
}

// ------------------------------------------------------------------ opening

#[test]
fn open_creates_a_store_and_builder_options_apply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new").join("jobs.dueq");
    {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.path(), path.as_path());
        assert!(
            path.join("db").exists(),
            "the store's sled files are created"
        );
        store.queue("default").enqueue("ok", &1).unwrap();
    }
    let store = Store::builder(&path)
        .durability(Durability::Buffered)
        .cache_capacity(1 << 20)
        .max_payload(1 << 10)
        .open()
        .unwrap();
    assert_eq!(store.queue("default").count().unwrap(), 1);
    assert!(store.size_on_disk().unwrap() > 0);
    assert_eq!(store.recovered_at_open(), 0);
}

#[test]
fn store_now_is_the_injected_clock() {
    let f = Fixture::new();
    assert_eq!(f.store.now(), t0());
    f.advance(secs(5));
    assert_eq!(f.store.now(), t0() + chrono(secs(5)));
}

// ---------------------------------------------------------------- enqueueing

#[test]
fn enqueue_is_queued_with_every_info_field() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    assert_eq!(q.name(), "default");
    let job = q.enqueue("ok", &(1, "two", [3.5])).unwrap();

    assert_eq!(job.status().unwrap(), Status::Queued);
    let info = job.info().unwrap();
    assert_eq!(info.id, job.id());
    assert_eq!(info.id.len(), 36, "a default id is a uuid: {}", info.id);
    assert_eq!(info.queue, "default");
    assert_eq!(info.handler, "ok");
    assert_eq!(info.args_json, r#"[1,"two",[3.5]]"#);
    assert_eq!(info.description, None);
    assert_eq!(info.status, Status::Queued);
    assert_eq!(info.attempts, 0);
    assert_eq!(info.retry, None);
    assert_eq!(info.enqueued_at, t0());
    assert_eq!(info.due_at, Some(t0()));
    assert_eq!(info.started_at, None);
    assert_eq!(info.ended_at, None);
    assert_eq!(info.error, None);
    assert_eq!(info.result_json, None);
    assert!(info.attempts_log.is_empty());
    assert_eq!(job.result::<i64>().unwrap(), None);
    assert_eq!(job.error().unwrap(), None);

    assert_eq!(q.count().unwrap(), 1);
    assert_eq!(q.job_ids().unwrap(), vec![job.id().to_owned()]);
    assert_eq!(q.scheduled().count().unwrap(), 0);
}

#[test]
fn default_ids_are_unique() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let jobs = q.enqueue_many((0..50).map(|i| q.job("ok", &i))).unwrap();
    let unique: HashSet<String> = ids(&jobs).into_iter().collect();
    assert_eq!(unique.len(), 50);
}

#[test]
fn enqueue_in_is_scheduled_until_the_clock_passes_its_due_time() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let job = q.enqueue_in(secs(10), "ok", &1).unwrap();

    assert_eq!(job.status().unwrap(), Status::Scheduled);
    assert_eq!(job.info().unwrap().due_at, Some(t0() + chrono(secs(10))));
    assert_eq!(q.count().unwrap(), 0);
    assert!(q.job_ids().unwrap().is_empty());
    assert_eq!(q.scheduled().job_ids().unwrap(), vec![job.id().to_owned()]);

    f.advance(secs(10) - ms(1));
    assert_eq!(job.status().unwrap(), Status::Scheduled);
    assert_eq!(q.count().unwrap(), 0);

    // No worker, no scheduler: time alone makes it queued.
    f.advance(ms(1));
    assert_eq!(job.status().unwrap(), Status::Queued);
    assert_eq!(job.info().unwrap().status, Status::Queued);
    assert_eq!(q.count().unwrap(), 1);
    assert_eq!(q.job_ids().unwrap(), vec![job.id().to_owned()]);
    assert_eq!(q.scheduled().count().unwrap(), 0);
}

#[test]
fn enqueue_at_a_future_time_is_scheduled_and_a_past_time_means_now() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let later = q.enqueue_at(t0() + chrono(secs(3600)), "ok", &1).unwrap();
    let past = q.enqueue_at(t0() - chrono(secs(3600)), "ok", &2).unwrap();

    assert_eq!(later.status().unwrap(), Status::Scheduled);
    assert_eq!(
        later.info().unwrap().due_at,
        Some(t0() + chrono(secs(3600)))
    );
    assert_eq!(past.status().unwrap(), Status::Queued);
    assert_eq!(past.info().unwrap().due_at, Some(t0()));

    f.advance(secs(3600));
    assert_eq!(later.status().unwrap(), Status::Queued);
    assert_eq!(
        q.job_ids().unwrap(),
        vec![past.id().to_owned(), later.id().to_owned()]
    );
}

#[test]
fn scheduled_jobs_do_not_run_early_and_run_once_due() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let job = q.enqueue_in(secs(60), "ok", &7).unwrap();

    assert_eq!(runs(&f.burst(&handlers())), 0);
    f.advance(secs(59));
    assert_eq!(runs(&f.burst(&handlers())), 0);
    assert_eq!(job.status().unwrap(), Status::Scheduled);
    f.advance(secs(1));
    let stats = f.burst(&handlers());
    assert_eq!(stats.succeeded, 1);
    assert_eq!(job.status().unwrap(), Status::Finished);
    assert_eq!(job.result::<i64>().unwrap(), Some(7));
}

#[test]
fn job_builder_sets_id_description_and_ttls() {
    let f = Fixture::new();
    let q = f.store.queue("reports");
    let job = q
        .job("ok", &42)
        .id("report-2026_12")
        .description("the December report")
        .result_ttl(secs(30))
        .failure_ttl(secs(60))
        .enqueue()
        .unwrap();
    assert_eq!(job.id(), "report-2026_12");
    let info = f
        .store
        .job("report-2026_12")
        .unwrap()
        .unwrap()
        .info()
        .unwrap();
    assert_eq!(info.id, "report-2026_12");
    assert_eq!(info.queue, "reports");
    assert_eq!(info.description.as_deref(), Some("the December report"));
    assert_eq!(info.args_json, "42");

    let in_job = q.job("ok", &1).id("later").enqueue_in(secs(5)).unwrap();
    assert_eq!(in_job.id(), "later");
    assert_eq!(in_job.status().unwrap(), Status::Scheduled);
    assert_eq!(in_job.info().unwrap().due_at, Some(t0() + chrono(secs(5))));

    let at_job = q
        .job("ok", &1)
        .id("at")
        .enqueue_at(t0() + chrono(secs(7)))
        .unwrap();
    assert_eq!(at_job.id(), "at");
    assert_eq!(at_job.info().unwrap().due_at, Some(t0() + chrono(secs(7))));
}

#[test]
fn info_reports_every_option_a_job_was_enqueued_with() {
    use dueq::{Dependency, Repeat, Retry};
    let f = Fixture::new();
    let q = f.store.queue("default");
    q.job("ok", &1).id("strict").enqueue_in(secs(60)).unwrap();
    q.job("ok", &2).id("lenient").enqueue_in(secs(60)).unwrap();
    let retry = Retry::max(4)
        .exponential(secs(2), 3.0, secs(60))
        .jitter(0.25);
    let job = q
        .job("ok", &3)
        .id("full")
        .depends_on("strict")
        .depends_on(Dependency::on("lenient").allow_failure())
        .on_success("notify")
        .on_failure("alert")
        .on_stopped("cleanup")
        .repeat(Repeat::times(3).intervals([secs(10), secs(60)]))
        .limit_key("api", 2)
        .result_ttl(secs(30))
        .failure_ttl(secs(90))
        .at_front()
        .retry(retry.clone())
        .enqueue()
        .unwrap();

    let info = job.info().unwrap();
    assert_eq!(info.status, Status::Deferred);
    assert_eq!(info.waiting_on, ["strict", "lenient"]);
    assert_eq!(info.waiting_on_allow_failure, ["lenient"]);
    assert_eq!(info.on_success.as_deref(), Some("notify"));
    assert_eq!(info.on_failure.as_deref(), Some("alert"));
    assert_eq!(info.on_stopped.as_deref(), Some("cleanup"));
    let repeat = info.repeat.as_ref().expect("the repeat policy");
    assert_eq!(repeat.count(), 3);
    assert_eq!(
        (1..=3).map(|k| repeat.wait(k)).collect::<Vec<_>>(),
        [secs(10), secs(60), secs(60)]
    );
    assert_eq!(info.repeats_done, 0);
    assert_eq!(info.limit_key.as_deref(), Some("api"));
    assert_eq!(info.limit_max, Some(2));
    assert_eq!(info.result_ttl, Some(secs(30)));
    assert_eq!(info.failure_ttl, Some(secs(90)));
    assert!(info.at_front);
    let stored = info.retry.as_ref().expect("the retry policy");
    assert_eq!(stored, &retry);
    assert_eq!(stored.max_retries(), 4);
    assert_eq!(stored.backoff_kind(), "exponential");
    assert_eq!(stored.exponential_backoff(), Some((secs(2), 3.0, secs(60))));
    assert_eq!(stored.interval_list(), None);
    assert_eq!(stored.linear_backoff(), None);
    assert_eq!(stored.jitter_fraction(), 0.25);

    // A limit group has a key but no limit of its own; `Duration::MAX`
    // ttls read as "forever"; a linear backoff reads back its parameters.
    let grouped = q
        .job("ok", &4)
        .limit_group("smtp")
        .result_ttl(Duration::MAX)
        .failure_ttl(Duration::MAX)
        .retry(Retry::max(2).linear(secs(5), secs(5), secs(20)))
        .enqueue()
        .unwrap()
        .info()
        .unwrap();
    assert_eq!(grouped.limit_key.as_deref(), Some("smtp"));
    assert_eq!(grouped.limit_max, None);
    assert_eq!((grouped.result_ttl, grouped.failure_ttl), (None, None));
    let linear = grouped.retry.as_ref().unwrap();
    assert_eq!(linear.backoff_kind(), "linear");
    assert_eq!(linear.linear_backoff(), Some((secs(5), secs(5), secs(20))));
    assert_eq!(linear.jitter_fraction(), 0.0);

    // Defaults: no callbacks, repeat, limit or parents; rq's ttls.
    let plain = q.enqueue("ok", &5).unwrap().info().unwrap();
    assert_eq!(
        (&plain.on_success, &plain.on_failure, &plain.on_stopped),
        (&None, &None, &None)
    );
    assert_eq!(plain.repeat, None);
    assert_eq!((&plain.limit_key, plain.limit_max), (&None, None));
    assert_eq!(plain.result_ttl, Some(dueq::DEFAULT_RESULT_TTL));
    assert_eq!(plain.failure_ttl, Some(dueq::DEFAULT_FAILURE_TTL));
    assert!(!plain.at_front);
    assert!(plain.waiting_on_allow_failure.is_empty());
    let rq = Retry::max(3).intervals([10, 30]);
    assert_eq!(rq.backoff_kind(), "intervals");
    assert_eq!(rq.interval_list(), Some(vec![secs(10), secs(30)]));
    assert_eq!(rq.exponential_backoff(), None);

    // The snapshot is read from the stored record, not from the builder.
    assert_eq!(f.store.job("full").unwrap().unwrap().info().unwrap(), info);
}

#[test]
fn result_ttl_and_failure_ttl_decide_when_jobs_expire() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let fin = q.job("ok", &1).result_ttl(secs(30)).enqueue().unwrap();
    let failed = q.job("fail", &1).failure_ttl(secs(60)).enqueue().unwrap();
    let keep = q.job("ok", &2).result_ttl(Duration::MAX).enqueue().unwrap();
    f.burst(&handlers());
    assert_eq!(q.finished().count().unwrap(), 2);
    assert_eq!(q.failed().count().unwrap(), 1);

    f.advance(secs(30) - ms(1));
    f.burst(&handlers());
    assert!(f.store.job(fin.id()).unwrap().is_some());

    f.advance(ms(1));
    f.burst(&handlers());
    assert!(
        f.store.job(fin.id()).unwrap().is_none(),
        "result_ttl passed"
    );
    assert!(f.store.job(failed.id()).unwrap().is_some());
    assert_eq!(q.finished().job_ids().unwrap(), vec![keep.id().to_owned()]);

    f.advance(secs(30));
    f.burst(&handlers());
    assert!(
        f.store.job(failed.id()).unwrap().is_none(),
        "failure_ttl passed"
    );
    assert_eq!(q.failed().count().unwrap(), 0);

    // Duration::MAX keeps it forever.
    f.advance(secs(10 * 365 * 24 * 3600));
    f.burst(&handlers());
    assert_eq!(keep.status().unwrap(), Status::Finished);
}

#[test]
fn expired_jobs_are_removed_at_open_too() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let job = q.job("ok", &1).result_ttl(secs(10)).enqueue().unwrap();
    f.burst(&handlers());
    assert_eq!(job.status().unwrap(), Status::Finished);
    let id = job.id().to_owned();
    let Fixture {
        dir: _dir,
        path,
        clock,
        store,
    } = f;
    drop((job, q, store));
    clock.advance(secs(10));
    let store = open_manual(&path, &clock);
    assert!(store.job(&id).unwrap().is_none());
    assert_eq!(store.queue("default").finished().count().unwrap(), 0);
}

// -------------------------------------------------------------- enqueue_many

#[test]
fn enqueue_many_keeps_fifo_order_for_jobs_due_at_the_same_instant() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let jobs = q.enqueue_many((0..100).map(|i| q.job("ok", &i))).unwrap();
    assert_eq!(jobs.len(), 100);
    assert_eq!(q.job_ids().unwrap(), ids(&jobs));
    assert_eq!(q.count().unwrap(), 100);

    // Single enqueues at the same instant, after the batch, come after it.
    let more: Vec<dueq::Job> = (0..10).map(|i| q.enqueue("ok", &i).unwrap()).collect();
    let mut expected = ids(&jobs);
    expected.extend(ids(&more));
    assert_eq!(q.job_ids().unwrap(), expected);

    // And they run in that order.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut h = Handlers::new();
    let s = seen.clone();
    h.register_with_context("ok", move |ctx, _: i64| -> Result<(), JobError> {
        s.lock().unwrap().push(ctx.job_id().to_owned());
        Ok(())
    });
    f.burst(&h);
    assert_eq!(*seen.lock().unwrap(), expected);
}

#[test]
fn enqueue_many_orders_by_due_time_then_fifo() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let jobs = q
        .enqueue_many([
            q.job("ok", &0).id("c2").delay(secs(2)),
            q.job("ok", &0).id("b1").delay(secs(1)),
            q.job("ok", &0).id("a0"),
            q.job("ok", &0).id("d1").at(t0() + chrono(secs(1))),
            q.job("ok", &0).id("e0"),
        ])
        .unwrap();
    assert_eq!(ids(&jobs), ["c2", "b1", "a0", "d1", "e0"]);
    assert_eq!(q.job_ids().unwrap(), ["a0", "e0"]);
    assert_eq!(q.scheduled().job_ids().unwrap(), ["b1", "d1", "c2"]);
    f.advance(secs(2));
    assert_eq!(q.job_ids().unwrap(), ["a0", "e0", "b1", "d1", "c2"]);
    assert_eq!(q.scheduled().count().unwrap(), 0);
}

#[test]
fn enqueue_many_may_target_several_queues() {
    let f = Fixture::new();
    let a = f.store.queue("a");
    let b = f.store.queue("b");
    let jobs = a
        .enqueue_many([a.job("ok", &1), b.job("ok", &2), a.job("ok", &3)])
        .unwrap();
    assert_eq!(a.job_ids().unwrap(), [jobs[0].id(), jobs[2].id()]);
    assert_eq!(b.job_ids().unwrap(), [jobs[1].id()]);
    assert_eq!(jobs[1].info().unwrap().queue, "b");
}

#[test]
fn enqueue_many_with_a_duplicate_id_inside_the_batch_enqueues_nothing() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let err = q
        .enqueue_many([
            q.job("ok", &1).id("a"),
            q.job("ok", &2).id("b"),
            q.job("ok", &3).id("a"),
        ])
        .unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateJobId { id } if id == "a"),
        "{err:?}"
    );
    assert!(f.store.job("a").unwrap().is_none());
    assert!(f.store.job("b").unwrap().is_none());
    assert_eq!(q.count().unwrap(), 0);
    assert_eq!(runs(&f.burst(&handlers())), 0);
}

#[test]
fn enqueue_many_with_a_duplicate_of_an_existing_job_enqueues_nothing() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let original = q
        .job("ok", &1)
        .id("x")
        .description("first")
        .enqueue()
        .unwrap();
    let before = original.info().unwrap();
    let err = q
        .enqueue_many([q.job("ok", &2).id("y"), q.job("fail", &3).id("x")])
        .unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateJobId { id } if id == "x"),
        "{err:?}"
    );
    assert!(f.store.job("y").unwrap().is_none());
    assert_eq!(
        original.info().unwrap(),
        before,
        "the original is unchanged"
    );
    assert_eq!(q.job_ids().unwrap(), ["x"]);
}

#[test]
fn enqueue_many_with_one_invalid_id_enqueues_nothing() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let err = q
        .enqueue_many([
            q.job("ok", &1).id("good-1"),
            q.job("ok", &2).id("bad id"),
            q.job("ok", &3).id("good-2"),
        ])
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidJobId { id, .. } if id == "bad id"),
        "{err:?}"
    );
    assert!(f.store.job("good-1").unwrap().is_none());
    assert!(f.store.job("good-2").unwrap().is_none());
    assert_eq!(q.count().unwrap(), 0);
}

#[test]
fn a_rejected_batch_leaves_no_trace() {
    let f = Fixture::new();
    let q = f.store.queue("brand-new");
    let err = q
        .enqueue_many([q.job("ok", &1).id("d"), q.job("ok", &2).id("d")])
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateJobId { .. }), "{err:?}");
    // ARCHITECTURE.md: the queue number is "written in the same transaction
    // as the first job that uses it", so a failed enqueue makes no queue.
    let names: Vec<String> = f
        .store
        .queues()
        .iter()
        .map(|q| q.name().to_owned())
        .collect();
    assert!(names.is_empty(), "queues after a rejected batch: {names:?}");
}

#[test]
fn enqueue_many_of_nothing_is_ok() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    assert!(q.enqueue_many(Vec::new()).unwrap().is_empty());
    assert_eq!(q.count().unwrap(), 0);
}

#[test]
fn concurrent_enqueues_all_land() {
    let f = Fixture::new();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let q = f.store.queue("default");
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| q.job("ok", &i).id(format!("t{t}-{i}")).enqueue().unwrap())
                    .map(|j| j.id().to_owned())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let per_thread: Vec<Vec<String>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let q = f.store.queue("default");
    let listed = q.job_ids().unwrap();
    assert_eq!(listed.len(), 100);
    // Each thread's jobs keep their relative order in the queue.
    for ids in &per_thread {
        let positions: Vec<usize> = ids
            .iter()
            .map(|id| listed.iter().position(|l| l == id).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    }
}

// ------------------------------------------------------------ lookup, counts

#[test]
fn store_job_fetches_by_id_and_none_for_unknown() {
    let f = Fixture::new();
    let q = f.store.queue("other");
    let job = q.job("ok", &1).id("known").enqueue().unwrap();
    let fetched = f.store.job("known").unwrap().expect("job exists");
    assert_eq!(fetched.id(), job.id());
    assert_eq!(fetched.info().unwrap(), job.info().unwrap());
    assert!(f.store.job("unknown").unwrap().is_none());
    assert!(f.store.job("").unwrap().is_none());
    assert!(f.store.job("not a valid id").unwrap().is_none());
}

#[test]
fn job_ids_page_slices_the_queue() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let all = ids(&q.enqueue_many((0..7).map(|i| q.job("ok", &i))).unwrap());
    assert!(
        q.failed().job_ids_page(0, 3).unwrap().is_empty(),
        "nothing failed"
    );
    assert_eq!(q.job_ids().unwrap(), all);

    // The scheduled registry pages in due order.
    let later = q
        .enqueue_many((0..5u64).map(|i| q.job("ok", &0).delay(secs(10 - i))))
        .unwrap();
    let mut by_due = ids(&later);
    by_due.reverse();
    let sched = q.scheduled();
    assert_eq!(sched.job_ids().unwrap(), by_due);
    assert_eq!(sched.job_ids_page(0, 2).unwrap(), by_due[0..2]);
    assert_eq!(sched.job_ids_page(2, 2).unwrap(), by_due[2..4]);
    assert_eq!(sched.job_ids_page(4, 10).unwrap(), by_due[4..]);
    assert!(sched.job_ids_page(5, 10).unwrap().is_empty());
    assert!(sched.job_ids_page(0, 0).unwrap().is_empty());
    assert!(sched
        .job_ids_page(usize::MAX, usize::MAX)
        .unwrap()
        .is_empty());
    assert_eq!(sched.count().unwrap(), 5);
    assert_eq!(q.count().unwrap(), all.len());
}

#[test]
fn registries_of_an_unused_queue_are_empty() {
    let f = Fixture::new();
    let q = f.store.queue("never-used");
    assert_eq!(q.count().unwrap(), 0);
    assert!(q.job_ids().unwrap().is_empty());
    assert_eq!(q.empty().unwrap(), 0);
    for reg in [
        q.scheduled(),
        q.started(),
        q.finished(),
        q.failed(),
        q.canceled(),
    ] {
        assert_eq!(reg.count().unwrap(), 0);
        assert!(reg.job_ids().unwrap().is_empty());
    }
    assert_eq!(q.failed().requeue_all().unwrap(), 0);
    // Only the failed registry requeues (rq's rule).
    let err = q.scheduled().requeue_all().unwrap_err();
    assert!(
        matches!(
            err,
            dueq::Error::InvalidArgument {
                what: "requeue",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        f.store.queues().is_empty(),
        "a handle does not make a queue"
    );
}

#[test]
fn queues_lists_used_queues_sorted_by_name() {
    let f = Fixture::new();
    f.store.queue("b").enqueue("ok", &1).unwrap();
    f.store.queue("a").enqueue_in(secs(5), "ok", &1).unwrap();
    f.store.queue("c-unused");
    f.store.queue("b").enqueue("ok", &2).unwrap();
    let names: Vec<String> = f
        .store
        .queues()
        .iter()
        .map(|q| q.name().to_owned())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(f.store.queues()[1].count().unwrap(), 2);
}

#[test]
fn queues_are_separate() {
    let f = Fixture::new();
    let a = f.store.queue("a");
    let b = f.store.queue("b");
    let ja = a.enqueue("ok", &1).unwrap();
    let jb = b.enqueue("ok", &2).unwrap();
    assert_eq!(a.job_ids().unwrap(), [ja.id()]);
    assert_eq!(b.job_ids().unwrap(), [jb.id()]);
    assert_eq!(a.empty().unwrap(), 1);
    assert_eq!(b.count().unwrap(), 1);
    // A worker on "default" runs neither.
    assert_eq!(runs(&f.burst(&handlers())), 0);
}

#[test]
fn empty_removes_queued_jobs_and_keeps_scheduled_ones() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let queued = q.enqueue_many((0..3).map(|i| q.job("ok", &i))).unwrap();
    let scheduled = q
        .enqueue_many((0..2).map(|i| q.job("ok", &i).delay(secs(60))))
        .unwrap();
    let other = f.store.queue("other").enqueue("ok", &9).unwrap();

    assert_eq!(q.empty().unwrap(), 3);
    assert_eq!(q.count().unwrap(), 0);
    for job in &queued {
        assert!(f.store.job(job.id()).unwrap().is_none());
        assert!(matches!(job.status(), Err(Error::NoSuchJob { .. })));
    }
    assert_eq!(q.scheduled().job_ids().unwrap(), ids(&scheduled));
    assert_eq!(other.status().unwrap(), Status::Queued);
    assert_eq!(q.empty().unwrap(), 0);

    f.advance(secs(60));
    assert_eq!(q.count().unwrap(), 2);
    assert_eq!(q.empty().unwrap(), 2);
    assert_eq!(q.count().unwrap(), 0);
}

// --------------------------------------------------------------- registries

#[test]
fn registries_follow_each_job_through_its_states() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let to_finish = q.enqueue("ok", &5).unwrap();
    let to_fail = q.enqueue("fail", &0).unwrap();
    let to_cancel = q.enqueue("ok", &6).unwrap();
    let later = q.enqueue_in(secs(30), "ok", &7).unwrap();
    to_cancel.cancel().unwrap();

    assert_eq!(q.job_ids().unwrap(), [to_finish.id(), to_fail.id()]);
    assert_eq!(q.scheduled().job_ids().unwrap(), [later.id()]);
    assert_eq!(q.canceled().job_ids().unwrap(), [to_cancel.id()]);

    let stats = f.burst(&handlers());
    assert_eq!((stats.succeeded, stats.failed), (1, 1));

    assert_eq!(q.count().unwrap(), 0);
    assert_eq!(q.started().count().unwrap(), 0);
    assert_eq!(q.finished().job_ids().unwrap(), [to_finish.id()]);
    assert_eq!(q.failed().job_ids().unwrap(), [to_fail.id()]);
    assert_eq!(q.canceled().job_ids().unwrap(), [to_cancel.id()]);
    assert_eq!(q.scheduled().job_ids().unwrap(), [later.id()]);
    assert_eq!(to_finish.status().unwrap(), Status::Finished);
    assert_eq!(to_fail.status().unwrap(), Status::Failed);
    assert_eq!(to_cancel.status().unwrap(), Status::Canceled);
    assert_eq!(later.status().unwrap(), Status::Scheduled);

    let info = to_finish.info().unwrap();
    assert_eq!(info.result_json.as_deref(), Some("5"));
    assert_eq!(info.attempts, 1);
    assert_eq!(info.started_at, Some(t0()));
    assert_eq!(info.ended_at, Some(t0()));
    assert_eq!(info.due_at, None, "only waiting jobs have a due time");
    assert_eq!(to_finish.result::<i64>().unwrap(), Some(5));

    let info = to_fail.info().unwrap();
    assert_eq!(info.error.as_deref(), Some("always fails"));
    assert_eq!(info.result_json, None);
    assert_eq!(info.attempts_log.len(), 1);
    assert_eq!(info.attempts_log[0].error.as_deref(), Some("always fails"));
}

#[test]
fn started_registry_holds_running_jobs() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let mut h = Handlers::new();
    h.register("block", move |n: i64| -> Result<i64, JobError> {
        started_tx.send(()).unwrap();
        release_rx
            .lock()
            .unwrap()
            .recv_timeout(secs(30))
            .map_err(|_| JobError::new("never released"))?;
        Ok(n)
    });
    let job = q.enqueue("block", &3).unwrap();
    let worker = dueq::Worker::builder(&f.store, h)
        .threads(1)
        .start()
        .unwrap();
    started_rx.recv_timeout(secs(30)).unwrap();

    assert_eq!(job.status().unwrap(), Status::Started);
    assert_eq!(q.started().job_ids().unwrap(), [job.id()]);
    assert_eq!(q.started().count().unwrap(), 1);
    assert_eq!(q.count().unwrap(), 0);
    let info = job.info().unwrap();
    assert_eq!(info.attempts, 1);
    assert_eq!(info.started_at, Some(t0()));
    assert_eq!(info.due_at, None);
    let err = job.cancel().unwrap_err();
    assert!(
        matches!(
            &err,
            Error::InvalidState {
                action: "cancel",
                status: Status::Started,
                ..
            }
        ),
        "{err:?}"
    );
    let err = job.requeue().unwrap_err();
    assert!(
        matches!(
            &err,
            Error::InvalidState {
                action: "requeue",
                ..
            }
        ),
        "{err:?}"
    );

    release_tx.send(()).unwrap();
    assert_eq!(job.wait(secs(30)).unwrap(), Status::Finished);
    assert_eq!(q.started().count().unwrap(), 0);
    let stats = worker.shutdown(secs(30)).unwrap();
    assert_eq!(stats.succeeded, 1);
}

#[test]
fn cancel_only_applies_to_queued_and_scheduled_jobs() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let scheduled = q.enqueue_in(secs(10), "ok", &2).unwrap();
    let finished = q.enqueue("ok", &3).unwrap();
    let failed = q.enqueue("fail", &4).unwrap();
    f.burst(&handlers());
    let queued2 = q.enqueue("ok", &5).unwrap();

    queued2.cancel().unwrap();
    scheduled.cancel().unwrap();
    assert_eq!(queued2.status().unwrap(), Status::Canceled);
    assert_eq!(scheduled.status().unwrap(), Status::Canceled);
    assert_eq!(scheduled.info().unwrap().ended_at, Some(t0()));
    assert_eq!(q.scheduled().count().unwrap(), 0);
    let mut canceled = q.canceled().job_ids().unwrap();
    canceled.sort();
    let mut expected = vec![queued2.id().to_owned(), scheduled.id().to_owned()];
    expected.sort();
    assert_eq!(canceled, expected);

    for (job, status) in [
        (&finished, Status::Finished),
        (&failed, Status::Failed),
        (&queued2, Status::Canceled),
    ] {
        let err = job.cancel().unwrap_err();
        assert!(
            matches!(&err, Error::InvalidState { action: "cancel", status: s, .. } if *s == status),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("only queued, scheduled and deferred"),
            "{err}"
        );
        assert_eq!(
            job.status().unwrap(),
            status,
            "unchanged by the refused cancel"
        );
    }

    // A canceled job never runs, not even once its time comes.
    f.advance(secs(10));
    assert_eq!(runs(&f.burst(&handlers())), 0);
    assert_eq!(scheduled.status().unwrap(), Status::Canceled);
    assert_eq!(scheduled.info().unwrap().attempts, 0);

    queued2.delete().unwrap();
    assert!(matches!(queued2.cancel(), Err(Error::NoSuchJob { .. })));
}

#[test]
fn requeue_only_applies_to_failed_jobs_and_keeps_attempts() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let failed = q.enqueue("fail", &1).unwrap();
    let queued_later = q.enqueue_in(secs(5), "ok", &2).unwrap();
    f.burst(&handlers());
    assert_eq!(failed.status().unwrap(), Status::Failed);
    assert_eq!(failed.info().unwrap().attempts, 1);

    let err = queued_later.requeue().unwrap_err();
    assert!(
        matches!(
            &err,
            Error::InvalidState {
                action: "requeue",
                status: Status::Scheduled,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("only failed jobs can be requeued"),
        "{err}"
    );

    f.advance(secs(1));
    failed.requeue().unwrap();
    assert_eq!(failed.status().unwrap(), Status::Queued);
    let info = failed.info().unwrap();
    assert_eq!(info.attempts, 1, "rq: requeue does not reset attempts");
    assert_eq!(info.due_at, Some(t0() + chrono(secs(1))));
    assert_eq!(q.failed().count().unwrap(), 0);
    assert_eq!(q.job_ids().unwrap(), [failed.id()]);

    let err = failed.requeue().unwrap_err();
    assert!(
        matches!(
            &err,
            Error::InvalidState {
                status: Status::Queued,
                ..
            }
        ),
        "{err:?}"
    );
    f.burst(&handlers());
    assert_eq!(failed.status().unwrap(), Status::Failed);
    assert_eq!(failed.info().unwrap().attempts, 2);
}

#[test]
fn registry_requeue_and_requeue_all() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let jobs = q.enqueue_many((0..4).map(|i| q.job("fail", &i))).unwrap();
    f.burst(&handlers());
    assert_eq!(q.failed().count().unwrap(), 4);

    q.failed().requeue(jobs[2].id()).unwrap();
    assert_eq!(jobs[2].status().unwrap(), Status::Queued);
    assert_eq!(q.failed().count().unwrap(), 3);
    assert!(matches!(
        q.failed().requeue("no-such-job"),
        Err(Error::NoSuchJob { .. })
    ));

    assert_eq!(q.failed().requeue_all().unwrap(), 3);
    assert_eq!(q.failed().count().unwrap(), 0);
    assert_eq!(q.count().unwrap(), 4);
    for job in &jobs {
        assert_eq!(job.status().unwrap(), Status::Queued);
    }
    assert_eq!(q.failed().requeue_all().unwrap(), 0);
}

#[test]
fn delete_removes_a_job_in_any_waiting_or_final_state() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let finished = q.enqueue("ok", &1).unwrap();
    let failed = q.enqueue("fail", &1).unwrap();
    f.burst(&handlers());
    let queued = q.enqueue("ok", &1).unwrap();
    let scheduled = q.enqueue_in(secs(9), "ok", &1).unwrap();
    let canceled = q.enqueue("ok", &1).unwrap();
    canceled.cancel().unwrap();

    for job in [&finished, &failed, &queued, &scheduled, &canceled] {
        job.delete().unwrap();
        assert!(f.store.job(job.id()).unwrap().is_none());
        let err = job.info().unwrap_err();
        assert!(
            matches!(&err, Error::NoSuchJob { id } if id == job.id()),
            "{err:?}"
        );
        assert!(matches!(job.delete(), Err(Error::NoSuchJob { .. })));
    }
    for reg in [
        q.scheduled(),
        q.started(),
        q.finished(),
        q.failed(),
        q.canceled(),
    ] {
        assert_eq!(reg.count().unwrap(), 0);
    }
    assert_eq!(q.count().unwrap(), 0);
    // A deleted id can be used again.
    q.job("ok", &2).id("reuse").enqueue().unwrap();
    f.store.job("reuse").unwrap().unwrap().delete().unwrap();
    q.job("ok", &3).id("reuse").enqueue().unwrap();
    assert_eq!(
        f.store
            .job("reuse")
            .unwrap()
            .unwrap()
            .info()
            .unwrap()
            .args_json,
        "3"
    );
}

// ----------------------------------------------------------------- statuses

#[test]
fn status_display_gives_rq_names() {
    let cases = [
        (Status::Queued, "queued"),
        (Status::Scheduled, "scheduled"),
        (Status::Started, "started"),
        (Status::Finished, "finished"),
        (Status::Failed, "failed"),
        (Status::Canceled, "canceled"),
    ];
    for (status, name) in cases {
        assert_eq!(status.to_string(), name);
        assert_eq!(status.as_str(), name);
        assert_eq!(
            status.is_final(),
            matches!(name, "finished" | "failed" | "canceled")
        );
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            format!("\"{name}\"")
        );
    }
}

// ------------------------------------------------------------- reopen, flush

#[test]
fn a_reopened_store_has_every_job_with_its_status() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let queued = q
        .job("ok", &1)
        .id("queued")
        .description("d")
        .enqueue()
        .unwrap();
    let scheduled = q
        .job("ok", &2)
        .id("scheduled")
        .enqueue_in(secs(60))
        .unwrap();
    let finished = q.job("ok", &3).id("finished").enqueue().unwrap();
    let failed = q.job("fail", &4).id("failed").enqueue().unwrap();
    f.burst(&handlers()); // queued is run too: enqueue it again after
    queued.delete().unwrap();
    drop(queued); // every handle keeps the store open
    let queued = q
        .job("ok", &1)
        .id("queued")
        .description("d")
        .enqueue()
        .unwrap();
    let canceled = q.job("ok", &5).id("canceled").enqueue().unwrap();
    canceled.cancel().unwrap();
    f.store
        .queue("second")
        .job("ok", &6)
        .id("other-q")
        .enqueue()
        .unwrap();

    let jobs = [queued, scheduled, finished, failed, canceled];
    let before: Vec<_> = jobs.iter().map(|j| j.info().unwrap()).collect();
    let Fixture {
        dir: _dir,
        path,
        clock,
        store,
    } = f;
    drop((jobs, q, store));

    let store = open_manual(&path, &clock);
    assert_eq!(store.recovered_at_open(), 0);
    for info in &before {
        let job = store.job(&info.id).unwrap().expect("job survives a reopen");
        assert_eq!(&job.info().unwrap(), info);
    }
    let q = store.queue("default");
    assert_eq!(q.job_ids().unwrap(), ["queued"]);
    assert_eq!(q.scheduled().job_ids().unwrap(), ["scheduled"]);
    assert_eq!(q.finished().job_ids().unwrap(), ["finished"]);
    assert_eq!(q.failed().job_ids().unwrap(), ["failed"]);
    assert_eq!(q.canceled().job_ids().unwrap(), ["canceled"]);
    assert_eq!(store.queue("second").job_ids().unwrap(), ["other-q"]);
    let names: Vec<String> = store.queues().iter().map(|q| q.name().to_owned()).collect();
    assert_eq!(names, ["default", "second"]);
    assert_eq!(
        store
            .job("finished")
            .unwrap()
            .unwrap()
            .result::<i64>()
            .unwrap(),
        Some(3)
    );

    // FIFO continues across a reopen: new jobs go after old ones.
    let new = q.enqueue("ok", &7).unwrap();
    assert_eq!(q.job_ids().unwrap(), ["queued", new.id()]);
    clock.advance(secs(60));
    assert_eq!(q.job_ids().unwrap(), ["queued", new.id(), "scheduled"]);
}

#[test]
fn durable_enqueue_is_on_disk_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live");
    let clock = ManualClock::new(t0());
    let store = open_manual(&path, &clock);
    let q = store.queue("default");
    let jobs = q.enqueue_many((0..20).map(|i| q.job("ok", &i))).unwrap();
    let single = q.enqueue("ok", &99).unwrap();
    // Copy the files while the store is still open: what enqueue
    // acknowledged must already be in them.
    let copy = dir.path().join("copy");
    copy_dir(&path, &copy);
    let copied = open_manual(&copy, &clock);
    let mut expected = ids(&jobs);
    expected.push(single.id().to_owned());
    assert_eq!(copied.queue("default").job_ids().unwrap(), expected);
}

#[test]
fn buffered_store_flush_makes_a_durable_point() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live");
    let clock = ManualClock::new(t0());
    let store = Store::builder(&path)
        .durability(Durability::Buffered)
        .clock(clock.clone())
        .open()
        .unwrap();
    let q = store.queue("default");
    let jobs = q.enqueue_many((0..200).map(|i| q.job("ok", &i))).unwrap();
    store.flush().unwrap();
    let copy = dir.path().join("copy");
    copy_dir(&path, &copy);
    let copied = open_manual(&copy, &clock);
    assert_eq!(copied.queue("default").job_ids().unwrap(), ids(&jobs));
    drop(copied);

    // Dropping a buffered store loses nothing either.
    let more = q.enqueue("ok", &1).unwrap().id().to_owned();
    drop((jobs, q, store));
    let store = open_manual(&path, &clock);
    assert_eq!(store.queue("default").count().unwrap(), 201);
    assert!(store.job(&more).unwrap().is_some());
}

#[test]
fn durable_store_flush_is_ok() {
    let f = Fixture::new();
    f.store.queue("default").enqueue("ok", &1).unwrap();
    f.store.flush().unwrap();
    assert_eq!(f.store.queue("default").count().unwrap(), 1);
}

// ------------------------------------------------------------------- proptest

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Whatever the delays, once all are due the queue lists jobs by due
    /// time, ties in enqueue order.
    #[test]
    fn job_ids_are_ordered_by_due_time_then_enqueue_order(
        delays in proptest::collection::vec(0u64..5, 1..30),
        batch in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(t0());
        let store = Store::builder(dir.path().join("s"))
            .durability(Durability::Buffered)
            .clock(clock.clone())
            .open()
            .unwrap();
        let q = store.queue("default");
        let jobs = if batch {
            q.enqueue_many(delays.iter().map(|&d| q.job("ok", &d).delay(ms(d)))).unwrap()
        } else {
            delays.iter().map(|&d| q.enqueue_in(ms(d), "ok", &d).unwrap()).collect()
        };
        let now_due = delays.iter().filter(|&&d| d == 0).count();
        prop_assert_eq!(q.count().unwrap(), now_due);
        prop_assert_eq!(q.scheduled().count().unwrap(), delays.len() - now_due);
        clock.advance(ms(5));
        let mut expected: Vec<(u64, usize)> =
            delays.iter().enumerate().map(|(i, &d)| (d, i)).collect();
        expected.sort();
        let expected: Vec<String> =
            expected.iter().map(|&(_, i)| jobs[i].id().to_owned()).collect();
        prop_assert_eq!(q.job_ids().unwrap(), expected);
    }
}
