//! Draining a queue of no-op jobs with 1, 2 and 4 worker threads, beside
//! raw sled doing the storage part of the same work: take the first key of
//! a tree and record the job as done, from the same number of threads.

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use dueq::{Durability, Worker};

use common::{job_value, BATCH};

/// Jobs per drain (one measured iteration).
const JOBS: u64 = 5_000;

fn drain(c: &mut Criterion) {
    let mut g = c.benchmark_group("drain");
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(JOBS));
    for threads in [1usize, 2, 4] {
        g.bench_function(format!("dueq_threads_{threads}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    let store = common::store(dir.path(), Durability::Buffered);
                    common::fill(&store, JOBS);
                    let start = Instant::now();
                    let stats = Worker::builder(&store, common::noop_handlers())
                        .threads(threads)
                        .burst()
                        .unwrap();
                    total += start.elapsed();
                    assert_eq!(stats.succeeded, JOBS);
                }
                total
            })
        });

        // Raw sled: `threads` threads pop the smallest key of `ready`
        // (pop_min: at-most-once, cheaper than dueq's claim) and insert the
        // job into `done`.
        g.bench_function(format!("sled_pop_insert_threads_{threads}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    let db = common::sled_db(dir.path());
                    let ready = db.open_tree("ready").unwrap();
                    let done = db.open_tree("done").unwrap();
                    let value = job_value();
                    for chunk in (0..JOBS).collect::<Vec<_>>().chunks(BATCH) {
                        let mut batch = sled::Batch::default();
                        for i in chunk {
                            batch.insert(&i.to_be_bytes(), value.as_slice());
                        }
                        ready.apply_batch(batch).unwrap();
                    }
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for _ in 0..threads {
                            s.spawn(|| {
                                while let Some((k, v)) = ready.pop_min().unwrap() {
                                    done.insert(k, v).unwrap();
                                }
                            });
                        }
                    });
                    total += start.elapsed();
                    assert_eq!(done.len(), JOBS as usize);
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = drain
}
criterion_main!(benches);
