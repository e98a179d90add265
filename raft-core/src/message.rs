//! The messages Raft peers exchange: one enum for every RPC and its response.

use serde::{Deserialize, Serialize};

use crate::storage::total_size;
use crate::types::{Entry, Index, NodeId, ReadCtx, SnapshotMeta, Term};

/// A message between two members of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The recipient.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request and a granted pre-vote, the term the
    /// pre-candidate would campaign in).
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of message in the protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// A candidate (or pre-candidate) asks for a vote.
    RequestVote(RequestVote),
    /// The answer to [`MessageBody::RequestVote`].
    VoteResponse(VoteResponse),
    /// The leader replicates entries (possibly none, to probe or to advance the commit index).
    Append(Append),
    /// The answer to [`MessageBody::Append`] and [`MessageBody::Snapshot`].
    AppendResponse(AppendResponse),
    /// The leader asserts its leadership, advances the commit index and confirms reads.
    Heartbeat(Heartbeat),
    /// The answer to [`MessageBody::Heartbeat`].
    HeartbeatResponse(HeartbeatResponse),
    /// The leader tells a follower to install a snapshot. The snapshot's data travels
    /// beside the message (drivers stream it); only the metadata is part of the protocol.
    Snapshot(Box<SnapshotMeta>),
    /// The leader tells the target of a leadership transfer to campaign at once.
    TimeoutNow,
    /// A follower asks the leader to confirm a read index.
    ReadIndex(ReadIndexRequest),
    /// The leader's answer to [`MessageBody::ReadIndex`].
    ReadIndexResponse(ReadIndexResponse),
    /// A quiescent follower woke up (its driver asked it to, or a request of its own needs
    /// the leader): the leader wakes too and resumes its heartbeats. See
    /// [`RawNode::quiesce`](crate::RawNode::quiesce).
    Wake,
}

/// Body of [`MessageBody::RequestVote`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestVote {
    /// A pre-vote: asks whether the recipient would vote, without changing any term.
    pub pre_vote: bool,
    /// Index of the candidate's last log entry.
    pub last_index: Index,
    /// Term of the candidate's last log entry.
    pub last_term: Term,
    /// The election was started by a leadership transfer, so recipients must not ignore
    /// it on the grounds that they recently heard from a leader.
    pub leader_transfer: bool,
}

/// Body of [`MessageBody::VoteResponse`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteResponse {
    /// The answer is to a pre-vote.
    pub pre_vote: bool,
    /// The vote was granted.
    pub granted: bool,
}

/// Body of [`MessageBody::Append`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Append {
    /// Index of the entry just before `entries`.
    pub prev_index: Index,
    /// Term of the entry at `prev_index`.
    pub prev_term: Term,
    /// The entries, contiguous from `prev_index + 1`.
    pub entries: Vec<Entry>,
    /// The leader's commit index.
    pub commit: Index,
}

/// Body of [`MessageBody::AppendResponse`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendResponse {
    /// The follower's log matches the leader's up to `index`, durably.
    Accepted {
        /// The highest index known to match.
        index: Index,
    },
    /// The follower's log does not contain an entry at `rejected` with the expected term.
    Rejected {
        /// The `prev_index` of the rejected append.
        rejected: Index,
        /// Together with `hint_term`, a guess at the last index where the logs may agree:
        /// the follower's last index with a term not above the append's `prev_term`.
        hint_index: Index,
        /// The follower's term at `hint_index`.
        hint_term: Term,
        /// The highest heartbeat round the follower had received from this leader when it
        /// rejected. A rejection that reports fewer entries than the follower acknowledged
        /// means lost entries only if it was written after the leader took that
        /// acknowledgement, which a round sent after it proves; otherwise it is a late
        /// answer to an older append and tells nothing new.
        round: u64,
    },
}

/// Body of [`MessageBody::Heartbeat`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The commit index the follower may adopt (never above what it is known to match).
    pub commit: Index,
    /// The leader's heartbeat round, echoed in the response; it confirms reads and leases.
    pub round: u64,
    /// The leader is going quiet: every member holds its whole log, committed, so the
    /// follower may stop its clock until a message or a request wakes it (see
    /// [`RawNode::quiesce`](crate::RawNode::quiesce)).
    pub quiesce: bool,
}

/// Body of [`MessageBody::HeartbeatResponse`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// The round of the heartbeat being answered.
    pub round: u64,
}

/// Body of [`MessageBody::ReadIndex`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadIndexRequest {
    /// The follower's context for the read; echoed in the response.
    pub ctx: ReadCtx,
}

/// Body of [`MessageBody::ReadIndexResponse`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadIndexResponse {
    /// The context of the request being answered.
    pub ctx: ReadCtx,
    /// The confirmed read index, or `None` if the leader could not serve the read.
    pub index: Option<Index>,
}

impl Message {
    /// Whether this message asks for (or answers) a vote or pre-vote.
    pub fn is_vote(&self) -> bool {
        matches!(
            self.body,
            MessageBody::RequestVote(_) | MessageBody::VoteResponse(_)
        )
    }

    /// A short name for the message kind, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match &self.body {
            MessageBody::RequestVote(r) if r.pre_vote => "RequestPreVote",
            MessageBody::RequestVote(_) => "RequestVote",
            MessageBody::VoteResponse(r) if r.pre_vote => "PreVoteResponse",
            MessageBody::VoteResponse(_) => "VoteResponse",
            MessageBody::Append(_) => "Append",
            MessageBody::AppendResponse(_) => "AppendResponse",
            MessageBody::Heartbeat(_) => "Heartbeat",
            MessageBody::HeartbeatResponse(_) => "HeartbeatResponse",
            MessageBody::Snapshot(_) => "Snapshot",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::ReadIndex(_) => "ReadIndex",
            MessageBody::ReadIndexResponse(_) => "ReadIndexResponse",
            MessageBody::Wake => "Wake",
        }
    }

    /// Approximate size in bytes, for flow control and metrics.
    pub fn size(&self) -> u64 {
        32u64.saturating_add(match &self.body {
            MessageBody::Append(a) => total_size(&a.entries),
            _ => 0,
        })
    }
}
