//! Export and import as JSON Lines: the backup story, and the upgrade path
//! across sled versions (sled refuses data written by another version).
//!
//! The first line is a header; every other line is one job, with its state,
//! attempts, result and error:
//!
//! ```text
//! {"format":"dueq-export","version":2,"schema":1,"exported_at":"2026-12-03T16:00:00Z"}
//! {"id":"a1","queue":"default","handler":"add","args":[1,2],"state":"ready","time":1764777600000,...}
//! {"schedule":{"name":"nightly","spec":{"Cron":"0 3 * * *"},...},"args":"sales"}
//! ```

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::engine::{Class, ExportedKey, JobRecord};
use crate::error::{Error, Result};
use crate::retry::Retry;
use crate::Store;

const FORMAT: &str = "dueq-export";
/// Version 2 added the `v2` object of each job line (dueq's record format 2);
/// version 1 exports still import.
const VERSION: u32 = 2;
/// Jobs written per transaction on import.
const IMPORT_CHUNK: usize = 1_000;

/// What an export or import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferReport {
    /// Jobs written (export) or imported (import).
    pub jobs: usize,
    /// Records that did not decode and were left out of the export (they
    /// are in the failed registry as corrupt, with their raw bytes kept).
    pub skipped_corrupt: usize,
    /// Cron and interval schedules written or imported (an imported
    /// schedule replaces one of the same name).
    pub schedules: usize,
}

/// A schedule's line: `{"schedule":{...},"args":...}` (the arguments as
/// JSON, not bytes).
#[derive(Serialize, Deserialize)]
struct ScheduleLine {
    schedule: ScheduleFields,
    args: Box<RawValue>,
}

type ScheduleFields = crate::engine::ScheduleRecord;

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    schema: u32,
    exported_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize, Deserialize)]
struct Line {
    id: String,
    queue: String,
    handler: String,
    args: Box<RawValue>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    retry: Option<Retry>,
    result_ttl_ms: u64,
    failure_ttl_ms: u64,
    enqueued_at: u64,
    /// `ready`, `started`, `finished`, `failed` or `canceled`.
    state: String,
    /// What the state's time means is in ARCHITECTURE.md (due time, lease
    /// expiry, expiry, cancel time).
    time: u64,
    seq: u64,
    attempts: u32,
    token: u64,
    #[serde(default)]
    started_at: Option<u64>,
    #[serde(default)]
    ended_at: Option<u64>,
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    history: Vec<HistoryLine>,
    #[serde(default)]
    v2: V2Fields,
}

/// The parts of a job added with record format 2.
#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct V2Fields {
    meta: Option<Box<RawValue>>,
    timeout_ms: Option<u64>,
    expires_at: Option<u64>,
    due: Option<u64>,
    at_front: bool,
    waiting_on: Vec<crate::engine::Dependency>,
    dependents: Vec<String>,
    callbacks: crate::engine::Callbacks,
    repeat: Option<crate::Repeat>,
    repeats_done: u32,
    attempt_base: u32,
    limit: Option<crate::engine::Limit>,
    stop_requested: bool,
}

#[derive(Serialize, Deserialize)]
struct HistoryLine {
    attempt: u32,
    started_at: u64,
    ended_at: u64,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    retry_at: Option<u64>,
    #[serde(default)]
    thread: Option<String>,
    #[serde(default)]
    result: Option<Box<RawValue>>,
}

fn state_class(name: &str) -> Option<Class> {
    Class::ALL.into_iter().find(|c| c.name() == name)
}

fn raw_json(bytes: &[u8], what: &str) -> Result<Box<RawValue>> {
    let text = String::from_utf8(bytes.to_vec()).map_err(|e| Error::corrupt(what, e))?;
    RawValue::from_string(text).map_err(|e| Error::corrupt(what, e))
}

impl Store {
    /// Writes every job, with its state, attempts, result and error, to
    /// `writer` as JSON Lines.
    ///
    /// Each job appears exactly once, in the state it had when it was read;
    /// for an exact copy, stop the workers first.
    ///
    /// # Errors
    ///
    /// I/O errors from `writer`; storage errors.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = dueq::Store::open(dir.path().join("a.dueq"))?;
    /// store.queue("default").enqueue("add", &(1, 2))?;
    /// let mut backup = Vec::new();
    /// store.export(&mut backup)?;
    ///
    /// let copy = dueq::Store::open(dir.path().join("b.dueq"))?;
    /// let report = copy.import(&backup[..])?;
    /// assert_eq!(report.jobs, 1);
    /// assert_eq!(copy.queue("default").count()?, 1);
    /// # Ok::<(), dueq::Error>(())
    /// ```
    pub fn export(&self, mut writer: impl Write) -> Result<TransferReport> {
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            schema: crate::engine::SCHEMA_VERSION,
            exported_at: self.now(),
        };
        serde_json::to_writer(&mut writer, &header).map_err(std::io::Error::from)?;
        writer.write_all(b"\n")?;
        let mut report = TransferReport::default();
        self.engine().settle()?;
        for item in self.engine().records() {
            let record = match item? {
                Ok(record) => record,
                Err(_) => {
                    report.skipped_corrupt += 1;
                    continue;
                }
            };
            let key = record.index_key();
            let what = format!("job {:?}", record.id);
            let line = Line {
                args: raw_json(&record.args, &what)?,
                result: record
                    .result
                    .as_deref()
                    .map(|r| raw_json(r, &what))
                    .transpose()?,
                state: key.class.name().into(),
                time: key.time,
                seq: key.seq,
                history: record
                    .history
                    .iter()
                    .map(|h| {
                        Ok(HistoryLine {
                            attempt: h.attempt,
                            started_at: h.started_at,
                            ended_at: h.ended_at,
                            error: h.error.clone(),
                            retry_at: h.retry_at,
                            thread: h.thread.clone(),
                            result: h
                                .result
                                .as_deref()
                                .map(|r| raw_json(r, &what))
                                .transpose()?,
                        })
                    })
                    .collect::<Result<_>>()?,
                v2: V2Fields {
                    meta: Some(raw_json(&record.meta, &what)?),
                    timeout_ms: record.timeout_ms,
                    expires_at: record.expires_at,
                    due: Some(record.due),
                    at_front: record.at_front,
                    waiting_on: record.waiting_on.clone(),
                    dependents: record.dependents.clone(),
                    callbacks: record.callbacks.clone(),
                    repeat: record.repeat.clone(),
                    repeats_done: record.repeats_done,
                    attempt_base: record.attempt_base,
                    limit: record.limit.clone(),
                    stop_requested: record.stop_requested,
                },
                id: record.id,
                queue: record.queue,
                handler: record.handler,
                description: record.description,
                retry: record.retry,
                result_ttl_ms: record.result_ttl_ms,
                failure_ttl_ms: record.failure_ttl_ms,
                enqueued_at: record.enqueued_at,
                attempts: record.attempts,
                token: record.token,
                started_at: record.started_at,
                ended_at: record.ended_at,
                error: record.error,
            };
            serde_json::to_writer(&mut writer, &line).map_err(std::io::Error::from)?;
            writer.write_all(b"\n")?;
            report.jobs += 1;
        }
        for schedule in self.engine().schedule_records()? {
            let what = format!("schedule {:?}", schedule.name);
            let line = ScheduleLine {
                args: raw_json(&schedule.args, &what)?,
                schedule: ScheduleFields {
                    args: Vec::new(),
                    ..schedule
                },
            };
            serde_json::to_writer(&mut writer, &line).map_err(std::io::Error::from)?;
            writer.write_all(b"\n")?;
            report.schedules += 1;
        }
        writer.flush()?;
        Ok(report)
    }

    /// Reads jobs written by [`Store::export`] into this store, keeping each
    /// job's id, state, attempts, result and error. Jobs that were running
    /// when exported come in as interrupted runs: their lease has lapsed, so
    /// a worker resolves them as abandoned attempts by their retry policy.
    ///
    /// Jobs are written in transactions of 1,000; the import is durable when
    /// it returns.
    ///
    /// # Errors
    ///
    /// [`Error::DuplicateJobId`] if a job id exists in this store;
    /// [`Error::InvalidArgument`] for a line that is not a dueq export line
    /// (naming the line number); storage and I/O errors. On error, the
    /// chunks before the failing one stay imported.
    pub fn import(&self, reader: impl BufRead) -> Result<TransferReport> {
        let mut report = TransferReport::default();
        let mut chunk = Vec::with_capacity(IMPORT_CHUNK);
        let mut schedules = Vec::new();
        let mut lines = reader.lines();
        let bad = |n: usize, reason: String| Error::InvalidArgument {
            what: "import",
            reason: format!("line {n}: {reason}"),
        };
        let header = lines
            .next()
            .ok_or_else(|| bad(1, "empty input; expected a dueq export".into()))??;
        let header: Header = serde_json::from_str(&header)
            .map_err(|e| bad(1, format!("not a dueq export header: {e}")))?;
        if header.format != FORMAT || header.version > VERSION {
            return Err(bad(
                1,
                format!(
                    "export format {:?} version {} is not one this dueq reads ({FORMAT:?} up to {VERSION})",
                    header.format, header.version
                ),
            ));
        }
        for (i, line) in lines.enumerate() {
            let n = i + 2;
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            if line.starts_with("{\"schedule\":") {
                let line: ScheduleLine = serde_json::from_str(&line)
                    .map_err(|e| bad(n, format!("not a schedule line: {e}")))?;
                let mut schedule = line.schedule;
                schedule.args = line.args.get().as_bytes().to_vec();
                schedules.push(schedule);
                continue;
            }
            let line: Line =
                serde_json::from_str(&line).map_err(|e| bad(n, format!("not a job line: {e}")))?;
            let class = state_class(&line.state)
                .ok_or_else(|| bad(n, format!("unknown state {:?}", line.state)))?;
            // A run that was going on at export time has nobody running it
            // here: make its lease lapsed, so it is resolved as abandoned.
            let time = if class == Class::Started {
                0
            } else {
                line.time
            };
            let mut record = JobRecord::new(
                line.id,
                line.queue,
                line.handler,
                line.args.get().as_bytes().to_vec(),
                crate::engine::IndexKey::new(0, class, time, line.seq),
                line.enqueued_at,
            );
            record.description = line.description;
            record.retry = line.retry;
            record.result_ttl_ms = line.result_ttl_ms;
            record.failure_ttl_ms = line.failure_ttl_ms;
            record.attempts = line.attempts;
            record.token = line.token;
            record.started_at = line.started_at;
            record.ended_at = line.ended_at;
            record.result = line.result.map(|r| r.get().as_bytes().to_vec());
            record.error = line.error;
            record.history = line
                .history
                .into_iter()
                .map(|h| crate::engine::AttemptLog {
                    attempt: h.attempt,
                    started_at: h.started_at,
                    ended_at: h.ended_at,
                    error: h.error,
                    retry_at: h.retry_at,
                    thread: h.thread,
                    result: h.result.map(|r| r.get().as_bytes().to_vec()),
                })
                .collect();
            let v2 = line.v2;
            if let Some(meta) = v2.meta {
                record.meta = meta.get().as_bytes().to_vec();
            }
            record.timeout_ms = v2.timeout_ms;
            record.expires_at = v2.expires_at;
            record.due = v2.due.unwrap_or(line.time);
            record.at_front = v2.at_front;
            record.waiting_on = v2.waiting_on;
            record.dependents = v2.dependents;
            record.callbacks = v2.callbacks;
            record.repeat = v2.repeat;
            record.repeats_done = v2.repeats_done;
            record.attempt_base = v2.attempt_base;
            record.limit = v2.limit;
            record.stop_requested = v2.stop_requested;
            chunk.push((
                record,
                ExportedKey {
                    class,
                    time,
                    seq: line.seq,
                },
            ));
            if chunk.len() == IMPORT_CHUNK {
                report.jobs += chunk.len();
                self.engine().import(std::mem::take(&mut chunk))?;
            }
        }
        report.jobs += chunk.len();
        self.engine().import(chunk)?;
        for schedule in schedules {
            self.engine().put_schedule(&schedule)?;
            report.schedules += 1;
        }
        self.flush()?;
        Ok(report)
    }
}
