//! Errors returned by the protocol: one type per kind of call, each listing only what that
//! call can return, so that a driver can match every case.
//!
//! | Call | Error |
//! |---|---|
//! | [`RawNode::new`](crate::RawNode::new) | [`RecoverError`] |
//! | [`step`](crate::RawNode::step), [`step_snapshot`](crate::RawNode::step_snapshot) | [`StepError`] |
//! | [`propose`](crate::RawNode::propose) | [`ProposeError`] |
//! | [`propose_conf_change`](crate::RawNode::propose_conf_change) | [`MembershipError`] |
//! | [`transfer_leader`](crate::RawNode::transfer_leader) | [`TransferError`] |
//! | [`read_index`](crate::RawNode::read_index), [`lease_read`](crate::RawNode::lease_read) | [`ReadError`] |
//! | [`campaign`](crate::RawNode::campaign) | [`CampaignError`] |
//! | [`ready`](crate::RawNode::ready), [`on_persisted`](crate::RawNode::on_persisted), [`on_applied`](crate::RawNode::on_applied), [`snapshot_meta_at`](crate::RawNode::snapshot_meta_at) | [`DriverError`] |
//! | [`entries`](crate::RawNode::entries), [`term_at`](crate::RawNode::term_at) | [`StorageError`] |
//!
//! None of them leaves the node in an inconsistent state: the input that caused it had no
//! effect unless the variant says otherwise. Every error of a running node's calls has a
//! `Fatal` variant: a call may find the node stopped because a safety invariant would have
//! been broken ([`Invariant`]), and then every later call returns it; `is_fatal()` says so.

use crate::config::ConfigError;
use crate::storage::StorageError;
use crate::types::{Index, NodeId, ReadCtx, Term};

/// Why [`RawNode::new`](crate::RawNode::new) could not start a node.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Reading the log storage failed.
    #[error("log storage: {0}")]
    Storage(#[from] StorageError),
    /// The persisted state does not allow the node to start.
    #[error("inconsistent persisted state: {0}")]
    Inconsistent(#[from] Inconsistency),
}

/// What is inconsistent in the state a node was asked to start from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Inconsistency {
    /// The state machine is behind the snapshot the log starts from.
    #[error(
        "applied index {applied} is below the snapshot index {snapshot}; restore the state \
         machine from the snapshot first"
    )]
    AppliedBelowSnapshot {
        /// The applied index given.
        applied: Index,
        /// The index of the snapshot the log starts from.
        snapshot: Index,
    },
    /// The state machine is ahead of the log.
    #[error("applied index {applied} is beyond the last log index {last}")]
    AppliedBeyondLog {
        /// The applied index given.
        applied: Index,
        /// The last index of the log.
        last: Index,
    },
    /// The persisted commit index is beyond the log.
    #[error("persisted commit index {commit} is beyond the last log index {last}")]
    CommitBeyondLog {
        /// The persisted commit index.
        commit: Index,
        /// The last index of the log.
        last: Index,
    },
    /// The persisted vote names node 0, which is reserved.
    #[error("persisted vote for node 0")]
    VoteForZero,
}

/// Why [`RawNode::step`](crate::RawNode::step) or
/// [`RawNode::step_snapshot`](crate::RawNode::step_snapshot) refused a message. Nothing in a
/// refused message was acted upon, except where a variant says otherwise
/// ([`StepError::TermTooFarAhead`], [`StepError::PeerLostLog`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The message is addressed to another node.
    #[error("message for node {to} delivered to node {me}")]
    WrongRecipient {
        /// The message's recipient.
        to: NodeId,
        /// This node.
        me: NodeId,
    },
    /// The message is malformed, or not one its sender may send (a correct peer never sends
    /// it).
    #[error("malformed {kind} message from node {from}: {reason}")]
    Malformed {
        /// The message kind.
        kind: &'static str,
        /// The sender.
        from: NodeId,
        /// What is wrong.
        reason: &'static str,
    },
    /// The message's term is further ahead of this node's than peers may raise it within one
    /// election timeout ([`crate::MAX_TERM_GAP`]). The message was not acted upon; the node
    /// raised its own term to `raised_to` (as a follower that knows no leader) to move
    /// toward it, so a correct peer that far ahead is reached within a few timeouts.
    #[error(
        "{kind} message from node {from} at term {term} is too far ahead of this node's term; \
         raised this node's term to {raised_to} toward it"
    )]
    TermTooFarAhead {
        /// The message kind.
        kind: &'static str,
        /// The sender.
        from: NodeId,
        /// The message's term.
        term: Term,
        /// This node's term after the refusal.
        raised_to: Term,
    },
    /// A response came from a node this leader does not replicate to.
    #[error("response from unknown peer {id}")]
    UnknownPeer {
        /// The sender.
        id: NodeId,
    },
    /// A follower no longer holds entries it acknowledged in this term: its durable state
    /// was lost (a failed disk, or a wiped node that reuses its id while still a member).
    /// The leader acted on it: it repairs the follower from what it still holds. The commit
    /// index may have counted the lost entries, so an operator must look into it.
    #[error("node {peer} lost acknowledged entries: acknowledged {acknowledged}, holds {holds}")]
    PeerLostLog {
        /// The follower.
        peer: NodeId,
        /// What it had acknowledged.
        acknowledged: Index,
        /// What it holds now.
        holds: Index,
    },
    /// A snapshot message was stepped without its data. Snapshots travel with their data
    /// (see [`RawNode::step_snapshot`](crate::RawNode::step_snapshot)); a correct peer never
    /// sends the metadata alone on the message path.
    #[error("snapshot message from node {from} arrived without its data")]
    SnapshotWithoutData {
        /// The sender.
        from: NodeId,
    },
    /// The node has stopped (see [`Invariant`]).
    #[error("safety invariant violated, node stopped: {0}")]
    Fatal(Invariant),
}

/// Why [`RawNode::propose`](crate::RawNode::propose) refused a command. A refused command
/// was not appended: it is definitely not applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the leader.
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<NodeId>,
    },
    /// The leader is transferring leadership and accepts no proposals meanwhile.
    #[error("leadership transfer to node {target} in progress")]
    TransferInProgress {
        /// The transfer's target.
        target: NodeId,
    },
    /// Accepting the proposal would exceed `max_uncommitted_bytes`: followers are lagging.
    #[error("too many uncommitted bytes ({uncommitted} + {size} > {limit})")]
    UncommittedLimit {
        /// Bytes proposed and not yet committed.
        uncommitted: u64,
        /// Size of the refused proposal.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The node has stopped (see [`Invariant`]).
    #[error("safety invariant violated, node stopped: {0}")]
    Fatal(Invariant),
}

/// Why [`RawNode::propose_conf_change`](crate::RawNode::propose_conf_change) refused a
/// change. A refused change was not appended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// This node is not the leader.
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<NodeId>,
    },
    /// The leader is transferring leadership and accepts no proposals meanwhile.
    #[error("leadership transfer to node {target} in progress")]
    TransferInProgress {
        /// The transfer's target.
        target: NodeId,
    },
    /// A configuration change is already in progress (appended but not committed).
    #[error("a configuration change at index {index} is still pending")]
    Pending {
        /// Index of the pending configuration entry.
        index: Index,
    },
    /// A new leader must commit an entry of its own term before it changes the configuration.
    #[error("leader has not yet committed an entry in its term")]
    LeaderNotReady,
    /// A learner must have replicated the configuration before it is promoted to voter.
    #[error("learner {node} has not caught up (matched {matched}, needs {needed})")]
    LearnerNotCaughtUp {
        /// The learner.
        node: NodeId,
        /// Its replicated index.
        matched: Index,
        /// The index of the current configuration entry.
        needed: Index,
    },
    /// The change itself is invalid for the configuration in effect.
    #[error("invalid configuration change: {0}")]
    Invalid(#[from] ConfChangeError),
    /// The node has stopped (see [`Invariant`]).
    #[error("safety invariant violated, node stopped: {0}")]
    Fatal(Invariant),
}

/// Why [`RawNode::transfer_leader`](crate::RawNode::transfer_leader) refused to start a
/// transfer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// This node is not the leader.
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<NodeId>,
    },
    /// The target is this node, the leader already.
    #[error("cannot transfer leadership to the current leader")]
    ToSelf,
    /// Leadership can only be transferred to a voter.
    #[error("cannot transfer leadership to node {target}: not a voter")]
    NotVoter {
        /// The refused target.
        target: NodeId,
    },
    /// The node has stopped (see [`Invariant`]).
    #[error("safety invariant violated, node stopped: {0}")]
    Fatal(Invariant),
}

/// Why [`RawNode::read_index`](crate::RawNode::read_index) or
/// [`RawNode::lease_read`](crate::RawNode::lease_read) refused a read. A refused read was
/// not registered: no [`ReadState`](crate::ReadState) will come for it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// No leader is known to confirm the read (this node is not the leader, and knows none
    /// it could ask).
    #[error("no leader to confirm the read (leader hint: {leader:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<NodeId>,
    },
    /// Too many reads wait for confirmation.
    #[error("too many pending read requests (limit {limit})")]
    TooManyPending {
        /// The configured limit.
        limit: usize,
    },
    /// A read with the same context is already pending.
    #[error("a read with context {ctx} is already pending")]
    DuplicateCtx {
        /// The duplicated context.
        ctx: ReadCtx,
    },
    /// The node has stopped (see [`Invariant`]).
    #[error("safety invariant violated, node stopped: {0}")]
    Fatal(Invariant),
}

/// Why [`RawNode::campaign`](crate::RawNode::campaign) refused to start an election.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CampaignError {
    /// This node is not a voter of its configuration (a learner, or not a member), so it
    /// cannot become leader.
    #[error("not a voter: cannot campaign")]
    NotVoter,
    /// The node has stopped (see [`Invariant`]).
    #[error("safety invariant violated, node stopped: {0}")]
    Fatal(Invariant),
}

/// Why a call of the driving loop ([`RawNode::ready`](crate::RawNode::ready),
/// [`RawNode::on_persisted`](crate::RawNode::on_persisted),
/// [`RawNode::on_applied`](crate::RawNode::on_applied),
/// [`RawNode::snapshot_meta_at`](crate::RawNode::snapshot_meta_at)) failed: the log
/// storage failed, or the driver reported something the node never handed out.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Reading the log storage failed.
    #[error("log storage: {0}")]
    Storage(#[from] StorageError),
    /// A persistence completion was reported for a batch that was never handed out, or
    /// out of order.
    #[error("unknown or out-of-order persist token {token}")]
    UnknownPersistToken {
        /// The reported token.
        token: u64,
    },
    /// An index is outside the range the call accepts.
    #[error("index {index} out of range [{low}, {high}]")]
    IndexOutOfRange {
        /// The offending index.
        index: Index,
        /// Smallest acceptable index.
        low: Index,
        /// Largest acceptable index.
        high: Index,
    },
    /// A snapshot received from the leader is being installed; local snapshots must wait.
    #[error("a snapshot at index {index} from the leader is being installed")]
    SnapshotPending {
        /// The index of the snapshot being installed.
        index: Index,
    },
    /// The node has stopped (see [`Invariant`]).
    #[error("safety invariant violated, node stopped: {0}")]
    Fatal(Invariant),
}

macro_rules! fatal_case {
    ($($ty:ident),* $(,)?) => {$(
        impl $ty {
            /// Whether the node has stopped: a safety invariant would have been broken, and
            /// every later call fails the same way.
            pub fn is_fatal(&self) -> bool {
                matches!(self, $ty::Fatal(_))
            }
        }
    )*};
}

fatal_case!(
    StepError,
    ProposeError,
    MembershipError,
    TransferError,
    ReadError,
    CampaignError,
    DriverError
);

macro_rules! halted {
    ($($ty:ident),* $(,)?) => {$(
        impl Halted for $ty {
            fn halted(invariant: Invariant) -> Self {
                $ty::Fatal(invariant)
            }
        }
    )*};
}

halted!(
    ProposeError,
    MembershipError,
    TransferError,
    ReadError,
    CampaignError,
    DriverError
);

impl Halted for StepError {
    fn halted(invariant: Invariant) -> Self {
        StepError::Fatal(invariant)
    }

    fn lost_log_of(&self) -> Option<NodeId> {
        match self {
            StepError::PeerLostLog { peer, .. } => Some(*peer),
            _ => None,
        }
    }
}

/// The errors of calls on a running node: each can say that the node stopped.
pub(crate) trait Halted {
    /// The error every call returns once `invariant` stopped the node.
    fn halted(invariant: Invariant) -> Self;

    /// The follower this error reports as having lost acknowledged entries (the one case
    /// where a leader's match index may go down).
    fn lost_log_of(&self) -> Option<NodeId> {
        None
    }
}

/// A safety invariant the node checks in every build, and what would have broken it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invariant {
    /// A node's term never decreases.
    #[error("the term would decrease from {from} to {to}")]
    TermDecreased {
        /// The current term.
        from: Term,
        /// The smaller term.
        to: Term,
    },
    /// The commit index never decreases.
    #[error("the commit index would decrease from {from} to {to}")]
    CommitRegressed {
        /// The current commit index.
        from: Index,
        /// The smaller index.
        to: Index,
    },
    /// The commit index never runs past the log.
    #[error("the commit index would pass the last log index ({commit} > {last})")]
    CommitBeyondLog {
        /// The commit index asked for.
        commit: Index,
        /// The last index of the log.
        last: Index,
    },
    /// Committed entries are never replaced.
    #[error("entries from index {at} would replace committed entries (commit index {commit})")]
    TruncateCommitted {
        /// The first index that would be replaced.
        at: Index,
        /// The commit index.
        commit: Index,
    },
    /// The log has no holes.
    #[error("entries from index {at} would leave a gap after the last index {last}")]
    LogGap {
        /// The first index appended.
        at: Index,
        /// The last index of the log.
        last: Index,
    },
    /// What a leader knows a follower to hold never decreases (except when the follower
    /// reports, after acknowledging them, that it lost entries: see [`StepError::PeerLostLog`]).
    #[error("the match index of node {peer} would decrease from {from} to {to}")]
    MatchDecreased {
        /// The follower.
        peer: NodeId,
        /// The current match index.
        from: Index,
        /// The smaller index.
        to: Index,
    },
}

/// Why a configuration change was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfChangeError {
    /// A joint configuration must be left before another change starts.
    #[error("the configuration is joint; leave it before changing it again")]
    AlreadyJoint,
    /// Only a joint configuration can be left.
    #[error("the configuration is not joint; there is nothing to leave")]
    NotJoint,
    /// The same node appears twice in one change.
    #[error("node {0} appears more than once in the change")]
    DuplicateNode(NodeId),
    /// Node 0 is reserved.
    #[error("node id 0 is reserved")]
    ZeroNode,
    /// A node to remove is not a member.
    #[error("node {0} is not a member")]
    NotMember(NodeId),
    /// The id was removed from the cluster before; ids are never reused.
    #[error("node id {0} was removed from the cluster and cannot be reused; add the node under a new id")]
    Retired(NodeId),
    /// A node must join as a learner before it becomes a voter.
    #[error("node {0} must join as a learner before it can become a voter")]
    NotLearner(NodeId),
    /// The change would leave no voters.
    #[error("the change would leave no voters")]
    NoVoters,
    /// The change is a no-op.
    #[error("the change does not change the configuration")]
    Empty,
}
