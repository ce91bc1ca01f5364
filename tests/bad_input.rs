//! Bad input: every failure mode gives a clear error that says what to do,
//! and nothing that was accepted is lost.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use common::{open_manual, runs, secs, t0, Fixture};
use dueq::{Error, Handlers, JobError, ManualClock, Retry, Status, Store, Worker};

fn handlers() -> Handlers {
    let mut h = Handlers::new();
    h.register("add", |(a, b): (i64, i64)| -> Result<i64, JobError> {
        Ok(a + b)
    });
    h.register("echo", |s: String| -> Result<String, JobError> { Ok(s) });
    h
}

// ------------------------------------------------------- failures in a run

#[test]
fn an_unknown_handler_is_a_failed_attempt_naming_it_and_retry_applies() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let job = q
        .job("no_such_handler", &1)
        .retry(Retry::max(1).intervals([30]))
        .enqueue()
        .unwrap();
    let stats = f.burst(&handlers());
    assert_eq!((stats.succeeded, stats.failed), (0, 1));
    let info = job.info().unwrap();
    assert_eq!(info.status, Status::Scheduled, "the retry policy applies");
    assert_eq!(info.due_at, Some(t0() + common::chrono(secs(30))));
    let error = info.error.unwrap();
    assert!(error.contains("unknown handler"), "{error}");
    assert!(error.contains("\"no_such_handler\""), "{error}");
    assert!(
        error.contains("Handlers::register"),
        "says what to do: {error}"
    );

    // Registering it later makes the retry succeed: nothing was lost.
    let mut fixed = handlers();
    fixed.register("no_such_handler", |n: i64| -> Result<i64, JobError> {
        Ok(n + 1)
    });
    f.advance(secs(30));
    assert_eq!(f.burst(&fixed).succeeded, 1);
    assert_eq!(job.result::<i64>().unwrap(), Some(2));
}

#[test]
fn an_unknown_handler_without_retries_ends_failed() {
    let f = Fixture::new();
    let job = f.store.queue("default").enqueue("missing", &()).unwrap();
    f.burst(&Handlers::new());
    assert_eq!(job.status().unwrap(), Status::Failed);
    assert!(job.error().unwrap().unwrap().contains("\"missing\""));
}

#[test]
fn arguments_that_do_not_decode_fail_the_attempt_naming_handler_and_type() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let job = q
        .job("add", &"not a pair")
        .retry(Retry::max(2))
        .enqueue()
        .unwrap();
    let stats = f.burst(&handlers());
    // Zero-wait retries run in the same burst; each fails the same way.
    assert_eq!((stats.succeeded, stats.failed), (0, 3));
    assert_eq!(job.status().unwrap(), Status::Failed);
    assert_eq!(job.info().unwrap().attempts, 3);
    let error = job.error().unwrap().unwrap();
    assert!(error.contains("\"add\""), "names the handler: {error}");
    assert!(error.contains("(i64, i64)"), "names the type: {error}");
    assert!(error.contains("do not decode"), "{error}");
    // The arguments are kept as given, for inspection.
    assert_eq!(job.info().unwrap().args_json, "\"not a pair\"");
}

#[test]
fn a_result_over_the_payload_cap_is_a_failed_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let store = Store::builder(dir.path().join("s"))
        .clock(clock.clone())
        .max_payload(100)
        .open()
        .unwrap();
    let mut h = Handlers::new();
    h.register("grow", |n: usize| -> Result<String, JobError> {
        Ok("x".repeat(n))
    });
    let q = store.queue("default");
    let big = q.job("grow", &200).retry(Retry::max(1)).enqueue().unwrap();
    let fits = q.enqueue("grow", &98).unwrap(); // "xxx…" is 100 bytes of JSON
    let stats = common::burst(&store, &h);
    assert_eq!((stats.succeeded, stats.failed), (1, 2));
    assert_eq!(big.status().unwrap(), Status::Failed);
    assert_eq!(big.info().unwrap().attempts, 2);
    assert_eq!(big.result::<String>().unwrap(), None);
    let error = big.error().unwrap().unwrap();
    assert!(error.contains("result"), "{error}");
    assert!(error.contains("202 bytes"), "{error}");
    assert!(error.contains("limit of 100 bytes"), "{error}");
    assert_eq!(fits.status().unwrap(), Status::Finished);
    assert_eq!(fits.result::<String>().unwrap().unwrap().len(), 98);
}

// --------------------------------------------------------- refused enqueues

#[test]
fn arguments_over_the_payload_cap_are_refused_and_nothing_is_enqueued() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path().join("s"))
        .max_payload(100)
        .open()
        .unwrap();
    let q = store.queue("default");
    let big = "y".repeat(99); // 101 bytes of JSON
    let err = q.enqueue("echo", &big).unwrap_err();
    assert!(
        matches!(
            err,
            Error::PayloadTooLarge {
                what: "arguments",
                size: 101,
                limit: 100
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("101 bytes"), "{msg}");
    assert!(msg.contains("max_payload"), "says what to do: {msg}");
    assert!(msg.contains("reference"), "says what to do: {msg}");

    // Every path refuses it, and a batch with one oversized job enqueues
    // nothing at all.
    assert!(matches!(
        q.enqueue_in(secs(1), "echo", &big),
        Err(Error::PayloadTooLarge { .. })
    ));
    assert!(matches!(
        q.job("echo", &big).id("named").enqueue(),
        Err(Error::PayloadTooLarge { .. })
    ));
    let err = q
        .enqueue_many([q.job("echo", &"small"), q.job("echo", &big)])
        .unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err:?}");
    assert_eq!(q.count().unwrap(), 0);
    assert_eq!(q.scheduled().count().unwrap(), 0);
    assert!(store.job("named").unwrap().is_none());

    // Exactly at the limit is accepted.
    let at_limit = "z".repeat(98);
    let job = q.enqueue("echo", &at_limit).unwrap();
    assert_eq!(q.job_ids().unwrap(), [job.id()]);
}

#[test]
fn the_default_payload_cap_is_64_kib() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    assert_eq!(dueq::DEFAULT_MAX_PAYLOAD, 64 << 10);
    q.enqueue("echo", &"a".repeat((64 << 10) - 2)).unwrap();
    let err = q.enqueue("echo", &"a".repeat((64 << 10) - 1)).unwrap_err();
    assert!(
        matches!(err, Error::PayloadTooLarge { limit, .. } if limit == 64 << 10),
        "{err:?}"
    );
}

#[test]
fn arguments_that_are_not_json_are_refused() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let mut map = HashMap::new();
    map.insert((1, 2), "tuple keys are not JSON object keys");
    let err = q.enqueue("echo", &map).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Encode {
                what: "arguments",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("JSON"), "{err}");
    assert_eq!(q.count().unwrap(), 0);
}

#[test]
fn invalid_job_ids_are_refused() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let long = "a".repeat(129);
    let cases: [(&str, &str); 8] = [
        ("", "empty"),
        (&long, "longer than 128"),
        ("a b", "only letters, digits"),
        ("a/b", "only letters, digits"),
        ("a.b", "only letters, digits"),
        ("naïve", "only letters, digits"),
        ("a\nb", "only letters, digits"),
        ("x:y", "only letters, digits"),
    ];
    for (id, phrase) in cases {
        for attempt in 0..3 {
            let builder = q.job("add", &(1, 2)).id(id);
            let err = match attempt {
                0 => builder.enqueue(),
                1 => builder.enqueue_in(secs(5)),
                _ => builder.enqueue_at(t0()),
            }
            .unwrap_err();
            assert!(
                matches!(&err, Error::InvalidJobId { id: given, .. } if given == id),
                "{id:?}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(phrase), "{id:?}: {msg}");
        }
        assert!(f.store.job(id).unwrap().is_none());
    }
    assert_eq!(q.count().unwrap(), 0);
    assert_eq!(q.scheduled().count().unwrap(), 0);

    // The edges that are valid.
    let max = "Z".repeat(128);
    for id in [max.as_str(), "a", "A-z_0-9", "-", "_"] {
        let job = q.job("add", &(1, 2)).id(id).enqueue().unwrap();
        assert_eq!(job.id(), id);
    }
}

#[test]
fn a_duplicate_id_is_refused_and_the_original_is_unchanged() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let original = q
        .job("add", &(1, 2))
        .id("unique-1")
        .description("first")
        .enqueue()
        .unwrap();
    let before = original.info().unwrap();

    let err = q
        .job("echo", &"second")
        .id("unique-1")
        .description("second")
        .enqueue()
        .unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateJobId { id } if id == "unique-1"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("already exists"), "{msg}");
    assert!(msg.contains("pick another id"), "says what to do: {msg}");
    assert_eq!(original.info().unwrap(), before);

    // Ids are unique across queues and states too.
    let other = f.store.queue("other");
    assert!(matches!(
        other.job("add", &(0, 0)).id("unique-1").enqueue_in(secs(9)),
        Err(Error::DuplicateJobId { .. })
    ));
    f.burst(&handlers());
    assert_eq!(original.status().unwrap(), Status::Finished);
    let after_run = original.info().unwrap();
    assert!(matches!(
        q.job("add", &(0, 0)).id("unique-1").enqueue(),
        Err(Error::DuplicateJobId { .. })
    ));
    assert_eq!(original.info().unwrap(), after_run);
    assert_eq!(original.result::<i64>().unwrap(), Some(3));
    assert_eq!(
        other.count().unwrap() + other.scheduled().count().unwrap(),
        0
    );
}

#[test]
fn invalid_queue_names_are_refused() {
    let f = Fixture::new();
    let long = "q".repeat(201);
    for (name, phrase) in [
        ("", "empty"),
        (long.as_str(), "longer than 200"),
        ("tab\there", "control characters"),
    ] {
        let q = f.store.queue(name);
        let err = q.enqueue("add", &(1, 2)).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidQueueName { name: given, .. } if given == name),
            "{name:?}: {err:?}"
        );
        assert!(err.to_string().contains(phrase), "{err}");
        assert!(matches!(
            q.enqueue_many([q.job("add", &(1, 2))]),
            Err(Error::InvalidQueueName { .. })
        ));
    }
    assert!(f.store.queues().is_empty());
    // Names are otherwise free-form.
    let q = f.store.queue("emails: high/priority é");
    q.enqueue("add", &(1, 2)).unwrap();
    assert_eq!(q.count().unwrap(), 1);
    assert_eq!(
        f.store
            .queue("q".repeat(200))
            .enqueue("add", &(0, 0))
            .unwrap()
            .info()
            .unwrap()
            .queue
            .len(),
        200
    );
}

#[test]
fn reading_a_result_with_the_wrong_type_is_a_clear_error() {
    let f = Fixture::new();
    let job = f.store.queue("default").enqueue("add", &(2, 2)).unwrap();
    f.burst(&handlers());
    let err = job.result::<Vec<String>>().unwrap_err();
    assert!(matches!(&err, Error::Decode { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("Vec<"), "names the type asked for: {msg}");
    assert!(msg.contains("the type the handler returned"), "{msg}");
    assert_eq!(
        job.result::<i64>().unwrap(),
        Some(4),
        "the result is intact"
    );
}

#[test]
fn operations_on_a_missing_job_say_so() {
    let f = Fixture::new();
    let job = f.store.queue("default").enqueue("add", &(1, 1)).unwrap();
    job.delete().unwrap();
    for err in [
        job.status().unwrap_err(),
        job.info().unwrap_err(),
        job.cancel().unwrap_err(),
        job.requeue().unwrap_err(),
        job.delete().unwrap_err(),
        job.wait(secs(1)).unwrap_err(),
    ] {
        assert!(
            matches!(&err, Error::NoSuchJob { id } if id == job.id()),
            "{err:?}"
        );
        assert!(err.to_string().contains("deleted"), "{err}");
    }
}

#[test]
fn extreme_delays_are_accepted_and_do_not_upset_a_worker() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s")).unwrap();
    let q = store.queue("default");
    let never = q
        .enqueue_in(std::time::Duration::MAX, "add", &(1, 1))
        .unwrap();
    let far = q
        .enqueue_at(chrono::DateTime::<chrono::Utc>::MAX_UTC, "add", &(1, 1))
        .unwrap();
    let past = q
        .enqueue_at(chrono::DateTime::<chrono::Utc>::MIN_UTC, "add", &(2, 2))
        .unwrap();
    assert_eq!(never.status().unwrap(), Status::Scheduled);
    assert_eq!(far.status().unwrap(), Status::Scheduled);
    assert_eq!(
        past.status().unwrap(),
        Status::Queued,
        "a time in the past means now"
    );
    // A real worker sleeps towards the far due times without overflowing,
    // and still runs what is due.
    let worker = Worker::builder(&store, handlers())
        .threads(1)
        .start()
        .unwrap();
    assert_eq!(past.wait(secs(20)).unwrap(), Status::Finished);
    let now_job = q.enqueue("add", &(3, 3)).unwrap();
    assert_eq!(now_job.wait(secs(20)).unwrap(), Status::Finished);
    assert_eq!(never.status().unwrap(), Status::Scheduled);
    assert_eq!(far.status().unwrap(), Status::Scheduled);
    let stats = worker.shutdown(secs(20)).unwrap();
    assert_eq!((stats.succeeded, stats.failed), (2, 0));
}

// -------------------------------------------------------- opening the store

#[test]
fn opening_a_store_twice_is_store_in_use_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.dueq");
    let first = Store::open(&path).unwrap();
    let job = first.queue("default").enqueue("add", &(1, 1)).unwrap();

    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(&err, Error::StoreInUse { path: p } if *p == path),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "names the path: {msg}"
    );
    assert!(msg.contains("share the open `Store` handle"), "{msg}");
    // A builder with other options is refused the same way.
    assert!(matches!(
        Store::builder(&path).max_payload(10).open(),
        Err(Error::StoreInUse { .. })
    ));

    // The first handle is unharmed.
    assert_eq!(job.status().unwrap(), Status::Queued);
    first.queue("default").enqueue("add", &(2, 2)).unwrap();
    assert_eq!(first.queue("default").count().unwrap(), 2);
    drop((job, first));
    // Once it is closed, the store opens again with everything in it.
    let again = Store::open(&path).unwrap();
    assert_eq!(again.queue("default").count().unwrap(), 2);
}

#[test]
fn a_directory_with_an_unrelated_file_is_foreign_data() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"my notes").unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::ForeignData { path, .. } if path == dir.path()),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("not a dueq store"), "{msg}");
    assert!(
        msg.contains("point dueq at an empty or dueq directory"),
        "{msg}"
    );
    // Nothing was written there.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["notes.txt"]);
    assert_eq!(
        std::fs::read(dir.path().join("notes.txt")).unwrap(),
        b"my notes"
    );
}

#[test]
fn a_file_instead_of_a_directory_is_foreign_data() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"data").unwrap();
    let err = Store::open(&file).unwrap_err();
    assert!(matches!(&err, Error::ForeignData { .. }), "{err:?}");
    assert!(err.to_string().contains("not a dueq store"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"data");
}

#[test]
fn a_leftover_generating_snapshot_does_not_stop_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let clock = ManualClock::new(t0());
    let id = {
        let store = open_manual(&path, &clock);
        let q = store.queue("default");
        q.job("add", &(1, 1)).id("kept").enqueue().unwrap();
        q.enqueue_in(secs(60), "add", &(2, 2))
            .unwrap()
            .id()
            .to_owned()
    };
    let leftover = path.join("snap.0000000000000000.generating");
    std::fs::write(&leftover, b"half a snapshot").unwrap();

    let store = open_manual(&path, &clock);
    assert!(!leftover.exists(), "the unfinished snapshot is removed");
    assert_eq!(store.queue("default").job_ids().unwrap(), ["kept"]);
    assert_eq!(
        store.job(&id).unwrap().unwrap().status().unwrap(),
        Status::Scheduled
    );
}

#[test]
fn a_plain_sled_database_with_data_is_foreign_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other-app");
    {
        let db = sled::open(&path).unwrap();
        db.insert(b"user:1", b"alice".to_vec()).unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(&err, Error::ForeignData { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("not a dueq store"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");

    // The other program's data is intact, and the lock was released.
    let db = common::open_raw(&path);
    assert_eq!(db.get(b"user:1").unwrap().as_deref(), Some(&b"alice"[..]));
}

#[test]
fn a_plain_sled_database_with_data_in_a_named_tree_is_foreign_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other-app");
    {
        let db = sled::open(&path).unwrap();
        db.open_tree("users")
            .unwrap()
            .insert(b"1", b"bob".to_vec())
            .unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(&err, Error::ForeignData { .. }), "{err:?}");
    assert!(
        err.to_string().contains("users"),
        "names what it found: {err}"
    );
}

#[test]
fn refusing_a_foreign_sled_database_leaves_it_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other-app");
    let trees_before = {
        let db = sled::open(&path).unwrap();
        db.insert(b"k", b"v".to_vec()).unwrap();
        db.flush().unwrap();
        let mut names = db.tree_names();
        names.sort();
        names
    };
    assert!(matches!(Store::open(&path), Err(Error::ForeignData { .. })));
    let db = common::open_raw(&path);
    let mut after = db.tree_names();
    after.sort();
    let show = |v: &[sled::IVec]| -> Vec<String> {
        v.iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    };
    assert_eq!(show(&after), show(&trees_before));
}

// ---------------------------------------------------------- worker options

#[test]
fn a_worker_with_zero_threads_is_invalid_argument() {
    let f = Fixture::new();
    f.store.queue("default").enqueue("add", &(1, 1)).unwrap();
    let err = Worker::builder(&f.store, handlers())
        .threads(0)
        .start()
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::InvalidArgument {
                what: "threads",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("at least one thread"), "{err}");
    let err = Worker::builder(&f.store, handlers())
        .threads(0)
        .burst()
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::InvalidArgument {
                what: "threads",
                ..
            }
        ),
        "{err:?}"
    );
    // Nothing ran.
    assert_eq!(f.store.queue("default").count().unwrap(), 1);
}

#[test]
fn a_worker_with_no_queues_or_a_zero_lease_is_invalid_argument() {
    let f = Fixture::new();
    let err = Worker::builder(&f.store, handlers())
        .queues(Vec::<String>::new())
        .burst()
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument { what: "queues", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("at least one queue"), "{err}");
    let err = Worker::builder(&f.store, handlers())
        .lease(std::time::Duration::ZERO)
        .burst()
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument { what: "lease", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("longer than zero"), "{err}");
}

#[test]
fn a_failing_handler_error_chain_is_recorded() {
    let f = Fixture::new();
    let calls = Arc::new(AtomicU32::new(0));
    let mut h = Handlers::new();
    let c = calls.clone();
    h.register("parse", move |s: String| -> Result<u32, JobError> {
        c.fetch_add(1, Ordering::SeqCst);
        Ok(s.parse::<u32>()?)
    });
    let job = f.store.queue("default").enqueue("parse", &"12x").unwrap();
    let stats = f.burst(&h);
    assert_eq!(runs(&stats), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(job.status().unwrap(), Status::Failed);
    assert_eq!(
        job.error().unwrap().as_deref(),
        Some("invalid digit found in string")
    );
}
