//! Wake-ups between the operations that make work runnable and the
//! dispatchers that sleep until there is some. No polling: a dispatcher waits
//! until the generation changes or until its next due time.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

#[derive(Default)]
pub(crate) struct Signal {
    generation: Mutex<u64>,
    cond: Condvar,
}

impl Signal {
    /// The current generation; pass it to `wait` to sleep until it changes.
    pub(crate) fn generation(&self) -> u64 {
        *self.generation.lock()
    }

    pub(crate) fn notify(&self) {
        *self.generation.lock() += 1;
        self.cond.notify_all();
    }

    /// Sleeps until the generation differs from `seen` or `timeout` passes.
    /// `None` waits without a time limit.
    pub(crate) fn wait(&self, seen: u64, timeout: Option<Duration>) {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut generation = self.generation.lock();
        while *generation == seen {
            match deadline {
                Some(deadline) => {
                    if self.cond.wait_until(&mut generation, deadline).timed_out() {
                        return;
                    }
                }
                None => self.cond.wait(&mut generation),
            }
        }
    }
}
