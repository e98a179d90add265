//! Hand-crafted records with valid checksums whose bodies lie: huge length claims, numbers
//! no log holds, terms that go backwards. Each must give a `Corrupt` error naming the file
//! and the record's offset, never a panic, and never an allocation beyond a small multiple
//! of the files' size.
//!
//! The records are framed here from the format described in the crate README, independently
//! of the crate's own encoder.

mod common;

use std::path::Path;

use common::*;
use raft_core::{ConfState, HardState, SnapshotMeta};
use raft_runtime::fuzzing::{CountingAlloc, measure};
use raft_runtime::{LogStore, Snapshot};
use raft_storage_file::{CorruptKind, FileLogStore, Options, WalError};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const CHECKPOINT: u8 = 1;
const ENTRY: u8 = 2;
const HARD_STATE: u8 = 3;
const SNAPSHOT_SAVED: u8 = 5;
const COMMIT: u8 = 6;

fn segment_name(seq: u64) -> String {
    format!("wal-{seq:016x}.log")
}

/// A segment header (README: "Segment header").
fn header(seq: u64, prev_seq: u64, prev_end: u64) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[0..8].copy_from_slice(b"RAFTWAL\0");
    h[8..12].copy_from_slice(&1u32.to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    h[24..32].copy_from_slice(&prev_seq.to_le_bytes());
    h[32..40].copy_from_slice(&prev_end.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..60]);
    h[60..64].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Appends a record of segment `seq` with a valid checksum and padding; returns its offset.
fn record(buf: &mut Vec<u8>, seq: u64, rtype: u8, body: &[u8]) -> u64 {
    let at = buf.len() as u64;
    let mut payload = vec![rtype];
    payload.extend_from_slice(body);
    let len = payload.len() as u32;
    let mut head = seq.to_le_bytes().to_vec();
    head.extend_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head), &payload);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.extend_from_slice(&payload);
    buf.resize(buf.len().next_multiple_of(8), 0);
    at
}

fn commit_body(group_start: u64, batch: u64) -> Vec<u8> {
    let mut b = group_start.to_le_bytes().to_vec();
    b.extend_from_slice(&batch.to_le_bytes());
    b
}

/// An entry body: term, index, size, kind, payload.
fn entry_body(term: u64, index: u64, kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = term.to_le_bytes().to_vec();
    b.extend_from_slice(&index.to_le_bytes());
    b.extend_from_slice(&(payload.len() as u64 + 32).to_le_bytes());
    b.push(kind);
    b.extend_from_slice(payload);
    b
}

/// bincode varint of a u64 (standard configuration).
fn varint(v: u64) -> Vec<u8> {
    match v {
        0..=250 => vec![v as u8],
        251..=0xffff => [&[251u8][..], &(v as u16).to_le_bytes()].concat(),
        0x1_0000..=0xffff_ffff => [&[252u8][..], &(v as u32).to_le_bytes()].concat(),
        _ => [&[253u8][..], &v.to_le_bytes()].concat(),
    }
}

/// A bincode `ConfState` with voter 1 and one `node_meta` value whose length is claimed to
/// be `claimed` while only three bytes follow.
fn conf_state_claiming(claimed: u64) -> Vec<u8> {
    let mut b = vec![1, 1]; // voters: {1}
    b.extend_from_slice(&[0, 0, 0]); // learners, voters_outgoing, learners_next
    b.push(0); // auto_leave
    b.extend_from_slice(&[1, 1]); // node_meta: one entry, key 1
    b.extend_from_slice(&varint(claimed));
    b.extend_from_slice(b"abc");
    b.push(0); // removed
    b
}

/// A bincode `SnapRef` whose metadata's configuration claims a huge byte string.
fn snap_ref_claiming(claimed: u64) -> Vec<u8> {
    let mut b = vec![1, 5, 1]; // generation 1, meta index 5, term 1
    b.extend_from_slice(&conf_state_claiming(claimed));
    b.extend_from_slice(&[3, 0]); // data_len, data_crc
    b
}

/// An empty checkpoint: default hard state, no snapshot.
const EMPTY_CHECKPOINT: [u8; 4] = [0, 0, 0, 0];

/// Opens `dir`, which must fail as corrupt; checks the allocation bound and returns the
/// path, offset and kind.
fn open_corrupt(dir: &Path) -> (String, u64, CorruptKind) {
    let size: u64 = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let (result, peak) = measure(|| FileLogStore::open(dir, Options::default()));
    let peak = peak.expect("the counting allocator is installed");
    let bound = 64 * size as usize + (4 << 20);
    assert!(
        peak <= bound,
        "open allocated {peak} bytes for {size} bytes of files"
    );
    match result {
        Err(WalError::Corrupt { path, offset, kind }) => {
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            (name, offset, kind)
        }
        Err(other) => panic!("expected a corruption error, got {other}"),
        Ok(_) => panic!("a hostile log opened"),
    }
}

/// Writes a one-segment log: header, empty checkpoint, then `records` (type and body), then
/// a commit record; returns the offsets of `records`.
fn one_segment(dir: &Path, records: &[(u8, Vec<u8>)]) -> Vec<u64> {
    let mut buf = header(1, 0, 0);
    record(&mut buf, 1, CHECKPOINT, &EMPTY_CHECKPOINT);
    let offsets = records
        .iter()
        .map(|(t, body)| record(&mut buf, 1, *t, body))
        .collect();
    record(&mut buf, 1, COMMIT, &commit_body(0, 1));
    std::fs::write(dir.join(segment_name(1)), buf).unwrap();
    offsets
}

#[test]
fn the_crafted_format_is_the_real_one() {
    let dir = fast_tempdir();
    let conf = {
        let mut b = vec![1, 1, 0, 0, 0, 0, 1, 1, 3];
        b.extend_from_slice(b"abc");
        b.push(0);
        b
    };
    one_segment(
        dir.path(),
        &[
            (ENTRY, entry_body(1, 1, 1, b"x")),
            (ENTRY, entry_body(1, 2, 2, &conf)),
            (HARD_STATE, vec![1, 1, 1, 1]),
        ],
    );
    let store = open(dir.path(), Options::default());
    assert_eq!(store.last_index(), 2);
    let entries = all_entries(&store);
    assert_eq!(entries.len(), 2);
    let expected = ConfState {
        node_meta: [(1, bytes::Bytes::from_static(b"abc"))].into(),
        ..ConfState::with_voters([1])
    };
    assert_eq!(
        entries[1].payload,
        raft_core::EntryPayload::Membership(Box::new(expected))
    );
    assert_eq!(store.initial_state().unwrap().hard_state.vote, Some(1));
}

#[test]
fn a_snapshot_reference_claiming_a_huge_byte_string_is_corrupt_not_a_panic() {
    for claimed in [u64::MAX, 1 << 40, 1 << 30, 64 << 20] {
        let dir = fast_tempdir();
        let at = one_segment(dir.path(), &[(SNAPSHOT_SAVED, snap_ref_claiming(claimed))]);
        let (name, offset, kind) = open_corrupt(dir.path());
        assert_eq!(
            (name.as_str(), offset, kind),
            (segment_name(1).as_str(), at[0], CorruptKind::Decode)
        );
    }
}

#[test]
fn a_checkpoint_claiming_a_huge_byte_string_is_corrupt() {
    let dir = fast_tempdir();
    let mut cp = vec![0, 0, 0, 1]; // hard state, Some(snapshot)
    cp.extend_from_slice(&snap_ref_claiming(u64::MAX));
    let mut buf = header(1, 0, 0);
    let at = record(&mut buf, 1, CHECKPOINT, &cp);
    record(&mut buf, 1, COMMIT, &commit_body(0, 1));
    std::fs::write(dir.path().join(segment_name(1)), buf).unwrap();
    assert_eq!(
        open_corrupt(dir.path()),
        (segment_name(1), at, CorruptKind::Decode)
    );
}

#[test]
fn a_membership_entry_that_does_not_decode_is_corrupt_at_open_not_at_read() {
    for claimed in [u64::MAX, 1 << 30, 4] {
        let dir = fast_tempdir();
        let at = one_segment(
            dir.path(),
            &[(ENTRY, entry_body(1, 1, 2, &conf_state_claiming(claimed)))],
        );
        assert_eq!(
            open_corrupt(dir.path()),
            (segment_name(1), at[0], CorruptKind::Decode)
        );
    }
    // An empty entry with a payload behind it.
    let dir = fast_tempdir();
    let at = one_segment(dir.path(), &[(ENTRY, entry_body(1, 1, 0, b"junk"))]);
    assert_eq!(
        open_corrupt(dir.path()),
        (segment_name(1), at[0], CorruptKind::Decode)
    );
}

#[test]
fn numbers_beyond_any_log_are_corrupt() {
    let out_of_range = |kind: CorruptKind| matches!(kind, CorruptKind::OutOfRange { .. });
    // Entry index and term.
    for (term, index) in [(1, u64::MAX), (u64::MAX, 1), (1, 1 << 63)] {
        let dir = fast_tempdir();
        let at = one_segment(dir.path(), &[(ENTRY, entry_body(term, index, 1, b"x"))]);
        let (_, offset, kind) = open_corrupt(dir.path());
        assert_eq!(offset, at[0]);
        assert!(out_of_range(kind), "{kind}");
    }
    // A hard state at term u64::MAX: varint 253 + 8 bytes, no vote, commit 0.
    let dir = fast_tempdir();
    let mut hs = varint(u64::MAX);
    hs.extend_from_slice(&[0, 0]);
    let at = one_segment(dir.path(), &[(HARD_STATE, hs)]);
    let (_, offset, kind) = open_corrupt(dir.path());
    assert_eq!(offset, at[0]);
    assert!(out_of_range(kind), "{kind}");
    // A first batch numbered u64::MAX (the next would overflow).
    let dir = fast_tempdir();
    let mut buf = header(1, 0, 0);
    record(&mut buf, 1, CHECKPOINT, &EMPTY_CHECKPOINT);
    let at = record(&mut buf, 1, COMMIT, &commit_body(0, u64::MAX));
    std::fs::write(dir.path().join(segment_name(1)), buf).unwrap();
    let (_, offset, kind) = open_corrupt(dir.path());
    assert_eq!(offset, at);
    assert!(out_of_range(kind), "{kind}");
    // A segment numbered u64::MAX (the next segment's number would overflow).
    let dir = fast_tempdir();
    let seq = u64::MAX;
    let mut buf = header(seq, 0, 0);
    record(&mut buf, seq, CHECKPOINT, &EMPTY_CHECKPOINT);
    record(&mut buf, seq, COMMIT, &commit_body(0, 1));
    std::fs::write(dir.path().join(segment_name(seq)), buf).unwrap();
    let (name, offset, kind) = open_corrupt(dir.path());
    assert_eq!((name, offset), (segment_name(seq), 0));
    assert!(out_of_range(kind), "{kind}");
}

/// A closed segment with nothing in it (not even the checkpoint every segment starts with)
/// is corrupt: accepted, it would let cleanup delete the older segment that holds the only
/// copy of the hard state, and a later open would forget the vote.
#[test]
fn a_closed_segment_without_a_checkpoint_is_corrupt() {
    let dir = fast_tempdir();
    let mut first = header(1, 0, 0);
    record(&mut first, 1, CHECKPOINT, &EMPTY_CHECKPOINT);
    record(&mut first, 1, HARD_STATE, &[3, 1, 1, 0]);
    record(&mut first, 1, COMMIT, &commit_body(0, 1));
    let empty = header(2, 1, first.len() as u64);
    let mut last = header(3, 2, 64);
    record(&mut last, 3, CHECKPOINT, &[3, 1, 1, 0, 0]);
    record(&mut last, 3, COMMIT, &commit_body(0, 2));
    std::fs::write(dir.path().join(segment_name(1)), first).unwrap();
    std::fs::write(dir.path().join(segment_name(2)), empty).unwrap();
    std::fs::write(dir.path().join(segment_name(3)), last).unwrap();
    assert_eq!(
        open_corrupt(dir.path()),
        (segment_name(2), 64, CorruptKind::MissingCheckpoint)
    );
}

/// A log at the last segment or batch number the format allows opens, refuses writes
/// (which would need a number beyond it) and still opens afterwards.
#[test]
fn a_log_at_the_end_of_its_numbers_opens_and_refuses_writes() {
    let max = i64::MAX as u64;
    for (seq, batch) in [(max, 1), (1, max)] {
        let dir = fast_tempdir();
        let mut buf = header(seq, 0, 0);
        record(&mut buf, seq, CHECKPOINT, &EMPTY_CHECKPOINT);
        record(&mut buf, seq, ENTRY, &entry_body(1, 1, 1, b"x"));
        record(&mut buf, seq, COMMIT, &commit_body(0, batch));
        std::fs::write(dir.path().join(segment_name(seq)), buf).unwrap();
        let store = open(dir.path(), Options::default());
        let err = append_sync(&store, write(ents(1, 2, 2, 5), None)).unwrap_err();
        let err = err.backend().downcast_ref::<WalError>().expect("a store error");
        assert!(matches!(err, WalError::Exhausted { .. }), "{err}");
        drop(store);
        let store = open(dir.path(), Options::default());
        assert_eq!(store.last_index(), 1);
    }
}

#[test]
fn a_snapshot_file_named_beyond_any_generation_is_removed_as_an_orphan() {
    let dir = fast_tempdir();
    one_segment(dir.path(), &[(ENTRY, entry_body(1, 1, 1, b"x"))]);
    let orphan = dir.path().join(format!("snap-{:016x}.snap", u64::MAX));
    std::fs::write(&orphan, b"whatever").unwrap();
    let store = open(dir.path(), Options::default());
    assert_eq!(store.last_index(), 1);
    assert!(!orphan.exists());
    // Snapshots saved afterwards get ordinary generations.
    let snap = Snapshot {
        meta: SnapshotMeta {
            index: 1,
            term: 1,
            conf_state: ConfState::with_voters([1]),
        },
        data: bytes::Bytes::from_static(b"s"),
    };
    store.save_snapshot_blocking(snap).unwrap();
    drop(store);
    let store = open(dir.path(), Options::default());
    assert_eq!(store.load_snapshot_blocking().unwrap().unwrap().data, "s");
}

#[test]
fn terms_going_backwards_are_corrupt_at_the_offending_entry() {
    let dir = fast_tempdir();
    let at = one_segment(
        dir.path(),
        &[
            (ENTRY, entry_body(2, 1, 1, b"a")),
            (ENTRY, entry_body(3, 2, 1, b"b")),
            (ENTRY, entry_body(2, 3, 1, b"c")),
        ],
    );
    let (name, offset, kind) = open_corrupt(dir.path());
    assert_eq!((name, offset), (segment_name(1), at[2]));
    assert_eq!(
        kind,
        CorruptKind::TermRegression {
            index: 3,
            term: 2,
            prev: 3
        }
    );
}

#[test]
fn writes_beyond_the_format_range_are_refused() {
    let dir = fast_tempdir();
    let store = open(dir.path(), Options::default());
    let hs = HardState {
        term: u64::MAX,
        vote: None,
        commit: 0,
    };
    let err = append_sync(&store, write(Vec::new(), Some(hs))).unwrap_err();
    let err = err.backend().downcast_ref::<WalError>().expect("a store error");
    assert!(
        matches!(
            err,
            WalError::InvalidWrite(raft_storage_file::InvalidWrite::OutOfRange { .. })
        ),
        "{err}"
    );
}

/// Options with the smallest segments, so that crafted files are full size.
fn tiny_segments() -> Options {
    Options {
        segment_size: 4096,
        ..Options::default()
    }
}

/// Pads a crafted segment to the full size of [`tiny_segments`].
fn full_size(mut buf: Vec<u8>) -> Vec<u8> {
    assert!(buf.len() <= 4096, "the crafted segment does not fit");
    buf.resize(4096, 0);
    buf
}

/// Appends, at the next 8-aligned offset, a checkpoint and a commit record framed for each
/// segment number in `seqs`: records a correct store never writes there, but that would
/// validate in a file reused under one of those numbers.
fn forge_commits(buf: &mut Vec<u8>, seqs: std::ops::RangeInclusive<u64>) {
    for seq in seqs {
        let group_start = record(buf, seq, CHECKPOINT, &EMPTY_CHECKPOINT);
        record(buf, seq, COMMIT, &commit_body(group_start, 1));
    }
}

/// Opens `dir`, waits until the janitor has prepared segment `prepared`, closes the store
/// and checks that the log reopens (twice, the second time after a write) with `last`
/// as its last index.
fn reopens_after_preparing(dir: &Path, prepared: u64, last: u64) {
    let store = open(dir, tiny_segments());
    let name = dir.join(segment_name(prepared));
    wait_for("the next segment to be prepared", || name.exists());
    drop(store);
    let store = FileLogStore::open(dir, tiny_segments())
        .unwrap_or_else(|e| panic!("a log that opened does not reopen: {e}"));
    assert_eq!(store.last_index(), last);
    append_sync(&store, write(ents(1, last + 1, last + 1, 8), None)).unwrap();
    drop(store);
    let store = FileLogStore::open(dir, tiny_segments())
        .unwrap_or_else(|e| panic!("a log does not reopen after a write: {e}"));
    assert_eq!(store.last_index(), last + 1);
}

/// A newest segment with a valid header and nothing committed is dropped at open; if its
/// tail holds records framed for the next segment number, it must not become that segment.
#[test]
fn a_dropped_segment_is_not_reused_when_it_holds_records_of_its_next_number() {
    let dir = fast_tempdir();
    let mut buf = header(1, 0, 0);
    forge_commits(&mut buf, 2..=2);
    std::fs::write(dir.path().join(segment_name(1)), full_size(buf)).unwrap();
    reopens_after_preparing(dir.path(), 2, 0);
}

/// A newest segment with a zero header is dropped at open once it is proven to hold no
/// commit record of its own; records framed for later numbers must not come back to life
/// when it is reused.
#[test]
fn a_zero_headed_segment_is_not_reused_when_it_holds_records_of_later_numbers() {
    let dir = fast_tempdir();
    one_segment(dir.path(), &[(ENTRY, entry_body(1, 1, 1, b"x"))]);
    let mut buf = vec![0u8; 64];
    forge_commits(&mut buf, 3..=3);
    std::fs::write(dir.path().join(segment_name(2)), full_size(buf)).unwrap();
    reopens_after_preparing(dir.path(), 3, 1);
}

/// A closed segment found at open holds records framed for later numbers past its end,
/// where recovery never reads; once compaction frees it, it must not be reused under one of
/// those numbers.
#[test]
fn a_compacted_segment_found_at_open_is_not_reused_under_a_later_number() {
    let dir = fast_tempdir();
    let mut first = header(1, 0, 0);
    record(&mut first, 1, CHECKPOINT, &EMPTY_CHECKPOINT);
    record(&mut first, 1, ENTRY, &entry_body(1, 1, 1, b"x"));
    record(&mut first, 1, COMMIT, &commit_body(64, 1));
    let end = first.len() as u64;
    forge_commits(&mut first, 3..=12);
    std::fs::write(dir.path().join(segment_name(1)), full_size(first)).unwrap();
    let mut second = header(2, 1, end);
    record(&mut second, 2, CHECKPOINT, &EMPTY_CHECKPOINT);
    record(&mut second, 2, ENTRY, &entry_body(1, 2, 1, b"y"));
    record(&mut second, 2, COMMIT, &commit_body(64, 2));
    std::fs::write(dir.path().join(segment_name(2)), second).unwrap();

    let store = open(dir.path(), tiny_segments());
    assert_eq!(store.last_index(), 2);
    let snap = Snapshot {
        meta: SnapshotMeta {
            index: 1,
            term: 1,
            conf_state: ConfState::with_voters([1]),
        },
        data: bytes::Bytes::from_static(b"state"),
    };
    store.save_snapshot_blocking(snap).unwrap();
    store.compact(1).unwrap();
    let first = dir.path().join(segment_name(1));
    wait_for("the compacted segment to be removed", || !first.exists());
    // The newest segment on disk now is prepared ahead of the writer. Write until the
    // writer starts it; the janitor then prepares the next one, where the file freed above
    // would be reused. Nothing more is written, so that it stays as prepared.
    let newest = segment_files(dir.path()).last().cloned().unwrap();
    let started = || std::fs::read(&newest).unwrap().starts_with(b"RAFTWAL");
    let mut next = 3;
    while !started() {
        append_sync(&store, write(ents(1, next, next, 200), None)).unwrap();
        next += 1;
        assert!(next < 100, "the writer never started {}", newest.display());
    }
    let name = newest.file_name().unwrap().to_str().unwrap();
    let reuse = segment_name(u64::from_str_radix(&name[4..20], 16).unwrap() + 1);
    wait_for("the next segment to be prepared", || {
        dir.path().join(&reuse).exists()
    });
    drop(store);
    let store = FileLogStore::open(dir.path(), tiny_segments())
        .unwrap_or_else(|e| panic!("a log that opened does not reopen: {e}"));
    assert_eq!((store.first_index(), store.last_index()), (2, next - 1));
}
