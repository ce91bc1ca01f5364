//! Opening a store that holds many queued jobs, beside opening a raw sled
//! database holding the same entries (a job-sized value per job in one tree,
//! a 21-byte index key per job in another).

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use dueq::{Durability, Store};

use common::{job_key, job_value, BATCH};

const JOBS: u64 = 100_000;

fn open(c: &mut Criterion) {
    let mut g = c.benchmark_group("open_100k_jobs");
    g.sampling_mode(SamplingMode::Flat);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let store = common::store(dir.path(), Durability::Buffered);
        common::fill(&store, JOBS);
    }
    g.bench_function("dueq_open", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let store = Store::open(&path).unwrap();
                total += start.elapsed();
                drop(store);
            }
            total
        })
    });

    let dir = tempfile::tempdir().unwrap();
    {
        let db = common::sled_db(dir.path());
        let jobs = db.open_tree("jobs").unwrap();
        let index = db.open_tree("index").unwrap();
        let value = job_value();
        for chunk in (0..JOBS).collect::<Vec<_>>().chunks(BATCH) {
            let mut jb = sled::Batch::default();
            let mut ib = sled::Batch::default();
            for i in chunk {
                let key = job_key();
                let mut ikey = [0u8; 21];
                ikey[13..].copy_from_slice(&i.to_be_bytes());
                jb.insert(key.as_bytes(), value.as_slice());
                ib.insert(&ikey, key.as_bytes());
            }
            jobs.apply_batch(jb).unwrap();
            index.apply_batch(ib).unwrap();
        }
        db.flush().unwrap();
    }
    g.bench_function("sled_open", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let db = common::sled_db(dir.path());
                let _jobs = db.open_tree("jobs").unwrap();
                let _index = db.open_tree("index").unwrap();
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = open
}
criterion_main!(benches);
