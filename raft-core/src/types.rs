//! Log and state types shared by every part of the protocol, and persisted by drivers.
//!
//! Everything here derives serde's `Serialize` and `Deserialize`, because these are the
//! values a driver writes to disk and sends to peers.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Identifies one member of a Raft group. Zero is reserved and never a valid id.
pub type NodeId = u64;

/// A Raft term: a logical clock that increases with every election.
pub type Term = u64;

/// A position in the replicated log. The first entry has index 1; index 0 is the empty prefix.
pub type Index = u64;

/// The largest term a peer may send. Messages with a higher term are refused, so the term
/// arithmetic of the protocol (a candidate's `term + 1`, a pre-vote's future term) can never
/// overflow, and a term never wraps around to a smaller one.
pub const MAX_TERM: Term = (1 << 63) - 1;

/// The largest log index a peer may send (in an append, its acknowledgement, a snapshot or a
/// hint). Messages naming a higher index are refused before any arithmetic is done with it.
pub const MAX_INDEX: Index = (1 << 63) - 1;

/// How far peers may raise a node's term within one election timeout (`election_tick`
/// ticks). A correct peer's term runs ahead by the number of elections it saw that the
/// receiver did not: even a node partitioned for years stays far below this. A message
/// further ahead than what remains of the allowance is refused
/// ([`crate::StepError::TermTooFarAhead`]) and the receiver raises its own term by what remains
/// instead, so nodes any distance apart converge, one allowance per timeout. No member,
/// however it lies, can raise a node's term faster than that: exhausting the term space up
/// to [`MAX_TERM`] would take 2^31 election timeouts.
pub const MAX_TERM_GAP: Term = 1 << 32;

/// Fixed per-entry overhead counted by [`Entry::size`], so that a flood of empty entries
/// still counts against byte limits.
pub const ENTRY_OVERHEAD: u64 = 16;

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The term of the leader that created this entry.
    pub term: Term,
    /// The entry's position in the log.
    pub index: Index,
    /// What the entry carries.
    pub payload: EntryPayload,
}

/// The contents of a log [`Entry`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryPayload {
    /// No payload. Every leader appends one at the start of its term so that it can commit
    /// (and serve reads) without waiting for a client proposal.
    Empty,
    /// An application command, opaque to the protocol.
    Normal(Bytes),
    /// A new cluster configuration. It takes effect as soon as it is appended to a log,
    /// committed or not (see the crate docs on membership).
    Membership(Box<ConfState>),
    /// A record of the driver's own, beside the application's commands (a driver keeps
    /// client sessions in such records, for example). The protocol treats it as it treats
    /// [`EntryPayload::Normal`]: it is opaque, counts against the same byte limits, and is
    /// replicated, committed and handed out in log order. Proposed with
    /// [`RawNode::propose_internal`](crate::RawNode::propose_internal).
    Internal(Bytes),
}

impl EntryPayload {
    /// [`Entry::size`] of an entry carrying this payload.
    pub fn entry_size(&self) -> u64 {
        ENTRY_OVERHEAD
            + match self {
                EntryPayload::Empty => 0,
                EntryPayload::Normal(data) | EntryPayload::Internal(data) => data.len() as u64,
                EntryPayload::Membership(cs) => cs.size(),
            }
    }
}

impl Entry {
    /// Creates an entry.
    pub fn new(term: Term, index: Index, payload: EntryPayload) -> Self {
        Entry { term, index, payload }
    }

    /// The approximate in-memory and on-wire size of the entry in bytes, used for every
    /// byte limit in the protocol (append message size, uncommitted bytes, apply batches).
    pub fn size(&self) -> u64 {
        self.payload.entry_size()
    }

    /// Whether this entry carries a configuration.
    pub fn is_membership(&self) -> bool {
        matches!(self.payload, EntryPayload::Membership(_))
    }
}

/// The state every node must persist before it acts on it: current term, vote and commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate this node voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// The highest log index known to be committed. Persisting it is an optimisation (it
    /// saves re-learning the commit index after a restart); safety does not depend on it.
    pub commit: Index,
}

/// A cluster configuration: who votes, who only learns, and, during a joint change, the
/// outgoing voter set.
///
/// A configuration is *joint* while `voters_outgoing` is non-empty: elections and commits
/// then need a majority of `voters` **and** a majority of `voters_outgoing`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfState {
    /// Voters of the incoming (or only) configuration.
    pub voters: BTreeSet<NodeId>,
    /// Nodes that receive the log but never vote or campaign.
    pub learners: BTreeSet<NodeId>,
    /// Voters of the outgoing configuration; empty unless the configuration is joint.
    pub voters_outgoing: BTreeSet<NodeId>,
    /// Outgoing voters that become learners when the joint configuration is left.
    pub learners_next: BTreeSet<NodeId>,
    /// Whether the leader leaves this joint configuration by itself once it commits.
    pub auto_leave: bool,
    /// Opaque per-node data replicated with the configuration, typically the address a
    /// transport uses to reach the node. Only members have entries here.
    pub node_meta: BTreeMap<NodeId, Bytes>,
    /// Ids removed from the cluster. They are never reused: a node that rejoins with a clean
    /// data directory would replay old configurations in which its id votes, and with a
    /// second such node could elect a leader of a long-gone configuration.
    pub removed: BTreeSet<NodeId>,
}

impl ConfState {
    /// What makes this a configuration no correct leader writes, if anything: id 0, no
    /// voters, a node in two roles at once (voter and learner; learner and outgoing voter),
    /// a next learner that is not an outgoing voter or is an incoming voter, automatic
    /// leave outside a joint configuration, a removed id that is still an incoming voter or
    /// a learner, or metadata of a non-member.
    pub(crate) fn malformation(&self) -> Option<&'static str> {
        let sets = [
            &self.voters,
            &self.learners,
            &self.voters_outgoing,
            &self.learners_next,
            &self.removed,
        ];
        if sets.iter().any(|s| s.contains(&0)) {
            return Some("configuration names node id 0");
        }
        if self.voters.is_empty() {
            return Some("configuration without voters");
        }
        if !self.voters.is_disjoint(&self.learners) {
            return Some("configuration has a node that is both voter and learner");
        }
        if !self.learners.is_disjoint(&self.voters_outgoing) {
            return Some("configuration has a learner that is an outgoing voter");
        }
        if !self.learners_next.is_subset(&self.voters_outgoing) {
            return Some("configuration has a next learner that is not an outgoing voter");
        }
        if !self.learners_next.is_disjoint(&self.voters) {
            return Some("configuration has a next learner that is an incoming voter");
        }
        if self.auto_leave && self.voters_outgoing.is_empty() {
            return Some("configuration leaves a joint configuration it is not in");
        }
        if !self.removed.is_disjoint(&self.voters)
            || !self.removed.is_disjoint(&self.learners)
            || !self.removed.is_disjoint(&self.learners_next)
        {
            return Some("configuration has a removed node as a member");
        }
        if self.node_meta.keys().any(|id| !self.contains(*id)) {
            return Some("configuration has metadata of a non-member");
        }
        None
    }

    /// A plain (non-joint) configuration with the given voters and no learners.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Self {
        ConfState {
            voters: voters.into_iter().collect(),
            ..ConfState::default()
        }
    }

    /// Adds learners to a configuration under construction.
    pub fn and_learners(mut self, learners: impl IntoIterator<Item = NodeId>) -> Self {
        self.learners.extend(learners);
        self
    }

    /// Whether this is a joint configuration.
    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    /// Whether `id` votes in either half of the configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    /// Whether `id` is a learner (now, or once the joint configuration is left).
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id) || self.learners_next.contains(&id)
    }

    /// Whether `id` is a member in any role.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id)
    }

    /// Every member, voters and learners, in ascending order.
    pub fn members(&self) -> BTreeSet<NodeId> {
        let mut all: BTreeSet<NodeId> = self.voters.clone();
        all.extend(self.voters_outgoing.iter().copied());
        all.extend(self.learners.iter().copied());
        all.extend(self.learners_next.iter().copied());
        all
    }

    /// Every voter of either half, in ascending order.
    pub fn all_voters(&self) -> BTreeSet<NodeId> {
        self.voters.union(&self.voters_outgoing).copied().collect()
    }

    /// The metadata stored for `id`, if any.
    pub fn meta(&self, id: NodeId) -> Option<&Bytes> {
        self.node_meta.get(&id)
    }

    fn size(&self) -> u64 {
        let ids =
            self.voters.len() + self.learners.len() + self.voters_outgoing.len() + self.learners_next.len();
        let meta: usize = self.node_meta.values().map(|m| m.len() + 8).sum();
        ((ids + self.removed.len()) * 8 + meta + 1) as u64
    }
}

/// Describes a snapshot: the log prefix it replaces and the configuration at its end.
///
/// The snapshot's data (the application state) never passes through this crate: drivers
/// store and stream it themselves and hand the protocol only this metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// Index of the last entry the snapshot covers.
    pub index: Index,
    /// Term of the entry at `index`.
    pub term: Term,
    /// The configuration in effect at `index`.
    pub conf_state: ConfState,
}

/// The role a node plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Follows a leader (or waits for one). Learners are always followers.
    Follower,
    /// Asks for pre-votes before starting a real election (only with pre-vote enabled).
    PreCandidate,
    /// Asks for votes in a new term.
    Candidate,
    /// Accepts proposals and replicates the log.
    Leader,
}

/// One change to the membership, part of a [`ConfChange`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberChange {
    /// What happens to the node.
    pub kind: ChangeKind,
    /// The node concerned.
    pub node: NodeId,
    /// New metadata for the node (for example its address); `None` keeps what is stored.
    pub meta: Option<Bytes>,
}

impl MemberChange {
    /// Adds `node` as a voter, or promotes it if it is a learner.
    pub fn add_voter(node: NodeId) -> Self {
        MemberChange {
            kind: ChangeKind::AddVoter,
            node,
            meta: None,
        }
    }

    /// Adds `node` as a learner, or demotes it if it is a voter.
    pub fn add_learner(node: NodeId) -> Self {
        MemberChange {
            kind: ChangeKind::AddLearner,
            node,
            meta: None,
        }
    }

    /// Removes `node` from the configuration.
    pub fn remove(node: NodeId) -> Self {
        MemberChange {
            kind: ChangeKind::Remove,
            node,
            meta: None,
        }
    }

    /// Attaches metadata (for example the node's address) to this change.
    pub fn with_meta(mut self, meta: impl Into<Bytes>) -> Self {
        self.meta = Some(meta.into());
        self
    }
}

/// The kind of a [`MemberChange`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeKind {
    /// Add a voter or promote a learner.
    AddVoter,
    /// Add a learner or demote a voter.
    AddLearner,
    /// Remove a node in any role.
    Remove,
}

/// How a [`ConfChange`] is carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConfChangeMode {
    /// Apply the change directly when it changes at most one voter, otherwise go through a
    /// joint configuration that the leader leaves by itself once it commits.
    Auto,
    /// Always go through a joint configuration. With `auto_leave` the leader leaves it by
    /// itself once it commits; without it, the joint configuration stays until someone
    /// proposes [`ConfChange::leave_joint`].
    Joint {
        /// Whether the leader leaves the joint configuration automatically.
        auto_leave: bool,
    },
}

/// A request to change the membership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfChange {
    /// The changes, applied in order. Empty means "leave the current joint configuration".
    pub changes: Vec<MemberChange>,
    /// How the change is carried out.
    pub mode: ConfChangeMode,
}

impl ConfChange {
    /// A change carried out in the [`ConfChangeMode::Auto`] mode.
    pub fn new(changes: impl IntoIterator<Item = MemberChange>) -> Self {
        ConfChange {
            changes: changes.into_iter().collect(),
            mode: ConfChangeMode::Auto,
        }
    }

    /// A change that always goes through a joint configuration.
    pub fn joint(changes: impl IntoIterator<Item = MemberChange>, auto_leave: bool) -> Self {
        ConfChange {
            changes: changes.into_iter().collect(),
            mode: ConfChangeMode::Joint { auto_leave },
        }
    }

    /// The request that leaves a joint configuration entered with `auto_leave: false`.
    pub fn leave_joint() -> Self {
        ConfChange {
            changes: Vec::new(),
            mode: ConfChangeMode::Auto,
        }
    }

    /// Whether this is the request to leave a joint configuration.
    pub fn is_leave_joint(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The node's volatile state a driver may want to react to: its role and who leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    /// The node's role.
    pub role: Role,
    /// The leader this node knows of in its current term.
    pub leader: Option<NodeId>,
}

/// A caller-chosen identifier for one read request.
///
/// A context must be unique among all read requests the node has ever issued, including
/// before a restart: a late confirmation for an old request must never match a new one.
/// Drivers typically draw it at random (64 bits) or combine a per-start nonce with a counter.
pub type ReadCtx = u64;

/// The outcome of a read request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The context passed when the read was requested.
    pub ctx: ReadCtx,
    /// The read index on success: once the local state machine has applied up to this
    /// index, reading it is linearizable. `Err` when the read cannot be served here and
    /// must be retried (for example, leadership was lost).
    pub result: Result<Index, ReadFailure>,
}

/// Why a read request failed. Retrying (perhaps on another node) is always safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadFailure {
    /// The node lost or never had leadership while the read was pending, or the leader it
    /// asked refused.
    #[error("leadership changed before the read could be confirmed")]
    LeadershipLost,
}
