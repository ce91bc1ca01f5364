//! Cron and interval schedules kept in the store: rq-scheduler's `cron` and
//! `schedule(interval=...)`, durable and fired at most once per instant.

use std::str::FromStr as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::{dur_ms, from_ms, to_ms};
use crate::engine::{encode_json, ScheduleRecord, Spec};
use crate::error::{Error, Result};
use crate::queue::{DEFAULT_FAILURE_TTL, DEFAULT_RESULT_TTL, DEFAULT_TIMEOUT};
use crate::{Retry, Store};

/// Longest schedule name: its job ids are `cron-{name}-{instant}`, at most
/// 128 characters.
const MAX_NAME_LEN: usize = 96;

/// A schedule as it is now, from [`Store::schedules`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScheduleInfo {
    /// Its name.
    pub name: String,
    /// `"cron 0 3 * * *"` or `"every 60s"`.
    pub spec: String,
    /// The queue its jobs go to.
    pub queue: String,
    /// The handler its jobs call.
    pub handler: String,
    /// Its jobs' arguments, as JSON text.
    pub args_json: String,
    /// When it fires next; `None` while paused.
    pub next_fire: Option<DateTime<Utc>>,
    /// Whether it is paused.
    pub paused: bool,
    /// The instant of its last fire.
    pub last_fire: Option<DateTime<Utc>>,
    /// The id of the job its last fire enqueued.
    pub last_job: Option<String>,
    /// Fires so far.
    pub fired: u64,
}

impl From<ScheduleRecord> for ScheduleInfo {
    fn from(r: ScheduleRecord) -> ScheduleInfo {
        ScheduleInfo {
            spec: match &r.spec {
                Spec::Cron(expr) => format!("cron {expr}"),
                Spec::Every(ms) => format!("every {}", humanize(*ms)),
            },
            next_fire: (!r.paused).then(|| from_ms(r.next_fire)),
            args_json: String::from_utf8_lossy(&r.args).into_owned(),
            last_fire: r.last_fire.map(from_ms),
            name: r.name,
            queue: r.queue,
            handler: r.handler,
            paused: r.paused,
            last_job: r.last_job,
            fired: r.fired,
        }
    }
}

fn humanize(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A schedule with options, made by [`Store::schedule`].
#[must_use = "a schedule builder does nothing until `create` is called"]
pub struct ScheduleBuilder {
    store: Store,
    name: String,
    handler: String,
    args: Result<Vec<u8>>,
    spec: Option<Result<Spec>>,
    queue: String,
    retry: Option<Retry>,
    timeout: Duration,
    result_ttl: Duration,
    failure_ttl: Duration,
}

impl std::fmt::Debug for ScheduleBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduleBuilder")
            .field("name", &self.name)
            .field("handler", &self.handler)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl ScheduleBuilder {
    /// Fires on a cron expression, in UTC: 5 fields (minute hour
    /// day-of-month month day-of-week, e.g. `"0 3 * * *"`), or 6 with
    /// seconds first. Time zones other than UTC are not supported.
    pub fn cron(mut self, expr: &str) -> ScheduleBuilder {
        self.spec = Some(parse_cron(expr).map(|()| Spec::Cron(expr.to_owned())));
        self
    }

    /// Fires every `interval`, the first time one interval after creation.
    pub fn every(mut self, interval: Duration) -> ScheduleBuilder {
        self.spec = Some(if interval < Duration::from_millis(1) {
            Err(Error::InvalidArgument {
                what: "every",
                reason: "the interval must be at least 1 ms".into(),
            })
        } else {
            Ok(Spec::Every(dur_ms(interval)))
        });
        self
    }

    /// The queue its jobs go to. By default `"default"`.
    pub fn queue(mut self, queue: &str) -> ScheduleBuilder {
        self.queue = queue.to_owned();
        self
    }

    /// Its jobs' retry policy.
    pub fn retry(mut self, retry: Retry) -> ScheduleBuilder {
        self.retry = Some(retry);
        self
    }

    /// Its jobs' `job_timeout` (180 s by default; `Duration::MAX`: none).
    pub fn timeout(mut self, timeout: Duration) -> ScheduleBuilder {
        self.timeout = timeout;
        self
    }

    /// Its jobs' `result_ttl` (500 s by default).
    pub fn result_ttl(mut self, ttl: Duration) -> ScheduleBuilder {
        self.result_ttl = ttl;
        self
    }

    /// Its jobs' `failure_ttl` (a year by default).
    pub fn failure_ttl(mut self, ttl: Duration) -> ScheduleBuilder {
        self.failure_ttl = ttl;
        self
    }

    /// Creates the schedule, or replaces the one of the same name (its
    /// fire count is kept). It first fires at the first instant of its
    /// spec after now. Workers of the store fire it (any worker, whatever
    /// its queues); while no worker runs, missed instants are coalesced into
    /// one fire.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCron`] for an expression that does not parse;
    /// [`Error::InvalidArgument`] for a bad name, no `cron`/`every`, or a
    /// zero interval; encoding and storage errors.
    pub fn create(self) -> Result<ScheduleInfo> {
        validate_name(&self.name)?;
        let spec = self.spec.ok_or_else(|| Error::InvalidArgument {
            what: "schedule",
            reason: format!(
                "schedule {:?} has no timing: call .cron(expr) or .every(interval)",
                self.name
            ),
        })??;
        let args = self.args?;
        let now = self.store.now_ms();
        let engine = self.store.engine();
        let fired = engine
            .schedule_record(&self.name)?
            .map_or(0, |old| old.fired);
        let record = ScheduleRecord {
            next_fire: next_after(&spec, now)?,
            name: self.name,
            spec,
            queue: self.queue,
            handler: self.handler,
            args,
            retry: self.retry,
            timeout_ms: (self.timeout != Duration::MAX).then(|| dur_ms(self.timeout).max(1)),
            result_ttl_ms: ttl_ms(self.result_ttl),
            failure_ttl_ms: ttl_ms(self.failure_ttl),
            paused: false,
            last_fire: None,
            last_job: None,
            fired,
        };
        engine.put_schedule(&record)?;
        self.store.flush()?;
        Ok(record.into())
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    if ttl == Duration::MAX {
        u64::MAX
    } else {
        dur_ms(ttl).min(u64::MAX - 1)
    }
}

fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: "schedule name",
            reason: format!(
                "{name:?}: use 1 to {MAX_NAME_LEN} letters, digits, '_' or '-' \
                 (it is part of its jobs' ids)"
            ),
        })
    }
}

fn parse_cron(expr: &str) -> Result<()> {
    croner_parse(expr).map(|_| ())
}

fn croner_parse(expr: &str) -> Result<croner::Cron> {
    croner::Cron::from_str(expr).map_err(|e| Error::InvalidCron {
        expr: expr.to_owned(),
        detail: e.to_string(),
    })
}

/// The first instant of `spec` strictly after `after` (ms).
pub(crate) fn next_after(spec: &Spec, after: u64) -> Result<u64> {
    match spec {
        Spec::Every(ms) => Ok(after.saturating_add(*ms)),
        Spec::Cron(expr) => {
            let cron = croner_parse(expr)?;
            let next = cron
                .find_next_occurrence(&from_ms(after), false)
                .map_err(|e| Error::InvalidCron {
                    expr: expr.clone(),
                    detail: format!("it has no instant after {}: {e}", from_ms(after)),
                })?;
            Ok(to_ms(next))
        }
    }
}

impl Store {
    /// A schedule named `name` that enqueues `handler(args)`; set its timing
    /// with [`ScheduleBuilder::cron`] or [`ScheduleBuilder::every`], then
    /// [`ScheduleBuilder::create`].
    pub fn schedule<A: Serialize + ?Sized>(
        &self,
        name: &str,
        handler: &str,
        args: &A,
    ) -> ScheduleBuilder {
        ScheduleBuilder {
            store: self.clone(),
            name: name.to_owned(),
            handler: handler.to_owned(),
            args: encode_json(args, "arguments", self.max_payload()),
            spec: None,
            queue: "default".to_owned(),
            retry: None,
            timeout: DEFAULT_TIMEOUT,
            result_ttl: DEFAULT_RESULT_TTL,
            failure_ttl: DEFAULT_FAILURE_TTL,
        }
    }

    /// Creates (or replaces) a cron schedule on the `"default"` queue: see
    /// [`ScheduleBuilder::cron`] and [`ScheduleBuilder::create`].
    ///
    /// # Errors
    ///
    /// As [`ScheduleBuilder::create`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = dueq::Store::open(dir.path().join("jobs.dueq"))?;
    /// store.cron("nightly-report", "0 3 * * *", "report", &"sales")?;
    /// let schedules = store.schedules()?;
    /// assert_eq!(schedules[0].spec, "cron 0 3 * * *");
    /// assert!(store.cron("bad", "61 * * * *", "report", &()).is_err());
    /// # Ok::<(), dueq::Error>(())
    /// ```
    pub fn cron<A: Serialize + ?Sized>(
        &self,
        name: &str,
        expr: &str,
        handler: &str,
        args: &A,
    ) -> Result<ScheduleInfo> {
        self.schedule(name, handler, args).cron(expr).create()
    }

    /// Creates (or replaces) a schedule firing every `interval` on the
    /// `"default"` queue: see [`ScheduleBuilder::every`] and
    /// [`ScheduleBuilder::create`].
    ///
    /// # Errors
    ///
    /// As [`ScheduleBuilder::create`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use dueq::{Handlers, JobError, ManualClock, Store, Worker};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
    /// let store = Store::builder(dir.path().join("jobs.dueq")).clock(clock.clone()).open()?;
    /// let info = store.every("ping-db", Duration::from_secs(60), "ping", &"db")?;
    /// assert_eq!(info.spec, "every 60s");
    /// assert_eq!(info.next_fire, Some("2026-01-01T00:01:00Z".parse().unwrap()));
    ///
    /// let mut handlers = Handlers::new();
    /// handlers.register("ping", |target: String| -> Result<String, JobError> {
    ///     Ok(format!("{target} ok"))
    /// });
    /// clock.advance(Duration::from_secs(60));
    /// // Any worker of the store fires the due schedule, then runs its job.
    /// let stats = Worker::builder(&store, handlers).threads(1).burst()?;
    /// assert_eq!(stats.succeeded, 1);
    /// let schedule = &store.schedules()?[0];
    /// assert_eq!(schedule.fired, 1);
    /// let job = store.job(schedule.last_job.as_deref().unwrap())?.unwrap();
    /// assert_eq!(job.result::<String>()?.as_deref(), Some("db ok"));
    /// # Ok::<(), dueq::Error>(())
    /// ```
    pub fn every<A: Serialize + ?Sized>(
        &self,
        name: &str,
        interval: Duration,
        handler: &str,
        args: &A,
    ) -> Result<ScheduleInfo> {
        self.schedule(name, handler, args).every(interval).create()
    }

    /// Every schedule, by name.
    ///
    /// # Errors
    ///
    /// Storage errors; [`Error::Corrupt`] for a damaged schedule record.
    pub fn schedules(&self) -> Result<Vec<ScheduleInfo>> {
        Ok(self
            .engine()
            .schedule_records()?
            .into_iter()
            .map(ScheduleInfo::from)
            .collect())
    }

    /// Pauses a schedule: it does not fire until resumed.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchSchedule`]; storage errors.
    pub fn pause_schedule(&self, name: &str) -> Result<ScheduleInfo> {
        let r = self.engine().update_schedule(name, |s| s.paused = true)?;
        self.flush()?;
        Ok(r.into())
    }

    /// Resumes a paused schedule. Instants passed while it was paused are
    /// skipped: it next fires at the first instant after now.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchSchedule`]; [`Error::InvalidCron`]; storage errors.
    pub fn resume_schedule(&self, name: &str) -> Result<ScheduleInfo> {
        let Some(record) = self.engine().schedule_record(name)? else {
            return Err(Error::NoSuchSchedule {
                name: name.to_owned(),
            });
        };
        let next = next_after(&record.spec, self.now_ms())?;
        let r = self.engine().update_schedule(name, |s| {
            if s.paused {
                s.paused = false;
                s.next_fire = next;
            }
        })?;
        self.flush()?;
        Ok(r.into())
    }

    /// Removes a schedule. Jobs it already enqueued stay.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchSchedule`]; storage errors.
    pub fn remove_schedule(&self, name: &str) -> Result<()> {
        if !self.engine().remove_schedule(name)? {
            return Err(Error::NoSuchSchedule {
                name: name.to_owned(),
            });
        }
        self.flush()
    }

    /// Fires the schedules due now (the worker calls this).
    pub(crate) fn fire_schedules(&self) -> Result<usize> {
        let n = self.engine().fire_schedules(self.now_ms(), next_after)?;
        if n > 0 {
            self.commit()?;
        }
        Ok(n)
    }
}
