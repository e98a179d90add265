//! Behaviour of the store through the `LogStore` trait and its own API.

mod common;

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use raft_core::{ConfState, EntryPayload, HardState, SnapshotMeta, StorageError};
use raft_runtime::{LogStore, LogWrite, Snapshot};
use raft_storage_file::{Fault, FaultHook, FileLogStore, InvalidWrite, IoOp, Options, WalError};

fn meta(index: u64, term: u64) -> SnapshotMeta {
    SnapshotMeta {
        index,
        term,
        conf_state: ConfState::with_voters([1, 2, 3]),
    }
}

fn snapshot(index: u64, term: u64, len: usize) -> Snapshot {
    Snapshot {
        meta: meta(index, term),
        data: payload(term, index, len),
    }
}

#[test]
fn appends_survive_reopen_with_hard_state() {
    let dir = tempfile::tempdir().unwrap();
    let hs = HardState {
        term: 3,
        vote: Some(2),
        commit: 7,
    };
    {
        let store = open(dir.path(), Options::default());
        assert_eq!((store.first_index(), store.last_index()), (1, 0));
        assert_eq!(store.term(0).unwrap(), 0);
        append_sync(&store, write(ents(1, 1, 5, 100), None)).unwrap();
        append_sync(&store, write(ents(3, 6, 9, 3000), Some(hs))).unwrap();
        assert_eq!(store.last_index(), 9);
        assert_eq!(store.initial_state().unwrap().hard_state, hs);
    }
    let store = open(dir.path(), Options::default());
    assert_eq!((store.first_index(), store.last_index()), (1, 9));
    assert_eq!(store.initial_state().unwrap().hard_state, hs);
    let mut expected = ents(1, 1, 5, 100);
    expected.extend(ents(3, 6, 9, 3000));
    assert_eq!(all_entries(&store), expected);
    assert_eq!(store.term(9).unwrap(), 3);
    assert!(matches!(
        store.term(10),
        Err(StorageError::Unavailable { index: 10, last: 9 })
    ));
    assert!(matches!(
        store.entries(5, 11, u64::MAX),
        Err(StorageError::Unavailable { .. })
    ));
    // The byte limit returns at least one entry.
    assert_eq!(store.entries(6, 10, 1).unwrap().len(), 1);
    assert_eq!(store.entries(1, 6, 250).unwrap().len(), 2);
    assert!(store.entries(4, 4, 0).unwrap().is_empty());
    assert_eq!(store.recovery_stats().entries, 9);
}

#[test]
fn every_kind_of_entry_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let cs = ConfState::with_voters([1, 2]).and_learners([9]);
    let entries = vec![
        raft_core::Entry::new(1, 1, EntryPayload::Empty),
        raft_core::Entry::new(1, 2, EntryPayload::Membership(Box::new(cs))),
        raft_core::Entry::new(1, 3, EntryPayload::Normal(Bytes::new())),
        raft_core::Entry::new(1, 4, EntryPayload::Internal(Bytes::from_static(b"session"))),
        raft_core::Entry::new(1, 5, EntryPayload::Internal(Bytes::new())),
        raft_core::Entry::new(1, 6, EntryPayload::Normal(Bytes::from_static(b"command"))),
    ];
    {
        let store = open(dir.path(), Options::default());
        append_sync(&store, write(entries.clone(), None)).unwrap();
        assert_eq!(all_entries(&store), entries);
    }
    let store = open(
        dir.path(),
        Options {
            cache_bytes: 0,
            ..Options::default()
        },
    );
    assert_eq!(all_entries(&store), entries);
}

/// Holds the writer's first `fdatasync` on a segment until released, so that the test
/// can queue writes behind it without depending on timing.
#[derive(Default)]
struct SyncGate {
    state: Mutex<(bool, bool)>,
    cv: Condvar,
    syncs: AtomicU64,
}

impl SyncGate {
    fn wait_entered(&self) {
        let mut s = self.state.lock().unwrap();
        while !s.0 {
            s = self.cv.wait(s).unwrap();
        }
    }
    fn release(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

impl FaultHook for SyncGate {
    fn check(&self, op: &IoOp<'_>) -> Fault {
        if let IoOp::SyncData { path } = op
            && path.file_name().unwrap().to_str().unwrap().starts_with("wal-")
            && self.syncs.fetch_add(1, Ordering::SeqCst) == 0
        {
            let mut s = self.state.lock().unwrap();
            s.0 = true;
            self.cv.notify_all();
            while !s.1 {
                s = self.cv.wait(s).unwrap();
            }
        }
        Fault::Proceed
    }
}

#[test]
fn group_commit_coalesces_queued_writes_and_completes_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(SyncGate::default());
    let store = Arc::new(open(
        dir.path(),
        Options {
            fault_hook: Some(gate.clone()),
            ..Options::default()
        },
    ));
    let order = Arc::new(Mutex::new(Vec::new()));
    let submit = |i: u64| {
        let order = order.clone();
        let reader = store.clone();
        store.append(
            write(
                vec![ent(1, i, 256)],
                Some(HardState {
                    term: 1,
                    vote: None,
                    commit: i,
                }),
            ),
            Box::new(move |r| {
                r.unwrap();
                // Reads reflect every write whose completion has been called.
                assert!(reader.last_index() >= i);
                assert_eq!(reader.entries(i, i + 1, u64::MAX).unwrap()[0].index, i);
                order.lock().unwrap().push(i);
            }),
        );
    };
    submit(1);
    gate.wait_entered();
    for i in 2..=300 {
        submit(i);
    }
    gate.release();
    store.flush_blocking().unwrap();
    assert_eq!(*order.lock().unwrap(), (1..=300).collect::<Vec<_>>());
    let m = store.metrics();
    assert_eq!(m.writes, 300);
    assert_eq!(m.entries, 300);
    // One sync for the first write, one for the 299 queued behind it.
    assert_eq!(m.fsyncs, 2);
    assert_eq!(store.initial_state().unwrap().hard_state.commit, 300);
}

#[test]
fn conflicting_suffix_is_replaced_durably() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), small_options());
        append_sync(&store, write(ents(1, 1, 40, 500), None)).unwrap();
        append_sync(&store, write(ents(2, 25, 27, 500), None)).unwrap();
        assert_eq!(store.last_index(), 27);
        assert_eq!(store.term(24).unwrap(), 1);
        assert_eq!(store.term(25).unwrap(), 2);
        // Truncate again, to inside the cache and then the disk part.
        append_sync(&store, write(ents(3, 27, 27, 10), None)).unwrap();
        append_sync(&store, write(ents(4, 3, 4, 10), None)).unwrap();
        assert_eq!(store.last_index(), 4);
    }
    let store = open(dir.path(), small_options());
    let mut expected = ents(1, 1, 2, 500);
    expected.extend(ents(4, 3, 4, 10));
    assert_eq!(all_entries(&store), expected);
}

#[test]
fn snapshot_install_replaces_the_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), small_options());
        append_sync(&store, write(ents(1, 1, 10, 100), None)).unwrap();
        let w = LogWrite {
            snapshot: Some(stage(&store, snapshot(20, 4, 5000))),
            entries: ents(4, 21, 22, 100),
            hard_state: Some(HardState {
                term: 4,
                vote: None,
                commit: 20,
            }),
        };
        append_sync(&store, w).unwrap();
        assert_eq!((store.first_index(), store.last_index()), (21, 22));
        assert_eq!(store.term(20).unwrap(), 4);
        assert!(matches!(
            store.term(19),
            Err(StorageError::Compacted { index: 19, first: 21 })
        ));
        assert!(matches!(
            store.entries(20, 22, u64::MAX),
            Err(StorageError::Compacted { .. })
        ));
        assert_eq!(store.snapshot_meta(), Some(meta(20, 4)));
        assert_eq!(store.snapshot_len(), Some(5000));
    }
    let store = open(dir.path(), small_options());
    assert_eq!((store.first_index(), store.last_index()), (21, 22));
    assert_eq!(all_entries(&store), ents(4, 21, 22, 100));
    assert_eq!(
        store.initial_state().unwrap().conf_state,
        ConfState::with_voters([1, 2, 3])
    );
    let loaded = store.load_snapshot_blocking().unwrap().unwrap();
    assert_eq!(loaded, snapshot(20, 4, 5000));
    assert_eq!(runtime().block_on(load_whole(&store)).unwrap(), Some(loaded));
    // Only the current snapshot file is left.
    let snaps = std::fs::read_dir(dir.path())
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
    assert_eq!(snaps, 1);
}

#[test]
fn bootstrap_snapshot_at_index_zero() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), Options::default());
        assert_eq!(store.snapshot_meta(), None);
        assert_eq!(store.initial_state().unwrap().conf_state, ConfState::default());
        let w = LogWrite {
            snapshot: Some(stage(&store, snapshot(0, 0, 16))),
            ..LogWrite::default()
        };
        append_sync(&store, w).unwrap();
        append_sync(&store, write(ents(1, 1, 1, 8), None)).unwrap();
    }
    let store = open(dir.path(), Options::default());
    assert_eq!(
        store.initial_state().unwrap().conf_state,
        ConfState::with_voters([1, 2, 3])
    );
    assert_eq!(store.snapshot_meta(), Some(meta(0, 0)));
    assert_eq!((store.first_index(), store.last_index()), (1, 1));
    assert_eq!(store.term(0).unwrap(), 0);
}

#[test]
fn save_snapshot_compact_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    {
        let store = open(dir.path(), small_options());
        for i in 0..20 {
            append_sync(&store, write(ents(1, i * 10 + 1, i * 10 + 10, 600), None)).unwrap();
        }
        let segments_before = segment_files(dir.path()).len();
        assert!(segments_before > 5, "{segments_before} segments");
        assert_eq!(store.snapshot_len(), None);
        rt.block_on(save_streamed(&store, snapshot(150, 1, 3000)))
            .unwrap();
        // Saving does not touch the log.
        assert_eq!((store.first_index(), store.last_index()), (1, 200));
        assert_eq!(store.snapshot_meta(), Some(meta(150, 1)));
        assert_eq!(store.snapshot_len(), Some(3000));
        // An older snapshot does not replace a newer one.
        rt.block_on(save_streamed(&store, snapshot(100, 1, 10))).unwrap();
        assert_eq!(store.snapshot_meta(), Some(meta(150, 1)));
        assert_eq!(store.snapshot_len(), Some(3000));
        // Compaction may lag the snapshot.
        store.compact(120).unwrap();
        assert_eq!(store.first_index(), 121);
        assert_eq!(store.term(120).unwrap(), 1);
        assert!(matches!(
            store.entries(120, 122, u64::MAX),
            Err(StorageError::Compacted { .. })
        ));
        assert_eq!(store.entries(121, 201, u64::MAX).unwrap(), ents(1, 121, 200, 600));
        store.compact(150).unwrap();
        let err = store.compact(151).unwrap_err();
        assert!(matches!(
            wal_error(&err),
            WalError::CompactBeyondSnapshot {
                index: 151,
                snapshot: 150
            }
        ));
        // Segments holding only compacted entries go, in the background.
        wait_for("obsolete segments to go", || {
            segment_files(dir.path()).len() < segments_before - 3
        });
        assert_eq!(store.entries(151, 201, u64::MAX).unwrap(), ents(1, 151, 200, 600));
    }
    let store = open(dir.path(), small_options());
    assert_eq!((store.first_index(), store.last_index()), (151, 200));
    assert_eq!(store.snapshot_len(), Some(3000));
    assert_eq!(store.term(150).unwrap(), 1);
    assert_eq!(all_entries(&store), ents(1, 151, 200, 600));
    assert_eq!(
        store.load_snapshot_blocking().unwrap().unwrap(),
        snapshot(150, 1, 3000)
    );
}

#[test]
fn restart_discards_the_log_when_the_snapshot_term_differs() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), Options::default());
        append_sync(&store, write(ents(1, 1, 10, 10), None)).unwrap();
        // A snapshot whose term at index 5 disagrees with the log (term 1).
        store.save_snapshot_blocking(snapshot(5, 2, 10)).unwrap();
        assert_eq!(store.last_index(), 10);
    }
    let store = open(dir.path(), Options::default());
    assert_eq!((store.first_index(), store.last_index()), (6, 5));
    assert_eq!(store.term(5).unwrap(), 2);
}

/// The entries the restart rule discards stay in their segments; once the older segments
/// are cleaned up, a replay of the newest one alone must not bring them back.
#[test]
fn entries_discarded_on_restart_stay_discarded_after_cleanup() {
    let dir = fast_tempdir();
    {
        let store = open(dir.path(), Options::default());
        append_sync(&store, write(ents(1, 1, 5, 10), None)).unwrap();
    }
    let oldest = segment_files(dir.path())[0].clone();
    {
        // Every open writes in a new segment: entries 6..10 and the snapshot go there.
        let store = open(dir.path(), Options::default());
        append_sync(&store, write(ents(1, 6, 10, 10), None)).unwrap();
        store.save_snapshot_blocking(snapshot(5, 2, 10)).unwrap();
    }
    {
        let store = open(dir.path(), Options::default());
        assert_eq!((store.first_index(), store.last_index()), (6, 5));
        // Nothing is left in the oldest segment, so the janitor removes it.
        wait_for("the oldest segment to be cleaned up", || !oldest.exists());
    }
    let store = open(dir.path(), Options::default());
    assert_eq!((store.first_index(), store.last_index()), (6, 5));
    assert_eq!(store.term(5).unwrap(), 2);
}

#[test]
fn restart_keeps_entries_after_an_agreeing_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), Options::default());
        append_sync(&store, write(ents(1, 1, 10, 10), None)).unwrap();
        store.save_snapshot_blocking(snapshot(5, 1, 10)).unwrap();
    }
    let store = open(dir.path(), Options::default());
    assert_eq!((store.first_index(), store.last_index()), (6, 10));
    assert_eq!(all_entries(&store), ents(1, 6, 10, 10));
}

#[test]
fn snapshot_stream_reads_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    assert!(store.snapshot_reader().unwrap().is_none());
    append_sync(&store, write(ents(1, 1, 3, 10), None)).unwrap();
    let snap = snapshot(3, 1, 1 << 20);
    store.save_snapshot_blocking(snap.clone()).unwrap();
    let mut reader = store.snapshot_reader().unwrap().unwrap();
    assert_eq!(reader.meta(), &snap.meta);
    assert_eq!(reader.data_len(), 1 << 20);
    let mut data = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = reader.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        data.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(data, snap.data);
    assert_eq!(reader.remaining(), 0);

    // Damage one byte of the data: the stream's last read reports it.
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "snap"))
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let mut reader = store.snapshot_reader().unwrap().unwrap();
    let mut sink = Vec::new();
    let err = reader.read_to_end(&mut sink).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(matches!(
        store.load_snapshot_blocking(),
        Err(WalError::SnapshotCorrupt { .. })
    ));
}

#[test]
fn an_invalid_write_fails_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    append_sync(&store, write(ents(1, 1, 3, 10), None)).unwrap();
    let err = append_sync(&store, write(ents(1, 5, 5, 10), None)).unwrap_err();
    assert!(matches!(
        wal_error(&err),
        WalError::InvalidWrite(InvalidWrite::Gap { index: 5, last: 3 })
    ));
    // Later writes fail with the same error, even valid ones.
    let later = append_sync(&store, write(ents(1, 4, 4, 10), None)).unwrap_err();
    assert!(matches!(wal_error(&later), WalError::InvalidWrite(_)));
    assert!(store.flush_blocking().is_err());
    assert!(store.failure().is_some());
    // Reads still work.
    assert_eq!(store.last_index(), 3);
}

#[test]
fn non_contiguous_and_compacted_writes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    let mut bad = ents(1, 1, 2, 10);
    bad.push(ent(1, 4, 10));
    let err = append_sync(&store, write(bad, None)).unwrap_err();
    assert!(matches!(
        wal_error(&err),
        WalError::InvalidWrite(InvalidWrite::NotContiguous { prev: 2, found: 4 })
    ));

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    append_sync(&store, write(ents(1, 1, 5, 10), None)).unwrap();
    store.save_snapshot_blocking(snapshot(4, 1, 1)).unwrap();
    let err = append_sync(&store, write(ents(2, 4, 4, 10), None)).unwrap_err();
    assert!(matches!(
        wal_error(&err),
        WalError::InvalidWrite(InvalidWrite::Compacted {
            index: 4,
            snapshot: 4
        })
    ));
}

#[test]
fn a_local_snapshot_past_the_log_is_refused_without_failing_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    append_sync(&store, write(ents(1, 1, 5, 10), None)).unwrap();
    let err = store.save_snapshot_blocking(snapshot(9, 1, 1)).unwrap_err();
    assert!(matches!(
        wal_error(&err),
        WalError::SnapshotBeyondLog { index: 9, last: 5 }
    ));
    append_sync(&store, write(ents(1, 6, 6, 10), None)).unwrap();
    assert!(store.failure().is_none());
}

#[test]
fn empty_writes_and_flushes_complete() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    append_sync(&store, LogWrite::default()).unwrap();
    runtime().block_on(store.flush()).unwrap();
    assert_eq!(store.metrics().fsyncs, 0);
    assert_eq!(store.metrics().writes, 1);
}

#[test]
fn reads_come_from_segments_when_the_cache_is_small() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(
        dir.path(),
        Options {
            cache_bytes: 1000,
            segment_size: 8 << 10,
            ..Options::default()
        },
    );
    for i in 0..50 {
        append_sync(&store, write(ents(1 + i / 10, i * 4 + 1, i * 4 + 4, 300), None)).unwrap();
    }
    assert!(segment_files(dir.path()).len() > 5);
    let all = all_entries(&store);
    assert_eq!(all.len(), 200);
    for (k, e) in all.iter().enumerate() {
        let i = k as u64 + 1;
        assert_eq!(*e, ent(1 + (i - 1) / 40, i, 300));
    }
    // Size-limited reads across segment boundaries.
    let part = store.entries(10, 200, 3000).unwrap();
    assert_eq!(part.len(), 9);
    assert_eq!(part[0].index, 10);
}

#[test]
fn freed_segments_are_recycled() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_options());
    for i in 0..40 {
        append_sync(&store, write(ents(1, i * 10 + 1, i * 10 + 10, 400), None)).unwrap();
    }
    let old_files = segment_files(dir.path());
    let old_inodes: Vec<u64> = old_files
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().ino())
        .collect();
    store.save_snapshot_blocking(snapshot(400, 1, 10)).unwrap();
    store.compact(400).unwrap();
    wait_for("segments to be freed", || segment_files(dir.path()).len() <= 3);
    for i in 40..80 {
        append_sync(&store, write(ents(1, i * 10 + 1, i * 10 + 10, 400), None)).unwrap();
    }
    let reused = segment_files(dir.path())
        .iter()
        .filter(|p| !old_files.contains(p) && old_inodes.contains(&std::fs::metadata(p).unwrap().ino()))
        .count();
    assert!(reused > 0, "no recycled segment file in use");
    drop(store);
    let store = open(dir.path(), small_options());
    assert_eq!((store.first_index(), store.last_index()), (401, 800));
    assert_eq!(all_entries(&store), ents(1, 401, 800, 400));
}

#[test]
fn opening_a_missing_directory_without_create_fails() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = FileLogStore::open(
        &missing,
        Options {
            create_if_missing: false,
            ..Options::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, WalError::Io { .. }), "{err}");
    assert!(err.to_string().contains("nope"));
    let store = open(&missing, Options::default());
    assert_eq!(store.last_index(), 0);
}

#[test]
fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = FileLogStore::open(
        dir.path(),
        Options {
            segment_size: 100,
            ..Options::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, WalError::Config(e) if e.field == "segment_size"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "invalid configuration: `segment_size` = 100: must be between 4 KiB and 1 TiB"
    );
}

#[test]
fn close_reports_and_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    append_sync(&store, write(ents(1, 1, 1, 10), None)).unwrap();
    store.close().unwrap();
    let store = open(dir.path(), Options::default());
    assert_eq!(store.last_index(), 1);
    let before = store.durable_position().unwrap();
    append_sync(&store, write(ents(1, 2, 2, 10), None)).unwrap();
    let after = store.durable_position().unwrap();
    // Every open starts writing in a new segment.
    assert_ne!(after.segment, before.segment);
    assert!(after.offset > 64);
}

/// Whether no snapshot file is being written in `dir`.
fn no_temporary_files(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().to_string())
        .all(|name| !(name.starts_with("snap-") && name.ends_with(".tmp")))
}

#[test]
fn a_stream_that_fails_or_stops_part_way_stores_nothing() {
    let dir = fast_tempdir();
    let store = open(dir.path(), Options::default());
    append_sync(&store, write(ents(1, 1, 10, 8), None)).unwrap();
    let rt = runtime();
    let first = raft_runtime::SnapshotStream::from_bytes(vec![7u8; 100]);
    rt.block_on(store.save_snapshot(snap_meta(5), first)).unwrap();

    // A stream that fails.
    let failing = raft_runtime::SnapshotStream::new(futures::stream::iter(vec![
        Ok(Bytes::from_static(b"some data")),
        Err(std::io::Error::other("the state machine's disk is gone")),
    ]));
    let err = rt
        .block_on(store.save_snapshot(snap_meta(8), failing))
        .unwrap_err();
    let wal = err.backend().downcast_ref::<WalError>().expect("a store error");
    assert!(matches!(wal, WalError::SnapshotSource(_)), "{wal}");
    assert!(wal.to_string().contains("disk is gone"), "{wal}");
    assert_eq!(store.snapshot_meta(), Some(snap_meta(5)));
    assert!(no_temporary_files(dir.path()));

    // A save dropped part way (its stream never ends).
    let endless = raft_runtime::SnapshotStream::new(
        futures::stream::iter(0..)
            .map(|_| Ok(Bytes::from_static(b"more")))
            .then(|c| async move {
                tokio::task::yield_now().await;
                c
            }),
    );
    rt.block_on(async {
        let save = store.save_snapshot(snap_meta(9), endless);
        let outcome = tokio::time::timeout(std::time::Duration::from_millis(50), save).await;
        assert!(outcome.is_err(), "a save of an endless stream ended: {outcome:?}");
    });
    wait_for("the abandoned snapshot file to be removed", || {
        no_temporary_files(dir.path())
    });
    assert_eq!(store.snapshot_meta(), Some(snap_meta(5)));

    // The stored snapshot is still the first, whole.
    drop(store);
    let store = open(dir.path(), Options::default());
    let loaded = rt.block_on(load_whole(&store)).unwrap().unwrap();
    assert_eq!(
        (loaded.meta, loaded.data),
        (snap_meta(5), Bytes::from(vec![7u8; 100]))
    );
}
