//! `dueq`: the command-line tool for dueq stores.
//!
//! Built only with the `cli` feature (`cargo run --features cli -- ...`), so
//! that library users do not pull in the CLI's dependencies. One subcommand
//! per task; today `bench`, later `info`, `jobs`, `show`, `requeue`, ...

#![forbid(unsafe_code)]

mod bench;

use clap::{Parser, Subcommand};

/// dueq: an embedded, durable, rq-style job queue on sled.
#[derive(Debug, Parser)]
#[command(name = "dueq", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(args) => bench::run(&args),
        Command::BenchWorkload(args) => bench::run_workload_child(&args),
        Command::BenchOpen(args) => bench::open_child(&args),
    }
}
