//! The kill -9 harness: a child process works a store (three enqueuer
//! threads, a two-thread worker) and is killed with SIGKILL at a random
//! moment, over and over; after every kill the parent checks the store.
//!
//! Run: `cargo test --test crash`. `DUEQ_CRASH_CYCLES` sets the number of
//! cycles (default 50), `DUEQ_CRASH_SEED` the base seed (decimal or `0x`
//! hex). Each cycle prints its seed; a violation panics with the cycle, the
//! seed, and the kept work directory (store, logs, child stderr).
//!
//! # One cycle
//!
//! The parent re-executes this test binary as `crash_child` (an ignored
//! test) on the shared store. About one cycle in four is killed 0-20 ms
//! after the child announces it is opening the store (so the kill lands in
//! `Store::open`, often in its recovery of the previous child's runs); the
//! others are killed 20-300 ms after the child has opened it.
//!
//! The child writes append-only logs (`O_APPEND`, one `write` per line, so
//! lines never interleave; a kill can only tear the last line, which the
//! parser drops):
//! * `ack <id> <kind> <queue>` after `enqueue` returned (durable mode: the
//!   job is on disk);
//! * `exec <id> <attempt> <token>` when a handler starts, and
//!   `done <id> <attempt> <token>` just before it returns `Ok`;
//! * `opening`, `opened <recovered>`, or an error line, in a phase log.
//!
//! Job ids are `c<cycle>-t<thread>-<n>`. Handler kinds: `succeed`, `sleepy`
//! (sleeps 1-8 ms, then succeeds), `fail_once` (attempt 1 fails, later ones
//! succeed), `always_fail`. Every job has `Retry::max(2)` (no wait, or 20 ms
//! then 60 ms) and a result TTL of a day (so that no job expires during a
//! run); about one in five is enqueued 50-500 ms ahead; about one in three
//! goes to queue `high`, the rest to `default`.
//!
//! # What the parent checks after each kill
//!
//! It checks a copy of the store, never the store itself, so that the next
//! child opens exactly what the killed one left (and does the recovery).
//! Copy B is read with sled directly, before any recovery; copy A is opened
//! with dueq (which recovers) on a frozen `ManualClock`, so queued and
//! scheduled do not shift between reads.
//!
//! 1. Open: the store opens after every kill (copy A), and the child of the
//!    next cycle opens it too (it reports an open error in its phase log and
//!    exits, which the parent sees).
//! 2. Raw layout (copy B, ARCHITECTURE.md "Trees"): every index key is 21
//!    bytes with a class in 0..=4 and a known queue number; no job id
//!    appears under two index keys; every index entry has its record; there
//!    are as many records as index entries (so index and records are in
//!    one-to-one correspondence: no record without a state); the quarantine
//!    is empty.
//! 3. Recovery: `recovered_at_open()` of copy A equals the number of
//!    `STARTED` keys in copy B, and the next child reports the same number
//!    (it opens the same bytes). Every one of those jobs now has, as its
//!    last attempt, an "abandoned: the process stopped" error. After the
//!    open no job is started.
//! 4. Exactly one state: over both queues and all six registries (queued,
//!    scheduled, started, finished, failed, canceled), no id is listed twice,
//!    every listed id has a job whose status is that registry's, and the
//!    listed ids are exactly the records of copy B. Each registry's `count`
//!    equals its `job_ids` length. Nothing is canceled (the test cancels
//!    nothing).
//! 5. Nothing lost: every acknowledged id (all cycles) is a job, with the
//!    handler and queue it was enqueued with.
//! 6. Attempts and history: `attempts <= 1 + max_retries` (a lost run uses
//!    up an attempt, so crashes do not extend the budget); `attempts_log`
//!    holds exactly attempts 1..=attempts; every attempt but the last failed
//!    and was retried. Finished: the last attempt succeeded, the result is
//!    `"ok <id> <attempts>"`, the kind is not `always_fail` and not a
//!    `fail_once` first attempt. Failed: `attempts == 1 + max`, the last
//!    attempt failed, was not retried and is `JobInfo::error`. Queued or
//!    scheduled: `attempts <= max`, and a last failed attempt was retried.
//!    Every error is either "abandoned: the process stopped ..." or the
//!    kind's own error (`fail_once` on attempt 1, `always_fail`), so a
//!    `succeed` job can only fail by losing all its runs to kills, and a
//!    lease lapse is never seen (leases are 60 s, and live runs are renewed).
//! 7. Runs match the logs: an attempt that failed with the handler's own
//!    error has an `exec` line, an attempt that succeeded has a `done` line
//!    (the store cannot invent outcomes).
//! 8. Lease tokens: every `exec` token is unique across all cycles, and
//!    every token of a cycle is above every token of earlier cycles (tokens
//!    grow across restarts, so a late run can never hold a current token).
//!    A `done` line repeats the attempt and token of its job's latest `exec`
//!    line in that cycle.
//! 9. Progress between checks: a job's attempts never go down, and a job
//!    that was finished or failed at a check keeps that status and attempt
//!    count and never runs again (no `exec` line in a later cycle): that is
//!    "a finished job is never executed again". Within a cycle, no job runs
//!    after its `done` line. The runs of a job in cycle c have attempts
//!    k+1, k+2, ... with k its attempts at the check before (the child
//!    starts from the checked bytes; recovery does not change attempts).
//!    And attempts grew by at most the number of `exec` lines plus one if
//!    the job was `STARTED` at the kill (the run killed between its claim
//!    and its `exec` line): a claim that reached disk but whose run left no
//!    `exec` line can only be the job's last claim of the cycle. No job runs
//!    that was never enqueued in this or an earlier check.
//!
//! Sound but not checked: that `exec` lines ≤ attempts. A claim is not
//! flushed (worker transitions are not), so a run may log `exec` and be
//! lost with its claim: the job then runs the same attempt number again.
//!
//! At the end the parent opens the store itself with a worker and waits (at
//! most 30 s) until every job is finished or failed: scheduled jobs still
//! come due and nothing is stranded; the same checks run once more on the
//! final state, plus: every job is final, and the worker met no fenced run,
//! no abandoned lease, no storage error.
//!
//! # States a kill during the very first open leaves
//!
//! Random kills almost never land in the microseconds sled takes to create a
//! new store's files, so the `a_store_killed_*` tests build each such state
//! by hand (following sled 0.34.7's `Config::open_file`: `blobs/`, then
//! `conf` in two writes, then `db`; then dueq's meta check) and require that
//! the store opens. Two of them fail today and are ignored as known
//! failures (see their `ignore` reasons).

#![cfg(unix)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dueq::{
    Clock, Context, Handlers, JobError, JobInfo, ManualClock, Retry, Status, Store, SystemClock,
    Worker,
};

const ENV_CYCLES: &str = "DUEQ_CRASH_CYCLES";
const ENV_SEED: &str = "DUEQ_CRASH_SEED";
const ENV_CHILD_DIR: &str = "DUEQ_CRASH_CHILD_DIR";
const ENV_CHILD_CYCLE: &str = "DUEQ_CRASH_CHILD_CYCLE";
const ENV_CHILD_SEED: &str = "DUEQ_CRASH_CHILD_SEED";
const CHILD_TEST: &str = "crash_child";

const DEFAULT_CYCLES: u64 = 50;
const DEFAULT_SEED: u64 = 0xd0e9_c4a5_11ed_5eed;

const QUEUES: [&str; 2] = ["high", "default"];
const ENQUEUERS: u64 = 3;
const MAX_RETRIES: u32 = 2;
const LEASE: Duration = Duration::from_secs(60);

const FAIL_ONCE_ERROR: &str = "fail_once: the first attempt fails";
const ALWAYS_FAIL_ERROR: &str = "always_fail: every attempt fails";
/// The error of a run recovered at open.
const ABANDONED_AT_OPEN: &str = "abandoned: the process stopped";

// ------------------------------------------------------------------ shared

/// xorshift64*, seeded through splitmix64.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (the high bits: xorshift's low bits are weak).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Succeed,
    Sleepy,
    FailOnce,
    AlwaysFail,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::Succeed,
        Kind::Sleepy,
        Kind::FailOnce,
        Kind::AlwaysFail,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Succeed => "succeed",
            Kind::Sleepy => "sleepy",
            Kind::FailOnce => "fail_once",
            Kind::AlwaysFail => "always_fail",
        }
    }

    fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

fn append_file(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Appends one line with one `write` (`O_APPEND`: lines never interleave).
fn log_line(file: &File, line: &str) {
    debug_assert!(line.ends_with('\n'));
    let mut f = file;
    f.write_all(line.as_bytes()).expect("append a log line");
}

fn logs_dir(root: &Path) -> PathBuf {
    root.join("logs")
}

fn ack_log(root: &Path, cycle: u64) -> PathBuf {
    logs_dir(root).join(format!("ack-{cycle}.log"))
}

fn exec_log(root: &Path, cycle: u64) -> PathBuf {
    logs_dir(root).join(format!("exec-{cycle}.log"))
}

fn phase_log(root: &Path, cycle: u64) -> PathBuf {
    logs_dir(root).join(format!("phase-{cycle}.log"))
}

fn stderr_log(root: &Path, cycle: u64) -> PathBuf {
    logs_dir(root).join(format!("stderr-{cycle}.log"))
}

fn store_path(root: &Path) -> PathBuf {
    root.join("store")
}

/// The handlers, logging to `exec`. The result is `"ok <id> <attempt>"`.
fn handlers(exec: Arc<File>) -> Handlers {
    let mut handlers = Handlers::new();
    for kind in Kind::ALL {
        let exec = exec.clone();
        handlers.register_with_context(
            kind.name(),
            move |ctx: &Context, sleep_ms: u64| -> Result<String, JobError> {
                let (id, attempt, token) = (ctx.job_id(), ctx.attempt(), ctx.lease_token());
                log_line(&exec, &format!("exec {id} {attempt} {token}\n"));
                if sleep_ms > 0 {
                    std::thread::sleep(Duration::from_millis(sleep_ms));
                }
                match kind {
                    Kind::FailOnce if attempt == 1 => return Err(JobError::new(FAIL_ONCE_ERROR)),
                    Kind::AlwaysFail => return Err(JobError::new(ALWAYS_FAIL_ERROR)),
                    _ => {}
                }
                log_line(&exec, &format!("done {id} {attempt} {token}\n"));
                Ok(format!("ok {id} {attempt}"))
            },
        );
    }
    handlers
}

// ------------------------------------------------------------ child process

/// The child: opens the store, runs a worker and three enqueuers until it
/// is killed.
#[test]
#[ignore = "child process of kill_9_cycles, which runs it itself"]
fn crash_child() {
    let Some(root) = std::env::var_os(ENV_CHILD_DIR) else {
        return;
    };
    let root = PathBuf::from(root);
    let var = |name: &str| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("child: {name} missing"))
    };
    let (cycle, seed) = (var(ENV_CHILD_CYCLE), var(ENV_CHILD_SEED));
    let phase = Arc::new(append_file(&phase_log(&root, cycle)));
    log_line(&phase, "opening\n");
    let store = match Store::open(store_path(&root)) {
        Ok(store) => store,
        Err(e) => {
            log_line(&phase, &format!("open-error {e}\n"));
            std::process::exit(3);
        }
    };
    log_line(&phase, &format!("opened {}\n", store.recovered_at_open()));
    let exec = Arc::new(append_file(&exec_log(&root, cycle)));
    let _worker = match Worker::builder(&store, handlers(exec))
        .queues(QUEUES)
        .threads(2)
        .lease(LEASE)
        .start()
    {
        Ok(worker) => worker,
        Err(e) => {
            log_line(&phase, &format!("worker-error {e}\n"));
            std::process::exit(4);
        }
    };
    let ack = Arc::new(append_file(&ack_log(&root, cycle)));
    for t in 0..ENQUEUERS {
        let (store, ack, phase) = (store.clone(), ack.clone(), phase.clone());
        let mut rng = Rng::new(seed ^ (t + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        std::thread::spawn(move || {
            for n in 0u64.. {
                enqueue_one(&store, &mut rng, &ack, &phase, cycle, t, n);
            }
        });
    }
    // The parent kills us well before this; if it died, do not linger.
    std::thread::sleep(Duration::from_secs(30));
    log_line(&phase, "timeout\n");
    std::process::exit(5);
}

fn enqueue_one(store: &Store, rng: &mut Rng, ack: &File, phase: &File, cycle: u64, t: u64, n: u64) {
    let kind = match rng.below(10) {
        0..=3 => Kind::Succeed,
        4..=5 => Kind::Sleepy,
        6..=7 => Kind::FailOnce,
        _ => Kind::AlwaysFail,
    };
    let queue = QUEUES[usize::from(rng.below(3) != 0)];
    // Half the jobs have ids of the harness's own (the transactional
    // enqueue path), half generated ids (the intake, see
    // engine/intake.rs), some of those in batches.
    let given = rng.below(2) == 0;
    let id = format!("c{cycle}-t{t}-{n}");
    let sleep_ms = if kind == Kind::Sleepy {
        1 + rng.below(8)
    } else {
        0
    };
    let retry = if rng.below(2) == 0 {
        Retry::max(MAX_RETRIES)
    } else {
        Retry::max(MAX_RETRIES).intervals([Duration::from_millis(20), Duration::from_millis(60)])
    };
    let delay = (rng.below(5) == 0).then(|| Duration::from_millis(50 + rng.below(451)));
    let q = store.queue(queue);
    let make = || {
        let job = q
            .job(kind.name(), &sleep_ms)
            .retry(retry.clone())
            // Longer than any run of the harness, so "lost" never means "expired".
            .result_ttl(Duration::from_secs(24 * 3600));
        match delay {
            Some(d) => job.delay(d),
            None => job,
        }
    };
    let enqueued = if given {
        make().id(id.as_str()).enqueue().map(|job| vec![job])
    } else if rng.below(4) == 0 {
        q.enqueue_many((0..2 + rng.below(4)).map(|_| make()))
    } else {
        make().enqueue().map(|job| vec![job])
    };
    match enqueued {
        Ok(jobs) => {
            let lines: String = jobs
                .iter()
                .map(|job| format!("ack {} {} {queue}\n", job.id(), kind.name()))
                .collect();
            log_line(ack, &lines);
        }
        Err(e) => {
            log_line(phase, &format!("enqueue-error {id} {e}\n"));
            std::process::exit(6);
        }
    }
    // Leave the worker some room (two cores for everything).
    std::thread::sleep(Duration::from_millis(rng.below(3)));
}

// ------------------------------------------------------------------- parent

#[test]
fn kill_9_cycles() {
    let cycles = std::env::var(ENV_CYCLES)
        .ok()
        .map(|v| v.parse::<u64>().expect("DUEQ_CRASH_CYCLES: a number"))
        .unwrap_or(DEFAULT_CYCLES);
    let base_seed = std::env::var(ENV_SEED)
        .ok()
        .map(|v| parse_seed(&v))
        .unwrap_or(DEFAULT_SEED);
    let started = Instant::now();
    let mut h = Harness::new(base_seed);
    println!(
        "kill_9_cycles: {cycles} cycles, base seed {base_seed:#x}, work dir {}",
        h.root.display()
    );
    for cycle in 0..cycles {
        h.cycle(cycle);
    }
    h.finish(cycles);
    let s = &h.summary;
    println!(
        "kill_9_cycles: {cycles} cycles in {:.1} s; {} jobs acked ({} jobs in the store), \
         {} executions ({} succeeded; {} reran an attempt whose claim was lost, {} ran again \
         after a success whose outcome was lost), {} runs recovered at checks ({} claims \
         put back unstarted), {} by children ({} kills landed during open); final: {} \
         finished, {} failed; 0 violations",
        started.elapsed().as_secs_f64(),
        h.acked.len(),
        h.model.len(),
        s.execs,
        s.dones,
        s.attempts_rerun,
        s.reruns_after_done,
        s.recovered_at_checks,
        s.unstarted_at_checks,
        s.recovered_by_children,
        s.kills_in_open,
        s.final_finished,
        s.final_failed,
    );
}

fn parse_seed(v: &str) -> u64 {
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    }
    .expect("DUEQ_CRASH_SEED: a decimal or 0x-hex u64")
}

fn cycle_seed(base: u64, cycle: u64) -> u64 {
    Rng::new(base ^ cycle.wrapping_mul(0xa076_1d64_78bd_642f)).next()
}

/// What the parent knows about a job from the last check.
#[derive(Debug, Clone, Copy)]
struct Known {
    attempts: u32,
    status: Status,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Exec {
        id: String,
        attempt: u32,
        token: u64,
    },
    Done {
        id: String,
        attempt: u32,
        token: u64,
    },
}

#[derive(Default)]
struct Summary {
    execs: u64,
    attempts_rerun: u64,
    reruns_after_done: u64,
    dones: u64,
    recovered_at_checks: u64,
    /// `STARTED` jobs whose run never started, put back uncounted at checks.
    unstarted_at_checks: u64,
    recovered_by_children: u64,
    kills_in_open: u64,
    final_finished: u64,
    final_failed: u64,
}

/// What `check_job` found a job's last attempt to be.
#[derive(Default)]
struct Recovered {
    /// Abandoned at this open (newer than the last check).
    now: bool,
    /// Abandoned, at this open or an earlier one.
    last: bool,
}

/// What a check reads from the store, before and after recovery.
struct Raw {
    /// Ids under a `STARTED` key.
    started: BTreeSet<String>,
    /// Every record's id.
    records: BTreeSet<String>,
    /// (id, attempt) of every complete line of the run journal (`dueq-runs`,
    /// lines `token attempt seq id`): the runs that started since the last
    /// open, and those still going on at it.
    journal: HashSet<(String, u32)>,
}

struct Harness {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    base_seed: u64,
    /// The seed of the cycle being checked, for failure messages.
    seed: u64,
    /// Every acknowledged job: kind and queue.
    acked: BTreeMap<String, (Kind, String)>,
    /// Every job in the store at the last check.
    model: BTreeMap<String, Known>,
    /// Every exec token so far.
    tokens: HashSet<u64>,
    max_token: u64,
    /// (id, attempt) with an `exec` line, and with a `done` line.
    execs: HashSet<(String, u32)>,
    dones: HashSet<(String, u32)>,
    /// `STARTED` keys found after the last kill: what the next open recovers.
    last_started: Option<usize>,
    /// Runs (`exec` lines) per job in the cycle being checked.
    cycle_runs: HashMap<String, u32>,
    summary: Summary,
}

impl Harness {
    fn new(base_seed: u64) -> Harness {
        let dir = tempfile::Builder::new()
            .prefix("dueq-crash-")
            .tempdir()
            .expect("a work directory");
        let root = dir.path().to_owned();
        std::fs::create_dir_all(logs_dir(&root)).unwrap();
        Harness {
            dir: Some(dir),
            root,
            base_seed,
            seed: 0,
            acked: BTreeMap::new(),
            model: BTreeMap::new(),
            tokens: HashSet::new(),
            max_token: 0,
            execs: HashSet::new(),
            dones: HashSet::new(),
            last_started: None,
            cycle_runs: HashMap::new(),
            summary: Summary::default(),
        }
    }

    /// Panics with the violations, keeping the work directory.
    fn fail(&mut self, cycle: u64, violations: &[String]) -> ! {
        let kept = self.dir.take().map(tempfile::TempDir::keep);
        let mut msg = format!(
            "kill_9_cycles: {} violation(s) at cycle {cycle} (cycle seed {:#x}, base seed {:#x}; \
             rerun with {ENV_SEED}={:#x}); work dir kept at {:?}\n",
            violations.len(),
            self.seed,
            self.base_seed,
            self.base_seed,
            kept,
        );
        for v in violations.iter().take(40) {
            let _ = writeln!(msg, "  - {v}");
        }
        if violations.len() > 40 {
            let _ = writeln!(msg, "  ... and {} more", violations.len() - 40);
        }
        let stderr = std::fs::read_to_string(stderr_log(&self.root, cycle)).unwrap_or_default();
        if !stderr.trim().is_empty() {
            let lines: Vec<&str> = stderr.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            let _ = writeln!(msg, "child stderr (tail):\n{tail}");
        }
        panic!("{msg}");
    }

    fn spawn_child(&self, cycle: u64, seed: u64) -> Child {
        let stderr = File::create(stderr_log(&self.root, cycle)).unwrap();
        Command::new(std::env::current_exe().expect("the test binary"))
            .args([
                "--ignored",
                "--exact",
                CHILD_TEST,
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_CHILD_DIR, &self.root)
            .env(ENV_CHILD_CYCLE, cycle.to_string())
            .env(ENV_CHILD_SEED, seed.to_string())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn the child")
    }

    fn cycle(&mut self, cycle: u64) {
        let seed = cycle_seed(self.base_seed, cycle);
        self.seed = seed;
        let mut rng = Rng::new(seed);
        let early = rng.below(4) == 0;
        let delay = if early {
            rng.below(21)
        } else {
            20 + rng.below(281)
        };
        println!(
            "cycle {cycle}: seed {seed:#018x}, kill {delay} ms after the child {}",
            if early { "starts opening" } else { "opened" }
        );
        let mut child = self.spawn_child(cycle, seed);
        // Wait for the child to reach the point the delay counts from.
        let mark = if early { "opening" } else { "opened" };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let phase = std::fs::read_to_string(phase_log(&self.root, cycle)).unwrap_or_default();
            if phase.lines().any(|l| l.starts_with(mark)) {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                self.fail(
                    cycle,
                    &[format!(
                        "the child exited before `{mark}`: {status}; phase log: {phase:?}"
                    )],
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.fail(
                    cycle,
                    &[format!("the child did not reach `{mark}` in 60 s")],
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(delay));
        if let Some(status) = child.try_wait().unwrap() {
            let phase = std::fs::read_to_string(phase_log(&self.root, cycle)).unwrap_or_default();
            self.fail(
                cycle,
                &[format!(
                    "the child exited before the kill: {status}; phase log: {phase:?}"
                )],
            );
        }
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("reap the child");
        if status.signal() != Some(9) {
            self.fail(
                cycle,
                &[format!("the child did not die of SIGKILL: {status}")],
            );
        }
        let mut v = Vec::new();
        self.check_phase(cycle, &mut v);
        self.check(cycle, &mut v, false);
    }

    /// The child's own account of its open.
    fn check_phase(&mut self, cycle: u64, v: &mut Vec<String>) {
        let text = std::fs::read_to_string(phase_log(&self.root, cycle)).unwrap_or_default();
        let mut opened = None;
        for line in complete_lines(&text) {
            if let Some(n) = line.strip_prefix("opened ") {
                opened = n.parse::<usize>().ok();
            } else if line != "opening" {
                v.push(format!("child {cycle}: {line}"));
            }
        }
        match opened {
            Some(n) => {
                self.summary.recovered_by_children += n as u64;
                if let Some(expected) = self.last_started {
                    if n != expected {
                        v.push(format!(
                            "child {cycle} recovered {n} runs at open; the parent's copy of the store had \
                             {expected} runs to recover (STARTED keys plus lost claims)"
                        ));
                    }
                }
            }
            None => self.summary.kills_in_open += 1,
        }
    }

    /// Checks a copy of the store after cycle `cycle` (or after the final
    /// run), and updates the model. Panics on violations.
    fn check(&mut self, cycle: u64, v: &mut Vec<String>, last: bool) {
        // Logs of this cycle.
        for line in
            complete_lines(&std::fs::read_to_string(ack_log(&self.root, cycle)).unwrap_or_default())
        {
            let f: Vec<&str> = line.split(' ').collect();
            match (f.as_slice(), f.get(2).and_then(|k| Kind::from_name(k))) {
                (["ack", id, _, queue], Some(kind)) => {
                    self.acked
                        .insert((*id).to_owned(), (kind, (*queue).to_owned()));
                }
                _ => v.push(format!("malformed ack line {line:?}")),
            }
        }
        let events = parse_events(
            &std::fs::read_to_string(exec_log(&self.root, cycle)).unwrap_or_default(),
            v,
        );

        // Copy B: the raw bytes, before recovery.
        let raw = self.read_raw(v);
        // Copy A: opened (and recovered) by dueq on a frozen clock.
        let copy_a = self.root.join("copy-a");
        copy_store(&store_path(&self.root), &copy_a);
        let clock = ManualClock::new(SystemClock.now());
        let store = match Store::builder(&copy_a).clock(clock).open() {
            Ok(store) => store,
            Err(e) => {
                v.push(format!("the store does not open after the kill: {e}"));
                self.fail(cycle, v);
            }
        };
        let recovered = store.recovered_at_open();
        self.summary.recovered_at_checks += recovered as u64;
        // Every STARTED job is recovered; runs whose claim was lost with the
        // process (found in the run journal) are recovered on top of them.
        // `STARTED` jobs whose run started and runs whose claim was lost with
        // the process (both found in the run journal) are recovered;
        // `STARTED` jobs claimed ahead and never started are put back
        // without counting. Checked per job below; the sum here.
        let journal = (!last).then_some(&raw.journal);

        // Registries: exactly one state per job.
        let mut state: BTreeMap<String, (String, Status)> = BTreeMap::new();
        for q in store.queues() {
            if !QUEUES.contains(&q.name()) {
                v.push(format!("unexpected queue {:?}", q.name()));
            }
            let registries = [
                (Status::Queued, q.job_ids(), q.count()),
                (
                    Status::Scheduled,
                    q.scheduled().job_ids(),
                    q.scheduled().count(),
                ),
                (Status::Started, q.started().job_ids(), q.started().count()),
                (
                    Status::Finished,
                    q.finished().job_ids(),
                    q.finished().count(),
                ),
                (Status::Failed, q.failed().job_ids(), q.failed().count()),
                (
                    Status::Canceled,
                    q.canceled().job_ids(),
                    q.canceled().count(),
                ),
            ];
            for (status, ids, count) in registries {
                let (ids, count) = match (ids, count) {
                    (Ok(ids), Ok(count)) => (ids, count),
                    (ids, count) => {
                        v.push(format!(
                            "reading {status} of {}: {ids:?} {count:?}",
                            q.name()
                        ));
                        continue;
                    }
                };
                if ids.len() != count {
                    v.push(format!(
                        "{} {status}: count {count} but {} ids",
                        q.name(),
                        ids.len()
                    ));
                }
                if matches!(status, Status::Started | Status::Canceled) && !ids.is_empty() {
                    v.push(format!("{} {status} after open: {ids:?}", q.name()));
                }
                for id in ids {
                    if let Some((q2, s2)) = state.insert(id.clone(), (q.name().to_owned(), status))
                    {
                        v.push(format!("{id} is {status} in {} and {s2} in {q2}", q.name()));
                    }
                }
            }
        }
        if state.keys().cloned().collect::<BTreeSet<_>>() != raw.records {
            let listed: BTreeSet<String> = state.keys().cloned().collect();
            v.push(format!(
                "records not in any registry: {:?}; listed without a record: {:?}",
                raw.records.difference(&listed).take(10).collect::<Vec<_>>(),
                listed.difference(&raw.records).take(10).collect::<Vec<_>>(),
            ));
        }

        // Nothing acknowledged is lost.
        for (id, (kind, queue)) in &self.acked {
            match state.get(id) {
                None => v.push(format!("acknowledged job {id} ({}) is lost", kind.name())),
                Some((q, _)) if q != queue => {
                    v.push(format!("{id} was enqueued on {queue}, is on {q}"))
                }
                Some(_) => {}
            }
        }

        // The runs of this cycle.
        self.check_events(cycle, &events, v);

        // Every job.
        let mut infos = BTreeMap::new();
        let mut abandoned_now = 0;
        let mut abandoned_last = 0;
        for (id, (queue, status)) in &state {
            let job = match store.job(id) {
                Ok(Some(job)) => job,
                other => {
                    v.push(format!(
                        "{id} is listed as {status} but store.job gives {other:?}"
                    ));
                    continue;
                }
            };
            let info = match job.info() {
                Ok(info) => info,
                Err(e) => {
                    v.push(format!("{id}: info: {e}"));
                    continue;
                }
            };
            if info.status != *status || info.queue != *queue {
                v.push(format!(
                    "{id} is listed as {status} on {queue}, its record says {} on {}",
                    info.status, info.queue
                ));
            }
            // Read through the public API; skip the read (a second record
            // lookup) only where the snapshot already shows no result.
            let result = if info.status == Status::Finished || info.result_json.is_some() {
                job.result::<String>()
            } else {
                Ok(None)
            };
            let was_started = raw.started.contains(id);
            let r = self.check_job(&info, result, was_started, journal, v);
            if was_started && !r.last {
                self.summary.unstarted_at_checks += 1;
            }
            abandoned_now += usize::from(r.now);
            abandoned_last += usize::from(r.last);
            infos.insert(id.clone(), info);
        }
        drop(store);
        // Every attempt counted since the last check was recovered by this
        // open (the final check's copy follows the parent's own open, which
        // recovered `last_started` runs, checked in `finish`); a kill during
        // the child's open can leave earlier runs to recover again. Every
        // recovered run is its job's last attempt.
        let opens = recovered
            + if last {
                self.last_started.unwrap_or(0)
            } else {
                0
            };
        if abandoned_now > opens || recovered > abandoned_last {
            v.push(format!(
                "{recovered} runs recovered at open (and {opens} with the final open), but \
                 {abandoned_now} jobs have an attempt abandoned since the last check and \
                 {abandoned_last} end with an abandoned attempt"
            ));
        }

        if last {
            for (id, info) in &infos {
                match info.status {
                    Status::Finished => self.summary.final_finished += 1,
                    Status::Failed => self.summary.final_failed += 1,
                    s => v.push(format!("{id} is still {s} after the final run: stranded")),
                }
            }
        }
        if !v.is_empty() {
            self.fail(cycle, v);
        }
        self.model = infos
            .into_iter()
            .map(|(id, info)| {
                let known = Known {
                    attempts: info.attempts,
                    status: info.status,
                };
                (id, known)
            })
            .collect();
        self.last_started = Some(recovered);
    }

    /// Copy B, read with sled directly: the layout of ARCHITECTURE.md.
    fn read_raw(&self, v: &mut Vec<String>) -> Raw {
        let copy_b = self.root.join("copy-b");
        copy_store(&store_path(&self.root), &copy_b);
        // What `Store::open` deletes first (sled cannot open with them).
        for entry in std::fs::read_dir(&copy_b).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("snap.") && name.ends_with(".generating") {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
        let mut raw = Raw {
            started: BTreeSet::new(),
            records: BTreeSet::new(),
            journal: HashSet::new(),
        };
        let journal = std::fs::read_to_string(copy_b.join("dueq-runs")).unwrap_or_default();
        for line in complete_lines(&journal) {
            match line.split(' ').collect::<Vec<_>>().as_slice() {
                [token, attempt, seq, id]
                    if token.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok() =>
                {
                    match attempt.parse() {
                        Ok(attempt) => {
                            raw.journal.insert(((*id).to_owned(), attempt));
                        }
                        Err(_) => v.push(format!("malformed run journal line {line:?}")),
                    }
                }
                _ => v.push(format!("malformed run journal line {line:?}")),
            }
        }
        let db = match sled::Config::new().path(&copy_b).open() {
            Ok(db) => db,
            Err(e) => {
                v.push(format!("sled does not open a copy of the store: {e}"));
                return raw;
            }
        };
        let tree = |name: &str| db.open_tree(name).expect("open a tree");
        let (queues, jobs, index, quarantine, intake) = (
            tree("queues"),
            tree("jobs"),
            tree("index"),
            tree("quarantine"),
            tree("intake"),
        );
        let queue_numbers: HashSet<u32> = queues
            .iter()
            .map(|kv| {
                let (_, n) = kv.unwrap();
                u32::from_be_bytes(n.as_ref().try_into().expect("a 4-byte queue number"))
            })
            .collect();
        let mut indexed: HashMap<String, Vec<u8>> = HashMap::new();
        for kv in index.iter() {
            let (key, id) = kv.unwrap();
            let id = String::from_utf8_lossy(&id).into_owned();
            if key.len() != 21 || key[4] > 4 {
                v.push(format!("malformed index key {key:?} for {id}"));
                continue;
            }
            let queue = u32::from_be_bytes(key[..4].try_into().unwrap());
            if !queue_numbers.contains(&queue) {
                v.push(format!("{id}: index key of unknown queue number {queue}"));
            }
            if key[4] == 1 {
                raw.started.insert(id.clone());
            }
            if let Some(other) = indexed.insert(id.clone(), key.to_vec()) {
                v.push(format!("{id} has two index keys: {other:?} and {key:?}"));
            }
            if !jobs.contains_key(id.as_bytes()).unwrap() {
                v.push(format!(
                    "index entry {key:?} names {id}, which has no record"
                ));
            }
        }
        for kv in jobs.iter() {
            let (id, _) = kv.unwrap();
            raw.records
                .insert(String::from_utf8_lossy(&id).into_owned());
        }
        if raw.records.len() != index.len() {
            v.push(format!(
                "{} records but {} index entries: some record has no state",
                raw.records.len(),
                index.len()
            ));
        }
        // Jobs enqueued by the fast path and not yet moved into place: each
        // in exactly one intake entry and nowhere else.
        for kv in intake.iter() {
            let (_, entry) = kv.unwrap();
            match intake_ids(&entry) {
                Some(ids) => {
                    for id in ids {
                        if !raw.records.insert(id.clone()) {
                            v.push(format!(
                                "{id} is in the intake and in place, or twice in the intake"
                            ));
                        }
                    }
                }
                None => v.push(format!("malformed intake entry {entry:?}")),
            }
        }
        if !quarantine.is_empty() {
            v.push(format!("{} quarantined records", quarantine.len()));
        }
        raw
    }

    /// The `exec` and `done` lines of one cycle against each other and
    /// against the last check.
    fn check_events(&mut self, cycle: u64, events: &[Event], v: &mut Vec<String>) {
        let floor = self.max_token;
        // Per job: the last exec (attempt, token), whether it is done, how many runs.
        let mut runs: HashMap<&str, (u32, u64, bool, u32)> = HashMap::new();
        for event in events {
            match event {
                Event::Exec { id, attempt, token } => {
                    self.summary.execs += 1;
                    if !self.tokens.insert(*token) {
                        v.push(format!(
                            "token {token} used twice (exec of {id} attempt {attempt})"
                        ));
                    }
                    if *token <= floor {
                        v.push(format!(
                            "token {token} of {id} is not above the tokens of earlier cycles ({floor})"
                        ));
                    }
                    self.max_token = self.max_token.max(*token);
                    if !self.execs.insert((id.clone(), *attempt)) {
                        // Its claim was lost with the process: the same
                        // attempt runs again (allowed: claims are not flushed).
                        self.summary.attempts_rerun += 1;
                    }
                    if (1..=*attempt).any(|a| self.dones.contains(&(id.clone(), a))) {
                        // A run succeeded but its outcome was lost with the
                        // process (at-least-once).
                        self.summary.reruns_after_done += 1;
                    }
                    let known = self.model.get(id.as_str()).copied();
                    // A generated id (no cycle in it) not in the model was
                    // enqueued after the last check: this cycle.
                    if known.is_none() && id_cycle(id).is_some_and(|c| c != cycle) {
                        v.push(format!("{id} ran in cycle {cycle} but was not in the store at the check before"));
                    }
                    if let Some(k) = known.filter(|k| k.status.is_final()) {
                        v.push(format!(
                            "{id} ran again (attempt {attempt}) after it was {} at the last check",
                            k.status
                        ));
                    }
                    let expected = match runs.get(id.as_str()) {
                        Some(&(a, t, done, _)) => {
                            if done {
                                v.push(format!(
                                    "{id} ran again (attempt {attempt}) after its done line"
                                ));
                            }
                            if *token <= t {
                                v.push(format!("{id}: token {token} after token {t} in one cycle"));
                            }
                            a + 1
                        }
                        None => known.map_or(0, |k| k.attempts) + 1,
                    };
                    if *attempt != expected {
                        v.push(format!(
                            "{id} ran attempt {attempt}, expected attempt {expected}"
                        ));
                    }
                    if *attempt > 1 + MAX_RETRIES {
                        v.push(format!("{id} ran attempt {attempt} > 1 + {MAX_RETRIES}"));
                    }
                    let n = runs.get(id.as_str()).map_or(0, |r| r.3);
                    runs.insert(id, (*attempt, *token, false, n + 1));
                }
                Event::Done { id, attempt, token } => {
                    self.summary.dones += 1;
                    self.dones.insert((id.clone(), *attempt));
                    match runs.get_mut(id.as_str()) {
                        Some((a, t, done, _)) if a == attempt && t == token && !*done => *done = true,
                        other => v.push(format!(
                            "done {id} {attempt} {token} does not follow its exec line (last run: {other:?})"
                        )),
                    }
                }
            }
        }
        self.cycle_runs = runs
            .into_iter()
            .map(|(id, (_, _, _, n))| (id.to_owned(), n))
            .collect();
    }

    fn check_job(
        &self,
        info: &JobInfo,
        result: dueq::Result<Option<String>>,
        was_started: bool,
        journal: Option<&HashSet<(String, u32)>>,
        v: &mut Vec<String>,
    ) -> Recovered {
        let id = info.id.as_str();
        let Some(kind) = Kind::from_name(&info.handler) else {
            v.push(format!("{id}: unknown handler {:?}", info.handler));
            return Recovered::default();
        };
        if let Some((acked_kind, _)) = self.acked.get(id) {
            if *acked_kind != kind {
                v.push(format!(
                    "{id} was enqueued as {}, is {}",
                    acked_kind.name(),
                    kind.name()
                ));
            }
        }
        let max = info.retry.as_ref().map_or(0, Retry::max_retries);
        if max != MAX_RETRIES {
            v.push(format!("{id}: retry policy {:?} lost", info.retry));
        }
        let n = info.attempts;
        let log = &info.attempts_log;
        if n > 1 + max {
            v.push(format!("{id}: {n} attempts > 1 + {max}"));
        }
        if log.len() != n as usize
            || log
                .iter()
                .enumerate()
                .any(|(i, a)| a.number as usize != i + 1)
        {
            v.push(format!("{id}: {n} attempts but attempts_log {log:?}"));
            return Recovered::default();
        }
        // Progress since the last check.
        if let Some(k) = self.model.get(id) {
            if n < k.attempts {
                v.push(format!(
                    "{id}: attempts went down from {} to {n}",
                    k.attempts
                ));
            }
            if k.status.is_final() && (info.status != k.status || n != k.attempts) {
                v.push(format!(
                    "{id} was {} with {} attempts, is now {} with {n}",
                    k.status, k.attempts, info.status
                ));
            }
        }
        let before = self.model.get(id).map_or(0, |k| k.attempts);
        let runs = self.cycle_runs.get(id).copied().unwrap_or(0);
        // The attempt this open recovered, if any: the last one, abandoned,
        // and newer than the last check (earlier opens recovered only
        // attempts the last check saw).
        let abandoned_last = log.last().is_some_and(|a| {
            a.number == n
                && a.error
                    .as_deref()
                    .is_some_and(|e| e.starts_with(ABANDONED_AT_OPEN))
        });
        let abandoned_now = abandoned_last && n > before;
        // A run killed after its run-journal line but before the handler's
        // first `exec` line is counted at open (an abandoned attempt) though
        // no `exec` line shows it: one per job per kill. A claim whose run
        // never started (claimed ahead, or killed before its journal line)
        // is not counted, so nothing else may add an attempt.
        if n > before + runs + u32::from(abandoned_now) {
            v.push(format!(
                "{id}: attempts grew from {before} to {n} with {runs} runs this cycle \
                 (STARTED at the kill: {was_started})"
            ));
        }
        if let Some(journal) = journal {
            // Only a run that started is counted: its journal line is
            // written before its handler starts.
            if abandoned_now && !journal.contains(&(id.to_owned(), n)) {
                v.push(format!(
                    "{id}: attempt {n} was recovered as abandoned without a run journal line"
                ));
            }
            // A job STARTED at the kill whose run did not start (no line for
            // the claim's attempt, n + 1 once put back) is back in its queue
            // uncounted: such a claim can never fail a job.
            if was_started && !abandoned_last {
                if journal.contains(&(id.to_owned(), n + 1)) {
                    v.push(format!(
                        "{id} was STARTED at the kill and its attempt {} has a journal \
                         line, but it was not recovered as abandoned",
                        n + 1
                    ));
                }
                if !matches!(info.status, Status::Queued | Status::Scheduled) {
                    v.push(format!(
                        "{id} was claimed but never started at the kill, and is {} after open",
                        info.status
                    ));
                }
            }
        }
        // Each attempt.
        for (i, a) in log.iter().enumerate() {
            let last = i + 1 == log.len();
            match &a.error {
                None => {
                    if !last {
                        v.push(format!(
                            "{id}: attempt {} succeeded but was not the last",
                            a.number
                        ));
                    }
                    if !self.dones.contains(&(id.to_owned(), a.number)) {
                        v.push(format!(
                            "{id}: attempt {} succeeded without a done line",
                            a.number
                        ));
                    }
                    if kind == Kind::AlwaysFail || (kind == Kind::FailOnce && a.number == 1) {
                        v.push(format!(
                            "{id} ({}) succeeded at attempt {}",
                            kind.name(),
                            a.number
                        ));
                    }
                }
                Some(e) if e.starts_with(ABANDONED_AT_OPEN) => {}
                Some(e) => {
                    let own = match kind {
                        Kind::FailOnce => a.number == 1 && e == FAIL_ONCE_ERROR,
                        Kind::AlwaysFail => e == ALWAYS_FAIL_ERROR,
                        Kind::Succeed | Kind::Sleepy => false,
                    };
                    if !own {
                        v.push(format!(
                            "{id} ({}): unexpected error at attempt {}: {e}",
                            kind.name(),
                            a.number
                        ));
                    } else if !self.execs.contains(&(id.to_owned(), a.number)) {
                        v.push(format!(
                            "{id}: attempt {} failed in the handler without an exec line",
                            a.number
                        ));
                    }
                }
            }
            if !last && (a.error.is_none() || a.retry_at.is_none()) {
                v.push(format!(
                    "{id}: attempt {} is not the last but was not retried: {a:?}",
                    a.number
                ));
            }
        }
        let last = log.last();
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                v.push(format!("{id}: result does not read: {e}"));
                return Recovered {
                    now: abandoned_now,
                    last: abandoned_last,
                };
            }
        };
        match info.status {
            Status::Finished => {
                if last.is_none_or(|a| a.error.is_some()) {
                    v.push(format!("{id} is finished but its last attempt is {last:?}"));
                }
                let expected = format!("ok {id} {n}");
                if result.as_deref() != Some(expected.as_str()) {
                    v.push(format!("{id}: result {result:?}, expected {expected:?}"));
                }
            }
            Status::Failed => {
                if n != 1 + max {
                    v.push(format!(
                        "{id} failed after {n} attempts, its policy allows {}",
                        1 + max
                    ));
                }
                match last {
                    Some(a)
                        if a.error.is_some() && a.retry_at.is_none() && a.error == info.error => {}
                    _ => v.push(format!(
                        "{id} failed; last attempt {last:?}, error {:?}",
                        info.error
                    )),
                }
                if result.is_some() {
                    v.push(format!("{id} failed but has a result {result:?}"));
                }
            }
            Status::Queued | Status::Scheduled => {
                if n > max {
                    v.push(format!(
                        "{id} is {} after {n} attempts of 1 + {max}",
                        info.status
                    ));
                }
                if let Some(a) = last {
                    if a.error.is_none() || a.retry_at.is_none() || a.error != info.error {
                        v.push(format!(
                            "{id} is {} after attempt {a:?}, error {:?}",
                            info.status, info.error
                        ));
                    }
                }
                if result.is_some() {
                    v.push(format!("{id} is {} with a result {result:?}", info.status));
                }
            }
            s => v.push(format!("{id} is {s} after open")),
        }
        Recovered {
            now: abandoned_now,
            last: abandoned_last,
        }
    }

    /// Opens the store with a worker, waits until every job is final, and
    /// checks the end state.
    fn finish(&mut self, cycles: u64) {
        let cycle = cycles; // the final run logs as one more cycle
        self.seed = 0;
        let mut v = Vec::new();
        let store = match Store::open(store_path(&self.root)) {
            Ok(store) => store,
            Err(e) => self.fail(
                cycle,
                &[format!("the store does not open for the final run: {e}")],
            ),
        };
        if Some(store.recovered_at_open()) != self.last_started {
            v.push(format!(
                "the final open recovered {} runs, the store had {:?} STARTED keys",
                store.recovered_at_open(),
                self.last_started
            ));
        }
        let exec = Arc::new(append_file(&exec_log(&self.root, cycle)));
        let worker = Worker::builder(&store, handlers(exec))
            .queues(QUEUES)
            .threads(2)
            .lease(LEASE)
            .start()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        for id in self.model.keys() {
            let job = store.job(id).unwrap().expect("checked above");
            let left = deadline.saturating_duration_since(Instant::now());
            match job.wait(left) {
                Ok(s) if s.is_final() => {}
                other => v.push(format!("{id} not final 30 s into the final run: {other:?}")),
            }
        }
        match worker.shutdown(Duration::from_secs(30)) {
            Ok(stats) => {
                if stats.fenced != 0
                    || stats.abandoned != 0
                    || stats.errors != 0
                    || stats.corrupt != 0
                {
                    v.push(format!("final worker: {stats:?}"));
                }
            }
            Err(e) => v.push(format!("final worker shutdown: {e}")),
        }
        // Check copies taken while the store is still open and idle: a
        // dropped sled keeps writing and holding its lock from a background
        // thread for a moment (spacejam/sled#1289), and an idle open store's
        // files are what a crash at that moment would leave anyway.
        if let Err(e) = store.flush() {
            v.push(format!("final flush: {e}"));
        }
        self.check(cycle, &mut v, true);
        drop(store);
    }
}

/// The job ids of an intake entry (`[1][count u16]`, then per job `[key
/// 21][id length u16][id][record length u32][record]`:
/// src/engine/codec.rs), or `None` if it is malformed.
fn intake_ids(entry: &[u8]) -> Option<Vec<String>> {
    let (&version, rest) = entry.split_first()?;
    if version != 1 || rest.len() < 2 {
        return None;
    }
    let count = u16::from_be_bytes([rest[0], rest[1]]);
    let mut rest = &rest[2..];
    let mut ids = Vec::new();
    for _ in 0..count {
        let id_len = usize::from(u16::from_be_bytes(rest.get(21..23)?.try_into().ok()?));
        let id = std::str::from_utf8(rest.get(23..23 + id_len)?).ok()?;
        let at = 23 + id_len;
        let rec_len = u32::from_be_bytes(rest.get(at..at + 4)?.try_into().ok()?) as usize;
        rest = rest.get(at + 4 + rec_len..)?;
        ids.push(id.to_owned());
    }
    rest.is_empty().then_some(ids)
}

/// The cycle an id was enqueued in (`c<cycle>-t<thread>-<n>`).
/// `None` for a generated id (a UUID, which may also start with `c`).
fn id_cycle(id: &str) -> Option<u64> {
    let parts: Vec<&str> = id.strip_prefix('c')?.split('-').collect();
    match parts.as_slice() {
        [cycle, thread, n] if thread.starts_with('t') && n.parse::<u64>().is_ok() => {
            cycle.parse().ok()
        }
        _ => None,
    }
}

/// Complete lines: a last line without its newline was torn by the kill.
fn complete_lines(text: &str) -> impl Iterator<Item = &str> {
    let end = text.rfind('\n').map_or(0, |i| i + 1);
    text[..end].lines()
}

fn parse_events(text: &str, v: &mut Vec<String>) -> Vec<Event> {
    let mut events = Vec::new();
    for line in complete_lines(text) {
        let f: Vec<&str> = line.split(' ').collect();
        let parsed = match f.as_slice() {
            [tag, id, attempt, token] => match (attempt.parse(), token.parse()) {
                (Ok(attempt), Ok(token)) => {
                    let id = (*id).to_owned();
                    match *tag {
                        "exec" => Some(Event::Exec { id, attempt, token }),
                        "done" => Some(Event::Done { id, attempt, token }),
                        _ => None,
                    }
                }
                _ => None,
            },
            _ => None,
        };
        match parsed {
            Some(e) => events.push(e),
            None => v.push(format!("malformed exec log line {line:?}")),
        }
    }
    events
}

/// Copies a store directory (files and subdirectories), replacing `to`.
fn copy_store(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).unwrap();
    }
    if !from.exists() {
        return; // killed before the store was created
    }
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_store(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

// ------------------------------------------- states a kill during creation leaves

/// sled creates a new store's directory in steps: `blobs/`, then `conf`
/// (written in two `write` calls: the settings, then their CRC), then `db`.
/// A kill between two steps of the very first open leaves one of these
/// states; opening again must finish creating the store.
fn first_open_after(state: impl FnOnce(&Path)) -> dueq::Result<Store> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.dueq");
    std::fs::create_dir_all(path.join("blobs")).unwrap();
    state(&path);
    let result = Store::open(&path);
    if let Ok(store) = &result {
        store.queue("default").enqueue("succeed", &0u64).unwrap();
    }
    result
}

/// Regression: dueq refused a directory holding only sled's `blobs/` as
/// foreign data.
#[test]
fn a_store_killed_after_sled_made_its_blobs_directory_opens() {
    let result = first_open_after(|_| {});
    assert!(result.is_ok(), "{:?}", result.err());
}

/// Regression: sled reported corruption for a `conf` without its CRC,
/// forever.
#[test]
fn a_store_killed_while_sled_wrote_its_conf_opens() {
    let result = first_open_after(|path| {
        // The settings without their CRC (killed between the two writes).
        std::fs::write(
            path.join("conf"),
            "segment_size: 524288\nuse_compression: false\nversion: 0.34\n",
        )
        .unwrap();
    });
    assert!(result.is_ok(), "{:?}", result.err());
}

#[test]
fn a_store_killed_after_sled_created_an_empty_conf_opens() {
    let result = first_open_after(|path| {
        std::fs::write(path.join("conf"), "").unwrap();
    });
    assert!(result.is_ok(), "{:?}", result.err());
}

#[test]
fn a_store_killed_before_its_marker_was_written_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.dueq");
    {
        // What reached disk of a first open killed inside the meta check:
        // the trees and the schema version, not yet the magic value.
        let db = sled::open(&path).unwrap();
        for name in ["meta", "queues", "jobs", "index"] {
            db.open_tree(name).unwrap();
        }
        db.open_tree("meta")
            .unwrap()
            .insert("schema", &1u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    // sled releases its lock from a background thread after `Db::drop`
    // (spacejam/sled#1289): wait for that, at most 5 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    let store = loop {
        match Store::open(&path) {
            Err(dueq::Error::StoreInUse { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => break other,
        }
    };
    assert!(store.is_ok(), "{:?}", store.err());
}
