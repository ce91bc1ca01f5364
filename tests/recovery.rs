//! Crash recovery and fencing.
//!
//! * A run killed mid-job (a real `SIGKILL` of a child process holding the
//!   store) is recovered at the next open: the lost run counts as a failed
//!   attempt ("abandoned: ..."), and the retry policy decides between running
//!   the job again and failing it.
//! * A run that lost its job while it went on (the job was deleted, or
//!   deleted and enqueued again under the same id) is fenced: when it ends,
//!   its outcome is not recorded and its heartbeat is refused. A live run's
//!   lease is renewed, not abandoned, even when the clock jumps past it.
//!   This part runs in one process on a `ManualClock` with handlers that
//!   block until the test releases them, so it is deterministic.
//!
//! The child process is this test binary run again with `--ignored --exact
//! recovery_child`; it finds its store and side file in environment
//! variables and does nothing without them.

#![cfg(unix)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use dueq::{Context, Error, Handlers, JobError, ManualClock, Retry, Status, Store, Worker};

const ENV_STORE: &str = "DUEQ_RECOVERY_CHILD_STORE";
const ENV_SIDE: &str = "DUEQ_RECOVERY_CHILD_SIDE";
const ENV_FLUSH: &str = "DUEQ_RECOVERY_CHILD_FLUSH";
const CHILD_TEST: &str = "recovery_child";

/// The error of a run lost because its process stopped.
const ABANDONED_AT_OPEN: &str = "abandoned: the process stopped";

// ------------------------------------------------------------ child process

/// The child: opens the store, starts a worker whose `block` handler writes
/// `started <id> <attempt> <token>` to the side file (fsynced) and then
/// blocks forever, and waits to be killed. With `ENV_FLUSH` set, the handler
/// first makes the store durable (`Store::flush`), so its claim is on disk
/// before the parent sees the `started` line.
#[test]
#[ignore = "child process of the recovery tests, which run it themselves"]
fn recovery_child() {
    let (Some(path), Some(side)) = (std::env::var_os(ENV_STORE), std::env::var_os(ENV_SIDE)) else {
        return;
    };
    let flush = std::env::var_os(ENV_FLUSH).is_some();
    let store = open_when_free(Path::new(&path));
    let side = OpenOptions::new()
        .create(true)
        .append(true)
        .open(side)
        .expect("child: open the side file");
    let mut handlers = Handlers::new();
    handlers.register_with_context("block", {
        let store = store.clone();
        move |ctx: &Context, (): ()| -> Result<(), JobError> {
            if flush {
                store.flush()?;
            }
            let line = format!(
                "started {} {} {}\n",
                ctx.job_id(),
                ctx.attempt(),
                ctx.lease_token()
            );
            (&side).write_all(line.as_bytes())?;
            side.sync_all()?;
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    });
    let _worker = Worker::builder(&store, handlers)
        .threads(1)
        .start()
        .expect("child: start the worker");
    // The parent kills us long before this; if it died, do not linger.
    std::thread::sleep(Duration::from_secs(60));
    std::process::exit(2);
}

/// A `started` line of the side file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Started {
    id: String,
    attempt: u32,
    token: u64,
}

fn parse_started(text: &str) -> Vec<Started> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            if f.next() != Some("started") {
                return None;
            }
            Some(Started {
                id: f.next()?.to_owned(),
                attempt: f.next()?.parse().ok()?,
                token: f.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// When the child is killed, relative to its claim of the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// Once the claim is durable (the handler flushed the store).
    AfterDurableClaim,
    /// As soon as the handler has started: the claim is most likely still
    /// only in memory (worker transitions are not flushed).
    RightAfterClaim,
}

/// Runs the child on `store` until its handler has started a run, then
/// kills it with SIGKILL. Returns what the handler wrote.
fn kill_child_mid_job(store: &Path, side: &Path, kill: Kill) -> Started {
    let before = parse_started(&std::fs::read_to_string(side).unwrap_or_default()).len();
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    if kill == Kill::AfterDurableClaim {
        command.env(ENV_FLUSH, "1");
    }
    let mut child = command
        .args([
            "--ignored",
            "--exact",
            CHILD_TEST,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_STORE, store)
        .env(ENV_SIDE, side)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the child");
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = loop {
        let lines = parse_started(&std::fs::read_to_string(side).unwrap_or_default());
        if lines.len() > before {
            assert_eq!(lines.len(), before + 1, "one run at a time: {lines:?}");
            break lines[before].clone();
        }
        if let Some(status) = child.try_wait().expect("poll the child") {
            panic!("the child exited before starting the job: {status}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child did not start the job within 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap the child");
    assert_eq!(
        status.signal(),
        Some(9),
        "the child died of SIGKILL: {status}"
    );
    started
}

struct Setup {
    _dir: tempfile::TempDir,
    store: PathBuf,
    side: PathBuf,
}

/// A store holding one job `victim` on the `block` handler.
fn setup(retry: Option<Retry>) -> Setup {
    setup_with(retry, &[])
}

/// A store holding `victim` (with `retry`), then the jobs `others` (no
/// retries), all on the `block` handler.
fn setup_with(retry: Option<Retry>, others: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("jobs.dueq");
    let side = dir.path().join("side.log");
    File::create(&side).unwrap();
    {
        let s = Store::open(&store).unwrap();
        let mut job = s.queue("default").job("block", &()).id("victim");
        if let Some(retry) = retry {
            job = job.retry(retry);
        }
        job.enqueue().unwrap();
        for id in others {
            s.queue("default")
                .job("block", &())
                .id(*id)
                .enqueue()
                .unwrap();
        }
    } // durable on return; dropped so the child can open it
    Setup {
        _dir: dir,
        store,
        side,
    }
}

/// Opens a store that a `Store` of this process (or the parent) just
/// dropped. sled releases its file lock from a background thread after
/// `Db::drop` returns (spacejam/sled#1289), so an immediate reopen can see
/// the store still in use for a moment: retry that, for at most 5 s.
fn open_when_free(path: &Path) -> Store {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Store::open(path) {
            Err(Error::StoreInUse { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other.expect("open the store"),
        }
    }
}

fn contains(s: &Option<String>, pat: &str) -> bool {
    s.as_deref().is_some_and(|s| s.contains(pat))
}

// -------------------------------------------------------------------- tests

#[test]
fn a_job_killed_mid_run_is_recovered_at_open_and_runs_again() {
    let s = setup(Some(Retry::max(2)));
    let first = kill_child_mid_job(&s.store, &s.side, Kill::AfterDurableClaim);
    assert_eq!((first.id.as_str(), first.attempt), ("victim", 1));

    let store = Store::open(&s.store).unwrap();
    assert_eq!(store.recovered_at_open(), 1);
    let job = store
        .job("victim")
        .unwrap()
        .expect("the job survives the kill");
    let info = job.info().unwrap();
    assert_eq!(info.status, Status::Queued, "{info:?}");
    assert_eq!(info.attempts, 1);
    assert!(contains(&info.error, ABANDONED_AT_OPEN), "{info:?}");
    assert_eq!(info.attempts_log.len(), 1, "{info:?}");
    let lost = &info.attempts_log[0];
    assert_eq!(lost.number, 1);
    assert!(contains(&lost.error, ABANDONED_AT_OPEN), "{lost:?}");
    assert!(
        lost.retry_at.is_some(),
        "the lost run was retried: {lost:?}"
    );
    let q = store.queue("default");
    assert_eq!(q.job_ids().unwrap(), ["victim"]);
    assert!(q.started().job_ids().unwrap().is_empty());
    drop((store, job, q)); // every handle, so the store closes

    // The recovery is on disk and happens once.
    let store = open_when_free(&s.store);
    assert_eq!(store.recovered_at_open(), 0);
    let job = store.job("victim").unwrap().unwrap();
    assert_eq!(job.info().unwrap(), info);

    let runs = Arc::new(Mutex::new(Vec::new()));
    let mut handlers = Handlers::new();
    handlers.register_with_context("block", {
        let runs = runs.clone();
        move |ctx: &Context, (): ()| -> Result<u32, JobError> {
            runs.lock()
                .unwrap()
                .push((ctx.attempt(), ctx.lease_token()));
            Ok(ctx.attempt())
        }
    });
    let stats = Worker::builder(&store, handlers)
        .threads(1)
        .burst()
        .unwrap();
    assert_eq!((stats.succeeded, stats.failed, stats.fenced), (1, 0, 0));
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let (attempt, token) = runs[0];
    assert_eq!(attempt, 2);
    assert!(
        token > first.token,
        "lease tokens grow across restarts: {token} after {}",
        first.token
    );
    let info = job.info().unwrap();
    assert_eq!(info.status, Status::Finished);
    assert_eq!(info.attempts, 2);
    assert_eq!(job.result::<u32>().unwrap(), Some(2));
    assert_eq!(info.attempts_log.len(), 2);
    assert_eq!(info.attempts_log[1].number, 2);
    assert_eq!(info.attempts_log[1].error, None);
}

#[test]
fn a_job_killed_mid_run_without_retries_fails_as_abandoned() {
    let s = setup(None);
    let first = kill_child_mid_job(&s.store, &s.side, Kill::AfterDurableClaim);
    assert_eq!((first.id.as_str(), first.attempt), ("victim", 1));

    let store = Store::open(&s.store).unwrap();
    assert_eq!(store.recovered_at_open(), 1);
    let job = store.job("victim").unwrap().unwrap();
    let info = job.info().unwrap();
    assert_eq!(info.status, Status::Failed, "{info:?}");
    assert_eq!(info.attempts, 1);
    assert!(contains(&info.error, ABANDONED_AT_OPEN), "{info:?}");
    assert_eq!(info.attempts_log.len(), 1);
    assert!(contains(&info.attempts_log[0].error, ABANDONED_AT_OPEN));
    assert_eq!(info.attempts_log[0].retry_at, None);
    assert_eq!(
        store.queue("default").failed().job_ids().unwrap(),
        ["victim"]
    );

    // Nothing runs it again.
    let calls = Arc::new(AtomicUsize::new(0));
    let mut handlers = Handlers::new();
    handlers.register("block", {
        let calls = calls.clone();
        move |(): ()| -> Result<(), JobError> {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let stats = Worker::builder(&store, handlers)
        .threads(1)
        .burst()
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!((stats.succeeded, stats.failed), (0, 0));
    assert_eq!(job.status().unwrap(), Status::Failed);
}

#[test]
fn runs_lost_to_kills_use_up_retries() {
    let s = setup(Some(Retry::max(1)));
    let first = kill_child_mid_job(&s.store, &s.side, Kill::AfterDurableClaim);
    // The child recovers the first run at open (it counts as attempt 1 and
    // is retried), runs attempt 2 and is killed again.
    let second = kill_child_mid_job(&s.store, &s.side, Kill::AfterDurableClaim);
    assert_eq!((first.attempt, second.attempt), (1, 2));
    assert!(second.token > first.token);

    let store = Store::open(&s.store).unwrap();
    assert_eq!(store.recovered_at_open(), 1);
    let info = store.job("victim").unwrap().unwrap().info().unwrap();
    assert_eq!(info.status, Status::Failed, "{info:?}");
    assert_eq!(info.attempts, 2);
    assert_eq!(info.attempts_log.len(), 2);
    for (n, attempt) in info.attempts_log.iter().enumerate() {
        assert_eq!(attempt.number as usize, n + 1);
        assert!(contains(&attempt.error, ABANDONED_AT_OPEN), "{attempt:?}");
    }
}

#[test]
fn a_job_killed_right_after_its_claim_runs_again() {
    // Worker transitions are not flushed, so the claim is most likely lost
    // with the process: the job is simply still queued (attempt not
    // counted). If a background flush got the claim to disk first, the run
    // is recovered as abandoned instead. Either way the job runs again.
    let s = setup(Some(Retry::max(2)));
    let first = kill_child_mid_job(&s.store, &s.side, Kill::RightAfterClaim);
    assert_eq!(first.attempt, 1);

    let store = Store::open(&s.store).unwrap();
    let job = store
        .job("victim")
        .unwrap()
        .expect("the job survives the kill");
    let info = job.info().unwrap();
    assert_eq!(info.status, Status::Queued, "{info:?}");
    match store.recovered_at_open() {
        0 => {
            assert_eq!(info.attempts, 0, "{info:?}");
            assert!(info.attempts_log.is_empty() && info.error.is_none());
        }
        1 => {
            assert_eq!(info.attempts, 1, "{info:?}");
            assert!(contains(&info.attempts_log[0].error, ABANDONED_AT_OPEN));
        }
        n => panic!("one job, {n} recovered"),
    }
    let runs = Arc::new(Mutex::new(Vec::new()));
    let mut handlers = Handlers::new();
    handlers.register_with_context("block", {
        let runs = runs.clone();
        move |ctx: &Context, (): ()| -> Result<u32, JobError> {
            runs.lock()
                .unwrap()
                .push((ctx.attempt(), ctx.lease_token()));
            Ok(ctx.attempt())
        }
    });
    let stats = Worker::builder(&store, handlers)
        .threads(1)
        .burst()
        .unwrap();
    assert_eq!(stats.succeeded, 1);
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].0, info.attempts + 1);
    assert!(
        runs[0].1 > first.token,
        "tokens are never reused: {runs:?} {first:?}"
    );
    assert_eq!(job.status().unwrap(), Status::Finished);
}

/// Regression: a run lost to a crash counts as a failed attempt, so
/// `Retry::max(n)` bounds the runs even when the job kills its process
/// right after its (unflushed) claim. Before the run journal, a job that
/// brought the process down within ~500 ms of starting was retried forever.
#[test]
fn a_run_killed_right_after_its_claim_counts_as_an_attempt() {
    let s = setup(None);
    let first = kill_child_mid_job(&s.store, &s.side, Kill::RightAfterClaim);
    assert_eq!(first.attempt, 1);
    let store = Store::open(&s.store).unwrap();
    assert_eq!(store.recovered_at_open(), 1);
    let info = store.job("victim").unwrap().unwrap().info().unwrap();
    assert_eq!(info.status, Status::Failed, "{info:?}");
    assert_eq!(info.attempts, 1);
}

/// The child's one runner thread blocks in `victim`; its worker has claimed
/// the other jobs ahead (prefetch) and the claims are on disk. A kill then
/// leaves all of them `STARTED`, but only `victim` ran: the others go back
/// to the queue, in their order, without an attempt counted (they have no
/// retries: counting one would fail them without a run).
#[test]
fn jobs_claimed_ahead_but_never_started_are_not_counted_after_a_kill() {
    let others = ["waiting-1", "waiting-2", "waiting-3"];
    let s = setup_with(Some(Retry::max(1)), &others);
    let first = kill_child_mid_job(&s.store, &s.side, Kill::AfterDurableClaim);
    assert_eq!((first.id.as_str(), first.attempt), ("victim", 1));

    let store = Store::open(&s.store).unwrap();
    assert_eq!(
        store.recovered_at_open(),
        1,
        "only victim's run is recovered"
    );
    let victim = store.job("victim").unwrap().unwrap().info().unwrap();
    assert_eq!(victim.attempts, 1, "{victim:?}");
    assert!(contains(&victim.error, ABANDONED_AT_OPEN), "{victim:?}");
    let q = store.queue("default");
    assert!(q.started().job_ids().unwrap().is_empty());
    let queued: Vec<String> = q
        .job_ids()
        .unwrap()
        .into_iter()
        .filter(|id| id != "victim")
        .collect();
    assert_eq!(queued, others, "back in the queue, in their order");
    for id in others {
        let info = store.job(id).unwrap().unwrap().info().unwrap();
        assert_eq!(info.status, Status::Queued, "{info:?}");
        assert_eq!(info.attempts, 0, "{info:?}");
        assert!(
            info.attempts_log.is_empty() && info.error.is_none(),
            "{info:?}"
        );
    }

    // Each runs once, as its first attempt.
    let runs = Arc::new(Mutex::new(Vec::new()));
    let mut handlers = Handlers::new();
    handlers.register_with_context("block", {
        let runs = runs.clone();
        move |ctx: &Context, (): ()| -> Result<(), JobError> {
            runs.lock()
                .unwrap()
                .push((ctx.job_id().to_owned(), ctx.attempt()));
            Ok(())
        }
    });
    let stats = Worker::builder(&store, handlers)
        .threads(1)
        .burst()
        .unwrap();
    assert_eq!((stats.succeeded, stats.failed), (4, 0));
    let runs = runs.lock().unwrap().clone();
    for id in others {
        assert_eq!(
            runs.iter().filter(|(r, _)| r == id).collect::<Vec<_>>(),
            [&(id.to_owned(), 1)]
        );
    }
}

// ------------------------------------------------------------------ fencing

/// What a `slow` run tells the test.
enum Report {
    /// The run started and waits for `release`.
    Started {
        attempt: u32,
        token: u64,
        release: mpsc::Sender<()>,
    },
    /// The released run heartbeat with this result, then returned
    /// `Ok("run <attempt>")`.
    Heartbeat {
        attempt: u32,
        result: Result<(), Error>,
    },
}

/// Handlers with one job, `slow`, that reports its start, blocks until the
/// test releases it, heartbeats, and succeeds.
fn slow_handlers() -> (Handlers, mpsc::Receiver<Report>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let mut handlers = Handlers::new();
    handlers.register_with_context("slow", move |ctx: &Context, (): ()| {
        let (release, released) = mpsc::channel();
        let send = |r: Report| {
            let _ = tx.lock().unwrap().send(r);
        };
        send(Report::Started {
            attempt: ctx.attempt(),
            token: ctx.lease_token(),
            release,
        });
        let _ = released.recv();
        send(Report::Heartbeat {
            attempt: ctx.attempt(),
            result: ctx.heartbeat(),
        });
        Ok::<_, JobError>(format!("run {}", ctx.attempt()))
    });
    (handlers, rx)
}

const REPORT_TIMEOUT: Duration = Duration::from_secs(20);

fn next_started(rx: &mpsc::Receiver<Report>) -> (u32, u64, mpsc::Sender<()>) {
    match rx.recv_timeout(REPORT_TIMEOUT) {
        Ok(Report::Started {
            attempt,
            token,
            release,
        }) => (attempt, token, release),
        Ok(Report::Heartbeat { attempt, .. }) => {
            panic!("expected a run to start, run {attempt} heartbeat")
        }
        Err(e) => panic!("no run started: {e}"),
    }
}

fn next_heartbeat(rx: &mpsc::Receiver<Report>) -> (u32, Result<(), Error>) {
    match rx.recv_timeout(REPORT_TIMEOUT) {
        Ok(Report::Heartbeat { attempt, result }) => (attempt, result),
        Ok(Report::Started { attempt, .. }) => {
            panic!("expected a heartbeat, run {attempt} started")
        }
        Err(e) => panic!("no heartbeat: {e}"),
    }
}

/// Waits (in real time, polling) until the worker has fenced `n` runs.
fn wait_fenced(worker: &Worker, n: u64) {
    let deadline = Instant::now() + REPORT_TIMEOUT;
    while worker.stats().fenced < n {
        assert!(
            Instant::now() < deadline,
            "the late run's outcome was not fenced: {:?}",
            worker.stats()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn manual_store(dir: &tempfile::TempDir) -> (Store, ManualClock) {
    let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
    let store = Store::builder(dir.path().join("jobs.dueq"))
        .clock(clock.clone())
        .open()
        .unwrap();
    (store, clock)
}

const LEASE: Duration = Duration::from_secs(10);

#[test]
fn a_run_whose_job_was_deleted_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _clock) = manual_store(&dir);
    let job = store
        .queue("default")
        .job("slow", &())
        .id("slow")
        .retry(Retry::max(1))
        .enqueue()
        .unwrap();
    let (handlers, reports) = slow_handlers();
    let worker = Worker::builder(&store, handlers)
        .threads(2)
        .lease(LEASE)
        .start()
        .unwrap();
    let (attempt, _, release) = next_started(&reports);
    assert_eq!(attempt, 1);
    job.delete().unwrap();
    release.send(()).unwrap();
    let (attempt, hb) = next_heartbeat(&reports);
    assert_eq!(attempt, 1);
    assert!(
        matches!(&hb, Err(Error::LeaseLost { id }) if id == "slow"),
        "{hb:?}"
    );
    wait_fenced(&worker, 1);
    assert!(
        store.job("slow").unwrap().is_none(),
        "the outcome recreated the job"
    );
    let stats = worker.shutdown(REPORT_TIMEOUT).unwrap();
    assert_eq!(
        (stats.succeeded, stats.failed, stats.abandoned, stats.fenced),
        (0, 0, 0, 1),
        "{stats:?}"
    );
    let q = store.queue("default");
    for registry in [q.started(), q.finished(), q.failed(), q.scheduled()] {
        assert!(registry.job_ids().unwrap().is_empty(), "{registry:?}");
    }
    assert!(q.job_ids().unwrap().is_empty());
    assert!(reports.try_recv().is_err(), "nothing ran again");
}

#[test]
fn a_run_whose_job_was_recreated_under_its_id_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _clock) = manual_store(&dir);
    let q = store.queue("default");
    let job = q.job("slow", &()).id("slow").enqueue().unwrap();
    let (handlers, reports) = slow_handlers();
    // Two runners, so the new job runs while the old run is still stuck.
    let worker = Worker::builder(&store, handlers)
        .threads(2)
        .lease(LEASE)
        .start()
        .unwrap();
    let (attempt1, token1, release1) = next_started(&reports);
    assert_eq!(attempt1, 1);

    // The same id, a new job: it runs while the old run goes on.
    job.delete().unwrap();
    q.job("slow", &()).id("slow").enqueue().unwrap();
    let (attempt2, token2, release2) = next_started(&reports);
    assert_eq!(attempt2, 1, "a new job starts at attempt 1");
    assert!(token2 > token1, "a fresh token: {token2} after {token1}");
    let during = job.info().unwrap();
    assert_eq!((during.status, during.attempts), (Status::Started, 1));

    // The old run ends: its job is gone, whatever holds the id now. Only the
    // token tells the runs apart.
    release1.send(()).unwrap();
    let (attempt, hb) = next_heartbeat(&reports);
    assert_eq!(attempt, 1);
    assert!(
        matches!(&hb, Err(Error::LeaseLost { id }) if id == "slow"),
        "{hb:?}"
    );
    wait_fenced(&worker, 1);
    assert_eq!(job.info().unwrap(), during, "a fenced run changes nothing");

    // The new run heartbeats and finishes normally.
    release2.send(()).unwrap();
    let (_, hb) = next_heartbeat(&reports);
    assert!(hb.is_ok(), "the live run keeps its lease: {hb:?}");
    assert_eq!(job.wait(REPORT_TIMEOUT).unwrap(), Status::Finished);
    let info = job.info().unwrap();
    assert_eq!(info.attempts, 1);
    assert_eq!(info.attempts_log.len(), 1);
    assert_eq!(info.attempts_log[0].error, None);
    let stats = worker.shutdown(REPORT_TIMEOUT).unwrap();
    assert_eq!(
        (stats.succeeded, stats.failed, stats.abandoned, stats.fenced),
        (1, 0, 0, 1),
        "{stats:?}"
    );
}
