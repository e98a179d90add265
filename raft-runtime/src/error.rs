//! The errors of the user-facing API.
//!
//! A proposal's error always says whether the command was **definitely not applied** (safe
//! to retry anywhere) or its **outcome is unknown** (it may have been applied; retrying may
//! apply it twice). See [`ProposeError::is_definitely_not_applied`].

use std::sync::Arc;

use raft_core::{Index, NodeId};
use serde::{Deserialize, Serialize};

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
    Unknown(UnknownOutcome),
    /// A command in a client session, or the opening of one, was refused by the session
    /// table: this attempt was definitely not applied (see [`SessionError`] for what an
    /// earlier attempt of the same command may have done).
    #[error("session: {0}")]
    Session(SessionError),
}

/// Why the session table refused a command in a session, or a new session. Every node
/// refuses it alike, at the same entry; nothing was applied by the refused entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SessionError {
    /// The cluster runs without sessions ([`Config::sessions`](crate::Config) is `None`).
    #[error("client sessions are not enabled")]
    NotEnabled,
    /// The session is not in the table: it expired (unused for longer than the timeout),
    /// or never existed. Open a new one.
    #[error("session {session} expired or does not exist")]
    Expired {
        /// The session.
        session: u64,
    },
    /// The client acknowledged the answers of its session up to `acked`, and this command's
    /// sequence is not past it: its response is no longer held. A correct client never
    /// retries what it acknowledged.
    #[error("session {session}: command {seq} is acknowledged already (up to {acked})")]
    Acknowledged {
        /// The session.
        session: u64,
        /// The command's sequence number.
        seq: u64,
        /// The sequence the session is acknowledged up to.
        acked: u64,
    },
    /// The session holds as many unacknowledged responses as it may: the client must
    /// acknowledge answers it has before sending more.
    #[error("session {session} holds too many unacknowledged responses")]
    TooManyPending {
        /// The session.
        session: u64,
    },
    /// The table holds as many sessions as it may; retry once some expire.
    #[error("too many client sessions")]
    TooManySessions,
    /// The runtime's record could not be read (a peer of another version, or a corrupt
    /// entry); every node skips it alike.
    #[error("malformed session record: {0}")]
    Malformed(String),
}

/// Why the outcome of an accepted command cannot be known: it may or may not be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnknownOutcome {
    /// The node shut down before the outcome was known.
    #[error("the node shut down before the outcome was known")]
    ShutDown,
    /// The node stopped after a fatal error before the outcome was known.
    #[error("the node failed before the outcome was known: {0}")]
    NodeFailed(Fatal),
    /// A snapshot installed from the leader covers the command's index: the command may be
    /// in it, or another leader's entry may have taken its place.
    #[error("superseded by a snapshot covering its index")]
    SupersededBySnapshot,
    /// This node, leading again in a later term, put a new entry at the command's position
    /// (its log had lost the command's entry): another node may still hold the command's
    /// entry and, once elected, commit it.
    #[error("its position in this node's log was taken by a later leader's entry")]
    Displaced,
    /// The command was forwarded to `leader`, which lost leadership while it was in flight.
    #[error("leader {leader} changed while the forwarded command was in flight")]
    LeaderChanged {
        /// The node the command was forwarded to.
        leader: NodeId,
    },
    /// The leader applied the forwarded command but its response could not be decoded here
    /// (nodes of different versions of the state machine).
    #[error("the leader's response could not be decoded")]
    UndecodableResponse,
    /// The leader a forwarded command went to could not tell its outcome; its reason, as it
    /// sent it.
    #[error("at the leader: {0}")]
    AtLeader(String),
    /// An attempt of a command in a session had an unknown outcome, and a retry found the
    /// session expired: the first attempt may or may not have been applied.
    #[error("session {session} expired while an earlier attempt's outcome was unknown")]
    SessionExpired {
        /// The session.
        session: u64,
    },
}

impl ProposeError {
    /// Whether the command was definitely not applied, so that retrying cannot apply it twice.
    pub fn is_definitely_not_applied(&self) -> bool {
        match self {
            ProposeError::Timeout | ProposeError::Unknown(_) => false,
            ProposeError::NotLeader { .. }
            | ProposeError::Busy(_)
            | ProposeError::ShuttingDown
            | ProposeError::Encode(_)
            | ProposeError::Dropped
            | ProposeError::Session(_) => true,
        }
    }

    pub(crate) fn from_forward(e: ForwardError) -> ProposeError {
        match e {
            ForwardError::NotLeader { leader } => ProposeError::NotLeader { leader },
            ForwardError::Busy => ProposeError::Busy(BusyReason::Forward),
            ForwardError::ShuttingDown => ProposeError::ShuttingDown,
            ForwardError::Malformed(m) => ProposeError::Encode(m),
            ForwardError::Unknown(m) => ProposeError::Unknown(UnknownOutcome::AtLeader(m)),
            ForwardError::Session(e) => ProposeError::Session(e),
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
            // The wire carries the reason as text.
            ProposeError::Unknown(reason) => ForwardError::Unknown(reason.to_string()),
            ProposeError::Session(e) => ForwardError::Session(e.clone()),
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
    /// A leadership transfer was refused: its target cannot take over.
    #[error("invalid transfer: {0}")]
    InvalidTransfer(InvalidTransfer),
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

/// Why a leadership transfer's target cannot take over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTransfer {
    /// The target is this node, which leads already.
    #[error("node {target} is already the leader")]
    AlreadyLeader {
        /// The target.
        target: NodeId,
    },
    /// The target is not a voter (a learner, or not a member): it cannot be elected.
    #[error("node {target} is not a voter")]
    NotVoter {
        /// The target.
        target: NodeId,
    },
}

/// Why a node stopped on its own. Once it did, the node answers every request as shutting
/// down; the reason is in [`Metrics::fatal`](crate::Metrics) and in what
/// [`Raft::shutdown`](crate::Raft::shutdown) returns.
///
/// Cloneable, so that the metrics and the shutdown report can both carry it: the errors of
/// the log store and the state machine inside are shared, and two values are equal when
/// they carry the same failure (the same shared error, not merely the same message).
#[derive(Clone, Debug, thiserror::Error)]
pub enum Fatal {
    /// A safety invariant of the protocol would have been broken: a bug in the protocol, the
    /// runtime or the log store, never a peer's doing.
    #[error("safety invariant violated: {0}")]
    Invariant(raft_core::Invariant),
    /// Driving the protocol failed: reading the log failed ([`raft_core::DriverError::Storage`]),
    /// or the runtime reported something the protocol never handed out (a bug).
    #[error("driving the protocol failed: {0}")]
    Driver(Arc<raft_core::DriverError>),
    /// The log store failed a write: after a failed write or sync, what is durable is unknown.
    #[error("log store write failed: {0}")]
    LogWrite(StoreError),
    /// Saving a snapshot, or compacting the log after it, failed.
    #[error("saving a snapshot failed: {0}")]
    SnapshotSave(StoreError),
    /// The state machine failed: it cannot stay consistent with the other nodes'.
    #[error("state machine failed: {0}")]
    StateMachine(Arc<StateMachineError>),
    /// The writes between the protocol and the log store lost their order: a log store that
    /// completed writes it was not given or out of order, or a bug in the runtime.
    #[error("write pipeline: {0}")]
    Pipeline(PipelineError),
}

impl From<raft_core::DriverError> for Fatal {
    fn from(e: raft_core::DriverError) -> Self {
        match e {
            raft_core::DriverError::Fatal(invariant) => Fatal::Invariant(invariant),
            e @ (raft_core::DriverError::Storage(_)
            | raft_core::DriverError::UnknownPersistToken { .. }
            | raft_core::DriverError::IndexOutOfRange { .. }
            | raft_core::DriverError::SnapshotPending { .. }) => Fatal::Driver(Arc::new(e)),
        }
    }
}

impl PartialEq for Fatal {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Fatal::Invariant(a), Fatal::Invariant(b)) => a == b,
            (Fatal::Driver(a), Fatal::Driver(b)) => Arc::ptr_eq(a, b),
            (Fatal::LogWrite(a), Fatal::LogWrite(b)) | (Fatal::SnapshotSave(a), Fatal::SnapshotSave(b)) => {
                a.ptr_eq(b)
            }
            (Fatal::StateMachine(a), Fatal::StateMachine(b)) => Arc::ptr_eq(a, b),
            (Fatal::Pipeline(a), Fatal::Pipeline(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Fatal {}

/// What broke in the writes between the protocol and the log store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// The protocol accepted a snapshot whose data never arrived.
    #[error("snapshot {0} accepted without its data")]
    SnapshotWithoutData(Index),
    /// The store completed a write that is not in flight.
    #[error("completion for unknown write {0}")]
    UnknownWrite(u64),
    /// The store completed writes out of order.
    #[error("writes completed out of order ({got} before {expected})")]
    OutOfOrder {
        /// The write that completed.
        got: u64,
        /// The write that should have completed first.
        expected: u64,
    },
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] raft_core::ConfigError),
    /// The log store failed while recovering.
    #[error("recovering the log store: {0}")]
    Store(#[from] StoreError),
    /// The persisted state is inconsistent with the state machine or itself.
    #[error("cannot start the protocol: {0}")]
    Protocol(#[from] raft_core::RecoverError),
    /// The log starts after a snapshot, but the store holds none to restore the state
    /// machine from.
    #[error("the log starts after index {index} but no snapshot is stored")]
    MissingSnapshot {
        /// The index of the snapshot the log starts from.
        index: Index,
    },
    /// The state machine failed to report or restore its state.
    #[error("state machine: {0}")]
    StateMachine(#[source] StateMachineError),
    /// The members given to bootstrap or join a cluster are invalid.
    #[error("invalid bootstrap membership: {0}")]
    Bootstrap(BootstrapError),
    /// The log store is empty and the builder was told neither to bootstrap a cluster nor
    /// to join one.
    #[error(
        "the log store is empty: call `bootstrap` (a new cluster) or `join` (an existing one) on the builder"
    )]
    Uninitialized,
    /// The transport refused the node: it serves another id, or already serves a node.
    #[error("the transport refused the node: {0}")]
    Register(#[from] crate::transport::RegisterError),
    /// The node was given a [`GroupHost`](crate::GroupHost) whose timer ticks at another
    /// interval than the node's [`Config::tick_interval`](crate::Config::tick_interval).
    #[error("the host ticks every {host:?}, but the node's tick_interval is {node:?}")]
    HostTick {
        /// The host's tick interval.
        host: std::time::Duration,
        /// The node's.
        node: std::time::Duration,
    },
}

/// What is wrong with the members given to bootstrap or join a cluster.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    /// A joining node was given no members to contact.
    #[error("a joining node needs the cluster's current members")]
    NoMembers,
    /// Node id 0 is among the members; it is reserved.
    #[error("node id 0 is reserved")]
    ReservedId,
    /// A node bootstrapping a cluster is not among its initial members.
    #[error("node {id} is not among the initial members {members:?}")]
    NotAMember {
        /// This node.
        id: NodeId,
        /// The initial members given.
        members: Vec<NodeId>,
    },
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
