//! `Store::verify`: checks the store's invariants and reports what is wrong.

use crate::error::Result;
use crate::Store;

/// What [`Store::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Job records read.
    pub jobs: usize,
    /// Index entries read.
    pub index_entries: usize,
    /// Everything that breaks an invariant, in the order found. Empty for a
    /// healthy store.
    pub problems: Vec<Problem>,
    /// Ids of jobs whose record did not decode earlier and was replaced by a
    /// failed stub, its raw bytes kept in quarantine (see
    /// [`Store::quarantined`]). Not a problem by itself: the store stayed
    /// consistent, but the data was damaged once.
    pub quarantined: Vec<String>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One broken invariant, found by [`Store::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// Which invariant is broken.
    pub kind: ProblemKind,
    /// What is wrong, in one sentence naming the job, key or queue.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The kinds of [`Problem`]. See ARCHITECTURE.md, "Invariants".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// An index key that does not decode (wrong length, unknown class).
    BadIndexKey,
    /// An index entry naming a job that has no record.
    MissingRecord,
    /// An index entry naming a job whose record names another key, which has
    /// no entry for it either: the entry is left over from a state the job
    /// left.
    StaleIndexEntry,
    /// A job with more than one index entry: it shows in several states.
    SeveralStates,
    /// A job record whose key has no index entry naming it: the job is in
    /// no state, and no worker or registry finds it.
    MissingIndexEntry,
    /// A job record that does not decode.
    UndecodableRecord,
    /// An index key or record whose queue number the `queues` tree does not
    /// know, or that belongs to another queue than the record says.
    QueueMismatch,
    /// An entry of the `queues` tree that does not decode, or a queue number
    /// used by two names.
    BadQueueEntry,
}

impl Store {
    /// Checks the store's invariants (ARCHITECTURE.md, "Invariants") by
    /// reading every job record and index entry: every index key decodes;
    /// every index entry's job has a record, and that record names this
    /// key; every record has the index entry its key names (so each job is
    /// in exactly one state); every record decodes; queue numbers agree
    /// with the `queues` tree. Quarantined records are listed.
    ///
    /// It reads the whole store, and writes nothing. Workers running in
    /// this process while it reads can make it report jobs that moved
    /// during the scan: verify with no worker running.
    ///
    /// A damaged store can be rebuilt by [`Store::export`] followed by
    /// [`Store::import`] into a new store: the import writes each job's
    /// index entry from its record, and records that do not decode are left
    /// out (and counted).
    ///
    /// # Errors
    ///
    /// Storage errors. Problems in the data are not errors: they are in the
    /// report.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = dueq::Store::open(dir.path().join("jobs.dueq"))?;
    /// store.queue("default").enqueue("add", &(1, 2))?;
    /// let report = store.verify()?;
    /// assert!(report.is_ok(), "{:?}", report.problems);
    /// assert_eq!((report.jobs, report.index_entries), (1, 1));
    /// # Ok::<(), dueq::Error>(())
    /// ```
    pub fn verify(&self) -> Result<VerifyReport> {
        self.engine().verify()
    }
}
