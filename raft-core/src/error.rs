//! Errors returned by the protocol. None of them leaves the node in an inconsistent state:
//! the input that caused it had no effect unless the variant says otherwise.

use crate::config::ConfigError;
use crate::storage::StorageError;
use crate::types::{Index, NodeId, Term};

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
    /// A message's term is further ahead of this node's than peers may raise it within one
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
    /// A snapshot message was stepped without its data. Snapshots travel with their data
    /// (see [`RawNode::step_snapshot`](crate::RawNode::step_snapshot)); a correct peer never
    /// sends the metadata alone on the message path. Nothing was acted upon.
    #[error("snapshot message from node {from} arrived without its data")]
    SnapshotWithoutData {
        /// The sender.
        from: NodeId,
    },
    /// A safety invariant of the protocol would have been broken. The node refused the
    /// change that would have broken it and stopped: every later call returns this error.
    /// This is a bug (in the protocol, the driver or the storage), never a peer's doing.
    #[error("safety invariant violated, node stopped: {0}")]
    Fatal(Invariant),
}

impl Error {
    /// Whether the node has stopped (see [`Error::Fatal`]).
    pub fn is_fatal(&self) -> bool {
        matches!(self, Error::Fatal(_))
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
    /// reports, after acknowledging them, that it lost entries: see [`Error::PeerLostLog`]).
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
