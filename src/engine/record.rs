//! `JobRecord`: the stored form of a job, one per job id in the `jobs` tree.

use serde::{Deserialize, Serialize};

use super::keys::{IndexKey, KEY_LEN};
use crate::retry::Retry;

/// How many attempts a record remembers (rq keeps about ten results).
pub(crate) const HISTORY_LEN: usize = 10;

/// Everything dueq knows about one job. `key` is the job's current index key
/// (the reverse entry): invariant `index[key] == id`.
///
/// Field order and types are part of the on-disk format (record version 1);
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
}

impl JobRecord {
    pub(crate) fn index_key(&self) -> IndexKey {
        // The key was encoded by us and stored in the same record; a record
        // that decoded has a well-formed key unless the bytes were damaged in
        // a way bincode did not notice, which `decode` below reports.
        IndexKey::decode(&self.key).unwrap_or(IndexKey::new(u32::MAX, super::Class::Failed, 0, 0))
    }

    pub(crate) fn push_history(&mut self, log: AttemptLog) {
        if self.history.len() >= HISTORY_LEN {
            self.history.remove(0);
        }
        self.history.push(log);
    }
}
