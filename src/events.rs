//! `Event`: what a worker tells its [`on_event`](crate::WorkerBuilder::on_event)
//! hook, and the thread that calls the hook.
//!
//! The dispatcher and the runners never call the hook themselves: they put
//! events in a bounded channel and go on. One thread per worker takes them
//! out and calls the hook, so a slow hook delays only its own events; when
//! the channel is full, new events are dropped and counted
//! ([`WorkerStats::events_dropped`](crate::WorkerStats::events_dropped)).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use chrono::{DateTime, Utc};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;

/// By default, up to 1024 events wait for a worker's hook; past that, new
/// events are dropped.
pub const DEFAULT_EVENT_BUFFER: usize = 1024;

/// Something that happened to a job in a worker, as its
/// [`on_event`](crate::WorkerBuilder::on_event) hook sees it.
///
/// There is no event for enqueues: they happen in the caller's thread,
/// through [`Queue`](crate::Queue), not in a worker. They are traced (the
/// `dueq.enqueue` span of the `tracing` crate), and the jobs a worker puts
/// back by itself are reported here: retries as [`EventKind::Retried`], the
/// next run of a repeating job as [`EventKind::Enqueued`].
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
    /// The worker put a repeating job (see [`Repeat`](crate::Repeat)) back
    /// for its next run after a success.
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
    /// A job this worker was about to start was canceled instead, because
    /// its `ttl` ran out while it waited. (Dependents canceled because a
    /// parent failed are not reported: the worker does not see them.)
    Canceled {
        /// Why, as stored in the job's error.
        reason: String,
    },
    /// The worker found a run whose lease lapsed with no live run behind it
    /// (for example a run imported from an export). It counts as a failed
    /// attempt. Runs interrupted by a crash are recovered when the store
    /// opens, before any worker starts: see
    /// [`Store::recovered_at_open`](crate::Store::recovered_at_open).
    Abandoned {
        /// The run's number.
        attempt: u32,
        /// Whether the retry policy put the job back.
        will_retry: bool,
    },
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
