//! Linearizable reads without writing to the log.
//!
//! **ReadIndex.** The leader records its commit index when a read arrives, then confirms it
//! is still the leader with a heartbeat round started *after* the read arrived: once a quorum
//! acknowledged the round, no other leader can have committed anything the recorded index
//! misses. The caller serves the read once its state machine has applied that index. Reads
//! arriving together share one round, and only one round for reads is out at a time: reads
//! arriving while it is out go together in the next one, sent when its answers are in (or at
//! the next tick, should they be lost). A new leader confirms no read before it has committed
//! an entry of its own term (until then its commit index may be stale); such reads wait.
//! A follower forwards reads to the leader and gets back a confirmed index, in the same
//! way: one request out at a time for all the reads waiting when it is sent.
//!
//! **Lease reads.** With check-quorum, a follower that heard from the leader ignores vote
//! requests for an election timeout. A leader whose heartbeat round sent at tick `t` was
//! acknowledged by a quorum therefore knows that no other leader can be elected before
//! `t + election_tick` on those followers' clocks. It serves reads without a round until
//! `t + election_tick - lease_drift_ticks`, the margin absorbing clock-rate drift between
//! nodes. A leader transferring leadership, or one whose lease has lapsed, falls back to
//! ReadIndex, because the transfer's election overrides followers' leases.

use crate::error::ReadError;
use crate::message::{MessageBody, ReadIndexRequest, ReadIndexResponse};
use crate::quorum::{VoteResult, joint_value, joint_vote};
use crate::raft::Raft;
use crate::storage::LogStorage;
use crate::types::{Index, NodeId, ReadCtx, ReadFailure, ReadState, Role};

/// A follower's ReadIndex request that is out at the leader: the answer to `ctx` confirms
/// every read in `reads`, since all of them arrived before it was sent.
#[derive(Clone, Debug)]
pub(crate) struct FollowerRequest {
    /// The request's context: the newest of `reads` when they were last added to.
    pub(crate) ctx: ReadCtx,
    /// The tick it was (last) sent in.
    pub(crate) sent_at: u64,
    pub(crate) reads: Vec<ReadCtx>,
}

/// A read waiting for confirmation at the leader.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PendingRead {
    pub(crate) ctx: ReadCtx,
    /// `None` for this node's own reads; otherwise the follower that asked.
    pub(crate) from: Option<NodeId>,
    /// The commit index when the read arrived (or when the leader first committed in its term).
    pub(crate) index: Index,
    /// The heartbeat round that confirms it.
    pub(crate) round: u64,
}

impl<S: LogStorage> Raft<S> {
    fn pending_read_count(&self) -> usize {
        self.reads_waiting_commit.len() + self.reads_unsent.len() + self.reads_awaiting.len()
    }

    fn register_local_read(&mut self, ctx: ReadCtx) -> Result<(), ReadError> {
        if self.local_reads.contains(&ctx) {
            return Err(ReadError::DuplicateCtx { ctx });
        }
        if self.local_reads.len().max(self.pending_read_count()) >= self.cfg.max_pending_reads {
            return Err(ReadError::TooManyPending {
                limit: self.cfg.max_pending_reads,
            });
        }
        self.local_reads.insert(ctx);
        Ok(())
    }

    /// Requests a ReadIndex read; the outcome arrives in a later `Ready`.
    pub(crate) fn read_index(&mut self, ctx: ReadCtx) -> Result<(), ReadError> {
        match (self.role, self.leader) {
            (Role::Leader, _) => {
                self.register_local_read(ctx)?;
                self.leader_read(ctx, None);
                Ok(())
            }
            (Role::Follower, Some(_)) => {
                self.register_local_read(ctx)?;
                self.follower_reads.push(ctx);
                Ok(())
            }
            _ => Err(ReadError::NotLeader { leader: self.leader }),
        }
    }

    /// Requests a lease read, falling back to ReadIndex when the lease cannot be trusted.
    pub(crate) fn lease_read(&mut self, ctx: ReadCtx) -> Result<(), ReadError> {
        if self.role == Role::Leader
            && self.cfg.check_quorum
            && self.lead_transferee.is_none()
            && self.committed_in_term()
            && self.lease_valid()
        {
            if self.local_reads.contains(&ctx) {
                return Err(ReadError::DuplicateCtx { ctx });
            }
            self.read_states.push(ReadState {
                ctx,
                result: Ok(self.log.committed),
            });
            return Ok(());
        }
        self.read_index(ctx)
    }

    /// Whether this leader holds a lease (see the module docs).
    pub(crate) fn lease_valid(&self) -> bool {
        let acked = self.quorum_acked_round();
        if acked < self.lease_min_round || acked == 0 {
            return false;
        }
        // The tick of the first round sent in the same tick as `acked` or earlier.
        let Some(&(_, sent_at)) = self.round_ticks.iter().rev().find(|&&(r, _)| r <= acked) else {
            return false;
        };
        let lease = u64::from(self.cfg.election_tick - self.cfg.lease_drift_ticks);
        self.ticks < sent_at + lease
    }

    /// The highest heartbeat round acknowledged by a quorum (this node counts as having
    /// acknowledged every round).
    fn quorum_acked_round(&self) -> u64 {
        let me = self.id;
        let current = self.heartbeat_round;
        let progress = &self.progress;
        let v = joint_value(&self.conf.voters, &self.conf.voters_outgoing, |id| {
            if id == me {
                Some(current)
            } else {
                progress.get(&id).map(|p| p.acked_round)
            }
        });
        if v == u64::MAX { 0 } else { v }
    }

    pub(crate) fn note_round_sent(&mut self, round: u64) {
        if self.round_ticks.back().is_none_or(|&(_, t)| t != self.ticks) {
            self.round_ticks.push_back((round, self.ticks));
        }
        // Rounds older than a lease are useless; keep the list bounded by the lease length.
        let horizon = u64::from(self.cfg.election_tick) + 1;
        while self.round_ticks.len() > 1
            && self
                .round_ticks
                .front()
                .is_some_and(|&(_, t)| t + horizon < self.ticks)
        {
            self.round_ticks.pop_front();
        }
    }

    fn leader_read(&mut self, ctx: ReadCtx, from: Option<NodeId>) {
        let read = PendingRead {
            ctx,
            from,
            index: self.log.committed,
            round: 0,
        };
        if !self.committed_in_term() {
            self.reads_waiting_commit.push(read);
            return;
        }
        let me = self.id;
        if joint_vote(&self.conf.voters, &self.conf.voters_outgoing, |id| Some(id == me)) == VoteResult::Won {
            // This node alone is a quorum.
            self.resolve_read(read);
            return;
        }
        self.reads_unsent.push(read);
    }

    pub(crate) fn handle_remote_read(&mut self, from: NodeId, ctx: ReadCtx) {
        if self.pending_read_count() >= self.cfg.max_pending_reads || self.lead_transferee.is_some() {
            self.reject_remote_read(from, ctx);
            return;
        }
        self.leader_read(ctx, Some(from));
    }

    pub(crate) fn reject_remote_read(&mut self, to: NodeId, ctx: ReadCtx) {
        self.send(
            to,
            MessageBody::ReadIndexResponse(ReadIndexResponse { ctx, index: None }),
        );
    }

    pub(crate) fn handle_read_index_response(&mut self, r: ReadIndexResponse) {
        // Only the answer to the request that is out counts; anything else is late (an
        // answer to a request given up with the leader it went to).
        if self.follower_request.as_ref().is_none_or(|q| q.ctx != r.ctx) {
            return;
        }
        let request = self.follower_request.take().expect("checked");
        let result = match r.index {
            Some(index) => Ok(index),
            None => Err(ReadFailure::LeadershipLost),
        };
        for ctx in request.reads {
            if self.local_reads.remove(&ctx) {
                self.read_states.push(ReadState { ctx, result });
            }
        }
    }

    /// A follower sends the leader one ReadIndex request for all its reads waiting, unless
    /// one is out: reads that arrive meanwhile go in the next, sent when its answer is in.
    /// A request unanswered by the next tick is sent again, with the newer reads added (its
    /// messages or answer may have been lost).
    pub(crate) fn flush_follower_reads(&mut self) {
        let Some(leader) = self.follower_request_due() else {
            return;
        };
        let (mut reads, resent) = match self.follower_request.take() {
            Some(q) => (q.reads, Some(q.ctx)),
            None => (Vec::new(), None),
        };
        // The request's context: the newest read's. An answer to an earlier send was
        // worked out before the reads added since, so it must not match; a read's context
        // is unique, so a context no request used before cannot. Sent again unchanged, the
        // request keeps its context: an answer to either send confirms its reads.
        let ctx = match (self.follower_reads.last(), resent) {
            (Some(&newest), _) => newest,
            (None, Some(ctx)) => ctx,
            (None, None) => return,
        };
        reads.append(&mut self.follower_reads);
        self.send(leader, MessageBody::ReadIndex(ReadIndexRequest { ctx }));
        self.follower_request = Some(FollowerRequest {
            ctx,
            sent_at: self.ticks,
            reads,
        });
    }

    /// Whether a follower has reads to ask the leader about and may send a request now.
    pub(crate) fn owes_follower_request(&self) -> bool {
        self.follower_request_due().is_some()
    }

    /// The leader to send a follower's request to, if one is due now.
    fn follower_request_due(&self) -> Option<NodeId> {
        if self.role != Role::Follower {
            return None;
        }
        let due = match &self.follower_request {
            None => !self.follower_reads.is_empty(),
            Some(q) => q.sent_at != self.ticks,
        };
        if due { self.leader } else { None }
    }

    fn resolve_read(&mut self, read: PendingRead) {
        match read.from {
            None => {
                self.local_reads.remove(&read.ctx);
                self.read_states.push(ReadState {
                    ctx: read.ctx,
                    result: Ok(read.index),
                });
            }
            Some(to) => self.send(
                to,
                MessageBody::ReadIndexResponse(ReadIndexResponse {
                    ctx: read.ctx,
                    index: Some(read.index),
                }),
            ),
        }
    }

    /// Starts a heartbeat round for the reads that arrived since the last one, unless a
    /// round is still in flight (see [`Raft::may_start_read_round`]).
    pub(crate) fn flush_reads(&mut self) {
        if self.role != Role::Leader || !self.may_start_read_round() {
            return;
        }
        self.broadcast_heartbeat();
    }

    /// Whether reads wait for a round to be started for them and one may start now.
    pub(crate) fn owes_read_round(&self) -> bool {
        self.role == Role::Leader && self.may_start_read_round()
    }

    /// Reads wait for a round, and no round is in flight: the latest round was acknowledged
    /// by a quorum, or was sent in an earlier tick (so a round whose messages or answers
    /// were lost holds reads back for at most a tick).
    ///
    /// One round at a time is what makes reads share rounds under load: reads that arrive
    /// while a round is out wait for its answers and then go out together in the next one,
    /// instead of each turn of the driver sending a round of its own. It costs no latency
    /// when reads come one at a time, and at most one round trip more otherwise.
    fn may_start_read_round(&self) -> bool {
        if self.reads_unsent.is_empty() {
            return false;
        }
        let latest = self.heartbeat_round;
        let sent_this_tick = self
            .round_ticks
            .back()
            .is_some_and(|&(_, tick)| tick == self.ticks);
        !sent_this_tick || self.quorum_acked_round() >= latest
    }

    /// Every read that waits for a round joins `round`, which is being sent now: they all
    /// arrived before it.
    pub(crate) fn attach_unsent_reads(&mut self, round: u64) {
        for mut r in std::mem::take(&mut self.reads_unsent) {
            r.round = round;
            self.reads_awaiting.push_back(r);
        }
    }

    /// Resolves every read whose round a quorum acknowledged.
    pub(crate) fn check_confirmed_reads(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let acked = self.quorum_acked_round();
        while self.reads_awaiting.front().is_some_and(|r| r.round <= acked) {
            let r = self.reads_awaiting.pop_front().expect("checked");
            self.resolve_read(r);
        }
    }

    /// The leader committed an entry of its term: reads that waited for it can proceed, at
    /// the new commit index.
    pub(crate) fn release_reads_waiting_commit(&mut self) {
        if self.reads_waiting_commit.is_empty() || !self.committed_in_term() {
            return;
        }
        let committed = self.log.committed;
        for mut r in std::mem::take(&mut self.reads_waiting_commit) {
            r.index = committed;
            self.leader_read(r.ctx, r.from);
        }
    }

    /// Leadership (or the known leader) changed: every pending read fails and may be retried.
    pub(crate) fn fail_pending_reads(&mut self) {
        self.follower_reads.clear();
        self.follower_request = None;
        let mut pending: Vec<PendingRead> = std::mem::take(&mut self.reads_waiting_commit);
        pending.append(&mut self.reads_unsent);
        pending.extend(self.reads_awaiting.drain(..));
        for r in pending {
            if let Some(to) = r.from {
                self.reject_remote_read(to, r.ctx);
            }
        }
        for ctx in std::mem::take(&mut self.local_reads) {
            self.read_states.push(ReadState {
                ctx,
                result: Err(ReadFailure::LeadershipLost),
            });
        }
    }
}
