//! Disk full and read-only directories, on a real small filesystem: a tmpfs
//! mounted by the test (CI runs as root; elsewhere the tests say they were
//! skipped and why). Errors must surface from `enqueue` and friends, and
//! nothing acknowledged may be lost.

mod common;
use common::copy_dir;

use std::path::PathBuf;
use std::process::Command;

use dueq::{Error, Store};

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl Tmpfs {
    fn new(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("skipped: could not mount a tmpfs (needs root); this test runs in CI");
            return None;
        }
        Some(Tmpfs { _dir: dir, mount })
    }

    fn remount_read_only(&self) {
        let ok = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.mount)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount read-only failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

#[test]
fn disk_full_is_an_error_and_loses_nothing_acknowledged() {
    let Some(fs) = Tmpfs::new("4m") else { return };
    let path = fs.mount.join("jobs.dueq");
    let store = Store::open(&path).unwrap();
    let q = store.queue("default");
    let payload = "x".repeat(2000);
    let mut acked = Vec::new();
    let mut error = None;
    for i in 0..100_000 {
        match q.job("h", &payload).id(format!("job-{i}")).enqueue() {
            Ok(job) => acked.push(job.id().to_owned()),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let error = error.expect("a 4 MiB filesystem must fill up");
    eprintln!("after {} acknowledged enqueues: {error}", acked.len());
    assert!(
        matches!(error, Error::Storage(_) | Error::Io(_)),
        "unexpected error kind: {error:?}"
    );
    assert!(error.to_string().contains("disk space"), "{error}");
    assert!(!acked.is_empty());
    drop(q);
    drop(store);

    // Move the store to a roomy disk and check every acknowledged job.
    let roomy = tempfile::tempdir().unwrap();
    let copy = roomy.path().join("copy");
    copy_dir(&path, &copy);
    let store = Store::open(&copy).unwrap();
    for id in &acked {
        assert!(
            store.job(id).unwrap().is_some(),
            "acknowledged job {id} was lost"
        );
    }
}

#[test]
fn read_only_store_is_an_error_not_a_panic() {
    let Some(fs) = Tmpfs::new("16m") else { return };
    let path = fs.mount.join("jobs.dueq");
    {
        let store = Store::open(&path).unwrap();
        store
            .queue("default")
            .job("h", &1)
            .id("before")
            .enqueue()
            .unwrap();
    }
    fs.remount_read_only();
    match Store::open(&path) {
        Err(e) => {
            eprintln!("read-only open: {e}");
            assert!(matches!(e, Error::Storage(_) | Error::Io(_)), "{e:?}");
        }
        Ok(store) => {
            // sled may open read-only files; then writes must fail.
            let err = store.queue("default").enqueue("h", &2).unwrap_err();
            eprintln!("read-only enqueue: {err}");
            assert!(matches!(err, Error::Storage(_) | Error::Io(_)), "{err:?}");
            assert!(store.job("before").unwrap().is_some());
        }
    }
}
