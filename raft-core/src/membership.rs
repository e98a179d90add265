//! Membership changes and leadership transfer.
//!
//! **When a configuration takes effect.** A configuration entry takes effect on every node
//! as soon as it is appended to that node's log, committed or not, and a node whose log is
//! truncated past such an entry reverts to the previous configuration (Raft dissertation,
//! section 4.1). A restarting node therefore recovers its configuration from the snapshot's
//! configuration plus the configuration entries after it in the log.
//!
//! Safety rests on three rules the leader enforces:
//!
//! 1. one change at a time: a change is refused while the latest configuration entry is
//!    uncommitted ([`MembershipError::Pending`](crate::MembershipError::Pending));
//! 2. a new leader changes nothing before it has committed an entry of its own term
//!    ([`MembershipError::LeaderNotReady`](crate::MembershipError::LeaderNotReady)), which closes the single-server-change hazard;
//! 3. a change of more than one voter goes through a joint configuration, where every
//!    decision needs a majority of both the old and the new voters.
//!
//! A leader that is not a voter of the configuration it replicates does not count itself in
//! its majorities, and steps down once that configuration commits. Until a change commits,
//! the leader keeps replicating to the nodes it removes, so that they learn of their removal
//! and stop campaigning.
//!
//! Two more rules protect votes. A voter must first join as a learner and catch up with the
//! configuration ([`MembershipError::LearnerNotCaughtUp`](crate::MembershipError::LearnerNotCaughtUp)), so that every voter knows the configuration
//! that made it one. And a node that knows no configuration at all never grants a vote: a
//! node re-added with a wiped data directory cannot vote a second time in a term its earlier
//! incarnation voted in.
//!
//! **Node ids are never reused.** A removed id is remembered in the configuration and
//! refused if proposed again ([`crate::ConfChangeError::Retired`]). A node added back with a clean
//! data directory would otherwise replay, from its empty log, old configurations in which its
//! id is a voter; two such nodes can form a quorum of a configuration long gone and elect a
//! second leader for a term. A machine that rejoins does so under a new id.

use std::collections::BTreeSet;

use crate::confchange;
use crate::error::{ConfChangeError, DriverError, MembershipError, TransferError};
use crate::message::MessageBody;
use crate::progress::Progress;
use crate::raft::Raft;
use crate::storage::{LogStorage, StorageError};
use crate::types::{
    ChangeKind, ConfChange, ConfState, Entry, EntryPayload, Index, NodeId, Role, SnapshotMeta,
};

/// Size of the chunks in which the log is scanned for configuration entries at start-up.
const RECOVERY_SCAN_BYTES: u64 = 4 << 20;

impl<S: LogStorage> Raft<S> {
    /// Rebuilds the configuration from the snapshot's plus the log's configuration entries.
    pub(crate) fn recover_membership(&mut self) -> Result<(), StorageError> {
        let last = self.log.last_index();
        let mut next = self.log.first_index();
        while next <= last {
            let entries = self.log.entries(next, last + 1, RECOVERY_SCAN_BYTES)?;
            let Some(last_read) = entries.last().map(|e| e.index) else {
                break;
            };
            for e in &entries {
                if let EntryPayload::Membership(cs) = &e.payload {
                    self.conf_history.push((e.index, (**cs).clone()));
                }
            }
            next = last_read + 1;
        }
        let (index, conf) = self.latest_conf();
        self.conf = conf;
        self.conf_index = index;
        self.voter_before_conf = index > 0 && self.conf_at(index - 1).is_voter(self.id);
        Ok(())
    }

    fn latest_conf(&self) -> (Index, ConfState) {
        match self.conf_history.last() {
            Some((i, cs)) => (*i, cs.clone()),
            None => self.base_conf.clone(),
        }
    }

    /// Entries were written to the log from `written[0].index` on (replacing anything
    /// after): adopt any configuration they carry and drop the ones they replaced.
    pub(crate) fn note_appended(&mut self, written: &[Entry]) {
        let Some(first) = written.first() else {
            return;
        };
        let before = self.conf_history.len();
        self.conf_history.retain(|&(i, _)| i < first.index);
        let mut changed = self.conf_history.len() != before;
        for e in written {
            if let EntryPayload::Membership(cs) = &e.payload {
                self.conf_history.push((e.index, (**cs).clone()));
                changed = true;
            }
        }
        if changed {
            let (index, conf) = self.latest_conf();
            self.set_conf(index, conf);
        }
    }

    /// The log was replaced by a snapshot: its configuration is now the base.
    pub(crate) fn restore_membership(&mut self, meta: &SnapshotMeta) {
        self.base_conf = (meta.index, meta.conf_state.clone());
        self.conf_history.clear();
        self.set_conf(meta.index, meta.conf_state.clone());
    }

    fn set_conf(&mut self, index: Index, conf: ConfState) {
        self.conf = conf;
        self.conf_index = index;
        self.voter_before_conf = index > 0 && self.conf_at(index - 1).is_voter(self.id);
        if self.role != Role::Leader {
            return;
        }
        let next = self.log.last_index() + 1;
        let members = self.replication_targets();
        // A node this configuration adds starts from scratch, even if the leader still
        // tracks an earlier membership of the same id (a removed node re-added with a clean
        // data directory has none of what the old one acknowledged).
        let before = if index > 0 {
            self.conf_at(index - 1).members()
        } else {
            BTreeSet::new()
        };
        for &id in &members {
            if id != self.id && !before.contains(&id) && self.conf.contains(id) {
                self.progress.remove(&id);
            }
            if !self.progress.contains_key(&id) {
                let mut pr = Progress::new(next, self.cfg.max_inflight_msgs, self.cfg.max_inflight_bytes);
                if id == self.id {
                    pr.matched = self.log.persisted;
                    pr.become_replicate();
                    pr.next = next;
                }
                self.progress.insert(id, pr);
            }
        }
        self.progress.retain(|id, _| members.contains(id));
        if let Some(target) = self.lead_transferee
            && !self.conf.voters.contains(&target)
        {
            self.abort_transfer();
        }
        // The quorum changed: the commit index may move, and pending reads may be confirmed.
        self.maybe_commit();
        self.check_confirmed_reads();
    }

    /// The nodes a leader replicates to: the members, plus, until the latest configuration
    /// commits, the members of the one before it, so that removed nodes learn of their
    /// removal (and stop campaigning) and the change cannot be lost with them.
    pub(crate) fn replication_targets(&self) -> BTreeSet<NodeId> {
        let mut targets = self.conf.members();
        if self.conf_index > self.log.committed && self.conf_index > 0 {
            targets.extend(self.conf_at(self.conf_index - 1).members());
        }
        targets
    }

    /// Whether this node knows no configuration at all (it never joined a cluster).
    pub(crate) fn conf_is_empty(&self) -> bool {
        self.conf.voters.is_empty()
            && self.conf.voters_outgoing.is_empty()
            && self.conf.learners.is_empty()
            && self.conf.learners_next.is_empty()
    }

    /// The commit index passed a configuration entry: stop replicating to removed nodes,
    /// leave a joint configuration, or step down if this leader is no longer a voter.
    pub(crate) fn on_membership_committed(&mut self) {
        if self.role != Role::Leader || self.conf_index > self.log.committed {
            return;
        }
        self.retire_removed(false);
        if self.conf.is_joint() {
            if self.conf.auto_leave {
                let next = confchange::apply(&self.conf, &ConfChange::leave_joint())
                    .expect("a joint configuration can always be left");
                self.append_leader_entries(vec![EntryPayload::Membership(Box::new(next))]);
            }
        } else if !self.conf.voters.contains(&self.id) {
            // Let the followers learn that the configuration committed before leaving.
            let peers = self.peers();
            self.send_commit_heartbeats(&peers);
            let term = self.term;
            self.become_follower(term, None);
        }
    }

    /// Stops replicating to nodes removed by the committed configuration, once each has
    /// the configuration entry and has been told that it committed (so that it stops
    /// campaigning). A removed node that does not catch up is dropped when `force` is set
    /// (an election timeout after the commit).
    pub(crate) fn retire_removed(&mut self, force: bool) {
        if self.role != Role::Leader || self.conf_index > self.log.committed {
            return;
        }
        let removed: Vec<NodeId> = self
            .progress
            .iter()
            .filter(|&(&id, pr)| {
                id != self.id && !self.conf.contains(id) && (force || pr.matched >= self.conf_index)
            })
            .map(|(&id, _)| id)
            .collect();
        if removed.is_empty() {
            return;
        }
        self.send_commit_heartbeats(&removed);
        for id in removed {
            self.progress.remove(&id);
        }
    }

    /// Proposes a membership change. Returns the index of its configuration entry.
    pub(crate) fn propose_conf_change(&mut self, cc: ConfChange) -> Result<Index, MembershipError> {
        if self.role != Role::Leader {
            return Err(MembershipError::NotLeader { leader: self.leader });
        }
        if let Some(target) = self.lead_transferee {
            return Err(MembershipError::TransferInProgress { target });
        }
        if self.conf_index > self.log.committed {
            return Err(MembershipError::Pending {
                index: self.conf_index,
            });
        }
        if !self.committed_in_term() {
            return Err(MembershipError::LeaderNotReady);
        }
        // A voter joins as a learner first and must have caught up with the configuration
        // before it votes: its vote may be needed as soon as the change is appended.
        for ch in &cc.changes {
            if ch.kind == ChangeKind::AddVoter && !self.conf.is_voter(ch.node) {
                if !self.conf.learners.contains(&ch.node) {
                    return Err(ConfChangeError::NotLearner(ch.node).into());
                }
                let matched = self.progress.get(&ch.node).map_or(0, |p| p.matched);
                if matched < self.conf_index {
                    return Err(MembershipError::LearnerNotCaughtUp {
                        node: ch.node,
                        matched,
                        needed: self.conf_index,
                    });
                }
            }
        }
        let next = confchange::apply(&self.conf, &cc)?;
        Ok(self.append_leader_entries(vec![EntryPayload::Membership(Box::new(next))]))
    }

    /// The configuration in effect at `index` (which must not be compacted).
    pub(crate) fn conf_at(&self, index: Index) -> ConfState {
        self.conf_history
            .iter()
            .rev()
            .find(|&&(i, _)| i <= index)
            .map(|(_, cs)| cs.clone())
            .unwrap_or_else(|| self.base_conf.1.clone())
    }

    /// Metadata for a snapshot of the state machine at `index` (at most the applied index);
    /// also forgets configuration history the snapshot makes unnecessary.
    pub(crate) fn snapshot_meta_at(&mut self, index: Index) -> Result<SnapshotMeta, DriverError> {
        if let Some(pending) = self.log.pending_snapshot() {
            return Err(DriverError::SnapshotPending { index: pending });
        }
        let low = self.log.first_index().saturating_sub(1);
        if index < low || index > self.log.applied {
            return Err(DriverError::IndexOutOfRange {
                index,
                low,
                high: self.log.applied,
            });
        }
        let term = self.log.term(index)?;
        let conf_state = self.conf_at(index);
        // Keep the newest configuration at or below `index` as the base.
        if let Some(pos) = self.conf_history.iter().rposition(|&(i, _)| i <= index) {
            let base = self.conf_history[pos].clone();
            self.conf_history.drain(..=pos);
            self.base_conf = base;
        }
        Ok(SnapshotMeta {
            index,
            term,
            conf_state,
        })
    }

    /// Starts transferring leadership to `target`.
    pub(crate) fn transfer_leader(&mut self, target: NodeId) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader { leader: self.leader });
        }
        if target == self.id {
            return Err(TransferError::ToSelf);
        }
        if !self.conf.voters.contains(&target) {
            return Err(TransferError::NotVoter { target });
        }
        if self.lead_transferee == Some(target) {
            return Ok(());
        }
        self.abort_transfer();
        self.lead_transferee = Some(target);
        // The transfer is abandoned after an election timeout (see `tick_leader`).
        self.election_elapsed = 0;
        // The target's election will override followers' leases: stop serving lease reads.
        self.lease_min_round = self.heartbeat_round + 1;
        let last = self.log.last_index();
        let pr = self.progress.get_mut(&target).expect("voters have progress");
        if pr.matched == last {
            self.send(target, MessageBody::TimeoutNow);
        } else {
            // Bring it up to date first; the acknowledgement triggers `TimeoutNow`.
            pr.pending_send = true;
        }
        Ok(())
    }

    pub(crate) fn abort_transfer(&mut self) {
        if self.lead_transferee.take().is_some() {
            // Rounds sent while transferring may have been acknowledged by nodes that then
            // voted for the target; only rounds after this point extend the lease.
            self.lease_min_round = self.heartbeat_round + 1;
        }
    }
}
