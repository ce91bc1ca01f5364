//! The read-only commands: `info`, `jobs`, `show`, `verify`.

use std::io::IsTerminal as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use comfy_table::{Cell, CellAlignment};
use dueq::{JobInfo, Queue, Repeat, Retry, Stats, Status, Store};
use serde_json::{json, Value};

use crate::util::{self, emit, emit_json, Create, NotFound, Output, StoreBusy};

/// Options of `dueq info`.
#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    /// Refresh every SECS seconds until interrupted. The store is opened
    /// only for each refresh, so the application can open it in between;
    /// with --json, one object per refresh and line.
    #[arg(long, value_name = "SECS")]
    watch: Option<f64>,
    /// Print the counts in the Prometheus text exposition format.
    #[arg(long, conflicts_with = "json")]
    prometheus: bool,
    #[command(flatten)]
    out: Output,
}

pub(crate) fn info(path: Option<&Path>, args: &InfoArgs) -> anyhow::Result<ExitCode> {
    let Some(secs) = args.watch else {
        let stats = util::open(path, Create::Never)?.stats()?;
        print_info(path, &stats, args)?;
        return Ok(ExitCode::SUCCESS);
    };
    let every = Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow!("--watch takes a positive number of seconds, not {secs}"))?;
    let clear = !args.out.json && std::io::stdout().is_terminal();
    let mut first = true;
    loop {
        // Closed again at once: a store held between refreshes would lock
        // the application out.
        let stats = util::open(path, Create::Never).and_then(|s| Ok(s.stats()?));
        match stats {
            Ok(stats) => {
                if clear {
                    emit("\x1b[2J\x1b[H")?;
                }
                print_info(path, &stats, args)?;
            }
            // The application may open the store between two refreshes; say
            // so and keep watching. At the first refresh, fail as any
            // command does.
            Err(e) if !first && e.downcast_ref::<StoreBusy>().is_some() => {
                eprintln!("dueq: {e}; retrying in {secs} s");
            }
            Err(e) => return Err(e),
        }
        first = false;
        std::thread::sleep(every);
    }
}

fn print_info(path: Option<&Path>, stats: &Stats, args: &InfoArgs) -> anyhow::Result<()> {
    if args.prometheus {
        return emit(&dueq::prometheus(stats));
    }
    let path = path.map(|p| p.display().to_string()).unwrap_or_default();
    if args.out.json {
        let counts = |count: &dyn Fn(Status) -> usize| {
            let mut map = serde_json::Map::new();
            for status in Stats::STATUSES {
                map.insert(status.as_str().into(), json!(count(status)));
            }
            map
        };
        let queues: Vec<Value> = stats
            .queues
            .iter()
            .map(|q| {
                let mut map = counts(&|s| q.count(s));
                map.insert("name".into(), json!(q.name));
                map.insert("total".into(), json!(q.total()));
                Value::Object(map)
            })
            .collect();
        let mut totals = counts(&|s| stats.count(s));
        totals.insert("total".into(), json!(stats.total()));
        let schedules: Vec<Value> = stats
            .schedules
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "spec": s.spec,
                    "queue": s.queue,
                    "handler": s.handler,
                    "paused": s.paused,
                    "next_fire": s.next_fire.map(util::time),
                    "last_fire": s.last_fire.map(util::time),
                    "fired": s.fired,
                })
            })
            .collect();
        return emit_json(&json!({
            "store": path,
            "taken_at": util::time(stats.taken_at),
            "size_on_disk": stats.size_on_disk,
            "queues": queues,
            "totals": totals,
            "schedules": schedules,
        }));
    }
    let mut header = vec!["queue"];
    header.extend(Stats::STATUSES.iter().map(|s| s.as_str()));
    header.push("total");
    let mut table = util::table(header);
    let number = |n: usize| Cell::new(n).set_alignment(CellAlignment::Right);
    for q in &stats.queues {
        let mut row = vec![Cell::new(&q.name)];
        row.extend(Stats::STATUSES.iter().map(|&s| number(q.count(s))));
        row.push(number(q.total()));
        table.add_row(row);
    }
    let mut row = vec![Cell::new("(all)")];
    row.extend(Stats::STATUSES.iter().map(|&s| number(stats.count(s))));
    row.push(number(stats.total()));
    table.add_row(row);
    let mut out = format!(
        "{table}\n{} queue(s), {} job(s); store {path}: {} on disk, at {}",
        stats.queues.len(),
        stats.total(),
        util::bytes(stats.size_on_disk),
        util::time(stats.taken_at),
    );
    if !stats.schedules.is_empty() {
        let mut table = util::table(vec![
            "schedule",
            "when",
            "queue",
            "handler",
            "next fire",
            "fired",
        ]);
        for s in &stats.schedules {
            table.add_row(vec![
                Cell::new(&s.name),
                Cell::new(&s.spec),
                Cell::new(&s.queue),
                Cell::new(&s.handler),
                Cell::new(s.next_fire.map_or_else(|| "paused".to_owned(), util::time)),
                Cell::new(s.fired).set_alignment(CellAlignment::Right),
            ]);
        }
        out.push_str(&format!("\n\n{table}"));
    }
    emit(&out)
}

/// Options of `dueq jobs`.
#[derive(Debug, Args)]
pub(crate) struct JobsArgs {
    /// Only jobs of this queue.
    #[arg(long, value_name = "Q")]
    queue: Option<String>,
    /// Only jobs with this status: queued, scheduled, deferred, started,
    /// finished, failed, stopped or canceled.
    #[arg(long, value_name = "S", value_parser = util::parse_status)]
    status: Option<Status>,
    /// Show at most N jobs. N must be at least 1: `--limit 0` is a usage
    /// error (exit code 2), not "no limit".
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = parse_limit)]
    limit: usize,
    #[command(flatten)]
    out: Output,
}

fn parse_limit(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("N must be at least 1; pass a larger N to list more jobs".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}; expected a whole number of jobs, at least 1")),
    }
}

/// Whether a job's `error` says why it is in its current state. A job that
/// finished after a retry, or was requeued, keeps the error of an earlier
/// attempt, which would read as the cause of its current status.
fn error_is_current(status: Status) -> bool {
    matches!(status, Status::Failed | Status::Stopped | Status::Canceled)
}

/// A job listed by `jobs`: its snapshot, or the error reading it gave.
enum Listed {
    Job(Box<JobInfo>),
    Unreadable {
        id: String,
        queue: String,
        status: Status,
        error: String,
    },
}

/// The ids of `queue`'s jobs with `status`, at most `limit`.
fn ids(queue: &Queue, status: Status, limit: usize) -> anyhow::Result<Vec<String>> {
    Ok(match status {
        Status::Queued => queue.job_ids_page(0, limit)?,
        Status::Scheduled => queue.scheduled().job_ids_page(0, limit)?,
        Status::Started => queue.started().job_ids_page(0, limit)?,
        Status::Finished => queue.finished().job_ids_page(0, limit)?,
        Status::Failed => queue.failed().job_ids_page(0, limit)?,
        Status::Canceled => queue.canceled().job_ids_page(0, limit)?,
        Status::Deferred => queue.deferred().job_ids_page(0, limit)?,
        Status::Stopped => queue.stopped().job_ids_page(0, limit)?,
        other => anyhow::bail!("this dueq cannot list {other} jobs yet"),
    })
}

fn list(store: &Store, args: &JobsArgs) -> anyhow::Result<Vec<Listed>> {
    let statuses: Vec<Status> = match args.status {
        Some(s) => vec![s],
        None => Stats::STATUSES.to_vec(),
    };
    let mut listed = Vec::new();
    for queue in util::queues(store, args.queue.as_deref())? {
        for &status in &statuses {
            let left = args.limit - listed.len();
            if left == 0 {
                return Ok(listed);
            }
            for id in ids(&queue, status, left)? {
                match store
                    .job(&id)
                    .and_then(|job| job.map(|j| j.info()).transpose())
                {
                    Ok(Some(info)) => listed.push(Listed::Job(Box::new(info))),
                    // Deleted or expired since the ids were read.
                    Ok(None) | Err(dueq::Error::NoSuchJob { .. }) => {}
                    Err(e @ dueq::Error::Corrupt { .. }) => listed.push(Listed::Unreadable {
                        id,
                        queue: queue.name().to_owned(),
                        status,
                        error: e.to_string(),
                    }),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(listed)
}

pub(crate) fn jobs(path: Option<&Path>, args: &JobsArgs) -> anyhow::Result<ExitCode> {
    let store = util::open(path, Create::Never)?;
    let listed = list(&store, args)?;
    drop(store);
    if args.out.json {
        let mut lines = String::new();
        for job in &listed {
            let value = match job {
                Listed::Job(info) => summary_json(info),
                Listed::Unreadable {
                    id,
                    queue,
                    status,
                    error,
                } => json!({"id": id, "queue": queue, "status": status, "unreadable": error}),
            };
            lines.push_str(&value.to_string());
            lines.push('\n');
        }
        if !lines.is_empty() {
            emit(&lines)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if listed.is_empty() {
        emit("no jobs")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = util::table([
        "id", "queue", "status", "handler", "attempts", "enqueued", "ended", "error",
    ]);
    for job in &listed {
        match job {
            Listed::Job(info) => table.add_row(vec![
                Cell::new(&info.id),
                Cell::new(&info.queue),
                Cell::new(info.status),
                Cell::new(&info.handler),
                Cell::new(info.attempts).set_alignment(CellAlignment::Right),
                Cell::new(util::time(info.enqueued_at)),
                Cell::new(util::time_or_dash(info.ended_at)),
                Cell::new(
                    info.error
                        .as_deref()
                        .filter(|_| error_is_current(info.status))
                        .map_or("-".into(), |e| util::short(e, 40)),
                ),
            ]),
            Listed::Unreadable {
                id,
                queue,
                status,
                error,
            } => table.add_row(vec![
                Cell::new(id),
                Cell::new(queue),
                Cell::new(status),
                Cell::new("?"),
                Cell::new("?"),
                Cell::new("?"),
                Cell::new("?"),
                Cell::new(util::short(error, 40)),
            ]),
        };
    }
    let mut text = table.to_string();
    if listed.len() == args.limit {
        text.push_str(&format!(
            "\nshowing the first {} jobs; pass --limit for more",
            args.limit
        ));
    }
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// A JSON text as a JSON value, or as a string if it does not parse.
fn json_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn summary_json(info: &JobInfo) -> Value {
    json!({
        "id": info.id,
        "queue": info.queue,
        "status": info.status,
        "handler": info.handler,
        "attempts": info.attempts,
        "enqueued_at": util::time(info.enqueued_at),
        "due_at": info.due_at.map(util::time),
        "started_at": info.started_at.map(util::time),
        "ended_at": info.ended_at.map(util::time),
        "error": info.error,
    })
}

/// Options of `dueq show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The job's id.
    id: String,
    #[command(flatten)]
    out: Output,
}

/// How many retries (or repeats) `show` works out the wait of. Interval
/// lists, linear and exponential backoffs met in practice reach their last
/// (or capped) wait well before this.
const WAITS_SHOWN: u32 = 100;

/// The waits `wait(1)`, `wait(2)`, ... up to `n` (at most [`WAITS_SHOWN`]),
/// as an interval list: a run of equal waits at the end is one entry, the
/// last interval serving every retry or repeat after it.
fn waits(n: u32, wait: impl Fn(u32) -> Duration) -> Vec<Duration> {
    let mut waits: Vec<Duration> = (1..=n.min(WAITS_SHOWN)).map(wait).collect();
    while waits.len() > 1 && waits[waits.len() - 1] == waits[waits.len() - 2] {
        waits.pop();
    }
    waits
}

/// A retry policy as `show` prints it: rq's terms, in seconds.
struct RetryView<'a> {
    retry: &'a Retry,
    /// The wait before each retry, as rq's interval list.
    intervals: Vec<Duration>,
}

impl RetryView<'_> {
    fn new(retry: &Retry) -> RetryView<'_> {
        RetryView {
            retry,
            intervals: waits(retry.max_retries(), |k| retry.wait(k)),
        }
    }

    fn to_json(&self) -> Value {
        let r = self.retry;
        let backoff = if let Some((start, step, max)) = r.linear_backoff() {
            json!({
                "kind": "linear",
                "start": secs_json(start),
                "step": secs_json(step),
                "max": secs_json(max),
            })
        } else if let Some((first, factor, cap)) = r.exponential_backoff() {
            json!({
                "kind": "exponential",
                "first": secs_json(first),
                "factor": factor,
                "cap": secs_json(cap),
            })
        } else {
            let list = r.interval_list().unwrap_or_default();
            json!({"kind": r.backoff_kind(), "intervals": durations_json(&list)})
        };
        json!({
            "max": r.max_retries(),
            "intervals": durations_json(&self.intervals),
            "backoff": backoff,
            "jitter": r.jitter_fraction(),
        })
    }
}

impl std::fmt::Display for RetryView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.retry;
        write!(f, "max {}", r.max_retries())?;
        if r.max_retries() == 0 {
            return f.write_str(" (never retried)");
        }
        if self.intervals.iter().all(|d| d.is_zero()) {
            f.write_str(", retried at once")?;
        } else {
            f.write_str(", intervals")?;
            for &d in &self.intervals {
                write!(f, " {}", human(d))?;
            }
        }
        if let Some((start, step, max)) = r.linear_backoff() {
            write!(
                f,
                " (linear: {} plus {} a retry, at most {})",
                human(start),
                human(step),
                human(max)
            )?;
        } else if let Some((first, factor, cap)) = r.exponential_backoff() {
            write!(
                f,
                " (exponential: {} times {factor} a retry, at most {})",
                human(first),
                human(cap)
            )?;
        }
        match r.jitter_fraction() {
            j if j > 0.0 => write!(f, ", jitter ±{}%", (j * 100.0).round()),
            _ => Ok(()),
        }
    }
}

/// A repeat policy as `show` prints it.
struct RepeatView {
    times: u32,
    /// The wait before each repeat, as an interval list.
    intervals: Vec<Duration>,
}

impl RepeatView {
    fn new(repeat: &Repeat) -> RepeatView {
        RepeatView {
            times: repeat.count(),
            intervals: waits(repeat.count(), |k| repeat.wait(k)),
        }
    }

    fn to_json(&self) -> Value {
        json!({"times": self.times, "intervals": durations_json(&self.intervals)})
    }
}

impl std::fmt::Display for RepeatView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} time(s) after the first success", self.times)?;
        if self.intervals.iter().all(|d| d.is_zero()) {
            return f.write_str(", at once");
        }
        f.write_str(", intervals")?;
        for &d in &self.intervals {
            write!(f, " {}", human(d))?;
        }
        Ok(())
    }
}

/// A duration for a table, in one word so a list of them reads: `1m30s`,
/// or whole days as `365d` (humantime's months are 30.44 days).
fn human(d: Duration) -> String {
    const DAY: u64 = 24 * 3600;
    if d.subsec_nanos() == 0 && d.as_secs() >= DAY && d.as_secs() % DAY == 0 {
        return format!("{}d", d.as_secs() / DAY);
    }
    humantime::format_duration(d).to_string().replace(' ', "")
}

fn durations_json(list: &[Duration]) -> Vec<Value> {
    list.iter().map(|&d| secs_json(d)).collect()
}

/// A duration as JSON seconds: a whole number when it is one.
fn secs_json(d: Duration) -> Value {
    if d.subsec_nanos() == 0 {
        json!(d.as_secs())
    } else {
        json!(d.as_secs_f64())
    }
}

pub(crate) fn show(path: Option<&Path>, args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let store = util::open(path, Create::Never)?;
    let Some(job) = store.job(&args.id)? else {
        return Err(anyhow!(NotFound(format!(
            "no job with id {:?} (never enqueued, deleted, or expired)",
            args.id
        ))));
    };
    let info = job.info()?;
    let quarantined = store.quarantined(&args.id)?.map(|raw| raw.len());
    drop((job, store));
    let args_value = json_value(&info.args_json);
    let meta = json_value(&info.meta_json);
    let result = info.result_json.as_deref().map(json_value);
    let retry = info.retry.as_ref().map(RetryView::new);
    let repeat = info.repeat.as_ref().map(RepeatView::new);
    if args.out.json {
        let mut value = summary_json(&info);
        let map = value.as_object_mut().expect("summary_json makes an object");
        map.insert("description".into(), json!(info.description));
        map.insert("args".into(), args_value);
        map.insert("meta".into(), meta);
        map.insert("result".into(), json!(result));
        map.insert("retry".into(), json!(retry.map(|r| r.to_json())));
        map.insert("timeout".into(), json!(info.timeout.map(secs_json)));
        map.insert("expires_at".into(), json!(info.expires_at.map(util::time)));
        map.insert("result_ttl".into(), json!(info.result_ttl.map(secs_json)));
        map.insert("failure_ttl".into(), json!(info.failure_ttl.map(secs_json)));
        map.insert("at_front".into(), json!(info.at_front));
        map.insert("waiting_on".into(), json!(info.waiting_on));
        map.insert(
            "waiting_on_allow_failure".into(),
            json!(info.waiting_on_allow_failure),
        );
        map.insert("dependents".into(), json!(info.dependents));
        map.insert(
            "callbacks".into(),
            json!({
                "on_success": info.on_success,
                "on_failure": info.on_failure,
                "on_stopped": info.on_stopped,
            }),
        );
        map.insert(
            "limit".into(),
            json!(info
                .limit_key
                .as_ref()
                .map(|key| json!({"key": key, "max": info.limit_max}))),
        );
        map.insert("repeat".into(), json!(repeat.map(|r| r.to_json())));
        map.insert("repeats_done".into(), json!(info.repeats_done));
        map.insert("stop_requested".into(), json!(info.stop_requested));
        map.insert("quarantined_bytes".into(), json!(quarantined));
        let history: Vec<Value> = info
            .attempts_log
            .iter()
            .map(|a| {
                json!({
                    "number": a.number,
                    "started_at": util::time(a.started_at),
                    "ended_at": util::time(a.ended_at),
                    "thread": a.thread,
                    "error": a.error,
                    "result": a.result_json.as_deref().map(json_value),
                    "retry_at": a.retry_at.map(util::time),
                })
            })
            .collect();
        map.insert("history".into(), Value::Array(history));
        emit_json(&value)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = util::table(["field", "value"]);
    let dash = |s: Option<String>| s.unwrap_or_else(|| "-".into());
    let ids = |ids: &[String]| {
        if ids.is_empty() {
            "-".to_owned()
        } else {
            ids.join(", ")
        }
    };
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let ttl = |ttl: Option<Duration>| ttl.map_or_else(|| "forever".into(), human);
    let waiting_on = if info.waiting_on.is_empty() {
        "-".to_owned()
    } else {
        let parents: Vec<String> = info
            .waiting_on
            .iter()
            .map(|p| {
                if info.waiting_on_allow_failure.contains(p) {
                    format!("{p} (allow failure)")
                } else {
                    p.clone()
                }
            })
            .collect();
        parents.join(", ")
    };
    let callbacks: Vec<String> = [
        ("on_success", &info.on_success),
        ("on_failure", &info.on_failure),
        ("on_stopped", &info.on_stopped),
    ]
    .into_iter()
    .filter_map(|(when, name)| Some(format!("{when} {}", name.as_ref()?)))
    .collect();
    let callbacks = dash((!callbacks.is_empty()).then(|| callbacks.join(", ")));
    let limit = match (&info.limit_key, info.limit_max) {
        (None, _) => "-".to_owned(),
        (Some(key), Some(max)) => format!("{key}, at most {max} at once"),
        (Some(key), None) => format!("{key} (limit group: the worker's limits apply)"),
    };
    let rows: Vec<(&str, String)> = vec![
        ("id", info.id.clone()),
        ("queue", info.queue.clone()),
        ("status", info.status.to_string()),
        ("handler", info.handler.clone()),
        ("description", dash(info.description.clone())),
        ("meta", meta.to_string()),
        ("attempts", info.attempts.to_string()),
        ("retry", dash(retry.map(|r| r.to_string()))),
        ("timeout", info.timeout.map_or_else(|| "none".into(), human)),
        ("enqueued", util::time(info.enqueued_at)),
        ("due", util::time_or_dash(info.due_at)),
        ("expires", util::time_or_dash(info.expires_at)),
        ("at front", yes_no(info.at_front).into()),
        ("result ttl", ttl(info.result_ttl)),
        ("failure ttl", ttl(info.failure_ttl)),
        ("waiting on", waiting_on),
        ("dependents", ids(&info.dependents)),
        ("callbacks", callbacks),
        ("limit", limit),
        ("started", util::time_or_dash(info.started_at)),
        ("ended", util::time_or_dash(info.ended_at)),
        ("repeat", dash(repeat.map(|r| r.to_string()))),
        ("repeats done", info.repeats_done.to_string()),
        ("stop requested", yes_no(info.stop_requested).into()),
        (
            // An earlier attempt's error stays after a retry succeeds or a
            // requeue: say so rather than present it as the current cause.
            if error_is_current(info.status) {
                "error"
            } else {
                "last error"
            },
            dash(info.error.clone()),
        ),
    ];
    for (field, value) in rows {
        table.add_row(vec![field.to_owned(), value]);
    }
    let mut text = format!(
        "{table}\narguments:\n{}\n",
        serde_json::to_string_pretty(&args_value)?
    );
    if let Some(result) = &result {
        text.push_str(&format!(
            "result:\n{}\n",
            serde_json::to_string_pretty(result)?
        ));
    }
    if let Some(n) = quarantined {
        text.push_str(&format!(
            "its original record did not decode; {n} raw bytes are kept in quarantine\n"
        ));
    }
    if info.attempts_log.is_empty() {
        text.push_str("attempts: none yet\n");
    } else {
        let mut attempts = util::table([
            "attempt", "started", "ended", "thread", "outcome", "retry at",
        ]);
        for a in &info.attempts_log {
            let outcome = match (&a.error, &a.result_json) {
                (Some(error), _) => error.clone(),
                (None, Some(value)) => format!("returned {}", util::short(value, 60)),
                (None, None) => "ok".into(),
            };
            attempts.add_row(vec![
                a.number.to_string(),
                util::time(a.started_at),
                util::time(a.ended_at),
                dash(a.thread.clone()),
                outcome,
                util::time_or_dash(a.retry_at),
            ]);
        }
        text.push_str(&format!("attempts (the last ten):\n{attempts}\n"));
    }
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// Options of `dueq verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    out: Output,
}

pub(crate) fn verify(path: Option<&Path>, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let report = util::open(path, Create::Never)?.verify()?;
    let code = if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(util::EXIT_FAILED)
    };
    if args.out.json {
        let problems: Vec<Value> = report
            .problems
            .iter()
            .map(|p| json!({"kind": p.kind, "message": p.message}))
            .collect();
        emit_json(&json!({
            "ok": report.is_ok(),
            "jobs": report.jobs,
            "index_entries": report.index_entries,
            "problems": problems,
            "quarantined": report.quarantined,
        }))?;
        return Ok(code);
    }
    let mut text = format!(
        "checked {} job record(s) and {} index entries: ",
        report.jobs, report.index_entries
    );
    if report.is_ok() {
        text.push_str("no problems\n");
    } else {
        text.push_str(&format!("{} problem(s)\n", report.problems.len()));
        for (i, p) in report.problems.iter().enumerate() {
            text.push_str(&format!("{:>4}. {p}\n", i + 1));
        }
        text.push_str(
            "to rebuild the store from its records: `dueq export FILE`, then \
             `dueq --store NEW_PATH import FILE` (records that do not decode are left out)\n",
        );
    }
    if !report.quarantined.is_empty() {
        text.push_str(&format!(
            "{} job(s) had a record that did not decode and are failed as corrupt, their raw \
             bytes quarantined (see `dueq show ID`): {}\n",
            report.quarantined.len(),
            report.quarantined.join(", ")
        ));
    }
    emit(&text)?;
    Ok(code)
}
