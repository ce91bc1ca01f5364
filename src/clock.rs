//! Injectable time, so that retry and scheduling timing can be tested
//! without sleeping.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;

/// A source of the current time (UTC).
///
/// Stores use [`SystemClock`] unless [`StoreBuilder::clock`] sets another.
/// Every due time, lease and TTL is computed from the store's clock, so a
/// [`ManualClock`] makes the whole queue run on test time.
///
/// [`StoreBuilder::clock`]: crate::StoreBuilder::clock
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Registers a function to call whenever this clock jumps (for example
    /// when a test advances it), so that sleeping workers re-check what is
    /// due. Clocks that follow real time need not do anything, which is the
    /// default.
    fn on_jump(&self, wake: Box<dyn Fn() + Send + Sync>) {
        let _ = wake;
    }

    /// Whether this clock follows real time, so that a worker may sleep for
    /// the real duration until the next due time. A clock that moves only
    /// by jumps returns `false` and must call the [`Clock::on_jump`]
    /// functions when it moves; workers then sleep until woken. By default
    /// `true`.
    fn is_real_time(&self) -> bool {
        true
    }

    /// A reading that only moves forward, for measuring how long runs take
    /// (`job_timeout`): a step of the wall clock (NTP, a manual change) must
    /// not time jobs out. By default a monotonic clock (`Instant`) counted
    /// from the first reading in this process.
    fn monotonic(&self) -> Duration {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed()
    }
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to: for tests.
///
/// Clones share the same time.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use dueq::{Clock, ManualClock};
///
/// let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
/// let t0 = clock.now();
/// clock.advance(Duration::from_secs(10));
/// assert_eq!((clock.now() - t0).num_seconds(), 10);
/// ```
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

struct ManualInner {
    now: Mutex<DateTime<Utc>>,
    wakers: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            inner: Arc::new(ManualInner {
                now: Mutex::new(start),
                wakers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Moves the clock forward by `by` and wakes the workers of every store
    /// using it.
    pub fn advance(&self, by: Duration) {
        {
            let mut now = self.inner.now.lock();
            let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
            *now = now
                .checked_add_signed(by)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
        }
        self.wake();
    }

    /// Sets the clock to `to`, forwards or backwards, and wakes the workers
    /// of every store using it.
    pub fn set(&self, to: DateTime<Utc>) {
        *self.inner.now.lock() = to;
        self.wake();
    }

    fn wake(&self) {
        for wake in self.inner.wakers.lock().iter() {
            wake();
        }
    }
}

impl std::fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &*self.inner.now.lock())
            .finish()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.inner.now.lock()
    }

    fn on_jump(&self, wake: Box<dyn Fn() + Send + Sync>) {
        self.inner.wakers.lock().push(wake);
    }

    fn is_real_time(&self) -> bool {
        false
    }

    /// The manual time itself (since the Unix epoch): advancing the clock
    /// advances run timeouts too.
    fn monotonic(&self) -> Duration {
        Duration::from_millis(to_ms(self.now()))
    }
}

/// Milliseconds since the Unix epoch, clamped to zero for times before it.
pub(crate) fn to_ms(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp_millis()).unwrap_or(0)
}

/// The inverse of [`to_ms`], saturating at chrono's maximum.
pub(crate) fn from_ms(ms: u64) -> DateTime<Utc> {
    i64::try_from(ms)
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn dur_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
