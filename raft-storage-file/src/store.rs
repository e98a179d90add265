//! [`FileLogStore`]: opening a directory, and the [`LogStore`] implementation.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use raft_core::{Entry, Index, InitialState, SnapshotMeta, StorageError, Term};
use raft_runtime::{
    Completion, LogStore, LogWrite, Snapshot, SnapshotStream, Staged, StagedSnapshot, StoreError,
    StoreMetrics, StoredSnapshot,
};
use tokio::sync::{mpsc, oneshot};

use crate::error::WalError;
use crate::fault::{Io, open_ro, open_rw};
use crate::format::{Checkpoint, SnapRef, free_tmp_name, parse_segment_name};
use crate::janitor::{self, Janitor};
use crate::lock::DirLock;
use crate::options::Options;
use crate::recovery::{Recovery, RecoveryStats, recover};
use crate::snapshot::{SnapshotReader, read_snapshot, stream_snapshot_file, write_snapshot_file};
use crate::state::{LogState, Segment, read_entries};
use crate::writer::{Op, Queue, Writer, WriterInit};

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub writes: AtomicU64,
    pub entries: AtomicU64,
    pub bytes: AtomicU64,
    pub fsyncs: AtomicU64,
}

/// Chunks of a snapshot's data queued between the task that reads them and the thread
/// that writes them: 256 KiB of [`raft_runtime::READ_CHUNK`]-sized chunks, 4 MiB of the
/// QUIC transport's 1 MiB ones. Whenever the disk is slower than the source, the queue is
/// full, so it is memory held for the whole transfer.
const SNAPSHOT_CHUNKS_QUEUED: usize = 4;

/// What the task reading a snapshot's data passes to the thread writing it.
enum Chunk {
    Data(Bytes),
    End,
    Failed(io::Error),
}

/// Everything the store's threads share.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub dir_file: File,
    pub io: Io,
    pub options: Options,
    pub state: RwLock<LogState>,
    pub queue: Queue,
    pub janitor: Janitor,
    pub metrics: Metrics,
    pub next_gen: AtomicU64,
    pub next_seq: AtomicU64,
    /// The first segment number this store gave out. Segments below it were found on
    /// disk: they may hold records framed for any later number beyond their committed end,
    /// so compaction deletes them rather than recycle them.
    pub own_from: u64,
    /// The error that stopped the writer, if any.
    pub failure: Mutex<Option<StoreError>>,
    /// Snapshots received from a leader, their files durable but not referred to from the
    /// log yet, by generation (their id).
    pub staged: Mutex<HashMap<u64, SnapRef>>,
    pub recovery: RecoveryStats,
    _lock: DirLock,
}

impl Shared {
    fn state(&self) -> RwLockReadGuard<'_, LogState> {
        self.state.read().expect("log state lock")
    }

    fn write_snapshot(&self, snapshot: &Snapshot) -> Result<SnapRef, WalError> {
        let generation = self.next_gen.fetch_add(1, Ordering::SeqCst);
        write_snapshot_file(&self.io, &self.dir, &self.dir_file, generation, snapshot)
    }

    /// Writes a snapshot from the chunks that arrive on `chunks`, holding one at a time.
    fn stream_snapshot(
        &self,
        meta: &SnapshotMeta,
        chunks: &mut mpsc::Receiver<Chunk>,
    ) -> Result<SnapRef, WalError> {
        let generation = self.next_gen.fetch_add(1, Ordering::SeqCst);
        stream_snapshot_file(
            &self.io,
            &self.dir,
            &self.dir_file,
            generation,
            meta,
            || match chunks.blocking_recv() {
                Some(Chunk::Data(data)) => Ok(Some(data)),
                Some(Chunk::End) => Ok(None),
                Some(Chunk::Failed(e)) => Err(WalError::SnapshotSource(Arc::new(e))),
                None => Err(WalError::SnapshotSource(Arc::new(io::Error::other(
                    "the snapshot's data stopped before its end",
                )))),
            },
        )
    }

    /// Runs `f` on the current snapshot reference, retrying if a newer snapshot replaced
    /// (and deleted) the file in between.
    fn with_snapshot<T>(&self, f: impl Fn(&SnapRef) -> Result<T, WalError>) -> Result<Option<T>, WalError> {
        let mut tries = 0;
        loop {
            let Some(snap) = self.state().snapshot.clone() else {
                return Ok(None);
            };
            match f(&snap) {
                Ok(value) => return Ok(Some(value)),
                Err(err) => {
                    let gone = err
                        .io_error()
                        .is_some_and(|e| e.kind() == io::ErrorKind::NotFound);
                    let replaced =
                        self.state().snapshot.as_ref().map(|s| s.generation) != Some(snap.generation);
                    tries += 1;
                    if !(gone && replaced) || tries > 16 {
                        return Err(err);
                    }
                }
            }
        }
    }
}

/// Where the durable data of the log currently ends (see [`FileLogStore::durable_position`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalPosition {
    /// The newest segment file.
    pub segment: PathBuf,
    /// The end of its durable data.
    pub offset: u64,
}

/// A Raft log store on local files: a segmented write-ahead log with group commit.
///
/// Open it with [`FileLogStore::open`] and hand it to the runtime as a [`LogStore`]. See the
/// crate documentation for the on-disk format and the recovery rules.
pub struct FileLogStore {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    janitor: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for FileLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLogStore")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

fn sync_parent(io: &Io, dir: &Path) -> Result<(), WalError> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file = open_ro(parent)?;
    io.sync_dir(&file, parent)
}

fn ignore_missing(result: Result<(), WalError>) -> Result<(), WalError> {
    match result {
        Err(err)
            if err
                .io_error()
                .is_some_and(|e| e.kind() == io::ErrorKind::NotFound) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Carries out what recovery decided: deletes leftovers, moves reusable segments to the
/// free list and cuts the newest segment back to its committed end.
fn housekeeping(io: &Io, dir: &Path, dir_file: &File, recovery: &Recovery) -> Result<Vec<PathBuf>, WalError> {
    for path in &recovery.remove {
        ignore_missing(io.remove(path))?;
        io.sync_dir(dir_file, dir)?;
    }
    let mut free = Vec::new();
    for (i, path) in recovery.reusable.iter().enumerate() {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_segment_name);
        let to = dir.join(free_tmp_name(name.unwrap_or(i as u64)));
        io.rename(path, &to)?;
        io.sync_dir(dir_file, dir)?;
        free.push(to);
    }
    if let Some(last) = recovery.segments.last()
        && last.file_len > last.end
    {
        if recovery.stats.torn_bytes > 0 {
            tracing::warn!(
                segment = %last.path.display(),
                offset = last.end,
                bytes = recovery.stats.torn_bytes,
                "discarding a torn write at the end of the log"
            );
        }
        let file = open_rw(&last.path)?;
        io.set_len(&file, &last.path, last.end)?;
        io.sync_all(&file, &last.path)?;
    }
    Ok(free)
}

impl FileLogStore {
    /// Opens (or creates) the log in `dir`: takes the directory lock, recovers the log and
    /// starts the writer and janitor threads.
    ///
    /// Fails with [`WalError::Locked`] if another store holds the directory,
    /// [`WalError::Corrupt`] (naming file and offset) if the log is damaged anywhere but in
    /// a torn final write, [`WalError::UnsupportedVersion`] for files of another format
    /// version, and [`WalError::Io`] (naming the path) for system call failures.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<FileLogStore, WalError> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let io = Io::new(options.fault_hook.clone());
        if !dir.exists() {
            if !options.create_if_missing {
                return Err(WalError::io("open", &dir, io::ErrorKind::NotFound.into()));
            }
            std::fs::create_dir_all(&dir).map_err(|e| WalError::io("create directory", &dir, e))?;
            sync_parent(&io, &dir)?;
        }
        let dir_file = open_ro(&dir)?;
        let lock = DirLock::acquire(&io, &dir, &dir_file)?;
        let recovery = recover(&io, &dir, options.segment_size).map_err(|f| f.error)?;
        let discarded = recovery.discarded;
        let reinstall = recovery.snapshot.clone().filter(|_| discarded);
        let free = housekeeping(&io, &dir, &dir_file, &recovery)?;

        let mut state = LogState::new(options.cache_bytes);
        state.hard_state = recovery.hard_state;
        state.snapshot = recovery.snapshot.clone();
        state.first = recovery.first;
        state.base_term = recovery.base_term;
        for seg in &recovery.segments {
            let file = Arc::new(open_ro(&seg.path)?);
            let path = seg.path.clone();
            state.segments.insert(seg.seq, Segment { path, file });
        }
        let (prev_seq, prev_end) = recovery.segments.last().map_or((0, 0), |s| (s.seq, s.end));
        state.newest_seq = prev_seq;
        state.durable_end = prev_end;
        let init = WriterInit {
            prev_seq,
            prev_end,
            checkpoint: Checkpoint {
                hard_state: recovery.hard_state,
                snapshot: recovery.snapshot.clone(),
            },
            last: recovery.first + recovery.locs.len() as u64 - 1,
            next_batch: recovery.next_batch,
        };
        state.locs = recovery.locs;
        tracing::info!(
            dir = %dir.display(),
            first = state.first,
            last = state.last(),
            segments = recovery.stats.segments,
            millis = recovery.stats.duration.as_millis() as u64,
            "log recovered"
        );

        let shared = Arc::new(Shared {
            dir,
            dir_file,
            io,
            options,
            state: RwLock::new(state),
            queue: Queue::default(),
            janitor: Janitor::new(free, !discarded),
            metrics: Metrics::default(),
            next_gen: AtomicU64::new(recovery.next_gen),
            next_seq: AtomicU64::new(recovery.next_seq),
            own_from: recovery.next_seq,
            failure: Mutex::new(None),
            staged: Mutex::new(HashMap::new()),
            recovery: recovery.stats,
            _lock: lock,
        });
        let janitor_shared = shared.clone();
        let janitor = std::thread::Builder::new()
            .name("raft-wal-janitor".into())
            .spawn(move || janitor::run(janitor_shared))
            .map_err(|e| WalError::io("spawn janitor thread", &shared.dir, e))?;
        let writer = Writer::new(shared.clone(), init);
        let writer = match std::thread::Builder::new()
            .name("raft-wal-writer".into())
            .spawn(move || writer.run())
        {
            Ok(handle) => handle,
            Err(e) => {
                shared.janitor.shutdown();
                let _ = janitor.join();
                return Err(WalError::io("spawn writer thread", &shared.dir, e));
            }
        };
        let store = FileLogStore {
            shared,
            writer: Mutex::new(Some(writer)),
            janitor: Mutex::new(Some(janitor)),
        };
        if let Some(snap) = reinstall {
            // The restart rule discarded entries that are still in the segments; a
            // snapshot-install record makes the discard durable before any segment is
            // cleaned up (otherwise replaying the segments left could revive them).
            let (tx, rx) = std::sync::mpsc::channel();
            let done: Completion = Box::new(move |result| {
                let _ = tx.send(result);
            });
            if let Some(Op::Reinstall(_, done)) = store.shared.queue.push(Op::Reinstall(snap, done)) {
                done(Err(StoreError::new(WalError::Closed)));
            }
            let written = rx
                .recv()
                .unwrap_or_else(|_| Err(StoreError::new(WalError::Closed)));
            match written {
                Ok(()) => store.shared.janitor.request_cleanup(),
                // A log at the end of its numbers cannot take the record; it opens as any
                // such log does, readable and refusing writes (the writer has failed). The
                // discard stays in memory only, and no segment is cleaned up, so every
                // later open applies the same rule to the same files.
                Err(err)
                    if matches!(
                        err.backend().downcast_ref::<WalError>(),
                        Some(WalError::Exhausted { .. })
                    ) =>
                {
                    tracing::warn!(%err, "the log has run out of numbers: open for reading only");
                }
                Err(err) => {
                    store.shutdown();
                    return Err(match err.backend().downcast_ref::<WalError>() {
                        Some(wal) => wal.clone(),
                        None => WalError::Closed,
                    });
                }
            }
        }
        Ok(store)
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Figures about the recovery done by [`FileLogStore::open`].
    pub fn recovery_stats(&self) -> RecoveryStats {
        self.shared.recovery
    }

    /// The error that made the store refuse writes, if one did.
    pub fn failure(&self) -> Option<StoreError> {
        self.shared.failure.lock().expect("failure lock").clone()
    }

    /// Where the durable data ends: the newest segment and the offset after its last
    /// durable commit record. `None` before anything was written. For diagnostics and tests.
    pub fn durable_position(&self) -> Option<WalPosition> {
        let state = self.shared.state();
        let segment = state.segments.get(&state.newest_seq)?;
        Some(WalPosition {
            segment: segment.path.clone(),
            offset: state.durable_end,
        })
    }

    /// Writes a snapshot file from `data`, durably, and returns its reference (not yet
    /// referred to from the log).
    async fn write_streamed(
        &self,
        meta: SnapshotMeta,
        mut data: SnapshotStream,
    ) -> Result<SnapRef, StoreError> {
        // A blocking thread writes the file while this task reads the data: at most
        // SNAPSHOT_CHUNKS_QUEUED chunks wait between them. The end is said explicitly, so
        // that a caller that gives up part way leaves nothing behind.
        let (tx, mut rx) = mpsc::channel(SNAPSHOT_CHUNKS_QUEUED);
        let shared = self.shared.clone();
        let writer = tokio::task::spawn_blocking(move || shared.stream_snapshot(&meta, &mut rx));
        loop {
            let chunk = match data.next_chunk().await {
                Ok(Some(data)) => Chunk::Data(data),
                Ok(None) => Chunk::End,
                Err(e) => Chunk::Failed(e),
            };
            let last = !matches!(chunk, Chunk::Data(_));
            // A closed channel means the writer failed: its error comes back below.
            if tx.send(chunk).await.is_err() || last {
                break;
            }
        }
        drop(tx);
        writer.await.map_err(join_error)?.map_err(StoreError::new)
    }

    fn submit(&self, op: Op) -> Result<(), StoreError> {
        match self.shared.queue.push(op) {
            None => Ok(()),
            Some(_) => Err(StoreError::new(WalError::Closed)),
        }
    }

    /// Blocking form of [`LogStore::flush`]. Must not be called on an async runtime thread.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Op::Flush(tx))?;
        rx.blocking_recv()
            .unwrap_or_else(|_| Err(StoreError::new(WalError::Closed)))
    }

    /// Blocking form of [`LogStore::save_snapshot`]. Must not be called on an async runtime
    /// thread.
    pub fn save_snapshot_blocking(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let snap = self.shared.write_snapshot(&snapshot).map_err(StoreError::new)?;
        let (tx, rx) = oneshot::channel();
        self.submit(Op::SaveSnapshot(snap, tx))?;
        rx.blocking_recv()
            .unwrap_or_else(|_| Err(StoreError::new(WalError::Closed)))
    }

    /// Blocking form of [`LogStore::load_snapshot`]: reads the stored snapshot and verifies
    /// its checksum.
    pub fn load_snapshot_blocking(&self) -> Result<Option<Snapshot>, WalError> {
        let shared = &self.shared;
        shared.with_snapshot(|snap| read_snapshot(&shared.io, &shared.dir, snap))
    }

    /// Opens the stored snapshot as a stream (for sending it to a peer in chunks without
    /// loading it into memory). Blocking: on an async runtime, call it from
    /// `spawn_blocking`.
    pub fn snapshot_reader(&self) -> Result<Option<SnapshotReader>, WalError> {
        let shared = &self.shared;
        shared.with_snapshot(|snap| SnapshotReader::open(&shared.io, &shared.dir, snap))
    }

    /// Waits for every queued write, stops the threads and releases the directory lock.
    /// Returns the error that stopped the writer, if one did. Dropping the store does the
    /// same without reporting.
    pub fn close(self) -> Result<(), StoreError> {
        self.shutdown();
        match self.failure() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn shutdown(&self) {
        self.shared.queue.close();
        if let Some(writer) = self.writer.lock().expect("thread handle lock").take() {
            // Dropped from a completion: the writer exits by itself once it returns.
            if writer.thread().id() != std::thread::current().id() {
                let _ = writer.join();
            }
        }
        self.shared.janitor.shutdown();
        if let Some(janitor) = self.janitor.lock().expect("thread handle lock").take() {
            let _ = janitor.join();
        }
    }
}

impl Drop for FileLogStore {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn join_error(err: tokio::task::JoinError) -> StoreError {
    match err.try_into_panic() {
        Ok(panic) => std::panic::resume_unwind(panic),
        Err(_) => StoreError::new(WalError::Closed),
    }
}

#[async_trait]
impl LogStore for FileLogStore {
    fn initial_state(&self) -> Result<InitialState, StoreError> {
        let state = self.shared.state();
        Ok(InitialState {
            hard_state: state.hard_state,
            conf_state: state
                .snapshot
                .as_ref()
                .map(|s| s.meta.conf_state.clone())
                .unwrap_or_default(),
        })
    }

    fn first_index(&self) -> Index {
        self.shared.state().first
    }

    fn last_index(&self) -> Index {
        self.shared.state().last()
    }

    fn term(&self, index: Index) -> Result<Term, StorageError> {
        self.shared.state().term(index)
    }

    fn entries(&self, low: Index, high: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        read_entries(&self.shared.state, &self.shared.io, low, high, max_bytes)
    }

    fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.shared.state().snapshot.as_ref().map(|s| s.meta.clone())
    }

    fn snapshot_len(&self) -> Option<u64> {
        self.shared.state().snapshot.as_ref().map(|s| s.data_len)
    }

    fn append(&self, write: LogWrite, done: Completion) {
        if let Some(Op::Write(_, done)) = self.shared.queue.push(Op::Write(write, done)) {
            done(Err(StoreError::new(WalError::Closed)));
        }
    }

    fn compact(&self, index: Index) -> Result<(), StoreError> {
        let changed = self
            .shared
            .state
            .write()
            .expect("log state lock")
            .compact(index)
            .map_err(StoreError::new)?;
        if changed {
            self.shared.janitor.request_cleanup();
        }
        Ok(())
    }

    async fn save_snapshot(&self, meta: SnapshotMeta, data: SnapshotStream) -> Result<(), StoreError> {
        let snap = self.write_streamed(meta, data).await?;
        let (tx, rx) = oneshot::channel();
        self.submit(Op::SaveSnapshot(snap, tx))?;
        rx.await
            .unwrap_or_else(|_| Err(StoreError::new(WalError::Closed)))
    }

    /// Writes the snapshot file, then keeps its reference for the write that installs it,
    /// and opens it for the state machine to restore from. Until then the file is referred
    /// to by nothing in the log: after a crash, recovery deletes it.
    async fn stage_snapshot(&self, meta: SnapshotMeta, data: SnapshotStream) -> Result<Staged, StoreError> {
        let snap = self.write_streamed(meta, data).await?;
        let shared = self.shared.clone();
        let reader = tokio::task::spawn_blocking(move || {
            let opened = SnapshotReader::open(&shared.io, &shared.dir, &snap);
            match &opened {
                Ok(_) => {
                    shared
                        .staged
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(snap.generation, snap);
                }
                Err(_) => shared.janitor.delete_snapshots([snap.generation]),
            }
            opened
        })
        .await
        .map_err(join_error)?
        .map_err(StoreError::new)?;
        let meta = reader.meta().clone();
        let id = reader.generation();
        Ok(Staged {
            snapshot: StagedSnapshot { meta, id },
            data: reader.into_stream(),
        })
    }

    fn discard_staged(&self, staged: &StagedSnapshot) {
        let removed = self
            .shared
            .staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&staged.id);
        if removed.is_some() {
            self.shared.janitor.delete_snapshots([staged.id]);
        }
    }

    async fn load_snapshot(&self) -> Result<Option<StoredSnapshot>, StoreError> {
        let shared = self.shared.clone();
        let reader = tokio::task::spawn_blocking(move || {
            shared.with_snapshot(|snap| SnapshotReader::open(&shared.io, &shared.dir, snap))
        })
        .await
        .map_err(join_error)?
        .map_err(StoreError::new)?;
        Ok(reader.map(|reader| StoredSnapshot {
            meta: reader.meta().clone(),
            data: reader.into_stream(),
        }))
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Op::Flush(tx))?;
        rx.await
            .unwrap_or_else(|_| Err(StoreError::new(WalError::Closed)))
    }

    fn metrics(&self) -> StoreMetrics {
        let m = &self.shared.metrics;
        StoreMetrics {
            writes: m.writes.load(Ordering::Relaxed),
            entries: m.entries.load(Ordering::Relaxed),
            bytes: m.bytes.load(Ordering::Relaxed),
            fsyncs: m.fsyncs.load(Ordering::Relaxed),
        }
    }
}
