//! `Queue`: enqueueing, with rq's options, and the queue's registries.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::{dur_ms, to_ms};
use crate::engine::{encode_json, Callbacks, Class, Limit, NewJob};
use crate::error::{Error, Result};
use crate::{Job, Repeat, Retry, Store};

/// rq's default `result_ttl`: finished jobs are kept 500 seconds.
pub const DEFAULT_RESULT_TTL: Duration = Duration::from_secs(500);
/// rq's default `failure_ttl`: failed jobs are kept a year.
pub const DEFAULT_FAILURE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// rq's default `job_timeout`: a run may take 180 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);

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
    /// Set for a synchronous queue ([`Queue::sync`]).
    sync: Option<Arc<crate::Handlers>>,
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
            sync: None,
        }
    }

    /// This queue in synchronous mode, for tests (rq's `is_async=False`):
    /// `enqueue` stores the job, then runs it at once on the calling
    /// thread with `handlers`, before returning. Statuses, results, history
    /// and callbacks are as with a worker; a failure is final (no retries,
    /// as in rq). Jobs it queues by finishing (its dependents on this
    /// queue) run inline too. Jobs due later, and deferred jobs, are stored
    /// and left to workers. A `job_timeout` is reported through
    /// [`Context::should_stop`](crate::Context::should_stop) but not
    /// enforced (no other thread watches the run).
    ///
    /// # Examples
    ///
    /// ```
    /// use dueq::{Handlers, JobError, Status};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = dueq::Store::open(dir.path().join("jobs.dueq"))?;
    /// let mut handlers = Handlers::new();
    /// handlers.register("add", |(a, b): (i32, i32)| -> Result<i32, JobError> { Ok(a + b) });
    /// let q = store.queue("default").sync(handlers);
    /// let job = q.enqueue("add", &(2, 3))?;
    /// assert_eq!(job.status()?, Status::Finished);
    /// assert_eq!(job.result::<i32>()?, Some(5));
    /// # Ok::<(), dueq::Error>(())
    /// ```
    pub fn sync(mut self, handlers: crate::Handlers) -> Queue {
        self.sync = Some(Arc::new(handlers));
        self
    }

    /// Runs `ids` inline (synchronous mode), then the dependents on this
    /// queue that their finishing queued.
    fn run_inline(&self, handlers: &crate::Handlers, ids: Vec<String>) -> Result<()> {
        let runner = crate::worker::Runner {
            store: &self.store,
            handlers,
            lease: crate::worker::DEFAULT_LEASE,
            callback_timeout: crate::worker::DEFAULT_CALLBACK_TIMEOUT,
        };
        let engine = self.store.engine();
        let mut work: std::collections::VecDeque<String> = ids.into();
        while let Some(id) = work.pop_front() {
            let now = self.store.now_ms();
            let lease = crate::clock::dur_ms(runner.lease);
            let Some(claimed) = engine.claim_one(&id, &self.name, lease, now)? else {
                continue;
            };
            // Journaled like a worker's run, so a crash mid-run counts it
            // as an attempt at the next open.
            engine.journal_start(&claimed)?;
            let state = Arc::new(crate::handlers::RunState::new());
            let outcome = crate::worker::execute(&runner, &claimed, &state);
            let done = crate::engine::Done {
                id: claimed.id.clone(),
                token: claimed.token,
                outcome,
                ended_at: self.store.now_ms(),
                thread: std::thread::current().name().map(str::to_owned),
                final_attempt: true,
            };
            work.extend(engine.finish_inline(&done)?);
        }
        self.store.commit()
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
            timeout: DEFAULT_TIMEOUT,
            ttl: None,
            at_front: false,
            meta: Ok(serde_json::Map::new()),
            unique: false,
            depends_on: Vec::new(),
            callbacks: Callbacks::default(),
            repeat: None,
            limit: None,
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
        let span = tracing::info_span!("dueq.enqueue", queue = %self.name, jobs = new.len());
        let _entered = span.enter();
        let ids = self.store.engine().enqueue(new, now)?;
        self.store.commit()?;
        for id in &ids {
            tracing::debug!(job_id = %id, "dueq: enqueued");
        }
        if let Some(handlers) = &self.sync {
            // Only this queue's jobs run inline: a builder made from another
            // queue keeps that queue.
            self.run_inline(handlers, ids.clone())?;
        }
        Ok(ids
            .into_iter()
            .map(|id| Job::new(self.store.clone(), id))
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

    /// Canceled jobs: canceled by a caller ([`Job::cancel`]), because a job
    /// they depend on did not finish, or because their `ttl` ran out.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use dueq::{Error, Status};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = dueq::Store::open(dir.path().join("jobs.dueq"))?;
    /// let q = store.queue("default");
    /// let job = q.enqueue_in(Duration::from_secs(3600), "report", &())?;
    /// job.cancel()?; // queued, scheduled or deferred jobs only
    /// assert_eq!(job.status()?, Status::Canceled);
    /// assert_eq!(q.canceled().job_ids()?, [job.id()]);
    /// assert!(matches!(job.cancel(), Err(Error::InvalidState { .. })));
    /// # Ok::<(), dueq::Error>(())
    /// ```
    pub fn canceled(&self) -> Registry {
        self.registry(RegistryKind::Canceled)
    }

    /// Jobs waiting for the jobs they depend on.
    pub fn deferred(&self) -> Registry {
        self.registry(RegistryKind::Deferred)
    }

    /// Jobs stopped while running ([`Job::stop`]), kept for their
    /// `failure_ttl`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use dueq::{Handlers, JobError, Retry, Status, Worker};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = dueq::Store::open(dir.path().join("jobs.dueq"))?;
    /// let (started_tx, started) = std::sync::mpsc::channel();
    /// let mut handlers = Handlers::new();
    /// handlers.register_with_context("crawl", move |ctx, _: ()| -> Result<(), JobError> {
    ///     started_tx.send(()).unwrap();
    ///     loop {
    ///         ctx.check()?; // an error once job.stop() is called
    ///         std::thread::sleep(Duration::from_millis(1)); // a page of work
    ///     }
    /// });
    /// handlers.callback("stopped", |cb: &dueq::Callback| -> Result<(), JobError> {
    ///     cb.context().set_meta("stopped_in_attempt", &cb.attempt())?;
    ///     Ok(())
    /// });
    /// let worker = Worker::builder(&store, handlers).threads(1).start()?;
    /// let q = store.queue("default");
    /// let job = q
    ///     .job("crawl", &())
    ///     .retry(Retry::max(3))
    ///     .on_stopped("stopped")
    ///     .enqueue()?;
    /// started.recv_timeout(Duration::from_secs(10)).unwrap();
    /// job.stop()?; // rq's send_stop_job_command
    /// assert_eq!(job.wait(Duration::from_secs(10))?, Status::Stopped);
    /// assert_eq!(job.info()?.attempts, 1, "a stopped job is never retried");
    /// assert_eq!(q.stopped().job_ids()?, [job.id()]);
    /// let meta: serde_json::Value = job.meta()?;
    /// assert_eq!(meta["stopped_in_attempt"], 1);
    /// worker.shutdown(Duration::from_secs(10))?;
    /// # Ok::<(), dueq::Error>(())
    /// ```
    pub fn stopped(&self) -> Registry {
        self.registry(RegistryKind::Stopped)
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
    timeout: Duration,
    ttl: Option<Duration>,
    at_front: bool,
    meta: Result<serde_json::Map<String, serde_json::Value>>,
    unique: bool,
    depends_on: Vec<Dependency>,
    callbacks: Callbacks,
    repeat: Option<Repeat>,
    limit: Option<(String, u32)>,
}

/// A job another job waits for: rq's `Dependency(jobs, allow_failure)`.
/// Made from a [`Job`], a job id, or with [`Dependency::on`].
///
/// By default the dependent runs only if the parent finishes; if the parent
/// fails for good, is stopped, canceled or deleted, the dependent is
/// canceled with a reason naming the parent (rq leaves it deferred
/// forever). [`Dependency::allow_failure`] runs it either way.
///
/// # Examples
///
/// ```
/// use dueq::{Dependency, Handlers, JobError, Status, Worker};
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = dueq::Store::open(dir.path().join("jobs.dueq"))?;
/// let q = store.queue("default");
/// let fetch = q.enqueue("fetch", &"https://example.com")?;
/// let parse = q.job("parse", &()).depends_on(&fetch).enqueue()?;
/// let cleanup = q
///     .job("cleanup", &())
///     .depends_on(Dependency::on(fetch.id()).allow_failure())
///     .enqueue()?;
/// assert_eq!(cleanup.status()?, Status::Deferred);
///
/// let mut handlers = Handlers::new();
/// handlers.register("fetch", |_: String| -> Result<(), JobError> {
///     Err(JobError::new("offline"))
/// });
/// handlers.register("parse", |_: ()| -> Result<(), JobError> { Ok(()) });
/// handlers.register("cleanup", |_: ()| -> Result<(), JobError> { Ok(()) });
/// Worker::builder(&store, handlers).threads(1).burst()?;
/// assert_eq!(fetch.status()?, Status::Failed);
/// assert_eq!(parse.status()?, Status::Canceled);
/// assert!(parse.error()?.unwrap().contains(fetch.id()), "the reason names the parent");
/// assert_eq!(cleanup.status()?, Status::Finished);
/// # Ok::<(), dueq::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    id: String,
    allow_failure: bool,
}

impl Dependency {
    /// A dependency on the job with id `id` (a [`Job`] converts too).
    pub fn on(id: impl Into<String>) -> Dependency {
        Dependency {
            id: id.into(),
            allow_failure: false,
        }
    }

    /// Runs the dependent even if this parent fails, is stopped, canceled or
    /// deleted.
    pub fn allow_failure(mut self) -> Dependency {
        self.allow_failure = true;
        self
    }
}

impl From<&Job> for Dependency {
    fn from(job: &Job) -> Dependency {
        Dependency::on(job.id())
    }
}

impl From<Job> for Dependency {
    fn from(job: Job) -> Dependency {
        Dependency::on(job.id())
    }
}

impl From<&str> for Dependency {
    fn from(id: &str) -> Dependency {
        Dependency::on(id)
    }
}

impl From<String> for Dependency {
    fn from(id: String) -> Dependency {
        Dependency::on(id)
    }
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
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = dueq::Store::open(dir.path().join("jobs.dueq"))?;
    /// let job = store
    ///     .queue("default")
    ///     .job("report", &2026)
    ///     .description("the 2026 sales report")
    ///     .enqueue()?;
    /// assert_eq!(job.info()?.description.as_deref(), Some("the 2026 sales report"));
    /// # Ok::<(), dueq::Error>(())
    /// ```
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
    /// (rq's). `Duration::ZERO` deletes the job as soon as it finishes
    /// (rq's `result_ttl=0`); `Duration::MAX` keeps it forever (rq's
    /// `result_ttl=-1`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use dueq::{Handlers, JobError, Status};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = dueq::Store::open(dir.path().join("jobs.dueq"))?;
    /// let mut handlers = Handlers::new();
    /// handlers.register("add", |(a, b): (i32, i32)| -> Result<i32, JobError> { Ok(a + b) });
    /// let q = store.queue("default").sync(handlers); // runs each job at enqueue
    /// let kept = q.job("add", &(1, 2)).result_ttl(Duration::MAX).enqueue()?;
    /// let gone = q.job("add", &(3, 4)).result_ttl(Duration::ZERO).enqueue()?;
    /// assert_eq!(kept.status()?, Status::Finished);
    /// assert_eq!(kept.result::<i32>()?, Some(3));
    /// assert!(store.job(gone.id())?.is_none(), "deleted as it finished");
    /// # Ok::<(), dueq::Error>(())
    /// ```
    pub fn result_ttl(mut self, ttl: Duration) -> JobBuilder {
        self.result_ttl = ttl;
        self
    }

    /// How long a failed job and its error are kept. By default a year
    /// (rq's). `Duration::MAX` keeps it forever.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use dueq::{Handlers, JobError, ManualClock, Status, Store, Worker};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
    /// let store = Store::builder(dir.path().join("jobs.dueq")).clock(clock.clone()).open()?;
    /// let mut handlers = Handlers::new();
    /// handlers.register("sync_crm", |_: ()| -> Result<(), JobError> { Err(JobError::new("503")) });
    /// let q = store.queue("default").sync(handlers); // runs (and fails) the job at enqueue
    /// let job = q.job("sync_crm", &()).failure_ttl(Duration::from_secs(3600)).enqueue()?;
    /// assert_eq!(job.status()?, Status::Failed);
    ///
    /// clock.advance(Duration::from_secs(3601));
    /// Worker::builder(&store, Handlers::new()).threads(1).burst()?; // cleans expired jobs
    /// assert!(store.job(job.id())?.is_none());
    /// # Ok::<(), dueq::Error>(())
    /// ```
    pub fn failure_ttl(mut self, ttl: Duration) -> JobBuilder {
        self.failure_ttl = ttl;
        self
    }

    /// How long one run may take (rq's `job_timeout`). By default 180 s
    /// (rq's); `Duration::MAX` for no limit.
    ///
    /// Threads cannot be killed, so the limit is cooperative: at the
    /// deadline the run's [`Context::should_stop`](crate::Context::should_stop)
    /// turns true, the attempt is recorded as failed with a timeout error
    /// (so the retry policy applies, as in rq), a late outcome of the run is
    /// discarded, and the pool starts a replacement thread so its capacity
    /// is kept. A handler that never checks goes on running to its end in
    /// the background: it can be abandoned, not killed.
    pub fn timeout(mut self, timeout: Duration) -> JobBuilder {
        self.timeout = timeout;
        self
    }

    /// How long the job may wait (queued, scheduled or deferred) before it
    /// is discarded (rq's `ttl`): a job still waiting when its ttl runs out
    /// is moved to the canceled registry with an "expired" error, instead of
    /// vanishing as in rq. By default no limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use dueq::{Handlers, ManualClock, Status, Store, Worker};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
    /// let store = Store::builder(dir.path().join("jobs.dueq")).clock(clock.clone()).open()?;
    /// let q = store.queue("default");
    /// let job = q.job("send_digest", &()).ttl(Duration::from_secs(600)).enqueue()?;
    ///
    /// clock.advance(Duration::from_secs(601)); // no worker ran for ten minutes
    /// let stats = Worker::builder(&store, Handlers::new()).threads(1).burst()?;
    /// assert_eq!(stats.expired, 1);
    /// assert_eq!(job.status()?, Status::Canceled);
    /// assert!(job.error()?.unwrap().starts_with("expired"));
    /// assert_eq!(q.canceled().job_ids()?, [job.id()]);
    /// # Ok::<(), dueq::Error>(())
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> JobBuilder {
        self.ttl = Some(ttl);
        self
    }

    /// Queues the job at the head of its queue, before every job already
    /// queued (rq's `at_front`); the latest `at_front` job runs first.
    /// Ignored for a job scheduled for later.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = dueq::Store::open(dir.path().join("jobs.dueq"))?;
    /// let q = store.queue("default");
    /// q.job("work", &1).id("a").enqueue()?;
    /// q.job("work", &2).id("b").enqueue()?;
    /// q.job("work", &3).id("urgent").at_front().enqueue()?;
    /// assert_eq!(q.job_ids()?, ["urgent", "a", "b"]);
    /// # Ok::<(), dueq::Error>(())
    /// ```
    pub fn at_front(mut self) -> JobBuilder {
        self.at_front = true;
        self
    }

    /// Sets `key` of the job's `meta` (rq's `meta`: user data, a JSON
    /// object). A running job updates it with
    /// [`Context::set_meta`](crate::Context::set_meta); read it with
    /// [`Job::meta`].
    ///
    /// # Examples
    ///
    /// ```
    /// use dueq::{Handlers, JobError};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = dueq::Store::open(dir.path().join("jobs.dueq"))?;
    /// let mut handlers = Handlers::new();
    /// handlers.register_with_context("import", |ctx, rows: u32| -> Result<(), JobError> {
    ///     for done in [rows / 2, rows] {
    ///         ctx.set_meta("progress", &done)?; // durable; "owner" is left as it is
    ///     }
    ///     Ok(())
    /// });
    /// let q = store.queue("default").sync(handlers); // runs the job at enqueue
    /// let job = q.job("import", &10).meta("owner", &"ana").enqueue()?;
    /// let meta: serde_json::Value = job.meta()?;
    /// assert_eq!(meta, serde_json::json!({"owner": "ana", "progress": 10}));
    /// # Ok::<(), dueq::Error>(())
    /// ```
    pub fn meta<V: Serialize + ?Sized>(mut self, key: &str, value: &V) -> JobBuilder {
        if let Ok(meta) = &mut self.meta {
            match serde_json::to_value(value) {
                Ok(v) => {
                    meta.insert(key.to_owned(), v);
                }
                Err(e) => {
                    self.meta = Err(Error::Encode {
                        what: "meta",
                        detail: e.to_string(),
                    })
                }
            }
        }
        self
    }

    /// rq's `unique=True`: requires [`JobBuilder::id`]. dueq never replaces
    /// a job, so an enqueue (also `enqueue_in`, `enqueue_at` and within
    /// [`Queue::enqueue_many`]) with an id that exists always fails with
    /// [`Error::DuplicateJobId`], atomically; `unique` adds the check that
    /// an id was given.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use dueq::Error;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = dueq::Store::open(dir.path().join("jobs.dueq"))?;
    /// let q = store.queue("default");
    /// q.job("report", &2026).id("report-2026").unique().enqueue()?;
    /// let again = q
    ///     .job("report", &2026)
    ///     .id("report-2026")
    ///     .unique()
    ///     .enqueue_in(Duration::from_secs(60));
    /// assert!(matches!(again, Err(Error::DuplicateJobId { .. })));
    /// let no_id = q.job("report", &2026).unique().enqueue();
    /// assert!(matches!(no_id, Err(Error::InvalidArgument { what: "unique", .. })));
    /// assert_eq!((q.count()?, q.scheduled().count()?), (1, 0));
    /// # Ok::<(), dueq::Error>(())
    /// ```
    pub fn unique(mut self) -> JobBuilder {
        self.unique = true;
        self
    }

    /// Runs the job only after `parent` finishes (rq's `depends_on`); call
    /// again for several parents. Until then the job is
    /// [`Deferred`](crate::Status::Deferred). See [`Dependency`] for what
    /// happens when a parent fails.
    pub fn depends_on(mut self, parent: impl Into<Dependency>) -> JobBuilder {
        self.depends_on.push(parent.into());
        self
    }

    /// The callback (registered with
    /// [`Handlers::callback`](crate::Handlers::callback)) to run after a
    /// successful run (rq's `on_success`). As in rq, a success callback
    /// that fails fails the attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use dueq::{Callback, Handlers, JobError};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = dueq::Store::open(dir.path().join("jobs.dueq"))?;
    /// let mut handlers = Handlers::new();
    /// handlers.register("add", |(a, b): (i32, i32)| -> Result<i32, JobError> { Ok(a + b) });
    /// handlers.callback("notify", |cb: &Callback| -> Result<(), JobError> {
    ///     let sum: Option<i32> = cb.result()?;
    ///     cb.context().set_meta("notified_sum", &sum)?;
    ///     Ok(())
    /// });
    /// let q = store.queue("default").sync(handlers); // runs the job at enqueue
    /// let job = q.job("add", &(2, 3)).on_success("notify").enqueue()?;
    /// let meta: serde_json::Value = job.meta()?;
    /// assert_eq!(meta["notified_sum"], 5);
    /// # Ok::<(), dueq::Error>(())
    /// ```
    pub fn on_success(mut self, callback: &str) -> JobBuilder {
        self.callbacks.on_success = Some(callback.to_owned());
        self
    }

    /// The callback to run after every failed attempt (rq's `on_failure`).
    pub fn on_failure(mut self, callback: &str) -> JobBuilder {
        self.callbacks.on_failure = Some(callback.to_owned());
        self
    }

    /// The callback to run when the job is stopped (rq's `on_stopped`).
    pub fn on_stopped(mut self, callback: &str) -> JobBuilder {
        self.callbacks.on_stopped = Some(callback.to_owned());
        self
    }

    /// Runs the job again after each success (rq's `repeat`), under the
    /// same id; see [`Repeat`] for the waits between runs.
    ///
    /// # Examples
    ///
    /// ```
    /// use dueq::{Handlers, JobError, Repeat, Status, Worker};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = dueq::Store::open(dir.path().join("jobs.dueq"))?;
    /// let mut handlers = Handlers::new();
    /// handlers.register_with_context("poll", |ctx, _: ()| -> Result<u32, JobError> {
    ///     Ok(ctx.attempt())
    /// });
    /// let job = store
    ///     .queue("default")
    ///     .job("poll", &())
    ///     .repeat(Repeat::times(2)) // no interval: queued again at once
    ///     .enqueue()?;
    /// let stats = Worker::builder(&store, handlers).threads(1).burst()?;
    /// assert_eq!(stats.succeeded, 3, "the first run and two repeats");
    /// let info = job.info()?;
    /// assert_eq!((info.status, info.repeats_done), (Status::Finished, 2));
    /// assert_eq!(job.result::<u32>()?, Some(3));
    /// # Ok::<(), dueq::Error>(())
    /// ```
    pub fn repeat(mut self, repeat: Repeat) -> JobBuilder {
        self.repeat = Some(repeat);
        self
    }

    /// At most `max` runs of jobs with this `key` at once in a worker pool;
    /// the others wait in their order. A job's own `max` applies to it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use dueq::{Handlers, JobError, Worker};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = dueq::Store::open(dir.path().join("jobs.dueq"))?;
    /// let (running, peak) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    /// let (r, p) = (running.clone(), peak.clone());
    /// let mut handlers = Handlers::new();
    /// handlers.register("call_api", move |_: u32| -> Result<(), JobError> {
    ///     p.fetch_max(r.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
    ///     r.fetch_sub(1, Ordering::SeqCst);
    ///     Ok(())
    /// });
    /// let q = store.queue("default");
    /// for n in 0..6 {
    ///     q.job("call_api", &n).limit_key("api", 2).enqueue()?;
    /// }
    /// let stats = Worker::builder(&store, handlers).threads(4).burst()?;
    /// assert_eq!(stats.succeeded, 6);
    /// assert!(peak.load(Ordering::SeqCst) <= 2, "never more than 2 at once");
    /// # Ok::<(), dueq::Error>(())
    /// ```
    pub fn limit_key(mut self, key: &str, max: u32) -> JobBuilder {
        self.limit = Some((key.to_owned(), max));
        self
    }

    /// Puts the job in limit group `key` without a limit of its own: the
    /// worker's [`concurrency_limit`](crate::WorkerBuilder::concurrency_limit)
    /// and [`rate_limit`](crate::WorkerBuilder::rate_limit) for `key` apply.
    ///
    /// # Examples
    ///
    /// A job over the rate is not failed: it is scheduled for the next free
    /// slot.
    ///
    /// ```
    /// use std::time::Duration;
    /// use dueq::{Handlers, JobError, ManualClock, Status, Store, Worker};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
    /// let store = Store::builder(dir.path().join("jobs.dueq")).clock(clock.clone()).open()?;
    /// let q = store.queue("default");
    /// let mails = (0..3)
    ///     .map(|n| q.job("send", &n).limit_group("smtp").enqueue())
    ///     .collect::<dueq::Result<Vec<_>>>()?;
    /// let mut handlers = Handlers::new();
    /// handlers.register("send", |_: u32| -> Result<(), JobError> { Ok(()) });
    /// let worker = || {
    ///     Worker::builder(&store, handlers.clone())
    ///         .concurrency_limit("smtp", 1) // one at a time
    ///         .rate_limit("smtp", 2, Duration::from_secs(60)) // two starts a minute
    /// };
    /// assert_eq!(worker().burst()?.succeeded, 2);
    /// assert_eq!(mails[2].status()?, Status::Scheduled);
    /// clock.advance(Duration::from_secs(60));
    /// assert_eq!(worker().burst()?.succeeded, 1);
    /// assert_eq!(mails[2].status()?, Status::Finished);
    /// # Ok::<(), dueq::Error>(())
    /// ```
    pub fn limit_group(mut self, key: &str) -> JobBuilder {
        self.limit = Some((key.to_owned(), u32::MAX));
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
        if self.unique && self.id.is_none() {
            return Err(Error::InvalidArgument {
                what: "unique",
                reason: "a unique job needs an id: call .id(..) as well (rq's job_id)".into(),
            });
        }
        let auto_id = self.id.is_none();
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
        let limit = match self.limit {
            Some((key, 0)) => {
                return Err(Error::InvalidArgument {
                    what: "limit_key",
                    reason: format!(
                        "the limit of key {key:?} is 0, so no job could ever run; use 1 or more"
                    ),
                })
            }
            Some((key, _)) if key.is_empty() => {
                return Err(Error::InvalidArgument {
                    what: "limit_key",
                    reason: "the key is empty".into(),
                })
            }
            Some((key, max)) => Some(Limit { key, max }),
            None => None,
        };
        let meta = serde_json::to_vec(&self.meta?).map_err(|e| Error::Encode {
            what: "meta",
            detail: e.to_string(),
        })?;
        if meta.len() > self.queue.store.max_payload() {
            return Err(Error::PayloadTooLarge {
                what: "meta",
                size: meta.len(),
                limit: self.queue.store.max_payload(),
            });
        }
        Ok(NewJob {
            id,
            auto_id,
            queue: self.queue.name().to_owned(),
            handler: self.handler,
            args: self.args?,
            description: self.description,
            retry: self.retry,
            result_ttl_ms: ttl_ms(self.result_ttl),
            failure_ttl_ms: ttl_ms(self.failure_ttl),
            due,
            meta,
            timeout_ms: (self.timeout != Duration::MAX).then(|| dur_ms(self.timeout).max(1)),
            ttl_ms: self.ttl.map(ttl_ms),
            at_front: self.at_front,
            depends_on: self
                .depends_on
                .into_iter()
                .map(|d| crate::engine::Dependency {
                    id: d.id,
                    allow_failure: d.allow_failure,
                })
                .collect(),
            callbacks: self.callbacks,
            repeat: self.repeat,
            limit,
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
    Deferred,
    Stopped,
}

/// One of a queue's job registries (rq's `ScheduledJobRegistry`,
/// `StartedJobRegistry`, `FinishedJobRegistry`, `FailedJobRegistry`,
/// `CanceledJobRegistry`, `DeferredJobRegistry`), plus stopped jobs.
///
/// # Examples
///
/// ```
/// use dueq::{Handlers, JobError, Status};
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = dueq::Store::open(dir.path().join("jobs.dueq"))?;
/// let mut handlers = Handlers::new();
/// handlers.register("charge", |_: u32| -> Result<(), JobError> {
///     Err(JobError::new("card declined"))
/// });
/// let q = store.queue("billing").sync(handlers); // each job fails at enqueue
/// let jobs = (0..5)
///     .map(|n| q.enqueue("charge", &n))
///     .collect::<dueq::Result<Vec<_>>>()?;
///
/// let failed = q.failed();
/// assert_eq!(failed.count()?, 5);
/// assert_eq!(failed.job_ids_page(0, 2)?.len(), 2); // rq's get_job_ids(0, 1)
/// assert_eq!(failed.job_ids_page(4, 2)?.len(), 1);
/// failed.remove(jobs[0].id())?; // deletes the job
/// assert!(store.job(jobs[0].id())?.is_none());
/// failed.requeue(jobs[1].id())?; // back to its queue, due now
/// assert_eq!(jobs[1].status()?, Status::Queued);
/// assert_eq!(failed.requeue_all()?, 3);
/// assert_eq!((failed.count()?, q.count()?), (0, 4));
/// assert!(q.scheduled().requeue(jobs[1].id()).is_err(), "only the failed registry requeues");
/// # Ok::<(), dueq::Error>(())
/// ```
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
            RegistryKind::Deferred => (Class::Deferred, 0, u64::MAX),
            RegistryKind::Stopped => (Class::Stopped, 0, u64::MAX),
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

    /// Removes a job of this registry from the store (rq's
    /// `registry.remove(job, delete_job=True)`: a dueq job is in exactly one
    /// registry, so removing it deletes it). Jobs that depend on a job that
    /// had not finished are canceled, unless they allow failure.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchJob`] if no job of this queue with this id is in this
    /// registry; storage errors.
    pub fn remove(&self, id: &str) -> Result<()> {
        let store = &self.queue.store;
        let Some(queue) = store.engine().queue_id(self.queue.name()) else {
            return Err(Error::NoSuchJob { id: id.to_owned() });
        };
        let (class, lo, hi) = self.range();
        let here = store.engine().get(id)?.is_some_and(|r| {
            let key = r.index_key();
            key.queue == queue && key.class == class && key.time >= lo && key.time <= hi
        });
        if !here {
            return Err(Error::NoSuchJob { id: id.to_owned() });
        }
        store.delete(id)
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
