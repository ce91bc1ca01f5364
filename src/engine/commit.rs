//! The group committer: one thread that makes acknowledged writes durable.
//!
//! Callers that need durability register and wait; the committer takes
//! every caller pending, runs one flush (sled `flush()` + `sync_all()` of the
//! `db` file), then releases every caller that registered before that flush
//! began. Concurrent callers share a flush; a lone caller pays one.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};

/// Makes every write that happened before the call durable.
pub(crate) type FlushFn = Box<dyn Fn() -> std::io::Result<()> + Send + Sync>;

pub(crate) struct Committer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the committer.
    work: Condvar,
    /// Wakes waiting callers.
    done: Condvar,
}

#[derive(Default)]
struct State {
    /// The last ticket handed out.
    issued: u64,
    /// Every ticket up to this one has been through a finished flush.
    flushed: u64,
    /// Recent failed flushes as (first ticket, last ticket, message).
    failures: VecDeque<(u64, u64, String)>,
    quit: bool,
}

/// How many failed rounds are remembered for late-waking callers.
const FAILURES_KEPT: usize = 64;

impl Committer {
    pub(crate) fn start(flush: FlushFn) -> Result<Committer> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("dueq-commit".into())
            .spawn({
                let shared = shared.clone();
                move || run(&shared, &flush)
            })
            .map_err(Error::Spawn)?;
        Ok(Committer {
            shared,
            thread: Some(thread),
        })
    }

    /// Returns once every write this thread made before the call is on disk.
    pub(crate) fn wait_durable(&self) -> Result<()> {
        let mut state = self.shared.state.lock();
        state.issued += 1;
        let ticket = state.issued;
        self.shared.work.notify_one();
        while state.flushed < ticket {
            self.shared.done.wait(&mut state);
        }
        if let Some((_, _, msg)) = state
            .failures
            .iter()
            .find(|(lo, hi, _)| (*lo..=*hi).contains(&ticket))
        {
            return Err(Error::Io(std::io::Error::other(format!(
                "could not make the write durable: {msg}"
            ))));
        }
        Ok(())
    }
}

/// The longest the committer waits for more callers before a flush.
const MAX_GATHER: Duration = Duration::from_micros(200);

fn run(shared: &Shared, flush: &FlushFn) {
    let mut state = shared.state.lock();
    // How many callers the last flush served, and how long it took.
    let mut last_batch = 1;
    let mut last_flush = Duration::ZERO;
    loop {
        if state.issued > state.flushed {
            // Callers released together come back one by one; without a
            // pause the first one back would get a flush of its own and the
            // rest would wait for the next. So wait, at most a quarter of a
            // flush, until as many are pending as the last flush served. A
            // lone caller (last_batch = 1) never waits.
            let deadline = Instant::now() + (last_flush / 4).min(MAX_GATHER);
            while state.issued - state.flushed < last_batch && !state.quit {
                if shared.work.wait_until(&mut state, deadline).timed_out() {
                    break;
                }
            }
            let (first, last) = (state.flushed + 1, state.issued);
            // Every caller holding a ticket <= last finished its write before
            // taking the ticket, so this flush covers all of them.
            let started = Instant::now();
            let res = parking_lot::MutexGuard::unlocked(&mut state, flush);
            last_flush = started.elapsed();
            last_batch = last - first + 1;
            if let Err(e) = res {
                if state.failures.len() == FAILURES_KEPT {
                    state.failures.pop_front();
                }
                state.failures.push_back((first, last, e.to_string()));
            }
            state.flushed = last;
            shared.done.notify_all();
        } else if state.quit {
            return;
        } else {
            shared.work.wait(&mut state);
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.shared.state.lock().quit = true;
        self.shared.work.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    #[test]
    fn concurrent_callers_share_flushes() {
        let count = Arc::new(AtomicU64::new(0));
        let c = count.clone();
        let committer = Arc::new(
            Committer::start(Box::new(move || {
                c.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(5));
                Ok(())
            }))
            .unwrap(),
        );
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let committer = committer.clone();
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        committer.wait_durable().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let flushes = count.load(Ordering::SeqCst);
        assert!(
            flushes >= 20,
            "each caller needs its own flush after its write"
        );
        assert!(
            flushes < 160,
            "8 concurrent callers must share flushes, got {flushes}"
        );
    }

    #[test]
    fn a_failed_flush_fails_its_callers_only() {
        let fail = Arc::new(AtomicBool::new(true));
        let f = fail.clone();
        let committer = Committer::start(Box::new(move || {
            if f.load(Ordering::SeqCst) {
                Err(std::io::Error::other("disk full"))
            } else {
                Ok(())
            }
        }))
        .unwrap();
        let err = committer.wait_durable().unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        fail.store(false, Ordering::SeqCst);
        committer.wait_durable().unwrap();
    }
}
