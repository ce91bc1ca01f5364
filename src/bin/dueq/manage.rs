//! The commands that change jobs: `requeue`, `cancel`, `delete`, `empty`,
//! `purge`, `enqueue`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use chrono::{DateTime, Utc};
use clap::Args;
use dueq::{Job, Retry, Status, Store};
use serde_json::json;

use crate::util::{self, emit, emit_json, Create, Output};

/// Options of `dueq cancel` and `dueq delete`.
#[derive(Debug, Args)]
pub(crate) struct IdsArgs {
    /// The jobs' ids.
    #[arg(required = true, value_name = "ID")]
    ids: Vec<String>,
    #[command(flatten)]
    out: Output,
}

/// Options of `dueq requeue`.
#[derive(Debug, Args)]
pub(crate) struct RequeueArgs {
    /// The failed jobs' ids.
    #[arg(
        value_name = "ID",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    ids: Vec<String>,
    /// Requeue every failed job (of the queue given with --queue, or of all
    /// queues).
    #[arg(long)]
    all: bool,
    /// Only jobs of this queue: an id of another queue is not found.
    #[arg(long, value_name = "Q")]
    queue: Option<String>,
    #[command(flatten)]
    out: Output,
}

/// Applies `action` to each job of `ids`, reporting each one (a line, or a
/// JSON line). A job that does not exist or is in the wrong state makes the
/// exit code 1 and the others go on; a store error stops the command.
fn each_id(
    store: &Store,
    ids: &[String],
    json: bool,
    done: &str,
    action: impl Fn(&str) -> dueq::Result<()>,
) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    let mut lines = String::new();
    for id in ids {
        match action(id) {
            Ok(()) if json => lines.push_str(&format!("{}\n", json!({"id": id, "ok": true}))),
            Ok(()) => lines.push_str(&format!("{done} {id}\n")),
            Err(
                e @ (dueq::Error::NoSuchJob { .. }
                | dueq::Error::InvalidState { .. }
                | dueq::Error::InvalidJobId { .. }),
            ) => {
                failed = true;
                if json {
                    let line = json!({"id": id, "ok": false, "error": e.to_string()});
                    lines.push_str(&format!("{line}\n"));
                } else {
                    eprintln!("dueq: {e}");
                }
            }
            Err(e) => {
                // What was done so far stays done: make it durable and say so.
                store.flush()?;
                if !lines.is_empty() {
                    emit(&lines)?;
                }
                return Err(e.into());
            }
        }
    }
    store.flush()?;
    if !lines.is_empty() {
        emit(&lines)?;
    }
    Ok(if failed {
        ExitCode::from(util::EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// The job with this id, or `NoSuchJob`.
fn job(store: &Store, id: &str) -> dueq::Result<Job> {
    store
        .job(id)?
        .ok_or_else(|| dueq::Error::NoSuchJob { id: id.to_owned() })
}

pub(crate) fn requeue(path: Option<&Path>, args: &RequeueArgs) -> anyhow::Result<ExitCode> {
    let store = util::open(path, Create::Never)?;
    if args.all {
        let mut requeued = 0;
        for queue in util::queues(&store, args.queue.as_deref())? {
            requeued += queue.failed().requeue_all()?;
        }
        store.flush()?;
        if args.out.json {
            emit_json(&json!({ "requeued": requeued }))?;
        } else {
            emit(&format!("requeued {requeued} failed job(s)"))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let queue = match &args.queue {
        Some(name) => Some(util::existing_queue(&store, name)?),
        None => None,
    };
    each_id(
        &store,
        &args.ids,
        args.out.json,
        "requeued",
        |id| match &queue {
            Some(queue) => queue.failed().requeue(id),
            None => job(&store, id)?.requeue(),
        },
    )
}

pub(crate) fn cancel(path: Option<&Path>, args: &IdsArgs) -> anyhow::Result<ExitCode> {
    let store = util::open(path, Create::Never)?;
    each_id(&store, &args.ids, args.out.json, "canceled", |id| {
        job(&store, id)?.cancel()
    })
}

pub(crate) fn delete(path: Option<&Path>, args: &IdsArgs) -> anyhow::Result<ExitCode> {
    let store = util::open(path, Create::Never)?;
    each_id(&store, &args.ids, args.out.json, "deleted", |id| {
        job(&store, id)?.delete()
    })
}

/// Options of `dueq empty`.
#[derive(Debug, Args)]
pub(crate) struct EmptyArgs {
    /// The queue whose queued jobs are deleted.
    #[arg(value_name = "Q")]
    queue: String,
    #[command(flatten)]
    out: Output,
}

pub(crate) fn empty(path: Option<&Path>, args: &EmptyArgs) -> anyhow::Result<ExitCode> {
    let store = util::open(path, Create::Never)?;
    let deleted = util::existing_queue(&store, &args.queue)?.empty()?;
    store.flush()?;
    if args.out.json {
        emit_json(&json!({"queue": args.queue, "deleted": deleted}))?;
    } else {
        emit(&format!(
            "deleted {deleted} queued job(s) from queue {:?}",
            args.queue
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Options of `dueq purge`.
#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// Which jobs to delete: finished, failed, stopped or canceled.
    #[arg(long, value_name = "S", value_parser = parse_final_status)]
    status: Status,
    /// Only jobs of this queue.
    #[arg(long, value_name = "Q")]
    queue: Option<String>,
    #[command(flatten)]
    out: Output,
}

fn parse_final_status(name: &str) -> Result<Status, String> {
    let status = util::parse_status(name)?;
    if status.is_final() {
        Ok(status)
    } else {
        Err(format!(
            "purge deletes finished, failed, stopped or canceled jobs, not {name} ones; \
             use `dueq empty` for queued jobs or `dueq delete ID` for one job"
        ))
    }
}

pub(crate) fn purge(path: Option<&Path>, args: &PurgeArgs) -> anyhow::Result<ExitCode> {
    const PAGE: usize = 1_000;
    let store = util::open(path, Create::Never)?;
    let mut deleted = 0;
    let mut stuck = 0;
    for queue in util::queues(&store, args.queue.as_deref())? {
        let registry = match args.status {
            Status::Finished => queue.finished(),
            Status::Failed => queue.failed(),
            Status::Canceled => queue.canceled(),
            Status::Stopped => queue.stopped(),
            other => anyhow::bail!("this dueq cannot purge {other} jobs"),
        };
        // Entries before `skip` are this queue's undecodable records: every
        // entry before the page just read was deleted or skipped.
        let mut skip = 0;
        loop {
            let ids = registry.job_ids_page(skip, PAGE)?;
            if ids.is_empty() {
                break;
            }
            for id in ids {
                match store
                    .job(&id)
                    .and_then(|j| j.map(|j| j.delete()).transpose())
                {
                    Ok(Some(())) => deleted += 1,
                    Ok(None) | Err(dueq::Error::NoSuchJob { .. }) => {}
                    // A record that does not decode cannot be deleted through
                    // the API; skip it rather than loop on it forever.
                    Err(dueq::Error::Corrupt { .. }) => skip += 1,
                    Err(e) => {
                        store.flush()?;
                        return Err(anyhow!(e)
                            .context(format!("purge stopped after deleting {deleted} job(s)")));
                    }
                }
            }
        }
        stuck += skip;
    }
    store.flush()?;
    if args.out.json {
        emit_json(&json!({"status": args.status, "deleted": deleted, "unreadable": stuck}))?;
    } else {
        emit(&format!("deleted {deleted} {} job(s)", args.status))?;
    }
    if stuck > 0 {
        eprintln!(
            "dueq: {stuck} job(s) with a record that does not decode were left; see `dueq verify`"
        );
        return Ok(ExitCode::from(util::EXIT_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

/// Options of `dueq enqueue`.
#[derive(Debug, Args)]
pub(crate) struct EnqueueArgs {
    /// The handler name the application's workers registered.
    #[arg(value_name = "NAME")]
    handler: String,
    /// The handler's arguments as JSON, quoted for the shell: '[1, 2]',
    /// '{"to": "ada@example.com"}', '"text"'.
    #[arg(value_name = "JSON_ARGS")]
    args: String,
    /// The queue.
    #[arg(long, value_name = "Q", default_value = "default")]
    queue: String,
    /// Make the job due after this long: 90s, 10m, 2h 30m, 1day.
    #[arg(long = "in", value_name = "DURATION", value_parser = humantime::parse_duration, conflicts_with = "at")]
    delay: Option<Duration>,
    /// Make the job due at this time, in RFC 3339 / ISO 8601 form:
    /// 2026-05-01T09:30:00Z or 2026-05-01T11:30:00+02:00.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<DateTime<Utc>>,
    /// Retry a failed job up to N times.
    #[arg(long, value_name = "N")]
    retry_max: Option<u32>,
    /// The waits before retries, rq's interval list: seconds or durations,
    /// comma-separated or repeated (--retry-interval 10,30,1m).
    #[arg(
        long,
        value_name = "S",
        value_delimiter = ',',
        requires = "retry_max",
        value_parser = parse_interval
    )]
    retry_interval: Vec<Duration>,
    /// The job's id: 1 to 128 of [A-Za-z0-9_-]. By default a random UUID.
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// A description, for people.
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    #[command(flatten)]
    out: Output,
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("{e}; expected an RFC 3339 time with its offset, like 2026-05-01T09:30:00Z")
        })
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{e}; expected seconds (30) or a duration (1m 30s)"))
}

pub(crate) fn enqueue(path: Option<&Path>, args: &EnqueueArgs) -> anyhow::Result<ExitCode> {
    let value: serde_json::Value = serde_json::from_str(&args.args).with_context(|| {
        format!(
            "JSON_ARGS {:?} is not valid JSON; quote it for the shell, e.g. '[1, 2]', \
             '{{\"n\": 1}}' or '\"text\"' (a string needs its double quotes)",
            args.args
        )
    })?;
    let store = util::open(path, Create::IfMissing)?;
    let mut builder = store.queue(&args.queue).job(&args.handler, &value);
    if let Some(id) = &args.id {
        builder = builder.id(id);
    }
    if let Some(description) = &args.description {
        builder = builder.description(description);
    }
    if let Some(max) = args.retry_max {
        let mut retry = Retry::max(max);
        if !args.retry_interval.is_empty() {
            retry = retry.intervals(args.retry_interval.iter().copied());
        }
        builder = builder.retry(retry);
    }
    if let Some(delay) = args.delay {
        builder = builder.delay(delay);
    }
    if let Some(at) = args.at {
        builder = builder.at(at);
    }
    let job = builder.enqueue()?;
    store.flush()?;
    let info = job.info()?;
    if args.out.json {
        emit_json(&json!({
            "id": info.id,
            "queue": info.queue,
            "status": info.status,
            "due_at": info.due_at.map(util::time),
        }))?;
    } else {
        emit(&format!(
            "enqueued job {} on queue {:?}: {}, due {}",
            info.id,
            info.queue,
            info.status,
            util::time_or_dash(info.due_at)
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
