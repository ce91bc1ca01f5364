//! The wall clock jumping: no job is lost or run twice because of it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use dueq::{Handlers, JobError, ManualClock, Retry, Status, Store, Worker};

fn t0() -> chrono::DateTime<chrono::Utc> {
    "2026-12-01T12:00:00Z".parse().unwrap()
}

#[test]
fn a_forward_jump_past_the_lease_does_not_run_a_live_job_twice() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let store = Store::builder(dir.path().join("s"))
        .clock(clock.clone())
        .open()
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let mut h = Handlers::new();
    let r = runs.clone();
    h.register("slow", move |_: ()| -> Result<u32, JobError> {
        r.fetch_add(1, Ordering::SeqCst);
        started_tx.send(()).unwrap();
        release_rx.lock().unwrap().recv().unwrap();
        Ok(1)
    });
    h.register("quick", |_: ()| -> Result<u32, JobError> { Ok(2) });
    let worker = Worker::builder(&store, h)
        .threads(2)
        .lease(Duration::from_secs(1))
        .start()
        .unwrap();
    let q = store.queue("default");
    // No job_timeout: a ManualClock's jump is elapsed time too, and this
    // test is about leases, not timeouts (tests/timeout.rs has those; a
    // SystemClock measures timeouts on a monotonic clock).
    let slow = q
        .job("slow", &())
        .retry(Retry::max(3))
        .timeout(Duration::MAX)
        .enqueue()
        .unwrap();
    started_rx.recv_timeout(Duration::from_secs(10)).unwrap();

    // An hour passes in a blink (NTP step, suspend and resume).
    clock.advance(Duration::from_secs(3600));
    // A job enqueued after the jump finishing proves the dispatcher has
    // looked at the lapsed lease since.
    let quick = q.enqueue("quick", &()).unwrap();
    assert_eq!(
        quick.wait(Duration::from_secs(10)).unwrap(),
        Status::Finished
    );
    assert_eq!(slow.status().unwrap(), Status::Started);
    assert_eq!(slow.info().unwrap().attempts, 1);

    release_tx.send(()).unwrap();
    assert_eq!(
        slow.wait(Duration::from_secs(10)).unwrap(),
        Status::Finished
    );
    let stats = worker.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the job ran twice");
    assert_eq!(slow.info().unwrap().attempts, 1);
    assert_eq!(stats.abandoned, 0);
    assert_eq!(stats.fenced, 0);
}

#[test]
fn a_backward_jump_delays_scheduled_jobs_but_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let store = Store::builder(dir.path().join("s"))
        .clock(clock.clone())
        .open()
        .unwrap();
    let q = store.queue("default");
    let job = q.enqueue_in(Duration::from_secs(10), "ok", &()).unwrap();
    let due = job.info().unwrap().due_at.unwrap();
    let mut h = Handlers::new();
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    h.register("ok", move |_: ()| -> Result<(), JobError> {
        r.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });

    clock.set(t0() - chrono::Duration::hours(1));
    Worker::builder(&store, h.clone())
        .threads(1)
        .burst()
        .unwrap();
    assert_eq!(job.status().unwrap(), Status::Scheduled);
    assert_eq!(
        job.info().unwrap().due_at,
        Some(due),
        "due times are absolute (UTC)"
    );

    clock.set(due);
    Worker::builder(&store, h.clone())
        .threads(1)
        .burst()
        .unwrap();
    assert_eq!(job.status().unwrap(), Status::Finished);

    clock.set(t0() - chrono::Duration::hours(2));
    Worker::builder(&store, h).threads(1).burst().unwrap();
    assert_eq!(job.status().unwrap(), Status::Finished);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
