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
        let maybe_lost = engine.journal_ids()?;
        let recovered = engine.replay_journal(now)? + engine.recover_all(now)?;
        if recovered > 0 {
            engine
                .subscribers
                .set_recovered(recovered_events(&engine, maybe_lost, now)?);
        }
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

/// The reason of a [`Canceled`](crate::EventKind::Canceled) event for a job
/// canceled by [`Job::cancel`].
const CANCELED: &str = "canceled: Job::cancel was called";

/// The `Canceled` events of the dependents of `parent` (and of theirs, in
/// turn) that its loss at `now` canceled. Read after the transition: a
/// dependent canceled then names `parent` in its error and ended at `now`,
/// so a dependent canceled earlier (or otherwise) is not reported again.
fn lost_dependents(
    engine: &Engine,
    parent: &str,
    dependents: &[String],
    now: u64,
) -> Vec<crate::Event> {
    let mut events = Vec::new();
    let mut work = vec![(parent.to_owned(), dependents.to_vec())];
    while let Some((parent, children)) = work.pop() {
        let prefix = crate::engine::lost_parent_reason(&parent);
        for child in children {
            let Ok(Some(record)) = engine.get(&child) else {
                continue;
            };
            let canceled = record.index_key().class == crate::engine::Class::Canceled
                && record.ended_at == Some(now)
                && record
                    .error
                    .as_deref()
                    .is_some_and(|e| e.starts_with(&prefix));
            if !canceled {
                continue;
            }
            events.push(crate::Event {
                job_id: record.id.clone(),
                queue: record.queue.clone(),
                at: crate::clock::from_ms(now),
                kind: crate::EventKind::Canceled {
                    reason: record.error.clone().unwrap_or_default(),
                },
            });
            work.push((record.id, record.dependents));
        }
    }
    events
}

/// The events of the runs the open at `now` recovered as abandoned, among
/// the jobs the run journal named: an `Abandoned` (and a `Retried` if the
/// retry policy put the job back) per run, then the dependents its loss
/// canceled.
fn recovered_events(engine: &Engine, ids: Vec<String>, now: u64) -> Result<Vec<crate::Event>> {
    let mut seen = std::collections::HashSet::new();
    let mut events = Vec::new();
    let at = crate::clock::from_ms(now);
    for id in ids {
        if !seen.insert(id.clone()) {
            continue;
        }
        let Some(record) = engine.get(&id)? else {
            continue;
        };
        let recovered = record.ended_at == Some(now)
            && record.history.last().is_some_and(|h| {
                h.attempt == record.attempts
                    && h.ended_at == now
                    && h.error
                        .as_deref()
                        .is_some_and(|e| e == crate::engine::ABANDONED)
            });
        if !recovered {
            continue;
        }
        let class = record.index_key().class;
        let will_retry = class == crate::engine::Class::Ready;
        let event = |kind| crate::Event {
            job_id: record.id.clone(),
            queue: record.queue.clone(),
            at,
            kind,
        };
        events.push(event(crate::EventKind::Abandoned {
            attempt: record.attempts,
            will_retry,
        }));
        if will_retry {
            events.push(event(crate::EventKind::Retried {
                attempt: record.attempts,
            }));
        }
        events.extend(lost_dependents(engine, &record.id, &record.dependents, now));
    }
    Ok(events)
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
        let now = self.now_ms();
        self.inner.engine.cancel(id, now)?;
        let engine = &self.inner.engine;
        if engine.subscribers.any() {
            if let Ok(Some(record)) = engine.get(id) {
                let mut events = vec![crate::Event {
                    job_id: record.id.clone(),
                    queue: record.queue.clone(),
                    at: crate::clock::from_ms(now),
                    kind: crate::EventKind::Canceled {
                        reason: CANCELED.to_owned(),
                    },
                }];
                events.extend(lost_dependents(engine, &record.id, &record.dependents, now));
                engine.subscribers.broadcast(&events);
            }
        }
        self.commit()
    }

    pub(crate) fn requeue(&self, id: &str) -> Result<()> {
        self.inner.engine.requeue(id, self.now_ms())?;
        self.commit()
    }

    pub(crate) fn delete(&self, id: &str) -> Result<()> {
        let now = self.now_ms();
        let engine = &self.inner.engine;
        // Its dependents are read before the record goes.
        let dependents = match engine.subscribers.any() {
            true => engine.get(id).ok().flatten().map(|r| r.dependents),
            false => None,
        };
        engine.delete(id, now)?;
        if let Some(dependents) = dependents {
            self.report_lost_dependents(id, &dependents, now);
        }
        self.commit()
    }

    /// Reports to the hooks of this store's workers the dependents of
    /// `parent` (and theirs, in turn) that its loss at `now` canceled.
    pub(crate) fn report_lost_dependents(&self, parent: &str, dependents: &[String], now: u64) {
        let engine = &self.inner.engine;
        if engine.subscribers.any() && !dependents.is_empty() {
            let events = lost_dependents(engine, parent, dependents, now);
            engine.subscribers.broadcast(&events);
        }
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
