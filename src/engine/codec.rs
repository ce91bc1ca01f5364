//! The only place dueq turns values into bytes and back.
//!
//! Records: one format version byte, then bincode 2 (serde API, standard
//! configuration). bincode's development has ended, so nothing outside this
//! module names it: a later codec gets a new version byte, and old records
//! stay readable through their byte.
//!
//! Payloads (job arguments and results): JSON, so that tools can produce and
//! show them without the Rust types.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::keys::IndexKey;
use super::record::JobRecord;
use crate::error::{Error, Result};

/// Version byte of records encoded as bincode 2 / standard config.
pub(crate) const RECORD_V1: u8 = 1;

/// Largest record the decoder will allocate for. A damaged length prefix
/// must give an error, not a multi-gigabyte allocation.
const DECODE_LIMIT: usize = 16 << 20;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

pub(crate) fn encode_record(record: &JobRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + record.args.len());
    out.push(RECORD_V1);
    // Encoding a plain struct of strings, integers and vectors into a Vec
    // cannot fail; a failure here is a bug in the record type.
    bincode::serde::encode_into_std_write(record, &mut out, config())
        .expect("JobRecord always encodes");
    out
}

pub(crate) fn decode_record(id: &[u8], bytes: &[u8]) -> Result<JobRecord> {
    let what = || format!("job {:?}", String::from_utf8_lossy(id));
    match bytes.split_first() {
        None => Err(Error::corrupt(what(), "empty record")),
        Some((&RECORD_V1, rest)) => {
            let (record, used): (JobRecord, usize) =
                bincode::serde::decode_from_slice(rest, config())
                    .map_err(|e| Error::corrupt(what(), e))?;
            if used != rest.len() {
                return Err(Error::corrupt(what(), "trailing bytes after the record"));
            }
            if record.id.as_bytes() != id {
                return Err(Error::corrupt(what(), "record names another job id"));
            }
            IndexKey::decode(&record.key)?;
            Ok(record)
        }
        Some((v, _)) => Err(Error::corrupt(
            what(),
            format!("unknown record format version {v} (this dueq writes {RECORD_V1})"),
        )),
    }
}

/// Encodes a payload as JSON, refusing anything above `limit` bytes.
pub(crate) fn encode_json<T: Serialize + ?Sized>(
    value: &T,
    what: &'static str,
    limit: usize,
) -> Result<Vec<u8>> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::Encode {
        what,
        detail: e.to_string(),
    })?;
    if bytes.len() > limit {
        return Err(Error::PayloadTooLarge {
            what,
            size: bytes.len(),
            limit,
        });
    }
    Ok(bytes)
}

pub(crate) fn decode_json<T: DeserializeOwned>(bytes: &[u8], what: impl Into<String>) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Decode {
        what: what.into(),
        type_name: std::any::type_name::<T>(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::keys::Class;
    use proptest::prelude::*;

    pub(crate) fn sample() -> JobRecord {
        JobRecord {
            id: "job-1".into(),
            queue: "default".into(),
            handler: "count".into(),
            args: b"[1,2]".to_vec(),
            description: Some("d".into()),
            retry: Some(crate::Retry::max(2)),
            result_ttl_ms: 500_000,
            failure_ttl_ms: u64::MAX,
            enqueued_at: 1,
            key: IndexKey::new(1, Class::Ready, 5, 6).encode(),
            attempts: 0,
            token: 0,
            started_at: None,
            ended_at: None,
            result: None,
            error: None,
            history: vec![],
        }
    }

    #[test]
    fn round_trips() {
        let r = sample();
        let bytes = encode_record(&r);
        assert_eq!(bytes[0], RECORD_V1);
        assert_eq!(decode_record(b"job-1", &bytes).unwrap(), r);
    }

    #[test]
    fn unknown_version_is_corrupt_not_misparsed() {
        let mut bytes = encode_record(&sample());
        bytes[0] = 2;
        let err = decode_record(b"job-1", &bytes).unwrap_err();
        assert!(
            err.to_string().contains("unknown record format version 2"),
            "{err}"
        );
    }

    #[test]
    fn truncated_and_empty_are_corrupt() {
        let bytes = encode_record(&sample());
        for cut in 0..bytes.len() {
            assert!(matches!(
                decode_record(b"job-1", &bytes[..cut]),
                Err(Error::Corrupt { .. })
            ));
        }
    }

    #[test]
    fn record_for_another_id_is_corrupt() {
        let bytes = encode_record(&sample());
        assert!(matches!(
            decode_record(b"job-2", &bytes),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn payload_cap() {
        let big = "x".repeat(100);
        assert!(matches!(
            encode_json(&big, "arguments", 50),
            Err(Error::PayloadTooLarge {
                what: "arguments",
                limit: 50,
                ..
            })
        ));
        assert!(encode_json(&big, "arguments", 200).is_ok());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_record(b"job-1", &bytes);
        }

        #[test]
        fn flipped_bytes_never_panic(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut bytes = encode_record(&sample());
            let i = pos.index(bytes.len());
            bytes[i] ^= 1 << bit;
            let _ = decode_record(b"job-1", &bytes);
        }
    }
}
