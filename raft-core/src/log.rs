//! The node's view of the replicated log: what storage holds durably, plus a tail of
//! entries (and possibly a snapshot) that were accepted but are not yet reported durable.
//!
//! Four cursors describe progress through the log, always ordered
//! `applied <= emitted <= min(committed, persisted)`:
//!
//! - `committed`: known to be replicated on a quorum;
//! - `persisted`: known to be durable on this node;
//! - `emitted`: handed to the driver for applying;
//! - `applied`: reported applied by the driver.
//!
//! After a snapshot from a leader, nothing is handed out until the driver reports the
//! snapshot itself applied (its state machine restored): until then the entries after it
//! could only wait in memory behind the restore.

use std::collections::VecDeque;

use crate::error::Invariant;
use crate::storage::{LogStorage, StorageError, limit_size, total_size};
use crate::types::{Entry, Index, SnapshotMeta, Term};

/// A log entry arrived that would overwrite a committed entry: the sender broke the protocol.
#[derive(Debug)]
pub(crate) struct CommittedConflict;

/// Storage plus the not-yet-durable tail.
pub(crate) struct RaftLog<S> {
    pub(crate) store: S,
    /// Entries from `offset`, not yet reported durable.
    unstable: VecDeque<Entry>,
    offset: Index,
    /// A snapshot accepted from a leader, at `offset - 1`, not yet reported durable.
    unstable_snapshot: Option<SnapshotMeta>,
    /// The unstable snapshot has been handed to the driver for persisting.
    snapshot_emitted: bool,
    /// Entries up to here have been handed to the driver for persisting.
    persist_emitted: Index,
    pub(crate) committed: Index,
    pub(crate) persisted: Index,
    pub(crate) emitted: Index,
    pub(crate) applied: Index,
    /// The batches handed out for applying and not yet reported applied: the last index of
    /// each and the size of its entries.
    applying: VecDeque<(Index, u64)>,
    /// The sum of the sizes in `applying`.
    applying_bytes: u64,
    /// The newest snapshot from a leader (0 if none): nothing is handed out while `applied`
    /// is below it.
    restoring: Index,
    /// The first safety invariant a change to the log would have broken; the change was
    /// refused and the node stops (see [`Invariant`]).
    pub(crate) violation: Option<Invariant>,
}

impl<S: LogStorage> RaftLog<S> {
    /// Opens the log over durable storage; the state machine has applied up to `applied`.
    pub(crate) fn new(store: S, committed: Index, applied: Index) -> Self {
        let last = store.last_index();
        RaftLog {
            store,
            unstable: VecDeque::new(),
            offset: last + 1,
            unstable_snapshot: None,
            snapshot_emitted: false,
            persist_emitted: last,
            committed,
            persisted: last,
            emitted: applied,
            applied,
            applying: VecDeque::new(),
            applying_bytes: 0,
            restoring: 0,
            violation: None,
        }
    }

    pub(crate) fn first_index(&self) -> Index {
        match &self.unstable_snapshot {
            Some(s) => s.index + 1,
            None => self.store.first_index(),
        }
    }

    pub(crate) fn last_index(&self) -> Index {
        if !self.unstable.is_empty() {
            return self.offset + self.unstable.len() as u64 - 1;
        }
        match &self.unstable_snapshot {
            Some(s) => s.index,
            None => self.store.last_index(),
        }
    }

    pub(crate) fn last_term(&self) -> Term {
        self.term(self.last_index()).unwrap_or(0)
    }

    /// The term at `index`.
    pub(crate) fn term(&self, index: Index) -> Result<Term, StorageError> {
        let first = self.first_index();
        if index < first.saturating_sub(1) {
            return Err(StorageError::Compacted { index, first });
        }
        if let Some(s) = &self.unstable_snapshot
            && index == s.index
        {
            return Ok(s.term);
        }
        if index >= self.offset {
            let last = self.last_index();
            return match self.unstable.get((index - self.offset) as usize) {
                Some(e) => Ok(e.term),
                None => Err(StorageError::Unavailable { index, last }),
            };
        }
        self.store.term(index)
    }

    /// Whether the entry at `index` has term `term`.
    pub(crate) fn match_term(&self, index: Index, term: Term) -> bool {
        self.term(index).is_ok_and(|t| t == term)
    }

    /// Whether a candidate whose log ends at (`last_index`, `last_term`) is at least as up
    /// to date as this log (Raft paper, section 5.4.1).
    pub(crate) fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        let my_term = self.last_term();
        last_term > my_term || (last_term == my_term && last_index >= self.last_index())
    }

    /// Entries in `[low, high)` within `max_bytes` (at least one when the range is non-empty).
    pub(crate) fn entries(
        &self,
        low: Index,
        high: Index,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let first = self.first_index();
        if low < first {
            return Err(StorageError::Compacted { index: low, first });
        }
        let last = self.last_index();
        if high > last + 1 {
            return Err(StorageError::Unavailable {
                index: high - 1,
                last,
            });
        }
        if low >= high {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        if low < self.offset {
            let stable_high = high.min(self.offset);
            out = self.store.entries(low, stable_high, max_bytes)?;
            if (out.len() as u64) < stable_high - low || stable_high == high {
                return Ok(out);
            }
        }
        let start = low.max(self.offset);
        let mut used = total_size(&out);
        for e in self
            .unstable
            .range((start - self.offset) as usize..(high - self.offset) as usize)
        {
            used = used.saturating_add(e.size());
            if used > max_bytes && !out.is_empty() {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    /// Appends entries after checking that they follow (`prev_index`, `prev_term`);
    /// truncates any conflicting suffix. Returns `None` if the log does not contain
    /// `prev_index` at `prev_term`; otherwise the index of the last entry the message vouches
    /// for and the position in `entries` from which entries were actually written.
    pub(crate) fn maybe_append(
        &mut self,
        prev_index: Index,
        prev_term: Term,
        leader_commit: Index,
        entries: &[Entry],
    ) -> Result<Option<(Index, Option<usize>)>, CommittedConflict> {
        if !self.match_term(prev_index, prev_term) {
            return Ok(None);
        }
        // The caller bounds `prev_index` and the entries' count (see `MAX_INDEX`).
        let last_new = prev_index.saturating_add(entries.len() as u64);
        let mut written = None;
        if let Some(conflict) = self.find_conflict(entries) {
            if conflict <= self.committed {
                return Err(CommittedConflict);
            }
            let start = (conflict - prev_index - 1) as usize;
            self.append(&entries[start..]);
            written = Some(start);
        }
        self.commit_to(leader_commit.min(last_new));
        Ok(Some((last_new, written)))
    }

    /// The index of the first entry that is new or conflicts with the log.
    fn find_conflict(&self, entries: &[Entry]) -> Option<Index> {
        entries
            .iter()
            .find(|e| !self.match_term(e.index, e.term))
            .map(|e| e.index)
    }

    /// Appends entries, replacing any suffix from the first one's index. The caller makes
    /// sure nothing committed is replaced and that the entries are contiguous with the log.
    pub(crate) fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        if self.make_room(first.index) {
            self.unstable.extend(entries.iter().cloned());
        }
    }

    /// [`RaftLog::append`] of entries the caller gives up, moved rather than copied.
    pub(crate) fn append_owned(&mut self, entries: Vec<Entry>) {
        let Some(first) = entries.first() else {
            return;
        };
        if self.make_room(first.index) {
            self.unstable.extend(entries);
        }
    }

    /// Prepares the unstable log for entries from `at` on: checks they may go there and
    /// drops what they replace. False (after reporting the violation) if they may not.
    fn make_room(&mut self, at: Index) -> bool {
        if at <= self.committed {
            self.violate(Invariant::TruncateCommitted {
                at,
                commit: self.committed,
            });
            return false;
        }
        let last = self.last_index();
        if at > last.saturating_add(1) {
            self.violate(Invariant::LogGap { at, last });
            return false;
        }
        if at == self.offset + self.unstable.len() as u64 {
            // Plain append.
        } else if at <= self.offset {
            // Replaces every unstable entry and some durable ones: storage keeps the stale
            // suffix until the driver writes these entries, which truncates it.
            self.unstable.clear();
            self.offset = at;
        } else {
            self.unstable.truncate((at - self.offset) as usize);
        }
        self.persist_emitted = self.persist_emitted.min(at - 1);
        self.persisted = self.persisted.min(at - 1);
        true
    }

    pub(crate) fn commit_to(&mut self, index: Index) -> bool {
        if index > self.committed {
            let last = self.last_index();
            if index > last {
                self.violate(Invariant::CommitBeyondLog { commit: index, last });
                return false;
            }
            self.committed = index;
            true
        } else {
            false
        }
    }

    /// Replaces the log by a snapshot received from a leader.
    pub(crate) fn restore(&mut self, meta: SnapshotMeta) {
        let index = meta.index;
        if index < self.committed {
            return self.violate(Invariant::CommitRegressed {
                from: self.committed,
                to: index,
            });
        }
        self.unstable.clear();
        self.offset = index + 1;
        self.unstable_snapshot = Some(meta);
        self.snapshot_emitted = false;
        self.persist_emitted = index;
        self.persisted = self.persisted.min(index.saturating_sub(1));
        self.committed = index;
        self.emitted = index;
        // The snapshot replaces whatever was handed out before it.
        self.applying.clear();
        self.applying_bytes = 0;
        self.restoring = index;
    }

    /// The not-yet-handed-out snapshot and entries to persist; marks them handed out.
    /// Records a refused change that would have broken `invariant` (the first one counts).
    pub(crate) fn violate(&mut self, invariant: Invariant) {
        self.violation.get_or_insert(invariant);
    }

    pub(crate) fn take_unpersisted(&mut self) -> (Option<SnapshotMeta>, Vec<Entry>) {
        let snapshot = match &self.unstable_snapshot {
            Some(s) if !self.snapshot_emitted => {
                self.snapshot_emitted = true;
                Some(s.clone())
            }
            _ => None,
        };
        let from = (self.persist_emitted + 1).max(self.offset);
        let entries: Vec<Entry> = self
            .unstable
            .range((from - self.offset) as usize..)
            .cloned()
            .collect();
        self.persist_emitted = self.last_index();
        (snapshot, entries)
    }

    /// The index of a snapshot from the leader that is not yet durable.
    pub(crate) fn pending_snapshot(&self) -> Option<Index> {
        self.unstable_snapshot.as_ref().map(|s| s.index)
    }

    pub(crate) fn has_unpersisted(&self) -> bool {
        (self.unstable_snapshot.is_some() && !self.snapshot_emitted)
            || self.persist_emitted < self.last_index()
    }

    /// The driver reports the snapshot at `index` durable.
    pub(crate) fn snapshot_persisted(&mut self, index: Index) {
        if self.unstable_snapshot.as_ref().is_some_and(|s| s.index == index) {
            self.unstable_snapshot = None;
            self.snapshot_emitted = false;
            self.persisted = self.persisted.max(index);
        }
    }

    /// The driver reports entries up to (`index`, `term`) durable. Ignored when the log has
    /// since been rewritten at `index`.
    pub(crate) fn entries_persisted(&mut self, index: Index, term: Term) {
        if self.unstable_snapshot.is_some() && index < self.offset {
            return;
        }
        if !self.match_term(index, term) {
            return;
        }
        if index >= self.offset {
            let n = (index - self.offset + 1) as usize;
            self.unstable.drain(..n);
            self.offset = index + 1;
        }
        self.persisted = self.persisted.max(index);
    }

    /// The highest index that may be handed out for applying.
    fn apply_limit(&self) -> Index {
        if self.unstable_snapshot.is_some() || self.applied < self.restoring {
            // Nothing after a snapshot is applied before the snapshot is installed and
            // restored.
            return self.emitted;
        }
        self.committed.min(self.persisted)
    }

    /// Whether committed entries wait to be handed out and the applying window lets them
    /// go (`max_applying` bytes handed out and not yet applied at most, but always one batch
    /// when none is out).
    pub(crate) fn has_next_committed(&self, max_applying: u64) -> bool {
        self.emitted < self.apply_limit() && !self.applying_full(max_applying)
    }

    fn applying_full(&self, max_applying: u64) -> bool {
        !self.applying.is_empty() && self.applying_bytes >= max_applying
    }

    /// Committed, durable entries not handed out yet: within `max_bytes`, and within what
    /// the applying window of `max_applying` bytes has left (at least one entry, unless the
    /// window is full).
    pub(crate) fn next_committed(
        &mut self,
        max_bytes: u64,
        max_applying: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let high = self.apply_limit();
        if self.emitted >= high || self.applying_full(max_applying) {
            return Ok(Vec::new());
        }
        let max_bytes = max_bytes.min(max_applying.saturating_sub(self.applying_bytes));
        let mut entries = self.entries(self.emitted + 1, high + 1, max_bytes)?;
        let keep = limit_size(&entries, max_bytes).len();
        entries.truncate(keep);
        if let Some(last) = entries.last() {
            self.emitted = last.index;
            let bytes = total_size(&entries);
            self.applying.push_back((last.index, bytes));
            self.applying_bytes = self.applying_bytes.saturating_add(bytes);
        }
        Ok(entries)
    }

    /// The driver reports everything up to `index` applied: the batches it covers leave the
    /// applying window.
    pub(crate) fn applied_to(&mut self, index: Index) {
        self.applied = self.applied.max(index);
        while let Some(&(last, bytes)) = self.applying.front() {
            if last > index {
                break;
            }
            self.applying.pop_front();
            self.applying_bytes = self.applying_bytes.saturating_sub(bytes);
        }
    }

    /// Bytes of entries handed out for applying and not yet reported applied.
    pub(crate) fn applying_bytes(&self) -> u64 {
        self.applying_bytes
    }

    /// The largest index at or below `index` whose term is at most `term` (used by the fast
    /// conflict back-off), together with that term.
    pub(crate) fn find_conflict_by_term(&self, index: Index, term: Term) -> (Index, Term) {
        let mut i = index.min(self.last_index());
        loop {
            match self.term(i) {
                Ok(t) if t > term => {
                    if i == 0 {
                        return (0, 0);
                    }
                    i -= 1;
                }
                Ok(t) => return (i, t),
                // Compacted: everything before is committed and matches any leader.
                Err(_) => return (i, 0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;
    use crate::types::EntryPayload;

    fn ent(term: Term, index: Index) -> Entry {
        Entry::new(term, index, EntryPayload::Empty)
    }

    fn log_with(terms: &[Term]) -> RaftLog<MemStorage> {
        let mut s = MemStorage::new();
        let es: Vec<Entry> = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| ent(t, i as u64 + 1))
            .collect();
        s.append(&es).unwrap();
        RaftLog::new(s, 0, 0)
    }

    #[test]
    fn unstable_tail_shadows_stale_storage() {
        let mut log = log_with(&[1, 1, 1, 1]);
        log.append(&[ent(2, 3)]);
        assert_eq!(log.last_index(), 3);
        assert_eq!(log.term(3).unwrap(), 2);
        assert_eq!(log.persisted, 2);
        let (_, es) = log.take_unpersisted();
        assert_eq!(es, vec![ent(2, 3)]);
        // The driver writes them; a report for an overwritten batch is ignored.
        log.store.append(&es).unwrap();
        log.entries_persisted(4, 1);
        assert_eq!(log.persisted, 2);
        log.entries_persisted(3, 2);
        assert_eq!(log.persisted, 3);
        assert!(!log.has_unpersisted());
    }

    #[test]
    fn committed_entries_wait_for_durability() {
        let mut log = log_with(&[1, 1]);
        log.append(&[ent(1, 3), ent(1, 4)]);
        log.commit_to(4);
        assert_eq!(
            log.next_committed(u64::MAX, u64::MAX).unwrap().len(),
            2,
            "entries 1 and 2 are durable"
        );
        assert!(!log.has_next_committed(u64::MAX));
        let (_, es) = log.take_unpersisted();
        log.store.append(&es).unwrap();
        log.entries_persisted(4, 1);
        assert_eq!(log.next_committed(u64::MAX, u64::MAX).unwrap().len(), 2);
    }

    #[test]
    fn find_conflict_by_term_skips_higher_terms() {
        let log = log_with(&[1, 1, 2, 2, 5, 5]);
        assert_eq!(log.find_conflict_by_term(6, 3), (4, 2));
        assert_eq!(log.find_conflict_by_term(6, 5), (6, 5));
        assert_eq!(log.find_conflict_by_term(10, 1), (2, 1));
        assert_eq!(log.find_conflict_by_term(6, 0), (0, 0));
    }

    #[test]
    fn maybe_append_refuses_to_rewrite_committed() {
        let mut log = log_with(&[1, 1, 1]);
        log.commit_to(3);
        assert!(log.maybe_append(1, 1, 3, &[ent(2, 2)]).is_err());
        assert_eq!(
            log.maybe_append(1, 1, 3, &[ent(1, 2), ent(1, 3)]).unwrap(),
            Some((3, None))
        );
        assert_eq!(
            log.maybe_append(3, 1, 3, &[ent(1, 4), ent(2, 5)]).unwrap(),
            Some((5, Some(0)))
        );
        assert_eq!(log.maybe_append(3, 2, 3, &[]).unwrap(), None);
    }

    #[test]
    fn restore_replaces_everything() {
        let mut log = log_with(&[1, 1, 1]);
        log.restore(SnapshotMeta {
            index: 10,
            term: 3,
            conf_state: Default::default(),
        });
        assert_eq!(log.first_index(), 11);
        assert_eq!(log.last_index(), 10);
        assert_eq!(log.term(10).unwrap(), 3);
        assert!(log.term(5).is_err());
        let (snap, es) = log.take_unpersisted();
        assert_eq!(snap.unwrap().index, 10);
        assert!(es.is_empty());
        log.snapshot_persisted(10);
        assert_eq!(log.persisted, 10);
    }
}
