//! The fixed-width index key: queue, class, time, sequence.
//!
//! ```text
//!  0        4     5                 13                21
//!  | queue  |class| time (ms)       | seq             |
//!  | u32 BE | u8  | u64 BE          | u64 BE          |
//! ```
//!
//! Byte order is (queue, class, time, seq) order, so the first key of a
//! queue's `READY` range is its next due job.

use crate::error::{Error, Result};

/// Length of an encoded [`IndexKey`].
pub(crate) const KEY_LEN: usize = 21;

/// Which registry a job is in. The discriminants are stored on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Class {
    /// Queued (time <= now) or scheduled (time > now); time is the due time.
    Ready = 0,
    /// Running; time is when the run's lease expires.
    Started = 1,
    /// Finished; time is when the result expires.
    Finished = 2,
    /// Failed; time is when the failure expires.
    Failed = 3,
    /// Canceled; time is when it was canceled.
    Canceled = 4,
    /// Waiting for its dependencies; time is when its `ttl` discards it
    /// (`u64::MAX`: never).
    Deferred = 5,
    /// Stopped while running (`job.stop()`); time is when it expires.
    Stopped = 6,
}

impl Class {
    pub(crate) const ALL: [Class; 7] = [
        Class::Ready,
        Class::Started,
        Class::Finished,
        Class::Failed,
        Class::Canceled,
        Class::Deferred,
        Class::Stopped,
    ];

    /// The class's name in exports and reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Class::Ready => "ready",
            Class::Started => "started",
            Class::Finished => "finished",
            Class::Failed => "failed",
            Class::Canceled => "canceled",
            Class::Deferred => "deferred",
            Class::Stopped => "stopped",
        }
    }

    fn from_u8(b: u8) -> Option<Class> {
        Class::ALL.into_iter().find(|c| *c as u8 == b)
    }
}

/// A decoded index key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct IndexKey {
    pub(crate) queue: u32,
    pub(crate) class: Class,
    pub(crate) time: u64,
    pub(crate) seq: u64,
}

impl IndexKey {
    pub(crate) fn new(queue: u32, class: Class, time: u64, seq: u64) -> IndexKey {
        IndexKey {
            queue,
            class,
            time,
            seq,
        }
    }

    pub(crate) fn encode(&self) -> [u8; KEY_LEN] {
        let mut out = [0u8; KEY_LEN];
        out[0..4].copy_from_slice(&self.queue.to_be_bytes());
        out[4] = self.class as u8;
        out[5..13].copy_from_slice(&self.time.to_be_bytes());
        out[13..21].copy_from_slice(&self.seq.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<IndexKey> {
        let bad = |detail: &str| Error::corrupt(format!("index key {bytes:02x?}"), detail);
        if bytes.len() != KEY_LEN {
            return Err(bad("wrong length"));
        }
        let class = Class::from_u8(bytes[4]).ok_or_else(|| bad("unknown class byte"))?;
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(b)
        };
        let mut q = [0u8; 4];
        q.copy_from_slice(&bytes[0..4]);
        Ok(IndexKey {
            queue: u32::from_be_bytes(q),
            class,
            time: u64_at(5),
            seq: u64_at(13),
        })
    }

    /// The first key of `(queue, class)`, inclusive.
    pub(crate) fn range_start(queue: u32, class: Class) -> [u8; KEY_LEN] {
        IndexKey::new(queue, class, 0, 0).encode()
    }

    /// The last key of `(queue, class)` with `time <= up_to`, inclusive.
    pub(crate) fn range_end(queue: u32, class: Class, up_to: u64) -> [u8; KEY_LEN] {
        IndexKey::new(queue, class, up_to, u64::MAX).encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn class() -> impl Strategy<Value = Class> {
        prop::sample::select(Class::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn round_trips(q in any::<u32>(), c in class(), t in any::<u64>(), s in any::<u64>()) {
            let k = IndexKey::new(q, c, t, s);
            prop_assert_eq!(IndexKey::decode(&k.encode()).unwrap(), k);
        }

        #[test]
        fn byte_order_is_key_order(
            a in (any::<u32>(), class(), any::<u64>(), any::<u64>()),
            b in (any::<u32>(), class(), any::<u64>(), any::<u64>()),
        ) {
            let ka = IndexKey::new(a.0, a.1, a.2, a.3);
            let kb = IndexKey::new(b.0, b.1, b.2, b.3);
            prop_assert_eq!(ka.cmp(&kb), ka.encode().cmp(&kb.encode()));
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            let _ = IndexKey::decode(&bytes);
        }
    }

    #[test]
    fn rejects_bad_keys() {
        assert!(matches!(
            IndexKey::decode(&[0; 20]),
            Err(Error::Corrupt { .. })
        ));
        let mut k = IndexKey::new(1, Class::Ready, 2, 3).encode();
        k[4] = 99;
        assert!(matches!(IndexKey::decode(&k), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn same_time_is_fifo_by_seq() {
        let a = IndexKey::new(7, Class::Ready, 1000, 1).encode();
        let b = IndexKey::new(7, Class::Ready, 1000, 2).encode();
        assert!(a < b);
        assert!(IndexKey::range_start(7, Class::Ready) <= a);
        assert!(b <= IndexKey::range_end(7, Class::Ready, 1000));
        assert!(
            IndexKey::new(7, Class::Ready, 1001, 0).encode()
                > IndexKey::range_end(7, Class::Ready, 1000)
        );
    }
}
