//! [`FileWal`]: opening a directory, the log of each Raft group on it ([`GroupLog`], a
//! [`LogStore`]), and [`FileLogStore`], the log of a single group.

use std::collections::{HashMap, HashSet};
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
use crate::recovery::{RecoveredGroup, Recovery, RecoveryStats, recover};
use crate::snapshot::{SnapshotReader, read_snapshot, stream_snapshot_file, write_snapshot_file};
use crate::state::{GroupState, LogState, Segment, read_entries};
use crate::writer::{Op, Queue, Reply, Writer, WriterInit};

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
    /// log yet, by generation (their id), with the group that staged them.
    pub staged: Mutex<HashMap<u64, (u64, SnapRef)>>,
    /// The groups whose [`GroupLog`] is open.
    pub open_groups: Mutex<HashSet<u64>>,
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

    /// Runs `f` on a group's current snapshot reference, retrying if a newer snapshot
    /// replaced (and deleted) the file in between.
    fn with_snapshot<T>(
        &self,
        gid: u64,
        f: impl Fn(&SnapRef) -> Result<T, WalError>,
    ) -> Result<Option<T>, WalError> {
        let mut tries = 0;
        loop {
            let Some(snap) = self.state().group(gid).snapshot.clone() else {
                return Ok(None);
            };
            match f(&snap) {
                Ok(value) => return Ok(Some(value)),
                Err(err) => {
                    let gone = err
                        .io_error()
                        .is_some_and(|e| e.kind() == io::ErrorKind::NotFound);
                    let replaced = self.state().group(gid).snapshot.as_ref().map(|s| s.generation)
                        != Some(snap.generation);
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

impl Shared {
    fn failure(&self) -> Option<StoreError> {
        self.failure.lock().expect("failure lock").clone()
    }

    fn durable_position(&self) -> Option<WalPosition> {
        let state = self.state();
        let segment = state.segments.get(&state.newest_seq)?;
        Some(WalPosition {
            segment: segment.path.clone(),
            offset: state.durable_end,
        })
    }

    fn metrics(&self) -> StoreMetrics {
        let m = &self.metrics;
        StoreMetrics {
            writes: m.writes.load(Ordering::Relaxed),
            entries: m.entries.load(Ordering::Relaxed),
            bytes: m.bytes.load(Ordering::Relaxed),
            fsyncs: m.fsyncs.load(Ordering::Relaxed),
        }
    }

    fn submit(&self, op: Op) -> Result<(), StoreError> {
        match self.queue.push(op) {
            None => Ok(()),
            Some(_) => Err(StoreError::new(WalError::Closed)),
        }
    }

    /// Queues an op answered on a reply channel and waits for the answer, blocking.
    fn ask_blocking(&self, op: impl FnOnce(Reply) -> Op) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.submit(op(tx))?;
        rx.blocking_recv()
            .unwrap_or_else(|_| Err(StoreError::new(WalError::Closed)))
    }

    /// Queues an op answered on a reply channel and waits for the answer.
    async fn ask(&self, op: impl FnOnce(Reply) -> Op) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.submit(op(tx))?;
        rx.await
            .unwrap_or_else(|_| Err(StoreError::new(WalError::Closed)))
    }
}

/// The threads of an open log, shared by its [`FileWal`] and every [`GroupLog`]: the log
/// stays open while any of them is in use, and closes when the last goes.
struct Threads {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    janitor: Mutex<Option<JoinHandle<()>>>,
}

impl Threads {
    /// Waits for every queued write, stops the threads and releases the directory lock.
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

    /// Shuts down and returns the error that stopped the writer, if one did.
    fn close(&self) -> Result<(), StoreError> {
        self.shutdown();
        match self.shared.failure() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A write-ahead log on local files shared by many Raft groups: a segmented log with
/// group commit, where one `fdatasync` makes durable the writes of every group queued
/// together.
///
/// Open it with [`FileWal::open`], then take each group's [`LogStore`] with
/// [`FileWal::group`] and hand it to that group's node. Recovery splits the log again by
/// group; each group compacts and snapshots on its own, and a segment goes once no group
/// needs an entry in it.
///
/// Every segment opens with a checkpoint of every group (40 to 120 bytes each, about 1 MB for
/// 10,000 groups), so [`Options::segment_size`] should be many times that: with smaller
/// segments the log stays correct but opens a new segment at almost every group commit.
///
/// ```
/// use raft_core::{Entry, EntryPayload, HardState};
/// use raft_runtime::{LogStore, LogWrite};
/// use raft_storage_file::{FileWal, Options};
///
/// let dir = tempfile::tempdir()?;
/// let wal = FileWal::open(dir.path(), Options::default())?;
/// let (one, two) = (wal.group(1)?, wal.group(2)?);
/// let write = |term| LogWrite {
///     snapshot: None,
///     entries: vec![Entry::new(term, 1, EntryPayload::Normal("hello".into()))],
///     hard_state: Some(HardState { term, vote: Some(1), commit: 0 }),
/// };
/// one.append(write(3), Box::new(|result| result.expect("durable")));
/// two.append(write(5), Box::new(|result| result.expect("durable")));
/// wal.flush_blocking()?;
/// drop((one, two));
/// drop(wal);
///
/// let wal = FileWal::open(dir.path(), Options::default())?;
/// assert_eq!(wal.groups(), vec![1, 2]);
/// assert_eq!(wal.group(2)?.term(1)?, 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FileWal {
    threads: Arc<Threads>,
}

impl std::fmt::Debug for FileWal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWal")
            .field("dir", &self.threads.shared.dir)
            .finish_non_exhaustive()
    }
}

fn group_state(recovered: RecoveredGroup, cache_limit: u64) -> GroupState {
    let mut group = GroupState::new(cache_limit);
    group.hard_state = recovered.hard_state;
    group.snapshot = recovered.snapshot;
    group.first = recovered.first;
    group.base_term = recovered.base_term;
    group.locs = recovered.locs;
    group
}

impl FileWal {
    /// Opens (or creates) the log in `dir`: takes the directory lock, recovers the log of
    /// every group and starts the writer and janitor threads.
    ///
    /// Fails with [`WalError::Locked`] if another store holds the directory,
    /// [`WalError::Corrupt`] (naming file and offset) if the log is damaged anywhere but in
    /// a torn final write, [`WalError::UnsupportedVersion`] for files of another format
    /// version, and [`WalError::Io`] (naming the path) for system call failures.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<FileWal, WalError> {
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
        let discarded = recovery.discarded();
        let free = housekeeping(&io, &dir, &dir_file, &recovery)?;

        let mut state = LogState::new(options.cache_bytes);
        for seg in &recovery.segments {
            let file = Arc::new(open_ro(&seg.path)?);
            let path = seg.path.clone();
            state.segments.insert(seg.seq, Segment { path, file });
        }
        let (prev_seq, prev_end) = recovery.segments.last().map_or((0, 0), |s| (s.seq, s.end));
        state.newest_seq = prev_seq;
        state.durable_end = prev_end;
        let mut reinstall = Vec::new();
        let mut writer_groups = std::collections::BTreeMap::new();
        let (mut entries, groups) = (0, recovery.groups.len());
        for (gid, recovered) in recovery.groups {
            if recovered.discarded
                && let Some(snap) = &recovered.snapshot
            {
                reinstall.push((gid, snap.clone()));
            }
            let checkpoint = Checkpoint {
                hard_state: recovered.hard_state,
                snapshot: recovered.snapshot.clone(),
            };
            entries += recovered.locs.len();
            let group = group_state(recovered, options.cache_bytes);
            writer_groups.insert(gid, (checkpoint, group.last()));
            state.groups.insert(gid, group);
        }
        let init = WriterInit {
            prev_seq,
            prev_end,
            groups: writer_groups,
            next_batch: recovery.next_batch,
        };
        tracing::info!(
            dir = %dir.display(),
            groups,
            entries,
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
            open_groups: Mutex::new(HashSet::new()),
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
        let wal = FileWal {
            threads: Arc::new(Threads {
                shared,
                writer: Mutex::new(Some(writer)),
                janitor: Mutex::new(Some(janitor)),
            }),
        };
        if !reinstall.is_empty() {
            wal.reinstall(reinstall)?;
        }
        Ok(wal)
    }

    /// The restart rule discarded entries of these groups that are still in the segments:
    /// a snapshot-install record for each makes the discard durable before any segment is
    /// cleaned up (otherwise replaying the segments left could revive them).
    fn reinstall(&self, groups: Vec<(u64, SnapRef)>) -> Result<(), WalError> {
        let shared = &self.threads.shared;
        let (tx, rx) = std::sync::mpsc::channel();
        let count = groups.len();
        for (gid, snap) in groups {
            let tx = tx.clone();
            let done: Completion = Box::new(move |result| {
                let _ = tx.send(result);
            });
            if let Some(Op::Reinstall(_, _, done)) = shared.queue.push(Op::Reinstall(gid, snap, done)) {
                done(Err(StoreError::new(WalError::Closed)));
            }
        }
        drop(tx);
        let mut written = Ok(());
        for _ in 0..count {
            let result = rx
                .recv()
                .unwrap_or_else(|_| Err(StoreError::new(WalError::Closed)));
            if written.is_ok() {
                written = result;
            }
        }
        match written {
            Ok(()) => shared.janitor.request_cleanup(),
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
                self.threads.shutdown();
                return Err(match err.backend().downcast_ref::<WalError>() {
                    Some(wal) => wal.clone(),
                    None => WalError::Closed,
                });
            }
        }
        Ok(())
    }

    /// The log of Raft group `group`: a [`LogStore`] for that group's node. A group never
    /// written to starts empty. Fails with [`WalError::GroupInUse`] while another
    /// [`GroupLog`] of the group is open (dropping it releases the group).
    pub fn group(&self, group: u64) -> Result<GroupLog, WalError> {
        let shared = &self.threads.shared;
        if !shared.open_groups.lock().expect("open groups lock").insert(group) {
            return Err(WalError::GroupInUse { group });
        }
        Ok(GroupLog {
            threads: self.threads.clone(),
            gid: group,
        })
    }

    /// The groups with state in the log (entries, a hard state or a snapshot), in order.
    pub fn groups(&self) -> Vec<u64> {
        let mut groups: Vec<u64> = self.threads.shared.state().groups.keys().copied().collect();
        groups.sort_unstable();
        groups
    }

    /// Removes a group from the log, durably: its entries, hard state and snapshot go (the
    /// segments and snapshot file are reclaimed in the background). Fails with
    /// [`WalError::GroupInUse`] while the group's log is open. Removing a group the log
    /// does not hold does nothing.
    pub async fn remove_group(&self, group: u64) -> Result<(), StoreError> {
        let _claim = self.claim(group)?;
        self.threads.shared.ask(|reply| Op::Remove(group, reply)).await
    }

    /// Blocking form of [`FileWal::remove_group`]. Must not be called on an async runtime
    /// thread.
    pub fn remove_group_blocking(&self, group: u64) -> Result<(), StoreError> {
        let _claim = self.claim(group)?;
        self.threads.shared.ask_blocking(|reply| Op::Remove(group, reply))
    }

    /// Holds `group` as open for the life of the returned guard.
    fn claim(&self, group: u64) -> Result<GroupLog, StoreError> {
        self.group(group).map_err(StoreError::new)
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.threads.shared.dir
    }

    /// Figures about the recovery done by [`FileWal::open`].
    pub fn recovery_stats(&self) -> RecoveryStats {
        self.threads.shared.recovery
    }

    /// The error that made the log refuse writes, if one did.
    pub fn failure(&self) -> Option<StoreError> {
        self.threads.shared.failure()
    }

    /// Where the durable data ends: the newest segment and the offset after its last
    /// durable commit record. `None` before anything was written. For diagnostics and tests.
    pub fn durable_position(&self) -> Option<WalPosition> {
        self.threads.shared.durable_position()
    }

    /// Counters of the whole log (all groups): writes, entries, bytes and `fdatasync`s.
    pub fn metrics(&self) -> StoreMetrics {
        self.threads.shared.metrics()
    }

    /// Waits until every write queued so far, by any group, is durable (or failed).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.threads.shared.ask(Op::Flush).await
    }

    /// Blocking form of [`FileWal::flush`]. Must not be called on an async runtime thread.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.threads.shared.ask_blocking(Op::Flush)
    }

    /// Waits for every queued write, stops the threads and releases the directory lock,
    /// even while groups' logs are open (their later writes fail with
    /// [`WalError::Closed`]). Returns the error that stopped the writer, if one did.
    /// Dropping the `FileWal` and every [`GroupLog`] does the same without reporting.
    pub fn close(self) -> Result<(), StoreError> {
        self.threads.close()
    }
}

/// One Raft group's log on a [`FileWal`]: the [`LogStore`] of that group's node. Its
/// reads and writes see the group's log alone; its writes share the log's group commits
/// with every other group's. Dropping it releases the group (see [`FileWal::group`]).
pub struct GroupLog {
    threads: Arc<Threads>,
    gid: u64,
}

impl std::fmt::Debug for GroupLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupLog")
            .field("dir", &self.threads.shared.dir)
            .field("group", &self.gid)
            .finish_non_exhaustive()
    }
}

impl Drop for GroupLog {
    fn drop(&mut self) {
        self.threads
            .shared
            .open_groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.gid);
    }
}

impl GroupLog {
    fn shared(&self) -> &Arc<Shared> {
        &self.threads.shared
    }

    /// The group's id.
    pub fn group(&self) -> u64 {
        self.gid
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
        let shared = self.shared().clone();
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

    /// Blocking form of [`LogStore::flush`]. Must not be called on an async runtime thread.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.shared().ask_blocking(Op::Flush)
    }

    /// Blocking form of [`LogStore::save_snapshot`]. Must not be called on an async runtime
    /// thread.
    pub fn save_snapshot_blocking(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let snap = self.shared().write_snapshot(&snapshot).map_err(StoreError::new)?;
        self.shared()
            .ask_blocking(|reply| Op::SaveSnapshot(self.gid, snap, reply))
    }

    /// Blocking form of [`LogStore::load_snapshot`]: reads the stored snapshot and verifies
    /// its checksum.
    pub fn load_snapshot_blocking(&self) -> Result<Option<Snapshot>, WalError> {
        let shared = self.shared();
        shared.with_snapshot(self.gid, |snap| read_snapshot(&shared.io, &shared.dir, snap))
    }

    /// Opens the stored snapshot as a stream (for sending it to a peer in chunks without
    /// loading it into memory). Blocking: on an async runtime, call it from
    /// `spawn_blocking`.
    pub fn snapshot_reader(&self) -> Result<Option<SnapshotReader>, WalError> {
        let shared = self.shared();
        shared.with_snapshot(self.gid, |snap| {
            SnapshotReader::open(&shared.io, &shared.dir, snap)
        })
    }
}

fn join_error(err: tokio::task::JoinError) -> StoreError {
    match err.try_into_panic() {
        Ok(panic) => std::panic::resume_unwind(panic),
        Err(_) => StoreError::new(WalError::Closed),
    }
}

#[async_trait]
impl LogStore for GroupLog {
    fn initial_state(&self) -> Result<InitialState, StoreError> {
        let state = self.shared().state();
        let group = state.group(self.gid);
        Ok(InitialState {
            hard_state: group.hard_state,
            conf_state: group
                .snapshot
                .as_ref()
                .map(|s| s.meta.conf_state.clone())
                .unwrap_or_default(),
        })
    }

    fn first_index(&self) -> Index {
        self.shared().state().group(self.gid).first
    }

    fn last_index(&self) -> Index {
        self.shared().state().group(self.gid).last()
    }

    fn term(&self, index: Index) -> Result<Term, StorageError> {
        self.shared().state().group(self.gid).term(index)
    }

    fn entries(&self, low: Index, high: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        let shared = self.shared();
        read_entries(&shared.state, &shared.io, self.gid, low, high, max_bytes)
    }

    fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        let state = self.shared().state();
        state.group(self.gid).snapshot.as_ref().map(|s| s.meta.clone())
    }

    fn snapshot_len(&self) -> Option<u64> {
        let state = self.shared().state();
        state.group(self.gid).snapshot.as_ref().map(|s| s.data_len)
    }

    fn append(&self, write: LogWrite, done: Completion) {
        if let Some(Op::Write(_, _, done)) = self.shared().queue.push(Op::Write(self.gid, write, done)) {
            done(Err(StoreError::new(WalError::Closed)));
        }
    }

    fn compact(&self, index: Index) -> Result<(), StoreError> {
        let changed = {
            let mut state = self.shared().state.write().expect("log state lock");
            if state.groups.contains_key(&self.gid) {
                state
                    .change(self.gid, |group| group.compact(index))
                    .map_err(StoreError::new)?
            } else {
                // Nothing stored: no snapshot covers any index but 0.
                GroupState::new(0).compact(index).map_err(StoreError::new)?
            }
        };
        if changed {
            self.shared().janitor.request_cleanup();
        }
        Ok(())
    }

    async fn save_snapshot(&self, meta: SnapshotMeta, data: SnapshotStream) -> Result<(), StoreError> {
        let snap = self.write_streamed(meta, data).await?;
        let gid = self.gid;
        self.shared()
            .ask(|reply| Op::SaveSnapshot(gid, snap, reply))
            .await
    }

    /// Writes the snapshot file, then keeps its reference for the write that installs it,
    /// and opens it for the state machine to restore from. Until then the file is referred
    /// to by nothing in the log: after a crash, recovery deletes it.
    async fn stage_snapshot(&self, meta: SnapshotMeta, data: SnapshotStream) -> Result<Staged, StoreError> {
        let snap = self.write_streamed(meta, data).await?;
        let shared = self.shared().clone();
        let gid = self.gid;
        let reader = tokio::task::spawn_blocking(move || {
            let opened = SnapshotReader::open(&shared.io, &shared.dir, &snap);
            match &opened {
                Ok(_) => {
                    shared
                        .staged
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(snap.generation, (gid, snap));
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
        let removed = {
            let mut map = self.shared().staged.lock().unwrap_or_else(|e| e.into_inner());
            // A group gives up only what it staged itself.
            match map.get(&staged.id) {
                Some((owner, _)) if *owner == self.gid => map.remove(&staged.id),
                _ => None,
            }
        };
        if removed.is_some() {
            self.shared().janitor.delete_snapshots([staged.id]);
        }
    }

    async fn load_snapshot(&self) -> Result<Option<StoredSnapshot>, StoreError> {
        let shared = self.shared().clone();
        let gid = self.gid;
        let reader = tokio::task::spawn_blocking(move || {
            shared.with_snapshot(gid, |snap| SnapshotReader::open(&shared.io, &shared.dir, snap))
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
        self.shared().ask(Op::Flush).await
    }

    /// The counters of the whole log, which this group shares with the others.
    fn metrics(&self) -> StoreMetrics {
        self.shared().metrics()
    }
}

/// A Raft log store on local files for a single group: a segmented write-ahead log with
/// group commit (the log of group 0 on a [`FileWal`] of its own).
///
/// Open it with [`FileLogStore::open`] and hand it to the runtime as a [`LogStore`]. See the
/// crate documentation for the on-disk format and the recovery rules.
pub struct FileLogStore {
    log: GroupLog,
}

impl std::fmt::Debug for FileLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLogStore")
            .field("dir", &self.log.shared().dir)
            .finish_non_exhaustive()
    }
}

impl FileLogStore {
    /// Opens (or creates) the log in `dir`: takes the directory lock, recovers the log and
    /// starts the writer and janitor threads.
    ///
    /// Fails with [`WalError::Locked`] if another store holds the directory,
    /// [`WalError::Corrupt`] (naming file and offset) if the log is damaged anywhere but in
    /// a torn final write, [`WalError::UnsupportedVersion`] for files of another format
    /// version, [`WalError::SharedLog`] for a log that holds other groups than group 0
    /// (open it with [`FileWal`]), and [`WalError::Io`] (naming the path) for system call
    /// failures.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<FileLogStore, WalError> {
        let wal = FileWal::open(dir, options)?;
        let others: Vec<u64> = wal.groups().into_iter().filter(|&g| g != 0).take(10).collect();
        if !others.is_empty() {
            return Err(WalError::SharedLog {
                dir: wal.dir().to_path_buf(),
                groups: others,
            });
        }
        let log = wal.group(0)?;
        Ok(FileLogStore { log })
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.log.shared().dir
    }

    /// Figures about the recovery done by [`FileLogStore::open`].
    pub fn recovery_stats(&self) -> RecoveryStats {
        self.log.shared().recovery
    }

    /// The error that made the store refuse writes, if one did.
    pub fn failure(&self) -> Option<StoreError> {
        self.log.shared().failure()
    }

    /// Where the durable data ends: the newest segment and the offset after its last
    /// durable commit record. `None` before anything was written. For diagnostics and tests.
    pub fn durable_position(&self) -> Option<WalPosition> {
        self.log.shared().durable_position()
    }

    /// Blocking form of [`LogStore::flush`]. Must not be called on an async runtime thread.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.log.flush_blocking()
    }

    /// Blocking form of [`LogStore::save_snapshot`]. Must not be called on an async runtime
    /// thread.
    pub fn save_snapshot_blocking(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.log.save_snapshot_blocking(snapshot)
    }

    /// Blocking form of [`LogStore::load_snapshot`]: reads the stored snapshot and verifies
    /// its checksum.
    pub fn load_snapshot_blocking(&self) -> Result<Option<Snapshot>, WalError> {
        self.log.load_snapshot_blocking()
    }

    /// Opens the stored snapshot as a stream (for sending it to a peer in chunks without
    /// loading it into memory). Blocking: on an async runtime, call it from
    /// `spawn_blocking`.
    pub fn snapshot_reader(&self) -> Result<Option<SnapshotReader>, WalError> {
        self.log.snapshot_reader()
    }

    /// Waits for every queued write, stops the threads and releases the directory lock.
    /// Returns the error that stopped the writer, if one did. Dropping the store does the
    /// same without reporting.
    pub fn close(self) -> Result<(), StoreError> {
        self.log.threads.close()
    }
}

#[async_trait]
impl LogStore for FileLogStore {
    fn initial_state(&self) -> Result<InitialState, StoreError> {
        self.log.initial_state()
    }

    fn first_index(&self) -> Index {
        self.log.first_index()
    }

    fn last_index(&self) -> Index {
        self.log.last_index()
    }

    fn term(&self, index: Index) -> Result<Term, StorageError> {
        self.log.term(index)
    }

    fn entries(&self, low: Index, high: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        self.log.entries(low, high, max_bytes)
    }

    fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.log.snapshot_meta()
    }

    fn snapshot_len(&self) -> Option<u64> {
        self.log.snapshot_len()
    }

    fn append(&self, write: LogWrite, done: Completion) {
        self.log.append(write, done)
    }

    fn compact(&self, index: Index) -> Result<(), StoreError> {
        self.log.compact(index)
    }

    async fn save_snapshot(&self, meta: SnapshotMeta, data: SnapshotStream) -> Result<(), StoreError> {
        self.log.save_snapshot(meta, data).await
    }

    async fn stage_snapshot(&self, meta: SnapshotMeta, data: SnapshotStream) -> Result<Staged, StoreError> {
        self.log.stage_snapshot(meta, data).await
    }

    fn discard_staged(&self, staged: &StagedSnapshot) {
        self.log.discard_staged(staged)
    }

    async fn load_snapshot(&self) -> Result<Option<StoredSnapshot>, StoreError> {
        self.log.load_snapshot().await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.log.flush().await
    }

    fn metrics(&self) -> StoreMetrics {
        self.log.metrics()
    }
}
