//! The JSON bodies of the routes every service serves, shared by the server
//! ([`crate::http`]) and the client ([`crate::client`]) so that the two cannot drift apart.
//!
//! | request | body | success |
//! |---|---|---|
//! | `GET /status` | | `200` [`StatusResponse`] |
//! | `GET /metrics` | | `200` Prometheus (OpenMetrics) text |
//! | `POST /admin/add` | [`AddRequest`] | `200` [`StatusResponse`] of the leader |
//! | `POST /admin/remove` | [`RemoveRequest`] | `200` [`StatusResponse`] of the leader |
//! | `POST /admin/transfer` | [`TransferRequest`] | `200` [`StatusResponse`] of the old leader |
//!
//! Every error is an [`ErrorResponse`] with one of these statuses:
//!
//! | status | meaning | safe to retry? |
//! |---|---|---|
//! | `400` | the request is malformed or the change is invalid | no: it would fail again |
//! | `401`, `404`, `408`, `413` | see [`crate::http::ApiError`] | no |
//! | `409`, `410`, `429` | a command in a client session, refused by the session table (for a service with sessions; see [`crate::http::ApiError`]) | not as it is |
//! | `503` | definitely not applied (no leader, busy, shutting down) | yes, on any node |
//! | `504` | outcome unknown: it may or may not have been applied | not blindly |

use raft_runtime::raft_core::NodeId;
use serde::{Deserialize, Serialize};

/// The member attribute under which each node registers its HTTP address in the replicated
/// configuration, so that every node can find the leader's HTTP API.
pub const HTTP_ATTRIBUTE: &str = "http";

/// The header a node of service `name` sets when it passes an admin request on to the
/// leader: `x-<name>-forwarded` (`x-counter-forwarded`). A node that receives a forwarded
/// request and is not the leader answers `503` instead of forwarding it again, so that two
/// nodes with different ideas of the leader cannot bounce a request between them.
pub fn forwarded_header(name: &str) -> String {
    format!("x-{name}-forwarded")
}

/// `GET /status`: what one node knows about itself and the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// The node's id.
    pub id: NodeId,
    /// `leader`, `follower`, `candidate` or `pre-candidate`.
    pub role: String,
    /// The node's current term.
    pub term: u64,
    /// The leader the node knows of, if any.
    pub leader: Option<NodeId>,
    /// The commit index.
    pub commit: u64,
    /// The last index applied to the state machine.
    pub applied: u64,
    /// The index of the last log entry.
    pub last_log_index: u64,
    /// The index of the snapshot the log starts from.
    pub snapshot_index: u64,
    /// Whether a membership change is half done (joint configuration).
    pub joint: bool,
    /// The members of the configuration in effect, by id.
    pub members: Vec<MemberStatus>,
    /// Absent when the figures are as of the request. Otherwise why they are not: the node
    /// could not be asked (it is stopped, or too busy to answer), and the figures are the
    /// last it published, whose commit and applied indexes may be a tick old, or date from
    /// when it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<String>,
}

/// One member of the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Its id.
    pub id: NodeId,
    /// Whether it votes (false for a learner).
    pub voter: bool,
    /// The address of its Raft (QUIC) endpoint.
    pub raft_addr: String,
    /// The address of its HTTP API, if it registered one.
    pub http_addr: Option<String>,
}

/// `POST /admin/add`: add a node, first as a learner, then, once it has caught up, as a
/// voter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddRequest {
    /// The new node's id. Ids of removed nodes can never be used again.
    pub id: NodeId,
    /// The address of the new node's Raft (QUIC) endpoint, as the other nodes reach it.
    pub raft_addr: String,
    /// The address of the new node's HTTP API (an extension of the basic API): registered
    /// with the membership so that other nodes can forward admin requests to it once it
    /// leads. Without it, admin requests reach that node only when sent to it directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<String>,
}

/// `POST /admin/remove`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveRequest {
    /// The node to remove (voter or learner).
    pub id: NodeId,
}

/// `POST /admin/transfer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRequest {
    /// The voter that should lead.
    pub to: NodeId,
}

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What went wrong, for a person.
    pub error: String,
}
