//! Faults: a locked directory, a full disk (through the fault hook, and on a real small
//! tmpfs when mounting is allowed), short writes and a failing `fdatasync`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use raft_core::HardState;
use raft_runtime::LogStore;
use raft_storage_file::{DiskFull, Fault, FaultHook, FileLogStore, IoOp, Options, WalError};

#[test]
fn a_second_open_fails_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), Options::default());
    let err = FileLogStore::open(dir.path(), Options::default()).unwrap_err();
    let WalError::Locked { dir: locked, holder } = &err else {
        panic!("{err}")
    };
    assert_eq!(locked, dir.path());
    assert_eq!(*holder, Some(std::process::id()));
    assert!(
        err.to_string()
            .contains(&format!("process {}", std::process::id())),
        "{err}"
    );
    drop(first);
    open(dir.path(), Options::default());
}

/// A copy of a closed store's lock descriptor, as a child process being started holds
/// until its exec, delays the next open instead of failing it.
#[test]
fn an_open_waits_out_a_short_lived_copy_of_its_own_processs_lock() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), Options::default()));
    // Hold the lock the way the copy would: flock on the lock file, this pid in it.
    let mut copy = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.path().join("LOCK"))
        .unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(
        unsafe { libc::flock(copy.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    copy.set_len(0).unwrap();
    write!(copy, "{}", std::process::id()).unwrap();
    // Taken before the copy's release is scheduled, so that the open cannot have
    // succeeded in less than the copy's 300 ms, however the threads are scheduled.
    let started = std::time::Instant::now();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(copy);
    });
    let store = open(dir.path(), Options::default());
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    release.join().unwrap();
    drop(store);
}

const HOLDER_DIR: &str = "RAFT_WAL_LOCK_HOLDER";

/// Child body for the next test: holds the lock until its stdin closes.
#[test]
fn lock_holder_child() {
    let Ok(dir) = std::env::var(HOLDER_DIR) else {
        return;
    };
    let _store = FileLogStore::open(&dir, Options::default()).unwrap();
    println!("LOCKED");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

#[test]
fn a_lock_held_by_another_process_names_its_pid_and_dies_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["lock_holder_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(HOLDER_DIR, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // libtest may print "test lock_holder_child ... " on the same line first.
        let locked = BufReader::new(stdout)
            .lines()
            .any(|l| l.is_ok_and(|l| l.ends_with("LOCKED")));
        let _ = tx.send(locked);
    });
    let locked = rx.recv_timeout(std::time::Duration::from_secs(60));
    if locked != Ok(true) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the child did not take the lock");
    }
    let err = FileLogStore::open(dir.path(), Options::default()).unwrap_err();
    assert!(
        matches!(err, WalError::Locked { holder: Some(pid), .. } if pid == child.id()),
        "{err}"
    );
    // SIGKILL: the kernel drops the flock with the process.
    child.kill().unwrap();
    child.wait().unwrap();
    open(dir.path(), Options::default());
}

/// Appends one-entry batches until one fails; returns the last index that succeeded and
/// the error.
fn append_until_error(store: &FileLogStore, len: usize) -> (u64, WalError) {
    for i in 1..1_000_000u64 {
        let hs = HardState {
            term: 1,
            vote: None,
            commit: i,
        };
        if let Err(err) = append_sync(store, write(vec![ent(1, i, len)], Some(hs))) {
            return (i - 1, wal_error(&err).clone());
        }
    }
    panic!("the disk never filled up");
}

fn check_reopened(dir: &Path, last_ok: u64) {
    let store = open(dir, Options::default());
    assert_eq!(store.last_index(), last_ok);
    assert_eq!(
        all_entries(&store),
        (1..=last_ok).map(|i| ent(1, i, 1000)).collect::<Vec<_>>()
    );
    assert_eq!(store.initial_state().unwrap().hard_state.commit, last_ok);
    // With space again, the log takes new writes.
    append_sync(&store, write(vec![ent(1, last_ok + 1, 1000)], None)).unwrap();
}

#[test]
fn a_full_disk_fails_writes_with_a_typed_error_and_corrupts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(DiskFull::new(300 << 10));
    let store = open(
        dir.path(),
        Options {
            segment_size: 64 << 10,
            fault_hook: Some(disk.clone()),
            ..Options::default()
        },
    );
    let (last_ok, err) = append_until_error(&store, 1000);
    assert!(err.is_storage_full(), "{err}");
    assert!(last_ok > 10);
    // The store refuses everything after, with the same error.
    let later = append_sync(&store, write(vec![ent(1, last_ok + 1, 10)], None)).unwrap_err();
    assert!(wal_error(&later).is_storage_full());
    assert!(store.flush_blocking().is_err());
    assert_eq!(store.last_index(), last_ok);
    drop(store);
    check_reopened(dir.path(), last_ok);
}

/// Cuts the writer's writes short after `budget` bytes of segment data, like a disk that
/// fills up while the log itself is written.
struct ShortWrites {
    budget: AtomicU64,
}

impl FaultHook for ShortWrites {
    fn check(&self, op: &IoOp<'_>) -> Fault {
        match op {
            IoOp::Write { path, len, .. }
                if path.file_name().unwrap().to_str().unwrap().starts_with("wal-") =>
            {
                let left = self.budget.load(Ordering::SeqCst);
                if (*len as u64) <= left {
                    self.budget.fetch_sub(*len as u64, Ordering::SeqCst);
                    Fault::Proceed
                } else {
                    self.budget.store(0, Ordering::SeqCst);
                    Fault::ShortWrite {
                        written: left as usize,
                        error: std::io::Error::from_raw_os_error(libc::ENOSPC),
                    }
                }
            }
            _ => Fault::Proceed,
        }
    }
}

#[test]
fn a_short_write_leaves_a_tail_that_recovery_cuts_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(
        dir.path(),
        Options {
            fault_hook: Some(Arc::new(ShortWrites {
                budget: AtomicU64::new(50_000),
            })),
            ..Options::default()
        },
    );
    let (last_ok, err) = append_until_error(&store, 1000);
    assert!(err.is_storage_full(), "{err}");
    assert!(matches!(err, WalError::Io { op: "write", .. }), "{err}");
    drop(store);
    check_reopened(dir.path(), last_ok);
}

/// Fails the `n`-th `fdatasync` of a segment with EIO and counts every one attempted.
struct FailSync {
    fail_at: u64,
    syncs: AtomicU64,
}

impl FaultHook for FailSync {
    fn check(&self, op: &IoOp<'_>) -> Fault {
        if let IoOp::SyncData { path } = op
            && path.file_name().unwrap().to_str().unwrap().starts_with("wal-")
            && self.syncs.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at
        {
            return Fault::Fail(std::io::Error::from_raw_os_error(libc::EIO));
        }
        Fault::Proceed
    }
}

#[test]
fn a_failed_fsync_is_fatal_and_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Arc::new(FailSync {
        fail_at: 3,
        syncs: AtomicU64::new(0),
    });
    let store = open(
        dir.path(),
        Options {
            fault_hook: Some(hook.clone()),
            ..Options::default()
        },
    );
    append_sync(&store, write(ents(1, 1, 2, 1000), None)).unwrap();
    append_sync(&store, write(ents(1, 3, 4, 1000), None)).unwrap();
    let err = append_sync(&store, write(ents(1, 5, 6, 1000), None)).unwrap_err();
    let WalError::Io { op, source, .. } = wal_error(&err) else {
        panic!("{err}")
    };
    assert_eq!(*op, "fdatasync");
    assert_eq!(source.raw_os_error(), Some(libc::EIO));
    // Every later write fails with the same error, and no sync is attempted again.
    for i in 7..20 {
        let later = append_sync(&store, write(ents(1, i, i, 10), None)).unwrap_err();
        assert!(matches!(wal_error(&later), WalError::Io { op: "fdatasync", .. }));
    }
    assert!(store.flush_blocking().is_err());
    assert_eq!(hook.syncs.load(Ordering::SeqCst), 3);
    assert_eq!(store.metrics().fsyncs, 3);
    // Reads still serve what was durable.
    assert_eq!(store.last_index(), 4);
    let closed = store.close().unwrap_err();
    assert!(matches!(wal_error(&closed), WalError::Io { op: "fdatasync", .. }));
    // After a restart the log holds the two durable writes, and possibly the failed one
    // (its bytes reached the page cache; a Raft log may keep an unacknowledged write).
    let store = open(dir.path(), Options::default());
    let last = store.last_index();
    assert!(last == 4 || last == 6, "last index {last}");
    assert_eq!(all_entries(&store)[..4], ents(1, 1, 4, 1000)[..]);
}

/// Unmounts on drop.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_tmpfs_gives_an_error_not_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(dir.path())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => {
            println!(
                "skipping the tmpfs variant: mounting a tmpfs failed ({other:?}); the fault-hook tests cover a full disk"
            );
            return;
        }
    }
    let _mount = Mount(dir.path().to_path_buf());
    let options = Options {
        segment_size: 192 << 10,
        ..Options::default()
    };
    let store = open(dir.path(), options.clone());
    let (last_ok, err) = append_until_error(&store, 1000);
    assert!(err.is_storage_full(), "{err}");
    assert!(last_ok > 100);
    drop(store);
    // Reopening on the still full file system recovers exactly what was durable.
    let store = open(dir.path(), options);
    assert_eq!(store.last_index(), last_ok);
    assert_eq!(
        all_entries(&store),
        (1..=last_ok).map(|i| ent(1, i, 1000)).collect::<Vec<_>>()
    );
}

/// Fails the `fsync` of snapshot files.
struct FailSnapshotSync;

impl FaultHook for FailSnapshotSync {
    fn check(&self, op: &IoOp<'_>) -> Fault {
        match op {
            IoOp::SyncAll { path } if path.file_name().unwrap().to_str().unwrap().starts_with("snap-") => {
                Fault::Fail(std::io::Error::from_raw_os_error(libc::EIO))
            }
            _ => Fault::Proceed,
        }
    }
}

#[test]
fn a_failed_local_snapshot_fails_only_that_save() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(
        dir.path(),
        Options {
            fault_hook: Some(Arc::new(FailSnapshotSync)),
            ..Options::default()
        },
    );
    append_sync(&store, write(ents(1, 1, 5, 10), None)).unwrap();
    let snapshot = raft_runtime::Snapshot {
        meta: raft_core::SnapshotMeta {
            index: 3,
            term: 1,
            conf_state: raft_core::ConfState::with_voters([1]),
        },
        data: bytes::Bytes::from_static(b"state"),
    };
    let err = store.save_snapshot_blocking(snapshot).unwrap_err();
    assert!(
        matches!(wal_error(&err), WalError::Io { op: "fsync", .. }),
        "{err}"
    );
    assert_eq!(store.snapshot_meta(), None);
    // The log is unaffected and the half-written file is gone.
    assert!(store.failure().is_none());
    append_sync(&store, write(ents(1, 6, 6, 10), None)).unwrap();
    let leftovers = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .starts_with("snap-")
        })
        .count();
    assert_eq!(leftovers, 0);
}
