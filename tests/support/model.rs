//! A model-based test harness for dueq, shared by `tests/model.rs` (proptest)
//! and `fuzz/fuzz_targets/model.rs` (libFuzzer).
//!
//! [`Harness`] applies one [`Op`] at a time to a real store (on disk, with a
//! [`ManualClock`]) and to [`Model`], a deliberately naive in-memory version
//! of dueq's documented semantics (a `BTreeMap` of jobs, each with a place:
//! ready at a due time, finished, failed or canceled). After every op it
//! compares the op's result (including which error) and then every job and
//! every registry of the store with the model.
//!
//! This file depends on neither proptest nor arbitrary: each front end
//! generates [`Op`]s its own way.
//!
//! What the model encodes (from ARCHITECTURE.md and the docs):
//!
//! * `status` is derived from the place: a ready job is `queued` if its due
//!   time is `<= now`, else `scheduled`.
//! * A burst worker with one thread runs due jobs one at a time, queues in
//!   priority order, each queue in (due time, sequence) order; a retry with
//!   a zero wait is due at once and runs again in the same burst.
//! * After the k-th failed run, if `1 <= k <= max` the job is ready again at
//!   `now + wait(k)` (rq's interval rule, worked out by hand in
//!   [`Policy::waits`]), else failed. `attempts` counts runs, and `requeue`
//!   does not reset it.
//! * `cancel` only from queued/scheduled, `requeue` only from failed,
//!   `delete` from any state; unknown ids give `NoSuchJob`, taken ids
//!   `DuplicateJobId`.
//! * Finished and failed jobs expire when their TTL has passed, but only
//!   when something cleans them: a worker's start and a store's open.
//!   `result_ttl(0)` deletes the job as it finishes.
//! * Every write of a job's index key takes a fresh, growing sequence
//!   number, so registries list jobs in (time, sequence) order.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use dueq::{
    Context, Durability, Error, Handlers, Job, JobBuilder, JobError, JobInfo, ManualClock, Retry,
    Status, Store, Worker,
};

/// The job ids operations pick from: few, so that ids collide and get
/// reused after a delete.
pub const IDS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
/// The queues, in the worker's priority order.
pub const QUEUES: [&str; 2] = ["default", "low"];
/// 2026-01-01T00:00:00Z, in milliseconds since the epoch.
pub const START_MS: u64 = 1_767_225_600_000;
/// A burst that takes longer than this is reported as hung.
const BURST_TIMEOUT: Duration = Duration::from_secs(30);

/// What a job's handler does, chosen by its arguments (or its handler name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Returns its attempt number.
    Ok,
    /// Fails on attempt 1, then returns its attempt number.
    FailOnce,
    /// Always fails.
    AlwaysFail,
    /// Names a handler the worker does not have: every run fails.
    Unknown,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Ok, Kind::FailOnce, Kind::AlwaysFail, Kind::Unknown];

    pub fn handler(self) -> &'static str {
        match self {
            Kind::Unknown => "missing",
            _ => "job",
        }
    }

    pub fn arg(self) -> &'static str {
        match self {
            Kind::Ok | Kind::Unknown => "ok",
            Kind::FailOnce => "fail_once",
            Kind::AlwaysFail => "always_fail",
        }
    }

    fn outcome(self, attempt: u32) -> Result<u32, MErr> {
        match self {
            Kind::Ok => Ok(attempt),
            Kind::FailOnce if attempt >= 2 => Ok(attempt),
            Kind::FailOnce | Kind::AlwaysFail => Err(MErr::Attempt(attempt)),
            Kind::Unknown => Err(MErr::UnknownHandler),
        }
    }
}

/// The handlers every burst worker runs with.
pub fn handlers() -> Handlers {
    let mut handlers = Handlers::new();
    handlers.register_with_context("job", |ctx: &Context, kind: String| {
        let n = ctx.attempt();
        match kind.as_str() {
            "ok" => Ok(n),
            "fail_once" if n >= 2 => Ok(n),
            _ => Err(JobError::new(format!("failed attempt {n}"))),
        }
    });
    handlers
}

/// A failed attempt's error, as the model knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MErr {
    /// `"failed attempt {n}"`, from the handler.
    Attempt(u32),
    /// The worker's "unknown handler ..." message.
    UnknownHandler,
}

impl MErr {
    fn matches(self, got: &str) -> bool {
        match self {
            MErr::Attempt(n) => got == format!("failed attempt {n}"),
            MErr::UnknownHandler => got.starts_with("unknown handler \"missing\""),
        }
    }
}

fn err_matches(want: Option<MErr>, got: Option<&str>) -> bool {
    match (want, got) {
        (None, None) => true,
        (Some(w), Some(g)) => w.matches(g),
        _ => false,
    }
}

/// A job's retry policy. No jitter: the model computes exact due times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    None,
    Max0,
    Max1,
    Max2Zero,
    Max2Pos,
    Max3Mixed,
    Linear,
    Exponential,
}

impl Policy {
    pub const ALL: [Policy; 8] = [
        Policy::None,
        Policy::Max0,
        Policy::Max1,
        Policy::Max2Zero,
        Policy::Max2Pos,
        Policy::Max3Mixed,
        Policy::Linear,
        Policy::Exponential,
    ];

    pub fn build(self) -> Option<Retry> {
        Some(match self {
            Policy::None => return None,
            Policy::Max0 => Retry::max(0),
            Policy::Max1 => Retry::max(1),
            Policy::Max2Zero => Retry::max(2).intervals([0]),
            Policy::Max2Pos => Retry::max(2).intervals([5, 10]),
            Policy::Max3Mixed => Retry::max(3).intervals([0, 7]),
            Policy::Linear => Retry::max(2).linear(1, 2, 60),
            Policy::Exponential => Retry::max(3).exponential(2, 3.0, 10),
        })
    }

    /// The waits before retries 1..=max, in ms, worked out by hand from the
    /// documented rules (not computed with `Retry`).
    pub fn waits(self) -> &'static [u64] {
        match self {
            Policy::None | Policy::Max0 => &[],
            Policy::Max1 => &[0],
            Policy::Max2Zero => &[0, 0],
            // rq: the list is right-aligned on the last retry.
            Policy::Max2Pos => &[5_000, 10_000],
            // Three retries, two intervals: the first one repeats.
            Policy::Max3Mixed => &[0, 0, 7_000],
            // min(1 + (k - 1) * 2, 60) seconds.
            Policy::Linear => &[1_000, 3_000],
            // min(2 * 3^(k - 1), 10) seconds.
            Policy::Exponential => &[2_000, 6_000, 10_000],
        }
    }
}

/// A TTL for results or failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    Forever,
    /// For `result_ttl`: delete as soon as it finishes. A zero
    /// `failure_ttl` is taken as [`Ttl::Forever`]: a failure that expires at
    /// once races with the worker's first expiry pass.
    Zero,
    Secs(u32),
}

impl Ttl {
    fn duration(self) -> Duration {
        match self {
            Ttl::Forever => Duration::MAX,
            Ttl::Zero => Duration::ZERO,
            Ttl::Secs(s) => Duration::from_secs(u64::from(s)),
        }
    }

    fn ms(self) -> u64 {
        match self {
            Ttl::Forever => u64::MAX,
            Ttl::Zero => 0,
            Ttl::Secs(s) => u64::from(s) * 1000,
        }
    }

    fn for_failure(self) -> Ttl {
        match self {
            Ttl::Zero => Ttl::Forever,
            t => t,
        }
    }
}

/// When an enqueued job is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Now,
    /// `enqueue_in(delay)`.
    InMs(u64),
    /// `enqueue_at(now + offset)`; a negative offset is in the past.
    AtOffsetMs(i32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnqueueSpec {
    /// Index into [`IDS`] (taken modulo its length).
    pub id: usize,
    /// Index into [`QUEUES`] (taken modulo its length).
    pub queue: usize,
    pub kind: Kind,
    pub policy: Policy,
    pub when: When,
    pub result_ttl: Ttl,
    pub failure_ttl: Ttl,
}

/// One step. Indices are taken modulo the length of [`IDS`] or [`QUEUES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Enqueue(EnqueueSpec),
    /// `enqueue_many` of two jobs (possibly on different queues): both or
    /// neither.
    EnqueueMany(EnqueueSpec, EnqueueSpec),
    /// A burst worker (one thread, both queues) runs everything due now.
    WorkAll,
    Cancel(usize),
    /// `queue.failed().requeue(id)`: (id, queue). A job of another queue is
    /// `NoSuchJob` there.
    Requeue(usize, usize),
    Delete(usize),
    /// `Queue::empty`: deletes the queue's due jobs.
    Empty(usize),
    /// `failed().requeue_all()` of a queue.
    RequeueAll(usize),
    AdvanceClock(u32),
    /// Sets the clock back by this many ms (not before [`START_MS`]).
    RewindClock(u32),
    /// Drops every handle and reopens the store at the same path and clock.
    Restart,
    /// `export`s the store, `import`s it into a new store (same clock) and
    /// carries on with that one. Changes nothing the model sees: ids,
    /// states, times, attempts, results, errors and the order of jobs due at
    /// the same instant all survive, also for jobs enqueued afterwards.
    ExportImport,
}

// ------------------------------------------------------------------ model

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Ready { due: u64 },
    Finished { expires: u64 },
    Failed { expires: u64 },
    Canceled { at: u64 },
}

impl Place {
    /// The time part of the job's index key.
    fn time(self) -> u64 {
        match self {
            Place::Ready { due } => due,
            Place::Finished { expires } | Place::Failed { expires } => expires,
            Place::Canceled { at } => at,
        }
    }

    fn status(self, now: u64) -> Status {
        match self {
            Place::Ready { due } if due <= now => Status::Queued,
            Place::Ready { .. } => Status::Scheduled,
            Place::Finished { .. } => Status::Finished,
            Place::Failed { .. } => Status::Failed,
            Place::Canceled { .. } => Status::Canceled,
        }
    }
}

#[derive(Clone, Debug)]
struct MAttempt {
    number: u32,
    started_at: u64,
    ended_at: u64,
    error: Option<MErr>,
    retry_at: Option<u64>,
}

#[derive(Clone, Debug)]
struct MJob {
    queue: usize,
    kind: Kind,
    policy: Policy,
    result_ttl_ms: u64,
    failure_ttl_ms: u64,
    enqueued_at: u64,
    place: Place,
    seq: u64,
    attempts: u32,
    started_at: Option<u64>,
    ended_at: Option<u64>,
    result: Option<u32>,
    error: Option<MErr>,
    history: Vec<MAttempt>,
}

/// What an op should return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Ok,
    Count(usize),
    NoSuchJob,
    Duplicate,
    InvalidState(Status),
}

/// dueq's semantics, naively.
#[derive(Debug)]
pub struct Model {
    now: u64,
    seq: u64,
    jobs: BTreeMap<String, MJob>,
}

/// `now + ttl`, where `u64::MAX` is forever.
fn expiry(now: u64, ttl_ms: u64) -> u64 {
    if ttl_ms == u64::MAX {
        u64::MAX
    } else {
        now.saturating_add(ttl_ms).min(u64::MAX - 1)
    }
}

const HISTORY_LEN: usize = 10;

impl Model {
    fn new() -> Model {
        Model {
            now: START_MS,
            seq: 0,
            jobs: BTreeMap::new(),
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn enqueue_many(&mut self, specs: &[EnqueueSpec]) -> Expect {
        for (i, spec) in specs.iter().enumerate() {
            let id = IDS[spec.id % IDS.len()];
            let again = specs[..i]
                .iter()
                .any(|s| s.id % IDS.len() == spec.id % IDS.len());
            if again || self.jobs.contains_key(id) {
                return Expect::Duplicate;
            }
        }
        for spec in specs {
            self.enqueue(spec);
        }
        Expect::Ok
    }

    fn enqueue(&mut self, spec: &EnqueueSpec) -> Expect {
        let id = IDS[spec.id % IDS.len()];
        if self.jobs.contains_key(id) {
            return Expect::Duplicate;
        }
        let due = match spec.when {
            When::Now => self.now,
            When::InMs(d) => self.now.saturating_add(d),
            When::AtOffsetMs(o) => self.now.saturating_add_signed(i64::from(o)).max(self.now),
        };
        let seq = self.next_seq();
        self.jobs.insert(
            id.to_owned(),
            MJob {
                queue: spec.queue % QUEUES.len(),
                kind: spec.kind,
                policy: spec.policy,
                result_ttl_ms: spec.result_ttl.ms(),
                failure_ttl_ms: spec.failure_ttl.for_failure().ms(),
                enqueued_at: self.now,
                place: Place::Ready { due },
                seq,
                attempts: 0,
                started_at: None,
                ended_at: None,
                result: None,
                error: None,
                history: Vec::new(),
            },
        );
        Expect::Ok
    }

    fn cancel(&mut self, id: &str) -> Expect {
        let now = self.now;
        let seq = self.seq + 1;
        let Some(job) = self.jobs.get_mut(id) else {
            return Expect::NoSuchJob;
        };
        if !matches!(job.place, Place::Ready { .. }) {
            return Expect::InvalidState(job.place.status(now));
        }
        job.place = Place::Canceled { at: now };
        job.ended_at = Some(now);
        job.seq = seq;
        self.seq = seq;
        Expect::Ok
    }

    /// `failed().requeue(id)` on `queue`.
    fn requeue_in(&mut self, id: &str, queue: usize) -> Expect {
        match self.jobs.get(id) {
            Some(job) if job.queue == queue => self.requeue(id),
            _ => Expect::NoSuchJob,
        }
    }

    fn requeue(&mut self, id: &str) -> Expect {
        let now = self.now;
        let seq = self.seq + 1;
        let Some(job) = self.jobs.get_mut(id) else {
            return Expect::NoSuchJob;
        };
        if !matches!(job.place, Place::Failed { .. }) {
            return Expect::InvalidState(job.place.status(now));
        }
        job.place = Place::Ready { due: now };
        job.ended_at = None;
        job.seq = seq;
        self.seq = seq;
        Expect::Ok
    }

    fn delete(&mut self, id: &str) -> Expect {
        match self.jobs.remove(id) {
            Some(_) => Expect::Ok,
            None => Expect::NoSuchJob,
        }
    }

    /// `Queue::empty`: every due ready job of the queue goes.
    fn empty(&mut self, queue: usize) -> Expect {
        let now = self.now;
        let before = self.jobs.len();
        self.jobs.retain(|_, j| {
            !(j.queue == queue && matches!(j.place, Place::Ready { due } if due <= now))
        });
        Expect::Count(before - self.jobs.len())
    }

    fn requeue_all(&mut self, queue: usize) -> Expect {
        let ids = self.registry(queue, |p, _| matches!(p, Place::Failed { .. }));
        for id in &ids {
            let r = self.requeue(id);
            assert_eq!(r, Expect::Ok, "model: requeue_all of a failed job");
        }
        Expect::Count(ids.len())
    }

    /// Removes finished and failed jobs whose expiry is `<= now`.
    fn expire(&mut self) {
        let now = self.now;
        self.jobs.retain(|_, j| match j.place {
            Place::Finished { expires } | Place::Failed { expires } => expires > now,
            _ => true,
        });
    }

    /// A burst: every due job runs, one at a time, until none is due.
    /// Returns (succeeded, failed) runs.
    fn work_all(&mut self) -> (u64, u64) {
        self.expire();
        let now = self.now;
        let (mut succeeded, mut failed) = (0, 0);
        loop {
            let next = (0..QUEUES.len()).find_map(|q| {
                self.jobs
                    .iter()
                    .filter(|(_, j)| {
                        j.queue == q && matches!(j.place, Place::Ready { due } if due <= now)
                    })
                    .min_by_key(|(_, j)| (j.place.time(), j.seq))
                    .map(|(id, _)| id.clone())
            });
            let Some(id) = next else { break };
            self.next_seq(); // the claim's STARTED key
            let seq = self.next_seq();
            let job = self.jobs.get_mut(&id).expect("picked job exists");
            job.attempts += 1;
            let n = job.attempts;
            job.started_at = Some(now);
            job.ended_at = Some(now);
            if job.history.len() >= HISTORY_LEN {
                job.history.remove(0);
            }
            match job.kind.outcome(n) {
                Ok(value) => {
                    succeeded += 1;
                    job.history.push(MAttempt {
                        number: n,
                        started_at: now,
                        ended_at: now,
                        error: None,
                        retry_at: None,
                    });
                    job.result = Some(value);
                    if job.result_ttl_ms == 0 {
                        self.jobs.remove(&id);
                        continue;
                    }
                    job.place = Place::Finished {
                        expires: expiry(now, job.result_ttl_ms),
                    };
                }
                Err(e) => {
                    failed += 1;
                    let waits = job.policy.waits();
                    let retry_at = (n >= 1 && (n as usize) <= waits.len())
                        .then(|| now.saturating_add(waits[n as usize - 1]));
                    job.history.push(MAttempt {
                        number: n,
                        started_at: now,
                        ended_at: now,
                        error: Some(e),
                        retry_at,
                    });
                    job.error = Some(e);
                    job.place = match retry_at {
                        Some(due) => Place::Ready { due },
                        None => Place::Failed {
                            expires: expiry(now, job.failure_ttl_ms),
                        },
                    };
                }
            }
            job.seq = seq;
        }
        (succeeded, failed)
    }

    /// Ids of a queue's jobs whose place passes `pick`, in key order.
    fn registry(&self, queue: usize, pick: impl Fn(Place, u64) -> bool) -> Vec<String> {
        let mut jobs: Vec<(&String, &MJob)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.queue == queue && pick(j.place, self.now))
            .collect();
        jobs.sort_by_key(|(_, j)| (j.place.time(), j.seq));
        jobs.into_iter().map(|(id, _)| id.clone()).collect()
    }
}

// ---------------------------------------------------------------- harness

/// A real store and the model, stepped together.
pub struct Harness {
    /// The directory stores are made in.
    dir: PathBuf,
    /// The current store's path: `dir/store-{generation}`.
    path: PathBuf,
    generation: u32,
    clock: ManualClock,
    store: Option<Store>,
    /// Handles from enqueue, kept until the next restart, so that operations
    /// on deleted jobs can be tried through them.
    handles: BTreeMap<String, Job>,
    model: Model,
    /// The ops so far, for failure messages.
    log: Vec<Op>,
}

/// Milliseconds as the `DateTime` dueq shows, saturating as dueq does.
fn dt(ms: u64) -> chrono::DateTime<chrono::Utc> {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

/// Opens the store at `path`. (A `Restart` reopens a store right after
/// dropping it, which used to fail now and then with `StoreInUse`; see
/// `reopen_right_after_drop_succeeds` in tests/model.rs.)
fn open(path: &Path, clock: &ManualClock) -> Store {
    Store::builder(path)
        .clock(clock.clone())
        .durability(Durability::Buffered)
        .cache_capacity(4 << 20)
        .open()
        .unwrap_or_else(|e| panic!("opening the store at {}: {e}", path.display()))
}

/// Compares an op's outcome with the model's expectation.
fn compare<T: std::fmt::Debug>(
    want: Expect,
    got: &dueq::Result<T>,
    count: impl Fn(&T) -> Option<usize>,
) -> Result<(), String> {
    let ok = match (want, got) {
        (Expect::Ok, Ok(v)) => count(v).is_none(),
        (Expect::Count(n), Ok(v)) => count(v) == Some(n),
        (Expect::NoSuchJob, Err(Error::NoSuchJob { .. })) => true,
        (Expect::Duplicate, Err(Error::DuplicateJobId { .. })) => true,
        (Expect::InvalidState(s), Err(Error::InvalidState { status, .. })) => *status == s,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("model expects {want:?}, store returned {got:?}"))
    }
}

impl Harness {
    /// A new store in `dir` (an empty directory: stores go in
    /// subdirectories).
    pub fn new(dir: &Path) -> Harness {
        let clock = ManualClock::new(dt(START_MS));
        let path = dir.join("store-0");
        let store = open(&path, &clock);
        Harness {
            dir: dir.to_owned(),
            path,
            generation: 0,
            clock,
            store: Some(store),
            handles: BTreeMap::new(),
            model: Model::new(),
            log: Vec::new(),
        }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("the store is open")
    }

    /// Applies `op` to both sides and compares everything; `Err` describes
    /// the first difference, with the ops that led to it.
    pub fn step(&mut self, op: &Op) -> Result<(), String> {
        self.log.push(*op);
        self.apply(op)
            .and_then(|()| self.check())
            .map_err(|e| self.failure(&e))
    }

    /// Runs `ops` in order, with stores in `dir`, and panics on the first
    /// difference.
    pub fn run(dir: &Path, ops: &[Op]) {
        let mut h = Harness::new(dir);
        for op in ops {
            if let Err(e) = h.step(op) {
                panic!("{e}");
            }
        }
    }

    fn failure(&self, what: &str) -> String {
        let mut s = format!("store and model differ: {what}\nops (the last one failed):\n");
        for (i, op) in self.log.iter().enumerate() {
            let _ = writeln!(s, "  {i:3}: {op:?}");
        }
        let _ = writeln!(s, "model now = {}, jobs:", self.model.now);
        for (id, j) in &self.model.jobs {
            let _ = writeln!(s, "  {id}: {j:?}");
        }
        s
    }

    fn apply(&mut self, op: &Op) -> Result<(), String> {
        match *op {
            Op::Enqueue(spec) => {
                let want = self.model.enqueue(&spec);
                let got = self.enqueue(&spec);
                compare(want, &got, |_| None)?;
                if let Ok(job) = got {
                    self.handles.insert(job.id().to_owned(), job);
                }
            }
            Op::EnqueueMany(a, b) => {
                let want = self.model.enqueue_many(&[a, b]);
                let got = self
                    .store()
                    .queue(QUEUES[0])
                    .enqueue_many([self.builder(&a, true), self.builder(&b, true)]);
                compare(want, &got, |jobs| {
                    let ids: Vec<&str> = jobs.iter().map(Job::id).collect();
                    let want = [IDS[a.id % IDS.len()], IDS[b.id % IDS.len()]];
                    (ids != want).then_some(usize::MAX)
                })?;
                for job in got.into_iter().flatten() {
                    self.handles.insert(job.id().to_owned(), job);
                }
            }
            Op::WorkAll => {
                let (succeeded, failed) = self.model.work_all();
                let stats = self.burst()?;
                let got = (
                    stats.succeeded,
                    stats.failed,
                    stats.abandoned,
                    stats.fenced,
                    stats.corrupt,
                    stats.errors,
                    stats.running,
                );
                if got != (succeeded, failed, 0, 0, 0, 0, 0) {
                    return Err(format!(
                        "burst: model ran {succeeded} ok / {failed} failed, worker stats {stats:?}"
                    ));
                }
            }
            Op::Cancel(i) => {
                let id = IDS[i % IDS.len()];
                let want = self.model.cancel(id);
                match self.handle(id) {
                    Some(job) => compare(want, &job.cancel(), |_| None)?,
                    None if want == Expect::NoSuchJob => {}
                    None => return Err(format!("cancel {id}: no handle, model expects {want:?}")),
                }
            }
            Op::Requeue(i, q) => {
                let id = IDS[i % IDS.len()];
                let queue = self.store().queue(QUEUES[q % QUEUES.len()]);
                // Only the failed registry requeues; another one refuses
                // before looking at the job, and changes nothing.
                match queue.canceled().requeue(id) {
                    Err(Error::InvalidArgument {
                        what: "requeue", ..
                    }) => {}
                    other => {
                        return Err(format!(
                            "canceled().requeue({id}): want InvalidArgument, got {other:?}"
                        ))
                    }
                }
                self.check()?;
                let want = self.model.requeue_in(id, q % QUEUES.len());
                compare(want, &queue.failed().requeue(id), |_| None)?;
            }
            Op::Delete(i) => {
                let id = IDS[i % IDS.len()];
                let want = self.model.delete(id);
                match self.handle(id) {
                    Some(job) => compare(want, &job.delete(), |_| None)?,
                    None if want == Expect::NoSuchJob => {}
                    None => return Err(format!("delete {id}: no handle, model expects {want:?}")),
                }
            }
            Op::Empty(q) => {
                let q = q % QUEUES.len();
                let want = self.model.empty(q);
                let got = self.store().queue(QUEUES[q]).empty();
                compare(want, &got, |n| Some(*n))?;
            }
            Op::RequeueAll(q) => {
                let q = q % QUEUES.len();
                let want = self.model.requeue_all(q);
                let got = self.store().queue(QUEUES[q]).failed().requeue_all();
                compare(want, &got, |n| Some(*n))?;
            }
            Op::AdvanceClock(ms) => {
                self.model.now += u64::from(ms);
                self.clock.advance(Duration::from_millis(u64::from(ms)));
            }
            Op::RewindClock(ms) => {
                self.model.now = self.model.now.saturating_sub(u64::from(ms)).max(START_MS);
                self.clock.set(dt(self.model.now));
            }
            Op::Restart => {
                self.handles.clear();
                drop(self.store.take());
                self.store = Some(open(&self.path, &self.clock));
                self.model.expire();
                let recovered = self.store().recovered_at_open();
                if recovered != 0 {
                    return Err(format!("reopen recovered {recovered} runs, expected none"));
                }
            }
            Op::ExportImport => {
                let mut backup = Vec::new();
                let exported = self
                    .store()
                    .export(&mut backup)
                    .map_err(|e| format!("export: {e}"))?;
                self.handles.clear();
                drop(self.store.take());
                self.generation += 1;
                self.path = self.dir.join(format!("store-{}", self.generation));
                let store = open(&self.path, &self.clock);
                let imported = store
                    .import(&backup[..])
                    .map_err(|e| format!("import: {e}"))?;
                self.store = Some(store);
                let jobs = self.model.jobs.len();
                if (exported.jobs, exported.skipped_corrupt, imported.jobs) != (jobs, 0, jobs) {
                    return Err(format!(
                        "export/import of {jobs} jobs: exported {exported:?}, imported {imported:?}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The enqueue handle of `id` if one is held, else a fresh one.
    fn handle(&self, id: &str) -> Option<Job> {
        if let Some(job) = self.handles.get(id) {
            return Some(job.clone());
        }
        self.store().job(id).expect("store.job")
    }

    /// The builder for `spec`, with its due time set if `when` (else due
    /// now unless enqueued with `enqueue_in`/`enqueue_at`).
    fn builder(&self, spec: &EnqueueSpec, when: bool) -> JobBuilder {
        let q = self.store().queue(QUEUES[spec.queue % QUEUES.len()]);
        let mut b = q
            .job(spec.kind.handler(), spec.kind.arg())
            .id(IDS[spec.id % IDS.len()])
            .result_ttl(spec.result_ttl.duration())
            .failure_ttl(spec.failure_ttl.for_failure().duration());
        if let Some(retry) = spec.policy.build() {
            b = b.retry(retry);
        }
        match spec.when {
            When::Now => b,
            _ if !when => b,
            When::InMs(d) => b.delay(Duration::from_millis(d)),
            When::AtOffsetMs(o) => b.at(self.at(o)),
        }
    }

    fn at(&self, offset_ms: i32) -> chrono::DateTime<chrono::Utc> {
        self.store().now() + chrono::Duration::milliseconds(i64::from(offset_ms))
    }

    /// A single enqueue, through `enqueue`, `enqueue_in` or `enqueue_at`.
    fn enqueue(&self, spec: &EnqueueSpec) -> dueq::Result<Job> {
        let b = self.builder(spec, false);
        match spec.when {
            When::Now => b.enqueue(),
            When::InMs(d) => b.enqueue_in(Duration::from_millis(d)),
            When::AtOffsetMs(o) => b.enqueue_at(self.at(o)),
        }
    }

    /// One burst worker on another thread, so that a hang is reported
    /// instead of hanging the test.
    fn burst(&self) -> Result<dueq::WorkerStats, String> {
        let store = self.store().clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let stats = Worker::builder(&store, handlers())
                .queues(QUEUES)
                .threads(1)
                .burst();
            // Let go of the store before answering: a restart right after
            // the burst must find it closed.
            drop(store);
            let _ = tx.send(stats);
        });
        match rx.recv_timeout(BURST_TIMEOUT) {
            Ok(Ok(stats)) => Ok(stats),
            Ok(Err(e)) => Err(format!("burst failed: {e}")),
            Err(_) => Err(format!("burst did not return within {BURST_TIMEOUT:?}")),
        }
    }

    /// Compares every job and every registry with the model.
    fn check(&self) -> Result<(), String> {
        let store = self.store();
        let now = self.model.now;
        let store_now = store.now().timestamp_millis();
        if u64::try_from(store_now) != Ok(now) {
            return Err(format!("clock: store {store_now}, model {now}"));
        }
        for id in IDS {
            let got = store.job(id).map_err(|e| format!("store.job({id}): {e}"))?;
            match (self.model.jobs.get(id), got) {
                (None, None) => {}
                (Some(want), Some(job)) => self
                    .check_job(id, want, &job)
                    .map_err(|e| format!("job {id}: {e}"))?,
                (want, got) => {
                    return Err(format!("job {id}: model has {want:?}, store has {got:?}"));
                }
            }
        }
        for (q, name) in QUEUES.iter().enumerate() {
            let queue = store.queue(*name);
            let m = &self.model;
            let registries = [
                (
                    "queued",
                    queue.job_ids(),
                    queue.count(),
                    m.registry(q, |p, now| p.status(now) == Status::Queued),
                ),
                (
                    "scheduled",
                    queue.scheduled().job_ids(),
                    queue.scheduled().count(),
                    m.registry(q, |p, now| p.status(now) == Status::Scheduled),
                ),
                (
                    "started",
                    queue.started().job_ids(),
                    queue.started().count(),
                    Vec::new(),
                ),
                (
                    "finished",
                    queue.finished().job_ids(),
                    queue.finished().count(),
                    m.registry(q, |p, _| matches!(p, Place::Finished { .. })),
                ),
                (
                    "failed",
                    queue.failed().job_ids(),
                    queue.failed().count(),
                    m.registry(q, |p, _| matches!(p, Place::Failed { .. })),
                ),
                (
                    "canceled",
                    queue.canceled().job_ids(),
                    queue.canceled().count(),
                    m.registry(q, |p, _| matches!(p, Place::Canceled { .. })),
                ),
            ];
            for (what, ids, count, want) in registries {
                let ids = ids.map_err(|e| format!("{name}/{what} job_ids: {e}"))?;
                let count = count.map_err(|e| format!("{name}/{what} count: {e}"))?;
                if ids != want || count != want.len() {
                    return Err(format!(
                        "queue {name}, registry {what}: model {want:?}, store ids {ids:?} (count {count})"
                    ));
                }
            }
            // Paging, on the registry with the most variety in its order.
            let page = queue
                .failed()
                .job_ids_page(1, 2)
                .map_err(|e| format!("{name}/failed job_ids_page: {e}"))?;
            let want: Vec<String> = m
                .registry(q, |p, _| matches!(p, Place::Failed { .. }))
                .into_iter()
                .skip(1)
                .take(2)
                .collect();
            if page != want {
                return Err(format!(
                    "queue {name}, failed.job_ids_page(1, 2): model {want:?}, store {page:?}"
                ));
            }
        }
        Ok(())
    }

    fn check_job(&self, id: &str, want: &MJob, job: &Job) -> Result<(), String> {
        let now = self.model.now;
        let info: JobInfo = job.info().map_err(|e| format!("info: {e}"))?;
        let status = want.place.status(now);
        let mut diffs = Vec::new();
        let mut diff = |field: &str, ok: bool| {
            if !ok {
                diffs.push(field.to_owned());
            }
        };
        diff("id", info.id == id);
        diff("queue", info.queue == QUEUES[want.queue]);
        diff("handler", info.handler == want.kind.handler());
        diff(
            "args_json",
            info.args_json == format!("\"{}\"", want.kind.arg()),
        );
        diff("description", info.description.is_none());
        diff("status", info.status == status);
        diff("attempts", info.attempts == want.attempts);
        diff("retry", info.retry == want.policy.build());
        diff("enqueued_at", info.enqueued_at == dt(want.enqueued_at));
        let due = match want.place {
            Place::Ready { due } => Some(dt(due)),
            _ => None,
        };
        diff("due_at", info.due_at == due);
        diff("started_at", info.started_at == want.started_at.map(dt));
        diff("ended_at", info.ended_at == want.ended_at.map(dt));
        diff("error", err_matches(want.error, info.error.as_deref()));
        diff(
            "result_json",
            info.result_json == want.result.map(|n| n.to_string()),
        );
        let history_ok = info.attempts_log.len() == want.history.len()
            && info.attempts_log.iter().zip(&want.history).all(|(a, w)| {
                a.number == w.number
                    && a.started_at == dt(w.started_at)
                    && a.ended_at == dt(w.ended_at)
                    && err_matches(w.error, a.error.as_deref())
                    && a.retry_at == w.retry_at.map(dt)
            });
        diff("attempts_log", history_ok);
        diff("status()", job.status().ok() == Some(status));
        diff("result()", job.result::<u32>().ok() == Some(want.result));
        diff(
            "error()",
            job.error()
                .is_ok_and(|e| err_matches(want.error, e.as_deref())),
        );
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "fields {diffs:?} differ\n  model: {want:?} (status {status:?})\n  store: {info:?}"
            ))
        }
    }
}
