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
//!    uncommitted ([`Error::ConfChangePending`]);
//! 2. a new leader changes nothing before it has committed an entry of its own term
//!    ([`Error::LeaderNotReady`]), which closes the single-server-change hazard;
//! 3. a change of more than one voter goes through a joint configuration, where every
//!    decision needs a majority of both the old and the new voters.
//!
//! A leader that is not a voter of the configuration it replicates does not count itself in
//! its majorities, and steps down once that configuration commits.

use crate::confchange;
use crate::error::Error;
use crate::message::MessageBody;
use crate::progress::Progress;
use crate::raft::Raft;
use crate::storage::LogStorage;
use crate::types::{ConfChange, ConfState, Entry, EntryPayload, Index, NodeId, Role, SnapshotMeta};

/// Size of the chunks in which the log is scanned for configuration entries at start-up.
const RECOVERY_SCAN_BYTES: u64 = 4 << 20;

impl<S: LogStorage> Raft<S> {
    /// Rebuilds the configuration from the snapshot's plus the log's configuration entries.
    pub(crate) fn recover_membership(&mut self) -> Result<(), Error> {
        let last = self.log.last_index();
        let mut next = self.log.first_index();
        while next <= last {
            let entries = self.log.entries(next, last + 1, RECOVERY_SCAN_BYTES)?;
            let Some(last_read) = entries.last().map(|e| e.index) else {
                break;
            };
            for e in &entries {
                if let EntryPayload::Membership(cs) = &e.payload {
                    self.conf_history.push((e.index, cs.clone()));
                }
            }
            next = last_read + 1;
        }
        let (index, conf) = self.latest_conf();
        self.conf = conf;
        self.conf_index = index;
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
                self.conf_history.push((e.index, cs.clone()));
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
        if self.role != Role::Leader {
            return;
        }
        let next = self.log.last_index() + 1;
        let members = self.conf.members();
        for &id in &members {
            if !self.progress.contains_key(&id) {
                let mut pr = Progress::new(next, self.cfg.max_inflight_msgs);
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

    /// The commit index passed a configuration entry: leave a joint configuration, or step
    /// down if this leader is no longer a voter.
    pub(crate) fn on_membership_committed(&mut self) {
        if self.role != Role::Leader || self.conf_index > self.log.committed {
            return;
        }
        if self.conf.is_joint() {
            if self.conf.auto_leave {
                let next = confchange::apply(&self.conf, &ConfChange::leave_joint())
                    .expect("a joint configuration can always be left");
                self.append_leader_entries(vec![EntryPayload::Membership(next)]);
            }
        } else if !self.conf.voters.contains(&self.id) {
            let term = self.term;
            self.become_follower(term, None);
        }
    }

    /// Proposes a membership change. Returns the index of its configuration entry.
    pub(crate) fn propose_conf_change(&mut self, cc: ConfChange) -> Result<Index, Error> {
        self.check_can_propose()?;
        if self.conf_index > self.log.committed {
            return Err(Error::ConfChangePending {
                index: self.conf_index,
            });
        }
        if !self.committed_in_term() {
            return Err(Error::LeaderNotReady);
        }
        let next = confchange::apply(&self.conf, &cc)?;
        Ok(self.append_leader_entries(vec![EntryPayload::Membership(next)]))
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
    pub(crate) fn snapshot_meta_at(&mut self, index: Index) -> Result<SnapshotMeta, Error> {
        if let Some(pending) = self.log.pending_snapshot() {
            return Err(Error::SnapshotPending { index: pending });
        }
        let low = self.log.first_index().saturating_sub(1);
        if index < low || index > self.log.applied {
            return Err(Error::IndexOutOfRange {
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
    pub(crate) fn transfer_leader(&mut self, target: NodeId) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader { leader: self.leader });
        }
        if target == self.id {
            return Err(Error::TransferToSelf);
        }
        if !self.conf.voters.contains(&target) {
            return Err(Error::TransferTargetNotVoter { target });
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
