//! The errors of the user-facing API.
//!
//! A proposal's error always says whether the command was **definitely not applied** (safe
//! to retry anywhere) or its **outcome is unknown** (it may have been applied; retrying may
//! apply it twice). See [`ProposeError::is_definitely_not_applied`].

use raft_core::NodeId;

use crate::store::StoreError;
use crate::transport::ForwardError;

/// Why the node refuses more work right now. Retrying later is safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BusyReason {
    /// The request mailbox is full.
    #[error("request mailbox full")]
    Mailbox,
    /// Too many proposals wait for their outcome.
    #[error("too many pending proposals")]
    PendingProposals,
    /// Followers lag: too many uncommitted bytes.
    #[error("too many uncommitted entries (followers lag)")]
    Uncommitted,
    /// The log store lags behind.
    #[error("too many writes waiting for the disk")]
    Disk,
    /// The state machine lags behind the commit index.
    #[error("the state machine lags behind")]
    Apply,
    /// A leadership transfer is in progress.
    #[error("leadership transfer in progress")]
    Transfer,
    /// Too many reads wait for confirmation.
    #[error("too many pending reads")]
    Reads,
    /// The queue to the leader (for a forwarded proposal) is full.
    #[error("queue to the leader is full")]
    Forward,
}

/// Why a proposal failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the leader (definitely not applied).
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// The node is overloaded (definitely not applied).
    #[error("busy: {0}")]
    Busy(BusyReason),
    /// The node is shutting down and did not accept the command (definitely not applied).
    #[error("shutting down")]
    ShuttingDown,
    /// The command could not be serialized (definitely not applied).
    #[error("cannot encode the command: {0}")]
    Encode(String),
    /// Another entry was committed at the command's position: it was overwritten by a new
    /// leader and is definitely not applied.
    #[error("dropped: another leader's entry took its place")]
    Dropped,
    /// The command was accepted but no outcome arrived in time: it may or may not be
    /// applied.
    #[error("timed out; the command may or may not have been applied")]
    Timeout,
    /// The command was accepted but its outcome cannot be known (leadership changed, the node
    /// shut down or failed): it may or may not be applied.
    #[error("outcome unknown: {0}")]
    Unknown(String),
}

impl ProposeError {
    /// Whether the command was definitely not applied, so that retrying cannot apply it twice.
    pub fn is_definitely_not_applied(&self) -> bool {
        !matches!(self, ProposeError::Timeout | ProposeError::Unknown(_))
    }

    pub(crate) fn from_forward(e: ForwardError) -> ProposeError {
        match e {
            ForwardError::NotLeader { leader } => ProposeError::NotLeader { leader },
            ForwardError::Busy => ProposeError::Busy(BusyReason::Forward),
            ForwardError::ShuttingDown => ProposeError::ShuttingDown,
            ForwardError::Malformed(m) => ProposeError::Encode(m),
            ForwardError::Unknown(m) => ProposeError::Unknown(m),
        }
    }

    pub(crate) fn to_forward(&self) -> ForwardError {
        match self {
            ProposeError::NotLeader { leader } => ForwardError::NotLeader { leader: *leader },
            ProposeError::Busy(_) => ForwardError::Busy,
            ProposeError::ShuttingDown => ForwardError::ShuttingDown,
            ProposeError::Encode(m) => ForwardError::Malformed(m.clone()),
            ProposeError::Dropped => ForwardError::NotLeader { leader: None },
            ProposeError::Timeout => ForwardError::Unknown("timed out at the leader".into()),
            ProposeError::Unknown(m) => ForwardError::Unknown(m.clone()),
        }
    }
}

/// Why a linearizable read failed. Retrying is always safe.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// No leader is known to confirm the read.
    #[error("no leader (leader hint: {leader:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// Leadership changed before the read was confirmed.
    #[error("leadership changed before the read was confirmed")]
    LeadershipLost,
    /// The node is overloaded.
    #[error("busy: {0}")]
    Busy(BusyReason),
    /// The read was not confirmed in time.
    #[error("timed out")]
    Timeout,
    /// The node is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

/// Why a membership change or leadership transfer failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// This node is not the leader.
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// The change is invalid.
    #[error("invalid change: {0}")]
    Invalid(#[from] raft_core::ConfChangeError),
    /// A leadership transfer was refused (to itself, to a non-voter).
    #[error("invalid transfer: {0}")]
    InvalidTransfer(String),
    /// A learner did not catch up in time to be promoted.
    #[error("node {node} did not catch up in time")]
    NotCaughtUp {
        /// The learner.
        node: NodeId,
    },
    /// The transfer was abandoned (the target did not take over within an election timeout).
    #[error("leadership transfer to node {target} was abandoned")]
    TransferAborted {
        /// The target.
        target: NodeId,
    },
    /// Leadership changed while the change was in progress; it may or may not take effect.
    #[error("leadership changed while the change was in progress")]
    LeadershipLost,
    /// Another change is in progress, or a new leader has not yet committed an entry of its
    /// term; retry shortly (the handle does so by itself until its timeout).
    #[error("another membership change is in progress")]
    Pending,
    /// The change did not complete in time; it may or may not take effect.
    #[error("timed out")]
    Timeout,
    /// The node is overloaded.
    #[error("busy: {0}")]
    Busy(BusyReason),
    /// The node is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The log store failed while recovering.
    #[error("recovering the log store: {0}")]
    Store(#[from] StoreError),
    /// The persisted state is inconsistent with the state machine or itself.
    #[error("cannot start the protocol: {0}")]
    Protocol(#[from] raft_core::Error),
    /// The state machine failed to report or restore its state.
    #[error("state machine: {0}")]
    StateMachine(#[source] StateMachineError),
    /// The bootstrap membership is invalid.
    #[error("invalid bootstrap membership: {0}")]
    Bootstrap(String),
    /// The log store is empty and the builder was told neither to bootstrap a cluster nor
    /// to join one.
    #[error(
        "the log store is empty: call `bootstrap` (a new cluster) or `join` (an existing one) on the builder"
    )]
    Uninitialized,
    /// The transport refused the node: it serves another id, or already serves a node.
    #[error("the transport refused the node: {0}")]
    Register(#[from] crate::transport::RegisterError),
}

/// A state machine failure. Fatal for the node: a state machine that cannot apply a
/// committed command cannot stay consistent with the others.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StateMachineError(#[source] pub Box<dyn std::error::Error + Send + Sync + 'static>);

impl StateMachineError {
    /// Wraps any error.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StateMachineError(Box::new(e))
    }

    /// An error from a message.
    pub fn msg(m: impl Into<String>) -> Self {
        #[derive(Debug, thiserror::Error)]
        #[error("{0}")]
        struct Msg(String);
        StateMachineError(Box::new(Msg(m.into())))
    }
}
