//! A child process appends under load and is killed with SIGKILL mid-stream; after
//! reopening, every batch whose append it reported durable must be present and intact.
//!
//! The test re-executes its own binary with `RAFT_WAL_CRASH_CHILD` set: the child runs
//! [`crash_child`], which appends with many writes in flight and prints `DURABLE <index>`
//! from each completion. The parent kills it after a fixed number of lines (so the verdict
//! never depends on timing), reopens the log and checks it, five times over.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::*;
use raft_core::HardState;
use raft_runtime::LogStore;
use raft_storage_file::{FileLogStore, Options};

const CHILD_DIR: &str = "RAFT_WAL_CRASH_CHILD";
const CHILD_TERM: &str = "RAFT_WAL_CRASH_TERM";
/// Writes in flight in the child.
const WINDOW: usize = 48;

fn entry_len(index: u64) -> usize {
    1 + (index as usize * 37) % 900
}

fn child_options() -> Options {
    Options {
        segment_size: 256 << 10,
        cache_bytes: 64 << 10,
        ..Options::default()
    }
}

/// The child's body; a no-op unless the parent started this binary as the child.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let term: u64 = std::env::var(CHILD_TERM).unwrap().parse().unwrap();
    let store = Arc::new(FileLogStore::open(&dir, child_options()).unwrap());
    let (tx, rx) = mpsc::channel::<u64>();
    std::thread::spawn(move || {
        let mut out = std::io::stdout().lock();
        for last in rx {
            writeln!(out, "DURABLE {last}").unwrap();
            out.flush().unwrap();
        }
    });
    let inflight = Arc::new((Mutex::new(0usize), Condvar::new()));
    let mut next = store.last_index() + 1;
    // A bound in case the parent dies without killing us.
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        {
            let (count, cv) = &*inflight;
            let mut n = count.lock().unwrap();
            while *n >= WINDOW {
                n = cv.wait(n).unwrap();
            }
            *n += 1;
        }
        let last = next + next % 4;
        let entries: Vec<_> = (next..=last).map(|i| ent(term, i, entry_len(i))).collect();
        let hs = HardState {
            term,
            vote: Some(1),
            commit: last,
        };
        let (tx, inflight) = (tx.clone(), inflight.clone());
        store.append(
            write(entries, Some(hs)),
            Box::new(move |r| {
                r.expect("durable");
                let _ = tx.send(last);
                let (count, cv) = &*inflight;
                *count.lock().unwrap() -= 1;
                cv.notify_one();
            }),
        );
        next = last + 1;
    }
    std::process::exit(0);
}

/// Kills and reaps the child if the test fails half-way.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs one child until it has reported `lines` durable batches, then SIGKILLs it.
/// Returns the highest index it reported durable.
fn run_child(dir: &Path, term: u64, lines: usize) -> u64 {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_TERM, term.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let stdout = guard.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest may print "test crash_child ... " on the same line first.
            if let Some((_, n)) = line.split_once("DURABLE ") {
                if tx.send(n.parse::<u64>().unwrap()).is_err() {
                    break;
                }
            }
        }
    });
    let mut max = 0;
    for _ in 0..lines {
        let n = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the child stopped reporting durable batches");
        max = max.max(n);
    }
    // SIGKILL, mid-stream: the child has up to WINDOW writes queued or being written.
    guard.0.kill().unwrap();
    let status = guard.0.wait().unwrap();
    assert!(!status.success(), "the child was killed");
    // Lines printed before the kill landed may still be in the pipe.
    while let Ok(n) = rx.recv_timeout(Duration::from_millis(200)) {
        max = max.max(n);
    }
    max
}

#[test]
fn sigkill_during_appends_loses_no_durable_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut previous_last = 0;
    for round in 1..=5u64 {
        let durable = run_child(dir.path(), round, 400 * round as usize);
        let store = FileLogStore::open(dir.path(), child_options()).unwrap();
        let last = store.last_index();
        assert!(
            last >= durable,
            "round {round}: reported {durable} durable, recovered up to {last}"
        );
        assert!(last > previous_last);
        println!("round {round}: child reported up to {durable} durable; recovered up to {last}");
        // Every entry is intact, and the hard state is the one written with the last batch.
        for e in all_entries(&store) {
            assert_eq!(
                e.payload,
                ent(e.term, e.index, entry_len(e.index)).payload,
                "entry {}",
                e.index
            );
            assert!(e.term <= round);
        }
        assert_eq!(store.first_index(), 1);
        assert_eq!(store.initial_state().unwrap().hard_state.commit, last);
        previous_last = last;
    }
}

/// A longer run: `cargo test -p raft-storage-file --test crash -- --ignored`.
#[test]
#[ignore = "soak test, about a minute"]
fn sigkill_soak() {
    let dir = tempfile::tempdir().unwrap();
    for round in 1..=40u64 {
        let durable = run_child(dir.path(), round, 300 + (round as usize * 7919) % 3000);
        let store = FileLogStore::open(dir.path(), child_options()).unwrap();
        let last = store.last_index();
        assert!(
            last >= durable,
            "round {round}: reported {durable} durable, recovered up to {last}"
        );
        for e in all_entries(&store) {
            assert_eq!(
                e.payload,
                ent(e.term, e.index, entry_len(e.index)).payload,
                "entry {}",
                e.index
            );
        }
        assert_eq!(store.initial_state().unwrap().hard_state.commit, last);
    }
}
