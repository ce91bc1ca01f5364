//! Corrupt data on disk, in a real store: records with flipped bytes, cut
//! short, or with an unknown version byte; an index key that does not
//! decode. The affected job goes to failed with an error saying its record
//! is corrupt (raw bytes kept), the worker keeps going, nothing else is
//! touched.

mod common;
use common::open_raw;

use std::path::Path;

use dueq::{Handlers, JobError, Status, Store, Worker};

fn handlers() -> Handlers {
    let mut h = Handlers::new();
    h.register("double", |n: u64| -> Result<u64, JobError> { Ok(n * 2) });
    h
}

/// Rewrites the raw record of `id` in the store's `jobs` tree.
fn tamper(path: &Path, id: &str, f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let db = open_raw(path);
    let jobs = db.open_tree("jobs").unwrap();
    let mut raw = jobs.get(id).unwrap().unwrap().to_vec();
    f(&mut raw);
    jobs.insert(id, raw.clone()).unwrap();
    db.flush().unwrap();
    raw
}

#[test]
fn corrupt_records_are_failed_and_quarantined_and_the_rest_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let store = Store::open(&path).unwrap();
        let q = store.queue("default");
        for i in 0..10u64 {
            q.job("double", &i)
                .id(format!("job-{i}"))
                .enqueue()
                .unwrap();
        }
    }
    let flipped = tamper(&path, "job-2", |raw| {
        let mid = raw.len() / 2;
        raw[mid] ^= 0xff;
        raw[1] ^= 0x55;
    });
    let truncated = tamper(&path, "job-5", |raw| raw.truncate(raw.len() / 3));
    let versioned = tamper(&path, "job-7", |raw| raw[0] = 0xee);

    let store = Store::open(&path).unwrap();
    // Reading a corrupt job says so instead of panicking or misreading.
    for id in ["job-5", "job-7"] {
        let err = store.job(id).unwrap_err();
        assert!(matches!(err, dueq::Error::Corrupt { .. }), "{id}: {err}");
    }
    let stats = Worker::builder(&store, handlers())
        .threads(2)
        .burst()
        .unwrap();
    assert_eq!(stats.succeeded, 7, "{stats:?}");
    assert!(stats.corrupt >= 2, "{stats:?}");

    for (id, raw) in [("job-5", &truncated), ("job-7", &versioned)] {
        let job = store.job(id).unwrap().unwrap();
        assert_eq!(job.status().unwrap(), Status::Failed, "{id}");
        let error = job.error().unwrap().unwrap();
        assert!(error.contains("corrupt record"), "{id}: {error}");
        assert_eq!(store.quarantined(id).unwrap().as_ref(), Some(raw), "{id}");
    }
    assert!(store
        .job("job-7")
        .unwrap()
        .unwrap()
        .error()
        .unwrap()
        .unwrap()
        .contains("unknown record format version"));
    // A flipped byte may or may not still decode (bincode has no checksum;
    // sled checksums its log). Either it ran or it is failed as corrupt.
    let job2 = store.job("job-2").unwrap().unwrap();
    match job2.status().unwrap() {
        Status::Failed => assert_eq!(store.quarantined("job-2").unwrap(), Some(flipped)),
        Status::Finished => assert!(store.quarantined("job-2").unwrap().is_none()),
        other => panic!("job-2 is {other}"),
    }
    for i in [0, 1, 3, 4, 6, 8, 9u64] {
        let job = store.job(&format!("job-{i}")).unwrap().unwrap();
        assert_eq!(job.result::<u64>().unwrap(), Some(i * 2));
    }
    let failed = store.queue("default").failed().job_ids().unwrap();
    assert!(failed.contains(&"job-5".to_owned()) && failed.contains(&"job-7".to_owned()));
}

#[test]
fn a_garbage_index_entry_does_not_stop_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let store = Store::open(&path).unwrap();
        store
            .queue("default")
            .job("double", &1u64)
            .id("real")
            .enqueue()
            .unwrap();
    }
    {
        let db = open_raw(&path);
        let index = db.open_tree("index").unwrap();
        // Queue 0's READY range: an entry naming a job that does not exist,
        // and a short key that is not a valid index key.
        let mut orphan = vec![0, 0, 0, 0, 0];
        orphan.extend_from_slice(&1u64.to_be_bytes());
        orphan.extend_from_slice(&7u64.to_be_bytes());
        index.insert(orphan, "ghost").unwrap();
        index.insert(vec![0, 0, 0, 0, 0, 0, 0], "short").unwrap();
        db.flush().unwrap();
    }
    let store = Store::open(&path).unwrap();
    let stats = Worker::builder(&store, handlers())
        .threads(1)
        .burst()
        .unwrap();
    assert_eq!(stats.succeeded, 1);
    assert_eq!(
        store.job("real").unwrap().unwrap().result::<u64>().unwrap(),
        Some(2)
    );
    assert!(store.job("ghost").unwrap().is_none());
    assert_eq!(store.queue("default").count().unwrap(), 0);
}
