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
//! The journal also tells a run that started from a claim that never
//! started. A worker claims ahead of its runners (prefetch), so at a crash
//! some `STARTED` jobs were claimed but never handed to a handler: counting
//! an attempt for those would fail a job with no retries left without ever
//! running it. So the journal keeps, in memory, every run that appended its
//! line and whose outcome is not yet committed (`started`), and the rule is:
//! **a `STARTED` job has a line for its token in the journal if and only if
//! its run started** (up to a power cut, below). At open, a `STARTED` job
//! with a line is an abandoned run; one without a line goes back to `READY`
//! with its attempt uncounted.
//!
//! The journal only has to cover claims that may not be on disk yet and
//! runs whose outcome may not be on disk yet: after a sled `flush`, every
//! line of a run that has ended is redundant, so the journal is then
//! rewritten with the lines of the runs still going on only (at open, when
//! it grows past `ROTATE_AT`, and at close). A run leaves `started` only
//! once its outcome's transaction committed (or it was fenced), so a flush
//! before the rewrite makes that outcome durable: no `STARTED` record on
//! disk can be left with a started run and no line. The rewrite goes to a
//! temporary file renamed over the journal, so a kill mid-rewrite leaves the
//! old journal or the new one, never a truncated one.
//!
//! Lines are written with `write`, not synced: they survive the process being
//! killed, not a power cut. After a power cut, lost lines can make a run that
//! started look like a claim that never started (the job runs again with its
//! attempt uncounted) and a run whose claim was lost go uncounted: the job
//! runs again either way (at least once), but a job that takes the machine
//! down can then run more often than its retry policy says.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::error::Result;

/// The journal's file name inside the store directory.
const FILE: &str = "dueq-runs";
/// Where a rewrite is prepared before it is renamed over `FILE`.
const TMP_FILE: &str = "dueq-runs.tmp";
/// Rewrite (after a flush) once the journal is this long.
pub(crate) const ROTATE_AT: u64 = 1 << 20;

/// A run start read back from the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunStart {
    pub(crate) token: u64,
    pub(crate) attempt: u32,
    pub(crate) from_seq: u64,
    pub(crate) id: String,
}

impl RunStart {
    fn line(&self) -> String {
        format!(
            "{} {} {} {}\n",
            self.token, self.attempt, self.from_seq, self.id
        )
    }
}

pub(crate) struct Journal {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    file: File,
    len: u64,
    /// Runs that appended their line and have not ended yet (see the module
    /// docs), by token: tokens are unique, ids are not (a job deleted and
    /// re-created under its id while its old run goes on).
    started: HashMap<u64, RunStart>,
}

impl Journal {
    pub(crate) fn open(dir: &Path) -> Result<Journal> {
        let path = dir.join(FILE);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        Ok(Journal {
            path,
            state: Mutex::new(State {
                file,
                len,
                started: HashMap::new(),
            }),
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

    /// Records that a run is about to start: one `write` of one line. The
    /// run is remembered as started even if the write fails, so the next
    /// rewrite still writes its line.
    pub(crate) fn append(&self, token: u64, attempt: u32, from_seq: u64, id: &str) -> Result<()> {
        let start = RunStart {
            token,
            attempt,
            from_seq,
            id: id.to_owned(),
        };
        let line = start.line();
        let mut state = self.state.lock();
        state.started.insert(token, start);
        state.file.write_all(line.as_bytes())?;
        state.len += line.len() as u64;
        Ok(())
    }

    /// Forgets runs that ended: call only once their outcome's transaction
    /// committed (or they were fenced), never before.
    pub(crate) fn ended(&self, tokens: impl IntoIterator<Item = u64>) {
        let mut state = self.state.lock();
        for token in tokens {
            state.started.remove(&token);
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.state.lock().len
    }

    /// Runs `flush` (which must make every claim and outcome so far
    /// durable), then replaces the journal with the lines of the runs still
    /// going on. Appends wait meanwhile, so no line written after the flush
    /// began is dropped.
    pub(crate) fn truncate_after(&self, flush: impl FnOnce() -> Result<()>) -> Result<()> {
        let mut state = self.state.lock();
        flush()?;
        let mut starts: Vec<&RunStart> = state.started.values().collect();
        starts.sort_by_key(|s| s.token);
        let lines: String = starts.iter().map(|s| s.line()).collect();
        let tmp = self.path.with_file_name(TMP_FILE);
        std::fs::write(&tmp, lines.as_bytes())?;
        std::fs::rename(&tmp, &self.path)?;
        state.file = OpenOptions::new().append(true).open(&self.path)?;
        state.len = lines.len() as u64;
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
        j.ended([7, 9]);
        j.truncate_after(|| Ok(())).unwrap();
        assert!(j.read().unwrap().is_empty());
        assert_eq!(j.len(), 0);
    }

    #[test]
    fn a_rewrite_keeps_the_lines_of_runs_still_going_on() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.append(7, 1, 3, "a").unwrap();
        j.append(9, 2, 4, "b").unwrap();
        j.append(11, 1, 5, "c").unwrap();
        j.ended([9]);
        j.truncate_after(|| Ok(())).unwrap();
        let tokens: Vec<u64> = j.read().unwrap().iter().map(|s| s.token).collect();
        assert_eq!(tokens, [7, 11]);
        // Appends go on after the rewrite, to the new file.
        j.append(13, 1, 6, "d").unwrap();
        let tokens: Vec<u64> = j.read().unwrap().iter().map(|s| s.token).collect();
        assert_eq!(tokens, [7, 11, 13]);
        assert_eq!(
            j.len(),
            std::fs::metadata(dir.path().join(FILE)).unwrap().len()
        );
        // A failed flush leaves the journal as it was.
        let err = j.truncate_after(|| Err(crate::Error::corrupt("x", "y")));
        assert!(err.is_err());
        assert_eq!(j.read().unwrap().len(), 3);
    }
}
