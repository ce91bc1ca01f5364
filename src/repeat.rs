//! `Repeat`: run a job again after each success (rq's `Repeat`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::dur_ms;

/// Runs a job again after each success, under the same id: rq's
/// `Repeat(times, interval)`. A job with `Repeat::times(n)` succeeds up to
/// `1 + n` times; a failure (after its retries) ends the repetition.
///
/// Interval order: before repeat `k` (1 for the first) the job waits
/// `intervals[min(k - 1, len - 1)]`: the list is read left to right and
/// its **last** value repeats when `times` is longer. (rq's docs and code
/// disagree on this; dueq implements this rule and tests pin it.) No
/// interval means the job is queued again at once.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use dueq::Repeat;
/// let r = Repeat::times(3).intervals([Duration::from_secs(10), Duration::from_secs(60)]);
/// assert_eq!(r.wait(1), Duration::from_secs(10));
/// assert_eq!(r.wait(2), Duration::from_secs(60));
/// assert_eq!(r.wait(3), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repeat {
    times: u32,
    intervals_ms: Vec<u64>,
}

impl Repeat {
    /// Repeat `times` times after the first successful run.
    pub fn times(times: u32) -> Repeat {
        Repeat {
            times,
            intervals_ms: Vec::new(),
        }
    }

    /// The same wait before every repeat.
    pub fn interval(self, interval: Duration) -> Repeat {
        self.intervals([interval])
    }

    /// Waits before successive repeats; the last one repeats.
    pub fn intervals(mut self, intervals: impl IntoIterator<Item = Duration>) -> Repeat {
        self.intervals_ms = intervals.into_iter().map(dur_ms).collect();
        self
    }

    /// How many repeats after the first success.
    pub fn count(&self) -> u32 {
        self.times
    }

    /// The wait before repeat `k` (1-based).
    pub fn wait(&self, k: u32) -> Duration {
        let i = (k.max(1) as usize - 1).min(self.intervals_ms.len().saturating_sub(1));
        Duration::from_millis(self.intervals_ms.get(i).copied().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_interval_repeats_and_none_means_at_once() {
        let s = Duration::from_secs;
        let r = Repeat::times(5).intervals([s(1), s(2), s(3)]);
        let waits: Vec<_> = (1..=5).map(|k| r.wait(k)).collect();
        assert_eq!(waits, [s(1), s(2), s(3), s(3), s(3)]);
        assert_eq!(Repeat::times(2).wait(1), Duration::ZERO);
        assert_eq!(Repeat::times(2).interval(s(7)).wait(2), s(7));
    }
}
