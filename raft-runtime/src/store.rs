//! The log store plug-in: where a node's log, hard state and snapshots live durably.
//!
//! The runtime drives a [`LogStore`] in two ways:
//!
//! - **Writes** go through [`LogStore::append`], which must return at once: the store queues
//!   the write and calls the completion once it is durable. Writes become durable in the
//!   order they were submitted, so a store is free to coalesce every queued write into one
//!   write and one `fsync` (group commit).
//! - **Reads** ([`LogStore::entries`], [`LogStore::term`], the index bounds) are synchronous
//!   and must be cheap: the protocol calls them on its hot path. They must reflect every
//!   write whose completion has been called, and nothing that was overwritten.
//!
//! # Semantics every implementation must follow
//!
//! - A [`LogWrite`] is applied as one durable unit, in this order: the snapshot (if any)
//!   replaces the stored snapshot *and discards the whole log*; then the entries are appended
//!   after discarding any stored entries at or after the first new entry's index; then the
//!   hard state replaces the stored one. After a crash, either all of a completed write is
//!   there or (for a write whose completion was never called) any prefix of the queued writes
//!   may be there, but never a write without the writes queued before it.
//! - A snapshot received from a leader arrives as a stream: [`LogStore::stage_snapshot`]
//!   writes it durably beside the log without installing it, and a later [`LogWrite`]
//!   installs it by naming it ([`StagedSnapshot`]), as one durable unit with the rest of
//!   the write. The log's writes never wait for a snapshot's data to be written. A staged
//!   snapshot that no write installs is given up with [`LogStore::discard_staged`] (or, after
//!   a crash, when the store opens).
//! - [`LogStore::save_snapshot`] stores a snapshot taken locally; it does not touch the log.
//!   [`LogStore::compact`] then discards entries up to an index covered by the stored snapshot.
//! - On restart, a store that finds a stored snapshot at index `s` whose term differs from
//!   the log's entry at `s` discards the log (the snapshot came from a leader and the log
//!   diverged); if the terms agree it keeps the entries after `s`.
//! - A snapshot at index 0 is how a node bootstraps a new cluster: it carries the initial
//!   configuration and the state machine's initial state.
//! - An I/O error on the write path (above all a failed `fsync`) is fatal: the store fails
//!   that write and every later one, and never retries an `fsync`.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use raft_core::{Entry, HardState, Index, InitialState, SnapshotMeta, StorageError, Term};

use crate::snapshot_stream::SnapshotStream;

/// A snapshot held whole in memory: its metadata and the state machine's serialized state
/// (for stores' blocking helpers and tests; the runtime itself moves snapshots as
/// [`SnapshotStream`]s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// The state machine's state at `meta.index`, as produced by the state machine.
    pub data: Bytes,
}

/// A stored snapshot, opened for reading by [`LogStore::load_snapshot`].
#[derive(Debug)]
pub struct StoredSnapshot {
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// The state machine's state at `meta.index`, read as it is consumed.
    pub data: SnapshotStream,
}

/// A snapshot received from a leader and written durably by [`LogStore::stage_snapshot`],
/// not installed yet. A [`LogWrite`] installs it by naming it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedSnapshot {
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// The store's name for the staged data: unique among the snapshots the store has
    /// staged since it opened.
    pub id: u64,
}

/// What [`LogStore::stage_snapshot`] returns.
#[derive(Debug)]
pub struct Staged {
    /// The handle a [`LogWrite`] names to install the snapshot.
    pub snapshot: StagedSnapshot,
    /// The staged data, opened for reading from its start: the state machine restores from
    /// it once the snapshot is installed. It stays readable after the store discards or
    /// replaces the staged copy.
    pub data: SnapshotStream,
}

/// One write to make durable as a unit (see the module docs for the order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogWrite {
    /// A snapshot received from the leader, staged with [`LogStore::stage_snapshot`]:
    /// replaces the stored snapshot and the whole log.
    pub snapshot: Option<StagedSnapshot>,
    /// Entries to append, contiguous; stored entries at or after the first one's index are
    /// discarded first.
    pub entries: Vec<Entry>,
    /// The new hard state.
    pub hard_state: Option<HardState>,
}

impl LogWrite {
    /// Whether the write changes nothing.
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.entries.is_empty() && self.hard_state.is_none()
    }
}

/// A store failure. Cloneable, because one failed `fsync` fails every write it covered;
/// the backend's own typed error is inside (see [`StoreError::backend`]).
#[derive(Clone, Debug, thiserror::Error)]
#[error("log store: {0}")]
pub struct StoreError(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl StoreError {
    /// Wraps a backend error.
    pub fn new(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError(Arc::new(err))
    }

    /// The backend error, for downcasting to the store's own error type.
    pub fn backend(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }

    /// Whether both are the same failure (clones of one error).
    pub(crate) fn ptr_eq(&self, other: &StoreError) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Called once a write is durable (or failed). Must not block: it runs on the store's
/// writer thread.
pub type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send + 'static>;

/// Counters a store keeps for metrics and benchmarks. All are totals since the store opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreMetrics {
    /// Writes submitted with [`LogStore::append`] and completed.
    pub writes: u64,
    /// Entries written.
    pub entries: u64,
    /// Bytes written to the log (including framing).
    pub bytes: u64,
    /// `fsync`/`fdatasync` calls on the write path.
    pub fsyncs: u64,
}

/// Durable storage for one node's log, hard state and snapshots.
#[async_trait]
pub trait LogStore: Send + Sync + 'static {
    /// The persisted hard state and the configuration of the stored snapshot (the initial
    /// configuration for a bootstrapped node, empty for a node that never joined).
    fn initial_state(&self) -> Result<InitialState, StoreError>;

    /// Index of the first stored entry (the snapshot's index plus one).
    fn first_index(&self) -> Index;

    /// Index of the last stored entry (the snapshot's index when the log is empty).
    fn last_index(&self) -> Index;

    /// Term of the entry at `index`; at `first_index() - 1`, the snapshot's term.
    fn term(&self, index: Index) -> Result<Term, StorageError>;

    /// Entries in `[low, high)`, at most `max_bytes` by [`Entry::size`] but at least one.
    fn entries(&self, low: Index, high: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError>;

    /// Metadata of the stored snapshot, if any (cheap: kept in memory).
    fn snapshot_meta(&self) -> Option<SnapshotMeta>;

    /// Queues a write; `done` is called once it is durable. Returns at once.
    fn append(&self, write: LogWrite, done: Completion);

    /// Discards entries up to `index`, which the stored snapshot must cover. May happen in
    /// the background; reads may see the old first index for a while.
    fn compact(&self, index: Index) -> Result<(), StoreError>;

    /// Stores a snapshot taken locally at `meta.index`, durably, replacing the stored one if
    /// older. `data` is read a chunk at a time and should not be gathered whole: a
    /// snapshot may be larger than memory. If `data` ends in an error, nothing is stored
    /// and the call fails; so does it if it is dropped before it returns.
    async fn save_snapshot(&self, meta: SnapshotMeta, data: SnapshotStream) -> Result<(), StoreError>;

    /// Writes a snapshot received from a leader durably, beside the log, without installing
    /// it: the stored snapshot and the log stay as they are until a [`LogWrite`] names the
    /// returned [`StagedSnapshot`]. `data` is read a chunk at a time and must not be
    /// gathered whole. If `data` ends in an error, nothing is kept and the call fails; so
    /// does it if it is dropped before it returns.
    async fn stage_snapshot(&self, meta: SnapshotMeta, data: SnapshotStream) -> Result<Staged, StoreError>;

    /// Gives up a staged snapshot that no write will install. Returns at once; the store
    /// may delete its data in the background. Discarding a snapshot already installed (or
    /// unknown) does nothing.
    fn discard_staged(&self, staged: &StagedSnapshot);

    /// Opens the stored snapshot: its metadata, and its data read as it is consumed. A store
    /// that keeps a checksum fails the stream's last read if the data does not match it.
    async fn load_snapshot(&self) -> Result<Option<StoredSnapshot>, StoreError>;

    /// Waits until every write queued so far is durable (or failed).
    async fn flush(&self) -> Result<(), StoreError>;

    /// Bytes of the stored snapshot's state machine data, if the store knows them. The
    /// runtime spaces its snapshots by this size (see `Config::snapshot_log_percent`);
    /// `None`, the default, leaves them spaced by the entry and byte counts alone.
    fn snapshot_len(&self) -> Option<u64> {
        None
    }

    /// Counters for metrics.
    fn metrics(&self) -> StoreMetrics {
        StoreMetrics::default()
    }
}

/// A shared store is a store: the builder takes an `Arc<L>` as well as an `L`, for callers
/// that keep a reference (to close the store once the node has stopped).
#[async_trait]
impl<L: LogStore + ?Sized> LogStore for Arc<L> {
    fn initial_state(&self) -> Result<InitialState, StoreError> {
        (**self).initial_state()
    }

    fn first_index(&self) -> Index {
        (**self).first_index()
    }

    fn last_index(&self) -> Index {
        (**self).last_index()
    }

    fn term(&self, index: Index) -> Result<Term, StorageError> {
        (**self).term(index)
    }

    fn entries(&self, low: Index, high: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        (**self).entries(low, high, max_bytes)
    }

    fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        (**self).snapshot_meta()
    }

    fn append(&self, write: LogWrite, done: Completion) {
        (**self).append(write, done)
    }

    fn compact(&self, index: Index) -> Result<(), StoreError> {
        (**self).compact(index)
    }

    async fn save_snapshot(&self, meta: SnapshotMeta, data: SnapshotStream) -> Result<(), StoreError> {
        (**self).save_snapshot(meta, data).await
    }

    async fn stage_snapshot(&self, meta: SnapshotMeta, data: SnapshotStream) -> Result<Staged, StoreError> {
        (**self).stage_snapshot(meta, data).await
    }

    fn discard_staged(&self, staged: &StagedSnapshot) {
        (**self).discard_staged(staged)
    }

    async fn load_snapshot(&self) -> Result<Option<StoredSnapshot>, StoreError> {
        (**self).load_snapshot().await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        (**self).flush().await
    }

    fn snapshot_len(&self) -> Option<u64> {
        (**self).snapshot_len()
    }

    fn metrics(&self) -> StoreMetrics {
        (**self).metrics()
    }
}
