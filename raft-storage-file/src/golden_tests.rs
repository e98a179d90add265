//! Golden bytes of the on-disk format ([`FORMAT_VERSION`]): a segment holding every record
//! type and entry kind, and a snapshot file, encoded and compared with
//! `tests/golden/wal-v<N>.hex`; then decoded record by record, and recovered as a real log
//! directory by [`FileWal::open`] (and the directories of older versions, which hold group
//! 0 alone, by [`FileLogStore::open`]).
//!
//! There is no hard-state file: the hard state lives in the segments, in checkpoint and
//! hard-state records, both pinned here.
//!
//! Regenerate (only for a new version):
//! `UPDATE_GOLDEN=1 cargo test -p raft-storage-file --lib golden`.

use std::path::Path;

use bytes::Bytes;
use raft_core::{ConfState, Entry, HardState, SnapshotMeta};
use raft_runtime::golden::{Golden, Section, samples};
use raft_runtime::{LogStore, Snapshot};

use crate::format::{
    Checkpoint, FORMAT_VERSION, HEADER_LEN, RECORD_HEADER, SegmentHeader, SnapRef, decode_checkpoint,
    decode_commit, decode_entry, decode_group, decode_hard_state, decode_snap_ref, encode_checkpoint,
    encode_commit, encode_entry, encode_group, encode_group_removed, encode_hard_state, encode_snap_ref,
    frame, parse_record, rtype, segment_name, snapshot_name,
};
use crate::options::Options;
use crate::snapshot::file_bytes;
use crate::store::{FileLogStore, FileWal};

fn golden() -> Golden {
    Golden {
        format: "the log directory (segments and snapshot files)",
        constant: "FORMAT_VERSION in raft-storage-file/src/format.rs",
        version: FORMAT_VERSION,
        dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden"),
        stem: "wal",
        regenerate: "UPDATE_GOLDEN=1 cargo test -p raft-storage-file --lib golden",
    }
}

const SEQ: u64 = 7;
const HEADER: SegmentHeader = SegmentHeader {
    seq: SEQ,
    prev_seq: 6,
    prev_end: 12_345,
};

/// One record of the golden segment.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Record {
    Checkpoint(Checkpoint),
    Install(SnapRef),
    Entry(Entry),
    HardState(HardState),
    Saved(SnapRef),
    /// A commit record; its group start is filled in while encoding.
    Commit {
        batch: u64,
    },
    /// The Raft group of the records after it (version 3).
    Group(u64),
    /// The current Raft group is removed (version 3).
    Removed,
}

/// The records of versions 1 and 2, which held group 0 alone: those of the first three
/// batches.
fn of_group_zero(records: &[Record]) -> Vec<Record> {
    let end = records
        .iter()
        .position(|r| *r == Record::Commit { batch: 43 })
        .expect("batch 43");
    records[..=end].to_vec()
}

/// The snapshot the log ends with, whose file is part of the golden bytes.
fn stored_snapshot() -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            index: 69_999,
            term: 298,
            conf_state: ConfState::with_voters([1, 2, 5]).and_learners([4]),
        },
        data: Bytes::from_static(b"the state machine at 69999"),
    }
}

const SNAPSHOT_GENERATION: u64 = 3;

/// The log: a checkpoint naming an older snapshot, a snapshot installed from a leader,
/// entries of every kind and a hard state, then a snapshot taken locally; three batches
/// of group 0. Then an entry and a hard state of group 9, a batch of groups 12 and 0, and
/// the removal of group 12.
fn records() -> Vec<Record> {
    let snap_ref = |generation, meta| SnapRef {
        generation,
        meta,
        data_len: 1_000 + generation,
        data_crc: 0x1234_5600 + generation as u32,
    };
    let (_, saved) = file_bytes(SNAPSHOT_GENERATION, &stored_snapshot());
    let mut records = vec![
        Record::Checkpoint(Checkpoint {
            hard_state: HardState {
                term: 297,
                vote: None,
                commit: 5,
            },
            snapshot: Some(snap_ref(1, samples::snapshot_meta(69_990, 297))),
        }),
        Record::Install(snap_ref(2, samples::snapshot_meta(69_999, 298))),
        Record::Commit { batch: 41 },
    ];
    records.extend(samples::entries(70_000, 299).into_iter().map(Record::Entry));
    records.extend([
        Record::HardState(samples::hard_state()),
        Record::Commit { batch: 42 },
        Record::Saved(saved),
        Record::Commit { batch: 43 },
        Record::Group(9),
        Record::Entry(samples::entries(1, 4)[0].clone()),
        Record::HardState(HardState {
            term: 4,
            vote: Some(2),
            commit: 1,
        }),
        Record::Commit { batch: 44 },
        Record::Group(12),
        Record::Entry(samples::entries(1, 6)[0].clone()),
        Record::Group(0),
        Record::Commit { batch: 45 },
        Record::Group(12),
        Record::Removed,
        Record::Commit { batch: 46 },
    ]);
    records
}

fn name(record: &Record) -> String {
    match record {
        Record::Checkpoint(_) => "record: checkpoint".into(),
        Record::Install(_) => "record: snapshot installed".into(),
        Record::Entry(e) => format!("record: entry {} ({})", e.index, kind(e)),
        Record::HardState(_) => "record: hard state".into(),
        Record::Saved(_) => "record: snapshot saved".into(),
        Record::Commit { batch } => format!("record: commit of batch {batch}"),
        Record::Group(g) => format!("record: group {g}"),
        Record::Removed => "record: group removed".into(),
    }
}

fn kind(entry: &Entry) -> &'static str {
    match &entry.payload {
        raft_core::EntryPayload::Empty => "empty",
        raft_core::EntryPayload::Normal(_) => "normal",
        raft_core::EntryPayload::Membership(cs) if cs.is_joint() => "joint configuration",
        raft_core::EntryPayload::Membership(_) => "configuration",
        raft_core::EntryPayload::Internal(_) => "internal",
    }
}

/// The golden sections: the segment header, each record as framed on disk (padding
/// included), and the snapshot file.
fn encoded() -> Vec<Section> {
    let mut sections = vec![("segment header".to_string(), HEADER.encode().to_vec())];
    let mut offset = HEADER_LEN;
    let mut group_start = offset;
    for record in records() {
        let mut buf = Vec::new();
        frame(&mut buf, SEQ, |b| match &record {
            Record::Checkpoint(cp) => encode_checkpoint(b, cp),
            Record::Install(snap) => encode_snap_ref(b, rtype::SNAPSHOT_INSTALL, snap),
            Record::Entry(e) => encode_entry(b, e),
            Record::HardState(hs) => encode_hard_state(b, hs),
            Record::Saved(snap) => encode_snap_ref(b, rtype::SNAPSHOT_SAVED, snap),
            Record::Commit { batch } => encode_commit(b, group_start, *batch),
            Record::Group(g) => encode_group(b, *g),
            Record::Removed => encode_group_removed(b),
        });
        offset += buf.len() as u64;
        if matches!(record, Record::Commit { .. }) {
            group_start = offset;
        }
        sections.push((name(&record), buf));
    }
    let (file, _) = file_bytes(SNAPSHOT_GENERATION, &stored_snapshot());
    sections.push((format!("snapshot file, generation {SNAPSHOT_GENERATION}"), file));
    sections
}

/// Decodes one framed record section.
fn decode(bytes: &[u8]) -> (Record, Option<u64>) {
    let rec = parse_record(bytes, 0, SEQ).expect("a valid record");
    assert_eq!(rec.padded_len, bytes.len(), "the section is one padded record");
    match rec.rtype {
        rtype::CHECKPOINT => (Record::Checkpoint(decode_checkpoint(rec.body).unwrap()), None),
        rtype::SNAPSHOT_INSTALL => (Record::Install(decode_snap_ref(rec.body).unwrap()), None),
        rtype::SNAPSHOT_SAVED => (Record::Saved(decode_snap_ref(rec.body).unwrap()), None),
        rtype::HARD_STATE => (Record::HardState(decode_hard_state(rec.body).unwrap()), None),
        rtype::ENTRY => {
            let record = Bytes::copy_from_slice(&bytes[..rec.len as usize]);
            (
                Record::Entry(decode_entry(&record, RECORD_HEADER + 1).unwrap()),
                None,
            )
        }
        rtype::COMMIT => {
            let (group_start, batch) = decode_commit(rec.body).unwrap();
            (Record::Commit { batch }, Some(group_start))
        }
        rtype::GROUP => (Record::Group(decode_group(rec.body).unwrap()), None),
        rtype::GROUP_REMOVED => (Record::Removed, None),
        other => panic!("unknown record type {other}"),
    }
}

/// Writes golden sections (the segment's, then the snapshot file last) as a log directory.
fn write_directory(sections: &[Section]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (snapshot, segment) = sections.split_last().expect("sections");
    let segment: Vec<u8> = segment.iter().flat_map(|(_, b)| b.clone()).collect();
    std::fs::write(dir.path().join(segment_name(SEQ)), segment).unwrap();
    std::fs::write(dir.path().join(snapshot_name(SNAPSHOT_GENERATION)), &snapshot.1).unwrap();
    dir
}

fn options() -> Options {
    Options {
        segment_size: 64 << 10,
        ..Options::default()
    }
}

/// Writes golden sections of a single-group log as a directory and opens it.
fn open_as_directory(sections: &[Section]) -> (tempfile::TempDir, FileLogStore) {
    let dir = write_directory(sections);
    let store = FileLogStore::open(dir.path(), options()).expect("the golden log opens");
    (dir, store)
}

#[test]
fn wal_golden_bytes() {
    let golden = golden().check(&encoded());
    let records = records();
    assert_eq!(golden.len(), records.len() + 2);

    // Record by record.
    assert_eq!(SegmentHeader::decode(&golden[0].1), Ok(HEADER));
    let mut offset = HEADER_LEN;
    let mut group_start = offset;
    for ((name, bytes), expected) in golden[1..].iter().zip(&records) {
        let (record, start) = decode(bytes);
        assert_eq!(&record, expected, "[{name}] decodes to another value");
        if let Some(start) = start {
            assert_eq!(start, group_start, "[{name}] names another group start");
        }
        offset += bytes.len() as u64;
        if start.is_some() {
            group_start = offset;
        }
    }

    // As a log directory.
    let dir = write_directory(&golden);
    let wal = FileWal::open(dir.path(), options()).expect("the golden log opens");
    assert_eq!(wal.groups(), vec![0, 9], "group 12 was removed");
    let nine = wal.group(9).unwrap();
    assert_eq!(
        nine.entries(1, 2, u64::MAX).unwrap(),
        samples::entries(1, 4)[..1].to_vec()
    );
    assert_eq!(nine.initial_state().unwrap().hard_state.vote, Some(2));
    assert_eq!(wal.group(12).unwrap().last_index(), 0);
    let store = wal.group(0).unwrap();
    let snapshot = stored_snapshot();
    let initial = store.initial_state().unwrap();
    assert_eq!(initial.hard_state, samples::hard_state());
    assert_eq!(initial.conf_state, snapshot.meta.conf_state);
    assert_eq!(store.snapshot_meta(), Some(snapshot.meta.clone()));
    assert_eq!(store.load_snapshot_blocking().unwrap(), Some(snapshot));
    let entries = samples::entries(70_000, 299);
    assert_eq!(store.first_index(), 70_000);
    assert_eq!(store.last_index(), 70_004);
    assert_eq!(store.entries(70_000, 70_005, u64::MAX).unwrap(), entries);
    drop((nine, store));
    wal.close().unwrap();
}

/// A log directory written by version 2 (before the records of several groups) opens as
/// it did, as the log of group 0.
#[test]
fn a_version_2_log_directory_still_opens() {
    let v2 = Golden {
        version: 2,
        ..golden()
    }
    .read();
    let records = of_group_zero(&records());
    assert_eq!(v2.len(), records.len() + 2);
    assert_eq!(u32::from_le_bytes(v2[0].1[8..12].try_into().unwrap()), 2);
    for ((name, bytes), expected) in v2[1..].iter().zip(&records) {
        assert_eq!(&decode(bytes).0, expected, "[{name}] decodes to another value");
    }
    let (_dir, store) = open_as_directory(&v2);
    assert_eq!(store.load_snapshot_blocking().unwrap(), Some(stored_snapshot()));
    assert_eq!(
        store.entries(70_000, 70_005, u64::MAX).unwrap(),
        samples::entries(70_000, 299)
    );
    store.close().unwrap();
}

/// A log directory written by version 1 (before internal entries) opens as it did: the
/// same records, without the internal entry.
#[test]
fn a_version_1_log_directory_still_opens() {
    let v1 = Golden {
        version: 1,
        ..golden()
    }
    .read();
    let records: Vec<Record> = of_group_zero(&records())
        .into_iter()
        .filter(
            |r| !matches!(r, Record::Entry(e) if matches!(e.payload, raft_core::EntryPayload::Internal(_))),
        )
        .collect();
    assert_eq!(v1.len(), records.len() + 2);
    assert_eq!(u32::from_le_bytes(v1[0].1[8..12].try_into().unwrap()), 1);
    assert_eq!(SegmentHeader::decode(&v1[0].1), Ok(HEADER));
    for ((name, bytes), expected) in v1[1..].iter().zip(&records) {
        assert_eq!(&decode(bytes).0, expected, "[{name}] decodes to another value");
    }
    let (_dir, store) = open_as_directory(&v1);
    assert_eq!(store.load_snapshot_blocking().unwrap(), Some(stored_snapshot()));
    assert_eq!(store.last_index(), 70_003);
    assert_eq!(
        store.entries(70_000, 70_004, u64::MAX).unwrap(),
        samples::entries(70_000, 299)[..4].to_vec()
    );
    store.close().unwrap();
}
