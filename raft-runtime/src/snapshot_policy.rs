//! When to take a snapshot, and how much log to keep behind it.
//!
//! A snapshot starts once `snapshot_every` entries, or `snapshot_every_bytes` bytes of
//! entries, were applied since the last one, and never two at a time. Either way it waits
//! until the entries applied since the last one add up to `snapshot_log_percent` of that
//! snapshot's size: a snapshot copies the whole state, so a large state is snapshotted
//! rarely, and the cost of snapshots stays in proportion to the writes (the log on disk is
//! then at most that share of the state, on top of the thresholds). That wait ends after
//! `snapshot_log_max_entries` entries all the same: every entry in the log costs the store
//! a little memory, so a state of many small records cannot make the log unbounded.
//!
//! Once a snapshot is saved, the log is compacted up to it except for the last entries
//! before it that fit in both `log_kept_entries` and `log_kept_bytes`: a follower that lags
//! by less catches up from the log. On a leader, the log that a follower being sent a
//! snapshot will need after it is kept too, as long as it fits in `log_kept_bytes`: a
//! follower that receives a long snapshot transfer then catches up from the log, rather
//! than by another snapshot.

use std::collections::VecDeque;

use raft_core::Index;

/// The most batch boundaries remembered for the retention bound. Past it every other one is
/// forgotten and later ones are recorded at most every `stride` entries, twice as far apart
/// as before: the bound is then kept on coarser boundaries (it keeps a little less log).
const MAX_MARKS: usize = 4_096;

/// How much log to keep behind a snapshot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retention {
    /// Entries kept at most.
    pub(crate) entries: u64,
    /// Bytes of entries kept at most.
    pub(crate) bytes: u64,
}

/// The snapshot schedule of one node.
pub(crate) struct SnapshotPolicy {
    every: u64,
    every_bytes: u64,
    /// Percentage of `last_len` to apply between two snapshots (0: none).
    log_percent: u64,
    /// Entries after which `log_percent` holds no snapshot back (0: no such bound).
    log_max_entries: u64,
    /// Bytes of the newest snapshot's data (0 if not known).
    last_len: u64,
    keep: Retention,
    /// The index of the newest snapshot the log starts from (taken or installed).
    last: Index,
    /// Bytes of entries handed to the state machine since the last snapshot was started.
    bytes_since: u64,
    in_progress: bool,
    /// Bytes of entries applied in total, at the end of each applied batch since the log's
    /// compaction point: `(last index of the batch, total bytes applied through it)`.
    marks: VecDeque<(Index, u64)>,
    /// The fewest entries between two marks.
    stride: u64,
    applied_bytes: u64,
}

impl SnapshotPolicy {
    /// A schedule (0 turns a threshold off) for a log whose snapshot is at `last`.
    pub(crate) fn new(every: u64, every_bytes: u64, keep: Retention, last: Index) -> Self {
        SnapshotPolicy {
            every,
            every_bytes,
            log_percent: 0,
            log_max_entries: 0,
            last_len: 0,
            keep,
            last,
            bytes_since: 0,
            in_progress: false,
            marks: VecDeque::new(),
            stride: 1,
            applied_bytes: 0,
        }
    }

    /// Spaces snapshots by `percent` of the newest one's size (0: not at all), but by no
    /// more than `max_entries` entries (0: no bound).
    pub(crate) fn with_log_percent(mut self, percent: u64, max_entries: u64) -> Self {
        self.log_percent = percent;
        self.log_max_entries = max_entries;
        self
    }

    /// The newest snapshot's data is `len` bytes (`None`: not known, then the snapshots
    /// are spaced by the thresholds alone).
    pub(crate) fn stored_len(&mut self, len: Option<u64>) {
        self.last_len = len.unwrap_or(0);
    }

    /// The index of the newest snapshot.
    pub(crate) fn last(&self) -> Index {
        self.last
    }

    /// Entries through `last`, of `bytes` bytes, were handed to the state machine.
    pub(crate) fn entries_applied(&mut self, last: Index, bytes: u64) {
        self.bytes_since = self.bytes_since.saturating_add(bytes);
        self.applied_bytes = self.applied_bytes.saturating_add(bytes);
        if self
            .marks
            .back()
            .is_some_and(|&(i, _)| last < i.saturating_add(self.stride))
        {
            return;
        }
        if self.marks.len() >= MAX_MARKS {
            // Forget every other boundary, keeping the later of each pair.
            let mut k = 0;
            self.marks.retain(|_| {
                k += 1;
                k % 2 == 0
            });
            self.stride = self.stride.saturating_mul(2);
        }
        self.marks.push_back((last, self.applied_bytes));
    }

    /// Where to compact the log to once a snapshot at `index` is saved: `index`, less the
    /// entries the retention bounds keep behind it, and less those from `needed` on (the
    /// first entry a follower will need) if they fit in the bytes bound: never above
    /// `index`. Only boundaries of applied batches are candidates, so it keeps at most what
    /// the bounds allow.
    pub(crate) fn compact_to(&mut self, index: Index, needed: Option<Index>) -> Index {
        let Some(&(_, at_index)) = self.marks.iter().rev().find(|&&(i, _)| i <= index) else {
            return index;
        };
        let keep_bytes = self.keep.bytes;
        let within = move |entries: u64| {
            move |&&(i, bytes): &&(Index, u64)| {
                i <= index && index - i <= entries && at_index.saturating_sub(bytes) <= keep_bytes
            }
        };
        let mut point = self
            .marks
            .iter()
            .find(within(self.keep.entries))
            .map_or(index, |&(i, _)| i);
        if let Some(needed) = needed
            && let Some(&(earliest, _)) = self.marks.iter().find(within(u64::MAX))
        {
            // The latest boundary before the entry needed, but no earlier than the bytes
            // bound allows.
            let before = self
                .marks
                .iter()
                .rev()
                .find(|&&(i, _)| i < needed)
                .map_or(earliest, |&(i, _)| i);
            point = point.min(before.max(earliest));
        }
        while self.marks.front().is_some_and(|&(i, _)| i < point) {
            self.marks.pop_front();
        }
        if self.marks.len() < MAX_MARKS / 4 {
            self.stride = (self.stride / 2).max(1);
        }
        point
    }

    /// Whether to start a snapshot now that `applied` is applied; if so, it counts as
    /// started until [`Self::finished`].
    pub(crate) fn start_if_due(&mut self, applied: Index) -> bool {
        if self.in_progress {
            return false;
        }
        let entries_since = applied.saturating_sub(self.last);
        let by_count = self.every > 0 && entries_since >= self.every;
        let by_bytes = self.every_bytes > 0 && self.bytes_since >= self.every_bytes;
        // In u128: a percentage of a size cannot overflow there.
        let spaced = u128::from(self.bytes_since) * 100
            >= u128::from(self.last_len) * u128::from(self.log_percent)
            || (self.log_max_entries > 0 && entries_since >= self.log_max_entries);
        let due = (by_count || by_bytes) && spaced;
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

    /// A snapshot from the leader was installed at `index`: it replaced the whole log.
    pub(crate) fn installed(&mut self, index: Index) {
        self.last = self.last.max(index);
        self.bytes_since = 0;
        self.marks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP_NONE: Retention = Retention { entries: 0, bytes: 0 };

    #[test]
    fn a_snapshot_starts_every_so_many_entries_and_one_at_a_time() {
        let mut p = SnapshotPolicy::new(100, 0, KEEP_NONE, 0);
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
        let mut p = SnapshotPolicy::new(0, 1000, KEEP_NONE, 0);
        p.entries_applied(1, 600);
        assert!(!p.start_if_due(1));
        p.entries_applied(2, 400);
        assert!(p.start_if_due(2));
        p.finished(Some(2));
        p.entries_applied(3, 999);
        assert!(!p.start_if_due(3));
    }

    #[test]
    fn a_large_snapshot_spaces_the_next_by_its_size() {
        // Due every 10 entries or 1000 bytes, but only once the bytes applied since the
        // last snapshot reach half its size.
        let mut p = SnapshotPolicy::new(10, 1000, KEEP_NONE, 0).with_log_percent(50, 0);
        p.stored_len(Some(100_000));
        p.entries_applied(20, 49_999);
        assert!(
            !p.start_if_due(20),
            "both thresholds passed, the log is small beside the state"
        );
        p.entries_applied(21, 1);
        assert!(p.start_if_due(21));
        p.finished(Some(21));
        // A small state: the thresholds decide again.
        p.stored_len(Some(10));
        p.entries_applied(31, 10);
        assert!(p.start_if_due(31));
        p.finished(Some(31));
        // An unknown size does not hold snapshots back; neither does 0 percent.
        p.stored_len(None);
        p.entries_applied(41, 0);
        assert!(p.start_if_due(41));
        p.finished(Some(41));
        let mut off = SnapshotPolicy::new(10, 0, KEEP_NONE, 0);
        off.stored_len(Some(u64::MAX));
        assert!(off.start_if_due(10));
        // A size near the top of the range does not overflow the comparison.
        let mut huge = SnapshotPolicy::new(10, 0, KEEP_NONE, 0).with_log_percent(u64::MAX, 0);
        huge.stored_len(Some(u64::MAX));
        huge.entries_applied(10, u64::MAX);
        assert!(!huge.start_if_due(10));
        // An installed snapshot starts the count of bytes again.
        let mut p = SnapshotPolicy::new(10, 0, KEEP_NONE, 0).with_log_percent(100, 0);
        p.entries_applied(5, 500);
        p.installed(10);
        p.stored_len(Some(400));
        p.entries_applied(20, 399);
        assert!(!p.start_if_due(20));
        p.entries_applied(21, 1);
        assert!(p.start_if_due(21));
        p.finished(Some(21));
        // However large the state, `max_entries` entries end the wait.
        let mut p = SnapshotPolicy::new(10, 0, KEEP_NONE, 0).with_log_percent(100, 50);
        p.stored_len(Some(u64::MAX));
        p.entries_applied(49, 49);
        assert!(!p.start_if_due(49));
        p.entries_applied(50, 1);
        assert!(p.start_if_due(50));
    }

    #[test]
    fn an_installed_snapshot_moves_the_schedule_and_zero_turns_it_off() {
        let mut p = SnapshotPolicy::new(100, 0, KEEP_NONE, 0);
        p.installed(500);
        assert!(!p.start_if_due(550));
        assert!(p.start_if_due(600));
        let mut off = SnapshotPolicy::new(0, 0, KEEP_NONE, 0);
        off.entries_applied(1, u64::MAX);
        assert!(!off.start_if_due(u64::MAX));
    }

    #[test]
    fn the_log_behind_a_snapshot_is_kept_within_both_bounds() {
        // Batches of 10 entries of 100 bytes each.
        let applied = |p: &mut SnapshotPolicy, through: u64| {
            for end in (10..=through).step_by(10) {
                p.entries_applied(end, 1000);
            }
        };
        // Entries bound the log kept.
        let mut p = SnapshotPolicy::new(
            100,
            0,
            Retention {
                entries: 35,
                bytes: u64::MAX,
            },
            0,
        );
        applied(&mut p, 100);
        assert_eq!(
            p.compact_to(100, None),
            70,
            "30 entries kept: a batch of 40 would exceed 35"
        );
        // Bytes bound it.
        let mut p = SnapshotPolicy::new(
            100,
            0,
            Retention {
                entries: 1_000,
                bytes: 2_500,
            },
            0,
        );
        applied(&mut p, 100);
        assert_eq!(p.compact_to(100, None), 80);
        // Entries applied after the snapshot do not count against it.
        applied(&mut p, 200);
        assert_eq!(p.compact_to(150, None), 130);
        // Nothing kept.
        let mut p = SnapshotPolicy::new(100, 0, KEEP_NONE, 0);
        applied(&mut p, 100);
        assert_eq!(p.compact_to(100, None), 100);
        // An installed snapshot replaced the log: nothing is known behind it.
        let mut p = SnapshotPolicy::new(
            100,
            0,
            Retention {
                entries: 1_000,
                bytes: u64::MAX,
            },
            0,
        );
        applied(&mut p, 100);
        p.installed(500);
        assert_eq!(p.compact_to(500, None), 500);
        // Many small batches: the marks stay bounded and the log kept within the bounds.
        let mut p = SnapshotPolicy::new(
            100,
            0,
            Retention {
                entries: 50_000,
                bytes: u64::MAX,
            },
            0,
        );
        for i in 1..=100_000 {
            p.entries_applied(i, 10);
        }
        assert!(p.marks.len() <= MAX_MARKS);
        let point = p.compact_to(100_000, None);
        assert!((50_000..=50_064).contains(&point), "{point}");
    }

    #[test]
    fn the_log_a_follower_needs_is_kept_within_the_bytes_bound() {
        // Batches of 10 entries of 100 bytes each.
        let applied = |p: &mut SnapshotPolicy, through: u64| {
            for end in (10..=through).step_by(10) {
                p.entries_applied(end, 1000);
            }
        };
        let keep = Retention {
            entries: 20,
            bytes: 5_000,
        };
        let mut p = SnapshotPolicy::new(100, 0, keep, 0);
        applied(&mut p, 100);
        // A follower needs entry 75 on: the log from the batch that holds it is kept,
        // beyond the entries bound.
        assert_eq!(p.compact_to(100, Some(75)), 70);
        // One further behind than the bytes bound allows: kept as far as it allows.
        let mut p = SnapshotPolicy::new(100, 0, keep, 0);
        applied(&mut p, 100);
        assert_eq!(p.compact_to(100, Some(12)), 50);
        // One that needs nothing the bounds would not keep anyway changes nothing.
        let mut p = SnapshotPolicy::new(100, 0, keep, 0);
        applied(&mut p, 100);
        assert_eq!(p.compact_to(100, Some(95)), 80);
        assert_eq!(
            SnapshotPolicy::new(100, 0, keep, 0).compact_to(100, Some(50)),
            100,
            "nothing applied since the log's start is known: nothing kept"
        );
    }
}
