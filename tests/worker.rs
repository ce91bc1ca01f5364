//! The worker pool: real threads on the system clock (waits are bounded by
//! timeouts, never by sleeps), burst runs on a `ManualClock`, shutdown,
//! priorities, panics, the run's `Context`, leases and result TTLs.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{chrono, ms, runs, secs, t0, Fixture};
use dueq::{Error, Handlers, JobError, Retry, Status, Store, Worker};
use serde::{Deserialize, Serialize};

/// A generous bound for things that should take milliseconds: it only
/// matters when the test is failing.
const PATIENCE: Duration = Duration::from_secs(20);

fn system_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("jobs.dueq")).unwrap();
    (dir, store)
}

fn add_handlers() -> Handlers {
    let mut h = Handlers::new();
    h.register("add", |(a, b): (i64, i64)| -> Result<i64, JobError> {
        Ok(a + b)
    });
    h.register("fail", |_: ()| -> Result<(), JobError> {
        Err(JobError::new("nope"))
    });
    h
}

/// A handler body that reports it started, then blocks until released (or
/// until `PATIENCE` passes, which fails the run).
struct Gate {
    started_tx: Mutex<mpsc::Sender<String>>,
    release_rx: Mutex<mpsc::Receiver<()>>,
}

fn gate() -> (Arc<Gate>, mpsc::Receiver<String>, mpsc::Sender<()>) {
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let gate = Arc::new(Gate {
        started_tx: Mutex::new(started_tx),
        release_rx: Mutex::new(release_rx),
    });
    (gate, started_rx, release_tx)
}

impl Gate {
    fn pass(&self, id: &str) -> Result<(), JobError> {
        self.started_tx.lock().unwrap().send(id.to_owned()).unwrap();
        self.release_rx
            .lock()
            .unwrap()
            .recv_timeout(PATIENCE)
            .map_err(|_| JobError::new("the test never released the gate"))
    }
}

// ------------------------------------------------------------- basic running

#[test]
fn wait_returns_finished_and_the_result_is_readable() {
    let (_dir, store) = system_store();
    let worker = Worker::builder(&store, add_handlers())
        .threads(2)
        .start()
        .unwrap();
    let job = store.queue("default").enqueue("add", &(2, 3)).unwrap();
    assert_eq!(job.wait(PATIENCE).unwrap(), Status::Finished);
    assert_eq!(job.result::<i64>().unwrap(), Some(5));
    assert_eq!(job.info().unwrap().result_json.as_deref(), Some("5"));
    let stats = worker.shutdown(PATIENCE).unwrap();
    assert_eq!(stats.succeeded, 1);
    assert_eq!(stats.failed, 0);
    assert_eq!(stats.running, 0);
}

#[test]
fn wait_times_out_with_the_current_status() {
    let (_dir, store) = system_store();
    // No worker: the job stays queued.
    let job = store.queue("default").enqueue("add", &(1, 1)).unwrap();
    let started = Instant::now();
    assert_eq!(job.wait(ms(100)).unwrap(), Status::Queued);
    assert!(started.elapsed() >= ms(100));
}

#[test]
fn jobs_run_concurrently_on_several_threads() {
    let (_dir, store) = system_store();
    // A barrier with a timeout: each run waits for all four to be running.
    let arrived = Arc::new((Mutex::new(0u32), Condvar::new()));
    let mut h = Handlers::new();
    let a = arrived.clone();
    h.register("meet", move |_: u32| -> Result<bool, JobError> {
        let (count, cond) = &*a;
        let mut n = count.lock().unwrap();
        *n += 1;
        cond.notify_all();
        let (n, timeout) = cond.wait_timeout_while(n, PATIENCE, |n| *n < 4).unwrap();
        if timeout.timed_out() {
            return Err(JobError::new(format!("only {} ran at once", *n)));
        }
        Ok(true)
    });
    let q = store.queue("default");
    let jobs = q.enqueue_many((0..4).map(|i| q.job("meet", &i))).unwrap();
    let worker = Worker::builder(&store, h).threads(4).start().unwrap();
    for job in &jobs {
        assert_eq!(
            job.wait(PATIENCE * 2).unwrap(),
            Status::Finished,
            "{:?}",
            job.error()
        );
        assert_eq!(job.result::<bool>().unwrap(), Some(true));
    }
    assert_eq!(worker.shutdown(PATIENCE).unwrap().succeeded, 4);
}

#[test]
fn queues_are_taken_in_strict_priority_order() {
    let f = Fixture::new();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut h = Handlers::new();
    let o = order.clone();
    h.register_with_context("record", move |ctx, tag: String| -> Result<(), JobError> {
        o.lock().unwrap().push((ctx.queue().to_owned(), tag));
        Ok(())
    });
    let low = f.store.queue("default");
    let high = f.store.queue("high");
    for i in 0..3 {
        low.enqueue("record", &format!("d{i}")).unwrap();
    }
    for i in 0..3 {
        high.enqueue("record", &format!("h{i}")).unwrap();
    }
    f.store.queue("unlisted").enqueue("record", &"x").unwrap();

    let stats = Worker::builder(&f.store, h)
        .queues(["high", "default"])
        .threads(1)
        .burst()
        .unwrap();
    assert_eq!(stats.succeeded, 6);
    let tags: Vec<String> = order
        .lock()
        .unwrap()
        .iter()
        .map(|(_, t)| t.clone())
        .collect();
    assert_eq!(tags, ["h0", "h1", "h2", "d0", "d1", "d2"]);
    assert_eq!(order.lock().unwrap()[0].0, "high");
    assert_eq!(
        f.store.queue("unlisted").count().unwrap(),
        1,
        "not a queue of this worker"
    );
}

#[test]
fn a_panicking_handler_fails_its_attempt_and_the_worker_goes_on() {
    let (_dir, store) = system_store();
    let mut h = add_handlers();
    h.register("explode", |_: ()| -> Result<(), JobError> {
        panic!("kaboom {}", 42);
    });
    let worker = Worker::builder(&store, h).threads(1).start().unwrap();
    let q = store.queue("default");
    let bad = q.enqueue("explode", &()).unwrap();
    let good = q.enqueue("add", &(20, 22)).unwrap();
    assert_eq!(bad.wait(PATIENCE).unwrap(), Status::Failed);
    let error = bad.error().unwrap().unwrap();
    assert!(error.contains("panicked"), "{error}");
    assert!(error.contains("kaboom 42"), "{error}");
    assert_eq!(good.wait(PATIENCE).unwrap(), Status::Finished);
    assert_eq!(good.result::<i64>().unwrap(), Some(42));
    // And a job enqueued after the panic runs too.
    let later = q.enqueue("add", &(1, 2)).unwrap();
    assert_eq!(later.wait(PATIENCE).unwrap(), Status::Finished);
    let stats = worker.shutdown(PATIENCE).unwrap();
    assert_eq!((stats.succeeded, stats.failed), (2, 1));
}

#[test]
fn wait_follows_retries_to_the_end_on_the_system_clock() {
    let (_dir, store) = system_store();
    let mut h = Handlers::new();
    h.register_with_context("third_time", |ctx, _: ()| -> Result<u32, JobError> {
        if ctx.attempt() < 3 {
            return Err(JobError::new("not yet"));
        }
        Ok(ctx.attempt())
    });
    let worker = Worker::builder(&store, h).threads(1).start().unwrap();
    let job = store
        .queue("default")
        .job("third_time", &())
        .retry(Retry::max(2).intervals([ms(100)]))
        .enqueue()
        .unwrap();
    // A retried job is not final: wait goes on through both backoffs.
    assert_eq!(job.wait(PATIENCE).unwrap(), Status::Finished);
    assert_eq!(job.result::<u32>().unwrap(), Some(3));
    let info = job.info().unwrap();
    assert_eq!(info.attempts, 3);
    for pair in info.attempts_log.windows(2) {
        let gap = pair[1].started_at - pair[0].ended_at;
        assert!(
            gap >= chrono(ms(100)),
            "a retry ran {gap} after the failure"
        );
    }
    let stats = worker.shutdown(PATIENCE).unwrap();
    assert_eq!((stats.succeeded, stats.failed), (1, 2));
}

// ------------------------------------------------------------------ shutdown

#[test]
fn warm_shutdown_waits_for_the_running_job() {
    let (_dir, store) = system_store();
    let (gate, started_rx, release_tx) = gate();
    let mut h = Handlers::new();
    let g = gate.clone();
    h.register_with_context("slow", move |ctx, n: u32| -> Result<u32, JobError> {
        g.pass(ctx.job_id())?;
        Ok(n + 1)
    });
    let q = store.queue("default");
    let running = q.enqueue("slow", &1).unwrap();
    let worker = Worker::builder(&store, h).threads(1).start().unwrap();
    assert_eq!(started_rx.recv_timeout(PATIENCE).unwrap(), running.id());
    // Enqueued while the only thread is busy: a stopping worker leaves it.
    let waiting = q.enqueue("slow", &2).unwrap();

    let calling = Arc::new(AtomicBool::new(false));
    let releaser = {
        let calling = calling.clone();
        std::thread::spawn(move || {
            while !calling.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            // Give shutdown a moment to begin; the test holds either way.
            std::thread::sleep(ms(100));
            release_tx.send(()).unwrap();
        })
    };
    calling.store(true, Ordering::SeqCst);
    let stats = worker.shutdown(PATIENCE).unwrap();
    releaser.join().unwrap();

    assert_eq!(
        running.status().unwrap(),
        Status::Finished,
        "warm: the run finished"
    );
    assert_eq!(running.result::<u32>().unwrap(), Some(2));
    assert_eq!(stats.succeeded, 1);
    assert_eq!(stats.running, 0);
    assert_eq!(
        waiting.status().unwrap(),
        Status::Queued,
        "not taken after shutdown began"
    );
}

#[test]
fn shutdown_times_out_when_a_job_outlasts_it() {
    let (_dir, store) = system_store();
    let (gate, started_rx, release_tx) = gate();
    let mut h = Handlers::new();
    let g = gate.clone();
    h.register_with_context(
        "stuck",
        move |ctx, _: ()| -> Result<&'static str, JobError> {
            g.pass(ctx.job_id())?;
            Ok("done late")
        },
    );
    let job = store.queue("default").enqueue("stuck", &()).unwrap();
    let worker = Worker::builder(&store, h).threads(2).start().unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();

    let began = Instant::now();
    let err = worker.shutdown(ms(200)).unwrap_err();
    assert!(began.elapsed() >= ms(200));
    assert!(
        matches!(err, Error::ShutdownTimeout { running: 1 }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("still running"), "{msg}");
    assert!(msg.contains("run again"), "{msg}");
    assert_eq!(job.status().unwrap(), Status::Started, "it keeps its lease");

    // The run goes on and still records its outcome.
    release_tx.send(()).unwrap();
    assert_eq!(job.wait(PATIENCE).unwrap(), Status::Finished);
    assert_eq!(
        job.result::<String>().unwrap().as_deref(),
        Some("done late")
    );
}

/// Jobs the pool claimed ahead of its runners and never started go back to
/// exactly their place in the queue at shutdown, their attempt uncounted.
#[test]
fn shutdown_puts_prefetched_jobs_back_in_order_uncounted() {
    let (_dir, store) = system_store();
    let (gate, started_rx, release_tx) = gate();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut h = Handlers::new();
    let (g, o) = (gate.clone(), order.clone());
    h.register_with_context("slow", move |ctx, n: u32| -> Result<u32, JobError> {
        o.lock().unwrap().push((n, ctx.attempt()));
        if n == 0 {
            g.pass(ctx.job_id())?;
        }
        Ok(n)
    });
    let q = store.queue("default");
    let blocker = q.enqueue("slow", &0).unwrap();
    let waiting: Vec<String> = (1..=5)
        .map(|n| q.enqueue("slow", &n).unwrap().id().to_owned())
        .collect();
    let worker = Worker::builder(&store, h.clone())
        .threads(1)
        .prefetch(8)
        .start()
        .unwrap();
    assert_eq!(started_rx.recv_timeout(PATIENCE).unwrap(), blocker.id());
    // The one thread is busy; the others were claimed ahead.
    assert_eq!(q.started().count().unwrap(), 6);
    assert_eq!(q.count().unwrap(), 0);
    assert_eq!(worker.stats().running, 1, "buffered jobs are not running");

    let shutdown = std::thread::spawn(move || worker.shutdown(PATIENCE));
    // The buffered jobs go back while the blocker still runs.
    let deadline = Instant::now() + PATIENCE;
    while q.count().unwrap() < waiting.len() {
        assert!(Instant::now() < deadline, "prefetched jobs not put back");
        std::thread::sleep(ms(2));
    }
    release_tx.send(()).unwrap();
    let stats = shutdown.join().unwrap().unwrap();
    assert_eq!((stats.succeeded, stats.failed, stats.errors), (1, 0, 0));
    assert_eq!(blocker.status().unwrap(), Status::Finished);

    // Their place: before a job enqueued now, in their own order.
    let later = q.enqueue("slow", &6).unwrap();
    let mut expected = waiting.clone();
    expected.push(later.id().to_owned());
    assert_eq!(q.job_ids().unwrap(), expected);
    for id in &waiting {
        let info = store.job(id).unwrap().unwrap().info().unwrap();
        assert_eq!(info.status, Status::Queued, "{info:?}");
        assert_eq!(info.attempts, 0, "{info:?}");
        assert!(info.attempts_log.is_empty() && info.error.is_none());
        assert_eq!(info.started_at, None, "{info:?}");
    }
    assert!(q.started().job_ids().unwrap().is_empty());

    // They run once each, as first attempts, in that order.
    order.lock().unwrap().clear();
    let stats = Worker::builder(&store, h).threads(1).burst().unwrap();
    assert_eq!(stats.succeeded, 6);
    let ran = order.lock().unwrap().clone();
    assert_eq!(ran, (1..=6).map(|n| (n, 1)).collect::<Vec<_>>());
}

#[test]
fn stats_count_succeeded_and_failed_runs() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    for i in 0..3 {
        q.enqueue("add", &(i, i)).unwrap();
    }
    for _ in 0..2 {
        q.enqueue("fail", &()).unwrap();
    }
    let stats = Worker::builder(&f.store, add_handlers())
        .threads(2)
        .burst()
        .unwrap();
    assert_eq!(stats.succeeded, 3);
    assert_eq!(stats.failed, 2);
    assert_eq!(stats.abandoned, 0);
    assert_eq!(stats.fenced, 0);
    assert_eq!(stats.corrupt, 0);
    assert_eq!(stats.errors, 0);
    assert_eq!(stats.running, 0);
    assert_eq!(q.finished().count().unwrap(), 3);
    assert_eq!(q.failed().count().unwrap(), 2);
    // A second burst finds nothing.
    assert_eq!(runs(&f.burst(&add_handlers())), 0);
}

#[test]
fn burst_with_no_queue_returns_at_once() {
    let f = Fixture::new();
    let stats = Worker::builder(&f.store, add_handlers())
        .queues(["nothing-here"])
        .burst()
        .unwrap();
    // The dispatcher looked once, found nothing, and stopped.
    assert_eq!(stats.rounds, 1);
    let mut stats = stats;
    stats.rounds = 0;
    assert_eq!(stats, dueq::WorkerStats::default());
}

// ------------------------------------------------ scheduling on a real clock

#[test]
fn a_scheduled_job_runs_on_time_on_the_system_clock() {
    let (_dir, store) = system_store();
    let worker = Worker::builder(&store, add_handlers())
        .threads(1)
        .start()
        .unwrap();
    let job = store
        .queue("default")
        .enqueue_in(ms(200), "add", &(1, 2))
        .unwrap();
    assert_eq!(job.status().unwrap(), Status::Scheduled);
    assert_eq!(job.wait(PATIENCE).unwrap(), Status::Finished);
    let info = job.info().unwrap();
    let waited = info.started_at.unwrap() - info.enqueued_at;
    assert!(
        waited >= chrono(ms(200)),
        "ran {waited} after enqueue, before it was due"
    );
    assert_eq!(job.result::<i64>().unwrap(), Some(3));
    worker.shutdown(PATIENCE).unwrap();
}

#[test]
fn an_idle_worker_picks_up_a_new_job_promptly() {
    let (_dir, store) = system_store();
    let q = store.queue("default");
    let worker = Worker::builder(&store, add_handlers())
        .threads(1)
        .start()
        .unwrap();
    let first = q.enqueue("add", &(1, 1)).unwrap();
    assert_eq!(first.wait(PATIENCE).unwrap(), Status::Finished);
    // Now idle, with nothing due: not a burst worker, so still there.
    for i in 0..3 {
        let began = Instant::now();
        let job = q.enqueue("add", &(i, 1)).unwrap();
        assert_eq!(job.wait(secs(5)).unwrap(), Status::Finished);
        assert!(began.elapsed() < secs(5));
    }
    assert_eq!(worker.shutdown(PATIENCE).unwrap().succeeded, 4);
}

#[test]
fn a_worker_started_before_its_queue_exists_picks_up_the_first_job() {
    let (_dir, store) = system_store();
    let worker = Worker::builder(&store, add_handlers())
        .queues(["fresh"])
        .threads(1)
        .start()
        .unwrap();
    assert!(store.queues().is_empty());
    let job = store.queue("fresh").enqueue("add", &(4, 4)).unwrap();
    assert_eq!(job.wait(secs(5)).unwrap(), Status::Finished);
    assert_eq!(job.result::<i64>().unwrap(), Some(8));
    worker.shutdown(PATIENCE).unwrap();
}

#[test]
fn a_worker_on_a_manual_clock_wakes_when_the_clock_moves() {
    let f = Fixture::new();
    let worker = Worker::builder(&f.store, add_handlers())
        .threads(1)
        .start()
        .unwrap();
    let job = f
        .store
        .queue("default")
        .enqueue_in(secs(3600), "add", &(1, 1))
        .unwrap();
    assert_eq!(job.wait(ms(50)).unwrap(), Status::Scheduled);
    f.advance(secs(3600));
    assert_eq!(job.wait(PATIENCE).unwrap(), Status::Finished);
    assert_eq!(
        job.info().unwrap().started_at,
        Some(t0() + chrono(secs(3600)))
    );
    worker.shutdown(PATIENCE).unwrap();
}

// ------------------------------------------------------------------- context

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Seen {
    job_id: String,
    attempt: u32,
    queue: String,
    handler: String,
    token: u64,
    heartbeat_ok: bool,
}

#[test]
fn the_context_describes_the_run() {
    let f = Fixture::new();
    let mut h = Handlers::new();
    h.register_with_context("introspect", |ctx, fail: bool| -> Result<Seen, JobError> {
        let seen = Seen {
            job_id: ctx.job_id().to_owned(),
            attempt: ctx.attempt(),
            queue: ctx.queue().to_owned(),
            handler: ctx.handler().to_owned(),
            token: ctx.lease_token(),
            heartbeat_ok: ctx.heartbeat().is_ok(),
        };
        if fail && ctx.attempt() == 1 {
            return Err(JobError::new("retry me"));
        }
        Ok(seen)
    });
    let q = f.store.queue("ctx-q");
    let job = q
        .job("introspect", &true)
        .id("ctx-job")
        .retry(Retry::max(1))
        .enqueue()
        .unwrap();
    let stats = Worker::builder(&f.store, h)
        .queues(["ctx-q"])
        .threads(1)
        .burst()
        .unwrap();
    assert_eq!((stats.succeeded, stats.failed), (1, 1));
    let seen = job.result::<Seen>().unwrap().unwrap();
    assert_eq!(seen.job_id, "ctx-job");
    assert_eq!(seen.attempt, 2);
    assert_eq!(seen.queue, "ctx-q");
    assert_eq!(seen.handler, "introspect");
    assert!(seen.heartbeat_ok);
    assert!(seen.token > 0);
}

#[test]
fn heartbeat_extends_the_lease() {
    let f = Fixture::new();
    let (gate, started_rx, release_tx) = gate();
    let mut h = Handlers::new();
    let g = gate.clone();
    h.register_with_context("beats", move |ctx, _: ()| -> Result<u32, JobError> {
        g.pass(ctx.job_id())?; // wait for the clock to move
        ctx.heartbeat()?;
        g.pass(ctx.job_id())?; // wait again
        Ok(ctx.attempt())
    });
    let job = f.store.queue("default").enqueue("beats", &()).unwrap();
    let worker = Worker::builder(&f.store, h)
        .threads(2)
        .lease(secs(10))
        .start()
        .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    f.advance(secs(9));
    release_tx.send(()).unwrap(); // heartbeat at t0 + 9 s: lease to t0 + 19 s
    started_rx.recv_timeout(PATIENCE).unwrap();
    f.advance(secs(9)); // t0 + 18 s: past the first lease, within the new one
                        // The dispatcher has been woken by the clock and must find no lapsed lease.
    assert_eq!(job.wait(ms(100)).unwrap(), Status::Started);
    release_tx.send(()).unwrap();
    assert_eq!(job.wait(PATIENCE).unwrap(), Status::Finished);
    assert_eq!(job.result::<u32>().unwrap(), Some(1), "it ran once");
    let stats = worker.shutdown(PATIENCE).unwrap();
    assert_eq!(stats.abandoned, 0);
    assert_eq!(stats.fenced, 0);
}

#[test]
fn a_clock_jump_past_the_lease_does_not_abandon_a_live_run() {
    let f = Fixture::new();
    let (gate, started_rx, release_tx) = gate();
    let (beat_tx, beat_rx) = mpsc::channel();
    let beat_tx = Mutex::new(beat_tx);
    let mut h = add_handlers();
    let g = gate.clone();
    h.register_with_context("long", move |ctx, _: ()| -> Result<u32, JobError> {
        g.pass(ctx.job_id())?;
        let beat = ctx.heartbeat().map_err(|e| e.to_string());
        beat_tx.lock().unwrap().send(beat).unwrap();
        Ok(ctx.attempt())
    });
    let q = f.store.queue("default");
    let job = q
        .job("long", &())
        .retry(Retry::max(1))
        .timeout(Duration::MAX) // about leases, not timeouts
        .enqueue()
        .unwrap();
    let worker = Worker::builder(&f.store, h)
        .threads(2)
        .lease(secs(10))
        .start()
        .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    f.advance(secs(3600)); // far past the 10 s lease
                           // Two marker jobs, one after the other, on the second thread: the
                           // dispatcher has been through whole loops since the jump.
    for _ in 0..2 {
        let marker = q.enqueue("add", &(0, 0)).unwrap();
        assert_eq!(marker.wait(PATIENCE).unwrap(), Status::Finished);
    }
    assert_eq!(job.status().unwrap(), Status::Started, "not abandoned");
    assert_eq!(q.started().job_ids().unwrap(), [job.id()]);
    assert_eq!(worker.stats().abandoned, 0);

    release_tx.send(()).unwrap();
    assert_eq!(beat_rx.recv_timeout(PATIENCE).unwrap(), Ok(()));
    assert_eq!(job.wait(PATIENCE).unwrap(), Status::Finished);
    assert_eq!(job.result::<u32>().unwrap(), Some(1), "it ran once");
    let info = job.info().unwrap();
    assert_eq!(info.attempts, 1);
    assert_eq!(info.attempts_log.len(), 1);
    let stats = worker.shutdown(PATIENCE).unwrap();
    assert_eq!((stats.abandoned, stats.fenced, stats.succeeded), (0, 0, 3));
}

#[test]
fn deleting_a_running_job_fences_its_run() {
    let f = Fixture::new();
    let (gate, started_rx, release_tx) = gate();
    let (beat_tx, beat_rx) = mpsc::channel();
    let beat_tx = Mutex::new(beat_tx);
    let mut h = Handlers::new();
    let g = gate.clone();
    h.register_with_context("work", move |ctx, n: u32| -> Result<u32, JobError> {
        if n == 1 {
            g.pass(ctx.job_id())?;
            let beat = ctx.heartbeat().map_err(|e| e.to_string());
            beat_tx.lock().unwrap().send(beat).unwrap();
        }
        Ok(n * 10)
    });
    let q = f.store.queue("default");
    let job = q.job("work", &1).id("same-id").enqueue().unwrap();
    let worker = Worker::builder(&f.store, h).threads(1).start().unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();

    job.delete().unwrap();
    assert!(f.store.job("same-id").unwrap().is_none());
    // A new job under the same id, while the old run still goes on.
    let again = q.job("work", &2).id("same-id").enqueue().unwrap();

    release_tx.send(()).unwrap();
    let beat = beat_rx.recv_timeout(PATIENCE).unwrap();
    let err = beat.unwrap_err();
    assert!(err.contains("superseded"), "{err}");
    // The new job runs (one thread: after the old run) with its own result;
    // the old run's outcome (10) was not written over it.
    assert_eq!(again.wait(PATIENCE).unwrap(), Status::Finished);
    assert_eq!(again.result::<u32>().unwrap(), Some(20));
    assert_eq!(again.info().unwrap().attempts, 1);
    let stats = worker.shutdown(PATIENCE).unwrap();
    assert_eq!((stats.fenced, stats.succeeded), (1, 1));
}

// ---------------------------------------------------------------- result TTL

#[test]
fn result_ttl_zero_deletes_the_job_once_finished() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let gone = q
        .job("add", &(1, 2))
        .result_ttl(Duration::ZERO)
        .enqueue()
        .unwrap();
    let kept = q.enqueue("add", &(3, 4)).unwrap();
    let stats = f.burst(&add_handlers());
    assert_eq!(stats.succeeded, 2);
    assert!(f.store.job(gone.id()).unwrap().is_none());
    assert!(matches!(gone.status(), Err(Error::NoSuchJob { .. })));
    assert_eq!(q.finished().job_ids().unwrap(), [kept.id()]);
}

#[test]
fn result_ttl_zero_with_a_real_worker() {
    let (_dir, store) = system_store();
    let worker = Worker::builder(&store, add_handlers())
        .threads(1)
        .start()
        .unwrap();
    let q = store.queue("default");
    let gone = q
        .job("add", &(1, 2))
        .result_ttl(Duration::ZERO)
        .enqueue()
        .unwrap();
    // A later job on the same single thread finishes after it.
    let marker = q.enqueue("add", &(0, 0)).unwrap();
    assert_eq!(marker.wait(PATIENCE).unwrap(), Status::Finished);
    assert!(store.job(gone.id()).unwrap().is_none());
    assert!(matches!(gone.wait(PATIENCE), Err(Error::NoSuchJob { .. })));
    worker.shutdown(PATIENCE).unwrap();
}

#[test]
fn finished_jobs_are_cleaned_up_once_the_clock_passes_their_ttl() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let jobs = q
        .enqueue_many((0..5).map(|i| q.job("add", &(i, i)).result_ttl(secs(10))))
        .unwrap();
    let long = q
        .job("add", &(9, 9))
        .result_ttl(secs(1000))
        .enqueue()
        .unwrap();
    f.burst(&add_handlers());
    assert_eq!(q.finished().count().unwrap(), 6);

    f.advance(secs(10) - ms(1));
    f.burst(&add_handlers());
    assert_eq!(q.finished().count().unwrap(), 6);

    f.advance(ms(1));
    let stats = f.burst(&add_handlers());
    assert_eq!(runs(&stats), 0);
    assert_eq!(q.finished().job_ids().unwrap(), [long.id()]);
    for job in &jobs {
        assert!(f.store.job(job.id()).unwrap().is_none());
    }

    f.advance(secs(990));
    f.burst(&add_handlers());
    assert_eq!(q.finished().count().unwrap(), 0);
}

#[test]
fn a_running_worker_cleans_up_expired_jobs_too() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let worker = Worker::builder(&f.store, add_handlers())
        .threads(1)
        .start()
        .unwrap();
    let job = q
        .job("add", &(1, 1))
        .result_ttl(secs(10))
        .enqueue()
        .unwrap();
    assert_eq!(job.wait(PATIENCE).unwrap(), Status::Finished);
    f.advance(secs(10));
    // The clock jump wakes the dispatcher, which removes the job. Two marker
    // jobs run one after the other prove that the dispatcher has been through
    // a whole loop (claim, then expiry) since the jump: the second is claimed
    // in a later loop than the first.
    for _ in 0..2 {
        let marker = q.enqueue("add", &(0, 0)).unwrap();
        assert_eq!(marker.wait(PATIENCE).unwrap(), Status::Finished);
    }
    assert!(f.store.job(job.id()).unwrap().is_none());
    worker.shutdown(PATIENCE).unwrap();
}

// --------------------------------------------------------------- misc. config

#[test]
fn workers_are_not_burst_by_default_and_burst_returns_stats() {
    let f = Fixture::new();
    let ran = Arc::new(AtomicU32::new(0));
    let mut h = Handlers::new();
    let r = ran.clone();
    h.register("tick", move |_: ()| -> Result<(), JobError> {
        r.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    // Started with nothing to do, it stays up and runs a later job.
    let worker = Worker::builder(&f.store, h.clone())
        .threads(1)
        .start()
        .unwrap();
    let job = f.store.queue("default").enqueue("tick", &()).unwrap();
    assert_eq!(job.wait(PATIENCE).unwrap(), Status::Finished);
    // (`stats()` may lag the store by a moment; the final stats are exact.)
    assert_eq!(worker.shutdown(PATIENCE).unwrap().succeeded, 1);

    f.store.queue("default").enqueue("tick", &()).unwrap();
    let stats = Worker::builder(&f.store, h).threads(1).burst().unwrap();
    assert_eq!(stats.succeeded, 1);
    assert_eq!(ran.load(Ordering::SeqCst), 2);
}

#[test]
fn shutdown_right_after_a_job_finishes_never_times_out() {
    // Shutdown races the dispatcher's wake-up from the run that just ended,
    // many times over: a lost wake-up leaves an idle pool asleep until its
    // next timed wake (minutes away here) and shutdown times out.
    let rounds: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::builder(dir.path().join("s"))
                    .durability(dueq::Durability::Buffered)
                    .open()
                    .unwrap();
                for i in 0..60 {
                    let worker = Worker::builder(&store, add_handlers())
                        .threads(1)
                        .start()
                        .unwrap();
                    let job = store.queue("default").enqueue("add", &(t, i)).unwrap();
                    assert_eq!(job.wait(PATIENCE).unwrap(), Status::Finished);
                    if let Err(e) = worker.shutdown(secs(3)) {
                        return Err(format!("thread {t}, round {i}: {e:?}"));
                    }
                }
                Ok(())
            })
        })
        .collect();
    let failures: Vec<String> = rounds
        .into_iter()
        .filter_map(|r| r.join().unwrap().err())
        .collect();
    assert!(failures.is_empty(), "{failures:?}");
}
