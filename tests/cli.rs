//! The `dueq` binary against real stores in temporary directories: each
//! command's table and `--json` output, exit codes, the one-process rule,
//! and round trips with the library (a job enqueued by the CLI is run by a
//! library worker; a job failed by a library worker is requeued by the CLI).
//!
//! Only one process may open a store, so every test closes its `Store`
//! (drops every handle) before running the binary.
#![cfg(feature = "cli")]

mod common;
use common::open_raw;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use dueq::{Handlers, JobError, Status, Store, Worker};
use serde_json::Value;

/// The binary, pointed at `store`.
fn dueq(store: &Path) -> Command {
    let mut cmd = Command::cargo_bin("dueq").unwrap();
    cmd.arg("--store").arg(store).env_remove("DUEQ_STORE");
    cmd
}

/// Runs the binary on `store` with `args`. sled releases its lock from a
/// background thread after the test's `Store` is dropped (sled#1289), so a
/// run that finds the store busy is retried for a few seconds.
fn run(store: &Path, args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = dueq(store).args(args).output().unwrap();
        let busy = String::from_utf8_lossy(&out.stderr).contains("open in another process");
        if !busy || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Runs and expects exit code `code`; returns stdout.
fn expect(store: &Path, args: &[&str], code: i32) -> String {
    let out = run(store, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "dueq {args:?}\nstdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn ok(store: &Path, args: &[&str]) -> String {
    expect(store, args, 0)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(json).collect()
}

fn temp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.dueq");
    (dir, path)
}

fn handlers() -> Handlers {
    let mut h = Handlers::new();
    h.register("add", |(a, b): (i64, i64)| -> Result<i64, JobError> {
        Ok(a + b)
    });
    h.register("boom", |_: Value| -> Result<(), JobError> {
        Err(JobError::new("boom: it always fails"))
    });
    h
}

/// A store with, on queue "default": "done" finished, "bad" failed (no
/// retry), "wait" queued; on queue "mail": "later" scheduled in an hour and
/// "stop" canceled. Closed when this returns.
fn populated() -> (tempfile::TempDir, PathBuf) {
    let (dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let q = store.queue("default");
    q.job("add", &(1, 2)).id("done").enqueue().unwrap();
    q.job("boom", &"x").id("bad").enqueue().unwrap();
    Worker::builder(&store, handlers())
        .queues(["default"])
        .burst()
        .unwrap();
    q.job("add", &(3, 4)).id("wait").enqueue().unwrap();
    let mail = store.queue("mail");
    mail.job("add", &(5, 6))
        .id("later")
        .enqueue_in(Duration::from_secs(3600))
        .unwrap();
    mail.job("add", &(7, 8))
        .id("stop")
        .enqueue()
        .unwrap()
        .cancel()
        .unwrap();
    drop(store);
    (dir, path)
}

/// The status of job `id`, read through the library.
fn status(path: &Path, id: &str) -> Option<Status> {
    let store = open_store(path);
    let job = store.job(id).unwrap()?;
    Some(job.status().unwrap())
}

/// Opens the store in this process, waiting for the binary's lock to go.
fn open_store(path: &Path) -> Store {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Store::open(path) {
            Err(dueq::Error::StoreInUse { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
}

#[test]
fn info_shows_counts_per_queue_and_status() {
    let (_dir, path) = populated();
    let table = ok(&path, &["info"]);
    for word in [
        "queue",
        "queued",
        "scheduled",
        "started",
        "finished",
        "failed",
        "canceled",
        "deferred",
        "stopped",
        "default",
        "mail",
        "(all)",
        "2 queue(s), 5 job(s)",
        "on disk",
    ] {
        assert!(table.contains(word), "{word:?} missing from:\n{table}");
    }
    let row = table.lines().find(|l| l.contains("default")).unwrap();
    let numbers: Vec<&str> = row
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    // queued, scheduled, deferred, started, finished, failed, stopped,
    // canceled, total
    assert_eq!(
        numbers,
        ["1", "0", "0", "0", "1", "1", "0", "0", "3"],
        "{row}"
    );

    let info = json(&ok(&path, &["info", "--json"]));
    let queues = info["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 2);
    assert_eq!(queues[0]["name"], "default");
    assert_eq!(queues[0]["failed"], 1);
    assert_eq!(queues[1]["name"], "mail");
    assert_eq!(queues[1]["scheduled"], 1);
    assert_eq!(queues[1]["canceled"], 1);
    assert_eq!(info["totals"]["total"], 5);
    assert!(info["size_on_disk"].as_u64().unwrap() > 0);

    let metrics = ok(&path, &["info", "--prometheus"]);
    assert!(metrics.contains("# TYPE dueq_jobs gauge"), "{metrics}");
    assert!(
        metrics.contains("dueq_jobs{queue=\"mail\",status=\"scheduled\"} 1"),
        "{metrics}"
    );
}

#[test]
fn info_watch_refreshes_until_stopped() {
    use std::io::BufRead as _;
    let (_dir, path) = populated();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("dueq"))
        .arg("--store")
        .arg(&path)
        .args(["info", "--watch", "0.1", "--json"])
        .env_remove("DUEQ_STORE")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    // Generous: a loaded CI machine may take a while per refresh.
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines.len() < 3 && Instant::now() < deadline {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        lines.push(json(&line));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines.iter().all(|l| l["totals"]["total"] == 5), "{lines:?}");
}

#[test]
fn jobs_lists_with_filters_as_table_and_json_lines() {
    let (_dir, path) = populated();
    let table = ok(&path, &["jobs"]);
    for id in ["done", "bad", "wait", "later", "stop"] {
        assert!(table.contains(id), "{id} missing from:\n{table}");
    }
    assert!(table.contains("boom: it always fails"), "{table}");

    let lines = json_lines(&ok(&path, &["jobs", "--json"]));
    assert_eq!(lines.len(), 5);
    let bad = lines.iter().find(|l| l["id"] == "bad").unwrap();
    assert_eq!(bad["status"], "failed");
    assert_eq!(bad["attempts"], 1);
    assert_eq!(bad["handler"], "boom");
    assert_eq!(bad["error"], "boom: it always fails");

    let failed = json_lines(&ok(&path, &["jobs", "--status", "failed", "--json"]));
    let ids: Vec<&Value> = failed.iter().map(|l| &l["id"]).collect();
    assert_eq!(ids, ["bad"]);
    let mail = json_lines(&ok(&path, &["jobs", "--queue", "mail", "--json"]));
    let ids: Vec<&Value> = mail.iter().map(|l| &l["id"]).collect();
    assert_eq!(ids, ["later", "stop"]);
    assert_eq!(
        json_lines(&ok(&path, &["jobs", "--limit", "2", "--json"])).len(),
        2
    );
    assert!(ok(&path, &["jobs", "--limit", "2"]).contains("showing the first 2 jobs"));

    let out = run(&path, &["jobs", "--queue", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no queue named \"nope\""));
    let out = run(&path, &["jobs", "--status", "lost"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(stderr(&out).contains("unknown status \"lost\""));
}

#[test]
fn show_prints_one_job_in_full() {
    let (_dir, path) = populated();
    let text = ok(&path, &["show", "bad"]);
    for part in [
        "boom",
        "failed",
        "arguments:",
        "\"x\"",
        "attempts (the last ten)",
        "boom: it always fails",
    ] {
        assert!(text.contains(part), "{part:?} missing from:\n{text}");
    }
    let done = json(&ok(&path, &["show", "done", "--json"]));
    assert_eq!(done["status"], "finished");
    assert_eq!(done["args"], serde_json::json!([1, 2]));
    assert_eq!(done["result"], 3);
    assert_eq!(done["history"].as_array().unwrap().len(), 1);
    assert_eq!(done["history"][0]["error"], Value::Null);
    assert!(ok(&path, &["show", "done"]).contains("result:\n3"));

    let out = run(&path, &["show", "ghost"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no job with id \"ghost\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn requeue_puts_a_failed_job_back_and_a_worker_runs_it_again() {
    let (_dir, path) = populated();
    assert_eq!(ok(&path, &["requeue", "bad"]).trim(), "requeued bad");
    assert_eq!(status(&path, "bad"), Some(Status::Queued));
    {
        let store = open_store(&path);
        let stats = Worker::builder(&store, handlers())
            .queues(["default"])
            .burst()
            .unwrap();
        assert_eq!(stats.failed, 1, "the requeued job ran again and failed");
        let info = store.job("bad").unwrap().unwrap().info().unwrap();
        assert_eq!((info.status, info.attempts), (Status::Failed, 2));
    }
    // Not failed, or not there: exit 1, the others still done.
    let out = run(&path, &["requeue", "later", "ghost", "bad", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(&stdout(&out));
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["ok"], false);
    assert!(lines[0]["error"]
        .as_str()
        .unwrap()
        .contains("it is scheduled"));
    assert_eq!(lines[1]["ok"], false);
    assert_eq!(lines[2], serde_json::json!({"id": "bad", "ok": true}));
    // With --queue, a job of another queue is not found.
    assert_eq!(expect(&path, &["requeue", "bad", "--queue", "mail"], 1), "");
    // --all: every failed job.
    {
        let store = open_store(&path);
        Worker::builder(&store, handlers())
            .queues(["default"])
            .burst()
            .unwrap();
        assert_eq!(store.queue("default").failed().count().unwrap(), 1);
    }
    let all = json(&ok(&path, &["requeue", "--all", "--json"]));
    assert_eq!(all["requeued"], 1);
    assert_eq!(status(&path, "bad"), Some(Status::Queued));
    expect(&path, &["requeue"], 2);
}

#[test]
fn cancel_and_delete_report_each_id() {
    let (_dir, path) = populated();
    assert_eq!(ok(&path, &["cancel", "later"]).trim(), "canceled later");
    assert_eq!(status(&path, "later"), Some(Status::Canceled));
    let out = run(&path, &["cancel", "done", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a finished job cannot be canceled"
    );
    assert_eq!(json(&stdout(&out))["ok"], false);

    assert_eq!(
        ok(&path, &["delete", "done", "bad"]),
        "deleted done\ndeleted bad\n"
    );
    assert_eq!(status(&path, "done"), None);
    assert_eq!(status(&path, "bad"), None);
    let out = run(&path, &["delete", "ghost"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no job with id \"ghost\""));
}

#[test]
fn empty_and_purge_delete_whole_registries() {
    let (_dir, path) = populated();
    let emptied = json(&ok(&path, &["empty", "default", "--json"]));
    assert_eq!(emptied["deleted"], 1);
    assert_eq!(status(&path, "wait"), None);
    expect(&path, &["empty", "nope"], 1);

    assert_eq!(
        ok(&path, &["purge", "--status", "failed"]).trim(),
        "deleted 1 failed job(s)"
    );
    assert_eq!(status(&path, "bad"), None);
    let purged = json(&ok(
        &path,
        &["purge", "--status", "canceled", "--queue", "mail", "--json"],
    ));
    assert_eq!(purged["deleted"], 1);
    assert_eq!(status(&path, "stop"), None);
    // The rest stays.
    assert_eq!(status(&path, "done"), Some(Status::Finished));
    assert_eq!(status(&path, "later"), Some(Status::Scheduled));
    let out = run(&path, &["purge", "--status", "queued"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("dueq empty"), "{}", stderr(&out));
}

#[test]
fn enqueue_makes_a_job_a_library_worker_runs() {
    let (_dir, path) = temp();
    // enqueue creates the store.
    let line = json(&ok(
        &path,
        &["enqueue", "add", "[20, 22]", "--id", "sum", "--json"],
    ));
    assert_eq!(
        line,
        serde_json::json!({"id": "sum", "queue": "default", "status": "queued", "due_at": line["due_at"]})
    );
    let text = ok(
        &path,
        &[
            "enqueue",
            "--queue",
            "later",
            "add",
            "[1, 1]",
            "--in",
            "10m",
            "--retry-max",
            "3",
            "--retry-interval",
            "10,30",
            "--retry-interval",
            "1m",
        ],
    );
    assert!(text.contains("on queue \"later\": scheduled"), "{text}");
    ok(
        &path,
        &[
            "enqueue",
            "add",
            "[2, 2]",
            "--at",
            "2999-01-01T00:00:00+01:00",
            "--id",
            "far",
        ],
    );

    let out = run(&path, &["enqueue", "add", "{not json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not valid JSON"),
        "{}",
        stderr(&out)
    );
    let out = run(&path, &["enqueue", "add", "[1, 2]", "--id", "sum"]);
    assert_eq!(out.status.code(), Some(1), "a taken id");
    assert!(stderr(&out).contains("already exists"));
    expect(&path, &["enqueue", "add", "[1]", "--at", "tomorrow"], 2);
    expect(
        &path,
        &["enqueue", "add", "[1]", "--retry-interval", "5"],
        2,
    );

    let store = open_store(&path);
    let stats = Worker::builder(&store, handlers()).burst().unwrap();
    assert_eq!(stats.succeeded, 1);
    let sum = store.job("sum").unwrap().unwrap();
    assert_eq!(sum.result::<i64>().unwrap(), Some(42));
    let far = store.job("far").unwrap().unwrap().info().unwrap();
    assert_eq!(
        far.due_at.unwrap().to_rfc3339(),
        "2998-12-31T23:00:00+00:00"
    );
    let later = store.queue("later");
    assert_eq!(later.scheduled().count().unwrap(), 1);
    let id = later.scheduled().job_ids().unwrap().remove(0);
    let retry = store
        .job(&id)
        .unwrap()
        .unwrap()
        .info()
        .unwrap()
        .retry
        .unwrap();
    assert_eq!(retry.max_retries(), 3);
    assert_eq!(
        (1..=3).map(|k| retry.wait(k).as_secs()).collect::<Vec<_>>(),
        [10, 30, 60]
    );
}

#[test]
fn export_then_import_round_trips_every_job() {
    let (dir, path) = populated();
    let file = dir.path().join("backup.jsonl");
    let text = ok(&path, &["export", file.to_str().unwrap()]);
    assert_eq!(
        text.trim(),
        format!("exported 5 job(s) to {}", file.display())
    );
    assert!(!dir.path().join("backup.jsonl.partial").exists());
    // To stdout: the export itself, the summary on stderr.
    let out = run(&path, &["export"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).lines().count(), 6, "a header and five jobs");
    assert!(stderr(&out).contains("exported 5 job(s)"));

    let copy = dir.path().join("copy.dueq");
    let report = json(&ok(&copy, &["import", file.to_str().unwrap(), "--json"]));
    assert_eq!(report["jobs"], 5);
    let original = ok(&path, &["jobs", "--json"]);
    let restored = ok(&copy, &["jobs", "--json"]);
    assert_eq!(json_lines(&original), json_lines(&restored));
    // Importing again: the ids are taken.
    let out = run(&copy, &["import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
}

#[test]
fn a_store_open_in_another_process_fails_fast_with_exit_2() {
    let (_dir, path) = populated();
    let store = open_store(&path);
    for args in [
        &["info"][..],
        &["jobs"],
        &["requeue", "bad"],
        &["enqueue", "add", "[1, 2]"],
    ] {
        let started = Instant::now();
        let out = dueq(&path).args(args).output().unwrap();
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let expected = format!(
            "the store at {} is open in another process; stop it or use the library API",
            path.display()
        );
        assert!(
            stderr(&out).contains(&expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
    }
    // Nothing was changed meanwhile.
    assert_eq!(
        store.job("bad").unwrap().unwrap().status().unwrap(),
        Status::Failed
    );
    assert_eq!(store.queue("default").count().unwrap(), 1);
}

#[test]
fn a_missing_store_is_an_error_and_is_not_created() {
    let (dir, path) = temp();
    for args in [
        &["info"][..],
        &["jobs"],
        &["verify"],
        &["export"],
        &["show", "x"],
    ] {
        let out = run(&path, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("no store at"), "{}", stderr(&out));
        assert!(!path.exists(), "{args:?} created the store");
    }
    let empty_dir = dir.path().join("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    let out = run(&empty_dir, &["info"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(std::fs::read_dir(&empty_dir).unwrap().next().is_none());
    let out = Command::cargo_bin("dueq")
        .unwrap()
        .env_remove("DUEQ_STORE")
        .arg("info")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("pass --store PATH or set DUEQ_STORE"));
    // The environment variable works too.
    let (_dir2, populated_path) = populated();
    let out = Command::cargo_bin("dueq")
        .unwrap()
        .env("DUEQ_STORE", &populated_path)
        .args(["info", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&stdout(&out))["totals"]["total"], 5);
}

#[test]
fn verify_reports_a_damaged_store_with_exit_1() {
    let (_dir, path) = populated();
    let text = ok(&path, &["verify"]);
    assert!(text.contains("no problems"), "{text}");
    {
        // "wait" loses its record; its index entry stays behind.
        let db = open_raw(&path);
        db.open_tree("jobs").unwrap().remove("wait").unwrap();
        db.flush().unwrap();
    }
    let out = run(&path, &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("1 problem(s)"), "{text}");
    assert!(
        text.contains("names job \"wait\", which has no record"),
        "{text}"
    );
    assert!(text.contains("dueq export"), "{text}");
    let out = run(&path, &["verify", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&stdout(&out));
    assert_eq!(report["ok"], false);
    assert_eq!(report["problems"][0]["kind"], "missing_record");
    assert_eq!(report["jobs"], 4);
}

#[test]
fn help_states_the_one_process_rule() {
    let out = Command::cargo_bin("dueq")
        .unwrap()
        .arg("--help")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(text.contains("one process"), "{text}");
    assert!(text.contains("open in another process"), "{text}");
    assert!(text.contains("Exit codes"), "{text}");
    // The short help too, in one line.
    let out = Command::cargo_bin("dueq")
        .unwrap()
        .arg("-h")
        .output()
        .unwrap();
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.contains("one process at a time"))
        .unwrap_or_else(|| panic!("no one-process line in:\n{text}"));
    assert!(line.contains("fail at once"), "{line}");
}

#[test]
fn info_lists_cron_schedules_with_their_next_fire() {
    let (_dir, path) = temp();
    {
        let store = Store::open(&path).unwrap();
        store
            .cron("nightly", "0 3 * * *", "report", &"sales")
            .unwrap();
        store
            .every("tick", Duration::from_secs(60), "add", &(1, 1))
            .unwrap();
        store.pause_schedule("tick").unwrap();
    }
    let table = ok(&path, &["info"]);
    assert!(table.contains("nightly"), "{table}");
    assert!(table.contains("cron 0 3 * * *"), "{table}");
    assert!(
        table.contains("T03:00:00Z"),
        "the next fire at 03:00: {table}"
    );
    assert!(table.contains("paused"), "{table}");
    let info = json(&ok(&path, &["info", "--json"]));
    let schedules = info["schedules"].as_array().unwrap();
    assert_eq!(schedules.len(), 2);
    assert_eq!(schedules[0]["name"], "nightly");
    assert!(schedules[0]["next_fire"]
        .as_str()
        .unwrap()
        .ends_with("T03:00:00Z"));
    assert_eq!(schedules[1]["paused"], true);
    assert!(schedules[1]["next_fire"].is_null());
}

/// A store with, on queue "default", "flaky": meta `{"owner": "ada"}`, its
/// first attempt failed ("first try fails") and its retry returned 42; on
/// queue "idle", "policy": never run, retried up to 3 times after 10 s,
/// 30 s and 1 min, with 10% jitter. Closed when this returns.
fn retried() -> (tempfile::TempDir, PathBuf) {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    let (dir, path) = temp();
    let store = Store::open(&path).unwrap();
    store
        .queue("default")
        .job("flaky", &())
        .id("flaky")
        .meta("owner", "ada")
        .retry(dueq::Retry::max(2))
        .enqueue()
        .unwrap();
    store
        .queue("idle")
        .job("add", &(1, 2))
        .id("policy")
        .retry(dueq::Retry::max(3).intervals([10, 30, 60]).jitter(0.1))
        .enqueue()
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let mut h = Handlers::new();
    h.register("flaky", move |_: ()| -> Result<u32, JobError> {
        if runs.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(JobError::new("first try fails"))
        } else {
            Ok(42)
        }
    });
    Worker::builder(&store, h)
        .queues(["default"])
        .burst()
        .unwrap();
    drop(store);
    (dir, path)
}

#[test]
fn show_json_has_meta_history_threads_values_and_a_readable_retry() {
    let (_dir, path) = retried();
    let flaky = json(&ok(&path, &["show", "flaky", "--json"]));
    assert_eq!(flaky["status"], "finished");
    assert_eq!(flaky["meta"], serde_json::json!({"owner": "ada"}));
    assert_eq!(flaky["result"], 42);
    assert_eq!(
        flaky["timeout"], 180,
        "rq's default job timeout, in seconds"
    );
    let history = flaky["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0]["error"], "first try fails");
    assert_eq!(history[0]["result"], Value::Null);
    assert_eq!(history[1]["error"], Value::Null);
    assert_eq!(history[1]["result"], 42);
    for attempt in history {
        let thread = attempt["thread"].as_str().unwrap_or_default();
        assert!(thread.starts_with("dueq-worker"), "{attempt}");
    }
    assert_eq!(
        flaky["retry"],
        serde_json::json!({
            "max": 2,
            "intervals": [0],
            "backoff": {"kind": "intervals", "intervals": []},
            "jitter": 0.0,
        })
    );

    let policy = json(&ok(&path, &["show", "policy", "--json"]));
    assert_eq!(
        policy["retry"],
        serde_json::json!({
            "max": 3,
            "intervals": [10, 30, 60],
            "backoff": {"kind": "intervals", "intervals": [10, 30, 60]},
            "jitter": 0.1,
        })
    );
    let table = ok(&path, &["show", "policy"]);
    assert!(
        table.contains("max 3, intervals 10s 30s 1m, jitter ±10%"),
        "{table}"
    );
    assert!(!table.contains("Intervals"), "no internal names: {table}");
    let table = ok(&path, &["show", "flaky"]);
    for part in [
        "\"owner\":\"ada\"",
        "returned 42",
        "dueq-worker",
        "last error",
    ] {
        assert!(table.contains(part), "{part:?} missing from:\n{table}");
    }
}

#[test]
fn show_has_callbacks_repeat_limit_ttls_at_front_allow_failure_and_backoff() {
    use dueq::{Dependency, Repeat, Retry};
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let q = store.queue("default");
    let later = Duration::from_secs(600);
    q.job("add", &(1, 2))
        .id("strict")
        .enqueue_in(later)
        .unwrap();
    q.job("add", &(1, 2))
        .id("lenient")
        .enqueue_in(later)
        .unwrap();
    q.job("add", &(3, 4))
        .id("full")
        .depends_on("strict")
        .depends_on(Dependency::on("lenient").allow_failure())
        .on_success("notify")
        .on_failure("alert")
        .on_stopped("cleanup")
        .repeat(Repeat::times(3).intervals([Duration::from_secs(10), Duration::from_secs(90)]))
        .limit_key("api", 2)
        .result_ttl(Duration::from_secs(30))
        .failure_ttl(Duration::from_millis(1500))
        .at_front()
        .retry(
            Retry::max(5)
                .exponential(Duration::from_secs(1), 2.0, Duration::from_secs(10))
                .jitter(0.25),
        )
        .enqueue()
        .unwrap();
    q.job("add", &(5, 6))
        .id("grouped")
        .limit_group("smtp")
        .result_ttl(Duration::MAX)
        .retry(Retry::max(3).linear(60, 30, 120))
        .enqueue()
        .unwrap();
    drop((q, store));

    let full = json(&ok(&path, &["show", "full", "--json"]));
    assert_eq!(full["status"], "deferred");
    assert_eq!(
        full["callbacks"],
        serde_json::json!({"on_success": "notify", "on_failure": "alert", "on_stopped": "cleanup"})
    );
    assert_eq!(
        full["repeat"],
        serde_json::json!({"times": 3, "intervals": [10, 90]})
    );
    assert_eq!(full["repeats_done"], 0);
    assert_eq!(full["limit"], serde_json::json!({"key": "api", "max": 2}));
    assert_eq!(full["result_ttl"], 30, "seconds");
    assert_eq!(full["failure_ttl"], 1.5, "seconds, with a fraction");
    assert_eq!(full["at_front"], true);
    assert_eq!(full["waiting_on"], serde_json::json!(["strict", "lenient"]));
    assert_eq!(
        full["waiting_on_allow_failure"],
        serde_json::json!(["lenient"])
    );
    assert_eq!(
        full["retry"],
        serde_json::json!({
            "max": 5,
            "intervals": [1, 2, 4, 8, 10],
            "backoff": {"kind": "exponential", "first": 1, "factor": 2.0, "cap": 10},
            "jitter": 0.25,
        })
    );

    let grouped = json(&ok(&path, &["show", "grouped", "--json"]));
    assert_eq!(
        grouped["limit"],
        serde_json::json!({"key": "smtp", "max": null})
    );
    assert_eq!(grouped["result_ttl"], Value::Null, "kept forever");
    assert_eq!(grouped["failure_ttl"], 365 * 24 * 3600, "rq's default");
    assert_eq!(grouped["at_front"], false);
    assert_eq!(grouped["repeat"], Value::Null);
    assert_eq!(
        grouped["callbacks"],
        serde_json::json!({"on_success": null, "on_failure": null, "on_stopped": null})
    );
    assert_eq!(
        grouped["retry"]["backoff"],
        serde_json::json!({"kind": "linear", "start": 60, "step": 30, "max": 120})
    );

    let table = ok(&path, &["show", "full"]);
    for part in [
        "on_success notify, on_failure alert, on_stopped cleanup",
        "3 time(s) after the first success, intervals 10s 1m30s",
        "api, at most 2 at once",
        "strict, lenient (allow failure)",
        "(exponential: 1s times 2 a retry, at most 10s), jitter ±25%",
        "1s500ms",
    ] {
        assert!(table.contains(part), "{part:?} missing from:\n{table}");
    }
    let table = ok(&path, &["show", "grouped"]);
    for part in [
        "smtp (limit group: the worker's limits apply)",
        "forever",
        "365d",
        "max 3, intervals 1m 1m30s 2m (linear",
        "(linear: 1m plus 30s a retry, at most 2m)",
    ] {
        assert!(table.contains(part), "{part:?} missing from:\n{table}");
    }
}

#[test]
fn jobs_does_not_show_a_stale_error_beside_finished_or_queued() {
    let (_dir, path) = retried();
    let table = ok(&path, &["jobs"]);
    let row = table.lines().find(|l| l.contains("flaky")).unwrap();
    assert!(row.contains("finished"), "{row}");
    assert!(!row.contains("first try fails"), "{row}");
    // --json stays complete.
    let lines = json_lines(&ok(&path, &["jobs", "--json"]));
    let flaky = lines.iter().find(|l| l["id"] == "flaky").unwrap();
    assert_eq!(flaky["error"], "first try fails");

    // A requeued job waits without its old error; a failed one shows it.
    let (_dir, path) = populated();
    let table = ok(&path, &["jobs"]);
    let row = table.lines().find(|l| l.contains("bad")).unwrap();
    assert!(row.contains("boom: it always fails"), "{row}");
    ok(&path, &["requeue", "bad"]);
    let table = ok(&path, &["jobs"]);
    let row = table.lines().find(|l| l.contains("bad")).unwrap();
    assert!(row.contains("queued"), "{row}");
    assert!(!row.contains("it always fails"), "{row}");
}

#[test]
fn jobs_limit_0_is_a_usage_error() {
    let (_dir, path) = populated();
    let out = run(&path, &["jobs", "--limit", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("at least 1"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("no jobs"));
    let out = run(&path, &["jobs", "--help"]);
    assert!(stdout(&out).contains("--limit 0"), "{}", stdout(&out));
    assert_eq!(
        json_lines(&ok(&path, &["jobs", "--limit", "1", "--json"])).len(),
        1
    );
}

#[test]
fn importing_a_non_export_into_a_new_path_leaves_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("g.jsonl");
    std::fs::write(&garbage, "{\"garbage\":1}\n").unwrap();
    // Caught before the store is created: not an export at all.
    let new = dir.path().join("new.dueq");
    let out = run(&new, &["import", garbage.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a dueq export"),
        "{}",
        stderr(&out)
    );
    assert!(!new.exists(), "a failed import left a store behind");
    // Caught by the library after the store was created (a newer export
    // version, a bad job line): the empty store is removed, with the
    // directories made for it.
    let newer = dir.path().join("newer.jsonl");
    std::fs::write(
        &newer,
        "{\"format\":\"dueq-export\",\"version\":999,\"schema\":1,\"exported_at\":\"2026-01-01T00:00:00Z\"}\n",
    )
    .unwrap();
    let nested = dir.path().join("sub").join("new.dueq");
    let out = run(&nested, &["import", newer.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("version 999"), "{}", stderr(&out));
    assert!(
        !dir.path().join("sub").exists(),
        "a failed import left a store behind"
    );
    let bad_line = dir.path().join("bad_line.jsonl");
    std::fs::write(
        &bad_line,
        "{\"format\":\"dueq-export\",\"version\":2,\"schema\":1,\"exported_at\":\"2026-01-01T00:00:00Z\"}\nnot json\n",
    )
    .unwrap();
    let out = run(&new, &["import", bad_line.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    assert!(!new.exists(), "a failed import left a store behind");
    // An existing store is never removed, even if the import fails.
    let (_dir, path) = populated();
    expect(&path, &["import", newer.to_str().unwrap()], 2);
    assert_eq!(status(&path, "done"), Some(Status::Finished));
}

#[test]
fn export_json_prints_a_summary_object() {
    let (dir, path) = populated();
    let file = dir.path().join("backup.jsonl");
    let summary = json(&ok(&path, &["export", file.to_str().unwrap(), "--json"]));
    assert_eq!(
        summary,
        serde_json::json!({"jobs": 5, "skipped_corrupt": 0})
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 6);
    // Without FILE, stdout is the export itself and the summary goes to
    // stderr.
    let out = run(&path, &["export", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&stdout(&out));
    assert_eq!(lines.len(), 6, "a header and five jobs");
    assert_eq!(lines[0]["format"], "dueq-export");
    assert_eq!(
        json(&stderr(&out)),
        serde_json::json!({"jobs": 5, "skipped_corrupt": 0})
    );
}
