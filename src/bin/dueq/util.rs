//! What every command shares: opening the store, exit codes, output.

use std::io::Write as _;
use std::path::Path;

use anyhow::{anyhow, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use dueq::{Durability, Stats, Status, Store};

/// Exit code: the job or queue named was not found, was not in a state that
/// allows the command, or a check failed.
pub(crate) const EXIT_FAILED: u8 = 1;
/// Exit code: usage error, or the store could not be opened or read.
pub(crate) const EXIT_ERROR: u8 = 2;

/// `--json`, flattened into every command.
#[derive(Debug, Args)]
pub(crate) struct Output {
    /// Print JSON for scripts instead of tables: one JSON object, or one per
    /// line for lists.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The subject of a command (a job, a queue) does not exist: exit code 1.
#[derive(Debug)]
pub(crate) struct NotFound(pub(crate) String);

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFound {}

/// Another process holds the store: the command gives up at once.
#[derive(Debug)]
pub(crate) struct StoreBusy(pub(crate) String);

impl std::fmt::Display for StoreBusy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the store at {} is open in another process; stop it or use the library API",
            self.0
        )
    }
}

impl std::error::Error for StoreBusy {}

/// The exit code for an error that ended a command.
pub(crate) fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<NotFound>().is_some() {
        return EXIT_FAILED;
    }
    match e.downcast_ref::<dueq::Error>() {
        Some(
            dueq::Error::NoSuchJob { .. }
            | dueq::Error::InvalidState { .. }
            | dueq::Error::DuplicateJobId { .. },
        ) => EXIT_FAILED,
        _ => EXIT_ERROR,
    }
}

/// Whether writing our output failed because its reader went away
/// (`dueq jobs | head`): not an error worth a message.
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Whether a command may create a store that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    Never,
    IfMissing,
}

/// Opens the store at `path`.
///
/// Buffered: commands that write call `Store::flush` once before they
/// report success, so a purge of many jobs costs one fsync, not one per job,
/// and nothing is reported done before it is on disk.
pub(crate) fn open(path: Option<&Path>, create: Create) -> anyhow::Result<Store> {
    let Some(path) = path else {
        bail!("no store given: pass --store PATH or set DUEQ_STORE");
    };
    if create == Create::Never {
        // The library creates a store wherever it is pointed; a typo in a
        // path must not leave an empty store behind.
        if !path.exists() {
            bail!("no store at {}: check the path", path.display());
        }
        if path.is_dir() && !path.join("db").exists() {
            bail!(
                "no store at {}: the directory holds no dueq store; check the path",
                path.display()
            );
        }
    }
    match Store::builder(path).durability(Durability::Buffered).open() {
        Ok(store) => Ok(store),
        Err(dueq::Error::StoreInUse { .. }) => Err(anyhow!(StoreBusy(path.display().to_string()))),
        Err(e) => Err(e.into()),
    }
}

/// Prints `text` to stdout, which may be a closed pipe.
pub(crate) fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Prints one JSON value on one line.
pub(crate) fn emit_json(value: &serde_json::Value) -> anyhow::Result<()> {
    emit(&value.to_string())
}

/// A table in the style every command uses.
pub(crate) fn table<I, S>(header: I) -> Table
where
    I: IntoIterator<Item = S>,
    S: Into<comfy_table::Cell>,
{
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(header);
    table
}

/// A time as `2026-01-01T09:30:00Z`.
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// An optional time, `-` when absent.
pub(crate) fn time_or_dash(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), time)
}

/// A status by rq's name, among those the library counts.
pub(crate) fn parse_status(name: &str) -> Result<Status, String> {
    Stats::STATUSES
        .into_iter()
        .find(|s| s.as_str() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = Stats::STATUSES.iter().map(|s| s.as_str()).collect();
            format!("unknown status {name:?}; one of {}", names.join(", "))
        })
}

/// Checks that a queue has been used, so a misspelt name is an error
/// rather than an empty answer.
pub(crate) fn existing_queue(store: &Store, name: &str) -> anyhow::Result<dueq::Queue> {
    let queues = store.queues();
    if queues.iter().any(|q| q.name() == name) {
        return Ok(store.queue(name));
    }
    let names: Vec<&str> = queues.iter().map(|q| q.name()).collect();
    Err(anyhow!(NotFound(format!(
        "no queue named {name:?} in this store (queues: {})",
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    ))))
}

/// The queues a command applies to: the one named, or all of them.
pub(crate) fn queues(store: &Store, name: Option<&str>) -> anyhow::Result<Vec<dueq::Queue>> {
    match name {
        Some(name) => Ok(vec![existing_queue(store, name)?]),
        None => Ok(store.queues()),
    }
}

/// The first line of `text`, cut to `max` characters.
pub(crate) fn short(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() <= max && line.len() == text.len() {
        return line.to_owned();
    }
    let mut out: String = line.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A byte count for people: `1.5 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
