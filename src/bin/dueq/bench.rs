//! `dueq bench`: the standard performance workloads, each beside the raw
//! limit of what it is built on (plain sled, a bare fsync loop), so that
//! dueq's overhead over its storage shows as a ratio.
//!
//! Every workload runs in a fresh child process (this binary, re-executed
//! with a hidden subcommand) on its own temporary store, so that one
//! workload's memory or sled state does not colour the next one's figures.
//! `open_1m` goes one step further: it builds its store, then opens it in
//! yet another fresh process to measure open time and memory.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use clap::{Args, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use dueq::{Durability, Handlers, JobError, Store, Worker};
use serde::{Deserialize, Serialize};

/// The job count every workload is scaled from, without `--jobs`.
const DEFAULT_JOBS: u64 = 1_000_000;
/// The same with `--quick`.
const QUICK_JOBS: u64 = 20_000;
/// Jobs per `enqueue_many` call, and inserts per sled batch.
const BATCH: u64 = 1_000;
/// The size of a job's id (a UUID as text) and of its stored record for the
/// bench's jobs (handler `"noop"`, a small integer argument, queue
/// `"default"`, no retry policy): what one dueq enqueue writes to its `jobs`
/// tree. The sled baselines insert values of this shape.
const JOB_KEY_LEN: usize = 36;
const JOB_VALUE_LEN: usize = 106;
/// The store's sled settings that the baselines copy (dueq's defaults).
const SLED_CACHE: u64 = dueq::DEFAULT_CACHE_CAPACITY;
/// The most jobs waiting at once in `churn` (fewer for small `--jobs`).
const CHURN_BACKLOG: u64 = 10_000;
/// How many times `open_1m` opens its store (each in a fresh process).
const OPENS: usize = 3;
const MIB: f64 = (1u64 << 20) as f64;

/// Options of `dueq bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Print one JSON object per workload and line instead of a table.
    #[arg(long)]
    json: bool,
    /// Scale every workload from this job count (default 1,000,000; see
    /// BENCHMARKS.md for each workload's share). `open_1m` and `churn` use
    /// exactly N jobs.
    #[arg(long, value_name = "N")]
    jobs: Option<u64>,
    /// A small run that finishes in well under 30 s (N = 20,000).
    #[arg(long)]
    quick: bool,
    /// Run only this workload (repeatable). By default, all of them.
    #[arg(long = "workload", value_name = "NAME", value_enum)]
    workloads: Vec<Workload>,
    /// Where to create the temporary stores (default: the system's
    /// temporary directory). Each is removed when its workload ends.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Options of the hidden per-workload child.
#[derive(Debug, Args)]
pub(crate) struct WorkloadArgs {
    #[arg(long, value_enum)]
    workload: Workload,
    #[arg(long)]
    jobs: u64,
    #[arg(long)]
    dir: PathBuf,
}

/// Options of the hidden open-measuring child.
#[derive(Debug, Args)]
pub(crate) struct OpenArgs {
    /// The store to open.
    path: PathBuf,
    /// The number of jobs it should hold in queue `default`.
    #[arg(long)]
    expect: u64,
}

/// The workloads, in the order they run (each baseline before the dueq
/// workloads measured against it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Workload {
    #[value(name = "sled_insert")]
    SledInsert,
    #[value(name = "enqueue")]
    Enqueue,
    #[value(name = "sled_batch")]
    SledBatch,
    #[value(name = "enqueue_many")]
    EnqueueMany,
    #[value(name = "fsync")]
    Fsync,
    #[value(name = "enqueue_durable_1")]
    EnqueueDurable1,
    #[value(name = "enqueue_durable_8")]
    EnqueueDurable8,
    #[value(name = "drain_2")]
    Drain2,
    #[value(name = "latency")]
    Latency,
    #[value(name = "open_1m")]
    Open1m,
    #[value(name = "churn")]
    Churn,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::SledInsert => "sled_insert",
            Workload::Enqueue => "enqueue",
            Workload::SledBatch => "sled_batch",
            Workload::EnqueueMany => "enqueue_many",
            Workload::Fsync => "fsync",
            Workload::EnqueueDurable1 => "enqueue_durable_1",
            Workload::EnqueueDurable8 => "enqueue_durable_8",
            Workload::Drain2 => "drain_2",
            Workload::Latency => "latency",
            Workload::Open1m => "open_1m",
            Workload::Churn => "churn",
        }
    }

    /// This workload's job count when the run is scaled from `n`: the cheap
    /// workloads a fifth of it, the durable ones (a few thousand a second)
    /// less, `latency` (a sample every ~60 ms) far less.
    fn jobs(self, n: u64) -> u64 {
        match self {
            Workload::SledInsert
            | Workload::Enqueue
            | Workload::SledBatch
            | Workload::EnqueueMany
            | Workload::Drain2 => (n / 5).max(1_000),
            Workload::Fsync | Workload::EnqueueDurable1 => (n / 200).max(500),
            Workload::EnqueueDurable8 => (n / 50).max(2_000),
            Workload::Latency => (n / 5_000).max(30),
            Workload::Open1m | Workload::Churn => n.max(1_000),
        }
    }
}

/// One workload's figures: one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Measure {
    workload: String,
    jobs: u64,
    threads: u32,
    durability: String,
    jobs_per_s: Option<f64>,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    rss_mb: Option<f64>,
    disk_mb: Option<f64>,
    /// Workload-specific figures, and the parent's ratio and target fields.
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

impl Measure {
    fn new(workload: Workload, jobs: u64, threads: u32, durability: &str) -> Measure {
        Measure {
            workload: workload.name().to_owned(),
            jobs,
            threads,
            durability: durability.to_owned(),
            jobs_per_s: None,
            p50_us: None,
            p99_us: None,
            rss_mb: rss_mib(),
            disk_mb: None,
            extra: serde_json::Map::new(),
        }
    }

    fn rate(mut self, jobs: u64, elapsed: Duration) -> Measure {
        self.jobs_per_s = Some(round(jobs as f64 / elapsed.as_secs_f64(), 0));
        self
    }

    /// p50 and p99 of per-call latencies (in nanoseconds).
    fn latencies(mut self, mut ns: Vec<u64>) -> Measure {
        ns.sort_unstable();
        self.p50_us = percentile(&ns, 50.0).map(|v| round(v as f64 / 1e3, 1));
        self.p99_us = percentile(&ns, 99.0).map(|v| round(v as f64 / 1e3, 1));
        self
    }

    fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Measure {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn round(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

/// This process's resident memory (VmRSS), in MiB.
fn rss_mib() -> Option<f64> {
    proc_status_kib("VmRSS:").map(|kib| round(kib as f64 / 1024.0, 1))
}

fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(base: &Path, name: &str) -> anyhow::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = base.join(format!(
            "dueq-bench-{}-{}-{nanos}",
            name,
            std::process::id()
        ));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating the temporary directory {}", path.display()))?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small xorshift generator: the bench needs no real randomness.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

// ---------------------------------------------------------------------------
// The parent: runs each workload in a child and prints the results.

pub(crate) fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let n = args
        .jobs
        .unwrap_or(if args.quick { QUICK_JOBS } else { DEFAULT_JOBS });
    ensure!(n > 0, "--jobs must be at least 1");
    let mut workloads = if args.workloads.is_empty() {
        Workload::value_variants().to_vec()
    } else {
        args.workloads.clone()
    };
    workloads.sort();
    workloads.dedup();
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let exe = std::env::current_exe().context("finding this program to run the workloads")?;
    if !args.json {
        eprintln!(
            "dueq bench: N = {n}, {} CPU(s), stores under {}",
            std::thread::available_parallelism().map_or(0, |p| p.get()),
            base.display()
        );
    }
    let started = Instant::now();
    let mut results: Vec<Measure> = Vec::new();
    let mut failed = Vec::new();
    for w in workloads {
        let jobs = w.jobs(n);
        if !args.json {
            eprint!("  {:<18} {:>9} jobs ... ", w.name(), jobs);
        }
        let t = Instant::now();
        match run_child(&exe, w, jobs, &base) {
            Ok(mut m) => {
                judge(&mut m, &results);
                if args.json {
                    println!("{}", serde_json::to_string(&m)?);
                    std::io::stdout().flush()?;
                } else {
                    eprintln!("{:.1} s", t.elapsed().as_secs_f64());
                }
                results.push(m);
            }
            Err(e) => {
                if !args.json {
                    eprintln!("failed");
                }
                eprintln!("workload {} failed: {e:#}", w.name());
                failed.push(w.name());
            }
        }
    }
    if !args.json {
        eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
        print_tables(&results);
    }
    if !failed.is_empty() {
        bail!("workload(s) failed: {}", failed.join(", "));
    }
    Ok(())
}

/// How long one workload's process may run before it is killed (a stalled
/// store must not hang the whole run).
const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn run_child(exe: &Path, w: Workload, jobs: u64, base: &Path) -> anyhow::Result<Measure> {
    let mut child = Command::new(exe)
        .arg("__bench-workload")
        .arg("--workload")
        .arg(w.name())
        .arg("--jobs")
        .arg(jobs.to_string())
        .arg("--dir")
        .arg(base)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the workload's process")?;
    // The child prints one short line, at its end: reading it after the
    // child exits cannot fill the pipe.
    let deadline = Instant::now() + WORKLOAD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "its process was still running after {} s and was killed",
                WORKLOAD_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        std::io::Read::read_to_string(&mut pipe, &mut out)?;
    }
    ensure!(status.success(), "its process exited with {status}");
    let line = out.lines().last().context("its process printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("reading its output {line:?}"))
}

/// What each dueq workload is measured against, from the Performance issue.
enum Target {
    /// jobs_per_s at least this times the baseline workload's.
    Ratio(&'static str, f64),
    /// jobs_per_s at least this.
    Rate(f64),
    /// p50 and p99 at most these (µs).
    Latency(f64, f64),
    /// Open time (max of the opens) at most this (ms) and RSS at most this
    /// (bytes: the target is in MB).
    Open(f64, f64),
    /// Disk at most this (MiB) and flat over the second half (end at most
    /// 10% above the halfway point).
    Disk(f64),
}

fn target_of(workload: &str) -> Option<Target> {
    Some(match workload {
        "enqueue" => Target::Ratio("sled_insert", 0.40),
        "enqueue_many" => Target::Ratio("sled_batch", 0.60),
        "enqueue_durable_1" => Target::Ratio("fsync", 0.80),
        "enqueue_durable_8" => Target::Ratio("enqueue_durable_1", 4.0),
        "drain_2" => Target::Rate(20_000.0),
        "latency" => Target::Latency(1_000.0, 5_000.0),
        "open_1m" => Target::Open(1_000.0, 150e6),
        "churn" => Target::Disk(64.0),
        _ => return None,
    })
}

fn f(m: &Measure, key: &str) -> Option<f64> {
    m.extra.get(key).and_then(serde_json::Value::as_f64)
}

/// Adds `baseline`, `ratio`, `target` and `target_met` to a dueq workload's
/// line (`target_met` is null when its baseline did not run).
fn judge(m: &mut Measure, earlier: &[Measure]) {
    let Some(target) = target_of(&m.workload) else {
        return;
    };
    let (text, met): (String, Option<bool>) = match target {
        Target::Ratio(base, min) => {
            let ratio = earlier
                .iter()
                .find(|b| b.workload == base)
                .and_then(|b| Some(m.jobs_per_s? / b.jobs_per_s?));
            m.extra.insert("baseline".into(), base.into());
            m.extra
                .insert("ratio".into(), ratio.map(|r| round(r, 3)).into());
            (format!(">= {min}x {base}"), ratio.map(|r| r >= min))
        }
        Target::Rate(min) => (format!(">= {min} jobs/s"), m.jobs_per_s.map(|r| r >= min)),
        Target::Latency(p50, p99) => (
            format!("p50 <= {p50} us, p99 <= {p99} us"),
            m.p50_us.zip(m.p99_us).map(|(a, b)| a <= p50 && b <= p99),
        ),
        Target::Open(ms, rss) => (
            format!("open <= {ms} ms, RSS <= {} MB", rss / 1e6),
            f(m, "open_ms_max")
                .zip(m.rss_mb)
                .map(|(o, r)| o <= ms && r * MIB <= rss),
        ),
        Target::Disk(mib) => (
            format!("disk <= {mib} MiB, flat over the second half (end <= 1.1x halfway)"),
            f(m, "disk_mb_max")
                .zip(f(m, "disk_mb_half"))
                .zip(m.disk_mb)
                .map(|((max, half), end)| max <= mib && end <= half * 1.1),
        ),
    };
    m.extra.insert("target".into(), text.into());
    m.extra.insert("target_met".into(), met.into());
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) => format!("{v:.decimals$}"),
        None => "-".into(),
    }
}

/// Thousands separators, for rates.
fn grouped(v: Option<f64>) -> String {
    let Some(v) = v else {
        return "-".into();
    };
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

fn print_tables(results: &[Measure]) {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "workload",
        "jobs",
        "threads",
        "durability",
        "jobs/s",
        "p50 µs",
        "p99 µs",
        "RSS MiB",
        "disk MiB",
        "vs baseline",
    ]);
    for m in results {
        let ratio = match (m.extra.get("baseline"), f(m, "ratio")) {
            (Some(b), Some(r)) => format!("{r:.2}x {}", b.as_str().unwrap_or("?")),
            (Some(b), None) => format!("({} not run)", b.as_str().unwrap_or("?")),
            _ => String::new(),
        };
        table.add_row(vec![
            Cell::new(&m.workload),
            Cell::new(grouped(Some(m.jobs as f64))).set_alignment(CellAlignment::Right),
            Cell::new(m.threads).set_alignment(CellAlignment::Right),
            Cell::new(&m.durability),
            Cell::new(grouped(m.jobs_per_s)).set_alignment(CellAlignment::Right),
            Cell::new(opt(m.p50_us, 1)).set_alignment(CellAlignment::Right),
            Cell::new(opt(m.p99_us, 1)).set_alignment(CellAlignment::Right),
            Cell::new(opt(m.rss_mb, 1)).set_alignment(CellAlignment::Right),
            Cell::new(opt(m.disk_mb, 1)).set_alignment(CellAlignment::Right),
            Cell::new(ratio),
        ]);
    }
    println!("{table}");

    let mut targets = Table::new();
    targets
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(vec!["workload", "target", "measured", "met"]);
    for m in results {
        let Some(target) = m.extra.get("target").and_then(|t| t.as_str()) else {
            continue;
        };
        let measured = measured_text(m);
        let met = match m
            .extra
            .get("target_met")
            .and_then(serde_json::Value::as_bool)
        {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "n/a",
        };
        targets.add_row(vec![&m.workload, target, &measured, met]);
    }
    if !targets.is_empty() {
        println!("{targets}");
    }
}

fn measured_text(m: &Measure) -> String {
    let mut s = String::new();
    match m.workload.as_str() {
        "drain_2" => {
            let _ = write!(s, "{} jobs/s", grouped(m.jobs_per_s));
        }
        "latency" => {
            let _ = write!(
                s,
                "p50 {} us, p99 {} us",
                opt(m.p50_us, 0),
                opt(m.p99_us, 0)
            );
        }
        "open_1m" => {
            let _ = write!(
                s,
                "open {} ms (max of {OPENS}), RSS {} MiB ({} MB), {} jobs",
                opt(f(m, "open_ms_max"), 0),
                opt(m.rss_mb, 1),
                opt(m.rss_mb.map(|r| r * MIB / 1e6), 1),
                m.jobs
            );
        }
        "churn" => {
            let _ = write!(
                s,
                "disk {} MiB at half, {} at end; max {} overall, {} in the second half",
                opt(f(m, "disk_mb_half"), 1),
                opt(m.disk_mb, 1),
                opt(f(m, "disk_mb_max"), 1),
                opt(f(m, "disk_mb_max_second_half"), 1)
            );
        }
        _ => {
            let _ = write!(s, "{}x", opt(f(m, "ratio"), 2));
        }
    }
    s
}

// ---------------------------------------------------------------------------
// The child: one workload.

pub(crate) fn run_workload_child(args: &WorkloadArgs) -> anyhow::Result<()> {
    let dir = TempDir::new(&args.dir, args.workload.name())?;
    let n = args.jobs;
    let m = match args.workload {
        Workload::SledInsert => sled_insert(dir.path(), n)?,
        Workload::SledBatch => sled_batch(dir.path(), n)?,
        Workload::Fsync => fsync(dir.path(), n)?,
        Workload::Enqueue => enqueue(dir.path(), n, Workload::Enqueue, Durability::Buffered)?,
        Workload::EnqueueMany => enqueue_many(dir.path(), n)?,
        Workload::EnqueueDurable1 => enqueue(
            dir.path(),
            n,
            Workload::EnqueueDurable1,
            Durability::Durable,
        )?,
        Workload::EnqueueDurable8 => enqueue_durable_8(dir.path(), n)?,
        Workload::Drain2 => drain(dir.path(), n, 2)?,
        Workload::Latency => latency(dir.path(), n)?,
        Workload::Open1m => open_1m(dir.path(), n)?,
        Workload::Churn => churn(dir.path(), n)?,
    };
    println!("{}", serde_json::to_string(&m)?);
    Ok(())
}

fn durability_name(d: Durability) -> &'static str {
    match d {
        Durability::Buffered => "buffered",
        _ => "durable",
    }
}

fn open_store(dir: &Path, durability: Durability) -> anyhow::Result<Store> {
    Store::builder(dir.join("store"))
        .durability(durability)
        .open()
        .context("opening the bench store")
}

/// A raw sled database configured as dueq configures its store.
fn open_sled(dir: &Path) -> anyhow::Result<sled::Db> {
    sled::Config::new()
        .path(dir.join("sled"))
        .cache_capacity(SLED_CACHE)
        .flush_every_ms(Some(dueq::BUFFERED_FLUSH_MS))
        .open()
        .context("opening the baseline sled database")
}

/// `n` random job ids (UUIDs as text, like dueq's) and one job-sized value.
fn job_keys(n: u64) -> (Vec<String>, Vec<u8>) {
    let keys: Vec<String> = (0..n).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    debug_assert!(keys.iter().all(|k| k.len() == JOB_KEY_LEN));
    let value: Vec<u8> = (0..JOB_VALUE_LEN).map(|i| (i * 7 % 251) as u8).collect();
    (keys, value)
}

fn sled_insert(dir: &Path, n: u64) -> anyhow::Result<Measure> {
    let db = open_sled(dir)?;
    let tree = db.open_tree("jobs")?;
    let (keys, value) = job_keys(n);
    let mut lat = Vec::with_capacity(keys.len());
    let t0 = Instant::now();
    for k in &keys {
        let t = Instant::now();
        tree.insert(k.as_bytes(), value.as_slice())?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let elapsed = t0.elapsed();
    let disk = db.size_on_disk()?;
    Ok(Measure::new(Workload::SledInsert, n, 1, "buffered")
        .rate(n, elapsed)
        .latencies(lat)
        .with("value_bytes", JOB_VALUE_LEN)
        .with("disk_bytes", disk))
}

fn sled_batch(dir: &Path, n: u64) -> anyhow::Result<Measure> {
    let db = open_sled(dir)?;
    let tree = db.open_tree("jobs")?;
    let (keys, value) = job_keys(n);
    let mut lat = Vec::new();
    let t0 = Instant::now();
    for chunk in keys.chunks(BATCH as usize) {
        let t = Instant::now();
        let mut batch = sled::Batch::default();
        for k in chunk {
            batch.insert(k.as_bytes(), value.as_slice());
        }
        tree.apply_batch(batch)?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let elapsed = t0.elapsed();
    Ok(Measure::new(Workload::SledBatch, n, 1, "buffered")
        .rate(n, elapsed)
        .latencies(lat)
        .with("batch", BATCH)
        .with("value_bytes", JOB_VALUE_LEN))
}

/// The machine's durability limit: a job-sized write then `fdatasync`, in a
/// loop. The writes overwrite a file written and synced beforehand, so that
/// `fdatasync` has no metadata to commit: the cheapest durable write there
/// is. The same loop appending to a growing file (each `fdatasync` then also
/// commits the new size) is reported as `append_jobs_per_s`.
fn fsync(dir: &Path, n: u64) -> anyhow::Result<Measure> {
    let record = vec![0x5au8; JOB_KEY_LEN + JOB_VALUE_LEN];
    let mut file = File::create(dir.join("log"))?;
    file.write_all(&vec![0u8; record.len() * n as usize])?;
    file.sync_all()?;
    file.seek(std::io::SeekFrom::Start(0))?;
    let mut lat = Vec::with_capacity(n as usize);
    let t0 = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        file.write_all(&record)?;
        file.sync_data()?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let elapsed = t0.elapsed();
    drop(file);

    let mut file = File::create(dir.join("append"))?;
    let t0 = Instant::now();
    for _ in 0..n {
        file.write_all(&record)?;
        file.sync_data()?;
    }
    let append = t0.elapsed();
    Ok(Measure::new(Workload::Fsync, n, 1, "durable")
        .rate(n, elapsed)
        .latencies(lat)
        .with("write_bytes", record.len())
        .with(
            "append_jobs_per_s",
            round(n as f64 / append.as_secs_f64(), 0),
        ))
}

fn enqueue(dir: &Path, n: u64, w: Workload, durability: Durability) -> anyhow::Result<Measure> {
    let store = open_store(dir, durability)?;
    let q = store.queue("default");
    let mut lat = Vec::with_capacity(n as usize);
    let t0 = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        q.enqueue("noop", &i)?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let elapsed = t0.elapsed();
    let disk = store.size_on_disk()?;
    let mut m = Measure::new(w, n, 1, durability_name(durability))
        .rate(n, elapsed)
        .latencies(lat);
    m.disk_mb = Some(round(disk as f64 / MIB, 1));
    Ok(m)
}

fn enqueue_many(dir: &Path, n: u64) -> anyhow::Result<Measure> {
    let store = open_store(dir, Durability::Buffered)?;
    let q = store.queue("default");
    let mut lat = Vec::new();
    let t0 = Instant::now();
    let mut i = 0;
    while i < n {
        let k = BATCH.min(n - i);
        let t = Instant::now();
        q.enqueue_many((i..i + k).map(|j| q.job("noop", &j)))?;
        lat.push(t.elapsed().as_nanos() as u64);
        i += k;
    }
    let elapsed = t0.elapsed();
    let disk = store.size_on_disk()?;
    let mut m = Measure::new(Workload::EnqueueMany, n, 1, "buffered")
        .rate(n, elapsed)
        .latencies(lat)
        .with("batch", BATCH);
    m.disk_mb = Some(round(disk as f64 / MIB, 1));
    Ok(m)
}

fn enqueue_durable_8(dir: &Path, n: u64) -> anyhow::Result<Measure> {
    const THREADS: u64 = 8;
    let store = open_store(dir, Durability::Durable)?;
    let per = n / THREADS;
    let n = per * THREADS;
    let barrier = Barrier::new(THREADS as usize + 1);
    let (lat, elapsed) = std::thread::scope(|s| -> anyhow::Result<_> {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let q = store.queue("default");
                let barrier = &barrier;
                s.spawn(move || -> dueq::Result<Vec<u64>> {
                    let mut lat = Vec::with_capacity(per as usize);
                    barrier.wait();
                    for i in 0..per {
                        let t0 = Instant::now();
                        q.enqueue("noop", &(t * per + i))?;
                        lat.push(t0.elapsed().as_nanos() as u64);
                    }
                    Ok(lat)
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        let mut all = Vec::with_capacity(n as usize);
        for h in handles {
            let lat = h
                .join()
                .map_err(|_| anyhow::anyhow!("an enqueuing thread panicked"))??;
            all.extend(lat);
        }
        Ok((all, t0.elapsed()))
    })?;
    Ok(
        Measure::new(Workload::EnqueueDurable8, n, THREADS as u32, "durable")
            .rate(n, elapsed)
            .latencies(lat),
    )
}

/// The bench's no-op handler, counting its runs in `done` (one relaxed
/// atomic add: the watchdog's progress signal).
fn counting_handlers(done: &Arc<AtomicU64>) -> Handlers {
    let mut handlers = Handlers::new();
    let done = done.clone();
    handlers.register("noop", move |_: u64| -> Result<(), JobError> {
        done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    handlers
}

/// Fills queue `default` with `n` no-op jobs, in batches, buffered.
fn fill(store: &Store, n: u64) -> anyhow::Result<Duration> {
    let q = store.queue("default");
    let t0 = Instant::now();
    let mut i = 0;
    while i < n {
        let k = BATCH.min(n - i);
        q.enqueue_many((i..i + k).map(|j| q.job("noop", &j)))?;
        i += k;
    }
    // The fast enqueue path leaves jobs in the intake; any read moves them
    // into the queue. Done here, inside the fill's time, so that what the
    // workloads after it time (a drain, an open) starts from jobs in place.
    let queued = q.count()?;
    ensure!(
        queued as u64 >= n,
        "{queued} jobs queued after enqueuing {n}"
    );
    Ok(t0.elapsed())
}

fn drain(dir: &Path, n: u64, threads: usize) -> anyhow::Result<Measure> {
    let store = open_store(dir, Durability::Buffered)?;
    fill(&store, n)?;
    let done = Arc::new(AtomicU64::new(0));
    let handlers = counting_handlers(&done);
    let watchdog = Watchdog::start(Workload::Drain2, dir, done, n);
    let t0 = Instant::now();
    let stats = Worker::builder(&store, handlers).threads(threads).burst()?;
    let elapsed = t0.elapsed();
    drop(watchdog);
    ensure!(
        stats.succeeded == n,
        "the worker ran {} jobs of {n} ({stats:?})",
        stats.succeeded
    );
    let disk = store.size_on_disk()?;
    let mut m = Measure::new(Workload::Drain2, n, threads as u32, "buffered").rate(n, elapsed);
    m.disk_mb = Some(round(disk as f64 / MIB, 1));
    Ok(m.with("errors", stats.errors).with("rounds", stats.rounds))
}

/// Due-to-start latency on an idle worker. Each job is enqueued due 10 to
/// 100 ms ahead, at a millisecond-aligned time that is then exactly its due
/// time (due times have millisecond resolution), and carries that time as
/// its argument; the handler's first line measures from it. If an enqueue
/// call returns only after the job's due time (a stalled enqueuer: the
/// library then makes the job due at its own "now"), the sample is kept,
/// measured from the intended due time, and counted in `enqueue_stalls`.
fn latency(dir: &Path, samples: u64) -> anyhow::Result<Measure> {
    let store = open_store(dir, Durability::Durable)?;
    let (tx, rx) = mpsc::channel::<i64>();
    let mut handlers = Handlers::new();
    handlers.register("latency", move |due_ms: i64| -> Result<(), JobError> {
        let late_us = chrono::Utc::now().timestamp_micros() - due_ms * 1_000;
        let _ = tx.send(late_us);
        Ok(())
    });
    let worker = Worker::builder(&store, handlers).threads(2).start()?;
    let q = store.queue("default");
    let mut rng = Rng::new();
    let mut lat_us: Vec<i64> = Vec::with_capacity(samples as usize);
    let mut stalls = 0u64;
    // Let the worker settle into its idle wait.
    std::thread::sleep(Duration::from_millis(20));
    for _ in 0..samples {
        let delay_ms = 10 + rng.below(91) as i64;
        let due_ms = chrono::Utc::now().timestamp_millis() + delay_ms;
        let due = chrono::DateTime::from_timestamp_millis(due_ms).context("a due time")?;
        q.job("latency", &due_ms)
            .result_ttl(Duration::ZERO)
            .enqueue_at(due)?;
        if chrono::Utc::now().timestamp_millis() >= due_ms {
            stalls += 1;
        }
        let late = rx
            .recv_timeout(Duration::from_millis(delay_ms as u64) + Duration::from_secs(5))
            .context("the scheduled job did not start within 5 s of its due time")?;
        lat_us.push(late);
        // A short gap so that the worker is idle again when the next job is
        // enqueued (it has just finished this one).
        std::thread::sleep(Duration::from_millis(2 + rng.below(8)));
    }
    worker.shutdown(Duration::from_secs(10))?;
    lat_us.sort_unstable();
    let mut m = Measure::new(Workload::Latency, samples, 2, "durable");
    m.p50_us = percentile(&lat_us, 50.0).map(|v| v as f64);
    m.p99_us = percentile(&lat_us, 99.0).map(|v| v as f64);
    let mean = lat_us.iter().sum::<i64>() as f64 / lat_us.len().max(1) as f64;
    Ok(m.with("min_us", lat_us.first().copied())
        .with("max_us", lat_us.last().copied())
        .with("mean_us", round(mean, 0))
        .with("due_in_ms", "10..100")
        .with("enqueue_stalls", stalls))
}

/// What the open-measuring child reports.
#[derive(Debug, Serialize, Deserialize)]
struct OpenReport {
    open_ms: f64,
    rss_before_mb: Option<f64>,
    rss_mb: Option<f64>,
    count_ms: f64,
    rss_after_count_mb: Option<f64>,
    rss_peak_mb: Option<f64>,
}

fn open_1m(dir: &Path, n: u64) -> anyhow::Result<Measure> {
    let path = dir.join("store");
    let (build, disk) = {
        let store = open_store(dir, Durability::Buffered)?;
        let build = fill(&store, n)?;
        store.flush()?;
        (build, store.size_on_disk()?)
    };
    let exe = std::env::current_exe()?;
    let mut reports = Vec::with_capacity(OPENS);
    for _ in 0..OPENS {
        let out = Command::new(&exe)
            .arg("__bench-open")
            .arg(&path)
            .arg("--expect")
            .arg(n.to_string())
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .context("starting the open-measuring process")?;
        ensure!(
            out.status.success(),
            "the open-measuring process exited with {}",
            out.status
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().context("no output from open")?;
        let report: OpenReport = serde_json::from_str(line)?;
        reports.push(report);
    }
    let mut open_ns: Vec<u64> = reports.iter().map(|r| (r.open_ms * 1e6) as u64).collect();
    let open_ms: Vec<f64> = reports.iter().map(|r| r.open_ms).collect();
    let max_of = |g: fn(&OpenReport) -> Option<f64>| {
        reports
            .iter()
            .filter_map(g)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    open_ns.sort_unstable();
    let mut m = Measure::new(Workload::Open1m, n, 1, "durable").latencies(open_ns);
    m.rss_mb = max_of(|r| r.rss_mb);
    m.disk_mb = Some(round(disk as f64 / MIB, 1));
    Ok(m.with("open_ms", open_ms.clone())
        .with("open_ms_max", open_ms.iter().copied().fold(0.0, f64::max))
        .with("rss_after_count_mb", max_of(|r| r.rss_after_count_mb))
        .with("rss_peak_mb", max_of(|r| r.rss_peak_mb))
        .with("count_ms", max_of(|r| Some(r.count_ms)))
        .with("build_jobs_per_s", round(n as f64 / build.as_secs_f64(), 0)))
}

pub(crate) fn open_child(args: &OpenArgs) -> anyhow::Result<()> {
    let rss_before_mb = rss_mib();
    let t0 = Instant::now();
    let store = Store::open(&args.path).context("opening the store")?;
    let open_ms = t0.elapsed().as_secs_f64() * 1e3;
    let rss_mb = rss_mib();
    let t1 = Instant::now();
    let count = store.queue("default").count()?;
    let count_ms = t1.elapsed().as_secs_f64() * 1e3;
    ensure!(
        count as u64 == args.expect,
        "the store holds {count} queued jobs, not {}",
        args.expect
    );
    let report = OpenReport {
        open_ms: round(open_ms, 1),
        rss_before_mb,
        rss_mb,
        count_ms: round(count_ms, 1),
        rss_after_count_mb: rss_mib(),
        rss_peak_mb: proc_status_kib("VmHWM:").map(|k| round(k as f64 / 1024.0, 1)),
    };
    drop(store);
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn churn(dir: &Path, n: u64) -> anyhow::Result<Measure> {
    let backlog = (n / 100).clamp(100, CHURN_BACKLOG);
    let store = open_store(dir, Durability::Buffered)?;
    let done = Arc::new(AtomicU64::new(0));
    let worker = Worker::builder(&store, counting_handlers(&done))
        .threads(2)
        .start()?;
    let q = store.queue("default");
    let mib = |bytes: u64| round(bytes as f64 / MIB, 1);
    let sample_every = (n / 20).max(1);
    let mut samples: Vec<f64> = Vec::new();
    let mut disk_half = None;
    let t0 = Instant::now();
    let mut enqueued = 0u64;
    let watchdog = Watchdog::start(Workload::Churn, dir, done.clone(), n);
    while enqueued < n {
        if enqueued - done.load(Ordering::Relaxed) >= backlog {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        q.job("noop", &enqueued)
            .result_ttl(Duration::ZERO)
            .enqueue()?;
        enqueued += 1;
        if enqueued % sample_every == 0 {
            samples.push(mib(store.size_on_disk()?));
        }
        if enqueued == n / 2 {
            disk_half = Some(mib(store.size_on_disk()?));
        }
    }
    while done.load(Ordering::Relaxed) < n {
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(watchdog);
    let elapsed = t0.elapsed();
    let stats = worker.shutdown(Duration::from_secs(30))?;
    let disk_end = mib(store.size_on_disk()?);
    samples.push(disk_end);
    let disk_max = samples.iter().copied().fold(0.0, f64::max);
    // The samples are taken every 5% of the jobs: the second half's are the
    // last ten plus the end.
    let second_half = &samples[samples.len().saturating_sub(11)..];
    let disk_max_second_half = second_half.iter().copied().fold(0.0, f64::max);
    let mut m = Measure::new(Workload::Churn, n, 2, "buffered").rate(n, elapsed);
    m.disk_mb = Some(disk_end);
    Ok(m.with("backlog", backlog)
        .with("disk_mb_half", disk_half)
        .with("disk_mb_max", disk_max)
        .with("disk_mb_max_second_half", disk_max_second_half)
        .with("disk_mb_samples", samples)
        .with("dir_mb_end", mib(dir_size(dir)))
        .with("errors", stats.errors))
}

/// How long a workload's worker may go without finishing a job.
const STALL: Duration = Duration::from_secs(30);

/// Ends the process if `done` stops moving for [`STALL`] while the watchdog
/// lives. A stuck store (sled 0.34.7 can deadlock under sustained write
/// load: see BENCHMARKS.md) would otherwise hang the workload for ever, and
/// its threads cannot be shut down cleanly, so the process exits at once.
struct Watchdog {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    /// `dir`, the workload's temporary directory, is removed before exiting.
    fn start(workload: Workload, dir: &Path, done: Arc<AtomicU64>, total: u64) -> Watchdog {
        let dir = dir.to_owned();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut last = done.load(Ordering::Relaxed);
                let mut since = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    let now = done.load(Ordering::Relaxed);
                    if now != last {
                        last = now;
                        since = Instant::now();
                    } else if since.elapsed() >= STALL && !stop.load(Ordering::Relaxed) {
                        eprintln!(
                            "{}: no job finished for {} s ({now} of {total} done): the store \
                             is stuck (see \"sled deadlock\" in BENCHMARKS.md); giving up",
                            workload.name(),
                            STALL.as_secs()
                        );
                        let _ = std::fs::remove_dir_all(&dir);
                        std::process::exit(3);
                    }
                }
            }
        });
        Watchdog {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
