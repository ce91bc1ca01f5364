//! Checking the invariants of ARCHITECTURE.md over the raw trees: what
//! `Store::verify` reports.
//!
//! It reads `jobs`, `index`, `queues` and `quarantine` directly, the way
//! they are on disk, and never goes through the transitions' helpers: those
//! skip or repair what they do not understand, which is exactly what a
//! check must see.

use std::collections::HashMap;

use super::codec::decode_record;
use super::keys::IndexKey;
use super::ops::Engine;
use crate::error::{Error, Result};
use crate::verify::{Problem, ProblemKind, VerifyReport};

impl Engine {
    /// Reads every tree and reports each broken invariant. Writes nothing
    /// but what any read does first: jobs still in the intake are moved
    /// into place (`settle`), where the checks then see them.
    pub(crate) fn verify(&self) -> Result<VerifyReport> {
        self.settle()?;
        // The trees by their on-disk names (see trees.rs); opening an
        // existing tree only returns a handle on it.
        let db = self.db();
        let jobs = db.open_tree("jobs")?;
        let index = db.open_tree("index")?;
        let queues_tree = db.open_tree("queues")?;
        let quarantine = db.open_tree("quarantine")?;

        let mut report = VerifyReport::default();
        let mut problem = |kind: ProblemKind, message: String| {
            report.problems.push(Problem { kind, message });
        };

        let mut queues: HashMap<u32, String> = HashMap::new();
        for item in queues_tree.iter() {
            let (name, number) = item?;
            let name = String::from_utf8_lossy(&name).into_owned();
            let Ok(number) = <[u8; 4]>::try_from(number.as_ref()).map(u32::from_be_bytes) else {
                problem(
                    ProblemKind::BadQueueEntry,
                    format!(
                        "queue {name:?} has a queue number of {} bytes, not 4",
                        number.len()
                    ),
                );
                continue;
            };
            if let Some(other) = queues.insert(number, name.clone()) {
                problem(
                    ProblemKind::BadQueueEntry,
                    format!("queues {other:?} and {name:?} share the queue number {number}"),
                );
            }
        }
        let describe = |key: &IndexKey| describe(key, &queues);

        let mut entries = 0;
        for item in index.iter() {
            let (key_bytes, id_bytes) = item?;
            entries += 1;
            let id = String::from_utf8_lossy(&id_bytes);
            let key = match IndexKey::decode(&key_bytes) {
                Ok(key) => key,
                Err(e) => {
                    problem(
                        ProblemKind::BadIndexKey,
                        format!(
                            "the index key {} (naming job {id:?}) does not decode: {}",
                            hex(&key_bytes),
                            detail(&e)
                        ),
                    );
                    continue;
                }
            };
            if !queues.contains_key(&key.queue) {
                problem(
                    ProblemKind::QueueMismatch,
                    format!(
                        "{} (naming job {id:?}) has queue number {}, which no queue has",
                        describe(&key),
                        key.queue
                    ),
                );
            }
            let Some(raw) = jobs.get(&id_bytes)? else {
                problem(
                    ProblemKind::MissingRecord,
                    format!("{} names job {id:?}, which has no record", describe(&key)),
                );
                continue;
            };
            // A record that does not decode is reported by the record scan.
            let Ok(record) = decode_record(&id_bytes, &raw) else {
                continue;
            };
            if record.key[..] == key_bytes[..] {
                continue;
            }
            let own = record.index_key();
            if index.get(record.key)?.as_deref() == Some(&id_bytes[..]) {
                problem(
                    ProblemKind::SeveralStates,
                    format!(
                        "job {id:?} is in two states: {} and {} both name it (its record names the second)",
                        describe(&key),
                        describe(&own)
                    ),
                );
            } else {
                problem(
                    ProblemKind::StaleIndexEntry,
                    format!(
                        "{} names job {id:?}, but the job's record names {}",
                        describe(&key),
                        describe(&own)
                    ),
                );
            }
        }
        report.index_entries = entries;

        let mut records = 0;
        for item in jobs.iter() {
            let (id_bytes, raw) = item?;
            records += 1;
            let id = String::from_utf8_lossy(&id_bytes);
            let record = match decode_record(&id_bytes, &raw) {
                Ok(record) => record,
                Err(e) => {
                    problem(
                        ProblemKind::UndecodableRecord,
                        format!(
                            "the record of job {id:?} does not decode: {}; a worker fails it \
                             as corrupt (keeping its bytes) when it reaches the job",
                            detail(&e)
                        ),
                    );
                    continue;
                }
            };
            let key = record.index_key();
            match queues.get(&key.queue) {
                Some(name) if *name == record.queue => {}
                Some(name) => problem(
                    ProblemKind::QueueMismatch,
                    format!(
                        "job {id:?} says it is in queue {:?}, but its key is in queue {name:?}",
                        record.queue
                    ),
                ),
                // Reported with the index entry, if there is one.
                None if index.get(record.key)?.is_some() => {}
                None => problem(
                    ProblemKind::QueueMismatch,
                    format!(
                        "job {id:?} has queue number {}, which no queue has",
                        key.queue
                    ),
                ),
            }
            match index.get(record.key)? {
                Some(owner) if owner == id_bytes => {}
                Some(owner) => problem(
                    ProblemKind::MissingIndexEntry,
                    format!(
                        "job {id:?} is in no state: its record names {}, which belongs to job {:?}",
                        describe(&key),
                        String::from_utf8_lossy(&owner)
                    ),
                ),
                None => problem(
                    ProblemKind::MissingIndexEntry,
                    format!(
                        "job {id:?} is in no state: its record names {}, which is not in the index",
                        describe(&key)
                    ),
                ),
            }
        }
        report.jobs = records;

        for item in quarantine.iter() {
            let (id, _) = item?;
            report
                .quarantined
                .push(String::from_utf8_lossy(&id).into_owned());
        }
        Ok(report)
    }
}

/// "the failed entry of queue "q" (time 1767225600000, seq 12)".
fn describe(key: &IndexKey, queues: &HashMap<u32, String>) -> String {
    let class = key.class.name();
    let queue = match queues.get(&key.queue) {
        Some(name) => format!("queue {name:?}"),
        None => format!("queue number {}", key.queue),
    };
    format!(
        "the {class} entry of {queue} (time {}, seq {})",
        key.time, key.seq
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The detail of a decoding error, without the advice around it.
fn detail(e: &Error) -> String {
    match e {
        Error::Corrupt { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::codec::encode_record;
    use crate::engine::Class;
    use crate::Store;

    /// A store with three jobs: "a" and "b" queued on "default", "c" queued
    /// on "other". The test damages it through the engine's sled handle,
    /// beneath every transition.
    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        for (id, queue) in [("a", "default"), ("b", "default"), ("c", "other")] {
            store.queue(queue).job("h", &1).id(id).enqueue().unwrap();
        }
        (dir, store)
    }

    fn tree(store: &Store, name: &str) -> sled::Tree {
        store.engine().db().open_tree(name).unwrap()
    }

    fn key_of(store: &Store, id: &str) -> IndexKey {
        store.engine().get(id).unwrap().unwrap().index_key()
    }

    fn kinds(report: &VerifyReport) -> Vec<ProblemKind> {
        report.problems.iter().map(|p| p.kind).collect()
    }

    #[test]
    fn a_healthy_store_has_no_problems() {
        let (_dir, store) = store();
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!((report.jobs, report.index_entries), (3, 3));
        assert!(report.quarantined.is_empty());
    }

    #[test]
    fn an_index_entry_without_its_record() {
        let (_dir, store) = store();
        tree(&store, "jobs").remove("a").unwrap();
        let report = store.verify().unwrap();
        assert_eq!(kinds(&report), [ProblemKind::MissingRecord]);
        let message = &report.problems[0].message;
        assert!(
            message.contains("\"a\", which has no record") && message.contains("queue \"default\""),
            "{message}"
        );
    }

    #[test]
    fn a_record_without_its_index_entry() {
        let (_dir, store) = store();
        tree(&store, "index")
            .remove(key_of(&store, "b").encode())
            .unwrap();
        let report = store.verify().unwrap();
        assert_eq!(kinds(&report), [ProblemKind::MissingIndexEntry]);
        assert!(report.problems[0]
            .message
            .contains("job \"b\" is in no state"));
    }

    #[test]
    fn a_record_whose_key_belongs_to_another_job() {
        let (_dir, store) = store();
        // "b"'s entry now names "a": "a" has two entries, "b" none.
        tree(&store, "index")
            .insert(key_of(&store, "b").encode(), "a")
            .unwrap();
        let report = store.verify().unwrap();
        assert_eq!(
            kinds(&report),
            [ProblemKind::SeveralStates, ProblemKind::MissingIndexEntry]
        );
        assert!(report.problems[0]
            .message
            .contains("job \"a\" is in two states"));
        assert!(report.problems[1].message.contains("belongs to job \"a\""));
    }

    #[test]
    fn a_stale_entry_of_a_job_that_moved() {
        let (_dir, store) = store();
        let index = tree(&store, "index");
        let old = key_of(&store, "c");
        // The record moves to failed but the entry stays where it was.
        let mut record = store.engine().get("c").unwrap().unwrap();
        record.key = IndexKey::new(old.queue, Class::Failed, 9, old.seq).encode();
        tree(&store, "jobs")
            .insert("c", encode_record(&record))
            .unwrap();
        let report = store.verify().unwrap();
        assert_eq!(
            kinds(&report),
            [ProblemKind::StaleIndexEntry, ProblemKind::MissingIndexEntry]
        );
        assert!(report.problems[0]
            .message
            .contains("the ready entry of queue \"other\""));
        assert!(report.problems[0]
            .message
            .contains("record names the failed entry"));
        // Once the entry is moved too, the store is whole again.
        index.remove(old.encode()).unwrap();
        index.insert(record.key, "c").unwrap();
        assert!(store.verify().unwrap().is_ok());
    }

    #[test]
    fn index_keys_that_do_not_decode() {
        let (_dir, store) = store();
        let index = tree(&store, "index");
        index.insert([0u8; 7], "a").unwrap();
        let mut bad_class = key_of(&store, "a").encode();
        bad_class[4] = 99;
        index.insert(bad_class, "a").unwrap();
        let report = store.verify().unwrap();
        assert_eq!(
            kinds(&report),
            [ProblemKind::BadIndexKey, ProblemKind::BadIndexKey]
        );
        let messages: Vec<&str> = report.problems.iter().map(|p| p.message.as_str()).collect();
        assert!(messages[0].contains("wrong length"), "{messages:?}");
        assert!(messages[1].contains("unknown class byte"), "{messages:?}");
        assert_eq!(report.index_entries, 5);
    }

    #[test]
    fn records_that_do_not_decode_and_quarantined_ones() {
        let (_dir, store) = store();
        let jobs = tree(&store, "jobs");
        let mut raw = jobs.get("a").unwrap().unwrap().to_vec();
        raw[0] = 0xee;
        jobs.insert("a", raw).unwrap();
        let raw = jobs.get("b").unwrap().unwrap().to_vec();
        jobs.insert("b", &raw[..raw.len() / 2]).unwrap();
        tree(&store, "quarantine").insert("c", "junk").unwrap();
        let report = store.verify().unwrap();
        assert_eq!(
            kinds(&report),
            [
                ProblemKind::UndecodableRecord,
                ProblemKind::UndecodableRecord
            ]
        );
        assert!(report.problems[0]
            .message
            .contains("unknown record format version 238"));
        assert!(report.problems[1]
            .message
            .contains("job \"b\" does not decode"));
        assert_eq!(report.quarantined, ["c"]);
    }

    #[test]
    fn queue_numbers_that_do_not_match() {
        let (_dir, store) = store();
        let queues = tree(&store, "queues");
        // "other" takes "default"'s number; "default" has none left.
        let default = queues.get("default").unwrap().unwrap();
        queues.insert("other", default).unwrap();
        queues.remove("default").unwrap();
        queues.insert("broken", &[1u8, 2][..]).unwrap();
        let report = store.verify().unwrap();
        assert_eq!(
            kinds(&report),
            [
                ProblemKind::BadQueueEntry,
                ProblemKind::QueueMismatch,
                ProblemKind::QueueMismatch,
                ProblemKind::QueueMismatch,
            ]
        );
        let messages: Vec<&str> = report.problems.iter().map(|p| p.message.as_str()).collect();
        assert!(messages[0].contains("queue \"broken\""), "{messages:?}");
        // "a" and "b" say "default" but their keys are in "other" now;
        // "c"'s number has no queue.
        assert!(
            messages[1].contains("queue number 1, which no queue has"),
            "{messages:?}"
        );
        assert!(
            messages[2].contains("job \"a\" says it is in queue \"default\""),
            "{messages:?}"
        );
    }
}
