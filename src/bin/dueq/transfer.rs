//! `export` and `import`: the library's JSON Lines transfer, with a progress
//! bar when someone is watching.

use std::fs::File;
use std::io::{BufRead as _, BufReader, BufWriter, IsTerminal as _, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use dueq::{Store, TransferReport};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::util::{self, emit, emit_json, Create, Output};

/// The `format` named by the header line of every export.
const EXPORT_FORMAT: &str = "dueq-export";

/// Options of `dueq export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Where to write; stdout if absent. Written to FILE.partial first and
    /// renamed when complete.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// Print the summary as JSON (on stdout with FILE, else on stderr).
    #[command(flatten)]
    out: Output,
}

/// Options of `dueq import`.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// A file written by `dueq export` (or `Store::export`).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    out: Output,
}

/// A progress bar on stderr if stderr is a terminal, else one that draws
/// nothing (so logs and pipes stay clean).
fn progress(len: u64, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let template = format!("{{bar:40}} {{pos}}/{{len}} {unit} ({{eta}} left)");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// Counts the job lines going through it (every line after the header).
struct CountLines<W> {
    inner: W,
    lines: u64,
    bar: ProgressBar,
}

impl<W: Write> Write for CountLines<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let newlines = buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        if newlines > 0 {
            self.lines += newlines;
            self.bar.set_position(self.lines.saturating_sub(1));
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Counts the bytes read through it.
struct CountBytes<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for CountBytes<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

fn summary(verb: &str, report: &TransferReport, file: Option<&Path>) -> String {
    let place = file.map_or_else(|| "stdout".to_owned(), |f| format!("{}", f.display()));
    let mut text = format!("{verb} {} job(s) {place}", report.jobs);
    if report.skipped_corrupt > 0 {
        text.push_str(&format!(
            "; left out {} record(s) that do not decode (see `dueq verify`)",
            report.skipped_corrupt
        ));
    }
    text
}

pub(crate) fn export(path: Option<&Path>, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let store = util::open(path, Create::Never)?;
    let bar = progress(store.stats()?.total() as u64, "jobs");
    let report = match &args.file {
        Some(file) => {
            let mut partial = file.as_os_str().to_owned();
            partial.push(".partial");
            let partial = PathBuf::from(partial);
            let out = File::create(&partial)
                .with_context(|| format!("cannot create {}", partial.display()))?;
            let mut writer = CountLines {
                inner: BufWriter::new(out),
                lines: 0,
                bar: bar.clone(),
            };
            let report = store.export(&mut writer)?;
            writer
                .inner
                .into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()?;
            std::fs::rename(&partial, file).with_context(|| {
                format!("cannot rename {} to {}", partial.display(), file.display())
            })?;
            report
        }
        None => {
            let stdout = std::io::stdout();
            let mut writer = CountLines {
                inner: BufWriter::new(stdout.lock()),
                lines: 0,
                bar: bar.clone(),
            };
            store.export(&mut writer)?
        }
    };
    bar.finish_and_clear();
    let to_stdout = args.file.is_some();
    let text = if args.out.json {
        json!({"jobs": report.jobs, "skipped_corrupt": report.skipped_corrupt}).to_string()
    } else {
        summary("exported", &report, args.file.as_deref()).replacen(" job(s) ", " job(s) to ", 1)
    };
    if to_stdout {
        emit(&text)?;
    } else {
        eprintln!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks that `file` starts like a dueq export (a header line naming the
/// format), before a store is opened or created for it: importing a file
/// that is not an export must not leave an empty store behind. The library
/// checks the header in full (its version, too) when it reads the file.
fn check_header(file: &Path) -> anyhow::Result<()> {
    /// A header is well under this; a file without line breaks is not read
    /// whole.
    const MAX_HEADER: u64 = 64 * 1024;
    let opened = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut line = Vec::new();
    BufReader::new(opened.take(MAX_HEADER))
        .read_until(b'\n', &mut line)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let header: Option<Value> = serde_json::from_slice(&line).ok();
    let format = header
        .as_ref()
        .and_then(|h| h.get("format"))
        .and_then(Value::as_str);
    if format != Some(EXPORT_FORMAT) {
        bail!(
            "{} is not a dueq export: its first line is not a header like \
             {{\"format\":\"{EXPORT_FORMAT}\",...}} (write one with `dueq export FILE`)",
            file.display()
        );
    }
    Ok(())
}

/// The directory that creating a store at `path` would create: the
/// outermost of `path` and its ancestors that does not exist yet. `None` if
/// `path` exists.
fn would_create(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .last()
        .map(Path::to_path_buf)
}

/// After a failed import into a store this command created: removes the
/// store if the import left it empty, so that a failed import leaves no
/// trace. A store holding anything (chunks imported before the failure)
/// stays, for the user to look at.
fn remove_if_empty(store: Store, created: &Path) {
    let empty = store
        .stats()
        .is_ok_and(|s| s.total() == 0 && s.schedules.is_empty());
    drop(store);
    if !empty {
        return;
    }
    // sled closes its files from a background thread after the store is
    // dropped (sled#1289): a file may still be written for a moment.
    for _ in 0..20 {
        match std::fs::remove_dir_all(created) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    eprintln!(
        "dueq: could not remove the empty store {} this import created",
        created.display()
    );
}

pub(crate) fn import(path: Option<&Path>, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    check_header(&args.file)?;
    let file =
        File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?;
    let len = file.metadata()?.len();
    let created = path.and_then(would_create);
    let store = util::open(path, Create::IfMissing)?;
    let bar = progress(len, "bytes");
    let reader = BufReader::new(CountBytes {
        inner: file,
        bar: bar.clone(),
    });
    let report = store.import(reader);
    bar.finish_and_clear();
    let report = match (report, created) {
        (Ok(report), _) => report,
        (Err(e), Some(created)) => {
            remove_if_empty(store, &created);
            return Err(e.into());
        }
        (Err(e), None) => return Err(e.into()),
    };
    if args.out.json {
        emit_json(&json!({"jobs": report.jobs}))?;
    } else {
        emit(&summary("imported", &report, Some(&args.file)).replacen(
            " job(s) ",
            " job(s) from ",
            1,
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
