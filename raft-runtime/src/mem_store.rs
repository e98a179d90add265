//! An in-memory [`LogStore`] for tests and users' unit tests.
//!
//! Clones share the same state, so a test can stop a node and start it again over the same
//! store, as over the same disk. Writes may be given a latency (a simulated `fsync`): they
//! then go through a writer task that, like a real store, coalesces every write queued
//! while the previous one was "syncing" into one (group commit).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use raft_core::{
    Entry, HardState, Index, InitialState, LogStorage, MemStorage, SnapshotMeta, StorageError, Term,
};
use tokio::sync::mpsc;

use crate::snapshot_stream::SnapshotStream;
use crate::store::{
    Completion, LogStore, LogWrite, Staged, StagedSnapshot, StoreError, StoreMetrics, StoredSnapshot,
};

#[derive(Default)]
struct Inner {
    /// The log and hard state (the protocol crate's reference storage). Its own snapshot
    /// metadata is the log's compaction point, which may lag the stored snapshot.
    log: MemStorage,
    /// The stored snapshot.
    snapshot: Option<(SnapshotMeta, Bytes)>,
    /// Snapshots received and staged, not installed yet, by id.
    staged: BTreeMap<u64, (SnapshotMeta, Bytes)>,
    next_staged: u64,
    metrics: StoreMetrics,
    /// When set, every write fails from now on (an injected disk failure).
    failed: Option<String>,
}

impl Inner {
    fn snapshot_index(&self) -> Option<Index> {
        self.snapshot.as_ref().map(|(meta, _)| meta.index)
    }

    fn apply(&mut self, w: LogWrite) -> Result<(), StoreError> {
        if let Some(reason) = &self.failed {
            return Err(StoreError::new(MemStoreError(reason.clone())));
        }
        if let Some(staged) = w.snapshot {
            let (meta, data) = self
                .staged
                .remove(&staged.id)
                .filter(|(meta, _)| *meta == staged.meta)
                .ok_or_else(|| {
                    StoreError::new(MemStoreError(format!(
                        "no snapshot staged as {} at index {}",
                        staged.id, staged.meta.index
                    )))
                })?;
            self.log.apply_snapshot(meta.clone());
            self.snapshot = Some((meta, data));
        }
        if !w.entries.is_empty() {
            let bytes: u64 = w.entries.iter().map(Entry::size).sum();
            let count = w.entries.len() as u64;
            self.log
                .append_owned(w.entries)
                .map_err(|e| StoreError::new(MemStoreError(format!("write outside the log: {e}"))))?;
            self.metrics.entries += count;
            self.metrics.bytes += bytes;
        }
        if let Some(hs) = w.hard_state {
            self.log.set_hard_state(hs);
        }
        self.metrics.writes += 1;
        Ok(())
    }
}

/// An error of the in-memory store (only ever injected or a misuse).
#[derive(Debug, thiserror::Error)]
#[error("in-memory log store: {0}")]
pub struct MemStoreError(pub String);

/// An in-memory log store. Cloning shares the state.
#[derive(Clone)]
pub struct MemLogStore {
    inner: Arc<Mutex<Inner>>,
    writer: Option<mpsc::UnboundedSender<(LogWrite, Completion)>>,
}

impl Default for MemLogStore {
    fn default() -> Self {
        MemLogStore::new()
    }
}

impl MemLogStore {
    /// An empty store whose writes complete at once.
    pub fn new() -> Self {
        MemLogStore {
            inner: Arc::new(Mutex::new(Inner::default())),
            writer: None,
        }
    }

    /// An empty store whose writes take `latency` each, coalescing the writes queued
    /// meanwhile (must be called within a tokio runtime).
    pub fn with_write_latency(latency: Duration) -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let (tx, mut rx) = mpsc::unbounded_channel::<(LogWrite, Completion)>();
        let state = inner.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                tokio::time::sleep(latency).await;
                let results: Vec<(Result<(), StoreError>, Completion)> = {
                    let mut s = state.lock().expect("store lock");
                    s.metrics.fsyncs += 1;
                    batch.into_iter().map(|(w, done)| (s.apply(w), done)).collect()
                };
                for (res, done) in results {
                    done(res);
                }
            }
        });
        MemLogStore {
            inner,
            writer: Some(tx),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("store lock")
    }

    /// From now on every write fails with `reason` (a simulated disk failure).
    pub fn fail_writes(&self, reason: impl Into<String>) {
        self.lock().failed = Some(reason.into());
    }

    /// The stored hard state.
    pub fn hard_state(&self) -> HardState {
        self.lock().log.hard_state()
    }

    /// How many received snapshots are staged and not installed (or discarded) yet.
    pub fn staged_snapshots(&self) -> usize {
        self.lock().staged.len()
    }

    /// Every stored entry after the snapshot.
    pub fn stored_entries(&self) -> Vec<Entry> {
        self.lock().log.all_entries().to_vec()
    }
}

#[async_trait]
impl LogStore for MemLogStore {
    /// Asked when a node starts: like a store reopened after a restart, the log then starts
    /// after the stored snapshot (the entries kept behind it are discarded).
    fn initial_state(&self) -> Result<InitialState, StoreError> {
        let mut s = self.lock();
        if let Some((meta, _)) = &s.snapshot
            && meta.index >= s.log.first_index()
        {
            let meta = meta.clone();
            s.log
                .compact(meta)
                .map_err(|e| StoreError::new(MemStoreError(format!("snapshot outside the log: {e}"))))?;
        }
        s.log.initial_state().map_err(StoreError::new)
    }

    fn first_index(&self) -> Index {
        self.lock().log.first_index()
    }

    fn last_index(&self) -> Index {
        self.lock().log.last_index()
    }

    fn term(&self, index: Index) -> Result<Term, StorageError> {
        self.lock().log.term(index)
    }

    fn entries(&self, low: Index, high: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        self.lock().log.entries(low, high, max_bytes)
    }

    fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.lock().snapshot.as_ref().map(|(meta, _)| meta.clone())
    }

    fn snapshot_len(&self) -> Option<u64> {
        self.lock().snapshot.as_ref().map(|(_, data)| data.len() as u64)
    }

    fn append(&self, write: LogWrite, done: Completion) {
        match &self.writer {
            Some(tx) => {
                if let Err(mpsc::error::SendError((_, done))) = tx.send((write, done)) {
                    done(Err(StoreError::new(MemStoreError("writer stopped".into()))));
                }
            }
            None => {
                let res = {
                    let mut s = self.inner.lock().expect("store lock");
                    s.metrics.fsyncs += 1;
                    s.apply(write)
                };
                done(res);
            }
        }
    }

    fn compact(&self, index: Index) -> Result<(), StoreError> {
        let mut s = self.lock();
        let Some((snapshot, _)) = &s.snapshot else {
            return Err(StoreError::new(MemStoreError(format!(
                "cannot compact to {index}: no snapshot is stored"
            ))));
        };
        if index > snapshot.index {
            return Err(StoreError::new(MemStoreError(format!(
                "cannot compact to {index}: not covered by the stored snapshot at {}",
                snapshot.index
            ))));
        }
        if index < s.log.first_index() {
            return Ok(());
        }
        // The compaction point's configuration is the snapshot's: only read at a start,
        // after `initial_state` moved the compaction point to the snapshot.
        let conf_state = snapshot.conf_state.clone();
        let term = s
            .log
            .term(index)
            .map_err(|e| StoreError::new(MemStoreError(format!("cannot compact to {index}: {e}"))))?;
        s.log
            .compact(SnapshotMeta {
                index,
                term,
                conf_state,
            })
            .map_err(|e| StoreError::new(MemStoreError(format!("cannot compact to {index}: {e}"))))
    }

    async fn save_snapshot(&self, meta: SnapshotMeta, data: SnapshotStream) -> Result<(), StoreError> {
        // Held in memory: this store is for tests.
        let data = data.into_bytes(u64::MAX).await.map_err(|e| {
            StoreError::new(MemStoreError(format!("reading the snapshot's data failed: {e}")))
        })?;
        let mut s = self.lock();
        if let Some(reason) = &s.failed {
            return Err(StoreError::new(MemStoreError(reason.clone())));
        }
        let current = s.snapshot_index().unwrap_or(s.log.first_index() - 1);
        if meta.index == 0 && s.log.last_index() == 0 {
            // Bootstrapping: the initial configuration and state.
            s.log.apply_snapshot(meta.clone());
        } else if meta.index <= current && s.snapshot.is_some() {
            // Older than the stored one: kept as it is.
            return Ok(());
        } else if meta.index > s.log.last_index() || meta.index < s.log.first_index() - 1 {
            return Err(StoreError::new(MemStoreError(format!(
                "snapshot at {} outside the log ({} to {})",
                meta.index,
                s.log.first_index(),
                s.log.last_index()
            ))));
        }
        // The log is compacted separately (`compact`).
        s.snapshot = Some((meta, data));
        Ok(())
    }

    async fn stage_snapshot(&self, meta: SnapshotMeta, data: SnapshotStream) -> Result<Staged, StoreError> {
        // Held in memory: this store is for tests.
        let data = data.into_bytes(u64::MAX).await.map_err(|e| {
            StoreError::new(MemStoreError(format!("reading the snapshot's data failed: {e}")))
        })?;
        let mut s = self.lock();
        if let Some(reason) = &s.failed {
            return Err(StoreError::new(MemStoreError(reason.clone())));
        }
        let id = s.next_staged;
        s.next_staged += 1;
        s.staged.insert(id, (meta.clone(), data.clone()));
        Ok(Staged {
            snapshot: StagedSnapshot { meta, id },
            data: SnapshotStream::from_bytes(data),
        })
    }

    fn discard_staged(&self, staged: &StagedSnapshot) {
        self.lock().staged.remove(&staged.id);
    }

    async fn load_snapshot(&self) -> Result<Option<StoredSnapshot>, StoreError> {
        let s = self.lock();
        Ok(s.snapshot.as_ref().map(|(meta, data)| StoredSnapshot {
            meta: meta.clone(),
            data: SnapshotStream::from_bytes(data.clone()),
        }))
    }

    async fn flush(&self) -> Result<(), StoreError> {
        if let Some(tx) = &self.writer {
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let done: Completion = Box::new(move |r| {
                let _ = done_tx.send(r);
            });
            if tx.send((LogWrite::default(), done)).is_err() {
                return Err(StoreError::new(MemStoreError("writer stopped".into())));
            }
            return done_rx
                .await
                .unwrap_or_else(|_| Err(StoreError::new(MemStoreError("writer stopped".into()))));
        }
        Ok(())
    }

    fn metrics(&self) -> StoreMetrics {
        self.lock().metrics
    }
}
