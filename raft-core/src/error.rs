//! Errors returned by the protocol. None of them leaves the node in an inconsistent state:
//! the input that caused it had no effect unless the variant says otherwise.

use crate::config::ConfigError;
use crate::storage::StorageError;
use crate::types::{Index, NodeId};

/// Everything that can go wrong when feeding input to a [`RawNode`](crate::RawNode).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Reading the log storage failed.
    #[error("log storage: {0}")]
    Storage(#[from] StorageError),
    /// The request needs a leader and this node is not one.
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
    /// A configuration change is already in progress (appended but not committed).
    #[error("a configuration change at index {index} is still pending")]
    ConfChangePending {
        /// Index of the pending configuration entry.
        index: Index,
    },
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
    /// A new leader must commit an entry of its own term before it changes the configuration.
    #[error("leader has not yet committed an entry in its term")]
    LeaderNotReady,
    /// The configuration change is invalid.
    #[error("invalid configuration change: {0}")]
    ConfChange(#[from] ConfChangeError),
    /// Leadership cannot be transferred to the leader itself.
    #[error("cannot transfer leadership to the current leader")]
    TransferToSelf,
    /// Leadership can only be transferred to a voter.
    #[error("cannot transfer leadership to node {target}: not a voter")]
    TransferTargetNotVoter {
        /// The refused target.
        target: NodeId,
    },
    /// Too many reads wait for confirmation.
    #[error("too many pending read requests (limit {limit})")]
    TooManyPendingReads {
        /// The configured limit.
        limit: usize,
    },
    /// A read with the same context is already pending.
    #[error("a read with context {ctx} is already pending")]
    DuplicateReadCtx {
        /// The duplicated context.
        ctx: u64,
    },
    /// A message is addressed to another node.
    #[error("message for node {to} delivered to node {me}")]
    WrongRecipient {
        /// The message's recipient.
        to: NodeId,
        /// This node.
        me: NodeId,
    },
    /// A message is malformed. Nothing in it was acted upon.
    #[error("malformed {kind} message from node {from}: {reason}")]
    MalformedMessage {
        /// The message kind.
        kind: &'static str,
        /// The sender.
        from: NodeId,
        /// What is wrong.
        reason: &'static str,
    },
    /// A response came from a node this leader does not replicate to.
    #[error("response from unknown peer {id}")]
    UnknownPeer {
        /// The sender.
        id: NodeId,
    },
    /// A follower no longer holds entries it acknowledged in this term: its durable state
    /// was lost (a failed disk, or a wiped node that reuses its id while still a member).
    /// The leader repairs it from what it still holds; the commit index may have counted
    /// the lost entries, so an operator must look into it.
    #[error("node {peer} lost acknowledged entries: acknowledged {acknowledged}, holds {holds}")]
    PeerLostLog {
        /// The follower.
        peer: NodeId,
        /// What it had acknowledged.
        acknowledged: Index,
        /// What it holds now.
        holds: Index,
    },
    /// A persistence completion was reported for a batch that was never handed out, or
    /// out of order.
    #[error("unknown or out-of-order persist token {token}")]
    UnknownPersistToken {
        /// The reported token.
        token: u64,
    },
    /// An index is outside the range the operation accepts.
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
    /// The persisted state does not allow the node to start.
    #[error("inconsistent persisted state: {0}")]
    InconsistentState(String),
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
