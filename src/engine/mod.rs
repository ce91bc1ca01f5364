//! The storage engine: everything that touches sled. Private to the crate.

mod codec;
mod commit;
mod intake;
mod journal;
mod keys;
mod ops;
mod record;
mod schedules;
mod signal;
mod trees;
mod verify;

pub(crate) use codec::{decode_json, encode_json};
pub(crate) use commit::Committer;
pub(crate) use keys::{Class, IndexKey};
pub(crate) use ops::{
    lost_parent_reason, status_of, ClaimPolicy, Claimed, Done, Engine, ExportedKey, NewJob,
    Outcome, ABANDONED,
};
pub(crate) use record::{AttemptLog, Callbacks, Dependency, JobRecord, Limit};
pub(crate) use schedules::{ScheduleRecord, Spec};
pub(crate) use trees::{OpenOptions, SCHEMA_VERSION};

pub(crate) fn fuzz_decode_record(id: &[u8], bytes: &[u8]) -> bool {
    match codec::decode_record(id, bytes) {
        // A record that decodes must re-encode to bytes that decode and
        // re-encode to the same bytes (compared as bytes: a stored float may
        // be NaN, which is not equal to itself).
        Ok(record) => {
            let bytes = codec::encode_record(&record);
            let again = codec::decode_record(id, &bytes).expect("re-encoded record decodes");
            assert_eq!(codec::encode_record(&again), bytes);
            true
        }
        Err(_) => false,
    }
}

pub(crate) fn fuzz_decode_intake(bytes: &[u8]) -> bool {
    match codec::decode_intake(bytes) {
        // An entry that decodes re-encodes to the same bytes.
        Ok(items) => {
            assert_eq!(codec::encode_intake(&items), bytes);
            true
        }
        Err(_) => false,
    }
}

pub(crate) fn fuzz_intake_entry(key: &[u8], id: &str, record: &[u8]) -> Vec<u8> {
    codec::encode_intake(&[(key, id, record)])
}

pub(crate) fn fuzz_decode_key(bytes: &[u8]) -> bool {
    match keys::IndexKey::decode(bytes) {
        Ok(key) => {
            assert_eq!(&key.encode()[..], bytes);
            true
        }
        Err(_) => false,
    }
}
