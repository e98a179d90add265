//! Quiescence: a group with nothing to do stops its clock, so that a node can host
//! thousands of idle groups without ticking or heartbeating any of them.
//!
//! **Going quiet.** The driver asks a leader to quiesce ([`RawNode::quiesce`]) when it sees no
//! traffic. The leader agrees only when nothing is in flight: every member (learners too)
//! holds the whole log durably, all of it committed, no read, transfer or joint
//! configuration is pending. It then sends a last heartbeat round marked `quiesce` and stops
//! its clock. A follower receiving it stops its clock too, if it also has nothing pending
//! and holds the leader's whole log committed; otherwise it wakes the leader at once.
//!
//! **Waking.** A quiescent node wakes on any message other than the traffic of quiescence
//! itself (the marked heartbeat on a follower, heartbeat answers on a leader), and on any
//! request of its own that needs the group (a proposal, a read, a membership change, a
//! transfer, a campaign). A leader's next message wakes its followers: the append of the
//! proposal that woke it, a read's heartbeat round, or its next heartbeat, due long before
//! a follower's election timeout. A follower that wakes for any other reason than its
//! leader's message tells the leader with [`MessageBody::Wake`], so that the leader resumes
//! its heartbeats before the follower's election timer runs out.
//!
//! **A leader that died quiescent** sends nothing, and its quiescent followers would wait
//! for ever: the driver must wake a follower ([`RawNode::wake`]) when it suspects that its
//! leader's node is down. A multi-group driver knows that from one liveness signal per
//! peer node (such as its coalesced heartbeats), whatever the number of groups. A woken
//! follower then behaves like any follower that lost its leader: it campaigns after an
//! election timeout. A node that restarts knows no leader and is awake: a voter campaigns,
//! which wakes the group, and a learner, which never campaigns, sends the voters
//! [`MessageBody::Wake`] after an election timeout without a leader.
//!
//! **Leases.** A quiescent node's clock stands still, so a lease measured in its ticks would
//! outlive real time. A leader therefore gives up its lease when it quiesces: after waking,
//! lease reads wait for a heartbeat round sent after the wake-up (see `read.rs`). Followers'
//! clocks standing still only makes them refuse votes for longer, which a lease can only
//! gain from.
//!
//! Quiescence changes no durable state and no message's meaning, so safety does not depend
//! on it; only liveness does, through the driver's duty to wake followers of a dead leader.
//! With pre-vote and check-quorum (the runtime's defaults), a follower that loses the marked
//! heartbeat and times out is turned down by its quiescent peers and merely wakes the leader.

use crate::message::MessageBody;
use crate::progress::ProgressState;
use crate::raft::Raft;
use crate::storage::LogStorage;
use crate::types::{Index, NodeId, Role};

impl<S: LogStorage> Raft<S> {
    /// Whether this leader has nothing in flight, so that its group may go quiet.
    fn leader_idle(&self) -> bool {
        let last = self.log.last_index();
        self.role == Role::Leader
            && self.lead_transferee.is_none()
            && self.log.committed == last
            && self.log.persisted == last
            && self.conf.voters_outgoing.is_empty()
            && self.local_reads.is_empty()
            && self.reads_waiting_commit.is_empty()
            && self.reads_unsent.is_empty()
            && self.reads_awaiting.is_empty()
            && self.progress.iter().all(|(&id, pr)| {
                // A removed peer still tracked is being retired, on the clock.
                self.conf.contains(id)
                    && (id == self.id || (pr.matched == last && pr.state == ProgressState::Replicate))
            })
    }

    /// Whether this follower may stop its clock on its leader's marked heartbeat.
    fn follower_idle(&self, commit: Index) -> bool {
        let last = self.log.last_index();
        self.role == Role::Follower
            && last == commit
            && self.log.committed == last
            && self.log.persisted == last
            && self.local_reads.is_empty()
            && self.follower_reads.is_empty()
            && self.follower_request.is_none()
    }

    /// A leader with nothing in flight goes quiet (see the module docs). Returns whether
    /// the node is quiescent now.
    pub(crate) fn quiesce(&mut self) -> bool {
        if self.quiescent {
            return true;
        }
        if !self.leader_idle() {
            return false;
        }
        self.broadcast_heartbeat_round(true);
        // Acknowledgements of this round, or of any before it, grant no lease: the clock
        // stops now, and followers may be woken and tick while it stands still.
        self.lease_min_round = self.heartbeat_round + 1;
        self.quiescent = true;
        true
    }

    /// A follower handled its leader's heartbeat marked `quiesce`, which set its commit
    /// index to `commit`: it goes quiet too, or, with something pending, wakes the leader.
    pub(crate) fn follow_into_quiescence(&mut self, leader: NodeId, commit: Index) {
        if self.follower_idle(commit) {
            self.quiescent = true;
        } else {
            self.send(leader, MessageBody::Wake);
        }
    }

    /// Whether a quiescent node stays quiescent on receiving `body` in its own term: the
    /// traffic of quiescence itself does not wake it.
    pub(crate) fn stays_quiescent(&self, from: NodeId, body: &MessageBody) -> bool {
        match (self.role, body) {
            (Role::Leader, MessageBody::HeartbeatResponse(_)) => true,
            (Role::Follower, MessageBody::Heartbeat(h)) => h.quiesce && self.leader == Some(from),
            _ => false,
        }
    }

    /// A request that only a leader serves (a proposal, a membership change, a transfer)
    /// wakes a quiescent leader; on any other node it fails and wakes nothing.
    pub(crate) fn wake_leader(&mut self) {
        if self.role == Role::Leader {
            self.wake(false);
        }
    }

    /// Starts the clock again. A follower tells its leader unless `leader_knows` (the
    /// wake-up is the leader's own message, or a request on its way to the leader). A
    /// leader's next message wakes its followers: the append of the proposal that woke
    /// it, the heartbeat round of a read, or its next heartbeat, due in `heartbeat_tick`
    /// ticks, well before any follower's election timeout.
    pub(crate) fn wake(&mut self, leader_knows: bool) {
        if !self.quiescent {
            return;
        }
        self.quiescent = false;
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        if self.role != Role::Leader
            && let (Some(leader), false) = (self.leader, leader_knows)
        {
            self.send(leader, MessageBody::Wake);
        }
    }
}
