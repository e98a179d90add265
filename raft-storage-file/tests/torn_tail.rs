//! Torn tails: the last writes are cut (or zeroed, as in a pre-allocated file) at every
//! byte offset; reopening must recover exactly the batches that were complete before the
//! cut, and the log must stay writable.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use raft_core::{ConfState, Entry, HardState, SnapshotMeta};
use raft_runtime::{LogStore, LogWrite, Snapshot, StagedSnapshot};
use raft_storage_file::{FileLogStore, Options};

/// The state a sequence of writes leads to.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    first: u64,
    entries: Vec<Entry>,
    hard_state: HardState,
    snapshot: Option<SnapshotMeta>,
}

fn expected(writes: &[LogWrite]) -> Expected {
    let mut e = Expected {
        first: 1,
        ..Expected::default()
    };
    for w in writes {
        if let Some(s) = &w.snapshot {
            e.entries.clear();
            e.first = s.meta.index + 1;
            e.snapshot = Some(s.meta.clone());
        }
        if let Some(f) = w.entries.first() {
            e.entries.truncate((f.index - e.first) as usize);
            e.entries.extend(w.entries.iter().cloned());
        }
        if let Some(hs) = w.hard_state {
            e.hard_state = hs;
        }
    }
    e
}

fn observed(store: &FileLogStore) -> Expected {
    Expected {
        first: store.first_index(),
        entries: all_entries(store),
        hard_state: store.initial_state().unwrap().hard_state,
        snapshot: store.snapshot_meta(),
    }
}

fn batch(b: u64) -> LogWrite {
    write(
        ents(1, 3 * b + 1, 3 * b + 3, 40),
        Some(HardState {
            term: 1,
            vote: Some(1),
            commit: 3 * b + 3,
        }),
    )
}

/// Every file of a closed log directory, by name.
fn snapshot_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "LOCK")
        .map(|p| {
            (
                p.file_name().unwrap().to_str().unwrap().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

fn restore(files: &BTreeMap<String, Vec<u8>>, dir: &Path) {
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn reopen_options() -> Options {
    Options {
        segment_size: 4096,
        ..Options::default()
    }
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    /// The file ends at the cut.
    Cut,
    /// The bytes from the cut to the end read as zero (pre-allocated space).
    Zero,
    /// The bytes from the cut to the end are junk.
    Junk,
}

fn damage(bytes: &[u8], at: usize, how: Damage) -> Vec<u8> {
    let mut v = bytes.to_vec();
    match how {
        Damage::Cut => v.truncate(at),
        Damage::Zero => v[at..].fill(0),
        Damage::Junk => {
            for (i, b) in v[at..].iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(151).wrapping_add(7);
            }
        }
    }
    v
}

/// Writes `writes`, recording where each ends; returns the files and the end offsets of
/// the writes in the final segment.
/// `w`, with its snapshot (if any) staged in `store` first.
fn staged(store: &FileLogStore, w: &LogWrite) -> LogWrite {
    let mut w = w.clone();
    if let Some(s) = &mut w.snapshot {
        let data = Bytes::from(format!("state machine at {}", s.meta.index));
        *s = stage(
            store,
            Snapshot {
                meta: s.meta.clone(),
                data,
            },
        );
    }
    w
}

fn build(
    writes: &[LogWrite],
    separate_open_for_last: bool,
) -> (BTreeMap<String, Vec<u8>>, PathBuf, Vec<u64>) {
    let dir = fast_tempdir();
    let options = Options {
        segment_size: 1 << 20,
        ..Options::default()
    };
    let split = if separate_open_for_last {
        writes.len() - 1
    } else {
        0
    };
    if split > 0 {
        let store = open(dir.path(), options.clone());
        for w in &writes[..split] {
            append_sync(&store, staged(&store, w)).unwrap();
        }
    }
    let store = open(dir.path(), options);
    let mut ends = Vec::new();
    let mut segment = None;
    for w in &writes[split..] {
        append_sync(&store, staged(&store, w)).unwrap();
        let pos = store.durable_position().unwrap();
        if segment.as_ref().is_some_and(|s| *s != pos.segment) {
            ends.clear();
        }
        segment = Some(pos.segment);
        ends.push(pos.offset);
    }
    drop(store);
    let name = segment
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    (snapshot_files(dir.path()), PathBuf::from(name), ends)
}

/// How many writes end at or before `at`.
fn complete(ends: &[u64], at: usize) -> usize {
    ends.iter().filter(|&&e| e as usize <= at).count()
}

fn check_cut(
    files: &BTreeMap<String, Vec<u8>>,
    segment: &Path,
    at: usize,
    how: Damage,
    want: &Expected,
    probe: bool,
) {
    let dir = fast_tempdir();
    let mut files = files.clone();
    let key = segment.to_str().unwrap().to_string();
    let damaged = damage(&files[&key], at, how);
    files.insert(key, damaged);
    restore(&files, dir.path());
    let store = FileLogStore::open(dir.path(), reopen_options())
        .unwrap_or_else(|e| panic!("reopen after {how:?} at {at} failed: {e}"));
    assert_eq!(&observed(&store), want, "after {how:?} at offset {at}");
    if probe {
        // The log stays writable after recovery, and what is written next survives.
        let next = store.last_index() + 1;
        append_sync(&store, write(ents(9, next, next, 10), None)).unwrap();
        drop(store);
        let store = open(dir.path(), reopen_options());
        assert_eq!(
            store.last_index(),
            next,
            "after {how:?} at {at}, then a new write"
        );
        assert_eq!(store.term(next).unwrap(), 9);
    }
}

#[test]
fn torn_final_batches_recover_exactly_the_complete_ones() {
    let mut writes: Vec<LogWrite> = (0..5).map(batch).collect();
    // A conflicting suffix: a torn truncation must leave the old entries 13..=15 intact.
    writes.push(write(
        ents(2, 13, 14, 40),
        Some(HardState {
            term: 2,
            vote: Some(2),
            commit: 12,
        }),
    ));
    // The last batch installs a snapshot: its file must not survive a torn commit.
    writes.push(LogWrite {
        // Staged in the store when `build` writes it.
        snapshot: Some(StagedSnapshot {
            meta: SnapshotMeta {
                index: 30,
                term: 2,
                conf_state: ConfState::with_voters([1, 2, 3]),
            },
            id: 0,
        }),
        entries: ents(2, 31, 32, 40),
        hard_state: Some(HardState {
            term: 2,
            vote: None,
            commit: 30,
        }),
    });
    let (files, segment, ends) = build(&writes, false);
    assert_eq!(ends.len(), writes.len());
    // Cut inside each of the last three batches, at every byte.
    let from = ends[writes.len() - 4] as usize;
    let to = *ends.last().unwrap() as usize;
    let original = &files[segment.to_str().unwrap()];
    for at in from..to {
        let want = expected(&writes[..complete(&ends, at)]);
        check_cut(&files, &segment, at, Damage::Cut, &want, at % 41 == 0);
        if at % 8 == 0 {
            check_cut(&files, &segment, at, Damage::Junk, &want, false);
        }
        // Zeroing bytes that are already zero (high bytes of a number, padding) changes
        // nothing: the damage really starts at the first non-zero byte.
        let effective = (at..original.len())
            .find(|&i| original[i] != 0)
            .unwrap_or(original.len());
        let want = expected(&writes[..complete(&ends, effective)]);
        check_cut(&files, &segment, at, Damage::Zero, &want, at % 43 == 0);
    }
    // Uncut, everything is there, including the snapshot.
    check_cut(&files, &segment, to, Damage::Cut, &expected(&writes), true);
}

#[test]
fn a_torn_first_write_of_a_segment_is_discarded() {
    // The last write is the first one in a new segment: header, checkpoint and batch go
    // out in one write; cut anywhere, the segment is dropped and the earlier ones stand.
    let writes: Vec<LogWrite> = (0..4).map(batch).collect();
    let (files, segment, ends) = build(&writes, true);
    assert_eq!(ends.len(), 1);
    let before = expected(&writes[..3]);
    let original = &files[segment.to_str().unwrap()];
    let last_non_zero = original.iter().rposition(|&b| b != 0).unwrap();
    for at in 0..ends[0] as usize {
        check_cut(&files, &segment, at, Damage::Cut, &before, at % 29 == 0);
        if at <= last_non_zero {
            check_cut(&files, &segment, at, Damage::Zero, &before, at % 31 == 0);
        }
    }
    check_cut(
        &files,
        &segment,
        ends[0] as usize,
        Damage::Cut,
        &expected(&writes),
        true,
    );
}
