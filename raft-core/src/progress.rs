//! What a leader knows about each follower's log, and the flow control built on it.
//!
//! A follower's [`Progress`] is in one of three states:
//!
//! - **Probe**: the leader does not know where the logs diverge. It sends one append at a
//!   time and waits for the answer (or the next heartbeat response) before sending another.
//! - **Replicate**: the logs match up to `matched`; the leader streams appends
//!   optimistically, advancing `next` as it sends, limited by a window of in-flight messages
//!   and of in-flight bytes.
//! - **Snapshot**: the follower needs entries the leader has compacted; the leader sent a
//!   snapshot and sends nothing else until it is reported installed or failed.

use std::collections::VecDeque;

use crate::types::Index;

/// The replication state of one follower (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Finding the point where the logs diverge, one message at a time.
    Probe,
    /// Streaming appends within the in-flight window.
    Replicate,
    /// Waiting for a snapshot at `pending` to be installed.
    Snapshot {
        /// The index of the snapshot sent.
        pending: Index,
    },
}

/// The append messages sent and not yet acknowledged (the last index of each, and the
/// size of its entries), bounded by the in-flight window: at most `cap` messages, and no
/// new message once `max_bytes` are in flight (so the bytes may exceed `max_bytes` by at
/// most one message).
#[derive(Clone, Debug)]
pub struct Inflights {
    queue: VecDeque<(Index, u64)>,
    cap: usize,
    bytes: u64,
    max_bytes: u64,
}

impl Inflights {
    /// An empty window of `cap` messages and `max_bytes` bytes.
    pub fn new(cap: usize, max_bytes: u64) -> Self {
        Inflights {
            queue: VecDeque::new(),
            cap,
            bytes: 0,
            max_bytes,
        }
    }

    /// Whether no more messages may be sent.
    pub fn full(&self) -> bool {
        self.queue.len() >= self.cap || self.bytes >= self.max_bytes
    }

    /// Number of messages in flight.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Bytes of entries in flight.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records a message whose last entry is `last` and whose entries hold `bytes`.
    pub fn add(&mut self, last: Index, bytes: u64) {
        debug_assert!(!self.full());
        self.queue.push_back((last, bytes));
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Frees every message whose last entry is at or below `index`.
    pub fn free_to(&mut self, index: Index) {
        while let Some(&(last, bytes)) = self.queue.front() {
            if last > index {
                break;
            }
            self.queue.pop_front();
            self.bytes = self.bytes.saturating_sub(bytes);
        }
    }

    /// Frees the oldest message in flight.
    pub fn free_first(&mut self) {
        if let Some((_, bytes)) = self.queue.pop_front() {
            self.bytes = self.bytes.saturating_sub(bytes);
        }
    }

    /// Forgets every message.
    pub fn reset(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }
}

/// A leader's view of one follower.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to be replicated (durably) on the follower.
    pub matched: Index,
    /// Next index to send.
    pub next: Index,
    /// Flow-control state.
    pub state: ProgressState,
    /// In probe state: an append was sent and its answer is awaited.
    pub probe_sent: bool,
    /// In-flight appends, used in replicate state.
    pub inflights: Inflights,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// The leader owes this follower an append even if it carries no entries (to probe, or
    /// to tell it a new commit index).
    pub pending_send: bool,
    /// Highest heartbeat round the follower acknowledged.
    pub acked_round: u64,
    /// The leader's heartbeat round when `matched` last advanced: a rejection can only show
    /// lost entries if the follower wrote it after hearing a later round.
    pub matched_round: u64,
}

impl Progress {
    /// A fresh progress that starts probing at `next`, with an in-flight window of
    /// `inflight_cap` messages and `inflight_bytes` bytes.
    pub fn new(next: Index, inflight_cap: usize, inflight_bytes: u64) -> Self {
        Progress {
            matched: 0,
            next,
            state: ProgressState::Probe,
            probe_sent: false,
            inflights: Inflights::new(inflight_cap, inflight_bytes),
            recent_active: false,
            pending_send: true,
            acked_round: 0,
            matched_round: 0,
        }
    }

    /// Whether the leader must hold off sending appends.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot { .. } => true,
        }
    }

    /// Switches to probe state, resuming at the index after the best known match (or after
    /// the snapshot just installed).
    pub fn become_probe(&mut self) {
        if let ProgressState::Snapshot { pending } = self.state {
            self.next = (self.matched + 1).max(pending + 1);
        } else {
            self.next = self.matched + 1;
        }
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// A snapshot transfer failed: probe again from just after the known match.
    pub fn snapshot_failed(&mut self) {
        self.next = self.matched + 1;
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Switches to replicate state.
    pub fn become_replicate(&mut self) {
        self.next = self.matched + 1;
        self.state = ProgressState::Replicate;
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Switches to snapshot state for a snapshot at `index`.
    pub fn become_snapshot(&mut self, index: Index) {
        self.state = ProgressState::Snapshot { pending: index };
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Records that an append ending at `last` (equal to `next - 1` for an empty one) and
    /// carrying `bytes` of entries was sent.
    pub fn sent(&mut self, last: Index, bytes: u64) {
        match self.state {
            ProgressState::Replicate => {
                if last >= self.next {
                    self.next = last + 1;
                    self.inflights.add(last, bytes);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot { .. } => {}
        }
        self.pending_send = false;
    }

    /// Records an acceptance up to `index`. Returns whether `matched` advanced.
    pub fn maybe_update(&mut self, index: Index) -> bool {
        let advanced = index > self.matched;
        if advanced {
            self.matched = index;
            self.probe_sent = false;
        }
        if self.next <= index {
            self.next = index + 1;
        }
        self.inflights.free_to(index);
        advanced
    }

    /// Handles a rejection of the append whose `prev_index` was `rejected`; `probe_hint` is
    /// the index the leader computed from the follower's hint as a good next guess. Returns
    /// `false` when the rejection is stale (answers a message older than the current probe).
    pub fn maybe_decr_to(&mut self, rejected: Index, probe_hint: Index) -> bool {
        match self.state {
            ProgressState::Replicate => {
                // A rejection at or below `matched` answers an old message that was reordered.
                if rejected <= self.matched {
                    return false;
                }
                // Only a rejection of the oldest in-flight position tells something new;
                // fall back to probing from just after the match.
                self.next = self.matched + 1;
                true
            }
            _ => {
                // In probe state only the answer to the latest probe counts.
                if self.next == 0 || self.next - 1 != rejected {
                    return false;
                }
                self.next = rejected.min(probe_hint + 1).max(self.matched + 1);
                self.probe_sent = false;
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflight_window_fills_and_frees() {
        let mut w = Inflights::new(3, u64::MAX);
        w.add(5, 1);
        w.add(10, 1);
        w.add(15, 1);
        assert!(w.full());
        w.free_to(9);
        assert_eq!(w.len(), 2);
        assert!(!w.full());
        w.free_to(100);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn inflight_bytes_fill_and_free_the_window() {
        let mut w = Inflights::new(100, 10);
        w.add(5, 4);
        assert!(!w.full());
        w.add(8, 4);
        assert!(!w.full(), "8 of 10 bytes");
        w.add(9, 7);
        assert!(w.full(), "15 bytes: one message may overshoot, then none more");
        assert_eq!(w.bytes(), 15);
        w.free_to(5);
        assert_eq!(w.bytes(), 11);
        assert!(w.full());
        w.free_first();
        assert_eq!(w.bytes(), 7);
        assert!(!w.full());
        w.reset();
        assert_eq!((w.len(), w.bytes()), (0, 0));
    }

    #[test]
    fn replicate_advances_next_optimistically() {
        let mut p = Progress::new(1, 2, u64::MAX);
        p.become_replicate();
        p.sent(5, 1);
        p.sent(9, 1);
        assert_eq!(p.next, 10);
        assert!(p.is_paused(), "window of two is full");
        assert!(p.maybe_update(5));
        assert!(!p.is_paused());
        assert!(!p.maybe_update(3), "older acknowledgements do not regress");
        assert_eq!(p.matched, 5);
    }

    #[test]
    fn stale_rejections_are_ignored() {
        let mut p = Progress::new(11, 4, u64::MAX);
        p.matched = 4;
        // Probe state: only the answer to the probe at next - 1 counts.
        assert!(!p.maybe_decr_to(7, 3));
        assert!(p.maybe_decr_to(10, 6));
        assert_eq!(p.next, 7);
        p.become_replicate();
        p.sent(12, 1);
        assert!(
            !p.maybe_decr_to(4, 0),
            "at or below matched is stale in replicate"
        );
        assert!(p.maybe_decr_to(8, 0));
        assert_eq!(p.next, 5);
    }

    #[test]
    fn probe_pauses_after_one_message() {
        let mut p = Progress::new(3, 4, u64::MAX);
        assert!(!p.is_paused());
        p.sent(2, 1);
        assert!(p.is_paused());
        p.maybe_update(2);
        assert!(!p.is_paused());
    }

    #[test]
    fn snapshot_state_resumes_after_snapshot() {
        let mut p = Progress::new(3, 4, u64::MAX);
        p.become_snapshot(50);
        assert!(p.is_paused());
        p.become_probe();
        assert_eq!(p.next, 51);
    }
}
