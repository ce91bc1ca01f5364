//! Model-based tests: random sequences of operations against a real store
//! and a naive in-memory model (`tests/support/model.rs`, shared with the
//! `model` fuzz target), compared after every step.
//!
//! `PROPTEST_CASES` overrides the number of cases (default 96).

#[path = "support/model.rs"]
mod model;

use model::{EnqueueSpec, Harness, Kind, Op, Policy, Ttl, When};
use proptest::prelude::*;

fn kind() -> impl Strategy<Value = Kind> {
    prop::sample::select(Kind::ALL.to_vec())
}

fn policy() -> impl Strategy<Value = Policy> {
    prop::sample::select(Policy::ALL.to_vec())
}

fn ttl() -> impl Strategy<Value = Ttl> {
    prop_oneof![
        3 => Just(Ttl::Forever),
        1 => Just(Ttl::Zero),
        2 => prop::sample::select(vec![1_u32, 5, 60]).prop_map(Ttl::Secs),
    ]
}

fn when() -> impl Strategy<Value = When> {
    prop_oneof![
        3 => Just(When::Now),
        2 => prop::sample::select(vec![0_u64, 1, 1_000, 5_000, 10_000]).prop_map(When::InMs),
        1 => prop::sample::select(vec![-5_000_i32, -1, 0, 1, 3_000]).prop_map(When::AtOffsetMs),
    ]
}

fn any_spec() -> impl Strategy<Value = EnqueueSpec> {
    (
        0..6_usize,
        0..2_usize,
        kind(),
        policy(),
        when(),
        ttl(),
        ttl(),
    )
        .prop_map(
            |(id, queue, kind, policy, when, result_ttl, failure_ttl)| EnqueueSpec {
                id,
                queue,
                kind,
                policy,
                when,
                result_ttl,
                failure_ttl,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => any_spec().prop_map(Op::Enqueue),
        1 => (any_spec(), any_spec()).prop_map(|(a, b)| Op::EnqueueMany(a, b)),
        4 => Just(Op::WorkAll),
        2 => (0..6_usize).prop_map(Op::Cancel),
        2 => (0..6_usize, 0..2_usize).prop_map(|(id, q)| Op::Requeue(id, q)),
        1 => (0..6_usize).prop_map(Op::Delete),
        1 => (0..2_usize).prop_map(Op::Empty),
        1 => (0..2_usize).prop_map(Op::RequeueAll),
        3 => prop::sample::select(vec![1_u32, 999, 1_000, 2_000, 5_000, 7_000, 10_000, 60_000])
            .prop_map(Op::AdvanceClock),
        1 => prop::sample::select(vec![1_u32, 1_000, 5_000]).prop_map(Op::RewindClock),
        1 => Just(Op::Restart),
        1 => Just(Op::ExportImport),
    ]
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(96);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn store_matches_model(ops in prop::collection::vec(op(), 1..=30)) {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Harness::new(dir.path());
        for op in &ops {
            h.step(op).map_err(TestCaseError::fail)?;
        }
    }
}

// ------------------------------------------------------ pinned sequences

fn spec(id: usize, kind: Kind, policy: Policy) -> EnqueueSpec {
    EnqueueSpec {
        id,
        queue: 0,
        kind,
        policy,
        when: When::Now,
        result_ttl: Ttl::Forever,
        failure_ttl: Ttl::Forever,
    }
}

fn run(ops: &[Op]) {
    let dir = tempfile::tempdir().unwrap();
    Harness::run(dir.path(), ops);
}

/// Zero-wait retries run again within the same burst; `Retry::max(3)` with
/// intervals `[0, 7]` waits 0, 0, then 7 s (rq's right alignment); requeue
/// keeps attempts, so a used-up policy fails the job after one more run.
#[test]
fn retries_in_one_burst_then_scheduled_then_requeue_keeps_attempts() {
    run(&[
        Op::Enqueue(spec(0, Kind::FailOnce, Policy::Max1)),
        Op::Enqueue(spec(1, Kind::AlwaysFail, Policy::Max3Mixed)),
        Op::Enqueue(spec(2, Kind::AlwaysFail, Policy::Max2Zero)),
        Op::WorkAll, // a: finished on run 2; b: scheduled after run 3; c: failed after run 3
        Op::Requeue(1, 0), // b is scheduled: InvalidState(Scheduled)
        Op::Cancel(0), // a is finished: InvalidState(Finished)
        Op::AdvanceClock(6_999),
        Op::WorkAll,
        Op::AdvanceClock(1),
        Op::WorkAll, // b: run 4 fails, no retries left
        Op::Requeue(1, 0),
        Op::Requeue(2, 0),
        Op::WorkAll, // both fail again at once (attempts 5 and 4)
        Op::Restart,
        Op::Requeue(1, 0),
        Op::Cancel(1),
        Op::Delete(1),
        Op::Delete(1),
        Op::Requeue(1, 0),
    ]);
}

/// `fail_once` without a retry policy fails; requeued, it succeeds on run 2.
/// Unknown handlers fail every run.
#[test]
fn requeued_fail_once_finishes_with_attempt_two() {
    run(&[
        Op::Enqueue(spec(0, Kind::FailOnce, Policy::None)),
        Op::Enqueue(spec(1, Kind::Unknown, Policy::Max1)),
        Op::WorkAll,
        Op::RequeueAll(0),
        Op::WorkAll,
        Op::Enqueue(spec(0, Kind::Ok, Policy::None)), // duplicate
    ]);
}

/// Finished and failed jobs outlive their TTL until something cleans them
/// (a worker starting, a store opening); `result_ttl(0)` deletes at once.
#[test]
fn ttls_expire_only_when_cleaned() {
    let mut a = spec(0, Kind::Ok, Policy::None);
    a.result_ttl = Ttl::Secs(5);
    let mut b = spec(1, Kind::AlwaysFail, Policy::None);
    b.failure_ttl = Ttl::Secs(5);
    let mut c = spec(2, Kind::Ok, Policy::Max1);
    c.result_ttl = Ttl::Zero;
    run(&[
        Op::Enqueue(a),
        Op::Enqueue(b),
        Op::Enqueue(c),
        Op::WorkAll,
        Op::AdvanceClock(5_000),
        Op::Restart, // expires a and b
        Op::Enqueue(a),
        Op::WorkAll,
        Op::AdvanceClock(4_999),
        Op::WorkAll,
        Op::AdvanceClock(1),
        Op::RewindClock(1),
        Op::AdvanceClock(1),
        Op::WorkAll, // expires a
    ]);
}

/// Scheduled jobs become queued by time alone, and back when the clock is
/// set back; `empty` takes only the due ones, and a past `enqueue_at` is now.
#[test]
fn scheduled_by_time_and_empty_takes_only_due_jobs() {
    let mut later = spec(0, Kind::Ok, Policy::None);
    later.when = When::InMs(1_000);
    let mut past = spec(1, Kind::Ok, Policy::None);
    past.when = When::AtOffsetMs(-5_000);
    let mut low = spec(2, Kind::Ok, Policy::None);
    low.queue = 1;
    run(&[
        Op::Enqueue(later),
        Op::Enqueue(past),
        Op::Enqueue(low),
        Op::Empty(0),
        Op::AdvanceClock(1_000),
        Op::RewindClock(1),
        Op::AdvanceClock(1),
        Op::Cancel(0),
        Op::Requeue(0, 0),
        Op::WorkAll,
    ]);
}

/// Export/import in the middle of things changes nothing: every state,
/// attempt log, TTL and retry policy survives, and jobs due at the same
/// instant keep their order, also against jobs enqueued after the import.
#[test]
fn export_import_mid_sequence_changes_nothing() {
    let mut scheduled = spec(3, Kind::Ok, Policy::None);
    scheduled.when = When::InMs(7_000);
    let mut expiring = spec(4, Kind::Ok, Policy::None);
    expiring.result_ttl = Ttl::Secs(5);
    let mut low = spec(5, Kind::AlwaysFail, Policy::Max2Pos);
    low.queue = 1;
    run(&[
        Op::Enqueue(spec(0, Kind::FailOnce, Policy::Max1)),
        Op::Enqueue(spec(1, Kind::AlwaysFail, Policy::Max3Mixed)),
        Op::Enqueue(spec(2, Kind::AlwaysFail, Policy::None)),
        Op::Enqueue(scheduled),
        Op::Enqueue(expiring),
        Op::Enqueue(low),
        Op::WorkAll,
        Op::Cancel(3),
        Op::ExportImport,
        Op::Requeue(2, 0),
        Op::Requeue(5, 0), // f is in queue "low": NoSuchJob in "default"
        Op::Enqueue(spec(3, Kind::Ok, Policy::None)), // canceled: duplicate
        Op::Delete(3),
        Op::Enqueue(spec(3, Kind::Ok, Policy::None)), // due with c, after it
        Op::AdvanceClock(7_000),
        Op::ExportImport, // e is past its TTL: an import keeps it until cleaned
        Op::WorkAll,
        Op::Restart,
        Op::ExportImport,
    ]);
}

/// Regression (found by this suite): a failed enqueue created its queue,
/// contrary to ARCHITECTURE.md (the queue is written in the same transaction
/// as the first job that uses it) and to the error contract ("an operation
/// that returns an error changed nothing").
#[test]
fn failed_enqueue_creates_no_queue() {
    let dir = tempfile::tempdir().unwrap();
    let store = dueq::Store::builder(dir.path().join("store"))
        .durability(dueq::Durability::Buffered)
        .open()
        .unwrap();
    store
        .queue("default")
        .job("job", "ok")
        .id("a")
        .enqueue()
        .unwrap();
    let err = store
        .queue("other")
        .job("job", "ok")
        .id("a")
        .enqueue()
        .unwrap_err();
    assert!(matches!(err, dueq::Error::DuplicateJobId { .. }), "{err}");
    let names: Vec<String> = store.queues().iter().map(|q| q.name().to_owned()).collect();
    assert_eq!(names, ["default"]);
}

fn manual_store(path: &std::path::Path, clock: &dueq::ManualClock) -> dueq::Store {
    dueq::Store::builder(path)
        .clock(clock.clone())
        .durability(dueq::Durability::Buffered)
        .open()
        .unwrap()
}

/// Regression (found by this suite): jobs due at the same instant run first
/// in, first out (ARCHITECTURE.md, "The index key"). An import keeps the
/// exported sequence numbers; before the sequence offset, the new store's
/// `generate_id` started low, so a job enqueued after the import sorted
/// before an imported job due at the same instant.
#[test]
fn import_keeps_fifo_for_jobs_enqueued_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let clock = dueq::ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
    let old = manual_store(&dir.path().join("old"), &clock);
    // Use up some sequence numbers, as any store in use has.
    for i in 0..5 {
        let job = old
            .queue("default")
            .job("job", "ok")
            .id(format!("gone-{i}"));
        job.enqueue().unwrap().delete().unwrap();
    }
    for i in 0..3 {
        old.queue("default")
            .job("job", "ok")
            .id(format!("old-{i}"))
            .enqueue()
            .unwrap();
    }
    let mut backup = Vec::new();
    old.export(&mut backup).unwrap();
    drop(old);
    let new = manual_store(&dir.path().join("new"), &clock);
    new.import(&backup[..]).unwrap();
    new.queue("default")
        .job("job", "ok")
        .id("new")
        .enqueue()
        .unwrap();
    assert_eq!(
        new.queue("default").job_ids().unwrap(),
        ["old-0", "old-1", "old-2", "new"]
    );
}

/// Regression (found by this suite): `Retry::exponential` documents an
/// infinite factor as valid ("just reaches cap sooner"), but the export
/// wrote it as JSON `null`, which the import rejects: the backup of such a
/// store could not be restored.
#[test]
fn export_import_round_trips_an_infinite_backoff_factor() {
    let dir = tempfile::tempdir().unwrap();
    let old = dueq::Store::builder(dir.path().join("old"))
        .durability(dueq::Durability::Buffered)
        .open()
        .unwrap();
    let retry = dueq::Retry::max(3).exponential(1, f64::INFINITY, 60);
    assert_eq!(retry.wait(2), std::time::Duration::from_secs(60));
    old.queue("default")
        .job("job", "ok")
        .id("a")
        .retry(retry.clone())
        .enqueue()
        .unwrap();
    let mut backup = Vec::new();
    old.export(&mut backup).unwrap();
    let new = dueq::Store::builder(dir.path().join("new"))
        .durability(dueq::Durability::Buffered)
        .open()
        .unwrap();
    let report = new.import(&backup[..]);
    assert!(
        report.is_ok(),
        "{report:?}\n{}",
        String::from_utf8_lossy(&backup)
    );
    let info = new.job("a").unwrap().unwrap().info().unwrap();
    assert_eq!(info.retry, Some(retry));
}

/// Regression (found by this suite), the same cause as above, worse: a key
/// the new store generated could be exactly an imported job's key (same
/// queue, class, time and sequence number). The enqueue then overwrote the
/// imported job's index entry: the imported job vanished from its
/// registries and never ran.
#[test]
fn import_then_enqueue_at_the_same_instant_loses_no_job() {
    let dir = tempfile::tempdir().unwrap();
    let clock = dueq::ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
    let at = dueq::Clock::now(&clock) + chrono::Duration::hours(1);
    let old = manual_store(&dir.path().join("old"), &clock);
    for i in 0..5 {
        let job = old
            .queue("default")
            .job("job", "ok")
            .id(format!("gone-{i}"));
        job.enqueue().unwrap().delete().unwrap();
    }
    old.queue("default")
        .job("job", "ok")
        .id("imported")
        .enqueue_at(at)
        .unwrap();
    let mut backup = Vec::new();
    old.export(&mut backup).unwrap();
    drop(old);

    let new = manual_store(&dir.path().join("new"), &clock);
    new.import(&backup[..]).unwrap();
    for i in 0..10 {
        let job = new.queue("default").job("job", "ok").id(format!("new-{i}"));
        job.enqueue_at(at).unwrap();
    }
    let scheduled = new.queue("default").scheduled().job_ids().unwrap();
    assert_eq!(scheduled.len(), 11, "{scheduled:?}");
    assert!(scheduled.iter().any(|id| id == "imported"), "{scheduled:?}");

    clock.advance(std::time::Duration::from_secs(3600));
    let mut handlers = dueq::Handlers::new();
    handlers.register("job", |s: String| -> Result<String, dueq::JobError> {
        Ok(s)
    });
    let stats = dueq::Worker::builder(&new, handlers)
        .threads(1)
        .burst()
        .unwrap();
    assert_eq!(stats.succeeded, 11);
    let imported = new.job("imported").unwrap().unwrap();
    assert_eq!(imported.status().unwrap(), dueq::Status::Finished);
}

/// The export writes floats (a retry policy's jitter and factor) as JSON
/// text, and the import reads them back with serde_json's default float
/// parser, which may be one ulp off; serde_json's `float_roundtrip` feature
/// makes it exact. Found by the `retry` fuzz target.
#[test]
fn export_import_round_trips_floats_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str| {
        dueq::Store::builder(dir.path().join(name))
            .durability(dueq::Durability::Buffered)
            .open()
            .unwrap()
    };
    let old = open("old");
    let retry = dueq::Retry::max(3).jitter(1.610_287_192_399_228_6e-230);
    old.queue("default")
        .job("job", "ok")
        .id("a")
        .retry(retry.clone())
        .enqueue()
        .unwrap();
    let mut backup = Vec::new();
    old.export(&mut backup).unwrap();
    let new = open("new");
    new.import(&backup[..]).unwrap();
    let info = new.job("a").unwrap().unwrap().info().unwrap();
    assert_eq!(info.retry, Some(retry));
}

/// `Retry::exponential` documents a factor of 1.0 (or below, or NaN) as "a
/// constant wait of `first`", but above 2^53 ms `first` goes through f64 and
/// can round up: the second wait is one ms longer than the first. (Waits
/// that long are ~285,000 years, so this only matters for the contract.)
/// Found by the `retry` fuzz target.
#[test]
fn exponential_factor_one_is_constant_above_2_pow_53() {
    let first = std::time::Duration::from_millis(43_503_281_359_529_671);
    let retry = dueq::Retry::max(3).exponential(first, 1.0, std::time::Duration::MAX);
    assert_eq!(retry.wait(1), first);
    assert_eq!(retry.wait(2), first);
}

/// Regression (found by the `model` fuzz target, `Restart`): dropping the
/// last handle of a store and opening it again at once failed now and then
/// with `StoreInUse` (here about once in a few hundred reopens after a
/// burst): sled 0.34's `Db::drop` returns before its background threads let
/// go of the file lock (spacejam/sled#1234, #1289), and dueq mapped the
/// `WouldBlock` straight to `StoreInUse`.
#[test]
fn reopen_right_after_drop_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let mut handlers = dueq::Handlers::new();
    handlers.register("job", |s: String| -> Result<String, dueq::JobError> {
        Ok(s)
    });
    for i in 0..300 {
        let store = match dueq::Store::builder(&path)
            .durability(dueq::Durability::Buffered)
            .open()
        {
            Ok(store) => store,
            Err(e) => panic!("reopen {i}: {e}"),
        };
        let q = store.queue("default");
        q.job("job", "ok").id(format!("j{i}")).enqueue().unwrap();
        dueq::Worker::builder(&store, handlers.clone())
            .threads(1)
            .burst()
            .unwrap();
    }
}
