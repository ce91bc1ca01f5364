//! The intake: the fast enqueue path, and moving its jobs into place.
//!
//! A sled transaction costs far more than a plain write: every one rolls
//! the log's I/O buffer twice (`PageCache::pin_log`), and each rolled
//! buffer is a separate device write. An enqueue as one transaction over
//! `jobs` and `index` therefore runs at about a quarter of sled's plain
//! insert rate, and a durable one costs several device round trips.
//!
//! So a plain enqueue (a generated id, no dependencies, a queue that has
//! been used before) is one plain `insert` into the `intake` tree: key = the
//! job's sequence number (u64 BE), value = its index key, id and encoded
//! record (`codec::encode_intake`); a batch is one `apply_batch`. sled
//! makes a single insert or batch atomic and durable like any other write,
//! so an accepted job is on disk in exactly one place.
//!
//! Before anything reads or changes jobs, `settle` moves every intake entry
//! into `jobs` and `index`, in transactions of up to `SETTLE_CHUNK` entries
//! that each also remove the entries they moved: all or nothing, so a crash
//! leaves every job either still in the intake or in place, never both or
//! neither. Every read of the engine settles first, so callers never see
//! the difference: `settle` returns only once every intake write that
//! finished before it was called is in place (also when another thread's
//! settle is moving them), and two counters (`intake_written`,
//! `intake_settled`) make it two atomic loads when there is nothing to
//! move.

use std::sync::atomic::Ordering;

use sled::Transactional;

use super::codec::{decode_intake, encode_intake, encode_record};
use super::ops::{abort, Engine};
use super::record::JobRecord;
use crate::error::{Error, Result};

/// Jobs moved per transaction (whole entries, so up to `JOBS_PER_ENTRY`
/// more).
const SETTLE_CHUNK: usize = 512;
/// Jobs per intake entry for `enqueue_many`: enough that sled's per-write
/// cost is shared by many jobs, few enough that an entry (about 150 bytes
/// a job) stays far below sled's inline limit (a quarter segment, 128 KiB)
/// even when its leaf node is rewritten whole.
const JOBS_PER_ENTRY: usize = 64;

impl Engine {
    /// Writes new jobs to the intake in one atomic write. `records` pairs
    /// each record with the sequence number its key was made from. The
    /// caller holds `seq_lock` (shared).
    pub(super) fn enqueue_to_intake(&self, records: &[(u64, JobRecord)]) -> Result<()> {
        let encoded: Vec<Vec<u8>> = records.iter().map(|(_, r)| encode_record(r)).collect();
        // Up to `JOBS_PER_ENTRY` jobs per entry, keyed by the first one's
        // sequence number: sled's cost is per write far more than per byte.
        let entries = records
            .chunks(JOBS_PER_ENTRY)
            .zip(encoded.chunks(JOBS_PER_ENTRY))
            .map(|(records, encoded)| {
                let items: Vec<_> = records
                    .iter()
                    .zip(encoded)
                    .map(|((_, r), bytes)| (&r.key[..], r.id.as_str(), bytes.as_slice()))
                    .collect();
                (records[0].0, encode_intake(&items))
            });
        if records.len() <= JOBS_PER_ENTRY {
            for (seq, entry) in entries {
                self.intake.insert(seq.to_be_bytes(), entry)?;
            }
        } else {
            let mut batch = sled::Batch::default();
            for (seq, entry) in entries {
                batch.insert(&seq.to_be_bytes(), entry);
            }
            self.intake.apply_batch(batch)?;
        }
        // After the write: a settle that starts after reading this count
        // sees the entries.
        self.intake_written.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Brings the trees up to date before a read or a transition: moves
    /// the intake into place (`settle_intake`) and writes the claims a
    /// dispatcher round made in memory (`write_pending_claims`).
    pub(crate) fn settle(&self) -> Result<()> {
        self.settle_intake()?;
        self.write_pending_claims()
    }

    /// Moves every job in the intake into `jobs` and `index`: on return,
    /// every intake write that finished before the call is in place. Cheap
    /// when there is nothing to move: two atomic loads.
    pub(crate) fn settle_intake(&self) -> Result<()> {
        let written = self.intake_written.load(Ordering::SeqCst);
        if self.intake_settled.load(Ordering::SeqCst) >= written {
            return Ok(());
        }
        let _settling = self.settle_lock.lock();
        // A settle that finished while this one waited for the lock may
        // have covered these writes already.
        if self.intake_settled.load(Ordering::SeqCst) >= written {
            return Ok(());
        }
        // Every write counted in `upto` finished before this load, so the
        // scan below sees it.
        let upto = self.intake_written.load(Ordering::SeqCst);
        self.settle_all()?;
        self.intake_settled.fetch_max(upto, Ordering::SeqCst);
        Ok(())
    }

    fn settle_all(&self) -> Result<()> {
        loop {
            // Whole entries, until they hold `SETTLE_CHUNK` jobs.
            let mut entries: Vec<(sled::IVec, sled::IVec)> = Vec::new();
            let mut jobs_in_chunk = 0;
            for item in self.intake.iter() {
                let (seq, entry) = item?;
                jobs_in_chunk += entry_jobs(&entry);
                entries.push((seq, entry));
                if jobs_in_chunk >= SETTLE_CHUNK {
                    break;
                }
            }
            if entries.is_empty() {
                return Ok(());
            }
            // A job whose id or index key is taken cannot come from the fast
            // path (a generated id, a fresh sequence number), so the chunk
            // is first moved without looking; only if the transaction finds
            // one is the chunk checked job by job, so that one bad job
            // cannot stop every later one from settling.
            match self.settle_chunk(&entries, false) {
                Err(Error::DuplicateJobId { .. }) => self.settle_chunk(&entries, true)?,
                other => other?,
            }
        }
    }

    /// Moves the jobs of `entries` into place and removes the entries, in
    /// one transaction. Entries that do not decode go to the quarantine;
    /// with `checked`, so do jobs whose id or index key is taken. Without
    /// it, such a job aborts the transaction with `DuplicateJobId`.
    fn settle_chunk(&self, entries: &[(sled::IVec, sled::IVec)], checked: bool) -> Result<()> {
        let mut moves = Vec::new();
        // (quarantine key, bytes, why)
        let mut rejects: Vec<(String, &[u8], Error)> = Vec::new();
        for (seq, entry) in entries {
            let items = match decode_intake(entry) {
                Ok(items) => items,
                Err(e) => {
                    rejects.push((format!("intake:seq:{}", hex(seq)), &entry[..], e));
                    continue;
                }
            };
            for (key, id, record) in items {
                let taken = if !checked {
                    None
                } else if self.trees.jobs.contains_key(id.as_bytes())? {
                    Some(Error::DuplicateJobId { id: id.to_owned() })
                } else if self.trees.index.contains_key(key)? {
                    Some(Error::corrupt(
                        format!("job {id:?}"),
                        "its index key is taken by another job",
                    ))
                } else {
                    None
                };
                match taken {
                    Some(e) => rejects.push((format!("intake:{id}"), record, e)),
                    None => moves.push((key, id, record)),
                }
            }
        }
        let trees = &self.trees;
        (&trees.jobs, &trees.index, &self.intake, &self.quarantine)
            .transaction(|(jobs, index, intake, quarantine)| {
                for (seq, _) in entries {
                    intake.remove(&seq[..])?;
                }
                for (name, bytes, _) in &rejects {
                    quarantine.insert(name.as_bytes(), *bytes)?;
                }
                for (key, id, record) in &moves {
                    let taken = jobs.insert(id.as_bytes(), *record)?.is_some()
                        || index.insert(*key, id.as_bytes())?.is_some();
                    if taken {
                        return abort(Error::DuplicateJobId {
                            id: (*id).to_owned(),
                        });
                    }
                }
                Ok(())
            })
            .map_err(|e: sled::transaction::TransactionError<Error>| Error::from(e))?;
        for (name, _, why) in &rejects {
            tracing::error!(entry = %name, error = %why, "dueq: an enqueued job could not be settled; kept in the quarantine");
        }
        Ok(())
    }

    /// How many jobs wait in the intake.
    #[cfg(test)]
    pub(crate) fn intake_len(&self) -> usize {
        self.intake
            .iter()
            .map(|item| entry_jobs(&item.unwrap().1))
            .sum()
    }
}

/// The job count of an entry, read from its header (0 if it is damaged:
/// `decode_intake` reports that).
fn entry_jobs(entry: &[u8]) -> usize {
    match entry {
        [_, a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
        _ => 0,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::super::keys::{Class, IndexKey};
    use super::super::ops::tests::{job, open, NOW};
    use super::*;

    /// A job the fast path takes: a generated id, nothing to wait on.
    fn plain(n: usize) -> NewJobs {
        (0..n)
            .map(|_| {
                let mut j = job(&uuid::Uuid::new_v4().to_string());
                j.auto_id = true;
                j
            })
            .collect()
    }
    type NewJobs = Vec<super::super::ops::NewJob>;

    /// Opens an engine whose "default" queue exists (a job's first queue
    /// is created by the transactional path).
    fn engine(dir: &std::path::Path) -> Engine {
        let engine = open(dir);
        engine.enqueue(vec![job("first")], NOW).unwrap();
        engine
    }

    fn ready(engine: &Engine) -> usize {
        let q = engine.queue_id("default").unwrap();
        engine.count(q, Class::Ready, 0, u64::MAX).unwrap()
    }

    #[test]
    fn plain_enqueues_wait_in_the_intake_until_a_read_settles_them() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let ids = engine.enqueue(plain(3), NOW).unwrap();
        assert_eq!(engine.intake_len(), 3, "the fast path wrote the intake");
        assert!(!engine.trees.jobs.contains_key(ids[0].as_bytes()).unwrap());
        let record = engine.get(&ids[0]).unwrap().expect("a read settles first");
        assert_eq!(record.index_key().class, Class::Ready);
        assert_eq!(engine.intake_len(), 0);
        assert_eq!(ready(&engine), 4);
        for id in &ids {
            let record = engine.get(id).unwrap().unwrap();
            assert_eq!(
                engine.trees.index.get(record.key).unwrap().as_deref(),
                Some(id.as_bytes()),
                "index and record agree"
            );
        }
    }

    #[test]
    fn a_batch_is_written_as_few_entries_and_settles_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let ids = engine.enqueue(plain(200), NOW).unwrap();
        assert_eq!(engine.intake.len(), 200usize.div_ceil(JOBS_PER_ENTRY));
        assert_eq!(engine.intake_len(), 200);
        let q = engine.queue_id("default").unwrap();
        let queued = engine
            .ids(q, Class::Ready, 0, u64::MAX, usize::MAX)
            .unwrap();
        assert_eq!(queued[0], "first");
        assert_eq!(queued[1..], ids[..], "queue order is enqueue order");
        assert_eq!(engine.intake.len(), 0);
        let report = engine.verify().unwrap();
        assert!(report.problems.is_empty(), "{report:?}");
    }

    #[test]
    fn the_intake_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let ids = {
            let engine = engine(dir.path());
            let ids = engine.enqueue(plain(5), NOW).unwrap();
            engine.trees.db.flush().unwrap();
            ids
        };
        let engine = open(dir.path());
        assert_eq!(engine.intake_len(), 5);
        assert_eq!(ready(&engine), 6);
        for id in &ids {
            assert!(engine.get(id).unwrap().is_some(), "{id}");
        }
    }

    #[test]
    fn a_given_id_is_checked_against_jobs_still_in_the_intake() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let id = engine.enqueue(plain(1), NOW).unwrap().remove(0);
        let err = engine.enqueue(vec![job(&id)], NOW).unwrap_err();
        assert!(matches!(err, Error::DuplicateJobId { .. }), "{err:?}");
        assert_eq!(ready(&engine), 2);
    }

    #[test]
    fn a_damaged_intake_entry_is_quarantined_and_the_rest_settle() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        engine.enqueue(plain(1), NOW).unwrap();
        // Sorts between the two good entries (sequence numbers).
        let bad_seq = engine.next_seq().unwrap();
        engine
            .intake
            .insert(bad_seq.to_be_bytes(), &b"\x01junk"[..])
            .unwrap();
        engine.enqueue(plain(1), NOW).unwrap();
        assert_eq!(ready(&engine), 3, "both good entries settled");
        assert_eq!(engine.intake_len(), 0);
        let report = engine.verify().unwrap();
        assert_eq!(
            report.quarantined,
            [format!("intake:seq:{}", hex(&bad_seq.to_be_bytes()))]
        );
    }

    #[test]
    fn a_job_whose_id_is_taken_is_quarantined_and_the_rest_settle() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let before = engine.get("first").unwrap().unwrap();
        // An intake entry for "first" again (only damage could write one).
        let mut again = before.clone();
        let seq = engine.next_seq().unwrap();
        again.key = IndexKey::new(before.index_key().queue, Class::Ready, NOW, seq).encode();
        let bytes = encode_record(&again);
        let entry = encode_intake(&[(&again.key[..], "first", &bytes[..])]);
        engine.intake.insert(seq.to_be_bytes(), entry).unwrap();
        let ids = engine.enqueue(plain(2), NOW).unwrap();
        assert_eq!(ready(&engine), 3, "the two good jobs settled");
        assert_eq!(engine.intake_len(), 0);
        assert_eq!(
            engine.get("first").unwrap().unwrap(),
            before,
            "left as it was"
        );
        for id in &ids {
            assert!(engine.get(id).unwrap().is_some());
        }
        assert_eq!(engine.verify().unwrap().quarantined, ["intake:first"]);
    }

    #[test]
    fn every_reader_waits_for_a_settle_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let engine = std::sync::Arc::new(engine(dir.path()));
        engine.enqueue(plain(3000), NOW).unwrap();
        // Four readers at once: one settles, the others must not return
        // before its last chunk is in place.
        let counts: Vec<usize> = (0..4)
            .map(|_| {
                let engine = engine.clone();
                std::thread::spawn(move || ready(&engine))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert_eq!(counts, [3001; 4]);
    }
}
