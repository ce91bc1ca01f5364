//! Retry policies end to end, through real jobs and a burst worker on a
//! `ManualClock`: every wait is pinned to the millisecond.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{chrono, ms, open_manual, runs, secs, t0, Fixture};
use dueq::{Handlers, Job, JobError, Retry, Status};
use serde::{Deserialize, Serialize};

/// The typed result of the "flaky" handler.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Done {
    attempt: u32,
    failed_first: u32,
}

/// Handlers that count their runs:
/// * "flaky": fails while `ctx.attempt() <= n` (its argument), then returns `Done`;
/// * "always_fail": fails every time, naming the attempt.
fn handlers(runs: &Arc<AtomicU32>) -> Handlers {
    let mut h = Handlers::new();
    let r = runs.clone();
    h.register_with_context("flaky", move |ctx, n: u32| -> Result<Done, JobError> {
        r.fetch_add(1, Ordering::SeqCst);
        if ctx.attempt() <= n {
            return Err(JobError::new(format!("attempt {} failed", ctx.attempt())));
        }
        Ok(Done {
            attempt: ctx.attempt(),
            failed_first: n,
        })
    });
    let r = runs.clone();
    h.register_with_context("always_fail", move |ctx, _: ()| -> Result<(), JobError> {
        r.fetch_add(1, Ordering::SeqCst);
        Err(JobError::new(format!("boom on attempt {}", ctx.attempt())))
    });
    h
}

/// One run of a job, as observed from outside.
#[derive(Debug)]
struct Run {
    at: DateTime<Utc>,
}

/// Runs `job` (due now) and then each of its retries, one per entry of
/// `waits`. After every failed run it checks that the job is scheduled
/// exactly `wait` after the failure, that a burst 1 ms early runs nothing,
/// and that a burst on time runs it. Returns the time of every run; the
/// outcome of the last one is left to the caller.
fn drive(f: &Fixture, h: &Handlers, job: &Job, waits: &[Duration]) -> Vec<Run> {
    let q = f.store.queue(job.info().unwrap().queue);
    let mut done = vec![Run { at: f.store.now() }];
    let stats = f.burst(h);
    assert_eq!(runs(&stats), 1, "the first run");
    for (i, &wait) in waits.iter().enumerate() {
        let k = i as u32 + 1; // the run that just failed, and the retry now due
        let failed_at = f.store.now();
        let info = job.info().unwrap();
        assert_eq!(info.status, Status::Scheduled, "after failed run {k}");
        assert_eq!(info.attempts, k);
        assert_eq!(
            info.due_at,
            Some(failed_at + chrono(wait)),
            "retry {k} must wait exactly {wait:?}"
        );
        let last = info.attempts_log.last().unwrap();
        assert_eq!(last.number, k);
        assert!(last.error.is_some());
        assert_eq!(last.retry_at, info.due_at);
        assert_eq!(q.scheduled().job_ids().unwrap(), [job.id()]);
        assert_eq!(q.failed().count().unwrap(), 0, "a retry is not a failure");
        assert_eq!(q.count().unwrap(), 0);

        f.advance(wait - ms(1));
        let stats = f.burst(h);
        assert_eq!(runs(&stats), 0, "retry {k} ran 1 ms early");
        assert_eq!(job.status().unwrap(), Status::Scheduled);

        f.advance(ms(1));
        assert_eq!(job.status().unwrap(), Status::Queued);
        done.push(Run { at: f.store.now() });
        let stats = f.burst(h);
        assert_eq!(runs(&stats), 1, "retry {k} runs on time, once");
    }
    done
}

fn secs_list(list: &[u64]) -> Vec<Duration> {
    list.iter().map(|&s| secs(s)).collect()
}

#[test]
fn retry_success() {
    let cases: Vec<(&str, Retry, Vec<Duration>)> = vec![
        (
            "intervals",
            Retry::max(3).intervals([10, 30, 60]),
            secs_list(&[10, 30, 60]),
        ),
        (
            "linear",
            Retry::max(3).linear(60, 60, 180),
            secs_list(&[60, 120, 180]),
        ),
        (
            "exponential",
            Retry::max(4).exponential(5, 3.0, 60),
            secs_list(&[5, 15, 45, 60]),
        ),
        (
            "exponential, durations",
            Retry::max(3).exponential(ms(250), 2.0, secs(1)),
            vec![ms(250), ms(500), secs(1)],
        ),
        (
            "fewer failures than retries",
            Retry::max(5).intervals([10, 30, 60]),
            secs_list(&[10, 10]),
        ),
    ];
    for (name, policy, waits) in cases {
        let f = Fixture::new();
        let count = Arc::new(AtomicU32::new(0));
        let h = handlers(&count);
        let n = waits.len() as u32; // failures before the success
        for (k, wait) in waits.iter().enumerate() {
            assert_eq!(policy.wait(k as u32 + 1), *wait, "{name}: Retry::wait");
        }
        let q = f.store.queue("default");
        let job = q.job("flaky", &n).retry(policy.clone()).enqueue().unwrap();
        assert_eq!(job.info().unwrap().retry.as_ref(), Some(&policy));

        let run_times = drive(&f, &h, &job, &waits);

        assert_eq!(job.status().unwrap(), Status::Finished, "{name}");
        assert_eq!(
            job.result::<Done>().unwrap(),
            Some(Done {
                attempt: n + 1,
                failed_first: n
            }),
            "{name}"
        );
        assert_eq!(count.load(Ordering::SeqCst), n + 1, "{name}: runs");
        let info = job.info().unwrap();
        assert_eq!(info.attempts, n + 1, "{name}");
        assert_eq!(info.error, Some(format!("attempt {n} failed")), "{name}");
        assert_eq!(info.started_at, Some(run_times[n as usize].at));
        assert_eq!(info.ended_at, Some(run_times[n as usize].at));
        assert_eq!(info.attempts_log.len(), n as usize + 1, "{name}");
        for (i, attempt) in info.attempts_log.iter().enumerate() {
            assert_eq!(attempt.number, i as u32 + 1, "{name}");
            assert_eq!(attempt.started_at, run_times[i].at, "{name}");
            assert_eq!(attempt.ended_at, run_times[i].at, "{name}");
            if i < n as usize {
                assert_eq!(
                    attempt.error,
                    Some(format!("attempt {} failed", i + 1)),
                    "{name}"
                );
                assert_eq!(
                    attempt.retry_at,
                    Some(run_times[i].at + chrono(waits[i])),
                    "{name}"
                );
            } else {
                assert_eq!(attempt.error, None, "{name}: the successful run");
                assert_eq!(attempt.retry_at, None, "{name}");
            }
        }
        assert_eq!(q.finished().job_ids().unwrap(), [job.id()]);
        assert_eq!(q.failed().count().unwrap(), 0);
        assert_eq!(q.scheduled().count().unwrap(), 0);
    }
}

/// A job that always fails runs exactly `1 + max` times, waiting the given
/// table, and ends failed with its last error.
fn assert_fails_after(policy: Retry, waits: &[Duration]) {
    let f = Fixture::new();
    let count = Arc::new(AtomicU32::new(0));
    let h = handlers(&count);
    let max = policy.max_retries();
    assert_eq!(waits.len() as u32, max);
    for (k, wait) in waits.iter().enumerate() {
        assert_eq!(policy.wait(k as u32 + 1), *wait, "Retry::wait({})", k + 1);
    }
    let q = f.store.queue("default");
    let job = q.job("always_fail", &()).retry(policy).enqueue().unwrap();
    let run_times = drive(&f, &h, &job, waits);

    assert_eq!(count.load(Ordering::SeqCst), max + 1);
    assert_eq!(job.status().unwrap(), Status::Failed);
    let info = job.info().unwrap();
    assert_eq!(info.attempts, max + 1);
    assert_eq!(info.error, Some(format!("boom on attempt {}", max + 1)));
    assert_eq!(info.due_at, None);
    assert_eq!(info.ended_at, Some(run_times.last().unwrap().at));
    let last = info.attempts_log.last().unwrap();
    assert_eq!(last.retry_at, None, "the final failure is not retried");
    assert_eq!(job.error().unwrap(), info.error);
    assert_eq!(q.failed().job_ids().unwrap(), [job.id()]);
    assert_eq!(q.scheduled().count().unwrap(), 0);
    assert_eq!(q.count().unwrap(), 0);

    // Nothing runs it again, however long we wait (within its failure_ttl).
    f.advance(secs(7 * 24 * 3600));
    assert_eq!(runs(&f.burst(&h)), 0);
    assert_eq!(count.load(Ordering::SeqCst), max + 1);
}

#[test]
fn rq_intervals_max_3_wait_10_30_60() {
    assert_fails_after(
        Retry::max(3).intervals([10, 30, 60]),
        &secs_list(&[10, 30, 60]),
    );
}

#[test]
fn rq_intervals_max_5_repeat_the_first_interval() {
    assert_fails_after(
        Retry::max(5).intervals([10, 30, 60]),
        &secs_list(&[10, 10, 10, 30, 60]),
    );
}

#[test]
fn rq_intervals_max_2_use_the_tail() {
    assert_fails_after(Retry::max(2).intervals([10, 30, 60]), &secs_list(&[30, 60]));
}

#[test]
fn rq_single_interval_repeats() {
    assert_fails_after(Retry::max(3).intervals([5]), &secs_list(&[5, 5, 5]));
}

#[test]
fn rq_intervals_as_durations() {
    assert_fails_after(
        Retry::max(2).intervals([ms(500), secs(2)]),
        &[ms(500), secs(2)],
    );
}

#[test]
fn linear_60_60_180_waits_60_120_180() {
    assert_fails_after(
        Retry::max(3).linear(60, 60, 180),
        &secs_list(&[60, 120, 180]),
    );
    assert_fails_after(
        Retry::max(5).linear(60, 60, 180),
        &secs_list(&[60, 120, 180, 180, 180]),
    );
}

#[test]
fn exponential_doubles_up_to_its_cap() {
    assert_fails_after(
        Retry::max(5).exponential(1, 2.0, 10),
        &secs_list(&[1, 2, 4, 8, 10]),
    );
}

#[test]
fn no_retry_policy_fails_on_the_first_error() {
    for policy in [None, Some(Retry::max(0).intervals([10]))] {
        let f = Fixture::new();
        let count = Arc::new(AtomicU32::new(0));
        let h = handlers(&count);
        let q = f.store.queue("default");
        let mut builder = q.job("flaky", &1u32);
        if let Some(p) = policy.clone() {
            builder = builder.retry(p);
        }
        let job = builder.enqueue().unwrap();
        let stats = f.burst(&h);
        assert_eq!((stats.succeeded, stats.failed), (0, 1), "{policy:?}");
        assert_eq!(job.status().unwrap(), Status::Failed, "{policy:?}");
        assert_eq!(job.error().unwrap().as_deref(), Some("attempt 1 failed"));
        assert_eq!(job.info().unwrap().attempts_log[0].retry_at, None);
        assert_eq!(q.failed().job_ids().unwrap(), [job.id()]);
        f.advance(secs(3600));
        assert_eq!(runs(&f.burst(&h)), 0);
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn zero_wait_retries_run_again_in_the_same_burst() {
    let f = Fixture::new();
    let count = Arc::new(AtomicU32::new(0));
    let h = handlers(&count);
    let q = f.store.queue("default");
    let job = q
        .job("flaky", &2u32)
        .retry(Retry::max(2))
        .enqueue()
        .unwrap();
    let stats = f.burst(&h);
    assert_eq!((stats.succeeded, stats.failed), (1, 2));
    assert_eq!(job.status().unwrap(), Status::Finished);
    assert_eq!(
        job.result::<Done>().unwrap(),
        Some(Done {
            attempt: 3,
            failed_first: 2
        })
    );
    let info = job.info().unwrap();
    assert_eq!(info.attempts, 3);
    assert_eq!(info.attempts_log[0].retry_at, Some(t0()));
    assert_eq!(info.attempts_log[1].retry_at, Some(t0()));
}

#[test]
fn requeue_of_an_exhausted_job_fails_again_after_one_run() {
    let f = Fixture::new();
    let count = Arc::new(AtomicU32::new(0));
    let h = handlers(&count);
    let q = f.store.queue("default");
    let job = q
        .job("always_fail", &())
        .retry(Retry::max(1).intervals([5]))
        .enqueue()
        .unwrap();
    drive(&f, &h, &job, &[secs(5)]);
    assert_eq!(job.status().unwrap(), Status::Failed);
    assert_eq!(count.load(Ordering::SeqCst), 2);

    job.requeue().unwrap();
    assert_eq!(job.status().unwrap(), Status::Queued);
    assert_eq!(job.info().unwrap().attempts, 2, "attempts are not reset");
    let stats = f.burst(&h);
    assert_eq!((stats.succeeded, stats.failed), (0, 1));
    assert_eq!(count.load(Ordering::SeqCst), 3);
    // rq's rule: the policy is used up, so one more failure fails it at once.
    assert_eq!(job.status().unwrap(), Status::Failed);
    let info = job.info().unwrap();
    assert_eq!(info.attempts, 3);
    assert_eq!(info.error.as_deref(), Some("boom on attempt 3"));
    assert_eq!(info.attempts_log.last().unwrap().retry_at, None);
    assert_eq!(q.failed().job_ids().unwrap(), [job.id()]);

    f.advance(secs(5));
    assert_eq!(runs(&f.burst(&h)), 0);
}

#[test]
fn a_requeued_job_can_then_succeed() {
    let f = Fixture::new();
    let broken = Arc::new(AtomicBool::new(true));
    let mut h = Handlers::new();
    let b = broken.clone();
    h.register("fixable", move |x: i32| -> Result<i32, JobError> {
        if b.load(Ordering::SeqCst) {
            Err(JobError::new("not yet"))
        } else {
            Ok(x * 2)
        }
    });
    let q = f.store.queue("default");
    let job = q.enqueue("fixable", &21).unwrap();
    f.burst(&h);
    assert_eq!(job.status().unwrap(), Status::Failed);
    broken.store(false, Ordering::SeqCst);
    q.failed().requeue(job.id()).unwrap();
    let stats = f.burst(&h);
    assert_eq!(stats.succeeded, 1);
    assert_eq!(job.status().unwrap(), Status::Finished);
    assert_eq!(job.result::<i32>().unwrap(), Some(42));
    assert_eq!(job.info().unwrap().attempts, 2);
}

#[test]
fn jitter_keeps_each_wait_within_its_fraction() {
    let f = Fixture::new();
    let count = Arc::new(AtomicU32::new(0));
    let h = handlers(&count);
    let q = f.store.queue("default");
    let policy = Retry::max(2).intervals([100, 100]).jitter(0.2);
    let jobs = q
        .enqueue_many((0..10).map(|i| {
            q.job("always_fail", &())
                .id(format!("jittered-{i}"))
                .retry(policy.clone())
        }))
        .unwrap();

    for retry in 1..=2u32 {
        f.burst(&h);
        let failed_at = f.store.now();
        let mut waits = HashSet::new();
        for job in &jobs {
            let info = job.info().unwrap();
            assert_eq!(info.status, Status::Scheduled);
            assert_eq!(info.attempts, retry);
            let wait = (info.due_at.unwrap() - failed_at).num_milliseconds();
            assert!(
                (80_000..=120_000).contains(&wait),
                "retry {retry} of {} waits {wait} ms, not within 20% of 100 s",
                job.id()
            );
            waits.insert(wait);
        }
        assert!(
            waits.len() > 1,
            "jitter must spread jobs that failed together: {waits:?}"
        );
        assert!(
            waits.iter().any(|&w| w != 100_000),
            "jitter must change the wait"
        );
        // Nothing is due before 80 s; everything is due by 120 s.
        f.advance(secs(80) - ms(1));
        assert_eq!(runs(&f.burst(&h)), 0);
        f.advance(secs(40) + ms(1));
    }
    let stats = f.burst(&h);
    assert_eq!(stats.failed, 10);
    assert_eq!(count.load(Ordering::SeqCst), 30);
    assert_eq!(q.failed().count().unwrap(), 10);
}

#[test]
fn jitter_applies_to_exponential_backoff_too() {
    let f = Fixture::new();
    let count = Arc::new(AtomicU32::new(0));
    let h = handlers(&count);
    let q = f.store.queue("default");
    let jobs = q
        .enqueue_many((0..6).map(|_| {
            q.job("always_fail", &())
                .retry(Retry::max(1).exponential(10, 2.0, 100).jitter(0.2))
        }))
        .unwrap();
    f.burst(&h);
    for job in &jobs {
        let wait = (job.info().unwrap().due_at.unwrap() - t0()).num_milliseconds();
        assert!((8_000..=12_000).contains(&wait), "{wait} ms");
    }
}

#[test]
fn a_panic_is_a_failed_attempt_and_is_retried() {
    let f = Fixture::new();
    let mut h = Handlers::new();
    h.register_with_context("panics_once", |ctx, _: ()| -> Result<u32, JobError> {
        if ctx.attempt() == 1 {
            panic!("first run explodes");
        }
        Ok(ctx.attempt())
    });
    let q = f.store.queue("default");
    let job = q
        .job("panics_once", &())
        .retry(Retry::max(1).intervals([7]))
        .enqueue()
        .unwrap();
    let stats = f.burst(&h);
    assert_eq!(stats.failed, 1);
    let info = job.info().unwrap();
    assert_eq!(info.status, Status::Scheduled);
    assert_eq!(info.due_at, Some(t0() + chrono(secs(7))));
    let error = info.error.unwrap();
    assert!(error.contains("panicked"), "{error}");
    assert!(error.contains("first run explodes"), "{error}");
    f.advance(secs(7));
    assert_eq!(f.burst(&h).succeeded, 1);
    assert_eq!(job.result::<u32>().unwrap(), Some(2));
}

#[test]
fn a_job_waiting_out_a_retry_can_be_canceled() {
    let f = Fixture::new();
    let count = Arc::new(AtomicU32::new(0));
    let h = handlers(&count);
    let q = f.store.queue("default");
    let job = q
        .job("always_fail", &())
        .retry(Retry::max(3).intervals([10]))
        .enqueue()
        .unwrap();
    f.burst(&h);
    assert_eq!(job.status().unwrap(), Status::Scheduled);
    job.cancel().unwrap();
    assert_eq!(job.status().unwrap(), Status::Canceled);
    assert_eq!(q.canceled().job_ids().unwrap(), [job.id()]);
    f.advance(secs(60));
    assert_eq!(runs(&f.burst(&h)), 0);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn a_pending_retry_survives_a_reopen() {
    let f = Fixture::new();
    let count = Arc::new(AtomicU32::new(0));
    let h = handlers(&count);
    let job = f
        .store
        .queue("default")
        .job("flaky", &2u32)
        .id("survivor")
        .retry(Retry::max(2).intervals([10, 20]))
        .enqueue()
        .unwrap();
    f.burst(&h);
    assert_eq!(job.info().unwrap().due_at, Some(t0() + chrono(secs(10))));
    let common::Fixture {
        dir: _dir,
        path,
        clock,
        store,
    } = f;
    drop((job, store));

    let store = open_manual(&path, &clock);
    let job = store.job("survivor").unwrap().unwrap();
    let info = job.info().unwrap();
    assert_eq!(info.status, Status::Scheduled);
    assert_eq!(info.due_at, Some(t0() + chrono(secs(10))));
    assert_eq!(info.retry, Some(Retry::max(2).intervals([10, 20])));
    clock.advance(secs(10));
    assert_eq!(common::burst(&store, &h).failed, 1);
    assert_eq!(
        job.info().unwrap().due_at,
        Some(t0() + chrono(secs(10)) + chrono(secs(20)))
    );
    clock.advance(secs(20));
    assert_eq!(common::burst(&store, &h).succeeded, 1);
    assert_eq!(job.info().unwrap().attempts, 3);
}
