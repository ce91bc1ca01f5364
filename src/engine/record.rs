//! `JobRecord`: the stored form of a job, one per job id in the `jobs` tree.
//!
//! Record format version 2 (see `codec`). Version 1 records (dueq 0.1's
//! first format) are read through `v1::JobRecord` and upgraded in memory;
//! they are rewritten as version 2 the next time the job changes.

use serde::{Deserialize, Serialize};

use super::keys::{IndexKey, KEY_LEN};
use crate::retry::Retry;

/// How many attempts a record remembers (rq keeps about ten results).
pub(crate) const HISTORY_LEN: usize = 10;

/// Everything dueq knows about one job. `key` is the job's current index key
/// (the reverse entry): invariant `index[key] == id`.
///
/// Field order and types are part of the on-disk format (record version 2);
/// change them only together with a new record version in `codec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct JobRecord {
    pub(crate) id: String,
    pub(crate) queue: String,
    pub(crate) handler: String,
    /// The handler's arguments, JSON.
    pub(crate) args: Vec<u8>,
    pub(crate) description: Option<String>,
    pub(crate) retry: Option<Retry>,
    /// `u64::MAX`: keep forever.
    pub(crate) result_ttl_ms: u64,
    /// `u64::MAX`: keep forever.
    pub(crate) failure_ttl_ms: u64,
    pub(crate) enqueued_at: u64,
    pub(crate) key: [u8; KEY_LEN],
    /// Runs started so far, including abandoned ones.
    pub(crate) attempts: u32,
    /// The lease token of the current (or last) run; 0 before the first.
    pub(crate) token: u64,
    pub(crate) started_at: Option<u64>,
    pub(crate) ended_at: Option<u64>,
    /// The last successful run's return value, JSON.
    pub(crate) result: Option<Vec<u8>>,
    /// The last failed attempt's error.
    pub(crate) error: Option<String>,
    /// The last `HISTORY_LEN` attempts, oldest first.
    pub(crate) history: Vec<AttemptLog>,
    // ---- version 2
    /// User data, a JSON object (rq's `meta`).
    pub(crate) meta: Vec<u8>,
    /// How long one run may take (rq's `job_timeout`); `None`: no limit.
    pub(crate) timeout_ms: Option<u64>,
    /// A job still waiting (queued, scheduled or deferred) at this time is
    /// discarded (rq's `ttl`).
    pub(crate) expires_at: Option<u64>,
    /// When the job is due once its dependencies allow it to run.
    pub(crate) due: u64,
    /// Queue it at the head of its queue (rq's `at_front`).
    pub(crate) at_front: bool,
    /// Parents that have not finished yet (the job is `DEFERRED` while this
    /// is not empty).
    pub(crate) waiting_on: Vec<Dependency>,
    /// Jobs that named this one in `depends_on`, in enqueue order.
    pub(crate) dependents: Vec<String>,
    pub(crate) callbacks: Callbacks,
    pub(crate) repeat: Option<crate::Repeat>,
    /// Repeats done so far (runs after the first success).
    pub(crate) repeats_done: u32,
    /// `attempts` when the current repetition began: retries count from
    /// here, so each repetition gets the whole retry policy.
    pub(crate) attempt_base: u32,
    /// At most `max` runs with this key at once (per worker pool).
    pub(crate) limit: Option<Limit>,
    /// `job.stop()` was called on the current run.
    pub(crate) stop_requested: bool,
}

/// A parent a job waits on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Dependency {
    pub(crate) id: String,
    /// Run the dependent even if this parent fails or is canceled.
    pub(crate) allow_failure: bool,
}

/// Callback names, registered in `Handlers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Callbacks {
    pub(crate) on_success: Option<String>,
    pub(crate) on_failure: Option<String>,
    pub(crate) on_stopped: Option<String>,
}

impl Callbacks {
    pub(crate) fn is_empty(&self) -> bool {
        self.on_success.is_none() && self.on_failure.is_none() && self.on_stopped.is_none()
    }
}

/// A concurrency limit key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Limit {
    pub(crate) key: String,
    pub(crate) max: u32,
}

/// One finished attempt of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AttemptLog {
    pub(crate) attempt: u32,
    pub(crate) started_at: u64,
    pub(crate) ended_at: u64,
    /// `None` for a success.
    pub(crate) error: Option<String>,
    /// When the job was set to run again after this attempt, if it was.
    pub(crate) retry_at: Option<u64>,
    // ---- version 2
    /// The worker thread that ran it.
    pub(crate) thread: Option<String>,
    /// The returned value (JSON) of a successful attempt.
    pub(crate) result: Option<Vec<u8>>,
}

impl AttemptLog {
    pub(crate) fn new(attempt: u32, started_at: u64, ended_at: u64) -> AttemptLog {
        AttemptLog {
            attempt,
            started_at,
            ended_at,
            error: None,
            retry_at: None,
            thread: None,
            result: None,
        }
    }

    pub(crate) fn failed(mut self, error: impl Into<String>) -> AttemptLog {
        self.error = Some(error.into());
        self
    }
}

impl JobRecord {
    /// A fresh record with every optional part at its default.
    pub(crate) fn new(
        id: String,
        queue: String,
        handler: String,
        args: Vec<u8>,
        key: IndexKey,
        now: u64,
    ) -> JobRecord {
        JobRecord {
            id,
            queue,
            handler,
            args,
            description: None,
            retry: None,
            result_ttl_ms: 0,
            failure_ttl_ms: u64::MAX,
            enqueued_at: now,
            key: key.encode(),
            attempts: 0,
            token: 0,
            started_at: None,
            ended_at: None,
            result: None,
            error: None,
            history: Vec::new(),
            meta: b"{}".to_vec(),
            timeout_ms: None,
            expires_at: None,
            due: key.time,
            at_front: false,
            waiting_on: Vec::new(),
            dependents: Vec::new(),
            callbacks: Callbacks::default(),
            repeat: None,
            repeats_done: 0,
            attempt_base: 0,
            limit: None,
            stop_requested: false,
        }
    }

    pub(crate) fn index_key(&self) -> IndexKey {
        // The key was encoded by us and stored in the same record; `decode`
        // in `codec` checks it, so this fallback is never taken for a record
        // that decoded.
        IndexKey::decode(&self.key).unwrap_or(IndexKey::new(u32::MAX, super::Class::Failed, 0, 0))
    }

    pub(crate) fn push_history(&mut self, log: AttemptLog) {
        if self.history.len() >= HISTORY_LEN {
            self.history.remove(0);
        }
        self.history.push(log);
    }

    /// Failed attempts in the current repetition: the retry number a
    /// failure asks for.
    pub(crate) fn retry_number(&self) -> u32 {
        self.attempts.saturating_sub(self.attempt_base)
    }
}

/// Version 1 of the record, frozen: read only, upgraded on decode.
pub(crate) mod v1 {
    use serde::{Deserialize, Serialize};

    use crate::engine::keys::KEY_LEN;
    use crate::retry::Retry;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct JobRecord {
        pub(crate) id: String,
        pub(crate) queue: String,
        pub(crate) handler: String,
        pub(crate) args: Vec<u8>,
        pub(crate) description: Option<String>,
        pub(crate) retry: Option<Retry>,
        pub(crate) result_ttl_ms: u64,
        pub(crate) failure_ttl_ms: u64,
        pub(crate) enqueued_at: u64,
        pub(crate) key: [u8; KEY_LEN],
        pub(crate) attempts: u32,
        pub(crate) token: u64,
        pub(crate) started_at: Option<u64>,
        pub(crate) ended_at: Option<u64>,
        pub(crate) result: Option<Vec<u8>>,
        pub(crate) error: Option<String>,
        pub(crate) history: Vec<AttemptLog>,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub(crate) struct AttemptLog {
        pub(crate) attempt: u32,
        pub(crate) started_at: u64,
        pub(crate) ended_at: u64,
        pub(crate) error: Option<String>,
        pub(crate) retry_at: Option<u64>,
    }

    impl JobRecord {
        /// The same job as a current record. Version 1 had no timeouts,
        /// dependencies, callbacks, repeats or limits: all start empty.
        pub(crate) fn upgrade(self) -> super::JobRecord {
            let key = crate::engine::keys::IndexKey::decode(&self.key).unwrap_or(
                crate::engine::keys::IndexKey::new(0, crate::engine::Class::Failed, 0, 0),
            );
            let mut r = super::JobRecord::new(
                self.id,
                self.queue,
                self.handler,
                self.args,
                key,
                self.enqueued_at,
            );
            r.key = self.key;
            r.description = self.description;
            r.retry = self.retry;
            r.result_ttl_ms = self.result_ttl_ms;
            r.failure_ttl_ms = self.failure_ttl_ms;
            r.attempts = self.attempts;
            r.token = self.token;
            r.started_at = self.started_at;
            r.ended_at = self.ended_at;
            r.result = self.result;
            r.error = self.error;
            r.history = self
                .history
                .into_iter()
                .map(|h| super::AttemptLog {
                    attempt: h.attempt,
                    started_at: h.started_at,
                    ended_at: h.ended_at,
                    error: h.error,
                    retry_at: h.retry_at,
                    thread: None,
                    result: None,
                })
                .collect();
            r
        }
    }
}
