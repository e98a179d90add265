//! An in-memory [`LogStore`] for tests and users' unit tests.
//!
//! Clones share the same state, so a test can stop a node and start it again over the same
//! store, as over the same disk. Writes may be given a latency (a simulated `fsync`): they
//! then go through a writer task that, like a real store, coalesces every write queued
//! while the previous one was "syncing" into one (group commit).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use raft_core::{Entry, HardState, Index, InitialState, SnapshotMeta, StorageError, Term, limit_size};
use tokio::sync::mpsc;

use crate::store::{Completion, LogStore, LogWrite, Snapshot, StoreError, StoreMetrics};

#[derive(Default)]
struct Inner {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    /// Entries after the snapshot's index.
    entries: Vec<Entry>,
    metrics: StoreMetrics,
    /// When set, every write fails from now on (an injected disk failure).
    failed: Option<String>,
}

impl Inner {
    fn snapshot_index(&self) -> Index {
        self.snapshot.as_ref().map_or(0, |s| s.meta.index)
    }

    fn snapshot_term(&self) -> Term {
        self.snapshot.as_ref().map_or(0, |s| s.meta.term)
    }

    fn last_index(&self) -> Index {
        self.snapshot_index() + self.entries.len() as u64
    }

    fn apply(&mut self, w: LogWrite) -> Result<(), StoreError> {
        if let Some(reason) = &self.failed {
            return Err(StoreError::new(MemStoreError(reason.clone())));
        }
        if let Some(s) = w.snapshot {
            self.entries.clear();
            if self.hard_state.commit < s.meta.index {
                self.hard_state.commit = s.meta.index;
            }
            self.snapshot = Some(s);
        }
        if let Some(first) = w.entries.first() {
            let base = self.snapshot_index();
            if first.index <= base || first.index > self.last_index() + 1 {
                return Err(StoreError::new(MemStoreError(format!(
                    "write at index {} outside the log (snapshot {base}, last {})",
                    first.index,
                    self.last_index()
                ))));
            }
            self.entries.truncate((first.index - base - 1) as usize);
            let bytes: u64 = w.entries.iter().map(Entry::size).sum();
            self.metrics.entries += w.entries.len() as u64;
            self.metrics.bytes += bytes;
            self.entries.extend(w.entries);
        }
        if let Some(hs) = w.hard_state {
            self.hard_state = hs;
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

    /// From now on every write fails with `reason` (a simulated disk failure).
    pub fn fail_writes(&self, reason: impl Into<String>) {
        self.inner.lock().expect("store lock").failed = Some(reason.into());
    }

    /// The stored hard state.
    pub fn hard_state(&self) -> HardState {
        self.inner.lock().expect("store lock").hard_state
    }

    /// Every stored entry after the snapshot.
    pub fn stored_entries(&self) -> Vec<Entry> {
        self.inner.lock().expect("store lock").entries.clone()
    }
}

#[async_trait]
impl LogStore for MemLogStore {
    fn initial_state(&self) -> Result<InitialState, StoreError> {
        let s = self.inner.lock().expect("store lock");
        Ok(InitialState {
            hard_state: s.hard_state,
            conf_state: s
                .snapshot
                .as_ref()
                .map(|s| s.meta.conf_state.clone())
                .unwrap_or_default(),
        })
    }

    fn first_index(&self) -> Index {
        self.inner.lock().expect("store lock").snapshot_index() + 1
    }

    fn last_index(&self) -> Index {
        self.inner.lock().expect("store lock").last_index()
    }

    fn term(&self, index: Index) -> Result<Term, StorageError> {
        let s = self.inner.lock().expect("store lock");
        let base = s.snapshot_index();
        if index == base {
            return Ok(s.snapshot_term());
        }
        if index < base {
            return Err(StorageError::Compacted {
                index,
                first: base + 1,
            });
        }
        let last = s.last_index();
        if index > last {
            return Err(StorageError::Unavailable { index, last });
        }
        Ok(s.entries[(index - base - 1) as usize].term)
    }

    fn entries(&self, low: Index, high: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        let s = self.inner.lock().expect("store lock");
        let base = s.snapshot_index();
        if low <= base {
            return Err(StorageError::Compacted {
                index: low,
                first: base + 1,
            });
        }
        let last = s.last_index();
        if high > last + 1 {
            return Err(StorageError::Unavailable {
                index: high - 1,
                last,
            });
        }
        if low >= high {
            return Ok(Vec::new());
        }
        let slice = &s.entries[(low - base - 1) as usize..(high - base - 1) as usize];
        Ok(limit_size(slice, max_bytes).to_vec())
    }

    fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.inner
            .lock()
            .expect("store lock")
            .snapshot
            .as_ref()
            .map(|s| s.meta.clone())
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
        let mut s = self.inner.lock().expect("store lock");
        let base = s.snapshot_index();
        if index <= base {
            return Ok(());
        }
        let covered = s.snapshot.as_ref().is_some_and(|snap| snap.meta.index >= index);
        if !covered || index > s.last_index() {
            return Err(StoreError::new(MemStoreError(format!(
                "cannot compact to {index}: not covered by the stored snapshot"
            ))));
        }
        // The stored snapshot is at or after `index`; drop the entries it covers.
        let drop = ((index - base) as usize).min(s.entries.len());
        s.entries.drain(..drop);
        Ok(())
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let mut s = self.inner.lock().expect("store lock");
        if let Some(reason) = &s.failed {
            return Err(StoreError::new(MemStoreError(reason.clone())));
        }
        let base = s.snapshot_index();
        if snapshot.meta.index < base || (snapshot.meta.index == base && s.snapshot.is_some() && base > 0) {
            return Ok(());
        }
        // Keep the entries after the snapshot; compaction drops the ones it covers. The
        // entries are kept relative to the snapshot index, so re-base them.
        let new_base = snapshot.meta.index;
        if new_base > base {
            let drop = ((new_base - base) as usize).min(s.entries.len());
            s.entries.drain(..drop);
        }
        s.snapshot = Some(snapshot);
        Ok(())
    }

    async fn load_snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.inner.lock().expect("store lock").snapshot.clone())
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
        self.inner.lock().expect("store lock").metrics
    }
}
