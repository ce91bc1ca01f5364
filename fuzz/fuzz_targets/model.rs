//! The model test of `tests/model.rs`, driven by libFuzzer: arbitrary
//! operation sequences against a real store and the shared in-memory model
//! (`tests/support/model.rs`). Any difference panics with the ops so far.

#![no_main]

#[path = "../../tests/support/model.rs"]
mod model;

use std::path::PathBuf;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use model::{EnqueueSpec, Harness, Kind, Op, Policy, Ttl, When};

/// Longest sequence run; the rest of a longer input is ignored.
const MAX_OPS: usize = 48;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FKind {
    Ok,
    FailOnce,
    AlwaysFail,
    Unknown,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FTtl {
    Forever,
    Zero,
    Secs(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FWhen {
    Now,
    /// Index into [`DELAYS`].
    In(u8),
    InRaw(u64),
    AtOffset(i32),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct FSpec {
    id: u8,
    queue: u8,
    kind: FKind,
    /// Index into [`Policy::ALL`].
    policy: u8,
    when: FWhen,
    result_ttl: FTtl,
    failure_ttl: FTtl,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FOp {
    Enqueue(FSpec),
    EnqueueMany(FSpec, FSpec),
    WorkAll,
    Cancel(u8),
    Requeue(u8, u8),
    Delete(u8),
    Empty(u8),
    RequeueAll(u8),
    /// Index into [`DELAYS`].
    Advance(u8),
    AdvanceRaw(u32),
    Rewind(u16),
    Restart,
    ExportImport,
}

/// Steps that hit the model's boundaries: TTLs of 1, 5 and 60 s, retry
/// waits of 1, 2, 3, 5, 6, 7 and 10 s.
const DELAYS: [u64; 14] = [
    0, 1, 999, 1_000, 1_001, 2_000, 3_000, 4_999, 5_000, 6_000, 7_000, 10_000, 60_000, 600_000,
];

fn delay(i: u8) -> u64 {
    DELAYS[usize::from(i) % DELAYS.len()]
}

fn ttl(t: FTtl) -> Ttl {
    match t {
        FTtl::Forever => Ttl::Forever,
        FTtl::Zero => Ttl::Zero,
        FTtl::Secs(s) => Ttl::Secs(u32::from(s)),
    }
}

fn spec(s: FSpec) -> EnqueueSpec {
    EnqueueSpec {
        id: usize::from(s.id),
        queue: usize::from(s.queue),
        kind: match s.kind {
            FKind::Ok => Kind::Ok,
            FKind::FailOnce => Kind::FailOnce,
            FKind::AlwaysFail => Kind::AlwaysFail,
            FKind::Unknown => Kind::Unknown,
        },
        policy: Policy::ALL[usize::from(s.policy) % Policy::ALL.len()],
        when: match s.when {
            FWhen::Now => When::Now,
            FWhen::In(i) => When::InMs(delay(i)),
            FWhen::InRaw(ms) => When::InMs(ms),
            FWhen::AtOffset(ms) => When::AtOffsetMs(ms),
        },
        result_ttl: ttl(s.result_ttl),
        failure_ttl: ttl(s.failure_ttl),
    }
}

fn op(op: FOp) -> Op {
    match op {
        FOp::Enqueue(s) => Op::Enqueue(spec(s)),
        FOp::EnqueueMany(a, b) => Op::EnqueueMany(spec(a), spec(b)),
        FOp::WorkAll => Op::WorkAll,
        FOp::Cancel(i) => Op::Cancel(usize::from(i)),
        FOp::Requeue(i, q) => Op::Requeue(usize::from(i), usize::from(q)),
        FOp::Delete(i) => Op::Delete(usize::from(i)),
        FOp::Empty(q) => Op::Empty(usize::from(q)),
        FOp::RequeueAll(q) => Op::RequeueAll(usize::from(q)),
        FOp::Advance(i) => Op::AdvanceClock(delay(i) as u32),
        FOp::AdvanceRaw(ms) => Op::AdvanceClock(ms),
        FOp::Rewind(ms) => Op::RewindClock(u32::from(ms)),
        FOp::Restart => Op::Restart,
        FOp::ExportImport => Op::ExportImport,
    }
}

/// Stores go to tmpfs when there is one: much faster than a disk.
fn scratch() -> tempfile::TempDir {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("dueq-fuzz-")
            .tempdir_in(&shm)
        {
            return dir;
        }
    }
    tempfile::tempdir().expect("a temporary directory")
}

fuzz_target!(|ops: Vec<FOp>| {
    let ops: Vec<Op> = ops.into_iter().take(MAX_OPS).map(op).collect();
    if ops.is_empty() {
        return;
    }
    let dir = scratch();
    Harness::run(dir.path(), &ops);
});
