//! `Worker`: a pool of threads that runs due jobs.
//!
//! One dispatcher thread claims jobs (nobody else does, so claims never
//! race) and hands them to N runner threads over a channel. It claims ahead
//! of the runners (up to `prefetch` runs wait in the channel), so that each
//! of its rounds, one sled transaction, records many outcomes and claims
//! many jobs: sled charges a fixed cost per transaction. The dispatcher
//! sleeps until the next due time, a lapsed lease or an expiry, or until an
//! enqueue or a finished run wakes it: there is no polling loop.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use crate::clock::dur_ms;
use crate::engine::{ClaimPolicy, Claimed, Class, Done, Outcome};
use crate::error::{Error, Result};
use crate::events::{Event, EventKind, Hook, HookFn, DEFAULT_EVENT_BUFFER};
use crate::handlers::{Callback, CallbackKind, RunState};
use crate::{Context, Handlers, Store};

/// By default, a run's lease lasts 180 s (rq's default job timeout).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(180);
/// How often (at most) expired finished and failed jobs are cleaned.
const EXPIRY_EVERY_MS: u64 = 1_000;
/// rq's `CALLBACK_TIMEOUT`: a callback may take 60 s.
pub const DEFAULT_CALLBACK_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the dispatcher waits after a storage error before trying again.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Starts a [`Worker`] with options: rq's `Worker(queues, ...)`.
#[must_use = "a builder does nothing until `start` or `burst` is called"]
pub struct WorkerBuilder {
    store: Store,
    handlers: Handlers,
    queues: Vec<String>,
    threads: usize,
    lease: Duration,
    callback_timeout: Duration,
    policy: ClaimPolicy,
    limit_error: Option<Error>,
    hook: Option<HookFn>,
    event_buffer: usize,
    prefetch: Option<usize>,
}

/// The largest default prefetch per runner thread, and its least value.
const PREFETCH_PER_THREAD: usize = 32;
const MIN_DEFAULT_PREFETCH: usize = 64;
/// The default prefetch before any run has ended (per thread).
const FIRST_PREFETCH_PER_THREAD: usize = 8;
/// How much work the default prefetch holds per runner thread, at the
/// recent mean run time: enough to keep runners busy between rounds, and a
/// bound on how long a job enqueued on a higher-priority queue waits
/// behind prefetched ones.
const PREFETCH_HORIZON_US: u64 = 5_000;

/// How a worker picks among its queues (rq's `--dequeue-strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DequeueStrategy {
    /// The first queue with a due job wins (rq's default).
    #[default]
    Priority,
    /// One job from each queue in turn.
    RoundRobin,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("queues", &self.queues)
            .field("threads", &self.threads)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    /// The queues to take jobs from, in priority order: the first queue with
    /// a due job wins. By default `["default"]`.
    pub fn queues<I, S>(mut self, queues: I) -> WorkerBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// How many jobs run at once, each on its own thread. By default the
    /// number of CPUs.
    pub fn threads(mut self, threads: usize) -> WorkerBuilder {
        self.threads = threads;
        self
    }

    /// How far ahead a run's lease is written (the `time` of its
    /// `STARTED` key). By default 180 s (rq's default job timeout).
    ///
    /// A run going on in this process is never treated as abandoned, however
    /// long it takes and whatever the clock does: the pool renews its lease.
    /// Leases matter for runs that no thread of this process is running:
    /// those of a process that died are recovered at the next open, and a
    /// lapsed lease without a live run (for example a run that was going on
    /// when the store was exported) is resolved as abandoned.
    pub fn lease(mut self, lease: Duration) -> WorkerBuilder {
        self.lease = lease;
        self
    }

    /// How many claimed jobs may wait for a free runner thread, on top of
    /// the jobs running. A tuning knob: the dispatcher writes outcomes and
    /// claims jobs in batches of up to this size (one sled transaction
    /// each), so a larger prefetch drains short jobs faster; 0 claims only
    /// for idle threads.
    ///
    /// By default it adapts to the jobs: about 5 ms of work at the recent
    /// mean run time per thread, between 1 and `32 × threads` (at least 64):
    /// no-op jobs get the whole batch, jobs that take a second get one
    /// waiting job (8 × threads until the first run ends). A value set here
    /// is used as it is.
    ///
    /// Prefetched jobs show as started. The price: a job enqueued on a
    /// higher-priority queue waits behind the prefetched ones, and another
    /// worker on the same queues does not get them. A prefetched job that
    /// does not start is not an attempt: at [`Worker::shutdown`] it goes back
    /// to its place in its queue, and after a crash the next open puts it
    /// back in its queue without counting an attempt. Jobs with a limit key
    /// count against their limit while prefetched.
    pub fn prefetch(mut self, prefetch: usize) -> WorkerBuilder {
        self.prefetch = Some(prefetch);
        self
    }

    /// How long a callback may run (rq's `CALLBACK_TIMEOUT`, 60 s by
    /// default). Past it, the attempt is recorded as failed with a timeout
    /// error.
    pub fn callback_timeout(mut self, timeout: Duration) -> WorkerBuilder {
        self.callback_timeout = timeout;
        self
    }

    /// How to pick among the queues: strict priority (the default) or round
    /// robin.
    pub fn dequeue_strategy(mut self, strategy: DequeueStrategy) -> WorkerBuilder {
        self.policy.round_robin = strategy == DequeueStrategy::RoundRobin;
        self
    }

    /// At most `max` jobs of limit key `key` (see
    /// [`JobBuilder::limit_key`](crate::JobBuilder::limit_key) and
    /// [`limit_group`](crate::JobBuilder::limit_group)) run at once in this
    /// store's workers; the others wait, in their order, without polling. A
    /// job's own limit applies too; the lower wins.
    pub fn concurrency_limit(mut self, key: &str, max: u32) -> WorkerBuilder {
        if max == 0 {
            self.limit_error = Some(Error::InvalidArgument {
                what: "concurrency_limit",
                reason: format!(
                    "the limit of key {key:?} is 0, so no job could run; use 1 or more"
                ),
            });
        }
        self.policy.concurrency.insert(key.to_owned(), max);
        self
    }

    /// At most `starts` jobs of limit key `key` start per `per` (a sliding
    /// window). A job over the limit is not failed: it is scheduled for the
    /// next free slot.
    pub fn rate_limit(mut self, key: &str, starts: u32, per: Duration) -> WorkerBuilder {
        if starts == 0 || per.is_zero() {
            self.limit_error = Some(Error::InvalidArgument {
                what: "rate_limit",
                reason: format!(
                    "the rate limit of key {key:?} allows no start ({starts} per {per:?}); \
                     use at least 1 per a non-zero period"
                ),
            });
        }
        self.policy
            .rates
            .insert(key.to_owned(), (starts, dur_ms(per).max(1)));
        self
    }

    /// Calls `hook` with every [`Event`] of this worker's jobs: started,
    /// succeeded, failed (and whether it will be retried), retried, timed
    /// out, stopped, canceled, abandoned; and with the events of the store
    /// that happen outside any worker: jobs enqueued, jobs canceled (by
    /// [`Job::cancel`](crate::Job::cancel), or because a job they depend on
    /// was lost), and, for the first worker started with a hook, the runs
    /// recovered as abandoned when the store opened. By default there is no
    /// hook.
    ///
    /// The hook runs on a thread of its own (`dueq-events`), never on the
    /// dispatcher or a runner, so a slow hook cannot hold up jobs: events
    /// wait in a channel of [`event_buffer`](WorkerBuilder::event_buffer)
    /// places, and when it is full, new events are dropped and counted in
    /// [`WorkerStats::events_dropped`]. A hook that panics is counted in
    /// [`WorkerStats::hook_panics`] and called again for the next event.
    /// [`Worker::shutdown`] lets the hook deliver what is queued, within its
    /// timeout; after [`burst`](WorkerBuilder::burst) returns, the hook's
    /// thread delivers what is left on its own, then exits.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use dueq::{EventKind, Handlers, JobError, Store, Worker};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path().join("jobs.dueq"))?;
    /// let mut handlers = Handlers::new();
    /// handlers.register("hello", |_: ()| -> Result<(), JobError> { Ok(()) });
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let tx = std::sync::Mutex::new(tx);
    /// let worker = Worker::builder(&store, handlers)
    ///     .on_event(move |event| {
    ///         let _ = tx.lock().unwrap().send(event.clone());
    ///     })
    ///     .start()?;
    /// store.queue("default").enqueue("hello", &())?;
    /// let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    /// assert!(matches!(first.kind, EventKind::Enqueued));
    /// let second = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    /// assert!(matches!(second.kind, EventKind::Started { attempt: 1, .. }));
    /// worker.shutdown(Duration::from_secs(10))?;
    /// # Ok::<(), dueq::Error>(())
    /// ```
    pub fn on_event<F>(mut self, hook: F) -> WorkerBuilder
    where
        F: Fn(&Event) + Send + Sync + 'static,
    {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// How many events may wait for the [`on_event`](WorkerBuilder::on_event)
    /// hook before new ones are dropped. By default
    /// [`DEFAULT_EVENT_BUFFER`] (1024); at least 1.
    pub fn event_buffer(mut self, events: usize) -> WorkerBuilder {
        self.event_buffer = events;
        self
    }

    /// Starts the pool in the background.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for zero threads, no queues, a zero lease
    /// or a zero event buffer; [`Error::Spawn`] if a thread cannot be
    /// started.
    pub fn start(self) -> Result<Worker> {
        self.spawn(false)
    }

    /// Runs jobs until nothing is due and nothing is running, then stops
    /// and returns what it did (rq's `--burst`). Jobs scheduled for later,
    /// including retries waiting out a backoff, are left for later.
    ///
    /// # Errors
    ///
    /// As [`WorkerBuilder::start`].
    pub fn burst(self) -> Result<WorkerStats> {
        let worker = self.spawn(true)?;
        worker.join_all();
        Ok(worker.stats())
    }

    fn spawn(self, burst: bool) -> Result<Worker> {
        if let Some(e) = self.limit_error {
            return Err(e);
        }
        if self.threads == 0 {
            return Err(Error::InvalidArgument {
                what: "threads",
                reason: "a worker needs at least one thread".into(),
            });
        }
        if self.queues.is_empty() {
            return Err(Error::InvalidArgument {
                what: "queues",
                reason: "a worker needs at least one queue".into(),
            });
        }
        if self.lease.is_zero() {
            return Err(Error::InvalidArgument {
                what: "lease",
                reason: "the lease must be longer than zero".into(),
            });
        }
        if self.event_buffer == 0 {
            return Err(Error::InvalidArgument {
                what: "event_buffer",
                reason: "the event buffer must hold at least one event".into(),
            });
        }
        let hook = match self.hook {
            Some(f) => {
                let hook = Arc::new(Hook::start(f, self.event_buffer).map_err(Error::Spawn)?);
                // Enqueues, cancels and recoveries at open happen outside
                // any worker: the store sends them to every hook. The first
                // hook gets the runs recovered at open, once.
                for event in self.store.engine().subscribers.subscribe(&hook) {
                    hook.emit(event);
                }
                Some(hook)
            }
            None => None,
        };
        let adaptive = self.prefetch.is_none();
        let prefetch = self.prefetch.unwrap_or_else(|| {
            self.threads
                .saturating_mul(PREFETCH_PER_THREAD)
                .max(MIN_DEFAULT_PREFETCH)
        });
        // Room for every run the dispatcher may have claimed, so that it
        // never blocks on a send.
        let claims = self.threads.saturating_add(prefetch);
        let (tx, rx) = crossbeam_channel::bounded(claims);
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Returned>();
        let shared = Arc::new(Shared {
            store: self.store,
            handlers: self.handlers,
            queues: self.queues,
            threads: self.threads,
            claims,
            adaptive,
            mean_run_us: AtomicU64::new(0),
            lease: self.lease,
            callback_timeout: self.callback_timeout,
            policy: self.policy,
            burst,
            quit: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            started_runs: AtomicUsize::new(0),
            exited: Mutex::new(0),
            exited_cond: Condvar::new(),
            stats: Counters::default(),
            handles: Mutex::new(HashMap::new()),
            next_runner: AtomicUsize::new(0),
            running: Mutex::new(HashMap::new()),
            hook,
        });
        let figures: Arc<dyn Figures> = shared.clone();
        shared.store.register_worker(Arc::downgrade(&figures));
        for _ in 0..self.threads {
            spawn_runner(&shared, &rx, &done_tx)?;
        }
        let handle = std::thread::Builder::new()
            .name("dueq-dispatch".into())
            .spawn({
                let shared = shared.clone();
                move || {
                    let _exit = ExitGuard::new(&shared);
                    dispatch(&shared, tx, &rx, &done_tx, &done_rx);
                }
            })
            .map_err(|e| {
                shared.quit.store(true, Ordering::SeqCst);
                Error::Spawn(e)
            })?;
        shared.handles.lock().insert(usize::MAX, handle);
        Ok(Worker { shared })
    }
}

/// Starts one runner thread. Runners are numbered; a runner retired after a
/// timeout is replaced by a new number.
fn spawn_runner(
    shared: &Arc<Shared>,
    rx: &Receiver<Run>,
    done_tx: &Sender<Returned>,
) -> Result<()> {
    let i = shared.next_runner.fetch_add(1, Ordering::SeqCst);
    let rx = rx.clone();
    let done_tx = done_tx.clone();
    let handle = std::thread::Builder::new()
        .name(format!("dueq-worker-{i}"))
        .spawn({
            let shared = shared.clone();
            move || {
                let mut exit = ExitGuard::new(&shared);
                if run_jobs(&shared, &rx, &done_tx) == RunnerEnd::Retired {
                    // Its run timed out and a replacement took its place:
                    // the pool no longer waits for this thread.
                    exit.counted = false;
                    shared.handles.lock().remove(&i);
                }
            }
        })
        .map_err(|e| {
            shared.quit.store(true, Ordering::SeqCst);
            Error::Spawn(e)
        })?;
    shared.handles.lock().insert(i, handle);
    Ok(())
}

/// A run the dispatcher handed out.
struct RunEntry {
    id: String,
    state: Arc<RunState>,
    /// For its events.
    info: RunInfo,
}

/// What the dispatcher's events say about a run besides its job id.
#[derive(Clone)]
struct RunInfo {
    queue: String,
    attempt: u32,
}

/// A claimed run on its way to a runner.
struct Run {
    claimed: Claimed,
    state: Arc<RunState>,
}

#[derive(Debug, PartialEq, Eq)]
enum RunnerEnd {
    /// The pool stopped.
    Done,
    /// This thread's run timed out; it leaves the pool.
    Retired,
}

/// A running pool of worker threads: rq's `Worker`, with threads instead of
/// processes.
///
/// Stop it with [`Worker::shutdown`]. Dropping it asks the threads to stop
/// after their current jobs but does not wait for them.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use dueq::{Handlers, JobError, Store, Worker};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path().join("jobs.dueq"))?;
/// let mut handlers = Handlers::new();
/// handlers.register("add", |(a, b): (i64, i64)| -> Result<i64, JobError> { Ok(a + b) });
/// let worker = Worker::builder(&store, handlers).threads(2).start()?;
/// let job = store.queue("default").enqueue("add", &(2, 3))?;
/// job.wait(Duration::from_secs(10))?;
/// assert_eq!(job.result::<i64>()?, Some(5));
/// worker.shutdown(Duration::from_secs(10))?;
/// # Ok::<(), dueq::Error>(())
/// ```
pub struct Worker {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queues", &self.shared.queues)
            .field("threads", &self.shared.threads)
            .finish_non_exhaustive()
    }
}

/// What a worker has done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Runs that succeeded.
    pub succeeded: u64,
    /// Runs that failed (an error, a panic, an unknown handler, arguments
    /// that did not decode), whether or not they will be retried.
    pub failed: u64,
    /// Runs whose lease lapsed, found and resolved by this worker.
    pub abandoned: u64,
    /// Runs whose outcome was discarded because their lease had been taken
    /// over (fencing).
    pub fenced: u64,
    /// Records that did not decode, moved to failed and quarantined.
    pub corrupt: u64,
    /// Storage errors the worker met and survived (the affected job keeps
    /// its lease and runs again).
    pub errors: u64,
    /// Total time spent running handlers.
    pub busy: Duration,
    /// Jobs running right now.
    pub running: usize,
    /// Runs recorded as failed because they passed their `job_timeout` (or
    /// a callback its time limit); included in `failed`.
    pub timed_out: u64,
    /// Jobs discarded because their `ttl` ran out before they started.
    pub expired: u64,
    /// The jobs running right now: (job id, when the run started).
    pub running_jobs: Vec<(String, chrono::DateTime<chrono::Utc>)>,
    /// Events not delivered to the [`on_event`](WorkerBuilder::on_event)
    /// hook: dropped because its buffer was full, or still queued when
    /// [`Worker::shutdown`] ran out of time.
    pub events_dropped: u64,
    /// Calls of the [`on_event`](WorkerBuilder::on_event) hook that
    /// panicked (each one was caught; the hook went on with the next event).
    pub hook_panics: u64,
    /// Times the dispatcher woke up to look for work (each look is a read
    /// of the store, and a transaction if there is something to write or
    /// claim). It grows with the work done, not with idle time: the
    /// dispatcher sleeps until a job is due or something happens.
    pub rounds: u64,
}

impl Worker {
    /// A builder for a worker over `store` that runs `handlers`.
    pub fn builder(store: &Store, handlers: Handlers) -> WorkerBuilder {
        WorkerBuilder {
            store: store.clone(),
            handlers,
            queues: vec!["default".to_owned()],
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            lease: DEFAULT_LEASE,
            callback_timeout: DEFAULT_CALLBACK_TIMEOUT,
            policy: ClaimPolicy::default(),
            limit_error: None,
            hook: None,
            event_buffer: DEFAULT_EVENT_BUFFER,
            prefetch: None,
        }
    }

    /// What the worker has done so far. Counters go up when the dispatcher
    /// has written an outcome, which is also when [`Job::wait`] sees it, so
    /// they can trail a waiting caller by a moment; the figures returned by
    /// [`Worker::shutdown`] are final.
    ///
    /// [`Job::wait`]: crate::Job::wait
    pub fn stats(&self) -> WorkerStats {
        self.shared.stats.snapshot(&self.shared)
    }

    /// Warm shutdown: stops taking jobs, waits up to `timeout` for running
    /// jobs to finish, and returns the final statistics.
    ///
    /// # Errors
    ///
    /// [`Error::ShutdownTimeout`] if jobs were still running after
    /// `timeout`. They keep their leases: if the process exits, they are
    /// recovered at the next open and run again (or fail) by their policy.
    pub fn shutdown(self, timeout: Duration) -> Result<WorkerStats> {
        self.stop();
        let deadline = Instant::now().checked_add(timeout);
        let total = self.shared.threads + 1;
        let mut exited = self.shared.exited.lock();
        while *exited < total {
            match deadline {
                Some(d) => {
                    if self
                        .shared
                        .exited_cond
                        .wait_until(&mut exited, d)
                        .timed_out()
                    {
                        break;
                    }
                }
                None => self.shared.exited_cond.wait(&mut exited),
            }
        }
        let done = *exited >= total;
        drop(exited);
        if !done {
            return Err(Error::ShutdownTimeout {
                running: self.shared.started_runs.load(Ordering::SeqCst),
            });
        }
        self.join_all();
        if let Some(hook) = &self.shared.hook {
            hook.finish(deadline);
        }
        Ok(self.stats())
    }

    fn stop(&self) {
        self.shared.quit.store(true, Ordering::SeqCst);
        self.shared.store.engine().signal.notify();
    }

    fn join_all(&self) {
        let handles: Vec<JoinHandle<()>> =
            self.shared.handles.lock().drain().map(|(_, h)| h).collect();
        for handle in handles {
            // A thread that panicked has already been accounted for by its
            // exit guard; there is nothing more to do with the panic.
            let _ = handle.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Shared {
    store: Store,
    handlers: Handlers,
    queues: Vec<String>,
    threads: usize,
    /// How many runs may be claimed and not finished at once: the threads
    /// plus the (largest) prefetch.
    claims: usize,
    /// The prefetch is the default one, which follows `mean_run_us`.
    adaptive: bool,
    /// Recent mean run time, µs (a moving average; 0 before the first).
    mean_run_us: AtomicU64,
    lease: Duration,
    callback_timeout: Duration,
    policy: ClaimPolicy,
    burst: bool,
    quit: AtomicBool,
    /// Claimed runs not yet finished (running or waiting for a runner).
    in_flight: AtomicUsize,
    /// Runs whose handler is running.
    started_runs: AtomicUsize,
    exited: Mutex<usize>,
    exited_cond: Condvar,
    stats: Counters,
    /// Runner threads by number, and the dispatcher (`usize::MAX`).
    handles: Mutex<HashMap<usize, JoinHandle<()>>>,
    next_runner: AtomicUsize,
    /// Runs handed out and not yet recorded, by lease token.
    running: Mutex<HashMap<u64, RunEntry>>,
    /// The `on_event` hook's thread, if there is a hook.
    hook: Option<Arc<Hook>>,
}

impl Shared {
    /// Reports an event to the hook, if there is one; `kind` is only built
    /// then. Never blocks.
    fn emit(&self, id: &str, queue: &str, kind: impl FnOnce() -> EventKind) {
        if let Some(hook) = &self.hook {
            hook.emit(Event {
                job_id: id.to_owned(),
                queue: queue.to_owned(),
                at: self.store.now(),
                kind: kind(),
            });
        }
    }
}

#[derive(Default)]
struct Counters {
    /// Written by the dispatcher from a round until its figures are
    /// counted; read by `snapshot`.
    gate: parking_lot::RwLock<()>,
    succeeded: AtomicU64,
    failed: AtomicU64,
    abandoned: AtomicU64,
    fenced: AtomicU64,
    corrupt: AtomicU64,
    errors: AtomicU64,
    busy_us: AtomicU64,
    timed_out: AtomicU64,
    expired: AtomicU64,
    rounds: AtomicU64,
}

impl Counters {
    fn snapshot(&self, shared: &Shared) -> WorkerStats {
        let _counted = self.gate.read();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WorkerStats {
            succeeded: get(&self.succeeded),
            failed: get(&self.failed),
            abandoned: get(&self.abandoned),
            fenced: get(&self.fenced),
            corrupt: get(&self.corrupt),
            errors: get(&self.errors),
            busy: Duration::from_micros(get(&self.busy_us)),
            running: shared.started_runs.load(Ordering::Relaxed),
            timed_out: get(&self.timed_out),
            expired: get(&self.expired),
            rounds: get(&self.rounds),
            running_jobs: {
                let mut jobs: Vec<(String, chrono::DateTime<chrono::Utc>)> = shared
                    .running
                    .lock()
                    .values()
                    .filter_map(|run| {
                        let at = run.state.started_at.load(Ordering::SeqCst);
                        (at != u64::MAX).then(|| (run.id.clone(), crate::clock::from_ms(at)))
                    })
                    .collect();
                jobs.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
                jobs
            },
            events_dropped: shared
                .hook
                .as_ref()
                .map_or(0, |h| h.counters.dropped.load(Ordering::Relaxed)),
            hook_panics: shared
                .hook
                .as_ref()
                .map_or(0, |h| h.counters.panics.load(Ordering::Relaxed)),
        }
    }
}

/// A worker's figures, as [`Store::stats`](crate::Store::stats) reads them.
pub(crate) trait Figures: Send + Sync {
    fn figures(&self) -> WorkerStats;
}

impl Figures for Shared {
    fn figures(&self) -> WorkerStats {
        self.stats.snapshot(self)
    }
}

impl WorkerStats {
    /// Adds `other`'s counts to these (for the figures of several workers).
    pub(crate) fn merge(&mut self, other: &WorkerStats) {
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.abandoned += other.abandoned;
        self.fenced += other.fenced;
        self.corrupt += other.corrupt;
        self.errors += other.errors;
        self.busy += other.busy;
        self.running += other.running;
        self.timed_out += other.timed_out;
        self.expired += other.expired;
        self.rounds += other.rounds;
        self.events_dropped += other.events_dropped;
        self.hook_panics += other.hook_panics;
        self.running_jobs.extend(other.running_jobs.iter().cloned());
        self.running_jobs
            .sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    }
}

/// Counts a thread's exit, also when it panics, and stops the pool if the
/// pool's own code panicked.
struct ExitGuard<'a> {
    shared: &'a Shared,
    /// Whether the pool waits for this thread (not for a retired runner).
    counted: bool,
}

impl ExitGuard<'_> {
    fn new(shared: &Shared) -> ExitGuard<'_> {
        ExitGuard {
            shared,
            counted: true,
        }
    }
}

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.shared.quit.store(true, Ordering::SeqCst);
            self.shared.store.engine().signal.notify();
        }
        if self.counted {
            *self.shared.exited.lock() += 1;
        }
        self.shared.exited_cond.notify_all();
    }
}

/// How many runs may be claimed and not finished now: the threads plus the
/// prefetch, which by default follows the mean run time.
fn claim_budget(shared: &Shared) -> usize {
    if !shared.adaptive {
        return shared.claims;
    }
    let prefetch = default_prefetch(
        shared.mean_run_us.load(Ordering::Relaxed),
        shared.threads,
        shared.claims - shared.threads,
    );
    shared.threads.saturating_add(prefetch)
}

/// The default prefetch for `threads` runners whose runs take `mean_us` on
/// average (0: none ended yet), at most `max`.
fn default_prefetch(mean_us: u64, threads: usize, max: usize) -> usize {
    if mean_us == 0 {
        return threads.saturating_mul(FIRST_PREFETCH_PER_THREAD).min(max);
    }
    let per_thread = usize::try_from(PREFETCH_HORIZON_US / mean_us).unwrap_or(usize::MAX);
    per_thread.saturating_mul(threads).clamp(1, max.max(1))
}

/// How long a busy dispatcher waits for more outcomes before a round (see
/// `dispatch`).
const GATHER: Duration = Duration::from_micros(500);

fn dispatch(
    shared: &Arc<Shared>,
    tx: Sender<Run>,
    rx: &Receiver<Run>,
    done_tx: &Sender<Returned>,
    done_rx: &Receiver<Returned>,
) {
    let store = &shared.store;
    let engine = store.engine();
    let lease_ms = dur_ms(shared.lease);
    let real_time = store.clock().is_real_time();
    let mut next_expiry_run = 0u64;
    let mut rr_offset = 0usize;
    // Outcomes received from runners (or written for timed-out runs) and
    // not yet written, and what their events need.
    let mut pending: Vec<Done> = Vec::new();
    let mut pending_info: Vec<RunInfo> = Vec::new();
    // Prefetched runs not started, to put back in their queues.
    let mut unstarted: Vec<Claimed> = Vec::new();
    loop {
        shared.stats.rounds.fetch_add(1, Ordering::Relaxed);
        let seen = engine.signal.generation();
        // While the runners have claimed runs waiting in their channel, a
        // round can wait a little for more outcomes: each round is a
        // transaction with a fixed cost, so fewer, larger rounds drain
        // faster, and no runner waits meanwhile. Outcomes are written at
        // most `GATHER` later; an idle or starved pool never waits.
        let mut gathered = done_rx.try_iter().collect::<Vec<_>>();
        if real_time && !gathered.is_empty() && tx.len() >= shared.threads {
            let deadline = std::time::Instant::now() + GATHER;
            // Until only the runs started are left to finish (the runners
            // would wait for the next claims) or the deadline.
            while !tx.is_empty() && gathered.len() < claim_budget(shared) - shared.threads {
                match done_rx.recv_deadline(deadline) {
                    Ok(returned) => gathered.push(returned),
                    Err(_) => break,
                }
                gathered.extend(done_rx.try_iter());
            }
        }
        for returned in gathered {
            match returned {
                Returned::Ended(done) => {
                    // A run that timed out was already recorded and its slot
                    // freed: its late outcome is dropped.
                    if let Some(run) = shared.running.lock().remove(&done.token) {
                        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                        pending.push(done);
                        pending_info.push(run.info);
                    } else {
                        shared.stats.fenced.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Returned::Unstarted(run) => unstarted.push(run.claimed),
            }
        }
        if shared.quit.load(Ordering::SeqCst) {
            // Runners check the quit flag before they start a run, so no
            // run taken from here can start.
            unstarted.extend(rx.try_iter().map(|run| run.claimed));
        }
        if !unstarted.is_empty() {
            match engine.release(&unstarted) {
                Ok(_) => {
                    let mut running = shared.running.lock();
                    for run in unstarted.drain(..) {
                        if running.remove(&run.token).is_some() {
                            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                }
                Err(_) => {
                    // They keep their claims (and their place in `live`)
                    // until the store works again; a crash meanwhile puts
                    // them back at the next open, uncounted.
                    shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                    engine.signal.wait(seen, Some(ERROR_BACKOFF));
                    continue;
                }
            }
        }
        let now = store.now_ms();
        let timed_out = time_out_runs(
            shared,
            store.mono_ms(),
            now,
            &mut pending,
            &mut pending_info,
        );
        for _ in 0..timed_out {
            if spawn_runner(shared, rx, done_tx).is_err() {
                shared.stats.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let quitting = shared.quit.load(Ordering::SeqCst);
        if !quitting && engine.next_schedule().is_some_and(|t| t <= now) {
            // Cron and interval schedules: each fire enqueues its job and
            // advances the schedule in one transaction.
            if store.fire_schedules().is_err() {
                shared.stats.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let in_flight = shared.in_flight.load(Ordering::SeqCst);
        if quitting && in_flight == 0 && pending.is_empty() {
            return; // dropping `tx` lets the runners exit
        }
        let mut queues: Vec<u32> = shared
            .queues
            .iter()
            .filter_map(|q| engine.queue_id(q))
            .collect();
        if shared.policy.round_robin && !queues.is_empty() {
            let n = queues.len();
            queues.rotate_left(rr_offset % n);
        }
        let free = if quitting {
            0
        } else {
            claim_budget(shared).saturating_sub(in_flight)
        };
        let mut progressed = false;
        if !pending.is_empty() || (free > 0 && !queues.is_empty()) {
            // Held until the round's outcomes are counted: a caller that
            // saw a job's outcome in the store and then reads the stats
            // finds it counted.
            let gate = shared.stats.gate.write();
            match engine.round(&pending, &queues, free, lease_ms, now, &shared.policy) {
                Ok(report) => {
                    for ((done, info), written) in
                        pending.iter().zip(&pending_info).zip(&report.written)
                    {
                        let counter = match (written, &done.outcome) {
                            (None, _) => &shared.stats.fenced,
                            (Some(_), Outcome::Success(_)) => &shared.stats.succeeded,
                            (Some(_), Outcome::Failure(_)) => &shared.stats.failed,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        if let Some(to) = written {
                            emit_outcome(shared, done, info, *to);
                            if matches!(to, Class::Failed | Class::Stopped) {
                                report_lost(shared, &done.id, done.ended_at);
                            }
                        }
                    }
                    pending.clear();
                    pending_info.clear();
                    let add = |c: &AtomicU64, n: usize| c.fetch_add(n as u64, Ordering::Relaxed);
                    add(&shared.stats.abandoned, report.abandoned.len());
                    add(&shared.stats.corrupt, report.corrupt);
                    add(&shared.stats.expired, report.expired.len());
                    drop(gate);
                    for moved in &report.abandoned {
                        let will_retry = moved.to == Class::Ready;
                        tracing::warn!(
                            job_id = %moved.id,
                            queue = %moved.queue,
                            attempt = moved.attempts,
                            will_retry,
                            "dueq: abandoned run (its lease lapsed with no live run)"
                        );
                        shared.emit(&moved.id, &moved.queue, || EventKind::Abandoned {
                            attempt: moved.attempts,
                            will_retry,
                        });
                        if will_retry {
                            shared.emit(&moved.id, &moved.queue, || EventKind::Retried {
                                attempt: moved.attempts,
                            });
                        } else {
                            report_lost(shared, &moved.id, now);
                        }
                    }
                    for moved in &report.expired {
                        shared.emit(&moved.id, &moved.queue, || EventKind::Canceled {
                            reason: moved.error.clone(),
                        });
                        report_lost(shared, &moved.id, now);
                    }
                    // Written outcomes count as progress: a retry due at
                    // once is a claim candidate only in the next round.
                    progressed = !report.written.is_empty()
                        || !report.abandoned.is_empty()
                        || report.corrupt > 0
                        || !report.expired.is_empty();
                    if !report.claimed.is_empty() {
                        rr_offset = rr_offset.wrapping_add(1);
                        if shared.hook.is_some() {
                            // An enqueue still sending its events finishes
                            // first: a job's `Enqueued` comes before its
                            // `Started`.
                            engine.subscribers.barrier();
                        }
                    }
                    for claimed in report.claimed {
                        progressed = true;
                        shared.in_flight.fetch_add(1, Ordering::SeqCst);
                        let state = Arc::new(RunState::new());
                        shared.running.lock().insert(
                            claimed.token,
                            RunEntry {
                                id: claimed.id.clone(),
                                state: state.clone(),
                                info: RunInfo {
                                    queue: claimed.queue.clone(),
                                    attempt: claimed.attempt,
                                },
                            },
                        );
                        if tx.send(Run { claimed, state }).is_err() {
                            // Cannot happen: this thread holds a receiver,
                            // and the channel has room for every claim. Were
                            // it to, the job stays started and is put back
                            // at the next open.
                            return;
                        }
                    }
                }
                Err(_) => {
                    // A storage error (a full disk, say). The outcomes stay
                    // pending and are written once the store works again;
                    // the round would fail the same way at once, so wait.
                    shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                    drop(gate);
                    engine.signal.wait(seen, Some(ERROR_BACKOFF));
                    continue;
                }
            }
        }
        if shared.store.engine().rotate_journal(false).is_err() {
            shared.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        if now >= next_expiry_run && !quitting {
            match engine.expire(now) {
                Ok((_, discarded)) => {
                    shared
                        .stats
                        .expired
                        .fetch_add(discarded.len() as u64, Ordering::Relaxed);
                    for moved in &discarded {
                        shared.emit(&moved.id, &moved.queue, || EventKind::Canceled {
                            reason: moved.error.clone(),
                        });
                        report_lost(shared, &moved.id, now);
                    }
                }
                Err(_) => {
                    shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            next_expiry_run = now.saturating_add(EXPIRY_EVERY_MS);
        }
        if progressed || !pending.is_empty() {
            continue;
        }
        let idle = shared.in_flight.load(Ordering::SeqCst) == 0;
        if shared.burst && idle && free > 0 {
            // Nothing was due (the round claimed nothing) and nothing runs.
            return;
        }
        // Sleep until the earliest of: a job becoming due or a lease lapsing
        // (only worth waking for with a free runner; a due job that a
        // concurrency limit holds back is not: the end of a run of its key
        // wakes us), the next expiry, a run's deadline; or until something
        // happens (an enqueue, a finished run, a clock jump).
        let mono = store.mono_ms();
        let deadline_wait = shared
            .running
            .lock()
            .values()
            .map(|run| run.state.deadline.load(Ordering::SeqCst))
            .filter(|&d| d != u64::MAX)
            .min()
            .map(|d| d.saturating_sub(mono));
        let mut wake: Option<u64> = None;
        let earliest = |a: Option<u64>, b: u64| Some(a.map_or(b, |a| a.min(b)));
        if !quitting {
            if let Ok(Some(t)) = engine.next_expiry() {
                wake = earliest(wake, t.max(next_expiry_run));
            }
            if let Some(t) = engine.next_schedule() {
                wake = earliest(wake, t);
            }
            if free > 0 {
                if let Ok(Some(t)) = engine.next_wake(&queues, free, now, &shared.policy) {
                    wake = earliest(wake, t);
                }
            }
        }
        // Sleep until the wake instant measured from the clock's time now,
        // to the microsecond: `now` was read before this round, and a whole
        // millisecond of rounding would make a due job start late.
        let now_us = u64::try_from(store.now().timestamp_micros()).unwrap_or(0);
        let wake =
            wake.map(|t| Duration::from_micros(t.saturating_mul(1000).saturating_sub(now_us)));
        let deadline_wait = deadline_wait.map(Duration::from_millis);
        let timeout = match (wake, deadline_wait) {
            // A test clock moves by jumps, and every jump wakes us.
            _ if !real_time => None,
            (Some(a), Some(b)) => Some(a.min(b)),
            (Some(a), None) | (None, Some(a)) => Some(a),
            (None, None) => None,
        };
        engine.signal.wait(seen, timeout);
    }
}

/// Reports to every hook on the store the dependents of job `id` that its
/// loss at `now` (failed for good, stopped, abandoned, expired) canceled.
/// Costs a read only when a hook listens.
fn report_lost(shared: &Shared, id: &str, now: u64) {
    let engine = shared.store.engine();
    if !engine.subscribers.any() {
        return;
    }
    if let Ok(Some(record)) = engine.get(id) {
        shared
            .store
            .report_lost_dependents(id, &record.dependents, now);
    }
}

/// Reports a written outcome: where the job went says whether a failure
/// will be retried.
fn emit_outcome(shared: &Shared, done: &Done, info: &RunInfo, to: Class) {
    let attempt = info.attempt;
    let emit = |kind: EventKind| shared.emit(&done.id, &info.queue, || kind);
    if shared.hook.is_none() {
        return;
    }
    match &done.outcome {
        Outcome::Success(_) => {
            emit(EventKind::Succeeded { attempt });
            if to == Class::Ready {
                emit(EventKind::Enqueued);
            }
        }
        Outcome::Failure(error) if to == Class::Stopped => emit(EventKind::Stopped {
            attempt,
            error: error.clone(),
        }),
        Outcome::Failure(error) => {
            let will_retry = to == Class::Ready;
            emit(EventKind::Failed {
                attempt,
                error: error.clone(),
                will_retry,
            });
            if will_retry {
                emit(EventKind::Retried { attempt });
            }
        }
    }
}

/// Records every run past its deadline as a failed attempt (queued in
/// `pending`), tells the run to stop, and frees its slot. Returns how many
/// runs timed out: the caller starts a replacement thread for each, since
/// the overrunning thread cannot be killed and retires when its handler
/// returns.
fn time_out_runs(
    shared: &Shared,
    mono: u64,
    now: u64,
    pending: &mut Vec<Done>,
    pending_info: &mut Vec<RunInfo>,
) -> usize {
    let mut running = shared.running.lock();
    let late: Vec<u64> = running
        .iter()
        .filter(|(_, run)| mono >= run.state.deadline.load(Ordering::SeqCst))
        .map(|(&token, _)| token)
        .collect();
    for token in &late {
        let Some(RunEntry {
            id, state, info, ..
        }) = running.remove(token)
        else {
            continue;
        };
        state.timed_out.store(true, Ordering::SeqCst);
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        shared.stats.timed_out.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            job_id = %id,
            queue = %info.queue,
            attempt = info.attempt,
            "dueq: the run passed its time limit; it was asked to stop"
        );
        shared.emit(&id, &info.queue, || EventKind::TimedOut {
            attempt: info.attempt,
        });
        pending_info.push(info);
        pending.push(Done {
            id,
            token: *token,
            outcome: Outcome::Failure(TIMEOUT.into()),
            ended_at: now,
            thread: None,
            final_attempt: false,
        });
    }
    late.len()
}

/// What a runner sends back to the dispatcher.
enum Returned {
    /// A run ended; its outcome is to be written.
    Ended(Done),
    /// A prefetched run the runner did not start, because the pool is
    /// stopping: it goes back to its queue.
    Unstarted(Run),
}

fn run_jobs(shared: &Shared, rx: &Receiver<Run>, done_tx: &Sender<Returned>) -> RunnerEnd {
    for run in rx.iter() {
        if shared.quit.load(Ordering::SeqCst) {
            // A prefetched run that has not started: the dispatcher puts it
            // back in its queue. Nothing was journaled for it, so it is not
            // an attempt.
            let _ = done_tx.send(Returned::Unstarted(run));
            shared.store.engine().signal.notify();
            continue;
        }
        shared.started_runs.fetch_add(1, Ordering::SeqCst);
        run.state
            .started_at
            .store(shared.store.now_ms(), Ordering::SeqCst);
        let claimed = &run.claimed;
        // Reports a failure if this thread unwinds before reporting, so the
        // dispatcher never waits for an outcome that cannot come.
        let mut report = Report {
            shared,
            done_tx,
            run: Some(claimed),
        };
        // The journal line is what makes this claim a run (see
        // `engine::journal`): it is written before the handler starts.
        if shared.store.engine().journal_start(claimed).is_err() {
            // The run goes ahead: at worst a crash now leaves it uncounted.
            shared.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        let started = Instant::now();
        let outcome = run_one(shared, &run);
        let took = started.elapsed().as_micros() as u64;
        shared.stats.busy_us.fetch_add(took, Ordering::Relaxed);
        // A moving average over about the last 8 runs (racy updates from
        // several runners only blur it).
        let mean = shared.mean_run_us.load(Ordering::Relaxed);
        let mean = if mean == 0 {
            took.max(1)
        } else {
            (mean * 7 + took) / 8
        };
        shared.mean_run_us.store(mean.max(1), Ordering::Relaxed);
        report.send(outcome);
        if run.state.timed_out.load(Ordering::SeqCst) {
            return RunnerEnd::Retired;
        }
    }
    RunnerEnd::Done
}

/// A run's outcome on its way to the dispatcher.
struct Report<'a> {
    shared: &'a Shared,
    done_tx: &'a Sender<Returned>,
    run: Option<&'a Claimed>,
}

impl Report<'_> {
    fn send(&mut self, outcome: Outcome) {
        if let Some(claimed) = self.run.take() {
            self.shared.started_runs.fetch_sub(1, Ordering::SeqCst);
            let done = Done {
                id: claimed.id.clone(),
                token: claimed.token,
                outcome,
                ended_at: self.shared.store.now_ms(),
                thread: std::thread::current().name().map(str::to_owned),
                final_attempt: false,
            };
            // The dispatcher outlives every run it handed out, so the
            // channel is open.
            let _ = self.done_tx.send(Returned::Ended(done));
            self.shared.store.engine().signal.notify();
        }
    }
}

impl Drop for Report<'_> {
    fn drop(&mut self) {
        self.send(Outcome::Failure(
            "the worker thread running this job panicked outside the handler".into(),
        ));
    }
}

/// The timeout failure, if the run (or its callback) is past its deadline.
fn past_deadline(store: &crate::Store, state: &RunState) -> Option<Outcome> {
    let late = state.timed_out.load(Ordering::SeqCst)
        || store.mono_ms() >= state.deadline.load(Ordering::SeqCst);
    late.then(|| Outcome::Failure(TIMEOUT.into()))
}

const TIMEOUT: &str = "timeout: the run passed its time limit (job_timeout, or the callback time \
                       limit); it was asked to stop";

/// The message of a panic payload.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_owned())
}

/// Runs the handler, then the callback the outcome calls for, in a
/// `dueq.job` tracing span.
fn run_one(shared: &Shared, run: &Run) -> Outcome {
    let claimed = &run.claimed;
    let span = tracing::info_span!(
        "dueq.job",
        job_id = %claimed.id,
        queue = %claimed.queue,
        handler = %claimed.handler,
        attempt = claimed.attempt,
    );
    let _entered = span.enter();
    shared.emit(&claimed.id, &claimed.queue, || EventKind::Started {
        handler: claimed.handler.clone(),
        attempt: claimed.attempt,
    });
    let started = Instant::now();
    let runner = Runner {
        store: &shared.store,
        handlers: &shared.handlers,
        lease: shared.lease,
        callback_timeout: shared.callback_timeout,
    };
    let outcome = execute(&runner, &run.claimed, &run.state);
    let duration_ms = started.elapsed().as_secs_f64() * 1e3;
    if run.state.timed_out.load(Ordering::SeqCst) {
        tracing::warn!(
            outcome = "timed_out",
            duration_ms,
            "dueq: the run ended past its time limit; its outcome is discarded"
        );
    } else {
        match &outcome {
            Outcome::Success(_) => {
                tracing::info!(outcome = "succeeded", duration_ms, "dueq: run ended")
            }
            Outcome::Failure(error) => tracing::warn!(
                outcome = "failed",
                duration_ms,
                error = %error,
                "dueq: run ended"
            ),
        }
    }
    outcome
}

/// What running a job needs: a worker pool's, or a synchronous queue's.
pub(crate) struct Runner<'a> {
    pub(crate) store: &'a crate::Store,
    pub(crate) handlers: &'a Handlers,
    pub(crate) lease: Duration,
    pub(crate) callback_timeout: Duration,
}

/// Runs the handler, then the callback the outcome calls for.
pub(crate) fn execute(shared: &Runner<'_>, claimed: &Claimed, state: &Arc<RunState>) -> Outcome {
    let now = shared.store.mono_ms();
    let deadline = |ms: u64| now.saturating_add(ms);
    state.deadline.store(
        claimed.timeout_ms.map_or(u64::MAX, deadline),
        Ordering::SeqCst,
    );
    shared.store.engine().signal.notify(); // the dispatcher learns the deadline
    let ctx = Context {
        store: shared.store.clone(),
        id: claimed.id.clone(),
        queue: claimed.queue.clone(),
        handler: claimed.handler.clone(),
        attempt: claimed.attempt,
        token: claimed.token,
        lease: shared.lease,
        run: state.clone(),
    };
    let outcome = match shared.handlers.get(&claimed.handler) {
        None => Outcome::Failure(format!(
            "unknown handler {:?}: no handler of that name is registered with this worker; \
             register it with Handlers::register",
            claimed.handler
        )),
        Some(handler) => {
            let limit = shared.store.max_payload();
            match catch_unwind(AssertUnwindSafe(|| handler(&ctx, &claimed.args, limit))) {
                Ok(Ok(value)) => Outcome::Success(value),
                Ok(Err(message)) => Outcome::Failure(message),
                Err(panic) => {
                    let message = panic_message(&*panic);
                    tracing::warn!(panic = %message, "dueq: the handler panicked");
                    Outcome::Failure(format!("the handler panicked: {message}"))
                }
            }
        }
    };
    // A run that returns after its deadline failed, whether or not the
    // dispatcher has noticed yet (it would have recorded the same).
    let outcome = past_deadline(shared.store, state).unwrap_or(outcome);
    if claimed.callbacks.is_empty() || state.timed_out.load(Ordering::SeqCst) {
        return outcome;
    }
    // The callback gets its own time limit.
    state.deadline.store(
        shared
            .store
            .mono_ms()
            .saturating_add(dur_ms(shared.callback_timeout)),
        Ordering::SeqCst,
    );
    let stopped = shared
        .store
        .engine()
        .stop_requested(&claimed.id, claimed.token);
    let (kind, name) = match &outcome {
        Outcome::Success(_) => (CallbackKind::Success, &claimed.callbacks.on_success),
        Outcome::Failure(_) if stopped => (CallbackKind::Stopped, &claimed.callbacks.on_stopped),
        Outcome::Failure(_) => (CallbackKind::Failure, &claimed.callbacks.on_failure),
    };
    let Some(name) = name else {
        return outcome;
    };
    let result = match shared.handlers.get_callback(name) {
        None => Err(format!(
            "unknown callback {name:?}: no callback of that name is registered with this \
             worker; register it with Handlers::callback"
        )),
        Some(callback) => {
            let cb = Callback {
                kind,
                ctx: &ctx,
                result: match &outcome {
                    Outcome::Success(v) => Some(v),
                    Outcome::Failure(_) => None,
                },
                error: match &outcome {
                    Outcome::Failure(e) => Some(e),
                    Outcome::Success(_) => None,
                },
            };
            match catch_unwind(AssertUnwindSafe(|| callback(&cb))) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("callback {name:?} failed: {}", e.message())),
                Err(panic) => Err(format!(
                    "callback {name:?} panicked: {}",
                    panic_message(&*panic)
                )),
            }
        }
    };
    if let Some(late) = past_deadline(shared.store, state) {
        return late;
    }
    match (outcome, result) {
        (outcome, Ok(())) => outcome,
        // rq: a failing success callback fails the job.
        (Outcome::Success(_), Err(e)) => Outcome::Failure(e),
        (Outcome::Failure(message), Err(e)) => Outcome::Failure(format!("{message}; {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_prefetch_holds_about_five_ms_of_work_per_thread() {
        assert_eq!(default_prefetch(0, 2, 64), 16, "before the first run ends");
        assert_eq!(default_prefetch(20, 2, 64), 64, "no-op jobs: the most");
        assert_eq!(default_prefetch(1_000, 2, 64), 10);
        assert_eq!(
            default_prefetch(1_000_000, 2, 64),
            1,
            "slow jobs: one waits"
        );
    }
}
