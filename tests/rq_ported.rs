//! python-rq's own tests for retry, dependencies and registries, ported to
//! dueq's public API. Each test names the rq test(s) it ports
//! (`tests/<file>.py::<Class>.<test>` in rq/rq); where dueq differs from rq
//! on purpose, a `DIFFERENCE:` comment says how and why.
//!
//! rq's tests often poke Redis directly (`zadd` into a registry key, set a
//! status by hand, call `worker.handle_job_failure`). dueq has no such back
//! doors, so each scenario is rebuilt from real jobs: a burst worker on a
//! `ManualClock` for time, and, for rq's "a worker died mid-job" (a started
//! job whose registry score is in the past), a copy of the store's files
//! taken while a job runs, opened as a store that crashed mid-run.
//!
//! Differences that apply throughout:
//! * dueq never overwrites an existing job id (`DuplicateJobId`); a job is in
//!   exactly one registry, so `Registry::remove` deletes the job.
//! * Dependents of a parent that failed, was canceled, deleted or stopped
//!   are canceled with a reason naming the parent; rq leaves them deferred
//!   forever (rq issues #1093, #2074).
//! * A job whose `ttl` runs out goes to the canceled registry with an
//!   "expired" error; rq deletes it (or, for deferred jobs, fails it).
//! * Only the failed registry requeues; the others refuse with
//!   `InvalidArgument` (rq's `requeue` exists only on `FailedJobRegistry`).
//! * `result_ttl`/`failure_ttl` are `Duration::ZERO` (delete at once) and
//!   `Duration::MAX` (keep forever) where rq uses 0 and -1.

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{chrono, ms, open_manual, runs, secs, t0, Fixture};
use dueq::{
    Dependency, Error, Handlers, JobError, ManualClock, Repeat, Retry, Status, Store, Worker,
};

/// rq's fixtures: `say_hello` succeeds, `div_by_zero` always fails.
fn handlers() -> Handlers {
    let mut h = Handlers::new();
    h.register("say_hello", |name: String| -> Result<String, JobError> {
        Ok(format!("Hi there, {name}!"))
    });
    h.register("div_by_zero", |_: ()| -> Result<(), JobError> {
        Err(JobError::new("ZeroDivisionError: division by zero"))
    });
    h
}

/// A "note" handler that appends its argument to `log`, so tests can see the
/// order jobs ran in.
fn noting(log: &Arc<Mutex<Vec<String>>>) -> Handlers {
    let mut h = handlers();
    let l = log.clone();
    h.register("note", move |tag: String| -> Result<(), JobError> {
        l.lock().unwrap().push(tag);
        Ok(())
    });
    let l = log.clone();
    h.register_with_context("note_fail_once", move |ctx, tag: String| {
        l.lock().unwrap().push(format!("{tag}#{}", ctx.attempt()));
        if ctx.attempt() == 1 {
            return Err(JobError::new("first attempt fails"));
        }
        Ok(())
    });
    h
}

fn ids(jobs: &[&dueq::Job]) -> Vec<String> {
    jobs.iter().map(|j| j.id().to_owned()).collect()
}

/// rq's "a worker died while running the job": starts a worker on `store`,
/// waits until it runs a "hang" job, copies the store's files as they are
/// on disk at that moment into `to`, then lets the run finish. Opening the
/// copy is opening a store whose process died mid-run; dueq recovers the
/// run at open as an abandoned attempt (rq: `StartedJobRegistry.cleanup`
/// with `AbandonedJobError`, after the heartbeat lapses).
fn copy_mid_run(store: &Store, clock: &ManualClock, to: &Path) -> Store {
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let release_rx = Mutex::new(release_rx);
    let mut h = Handlers::new();
    h.register("hang", move |_: ()| -> Result<(), JobError> {
        started_tx.lock().unwrap().send(()).unwrap();
        release_rx
            .lock()
            .unwrap()
            .recv_timeout(secs(30))
            .map_err(|_| JobError::new("never released"))?;
        Ok(())
    });
    let worker = Worker::builder(store, h).threads(1).start().unwrap();
    started_rx.recv_timeout(secs(30)).unwrap();
    store.flush().unwrap();
    common::copy_dir(store.path(), to);
    release_tx.send(()).unwrap();
    worker.shutdown(secs(30)).unwrap();
    open_manual(to, clock)
}

// ------------------------------------------------------------------ retry

/// Ports `tests/test_retry.py::TestRetry.test_retry_class`.
#[test]
fn retry_class_parses_max_and_intervals() {
    // Retry(max=1): no interval means retry at once.
    let r = Retry::max(1);
    assert_eq!(r.max_retries(), 1);
    assert_eq!(r.wait(1), Duration::ZERO);
    // Retry(max=2, interval=5): one value is the wait before every retry.
    let r = Retry::max(2).intervals([5]);
    assert_eq!(r.max_retries(), 2);
    assert_eq!((r.wait(1), r.wait(2)), (secs(5), secs(5)));
    // Retry(max=3, interval=[5, 10]).
    let r = Retry::max(3).intervals([5, 10]);
    assert_eq!(r.max_retries(), 3);
    assert_eq!(
        (1..=3).map(|k| r.wait(k)).collect::<Vec<_>>(),
        [secs(5), secs(5), secs(10)]
    );
    // DIFFERENCE: rq raises ValueError for Retry(max=0); dueq accepts it as
    // "never retry" so callers need no special case (documented on
    // `Retry::max`).
    assert_eq!(Retry::max(0).max_retries(), 0);
    // DIFFERENCE: rq raises ValueError for a negative interval; dueq's
    // `Interval` saturates a negative number of seconds to zero (there is no
    // error path in the builder).
    assert_eq!(Retry::max(2).intervals([1, -5]).wait(2), Duration::ZERO);
    assert_eq!(Retry::max(1).intervals([-5]).wait(1), Duration::ZERO);
    // DIFFERENCE: rq's Retry(enqueue_at_front=True) has no dueq equivalent;
    // a retry always goes behind the jobs already queued (see
    // `a_zero_wait_retry_goes_behind_jobs_already_queued`).
}

/// Ports `tests/test_retry.py::TestRetry.test_get_retry_interval`: rq's
/// right-aligned rule, `intervals[max(len - retries_left, 0)]`.
#[test]
fn retry_intervals_are_right_aligned_on_the_last_retry() {
    // No intervals: zero.
    assert_eq!(Retry::max(2).wait(1), Duration::ZERO);
    // retries_left 2 then 1 over [1, 2]: 1, 2.
    let r = Retry::max(2).intervals([1, 2]);
    assert_eq!((r.wait(1), r.wait(2)), (secs(1), secs(2)));
    // retries_left 4, 3, 2, 1 over [1, 2, 3]: 1, 1, 2, 3.
    let r = Retry::max(4).intervals([1, 2, 3]);
    assert_eq!(
        (1..=4).map(|k| r.wait(k).as_secs()).collect::<Vec<_>>(),
        [1, 1, 2, 3]
    );
}

/// Ports `tests/test_retry.py::TestRetry.test_retry_get_interval`, rq's
/// static `Retry.get_interval(count, intervals)`: the list read left to
/// right, its last value repeating.
///
/// DIFFERENCE: dueq's `Retry` uses only the right-aligned rule above (what
/// rq's worker actually applies to retries); the left-to-right rule is the
/// one dueq's `Repeat` uses, so that is what this ports to.
#[test]
fn left_to_right_interval_rule_is_repeats() {
    let r = Repeat::times(6).intervals([secs(1), secs(2), secs(3)]);
    // rq's count 0, 1, 2, 3, 4, 5 is dueq's repeat k = count + 1.
    assert_eq!(
        (1..=6).map(|k| r.wait(k).as_secs()).collect::<Vec<_>>(),
        [1, 2, 3, 3, 3, 3]
    );
    // interval=None: zero.
    assert_eq!(Repeat::times(2).wait(1), Duration::ZERO);
    assert_eq!(Repeat::times(2).wait(2), Duration::ZERO);
    // A single interval: always that.
    let r = Repeat::times(2).interval(secs(3));
    assert_eq!((r.wait(1), r.wait(2)), (secs(3), secs(3)));
}

/// Ports `tests/test_retry.py::TestRetry.test_persistence_of_retry_data`:
/// the policy and the retry state survive a save/refresh (here: a reopen).
#[test]
fn retry_data_persists() {
    let f = Fixture::new();
    let policy = Retry::max(3).intervals([1, 2, 3]);
    let job = f
        .store
        .queue("default")
        .job("div_by_zero", &())
        .id("persisted")
        .retry(policy.clone())
        .enqueue()
        .unwrap();
    f.burst(&handlers());
    assert_eq!(job.info().unwrap().attempts, 1);
    let Fixture {
        dir: _dir,
        path,
        clock,
        store,
    } = f;
    drop((job, store));
    let store = open_manual(&path, &clock);
    let info = store.job("persisted").unwrap().unwrap().info().unwrap();
    assert_eq!(info.retry, Some(policy));
    assert_eq!(info.attempts, 1, "retries_left = max - attempts + 1 = 3");
    assert_eq!(info.status, Status::Scheduled);
    assert_eq!(info.due_at, Some(t0() + chrono(secs(1))));
}

/// Ports `tests/test_retry.py::TestRetry.test_job_retry`,
/// `TestRetry.test_handle_retry_result` and
/// `TestWorkerRetry.test_job_handle_retry_with_interval_increments_number_of_retries`:
/// a failed attempt with an interval is scheduled; without one it is queued
/// again at once.
#[test]
fn a_retry_with_an_interval_is_scheduled_and_without_one_is_requeued_at_once() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let scheduled = q
        .job("div_by_zero", &())
        .retry(Retry::max(3).intervals([5]))
        .enqueue()
        .unwrap();
    let stats = f.burst(&handlers());
    assert_eq!(runs(&stats), 1);
    let info = scheduled.info().unwrap();
    assert_eq!(info.status, Status::Scheduled);
    assert_eq!(info.attempts, 1, "one retry used: retries_left 2");
    assert_eq!(info.attempts_log[0].retry_at, Some(t0() + chrono(secs(5))));

    // Retry(max=3), no interval: queued again at once (retry_at is the
    // failure's own instant), so the same burst runs it again until the
    // policy is used up. rq's test stops after one failure; a burst cannot.
    let at_once = q
        .job("div_by_zero", &())
        .retry(Retry::max(3))
        .enqueue()
        .unwrap();
    let stats = f.burst(&handlers());
    assert_eq!(stats.failed, 4, "1 + max runs");
    let info = at_once.info().unwrap();
    assert_eq!(info.status, Status::Failed);
    assert_eq!(info.attempts, 4);
    for a in &info.attempts_log[..3] {
        assert_eq!(a.retry_at, Some(t0()), "requeued at once: {a:?}");
    }
    assert_eq!(info.attempts_log[3].retry_at, None);
}

/// Ports `tests/test_retry.py::TestRetry.test_retry_interval` and
/// `TestWorkerRetry.test_worker_handles_retry_interval`: the retry sits in
/// the scheduled registry, not in the queue, due exactly `interval` after
/// the failure (rq can only check "roughly"; the ManualClock pins it).
#[test]
fn a_retry_interval_puts_the_job_in_the_scheduled_registry() {
    for interval in [5u64, 10, 30] {
        let f = Fixture::new();
        let q = f.store.queue("default");
        let job = q
            .job("div_by_zero", &())
            .retry(Retry::max(1).intervals([interval]))
            .enqueue()
            .unwrap();
        f.burst(&handlers());
        let info = job.info().unwrap();
        assert_eq!(info.status, Status::Scheduled);
        assert_eq!(info.due_at, Some(t0() + chrono(secs(interval))));
        assert_eq!(q.scheduled().job_ids().unwrap(), [job.id()]);
        assert_eq!(q.scheduled().count().unwrap(), 1);
        assert!(q.job_ids().unwrap().is_empty());
        assert_eq!(q.failed().count().unwrap(), 0);

        f.advance(secs(interval) - ms(1));
        assert_eq!(runs(&f.burst(&handlers())), 0, "not before its time");
        f.advance(ms(1));
        assert_eq!(runs(&f.burst(&handlers())), 1);
        assert_eq!(job.status().unwrap(), Status::Failed, "max=1 is used up");
    }
}

/// Ports `tests/test_retry.py::TestWorkerRetry.test_worker_handles_max_retry`
/// and `TestWorkerRetry.test_worker_handles_max_retry_with_interval`: with
/// `max=2` the job runs three times, then fails for good; only the final
/// failure reaches the failed registry.
#[test]
fn a_job_fails_after_its_retries_are_exhausted() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let job = q
        .job("div_by_zero", &())
        .retry(Retry::max(2).intervals([0]))
        .enqueue()
        .unwrap();
    let stats = f.burst(&handlers());
    assert_eq!((stats.succeeded, stats.failed), (0, 3));
    let info = job.info().unwrap();
    assert_eq!(info.status, Status::Failed);
    assert_eq!(info.attempts, 3);
    assert!(info.error.unwrap().contains("ZeroDivisionError"));
    assert!(q.job_ids().unwrap().is_empty());
    assert_eq!(q.failed().job_ids().unwrap(), [job.id()]);
    f.advance(secs(3600));
    assert_eq!(runs(&f.burst(&handlers())), 0, "never runs again");
}

/// Ports `tests/test_retry.py::TestWorkerRetry.test_worker_handles_enqueue_at_front_on_retry`
/// for rq's default (`enqueue_at_front=False`): a retry goes to the back of
/// the queue, behind jobs already waiting.
///
/// DIFFERENCE: rq's `Retry(enqueue_at_front=True)` has no dueq counterpart;
/// a retry is a re-keyed job due at its retry time, ordered FIFO among jobs
/// due by then.
#[test]
fn a_zero_wait_retry_goes_behind_jobs_already_queued() {
    let f = Fixture::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let q = f.store.queue("default");
    let job1 = q
        .job("note_fail_once", &"job1")
        .retry(Retry::max(1))
        .enqueue()
        .unwrap();
    let job2 = q.enqueue("note", &"job2").unwrap();
    f.burst(&noting(&log));
    assert_eq!(*log.lock().unwrap(), ["job1#1", "job2", "job1#2"]);
    assert_eq!(job1.status().unwrap(), Status::Finished);
    assert_eq!(job2.status().unwrap(), Status::Finished);
}

/// Ports `tests/test_retry.py::TestRetry.test_cleanup_handles_retries`: an
/// abandoned run (its worker died) counts as a failed attempt and is
/// retried by the job's policy; once the policy is used up the job fails.
///
/// DIFFERENCE: rq finds the run when the worker's heartbeat has lapsed and
/// a maintenance pass runs (minutes); dueq recovers it when the store is
/// next opened (or when the worker's lease lapses).
#[test]
fn an_abandoned_run_is_retried_then_failed() {
    let f = Fixture::new();
    let job = f
        .store
        .queue("default")
        .job("hang", &())
        .id("abandoned")
        .retry(Retry::max(1))
        .enqueue()
        .unwrap();
    drop(job);

    let b = copy_mid_run(&f.store, &f.clock, &f.dir.path().join("b"));
    assert_eq!(b.recovered_at_open(), 1);
    let qb = b.queue("default");
    let info = b.job("abandoned").unwrap().unwrap().info().unwrap();
    assert_eq!(info.status, Status::Queued, "retried, not failed");
    assert_eq!(info.attempts, 1);
    assert!(info.error.as_deref().unwrap().contains("abandoned"));
    assert_eq!(qb.job_ids().unwrap(), ["abandoned"]);
    assert_eq!(qb.failed().count().unwrap(), 0);

    // It dies again: max=1 is used up, so now it fails.
    let c = copy_mid_run(&b, &f.clock, &f.dir.path().join("c"));
    assert_eq!(c.recovered_at_open(), 1);
    let qc = c.queue("default");
    let info = c.job("abandoned").unwrap().unwrap().info().unwrap();
    assert_eq!(info.status, Status::Failed);
    assert_eq!(info.attempts, 2);
    assert!(info.error.as_deref().unwrap().contains("abandoned"));
    assert_eq!(qc.failed().job_ids().unwrap(), ["abandoned"]);
    assert!(qc.job_ids().unwrap().is_empty());
    assert_eq!(qc.started().count().unwrap(), 0);
}

// ----------------------------------------------------------- dependencies

/// Ports `tests/test_dependencies.py::TestDependencies.test_job_dependency`
/// (first part): a dependent runs once its parent finishes.
#[test]
fn a_dependent_runs_after_its_parent_finishes() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q.enqueue("say_hello", &"parent").unwrap();
    let job = q
        .job("say_hello", &"child")
        .depends_on(&parent)
        .enqueue()
        .unwrap();
    assert_eq!(job.status().unwrap(), Status::Deferred);
    let stats = f.burst(&handlers());
    assert_eq!(stats.succeeded, 2);
    assert_eq!(job.status().unwrap(), Status::Finished);
    assert_eq!(
        job.result::<String>().unwrap().as_deref(),
        Some("Hi there, child!")
    );
}

/// Ports `tests/test_dependencies.py::TestDependencies.test_job_dependency`
/// (the failing-parent parts, with `depends_on=job` and with
/// `Dependency(jobs=job)`, whose `allow_failure` defaults to false).
///
/// DIFFERENCE: rq only asserts the dependent is not finished: it stays
/// deferred forever. dueq cancels it, with a reason naming the parent, so
/// nothing waits for a job that can no longer run.
#[test]
fn a_dependent_of_a_failed_parent_does_not_run() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let p1 = q.enqueue("div_by_zero", &()).unwrap();
    let plain = q.job("say_hello", &"a").depends_on(&p1).enqueue().unwrap();
    let p2 = q.enqueue("div_by_zero", &()).unwrap();
    let explicit = q
        .job("say_hello", &"b")
        .depends_on(Dependency::on(p2.id()))
        .enqueue()
        .unwrap();
    let stats = f.burst(&handlers());
    assert_eq!((stats.succeeded, stats.failed), (0, 2));
    for (job, parent) in [(&plain, &p1), (&explicit, &p2)] {
        assert_eq!(parent.status().unwrap(), Status::Failed);
        assert_ne!(job.status().unwrap(), Status::Finished);
        assert_eq!(job.status().unwrap(), Status::Canceled);
        let reason = job.error().unwrap().unwrap();
        assert!(reason.contains(parent.id()), "{reason}");
    }
    assert_eq!(q.deferred().count().unwrap(), 0);
    assert_eq!(q.canceled().count().unwrap(), 2);
}

/// Ports `tests/test_dependencies.py::TestDependencies.test_job_dependency`
/// (`Dependency(jobs=parent, allow_failure=True)`) and
/// `TestDependencies.test_allow_failure_is_persisted`: the flag survives a
/// reopen and lets the dependent run after its parent fails.
#[test]
fn allow_failure_runs_the_dependent_after_a_failed_parent_and_persists() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q.enqueue("div_by_zero", &()).unwrap();
    let job = q
        .job("say_hello", &"tolerant")
        .id("tolerant")
        .depends_on(Dependency::on(parent.id()).allow_failure())
        .enqueue()
        .unwrap();
    assert_eq!(job.status().unwrap(), Status::Deferred);
    drop((q, parent, job));
    let Fixture {
        dir: _dir,
        path,
        clock,
        store,
    } = f;
    drop(store);
    let store = open_manual(&path, &clock);
    let stats = common::burst(&store, &handlers());
    assert_eq!((stats.succeeded, stats.failed), (1, 1));
    let job = store.job("tolerant").unwrap().unwrap();
    assert_eq!(job.status().unwrap(), Status::Finished);
}

/// Ports `tests/test_dependencies.py::TestDependencies.test_job_dependency`
/// ("when a failing job has multiple dependents, only enqueue those with
/// allow_failure=True").
///
/// DIFFERENCE: rq leaves the other dependent deferred; dueq cancels it.
#[test]
fn a_failed_parent_releases_only_its_allow_failure_dependents() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q.enqueue("div_by_zero", &()).unwrap();
    // The dependents live on another queue, so the burst on "default" runs
    // only the parent (rq: `work(max_jobs=1)`) and we can see them queued.
    let other = f.store.queue("other");
    let allow = other
        .job("say_hello", &"allow")
        .depends_on(Dependency::on(parent.id()).allow_failure())
        .enqueue()
        .unwrap();
    let strict = other
        .job("say_hello", &"strict")
        .depends_on(Dependency::on(parent.id()))
        .enqueue()
        .unwrap();
    f.burst(&handlers());
    assert_eq!(parent.status().unwrap(), Status::Failed);
    assert_eq!(allow.status().unwrap(), Status::Queued);
    assert_eq!(strict.status().unwrap(), Status::Canceled);
    assert_eq!(other.job_ids().unwrap(), [allow.id()]);
}

/// Ports `tests/test_dependencies.py::TestDependencies.test_job_dependency`
/// ("only enqueue dependent job when all dependencies have
/// finished/failed"): with allow_failure on both parents, one failed parent
/// is not enough; the dependent waits for the other.
#[test]
fn a_dependent_waits_for_every_parent_even_with_allow_failure() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let first = q.enqueue("div_by_zero", &()).unwrap();
    // rq runs one job with max_jobs=1; here the second parent is simply
    // due later.
    let second = q.enqueue_in(secs(10), "say_hello", &"second").unwrap();
    let job = q
        .job("say_hello", &"child")
        .depends_on(Dependency::on(first.id()).allow_failure())
        .depends_on(Dependency::on(second.id()).allow_failure())
        .enqueue()
        .unwrap();
    f.burst(&handlers());
    assert_eq!(first.status().unwrap(), Status::Failed);
    assert_eq!(second.status().unwrap(), Status::Scheduled);
    assert_eq!(job.status().unwrap(), Status::Deferred);
    assert_eq!(job.info().unwrap().waiting_on, [second.id()]);

    f.advance(secs(10));
    let stats = f.burst(&handlers());
    assert_eq!(stats.succeeded, 2, "the second parent, then the dependent");
    assert_eq!(second.status().unwrap(), Status::Finished);
    assert_eq!(job.status().unwrap(), Status::Finished);
}

/// Ports `tests/test_dependencies.py::TestDependencies.test_job_dependency`
/// ("Test dependant is enqueued at front"): a released dependent with
/// at_front goes to the head of its queue.
///
/// DIFFERENCE: rq sets it on the dependency (`Dependency(...,
/// enqueue_at_front=True)`); dueq's `at_front` is the job's own option and
/// applies when the job is released.
#[test]
fn a_released_at_front_dependent_goes_to_the_head_of_its_queue() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q.enqueue("say_hello", &"parent").unwrap();
    let other = f.store.queue("other");
    let first = other
        .job("say_hello", &"1")
        .id("fake_job_id_1")
        .depends_on(&parent)
        .enqueue()
        .unwrap();
    let front = other
        .job("say_hello", &"2")
        .id("fake_job_id_2")
        .depends_on(&parent)
        .at_front()
        .enqueue()
        .unwrap();
    assert_eq!(front.status().unwrap(), Status::Deferred);
    f.burst(&handlers());
    assert_eq!(first.status().unwrap(), Status::Queued);
    assert_eq!(other.job_ids().unwrap(), ["fake_job_id_2", "fake_job_id_1"]);
}

/// Ports `tests/test_dependencies.py::TestDependencies.test_multiple_jobs_with_dependencies`:
/// `enqueue_many` gives each job the right status, and a batch whose parent
/// has finished is queued at once.
#[test]
fn enqueue_many_defers_only_jobs_with_unfinished_parents() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q.enqueue("say_hello", &"parent").unwrap();
    let jobs = q
        .enqueue_many([
            q.job("say_hello", &"no deps"),
            q.job("say_hello", &"with deps").depends_on(&parent),
        ])
        .unwrap();
    assert_eq!(jobs[0].status().unwrap(), Status::Queued);
    assert_eq!(jobs[1].status().unwrap(), Status::Deferred);
    f.burst(&handlers());
    assert_eq!(jobs[1].status().unwrap(), Status::Finished);

    let jobs = q
        .enqueue_many([q.job("say_hello", &"met").depends_on(&parent)])
        .unwrap();
    assert_eq!(parent.status().unwrap(), Status::Finished);
    assert_eq!(jobs[0].status().unwrap(), Status::Queued);
}

/// Ports `tests/test_dependencies.py::TestDependencies.test_dependency_list_in_depends_on`:
/// several dependencies (rq: a list of `Dependency`; dueq: `depends_on`
/// called once per parent).
#[test]
fn a_list_of_dependencies_all_must_finish() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let p1 = q.enqueue("say_hello", &"1").unwrap();
    let p2 = q.enqueue("say_hello", &"2").unwrap();
    let job = q
        .job("say_hello", &"child")
        .depends_on(Dependency::on(p1.id()))
        .depends_on(Dependency::on(p2.id()))
        .enqueue()
        .unwrap();
    let mut waiting = job.info().unwrap().waiting_on;
    waiting.sort();
    let mut expected = ids(&[&p1, &p2]);
    expected.sort();
    assert_eq!(waiting, expected);
    f.burst(&handlers());
    assert_eq!(job.status().unwrap(), Status::Finished);
}

/// Ports `tests/test_dependencies.py::TestDependencies.test_enqueue_job_dependency`.
///
/// DIFFERENCE: rq lets a job depend on a parent that is saved but not yet
/// enqueued (and on ids that do not exist). dueq requires the parent to
/// exist, in the store or earlier in the same `enqueue_many` batch, and
/// rejects the enqueue otherwise, writing nothing: a dependency on a typo
/// would otherwise wait forever. The scenario is rebuilt with the parent
/// scheduled for later: the dependent stays deferred until it has run.
#[test]
fn a_dependent_waits_until_its_parent_is_due_and_has_run() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let err = q
        .job("say_hello", &"x")
        .depends_on("not-enqueued-yet")
        .enqueue()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                what: "depends_on",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(q.count().unwrap() + q.deferred().count().unwrap(), 0);

    let parent = q.enqueue_in(secs(60), "say_hello", &"parent").unwrap();
    let job = q
        .job("say_hello", &"child")
        .depends_on(&parent)
        .enqueue()
        .unwrap();
    assert_eq!(runs(&f.burst(&handlers())), 0);
    assert_eq!(job.status().unwrap(), Status::Deferred);
    f.advance(secs(60));
    f.burst(&handlers());
    assert_eq!(parent.status().unwrap(), Status::Finished);
    assert_eq!(job.status().unwrap(), Status::Finished);
}

/// Ports `tests/test_dependencies.py::TestDependencies.test_dependencies_are_met_if_parent_is_canceled`:
/// a canceled parent counts as failed.
///
/// DIFFERENCE: in rq the dependent is enqueued deferred with its
/// dependencies unmet, forever; dueq decides at enqueue and cancels it.
#[test]
fn a_canceled_parent_does_not_meet_dependencies() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q.enqueue("say_hello", &"parent").unwrap();
    parent.cancel().unwrap();
    let job = q
        .job("say_hello", &"child")
        .depends_on(&parent)
        .enqueue()
        .unwrap();
    assert_eq!(job.status().unwrap(), Status::Canceled);
    assert!(job.error().unwrap().unwrap().contains(parent.id()));
    assert_eq!(runs(&f.burst(&handlers())), 0);
}

/// Ports `tests/test_dependencies.py::TestDependencies.test_can_enqueue_job_if_dependency_is_deleted`:
/// the parent ran with `result_ttl=0`, so it was deleted as soon as it
/// finished.
///
/// DIFFERENCE: rq accepts a job depending on the deleted parent; dueq
/// cannot tell a parent that finished and was deleted from one that never
/// existed (or failed and was deleted), so it refuses the enqueue with
/// `InvalidArgument`, writing nothing. Keep parents with a `result_ttl`
/// that outlives the enqueue of their dependents, or enqueue the dependent
/// before the parent finishes (next test).
#[test]
fn a_job_cannot_depend_on_a_parent_deleted_by_result_ttl_zero() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q
        .job("say_hello", &"parent")
        .result_ttl(Duration::ZERO)
        .enqueue()
        .unwrap();
    assert_eq!(f.burst(&handlers()).succeeded, 1);
    assert!(f.store.job(parent.id()).unwrap().is_none());
    let err = q
        .job("say_hello", &"child")
        .id("child")
        .depends_on(&parent)
        .enqueue()
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::InvalidArgument {
                what: "depends_on",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(f.store.job("child").unwrap().is_none());
}

/// Ports `tests/test_dependencies.py::TestDependencies.test_dependencies_are_met_if_dependency_is_deleted`:
/// a parent with `result_ttl=0` that finishes releases its dependent,
/// although the parent itself is deleted at once.
#[test]
fn a_parent_with_result_ttl_zero_releases_its_dependent() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q
        .job("say_hello", &"parent")
        .result_ttl(Duration::ZERO)
        .enqueue()
        .unwrap();
    // On another queue, so we can see it queued (rq: max_jobs=1).
    let other = f.store.queue("other");
    let job = other
        .job("say_hello", &"child")
        .depends_on(&parent)
        .enqueue()
        .unwrap();
    f.burst(&handlers());
    assert!(f.store.job(parent.id()).unwrap().is_none());
    assert_eq!(job.status().unwrap(), Status::Queued, "{:?}", job.error());
    assert_eq!(other.job_ids().unwrap(), [job.id()]);
}

/// Ports `tests/test_dependencies.py::TestDependencies.test_dependencies_are_met_at_execution_time`:
/// when C (depending on A and B) runs, A and B have finished.
#[test]
fn dependencies_are_met_when_the_dependent_runs() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    q.job("say_hello", &"A").id("A").enqueue().unwrap();
    q.job("say_hello", &"B").id("B").enqueue().unwrap();
    let mut h = handlers();
    let store = f.store.clone();
    h.register("check_dependencies_are_met", move |parents: Vec<String>| {
        for id in &parents {
            let status = store.job(id)?.map(|j| j.status()).transpose()?;
            if status != Some(Status::Finished) {
                return Err(JobError::new(format!("{id} is {status:?}")));
            }
        }
        Ok(true)
    });
    let c = q
        .job("check_dependencies_are_met", &["A", "B"])
        .id("C")
        .depends_on("A")
        .depends_on("B")
        .enqueue()
        .unwrap();
    f.burst(&h);
    assert_eq!(c.status().unwrap(), Status::Finished, "{:?}", c.error());
    assert_eq!(c.result::<bool>().unwrap(), Some(true));
}

/// Ports `tests/test_queue.py::TestQueue.test_enqueue_job_with_dependency`
/// and `TestQueue.test_enqueue_job_with_dependency_by_id`: a job with an
/// unfinished parent is deferred and not in the queue; with a finished
/// parent (given as a job or an id) it is queued at once.
#[test]
fn a_job_is_queued_only_if_its_parent_has_finished() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q.enqueue_in(secs(10), "say_hello", &"parent").unwrap();
    let job = q
        .job("say_hello", &"x")
        .depends_on(&parent)
        .enqueue()
        .unwrap();
    let by_id = q
        .job("say_hello", &"y")
        .depends_on(parent.id())
        .enqueue()
        .unwrap();
    assert_eq!(job.status().unwrap(), Status::Deferred);
    assert_eq!(by_id.status().unwrap(), Status::Deferred);
    assert!(q.job_ids().unwrap().is_empty());

    f.advance(secs(10));
    // Runs the parent; the two dependents are released behind it and run in
    // the same burst, so use another queue to see them queued.
    let other = f.store.queue("other");
    let later = other
        .job("say_hello", &"z")
        .depends_on(&parent)
        .enqueue()
        .unwrap();
    f.burst(&handlers());
    assert_eq!(parent.status().unwrap(), Status::Finished);
    assert_eq!(later.status().unwrap(), Status::Queued);

    let now = q
        .job("say_hello", &"w")
        .depends_on(parent.id())
        .enqueue()
        .unwrap();
    assert_eq!(now.status().unwrap(), Status::Queued);
    assert_eq!(q.job_ids().unwrap(), [now.id()]);
    assert_eq!(now.info().unwrap().timeout, Some(dueq::DEFAULT_TIMEOUT));
}

/// Ports `tests/test_queue.py::TestQueue.test_enqueue_job_with_dependency_and_timeout`:
/// a dependent keeps its `job_timeout` while deferred and once released.
#[test]
fn a_dependent_keeps_its_timeout_when_released() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q.enqueue("say_hello", &"parent").unwrap();
    let other = f.store.queue("other");
    let job = other
        .job("say_hello", &"x")
        .depends_on(&parent)
        .timeout(secs(123))
        .enqueue()
        .unwrap();
    assert_eq!(job.info().unwrap().timeout, Some(secs(123)));
    f.burst(&handlers());
    let info = job.info().unwrap();
    assert_eq!(info.status, Status::Queued);
    assert_eq!(info.timeout, Some(secs(123)));
    let met = other
        .job("say_hello", &"y")
        .depends_on(&parent)
        .timeout(secs(456))
        .enqueue()
        .unwrap();
    assert_eq!(met.info().unwrap().timeout, Some(secs(456)));
    assert_eq!(other.job_ids().unwrap(), ids(&[&job, &met]));
}

/// Ports `tests/test_queue.py::TestQueue.test_enqueue_dependents` and
/// `TestQueue.test_enqueue_dependents_on_multiple_queues`: each queue has
/// its own deferred registry, and a finished parent releases each dependent
/// into its own queue.
#[test]
fn dependents_on_several_queues_are_released_into_their_own_queues() {
    let f = Fixture::new();
    let parent = f
        .store
        .queue("default")
        .enqueue_in(secs(5), "say_hello", &"parent")
        .unwrap();
    let (q1, q2) = (f.store.queue("queue_1"), f.store.queue("queue_2"));
    let j1 = q1
        .job("say_hello", &"1")
        .depends_on(&parent)
        .enqueue()
        .unwrap();
    let j2 = q2
        .job("say_hello", &"2")
        .depends_on(&parent)
        .enqueue()
        .unwrap();
    let j3 = q2
        .job("say_hello", &"3")
        .depends_on(&parent)
        .enqueue()
        .unwrap();
    assert_eq!(q1.deferred().job_ids().unwrap(), [j1.id()]);
    let mut deferred2 = q2.deferred().job_ids().unwrap();
    deferred2.sort();
    let mut expected = ids(&[&j2, &j3]);
    expected.sort();
    assert_eq!(deferred2, expected);
    assert!(q1.job_ids().unwrap().is_empty() && q2.job_ids().unwrap().is_empty());
    let mut dependents = parent.info().unwrap().dependents;
    dependents.sort();
    let mut all = ids(&[&j1, &j2, &j3]);
    all.sort();
    assert_eq!(dependents, all);

    f.advance(secs(5));
    f.burst(&handlers());
    assert_eq!(q1.job_ids().unwrap(), [j1.id()]);
    let mut queued2 = q2.job_ids().unwrap();
    queued2.sort();
    assert_eq!(queued2, expected);
    assert_eq!(q1.deferred().count().unwrap(), 0);
    assert_eq!(q2.deferred().count().unwrap(), 0);
}

/// Ports `tests/test_queue.py::TestQueue.test_enqueues_dependent_if_other_dependencies_finished`,
/// `TestQueue.test_does_not_enqueue_dependent_if_other_dependencies_not_finished`,
/// `TestQueue.test_enqueue_job_with_multiple_queued_dependencies` and
/// `TestQueue.test_enqueue_job_with_multiple_finished_dependencies`, and
/// `tests/test_job_dependency.py::TestJobDependency.test_dependencies_finished_returns_false_if_unfinished_job`.
#[test]
fn a_dependent_is_queued_when_its_last_unfinished_parent_finishes() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let done1 = q.enqueue("say_hello", &"1").unwrap();
    let done2 = q.enqueue("say_hello", &"2").unwrap();
    f.burst(&handlers());
    // Every parent finished: queued at once.
    let all_met = q
        .job("say_hello", &"met")
        .depends_on(&done1)
        .depends_on(&done2)
        .enqueue()
        .unwrap();
    assert_eq!(all_met.status().unwrap(), Status::Queued);
    f.burst(&handlers());

    // Two finished parents and one not yet run: deferred on that one only.
    let pending = q.enqueue_in(secs(10), "say_hello", &"3").unwrap();
    let queued = q.enqueue_in(secs(20), "say_hello", &"4").unwrap();
    let job = q
        .job("say_hello", &"child")
        .depends_on(&pending)
        .depends_on(&done1)
        .depends_on(&done2)
        .enqueue()
        .unwrap();
    let two_unfinished = q
        .job("say_hello", &"child2")
        .depends_on(&pending)
        .depends_on(&queued)
        .enqueue()
        .unwrap();
    assert_eq!(job.status().unwrap(), Status::Deferred);
    assert_eq!(job.info().unwrap().waiting_on, [pending.id()]);

    f.advance(secs(10));
    f.burst(&handlers());
    assert_eq!(job.status().unwrap(), Status::Finished);
    assert_eq!(
        two_unfinished.status().unwrap(),
        Status::Deferred,
        "one parent is still unfinished"
    );
    assert_eq!(two_unfinished.info().unwrap().waiting_on, [queued.id()]);
    f.advance(secs(10));
    f.burst(&handlers());
    assert_eq!(two_unfinished.status().unwrap(), Status::Finished);
}

/// Ports `tests/test_job_dependency.py::TestJobDependency.test_execution_order_with_sole_dependency`:
/// without dependencies jobs run in the order enqueued; when A depends on
/// the slow job, B runs before A. rq needs two workers and sleeps; with one
/// thread the released dependent simply joins the back of the queue.
#[test]
fn execution_order_with_a_sole_dependency() {
    let order = |a_depends: bool| {
        let f = Fixture::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        let q = f.store.queue("default");
        q.job("note", &"slow").id("slow_job").enqueue().unwrap();
        let mut a = q.job("note", &"A");
        if a_depends {
            a = a.depends_on("slow_job");
        }
        a.enqueue().unwrap();
        q.enqueue("note", &"B").unwrap();
        f.burst(&noting(&log));
        let seen = log.lock().unwrap().clone();
        seen
    };
    assert_eq!(order(false), ["slow", "A", "B"]);
    assert_eq!(order(true), ["slow", "B", "A"]);
}

/// Ports `tests/test_job_dependency.py::TestJobDependency.test_execution_order_with_dual_dependency`:
/// A depends on both slow jobs, B only on the first: B runs before A.
#[test]
fn execution_order_with_a_dual_dependency() {
    let f = Fixture::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let q = f.store.queue("default");
    q.job("note", &"slow_1").id("slow_1").enqueue().unwrap();
    q.job("note", &"slow_2").id("slow_2").enqueue().unwrap();
    q.job("note", &"A")
        .depends_on("slow_1")
        .depends_on("slow_2")
        .enqueue()
        .unwrap();
    q.job("note", &"B").depends_on("slow_1").enqueue().unwrap();
    // DIFFERENCE: rq's single worker takes one job at a time. A dueq worker
    // claims ahead (prefetch): both slow jobs finish in one round, A and B
    // are released at the same instant, and jobs due at the same instant
    // run in enqueue order (A first). One job at a time (`prefetch(0)`)
    // gives rq's order.
    dueq::Worker::builder(&f.store, noting(&log))
        .threads(1)
        .prefetch(0)
        .burst()
        .unwrap();
    assert_eq!(*log.lock().unwrap(), ["slow_1", "slow_2", "B", "A"]);
}

/// Ports `tests/test_job_dependency.py::TestJobDependency.test_canceling_job_removes_it_from_dependency_dependents_key`.
///
/// DIFFERENCE: dueq's `cancel` has no `remove_from_dependencies` flag; it
/// behaves as rq's `cancel(remove_from_dependencies=False)` (rq's default):
/// the parent's `dependents` still lists the canceled child. That entry is
/// inert: when the parent ends, a child that no longer waits on it is left
/// alone.
#[test]
fn canceling_a_dependent_leaves_it_listed_but_inert() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q
        .job("say_hello", &"p")
        .id("parent_job")
        .enqueue_in(secs(10))
        .unwrap();
    let c1 = q
        .job("say_hello", &"1")
        .id("child_job_1")
        .depends_on(&parent)
        .enqueue()
        .unwrap();
    q.job("say_hello", &"2")
        .id("child_job_2")
        .depends_on(&parent)
        .enqueue()
        .unwrap();
    let mut dependents = parent.info().unwrap().dependents;
    dependents.sort();
    assert_eq!(dependents, ["child_job_1", "child_job_2"]);
    c1.cancel().unwrap();
    let mut dependents = parent.info().unwrap().dependents;
    dependents.sort();
    assert_eq!(dependents, ["child_job_1", "child_job_2"]);
    // The parent still finishes and releases the other child.
    f.advance(secs(10));
    f.burst(&handlers());
    assert_eq!(
        f.store
            .job("child_job_2")
            .unwrap()
            .unwrap()
            .status()
            .unwrap(),
        Status::Finished
    );
    assert_eq!(c1.status().unwrap(), Status::Canceled);
}

/// Ports `tests/test_job_dependency.py::TestJobDependency.test_dependent_job_deletes_dependencies_key`
/// and `tests/test_registry.py::TestDeferredRegistry.test_register_dependency`:
/// deleting a dependent removes it (and its deferred registry entry) and
/// leaves the parent alone. As in rq, the parent's list of dependents is
/// not rewritten (rq's `delete` does not touch the parent's dependents
/// set); the stale entry is inert, even if the id is reused (see
/// `a_reused_id_of_a_deleted_dependent_is_not_bound_to_the_old_parent`).
#[test]
fn deleting_a_dependent_leaves_its_parent() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q.enqueue("say_hello", &"parent").unwrap();
    let job2 = q
        .job("say_hello", &"x")
        .depends_on(&parent)
        .enqueue()
        .unwrap();
    assert_eq!(q.deferred().job_ids().unwrap(), [job2.id()]);
    job2.delete().unwrap();
    assert!(q.deferred().job_ids().unwrap().is_empty());
    assert!(f.store.job(job2.id()).unwrap().is_none());
    assert_eq!(parent.status().unwrap(), Status::Queued);
    assert_eq!(parent.info().unwrap().dependents, [job2.id()]);
    assert_eq!(f.burst(&handlers()).succeeded, 1);
    assert_eq!(parent.status().unwrap(), Status::Finished);
    assert!(f.store.job(job2.id()).unwrap().is_none(), "not recreated");
}

/// Follows from the two ports above (rq has no test of it): the stale
/// `dependents` entry a deleted dependent leaves on its parent must not
/// bind a new job that reuses the id. When the old parent fails, the new
/// job (waiting on another parent) is not canceled; when it finishes, the
/// new job is not released early.
#[test]
fn a_reused_id_of_a_deleted_dependent_is_not_bound_to_the_old_parent() {
    for parent_handler in ["div_by_zero", "say_hello"] {
        let f = Fixture::new();
        let q = f.store.queue("default");
        let parent = q.job(parent_handler, &"p").enqueue_in(secs(10)).unwrap();
        let other = q.enqueue_in(secs(100), "say_hello", &"other").unwrap();
        let old = q
            .job("say_hello", &"old")
            .id("x")
            .depends_on(&parent)
            .enqueue()
            .unwrap();
        old.delete().unwrap();
        let new = q
            .job("say_hello", &"new")
            .id("x")
            .depends_on(&other)
            .enqueue()
            .unwrap();
        assert_eq!(parent.info().unwrap().dependents, ["x"]);
        f.advance(secs(10));
        assert_eq!(runs(&f.burst(&handlers())), 1, "{parent_handler}");
        assert!(parent.status().unwrap().is_final());
        let info = new.info().unwrap();
        assert_eq!(info.status, Status::Deferred, "{parent_handler}");
        assert_eq!(info.error, None);
        assert_eq!(info.waiting_on, [other.id()]);
    }
}

/// Ports `tests/test_job_dependency.py::TestJobDependency.test_job_with_dependents_delete_parent_with_saved`
/// and `TestJobDependency.test_job_with_dependents_deleteall`.
///
/// DIFFERENCE: rq's `delete()` keeps the dependents deferred (forever), and
/// `delete(delete_dependents=True)` deletes them. dueq has one behaviour:
/// the dependents are kept but canceled, with a reason naming the deleted
/// parent (allow_failure dependents are released instead).
#[test]
fn deleting_a_parent_cancels_its_dependents() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q.enqueue("say_hello", &"parent").unwrap();
    let job2 = q
        .job("say_hello", &"x")
        .depends_on(&parent)
        .enqueue()
        .unwrap();
    let tolerant = q
        .job("say_hello", &"y")
        .depends_on(Dependency::on(parent.id()).allow_failure())
        .enqueue()
        .unwrap();
    parent.delete().unwrap();
    assert!(f.store.job(parent.id()).unwrap().is_none());
    assert!(!q.job_ids().unwrap().contains(&parent.id().to_owned()));
    assert_eq!(job2.status().unwrap(), Status::Canceled);
    assert!(job2.error().unwrap().unwrap().contains("was deleted"));
    assert_eq!(tolerant.status().unwrap(), Status::Queued);
    assert_eq!(q.job_ids().unwrap(), [tolerant.id()]);
}

/// Ports `tests/test_job_dependency.py::TestJobDependency.test_create_and_cancel_job_enqueue_dependents`:
/// canceling a parent puts it in the canceled registry; deleting it then
/// removes it from there.
///
/// DIFFERENCE: rq's `cancel_job(id, enqueue_dependents=True)` queues every
/// dependent; dueq's `cancel` has no such flag: dependents that allow
/// failure are queued, the others are canceled.
#[test]
fn canceling_a_parent_queues_allow_failure_dependents_and_cancels_the_rest() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let dependency = q.enqueue("say_hello", &"parent").unwrap();
    let dependent = q
        .job("say_hello", &"x")
        .depends_on(Dependency::on(dependency.id()).allow_failure())
        .enqueue()
        .unwrap();
    let strict = q
        .job("say_hello", &"y")
        .depends_on(&dependency)
        .enqueue()
        .unwrap();
    assert_eq!(q.count().unwrap(), 1);
    assert_eq!(q.deferred().count().unwrap(), 2);
    dependency.cancel().unwrap();
    assert_eq!(dependency.status().unwrap(), Status::Canceled);
    assert_eq!(q.deferred().count().unwrap(), 0);
    assert_eq!(q.job_ids().unwrap(), [dependent.id()]);
    assert_eq!(dependent.status().unwrap(), Status::Queued);
    assert_eq!(strict.status().unwrap(), Status::Canceled);
    let mut canceled = q.canceled().job_ids().unwrap();
    canceled.sort();
    let mut expected = ids(&[&dependency, &strict]);
    expected.sort();
    assert_eq!(canceled, expected);
    dependency.delete().unwrap();
    assert_eq!(q.canceled().job_ids().unwrap(), [strict.id()]);
}

/// Ports `tests/test_job_dependency.py::TestJobDependency.test_create_and_cancel_job_enqueue_dependents_in_registry`.
///
/// DIFFERENCE: in rq the parent fails, its dependent stays deferred, and
/// `cancel_job` moves the failed parent from the failed to the canceled
/// registry. In dueq the dependent is canceled when the parent fails, and a
/// failed job cannot be canceled (it is final: `InvalidState`); requeue or
/// delete it instead.
#[test]
fn a_failed_parent_cancels_its_dependent_and_cannot_itself_be_canceled() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let dependency = q.enqueue("div_by_zero", &()).unwrap();
    let dependent = q
        .job("say_hello", &"x")
        .depends_on(&dependency)
        .enqueue()
        .unwrap();
    assert_eq!(dependency.info().unwrap().dependents, [dependent.id()]);
    assert_eq!(q.deferred().count().unwrap(), 1);
    f.burst(&handlers());
    assert_eq!(q.count().unwrap(), 0);
    assert_eq!(q.deferred().count().unwrap(), 0);
    assert_eq!(q.failed().job_ids().unwrap(), [dependency.id()]);
    assert_eq!(q.canceled().job_ids().unwrap(), [dependent.id()]);
    let err = dependency.cancel().unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidState {
                status: Status::Failed,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(q.failed().count().unwrap(), 1);
}

// -------------------------------------------------------------- registries

/// Ports `tests/test_registry.py::TestRegistry.test_job_execution` and
/// `TestRegistry.test_contains`: a job is in the started registry while it
/// runs, and leaves it when it finishes or fails.
#[test]
fn the_started_registry_holds_a_job_while_it_runs() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut h = Handlers::new();
    let (store, s) = (f.store.clone(), seen.clone());
    h.register_with_context("look", move |ctx, fail: bool| -> Result<(), JobError> {
        let started = store.queue(ctx.queue()).started();
        s.lock().unwrap().push((
            started.job_ids()?,
            started.count()?,
            ctx.job_id().to_owned(),
        ));
        if fail {
            return Err(JobError::new("fails"));
        }
        Ok(())
    });
    let ok = q.enqueue("look", &false).unwrap();
    assert_eq!(ok.status().unwrap(), Status::Queued);
    assert_eq!(q.started().count().unwrap(), 0, "not started yet");
    let bad = q.enqueue("look", &true).unwrap();
    // DIFFERENCE: by default a dueq worker claims jobs ahead of its threads
    // (prefetch), and a claimed job shows as started while it waits for a
    // thread. `prefetch(0)` claims only for idle threads, as rq does.
    dueq::Worker::builder(&f.store, h)
        .threads(1)
        .prefetch(0)
        .burst()
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for (ids, count, me) in &seen {
        assert_eq!(
            ids.as_slice(),
            std::slice::from_ref(me),
            "only the running job is started"
        );
        assert_eq!(*count, 1);
    }
    assert_eq!(q.started().count().unwrap(), 0);
    assert_eq!(ok.status().unwrap(), Status::Finished);
    assert_eq!(bad.status().unwrap(), Status::Failed);
    assert_eq!(q.finished().job_ids().unwrap(), [ok.id()]);
    assert_eq!(q.failed().job_ids().unwrap(), [bad.id()]);
}

/// Ports `tests/test_registry.py::TestRegistry.test_job_deletion`: deleting
/// a running job removes it from the started registry (its run's outcome is
/// then discarded).
#[test]
fn deleting_a_running_job_removes_it_from_the_started_registry() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let mut h = Handlers::new();
    let store = f.store.clone();
    h.register_with_context(
        "self_delete",
        move |ctx, _: ()| -> Result<usize, JobError> {
            let started = store.queue(ctx.queue()).started();
            assert_eq!(started.count()?, 1);
            store.job(ctx.job_id())?.unwrap().delete()?;
            Ok(started.count()?)
        },
    );
    let job = q.enqueue("self_delete", &()).unwrap();
    let stats = f.burst(&h);
    assert_eq!(stats.fenced, 1, "{stats:?}");
    assert!(f.store.job(job.id()).unwrap().is_none());
    for r in [q.started(), q.finished(), q.failed()] {
        assert_eq!(r.count().unwrap(), 0, "{r:?}");
    }
}

/// Ports `tests/test_registry.py::TestRegistry.test_get_job_ids` and
/// `TestRegistry.test_get_job_count` (rq writes scores into the started
/// registry by hand; dueq has no such back door, so the ordered registry
/// here is the scheduled one, ordered by due time), plus rq's
/// `get_job_ids(start, end)` as `job_ids_page`.
#[test]
fn registry_job_ids_are_ordered_and_counted() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    q.job("say_hello", &"bar")
        .id("bar")
        .enqueue_in(secs(20))
        .unwrap();
    q.job("say_hello", &"foo")
        .id("foo")
        .enqueue_in(secs(10))
        .unwrap();
    q.job("say_hello", &"baz")
        .id("baz")
        .enqueue_in(secs(30))
        .unwrap();
    let r = q.scheduled();
    assert_eq!(r.job_ids().unwrap(), ["foo", "bar", "baz"]);
    assert_eq!(r.count().unwrap(), 3);
    assert_eq!(r.job_ids_page(1, 1).unwrap(), ["bar"]);
    assert_eq!(r.job_ids_page(1, 10).unwrap(), ["bar", "baz"]);
    assert!(r.job_ids_page(5, 10).unwrap().is_empty());
}

/// Ports `tests/test_registry.py::TestRegistry.test_add_and_remove`
/// (`remove(job, delete_job=True)`, by id).
///
/// DIFFERENCE: rq's `remove` without `delete_job` drops the registry entry
/// and keeps the job, leaving it in no registry. A dueq job is in exactly
/// one registry, so `remove` always deletes it; and it only removes jobs
/// that are in that registry.
#[test]
fn registry_remove_deletes_the_job() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let job = q.enqueue_in(secs(10), "say_hello", &"x").unwrap();
    let err = q.finished().remove(job.id()).unwrap_err();
    assert!(matches!(err, Error::NoSuchJob { .. }), "{err:?}");
    assert!(f.store.job(job.id()).unwrap().is_some());
    q.scheduled().remove(job.id()).unwrap();
    assert!(f.store.job(job.id()).unwrap().is_none());
    assert_eq!(q.scheduled().count().unwrap(), 0);
}

/// Ports `tests/test_registry.py::TestRegistry.test_cleanup_moves_jobs_to_failed_job_registry`:
/// an abandoned run (no retry policy) fails with an explanation in its
/// error (rq: `exc_info`, `AbandonedJobError`).
#[test]
fn an_abandoned_run_moves_to_the_failed_registry() {
    let f = Fixture::new();
    f.store
        .queue("default")
        .job("hang", &())
        .id("lost")
        .enqueue()
        .unwrap();
    let b = copy_mid_run(&f.store, &f.clock, &f.dir.path().join("b"));
    let q = b.queue("default");
    assert_eq!(q.started().count().unwrap(), 0);
    assert_eq!(q.failed().job_ids().unwrap(), ["lost"]);
    let job = b.job("lost").unwrap().unwrap();
    assert_eq!(job.status().unwrap(), Status::Failed);
    assert!(job.error().unwrap().unwrap().contains("abandoned"));
}

/// Ports `tests/test_registry.py::TestRegistry.test_enqueue_dependents_when_parent_job_is_abandoned`:
/// when an abandoned parent fails, its allow_failure dependent is queued
/// and runs; the other does not run.
///
/// DIFFERENCE: rq leaves the other dependent deferred; dueq cancels it.
#[test]
fn an_abandoned_parent_releases_only_allow_failure_dependents() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q.job("hang", &()).id("parent").enqueue().unwrap();
    q.job("say_hello", &"run")
        .id("to_be_executed")
        .depends_on(Dependency::on(parent.id()).allow_failure())
        .enqueue()
        .unwrap();
    q.job("say_hello", &"skip")
        .id("not_to_be_executed")
        .depends_on(Dependency::on(parent.id()))
        .enqueue()
        .unwrap();
    let mut deferred = q.deferred().job_ids().unwrap();
    deferred.sort();
    assert_eq!(deferred, ["not_to_be_executed", "to_be_executed"]);

    // The copy is taken while "parent" runs; the dependents stay deferred
    // in it until recovery at open fails the parent.
    let b = copy_mid_run(&f.store, &f.clock, &f.dir.path().join("b"));
    let qb = b.queue("default");
    let status = |id: &str| b.job(id).unwrap().unwrap().status().unwrap();
    assert_eq!(status("parent"), Status::Failed);
    assert_eq!(qb.failed().job_ids().unwrap(), ["parent"]);
    assert_eq!(qb.started().count().unwrap(), 0);
    assert_eq!(qb.job_ids().unwrap(), ["to_be_executed"]);
    assert_eq!(status("to_be_executed"), Status::Queued);
    assert_eq!(status("not_to_be_executed"), Status::Canceled);

    common::burst(&b, &handlers());
    assert_eq!(status("to_be_executed"), Status::Finished);
    assert_eq!(qb.finished().job_ids().unwrap(), ["to_be_executed"]);
    assert_eq!(qb.deferred().count().unwrap(), 0);
    assert_ne!(status("not_to_be_executed"), Status::Finished);
}

/// Ports `tests/test_registry.py::TestFinishedJobRegistry.test_cleanup`
/// and `TestRegistry.test_clean_registries`: finished jobs are kept for
/// their `result_ttl`, ordered by expiry, and cleaned once it passes (in
/// dueq, by a worker's expiry pass or at open).
#[test]
fn the_finished_registry_drops_jobs_whose_result_ttl_passed() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let baz = q
        .job("say_hello", &"baz")
        .id("baz")
        .result_ttl(secs(30))
        .enqueue()
        .unwrap();
    q.job("say_hello", &"bar")
        .id("bar")
        .result_ttl(secs(10))
        .enqueue()
        .unwrap();
    f.burst(&handlers());
    assert_eq!(q.finished().job_ids().unwrap(), ["bar", "baz"], "by expiry");
    f.advance(secs(20));
    f.burst(&handlers());
    assert_eq!(q.finished().job_ids().unwrap(), ["baz"]);
    assert!(f.store.job("bar").unwrap().is_none());
    f.advance(secs(10));
    f.burst(&handlers());
    assert!(q.finished().job_ids().unwrap().is_empty());
    assert!(matches!(baz.status(), Err(Error::NoSuchJob { .. })));
}

/// Ports `tests/test_registry.py::TestFinishedJobRegistry.test_jobs_are_put_in_registry`:
/// a completed job is in the finished registry until deleted; a failed job
/// never is.
#[test]
fn completed_jobs_are_put_in_the_finished_registry() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    assert!(q.finished().job_ids().unwrap().is_empty());
    let job = q.enqueue("say_hello", &"x").unwrap();
    f.burst(&handlers());
    assert_eq!(q.finished().job_ids().unwrap(), [job.id()]);
    assert_eq!(job.status().unwrap(), Status::Finished);
    job.delete().unwrap();
    assert!(q.finished().job_ids().unwrap().is_empty());

    let failed = q.enqueue("div_by_zero", &()).unwrap();
    f.burst(&handlers());
    assert!(q.finished().job_ids().unwrap().is_empty());
    assert_eq!(q.failed().job_ids().unwrap(), [failed.id()]);
}

/// Ports `tests/test_registry.py::TestDeferredRegistry.test_add_with_deferred_ttl`
/// and `TestDeferredRegistry.test_cleanup_moves_jobs_to_failed_job_registry`:
/// a deferred job has no expiry by default; with a `ttl` it is discarded
/// once the ttl passes, with an explanation.
///
/// DIFFERENCE: rq's deferred-registry cleanup moves the expired job to the
/// failed registry; dueq moves it to the canceled registry with an
/// "expired" error (it never ran, so it did not fail), and cancels its own
/// dependents.
#[test]
fn an_expired_deferred_job_is_canceled_with_an_explanation() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q.enqueue_in(secs(3600), "say_hello", &"parent").unwrap();
    let forever = q
        .job("say_hello", &"no ttl")
        .depends_on(&parent)
        .enqueue()
        .unwrap();
    let job = q
        .job("say_hello", &"ttl")
        .depends_on(&parent)
        .ttl(secs(5))
        .enqueue()
        .unwrap();
    assert_eq!(forever.info().unwrap().expires_at, None);
    assert_eq!(job.info().unwrap().expires_at, Some(t0() + chrono(secs(5))));

    f.advance(secs(4));
    f.burst(&handlers());
    assert_eq!(job.status().unwrap(), Status::Deferred, "not yet");
    f.advance(secs(1));
    f.burst(&handlers());
    assert_eq!(job.status().unwrap(), Status::Canceled);
    assert!(job.error().unwrap().unwrap().starts_with("expired"));
    assert_eq!(q.canceled().job_ids().unwrap(), [job.id()]);
    assert_eq!(q.failed().count().unwrap(), 0);
    assert_eq!(q.deferred().job_ids().unwrap(), [forever.id()]);
}

/// Ports `tests/test_registry.py::TestFailedJobRegistry.test_default_failure_ttl`
/// and `TestFailedJobRegistry.test_worker_handle_job_failure`: a failed job
/// is kept for its `failure_ttl` (a year by default), ordered by expiry,
/// then cleaned.
#[test]
fn the_failed_registry_keeps_jobs_for_their_failure_ttl() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let default = q.enqueue("div_by_zero", &()).unwrap();
    let short = q
        .job("div_by_zero", &())
        .failure_ttl(secs(5))
        .enqueue()
        .unwrap();
    f.burst(&handlers());
    assert_eq!(q.failed().job_ids().unwrap(), ids(&[&short, &default]));
    f.advance(secs(5));
    f.burst(&handlers());
    assert_eq!(q.failed().job_ids().unwrap(), [default.id()]);
    assert!(f.store.job(short.id()).unwrap().is_none());

    f.advance(dueq::DEFAULT_FAILURE_TTL - secs(5) - ms(1));
    f.burst(&handlers());
    assert_eq!(
        default.status().unwrap(),
        Status::Failed,
        "a year minus 1 ms"
    );
    f.advance(ms(1));
    f.burst(&handlers());
    assert!(f.store.job(default.id()).unwrap().is_none());
    assert_eq!(q.failed().count().unwrap(), 0);
}

/// Ports `tests/test_registry.py::TestFailedJobRegistry.test_requeue`:
/// `registry.requeue(id)` and `job.requeue()` put a failed job back in its
/// queue; when it fails again it is back in the registry. rq's
/// `requeue_job(id)` is dueq's `store.job(id)?.requeue()`.
#[test]
fn the_failed_registry_requeues() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let job = q
        .job("div_by_zero", &())
        .failure_ttl(secs(5))
        .enqueue()
        .unwrap();
    f.burst(&handlers());
    let registry = q.failed();
    assert_eq!(registry.job_ids().unwrap(), [job.id()]);

    registry.requeue(job.id()).unwrap();
    assert!(registry.job_ids().unwrap().is_empty());
    assert_eq!(q.job_ids().unwrap(), [job.id()]);
    let info = job.info().unwrap();
    assert_eq!(info.status, Status::Queued);
    // rq also resets started_at and ended_at; dueq keeps them (and the
    // attempt log) as the record of the last run.
    assert_eq!(info.attempts, 1, "attempts are not reset, as in rq");

    f.burst(&handlers());
    assert_eq!(registry.job_ids().unwrap(), [job.id()]);
    job.requeue().unwrap();
    assert!(registry.job_ids().unwrap().is_empty());
    assert_eq!(job.status().unwrap(), Status::Queued);

    f.burst(&handlers());
    f.store.job(job.id()).unwrap().unwrap().requeue().unwrap();
    assert_eq!(q.job_ids().unwrap(), [job.id()]);

    f.burst(&handlers());
    assert_eq!(registry.requeue_all().unwrap(), 1);
    assert_eq!(job.status().unwrap(), Status::Queued);
    assert_eq!(job.info().unwrap().attempts, 4);
}

/// Ports `tests/test_registry.py::TestFailedJobRegistry.test_invalid_job`:
/// requeueing a job that is not failed is an error (rq:
/// `InvalidJobOperation`).
///
/// DIFFERENCE (also): the other registries have no `requeue` in rq; dueq's
/// `Registry` type has one, which refuses on anything but the failed
/// registry with `InvalidArgument`.
#[test]
fn requeueing_a_job_that_is_not_failed_is_an_error() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let job = q.enqueue("say_hello", &"x").unwrap();
    let err = q.failed().requeue(job.id()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidState {
                status: Status::Queued,
                ..
            }
        ),
        "{err:?}"
    );
    let err = q.failed().requeue("no-such-job").unwrap_err();
    assert!(matches!(err, Error::NoSuchJob { .. }), "{err:?}");
    // A job of another queue is not in this queue's failed registry.
    let elsewhere = f.store.queue("other").enqueue("div_by_zero", &()).unwrap();
    Worker::builder(&f.store, handlers())
        .queues(["other"])
        .threads(1)
        .burst()
        .unwrap();
    assert_eq!(elsewhere.status().unwrap(), Status::Failed);
    let err = q.failed().requeue(elsewhere.id()).unwrap_err();
    assert!(matches!(err, Error::NoSuchJob { .. }), "{err:?}");

    for r in [
        q.scheduled(),
        q.started(),
        q.finished(),
        q.canceled(),
        q.deferred(),
        q.stopped(),
    ] {
        let err = r.requeue(job.id()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidArgument {
                    what: "requeue",
                    ..
                }
            ),
            "{r:?}: {err:?}"
        );
        assert!(matches!(
            r.requeue_all(),
            Err(Error::InvalidArgument {
                what: "requeue",
                ..
            })
        ));
    }
    assert_eq!(job.status().unwrap(), Status::Queued);
}

/// Follows from the port above: `WorkerStats::expired` counts jobs
/// discarded because their `ttl` ran out before they started, deferred ones
/// (canceled by the worker's expiry pass) as well as queued ones (found at
/// claim). A regression test: the expiry pass used to drop its count.
#[test]
fn worker_stats_count_an_expired_deferred_job() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q.enqueue_in(secs(3600), "say_hello", &"parent").unwrap();
    let job = q
        .job("say_hello", &"ttl")
        .depends_on(&parent)
        .ttl(secs(5))
        .enqueue()
        .unwrap();
    f.advance(secs(5));
    let stats = f.burst(&handlers());
    assert_eq!(job.status().unwrap(), Status::Canceled, "it was discarded");
    assert_eq!(stats.expired, 1, "{stats:?}");
}
