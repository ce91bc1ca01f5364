//! `Store`: one job store on disk, and how it is opened.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::clock::{dur_ms, to_ms, Clock, SystemClock};
use crate::engine::{Committer, Engine, JobRecord};
use crate::error::Result;
use crate::{Job, Queue, Status};

/// By default, sled's page cache is capped at 64 MiB (sled's own default,
/// 1 GiB, is too much for an app that embeds a queue).
pub const DEFAULT_CACHE_CAPACITY: u64 = 64 << 20;
/// By default, job arguments and results are capped at 64 KiB each.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 << 10;
/// sled's background flush interval, which bounds the loss window of
/// [`Durability::Buffered`].
pub const BUFFERED_FLUSH_MS: u64 = 500;

/// When an acknowledged write is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// `enqueue`, `enqueue_many`, `cancel`, `requeue` and `delete` return
    /// only once their write is on disk (sled `flush` plus `fsync` of the
    /// store's file). Concurrent callers share one flush (group commit). The
    /// default.
    #[default]
    Durable,
    /// Writes reach disk on sled's background flush, every 500 ms: a crash
    /// (or power cut) can lose what was acknowledged in the last ~500 ms.
    /// Much faster for bulk enqueues; [`Store::flush`] makes a durable point.
    Buffered,
}

/// Opens a [`Store`] with options.
///
/// # Examples
///
/// ```
/// use dueq::{Durability, Store};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::builder(dir.path().join("jobs.dueq"))
///     .durability(Durability::Buffered)
///     .cache_capacity(16 << 20)
///     .open()?;
/// # Ok::<(), dueq::Error>(())
/// ```
#[must_use = "a builder does nothing until `open` is called"]
pub struct StoreBuilder {
    path: PathBuf,
    durability: Durability,
    cache_capacity: u64,
    max_payload: usize,
    clock: Arc<dyn Clock>,
}

impl StoreBuilder {
    /// When acknowledged writes are on disk. By default,
    /// [`Durability::Durable`].
    pub fn durability(mut self, durability: Durability) -> StoreBuilder {
        self.durability = durability;
        self
    }

    /// The size of sled's page cache, in bytes. By default 64 MiB. The
    /// process's memory use runs above it (sled counts serialized bytes).
    pub fn cache_capacity(mut self, bytes: u64) -> StoreBuilder {
        self.cache_capacity = bytes;
        self
    }

    /// The largest job arguments and job result accepted, in bytes of JSON.
    /// By default 64 KiB. sled writes values above ~128 KiB to separate
    /// files it never fsyncs, so keep payloads well below that; pass a
    /// reference (a path, an id) for large data.
    pub fn max_payload(mut self, bytes: usize) -> StoreBuilder {
        self.max_payload = bytes;
        self
    }

    /// The clock every due time, lease and TTL is computed from. By default
    /// [`SystemClock`]; tests pass a [`ManualClock`](crate::ManualClock).
    pub fn clock(mut self, clock: impl Clock) -> StoreBuilder {
        self.clock = Arc::new(clock);
        self
    }

    /// Opens (or creates) the store.
    ///
    /// Any job that was running when the process that last had the store
    /// open stopped is recovered at once: its lost run counts as a failed
    /// attempt ("abandoned: ..."), and its retry policy decides between
    /// running it again and failing it. A job a worker had claimed ahead
    /// (see [`WorkerBuilder::prefetch`](crate::WorkerBuilder::prefetch)) but
    /// not started goes back to its queue without an attempt counted.
    ///
    /// # Errors
    ///
    /// [`Error::StoreInUse`](crate::Error::StoreInUse) if another process
    /// (or another `Store` in this one) has it open;
    /// [`Error::ForeignData`](crate::Error::ForeignData) and
    /// [`Error::UnsupportedSchema`](crate::Error::UnsupportedSchema) for data
    /// that is not a store this version reads; storage and I/O errors.
    pub fn open(self) -> Result<Store> {
        let engine = Engine::open(
            &self.path,
            &crate::engine::OpenOptions {
                cache_capacity: self.cache_capacity,
                flush_every_ms: Some(BUFFERED_FLUSH_MS),
            },
        )?;
        let now = to_ms(self.clock.now());
        // Runs whose claim was lost with the process first (they are back in
        // READY), then runs whose claim survived (still STARTED).
        let recovered = engine.replay_journal(now)? + engine.recover_all(now)?;
        engine.expire(now)?;
        // Makes the recovery durable, and leaves an empty journal for this
        // session's runs.
        engine.rotate_journal(true)?;
        let db_file = File::open(self.path.join("db"))?;
        let committer = match self.durability {
            Durability::Durable => {
                let db = engine.db().clone();
                Some(Committer::start(Box::new(move || {
                    db.flush().map_err(std::io::Error::other)?;
                    db_file.sync_all()
                }))?)
            }
            Durability::Buffered => None,
        };
        let signal = Arc::downgrade(&engine.signal);
        self.clock.on_jump(Box::new(move || {
            if let Some(signal) = signal.upgrade() {
                signal.notify();
            }
        }));
        Ok(Store {
            inner: Arc::new(Inner {
                engine,
                committer,
                clock: self.clock,
                durability: self.durability,
                max_payload: self.max_payload,
                recovered,
                workers: parking_lot::Mutex::new(Vec::new()),
            }),
        })
    }
}

/// A job store: a directory on disk holding queues and their jobs. rq's
/// Redis connection, embedded.
///
/// Cheap to clone (clones share one open store). sled allows one process
/// to open a store at a time, and one `Store` per process: share the handle.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let store = dueq::Store::open(dir.path().join("jobs.dueq"))?;
/// let job = store.queue("default").enqueue("count_words", &"https://example.com")?;
/// assert_eq!(job.status()?, dueq::Status::Queued);
/// # Ok::<(), dueq::Error>(())
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    committer: Option<Committer>,
    clock: Arc<dyn Clock>,
    durability: Durability,
    max_payload: usize,
    recovered: usize,
    /// The workers started on this store in this process, for `stats`.
    workers: parking_lot::Mutex<Vec<std::sync::Weak<dyn crate::worker::Figures>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The committer goes first (it flushes what is pending); then one
        // last flush so a clean close loses nothing, even when buffered.
        self.committer.take();
        let _ = self.engine.rotate_journal(true);
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path())
            .field("durability", &self.inner.durability)
            .finish()
    }
}

impl Store {
    /// Opens (or creates) the store at `path` with the default options.
    /// See [`StoreBuilder::open`].
    ///
    /// # Errors
    ///
    /// As [`StoreBuilder::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::builder(path).open()
    }

    /// A builder for opening the store at `path` with options.
    pub fn builder(path: impl AsRef<Path>) -> StoreBuilder {
        StoreBuilder {
            path: path.as_ref().to_owned(),
            durability: Durability::default(),
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            max_payload: DEFAULT_MAX_PAYLOAD,
            clock: Arc::new(SystemClock),
        }
    }

    /// A handle on the queue named `name`. Queues exist once a job is
    /// enqueued on them; the handle is cheap.
    pub fn queue(&self, name: impl Into<String>) -> Queue {
        Queue::new(self.clone(), name.into())
    }

    /// The queues that have been used, sorted by name.
    pub fn queues(&self) -> Vec<Queue> {
        self.inner
            .engine
            .queue_names()
            .into_iter()
            .map(|n| self.queue(n))
            .collect()
    }

    /// The job with this id, if it exists: rq's `Job.fetch`.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`](crate::Error::Corrupt) if its record does not
    /// decode; storage errors.
    pub fn job(&self, id: &str) -> Result<Option<Job>> {
        Ok(self
            .inner
            .engine
            .get(id)?
            .map(|_| Job::new(self.clone(), id.to_owned())))
    }

    /// Makes every write so far durable (sled flush plus fsync), whatever
    /// the store's [`Durability`].
    ///
    /// # Errors
    ///
    /// Storage and I/O errors (for example a full disk).
    pub fn flush(&self) -> Result<()> {
        match &self.inner.committer {
            Some(c) => c.wait_durable(),
            None => {
                self.inner.engine.db().flush()?;
                File::open(self.path().join("db"))?.sync_all()?;
                Ok(())
            }
        }
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        self.inner.engine.path()
    }

    /// The raw bytes of a job record that did not decode, kept when the job
    /// was moved to the failed registry as corrupt; `None` if there are none.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub fn quarantined(&self, id: &str) -> Result<Option<Vec<u8>>> {
        self.inner.engine.quarantined(id)
    }

    /// How many interrupted runs were recovered when this store was opened
    /// (counted as abandoned attempts). Jobs claimed ahead and never started,
    /// put back in their queues, are not counted.
    pub fn recovered_at_open(&self) -> usize {
        self.inner.recovered
    }

    /// The store's size on disk, in bytes.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.inner.engine.db().size_on_disk()?)
    }

    /// The store's clock's current time.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.inner.clock.now()
    }

    /// The clock's monotonic reading in ms (run deadlines).
    pub(crate) fn mono_ms(&self) -> u64 {
        dur_ms(self.inner.clock.monotonic())
    }

    pub(crate) fn now_ms(&self) -> u64 {
        to_ms(self.inner.clock.now())
    }

    pub(crate) fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn max_payload(&self) -> usize {
        self.inner.max_payload
    }

    /// Waits for the group commit if the store is durable.
    pub(crate) fn commit(&self) -> Result<()> {
        match &self.inner.committer {
            Some(c) => c.wait_durable(),
            None => Ok(()),
        }
    }

    pub(crate) fn status_of(&self, record: &JobRecord) -> Status {
        crate::engine::status_of(&record.index_key(), self.now_ms())
    }

    pub(crate) fn cancel(&self, id: &str) -> Result<()> {
        self.inner.engine.cancel(id, self.now_ms())?;
        self.commit()
    }

    pub(crate) fn requeue(&self, id: &str) -> Result<()> {
        self.inner.engine.requeue(id, self.now_ms())?;
        self.commit()
    }

    pub(crate) fn delete(&self, id: &str) -> Result<()> {
        self.inner.engine.delete(id, self.now_ms())?;
        self.commit()
    }

    /// Makes a worker's figures part of [`Store::stats`].
    pub(crate) fn register_worker(&self, worker: std::sync::Weak<dyn crate::worker::Figures>) {
        let mut workers = self.inner.workers.lock();
        workers.retain(|w| w.strong_count() > 0);
        workers.push(worker);
    }

    /// The figures of every worker of this store still alive, summed.
    pub(crate) fn worker_figures(&self) -> crate::WorkerStats {
        let mut total = crate::WorkerStats::default();
        for worker in self.inner.workers.lock().iter().filter_map(|w| w.upgrade()) {
            total.merge(&worker.figures());
        }
        total
    }

    pub(crate) fn stop(&self, id: &str) -> Result<()> {
        self.inner.engine.stop(id, self.now_ms())?;
        self.commit()
    }
}
