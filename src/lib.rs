//! dueq: python-rq's job queue, embedded. Named queues, jobs with ids,
//! statuses, results and errors, retry policies, jobs scheduled for a time,
//! dependencies, callbacks, timeouts, cron schedules, registries, and a
//! thread pool that runs them, all in one process on one sled store on
//! disk: no server.
//!
//! # Hello world
//!
//! ```
//! use std::time::Duration;
//! use dueq::{Handlers, JobError, Retry, Store, Worker};
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("jobs.dueq");
//!
//! let store = Store::open(&path)?;
//! let q = store.queue("default");
//! let job = q
//!     .job("count_words", &"the quick brown fox")
//!     .retry(Retry::max(3).intervals([1, 5, 30]))
//!     .enqueue()?;
//!
//! let mut handlers = Handlers::new();
//! handlers.register("count_words", |text: String| -> Result<usize, JobError> {
//!     Ok(text.split_whitespace().count())
//! });
//! let worker = Worker::builder(&store, handlers).threads(2).start()?;
//!
//! assert_eq!(job.wait(Duration::from_secs(10))?, dueq::Status::Finished);
//! assert_eq!(job.result::<usize>()?, Some(4));
//! worker.shutdown(Duration::from_secs(10))?;
//! # Ok::<(), dueq::Error>(())
//! ```
//!
//! # Retries
//!
//! A job with [`Retry::max(n)`](Retry::max) runs at most `1 + n` times; the
//! wait before each retry follows rq's interval list
//! ([`Retry::intervals`]), a linear ([`Retry::linear`]) or an exponential
//! ([`Retry::exponential`]) backoff, optionally with jitter. A handler's
//! `Err`, a panic, an unknown handler name and arguments that do not decode
//! are all failed attempts. A retry waiting out its backoff is `scheduled`.
//!
//! # Scheduling
//!
//! [`Queue::enqueue_in`] and [`Queue::enqueue_at`] make a job due later.
//! Jobs are keyed on disk by due time, so a scheduled job and a retry are
//! the same thing: a key that becomes due. Workers sleep until then; nothing
//! polls.
//!
//! # Dependencies, callbacks, timeouts, schedules
//!
//! ```
//! use std::time::Duration;
//! use dueq::{Dependency, Handlers, JobError, Status, Store, Worker};
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path().join("jobs.dueq"))?;
//! let q = store.queue("default");
//! let fetch = q.job("fetch", &"https://example.com")
//!     .timeout(Duration::from_secs(30))   // cooperative: see Context::should_stop
//!     .on_failure("alert")
//!     .enqueue()?;
//! let parse = q.job("parse", &()).depends_on(&fetch).enqueue()?;
//! assert_eq!(parse.status()?, Status::Deferred);
//! store.cron("nightly", "0 3 * * *", "report", &"sales")?;
//!
//! let mut handlers = Handlers::new();
//! handlers.register("fetch", |url: String| -> Result<usize, JobError> { Ok(url.len()) });
//! handlers.register("parse", |_: ()| -> Result<(), JobError> { Ok(()) });
//! handlers.callback("alert", |cb: &dueq::Callback| -> Result<(), JobError> {
//!     eprintln!("{} failed: {:?}", cb.job_id(), cb.error());
//!     Ok(())
//! });
//! Worker::builder(&store, handlers).threads(2).burst()?;
//! assert_eq!(parse.status()?, Status::Finished);
//! # Ok::<(), dueq::Error>(())
//! ```
//!
//! A dependent runs once all its parents finish; if a parent fails for good,
//! is stopped, canceled or deleted, the dependent is canceled with a reason
//! (unless it allows failure). Timeouts are cooperative (threads cannot be
//! killed): past the deadline the attempt fails, the pool replaces the
//! thread, and the run's `should_stop` turns true. See the README's rq table
//! for every option.
//!
//! # Workers: queue order and statistics
//!
//! A worker takes jobs from its queues in priority order (the first queue
//! with a due job wins, rq's default) or one from each in turn with
//! [`DequeueStrategy::RoundRobin`]. [`Worker::stats`], and the figures
//! [`WorkerBuilder::burst`] and [`Worker::shutdown`] return, count its runs
//! and its busy time ([`WorkerStats`]); [`Store::stats`] sums them over the
//! store's workers in this process.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use dueq::{DequeueStrategy, Handlers, JobError, Store, Worker};
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path().join("jobs.dueq"))?;
//! for i in 0..2 {
//!     store.queue("high").enqueue("note", &format!("high-{i}"))?;
//!     store.queue("low").enqueue("note", &format!("low-{i}"))?;
//! }
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let s = seen.clone();
//! let mut handlers = Handlers::new();
//! handlers.register("note", move |tag: String| -> Result<(), JobError> {
//!     s.lock().unwrap().push(tag);
//!     Ok(())
//! });
//! let stats = Worker::builder(&store, handlers)
//!     .queues(["high", "low"])
//!     .threads(1)
//!     .dequeue_strategy(DequeueStrategy::RoundRobin)
//!     .burst()?;
//! assert_eq!(*seen.lock().unwrap(), ["high-0", "low-0", "high-1", "low-1"]);
//! assert_eq!((stats.succeeded, stats.failed, stats.running), (4, 0, 0));
//! # Ok::<(), dueq::Error>(())
//! ```
//!
//! While a worker runs, its statistics list the jobs running and when they
//! started:
//!
//! ```
//! use std::sync::Mutex;
//! use std::time::Duration;
//! use dueq::{Handlers, JobError, Store, Worker};
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path().join("jobs.dueq"))?;
//! let (started_tx, started) = std::sync::mpsc::channel();
//! let (release_tx, release) = std::sync::mpsc::channel::<()>();
//! let release = Mutex::new(release);
//! let mut handlers = Handlers::new();
//! handlers.register("slow", move |_: ()| -> Result<(), JobError> {
//!     started_tx.send(()).unwrap();
//!     release.lock().unwrap().recv().unwrap();
//!     Ok(())
//! });
//! let worker = Worker::builder(&store, handlers).threads(1).start()?;
//! let job = store.queue("default").enqueue("slow", &())?;
//! started.recv_timeout(Duration::from_secs(10)).unwrap();
//!
//! let now = worker.stats();
//! assert_eq!(now.running, 1);
//! assert_eq!(now.running_jobs[0].0, job.id()); // (job id, started at)
//! assert_eq!(store.stats()?.workers.running, 1);
//!
//! release_tx.send(()).unwrap();
//! job.wait(Duration::from_secs(10))?;
//! let done = worker.shutdown(Duration::from_secs(10))?;
//! assert_eq!((done.succeeded, done.running), (1, 0));
//! assert!(done.busy > Duration::ZERO);
//! # Ok::<(), dueq::Error>(())
//! ```
//!
//! # Shutdown
//!
//! [`Worker::shutdown`] stops taking jobs and waits for running ones;
//! [`WorkerBuilder::burst`] runs until nothing is due and returns.
//!
//! # Crash recovery
//!
//! With the default [`Durability::Durable`], a job is on disk when
//! `enqueue` returns. If the process dies mid-job (a crash, `kill -9`, a
//! power cut), the next [`Store::open`] recovers the run at once: it counts
//! as a failed attempt ("abandoned: ..."), and the job's retry policy decides
//! whether it runs again. A job a worker had claimed ahead of its threads
//! but not started goes back to its queue uncounted. Jobs run at least once;
//! handlers should be idempotent.
//!
//! See `ARCHITECTURE.md` for the on-disk layout and the state machine.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(unreachable_pub)]

mod clock;
mod engine;
mod error;
mod events;
mod export;
mod handlers;
mod job;
mod queue;
mod repeat;
mod retry;
mod schedule;
mod stats;
mod store;
mod verify;
mod worker;

pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::error::{Error, Result};
pub use crate::events::{Event, EventKind, DEFAULT_EVENT_BUFFER};
pub use crate::export::TransferReport;
pub use crate::handlers::{Callback, CallbackKind, Context, Handlers, JobError};
pub use crate::job::{Attempt, Job, JobInfo, Status};
pub use crate::queue::{
    Dependency, JobBuilder, Queue, Registry, DEFAULT_FAILURE_TTL, DEFAULT_RESULT_TTL,
    DEFAULT_TIMEOUT,
};
pub use crate::repeat::Repeat;
pub use crate::retry::{Interval, Retry};
pub use crate::schedule::{ScheduleBuilder, ScheduleInfo};
pub use crate::stats::{prometheus, QueueStats, Stats};
pub use crate::store::{
    Durability, Store, StoreBuilder, BUFFERED_FLUSH_MS, DEFAULT_CACHE_CAPACITY, DEFAULT_MAX_PAYLOAD,
};
pub use crate::verify::{Problem, ProblemKind, VerifyReport};
pub use crate::worker::{
    DequeueStrategy, Worker, WorkerBuilder, WorkerStats, DEFAULT_CALLBACK_TIMEOUT, DEFAULT_LEASE,
};

/// Entry points for the fuzz targets under `fuzz/`. Not part of the API:
/// no stability promise, hidden from the docs.
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes `bytes` as the stored record of job `id`; `true` if it
    /// decoded. Must never panic, whatever the bytes.
    pub fn decode_record(id: &[u8], bytes: &[u8]) -> bool {
        crate::engine::fuzz_decode_record(id, bytes)
    }

    /// Decodes `bytes` as an index key; `true` if it decoded. Must never
    /// panic, whatever the bytes.
    pub fn decode_key(bytes: &[u8]) -> bool {
        crate::engine::fuzz_decode_key(bytes)
    }

    /// Decodes `bytes` as an intake entry (jobs enqueued by the fast path);
    /// `true` if it decoded. Must never panic, whatever the bytes.
    pub fn decode_intake(bytes: &[u8]) -> bool {
        crate::engine::fuzz_decode_intake(bytes)
    }

    /// An intake entry holding one job, as the fast enqueue path writes it.
    pub fn intake_entry(key: &[u8], id: &str, record: &[u8]) -> Vec<u8> {
        crate::engine::fuzz_intake_entry(key, id, record)
    }
}
