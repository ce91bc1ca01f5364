//! Opening the database: leftover snapshot cleanup, the lock, the meta tree.

use std::path::Path;

use crate::error::{Error, Result};

/// The magic value in `meta`, so dueq never misreads another program's sled
/// database as a store.
const MAGIC: &[u8] = b"dueq-store\0";
/// The schema this build writes and the newest it reads.
///
/// 2: record format 2 and the `schedules` tree. A schema 1 store (dueq
/// 0.1's first format) is upgraded at open: its records are read as version
/// 1 and rewritten as version 2 when they change. Raising the schema keeps
/// an older dueq from opening a store whose records it cannot read (it
/// would otherwise quarantine them one by one).
///
/// 3: the `intake` tree (jobs enqueued by the fast path, not yet in `jobs`
/// and `index`). A schema 2 store has none and is upgraded by writing the
/// number; a schema 2 dueq must not open a schema 3 store, since it would
/// never see the jobs in the intake.
pub(crate) const SCHEMA_VERSION: u32 = 3;

const TREE_NAMES: [&str; 4] = ["meta", "queues", "jobs", "index"];

pub(crate) struct Trees {
    pub(crate) db: sled::Db,
    pub(crate) queues: sled::Tree,
    pub(crate) jobs: sled::Tree,
    pub(crate) index: sled::Tree,
    pub(crate) meta: sled::Tree,
}

pub(crate) struct OpenOptions {
    pub(crate) cache_capacity: u64,
    pub(crate) flush_every_ms: Option<u64>,
}

pub(crate) fn open(path: &Path, opts: &OpenOptions) -> Result<Trees> {
    refuse_foreign_directory(path)?;
    remove_generating_snapshots(path)?;
    remove_unfinished_conf(path)?;
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(opts.cache_capacity)
        .flush_every_ms(opts.flush_every_ms);
    let db = open_waiting_for_lock(path, &config)?;
    refuse_foreign_database(path, &db)?;
    let meta = db.open_tree("meta")?;
    let trees = Trees {
        queues: db.open_tree("queues")?,
        jobs: db.open_tree("jobs")?,
        index: db.open_tree("index")?,
        meta: meta.clone(),
        db,
    };
    check_meta(path, &trees, &meta)?;
    Ok(trees)
}

/// sled creates its files in any directory; refuse one that holds other
/// files and no sled database, so a mistyped path cannot litter a home
/// directory.
fn refuse_foreign_directory(path: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(Error::ForeignData {
                path: path.to_owned(),
                detail: "it is a file, not a directory".into(),
            })
        }
        Err(e) => return Err(Error::Io(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        names.push(entry?.file_name());
    }
    // sled's own files: a first open killed early can leave any subset.
    let sleds = |n: &std::ffi::OsString| {
        n == "conf"
            || n == "db"
            || n == "blobs"
            || n == "dueq-runs"
            || n.to_string_lossy().starts_with("snap.")
    };
    if names.iter().all(sleds) {
        return Ok(());
    }
    Err(Error::ForeignData {
        path: path.to_owned(),
        detail: "the directory is not empty and holds no store".into(),
    })
}

/// A kill during a sled snapshot leaves `snap.*.generating`, and sled then
/// refuses to open with a corruption error. The file is an unfinished
/// snapshot that nothing depends on, so deleting it is safe.
fn remove_generating_snapshots(path: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::Io(e)),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// sled writes `conf` at the first open, in two writes (settings, then their
/// checksum); a kill between them leaves a `conf` that sled calls corrupt
/// forever. A store whose `db` file is missing or empty has never held
/// data, so its `conf` can go: sled writes a fresh one.
fn remove_unfinished_conf(path: &Path) -> Result<()> {
    let db_len = match std::fs::metadata(path.join("db")) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(Error::Io(e)),
    };
    if db_len == 0 {
        match std::fs::remove_file(path.join("conf")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Ok(())
}

/// How long `open` waits for a lock held by a store that is being closed.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Opens sled, waiting briefly if the store is locked: sled releases its
/// lock from a background thread after the last handle is dropped
/// (spacejam/sled#1289), so a close followed at once by an open, in this
/// process or the next, can find it still held. A store held by a running
/// process is reported as in use after `LOCK_WAIT`.
fn open_waiting_for_lock(path: &Path, config: &sled::Config) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(e) => match map_open_error(path, e) {
                Error::StoreInUse { .. } if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => return Err(other),
            },
        }
    }
}

fn map_open_error(path: &Path, e: sled::Error) -> Error {
    match e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            Error::StoreInUse {
                path: path.to_owned(),
            }
        }
        other => Error::Storage(other),
    }
}

/// Decides whether the database is dueq's (or empty) before any of dueq's
/// trees is opened: sled keeps a tree once it is opened, so refusing a
/// foreign database after opening ours would write into it.
fn refuse_foreign_database(path: &Path, db: &sled::Db) -> Result<()> {
    let names: Vec<String> = db
        .tree_names()
        .into_iter()
        .map(|n| String::from_utf8_lossy(&n).into_owned())
        .filter(|n| n != "__sled__default")
        .collect();
    if names.iter().any(|n| n == "meta") {
        return Ok(()); // check_meta reads its magic value
    }
    let others: Vec<&String> = names
        .iter()
        .filter(|n| !TREE_NAMES.contains(&n.as_str()) && n.as_str() != "quarantine")
        .collect();
    if !db.is_empty() || !others.is_empty() {
        return Err(Error::ForeignData {
            path: path.to_owned(),
            detail: format!("a sled database without dueq's marker (trees: {others:?})"),
        });
    }
    Ok(())
}

fn check_meta(path: &Path, trees: &Trees, meta: &sled::Tree) -> Result<()> {
    let foreign = |detail: String| Error::ForeignData {
        path: path.to_owned(),
        detail,
    };
    match meta.get("magic")? {
        Some(magic) if magic == MAGIC => {}
        Some(_) => {
            return Err(foreign(
                "its meta tree has another program's magic value".into(),
            ))
        }
        None => {
            // A fresh store, or another program's sled database.
            let others: Vec<String> = trees
                .db
                .tree_names()
                .into_iter()
                .map(|n| String::from_utf8_lossy(&n).into_owned())
                .filter(|n| n != "__sled__default" && !TREE_NAMES.contains(&n.as_str()))
                .collect();
            let has_data = !trees.db.is_empty()
                || !trees.jobs.is_empty()
                || !trees.index.is_empty()
                || !trees.queues.is_empty();
            if has_data || !others.is_empty() {
                return Err(foreign(format!(
                    "a sled database without dueq's marker (trees: {others:?})"
                )));
            }
            meta.insert("schema", &SCHEMA_VERSION.to_be_bytes())?;
            meta.insert("magic", MAGIC)?;
            trees.db.flush()?;
            return Ok(());
        }
    }
    let schema = meta
        .get("schema")?
        .ok_or_else(|| foreign("its meta tree has no schema version".into()))?;
    let found = <[u8; 4]>::try_from(schema.as_ref())
        .map(u32::from_be_bytes)
        .map_err(|_| foreign("its schema version does not decode".into()))?;
    if found > SCHEMA_VERSION || found == 0 {
        return Err(Error::UnsupportedSchema {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < SCHEMA_VERSION {
        meta.insert("schema", &SCHEMA_VERSION.to_be_bytes())?;
        trees.db.flush()?;
    }
    Ok(())
}
