//! The run journal: one line appended (no fsync) before each handler starts.
//!
//! Claims are sled writes that are not flushed, so a process killed within
//! ~500 ms of a claim can lose it: the job comes back queued, its attempt
//! uncounted, and a job that brings its process down at once would run
//! forever, whatever its retry policy. A `write` to a file survives the
//! process being killed (the kernel has it), so each run first appends
//! `token attempt seq id` here (`seq`: the sequence number of the `READY`
//! key it was claimed from, which tells a lost claim from a job deleted and
//! re-created under the same id). At open, a run whose claim was lost is found in
//! the journal and counted as an abandoned attempt.
//!
//! The journal only has to cover claims that may not be on disk yet: after a
//! sled `flush`, every line written before it is redundant, so the journal
//! is truncated then (at open, when it grows past `ROTATE_AT`, and at close).
//! A power cut can lose unsynced lines as well as claims; runs lost that way
//! are not counted (they run again, which at-least-once allows).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::error::Result;

/// The journal's file name inside the store directory.
const FILE: &str = "dueq-runs";
/// Truncate (after a flush) once the journal is this long.
pub(crate) const ROTATE_AT: u64 = 1 << 20;

/// A run start read back from the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunStart {
    pub(crate) token: u64,
    pub(crate) attempt: u32,
    pub(crate) from_seq: u64,
    pub(crate) id: String,
}

pub(crate) struct Journal {
    path: PathBuf,
    file: Mutex<(File, u64)>,
}

impl Journal {
    pub(crate) fn open(dir: &Path) -> Result<Journal> {
        let path = dir.join(FILE);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        Ok(Journal {
            path,
            file: Mutex::new((file, len)),
        })
    }

    /// Every complete line; a torn last line (a kill mid-write) and lines
    /// that do not parse are skipped.
    pub(crate) fn read(&self) -> Result<Vec<RunStart>> {
        let reader = BufReader::new(File::open(&self.path)?);
        let mut starts = Vec::new();
        for line in reader.split(b'\n') {
            let line = line?;
            let Ok(line) = std::str::from_utf8(&line) else {
                continue;
            };
            let mut parts = line.splitn(4, ' ');
            let (Some(token), Some(attempt), Some(seq), Some(id)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if let (Ok(token), Ok(attempt), Ok(from_seq)) =
                (token.parse(), attempt.parse(), seq.parse())
            {
                if !id.is_empty() {
                    starts.push(RunStart {
                        token,
                        attempt,
                        from_seq,
                        id: id.to_owned(),
                    });
                }
            }
        }
        Ok(starts)
    }

    /// Records that a run is about to start. One `write` of one line.
    pub(crate) fn append(&self, token: u64, attempt: u32, from_seq: u64, id: &str) -> Result<()> {
        let line = format!("{token} {attempt} {from_seq} {id}\n");
        let mut file = self.file.lock();
        file.0.write_all(line.as_bytes())?;
        file.1 += line.len() as u64;
        Ok(())
    }

    pub(crate) fn len(&self) -> u64 {
        self.file.lock().1
    }

    /// Runs `flush` (which must make every claim so far durable), then
    /// empties the journal. Appends wait meanwhile, so no line written after
    /// the flush began is dropped.
    pub(crate) fn truncate_after(&self, flush: impl FnOnce() -> Result<()>) -> Result<()> {
        let mut file = self.file.lock();
        flush()?;
        file.0.set_len(0)?;
        file.1 = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.append(7, 1, 3, "a").unwrap();
        j.append(9, 2, 4, "job-b").unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE))
            .unwrap();
        f.write_all(b"12 3 5 to").unwrap(); // a torn line has no newline...
        f.write_all(b"\nnot a line\n").unwrap(); // ...and garbage is skipped
        let starts = j.read().unwrap();
        let start = |token, attempt, from_seq, id: &str| RunStart {
            token,
            attempt,
            from_seq,
            id: id.into(),
        };
        assert_eq!(starts[0], start(7, 1, 3, "a"));
        assert_eq!(starts[1], start(9, 2, 4, "job-b"));
        // The torn line parsed as a line only because garbage followed it;
        // it names a job that does not exist, which replay ignores.
        assert!(starts.len() <= 3);
        j.truncate_after(|| Ok(())).unwrap();
        assert!(j.read().unwrap().is_empty());
        assert_eq!(j.len(), 0);
    }
}
