//! Corruption: damaged bytes anywhere before the torn-write window are always reported,
//! with the file and offset, never skipped; `repair` is the explicit way out.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use raft_core::{ConfState, HardState, SnapshotMeta};
use raft_runtime::{LogStore, Snapshot};
use raft_storage_file::{FileLogStore, Options, WalError, repair, verify};

fn options() -> Options {
    Options {
        segment_size: 4096,
        ..Options::default()
    }
}

/// A log of many small segments holding every record type, closed cleanly; its files
/// and, for each closed segment, the length of its committed data.
struct Base {
    files: BTreeMap<String, Vec<u8>>,
    closed: Vec<(String, u64)>,
    /// The newest segment and where its last write starts and ends.
    active: (String, u64, u64),
    last_index: u64,
}

fn build() -> Base {
    let dir = fast_tempdir();
    let mut index = 0;
    let mut batch = |store: &FileLogStore, n: u64| {
        let entries = ents(1, index + 1, index + n, 90);
        index += n;
        let hs = HardState {
            term: 1,
            vote: Some(2),
            commit: index.saturating_sub(2),
        };
        append_sync(store, write(entries, Some(hs))).unwrap();
    };
    {
        let store = open(dir.path(), options());
        for i in 0..80 {
            batch(&store, 1 + i % 4);
        }
        let snap = Snapshot {
            meta: SnapshotMeta {
                index: 20,
                term: 1,
                conf_state: ConfState::with_voters([1, 2, 3]),
            },
            data: Bytes::from_static(b"state at 20"),
        };
        store.save_snapshot_blocking(snap).unwrap();
    }
    // The newest segment holds many writes.
    let store = open(
        dir.path(),
        Options {
            segment_size: 1 << 20,
            ..Options::default()
        },
    );
    for i in 0..20 {
        batch(&store, 1 + i % 3);
    }
    let start = store.durable_position().unwrap().offset;
    batch(&store, 2);
    let end = store.durable_position().unwrap();
    let last_index = store.last_index();
    drop(store);
    let report = verify(dir.path()).unwrap();
    let name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_string();
    let (newest, closed) = report.segments.split_last().unwrap();
    assert!(closed.len() >= 8, "{} closed segments", closed.len());
    assert_eq!(newest.path, end.segment);
    let files = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "LOCK")
        .map(|p| (name(&p), std::fs::read(&p).unwrap()))
        .collect();
    Base {
        files,
        closed: closed.iter().map(|s| (name(&s.path), s.committed_len)).collect(),
        active: (name(&newest.path), start, end.offset),
        last_index,
    }
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(build)
}

/// Restores the base log with one bit flipped and opens it.
fn open_flipped(file: &str, offset: u64, bit: u8) -> (tempfile::TempDir, Result<FileLogStore, WalError>) {
    let dir = fast_tempdir();
    for (name, bytes) in &base().files {
        let mut bytes = bytes.clone();
        if name == file {
            bytes[offset as usize] ^= 1 << bit;
        }
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let result = FileLogStore::open(dir.path(), options());
    (dir, result)
}

fn assert_reported(result: Result<FileLogStore, WalError>, file: &str, offset: u64) {
    match result {
        Err(WalError::Corrupt {
            path,
            offset: at,
            kind,
        }) => {
            assert_eq!(path.file_name().unwrap().to_str().unwrap(), file, "{kind}");
            assert!(at <= offset, "reported at {at}, flipped at {offset} ({kind})");
        }
        // A flipped version number reads as a format this build does not know.
        Err(WalError::UnsupportedVersion { path, .. }) if (8..12).contains(&offset) => {
            assert_eq!(path.file_name().unwrap().to_str().unwrap(), file);
        }
        Err(other) => panic!("flip at {file}:{offset}: unexpected error {other}"),
        Ok(store) => panic!(
            "flip at {file}:{offset} went unnoticed (last index {})",
            store.last_index()
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any single bit flip in the committed part of a closed segment is detected.
    #[test]
    fn bit_flips_in_closed_segments_are_always_reported(seg in any::<prop::sample::Index>(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (file, len) = seg.get(&base().closed).clone();
        let offset = at.index(len as usize) as u64;
        let (_dir, result) = open_flipped(&file, offset, bit);
        assert_reported(result, &file, offset);
    }

    /// In the newest segment, a flip anywhere before its last write is still detected:
    /// a later durable write proves the damaged bytes were not a torn tail.
    #[test]
    fn bit_flips_before_the_last_write_of_the_newest_segment_are_reported(at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (file, start, _) = base().active.clone();
        let offset = at.index(start as usize) as u64;
        let (_dir, result) = open_flipped(&file, offset, bit);
        assert_reported(result, &file, offset);
    }
}

#[test]
fn a_flip_in_the_last_write_reads_as_a_torn_tail() {
    // Documented limit: damage inside the very last write is indistinguishable from a
    // write torn by a crash, so that write (never more) is dropped.
    let (file, start, end) = base().active.clone();
    let (_dir, result) = open_flipped(&file, (start + end) / 2, 3);
    let store = result.unwrap();
    assert_eq!(store.last_index(), base().last_index - 2);
}

#[test]
fn verify_describes_a_healthy_log() {
    let dir = fast_tempdir();
    for (name, bytes) in &base().files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let report = verify(dir.path()).unwrap();
    assert_eq!(report.last_index, base().last_index);
    assert_eq!(report.first_index, 21);
    assert_eq!(report.snapshot.unwrap().index, 20);
    assert_eq!(report.segments.len(), base().closed.len() + 1);
    assert_eq!(report.stats.torn_bytes, 0);
    // A store holding the directory keeps verify (and repair) out.
    let _store = open(dir.path(), options());
    assert!(matches!(verify(dir.path()), Err(WalError::Locked { .. })));
    assert!(matches!(repair(dir.path()), Err(WalError::Locked { .. })));
}

#[test]
fn repair_cuts_the_log_before_the_damage_and_keeps_a_copy() {
    let (file, len) = base().closed[base().closed.len() / 2].clone();
    let (dir, result) = open_flipped(&file, len - 40, 0);
    let err = result.unwrap_err();
    assert!(matches!(err, WalError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&file), "{err}");

    let report = repair(dir.path()).unwrap();
    assert_eq!(report.repaired.len(), 1);
    assert_eq!(report.truncated.len(), 1);
    assert!(report.truncated[0].0.ends_with(&file));
    assert!(report.truncated[0].1 < len);
    // The damaged file's original and every later segment are kept aside.
    let later = base()
        .files
        .keys()
        .filter(|f| f.starts_with("wal-") && f.ends_with(".log") && **f > file)
        .count();
    assert!(later > base().closed.len() / 2 - 1);
    assert_eq!(report.quarantined.len(), later + 1);
    assert!(report.quarantined.iter().all(|p| p.exists()));

    let store = open(dir.path(), options());
    let last = store.last_index();
    assert!(last > 21 && last < base().last_index, "last index {last}");
    // What is left is an intact prefix of the original log.
    for e in all_entries(&store) {
        assert_eq!(e, ent(1, e.index, 90));
    }
    drop(store);
    // Repairing a healthy log changes nothing.
    let again = repair(dir.path()).unwrap();
    assert!(again.repaired.is_empty());
}

#[test]
fn a_missing_middle_segment_is_reported() {
    let dir = fast_tempdir();
    let (missing, _) = &base().closed[3];
    for (name, bytes) in &base().files {
        if name != missing {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
    }
    let err = FileLogStore::open(dir.path(), options()).unwrap_err();
    let WalError::Corrupt { path, offset, kind } = &err else {
        panic!("{err}")
    };
    assert_eq!(*offset, 0);
    assert_eq!(path.file_name().unwrap().to_str().unwrap(), base().closed[4].0);
    assert!(
        matches!(kind, raft_storage_file::CorruptKind::BrokenChain { .. }),
        "{err}"
    );
}
