//! The record and index-key decoders must never panic, whatever the bytes;
//! `dueq::fuzzing` asserts that whatever decodes re-encodes consistently.
//!
//! Two modes, chosen by the first byte:
//!
//! * raw: the rest is split into a job id and record bytes;
//! * structured: a record is built from the input with a mirror of
//!   `JobRecord`'s serde layout (src/engine/record.rs, src/retry.rs),
//!   encoded as the store does (version byte 1, bincode 2 standard), then
//!   possibly damaged. This reaches the checks after bincode (trailing
//!   bytes, the id, the key, odd floats in the retry policy) that random
//!   bytes rarely get through. If the layout drifts, this mode just yields
//!   records that do not decode; nothing here asserts that they do.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;

#[derive(Arbitrary, Debug, Serialize)]
struct Record {
    id: String,
    queue: String,
    handler: String,
    args: Vec<u8>,
    description: Option<String>,
    retry: Option<RetryMirror>,
    result_ttl_ms: u64,
    failure_ttl_ms: u64,
    enqueued_at: u64,
    #[serde(serialize_with = "key_bytes")]
    key: Key,
    attempts: u32,
    token: u64,
    started_at: Option<u64>,
    ended_at: Option<u64>,
    result: Option<Vec<u8>>,
    error: Option<String>,
    history: Vec<AttemptLog>,
}

#[derive(Arbitrary, Debug, Serialize)]
struct RetryMirror {
    max: u32,
    backoff: Backoff,
    jitter: f64,
}

#[derive(Arbitrary, Debug, Serialize)]
enum Backoff {
    Intervals(Vec<u64>),
    Linear { start: u64, step: u64, max: u64 },
    Exponential { first: u64, factor: f64, cap: u64 },
}

#[derive(Arbitrary, Debug, Serialize)]
struct AttemptLog {
    attempt: u32,
    started_at: u64,
    ended_at: u64,
    error: Option<String>,
    retry_at: Option<u64>,
}

#[derive(Arbitrary, Debug)]
enum Key {
    /// queue, class (mostly valid), time, seq.
    Parts(u32, u8, u64, u64),
    Raw([u8; 21]),
}

impl Key {
    fn encode(&self) -> [u8; 21] {
        match *self {
            Key::Parts(queue, class, time, seq) => {
                let mut out = [0u8; 21];
                out[0..4].copy_from_slice(&queue.to_be_bytes());
                out[4] = if class < 200 { class % 5 } else { class };
                out[5..13].copy_from_slice(&time.to_be_bytes());
                out[13..21].copy_from_slice(&seq.to_be_bytes());
                out
            }
            Key::Raw(raw) => raw,
        }
    }
}

fn key_bytes<S: serde::Serializer>(key: &Key, s: S) -> Result<S::Ok, S::Error> {
    key.encode().serialize(s)
}

#[derive(Arbitrary, Debug)]
enum Damage {
    None,
    Flip(u16, u8),
    Truncate(u16),
    Append(u8),
    Version(u8),
    OtherId,
}

fn structured(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let record = Record::arbitrary(u)?;
    let damage = Damage::arbitrary(u)?;
    let mut bytes = vec![1u8];
    bincode::serde::encode_into_std_write(&record, &mut bytes, bincode::config::standard())
        .expect("the mirror encodes");
    let mut id = record.id.clone().into_bytes();
    match damage {
        Damage::None => {}
        Damage::Flip(at, bit) => {
            let at = usize::from(at) % bytes.len();
            bytes[at] ^= 1 << (bit % 8);
        }
        Damage::Truncate(len) => bytes.truncate(usize::from(len) % bytes.len()),
        Damage::Append(b) => bytes.push(b),
        Damage::Version(v) => bytes[0] = v,
        Damage::OtherId => id.push(b'x'),
    }
    dueq::fuzzing::decode_record(&id, &bytes);
    dueq::fuzzing::decode_key(&record.key.encode());
    // The same record as the fast enqueue path stores it (ids are short).
    let id = String::from_utf8_lossy(&id);
    if id.len() <= usize::from(u16::MAX) {
        dueq::fuzzing::decode_intake(&dueq::fuzzing::intake_entry(
            &record.key.encode(),
            &id,
            &bytes,
        ));
    }
    Ok(())
}

fn raw(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).min(rest.len());
    let (id, bytes) = rest.split_at(split);
    dueq::fuzzing::decode_record(id, bytes);
    dueq::fuzzing::decode_key(data);
    dueq::fuzzing::decode_intake(rest);
    if bytes.len() >= 21 {
        dueq::fuzzing::decode_key(&bytes[..21]);
    }
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => {
            let _ = structured(&mut Unstructured::new(rest));
        }
        Some((_, rest)) => raw(rest),
        None => {}
    }
});
