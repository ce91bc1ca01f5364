//! Helpers shared by the integration tests: stores on a `ManualClock`, burst
//! runs, and small time conversions.
#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dueq::{Handlers, ManualClock, Store, Worker, WorkerStats};

/// The instant every `ManualClock` in the tests starts at.
pub fn t0() -> DateTime<Utc> {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

/// A store in a fresh temporary directory, running on a `ManualClock` that
/// stands at [`t0`].
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub clock: ManualClock,
    pub store: Store,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.dueq");
        let clock = ManualClock::new(t0());
        let store = open_manual(&path, &clock);
        Fixture {
            dir,
            path,
            clock,
            store,
        }
    }

    /// Advances the clock.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Runs one burst with a single worker thread on the "default" queue.
    pub fn burst(&self, handlers: &Handlers) -> WorkerStats {
        burst(&self.store, handlers)
    }
}

/// Opens the store at `path` on `clock`.
pub fn open_manual(path: &Path, clock: &ManualClock) -> Store {
    Store::builder(path).clock(clock.clone()).open().unwrap()
}

/// Runs everything due now on the "default" queue with one thread, then
/// returns the worker's statistics.
pub fn burst(store: &Store, handlers: &Handlers) -> WorkerStats {
    Worker::builder(store, handlers.clone())
        .threads(1)
        .burst()
        .unwrap()
}

/// How many runs a burst made (succeeded or failed).
pub fn runs(stats: &WorkerStats) -> u64 {
    stats.succeeded + stats.failed
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A std `Duration` as a chrono one, for `DateTime` arithmetic.
pub fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap()
}

/// Copies a directory tree (a live store's files), so that what is on disk
/// at this moment can be opened on its own.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Opens a store's sled database directly (for tampering or inspection).
/// sled releases its lock from a background thread after a close, so a
/// direct open right after dropping a `Store` may need a moment (sled#1289).
pub fn open_raw(path: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot open {}: {e}", path.display()),
        }
    }
}
