//! The JSON bodies of the HTTP API, shared by the server ([`crate::http`]) and the client
//! ([`crate::client`]) so that the two cannot drift apart: the counter's own, and those of
//! the routes every service shares (re-exported from [`raft_service::api`]).
//!
//! | request | body | success |
//! |---|---|---|
//! | `POST /sessions` | none | `200` [`SessionResponse`]: a new client session |
//! | `POST /incr` | [`IncrRequest`], optional (`by` defaults to 1); with `session` and `seq`, counted once however often it is sent | `200` [`ValueResponse`] |
//! | `GET /value` | | `200` [`ValueResponse`] |
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
//! | `400` | the request is malformed or the change is invalid (a `session` without `seq`, `acked` not below `seq`) | no: it would fail again |
//! | `409` | in a session: the command's `seq` is not past what the session acknowledged (`acked`), so its answer is no longer held; not applied now | no: the client already had the answer |
//! | `410` | in a session: the session expired (unused for longer than the session timeout) or never existed; definitely not applied | only in a new session (`POST /sessions`) |
//! | `429` | in a session: it holds as many unacknowledged answers as it may (32, or 16 KiB); not applied | after acknowledging answers (`acked`) |
//! | `503` | definitely not applied (no leader, busy, shutting down; for `POST /sessions`, also a full session table) | yes, on any node |
//! | `504` | outcome unknown: it may or may not have been applied (in a session: also when an earlier attempt's outcome was unknown and the session expired since) | not blindly; in a session, yes, with the same `session` and `seq`, on any node |
//!
//! An increment in a session is applied at most once per (`session`, `seq`): sent again,
//! through any node, it is not counted again and answers the value of its one
//! application. See [`IncrRequest`] for what the fields mean.

use serde::{Deserialize, Serialize};

pub use raft_service::api::*;

/// The header a node sets when it passes an admin request on to the leader (see
/// [`forwarded_header`]).
pub const FORWARDED_HEADER: &str = "x-counter-forwarded";

/// `POST /incr`.
///
/// Without `session`, a plain increment: if its outcome is unknown (`504`), sending it again
/// may count it twice. With `session` and `seq`, an increment in a client session: the
/// cluster applies it at most once however often it is sent, so a client may send it again,
/// to any node, after any failure but a refusal of the session (`409`, `410`, `429`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrRequest {
    /// How much to add.
    #[serde(default = "one")]
    pub by: u64,
    /// The client session ([`SessionResponse::session`]) the increment belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<u64>,
    /// The increment's sequence number within its session, chosen by the client: 1 for
    /// the first, then increasing; required with `session`, never 0. A retry sends the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The client has its answers for every sequence number up to this one, so the cluster
    /// may drop them (and refuses their retries with `409`). Below `seq`; default `seq - 1`,
    /// the right value for a client that sends one increment at a time. A client with
    /// several in flight passes the highest below which it has every answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked: Option<u64>,
}

fn one() -> u64 {
    1
}

impl Default for IncrRequest {
    fn default() -> Self {
        IncrRequest::by(one())
    }
}

impl IncrRequest {
    /// A plain increment of `by`, outside any session.
    pub fn by(by: u64) -> IncrRequest {
        IncrRequest {
            by,
            session: None,
            seq: None,
            acked: None,
        }
    }

    /// An increment of `by` as command `seq` of `session`, from a client that sends one at
    /// a time (`acked` is left to its default, `seq - 1`).
    pub fn in_session(by: u64, session: u64, seq: u64) -> IncrRequest {
        IncrRequest {
            by,
            session: Some(session),
            seq: Some(seq),
            acked: None,
        }
    }
}

/// `POST /sessions`: a new client session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionResponse {
    /// The session's id, to send with each increment in it (the same on every node).
    pub session: u64,
}

/// The counter's value: after an increment, the value right after that increment was
/// applied; after a read, the value at the time of the read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueResponse {
    /// The value.
    pub value: u64,
}

#[cfg(test)]
mod tests {
    use raft_service::Service;

    use super::*;

    #[test]
    fn a_plain_increment_has_no_session_fields() {
        assert_eq!(
            serde_json::to_value(IncrRequest::by(3)).unwrap(),
            serde_json::json!({"by": 3})
        );
        assert_eq!(
            serde_json::to_value(IncrRequest::in_session(1, 7, 2)).unwrap(),
            serde_json::json!({"by": 1, "session": 7, "seq": 2})
        );
        let parsed: IncrRequest = serde_json::from_str(r#"{"session": 7, "seq": 2, "acked": 0}"#).unwrap();
        assert_eq!(
            parsed,
            IncrRequest {
                by: 1,
                session: Some(7),
                seq: Some(2),
                acked: Some(0)
            }
        );
    }

    #[test]
    fn the_forwarded_header_is_named_after_the_service() {
        assert_eq!(
            forwarded_header(crate::node::CounterService::NAME),
            FORWARDED_HEADER
        );
    }
}
