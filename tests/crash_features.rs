//! kill -9 and the rq-parity features: dependency chains and an interval
//! schedule, worked by a child process that is SIGKILLed at random moments.
//!
//! Run: `cargo test --test crash_features`. `DUEQ_CRASH_FEATURES_CYCLES`
//! sets the number of cycles (default 20), `DUEQ_CRASH_FEATURES_SEED` the
//! base seed (decimal or `0x` hex). A violation panics with the cycle, the
//! seed and the kept work directory (store, logs, child stderr).
//!
//! # One cycle
//!
//! The parent re-executes this test binary as `crash_features_child` (an
//! ignored test) on the shared store. The child opens it (real clock,
//! durable), creates the interval schedule `tick` (every 30 ms, queue
//! `ticks`, `result_ttl` forever) if it is not there yet, starts a
//! two-thread worker on `default` and `ticks`, and enqueues chains until it
//! is killed. A chain `c<cycle>-<n>` is:
//!
//! * `-p`, the parent: `ok` or (one in three) `fail`, `Retry::max(1)`,
//!   sometimes due 20-200 ms later;
//! * `-c`, its child (`depends_on` the parent);
//! * `-g`, the grandchild (`depends_on` the child);
//! * `-t` (one chain in two), a child that allows failure (`depends_on` the
//!   parent with `allow_failure`).
//!
//! Every job keeps its result forever (`result_ttl(Duration::MAX)`), so
//! nothing leaves the store. A chain is enqueued either with one
//! `enqueue_many` or job by job (so a kill can land between the jobs of a
//! chain); every acknowledged job is logged (`ack <id>`, one `write` per
//! line, `O_APPEND`).
//!
//! About one cycle in four is killed 0-20 ms after the child starts
//! opening the store (often in its recovery of the previous child's runs,
//! which fails parents and settles dependents); the others 20-300 ms after
//! it opened it.
//!
//! # What the parent checks
//!
//! After each kill, on a copy of the store opened with dueq (which recovers
//! the killed runs; the next child opens the original, so it recovers them
//! itself), and once more after a final drain (schedule paused, burst
//! workers until nothing waits):
//!
//! * `Store::verify` finds no problem, nothing is quarantined, every
//!   acknowledged job is there, and no job is `STARTED` after the open.
//! * Never stranded: a `DEFERRED` job waits on at least one parent, and
//!   every parent it waits on exists and is not final.
//! * A child (or grandchild) of a finished parent is never canceled; a
//!   child of a failed or canceled parent that does not allow failure is
//!   canceled; a child that allows failure is never canceled; a child
//!   never ran (queued, scheduled, started, finished, failed) unless its
//!   parent finished, or is final when it allows failure.
//! * The schedule fired at most once per instant: its `fired` count equals
//!   the number of distinct `cron-tick-*` jobs in the store (none is ever
//!   deleted), its last job is there, and no two fires are less than one
//!   interval apart.
//! * At the end nothing is left waiting: every job is final.
//!
//! Time is the real clock (the child must run); the checks are invariants
//! only, never timings.

#![cfg(unix)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dueq::{
    Clock, Dependency, Handlers, JobError, JobInfo, ManualClock, Retry, Status, Store, SystemClock,
    Worker,
};

const ENV_CYCLES: &str = "DUEQ_CRASH_FEATURES_CYCLES";
const ENV_SEED: &str = "DUEQ_CRASH_FEATURES_SEED";
const ENV_CHILD_DIR: &str = "DUEQ_CRASH_FEATURES_CHILD_DIR";
const ENV_CHILD_CYCLE: &str = "DUEQ_CRASH_FEATURES_CHILD_CYCLE";
const ENV_CHILD_SEED: &str = "DUEQ_CRASH_FEATURES_CHILD_SEED";
const CHILD_TEST: &str = "crash_features_child";

const DEFAULT_CYCLES: u64 = 20;
const DEFAULT_SEED: u64 = 0xc4a1_75ed_0def_e125;

const QUEUES: [&str; 2] = ["default", "ticks"];
const SCHEDULE: &str = "tick";
const TICK: Duration = Duration::from_millis(30);
const LEASE: Duration = Duration::from_secs(60);

/// xorshift64*, seeded through splitmix64 (as in `tests/crash.rs`).
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

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
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
    let mut f = file;
    f.write_all(line.as_bytes()).expect("append a log line");
}

/// Complete lines: a last line without its newline was torn by the kill.
fn complete_lines(text: &str) -> impl Iterator<Item = &str> {
    let end = text.rfind('\n').map_or(0, |i| i + 1);
    text[..end].lines()
}

fn store_path(root: &Path) -> PathBuf {
    root.join("store")
}

fn log_path(root: &Path, what: &str, cycle: u64) -> PathBuf {
    root.join("logs").join(format!("{what}-{cycle}.log"))
}

fn handlers() -> Handlers {
    let mut h = Handlers::new();
    h.register("ok", |sleep_ms: u64| -> Result<(), JobError> {
        std::thread::sleep(Duration::from_millis(sleep_ms));
        Ok(())
    });
    h.register("fail", |_: u64| -> Result<(), JobError> {
        Err(JobError::new("fail: every attempt fails"))
    });
    h.register("tick", |_: ()| -> Result<(), JobError> { Ok(()) });
    h
}

// ------------------------------------------------------------ child process

#[test]
#[ignore = "child process of kill_9_dependencies_and_schedules, which runs it itself"]
fn crash_features_child() {
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
    let phase = append_file(&log_path(&root, "phase", cycle));
    log_line(&phase, "opening\n");
    let store = Store::open(store_path(&root)).unwrap_or_else(|e| die(&phase, "open", &e, 3));
    log_line(&phase, "opened\n");
    let have_schedule = store
        .schedules()
        .unwrap_or_else(|e| die(&phase, "schedules", &e, 4))
        .iter()
        .any(|s| s.name == SCHEDULE);
    if !have_schedule {
        store
            .schedule(SCHEDULE, "tick", &())
            .every(TICK)
            .queue("ticks")
            .result_ttl(Duration::MAX)
            .create()
            .unwrap_or_else(|e| die(&phase, "schedule", &e, 4));
    }
    let _worker = Worker::builder(&store, handlers())
        .queues(QUEUES)
        .threads(2)
        .lease(LEASE)
        .start()
        .unwrap_or_else(|e| die(&phase, "worker", &e, 4));
    let ack = append_file(&log_path(&root, "ack", cycle));
    let mut rng = Rng::new(seed);
    for n in 0u64.. {
        if let Err(e) = enqueue_chain(&store, &mut rng, &ack, cycle, n) {
            die(&phase, "enqueue", &e, 6);
        }
        // Leave the worker some room (two cores for everything).
        std::thread::sleep(Duration::from_millis(1 + rng.below(4)));
        if n > 100_000 {
            break; // the parent kills us well before this
        }
    }
    log_line(&phase, "timeout\n");
    std::process::exit(5);
}

/// Logs an error in the phase log and exits: the parent reports it.
fn die(phase: &File, what: &str, e: &dueq::Error, code: i32) -> ! {
    log_line(phase, &format!("{what}-error {e}\n"));
    std::process::exit(code);
}

/// Enqueues one chain, in one batch or job by job, logging each
/// acknowledged job.
fn enqueue_chain(store: &Store, rng: &mut Rng, ack: &File, cycle: u64, n: u64) -> dueq::Result<()> {
    let q = store.queue("default");
    let id = |part: &str| format!("c{cycle}-{n}-{part}");
    let failing = rng.below(3) == 0;
    let mut parent = q
        .job(if failing { "fail" } else { "ok" }, &rng.below(4))
        .id(id("p"))
        .retry(Retry::max(1))
        .result_ttl(Duration::MAX);
    if rng.below(4) == 0 {
        parent = parent.delay(Duration::from_millis(20 + rng.below(181)));
    }
    let mut jobs = vec![
        parent,
        q.job("ok", &rng.below(3))
            .id(id("c"))
            .depends_on(id("p").as_str())
            .result_ttl(Duration::MAX),
        q.job("ok", &rng.below(3))
            .id(id("g"))
            .depends_on(id("c").as_str())
            .result_ttl(Duration::MAX),
    ];
    if rng.below(2) == 0 {
        jobs.push(
            q.job("ok", &0u64)
                .id(id("t"))
                .depends_on(Dependency::on(id("p")).allow_failure())
                .result_ttl(Duration::MAX),
        );
    }
    if rng.below(2) == 0 {
        for job in q.enqueue_many(jobs)? {
            log_line(ack, &format!("ack {}\n", job.id()));
        }
    } else {
        for builder in jobs {
            let job = builder.enqueue()?;
            log_line(ack, &format!("ack {}\n", job.id()));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------- parent

#[test]
fn kill_9_dependencies_and_schedules() {
    let env = |name: &str, default: u64| {
        std::env::var(name).ok().map_or(default, |v| {
            let v = v.trim();
            match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            }
            .unwrap_or_else(|_| panic!("{name}: a decimal or 0x-hex number"))
        })
    };
    let cycles = env(ENV_CYCLES, DEFAULT_CYCLES);
    let base_seed = env(ENV_SEED, DEFAULT_SEED);
    let dir = tempfile::Builder::new()
        .prefix("dueq-crash-features-")
        .tempdir()
        .expect("a work directory");
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let mut h = Harness {
        root: dir.path().to_owned(),
        dir: Some(dir),
        base_seed,
        seed: 0,
        acked: BTreeSet::new(),
    };
    let started = Instant::now();
    println!(
        "kill_9_dependencies_and_schedules: {cycles} cycles, base seed {base_seed:#x}, \
         work dir {}",
        h.root.display()
    );
    let mut last = Tally::default();
    for cycle in 0..cycles {
        last = h.cycle(cycle);
    }
    println!("after the last kill: {last:?}");
    let end = h.finish(cycles);
    println!(
        "kill_9_dependencies_and_schedules: {cycles} cycles in {:.1} s, {} jobs acked; \
         final: {end:?}; 0 violations",
        started.elapsed().as_secs_f64(),
        h.acked.len(),
    );
}

/// What a check saw, for the summary.
#[derive(Debug, Default)]
struct Tally {
    jobs: usize,
    by_status: BTreeMap<String, usize>,
    fired: u64,
}

struct Harness {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    base_seed: u64,
    seed: u64,
    acked: BTreeSet<String>,
}

impl Harness {
    fn fail(&mut self, cycle: u64, violations: &[String]) -> ! {
        let kept = self.dir.take().map(tempfile::TempDir::keep);
        let mut msg = format!(
            "kill_9_dependencies_and_schedules: {} violation(s) at cycle {cycle} (cycle seed \
             {:#x}; rerun with {ENV_SEED}={:#x}); work dir kept at {kept:?}\n",
            violations.len(),
            self.seed,
            self.base_seed,
        );
        for v in violations.iter().take(40) {
            let _ = writeln!(msg, "  - {v}");
        }
        if violations.len() > 40 {
            let _ = writeln!(msg, "  ... and {} more", violations.len() - 40);
        }
        let stderr =
            std::fs::read_to_string(log_path(&self.root, "stderr", cycle)).unwrap_or_default();
        if !stderr.trim().is_empty() {
            let lines: Vec<&str> = stderr.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            let _ = writeln!(msg, "child stderr (tail):\n{tail}");
        }
        panic!("{msg}");
    }

    fn cycle(&mut self, cycle: u64) -> Tally {
        let seed = Rng::new(self.base_seed ^ cycle.wrapping_mul(0xa076_1d64_78bd_642f)).next();
        self.seed = seed;
        let mut rng = Rng::new(seed);
        let early = rng.below(4) == 0;
        let delay = if early {
            rng.below(21)
        } else {
            20 + rng.below(281)
        };
        let mark = if early { "opening" } else { "opened" };
        println!("cycle {cycle}: seed {seed:#018x}, kill {delay} ms after `{mark}`");
        let phase_log = log_path(&self.root, "phase", cycle);
        let mut child = Command::new(std::env::current_exe().expect("the test binary"))
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
            .stderr(File::create(log_path(&self.root, "stderr", cycle)).unwrap())
            .spawn()
            .expect("spawn the child");
        let spawned = Instant::now();
        let deadline = spawned + Duration::from_secs(60);
        loop {
            let phase = std::fs::read_to_string(&phase_log).unwrap_or_default();
            if complete_lines(&phase).any(|l| l == mark) {
                break;
            }
            let exited = child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.fail(
                    cycle,
                    &[format!(
                        "the child did not reach `{mark}` (exit: {exited:?}); phase log: {phase:?}"
                    )],
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let reached = spawned.elapsed();
        std::thread::sleep(Duration::from_millis(delay));
        if let Some(status) = child.try_wait().unwrap() {
            let phase = std::fs::read_to_string(&phase_log).unwrap_or_default();
            self.fail(
                cycle,
                &[format!(
                    "the child exited before the kill: {status}; phase log: {phase:?}"
                )],
            );
        }
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("reap the child");
        let mut v = Vec::new();
        if status.signal() != Some(9) {
            v.push(format!("the child did not die of SIGKILL: {status}"));
        }
        let phase = std::fs::read_to_string(&phase_log).unwrap_or_default();
        for line in complete_lines(&phase) {
            if !matches!(line, "opening" | "opened") {
                v.push(format!("child {cycle}: {line}"));
            }
        }
        self.read_acks(cycle);
        let killed = Instant::now();
        // Check a copy, so that the next child opens (and recovers) exactly
        // what this one left.
        let copy = self.root.join(format!("copy-{cycle}"));
        copy_dir(&store_path(&self.root), &copy);
        if cycle >= 2 {
            let _ = std::fs::remove_dir_all(self.root.join(format!("copy-{}", cycle - 2)));
        }
        let tally = if copy.exists() {
            // A frozen clock: nothing moves from scheduled to queued
            // between the reads of one check.
            let clock = ManualClock::new(SystemClock.now());
            match Store::builder(&copy).clock(clock).open() {
                Ok(store) => self.check(&store, false, &mut v),
                Err(e) => {
                    v.push(format!("the store does not open after the kill: {e}"));
                    Tally::default()
                }
            }
        } else {
            Tally::default() // killed before the store was created
        };
        if !v.is_empty() {
            self.fail(cycle, &v);
        }
        println!(
            "  the child reached `{mark}` in {} ms; checked in {} ms: {} jobs, {:?}, {} fires",
            reached.as_millis(),
            killed.elapsed().as_millis(),
            tally.jobs,
            tally.by_status,
            tally.fired
        );
        tally
    }

    fn read_acks(&mut self, cycle: u64) {
        let text = std::fs::read_to_string(log_path(&self.root, "ack", cycle)).unwrap_or_default();
        for line in complete_lines(&text) {
            if let Some(id) = line.strip_prefix("ack ") {
                self.acked.insert(id.to_owned());
            }
        }
    }

    /// Opens the store itself, pauses the schedule, drains it with burst
    /// workers and checks the end state.
    fn finish(&mut self, cycles: u64) -> Tally {
        self.seed = 0;
        let mut v = Vec::new();
        let store = match Store::open(store_path(&self.root)) {
            Ok(store) => store,
            Err(e) => self.fail(
                cycles,
                &[format!("the store does not open for the final drain: {e}")],
            ),
        };
        if let Err(e) = store.pause_schedule(SCHEDULE) {
            v.push(format!("pause the schedule: {e}"));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let stats = Worker::builder(&store, handlers())
                .queues(QUEUES)
                .threads(2)
                .lease(LEASE)
                .burst()
                .unwrap();
            if stats.errors != 0 || stats.fenced != 0 || stats.abandoned != 0 {
                v.push(format!("final burst: {stats:?}"));
            }
            let waiting: usize = store
                .queues()
                .iter()
                .map(|q| {
                    q.count().unwrap()
                        + q.scheduled().count().unwrap()
                        + q.deferred().count().unwrap()
                        + q.started().count().unwrap()
                })
                .sum();
            if waiting == 0 {
                break;
            }
            if Instant::now() > deadline {
                v.push(format!("{waiting} jobs still waiting 20 s into the drain"));
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let tally = self.check(&store, true, &mut v);
        if !v.is_empty() {
            self.fail(cycles, &v);
        }
        tally
    }

    /// The invariants of a store no worker is running on.
    fn check(&self, store: &Store, last: bool, v: &mut Vec<String>) -> Tally {
        match store.verify() {
            Ok(report) => {
                for p in &report.problems {
                    v.push(format!("verify: {:?}: {}", p.kind, p.message));
                }
                if !report.quarantined.is_empty() {
                    v.push(format!("quarantined: {:?}", report.quarantined));
                }
            }
            Err(e) => v.push(format!("verify: {e}")),
        }
        // Every job, through the registries.
        let mut listed: BTreeMap<String, Status> = BTreeMap::new();
        for q in store.queues() {
            let registries = [
                (Status::Queued, q.job_ids()),
                (Status::Scheduled, q.scheduled().job_ids()),
                (Status::Started, q.started().job_ids()),
                (Status::Finished, q.finished().job_ids()),
                (Status::Failed, q.failed().job_ids()),
                (Status::Canceled, q.canceled().job_ids()),
                (Status::Deferred, q.deferred().job_ids()),
                (Status::Stopped, q.stopped().job_ids()),
            ];
            for (status, ids) in registries {
                match ids {
                    Ok(ids) => {
                        for id in ids {
                            if let Some(other) = listed.insert(id.clone(), status) {
                                v.push(format!("{id} is listed as {other} and {status}"));
                            }
                        }
                    }
                    Err(e) => v.push(format!("{} {status}: {e}", q.name())),
                }
            }
        }
        let mut infos: BTreeMap<String, JobInfo> = BTreeMap::new();
        for (id, status) in &listed {
            match store.job(id).and_then(|j| j.map(|j| j.info()).transpose()) {
                Ok(Some(info)) => {
                    // (The final check runs on the real clock, where a
                    // scheduled job can come due between two reads.)
                    let moved = *status == Status::Scheduled && info.status == Status::Queued;
                    if info.status != *status && !moved {
                        v.push(format!("{id} is listed {status}, is {}", info.status));
                    }
                    infos.insert(id.clone(), info);
                }
                other => v.push(format!("{id} is listed {status}, store.job: {other:?}")),
            }
        }
        for id in &self.acked {
            if !infos.contains_key(id) {
                v.push(format!("acknowledged job {id} is lost"));
            }
        }
        let status = |id: &str| infos.get(id).map(|i| i.status);
        for (id, info) in &infos {
            match info.status {
                Status::Started => v.push(format!("{id} is started after the open")),
                Status::Stopped => v.push(format!("{id} is stopped (nothing stops jobs)")),
                Status::Queued | Status::Scheduled | Status::Deferred if last => {
                    v.push(format!("{id} is {} after the drain", info.status));
                }
                _ => {}
            }
            // Never stranded: a deferred job waits on a parent that can
            // still finish.
            if info.status == Status::Deferred {
                if info.waiting_on.is_empty() {
                    v.push(format!("{id} is deferred but waits on nothing"));
                }
                for parent in &info.waiting_on {
                    match status(parent) {
                        Some(s) if s.is_final() => v.push(format!(
                            "{id} is deferred, waiting on {parent}, which is {s}: stranded"
                        )),
                        Some(_) => {}
                        None => v.push(format!("{id} waits on {parent}, which is gone")),
                    }
                }
            }
            // The chain rules.
            let Some((chain, part)) = id.rsplit_once('-') else {
                continue;
            };
            let (parent, tolerant) = match part {
                "c" | "t" => (format!("{chain}-p"), part == "t"),
                "g" => (format!("{chain}-c"), false),
                _ => continue,
            };
            let Some(ps) = status(&parent) else {
                v.push(format!(
                    "{id} is in the store but its parent {parent} is not"
                ));
                continue;
            };
            let cs = info.status;
            let ran = matches!(
                cs,
                Status::Queued
                    | Status::Scheduled
                    | Status::Started
                    | Status::Finished
                    | Status::Failed
            );
            if ps == Status::Finished && cs == Status::Canceled {
                v.push(format!(
                    "{id} is canceled though its parent {parent} finished: {:?}",
                    info.error
                ));
            }
            if !tolerant
                && cs == Status::Canceled
                && !matches!(ps, Status::Failed | Status::Canceled)
            {
                v.push(format!(
                    "{id} is canceled though its parent {parent} is {ps}: {:?}",
                    info.error
                ));
            }
            if tolerant && cs == Status::Canceled {
                v.push(format!(
                    "{id} allows failure but is canceled: {:?}",
                    info.error
                ));
            }
            if !tolerant
                && matches!(ps, Status::Failed | Status::Canceled)
                && cs != Status::Canceled
            {
                v.push(format!(
                    "{id} is {cs} though its parent {parent} is {ps} (should be canceled)"
                ));
            }
            let parent_ok = if tolerant {
                ps.is_final()
            } else {
                ps == Status::Finished
            };
            if ran && !parent_ok {
                v.push(format!("{id} is {cs} while its parent {parent} is {ps}"));
            }
        }
        // The schedule: one job per fire.
        let mut instants: Vec<u64> = Vec::new();
        for id in infos.keys() {
            if let Some(instant) = id.strip_prefix("cron-tick-") {
                match instant.parse() {
                    Ok(ms) => instants.push(ms),
                    Err(_) => v.push(format!("a schedule job with a bad id: {id}")),
                }
            }
        }
        instants.sort_unstable();
        // Each fire sets the next one at least one interval after it.
        for pair in instants.windows(2) {
            if pair[1] - pair[0] < TICK.as_millis() as u64 {
                v.push(format!(
                    "schedule fires at {} and {}: less than one interval apart",
                    pair[0], pair[1]
                ));
            }
        }
        let fires = instants.len();
        let mut fired = 0;
        match store.schedules() {
            Ok(schedules) => match schedules.iter().find(|s| s.name == SCHEDULE) {
                Some(s) => {
                    fired = s.fired;
                    if s.fired != fires as u64 {
                        v.push(format!(
                            "schedule {SCHEDULE} fired {} times but {fires} of its jobs are in \
                             the store",
                            s.fired
                        ));
                    }
                    if let Some(job) = &s.last_job {
                        if !infos.contains_key(job) {
                            v.push(format!("the schedule's last job {job} is not in the store"));
                        }
                    }
                }
                None if fires > 0 => {
                    v.push(format!("{fires} schedule jobs, but no schedule {SCHEDULE}"));
                }
                None => {}
            },
            Err(e) => v.push(format!("schedules: {e}")),
        }
        let mut by_status = BTreeMap::new();
        for info in infos.values() {
            *by_status.entry(info.status.to_string()).or_insert(0) += 1;
        }
        Tally {
            jobs: infos.len(),
            by_status,
            fired,
        }
    }
}

/// Copies a directory tree (a store's files), replacing `to`.
fn copy_dir(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).unwrap();
    }
    if !from.exists() {
        return;
    }
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
