//! `Job`: a handle on one job, and what can be read about it.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use crate::clock::from_ms;
use crate::engine::{decode_json, AttemptLog, JobRecord};
use crate::error::{Error, Result};
use crate::{Repeat, Retry, Store};

/// Where a job is in its life, with python-rq's names and meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Status {
    /// Waiting in its queue, due now.
    Queued,
    /// Waiting for a time: enqueued for later, or waiting out a retry
    /// backoff. It becomes `Queued` when that time comes.
    Scheduled,
    /// A worker is running it.
    Started,
    /// It ran successfully; its result is kept for its `result_ttl`.
    Finished,
    /// Its last attempt failed and no retries are left; kept for its
    /// `failure_ttl`.
    Failed,
    /// It was canceled before it ran (by `cancel`, because a job it
    /// depends on failed or was canceled, or because its `ttl` ran out).
    Canceled,
    /// Waiting for the jobs it depends on to finish.
    Deferred,
    /// It was stopped while running ([`Job::stop`]); never retried.
    Stopped,
}

impl Status {
    /// Whether the job will not change by itself any more (finished, failed,
    /// canceled or stopped).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Finished | Status::Failed | Status::Canceled | Status::Stopped
        )
    }

    /// rq's name for the status: `"queued"`, `"scheduled"`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Scheduled => "scheduled",
            Status::Started => "started",
            Status::Finished => "finished",
            Status::Failed => "failed",
            Status::Canceled => "canceled",
            Status::Deferred => "deferred",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A handle on a job in a store: rq's `Job`. Cheap to clone; every method
/// reads the store's current state.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let store = dueq::Store::open(dir.path().join("jobs.dueq"))?;
/// let job = store.queue("default").enqueue("add", &(1, 2))?;
/// assert_eq!(job.status()?, dueq::Status::Queued);
/// assert_eq!(store.job(job.id())?.unwrap().info()?.handler, "add");
/// # Ok::<(), dueq::Error>(())
/// ```
#[derive(Clone)]
pub struct Job {
    store: Store,
    id: String,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("id", &self.id).finish()
    }
}

impl Job {
    pub(crate) fn new(store: Store, id: String) -> Job {
        Job { store, id }
    }

    /// The job's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn record(&self) -> Result<JobRecord> {
        self.store
            .engine()
            .get(&self.id)?
            .ok_or_else(|| Error::NoSuchJob {
                id: self.id.clone(),
            })
    }

    /// The job's current status.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchJob`] if the job was deleted or expired (a job with
    /// `result_ttl` zero is deleted as soon as it finishes).
    pub fn status(&self) -> Result<Status> {
        let record = self.record()?;
        Ok(self.store.status_of(&record))
    }

    /// A snapshot of everything known about the job.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchJob`] if the job was deleted or expired.
    pub fn info(&self) -> Result<JobInfo> {
        let record = self.record()?;
        Ok(JobInfo::from_record(&self.store, record))
    }

    /// The value the handler returned, decoded as `T`; `None` until the
    /// job has finished.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if the stored result does not decode as `T`;
    /// [`Error::NoSuchJob`] if the job was deleted or expired.
    pub fn result<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        let record = self.record()?;
        match &record.result {
            Some(bytes) => decode_json(bytes, format!("the result of job {:?}", self.id)).map(Some),
            None => Ok(None),
        }
    }

    /// The error of the last failed attempt, if any attempt failed.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchJob`] if the job was deleted or expired.
    pub fn error(&self) -> Result<Option<String>> {
        Ok(self.record()?.error)
    }

    /// Waits until the job is finished, failed, canceled or stopped, or until
    /// `timeout` passes, and returns its status then. Retries are waited
    /// for: a job that fails and is retried is not final.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchJob`] if the job was deleted or expired meanwhile
    /// (with `result_ttl` zero, as soon as it finishes).
    pub fn wait(&self, timeout: Duration) -> Result<Status> {
        let deadline = Instant::now().checked_add(timeout);
        let signal = self.store.engine().signal.clone();
        loop {
            let seen = signal.generation();
            let status = self.status()?;
            if status.is_final() {
                return Ok(status);
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(status),
                },
                None => None,
            };
            signal.wait(seen, left);
        }
    }

    /// The job's `meta` (user data, a JSON object), decoded as `T` (for
    /// example `serde_json::Map<String, serde_json::Value>`, or a struct of
    /// your own).
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if it does not decode as `T`; [`Error::NoSuchJob`].
    pub fn meta<T: DeserializeOwned>(&self) -> Result<T> {
        let record = self.record()?;
        decode_json(&record.meta, format!("the meta of job {:?}", self.id))
    }

    /// Asks a running job to stop (rq's `send_stop_job_command`): its
    /// run's [`Context::should_stop`](crate::Context::should_stop) turns
    /// true. Unless the run then succeeds anyway, the job ends
    /// [`Stopped`](Status::Stopped), is never retried, and its `on_stopped`
    /// callback runs. Its dependents are canceled (unless they allow
    /// failure). A run that never checks cannot be stopped early.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] unless the job is started (cancel a waiting
    /// job with [`Job::cancel`]); [`Error::NoSuchJob`]; storage errors.
    pub fn stop(&self) -> Result<()> {
        self.store.stop(&self.id)
    }

    /// Cancels a queued, scheduled or deferred job: it moves to the
    /// canceled registry and will not run. Jobs that depend on it are
    /// canceled too, unless they allow failure.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if the job is running or already final;
    /// [`Error::NoSuchJob`]; storage errors.
    pub fn cancel(&self) -> Result<()> {
        self.store.cancel(&self.id)
    }

    /// Puts a failed job back in its queue, due now. As in rq, its attempts
    /// are not reset: if its retry policy is used up, one more failure fails
    /// it again.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] unless the job is failed; [`Error::NoSuchJob`];
    /// storage errors.
    pub fn requeue(&self) -> Result<()> {
        self.store.requeue(&self.id)
    }

    /// Deletes the job, whatever its state. A running job's run goes on,
    /// but its outcome is discarded.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchJob`]; storage errors.
    pub fn delete(&self) -> Result<()> {
        self.store.delete(&self.id)
    }
}

/// A snapshot of a job: its definition, state and attempts.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobInfo {
    /// The job's id.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// The handler name it calls.
    pub handler: String,
    /// Its arguments, as JSON text.
    pub args_json: String,
    /// Its description, if one was set.
    pub description: Option<String>,
    /// Its status.
    pub status: Status,
    /// Runs started so far (including abandoned ones).
    pub attempts: u32,
    /// Its retry policy.
    pub retry: Option<Retry>,
    /// When it was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// When it is due, if it is queued or scheduled.
    pub due_at: Option<DateTime<Utc>>,
    /// When its last run started.
    pub started_at: Option<DateTime<Utc>>,
    /// When its last run ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// The last failed attempt's error.
    pub error: Option<String>,
    /// The result, as JSON text, once finished.
    pub result_json: Option<String>,
    /// The last ten attempts, oldest first: the result history.
    pub attempts_log: Vec<Attempt>,
    /// Its `meta`, as JSON text (an object).
    pub meta_json: String,
    /// How long one run may take; `None`: no limit.
    pub timeout: Option<Duration>,
    /// When it is discarded if it has not started by then (its `ttl`).
    pub expires_at: Option<DateTime<Utc>>,
    /// The parents it still waits for, if it is deferred.
    pub waiting_on: Vec<String>,
    /// The parents in `waiting_on` named with
    /// [`Dependency::allow_failure`](crate::Dependency::allow_failure): the
    /// job runs after them even if they fail, are stopped, canceled or
    /// deleted. The others cancel it if they do.
    pub waiting_on_allow_failure: Vec<String>,
    /// The jobs that depend on it.
    pub dependents: Vec<String>,
    /// Its repeat policy ([`JobBuilder::repeat`](crate::JobBuilder::repeat)):
    /// [`Repeat::count`] repeats, [`Repeat::wait`] before each.
    pub repeat: Option<Repeat>,
    /// Repeats done so far, if it repeats.
    pub repeats_done: u32,
    /// Whether `stop` was called on its current run.
    pub stop_requested: bool,
    /// The callback run after a successful run
    /// ([`JobBuilder::on_success`](crate::JobBuilder::on_success)).
    pub on_success: Option<String>,
    /// The callback run after each failed attempt
    /// ([`JobBuilder::on_failure`](crate::JobBuilder::on_failure)).
    pub on_failure: Option<String>,
    /// The callback run when it is stopped
    /// ([`JobBuilder::on_stopped`](crate::JobBuilder::on_stopped)).
    pub on_stopped: Option<String>,
    /// Its concurrency limit key, set by
    /// [`JobBuilder::limit_key`](crate::JobBuilder::limit_key) or
    /// [`JobBuilder::limit_group`](crate::JobBuilder::limit_group).
    pub limit_key: Option<String>,
    /// The job's own limit: at most this many runs with `limit_key` at once
    /// (a worker's lower `concurrency_limit` for the key wins). `None`
    /// without a key, or for a job in a limit group without a limit of its
    /// own: the worker's limits for the key apply.
    pub limit_max: Option<u32>,
    /// How long it is kept once finished (its `result_ttl`); zero: deleted
    /// as it finishes; `None`: kept forever.
    pub result_ttl: Option<Duration>,
    /// How long it is kept once failed or stopped (its `failure_ttl`);
    /// `None`: kept forever.
    pub failure_ttl: Option<Duration>,
    /// Whether it was enqueued at the head of its queue
    /// ([`JobBuilder::at_front`](crate::JobBuilder::at_front)).
    pub at_front: bool,
}

/// One finished attempt of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// 1 for the first run.
    pub number: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: DateTime<Utc>,
    /// Its error, or `None` if it succeeded.
    pub error: Option<String>,
    /// When the job was set to run again after it, if it was retried.
    pub retry_at: Option<DateTime<Utc>>,
    /// The worker thread that ran it.
    pub thread: Option<String>,
    /// The value it returned, as JSON text, if it succeeded.
    pub result_json: Option<String>,
}

impl From<&AttemptLog> for Attempt {
    fn from(log: &AttemptLog) -> Attempt {
        Attempt {
            number: log.attempt,
            started_at: from_ms(log.started_at),
            ended_at: from_ms(log.ended_at),
            error: log.error.clone(),
            retry_at: log.retry_at.map(from_ms),
            thread: log.thread.clone(),
            result_json: log
                .result
                .as_ref()
                .map(|r| String::from_utf8_lossy(r).into_owned()),
        }
    }
}

impl JobInfo {
    pub(crate) fn from_record(store: &Store, record: JobRecord) -> JobInfo {
        let status = store.status_of(&record);
        let key = record.index_key();
        JobInfo {
            status,
            due_at: matches!(status, Status::Queued | Status::Scheduled)
                .then(|| from_ms(if key.time == 0 { record.due } else { key.time })),
            args_json: String::from_utf8_lossy(&record.args).into_owned(),
            result_json: record
                .result
                .as_ref()
                .map(|r| String::from_utf8_lossy(r).into_owned()),
            attempts_log: record.history.iter().map(Attempt::from).collect(),
            meta_json: String::from_utf8_lossy(&record.meta).into_owned(),
            timeout: record.timeout_ms.map(Duration::from_millis),
            expires_at: record.expires_at.map(from_ms),
            waiting_on: record.waiting_on.iter().map(|d| d.id.clone()).collect(),
            waiting_on_allow_failure: record
                .waiting_on
                .iter()
                .filter(|d| d.allow_failure)
                .map(|d| d.id.clone())
                .collect(),
            dependents: record.dependents.clone(),
            repeat: record.repeat,
            repeats_done: record.repeats_done,
            stop_requested: record.stop_requested,
            on_success: record.callbacks.on_success,
            on_failure: record.callbacks.on_failure,
            on_stopped: record.callbacks.on_stopped,
            limit_max: record
                .limit
                .as_ref()
                .map(|l| l.max)
                .filter(|&max| max != u32::MAX),
            limit_key: record.limit.map(|l| l.key),
            result_ttl: kept_for(record.result_ttl_ms),
            failure_ttl: kept_for(record.failure_ttl_ms),
            at_front: record.at_front,
            enqueued_at: from_ms(record.enqueued_at),
            started_at: record.started_at.map(from_ms),
            ended_at: record.ended_at.map(from_ms),
            id: record.id,
            queue: record.queue,
            handler: record.handler,
            description: record.description,
            attempts: record.attempts,
            retry: record.retry,
            error: record.error,
        }
    }
}

/// A stored `result_ttl`/`failure_ttl`, where `u64::MAX` means forever.
fn kept_for(ttl_ms: u64) -> Option<Duration> {
    (ttl_ms != u64::MAX).then(|| Duration::from_millis(ttl_ms))
}
