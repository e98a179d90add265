//! Snapshots received from a leader: staged beside the log as their data arrives, installed
//! by the write that names them, and never left behind when no write does.

mod common;

use bytes::Bytes;
use common::*;
use raft_core::HardState;
use raft_runtime::{LogStore, LogWrite, SnapshotStream, StagedSnapshot};
use raft_storage_file::{FileLogStore, InvalidWrite, Options, WalError};

/// The snapshot files in `dir` (temporaries included).
fn snapshot_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().to_string())
        .filter(|name| name.starts_with("snap-"))
        .collect();
    names.sort();
    names
}

/// `len` bytes of snapshot data for `index`, streamed in chunks of 1000.
fn data(index: u64, len: usize) -> (Bytes, SnapshotStream) {
    let bytes = payload(9, index, len);
    let chunks: Vec<std::io::Result<Bytes>> = bytes
        .chunks(1000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    (bytes, SnapshotStream::new(futures::stream::iter(chunks)))
}

fn install(store: &FileLogStore, staged: StagedSnapshot) -> Result<(), raft_runtime::StoreError> {
    let index = staged.meta.index;
    append_sync(
        store,
        LogWrite {
            snapshot: Some(staged),
            entries: ents(1, index + 1, index + 2, 8),
            hard_state: Some(HardState {
                term: 1,
                vote: None,
                commit: index,
            }),
        },
    )
}

#[test]
fn a_staged_snapshot_changes_nothing_until_a_write_installs_it() {
    let dir = fast_tempdir();
    let rt = runtime();
    let store = open(dir.path(), Options::default());
    append_sync(&store, write(ents(1, 1, 10, 8), None)).unwrap();

    let (bytes, stream) = data(50, 300_000);
    let staged = rt.block_on(store.stage_snapshot(snap_meta(50), stream)).unwrap();
    assert_eq!(staged.snapshot.meta, snap_meta(50));
    // Staging touched neither the log nor the stored snapshot.
    assert_eq!((store.first_index(), store.last_index()), (1, 10));
    assert_eq!(store.snapshot_meta(), None);
    // The staged data reads back whole, from its file.
    let read = rt.block_on(staged.data.into_bytes(u64::MAX)).unwrap();
    assert_eq!(read, bytes);

    install(&store, staged.snapshot.clone()).unwrap();
    assert_eq!(store.snapshot_meta(), Some(snap_meta(50)));
    assert_eq!((store.first_index(), store.last_index()), (51, 52));
    let loaded = rt.block_on(load_whole(&store)).unwrap().unwrap();
    assert_eq!((loaded.meta, loaded.data), (snap_meta(50), bytes.clone()));

    // Installed once: a second write naming it is a broken write, refused by name.
    let err = install(&store, staged.snapshot).unwrap_err();
    assert!(
        matches!(
            wal_error(&err),
            WalError::InvalidWrite(InvalidWrite::NotStaged { index: 50, .. })
        ),
        "{err}"
    );

    // The installed snapshot survives a restart.
    drop(store);
    let store = open(dir.path(), Options::default());
    assert_eq!(store.snapshot_meta(), Some(snap_meta(50)));
    let loaded = rt.block_on(load_whole(&store)).unwrap().unwrap();
    assert_eq!(loaded.data, bytes);
}

#[test]
fn a_snapshot_staged_but_never_installed_leaves_nothing_behind() {
    let dir = fast_tempdir();
    let rt = runtime();
    let store = open(dir.path(), Options::default());
    append_sync(&store, write(ents(1, 1, 10, 8), None)).unwrap();
    rt.block_on(store.save_snapshot(snap_meta(5), SnapshotStream::from_bytes(vec![5u8; 64])))
        .unwrap();
    let before = snapshot_files(dir.path());
    assert_eq!(before.len(), 1, "{before:?}");

    // Discarded: its file goes.
    let staged = rt
        .block_on(store.stage_snapshot(snap_meta(40), data(40, 5000).1))
        .unwrap();
    assert_eq!(snapshot_files(dir.path()).len(), 2);
    store.discard_staged(&staged.snapshot);
    wait_for("the discarded snapshot's file to go", || {
        snapshot_files(dir.path()) == before
    });
    // Its data, opened when it was staged, still reads whole.
    assert_eq!(rt.block_on(staged.data.into_bytes(u64::MAX)).unwrap().len(), 5000);
    // And it can no longer be installed.
    let err = install(&store, staged.snapshot).unwrap_err();
    assert!(
        matches!(
            wal_error(&err),
            WalError::InvalidWrite(InvalidWrite::NotStaged { .. })
        ),
        "{err}"
    );

    // Staged when the node stopped (or crashed): the next open deletes it.
    let dir = fast_tempdir();
    let store = open(dir.path(), Options::default());
    append_sync(&store, write(ents(1, 1, 10, 8), None)).unwrap();
    let staged = rt
        .block_on(store.stage_snapshot(snap_meta(40), data(40, 5000).1))
        .unwrap();
    drop(staged);
    assert_eq!(snapshot_files(dir.path()).len(), 1);
    drop(store);
    let store = open(dir.path(), Options::default());
    assert_eq!(snapshot_files(dir.path()), Vec::<String>::new());
    assert_eq!(store.snapshot_meta(), None);
    assert_eq!((store.first_index(), store.last_index()), (1, 10));
}

#[test]
fn staging_that_fails_part_way_keeps_nothing_and_the_log_goes_on() {
    let dir = fast_tempdir();
    let rt = runtime();
    let store = open(dir.path(), Options::default());
    append_sync(&store, write(ents(1, 1, 10, 8), None)).unwrap();
    let broken = SnapshotStream::new(futures::stream::iter(vec![
        Ok(Bytes::from_static(b"the first chunk")),
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the transfer broke",
        )),
    ]));
    let err = rt
        .block_on(store.stage_snapshot(snap_meta(40), broken))
        .unwrap_err();
    assert!(matches!(wal_error(&err), WalError::SnapshotSource(_)), "{err}");
    assert!(err.to_string().contains("the transfer broke"), "{err}");
    assert_eq!(snapshot_files(dir.path()), Vec::<String>::new());
    // The store is not failed by a broken transfer: the log takes writes as before.
    append_sync(&store, write(ents(1, 11, 12, 8), None)).unwrap();
    assert_eq!(store.last_index(), 12);
}

#[test]
fn the_data_of_an_installed_snapshot_stays_readable_after_a_newer_one_replaces_it() {
    let dir = fast_tempdir();
    let rt = runtime();
    let store = open(dir.path(), Options::default());
    append_sync(&store, write(ents(1, 1, 10, 8), None)).unwrap();
    let (first_bytes, stream) = data(20, 200_000);
    let first = rt.block_on(store.stage_snapshot(snap_meta(20), stream)).unwrap();
    install(&store, first.snapshot.clone()).unwrap();
    let (second_bytes, stream) = data(30, 1000);
    let second = rt.block_on(store.stage_snapshot(snap_meta(30), stream)).unwrap();
    install(&store, second.snapshot.clone()).unwrap();
    // The first snapshot's file is deleted once replaced...
    wait_for("the replaced snapshot's file to go", || {
        snapshot_files(dir.path()).len() == 1
    });
    // ...but the state machine, which restores from the stream opened when it was staged,
    // still reads all of it.
    assert_eq!(rt.block_on(first.data.into_bytes(u64::MAX)).unwrap(), first_bytes);
    assert_eq!(
        rt.block_on(second.data.into_bytes(u64::MAX)).unwrap(),
        second_bytes
    );
    assert_eq!(store.snapshot_meta(), Some(snap_meta(30)));
}
