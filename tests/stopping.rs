//! Cooperative timeouts, `job.stop()`, and callbacks, through real workers.
//! Time is a `ManualClock`: a run times out when the test moves the clock.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{secs, Fixture};
use dueq::{CallbackKind, Error, Handlers, JobError, Retry, Status, Worker};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn a_run_past_its_timeout_fails_by_policy_and_its_thread_is_replaced() {
    let f = Fixture::new();
    let (started_tx, started_rx) = mpsc::channel::<u32>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let saw_stop = Arc::new(AtomicU32::new(0));
    let mut h = Handlers::new();
    let s = saw_stop.clone();
    h.register_with_context("slow_once", move |ctx, _: ()| -> Result<u32, JobError> {
        started_tx.send(ctx.attempt()).unwrap();
        if ctx.attempt() == 1 {
            // Ignores the deadline until released: it can only be abandoned.
            release_rx.lock().unwrap().recv().unwrap();
            if ctx.should_stop() {
                s.fetch_add(1, Ordering::SeqCst);
            }
            return Ok(1); // too late: discarded
        }
        Ok(ctx.attempt())
    });
    let worker = Worker::builder(&f.store, h).threads(1).start().unwrap();
    let job = f
        .store
        .queue("default")
        .job("slow_once", &())
        .timeout(secs(5))
        .retry(Retry::max(1))
        .enqueue()
        .unwrap();
    assert_eq!(started_rx.recv_timeout(WAIT).unwrap(), 1);
    f.advance(secs(6));
    // The retry runs on a replacement thread while the first is stuck:
    // the pool of one kept its capacity.
    assert_eq!(started_rx.recv_timeout(WAIT).unwrap(), 2);
    assert_eq!(job.wait(WAIT).unwrap(), Status::Finished);
    assert_eq!(job.result::<u32>().unwrap(), Some(2));
    let info = job.info().unwrap();
    assert!(
        info.attempts_log[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("timeout"),
        "{:?}",
        info.attempts_log
    );
    release_tx.send(()).unwrap();
    let stats = worker.shutdown(WAIT).unwrap();
    assert_eq!(stats.timed_out, 1);
    assert_eq!(stats.succeeded, 1);
    assert_eq!(stats.failed, 1);
    assert_eq!(
        saw_stop.load(Ordering::SeqCst),
        1,
        "the late run saw should_stop"
    );
    assert_eq!(
        job.result::<u32>().unwrap(),
        Some(2),
        "the late outcome was discarded"
    );
}

#[test]
fn a_handler_that_checks_stops_at_its_timeout() {
    let f = Fixture::new();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let mut h = Handlers::new();
    h.register_with_context("loop", move |ctx, _: ()| -> Result<(), JobError> {
        started_tx.send(()).unwrap();
        loop {
            ctx.check()?;
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let worker = Worker::builder(&f.store, h).threads(1).start().unwrap();
    let job = f
        .store
        .queue("default")
        .job("loop", &())
        .timeout(secs(1))
        .enqueue()
        .unwrap();
    started_rx.recv_timeout(WAIT).unwrap();
    f.advance(secs(2));
    assert_eq!(job.wait(WAIT).unwrap(), Status::Failed);
    assert!(job.error().unwrap().unwrap().starts_with("timeout"));
    worker.shutdown(WAIT).unwrap();
}

#[test]
fn a_timed_out_run_is_fenced_and_cannot_heartbeat_its_job_back() {
    let f = Fixture::new();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (beat_tx, beat_rx) = mpsc::channel::<String>();
    let release_rx = Mutex::new(release_rx);
    let mut h = Handlers::new();
    h.register_with_context("late", move |ctx, _: ()| -> Result<u32, JobError> {
        started_tx.send(()).unwrap();
        // Ignores its deadline until released, then acts as if it held the
        // job still.
        release_rx.lock().unwrap().recv().unwrap();
        beat_tx.send(format!("{:?}", ctx.heartbeat())).unwrap();
        Ok(1)
    });
    let worker = Worker::builder(&f.store, h).threads(1).start().unwrap();
    let job = f
        .store
        .queue("default")
        .job("late", &())
        .timeout(secs(5))
        .retry(Retry::max(1).intervals([secs(60)]))
        .enqueue()
        .unwrap();
    started_rx.recv_timeout(WAIT).unwrap();
    f.advance(secs(6));
    // The timeout is a failed attempt; the retry waits a minute, with the
    // run's token still on the record.
    let deadline = std::time::Instant::now() + WAIT;
    while job.status().unwrap() != Status::Scheduled {
        assert!(std::time::Instant::now() < deadline, "not timed out");
        std::thread::sleep(Duration::from_millis(1));
    }
    release_tx.send(()).unwrap();
    let beat = beat_rx.recv_timeout(WAIT).unwrap();
    assert!(beat.contains("LeaseLost"), "{beat}");
    let stats = worker.shutdown(WAIT).unwrap();
    assert_eq!((stats.timed_out, stats.succeeded), (1, 0));
    let info = job.info().unwrap();
    assert_eq!(
        info.status,
        Status::Scheduled,
        "the late run took nothing back"
    );
    assert_eq!(info.attempts, 1);
    assert!(info.result_json.is_none());
    assert!(info.error.unwrap().starts_with("timeout"));
}

/// Handlers for stop and callback tests; callback calls are logged as
/// "kind:job:detail".
fn logged(log: &Arc<Mutex<Vec<String>>>) -> Handlers {
    let mut h = Handlers::new();
    h.register_with_context("wait_stop", |ctx, _: ()| -> Result<(), JobError> {
        while !ctx.should_stop() {
            std::thread::sleep(Duration::from_millis(1));
        }
        ctx.check()?;
        Ok(())
    });
    h.register("ok", |n: u32| -> Result<u32, JobError> { Ok(n) });
    h.register("fail", |_: ()| -> Result<(), JobError> {
        Err(JobError::new("boom"))
    });
    let l = log.clone();
    h.callback("log", move |cb: &dueq::Callback| -> Result<(), JobError> {
        let detail = match cb.kind() {
            CallbackKind::Success => format!("{:?}", cb.result::<u32>()?),
            _ => cb.error().unwrap_or_default().to_owned(),
        };
        l.lock()
            .unwrap()
            .push(format!("{:?}:{}:{}", cb.kind(), cb.attempt(), detail));
        Ok(())
    });
    h.callback("refuse", |_: &dueq::Callback| -> Result<(), JobError> {
        Err(JobError::new("not today"))
    });
    h.callback("explode", |_: &dueq::Callback| -> Result<(), JobError> {
        panic!("kaboom")
    });
    h
}

#[test]
fn stop_ends_a_running_job_as_stopped_never_retried_and_on_stopped_runs() {
    let f = Fixture::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let worker = Worker::builder(&f.store, logged(&log))
        .threads(1)
        .start()
        .unwrap();
    let q = f.store.queue("default");
    let job = q
        .job("wait_stop", &())
        .retry(Retry::max(3))
        .timeout(Duration::MAX)
        .on_stopped("log")
        .on_failure("log")
        .enqueue()
        .unwrap();
    let waiting = q.enqueue_in(secs(60), "ok", &1).unwrap();
    let err = waiting.stop().unwrap_err();
    assert!(
        matches!(err, Error::InvalidState { action: "stop", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("cancel"), "{err}");
    while job.status().unwrap() != Status::Started {
        std::thread::sleep(Duration::from_millis(1));
    }
    job.stop().unwrap();
    assert_eq!(job.wait(WAIT).unwrap(), Status::Stopped);
    let info = job.info().unwrap();
    assert_eq!(info.attempts, 1, "never retried");
    assert!(info.error.unwrap().starts_with("stopped"));
    assert_eq!(q.stopped().job_ids().unwrap(), vec![job.id().to_owned()]);
    worker.shutdown(WAIT).unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].starts_with("Stopped:1:stopped"), "{log:?}");
}

#[test]
fn callbacks_run_on_success_and_on_every_failed_attempt() {
    let f = Fixture::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let q = f.store.queue("default");
    q.job("ok", &5)
        .on_success("log")
        .on_failure("log")
        .enqueue()
        .unwrap();
    let failing = q
        .job("fail", &())
        .retry(Retry::max(2))
        .on_failure("log")
        .on_success("log")
        .enqueue()
        .unwrap();
    f.burst(&logged(&log));
    assert_eq!(failing.status().unwrap(), Status::Failed);
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            "Success:1:Some(5)",
            "Failure:1:boom",
            "Failure:2:boom",
            "Failure:3:boom"
        ]
    );
}

#[test]
fn a_failing_or_panicking_or_unknown_success_callback_fails_the_job() {
    let f = Fixture::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let q = f.store.queue("default");
    let refused = q.job("ok", &1).on_success("refuse").enqueue().unwrap();
    let exploded = q.job("ok", &2).on_success("explode").enqueue().unwrap();
    let unknown = q.job("ok", &3).on_success("nope").enqueue().unwrap();
    let on_failure_fails = q.job("fail", &()).on_failure("refuse").enqueue().unwrap();
    let stats = f.burst(&logged(&log));
    assert_eq!(stats.failed, 4);
    let err = |j: &dueq::Job| j.error().unwrap().unwrap();
    assert_eq!(refused.status().unwrap(), Status::Failed);
    assert!(err(&refused).contains("callback \"refuse\" failed: not today"));
    assert!(err(&exploded).contains("callback \"explode\" panicked: kaboom"));
    assert!(err(&unknown).contains("unknown callback \"nope\""));
    assert!(err(&unknown).contains("Handlers::callback"));
    let e = err(&on_failure_fails);
    assert!(e.starts_with("boom; callback \"refuse\" failed"), "{e}");
}

#[test]
fn a_callback_past_its_time_limit_fails_the_attempt() {
    let f = Fixture::new();
    let (in_cb_tx, in_cb_rx) = mpsc::channel::<()>();
    let mut h = Handlers::new();
    h.register("ok", |n: u32| -> Result<u32, JobError> { Ok(n) });
    h.callback("slow", move |cb: &dueq::Callback| -> Result<(), JobError> {
        in_cb_tx.send(()).unwrap();
        while !cb.should_stop() {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    });
    let worker = Worker::builder(&f.store, h)
        .threads(1)
        .callback_timeout(secs(3))
        .start()
        .unwrap();
    let job = f
        .store
        .queue("default")
        .job("ok", &1)
        .on_success("slow")
        .enqueue()
        .unwrap();
    in_cb_rx.recv_timeout(WAIT).unwrap();
    f.advance(secs(4));
    assert_eq!(job.wait(WAIT).unwrap(), Status::Failed);
    assert!(job.error().unwrap().unwrap().starts_with("timeout"));
    worker.shutdown(WAIT).unwrap();
}

#[test]
fn worker_stats_list_running_jobs_with_their_start() {
    let f = Fixture::new();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let mut h = Handlers::new();
    h.register("block", move |_: ()| -> Result<(), JobError> {
        started_tx.send(()).unwrap();
        release_rx.lock().unwrap().recv().unwrap();
        Ok(())
    });
    let worker = Worker::builder(&f.store, h).threads(1).start().unwrap();
    let job = f.store.queue("default").enqueue("block", &()).unwrap();
    started_rx.recv_timeout(WAIT).unwrap();
    let stats = worker.stats();
    assert_eq!(stats.running, 1);
    assert_eq!(
        stats.running_jobs,
        vec![(job.id().to_owned(), common::t0())]
    );
    release_tx.send(()).unwrap();
    job.wait(WAIT).unwrap();
    let stats = worker.shutdown(WAIT).unwrap();
    assert!(stats.running_jobs.is_empty());
    assert_eq!(stats.succeeded, 1);
}

#[test]
fn store_stats_include_the_workers_figures() {
    let f = Fixture::new();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let mut h = Handlers::new();
    h.register("block", move |_: ()| -> Result<(), JobError> {
        started_tx.send(()).unwrap();
        release_rx.lock().unwrap().recv().unwrap();
        Ok(())
    });
    h.register("fail", |_: ()| -> Result<(), JobError> {
        Err(JobError::new("no"))
    });
    let worker = Worker::builder(&f.store, h).threads(2).start().unwrap();
    let q = f.store.queue("default");
    let failing = q.enqueue("fail", &()).unwrap();
    assert_eq!(failing.wait(WAIT).unwrap(), Status::Failed);
    let blocking = q.enqueue("block", &()).unwrap();
    started_rx.recv_timeout(WAIT).unwrap();
    let stats = f.store.stats().unwrap();
    assert_eq!(stats.workers.running, 1);
    assert_eq!(stats.workers.running_jobs[0].0, blocking.id());
    assert_eq!(stats.workers.failed, 1);
    let text = dueq::prometheus(&stats);
    assert!(text.contains("\ndueq_worker_running 1\n"), "{text}");
    assert!(text.contains("\ndueq_worker_failed_total 1\n"), "{text}");
    release_tx.send(()).unwrap();
    blocking.wait(WAIT).unwrap();
    let last = worker.shutdown(WAIT).unwrap();
    assert_eq!((last.succeeded, last.failed), (1, 1));
    // A worker that was shut down no longer counts.
    assert_eq!(
        f.store.stats().unwrap().workers,
        dueq::WorkerStats::default()
    );
}
