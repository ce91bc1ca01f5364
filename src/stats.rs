//! `Stats`: how many jobs each queue has in each status, and their
//! Prometheus text exposition.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::engine::Class;
use crate::error::Result;
use crate::{Status, Store};

/// A snapshot of a store's job counts, per queue and status: what
/// `dueq info` shows (rq's `rq info`). Made by [`Store::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// When the counts were taken, by the store's clock.
    pub taken_at: DateTime<Utc>,
    /// Every queue that has been used, sorted by name.
    pub queues: Vec<QueueStats>,
    /// The store's size on disk, in bytes.
    pub size_on_disk: u64,
    /// The cron and interval schedules, with their next fire.
    pub schedules: Vec<crate::ScheduleInfo>,
    /// The figures of the workers running on this store in this process,
    /// summed: jobs running (with their start times), succeeded, failed,
    /// busy time. A worker's figures leave the sum when it is shut down or
    /// dropped.
    pub workers: crate::WorkerStats,
}

/// The job counts of one queue, one per status of [`Stats::STATUSES`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// The queue's name.
    pub name: String,
    /// `(status, jobs)` for every status of [`Stats::STATUSES`], in that
    /// order.
    pub counts: Vec<(Status, usize)>,
}

impl QueueStats {
    /// How many jobs of the queue have `status`; 0 for a status that is not
    /// counted.
    pub fn count(&self, status: Status) -> usize {
        self.counts
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }

    /// How many jobs the queue has, in any status.
    pub fn total(&self) -> usize {
        self.counts.iter().map(|(_, n)| n).sum()
    }
}

impl Stats {
    /// The statuses counted, in the order tools show them (rq's `rq info`
    /// order).
    pub const STATUSES: [Status; 8] = [
        Status::Queued,
        Status::Scheduled,
        Status::Deferred,
        Status::Started,
        Status::Finished,
        Status::Failed,
        Status::Stopped,
        Status::Canceled,
    ];

    /// How many jobs of all queues have `status`.
    pub fn count(&self, status: Status) -> usize {
        self.queues.iter().map(|q| q.count(status)).sum()
    }

    /// How many jobs the store has.
    pub fn total(&self) -> usize {
        self.queues.iter().map(QueueStats::total).sum()
    }
}

/// The index range `(class, lowest time, highest time)` that holds the jobs
/// showing `status` at `now` (see ARCHITECTURE.md, "The index key").
fn range(status: Status, now: u64) -> (Class, u64, u64) {
    match status {
        Status::Queued => (Class::Ready, 0, now),
        Status::Scheduled => (Class::Ready, now.saturating_add(1), u64::MAX),
        Status::Started => (Class::Started, 0, u64::MAX),
        Status::Finished => (Class::Finished, 0, u64::MAX),
        Status::Failed => (Class::Failed, 0, u64::MAX),
        Status::Canceled => (Class::Canceled, 0, u64::MAX),
        Status::Deferred => (Class::Deferred, 0, u64::MAX),
        Status::Stopped => (Class::Stopped, 0, u64::MAX),
    }
}

impl Store {
    /// How many jobs each queue has in each status, and the store's size.
    ///
    /// Each count is a range scan of the index (keys only, no record is
    /// read), so this costs time in proportion to the number of jobs:
    /// cheap enough to call every second for stores of up to a few hundred
    /// thousand jobs. Every count is taken at one instant of the store's
    /// clock, so queued and scheduled split the waiting jobs exactly; jobs
    /// that move while counting may be counted in neither or both states.
    ///
    /// # Errors
    ///
    /// Storage errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use dueq::Status;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = dueq::Store::open(dir.path().join("jobs.dueq"))?;
    /// let q = store.queue("default");
    /// q.enqueue("add", &(1, 2))?;
    /// q.enqueue_in(Duration::from_secs(60), "add", &(3, 4))?;
    ///
    /// let stats = store.stats()?;
    /// assert_eq!(stats.queues[0].name, "default");
    /// assert_eq!(stats.queues[0].count(Status::Queued), 1);
    /// assert_eq!(stats.count(Status::Scheduled), 1);
    /// assert!(dueq::prometheus(&stats).contains(r#"dueq_jobs{queue="default",status="queued"} 1"#));
    /// # Ok::<(), dueq::Error>(())
    /// ```
    pub fn stats(&self) -> Result<Stats> {
        let taken_at = self.now();
        let now = self.now_ms();
        let engine = self.engine();
        let mut queues = Vec::new();
        for name in engine.queue_names() {
            let Some(queue) = engine.queue_id(&name) else {
                continue;
            };
            let counts = Stats::STATUSES
                .iter()
                .map(|&status| {
                    let (class, lo, hi) = range(status, now);
                    Ok((status, engine.count(queue, class, lo, hi)?))
                })
                .collect::<Result<_>>()?;
            queues.push(QueueStats { name, counts });
        }
        Ok(Stats {
            taken_at,
            queues,
            size_on_disk: self.size_on_disk()?,
            schedules: self.schedules()?,
            workers: self.worker_figures(),
        })
    }
}

/// Renders `stats` in the Prometheus text exposition format: the gauge
/// `dueq_jobs{queue, status}` (one sample per queue and status of
/// [`Stats::STATUSES`]), the gauge `dueq_store_size_bytes`, and the
/// workers' figures (`dueq_worker_running`, `dueq_worker_succeeded_total`,
/// `dueq_worker_failed_total`, `dueq_worker_busy_seconds_total`).
///
/// Serve it from the application's metrics endpoint, or write it to a file
/// for node_exporter's textfile collector.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let store = dueq::Store::open(dir.path().join("jobs.dueq"))?;
/// store.queue("mail").enqueue("send", &"hello")?;
/// let text = dueq::prometheus(&store.stats()?);
/// assert!(text.contains("# TYPE dueq_jobs gauge\n"));
/// assert!(text.contains("dueq_jobs{queue=\"mail\",status=\"queued\"} 1\n"));
/// # Ok::<(), dueq::Error>(())
/// ```
pub fn prometheus(stats: &Stats) -> String {
    let mut out = String::new();
    out.push_str("# HELP dueq_jobs Jobs in a dueq queue, by status.\n");
    out.push_str("# TYPE dueq_jobs gauge\n");
    for queue in &stats.queues {
        let name = escape_label(&queue.name);
        for (status, n) in &queue.counts {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "dueq_jobs{{queue=\"{name}\",status=\"{status}\"}} {n}");
        }
    }
    out.push_str("# HELP dueq_store_size_bytes The dueq store's size on disk.\n");
    out.push_str("# TYPE dueq_store_size_bytes gauge\n");
    let _ = writeln!(out, "dueq_store_size_bytes {}", stats.size_on_disk);
    let w = &stats.workers;
    for (name, kind, help, value) in [
        (
            "dueq_worker_running",
            "gauge",
            "Jobs running in this process's workers.",
            w.running.to_string(),
        ),
        (
            "dueq_worker_succeeded_total",
            "counter",
            "Runs that succeeded.",
            w.succeeded.to_string(),
        ),
        (
            "dueq_worker_failed_total",
            "counter",
            "Runs that failed (retried or not).",
            w.failed.to_string(),
        ),
        (
            "dueq_worker_busy_seconds_total",
            "counter",
            "Time spent running handlers.",
            format!("{:.3}", w.busy.as_secs_f64()),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    out
}

/// Escapes a label value as the exposition format requires: backslash,
/// double quote and line feed.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Stats {
        Stats {
            taken_at: DateTime::<Utc>::UNIX_EPOCH,
            queues: vec![
                QueueStats {
                    name: "default".into(),
                    counts: Stats::STATUSES.iter().map(|&s| (s, 0)).collect(),
                },
                QueueStats {
                    name: r#"we"ird\q"#.into(),
                    counts: vec![(Status::Queued, 3), (Status::Failed, 1)],
                },
            ],
            size_on_disk: 4096,
            schedules: Vec::new(),
            workers: crate::WorkerStats::default(),
        }
    }

    #[test]
    fn prometheus_renders_every_sample_once_with_help_and_type() {
        let text = prometheus(&sample());
        let expected = "\
# HELP dueq_jobs Jobs in a dueq queue, by status.
# TYPE dueq_jobs gauge
dueq_jobs{queue=\"default\",status=\"queued\"} 0
dueq_jobs{queue=\"default\",status=\"scheduled\"} 0
dueq_jobs{queue=\"default\",status=\"deferred\"} 0
dueq_jobs{queue=\"default\",status=\"started\"} 0
dueq_jobs{queue=\"default\",status=\"finished\"} 0
dueq_jobs{queue=\"default\",status=\"failed\"} 0
dueq_jobs{queue=\"default\",status=\"stopped\"} 0
dueq_jobs{queue=\"default\",status=\"canceled\"} 0
dueq_jobs{queue=\"we\\\"ird\\\\q\",status=\"queued\"} 3
dueq_jobs{queue=\"we\\\"ird\\\\q\",status=\"failed\"} 1
# HELP dueq_store_size_bytes The dueq store's size on disk.
# TYPE dueq_store_size_bytes gauge
dueq_store_size_bytes 4096
# HELP dueq_worker_running Jobs running in this process's workers.
# TYPE dueq_worker_running gauge
dueq_worker_running 0
# HELP dueq_worker_succeeded_total Runs that succeeded.
# TYPE dueq_worker_succeeded_total counter
dueq_worker_succeeded_total 0
# HELP dueq_worker_failed_total Runs that failed (retried or not).
# TYPE dueq_worker_failed_total counter
dueq_worker_failed_total 0
# HELP dueq_worker_busy_seconds_total Time spent running handlers.
# TYPE dueq_worker_busy_seconds_total counter
dueq_worker_busy_seconds_total 0.000
";
        assert_eq!(text, expected);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_label("plain"), "plain");
    }

    #[test]
    fn counts_and_totals() {
        let stats = sample();
        assert_eq!(stats.queues[1].count(Status::Queued), 3);
        assert_eq!(stats.queues[1].count(Status::Started), 0);
        assert_eq!(stats.queues[1].total(), 4);
        assert_eq!(stats.count(Status::Failed), 1);
        assert_eq!(stats.total(), 4);
    }

    #[test]
    fn stats_count_each_status_of_a_real_store() {
        use crate::{Handlers, JobError, ManualClock, Worker};
        let dir = tempfile::tempdir().unwrap();
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let clock = ManualClock::new(t0);
        let store = Store::builder(dir.path().join("s"))
            .clock(clock.clone())
            .open()
            .unwrap();
        let q = store.queue("q");
        q.enqueue("ok", &1).unwrap();
        q.enqueue("bad", &2).unwrap();
        let mut handlers = Handlers::new();
        handlers.register("ok", |n: u32| -> Result<u32, JobError> { Ok(n) });
        handlers.register("bad", |_: u32| -> Result<u32, JobError> {
            Err(JobError::new("no"))
        });
        Worker::builder(&store, handlers)
            .queues(["q"])
            .burst()
            .unwrap();
        q.enqueue("ok", &3).unwrap();
        q.enqueue_in(std::time::Duration::from_secs(5), "ok", &4)
            .unwrap();
        q.enqueue("ok", &5).unwrap().cancel().unwrap();
        store.queue("empty-later").enqueue("ok", &6).unwrap();
        store.queue("empty-later").empty().unwrap();

        let stats = store.stats().unwrap();
        let names: Vec<&str> = stats.queues.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(names, ["empty-later", "q"]);
        let q = &stats.queues[1];
        let counts: Vec<usize> = Stats::STATUSES.iter().map(|&s| q.count(s)).collect();
        // queued, scheduled, deferred, started, finished, failed, stopped,
        // canceled
        assert_eq!(counts, [1, 1, 0, 0, 1, 1, 0, 1]);
        assert_eq!(stats.queues[0].total(), 0);
        assert!(stats.size_on_disk > 0);
        assert_eq!(stats.taken_at, t0);

        clock.advance(std::time::Duration::from_secs(5));
        let later = store.stats().unwrap();
        assert_eq!(later.count(Status::Queued), 2);
        assert_eq!(later.count(Status::Scheduled), 0);
    }
}
