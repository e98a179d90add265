//! The read-only view of durable log storage that the protocol reads from, and an
//! in-memory implementation.
//!
//! The protocol never writes to storage: it hands the driver what to persist in
//! [`Ready::persist`](crate::Ready) and reads back through [`LogStorage`] only what the
//! driver has reported durable. A driver therefore owns its storage, writes to it, and
//! makes sure that by the time it calls
//! [`RawNode::on_persisted`](crate::RawNode::on_persisted) the persisted entries are
//! readable here.

use crate::types::{ConfState, Entry, HardState, Index, SnapshotMeta, Term};

/// Why storage could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The requested index has been compacted into a snapshot.
    #[error("index {index} is compacted (first available index is {first})")]
    Compacted {
        /// The requested index.
        index: Index,
        /// The first index still available.
        first: Index,
    },
    /// The requested index is beyond the last stored entry.
    #[error("index {index} is not available (last index is {last})")]
    Unavailable {
        /// The requested index.
        index: Index,
        /// The last stored index.
        last: Index,
    },
    /// No snapshot can be provided right now (one is being built); try again later.
    #[error("snapshot temporarily unavailable")]
    SnapshotTemporarilyUnavailable,
    /// The storage failed (I/O error, corruption...). Fatal for the node.
    #[error("storage failure: {0}")]
    Failure(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What a node recovers from storage when it starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitialState {
    /// The persisted term, vote and commit index.
    pub hard_state: HardState,
    /// The configuration in effect at the end of the snapshot (at `first_index() - 1`).
    /// A node bootstrapping a new cluster stores the initial configuration here with an
    /// empty log; a node that joins an existing cluster starts with an empty one.
    pub conf_state: ConfState,
}

/// Durable log storage as the protocol sees it: read-only.
///
/// The log holds the entries `first_index()..=last_index()`; everything before
/// `first_index()` has been compacted into the snapshot whose metadata
/// [`LogStorage::snapshot_meta`] describes.
pub trait LogStorage {
    /// The persisted state to start from.
    fn initial_state(&self) -> Result<InitialState, StorageError>;

    /// Entries in `[low, high)`, stopping early once their total [`Entry::size`] would
    /// exceed `max_bytes` (but always at least one entry when the range is non-empty).
    fn entries(&self, low: Index, high: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError>;

    /// The term of the entry at `index`; for `first_index() - 1`, the snapshot's term.
    fn term(&self, index: Index) -> Result<Term, StorageError>;

    /// The index of the first entry still stored (the snapshot's index plus one).
    fn first_index(&self) -> Index;

    /// The index of the last stored entry (the snapshot's index if the log is empty).
    fn last_index(&self) -> Index;

    /// The most recent snapshot, for sending to a follower that needs it.
    fn snapshot_meta(&self) -> Result<SnapshotMeta, StorageError>;
}

/// A log kept in memory: the storage of tests, simulations and the doc examples, and a
/// reference for implementors.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    hard_state: HardState,
    snapshot: SnapshotMeta,
    /// Entries after `snapshot.index`, contiguous.
    entries: Vec<Entry>,
}

impl MemStorage {
    /// An empty storage for a node that joins an existing cluster.
    pub fn new() -> Self {
        MemStorage::default()
    }

    /// An empty storage for a node that bootstraps a new cluster with configuration `cs`.
    pub fn new_with_conf_state(cs: ConfState) -> Self {
        MemStorage {
            snapshot: SnapshotMeta {
                index: 0,
                term: 0,
                conf_state: cs,
            },
            ..MemStorage::default()
        }
    }

    /// The stored hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Replaces the stored hard state.
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// Appends entries, first discarding any stored entries at or after the first new
    /// entry's index (a conflicting suffix). The new entries must be contiguous and must
    /// start at most one past the last stored index, and not inside the snapshot.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        self.truncate_for(first.index)?;
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// [`MemStorage::append`], taking the entries by value (no copy).
    pub fn append_owned(&mut self, entries: Vec<Entry>) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        self.truncate_for(first.index)?;
        self.entries.extend(entries);
        Ok(())
    }

    /// Discards the stored entries at and after `first`, where an append will start.
    fn truncate_for(&mut self, first: Index) -> Result<(), StorageError> {
        let last = self.last_index();
        if first > last + 1 {
            return Err(StorageError::Unavailable { index: first, last });
        }
        if first <= self.snapshot.index {
            return Err(StorageError::Compacted {
                index: first,
                first: self.first_index(),
            });
        }
        let keep = (first - self.snapshot.index - 1) as usize;
        self.entries.truncate(keep);
        Ok(())
    }

    /// Replaces the whole log with a snapshot received from a leader.
    pub fn apply_snapshot(&mut self, meta: SnapshotMeta) {
        self.entries.clear();
        if self.hard_state.commit < meta.index {
            self.hard_state.commit = meta.index;
        }
        self.snapshot = meta;
    }

    /// Records a snapshot taken locally at `meta.index` and discards the entries it covers.
    /// The snapshot must cover an index that is stored (not already compacted, not beyond
    /// the last index).
    pub fn compact(&mut self, meta: SnapshotMeta) -> Result<(), StorageError> {
        if meta.index <= self.snapshot.index {
            return Err(StorageError::Compacted {
                index: meta.index,
                first: self.first_index(),
            });
        }
        let last = self.last_index();
        if meta.index > last {
            return Err(StorageError::Unavailable {
                index: meta.index,
                last,
            });
        }
        let drop = (meta.index - self.snapshot.index) as usize;
        self.entries.drain(..drop);
        self.snapshot = meta;
        Ok(())
    }

    /// Applies a whole persist batch in the order the contract requires: snapshot, then
    /// entries, then hard state.
    pub fn persist(&mut self, batch: &crate::Persist) -> Result<(), StorageError> {
        if let Some(meta) = &batch.snapshot {
            self.apply_snapshot(meta.clone());
        }
        self.append(&batch.entries)?;
        if let Some(hs) = batch.hard_state {
            self.set_hard_state(hs);
        }
        Ok(())
    }

    /// All stored entries (after the snapshot).
    pub fn all_entries(&self) -> &[Entry] {
        &self.entries
    }
}

impl LogStorage for MemStorage {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        Ok(InitialState {
            hard_state: self.hard_state,
            conf_state: self.snapshot.conf_state.clone(),
        })
    }

    fn entries(&self, low: Index, high: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        if low <= self.snapshot.index {
            return Err(StorageError::Compacted {
                index: low,
                first: self.first_index(),
            });
        }
        let last = self.last_index();
        if high > last + 1 {
            return Err(StorageError::Unavailable {
                index: high - 1,
                last,
            });
        }
        let offset = self.snapshot.index + 1;
        let slice = &self.entries[(low - offset) as usize..(high - offset) as usize];
        Ok(limit_size(slice, max_bytes).to_vec())
    }

    fn term(&self, index: Index) -> Result<Term, StorageError> {
        if index == self.snapshot.index {
            return Ok(self.snapshot.term);
        }
        if index < self.snapshot.index {
            return Err(StorageError::Compacted {
                index,
                first: self.first_index(),
            });
        }
        let last = self.last_index();
        if index > last {
            return Err(StorageError::Unavailable { index, last });
        }
        Ok(self.entries[(index - self.snapshot.index - 1) as usize].term)
    }

    fn first_index(&self) -> Index {
        self.snapshot.index + 1
    }

    fn last_index(&self) -> Index {
        self.snapshot.index + self.entries.len() as u64
    }

    fn snapshot_meta(&self) -> Result<SnapshotMeta, StorageError> {
        Ok(self.snapshot.clone())
    }
}

/// The total size of `entries` ([`Entry::size`] summed, saturating).
pub fn total_size(entries: &[Entry]) -> u64 {
    entries
        .iter()
        .fold(0u64, |total, e| total.saturating_add(e.size()))
}

/// The longest prefix of `entries` whose total size stays within `max_bytes`, but never
/// fewer than one entry.
pub fn limit_size(entries: &[Entry], max_bytes: u64) -> &[Entry] {
    let mut total = 0u64;
    for (i, e) in entries.iter().enumerate() {
        total = total.saturating_add(e.size());
        if total > max_bytes && i > 0 {
            return &entries[..i];
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryPayload;
    use bytes::Bytes;

    fn ent(term: Term, index: Index) -> Entry {
        Entry::new(term, index, EntryPayload::Normal(Bytes::from(vec![0u8; 10])))
    }

    #[test]
    fn mem_storage_append_truncates_conflicts() {
        let mut s = MemStorage::new();
        s.append(&[ent(1, 1), ent(1, 2), ent(1, 3)]).unwrap();
        s.append(&[ent(2, 2)]).unwrap();
        assert_eq!(s.last_index(), 2);
        assert_eq!(s.term(2).unwrap(), 2);
        assert!(matches!(
            s.append(&[ent(2, 5)]),
            Err(StorageError::Unavailable { .. })
        ));
    }

    #[test]
    fn mem_storage_compaction_and_ranges() {
        let mut s = MemStorage::new();
        s.append(&(1..=5).map(|i| ent(1, i)).collect::<Vec<_>>()).unwrap();
        s.compact(SnapshotMeta {
            index: 3,
            term: 1,
            conf_state: ConfState::default(),
        })
        .unwrap();
        assert_eq!(s.first_index(), 4);
        assert_eq!(s.term(3).unwrap(), 1);
        assert!(matches!(s.term(2), Err(StorageError::Compacted { .. })));
        assert!(matches!(
            s.entries(3, 5, u64::MAX),
            Err(StorageError::Compacted { .. })
        ));
        assert!(matches!(
            s.entries(4, 7, u64::MAX),
            Err(StorageError::Unavailable { .. })
        ));
        assert_eq!(s.entries(4, 6, u64::MAX).unwrap().len(), 2);
        // The size limit still returns one entry.
        assert_eq!(s.entries(4, 6, 1).unwrap().len(), 1);
    }
}
