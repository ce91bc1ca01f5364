//! Every state transition of a job, each one sled transaction over `jobs`
//! and `index`, and the reads the public API needs.
//!
//! Transaction closures are pure: they read and write only the transactional
//! trees (a non-transactional sled call inside one deadlocks in 0.34.7).
//! Candidates are found by range reads first and re-checked inside the
//! transaction: the record's `key` must still be the candidate key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard, RwLock};
use sled::transaction::{
    ConflictableTransactionError, TransactionalTree, UnabortableTransactionError,
};
use sled::Transactional;

use super::codec::{decode_record, encode_record};
use super::journal::{Journal, ROTATE_AT};
use super::keys::{Class, IndexKey};
use super::record::{AttemptLog, Callbacks, Dependency, JobRecord, Limit};
use super::signal::Signal;
use super::trees::{self, OpenOptions, Trees};
use crate::error::{Error, Result};
use crate::retry::Retry;

/// The `meta` key of the sequence offset (see `Engine::seq_offset`).
const SEQ_OFFSET: &[u8] = b"seq_offset";

/// Queue numbers for a transaction; see `Engine::plan_queues`.
pub(super) struct QueuePlan<'a> {
    engine: &'a Engine,
    ids: HashMap<String, u32>,
    new: Vec<(String, u32)>,
    _alloc: Option<MutexGuard<'a, ()>>,
}

impl QueuePlan<'_> {
    pub(super) fn id(&self, name: &str) -> u32 {
        self.ids[name]
    }

    /// Queues used for the first time: write them with the transaction.
    pub(super) fn new_queues(&self) -> &[(String, u32)] {
        &self.new
    }

    /// Runs `f` in a transaction over `jobs` and `index`, plus `queues` if
    /// new queues are to be written with it.
    fn tx<T>(
        &self,
        f: impl Fn(&TransactionalTree, &TransactionalTree) -> TxResult<T>,
    ) -> Result<T> {
        let trees = &self.engine.trees;
        if self.new.is_empty() {
            return self.engine.tx(f);
        }
        Ok(
            (&trees.jobs, &trees.index, &trees.queues).transaction(|(jobs, index, queues)| {
                for (name, id) in &self.new {
                    queues.insert(name.as_bytes(), &id.to_be_bytes())?;
                }
                f(jobs, index)
            })?,
        )
    }

    /// Makes the new queues known, after their transaction committed.
    pub(super) fn publish(self) {
        for (name, id) in &self.new {
            self.engine.queue_ids.write().insert(name.clone(), *id);
            self.engine.queue_names.write().insert(*id, name.clone());
        }
    }
}

/// The error a lost run is recorded with, at open or when its lease lapsed.
pub(crate) const ABANDONED: &str = "abandoned: the process stopped while the job was running";

/// The start of the error of a job canceled because `parent`, a job it
/// depends on, was lost; the rest says how ("failed", "was canceled"...).
/// Events are matched against it (`Store`'s `lost_dependents`).
pub(crate) fn lost_parent_reason(parent: &str) -> String {
    format!("canceled: it depends on job {parent:?}, which ")
}
const LEASE_LAPSED: &str =
    "abandoned: the run's lease expired and no run of it was going on in this process";

pub(super) type TxResult<T> = std::result::Result<T, ConflictableTransactionError<Error>>;

pub(super) fn abort<T>(e: Error) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

/// A job to enqueue, already validated and encoded.
#[derive(Debug, Clone)]
pub(crate) struct NewJob {
    pub(crate) id: String,
    /// The id was generated (a random UUID), not given by the caller: it
    /// cannot collide with a job in the intake, so the fast path may take it.
    pub(crate) auto_id: bool,
    pub(crate) queue: String,
    pub(crate) handler: String,
    pub(crate) args: Vec<u8>,
    pub(crate) description: Option<String>,
    pub(crate) retry: Option<Retry>,
    pub(crate) result_ttl_ms: u64,
    pub(crate) failure_ttl_ms: u64,
    pub(crate) due: u64,
    pub(crate) meta: Vec<u8>,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) ttl_ms: Option<u64>,
    pub(crate) at_front: bool,
    pub(crate) depends_on: Vec<Dependency>,
    pub(crate) callbacks: Callbacks,
    pub(crate) repeat: Option<crate::Repeat>,
    pub(crate) limit: Option<Limit>,
}

/// Where an imported job goes: its exported class, time and sequence.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExportedKey {
    pub(crate) class: Class,
    pub(crate) time: u64,
    pub(crate) seq: u64,
}

/// A run handed to a worker thread.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub(crate) id: String,
    pub(crate) queue: String,
    pub(crate) handler: String,
    pub(crate) args: Vec<u8>,
    pub(crate) attempt: u32,
    pub(crate) token: u64,
    /// The time and sequence number of the `READY` key it was claimed from:
    /// a run released unstarted goes back to exactly that key.
    pub(crate) from_time: u64,
    pub(crate) from_seq: u64,
    /// The record's `started_at` and `ended_at` before the claim, restored
    /// by a release.
    pub(crate) prev_started_at: Option<u64>,
    pub(crate) prev_ended_at: Option<u64>,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) callbacks: Callbacks,
    pub(crate) limit: Option<Limit>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// The handler returned this JSON value.
    Success(Vec<u8>),
    /// The handler failed with this message.
    Failure(String),
}

/// A finished run whose outcome is to be recorded.
#[derive(Debug, Clone)]
pub(crate) struct Done {
    pub(crate) id: String,
    pub(crate) token: u64,
    pub(crate) outcome: Outcome,
    pub(crate) ended_at: u64,
    /// The worker thread that ran it.
    pub(crate) thread: Option<String>,
    /// No retry, whatever the policy (a synchronous queue's run).
    pub(crate) final_attempt: bool,
}

/// A user-requested move between registries (cancel, requeue).
struct Move {
    action: &'static str,
    from: &'static [Class],
    hint: &'static str,
    to: Class,
    ended_at: Option<u64>,
}

/// How far past the jobs a limit holds back a round reads.
const LIMIT_SCAN: usize = 256;

/// How a worker claims: its queue order and limits.
#[derive(Debug, Default, Clone)]
pub(crate) struct ClaimPolicy {
    /// One job from each queue in turn, instead of strict priority.
    pub(crate) round_robin: bool,
    /// The worker's concurrency limits by key (a job's own limit applies
    /// too; the lower wins).
    pub(crate) concurrency: HashMap<String, u32>,
    /// The worker's rate limits by key: (starts, per period in ms).
    pub(crate) rates: HashMap<String, (u32, u64)>,
}

/// What a round did.
#[derive(Debug, Default)]
pub(crate) struct RoundReport {
    /// Per `done` entry: `None` if the run was fenced and nothing written,
    /// else the class the job went to (`FINISHED` also when a zero
    /// `result_ttl` deleted it).
    pub(crate) written: Vec<Option<Class>>,
    pub(crate) claimed: Vec<Claimed>,
    /// Runs whose lease lapsed, now retried or failed.
    pub(crate) abandoned: Vec<Moved>,
    /// Records that did not decode, now failed and quarantined.
    pub(crate) corrupt: usize,
    /// Jobs discarded because their `ttl` ran out before they started.
    pub(crate) expired: Vec<Moved>,
}

/// A job a round moved without a run's outcome (a lapsed lease, an expired
/// `ttl`), for the worker's events.
#[derive(Debug)]
pub(crate) struct Moved {
    pub(crate) id: String,
    pub(crate) queue: String,
    /// The job's attempts so far.
    pub(crate) attempts: u32,
    /// The class the job went to.
    pub(crate) to: Class,
    /// The error it was recorded with.
    pub(crate) error: String,
}

impl Moved {
    fn of(record: &JobRecord) -> Moved {
        Moved {
            id: record.id.clone(),
            queue: record.queue.clone(),
            attempts: record.attempts,
            to: record.index_key().class,
            error: record.error.clone().unwrap_or_default(),
        }
    }
}

pub(crate) struct Engine {
    path: PathBuf,
    pub(super) trees: Trees,
    /// Cron and interval schedules, by name (see `schedules`).
    pub(super) schedules: sled::Tree,
    /// The earliest `next_fire` of an active schedule (`u64::MAX`: none).
    pub(super) next_schedule: AtomicU64,
    /// Raw bytes of records that did not decode, by job id.
    pub(super) quarantine: sled::Tree,
    /// Jobs the fast enqueue path wrote, waiting to be moved into `jobs`
    /// and `index` (see `intake.rs`).
    pub(super) intake: sled::Tree,
    /// Intake writes so far (counted after each write finished; 1 at open
    /// if the intake holds jobs).
    pub(super) intake_written: AtomicU64,
    /// The value of `intake_written` when the last finished settle began:
    /// every write counted up to there is in place.
    pub(super) intake_settled: AtomicU64,
    /// One settler at a time.
    pub(super) settle_lock: Mutex<()>,
    /// Claims a round made in memory and has not written yet (see
    /// `round`): a later round writes each together with its run's
    /// outcome, or `settle` writes them all before anything else reads or
    /// changes jobs. Held by a round from its candidate read until its
    /// transaction commits.
    pending: Mutex<Vec<PendingClaim>>,
    queue_ids: RwLock<HashMap<String, u32>>,
    queue_names: RwLock<HashMap<u32, String>>,
    queue_alloc: Mutex<()>,
    /// Runs going on in this process, by job id: their lease token. sled
    /// admits one process per store, so a `STARTED` job whose run is not
    /// here has no run anywhere; one whose run is here is never abandoned,
    /// whatever the clock says.
    live: Mutex<HashMap<String, u64>>,
    /// Claimed runs with a limit key: (job id, token) -> key.
    live_keys: Mutex<HashMap<(String, u64), String>>,
    /// Claimed runs per limit key.
    limit_running: Mutex<HashMap<String, u32>>,
    /// Recent starts per rate-limited key (store-clock ms), oldest first.
    rate_starts: Mutex<HashMap<String, std::collections::VecDeque<u64>>>,
    /// The last round held jobs back for a limit.
    limits_blocked: std::sync::atomic::AtomicBool,
    /// Runs that `stop` was called on: (job id, lease token).
    stops: Mutex<std::collections::HashSet<(String, u64)>>,
    /// Added to `generate_id` for sequence numbers and tokens, so that they
    /// stay above every sequence number an import brought in (kept in
    /// `meta` as `seq_offset`).
    seq_offset: AtomicU64,
    /// Held (shared) from allocating sequence numbers until their
    /// transaction commits, and (exclusive) by an import while it raises
    /// `seq_offset`, so no key can be allocated below an imported one.
    pub(super) seq_lock: RwLock<()>,
    journal: Journal,
    pub(crate) signal: Arc<Signal>,
    /// The hooks of this store's workers, for events outside a worker.
    pub(crate) subscribers: crate::events::Subscribers,
}

impl Engine {
    pub(crate) fn open(path: &Path, opts: &OpenOptions) -> Result<Engine> {
        let trees = trees::open(path, opts)?;
        let quarantine = trees.db.open_tree("quarantine")?;
        let schedules = trees.db.open_tree("schedules")?;
        let intake = trees.db.open_tree("intake")?;
        let intake_written = AtomicU64::new(u64::from(!intake.is_empty()));
        let mut ids = HashMap::new();
        let mut names = HashMap::new();
        for item in trees.queues.iter() {
            let (name, id) = item?;
            let name = String::from_utf8(name.to_vec())
                .map_err(|_| Error::corrupt("queue name", "not UTF-8"))?;
            let id = <[u8; 4]>::try_from(id.as_ref())
                .map(u32::from_be_bytes)
                .map_err(|_| Error::corrupt(format!("queue {name:?}"), "bad queue number"))?;
            ids.insert(name.clone(), id);
            names.insert(id, name);
        }
        let seq_offset = match trees.meta.get(SEQ_OFFSET)? {
            Some(v) => <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| Error::corrupt("meta seq_offset", "not 8 bytes"))?,
            None => 0,
        };
        let engine = Engine {
            path: path.to_owned(),
            trees,
            schedules,
            next_schedule: AtomicU64::new(u64::MAX),
            quarantine,
            intake,
            intake_written,
            intake_settled: AtomicU64::new(0),
            settle_lock: Mutex::new(()),
            pending: Mutex::new(Vec::new()),
            queue_ids: RwLock::new(ids),
            queue_names: RwLock::new(names),
            queue_alloc: Mutex::new(()),
            live: Mutex::new(HashMap::new()),
            stops: Mutex::new(std::collections::HashSet::new()),
            live_keys: Mutex::new(HashMap::new()),
            limit_running: Mutex::new(HashMap::new()),
            rate_starts: Mutex::new(HashMap::new()),
            limits_blocked: std::sync::atomic::AtomicBool::new(false),
            seq_offset: AtomicU64::new(seq_offset),
            seq_lock: RwLock::new(()),
            journal: Journal::open(path)?,
            signal: Arc::new(Signal::default()),
            subscribers: crate::events::Subscribers::default(),
        };
        engine.refresh_next_schedule()?;
        Ok(engine)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn db(&self) -> &sled::Db {
        &self.trees.db
    }

    /// The number of a queue that has been used, if it has.
    pub(crate) fn queue_id(&self, name: &str) -> Option<u32> {
        self.queue_ids.read().get(name).copied()
    }

    /// Every queue that has been used, by name.
    pub(crate) fn queue_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.queue_ids.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// The numbers of the queues `names`. Queues used for the first time
    /// get new numbers, returned in `QueuePlan::new`: they are written in the
    /// same transaction as the jobs that use them (`QueuePlan::tx`) and
    /// published by `QueuePlan::publish` once it committed, so a failed
    /// enqueue creates no queue. The plan holds the allocation lock while new
    /// queues are pending, so two enqueuers cannot take the same number.
    pub(super) fn plan_queues<'a>(&'a self, names: &[&str]) -> QueuePlan<'a> {
        let mut plan = QueuePlan {
            engine: self,
            ids: HashMap::new(),
            new: Vec::new(),
            _alloc: None,
        };
        {
            let known = self.queue_ids.read();
            for &name in names {
                if let Some(&id) = known.get(name) {
                    plan.ids.insert(name.to_owned(), id);
                }
            }
        }
        if plan.ids.len() == names.iter().collect::<std::collections::HashSet<_>>().len() {
            return plan;
        }
        let alloc = self.queue_alloc.lock();
        let known = self.queue_ids.read().clone();
        let mut next = self.queue_names.read().keys().max().map_or(0, |m| m + 1);
        for &name in names {
            if plan.ids.contains_key(name) {
                continue;
            }
            let id = match known.get(name) {
                Some(&id) => id,
                None => {
                    let id = next;
                    next += 1;
                    plan.new.push((name.to_owned(), id));
                    id
                }
            };
            plan.ids.insert(name.to_owned(), id);
        }
        plan._alloc = Some(alloc);
        plan
    }

    /// A sequence number (also used as lease token): unique and increasing
    /// across restarts and imports. Call with `seq_lock` held (shared) until
    /// the transaction that uses it commits.
    pub(super) fn next_seq(&self) -> Result<u64> {
        Ok(self
            .trees
            .db
            .generate_id()?
            .saturating_add(self.seq_offset.load(Ordering::SeqCst)))
    }

    fn tx<T>(
        &self,
        f: impl Fn(&TransactionalTree, &TransactionalTree) -> TxResult<T>,
    ) -> Result<T> {
        Ok((&self.trees.jobs, &self.trees.index).transaction(|(jobs, index)| f(jobs, index))?)
    }

    // ---------------------------------------------------------------- writes

    /// Enqueues all of `new` in one transaction: all or nothing. A job
    /// with unfinished dependencies is `DEFERRED`; one whose dependency
    /// already failed (without `allow_failure`) is canceled at once.
    pub(crate) fn enqueue(&self, new: Vec<NewJob>, now: u64) -> Result<Vec<String>> {
        // The fast path (one plain write to the intake, see `intake.rs`)
        // takes jobs whose ids were generated and that wait on nothing. The
        // others check ids and parents against `jobs`, so every earlier job
        // must be in place first.
        let plain = new.iter().all(|j| j.auto_id && j.depends_on.is_empty());
        if !plain {
            self.settle()?;
        }
        let names: Vec<&str> = new.iter().map(|j| j.queue.as_str()).collect();
        let plan = self.plan_queues(&names);
        // Held until the `Enqueued` events are sent, so that a worker cannot
        // report a job started before it is reported enqueued.
        let publishing = self.subscribers.publishing();
        let _seq = self.seq_lock.read();
        if plain && plan.new.is_empty() {
            let mut records = Vec::with_capacity(new.len());
            for job in new {
                let queue = plan.id(&job.queue);
                let seq = self.next_seq()?;
                records.push((seq, new_record(job, queue, seq, now)));
            }
            self.enqueue_to_intake(&records)?;
            if publishing.is_some() {
                self.report_enqueued(records.iter().map(|(_, r)| r), now);
            }
            drop(publishing);
            self.signal.notify();
            return Ok(records.into_iter().map(|(_, r)| r.id).collect());
        }
        let mut records = Vec::with_capacity(new.len());
        for job in new {
            let queue = plan.id(&job.queue);
            records.push(new_record(job, queue, self.next_seq()?, now));
        }
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        if records.iter().all(|r| r.waiting_on.is_empty()) {
            // The common case, kept lean: records encoded once, outside the
            // transaction; one insert per tree per job.
            let encoded: Vec<Vec<u8>> = records.iter().map(encode_record).collect();
            plan.tx(|jobs, index| {
                for (record, bytes) in records.iter().zip(&encoded) {
                    if jobs
                        .insert(record.id.as_bytes(), bytes.as_slice())?
                        .is_some()
                    {
                        // Also catches a duplicate id inside one batch: the
                        // first insert is visible to the second. The abort
                        // undoes the overwrite.
                        return abort(Error::DuplicateJobId {
                            id: record.id.clone(),
                        });
                    }
                    index_insert(index, &record.key, &record.id)?;
                }
                Ok(())
            })?;
        } else {
            plan.tx(|jobs, index| {
                for record in &records {
                    if jobs.get(record.id.as_bytes())?.is_some() {
                        return abort(Error::DuplicateJobId {
                            id: record.id.clone(),
                        });
                    }
                    let mut record = record.clone();
                    link_parents(jobs, &mut record, now)?;
                    write(jobs, index, &record)?;
                }
                Ok(())
            })?;
        }
        plan.publish();
        if publishing.is_some() {
            self.report_enqueued(records.iter(), now);
        }
        drop(publishing);
        self.signal.notify();
        Ok(ids)
    }

    /// Sends an `Enqueued` event per job to the hooks of this store's
    /// workers.
    fn report_enqueued<'a>(&self, records: impl Iterator<Item = &'a JobRecord>, now: u64) {
        let at = crate::clock::from_ms(now);
        let events: Vec<crate::Event> = records
            .map(|r| crate::Event {
                job_id: r.id.clone(),
                queue: r.queue.clone(),
                at,
                kind: crate::EventKind::Enqueued,
            })
            .collect();
        self.subscribers.broadcast(&events);
    }

    /// One round of a dispatcher, in one transaction: records the outcomes
    /// of finished runs (`done`), then claims up to `max` due jobs from
    /// `queues`, in priority order (the first queue with a due job wins).
    /// Lapsed leases found on the way are resolved as abandoned runs.
    /// Batching both into one transaction is what makes draining fast: sled
    /// pays a fixed cost per transaction.
    pub(crate) fn round(
        &self,
        done: &[Done],
        queues: &[u32],
        max: usize,
        lease_ms: u64,
        now: u64,
        policy: &ClaimPolicy,
    ) -> Result<RoundReport> {
        // The intake only: this round writes the pending claims itself.
        self.settle_intake()?;
        let mut report = RoundReport::default();
        // Jobs held back by a limit stay where they are, in order; while
        // some are, rounds read further past them.
        let extra = if self.limits_blocked.load(Ordering::Relaxed) {
            LIMIT_SCAN
        } else {
            0
        };
        // Tokens and sequence numbers come from `generate_id`, which must not
        // be called inside a transaction. Taken before `pending` (the order
        // every path that holds both uses).
        let seq_guard = self.seq_lock.read();
        let mut pending = self.pending.lock();
        // Jobs claimed by the last round still have their `READY` keys.
        let pending_ids: std::collections::HashSet<&str> =
            pending.iter().map(|p| p.id.as_str()).collect();
        let mut per_queue: Vec<Vec<(sled::IVec, sled::IVec)>> = Vec::new();
        let mut total = 0;
        for &queue in queues {
            if max == 0 {
                break;
            }
            let mut list = Vec::new();
            // Lapsed leases first: they are older than anything queued.
            for (class, take) in [(Class::Started, usize::MAX), (Class::Ready, max + extra)] {
                let range =
                    IndexKey::range_start(queue, class)..=IndexKey::range_end(queue, class, now);
                let mut taken = 0;
                for item in self.trees.index.range(range) {
                    if taken >= take {
                        break;
                    }
                    let (key, id) = item?;
                    if class == Class::Ready
                        && std::str::from_utf8(&id).is_ok_and(|id| pending_ids.contains(id))
                    {
                        continue;
                    }
                    taken += 1;
                    list.push((key, id));
                }
            }
            total += list.len();
            per_queue.push(list);
            if total >= max + extra && !policy.round_robin {
                break;
            }
        }
        let candidates: Vec<(sled::IVec, sled::IVec)> = if policy.round_robin {
            // One job from each queue in turn (rq's round robin).
            let mut iters: Vec<_> = per_queue.into_iter().map(Vec::into_iter).collect();
            let mut out = Vec::with_capacity(total);
            while out.len() < total {
                for it in &mut iters {
                    if let Some(c) = it.next() {
                        out.push(c);
                    }
                }
            }
            out
        } else {
            per_queue.into_iter().flatten().collect()
        };
        drop(pending_ids);
        if candidates.is_empty() && done.is_empty() {
            return Ok(report);
        }
        let fresh: Vec<(u64, u64)> = candidates
            .iter()
            .map(|_| Ok((self.next_seq()?, self.next_seq()?)))
            .collect::<Result<_>>()?;
        let done_seqs: Vec<u64> = done
            .iter()
            .map(|_| self.next_seq())
            .collect::<Result<_>>()?;
        // Pending claims whose runs are done are written now, with their
        // outcomes; the others stay pending.
        let done_tokens: std::collections::HashSet<u64> = done.iter().map(|d| d.token).collect();
        let (finishing, still_running): (Vec<PendingClaim>, Vec<PendingClaim>) =
            std::mem::take(&mut *pending)
                .into_iter()
                .partition(|p| done_tokens.contains(&p.token));
        let live = self.live.lock().clone();
        let running_keys = self.limit_running.lock().clone();
        let rate_starts = self.rate_starts.lock().clone();
        let outcome = self.tx(|jobs, index| {
            let mut running_keys = running_keys.clone();
            let mut starts = rate_starts.clone();
            let mut blocked = 0;
            // The claims of the runs done are applied to their records in
            // memory and handed to their outcomes: the job goes from its
            // `READY` key to where its outcome puts it in one write.
            let mut claimed_records: HashMap<u64, JobRecord> = HashMap::new();
            for p in &finishing {
                if let Some(record) = claim_for_outcome(jobs, index, p)? {
                    claimed_records.insert(p.token, record);
                }
            }
            let mut written = Vec::with_capacity(done.len());
            for (d, &seq) in done.iter().zip(&done_seqs) {
                let claimed = claimed_records.remove(&d.token);
                written.push(apply_outcome(jobs, index, d, claimed, seq)?);
            }
            let mut claimed = Vec::new();
            let mut deferred = Vec::new();
            let mut abandoned = Vec::new();
            let mut expired = Vec::new();
            let mut corrupt = Vec::new();
            for ((key_bytes, id), &(token, seq)) in candidates.iter().zip(&fresh) {
                if claimed.len() >= max {
                    break;
                }
                let Some(mut record) = decode_in_tx(jobs, id)? else {
                    corrupt.push((key_bytes.clone(), id.clone()));
                    continue;
                };
                if record.key[..] != key_bytes[..] {
                    // Inside the transaction both trees are consistent, so
                    // a record that names another key makes this index entry
                    // an orphan. Left alone, it would look due forever.
                    if index.get(&key_bytes[..])?.as_deref() == Some(&id[..]) {
                        index.remove(&key_bytes[..])?;
                    }
                    continue;
                }
                let key = record.index_key();
                if key.class == Class::Ready && record.expires_at.is_some_and(|t| t <= now) {
                    // Waited past its `ttl`: discarded, visibly (rq deletes
                    // it; dueq keeps it canceled, with the reason).
                    discard_expired(jobs, index, &mut record, now)?;
                    expired.push(Moved::of(&record));
                    continue;
                }
                if key.class == Class::Ready {
                    if let Some(limit) = &record.limit {
                        let cap = policy
                            .concurrency
                            .get(&limit.key)
                            .map_or(limit.max, |&w| w.min(limit.max));
                        let running = running_keys.entry(limit.key.clone()).or_insert(0);
                        if *running >= cap {
                            blocked += 1;
                            continue; // waits, in its place
                        }
                        if let Some(&(n, per)) = policy.rates.get(&limit.key) {
                            let window = starts.entry(limit.key.clone()).or_default();
                            while window
                                .front()
                                .is_some_and(|&t| t.saturating_add(per) <= now)
                            {
                                window.pop_front();
                            }
                            if window.len() >= n as usize {
                                // Over the rate: due again at the next free
                                // slot, keeping its sequence number.
                                let slot = window[window.len() - n as usize].saturating_add(per);
                                index.remove(&key_bytes[..])?;
                                record.key =
                                    IndexKey::new(key.queue, Class::Ready, slot, key.seq).encode();
                                write(jobs, index, &record)?;
                                continue;
                            }
                            window.push_back(now);
                        }
                        *running += 1;
                    }
                }
                if key.class == Class::Started {
                    if live.get(&record.id) == Some(&record.token) {
                        // The run is going on in this process (the clock
                        // jumped, or the machine slept): it is not
                        // abandoned, its lease is renewed.
                        renew_lease(jobs, index, &mut record, lease_ms, now)?;
                        continue;
                    }
                    index.remove(&key_bytes[..])?;
                    record.push_history(
                        AttemptLog::new(
                            record.attempts,
                            record.started_at.unwrap_or(key.time),
                            now,
                        )
                        .failed(LEASE_LAPSED),
                    );
                    fail_and_write(jobs, index, &mut record, LEASE_LAPSED, now, seq)?;
                    abandoned.push(Moved::of(&record));
                    continue;
                }
                // Claimed in memory; written by the next round or
                // `settle` (see `pending`).
                let run = claim_in_memory(&mut record, token, seq, lease_ms, now);
                deferred.push(PendingClaim {
                    id: run.id.clone(),
                    token,
                    seq,
                    lease_ms,
                    at: now,
                    from_time: run.from_time,
                    from_seq: run.from_seq,
                    attempt: run.attempt,
                });
                claimed.push(run);
            }
            Ok((
                written, claimed, deferred, abandoned, corrupt, expired, blocked, starts,
            ))
        });
        let (written, claimed, deferred, abandoned, corrupt, expired, blocked, starts) =
            match outcome {
                Ok(o) => o,
                Err(e) => {
                    // Nothing was written: every claim is still pending.
                    *pending = finishing;
                    pending.extend(still_running);
                    return Err(e);
                }
            };
        *pending = still_running;
        pending.extend(deferred);
        drop(pending);
        self.limits_blocked.store(blocked > 0, Ordering::Relaxed);
        if !policy.rates.is_empty() {
            *self.rate_starts.lock() = starts;
        }
        drop(seq_guard);
        self.forget_runs(done.iter().map(|d| (d.id.as_str(), d.token)));
        // Only now that the outcomes are committed may their runs' journal
        // lines go at the next rewrite (see `journal`).
        self.journal.ended(done.iter().map(|d| d.token));
        report.written = written;
        {
            let mut live = self.live.lock();
            let mut keys = self.live_keys.lock();
            let mut running = self.limit_running.lock();
            for c in &claimed {
                live.insert(c.id.clone(), c.token);
                if let Some(limit) = &c.limit {
                    keys.insert((c.id.clone(), c.token), limit.key.clone());
                    *running.entry(limit.key.clone()).or_insert(0) += 1;
                }
            }
        }
        for (key, id) in &corrupt {
            self.quarantine_entry(key, id, now)?;
        }
        report.claimed = claimed;
        report.abandoned = abandoned;
        report.corrupt = corrupt.len();
        report.expired = expired;
        if !report.abandoned.is_empty() || report.corrupt > 0 || !done.is_empty() {
            self.signal.notify();
        }
        Ok(report)
    }

    /// Claims job `id` if it is queued (due by `now`) on `queue`, for a
    /// synchronous queue's inline run. `None` if it is not (deferred,
    /// scheduled, already taken, or on another queue).
    pub(crate) fn claim_one(
        &self,
        id: &str,
        queue: &str,
        lease_ms: u64,
        now: u64,
    ) -> Result<Option<Claimed>> {
        self.settle()?;
        let _seq = self.seq_lock.read();
        let (token, seq) = (self.next_seq()?, self.next_seq()?);
        let claimed = self.tx(|jobs, index| {
            let Some(mut record) = decode_in_tx(jobs, id.as_bytes())? else {
                return Ok(None);
            };
            let key = record.index_key();
            if key.class != Class::Ready || key.time > now || record.queue != queue {
                return Ok(None);
            }
            index.remove(&record.key[..])?;
            claim(jobs, index, &mut record, token, seq, lease_ms, now).map(Some)
        })?;
        if let Some(c) = &claimed {
            self.live.lock().insert(c.id.clone(), c.token);
        }
        Ok(claimed)
    }

    /// Records the outcome of an inline (synchronous) run, with no retry:
    /// a failure is final, as in rq's synchronous mode. Returns the job's
    /// dependents queued by it.
    pub(crate) fn finish_inline(&self, done: &Done) -> Result<Vec<String>> {
        let _seq = self.seq_lock.read();
        let seq = self.next_seq()?;
        let released = self.tx(|jobs, index| {
            let mut done = done.clone();
            done.final_attempt = true;
            apply_outcome(jobs, index, &done, None, seq)?;
            let Some(record) = decode_in_tx(jobs, done.id.as_bytes())? else {
                return Ok(Vec::new());
            };
            let mut ready = Vec::new();
            for child in &record.dependents {
                if let Some(c) = decode_in_tx(jobs, child.as_bytes())? {
                    if c.index_key().class == Class::Ready {
                        ready.push(c.id);
                    }
                }
            }
            Ok(ready)
        })?;
        self.forget_runs(std::iter::once((done.id.as_str(), done.token)));
        self.journal.ended([done.token]);
        self.signal.notify();
        Ok(released)
    }

    /// Forgets runs that ended, were fenced or released: they leave the
    /// live map, the stop requests and their limit keys' counts.
    fn forget_runs<'a>(&self, runs: impl Iterator<Item = (&'a str, u64)>) {
        let mut live = self.live.lock();
        let mut stops = self.stops.lock();
        let mut keys = self.live_keys.lock();
        let mut running = self.limit_running.lock();
        for (id, token) in runs {
            if live.get(id) == Some(&token) {
                live.remove(id);
            }
            stops.remove(&(id.to_owned(), token));
            if let Some(key) = keys.remove(&(id.to_owned(), token)) {
                if let Some(n) = running.get_mut(&key) {
                    *n = n.saturating_sub(1);
                }
            }
        }
    }

    /// Puts runs that were claimed but never started back where they were
    /// claimed from: the very `READY` key (so they keep their place in queue
    /// order), with the attempt uncounted and `started_at`/`ended_at` as
    /// before the claim. The record keeps the run's token, so nothing the
    /// run could still send is accepted (fencing). A run whose job moved on
    /// meanwhile (deleted, say) is skipped. One transaction; returns how many
    /// were put back.
    pub(crate) fn release(&self, runs: &[Claimed]) -> Result<usize> {
        if runs.is_empty() {
            return Ok(0);
        }
        // Claims not written yet are written first, then put back like the
        // others: one path.
        self.settle()?;
        let released = self.tx(|jobs, index| {
            let mut released = 0;
            for run in runs {
                let Some(mut record) = running(jobs, &run.id, run.token)? else {
                    continue;
                };
                let key = record.index_key();
                index.remove(&record.key[..])?;
                record.attempts = record.attempts.saturating_sub(1);
                record.started_at = run.prev_started_at;
                record.ended_at = run.prev_ended_at;
                record.key =
                    IndexKey::new(key.queue, Class::Ready, run.from_time, run.from_seq).encode();
                write(jobs, index, &record)?;
                released += 1;
            }
            Ok(released)
        })?;
        self.forget_runs(runs.iter().map(|r| (r.id.as_str(), r.token)));
        if released > 0 {
            self.signal.notify();
        }
        Ok(released)
    }

    /// Moves a job whose record does not decode (or an index entry whose
    /// record is missing) out of the way: the raw bytes go to the
    /// `quarantine` tree, and a stub record in `FAILED` says what happened,
    /// so dispatchers move past it and an operator can see it. Nothing else
    /// is touched.
    fn quarantine_entry(&self, key_bytes: &[u8], id: &[u8], now: u64) -> Result<()> {
        let key = IndexKey::decode(key_bytes)?;
        let names = self.queue_names.read().clone();
        let _seq = self.seq_lock.read();
        let seq = self.next_seq()?;
        (&self.trees.jobs, &self.trees.index, &self.quarantine)
            .transaction(|(jobs, index, quarantine)| {
                if index.get(key_bytes)?.as_deref() != Some(id) {
                    return Ok(()); // moved on since
                }
                let raw = jobs.get(id)?;
                let detail = match &raw {
                    Some(raw) => match decode_record(id, raw) {
                        Ok(_) => return Ok(()), // fine after all
                        Err(e) => e.to_string(),
                    },
                    None => "the index names a job whose record is missing".to_owned(),
                };
                index.remove(key_bytes)?;
                let Some(raw) = raw else {
                    return Ok(());
                };
                quarantine.insert(id, raw)?;
                let Ok(id) = std::str::from_utf8(id) else {
                    return Ok(());
                };
                let mut stub = JobRecord::new(
                    id.to_owned(),
                    names.get(&key.queue).cloned().unwrap_or_default(),
                    String::new(),
                    b"null".to_vec(),
                    IndexKey::new(key.queue, Class::Failed, u64::MAX, seq),
                    now,
                );
                stub.ended_at = Some(now);
                stub.error = Some(format!(
                    "{detail}; the raw record is kept in the store's quarantine"
                ));
                write(jobs, index, &stub)
            })
            .map_err(|e: sled::transaction::TransactionError<Error>| Error::from(e))
    }

    /// Writes the claims the last dispatcher round made in memory (see
    /// `pending`), so that every read sees those jobs started. Waits for a
    /// round in progress: it holds `pending` until its transaction commits.
    pub(crate) fn write_pending_claims(&self) -> Result<()> {
        let mut pending = self.pending.lock();
        if pending.is_empty() {
            return Ok(());
        }
        self.tx(|jobs, index| {
            for p in pending.iter() {
                write_claim(jobs, index, p)?;
            }
            Ok(())
        })?;
        pending.clear();
        Ok(())
    }

    /// Notes in the run journal that a run is about to start (see
    /// `journal`): if the process dies before its claim reaches disk, the
    /// next open still counts the run as an attempt.
    pub(crate) fn journal_start(&self, run: &Claimed) -> Result<()> {
        self.journal
            .append(run.token, run.attempt, run.from_seq, &run.id)
    }

    /// Flushes sled and empties the run journal, if it has grown past its
    /// limit (or always, with `force`).
    pub(crate) fn rotate_journal(&self, force: bool) -> Result<()> {
        if force || self.journal.len() >= ROTATE_AT {
            self.journal
                .truncate_after(|| Ok(self.trees.db.flush().map(|_| ())?))?;
        }
        Ok(())
    }

    /// Counts runs whose claim was lost with the process (the job is back in
    /// `READY` with fewer attempts than the journal says were started) as
    /// abandoned attempts. Called at open, before `recover_all`. Returns how
    /// many.
    pub(crate) fn replay_journal(&self, now: u64) -> Result<usize> {
        let mut counted = 0;
        for start in self.journal.read()? {
            // Read as stored, without `settle`: a journaled run was claimed,
            // so its job is not in the intake, and an open after a crash
            // need not move a large intake before it returns.
            let stored = match self.trees.jobs.get(&start.id)? {
                Some(raw) => decode_record(start.id.as_bytes(), &raw).map(Some),
                None => Ok(None),
            };
            match stored {
                Ok(Some(r)) if lost_claim(&r, &start) => {}
                _ => continue,
            }
            let _seq = self.seq_lock.read();
            let seq = self.next_seq()?;
            counted += usize::from(self.tx(|jobs, index| {
                let Some(mut record) = decode_in_tx(jobs, start.id.as_bytes())? else {
                    return Ok(false);
                };
                if !lost_claim(&record, &start) {
                    return Ok(false);
                }
                index.remove(&record.key[..])?;
                record.attempts = start.attempt;
                record.token = start.token;
                record.push_history(AttemptLog::new(start.attempt, now, now).failed(ABANDONED));
                fail_and_write(jobs, index, &mut record, ABANDONED, now, seq)?;
                Ok(true)
            })?);
        }
        Ok(counted)
    }

    /// Extends a run's lease. Fails with `LeaseLost` if the run was fenced.
    pub(crate) fn heartbeat(&self, id: &str, token: u64, lease_ms: u64, now: u64) -> Result<()> {
        self.settle()?;
        self.tx(|jobs, index| {
            let mut record = match running(jobs, id, token)? {
                Some(r) => r,
                None => return abort(Error::LeaseLost { id: id.to_owned() }),
            };
            renew_lease(jobs, index, &mut record, lease_ms, now)
        })
    }

    /// Moves a waiting (queued, scheduled or deferred) job to the canceled
    /// registry; its dependents are canceled too, unless they allow failure.
    pub(crate) fn cancel(&self, id: &str, now: u64) -> Result<()> {
        self.settle()?;
        self.move_job(
            id,
            now,
            Move {
                action: "cancel",
                from: &[Class::Ready, Class::Deferred],
                hint: "; only queued, scheduled and deferred jobs can be canceled \
                       (stop a running job with `stop`)",
                to: Class::Canceled,
                ended_at: Some(now),
            },
        )
    }

    /// Moves a failed job back to its queue, due now. Its attempts are kept
    /// (rq's rule), so its retry policy is not reset.
    pub(crate) fn requeue(&self, id: &str, now: u64) -> Result<()> {
        self.settle()?;
        self.move_job(
            id,
            now,
            Move {
                action: "requeue",
                from: &[Class::Failed],
                hint: "; only failed jobs can be requeued",
                to: Class::Ready,
                ended_at: None,
            },
        )
    }

    /// Moves job `id` from class `m.from` to `m.to` at time `now` (the cancel
    /// time, or the due time), refusing jobs in any other class.
    fn move_job(&self, id: &str, now: u64, m: Move) -> Result<()> {
        let _seq = self.seq_lock.read();
        let seq = self.next_seq()?;
        self.tx(|jobs, index| {
            let mut record = get_record(jobs, id)?;
            let key = record.index_key();
            if !m.from.contains(&key.class) {
                return abort(Error::InvalidState {
                    id: id.to_owned(),
                    action: m.action,
                    status: status_of(&key, now),
                    hint: m.hint,
                });
            }
            index.remove(&record.key[..])?;
            record.ended_at = m.ended_at;
            record.key = IndexKey::new(key.queue, m.to, now, seq).encode();
            write(jobs, index, &record)?;
            if m.to == Class::Canceled {
                settle_dependents(jobs, index, &record, ParentEnd::Lost("was canceled"), now)?;
            }
            Ok(())
        })?;
        self.signal.notify();
        Ok(())
    }

    /// Asks a running job to stop: its run's context reports it
    /// (`should_stop`), and however the run ends, unless it succeeds, the job
    /// is `STOPPED` and never retried. The request is stored, so a run lost
    /// with the process is stopped too, not retried.
    pub(crate) fn stop(&self, id: &str, now: u64) -> Result<()> {
        self.settle()?;
        let token = self.tx(|jobs, _index| {
            let mut record = get_record(jobs, id)?;
            let key = record.index_key();
            if key.class != Class::Started {
                return abort(Error::InvalidState {
                    id: id.to_owned(),
                    action: "stop",
                    status: status_of(&key, now),
                    hint: "; only started jobs can be stopped (cancel a waiting job with `cancel`)",
                });
            }
            record.stop_requested = true;
            jobs.insert(record.id.as_bytes(), encode_record(&record))?;
            Ok(record.token)
        })?;
        self.stops.lock().insert((id.to_owned(), token));
        Ok(())
    }

    /// Whether `stop` was called on this run.
    pub(crate) fn stop_requested(&self, id: &str, token: u64) -> bool {
        self.stops.lock().contains(&(id.to_owned(), token))
    }

    /// Sets `key` in a job's `meta` object to `value` (JSON), leaving the
    /// other keys as they are; `None` removes the key. One transaction, so
    /// concurrent updates of different keys do not clobber each other.
    pub(crate) fn update_meta(&self, id: &str, key: &str, value: Option<&[u8]>) -> Result<()> {
        self.settle()?;
        let value: Option<serde_json::Value> = match value {
            Some(v) => Some(super::codec::decode_json(v, "meta value")?),
            None => None,
        };
        self.tx(|jobs, _index| {
            let mut record = get_record(jobs, id)?;
            let mut meta: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&record.meta).unwrap_or_default();
            match &value {
                Some(v) => meta.insert(key.to_owned(), v.clone()),
                None => meta.remove(key),
            };
            record.meta = serde_json::to_vec(&meta).map_err(|e| {
                ConflictableTransactionError::Abort(Error::Encode {
                    what: "meta",
                    detail: e.to_string(),
                })
            })?;
            jobs.insert(record.id.as_bytes(), encode_record(&record))?;
            Ok(())
        })
    }

    /// Removes a job in any state. A running job's run goes on, but its
    /// outcome is fenced off. Dependents of a job that had not finished are
    /// canceled (unless they allow failure).
    pub(crate) fn delete(&self, id: &str, now: u64) -> Result<()> {
        self.settle()?;
        self.tx(|jobs, index| {
            let record = get_record(jobs, id)?;
            index.remove(&record.key[..])?;
            jobs.remove(id.as_bytes())?;
            if pending(record.index_key().class) {
                settle_dependents(jobs, index, &record, ParentEnd::Lost("was deleted"), now)?;
            }
            Ok(())
        })?;
        self.signal.notify();
        self.quarantine.remove(id)?;
        Ok(())
    }

    /// Resolves every `STARTED` job. Called at open, where no run can be
    /// alive (sled admits one process per store). A job whose run started
    /// (its token has a line in the run journal) is an abandoned run: a
    /// failed attempt, and the retry policy decides. A job claimed but never
    /// started (no line: it was waiting in a worker's prefetch buffer) goes
    /// back to `READY` with its attempt uncounted, due at its claim time
    /// with a fresh sequence number: it keeps its place before every job due
    /// later, but goes behind jobs due at the same millisecond it was
    /// claimed. Returns how many runs were recovered as abandoned.
    pub(crate) fn recover_all(&self, now: u64) -> Result<usize> {
        // No settle: a job in the intake is queued and was never started,
        // so nothing here concerns it, and an open after a crash need not
        // move a large intake before it returns.
        let started: std::collections::HashSet<u64> =
            self.journal.read()?.iter().map(|s| s.token).collect();
        let mut recovered = 0;
        let queues: Vec<u32> = self.queue_names.read().keys().copied().collect();
        for queue in queues {
            let range = IndexKey::range_start(queue, Class::Started)
                ..=IndexKey::range_end(queue, Class::Started, u64::MAX);
            let keys: Vec<(sled::IVec, sled::IVec)> = self
                .trees
                .index
                .range(range)
                .collect::<std::result::Result<_, _>>()?;
            for (key_bytes, id) in keys {
                let seq_guard = self.seq_lock.read();
                let seq = self.next_seq()?;
                let done = self.tx(|jobs, index| {
                    let Some(mut record) = decode_in_tx(jobs, &id)? else {
                        return Ok(None);
                    };
                    if record.key[..] != key_bytes[..] {
                        return Ok(Some(false));
                    }
                    index.remove(&key_bytes[..])?;
                    if !started.contains(&record.token) {
                        unclaim(&mut record, now, seq);
                        write(jobs, index, &record)?;
                        return Ok(Some(false));
                    }
                    record.push_history(
                        AttemptLog::new(record.attempts, record.started_at.unwrap_or(now), now)
                            .failed(ABANDONED),
                    );
                    fail_and_write(jobs, index, &mut record, ABANDONED, now, seq)?;
                    Ok(Some(true))
                })?;
                drop(seq_guard);
                match done {
                    Some(done) => recovered += usize::from(done),
                    None => self.quarantine_entry(&key_bytes, &id, now)?,
                }
            }
        }
        if recovered > 0 {
            self.signal.notify();
        }
        Ok(recovered)
    }

    /// Deletes finished, failed and stopped jobs whose TTL has passed, and
    /// cancels deferred jobs whose `ttl` ran out. Returns how many jobs were
    /// deleted, and the deferred jobs canceled.
    pub(crate) fn expire(&self, now: u64) -> Result<(usize, Vec<Moved>)> {
        // No settle: a job in the intake is queued and was never started,
        // so nothing here concerns it, and an open after a crash need not
        // move a large intake before it returns.
        let mut removed = 0;
        let mut discarded = Vec::new();
        let queues: Vec<u32> = self.queue_names.read().keys().copied().collect();
        for queue in queues {
            for class in [Class::Finished, Class::Failed, Class::Stopped] {
                removed += self.delete_range(queue, class, now)?;
            }
            discarded.extend(self.discard_deferred(queue, now)?);
        }
        Ok((removed, discarded))
    }

    /// Cancels the deferred jobs of `queue` whose `ttl` ran out by `now`
    /// (their `DEFERRED` key's time is that expiry), in transactions of a
    /// few hundred.
    fn discard_deferred(&self, queue: u32, now: u64) -> Result<Vec<Moved>> {
        const CHUNK: usize = 256;
        let mut discarded = Vec::new();
        loop {
            let keys: Vec<(sled::IVec, sled::IVec)> = self
                .range(queue, Class::Deferred, 0, now)
                .take(CHUNK)
                .collect::<std::result::Result<_, _>>()?;
            if keys.is_empty() {
                break;
            }
            let n = keys.len();
            discarded.extend(self.tx(|jobs, index| {
                let mut moved = Vec::new();
                for (key, id) in &keys {
                    let Some(mut record) = decode_in_tx(jobs, id)? else {
                        // An orphan entry: remove it, so the loop ends.
                        index.remove(key)?;
                        continue;
                    };
                    if record.key[..] == key[..] {
                        discard_expired(jobs, index, &mut record, now)?;
                        moved.push(Moved::of(&record));
                    } else if index.get(key)?.as_deref() == Some(&id[..]) {
                        index.remove(key)?;
                    }
                }
                Ok(moved)
            })?);
            if n < CHUNK {
                break;
            }
        }
        if !discarded.is_empty() {
            self.signal.notify();
        }
        Ok(discarded)
    }

    /// Deletes the jobs of `(queue, class)` with `time <= up_to`, in
    /// transactions of a few hundred. Returns how many were deleted.
    ///
    /// Keys are read outside the transactions and re-checked inside: an
    /// entry that moved meanwhile is left alone; an entry whose record is
    /// missing or names another key is an orphan and only it is removed. Each
    /// chunk so removes every entry it read, so the loop always ends.
    fn delete_range(&self, queue: u32, class: Class, up_to: u64) -> Result<usize> {
        const CHUNK: usize = 256;
        let mut removed = 0;
        loop {
            let keys: Vec<(sled::IVec, sled::IVec)> = self
                .range(queue, class, 0, up_to)
                .take(CHUNK)
                .collect::<std::result::Result<_, _>>()?;
            if keys.is_empty() {
                return Ok(removed);
            }
            let n = keys.len();
            removed += self.tx(|jobs, index| {
                let mut removed = 0;
                for (key, id) in &keys {
                    if index.get(key)?.as_deref() != Some(&id[..]) {
                        continue; // moved since the range read
                    }
                    index.remove(key)?;
                    let (owned, record) = match jobs.get(id)? {
                        Some(raw) => match decode_record(id, &raw) {
                            Ok(r) => (r.key[..] == key[..], Some(r)),
                            Err(_) => (true, None),
                        },
                        None => (false, None),
                    };
                    if owned {
                        jobs.remove(id)?;
                        removed += 1;
                        if let Some(r) = record.filter(|_| pending(class)) {
                            settle_dependents(
                                jobs,
                                index,
                                &r,
                                ParentEnd::Lost("was deleted"),
                                up_to,
                            )?;
                        }
                    }
                }
                Ok(removed)
            })?;
            if n < CHUNK {
                return Ok(removed);
            }
        }
    }

    /// Writes imported jobs in one transaction. Each keeps its exported
    /// sequence number where that key is free here (so jobs due at the same
    /// instant keep their order), else gets a fresh one.
    pub(crate) fn import(&self, jobs_in: Vec<(JobRecord, ExportedKey)>) -> Result<()> {
        if jobs_in.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = jobs_in.iter().map(|(r, _)| r.queue.as_str()).collect();
        let plan = self.plan_queues(&names);
        // Exclusive: no other transition may allocate a sequence number
        // below the imported ones while the offset is raised.
        let _seq = self.seq_lock.write();
        // Jobs in the intake hold sequence numbers: in place first, so that
        // the collision checks below see them.
        self.settle()?;
        let max_seq = jobs_in.iter().map(|(_, k)| k.seq).max().unwrap_or(0);
        let offset = self.seq_offset.load(Ordering::SeqCst);
        let next = self.next_seq()?;
        let new_offset = if next <= max_seq {
            offset.saturating_add(max_seq - next).saturating_add(1)
        } else {
            offset
        };
        let mut prepared = Vec::with_capacity(jobs_in.len());
        for (record, key) in jobs_in {
            let queue = plan.id(&record.queue);
            prepared.push((record, queue, key));
        }
        // Sequence numbers for imported keys that are taken here: above the
        // new offset, so they collide with nothing either.
        self.seq_offset.store(new_offset, Ordering::SeqCst);
        let fresh: Vec<u64> = prepared
            .iter()
            .map(|_| self.next_seq())
            .collect::<Result<_>>()?;
        let trees = &self.trees;
        let res = (&trees.jobs, &trees.index, &trees.queues, &trees.meta).transaction(
            |(jobs, index, queues, meta)| {
                for (name, id) in &plan.new {
                    queues.insert(name.as_bytes(), &id.to_be_bytes())?;
                }
                meta.insert(SEQ_OFFSET, &new_offset.to_be_bytes())?;
                for ((record, queue, key), fresh) in prepared.iter().zip(&fresh) {
                    let mut record = record.clone();
                    let mut k = IndexKey::new(*queue, key.class, key.time, key.seq).encode();
                    if index.get(&k[..])?.is_some() {
                        k = IndexKey::new(*queue, key.class, key.time, *fresh).encode();
                    }
                    record.key = k;
                    if jobs.get(record.id.as_bytes())?.is_some() {
                        return abort(Error::DuplicateJobId { id: record.id });
                    }
                    write(jobs, index, &record)?;
                }
                Ok(())
            },
        );
        if let Err(e) = res {
            // Nothing was written; the raised offset in memory is harmless
            // (sequence numbers only need to grow).
            return Err(e.into());
        }
        plan.publish();
        self.signal.notify();
        Ok(())
    }

    // ----------------------------------------------------------------- reads

    /// Every job record, in id order; an inner error for one that does not
    /// decode.
    pub(crate) fn records(&self) -> impl Iterator<Item = Result<Result<JobRecord>>> + '_ {
        self.trees.jobs.iter().map(|item| {
            let (id, raw) = item?;
            Ok(decode_record(&id, &raw))
        })
    }

    pub(crate) fn get(&self, id: &str) -> Result<Option<JobRecord>> {
        self.settle()?;
        match self.trees.jobs.get(id)? {
            Some(raw) => decode_record(id.as_bytes(), &raw).map(Some),
            None => Ok(None),
        }
    }

    /// Index entries of `(queue, class)` with `lo <= time <= hi`.
    fn range(
        &self,
        queue: u32,
        class: Class,
        lo: u64,
        hi: u64,
    ) -> impl DoubleEndedIterator<Item = sled::Result<(sled::IVec, sled::IVec)>> {
        self.trees.index.range(
            IndexKey::new(queue, class, lo, 0).encode()..=IndexKey::range_end(queue, class, hi),
        )
    }

    pub(crate) fn count(&self, queue: u32, class: Class, lo: u64, hi: u64) -> Result<usize> {
        self.settle()?;
        let mut n = 0;
        for item in self.range(queue, class, lo, hi) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    pub(crate) fn ids(
        &self,
        queue: u32,
        class: Class,
        lo: u64,
        hi: u64,
        limit: usize,
    ) -> Result<Vec<String>> {
        self.settle()?;
        self.range(queue, class, lo, hi)
            .take(limit)
            .map(|item| {
                let (_, id) = item?;
                Ok(String::from_utf8_lossy(&id).into_owned())
            })
            .collect()
    }

    /// The earliest time at which something in `queues` needs a dispatcher
    /// with `max` free claims: a `READY` job becoming due, a lease lapsing,
    /// or the `ttl` of a job a concurrency limit holds back running out.
    ///
    /// A due job whose limit key is at its limit is not a reason to wake:
    /// the round that found it could not claim it, and nothing changes that
    /// until a run of its key ends, which wakes the dispatcher anyway
    /// (`signal`). Waking for it would be a busy loop: its due time is past.
    /// The scan stops where a round stops reading (`max` entries plus
    /// `LIMIT_SCAN` past held-back ones, over the queues in order), so a
    /// claimable job a round cannot reach is no reason to wake either.
    pub(crate) fn next_wake(
        &self,
        queues: &[u32],
        max: usize,
        now: u64,
        policy: &ClaimPolicy,
    ) -> Result<Option<u64>> {
        // The dispatcher's own read: the intake only. Jobs claimed in memory
        // (`pending`) still have their due `READY` keys; they are running,
        // no reason to wake.
        self.settle_intake()?;
        let pending: std::collections::HashSet<String> =
            self.pending.lock().iter().map(|p| p.id.clone()).collect();
        let mut next: Option<u64> = None;
        let mut earliest = |time: u64| next = Some(next.map_or(time, |n: u64| n.min(time)));
        let budget = max.saturating_add(LIMIT_SCAN);
        let running = self.limit_running.lock().clone();
        let held = |limit: &Limit| {
            let cap = policy
                .concurrency
                .get(&limit.key)
                .map_or(limit.max, |&w| w.min(limit.max));
            running.get(&limit.key).copied().unwrap_or(0) >= cap
        };
        let mut read = 0usize;
        for &queue in queues {
            if let Some(item) = self.range(queue, Class::Started, 0, u64::MAX).next() {
                let (key, _) = item?;
                earliest(IndexKey::decode(&key)?.time);
            }
            let mut scanned = 0usize;
            let mut reachable = read < budget || policy.round_robin;
            for item in self.range(queue, Class::Ready, 0, u64::MAX) {
                if !reachable {
                    break;
                }
                let (key, id) = item?;
                let time = IndexKey::decode(&key)?.time;
                if time > now {
                    earliest(time);
                    break;
                }
                if std::str::from_utf8(&id).is_ok_and(|id| pending.contains(id)) {
                    continue;
                }
                scanned += 1;
                reachable = scanned < budget;
                let record = match self.trees.jobs.get(&id)? {
                    Some(raw) => decode_record(&id, &raw).ok(),
                    None => None,
                };
                match record {
                    Some(r) if r.limit.as_ref().is_some_and(&held) => {
                        // Held back: its ttl may still discard it.
                        if let Some(t) = r.expires_at {
                            earliest(t);
                        }
                    }
                    // Claimable (or an entry the round will clean up).
                    _ => {
                        earliest(time);
                        break;
                    }
                }
            }
            read += scanned;
            if !reachable {
                // A round reads no further: it cannot claim from here before
                // the jobs ahead move (which wakes the dispatcher), so only
                // a job becoming due later matters.
                if let Some(item) = self
                    .range(queue, Class::Ready, now.saturating_add(1), u64::MAX)
                    .next()
                {
                    let (key, _) = item?;
                    earliest(IndexKey::decode(&key)?.time);
                }
            }
        }
        Ok(next)
    }

    /// The ids the run journal names: at open, before recovery, the jobs
    /// whose runs the last session started and may have lost.
    pub(crate) fn journal_ids(&self) -> Result<Vec<String>> {
        Ok(self.journal.read()?.into_iter().map(|s| s.id).collect())
    }

    /// The earliest expiry among finished, failed and stopped jobs, and the
    /// earliest `ttl` of a deferred job.
    pub(crate) fn next_expiry(&self) -> Result<Option<u64>> {
        // The dispatcher's own reads: claims pending from its last round
        // show as due `READY` jobs, which wakes it for the round that
        // writes them.
        self.settle_intake()?;
        let mut next: Option<u64> = None;
        for &queue in self.queue_names.read().keys() {
            for class in [
                Class::Finished,
                Class::Failed,
                Class::Stopped,
                Class::Deferred,
            ] {
                if let Some(item) = self.range(queue, class, 0, u64::MAX - 1).next() {
                    let (key, _) = item?;
                    let time = IndexKey::decode(&key)?.time;
                    next = Some(next.map_or(time, |n| n.min(time)));
                }
            }
        }
        Ok(next)
    }

    /// Removes every waiting job of a queue that is due by `now` (rq's
    /// `Queue.empty`). Returns how many.
    pub(crate) fn empty(&self, queue: u32, now: u64) -> Result<usize> {
        self.settle()?;
        self.delete_range(queue, Class::Ready, now)
    }

    /// The raw bytes of a quarantined (undecodable) record.
    pub(crate) fn quarantined(&self, id: &str) -> Result<Option<Vec<u8>>> {
        self.settle()?;
        Ok(self.quarantine.get(id)?.map(|v| v.to_vec()))
    }
}

/// The status a job with this index key shows at `now`.
pub(crate) fn status_of(key: &IndexKey, now: u64) -> crate::Status {
    use crate::Status;
    match key.class {
        Class::Ready if key.time <= now => Status::Queued,
        Class::Ready => Status::Scheduled,
        Class::Started => Status::Started,
        Class::Finished => Status::Finished,
        Class::Failed => Status::Failed,
        Class::Canceled => Status::Canceled,
        Class::Deferred => Status::Deferred,
        Class::Stopped => Status::Stopped,
    }
}

fn expiry(now: u64, ttl_ms: u64) -> u64 {
    if ttl_ms == u64::MAX {
        u64::MAX
    } else {
        now.saturating_add(ttl_ms).min(u64::MAX - 1)
    }
}

/// Applies a failed attempt: back to `READY` after the policy's wait if
/// retries are left, else to `FAILED` (or `STOPPED`, if `job.stop()` asked
/// for it: a stopped job is never retried). `record.attempts` is the run
/// that failed. Returns how the job ended, if it did: the caller settles its
/// dependents in the same transaction.
fn fail_attempt(record: &mut JobRecord, message: &str, now: u64, seq: u64) -> Option<ParentEnd> {
    let key = record.index_key();
    record.error = Some(message.to_owned());
    record.ended_at = Some(now);
    if record.stop_requested {
        record.stop_requested = false;
        record.key = IndexKey::new(
            key.queue,
            Class::Stopped,
            expiry(now, record.failure_ttl_ms),
            seq,
        )
        .encode();
        return Some(ParentEnd::Lost("was stopped"));
    }
    let retry = record.retry_number(); // the k-th failed run asks for retry k
    let due = match &record.retry {
        Some(policy) if retry >= 1 && retry <= policy.max_retries() => {
            let wait = policy.wait_with_seed(retry, seed(&record.id));
            Some(now.saturating_add(crate::clock::dur_ms(wait)))
        }
        _ => None,
    };
    match due {
        Some(due) => {
            if let Some(last) = record.history.last_mut() {
                last.retry_at = Some(due);
            }
            record.key = IndexKey::new(key.queue, Class::Ready, due, seq).encode();
            None
        }
        None => {
            record.key = IndexKey::new(
                key.queue,
                Class::Failed,
                expiry(now, record.failure_ttl_ms),
                seq,
            )
            .encode();
            Some(ParentEnd::Lost("failed"))
        }
    }
}

/// `fail_attempt`, then the write and the dependents.
fn fail_and_write(
    jobs: &TransactionalTree,
    index: &TransactionalTree,
    record: &mut JobRecord,
    message: &str,
    now: u64,
    seq: u64,
) -> TxResult<()> {
    let end = fail_attempt(record, message, now, seq);
    write(jobs, index, record)?;
    if let Some(end) = end {
        settle_dependents(jobs, index, record, end, now)?;
    }
    Ok(())
}

/// Undoes the claim of a run that never started, found at open: back to
/// `READY`, due at the claim time, attempt uncounted. The times before the
/// claim are not kept in the record; those of the last attempt are the
/// times it had then (except after a requeue, which clears `ended_at`).
fn unclaim(record: &mut JobRecord, now: u64, seq: u64) {
    let key = record.index_key();
    let due = record.started_at.unwrap_or(now);
    record.attempts = record.attempts.saturating_sub(1);
    let last = record
        .history
        .last()
        .filter(|a| a.attempt == record.attempts);
    record.started_at = last.map(|a| a.started_at);
    record.ended_at = last.map(|a| a.ended_at);
    record.key = IndexKey::new(key.queue, Class::Ready, due, seq).encode();
}

/// A stable per-job seed for retry jitter (FNV-1a of the id).
fn seed(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Writes a run's outcome and returns the class the job went to; `None` if
/// the run was fenced and nothing was written.
/// Writes a run's outcome. `claimed` is the job's record as its claim
/// left it, when that claim was made in memory and not written (see
/// `claim_for_outcome`); otherwise the record is read.
fn apply_outcome(
    jobs: &TransactionalTree,
    index: &TransactionalTree,
    done: &Done,
    claimed: Option<JobRecord>,
    seq: u64,
) -> TxResult<Option<Class>> {
    let now = done.ended_at;
    let record = match claimed {
        Some(record) => Some(record),
        None => running(jobs, &done.id, done.token)?,
    };
    let Some(mut record) = record else {
        return Ok(None);
    };
    let key = record.index_key();
    index.remove(&record.key[..])?;
    let mut log = AttemptLog::new(record.attempts, record.started_at.unwrap_or(now), now);
    log.thread = done.thread.clone();
    record.ended_at = Some(now);
    match &done.outcome {
        Outcome::Success(value) => {
            log.result = Some(value.clone());
            record.push_history(log);
            record.result = Some(value.clone());
            // A repeating job runs again unless it was asked to stop.
            if let Some(repeat) = record.repeat.clone() {
                if !record.stop_requested && record.repeats_done < repeat.count() {
                    record.repeats_done += 1;
                    record.attempt_base = record.attempts;
                    let wait = crate::clock::dur_ms(repeat.wait(record.repeats_done));
                    let due = now.saturating_add(wait);
                    record.due = due;
                    record.key = IndexKey::new(key.queue, Class::Ready, due, seq).encode();
                    write(jobs, index, &record)?;
                    return Ok(Some(Class::Ready));
                }
            }
            record.stop_requested = false;
            settle_dependents(jobs, index, &record, ParentEnd::Finished, now)?;
            if record.result_ttl_ms == 0 {
                jobs.remove(done.id.as_bytes())?;
                return Ok(Some(Class::Finished));
            }
            record.key = IndexKey::new(
                key.queue,
                Class::Finished,
                expiry(now, record.result_ttl_ms),
                seq,
            )
            .encode();
            write(jobs, index, &record)?;
        }
        Outcome::Failure(message) => {
            record.push_history(log.failed(message.clone()));
            if done.final_attempt {
                // No retry number is allowed for this failure; the policy
                // stays as it was for a later requeue.
                let base = std::mem::replace(&mut record.attempt_base, u32::MAX);
                let end = fail_attempt(&mut record, message, now, seq);
                record.attempt_base = base;
                write(jobs, index, &record)?;
                if let Some(end) = end {
                    settle_dependents(jobs, index, &record, end, now)?;
                }
            } else {
                fail_and_write(jobs, index, &mut record, message, now, seq)?;
            }
        }
    }
    Ok(Some(record.index_key().class))
}

/// Claims a `READY` record (its index entry already removed): a new run with
/// lease token `token`, `STARTED` until its lease expires.
fn claim(
    jobs: &TransactionalTree,
    index: &TransactionalTree,
    record: &mut JobRecord,
    token: u64,
    seq: u64,
    lease_ms: u64,
    now: u64,
) -> TxResult<Claimed> {
    let run = claim_in_memory(record, token, seq, lease_ms, now);
    write(jobs, index, record)?;
    Ok(run)
}

/// Turns a `READY` record into its claimed (`STARTED`) form, without
/// writing it.
fn claim_in_memory(
    record: &mut JobRecord,
    token: u64,
    seq: u64,
    lease_ms: u64,
    now: u64,
) -> Claimed {
    let key = record.index_key();
    let (prev_started_at, prev_ended_at) = (record.started_at, record.ended_at);
    record.attempts = record.attempts.saturating_add(1);
    record.token = token;
    record.started_at = Some(now);
    record.ended_at = None;
    record.key =
        IndexKey::new(key.queue, Class::Started, now.saturating_add(lease_ms), seq).encode();
    Claimed {
        id: record.id.clone(),
        queue: record.queue.clone(),
        handler: record.handler.clone(),
        args: record.args.clone(),
        attempt: record.attempts,
        token,
        from_time: key.time,
        from_seq: key.seq,
        prev_started_at,
        prev_ended_at,
        timeout_ms: record.timeout_ms,
        callbacks: record.callbacks.clone(),
        limit: record.limit.clone(),
    }
}

/// A claim made in memory by a round and not written yet: what writing it
/// needs, exactly as the round decided it.
#[derive(Debug)]
pub(super) struct PendingClaim {
    id: String,
    token: u64,
    /// The sequence number of its `STARTED` key.
    seq: u64,
    lease_ms: u64,
    /// When it was claimed (store clock, ms).
    at: u64,
    /// The `READY` key it was claimed from.
    from_time: u64,
    from_seq: u64,
    attempt: u32,
}

/// Writes a pending claim: the job moves from its `READY` key to `STARTED`
/// as the round that claimed it decided. A job that is no longer where it
/// was claimed from (nothing that changes a job runs before pending claims
/// are written, so this is a guard) is left alone, and its run's outcome is
/// then fenced like any run whose lease was lost.
fn write_claim(
    jobs: &TransactionalTree,
    index: &TransactionalTree,
    p: &PendingClaim,
) -> TxResult<()> {
    if let Some(record) = claim_for_outcome(jobs, index, p)? {
        write(jobs, index, &record)?;
    }
    Ok(())
}

/// Moves a `STARTED` job's key to a lease lapsing `lease_ms` after `now`.
/// The caller removed nothing yet.
fn renew_lease(
    jobs: &TransactionalTree,
    index: &TransactionalTree,
    record: &mut JobRecord,
    lease_ms: u64,
    now: u64,
) -> TxResult<()> {
    let key = record.index_key();
    index.remove(&record.key[..])?;
    record.key = IndexKey::new(
        key.queue,
        Class::Started,
        now.saturating_add(lease_ms),
        key.seq,
    )
    .encode();
    write(jobs, index, record)
}

/// Applies a pending claim to the job's record in memory and removes its
/// `READY` key: the record is `STARTED` with the run's token, not written
/// (its `STARTED` key is not in the index). `None` if the job is no longer
/// where it was claimed from (then the run's outcome is fenced).
fn claim_for_outcome(
    jobs: &TransactionalTree,
    index: &TransactionalTree,
    p: &PendingClaim,
) -> TxResult<Option<JobRecord>> {
    let Some(mut record) = decode_in_tx(jobs, p.id.as_bytes())? else {
        return Ok(None);
    };
    let key = record.index_key();
    if key.class != Class::Ready
        || key.time != p.from_time
        || key.seq != p.from_seq
        || record.attempts.saturating_add(1) != p.attempt
    {
        return Ok(None);
    }
    index.remove(&record.key[..])?;
    claim_in_memory(&mut record, p.token, p.seq, p.lease_ms, p.at);
    Ok(Some(record))
}

/// The record of a job being enqueued, `READY` (`link_parents` may defer it
/// inside the transaction).
pub(super) fn new_record(job: NewJob, queue: u32, seq: u64, now: u64) -> JobRecord {
    let key = ready_key(queue, job.due, seq, job.at_front && job.due <= now);
    let mut r = JobRecord::new(job.id, job.queue, job.handler, job.args, key, now);
    r.description = job.description;
    r.retry = job.retry;
    r.result_ttl_ms = job.result_ttl_ms;
    r.failure_ttl_ms = job.failure_ttl_ms;
    r.meta = job.meta;
    r.timeout_ms = job.timeout_ms;
    r.expires_at = job.ttl_ms.map(|t| now.saturating_add(t).min(u64::MAX - 1));
    r.due = job.due;
    r.at_front = job.at_front;
    r.waiting_on = job.depends_on;
    r.callbacks = job.callbacks;
    r.repeat = job.repeat;
    r.limit = job.limit;
    r
}

/// The `READY` key of a job due at `due`. A job queued `at_front` sorts
/// before every other queued job (time 0), the latest first, as rq's
/// `at_front` pushes on the head of its list.
fn ready_key(queue: u32, due: u64, seq: u64, at_front: bool) -> IndexKey {
    if at_front {
        IndexKey::new(queue, Class::Ready, 0, u64::MAX - seq)
    } else {
        IndexKey::new(queue, Class::Ready, due, seq)
    }
}

/// Moves a waiting job whose `ttl` ran out to the canceled registry, with
/// the reason, and settles its dependents. The caller removed nothing yet.
fn discard_expired(
    jobs: &TransactionalTree,
    index: &TransactionalTree,
    record: &mut JobRecord,
    now: u64,
) -> TxResult<()> {
    let key = record.index_key();
    index.remove(&record.key[..])?;
    let waited = now.saturating_sub(record.enqueued_at);
    record.error = Some(format!(
        "expired: its ttl ran out after it waited {waited} ms without starting"
    ));
    record.ended_at = Some(now);
    record.key = IndexKey::new(key.queue, Class::Canceled, now, key.seq).encode();
    write(jobs, index, record)?;
    settle_dependents(jobs, index, record, ParentEnd::Lost("expired"), now)?;
    Ok(())
}

/// Whether a job in `class` has not finished yet (its dependents wait).
fn pending(class: Class) -> bool {
    matches!(class, Class::Ready | Class::Started | Class::Deferred)
}

/// How a parent ended, for its dependents.
#[derive(Debug, Clone, Copy)]
enum ParentEnd {
    Finished,
    /// The parent will not finish: it failed, was stopped, canceled or
    /// deleted (the text says which, after "which").
    Lost(&'static str),
}

/// Resolves a new job's `waiting_on` against its parents, inside the
/// enqueue transaction: finished parents drop out, unfinished ones learn of
/// their new dependent, and a lost parent cancels the job (unless it allows
/// failure). Leaves `record.key` `DEFERRED` if parents remain, canceled if a
/// parent was lost, and as it was (`READY`) otherwise.
fn link_parents(jobs: &TransactionalTree, record: &mut JobRecord, now: u64) -> TxResult<()> {
    if record.waiting_on.is_empty() {
        return Ok(());
    }
    let key = record.index_key();
    let mut waiting = Vec::new();
    let mut lost: Option<String> = None;
    for dep in std::mem::take(&mut record.waiting_on) {
        if dep.id == record.id {
            return abort(Error::InvalidArgument {
                what: "depends_on",
                reason: format!("job {:?} cannot depend on itself", record.id),
            });
        }
        let Some(raw) = jobs.get(dep.id.as_bytes())? else {
            return abort(Error::InvalidArgument {
                what: "depends_on",
                reason: format!(
                    "job {:?} depends on job {:?}, which does not exist (never enqueued, \
                     deleted, or expired after its result_ttl); enqueue the parent first",
                    record.id, dep.id
                ),
            });
        };
        let mut parent = match decode_record(dep.id.as_bytes(), &raw) {
            Ok(p) => p,
            Err(e) => return abort(e),
        };
        match parent.index_key().class {
            Class::Finished => {}
            Class::Failed | Class::Canceled | Class::Stopped => {
                if !dep.allow_failure && lost.is_none() {
                    let how = status_of(&parent.index_key(), now);
                    lost = Some(format!("{}is {how}", lost_parent_reason(&dep.id)));
                }
            }
            Class::Ready | Class::Started | Class::Deferred => {
                parent.dependents.push(record.id.clone());
                jobs.insert(parent.id.as_bytes(), encode_record(&parent))?;
                waiting.push(dep);
            }
        }
    }
    if let Some(reason) = lost {
        record.error = Some(reason);
        record.ended_at = Some(now);
        record.key = IndexKey::new(key.queue, Class::Canceled, now, key.seq).encode();
    } else if !waiting.is_empty() {
        record.waiting_on = waiting;
        record.key = deferred_key(key.queue, record.expires_at, key.seq).encode();
    }
    Ok(())
}

fn deferred_key(queue: u32, expires_at: Option<u64>, seq: u64) -> IndexKey {
    IndexKey::new(queue, Class::Deferred, expires_at.unwrap_or(u64::MAX), seq)
}

/// Tells the dependents of `parent` (which just finished or was lost) and,
/// for dependents canceled by a lost parent, their dependents in turn. A
/// dependent whose last parent finished is queued. Runs inside the
/// transaction of the parent's own transition, so a crash never strands
/// dependents. Returns how many jobs it queued or canceled.
fn settle_dependents(
    jobs: &TransactionalTree,
    index: &TransactionalTree,
    parent: &JobRecord,
    end: ParentEnd,
    now: u64,
) -> TxResult<usize> {
    let mut work = vec![(parent.id.clone(), parent.dependents.clone(), end)];
    let mut moved = 0;
    while let Some((parent_id, dependents, end)) = work.pop() {
        for child_id in dependents {
            let Some(mut child) = decode_in_tx(jobs, child_id.as_bytes())? else {
                continue; // deleted since
            };
            let key = child.index_key();
            if key.class != Class::Deferred {
                continue;
            }
            let Some(pos) = child.waiting_on.iter().position(|d| d.id == parent_id) else {
                continue; // a job re-created under the same id
            };
            let dep = child.waiting_on.remove(pos);
            if let ParentEnd::Lost(how) = end {
                if !dep.allow_failure {
                    index.remove(&child.key[..])?;
                    child.error = Some(format!("{}{how}", lost_parent_reason(&parent_id)));
                    child.ended_at = Some(now);
                    child.key = IndexKey::new(key.queue, Class::Canceled, now, key.seq).encode();
                    write(jobs, index, &child)?;
                    moved += 1;
                    work.push((
                        child.id.clone(),
                        child.dependents.clone(),
                        ParentEnd::Lost("was canceled"),
                    ));
                    continue;
                }
            }
            if child.waiting_on.is_empty() {
                index.remove(&child.key[..])?;
                let due = child.due.max(now);
                child.key =
                    ready_key(key.queue, due, key.seq, child.at_front && due <= now).encode();
                moved += 1;
            }
            write(jobs, index, &child)?;
        }
    }
    Ok(moved)
}

/// Whether the journal's run start is a run whose claim was lost: the job is
/// still in the very `READY` key it was claimed from, with fewer attempts.
fn lost_claim(record: &JobRecord, start: &super::journal::RunStart) -> bool {
    let key = record.index_key();
    key.class == Class::Ready && key.seq == start.from_seq && record.attempts < start.attempt
}

/// The decoded record, or `None` if it is missing or does not decode.
fn decode_in_tx(
    jobs: &TransactionalTree,
    id: &[u8],
) -> std::result::Result<Option<JobRecord>, UnabortableTransactionError> {
    Ok(jobs.get(id)?.and_then(|raw| decode_record(id, &raw).ok()))
}

pub(super) fn write(
    jobs: &TransactionalTree,
    index: &TransactionalTree,
    record: &JobRecord,
) -> TxResult<()> {
    jobs.insert(record.id.as_bytes(), encode_record(record))?;
    index_insert(index, &record.key, &record.id)
}

/// Inserts an index entry, refusing to overwrite another job's: that would
/// strand the other job (its record would name a key that is not its own).
/// Sequence numbers make keys unique, so this is a guard, not a path.
fn index_insert(index: &TransactionalTree, key: &[u8], id: &str) -> TxResult<()> {
    if let Some(old) = index.insert(key, id.as_bytes())? {
        if old != id.as_bytes() {
            return abort(Error::corrupt(
                format!("index key {key:02x?}"),
                format!(
                    "it already belongs to job {:?}; nothing was written",
                    String::from_utf8_lossy(&old)
                ),
            ));
        }
    }
    Ok(())
}

fn get_record(jobs: &TransactionalTree, id: &str) -> TxResult<JobRecord> {
    match jobs.get(id.as_bytes())? {
        Some(raw) => match decode_record(id.as_bytes(), &raw) {
            Ok(r) => Ok(r),
            Err(e) => abort(e),
        },
        None => abort(Error::NoSuchJob { id: id.to_owned() }),
    }
}

/// The record of a run that still holds its lease, or `None` if the run was
/// fenced (superseded, recovered, canceled, deleted or finished).
fn running(
    jobs: &TransactionalTree,
    id: &str,
    token: u64,
) -> std::result::Result<Option<JobRecord>, UnabortableTransactionError> {
    let Some(raw) = jobs.get(id.as_bytes())? else {
        return Ok(None);
    };
    let Ok(record) = decode_record(id.as_bytes(), &raw) else {
        return Ok(None);
    };
    let live = record.token == token && record.index_key().class == Class::Started;
    Ok(live.then_some(record))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::engine) const NOW: u64 = 1_000_000;
    const LEASE_MS: u64 = 60_000;

    pub(in crate::engine) fn open(path: &Path) -> Engine {
        let opts = OpenOptions {
            cache_capacity: 8 << 20,
            flush_every_ms: Some(500),
        };
        // sled releases its lock from a background thread after the last
        // handle drops (spacejam/sled#1289).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match Engine::open(path, &opts) {
                Err(Error::StoreInUse { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other => return other.unwrap(),
            }
        }
    }

    pub(in crate::engine) fn job(id: &str) -> NewJob {
        NewJob {
            auto_id: false,
            id: id.to_owned(),
            queue: "default".to_owned(),
            handler: "h".to_owned(),
            args: b"null".to_vec(),
            description: None,
            retry: None,
            result_ttl_ms: u64::MAX,
            failure_ttl_ms: u64::MAX,
            due: NOW,
            meta: b"{}".to_vec(),
            timeout_ms: None,
            ttl_ms: None,
            at_front: false,
            depends_on: Vec::new(),
            callbacks: Callbacks::default(),
            repeat: None,
            limit: None,
        }
    }

    /// Enqueues `ids` (no retries) and claims them all in one round.
    fn enqueue_and_claim(engine: &Engine, ids: &[&str]) -> Vec<Claimed> {
        engine
            .enqueue(ids.iter().map(|id| job(id)).collect(), NOW)
            .unwrap();
        let queue = engine.queue_id("default").unwrap();
        let claimed = engine
            .round(
                &[],
                &[queue],
                ids.len(),
                LEASE_MS,
                NOW,
                &ClaimPolicy::default(),
            )
            .unwrap()
            .claimed;
        let got: Vec<&str> = claimed.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(got, ids);
        claimed
    }

    /// A run's successful outcome.
    fn success(id: &str, token: u64, ended_at: u64) -> Done {
        Done {
            id: id.to_owned(),
            token,
            outcome: Outcome::Success(b"1".to_vec()),
            ended_at,
            thread: None,
            final_attempt: false,
        }
    }

    fn record(engine: &Engine, id: &str) -> JobRecord {
        engine.get(id).unwrap().unwrap()
    }

    /// A crash with runs claimed ahead: the run that started is an
    /// abandoned attempt, also after a journal rewrite; the claims that
    /// never started go back to `READY` uncounted (none of these jobs has a
    /// retry left, so counting them would fail them unrun).
    #[test]
    fn at_open_only_runs_that_started_count_as_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        {
            let engine = open(&path);
            let claimed = enqueue_and_claim(&engine, &["started", "finished", "unstarted"]);
            engine.journal_start(&claimed[0]).unwrap();
            engine.journal_start(&claimed[1]).unwrap();
            // A rewrite while the first run goes on must keep its line.
            engine.rotate_journal(true).unwrap();
            let done = success(&claimed[1].id, claimed[1].token, NOW + 1);
            let report = engine
                .round(&[done], &[], 0, LEASE_MS, NOW + 1, &ClaimPolicy::default())
                .unwrap();
            assert_eq!(report.written, [Some(Class::Finished)]);
            // This rewrite drops the finished run's line (its outcome is
            // flushed first) and keeps the running one's.
            engine.rotate_journal(true).unwrap();
            let lines: Vec<u64> = engine
                .journal
                .read()
                .unwrap()
                .iter()
                .map(|s| s.token)
                .collect();
            assert_eq!(lines, [claimed[0].token]);
            for id in ["started", "unstarted"] {
                assert_eq!(record(&engine, id).index_key().class, Class::Started);
            }
            // The process dies here: no release, no close.
        }
        let engine = open(&path);
        let now = NOW + 10;
        let recovered = engine.replay_journal(now).unwrap() + engine.recover_all(now).unwrap();
        assert_eq!(recovered, 1, "only the run that started is recovered");

        let started = record(&engine, "started");
        assert_eq!(started.index_key().class, Class::Failed);
        assert_eq!(started.attempts, 1);
        assert_eq!(started.error.as_deref(), Some(ABANDONED));

        let unstarted = record(&engine, "unstarted");
        let key = unstarted.index_key();
        assert_eq!(key.class, Class::Ready, "{unstarted:?}");
        assert_eq!(key.time, NOW, "due at its claim time");
        assert_eq!(unstarted.attempts, 0);
        assert!(unstarted.history.is_empty() && unstarted.error.is_none());
        assert_eq!((unstarted.started_at, unstarted.ended_at), (None, None));

        assert_eq!(
            record(&engine, "finished").index_key().class,
            Class::Finished
        );
        // Recovery is done once: a second pass finds nothing.
        assert_eq!(engine.recover_all(now).unwrap(), 0);
    }

    /// The class of a job as stored, without settling first.
    fn stored_class(engine: &Engine, id: &str) -> Class {
        let raw = engine.trees.jobs.get(id).unwrap().unwrap();
        decode_record(id.as_bytes(), &raw)
            .unwrap()
            .index_key()
            .class
    }

    /// Claims are made in memory: the round that records a run's outcome
    /// writes its claim in the same transaction (one write from `READY` to
    /// `FINISHED`), and any read before that writes the claims first.
    #[test]
    fn claims_are_written_with_their_outcome_or_before_any_read() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(&dir.path().join("store"));
        let claimed = enqueue_and_claim(&engine, &["quick", "slow"]);
        assert_eq!(stored_class(&engine, "quick"), Class::Ready);
        assert_eq!(stored_class(&engine, "slow"), Class::Ready);
        let queue = engine.queue_id("default").unwrap();
        let policy = ClaimPolicy::default();
        // Not claimed twice, and no reason for the dispatcher to wake.
        let again = engine.round(&[], &[queue], 5, LEASE_MS, NOW, &policy);
        assert!(again.unwrap().claimed.is_empty());
        assert_eq!(engine.next_wake(&[queue], 5, NOW, &policy).unwrap(), None);

        let done = success("quick", claimed[0].token, NOW + 1);
        let report = engine
            .round(&[done], &[queue], 5, LEASE_MS, NOW + 1, &policy)
            .unwrap();
        assert_eq!(report.written, [Some(Class::Finished)]);
        assert!(report.claimed.is_empty());
        assert_eq!(stored_class(&engine, "quick"), Class::Finished);
        assert_eq!(
            stored_class(&engine, "slow"),
            Class::Ready,
            "its run goes on: still a claim in memory"
        );

        let slow = record(&engine, "slow");
        assert_eq!(slow.index_key().class, Class::Started);
        assert_eq!((slow.attempts, slow.token), (1, claimed[1].token));
        assert_eq!(stored_class(&engine, "slow"), Class::Started);
        let quick = record(&engine, "quick");
        assert_eq!((quick.attempts, quick.started_at), (1, Some(NOW)));
        let report = engine.verify().unwrap();
        assert!(report.problems.is_empty(), "{report:?}");
    }

    /// A crash before a claim was written: the run that started (it has a
    /// journal line) counts as an abandoned attempt at open; the claim that
    /// never started leaves no trace.
    #[test]
    fn a_claim_lost_in_a_crash_is_counted_only_if_its_run_started() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        {
            let engine = open(&path);
            let claimed = enqueue_and_claim(&engine, &["started", "unstarted"]);
            engine.journal_start(&claimed[0]).unwrap();
            engine.trees.db.flush().unwrap();
            assert_eq!(stored_class(&engine, "started"), Class::Ready);
            // The process dies here: no read, no release, no close.
        }
        let engine = open(&path);
        let now = NOW + 10;
        let recovered = engine.replay_journal(now).unwrap() + engine.recover_all(now).unwrap();
        assert_eq!(recovered, 1);
        let started = record(&engine, "started");
        assert_eq!(started.index_key().class, Class::Failed);
        assert_eq!(started.attempts, 1);
        assert_eq!(started.error.as_deref(), Some(ABANDONED));
        let unstarted = record(&engine, "unstarted");
        assert_eq!(unstarted.index_key().class, Class::Ready);
        assert_eq!(unstarted.attempts, 0);
    }

    #[test]
    fn release_restores_the_claimed_key_and_fences_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(&dir.path().join("store"));
        engine.enqueue(vec![job("a"), job("b")], NOW).unwrap();
        let before: Vec<JobRecord> = ["a", "b"].iter().map(|id| record(&engine, id)).collect();
        let queue = engine.queue_id("default").unwrap();
        let claimed = engine
            .round(&[], &[queue], 2, LEASE_MS, NOW + 5, &ClaimPolicy::default())
            .unwrap()
            .claimed;
        assert_eq!(claimed.len(), 2);
        assert_eq!(engine.release(&claimed).unwrap(), 2);
        for (old, run) in before.iter().zip(&claimed) {
            let mut now = record(&engine, &old.id);
            assert_eq!(now.token, run.token, "the record keeps the run's token");
            now.token = old.token;
            assert_eq!(&now, old, "everything else is as before the claim");
        }
        assert!(engine.live.lock().is_empty());
        // A late outcome of a released run writes nothing.
        let done = success("a", claimed[0].token, NOW + 6);
        let report = engine
            .round(&[done], &[], 0, LEASE_MS, NOW + 6, &ClaimPolicy::default())
            .unwrap();
        assert_eq!(report.written, [None]);
        // Released twice: nothing left to release.
        assert_eq!(engine.release(&claimed).unwrap(), 0);
    }
}
