//! The crate's error type.

use std::path::PathBuf;

/// A `Result` whose error is dueq's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in dueq. Each variant's message says what to
/// do about it.
///
/// Errors never mean that an acknowledged job was lost: an operation that
/// returns an error changed nothing, unless its documentation says otherwise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store is open in another process or already open in this one.
    /// sled lets one process open a database at a time.
    #[error(
        "the store at {path} is in use by another process, or already open in this one \
         (any live `Store`, `Queue`, `Job` or `Worker` keeps it open); stop that process, \
         or share the open `Store` handle"
    )]
    StoreInUse {
        /// The store's directory.
        path: PathBuf,
    },

    /// The directory holds data that is not a dueq store.
    #[error("{path} holds data that is not a dueq store ({detail}); point dueq at an empty or dueq directory")]
    ForeignData {
        /// The store's directory.
        path: PathBuf,
        /// What did not match.
        detail: String,
    },

    /// The store was written by a newer dueq with a schema this version cannot read.
    #[error(
        "the store at {path} has schema version {found}, this dueq reads up to {supported}; \
         upgrade dueq, or export the store with the newer version and import it here"
    )]
    UnsupportedSchema {
        /// The store's directory.
        path: PathBuf,
        /// The schema version found on disk.
        found: u32,
        /// The newest schema version this build reads.
        supported: u32,
    },

    /// A record on disk does not decode.
    #[error("corrupt record for {what}: {detail}; the raw bytes are kept for inspection")]
    Corrupt {
        /// Which record (for example `job "abc"`).
        what: String,
        /// What was wrong with it.
        detail: String,
    },

    /// The storage engine reported an error (for example the disk is full
    /// or the directory is read-only). Nothing the failing call was doing
    /// was acknowledged.
    #[error("storage error: {0}; check free disk space and permissions of the store directory")]
    Storage(#[from] sled::Error),

    /// An I/O error outside sled (for example while syncing the store's file).
    #[error(
        "I/O error on the store: {0}; check free disk space and permissions of the store directory"
    )]
    Io(#[from] std::io::Error),

    /// Arguments or a result are larger than the store's payload limit.
    #[error("the job's {what} take {size} bytes of JSON, above the store's limit of {limit} bytes; pass a reference (a path or an id) instead, or raise `StoreBuilder::max_payload`")]
    PayloadTooLarge {
        /// `"arguments"` or `"result"`.
        what: &'static str,
        /// The encoded size.
        size: usize,
        /// The store's limit.
        limit: usize,
    },

    /// A value could not be encoded to JSON (for example a map with
    /// non-string keys).
    #[error("could not encode {what} as JSON: {detail}")]
    Encode {
        /// `"arguments"` or `"result"`.
        what: &'static str,
        /// serde_json's message.
        detail: String,
    },

    /// A stored result or argument does not decode into the requested type.
    #[error("could not decode {what} into `{type_name}`: {detail}; read it with the type the handler returned")]
    Decode {
        /// What was decoded.
        what: String,
        /// The Rust type asked for.
        type_name: &'static str,
        /// serde_json's message.
        detail: String,
    },

    /// A job id is empty, too long or has characters outside `[A-Za-z0-9_-]`.
    #[error("invalid job id {id:?}: {reason}")]
    InvalidJobId {
        /// The id given.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A queue name is empty or too long.
    #[error("invalid queue name {name:?}: {reason}")]
    InvalidQueueName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A job with this id already exists.
    #[error("a job with id {id:?} already exists; pick another id, or delete the old job first")]
    DuplicateJobId {
        /// The id given.
        id: String,
    },

    /// No job has this id (it never existed, was deleted, or expired).
    #[error("no job with id {id:?} (never enqueued, deleted, or its result/failure TTL expired)")]
    NoSuchJob {
        /// The id asked for.
        id: String,
    },

    /// No schedule has this name.
    #[error("no schedule named {name:?}; list them with Store::schedules")]
    NoSuchSchedule {
        /// The name asked for.
        name: String,
    },

    /// A cron expression that does not parse.
    #[error("bad cron expression {expr:?}: {detail}; use 5 fields (minute hour day month weekday), e.g. \"0 3 * * *\", in UTC")]
    InvalidCron {
        /// The expression.
        expr: String,
        /// What is wrong with it.
        detail: String,
    },

    /// The operation does not apply to a job in its current state.
    #[error("cannot {action} job {id:?}: it is {status}{hint}")]
    InvalidState {
        /// The job's id.
        id: String,
        /// What was attempted, e.g. `"requeue"`.
        action: &'static str,
        /// The job's status at the time.
        status: crate::Status,
        /// A suggestion, starting with `"; "`, or empty.
        hint: &'static str,
    },

    /// This run's lease was taken over: the job was recovered, claimed by
    /// another run, canceled or deleted. The run should stop; its outcome
    /// will not be recorded.
    #[error("the lease of this run of job {id:?} was superseded; stop working on it, its outcome will not be recorded")]
    LeaseLost {
        /// The job's id.
        id: String,
    },

    /// An option or argument is out of range.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// The option.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// `Worker::shutdown` waited its whole timeout and jobs were still running.
    #[error("{running} job(s) still running after the shutdown timeout; they keep their leases and run again if the process exits before they finish")]
    ShutdownTimeout {
        /// Jobs still running.
        running: usize,
    },

    /// A worker thread could not be spawned.
    #[error("could not start a worker thread: {0}")]
    Spawn(std::io::Error),
}

impl Error {
    pub(crate) fn corrupt(what: impl Into<String>, detail: impl std::fmt::Display) -> Error {
        Error::Corrupt {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

impl From<sled::transaction::TransactionError<Error>> for Error {
    fn from(e: sled::transaction::TransactionError<Error>) -> Error {
        match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => Error::Storage(e),
        }
    }
}
