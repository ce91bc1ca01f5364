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
use super::record::{v1, JobRecord};
use crate::error::{Error, Result};

/// Version byte of dueq 0.1's first record format (bincode 2, standard
/// configuration): still read, upgraded on decode.
pub(crate) const RECORD_V1: u8 = 1;
/// Version byte of the records this dueq writes (bincode 2, standard
/// configuration, `record::JobRecord`).
pub(crate) const RECORD_V2: u8 = 2;

/// Largest record the decoder will allocate for. A damaged length prefix
/// must give an error, not a multi-gigabyte allocation.
const DECODE_LIMIT: usize = 16 << 20;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

pub(crate) fn encode_record(record: &JobRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + record.args.len());
    out.push(RECORD_V2);
    // Encoding a plain struct of strings, integers and vectors into a Vec
    // cannot fail; a failure here is a bug in the record type.
    bincode::serde::encode_into_std_write(record, &mut out, config())
        .expect("JobRecord always encodes");
    out
}

pub(crate) fn decode_record(id: &[u8], bytes: &[u8]) -> Result<JobRecord> {
    let what = || format!("job {:?}", String::from_utf8_lossy(id));
    let record = match bytes.split_first() {
        None => return Err(Error::corrupt(what(), "empty record")),
        Some((&RECORD_V2, rest)) => decode_exact::<JobRecord>(rest).map_err(|e| Error::corrupt(what(), e))?,
        Some((&RECORD_V1, rest)) => decode_exact::<v1::JobRecord>(rest)
            .map_err(|e| Error::corrupt(what(), e))?
            .upgrade(),
        Some((v, _)) => {
            return Err(Error::corrupt(
                what(),
                format!("unknown record format version {v} (this dueq reads {RECORD_V1} and {RECORD_V2}); was the store written by a newer dueq?"),
            ))
        }
    };
    if record.id.as_bytes() != id {
        return Err(Error::corrupt(what(), "record names another job id"));
    }
    IndexKey::decode(&record.key)?;
    Ok(record)
}

/// Version byte of an `intake` entry (see `intake.rs`).
pub(crate) const INTAKE_V1: u8 = 1;

/// One job of an `intake` entry: its index key, id and encoded record.
pub(crate) type IntakeItem<'a> = (&'a [u8], &'a str, &'a [u8]);

/// An `intake` entry: one or more jobs written by one fast-path enqueue.
/// `[INTAKE_V1][job count, u16 BE]`, then per job `[index key, 21
/// bytes][id length, u16 BE][id][record length, u32 BE][record as
/// `encode_record` writes it]`. Moving the jobs into `jobs` and `index`
/// writes these record bytes as they are: nothing is encoded twice.
pub(crate) fn encode_intake(items: &[IntakeItem<'_>]) -> Vec<u8> {
    let len: usize = items
        .iter()
        .map(|(k, id, r)| k.len() + 2 + id.len() + 4 + r.len())
        .sum();
    let mut out = Vec::with_capacity(3 + len);
    out.push(INTAKE_V1);
    let count = u16::try_from(items.len()).expect("an intake entry holds at most 65535 jobs");
    out.extend_from_slice(&count.to_be_bytes());
    for (key, id, record) in items {
        debug_assert_eq!(key.len(), super::keys::KEY_LEN);
        out.extend_from_slice(key);
        // Ids are validated to be short (`validate_id`); a generated one is
        // 36 bytes. Records are capped by the payload limit.
        let id_len = u16::try_from(id.len()).expect("job ids are shorter than 64 KiB");
        out.extend_from_slice(&id_len.to_be_bytes());
        out.extend_from_slice(id.as_bytes());
        let rec_len = u32::try_from(record.len()).expect("records are shorter than 4 GiB");
        out.extend_from_slice(&rec_len.to_be_bytes());
        out.extend_from_slice(record);
    }
    out
}

/// The jobs of an `intake` entry. Every record is checked to decode and to
/// agree with its key and id, so a damaged entry is never moved into
/// `jobs`: one bad job makes the whole entry an error.
pub(crate) fn decode_intake(bytes: &[u8]) -> Result<Vec<IntakeItem<'_>>> {
    let what = "an intake entry (jobs enqueued but not yet indexed)";
    let mut rest = match bytes.split_first() {
        Some((&INTAKE_V1, rest)) => rest,
        Some((v, _)) => {
            return Err(Error::corrupt(
                what,
                format!("unknown intake format version {v} (this dueq reads {INTAKE_V1}); was the store written by a newer dueq?"),
            ))
        }
        None => return Err(Error::corrupt(what, "empty entry")),
    };
    let mut take = |n: usize| -> Result<&[u8]> {
        if rest.len() < n {
            return Err(Error::corrupt(what, "truncated"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let count = u16::from_be_bytes(take(2)?.try_into().expect("2 bytes"));
    let mut items = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let key = take(super::keys::KEY_LEN)?;
        let id_len = u16::from_be_bytes(take(2)?.try_into().expect("2 bytes"));
        let id = std::str::from_utf8(take(usize::from(id_len))?)
            .map_err(|_| Error::corrupt(what, "an id is not UTF-8"))?;
        let rec_len = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes"));
        let record = take(rec_len as usize)?;
        let decoded = decode_record(id.as_bytes(), record)?;
        if decoded.key != key {
            return Err(Error::corrupt(
                format!("job {id:?}"),
                "its intake entry names another index key than its record",
            ));
        }
        items.push((key, id, record));
    }
    if !rest.is_empty() {
        return Err(Error::corrupt(what, "trailing bytes"));
    }
    Ok(items)
}

/// Decodes `bytes` as one `T`, refusing trailing bytes.
fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, String> {
    let (value, used): (T, usize) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err("trailing bytes after the record".into());
    }
    Ok(value)
}

/// Encodes a record in the old version 1 format (tests of the upgrade path).
#[cfg(test)]
pub(crate) fn encode_v1(record: &v1::JobRecord) -> Vec<u8> {
    let mut out = vec![RECORD_V1];
    bincode::serde::encode_into_std_write(record, &mut out, config()).expect("encodes");
    out
}

/// Version byte of schedule records (bincode 2, standard configuration).
pub(crate) const SCHEDULE_V1: u8 = 1;

pub(crate) fn encode_schedule(record: &super::schedules::ScheduleRecord) -> Vec<u8> {
    let mut out = vec![SCHEDULE_V1];
    bincode::serde::encode_into_std_write(record, &mut out, config())
        .expect("ScheduleRecord always encodes");
    out
}

pub(crate) fn decode_schedule(
    name: &[u8],
    bytes: &[u8],
) -> Result<super::schedules::ScheduleRecord> {
    let what = || format!("schedule {:?}", String::from_utf8_lossy(name));
    match bytes.split_first() {
        Some((&SCHEDULE_V1, rest)) => {
            let record: super::schedules::ScheduleRecord =
                decode_exact(rest).map_err(|e| Error::corrupt(what(), e))?;
            if record.name.as_bytes() != name {
                return Err(Error::corrupt(what(), "record names another schedule"));
            }
            Ok(record)
        }
        Some((v, _)) => Err(Error::corrupt(
            what(),
            format!("unknown schedule format version {v} (this dueq reads {SCHEDULE_V1})"),
        )),
        None => Err(Error::corrupt(what(), "empty record")),
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
        let mut r = JobRecord::new(
            "job-1".into(),
            "default".into(),
            "count".into(),
            b"[1,2]".to_vec(),
            IndexKey::new(1, Class::Ready, 5, 6),
            1,
        );
        r.description = Some("d".into());
        r.retry = Some(crate::Retry::max(2));
        r.result_ttl_ms = 500_000;
        r.meta = br#"{"progress":1}"#.to_vec();
        r.waiting_on = vec![super::super::record::Dependency {
            id: "p".into(),
            allow_failure: true,
        }];
        r
    }

    #[test]
    fn version_1_records_upgrade() {
        let old = v1::JobRecord {
            id: "job-1".into(),
            queue: "default".into(),
            handler: "count".into(),
            args: b"[1,2]".to_vec(),
            description: Some("d".into()),
            retry: Some(crate::Retry::max(2)),
            result_ttl_ms: 500_000,
            failure_ttl_ms: u64::MAX,
            enqueued_at: 1,
            key: IndexKey::new(1, Class::Failed, 5, 6).encode(),
            attempts: 3,
            token: 9,
            started_at: Some(2),
            ended_at: Some(3),
            result: None,
            error: Some("boom".into()),
            history: vec![v1::AttemptLog {
                attempt: 3,
                started_at: 2,
                ended_at: 3,
                error: Some("boom".into()),
                retry_at: None,
            }],
        };
        let r = decode_record(b"job-1", &encode_v1(&old)).unwrap();
        assert_eq!(r.attempts, 3);
        assert_eq!(r.error.as_deref(), Some("boom"));
        assert_eq!(r.history[0].error.as_deref(), Some("boom"));
        assert_eq!(r.index_key(), IndexKey::new(1, Class::Failed, 5, 6));
        assert_eq!(r.meta, b"{}");
        assert!(r.waiting_on.is_empty() && r.timeout_ms.is_none());
        // Re-encoded, it is a version 2 record.
        assert_eq!(encode_record(&r)[0], RECORD_V2);
    }

    #[test]
    fn round_trips() {
        let r = sample();
        let bytes = encode_record(&r);
        assert_eq!(bytes[0], RECORD_V2);
        assert_eq!(decode_record(b"job-1", &bytes).unwrap(), r);
    }

    #[test]
    fn unknown_version_is_corrupt_not_misparsed() {
        let mut bytes = encode_record(&sample());
        bytes[0] = 3;
        let err = decode_record(b"job-1", &bytes).unwrap_err();
        assert!(
            err.to_string().contains("unknown record format version 3"),
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
