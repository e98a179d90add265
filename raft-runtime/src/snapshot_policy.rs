//! When to take a snapshot (which compacts the log): once `snapshot_every` entries, or
//! `snapshot_every_bytes` bytes of entries, were applied since the last one, and never two
//! at a time.

use raft_core::Index;

/// The snapshot schedule of one node.
pub(crate) struct SnapshotPolicy {
    every: u64,
    every_bytes: u64,
    /// The index of the newest snapshot the log starts from (taken or installed).
    last: Index,
    /// Bytes of entries handed to the state machine since the last snapshot was started.
    bytes_since: u64,
    in_progress: bool,
}

impl SnapshotPolicy {
    /// A schedule (0 turns a threshold off) for a log whose snapshot is at `last`.
    pub(crate) fn new(every: u64, every_bytes: u64, last: Index) -> Self {
        SnapshotPolicy {
            every,
            every_bytes,
            last,
            bytes_since: 0,
            in_progress: false,
        }
    }

    /// The index of the newest snapshot.
    pub(crate) fn last(&self) -> Index {
        self.last
    }

    /// Entries of `bytes` bytes were handed to the state machine.
    pub(crate) fn entries_applied(&mut self, bytes: u64) {
        self.bytes_since = self.bytes_since.saturating_add(bytes);
    }

    /// Whether to start a snapshot now that `applied` is applied; if so, it counts as
    /// started until [`Self::finished`].
    pub(crate) fn start_if_due(&mut self, applied: Index) -> bool {
        if self.in_progress {
            return false;
        }
        let by_count = self.every > 0 && applied.saturating_sub(self.last) >= self.every;
        let by_bytes = self.every_bytes > 0 && self.bytes_since >= self.every_bytes;
        let due = by_count || by_bytes;
        if due {
            self.in_progress = true;
            self.bytes_since = 0;
        }
        due
    }

    /// The snapshot started is done: saved at `Some(index)`, or given up.
    pub(crate) fn finished(&mut self, saved: Option<Index>) {
        self.in_progress = false;
        if let Some(index) = saved {
            self.last = self.last.max(index);
        }
    }

    /// A snapshot from the leader was installed at `index`.
    pub(crate) fn installed(&mut self, index: Index) {
        self.last = self.last.max(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_starts_every_so_many_entries_and_one_at_a_time() {
        let mut p = SnapshotPolicy::new(100, 0, 0);
        assert!(!p.start_if_due(99));
        assert!(p.start_if_due(100));
        assert!(!p.start_if_due(250), "one at a time");
        p.finished(Some(100));
        assert_eq!(p.last(), 100);
        assert!(!p.start_if_due(199));
        assert!(p.start_if_due(200));
        // A snapshot given up leaves the schedule where it was.
        p.finished(None);
        assert_eq!(p.last(), 100);
        assert!(p.start_if_due(200));
    }

    #[test]
    fn a_snapshot_starts_after_so_many_bytes_and_the_count_restarts() {
        let mut p = SnapshotPolicy::new(0, 1000, 0);
        p.entries_applied(600);
        assert!(!p.start_if_due(1));
        p.entries_applied(400);
        assert!(p.start_if_due(2));
        p.finished(Some(2));
        p.entries_applied(999);
        assert!(!p.start_if_due(3));
    }

    #[test]
    fn an_installed_snapshot_moves_the_schedule_and_zero_turns_it_off() {
        let mut p = SnapshotPolicy::new(100, 0, 0);
        p.installed(500);
        assert!(!p.start_if_due(550));
        assert!(p.start_if_due(600));
        let mut off = SnapshotPolicy::new(0, 0, 0);
        off.entries_applied(u64::MAX);
        assert!(!off.start_if_due(u64::MAX));
    }
}
