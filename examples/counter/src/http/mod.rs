//! The counter's HTTP API: its own routes, `POST /sessions`, `POST /incr` and `GET /value`,
//! served with the routes every service shares (`/status`, `/metrics`, `/admin/*`, see
//! [`raft_service::http`]). See [`crate::api`] for the bodies and statuses.
//!
//! Every node accepts every request. Increments are forwarded to the leader by the Raft
//! runtime itself (`Config::forward_proposals`); reads are confirmed through the leader by
//! the runtime's ReadIndex; admin requests, which the runtime only takes on the leader, are
//! passed on over HTTP to the leader's API.

mod incr;
mod sessions;
mod value;

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use raft_runtime::Raft;

use crate::state_machine::Counter;

pub use raft_service::http::{ApiError, HttpLimits, MAX_HEAD};

/// What the counter's handlers get: the node's Raft handle, the limits, and how long a
/// request in a client session may take.
#[derive(Clone)]
struct AppState {
    raft: Raft<Counter>,
    limits: HttpLimits,
    propose_timeout: Duration,
}

/// The counter's own routes over `raft`, bodies read within `limits`. Opening a session
/// and an increment in one are each given `propose_timeout` (the runtime's
/// `Config::propose_timeout`, what a plain increment is given), retries included.
pub fn routes(raft: Raft<Counter>, limits: HttpLimits, propose_timeout: Duration) -> Router {
    Router::new()
        .route("/sessions", post(sessions::handle))
        .route("/incr", post(incr::handle))
        .route("/value", get(value::handle))
        .with_state(AppState {
            raft,
            limits,
            propose_timeout,
        })
}
