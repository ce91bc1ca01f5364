//! Due-to-start latency of a scheduled job on an idle worker: a job enqueued
//! due in 10 ms, measured from its due time to its handler's first line.
//! Beside it, the floor: a thread sleeping until the same kind of deadline.
//! Criterion reports the mean latency per job.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use dueq::{Durability, Handlers, JobError, Worker};

const DELAY: Duration = Duration::from_millis(10);

fn latency(c: &mut Criterion) {
    let mut g = c.benchmark_group("latency");
    g.sampling_mode(SamplingMode::Flat);
    // Every iteration takes ~DELAY of wall time but reports only the
    // latency, so keep criterion's time budget (in reported time) small.
    g.warm_up_time(Duration::from_millis(100));
    g.measurement_time(Duration::from_millis(500));

    let dir = tempfile::tempdir().unwrap();
    let store = common::store(dir.path(), Durability::Durable);
    // The job's argument is its due time (ms since the epoch): the job is
    // enqueued with `enqueue_at` a millisecond-aligned time, which is then
    // exactly its due time, and the handler measures from it.
    let (tx, rx) = mpsc::channel::<i64>();
    let mut handlers = Handlers::new();
    handlers.register("latency", move |due_ms: i64| -> Result<(), JobError> {
        let _ = tx.send(chrono::Utc::now().timestamp_micros() - due_ms * 1_000);
        Ok(())
    });
    let worker = Worker::builder(&store, handlers)
        .threads(2)
        .start()
        .unwrap();
    let q = store.queue("default");
    g.bench_function("dueq_due_to_start_10ms", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let due_ms = chrono::Utc::now().timestamp_millis() + DELAY.as_millis() as i64;
                let due = chrono::DateTime::from_timestamp_millis(due_ms).unwrap();
                q.job("latency", &due_ms)
                    .result_ttl(Duration::ZERO)
                    .enqueue_at(due)
                    .unwrap();
                let late_us = rx.recv_timeout(Duration::from_secs(5)).unwrap();
                total += Duration::from_micros(late_us.max(0) as u64);
                std::thread::sleep(Duration::from_millis(2));
            }
            total
        })
    });
    worker.shutdown(Duration::from_secs(10)).unwrap();

    g.bench_function("thread_sleep_until_due_10ms", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let due = Instant::now() + DELAY;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                total += Instant::now().saturating_duration_since(due);
                std::thread::sleep(Duration::from_millis(2));
            }
            total
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = latency
}
criterion_main!(benches);
