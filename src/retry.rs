//! Retry policies: how often a failed job runs again, and how long it waits
//! before each new run.
//!
//! [`Retry`] follows python-rq's `Retry(max, interval=[...])` exactly and adds
//! linear and exponential backoff, plus optional deterministic jitter on top of
//! any of them. Waits are computed on demand from the stored policy, so a
//! policy is a few plain fields and serializes compactly inside a job record.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A retry policy: how many times a failed job is run again, and how long each
/// retry waits.
///
/// A job whose policy is `Retry::max(n)` runs at most `1 + n` times: once, then
/// up to `n` retries. Retries are numbered from 1, so retry `k` is run `k + 1`.
/// Before retry `k` the job waits [`wait(k)`](Retry::wait), or
/// [`wait_with_seed(k, seed)`](Retry::wait_with_seed) when jitter is on.
///
/// The wait comes from one backoff strategy, chosen by the last of these calls
/// (the default is to retry at once):
///
/// | call | wait before retry `k` |
/// |------|-----------------------|
/// | none | zero |
/// | [`intervals`](Retry::intervals) | rq's rule: the list right-aligned on the last retry |
/// | [`linear`](Retry::linear) | `min(start + (k - 1) * step, max)` |
/// | [`exponential`](Retry::exponential) | `min(first * factor^(k - 1), cap)` |
///
/// [`jitter`](Retry::jitter) then spreads each wait by a deterministic factor.
/// The order of the builder calls does not matter except between the three
/// strategies, where the last one wins. A policy reads back through
/// [`max_retries`](Retry::max_retries), [`backoff_kind`](Retry::backoff_kind)
/// with the getter of its strategy, and
/// [`jitter_fraction`](Retry::jitter_fraction).
///
/// Waits are kept as whole milliseconds, and all arithmetic saturates: no
/// count, duration or factor makes a wait overflow or panic; the longest wait
/// is `u64::MAX` milliseconds.
///
/// # Examples
///
/// rq's interval lists:
///
/// ```
/// use dueq::Retry;
/// use std::time::Duration;
///
/// let retry = Retry::max(3).intervals([10, 30, 60]);
/// assert_eq!(retry.max_retries(), 3);
/// assert_eq!(retry.wait(1), Duration::from_secs(10));
/// assert_eq!(retry.wait(2), Duration::from_secs(30));
/// assert_eq!(retry.wait(3), Duration::from_secs(60));
///
/// // More retries than intervals: the first interval repeats.
/// let retry = Retry::max(5).intervals([10, 30, 60]);
/// let waits: Vec<u64> = (1..=5).map(|k| retry.wait(k).as_secs()).collect();
/// assert_eq!(waits, [10, 10, 10, 30, 60]);
/// ```
///
/// Exponential backoff with jitter:
///
/// ```
/// use dueq::Retry;
/// use std::time::Duration;
///
/// let retry = Retry::max(6)
///     .exponential(Duration::from_secs(1), 2.0, Duration::from_secs(10))
///     .jitter(0.1);
/// let waits: Vec<u64> = (1..=6).map(|k| retry.wait(k).as_secs()).collect();
/// assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
///
/// // The jittered wait is within 10% of the plain one, and the same seed
/// // always gives the same wait.
/// let seed = 0x5eed;
/// let jittered = retry.wait_with_seed(3, seed);
/// assert!(jittered >= Duration::from_millis(3_600) && jittered <= Duration::from_millis(4_400));
/// assert_eq!(jittered, retry.wait_with_seed(3, seed));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retry {
    max: u32,
    backoff: Backoff,
    /// Always within `[0, 1]` when built through the API; re-clamped on use
    /// because a decoded record may hold anything.
    jitter: f64,
}

/// All durations in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Backoff {
    /// rq's list; empty means "retry at once", which is also the default.
    Intervals(Vec<u64>),
    Linear {
        start: u64,
        step: u64,
        max: u64,
    },
    /// `factor` is always `>= 1.0` when built through the API; re-normalized on
    /// use for the same reason as `Retry::jitter`.
    Exponential {
        first: u64,
        factor: f64,
        cap: u64,
    },
}

impl Retry {
    /// A policy that retries a failed job up to `n` times, so the job runs at
    /// most `1 + n` times.
    ///
    /// Retries start at once (a zero wait) and without jitter until a backoff
    /// strategy or [`jitter`](Retry::jitter) is set. `Retry::max(0)` is allowed
    /// and never retries; rq rejects it, but here it saves callers a special
    /// case for "no retries".
    ///
    /// # Examples
    ///
    /// ```
    /// use dueq::Retry;
    /// use std::time::Duration;
    ///
    /// let retry = Retry::max(3);
    /// assert_eq!(retry.max_retries(), 3);
    /// assert_eq!(retry.wait(1), Duration::ZERO);
    /// ```
    #[must_use]
    pub fn max(n: u32) -> Retry {
        Retry {
            max: n,
            backoff: Backoff::Intervals(Vec::new()),
            jitter: 0.0,
        }
    }

    /// Waits taken from a list, exactly as rq's `Retry(max, interval=[...])`.
    ///
    /// Items are whole seconds (any integer type; negative means zero) or
    /// [`Duration`]s, truncated to whole milliseconds. See [`Interval`].
    ///
    /// The list is right-aligned on the last retry: before retry `k`, with
    /// `left = max - k + 1` retries left (counting down from `max` to 1), the
    /// wait is `intervals[len - left]`, or `intervals[0]` when `len < left`. So
    /// the last interval is always used for the last retry, and the first
    /// repeats when there are more retries than intervals. An empty list waits
    /// zero, and a one-item list waits that long before every retry (rq's
    /// `interval=n`).
    ///
    /// Replaces any earlier [`linear`](Retry::linear) or
    /// [`exponential`](Retry::exponential) backoff.
    ///
    /// # Examples
    ///
    /// ```
    /// use dueq::Retry;
    /// use std::time::Duration;
    ///
    /// let secs = |retry: &Retry| -> Vec<u64> {
    ///     (1..=retry.max_retries()).map(|k| retry.wait(k).as_secs()).collect()
    /// };
    /// assert_eq!(secs(&Retry::max(3).intervals([10, 30, 60])), [10, 30, 60]);
    /// assert_eq!(secs(&Retry::max(5).intervals([10, 30, 60])), [10, 10, 10, 30, 60]);
    /// assert_eq!(secs(&Retry::max(2).intervals([10, 30, 60])), [30, 60]);
    ///
    /// let retry = Retry::max(2).intervals([Duration::from_millis(500), Duration::from_secs(2)]);
    /// assert_eq!(retry.wait(1), Duration::from_millis(500));
    /// ```
    #[must_use]
    pub fn intervals<I>(self, intervals: I) -> Retry
    where
        I: IntoIterator,
        I::Item: Interval,
    {
        let list = intervals.into_iter().map(|i| i.to_millis()).collect();
        Retry {
            backoff: Backoff::Intervals(list),
            ..self
        }
    }

    /// Linear backoff: waits `start`, `start + step`, `start + 2 * step`, ...,
    /// each capped at `max`.
    ///
    /// The parameters are Celery/kombu's `interval_start`, `interval_step` and
    /// `interval_max`, with one difference: kombu caps the wait at
    /// `start + max`, dueq caps it at `max` itself. If `start > max`, every
    /// wait is `max`.
    ///
    /// Replaces any earlier [`intervals`](Retry::intervals) or
    /// [`exponential`](Retry::exponential) backoff.
    ///
    /// # Examples
    ///
    /// ```
    /// use dueq::Retry;
    ///
    /// let retry = Retry::max(5).linear(60, 60, 180);
    /// let waits: Vec<u64> = (1..=5).map(|k| retry.wait(k).as_secs()).collect();
    /// assert_eq!(waits, [60, 120, 180, 180, 180]);
    /// ```
    #[must_use]
    pub fn linear(self, start: impl Interval, step: impl Interval, max: impl Interval) -> Retry {
        Retry {
            backoff: Backoff::Linear {
                start: start.to_millis(),
                step: step.to_millis(),
                max: max.to_millis(),
            },
            ..self
        }
    }

    /// Exponential backoff: waits `first`, `first * factor`,
    /// `first * factor^2`, ..., each capped at `cap`.
    ///
    /// A `factor` below `1.0`, or NaN, is taken as `1.0` (a constant wait of
    /// `first`), so waits never shrink from one retry to the next. An infinite
    /// or huge factor just reaches `cap` sooner. If `first > cap`, every wait
    /// is `cap`. Waits are truncated to whole milliseconds.
    ///
    /// Replaces any earlier [`intervals`](Retry::intervals) or
    /// [`linear`](Retry::linear) backoff.
    ///
    /// # Examples
    ///
    /// ```
    /// use dueq::Retry;
    ///
    /// let retry = Retry::max(6).exponential(1, 2.0, 10);
    /// let waits: Vec<u64> = (1..=6).map(|k| retry.wait(k).as_secs()).collect();
    /// assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
    /// ```
    #[must_use]
    pub fn exponential(self, first: impl Interval, factor: f64, cap: impl Interval) -> Retry {
        Retry {
            backoff: Backoff::Exponential {
                first: first.to_millis(),
                factor: normalize_factor(factor),
                cap: cap.to_millis(),
            },
            ..self
        }
    }

    /// Spreads each wait by a factor in `[1 - fraction, 1 + fraction]`, so
    /// jobs that failed together do not all retry at the same instant.
    ///
    /// `fraction` is clamped to `[0, 1]`, and NaN is taken as `0` (no jitter).
    /// Jitter applies only to [`wait_with_seed`](Retry::wait_with_seed);
    /// [`wait`](Retry::wait) always gives the plain wait.
    ///
    /// # Examples
    ///
    /// ```
    /// use dueq::Retry;
    /// use std::time::Duration;
    ///
    /// let retry = Retry::max(1).intervals([100]).jitter(0.5);
    /// let wait = retry.wait_with_seed(1, 42);
    /// assert!(wait >= Duration::from_secs(50) && wait <= Duration::from_secs(150));
    /// assert_eq!(retry.wait(1), Duration::from_secs(100));
    /// ```
    #[must_use]
    pub fn jitter(self, fraction: f64) -> Retry {
        Retry {
            jitter: normalize_fraction(fraction),
            ..self
        }
    }

    /// The number of retries this policy allows: the `n` given to
    /// [`Retry::max`].
    ///
    /// # Examples
    ///
    /// ```
    /// use dueq::Retry;
    ///
    /// assert_eq!(Retry::max(4).linear(1, 1, 10).max_retries(), 4);
    /// ```
    #[must_use]
    pub fn max_retries(&self) -> u32 {
        self.max
    }

    /// The backoff strategy's name: `"intervals"` (rq's list, and the
    /// default, an empty list that retries at once), `"linear"` or
    /// `"exponential"`. The matching getter gives its parameters:
    /// [`interval_list`](Retry::interval_list),
    /// [`linear_backoff`](Retry::linear_backoff) or
    /// [`exponential_backoff`](Retry::exponential_backoff).
    ///
    /// # Examples
    ///
    /// ```
    /// use dueq::Retry;
    ///
    /// assert_eq!(Retry::max(3).backoff_kind(), "intervals");
    /// assert_eq!(Retry::max(3).linear(1, 1, 10).backoff_kind(), "linear");
    /// assert_eq!(Retry::max(3).exponential(1, 2.0, 10).backoff_kind(), "exponential");
    /// ```
    #[must_use]
    pub fn backoff_kind(&self) -> &'static str {
        match self.backoff {
            Backoff::Intervals(_) => "intervals",
            Backoff::Linear { .. } => "linear",
            Backoff::Exponential { .. } => "exponential",
        }
    }

    /// The list given to [`intervals`](Retry::intervals), in whole
    /// milliseconds; empty for a policy that retries at once (the default),
    /// and `None` for a linear or exponential backoff.
    ///
    /// # Examples
    ///
    /// ```
    /// use dueq::Retry;
    /// use std::time::Duration;
    ///
    /// let retry = Retry::max(5).intervals([10, 30]);
    /// assert_eq!(retry.interval_list(), Some(vec![Duration::from_secs(10), Duration::from_secs(30)]));
    /// assert_eq!(Retry::max(5).interval_list(), Some(vec![]));
    /// assert_eq!(Retry::max(5).linear(1, 1, 10).interval_list(), None);
    /// ```
    #[must_use]
    pub fn interval_list(&self) -> Option<Vec<Duration>> {
        match &self.backoff {
            Backoff::Intervals(list) => {
                Some(list.iter().map(|&ms| Duration::from_millis(ms)).collect())
            }
            _ => None,
        }
    }

    /// The `(start, step, max)` given to [`linear`](Retry::linear), in whole
    /// milliseconds; `None` unless the backoff is linear.
    ///
    /// # Examples
    ///
    /// ```
    /// use dueq::Retry;
    /// use std::time::Duration;
    ///
    /// let s = Duration::from_secs;
    /// assert_eq!(Retry::max(5).linear(60, 30, 180).linear_backoff(), Some((s(60), s(30), s(180))));
    /// assert_eq!(Retry::max(5).intervals([60]).linear_backoff(), None);
    /// ```
    #[must_use]
    pub fn linear_backoff(&self) -> Option<(Duration, Duration, Duration)> {
        match self.backoff {
            Backoff::Linear { start, step, max } => Some((
                Duration::from_millis(start),
                Duration::from_millis(step),
                Duration::from_millis(max),
            )),
            _ => None,
        }
    }

    /// The `(first, factor, cap)` given to
    /// [`exponential`](Retry::exponential), in whole milliseconds and with
    /// the factor as used (a factor below `1.0` or NaN reads `1.0`); `None`
    /// unless the backoff is exponential.
    ///
    /// # Examples
    ///
    /// ```
    /// use dueq::Retry;
    /// use std::time::Duration;
    ///
    /// let s = Duration::from_secs;
    /// let retry = Retry::max(6).exponential(1, 2.0, 10);
    /// assert_eq!(retry.exponential_backoff(), Some((s(1), 2.0, s(10))));
    /// assert_eq!(Retry::max(6).exponential(1, 0.5, 10).exponential_backoff(), Some((s(1), 1.0, s(10))));
    /// assert_eq!(Retry::max(6).exponential_backoff(), None);
    /// ```
    #[must_use]
    pub fn exponential_backoff(&self) -> Option<(Duration, f64, Duration)> {
        match self.backoff {
            Backoff::Exponential { first, factor, cap } => Some((
                Duration::from_millis(first),
                normalize_factor(factor),
                Duration::from_millis(cap),
            )),
            _ => None,
        }
    }

    /// The jitter fraction set by [`jitter`](Retry::jitter), within
    /// `[0, 1]`; `0.0` without jitter.
    ///
    /// # Examples
    ///
    /// ```
    /// use dueq::Retry;
    ///
    /// assert_eq!(Retry::max(3).jitter(0.1).jitter_fraction(), 0.1);
    /// assert_eq!(Retry::max(3).jitter(7.0).jitter_fraction(), 1.0);
    /// assert_eq!(Retry::max(3).jitter_fraction(), 0.0);
    /// ```
    #[must_use]
    pub fn jitter_fraction(&self) -> f64 {
        // A decoded record may hold anything: read it as `wait_with_seed`
        // uses it.
        normalize_fraction(self.jitter)
    }

    /// The wait before retry number `retry`, without jitter.
    ///
    /// `retry` is 1-based: `wait(1)` is the wait before the first retry, the
    /// job's second run. `wait(0)` is [`Duration::ZERO`].
    ///
    /// The wait does not check `retry` against
    /// [`max_retries`](Retry::max_retries); callers decide whether a retry
    /// happens at all. Past the maximum the formula just goes on: linear and
    /// exponential backoff keep growing up to their cap, and an interval list
    /// gives its last interval (as for the final retry). For instance
    /// `Retry::max(0).linear(5, 5, 60).wait(1)` is 5 seconds, though that
    /// policy never retries.
    ///
    /// # Examples
    ///
    /// ```
    /// use dueq::Retry;
    /// use std::time::Duration;
    ///
    /// let retry = Retry::max(3).intervals([10, 30, 60]);
    /// assert_eq!(retry.wait(0), Duration::ZERO);
    /// assert_eq!(retry.wait(2), Duration::from_secs(30));
    /// assert_eq!(retry.wait(4), Duration::from_secs(60)); // past max
    /// ```
    #[must_use]
    pub fn wait(&self, retry: u32) -> Duration {
        Duration::from_millis(self.wait_millis(retry))
    }

    /// The wait before retry number `retry`, with jitter, deterministic for a
    /// given `seed`.
    ///
    /// Callers pass something stable per job, such as a hash of its id, so
    /// that different jobs spread out while a test can pin a value. The
    /// jittered wait is [`wait(retry)`](Retry::wait) times a factor in
    /// `[1 - fraction, 1 + fraction]` that depends only on `seed`, `retry`
    /// and `fraction`, truncated to whole milliseconds and saturating at
    /// `u64::MAX` milliseconds. The mapping from `(seed, retry)` to the factor
    /// is not a stable format: it may change between dueq releases.
    ///
    /// Without jitter (or with `jitter(0.0)`) this equals `wait(retry)`, and
    /// like it, it is zero for `retry == 0` and does not check `max_retries`.
    ///
    /// # Examples
    ///
    /// ```
    /// use dueq::Retry;
    ///
    /// let plain = Retry::max(2).linear(10, 10, 60);
    /// assert_eq!(plain.wait_with_seed(2, 7), plain.wait(2));
    ///
    /// let jittered = plain.clone().jitter(0.25);
    /// let secs = jittered.wait_with_seed(2, 7).as_secs_f64();
    /// assert!((15.0..=25.0).contains(&secs));
    /// assert_eq!(jittered.wait_with_seed(2, 7), jittered.wait_with_seed(2, 7));
    /// ```
    #[must_use]
    pub fn wait_with_seed(&self, retry: u32, seed: u64) -> Duration {
        let base = self.wait_millis(retry);
        let fraction = normalize_fraction(self.jitter);
        if base == 0 || fraction == 0.0 {
            return Duration::from_millis(base);
        }
        let factor = 1.0 - fraction + 2.0 * fraction * unit_interval(splitmix64(seed, retry));
        // `factor` is in [0, 2): the product is finite and non-negative, and
        // `as` saturates anything above u64::MAX. Precision loss only starts
        // past 2^53 ms (~285,000 years).
        Duration::from_millis((base as f64 * factor) as u64)
    }

    fn wait_millis(&self, retry: u32) -> u64 {
        if retry == 0 {
            return 0;
        }
        match &self.backoff {
            Backoff::Intervals(list) => rq_interval(list, self.max, retry),
            Backoff::Linear { start, step, max } => start
                .saturating_add(step.saturating_mul(u64::from(retry - 1)))
                .min(*max),
            Backoff::Exponential { first, factor, cap } => {
                exponential(*first, *factor, *cap, retry - 1)
            }
        }
    }
}

/// rq's `Job.get_retry_interval`, for a 1-based `retry`.
fn rq_interval(list: &[u64], max: u32, retry: u32) -> u64 {
    let Some(&last) = list.last() else {
        return 0;
    };
    // rq indexes by the retries left before this one is used up; in u64 so
    // `max + 1` cannot overflow.
    let left = (u64::from(max) + 1).saturating_sub(u64::from(retry));
    let left = usize::try_from(left).unwrap_or(usize::MAX);
    // `left` is 0 only past `max`, where rq never asks; the index is then one
    // past the end and the last interval answers.
    list.get(list.len().saturating_sub(left))
        .copied()
        .unwrap_or(last)
}

/// `min(first * factor^exponent, cap)`, never below `min(first, cap)`.
fn exponential(first: u64, factor: f64, cap: u64, exponent: u32) -> u64 {
    if exponent == 0 || first == 0 || first >= cap || normalize_factor(factor) == 1.0 {
        // Exact, where the f64 path below could round `first` itself.
        return first.min(cap);
    }
    // One powf, not a loop: the exponent can be ~2^32. With factor >= 1 the
    // power is >= 1 or +inf, and `first > 0`, so the product is never NaN;
    // `as` saturates +inf and anything above u64::MAX to u64::MAX.
    let grown = (first as f64 * normalize_factor(factor).powf(f64::from(exponent))) as u64;
    // Since the true product is >= first, flooring at `first` undoes f64
    // rounding below it and keeps the waits non-decreasing.
    grown.max(first).min(cap)
}

/// A factor below 1.0 would shrink waits; NaN fails `>=` and is caught too.
fn normalize_factor(factor: f64) -> f64 {
    if factor >= 1.0 {
        // Infinity reaches every cap at the second retry, as f64::MAX does;
        // keeping the factor finite lets the policy be exported as JSON.
        factor.min(f64::MAX)
    } else {
        1.0
    }
}

/// NaN fails `>` and becomes 0 (no jitter); +inf becomes 1.
fn normalize_fraction(fraction: f64) -> f64 {
    if fraction > 0.0 {
        fraction.min(1.0)
    } else {
        0.0
    }
}

/// Output number `retry` of a splitmix64 generator seeded with `seed`: cheap,
/// well mixed for adjacent seeds and retries, and needs no dependency.
fn splitmix64(seed: u64, retry: u32) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(u64::from(retry) + 1));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Maps random bits to `[0, 1)`, using the 53 bits an f64 mantissa holds
/// exactly.
fn unit_interval(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1_u64 << 53) as f64
}

mod sealed {
    /// Keeps [`Interval`](super::Interval) closed to other crates, so dueq can
    /// change its method or add implementations without a breaking change.
    pub trait Sealed {}
}

/// A retry interval: a whole number of seconds, or a [`Duration`].
///
/// Implemented for [`Duration`], the integer types `u8`, `u16`, `u32`, `u64`,
/// `usize`, `i32` and `i64`, and references to any of them. Integers count
/// seconds; negative integers mean zero. A `Duration` is truncated to whole
/// milliseconds. Anything longer than `u64::MAX` milliseconds
/// (including [`Duration::MAX`]) saturates to that.
///
/// Plain integer literals work: `[10, 30, 60]` infers as `[i32; 3]`.
///
/// This trait is sealed: it cannot be implemented outside dueq.
///
/// # Examples
///
/// ```
/// use dueq::Retry;
/// use std::time::Duration;
///
/// let from_secs = Retry::max(1).intervals([90]);
/// let from_duration = Retry::max(1).intervals([Duration::from_secs(90)]);
/// assert_eq!(from_secs.wait(1), from_duration.wait(1));
///
/// let configured: Vec<u64> = vec![5, 15];
/// let borrowed = Retry::max(2).intervals(&configured);
/// assert_eq!(borrowed.wait(2), Duration::from_secs(15));
/// ```
pub trait Interval: sealed::Sealed {
    /// The interval in whole milliseconds, saturating at `u64::MAX`.
    #[doc(hidden)]
    fn to_millis(&self) -> u64;
}

impl sealed::Sealed for Duration {}

impl Interval for Duration {
    fn to_millis(&self) -> u64 {
        u64::try_from(self.as_millis()).unwrap_or(u64::MAX)
    }
}

impl<T: Interval + ?Sized> sealed::Sealed for &T {}

impl<T: Interval + ?Sized> Interval for &T {
    fn to_millis(&self) -> u64 {
        (**self).to_millis()
    }
}

/// Seconds to milliseconds. `try_from` fails only for negative values (or a
/// `usize` wider than 64 bits); both saturate the way the trait promises.
macro_rules! interval_from_secs {
    ($($int:ty => $on_error:expr),* $(,)?) => {$(
        impl sealed::Sealed for $int {}

        impl Interval for $int {
            fn to_millis(&self) -> u64 {
                u64::try_from(*self).unwrap_or($on_error).saturating_mul(1000)
            }
        }
    )*};
}

interval_from_secs! {
    u8 => 0,
    u16 => 0,
    u32 => 0,
    u64 => 0,
    usize => u64::MAX,
    i32 => 0,
    i64 => 0,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS_MAX: Duration = Duration::from_millis(u64::MAX);

    fn secs(retry: &Retry) -> Vec<u64> {
        (1..=retry.max_retries())
            .map(|k| retry.wait(k).as_secs())
            .collect()
    }

    fn millis(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap()
    }

    // rq interval rule

    #[test]
    fn rq_integer_literals_infer_and_map_to_seconds() {
        let retry = Retry::max(3).intervals([10, 30, 60]);
        assert_eq!(retry.wait(1), Duration::from_secs(10));
        assert_eq!(retry.wait(2), Duration::from_secs(30));
        assert_eq!(retry.wait(3), Duration::from_secs(60));
    }

    #[test]
    fn rq_more_retries_than_intervals_repeats_the_first() {
        assert_eq!(
            secs(&Retry::max(5).intervals([10, 30, 60])),
            [10, 10, 10, 30, 60]
        );
    }

    #[test]
    fn rq_fewer_retries_than_intervals_uses_the_tail() {
        assert_eq!(secs(&Retry::max(2).intervals([10, 30, 60])), [30, 60]);
    }

    #[test]
    fn rq_single_interval() {
        assert_eq!(secs(&Retry::max(1).intervals([5])), [5]);
        assert_eq!(secs(&Retry::max(4).intervals([5])), [5, 5, 5, 5]);
    }

    #[test]
    fn no_intervals_retries_at_once() {
        assert_eq!(secs(&Retry::max(3)), [0, 0, 0]);
        let empty: [u64; 0] = [];
        assert_eq!(secs(&Retry::max(3).intervals(empty)), [0, 0, 0]);
        assert_eq!(Retry::max(3).wait(u32::MAX), Duration::ZERO);
    }

    #[test]
    fn rq_past_max_gives_the_last_interval() {
        let retry = Retry::max(3).intervals([10, 30, 60]);
        assert_eq!(retry.wait(4), Duration::from_secs(60));
        assert_eq!(retry.wait(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn interval_types() {
        let from = |i: Retry| i.wait(1);
        assert_eq!(
            from(Retry::max(1).intervals([7_u8])),
            Duration::from_secs(7)
        );
        assert_eq!(
            from(Retry::max(1).intervals([7_u16])),
            Duration::from_secs(7)
        );
        assert_eq!(
            from(Retry::max(1).intervals([7_u32])),
            Duration::from_secs(7)
        );
        assert_eq!(
            from(Retry::max(1).intervals([7_u64])),
            Duration::from_secs(7)
        );
        assert_eq!(
            from(Retry::max(1).intervals([7_usize])),
            Duration::from_secs(7)
        );
        assert_eq!(
            from(Retry::max(1).intervals([7_i32])),
            Duration::from_secs(7)
        );
        assert_eq!(
            from(Retry::max(1).intervals([7_i64])),
            Duration::from_secs(7)
        );
        assert_eq!(
            from(Retry::max(1).intervals(vec![Duration::from_millis(1_500)])),
            Duration::from_millis(1_500)
        );
        let owned = vec![3_u64, 4];
        assert_eq!(
            from(Retry::max(2).intervals(&owned)),
            Duration::from_secs(3)
        );
        assert_eq!(
            from(Retry::max(2).intervals(owned.iter())),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn negative_seconds_are_zero() {
        let retry = Retry::max(2).intervals([-5, i32::MIN]);
        assert_eq!(retry.wait(1), Duration::ZERO);
        assert_eq!(retry.wait(2), Duration::ZERO);
        assert_eq!(Retry::max(1).intervals([i64::MIN]).wait(1), Duration::ZERO);
        assert_eq!(Retry::max(1).linear(-1, -1, -1).wait(5), Duration::ZERO);
    }

    #[test]
    fn sub_millisecond_durations_truncate() {
        let retry = Retry::max(1).intervals([Duration::from_micros(2_999)]);
        assert_eq!(retry.wait(1), Duration::from_millis(2));
    }

    #[test]
    fn huge_intervals_saturate() {
        assert_eq!(Duration::MAX.to_millis(), u64::MAX);
        assert_eq!(u64::MAX.to_millis(), u64::MAX);
        assert_eq!(i64::MAX.to_millis(), u64::MAX);
        assert_eq!(usize::MAX.to_millis(), u64::MAX);
        assert_eq!(u32::MAX.to_millis(), u64::from(u32::MAX) * 1000);
        let retry = Retry::max(2).intervals([Duration::MAX, Duration::ZERO]);
        assert_eq!(retry.wait(1), MS_MAX);
        assert_eq!(retry.wait(2), Duration::ZERO);
    }

    #[test]
    fn max_zero() {
        let retry = Retry::max(0).intervals([10, 30, 60]);
        assert_eq!(retry.max_retries(), 0);
        assert_eq!(retry.wait(0), Duration::ZERO);
        assert_eq!(retry.wait(1), Duration::from_secs(60));
        assert_eq!(Retry::max(0).wait(1), Duration::ZERO);
        assert_eq!(
            Retry::max(0).linear(5, 5, 60).wait(1),
            Duration::from_secs(5)
        );
        assert_eq!(
            Retry::max(0).exponential(5, 2.0, 60).wait(2),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn max_u32_max_with_intervals() {
        let retry = Retry::max(u32::MAX).intervals([10, 30, 60]);
        assert_eq!(retry.max_retries(), u32::MAX);
        assert_eq!(retry.wait(1), Duration::from_secs(10));
        assert_eq!(retry.wait(u32::MAX - 3), Duration::from_secs(10));
        assert_eq!(retry.wait(u32::MAX - 2), Duration::from_secs(10));
        assert_eq!(retry.wait(u32::MAX - 1), Duration::from_secs(30));
        assert_eq!(retry.wait(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn retry_zero_never_waits() {
        let policies = [
            Retry::max(3).intervals([10]),
            Retry::max(3).linear(1, 1, 10),
            Retry::max(3).exponential(1, 2.0, 10),
            Retry::max(3)
                .exponential(Duration::MAX, f64::INFINITY, Duration::MAX)
                .jitter(1.0),
        ];
        for retry in policies {
            assert_eq!(retry.wait(0), Duration::ZERO);
            assert_eq!(retry.wait_with_seed(0, 99), Duration::ZERO);
        }
    }

    #[test]
    fn last_strategy_wins_and_order_does_not_matter_otherwise() {
        let a = Retry::max(3).jitter(0.3).intervals([1]).linear(2, 2, 10);
        let b = Retry::max(3)
            .exponential(1, 2.0, 4)
            .linear(2, 2, 10)
            .jitter(0.3);
        assert_eq!(a, b);
        assert_eq!(secs(&a), [2, 4, 6]);
    }

    // Linear

    #[test]
    fn linear_examples() {
        assert_eq!(secs(&Retry::max(3).linear(60, 60, 180)), [60, 120, 180]);
        assert_eq!(
            secs(&Retry::max(5).linear(60, 60, 180)),
            [60, 120, 180, 180, 180]
        );
    }

    #[test]
    fn linear_caps_at_max_itself_not_start_plus_max() {
        // kombu would allow up to 10 + 25 = 35 here.
        assert_eq!(secs(&Retry::max(4).linear(10, 10, 25)), [10, 20, 25, 25]);
        assert_eq!(secs(&Retry::max(2).linear(100, 10, 25)), [25, 25]);
        assert_eq!(secs(&Retry::max(3).linear(7, 0, 60)), [7, 7, 7]);
    }

    #[test]
    fn linear_saturates() {
        let retry = Retry::max(u32::MAX).linear(Duration::MAX, Duration::MAX, Duration::MAX);
        assert_eq!(retry.wait(1), MS_MAX);
        assert_eq!(retry.wait(u32::MAX), MS_MAX);
        let retry = Retry::max(u32::MAX).linear(1, u64::MAX, Duration::MAX);
        assert_eq!(retry.wait(2), MS_MAX);
        assert_eq!(
            Retry::max(1).linear(1, 1, Duration::MAX).wait(u32::MAX),
            Duration::from_secs(u64::from(u32::MAX))
        );
    }

    // Exponential

    #[test]
    fn exponential_examples() {
        assert_eq!(secs(&Retry::max(4).exponential(1, 2.0, 10)), [1, 2, 4, 8]);
        assert_eq!(
            secs(&Retry::max(6).exponential(1, 2.0, 10)),
            [1, 2, 4, 8, 10, 10]
        );
    }

    #[test]
    fn exponential_fractional_factor_truncates_to_millis() {
        let retry = Retry::max(3).exponential(Duration::from_millis(1_000), 1.5, 60);
        assert_eq!(retry.wait(2), Duration::from_millis(1_500));
        assert_eq!(retry.wait(3), Duration::from_millis(2_250));
        let retry = Retry::max(2).exponential(Duration::from_millis(3), 1.5, 60);
        assert_eq!(retry.wait(2), Duration::from_millis(4));
    }

    #[test]
    fn exponential_odd_factors() {
        let constant = [3, 3, 3, 3];
        for factor in [f64::NAN, 0.5, 0.0, -2.0, f64::NEG_INFINITY, 1.0] {
            assert_eq!(
                secs(&Retry::max(4).exponential(3, factor, 100)),
                constant,
                "factor {factor}"
            );
        }
        for factor in [f64::INFINITY, 1e300, f64::MAX] {
            assert_eq!(
                secs(&Retry::max(4).exponential(3, factor, 100)),
                [3, 100, 100, 100],
                "factor {factor}"
            );
        }
        assert_eq!(
            Retry::max(1).exponential(3, f64::NAN, 100),
            Retry::max(1).exponential(3, 1.0, 100)
        );
    }

    #[test]
    fn exponential_edges() {
        assert_eq!(secs(&Retry::max(3).exponential(0, 2.0, 10)), [0, 0, 0]);
        assert_eq!(secs(&Retry::max(3).exponential(20, 2.0, 10)), [10, 10, 10]);
        assert_eq!(secs(&Retry::max(3).exponential(5, 2.0, 0)), [0, 0, 0]);
        let huge = Retry::max(u32::MAX).exponential(Duration::MAX, 2.0, Duration::MAX);
        assert_eq!(huge.wait(1), MS_MAX);
        assert_eq!(huge.wait(u32::MAX), MS_MAX);
        let uncapped = Retry::max(u32::MAX).exponential(1, 2.0, Duration::MAX);
        assert_eq!(uncapped.wait(1), Duration::from_secs(1));
        assert_eq!(uncapped.wait(u32::MAX), MS_MAX);
        // Rounding 2^53 + 1 through f64 must not make the second wait smaller.
        let odd = (1_u64 << 53) + 1;
        let retry = Retry::max(2).exponential(Duration::from_millis(odd), 1.0, Duration::MAX);
        assert_eq!(millis(retry.wait(1)), odd);
        assert_eq!(millis(retry.wait(2)), odd);
        let near_max =
            Retry::max(1).exponential(Duration::from_millis(u64::MAX - 1), 2.0, Duration::MAX);
        assert_eq!(millis(near_max.wait(1)), u64::MAX - 1);
    }

    // wait(u32::MAX) for every strategy

    #[test]
    fn wait_at_u32_max_for_every_strategy() {
        let cases = [
            (Retry::max(3), Duration::ZERO),
            (Retry::max(3).intervals([1, 2]), Duration::from_secs(2)),
            (Retry::max(3).linear(1, 1, 3600), Duration::from_secs(3600)),
            (
                Retry::max(3).exponential(1, 1.0001, 3600),
                Duration::from_secs(3600),
            ),
            (
                Retry::max(3).exponential(1, 1.0, 3600),
                Duration::from_secs(1),
            ),
        ];
        for (retry, expected) in cases {
            assert_eq!(retry.wait(u32::MAX), expected, "{retry:?}");
            assert_eq!(retry.wait_with_seed(u32::MAX, 1), expected, "{retry:?}");
            let jittered = retry.clone().jitter(1.0).wait_with_seed(u32::MAX, u64::MAX);
            assert!(jittered <= expected * 2, "{retry:?}");
        }
    }

    // Jitter

    #[test]
    fn jitter_stays_within_fraction() {
        let retry = Retry::max(5).exponential(1, 3.0, 600).jitter(0.2);
        for seed in 0..2_000_u64 {
            for k in 1..=5 {
                let base = millis(retry.wait(k)) as f64;
                let got = millis(retry.wait_with_seed(k, seed)) as f64;
                assert!(
                    got >= (base * 0.8).floor() && got <= (base * 1.2).ceil(),
                    "seed {seed} retry {k}: {got} vs {base}"
                );
            }
        }
    }

    #[test]
    fn jitter_is_deterministic_and_varies_with_seed_and_retry() {
        let retry = Retry::max(3).intervals([100]).jitter(0.5);
        assert_eq!(retry.wait_with_seed(2, 7), retry.wait_with_seed(2, 7));
        assert_eq!(
            retry.clone().wait_with_seed(2, 7),
            retry.wait_with_seed(2, 7)
        );
        let by_seed: std::collections::HashSet<Duration> =
            (0..100).map(|seed| retry.wait_with_seed(1, seed)).collect();
        assert!(by_seed.len() > 90, "only {} distinct waits", by_seed.len());
        let by_retry: std::collections::HashSet<Duration> =
            (1..=3).map(|k| retry.wait_with_seed(k, 7)).collect();
        assert!(by_retry.len() > 1);
    }

    #[test]
    fn jitter_spreads_both_ways() {
        let retry = Retry::max(1).intervals([100]).jitter(0.5);
        let base = retry.wait(1);
        let waits: Vec<Duration> = (0..1_000)
            .map(|seed| retry.wait_with_seed(1, seed))
            .collect();
        assert!(waits.iter().any(|&w| w < base * 3 / 4));
        assert!(waits.iter().any(|&w| w > base * 5 / 4));
    }

    #[test]
    fn no_jitter_equals_wait() {
        let policies = [
            Retry::max(3).intervals([10, 30, 60]),
            Retry::max(3).linear(1, 2, 60).jitter(0.0),
            Retry::max(3)
                .exponential(1, 2.0, 60)
                .jitter(0.5)
                .jitter(0.0),
        ];
        for retry in policies {
            for k in 0..=4 {
                for seed in [0, 1, u64::MAX] {
                    assert_eq!(retry.wait_with_seed(k, seed), retry.wait(k));
                }
            }
        }
    }

    #[test]
    fn jitter_fraction_is_clamped() {
        let base = Retry::max(1).intervals([100]);
        assert_eq!(base.clone().jitter(f64::NAN), base.clone().jitter(0.0));
        assert_eq!(base.clone().jitter(-1.0), base.clone().jitter(0.0));
        assert_eq!(
            base.clone().jitter(f64::NEG_INFINITY),
            base.clone().jitter(0.0)
        );
        assert_eq!(base.clone().jitter(5.0), base.clone().jitter(1.0));
        assert_eq!(base.clone().jitter(f64::INFINITY), base.clone().jitter(1.0));
        let full = base.jitter(5.0);
        for seed in 0..1_000 {
            let w = full.wait_with_seed(1, seed);
            assert!(w <= Duration::from_secs(200));
        }
    }

    #[test]
    fn jitter_saturates_on_huge_waits() {
        let retry = Retry::max(1).intervals([Duration::MAX]).jitter(1.0);
        for seed in 0..1_000 {
            let _ = retry.wait_with_seed(1, seed);
        }
        assert!((0..1_000).any(|seed| retry.wait_with_seed(1, seed) == MS_MAX));
    }

    // Stored form

    #[test]
    fn serde_round_trips() {
        let policies = [
            Retry::max(0),
            Retry::max(5).intervals([10, 30, 60]).jitter(0.1),
            Retry::max(u32::MAX).linear(1, 2, Duration::MAX),
            Retry::max(3).exponential(1, 2.5, 60).jitter(1.0),
        ];
        for retry in policies {
            let json = serde_json::to_string(&retry).unwrap();
            assert_eq!(serde_json::from_str::<Retry>(&json).unwrap(), retry);
            let config = bincode::config::standard();
            let bytes = bincode::serde::encode_to_vec(&retry, config).unwrap();
            let (decoded, read): (Retry, usize) =
                bincode::serde::decode_from_slice(&bytes, config).unwrap();
            assert_eq!(read, bytes.len());
            assert_eq!(decoded, retry);
        }
    }

    #[test]
    fn decoded_out_of_range_floats_are_tamed() {
        let mut retry = Retry::max(3).exponential(1, 2.0, 10).jitter(0.5);
        retry.jitter = f64::NAN;
        assert_eq!(retry.wait_with_seed(2, 3), retry.wait(2));
        retry.jitter = 9.0;
        assert!(retry.wait_with_seed(2, 3) <= Duration::from_secs(4));
        retry.backoff = Backoff::Exponential {
            first: 1_000,
            factor: f64::NAN,
            cap: 10_000,
        };
        assert_eq!(secs(&retry), [1, 1, 1]);
        retry.backoff = Backoff::Exponential {
            first: 1_000,
            factor: -3.0,
            cap: 10_000,
        };
        assert_eq!(secs(&retry), [1, 1, 1]);
    }

    // Properties

    fn millis_strategy() -> impl Strategy<Value = u64> {
        prop_oneof![0..100_000_u64, any::<u64>(), Just(u64::MAX)]
    }

    fn factor_strategy() -> impl Strategy<Value = f64> {
        prop_oneof![
            0.0..10.0_f64,
            any::<f64>(),
            Just(1.0),
            Just(2.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
        ]
    }

    fn count_strategy() -> impl Strategy<Value = u32> {
        prop_oneof![0..20_u32, any::<u32>(), Just(u32::MAX)]
    }

    #[derive(Debug, Clone)]
    enum Params {
        Intervals(Vec<u64>),
        Linear(u64, u64, u64),
        Exponential(u64, f64, u64),
    }

    fn params_strategy() -> impl Strategy<Value = Params> {
        prop_oneof![
            proptest::collection::vec(millis_strategy(), 0..8).prop_map(Params::Intervals),
            (millis_strategy(), millis_strategy(), millis_strategy())
                .prop_map(|(a, b, c)| Params::Linear(a, b, c)),
            (millis_strategy(), factor_strategy(), millis_strategy())
                .prop_map(|(a, f, c)| Params::Exponential(a, f, c)),
        ]
    }

    fn build(max: u32, params: &Params, jitter: f64) -> Retry {
        let ms = Duration::from_millis;
        let retry = Retry::max(max);
        let retry = match params {
            Params::Intervals(list) => retry.intervals(list.iter().map(|&m| ms(m))),
            Params::Linear(start, step, max) => retry.linear(ms(*start), ms(*step), ms(*max)),
            Params::Exponential(first, factor, cap) => {
                retry.exponential(ms(*first), *factor, ms(*cap))
            }
        };
        retry.jitter(jitter)
    }

    proptest! {
        #[test]
        fn waits_are_total_and_follow_their_strategy(
            max in count_strategy(),
            retry in count_strategy(),
            params in params_strategy(),
            jitter in prop_oneof![0.0..=1.0_f64, any::<f64>()],
            seed in any::<u64>(),
        ) {
            let policy = build(max, &params, jitter);
            let wait = millis(policy.wait(retry));
            let jittered = millis(policy.wait_with_seed(retry, seed));
            let fraction = normalize_fraction(jitter);
            prop_assert!(jittered as f64 >= (wait as f64 * (1.0 - fraction)).floor());
            prop_assert!(jittered as f64 <= (wait as f64 * (1.0 + fraction)).ceil());
            if retry == 0 {
                prop_assert_eq!(wait, 0);
                prop_assert_eq!(jittered, 0);
                return Ok(());
            }
            let next = retry.checked_add(1).map(|k| millis(policy.wait(k)));
            match &params {
                Params::Intervals(list) if list.is_empty() => prop_assert_eq!(wait, 0),
                Params::Intervals(list) => prop_assert!(list.contains(&wait)),
                Params::Linear(_, _, cap) | Params::Exponential(_, _, cap) => {
                    prop_assert!(wait <= *cap);
                    if let Some(next) = next {
                        prop_assert!(wait <= next, "wait({}) = {} > wait({}) = {}", retry, wait, retry + 1, next);
                    }
                }
            }
        }
    }
}
