//! Enqueue throughput: one call per job, `enqueue_many`, and durable
//! enqueues from 1 and 8 threads, each beside raw sled doing the same shape
//! of write (plain inserts; inserts + flush).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dueq::Durability;

use common::{job_key, job_value, BATCH};

fn enqueue(c: &mut Criterion) {
    let mut g = c.benchmark_group("enqueue");
    g.throughput(Throughput::Elements(1));

    let dir = tempfile::tempdir().unwrap();
    let store = common::store(dir.path(), Durability::Buffered);
    let q = store.queue("default");
    let i = AtomicU64::new(0);
    g.bench_function("dueq_buffered", |b| {
        b.iter(|| {
            q.enqueue("noop", &i.fetch_add(1, Ordering::Relaxed))
                .unwrap()
        })
    });
    drop(store);

    let dir = tempfile::tempdir().unwrap();
    let db = common::sled_db(dir.path());
    let tree = db.open_tree("jobs").unwrap();
    let value = job_value();
    g.bench_function("sled_insert", |b| {
        b.iter_batched(
            job_key,
            |key| tree.insert(key.as_bytes(), value.as_slice()).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn enqueue_many(c: &mut Criterion) {
    let mut g = c.benchmark_group("enqueue_many");
    g.throughput(Throughput::Elements(BATCH as u64));

    let dir = tempfile::tempdir().unwrap();
    let store = common::store(dir.path(), Durability::Buffered);
    let q = store.queue("default");
    let mut next = 0u64;
    g.bench_function("dueq_buffered_1000", |b| {
        b.iter(|| {
            let start = next;
            next += BATCH as u64;
            q.enqueue_many((start..next).map(|j| q.job("noop", &j)))
                .unwrap()
        })
    });
    drop(store);

    let dir = tempfile::tempdir().unwrap();
    let db = common::sled_db(dir.path());
    let tree = db.open_tree("jobs").unwrap();
    let value = job_value();
    g.bench_function("sled_batch_1000", |b| {
        b.iter_batched(
            || (0..BATCH).map(|_| job_key()).collect::<Vec<_>>(),
            |keys| {
                let mut batch = sled::Batch::default();
                for k in &keys {
                    batch.insert(k.as_bytes(), value.as_slice());
                }
                tree.apply_batch(batch).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Runs `iters` calls of `op` spread over `threads` threads and returns the
/// wall time.
fn spread(threads: u64, iters: u64, op: &(dyn Fn(u64) + Sync)) -> Duration {
    let per = iters.div_ceil(threads);
    let start = Instant::now();
    thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in 0..per {
                    op(t * per + i);
                }
            });
        }
    });
    start.elapsed()
}

fn enqueue_durable(c: &mut Criterion) {
    let mut g = c.benchmark_group("enqueue_durable");
    g.throughput(Throughput::Elements(1));
    for threads in [1u64, 8] {
        let dir = tempfile::tempdir().unwrap();
        let store = common::store(dir.path(), Durability::Durable);
        let q = store.queue("default");
        g.bench_function(format!("dueq_threads_{threads}"), |b| {
            b.iter_custom(|iters| {
                spread(threads, iters, &|i| {
                    q.enqueue("noop", &i).unwrap();
                })
            })
        });
        drop(store);

        // The same writes on raw sled, made durable as dueq makes them:
        // insert, then flush (sled's own, sync_file_range on Linux), then
        // fsync of the db file. Concurrent flushes coalesce inside sled.
        let dir = tempfile::tempdir().unwrap();
        let db = common::sled_db(dir.path());
        let tree = db.open_tree("jobs").unwrap();
        let file = std::fs::File::open(dir.path().join("sled").join("db")).unwrap();
        let value = job_value();
        g.bench_function(format!("sled_insert_flush_threads_{threads}"), |b| {
            b.iter_custom(|iters| {
                spread(threads, iters, &|_| {
                    tree.insert(job_key().as_bytes(), value.as_slice()).unwrap();
                    db.flush().unwrap();
                })
            })
        });
        g.bench_function(format!("sled_insert_flush_fsync_threads_{threads}"), |b| {
            b.iter_custom(|iters| {
                spread(threads, iters, &|_| {
                    tree.insert(job_key().as_bytes(), value.as_slice()).unwrap();
                    db.flush().unwrap();
                    file.sync_all().unwrap();
                })
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = enqueue, enqueue_many, enqueue_durable
}
criterion_main!(benches);
