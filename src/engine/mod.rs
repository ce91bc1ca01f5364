//! The storage engine: everything that touches sled. Private to the crate.

mod codec;
mod commit;
mod keys;
mod ops;
mod record;
mod signal;
mod trees;

pub(crate) use codec::{decode_json, encode_json};
pub(crate) use commit::Committer;
pub(crate) use keys::Class;
pub(crate) use ops::{status_of, Claimed, Engine, NewJob, Outcome};
pub(crate) use record::{AttemptLog, JobRecord};
pub(crate) use trees::OpenOptions;
