//! `Event`: what a worker tells its [`on_event`](crate::WorkerBuilder::on_event)
//! hook, and the thread that calls the hook.
//!
//! The dispatcher and the runners never call the hook themselves: they put
//! events in a bounded channel and go on; so do the store's enqueue and
//! cancel paths, which send theirs to the hook of every worker on the store
//! (`Subscribers`). One thread per worker takes them
//! out and calls the hook, so a slow hook delays only its own events; when
//! the channel is full, new events are dropped and counted
//! ([`WorkerStats::events_dropped`](crate::WorkerStats::events_dropped)).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use chrono::{DateTime, Utc};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};

/// By default, up to 1024 events wait for a worker's hook; past that, new
/// events are dropped.
pub const DEFAULT_EVENT_BUFFER: usize = 1024;

/// Something that happened to a job, as a worker's
/// [`on_event`](crate::WorkerBuilder::on_event) hook sees it.
///
/// A worker reports its own runs (started, succeeded, failed, retried,
/// timed out, stopped, abandoned) to its own hook. What happens outside any
/// worker is reported to the hook of every worker running on the store in
/// this process: enqueues through a [`Queue`](crate::Queue)
/// ([`EventKind::Enqueued`], sent by the enqueuing thread), cancels by
/// [`Job::cancel`](crate::Job::cancel) and the dependents canceled because a
/// parent was lost ([`EventKind::Canceled`]), and the runs recovered as
/// abandoned when the store opened ([`EventKind::Abandoned`], reported once,
/// to the first worker started with a hook). Jobs that a schedule creates
/// are not reported as enqueued, and a job canceled as it is enqueued (a
/// job it depends on was already lost) is reported as enqueued only.
///
/// Events of one job arrive in the order they happened. Events are
/// reported once their outcome is written to the store, so when a
/// `Succeeded` arrives, [`Job::wait`](crate::Job::wait) sees the job
/// finished too.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// The job's id.
    pub job_id: String,
    /// The job's queue.
    pub queue: String,
    /// When it happened, by the store's clock.
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: EventKind,
}

/// What an [`Event`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A run began: the handler is about to be called.
    Started {
        /// The handler's name.
        handler: String,
        /// The run's number: 1 for the first run.
        attempt: u32,
    },
    /// The run succeeded and its result is written.
    Succeeded {
        /// The run's number.
        attempt: u32,
    },
    /// The run failed (an error, a panic, an unknown handler, arguments that
    /// did not decode, a timeout) and the failure is written.
    Failed {
        /// The run's number.
        attempt: u32,
        /// The error, as stored.
        error: String,
        /// Whether the retry policy put the job back (a
        /// [`Retried`](EventKind::Retried) follows) or this was its last run.
        will_retry: bool,
    },
    /// The job is back in its queue after a failed run (or an abandoned
    /// one), due when its retry policy says.
    Retried {
        /// The run that failed; the next run is `attempt + 1`.
        attempt: u32,
    },
    /// The job was put in its queue (queued, scheduled or deferred): by the
    /// application, through a [`Queue`](crate::Queue) (every worker's hook
    /// on the store gets it), or by the worker for the next run of a
    /// repeating job (see [`Repeat`](crate::Repeat)) after a success.
    Enqueued,
    /// The run passed its time limit (`job_timeout`, or a callback's). It
    /// was asked to stop and its thread replaced; a
    /// [`Failed`](EventKind::Failed) follows once the failure is written.
    TimedOut {
        /// The run's number.
        attempt: u32,
    },
    /// The run ended after [`Job::stop`](crate::Job::stop) and the job is
    /// `stopped` (never retried).
    Stopped {
        /// The run's number.
        attempt: u32,
        /// The error, as stored.
        error: String,
    },
    /// The job was canceled: by [`Job::cancel`](crate::Job::cancel), because
    /// a job it depends on was lost (failed for good, stopped, canceled,
    /// deleted or expired), or because its `ttl` ran out while it waited.
    /// Every worker's hook on the store gets the first two; a `ttl` running
    /// out is reported by the worker that found it.
    Canceled {
        /// Why, as stored in the job's error.
        reason: String,
    },
    /// A run was abandoned and recovered: a run interrupted by a crash,
    /// found when the store opened (see
    /// [`Store::recovered_at_open`](crate::Store::recovered_at_open);
    /// reported once, by the first worker started on the store with a hook),
    /// or a run whose lease lapsed with no live run behind it, found by the
    /// worker (for example a run imported from an export). It counts as a
    /// failed attempt; a [`Retried`](EventKind::Retried) follows if the
    /// retry policy put the job back.
    Abandoned {
        /// The run's number.
        attempt: u32,
        /// Whether the retry policy put the job back.
        will_retry: bool,
    },
}

/// The hooks of the workers running on one store in this process, for the
/// events that happen outside a worker: enqueues, cancels (and the
/// dependents a lost parent cancels), runs recovered when the store opened.
///
/// Those events are sent to every subscribed hook with the same `try_send`
/// as a worker's own events, so the thread that enqueues or cancels never
/// waits for a hook either. With no hook subscribed, reporting costs one
/// atomic load.
#[derive(Default)]
pub(crate) struct Subscribers {
    hooks: Mutex<Vec<Weak<Hook>>>,
    /// `hooks.len()`, read without the lock.
    count: AtomicUsize,
    /// Held (shared) by an enqueue from its write until its `Enqueued` events
    /// are sent, and taken (exclusive, at once released) by a dispatcher
    /// before it hands out the runs it claimed: so a job's `Enqueued` is
    /// always sent before its `Started`.
    publishing: RwLock<()>,
    /// The events of the runs recovered when the store opened, for the first
    /// worker with a hook.
    recovered: Mutex<Vec<Event>>,
}

impl Subscribers {
    /// Whether any hook listens.
    pub(crate) fn any(&self) -> bool {
        self.count.load(Ordering::SeqCst) > 0
    }

    /// Adds a worker's hook. Returns the events of the runs recovered at
    /// open if no hook had them yet: they are reported once.
    pub(crate) fn subscribe(&self, hook: &Arc<Hook>) -> Vec<Event> {
        let mut hooks = self.hooks.lock();
        hooks.retain(|h| h.strong_count() > 0);
        hooks.push(Arc::downgrade(hook));
        self.count.store(hooks.len(), Ordering::SeqCst);
        drop(hooks);
        std::mem::take(&mut *self.recovered.lock())
    }

    /// Keeps the events of the runs recovered at open for the first worker
    /// with a hook.
    pub(crate) fn set_recovered(&self, events: Vec<Event>) {
        *self.recovered.lock() = events;
    }

    /// Held by an enqueue around its write and its events (see
    /// `publishing`); `None` if no hook listens.
    pub(crate) fn publishing(&self) -> Option<RwLockReadGuard<'_, ()>> {
        self.any().then(|| self.publishing.read())
    }

    /// Waits until every enqueue that is between its write and its events
    /// has sent them. Short: an enqueue holds the lock for one write.
    pub(crate) fn barrier(&self) {
        drop(self.publishing.write());
    }

    /// Sends `events` to every hook, dropping (and counting) those a full
    /// buffer does not take. Never blocks on a hook.
    pub(crate) fn broadcast(&self, events: &[Event]) {
        if events.is_empty() || !self.any() {
            return;
        }
        let hooks: Vec<Arc<Hook>> = {
            let mut hooks = self.hooks.lock();
            hooks.retain(|h| h.strong_count() > 0);
            self.count.store(hooks.len(), Ordering::SeqCst);
            hooks.iter().filter_map(Weak::upgrade).collect()
        };
        for hook in &hooks {
            for event in events {
                hook.emit_clone(event);
            }
        }
    }
}

/// A worker's hook.
pub(crate) type HookFn = Arc<dyn Fn(&Event) + Send + Sync + 'static>;

/// Counters the hook thread shares with the worker.
#[derive(Default)]
pub(crate) struct HookCounters {
    /// Events dropped because the channel was full, or left undelivered
    /// when the worker shut down.
    pub(crate) dropped: AtomicU64,
    /// Calls of the hook that panicked.
    pub(crate) panics: AtomicU64,
}

/// A worker's hook thread and the channel to it.
pub(crate) struct Hook {
    tx: Sender<Event>,
    /// Tells the thread to deliver what is queued, until the deadline, and
    /// exit.
    stop_tx: Sender<Option<Instant>>,
    /// Disconnected when the thread exits.
    exited_rx: Receiver<()>,
    handle: Mutex<Option<JoinHandle<()>>>,
    pub(crate) counters: Arc<HookCounters>,
}

impl Hook {
    /// Starts the hook thread with a channel of `capacity` events.
    pub(crate) fn start(hook: HookFn, capacity: usize) -> std::io::Result<Hook> {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let (exited_tx, exited_rx) = crossbeam_channel::bounded::<()>(0);
        let counters = Arc::new(HookCounters::default());
        let handle = std::thread::Builder::new()
            .name("dueq-events".into())
            .spawn({
                let counters = counters.clone();
                move || {
                    let _exited = exited_tx;
                    deliver(&*hook, &rx, &stop_rx, &counters);
                }
            })?;
        Ok(Hook {
            tx,
            stop_tx,
            exited_rx,
            handle: Mutex::new(Some(handle)),
            counters,
        })
    }

    /// Queues an event for the hook, or drops it if the channel is full.
    /// Never blocks.
    pub(crate) fn emit(&self, event: Event) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// `emit` for an event sent to several hooks: cloned only if there is
    /// room for it.
    fn emit_clone(&self, event: &Event) {
        if self.tx.is_full() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            self.emit(event.clone());
        }
    }

    /// Lets the thread deliver what is queued until `deadline`, then waits
    /// for it to exit until then. A hook still busy at the deadline is left
    /// to finish on its own: its thread exits after that call.
    pub(crate) fn finish(&self, deadline: Option<Instant>) {
        // Only one stop is ever needed; a second `finish` finds it queued.
        let _ = self.stop_tx.try_send(deadline);
        let exited = match deadline {
            Some(d) => self
                .exited_rx
                .recv_deadline(d)
                .is_err_and(|e| e.is_disconnected()),
            None => self.exited_rx.recv().is_err(),
        };
        if exited {
            if let Some(handle) = self.handle.lock().take() {
                // The hook's panics are caught; the thread itself does not
                // panic.
                let _ = handle.join();
            }
        }
    }
}

/// The hook thread: calls the hook for every event until told to stop (then
/// delivers what is queued, until the deadline) or until the worker is gone.
fn deliver(
    hook: &(dyn Fn(&Event) + Send + Sync),
    rx: &Receiver<Event>,
    stop_rx: &Receiver<Option<Instant>>,
    counters: &HookCounters,
) {
    let call = |event: Event| {
        if catch_unwind(AssertUnwindSafe(|| hook(&event))).is_err() {
            counters.panics.fetch_add(1, Ordering::Relaxed);
        }
    };
    loop {
        crossbeam_channel::select! {
            recv(rx) -> event => match event {
                Ok(event) => call(event),
                // The worker is gone, and every event was delivered.
                Err(_) => return,
            },
            recv(stop_rx) -> deadline => {
                let deadline = deadline.ok().flatten();
                while let Ok(event) = rx.try_recv() {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        let left = 1 + rx.len() as u64;
                        counters.dropped.fetch_add(left, Ordering::Relaxed);
                        return;
                    }
                    call(event);
                }
                return;
            },
        }
    }
}
