//! Many Raft groups on one log ([`FileWal`]): one `fdatasync` for the writes of every
//! group queued together; recovery splits the log again by group, and a torn tail loses
//! the same prefix of every group's writes; a segment stays while any group needs it;
//! removing a group; the misuses refused with a typed error.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use common::*;
use raft_core::{ConfState, Entry, HardState, SnapshotMeta};
use raft_runtime::{LogStore, LogWrite, Snapshot};
use raft_storage_file::{Fault, FaultHook, FileLogStore, FileWal, InvalidWrite, IoOp, Options, WalError};

fn hard_state(term: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote: Some(term % 3 + 1),
        commit,
    }
}

/// Holds every `fdatasync` of a segment while closed, and says when one is waiting.
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, u64)>,
    cv: Condvar,
}

impl Gate {
    fn close(&self) {
        self.state.lock().unwrap().0 = true;
    }

    fn open(&self) {
        self.state.lock().unwrap().0 = false;
        self.cv.notify_all();
    }

    /// Waits until a sync is held at the gate.
    fn wait_for_held(&self) {
        let guard = self.state.lock().unwrap();
        let (_guard, timeout) = self
            .cv
            .wait_timeout_while(guard, std::time::Duration::from_secs(60), |s| s.1 == 0)
            .unwrap();
        assert!(!timeout.timed_out(), "no sync reached the gate");
    }
}

impl FaultHook for Gate {
    fn check(&self, op: &IoOp<'_>) -> Fault {
        if let IoOp::SyncData { path } = op
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("wal-"))
        {
            let mut state = self.state.lock().unwrap();
            if state.0 {
                state.1 += 1;
                self.cv.notify_all();
                while state.0 {
                    state = self.cv.wait(state).unwrap();
                }
                state.1 -= 1;
            }
        }
        Fault::Proceed
    }
}

/// The writes of a hundred groups queued while the log syncs are made durable by one
/// `fdatasync`, and every group reads its own back, after a reopen too.
#[test]
fn one_sync_covers_the_writes_of_every_group_queued_together() {
    let dir = fast_tempdir();
    let gate = Arc::new(Gate::default());
    let options = Options {
        fault_hook: Some(gate.clone()),
        ..Options::default()
    };
    let wal = FileWal::open(dir.path(), options).unwrap();
    let groups: Vec<_> = (1..=100u64).map(|g| wal.group(g * 7).unwrap()).collect();
    let write_of = |g: u64| write(vec![ent(g, 1, 20 + g as usize)], Some(hard_state(g, 1)));
    append_sync(&groups[0], write_of(7)).unwrap();

    gate.close();
    let (tx, rx) = std::sync::mpsc::channel();
    let done = |tx: std::sync::mpsc::Sender<_>| Box::new(move |r| tx.send(r).unwrap());
    let before = wal.metrics();
    groups[1].append(write_of(14), done(tx.clone()));
    gate.wait_for_held();
    for (i, group) in groups.iter().enumerate().skip(2) {
        group.append(write_of(7 * (i as u64 + 1)), done(tx.clone()));
    }
    gate.open();
    for _ in 1..groups.len() {
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .unwrap()
            .unwrap();
    }
    let after = wal.metrics();
    assert_eq!(after.writes - before.writes, 99);
    assert_eq!(
        after.fsyncs - before.fsyncs,
        2,
        "the write held at the sync, then the 98 queued behind it together"
    );

    drop(groups);
    drop(wal);
    let wal = FileWal::open(dir.path(), Options::default()).unwrap();
    assert_eq!(wal.groups(), (1..=100u64).map(|g| g * 7).collect::<Vec<_>>());
    for g in (1..=100u64).map(|g| g * 7) {
        let log = wal.group(g).unwrap();
        assert_eq!(all_entries(&log), write_of(g).entries, "group {g}");
        assert_eq!(log.initial_state().unwrap().hard_state, hard_state(g, 1));
    }
}

/// What a sequence of (group, write) leaves in each group: entries from the first index,
/// and the hard state.
type State = BTreeMap<u64, (Vec<Entry>, HardState)>;

fn state_after(writes: &[(u64, LogWrite)]) -> State {
    let mut state = State::new();
    for (g, w) in writes {
        let (entries, hs) = state.entry(*g).or_default();
        if let Some(first) = w.entries.first() {
            entries.truncate(first.index as usize - 1);
            entries.extend(w.entries.iter().cloned());
        }
        if let Some(h) = w.hard_state {
            *hs = h;
        }
    }
    state
}

fn observed(wal: &FileWal, groups: &[u64]) -> State {
    let mut state = State::new();
    for &g in groups {
        let log = wal.group(g).unwrap();
        let entries = all_entries(&log);
        let hs = log.initial_state().unwrap().hard_state;
        if !entries.is_empty() || hs != HardState::default() {
            state.insert(g, (entries, hs));
        }
    }
    state
}

/// The last group commits of three groups are cut at every 8-byte boundary (and zeroed
/// from there, as in a pre-allocated file): every reopen finds the writes of one prefix
/// of the sequence, the same for all groups, and never less than the group commits that
/// ended before the cut.
#[test]
fn a_torn_tail_loses_the_same_prefix_of_every_groups_writes() {
    const GROUPS: [u64; 3] = [0, 3, 1 << 50];
    let dir = fast_tempdir();
    let options = Options {
        segment_size: 1 << 20,
        ..Options::default()
    };
    let wal = FileWal::open(dir.path(), options).unwrap();
    let logs: Vec<_> = GROUPS.iter().map(|&g| wal.group(g).unwrap()).collect();
    let mut writes: Vec<(u64, LogWrite)> = Vec::new();
    // (writes so far, durable end) after each group commit.
    let mut ends = Vec::new();
    let mut next = [1u64; 3];
    for round in 0..6u64 {
        for (i, log) in logs.iter().enumerate() {
            // Every third round, group i rewrites its last entry in a new term.
            let from = if round % 3 == 2 && next[i] > 1 {
                next[i] - 1
            } else {
                next[i]
            };
            let entries = ents(round + 1, from, from + i as u64, 10 + 7 * i);
            next[i] = from + i as u64 + 1;
            let w = write(entries, Some(hard_state(round + 1, from)));
            writes.push((GROUPS[i], w.clone()));
            log.append(w, Box::new(|r| r.unwrap()));
        }
        wal.flush_blocking().unwrap();
        ends.push((writes.len(), wal.durable_position().unwrap()));
    }
    let segment = ends[0].1.segment.clone();
    assert!(ends.iter().all(|(_, p)| p.segment == segment), "one segment");
    drop(logs);
    drop(wal);
    let bytes = std::fs::read(&segment).unwrap();
    let name = segment.file_name().unwrap().to_owned();
    let prefixes: Vec<State> = (0..=writes.len()).map(|k| state_after(&writes[..k])).collect();

    let first_end = ends[0].1.offset as usize;
    for at in (first_end..=bytes.len()).step_by(8) {
        for zero in [false, true] {
            let cut = fast_tempdir();
            let mut damaged = bytes.clone();
            if zero {
                damaged[at..].fill(0);
            } else {
                damaged.truncate(at);
            }
            std::fs::write(cut.path().join(&name), &damaged).unwrap();
            let small = Options {
                segment_size: 4096,
                ..Options::default()
            };
            let wal = FileWal::open(cut.path(), small)
                .unwrap_or_else(|e| panic!("reopen after a cut at {at}: {e}"));
            let seen = observed(&wal, &GROUPS);
            let durable = ends
                .iter()
                .filter(|(_, p)| p.offset as usize <= at)
                .map(|(n, _)| *n)
                .max();
            let k = prefixes
                .iter()
                .position(|p| *p == seen)
                .unwrap_or_else(|| panic!("cut at {at}: {seen:?} is no prefix of the writes"));
            assert!(
                k >= durable.unwrap_or(0),
                "cut at {at}: a durable group commit was lost"
            );
            // The log takes writes again after the cut.
            let log = wal.group(3).unwrap();
            let last = log.last_index();
            append_sync(&log, write(ents(9, last + 1, last + 1, 5), None)).unwrap();
        }
    }
}

fn save(log: &impl LogStore, index: u64, term: u64) {
    let snapshot = Snapshot {
        meta: SnapshotMeta {
            index,
            term,
            conf_state: ConfState::with_voters([1]),
        },
        data: Bytes::from(format!("state at {index}")),
    };
    runtime().block_on(save_streamed(log, snapshot)).unwrap();
}

/// Segments go oldest first, once no group needs an entry in them. A quiet group's one
/// entry does not hold the log back while a busy group fills and compacts many segments:
/// the writer carries it forward into newer segments. A group with a live log too large
/// to carry holds the segments from its first entry on until it compacts. After a reopen
/// each group has its own log.
#[test]
fn a_quiet_group_does_not_hold_the_log_back() {
    let dir = fast_tempdir();
    let options = Options {
        segment_size: 8 << 10,
        recycle_segments: false,
        ..Options::default()
    };
    let wal = FileWal::open(dir.path(), options.clone()).unwrap();
    let (quiet, busy, large) = (
        wal.group(1).unwrap(),
        wal.group(2).unwrap(),
        wal.group(3).unwrap(),
    );
    append_sync(&quiet, write(ents(1, 1, 2, 100), Some(hard_state(1, 1)))).unwrap();
    let oldest = segment_files(dir.path())[0].clone();
    for i in 0..40u64 {
        append_sync(&busy, write(ents(1, 10 * i + 1, 10 * i + 10, 100), None)).unwrap();
    }
    save(&busy, 400, 1);
    busy.compact(400).unwrap();
    // Every segment goes but the newest three, which the quiet group's entries may be in
    // (the janitor removes them in the background).
    wait_for("the old segments removed", || {
        segment_files(dir.path()).len() <= 3
    });
    assert!(!oldest.exists());
    assert_eq!(all_entries(&quiet), ents(1, 1, 2, 100));

    // 600 bytes a segment would not be carried (more than a sixteenth of 8 KiB).
    append_sync(&large, write(ents(1, 1, 1, 600), None)).unwrap();
    let held = wal.durable_position().unwrap().segment;
    for i in 40..80u64 {
        append_sync(&busy, write(ents(1, 10 * i + 1, 10 * i + 10, 100), None)).unwrap();
    }
    save(&busy, 800, 1);
    busy.compact(800).unwrap();
    wait_for("the segments before the large group's removed", || {
        segment_files(dir.path())[0] == held
    });
    assert!(
        segment_files(dir.path()).len() > 4,
        "the large group holds the log"
    );
    save(&large, 1, 1);
    large.compact(1).unwrap();
    // The quiet group's entries were carried on while the large group held the log.
    wait_for("the old segments removed", || {
        segment_files(dir.path()).len() <= 3
    });

    drop((quiet, busy, large));
    drop(wal);
    let wal = FileWal::open(dir.path(), options).unwrap();
    let (quiet, busy) = (wal.group(1).unwrap(), wal.group(2).unwrap());
    assert_eq!(all_entries(&quiet), ents(1, 1, 2, 100));
    assert_eq!(quiet.initial_state().unwrap().hard_state, hard_state(1, 1));
    assert_eq!((busy.first_index(), busy.last_index()), (801, 800));
    assert_eq!(busy.snapshot_meta().map(|m| m.index), Some(800));
    assert_eq!(wal.group(3).unwrap().first_index(), 2);
}

fn snapshot_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .starts_with("snap-")
        })
        .count()
}

/// Removing a group: refused while its log is open; then its state and snapshot go,
/// durably, and the other groups keep theirs; the id can start afresh.
#[test]
fn a_removed_group_is_gone_after_a_reopen() {
    let dir = fast_tempdir();
    let wal = FileWal::open(dir.path(), Options::default()).unwrap();
    let (a, b) = (wal.group(1).unwrap(), wal.group(2).unwrap());
    for log in [&a, &b] {
        append_sync(log, write(ents(1, 1, 3, 30), Some(hard_state(1, 3)))).unwrap();
        save(log, 2, 1);
    }
    assert_eq!(snapshot_files(dir.path()), 2);
    let err = wal.remove_group_blocking(1).unwrap_err();
    assert!(
        matches!(
            err.backend().downcast_ref::<WalError>(),
            Some(WalError::GroupInUse { group: 1 })
        ),
        "{err}"
    );
    drop(a);
    wal.remove_group_blocking(1).unwrap();
    assert_eq!(wal.groups(), vec![2]);
    wait_for("the removed group's snapshot deleted", || {
        snapshot_files(dir.path()) == 1
    });
    // Removing it again, or a group never written, does nothing.
    wal.remove_group_blocking(1).unwrap();
    wal.remove_group_blocking(99).unwrap();
    let a = wal.group(1).unwrap();
    assert_eq!((a.first_index(), a.last_index()), (1, 0));
    assert_eq!(a.snapshot_meta(), None);
    drop((a, b));
    drop(wal);

    let wal = FileWal::open(dir.path(), Options::default()).unwrap();
    assert_eq!(wal.groups(), vec![2]);
    let a = wal.group(1).unwrap();
    assert_eq!(a.initial_state().unwrap().hard_state, HardState::default());
    append_sync(&a, write(ents(5, 1, 1, 10), Some(hard_state(5, 0)))).unwrap();
    let b = wal.group(2).unwrap();
    assert_eq!(all_entries(&b), ents(1, 3, 3, 30));
    assert_eq!(b.snapshot_meta().map(|m| m.index), Some(2));
    drop((a, b));
    drop(wal);
    let wal = FileWal::open(dir.path(), Options::default()).unwrap();
    assert_eq!(wal.groups(), vec![1, 2]);
    assert_eq!(all_entries(&wal.group(1).unwrap()), ents(5, 1, 1, 10));
}

/// Misuse gets a typed error: a second handle on an open group; a single-group store on a
/// shared log; a snapshot staged by one group named in another group's write (which
/// fails the log, as every invalid write does).
#[test]
fn misuse_is_refused_with_a_typed_error() {
    let dir = fast_tempdir();
    let wal = FileWal::open(dir.path(), Options::default()).unwrap();
    let one = wal.group(1).unwrap();
    assert!(matches!(wal.group(1), Err(WalError::GroupInUse { group: 1 })));
    append_sync(&one, write(ents(1, 1, 1, 10), None)).unwrap();
    drop(one);
    drop(wal);
    match FileLogStore::open(dir.path(), Options::default()) {
        Err(WalError::SharedLog { groups, .. }) => assert_eq!(groups, vec![1]),
        other => panic!("a shared log opened as a single group's: {other:?}"),
    }

    let wal = FileWal::open(dir.path(), Options::default()).unwrap();
    let (one, two) = (wal.group(1).unwrap(), wal.group(2).unwrap());
    let staged = stage(
        &one,
        Snapshot {
            meta: snap_meta(5),
            data: Bytes::from_static(b"one's state"),
        },
    );
    let stolen = LogWrite {
        snapshot: Some(staged),
        ..LogWrite::default()
    };
    let err = append_sync(&two, stolen).unwrap_err();
    assert!(
        matches!(
            wal_error(&err),
            WalError::InvalidWrite(InvalidWrite::NotStaged { index: 5, .. })
        ),
        "{err}"
    );
    assert!(wal.failure().is_some());
}
