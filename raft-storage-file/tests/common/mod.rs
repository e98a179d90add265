//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_core::{Entry, EntryPayload, HardState, Index, Term};
use raft_runtime::{LogStore, LogWrite, StoreError};
use raft_storage_file::{FileLogStore, Options, WalError};

/// A deterministic payload for entry `index` of term `term`, `len` bytes long.
pub fn payload(term: Term, index: Index, len: usize) -> Bytes {
    let seed = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ term.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    (0..len)
        .map(|i| (seed >> ((i % 8) * 8)) as u8 ^ i as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// An entry with a deterministic payload.
pub fn ent(term: Term, index: Index, len: usize) -> Entry {
    Entry::new(term, index, EntryPayload::Normal(payload(term, index, len)))
}

/// Entries `from..=to` of one term.
pub fn ents(term: Term, from: Index, to: Index, len: usize) -> Vec<Entry> {
    (from..=to).map(|i| ent(term, i, len)).collect()
}

/// A write of entries and a hard state.
pub fn write(entries: Vec<Entry>, hard_state: Option<HardState>) -> LogWrite {
    LogWrite {
        snapshot: None,
        entries,
        hard_state,
    }
}

/// Appends and waits for the completion.
pub fn append_sync(store: &impl LogStore, w: LogWrite) -> Result<(), StoreError> {
    let (tx, rx) = mpsc::channel();
    store.append(
        w,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv_timeout(Duration::from_secs(60))
        .expect("completion within a minute")
}

/// Small segments and a small cache, so that tests cross segment boundaries and read
/// from disk.
pub fn small_options() -> Options {
    Options {
        segment_size: 16 << 10,
        cache_bytes: 2 << 10,
        max_group_bytes: 64 << 10,
        ..Options::default()
    }
}

/// Opens a store, panicking with the error.
pub fn open(dir: &std::path::Path, options: Options) -> FileLogStore {
    FileLogStore::open(dir, options).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// All stored entries.
pub fn all_entries(store: &impl LogStore) -> Vec<Entry> {
    let (first, last) = (store.first_index(), store.last_index());
    if last < first {
        return Vec::new();
    }
    store
        .entries(first, last + 1, u64::MAX)
        .expect("read all entries")
}

/// Waits (up to a generous deadline) for `cond`; the verdict never depends on timing.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The typed error inside a store error.
pub fn wal_error(err: &StoreError) -> &WalError {
    err.backend()
        .downcast_ref::<WalError>()
        .expect("a WalError inside")
}

/// Names of the segment files in `dir`, sorted.
pub fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with("wal-") && n.ends_with(".log")
        })
        .collect();
    v.sort();
    v
}

/// A current-thread tokio runtime for the async trait methods.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A temporary directory on tmpfs (`/dev/shm`) when there is one, for tests that reopen a
/// log thousands of times and check only what the files contain: there `fsync` costs
/// nothing. Falls back to the default temporary directory.
pub fn fast_tempdir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

/// Saves `snapshot` through [`LogStore::save_snapshot`], its data streamed in chunks of at
/// most 1000 bytes.
pub async fn save_streamed(
    store: &impl LogStore,
    snapshot: raft_runtime::Snapshot,
) -> Result<(), StoreError> {
    let chunks: Vec<std::io::Result<Bytes>> = snapshot
        .data
        .chunks(1000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let data = raft_runtime::SnapshotStream::new(futures::stream::iter(chunks));
    store.save_snapshot(snapshot.meta, data).await
}

/// Loads the stored snapshot through [`LogStore::load_snapshot`] and reads its data whole.
pub async fn load_whole(store: &impl LogStore) -> Result<Option<raft_runtime::Snapshot>, StoreError> {
    let Some(stored) = store.load_snapshot().await? else {
        return Ok(None);
    };
    let data = stored.data.into_bytes(u64::MAX).await.map_err(StoreError::new)?;
    Ok(Some(raft_runtime::Snapshot {
        meta: stored.meta,
        data,
    }))
}

/// The metadata of a snapshot at `index`, term 1, of a one-voter cluster.
pub fn snap_meta(index: u64) -> raft_core::SnapshotMeta {
    raft_core::SnapshotMeta {
        index,
        term: 1,
        conf_state: raft_core::ConfState::with_voters([1]),
    }
}

/// Stages `snapshot` in `store`, as a snapshot received from a leader, and returns the
/// handle a write names to install it.
pub fn stage(store: &impl LogStore, snapshot: raft_runtime::Snapshot) -> raft_runtime::StagedSnapshot {
    runtime()
        .block_on(store.stage_snapshot(
            snapshot.meta,
            raft_runtime::SnapshotStream::from_bytes(snapshot.data),
        ))
        .unwrap()
        .snapshot
}
