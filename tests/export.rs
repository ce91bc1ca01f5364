//! Export/import round trips and the committed schema fixture.

mod common;
use common::copy_dir;

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dueq::{Handlers, JobError, JobInfo, ManualClock, Retry, Status, Store, Worker};

fn t0() -> DateTime<Utc> {
    "2026-12-01T12:00:00Z".parse().unwrap()
}

fn handlers() -> Handlers {
    let mut h = Handlers::new();
    h.register("ok", |n: u32| -> Result<u32, JobError> { Ok(n * 2) });
    h.register("fail", |_: u32| -> Result<u32, JobError> {
        Err(JobError::new("boom"))
    });
    h
}

/// Fills a store with jobs in every state but started. Returns their ids by
/// expected status.
fn fill(store: &Store, clock: &ManualClock) -> Vec<(String, Status)> {
    let q = store.queue("default");
    let other = store.queue("other");
    let mut ids = Vec::new();
    let finished = q.job("ok", &21).id("finished").enqueue().unwrap();
    let failed = q
        .job("fail", &1)
        .id("failed")
        .retry(Retry::max(1).intervals([0]))
        .enqueue()
        .unwrap();
    Worker::builder(store, handlers())
        .threads(1)
        .burst()
        .unwrap();
    let retrying = q
        .job("fail", &2)
        .id("retrying")
        .retry(Retry::max(2).intervals([60]))
        .description("waits out a backoff")
        .enqueue()
        .unwrap();
    Worker::builder(store, handlers())
        .threads(1)
        .burst()
        .unwrap();
    let queued = other.job("ok", &3).id("queued").enqueue().unwrap();
    let scheduled = q
        .job("ok", &4)
        .id("scheduled")
        .enqueue_in(Duration::from_secs(3600))
        .unwrap();
    let canceled = q.job("ok", &5).id("canceled").enqueue().unwrap();
    canceled.cancel().unwrap();
    let _ = clock;
    for (job, status) in [
        (finished, Status::Finished),
        (failed, Status::Failed),
        (retrying, Status::Scheduled),
        (queued, Status::Queued),
        (scheduled, Status::Scheduled),
        (canceled, Status::Canceled),
    ] {
        assert_eq!(job.status().unwrap(), status, "{}", job.id());
        ids.push((job.id().to_owned(), status));
    }
    ids
}

fn info(store: &Store, id: &str) -> JobInfo {
    store.job(id).unwrap().unwrap().info().unwrap()
}

#[test]
fn export_import_round_trips_every_state() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let a = Store::builder(dir.path().join("a"))
        .clock(clock.clone())
        .open()
        .unwrap();
    let ids = fill(&a, &clock);

    // A running job, exported mid-run.
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let mut h = Handlers::new();
    h.register("block", move |_: u32| -> Result<u32, JobError> {
        started_tx.send(()).unwrap();
        release_rx.lock().unwrap().recv().unwrap();
        Ok(0)
    });
    let running = a
        .queue("slow")
        .job("block", &0)
        .id("running")
        .retry(Retry::max(1))
        .enqueue()
        .unwrap();
    let worker = Worker::builder(&a, h)
        .queues(["slow"])
        .threads(1)
        .start()
        .unwrap();
    started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(running.status().unwrap(), Status::Started);

    let mut exported = Vec::new();
    let report = a.export(&mut exported).unwrap();
    assert_eq!(report.jobs, ids.len() + 1);
    release_tx.send(()).unwrap();
    worker.shutdown(Duration::from_secs(10)).unwrap();

    let text = String::from_utf8(exported.clone()).unwrap();
    assert!(text
        .lines()
        .next()
        .unwrap()
        .contains("\"format\":\"dueq-export\""));
    assert_eq!(text.lines().count(), ids.len() + 2);

    let b = Store::builder(dir.path().join("b"))
        .clock(clock.clone())
        .open()
        .unwrap();
    assert_eq!(b.import(&exported[..]).unwrap().jobs, ids.len() + 1);
    for (id, status) in &ids {
        let (x, y) = (info(&a, id), info(&b, id));
        assert_eq!(y.status, *status, "{id}");
        assert_eq!(x, y, "{id} differs after the round trip");
    }
    let finished = b.job("finished").unwrap().unwrap();
    assert_eq!(finished.result::<u32>().unwrap(), Some(42));
    assert_eq!(
        b.job("failed")
            .unwrap()
            .unwrap()
            .error()
            .unwrap()
            .as_deref(),
        Some("boom")
    );
    assert_eq!(info(&b, "retrying").attempts_log.len(), 1);

    // The run that was going on at export time comes in as an interrupted
    // run: the first worker resolves it as abandoned and retries it.
    assert_eq!(info(&b, "running").status, Status::Started);
    let mut h = Handlers::new();
    h.register("block", |_: u32| -> Result<u32, JobError> { Ok(7) });
    let stats = Worker::builder(&b, h)
        .queues(["slow"])
        .threads(1)
        .burst()
        .unwrap();
    assert_eq!(stats.abandoned, 1);
    let running = info(&b, "running");
    assert_eq!(running.status, Status::Finished);
    assert_eq!(running.attempts, 2);
    assert!(running.attempts_log[0]
        .error
        .as_deref()
        .unwrap()
        .contains("abandoned"));

    // Importing the same export again: the ids exist.
    let err = b.import(&exported[..]).unwrap_err();
    assert!(matches!(err, dueq::Error::DuplicateJobId { .. }), "{err}");
}

#[test]
fn import_keeps_fifo_order_of_jobs_due_together() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let a = Store::builder(dir.path().join("a"))
        .clock(clock.clone())
        .open()
        .unwrap();
    let q = a.queue("default");
    let jobs = q.enqueue_many((0..50).map(|i| q.job("ok", &i))).unwrap();
    let order: Vec<String> = jobs.iter().map(|j| j.id().to_owned()).collect();
    assert_eq!(q.job_ids().unwrap(), order);
    let mut exported = Vec::new();
    a.export(&mut exported).unwrap();
    let b = Store::builder(dir.path().join("b"))
        .clock(clock)
        .open()
        .unwrap();
    b.import(&exported[..]).unwrap();
    assert_eq!(b.queue("default").job_ids().unwrap(), order);
}

#[test]
fn import_rejects_what_is_not_an_export() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s")).unwrap();
    for input in ["", "{\"hello\":1}\n", "{\"format\":\"dueq-export\",\"version\":99,\"schema\":1,\"exported_at\":\"2026-01-01T00:00:00Z\"}\n"] {
        let err = store.import(input.as_bytes()).unwrap_err();
        assert!(matches!(err, dueq::Error::InvalidArgument { what: "import", .. }), "{err}");
    }
    let bad_line = "{\"format\":\"dueq-export\",\"version\":1,\"schema\":1,\"exported_at\":\"2026-01-01T00:00:00Z\"}\n{\"id\":3}\n";
    let err = store.import(bad_line.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    assert!(store.queues().is_empty());
}

const FIXTURE: &str = "tests/fixtures/schema1";

/// The store under tests/fixtures was written by schema 1. Current code must
/// open it and see its jobs, in their states, with their results.
#[test]
fn opens_the_schema_1_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixture");
    copy_dir(Path::new(FIXTURE), &path);
    let clock = ManualClock::new(t0());
    let store = Store::builder(&path).clock(clock.clone()).open().unwrap();
    let expected = [
        ("finished", Status::Finished),
        ("failed", Status::Failed),
        ("retrying", Status::Scheduled),
        ("queued", Status::Queued),
        ("scheduled", Status::Scheduled),
        ("canceled", Status::Canceled),
    ];
    for (id, status) in expected {
        let job = store
            .job(id)
            .unwrap()
            .unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(job.status().unwrap(), status, "{id}");
    }
    assert_eq!(
        store
            .job("finished")
            .unwrap()
            .unwrap()
            .result::<u32>()
            .unwrap(),
        Some(42)
    );
    assert_eq!(
        store
            .job("failed")
            .unwrap()
            .unwrap()
            .error()
            .unwrap()
            .as_deref(),
        Some("boom")
    );
    assert_eq!(
        info(&store, "retrying").description.as_deref(),
        Some("waits out a backoff")
    );
    // And it still works: the queued job runs.
    Worker::builder(&store, handlers())
        .queues(["other"])
        .threads(1)
        .burst()
        .unwrap();
    assert_eq!(
        store
            .job("queued")
            .unwrap()
            .unwrap()
            .result::<u32>()
            .unwrap(),
        Some(6)
    );
    // The store was upgraded to the current schema (3: the intake tree) at
    // open, so an older dueq refuses it instead of misreading its records.
    drop(store);
    let db = common::open_raw(&path);
    let meta = db.open_tree("meta").unwrap();
    assert_eq!(
        meta.get("schema").unwrap().unwrap().as_ref(),
        3u32.to_be_bytes()
    );
}

/// Writes the fixture. Run by hand when a new schema is released:
/// `cargo test --test export -- --ignored write_fixture`.
#[test]
#[ignore = "writes tests/fixtures; run by hand for a new schema"]
fn write_fixture() {
    let _ = std::fs::remove_dir_all(FIXTURE);
    let clock = ManualClock::new(t0());
    let store = Store::builder(FIXTURE).clock(clock.clone()).open().unwrap();
    fill(&store, &clock);
    // Keep finished and failed jobs for as long as the fixture lives.
    drop(store);
}

#[test]
fn schedules_round_trip_and_new_fields_too() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let a = Store::builder(dir.path().join("a"))
        .clock(clock.clone())
        .open()
        .unwrap();
    a.cron("nightly", "0 3 * * *", "report", &"sales").unwrap();
    a.every("tick", std::time::Duration::from_secs(60), "add", &(1, 2))
        .unwrap();
    a.pause_schedule("tick").unwrap();
    let q = a.queue("default");
    let parent = q
        .enqueue_in(std::time::Duration::from_secs(60), "add", &(1, 1))
        .unwrap();
    q.job("add", &(2, 2))
        .id("child")
        .depends_on(&parent)
        .meta("owner", &"ana")
        .enqueue()
        .unwrap();
    let mut backup = Vec::new();
    let report = a.export(&mut backup).unwrap();
    assert_eq!((report.jobs, report.schedules), (2, 2));

    let b = Store::builder(dir.path().join("b"))
        .clock(clock.clone())
        .open()
        .unwrap();
    let report = b.import(&backup[..]).unwrap();
    assert_eq!((report.jobs, report.schedules), (2, 2));
    assert_eq!(b.schedules().unwrap(), a.schedules().unwrap());
    let child = b.job("child").unwrap().unwrap().info().unwrap();
    assert_eq!(child.status, Status::Deferred);
    assert_eq!(child.waiting_on, vec![parent.id().to_owned()]);
    assert_eq!(child.meta_json, r#"{"owner":"ana"}"#);
    // The imported parent still releases its dependent.
    let mut h = Handlers::new();
    h.register("add", |(x, y): (i32, i32)| -> Result<i32, dueq::JobError> {
        Ok(x + y)
    });
    clock.advance(std::time::Duration::from_secs(60));
    dueq::Worker::builder(&b, h).threads(1).burst().unwrap();
    assert_eq!(
        b.job("child").unwrap().unwrap().status().unwrap(),
        Status::Finished
    );
}
