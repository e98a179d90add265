//! The JSON bodies of the HTTP API, shared by the server ([`crate::http`]) and the client
//! ([`crate::client`]) so that the two cannot drift apart: the counter's own, and those of
//! the routes every service shares (re-exported from [`raft_service::api`]).
//!
//! | request | body | success |
//! |---|---|---|
//! | `POST /incr` | [`IncrRequest`], optional (`by` defaults to 1) | `200` [`ValueResponse`] |
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
//! | `400` | the request is malformed or the change is invalid | no: it would fail again |
//! | `503` | definitely not applied (no leader, busy, shutting down) | yes, on any node |
//! | `504` | outcome unknown: it may or may not have been applied | not blindly |

use serde::{Deserialize, Serialize};

pub use raft_service::api::*;

/// The header a node sets when it passes an admin request on to the leader (see
/// [`forwarded_header`]).
pub const FORWARDED_HEADER: &str = "x-counter-forwarded";

/// `POST /incr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrRequest {
    /// How much to add.
    #[serde(default = "one")]
    pub by: u64,
}

fn one() -> u64 {
    1
}

impl Default for IncrRequest {
    fn default() -> Self {
        IncrRequest { by: one() }
    }
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
    fn the_forwarded_header_is_named_after_the_service() {
        assert_eq!(
            forwarded_header(crate::node::CounterService::NAME),
            FORWARDED_HEADER
        );
    }
}
