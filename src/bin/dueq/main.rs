//! `dueq`: the command-line tool for dueq stores.
//!
//! Built only with the `cli` feature (`cargo run --features cli -- ...`), so
//! that library users do not pull in the CLI's dependencies. Each command is
//! a thin layer over the library's public API: no store access the library
//! does not offer.

#![forbid(unsafe_code)]

mod bench;
mod inspect;
mod manage;
mod transfer;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// dueq: an embedded, durable, rq-style job queue on sled.
#[derive(Debug, Parser)]
#[command(
    name = "dueq",
    version,
    propagate_version = true,
    about = "Inspect and manage dueq job stores: an embedded, durable, rq-style job queue on sled.
A store can be open in one process at a time: while your application holds it, commands fail at once (exit code 2).",
    long_about = "Inspect and manage dueq job stores: an embedded, durable, rq-style job queue on sled.

sled lets one process open a store at a time. While your application has the \
store open, these commands cannot: they fail at once (exit code 2) with \"the \
store at PATH is open in another process\". Stop the application first, or do \
the same from inside it through the library API (Store::stats, Store::verify, \
Job::requeue, Store::export, ...).

Every command takes --json for scripts: one JSON object, or one JSON object \
per line for lists (jobs, and the per-id results of requeue, cancel and delete).

Exit codes: 0 ok; 1 the job or queue named was not found, was not in a state \
that allows the command, or a check (verify) failed; 2 usage error, or the \
store could not be opened or read."
)]
struct Cli {
    /// The store's directory. Commands other than `enqueue` and `import`
    /// never create one.
    #[arg(long, global = true, env = "DUEQ_STORE", value_name = "PATH")]
    store: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Jobs per queue and status, and the store's size (like `rq info`).
    Info(inspect::InfoArgs),
    /// A table of jobs, filtered by queue and status.
    Jobs(inspect::JobsArgs),
    /// One job in full: arguments, meta, options, dependencies, result,
    /// errors, attempts.
    Show(inspect::ShowArgs),
    /// Puts failed jobs back in their queue (only failed jobs, as in rq).
    Requeue(manage::RequeueArgs),
    /// Cancels queued, scheduled or deferred jobs.
    Cancel(manage::IdsArgs),
    /// Deletes jobs, whatever their state.
    Delete(manage::IdsArgs),
    /// Deletes every queued job of a queue (scheduled jobs stay).
    Empty(manage::EmptyArgs),
    /// Deletes every finished, failed, stopped or canceled job (of one queue
    /// or all).
    Purge(manage::PurgeArgs),
    /// Enqueues a job for the application's workers to run (like `rq
    /// enqueue`). Creates the store if it does not exist.
    Enqueue(manage::EnqueueArgs),
    /// Writes every job to FILE (or stdout) as JSON Lines.
    Export(transfer::ExportArgs),
    /// Reads jobs written by `export` into the store. Creates the store if
    /// it does not exist.
    Import(transfer::ImportArgs),
    /// Checks the store's invariants; exit code 1 if anything is wrong.
    Verify(inspect::VerifyArgs),
    /// Runs the standard performance workloads on a temporary store and
    /// prints a table (or JSON lines).
    Bench(bench::BenchArgs),
    /// Internal: runs one bench workload in this fresh process and prints
    /// its JSON line (the parent runs every workload this way, so that
    /// memory figures are per workload).
    #[command(name = "__bench-workload", hide = true)]
    BenchWorkload(bench::WorkloadArgs),
    /// Internal: opens an existing store, prints open time and memory as
    /// JSON (the `open_1m` workload runs it in a fresh process).
    #[command(name = "__bench-open", hide = true)]
    BenchOpen(bench::OpenArgs),
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let store = cli.store.as_deref();
    match cli.command {
        Command::Info(args) => inspect::info(store, &args),
        Command::Jobs(args) => inspect::jobs(store, &args),
        Command::Show(args) => inspect::show(store, &args),
        Command::Verify(args) => inspect::verify(store, &args),
        Command::Requeue(args) => manage::requeue(store, &args),
        Command::Cancel(args) => manage::cancel(store, &args),
        Command::Delete(args) => manage::delete(store, &args),
        Command::Empty(args) => manage::empty(store, &args),
        Command::Purge(args) => manage::purge(store, &args),
        Command::Enqueue(args) => manage::enqueue(store, &args),
        Command::Export(args) => transfer::export(store, &args),
        Command::Import(args) => transfer::import(store, &args),
        Command::Bench(args) => bench::run(&args).map(|()| ExitCode::SUCCESS),
        Command::BenchWorkload(args) => {
            bench::run_workload_child(&args).map(|()| ExitCode::SUCCESS)
        }
        Command::BenchOpen(args) => bench::open_child(&args).map(|()| ExitCode::SUCCESS),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) if util::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dueq: error: {e:#}");
            ExitCode::from(util::exit_code(&e))
        }
    }
}
