//! Shared setup for the criterion benches: temporary stores, raw sled
//! databases configured as dueq configures its own, job-shaped keys and
//! values, and the bench's no-op handler.

#![allow(dead_code)] // each bench uses a different part

use std::path::Path;
use std::time::Duration;

use criterion::Criterion;
use dueq::{Durability, Handlers, JobError, Store};

/// A job id (UUID as text) is 36 bytes; the stored record of a bench job
/// (handler "noop", a small integer argument, queue "default") 102-106
/// bytes (read back from a store with raw sled).
pub const JOB_KEY_LEN: usize = 36;
pub const JOB_VALUE_LEN: usize = 106;
pub const BATCH: usize = 1_000;

/// Modest settings so that `cargo bench` finishes in a few minutes.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
}

pub fn store(dir: &Path, durability: Durability) -> Store {
    Store::builder(dir.join("store"))
        .durability(durability)
        .open()
        .expect("open the bench store")
}

/// A raw sled database with dueq's settings (cache, background flush).
pub fn sled_db(dir: &Path) -> sled::Db {
    sled::Config::new()
        .path(dir.join("sled"))
        .cache_capacity(dueq::DEFAULT_CACHE_CAPACITY)
        .flush_every_ms(Some(dueq::BUFFERED_FLUSH_MS))
        .open()
        .expect("open the baseline sled database")
}

pub fn job_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn job_value() -> Vec<u8> {
    (0..JOB_VALUE_LEN).map(|i| (i * 7 % 251) as u8).collect()
}

pub fn noop_handlers() -> Handlers {
    let mut handlers = Handlers::new();
    handlers.register("noop", |_: u64| -> Result<(), JobError> { Ok(()) });
    handlers
}

/// Fills queue `default` with `n` no-op jobs, buffered, in batches.
pub fn fill(store: &Store, n: u64) {
    let q = store.queue("default");
    let mut i = 0;
    while i < n {
        let k = (BATCH as u64).min(n - i);
        q.enqueue_many((i..i + k).map(|j| q.job("noop", &j)))
            .expect("fill the queue");
        i += k;
    }
    // Moves the jobs from the intake (the fast enqueue path) into the
    // queue, so that what a bench times after the fill starts from jobs in
    // place.
    let queued = q.count().expect("count the queue");
    assert!(queued as u64 >= n, "{queued} queued after a fill of {n}");
}
