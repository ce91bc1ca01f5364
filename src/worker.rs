//! `Worker`: a pool of threads that runs due jobs.
//!
//! One dispatcher thread claims jobs (nobody else does, so claims never
//! race) and hands them to N runner threads over a channel. It claims ahead
//! of the runners (up to `prefetch` runs wait in the channel), so that each
//! of its rounds, one sled transaction, records many outcomes and claims
//! many jobs: sled charges a fixed cost per transaction. The dispatcher
//! sleeps until the next due time, a lapsed lease or an expiry, or until an
//! enqueue or a finished run wakes it: there is no polling loop.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use crate::clock::dur_ms;
use crate::engine::{Claimed, Done, Outcome};
use crate::error::{Error, Result};
use crate::{Context, Handlers, Store};

/// By default, a run's lease lasts 180 s (rq's default job timeout).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(180);
/// How often (at most) expired finished and failed jobs are cleaned.
const EXPIRY_EVERY_MS: u64 = 1_000;
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
    prefetch: Option<usize>,
}

/// The default prefetch per runner thread, and the least default prefetch.
const PREFETCH_PER_THREAD: usize = 8;
const MIN_DEFAULT_PREFETCH: usize = 16;

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("queues", &self.queues)
            .field("threads", &self.threads)
            .field("lease", &self.lease)
            .field("prefetch", &self.prefetch)
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
    /// the jobs running. By default `8 × threads`, at least 16. A tuning
    /// knob: the dispatcher writes outcomes and claims jobs in batches of up
    /// to this size (one sled transaction each), so a larger prefetch drains
    /// short jobs faster; 0 claims only for idle threads.
    ///
    /// Prefetched jobs show as started. The price: a job enqueued on a
    /// higher-priority queue waits behind the prefetched ones, and another
    /// worker on the same queues does not get them. A prefetched job that
    /// does not start is not an attempt: at [`Worker::shutdown`] it goes back
    /// to its place in its queue, and after a crash the next open puts it
    /// back in its queue without counting an attempt.
    pub fn prefetch(mut self, prefetch: usize) -> WorkerBuilder {
        self.prefetch = Some(prefetch);
        self
    }

    /// Starts the pool in the background.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for zero threads, no queues or a zero
    /// lease; [`Error::Spawn`] if a thread cannot be started.
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
            lease: self.lease,
            burst,
            quit: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            exited: Mutex::new(0),
            exited_cond: Condvar::new(),
            stats: Counters::default(),
        });
        let mut handles = Vec::with_capacity(self.threads + 1);
        for i in 0..self.threads {
            let rx: Receiver<Claimed> = rx.clone();
            let done_tx = done_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("dueq-worker-{i}"))
                .spawn({
                    let shared = shared.clone();
                    move || {
                        let _exit = ExitGuard(&shared);
                        run_jobs(&shared, &rx, &done_tx);
                    }
                })
                .map_err(|e| {
                    shared.quit.store(true, Ordering::SeqCst);
                    Error::Spawn(e)
                })?;
            handles.push(handle);
        }
        drop(done_tx);
        let handle = std::thread::Builder::new()
            .name("dueq-dispatch".into())
            .spawn({
                let shared = shared.clone();
                move || {
                    let _exit = ExitGuard(&shared);
                    dispatch(&shared, tx, &rx, &done_rx);
                }
            })
            .map_err(|e| {
                shared.quit.store(true, Ordering::SeqCst);
                Error::Spawn(e)
            })?;
        handles.push(handle);
        Ok(Worker {
            shared,
            handles: Mutex::new(handles),
        })
    }
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
    handles: Mutex<Vec<JoinHandle<()>>>,
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
                running: self.shared.running.load(Ordering::SeqCst),
            });
        }
        self.join_all();
        Ok(self.stats())
    }

    fn stop(&self) {
        self.shared.quit.store(true, Ordering::SeqCst);
        self.shared.store.engine().signal.notify();
    }

    fn join_all(&self) {
        for handle in self.handles.lock().drain(..) {
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
    /// plus the prefetch.
    claims: usize,
    lease: Duration,
    burst: bool,
    quit: AtomicBool,
    /// Claimed runs not yet finished (running or waiting for a runner).
    in_flight: AtomicUsize,
    /// Runs whose handler is running.
    running: AtomicUsize,
    exited: Mutex<usize>,
    exited_cond: Condvar,
    stats: Counters,
}

#[derive(Default)]
struct Counters {
    succeeded: AtomicU64,
    failed: AtomicU64,
    abandoned: AtomicU64,
    fenced: AtomicU64,
    corrupt: AtomicU64,
    errors: AtomicU64,
    busy_us: AtomicU64,
}

impl Counters {
    fn snapshot(&self, shared: &Shared) -> WorkerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WorkerStats {
            succeeded: get(&self.succeeded),
            failed: get(&self.failed),
            abandoned: get(&self.abandoned),
            fenced: get(&self.fenced),
            corrupt: get(&self.corrupt),
            errors: get(&self.errors),
            busy: Duration::from_micros(get(&self.busy_us)),
            running: shared.running.load(Ordering::Relaxed),
        }
    }
}

/// Counts a thread's exit, also when it panics, and stops the pool if the
/// pool's own code panicked.
struct ExitGuard<'a>(&'a Shared);

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.quit.store(true, Ordering::SeqCst);
            self.0.store.engine().signal.notify();
        }
        *self.0.exited.lock() += 1;
        self.0.exited_cond.notify_all();
    }
}

/// What a runner sends back to the dispatcher.
enum Returned {
    /// A run ended; its outcome is to be written.
    Ended(Done),
    /// A prefetched run the runner did not start, because the pool is
    /// stopping: it goes back to its queue.
    Unstarted(Claimed),
}

fn dispatch(
    shared: &Shared,
    tx: Sender<Claimed>,
    rx: &Receiver<Claimed>,
    done_rx: &Receiver<Returned>,
) {
    let store = &shared.store;
    let engine = store.engine();
    let lease_ms = dur_ms(shared.lease);
    let real_time = store.clock().is_real_time();
    let mut next_expiry_run = 0u64;
    // Outcomes received from runners and not yet written.
    let mut pending: Vec<Done> = Vec::new();
    // Prefetched runs not started, to put back in their queues.
    let mut unstarted: Vec<Claimed> = Vec::new();
    loop {
        let seen = engine.signal.generation();
        for returned in done_rx.try_iter() {
            match returned {
                Returned::Ended(done) => {
                    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                    pending.push(done);
                }
                Returned::Unstarted(run) => unstarted.push(run),
            }
        }
        let quitting = shared.quit.load(Ordering::SeqCst);
        if quitting {
            // Runners check the quit flag before they start a run, so no
            // run taken from here can start.
            unstarted.extend(rx.try_iter());
        }
        if !unstarted.is_empty() {
            match engine.release(&unstarted) {
                Ok(_) => {
                    shared
                        .in_flight
                        .fetch_sub(unstarted.len(), Ordering::SeqCst);
                    unstarted.clear();
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
        let in_flight = shared.in_flight.load(Ordering::SeqCst);
        if quitting && in_flight == 0 && pending.is_empty() {
            return; // dropping `tx` lets the runners exit
        }
        let now = store.now_ms();
        let queues: Vec<u32> = shared
            .queues
            .iter()
            .filter_map(|q| engine.queue_id(q))
            .collect();
        let free = if quitting {
            0
        } else {
            shared.claims.saturating_sub(in_flight)
        };
        let mut progressed = false;
        if !pending.is_empty() || (free > 0 && !queues.is_empty()) {
            match engine.round(&pending, &queues, free, lease_ms, now) {
                Ok(report) => {
                    for (done, written) in pending.iter().zip(&report.written) {
                        let counter = match (written, &done.outcome) {
                            (false, _) => &shared.stats.fenced,
                            (true, Outcome::Success(_)) => &shared.stats.succeeded,
                            (true, Outcome::Failure(_)) => &shared.stats.failed,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    pending.clear();
                    shared
                        .stats
                        .abandoned
                        .fetch_add(report.abandoned as u64, Ordering::Relaxed);
                    shared
                        .stats
                        .corrupt
                        .fetch_add(report.corrupt as u64, Ordering::Relaxed);
                    // Written outcomes count as progress: a retry due at
                    // once is a claim candidate only in the next round.
                    progressed =
                        !report.written.is_empty() || report.abandoned > 0 || report.corrupt > 0;
                    for claimed in report.claimed {
                        progressed = true;
                        shared.in_flight.fetch_add(1, Ordering::SeqCst);
                        if tx.send(claimed).is_err() {
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
                    engine.signal.wait(seen, Some(ERROR_BACKOFF));
                    continue;
                }
            }
        }
        if shared.store.engine().rotate_journal(false).is_err() {
            shared.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        if now >= next_expiry_run && !quitting {
            if engine.expire(now).is_err() {
                shared.stats.errors.fetch_add(1, Ordering::Relaxed);
            }
            next_expiry_run = now.saturating_add(EXPIRY_EVERY_MS);
        }
        if progressed {
            continue;
        }
        let idle = shared.in_flight.load(Ordering::SeqCst) == 0;
        if shared.burst && idle && free > 0 {
            // Nothing was due (the round claimed nothing) and nothing runs.
            return;
        }
        // Sleep until the earliest of: a job becoming due or a lease lapsing
        // (only worth waking for with a free runner), the next expiry; or
        // until something happens (an enqueue, a finished run, a clock jump).
        let mut wake: Option<u64> = None;
        if !quitting {
            wake = engine
                .next_expiry()
                .ok()
                .flatten()
                .map(|t| t.max(next_expiry_run));
            if free > 0 {
                if let Ok(Some(t)) = engine.next_wake(&queues) {
                    wake = Some(wake.map_or(t, |w| w.min(t)));
                }
            }
        }
        let timeout = match wake {
            Some(t) if real_time => Some(Duration::from_millis(t.saturating_sub(now))),
            // A test clock moves by jumps, and every jump wakes us.
            _ => None,
        };
        engine.signal.wait(seen, timeout);
    }
}

fn run_jobs(shared: &Shared, rx: &Receiver<Claimed>, done_tx: &Sender<Returned>) {
    for claimed in rx.iter() {
        if shared.quit.load(Ordering::SeqCst) {
            // A prefetched run that has not started: the dispatcher puts it
            // back in its queue. Nothing was journaled for it, so it is not
            // an attempt.
            let _ = done_tx.send(Returned::Unstarted(claimed));
            shared.store.engine().signal.notify();
            continue;
        }
        shared.running.fetch_add(1, Ordering::SeqCst);
        // Reports a failure if this thread unwinds before reporting, so the
        // dispatcher never waits for an outcome that cannot come.
        let mut report = Report {
            shared,
            done_tx,
            run: Some(&claimed),
        };
        // The journal line is what makes this claim a run (see
        // `engine::journal`): it is written before the handler starts.
        if shared.store.engine().journal_start(&claimed).is_err() {
            // The run goes ahead: at worst a crash now leaves it uncounted.
            shared.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        let started = Instant::now();
        let outcome = run_one(shared, &claimed);
        shared
            .stats
            .busy_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        report.send(outcome);
    }
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
            self.shared.running.fetch_sub(1, Ordering::SeqCst);
            let done = Done {
                id: claimed.id.clone(),
                token: claimed.token,
                outcome,
                ended_at: self.shared.store.now_ms(),
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

fn run_one(shared: &Shared, claimed: &Claimed) -> Outcome {
    let Some(handler) = shared.handlers.get(&claimed.handler) else {
        return Outcome::Failure(format!(
            "unknown handler {:?}: no handler of that name is registered with this worker; \
             register it with Handlers::register",
            claimed.handler
        ));
    };
    let ctx = Context {
        store: shared.store.clone(),
        id: claimed.id.clone(),
        queue: claimed.queue.clone(),
        handler: claimed.handler.clone(),
        attempt: claimed.attempt,
        token: claimed.token,
        lease: shared.lease,
    };
    let limit = shared.store.max_payload();
    match catch_unwind(AssertUnwindSafe(|| handler(&ctx, &claimed.args, limit))) {
        Ok(Ok(value)) => Outcome::Success(value),
        Ok(Err(message)) => Outcome::Failure(message),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic with a non-string payload".to_owned());
            Outcome::Failure(format!("the handler panicked: {message}"))
        }
    }
}
