//! `Queue`: enqueueing, with rq's options, and the queue's registries.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::{dur_ms, to_ms};
use crate::engine::{encode_json, Class, NewJob};
use crate::error::{Error, Result};
use crate::{Job, Retry, Store};

/// rq's default `result_ttl`: finished jobs are kept 500 seconds.
pub const DEFAULT_RESULT_TTL: Duration = Duration::from_secs(500);
/// rq's default `failure_ttl`: failed jobs are kept a year.
pub const DEFAULT_FAILURE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

const MAX_ID_LEN: usize = 128;
const MAX_QUEUE_NAME_LEN: usize = 200;

/// A named queue in a store: rq's `Queue`. Cheap to clone.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use dueq::{Retry, Store};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path().join("jobs.dueq"))?;
/// let q = store.queue("default");
/// q.enqueue("count_words", &"https://example.com")?;
/// q.enqueue_in(Duration::from_secs(60), "count_words", &"https://example.org")?;
/// q.job("report", &2026)
///     .id("report-2026-12")
///     .retry(Retry::max(3).intervals([10, 30, 60]))
///     .enqueue()?;
/// assert_eq!(q.count()?, 2);
/// assert_eq!(q.scheduled().count()?, 1);
/// # Ok::<(), dueq::Error>(())
/// ```
#[derive(Clone)]
pub struct Queue {
    store: Store,
    name: Arc<str>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("name", &self.name).finish()
    }
}

impl Queue {
    pub(crate) fn new(store: Store, name: String) -> Queue {
        Queue {
            store,
            name: name.into(),
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Enqueues a job that calls the handler registered as `handler` with
    /// `args`, due now.
    ///
    /// # Errors
    ///
    /// [`Error::PayloadTooLarge`] or [`Error::Encode`] for arguments that do
    /// not fit or do not encode as JSON; [`Error::InvalidQueueName`];
    /// storage errors. On error nothing was enqueued.
    pub fn enqueue<A: Serialize + ?Sized>(&self, handler: &str, args: &A) -> Result<Job> {
        self.job(handler, args).enqueue()
    }

    /// Enqueues a job due after `delay` (rq's `enqueue_in`). It is
    /// `scheduled` until then.
    ///
    /// # Errors
    ///
    /// As [`Queue::enqueue`].
    pub fn enqueue_in<A: Serialize + ?Sized>(
        &self,
        delay: Duration,
        handler: &str,
        args: &A,
    ) -> Result<Job> {
        self.job(handler, args).enqueue_in(delay)
    }

    /// Enqueues a job due at `at` (rq's `enqueue_at`). A time in the past
    /// means now.
    ///
    /// # Errors
    ///
    /// As [`Queue::enqueue`].
    pub fn enqueue_at<A: Serialize + ?Sized>(
        &self,
        at: DateTime<Utc>,
        handler: &str,
        args: &A,
    ) -> Result<Job> {
        self.job(handler, args).enqueue_at(at)
    }

    /// A job with options (rq's keyword arguments), enqueued by
    /// [`JobBuilder::enqueue`] or passed to [`Queue::enqueue_many`].
    pub fn job<A: Serialize + ?Sized>(&self, handler: &str, args: &A) -> JobBuilder {
        JobBuilder {
            queue: self.clone(),
            handler: handler.to_owned(),
            args: encode_json(args, "arguments", self.store.max_payload()),
            id: None,
            description: None,
            retry: None,
            result_ttl: DEFAULT_RESULT_TTL,
            failure_ttl: DEFAULT_FAILURE_TTL,
            when: When::Now,
        }
    }

    /// Enqueues several jobs in one write: all are enqueued or none is.
    /// The jobs may target other queues than this one (each builder keeps
    /// the queue it was made from).
    ///
    /// # Errors
    ///
    /// The first error any job has (as [`Queue::enqueue`], or
    /// [`Error::DuplicateJobId`]); then nothing was enqueued.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = dueq::Store::open(dir.path().join("jobs.dueq"))?;
    /// let q = store.queue("default");
    /// let jobs = q.enqueue_many((0..100).map(|i| q.job("square", &i)))?;
    /// assert_eq!(jobs.len(), 100);
    /// # Ok::<(), dueq::Error>(())
    /// ```
    pub fn enqueue_many(&self, jobs: impl IntoIterator<Item = JobBuilder>) -> Result<Vec<Job>> {
        let now = self.store.now_ms();
        let new: Vec<NewJob> = jobs
            .into_iter()
            .map(|b| b.into_new_job(now))
            .collect::<Result<_>>()?;
        let records = self.store.engine().enqueue(new, now)?;
        self.store.commit()?;
        Ok(records
            .into_iter()
            .map(|r| Job::new(self.store.clone(), r.id))
            .collect())
    }

    /// Jobs waiting in the queue and due now (rq's `Queue.count`).
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub fn count(&self) -> Result<usize> {
        self.registry(RegistryKind::Queued).count()
    }

    /// The ids of jobs waiting in the queue and due now, in the order they
    /// will run.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub fn job_ids(&self) -> Result<Vec<String>> {
        self.registry(RegistryKind::Queued).job_ids()
    }

    /// A page of [`Queue::job_ids`]: at most `limit` ids after skipping
    /// `offset`.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub fn job_ids_page(&self, offset: usize, limit: usize) -> Result<Vec<String>> {
        self.registry(RegistryKind::Queued)
            .job_ids_page(offset, limit)
    }

    /// Deletes every job waiting in the queue and due now (rq's
    /// `Queue.empty`); scheduled jobs stay. Returns how many were deleted.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub fn empty(&self) -> Result<usize> {
        let Some(queue) = self.store.engine().queue_id(&self.name) else {
            return Ok(0);
        };
        let n = self.store.engine().empty(queue, self.store.now_ms())?;
        self.store.commit()?;
        Ok(n)
    }

    /// Jobs waiting for a time: enqueued for later or waiting out a retry.
    pub fn scheduled(&self) -> Registry {
        self.registry(RegistryKind::Scheduled)
    }

    /// Jobs running now.
    pub fn started(&self) -> Registry {
        self.registry(RegistryKind::Started)
    }

    /// Finished jobs, kept for their `result_ttl`.
    pub fn finished(&self) -> Registry {
        self.registry(RegistryKind::Finished)
    }

    /// Failed jobs, kept for their `failure_ttl`. Requeue from here.
    pub fn failed(&self) -> Registry {
        self.registry(RegistryKind::Failed)
    }

    /// Canceled jobs.
    pub fn canceled(&self) -> Registry {
        self.registry(RegistryKind::Canceled)
    }

    fn registry(&self, kind: RegistryKind) -> Registry {
        Registry {
            queue: self.clone(),
            kind,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum When {
    Now,
    In(Duration),
    At(DateTime<Utc>),
}

/// A job with options, made by [`Queue::job`]: rq's keyword arguments as
/// setters.
#[must_use = "a job builder does nothing until `enqueue` is called or it is passed to `enqueue_many`"]
pub struct JobBuilder {
    queue: Queue,
    handler: String,
    args: Result<Vec<u8>>,
    id: Option<String>,
    description: Option<String>,
    retry: Option<Retry>,
    result_ttl: Duration,
    failure_ttl: Duration,
    when: When,
}

impl std::fmt::Debug for JobBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobBuilder")
            .field("queue", &self.queue.name())
            .field("handler", &self.handler)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl JobBuilder {
    /// The job's id (rq's `job_id`): 1 to 128 characters of `[A-Za-z0-9_-]`.
    /// By default a random UUID. Enqueueing fails with
    /// [`Error::DuplicateJobId`] if a job with this id exists.
    pub fn id(mut self, id: impl Into<String>) -> JobBuilder {
        self.id = Some(id.into());
        self
    }

    /// A description, for people. By default none.
    pub fn description(mut self, description: impl Into<String>) -> JobBuilder {
        self.description = Some(description.into());
        self
    }

    /// The retry policy. By default none: the first failure fails the job.
    pub fn retry(mut self, retry: Retry) -> JobBuilder {
        self.retry = Some(retry);
        self
    }

    /// How long a finished job and its result are kept. By default 500 s
    /// (rq's). `Duration::ZERO` deletes the job as soon as it finishes;
    /// `Duration::MAX` keeps it forever.
    pub fn result_ttl(mut self, ttl: Duration) -> JobBuilder {
        self.result_ttl = ttl;
        self
    }

    /// How long a failed job and its error are kept. By default a year
    /// (rq's). `Duration::MAX` keeps it forever.
    pub fn failure_ttl(mut self, ttl: Duration) -> JobBuilder {
        self.failure_ttl = ttl;
        self
    }

    /// Makes the job due after `delay` instead of now (for
    /// [`Queue::enqueue_many`]; [`JobBuilder::enqueue_in`] is the same plus
    /// enqueueing).
    pub fn delay(mut self, delay: Duration) -> JobBuilder {
        self.when = When::In(delay);
        self
    }

    /// Makes the job due at `at` instead of now (for
    /// [`Queue::enqueue_many`]).
    pub fn at(mut self, at: DateTime<Utc>) -> JobBuilder {
        self.when = When::At(at);
        self
    }

    /// Enqueues the job.
    ///
    /// # Errors
    ///
    /// As [`Queue::enqueue`], plus [`Error::InvalidJobId`] and
    /// [`Error::DuplicateJobId`] for a bad or taken id.
    pub fn enqueue(self) -> Result<Job> {
        let queue = self.queue.clone();
        let mut jobs = queue.enqueue_many([self])?;
        Ok(jobs.remove(0))
    }

    /// Enqueues the job due after `delay`.
    ///
    /// # Errors
    ///
    /// As [`JobBuilder::enqueue`].
    pub fn enqueue_in(self, delay: Duration) -> Result<Job> {
        self.delay(delay).enqueue()
    }

    /// Enqueues the job due at `at`.
    ///
    /// # Errors
    ///
    /// As [`JobBuilder::enqueue`].
    pub fn enqueue_at(self, at: DateTime<Utc>) -> Result<Job> {
        self.at(at).enqueue()
    }

    fn into_new_job(self, now: u64) -> Result<NewJob> {
        validate_queue_name(self.queue.name())?;
        let id = match self.id {
            Some(id) => {
                validate_id(&id)?;
                id
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        let due = match self.when {
            When::Now => now,
            When::In(d) => now.saturating_add(dur_ms(d)),
            When::At(t) => to_ms(t).max(now),
        };
        Ok(NewJob {
            id,
            queue: self.queue.name().to_owned(),
            handler: self.handler,
            args: self.args?,
            description: self.description,
            retry: self.retry,
            result_ttl_ms: ttl_ms(self.result_ttl),
            failure_ttl_ms: ttl_ms(self.failure_ttl),
            due,
        })
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    if ttl == Duration::MAX {
        u64::MAX
    } else {
        dur_ms(ttl).min(u64::MAX - 1)
    }
}

fn validate_id(id: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidJobId {
            id: id.to_owned(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("it is empty");
    }
    if id.len() > MAX_ID_LEN {
        return bad("it is longer than 128 characters");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return bad("only letters, digits, '_' and '-' are allowed");
    }
    Ok(())
}

fn validate_queue_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidQueueName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_QUEUE_NAME_LEN {
        return bad("it is longer than 200 bytes");
    }
    if name.chars().any(char::is_control) {
        return bad("it contains control characters");
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegistryKind {
    Queued,
    Scheduled,
    Started,
    Finished,
    Failed,
    Canceled,
}

/// One of a queue's job registries (rq's `ScheduledJobRegistry`,
/// `StartedJobRegistry`, `FinishedJobRegistry`, `FailedJobRegistry`,
/// `CanceledJobRegistry`).
#[derive(Debug, Clone)]
pub struct Registry {
    queue: Queue,
    kind: RegistryKind,
}

impl Registry {
    /// (class, lowest time, highest time) of the index range this registry is.
    fn range(&self) -> (Class, u64, u64) {
        let now = self.queue.store.now_ms();
        match self.kind {
            RegistryKind::Queued => (Class::Ready, 0, now),
            RegistryKind::Scheduled => (Class::Ready, now.saturating_add(1), u64::MAX),
            RegistryKind::Started => (Class::Started, 0, u64::MAX),
            RegistryKind::Finished => (Class::Finished, 0, u64::MAX),
            RegistryKind::Failed => (Class::Failed, 0, u64::MAX),
            RegistryKind::Canceled => (Class::Canceled, 0, u64::MAX),
        }
    }

    /// How many jobs are in the registry.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub fn count(&self) -> Result<usize> {
        let Some(queue) = self.queue.store.engine().queue_id(self.queue.name()) else {
            return Ok(0);
        };
        let (class, lo, hi) = self.range();
        self.queue.store.engine().count(queue, class, lo, hi)
    }

    /// The ids of the jobs in the registry, in key order (due time for
    /// scheduled jobs, lease expiry for started ones, expiry for finished
    /// and failed ones).
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub fn job_ids(&self) -> Result<Vec<String>> {
        self.job_ids_page(0, usize::MAX)
    }

    /// A page of [`Registry::job_ids`]: at most `limit` ids after skipping
    /// `offset`.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub fn job_ids_page(&self, offset: usize, limit: usize) -> Result<Vec<String>> {
        let Some(queue) = self.queue.store.engine().queue_id(self.queue.name()) else {
            return Ok(Vec::new());
        };
        let (class, lo, hi) = self.range();
        let mut ids =
            self.queue
                .store
                .engine()
                .ids(queue, class, lo, hi, offset.saturating_add(limit))?;
        Ok(ids.split_off(offset.min(ids.len())))
    }

    /// Requeues a failed job of this queue: it goes back to its queue, due
    /// now. As in rq, only the failed registry requeues, and a job's
    /// attempts are not reset.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] on a registry other than
    /// [`Queue::failed`]; [`Error::NoSuchJob`] if no job of this queue has
    /// this id; [`Error::InvalidState`] if the job is not failed; storage
    /// errors.
    pub fn requeue(&self, id: &str) -> Result<()> {
        self.check_requeue()?;
        let store = &self.queue.store;
        let in_queue = store
            .engine()
            .get(id)?
            .is_some_and(|r| r.queue == *self.queue.name);
        if !in_queue {
            return Err(Error::NoSuchJob { id: id.to_owned() });
        }
        store.requeue(id)
    }

    /// Requeues every job of the failed registry (see
    /// [`Registry::requeue`]). Returns how many were requeued. Jobs that
    /// left the registry meanwhile (deleted, say) are skipped.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] on a registry other than
    /// [`Queue::failed`]; storage errors. Jobs requeued before an error stay
    /// requeued, and are durable when the error is returned.
    pub fn requeue_all(&self) -> Result<usize> {
        self.check_requeue()?;
        let store = &self.queue.store;
        let now = store.now_ms();
        let mut requeued = 0;
        let mut result = Ok(());
        for id in self.job_ids()? {
            match store.engine().requeue(&id, now) {
                Ok(()) => requeued += 1,
                Err(Error::NoSuchJob { .. } | Error::InvalidState { .. }) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        store.commit()?;
        result.map(|()| requeued)
    }

    fn check_requeue(&self) -> Result<()> {
        if self.kind == RegistryKind::Failed {
            return Ok(());
        }
        Err(Error::InvalidArgument {
            what: "requeue",
            reason: format!(
                "only the failed registry requeues (rq's rule); this is the {:?} registry of queue {:?}",
                self.kind, self.queue.name
            ),
        })
    }
}
