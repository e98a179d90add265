//! The protocol's read-only view of a [`LogStore`].

use std::sync::Arc;

use raft_core::{Entry, Index, InitialState, LogStorage, SnapshotMeta, StorageError, Term};

use crate::store::LogStore;

/// Implements the protocol's [`LogStorage`] over a shared [`LogStore`].
pub(crate) struct StoreReader(pub(crate) Arc<dyn LogStore>);

impl LogStorage for StoreReader {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        self.0
            .initial_state()
            .map_err(|e| StorageError::Failure(Box::new(e)))
    }

    fn entries(&self, low: Index, high: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        self.0.entries(low, high, max_bytes)
    }

    fn term(&self, index: Index) -> Result<Term, StorageError> {
        self.0.term(index)
    }

    fn first_index(&self) -> Index {
        self.0.first_index()
    }

    fn last_index(&self) -> Index {
        self.0.last_index()
    }

    fn snapshot_meta(&self) -> Result<SnapshotMeta, StorageError> {
        self.0
            .snapshot_meta()
            .ok_or(StorageError::SnapshotTemporarilyUnavailable)
    }
}
