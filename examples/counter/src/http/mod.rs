//! The HTTP API a node serves (see [`crate::api`] for the bodies and statuses).
//!
//! Every node accepts every request. Increments are forwarded to the leader by the Raft
//! runtime itself (`Config::forward_proposals`); reads are confirmed through the leader by
//! the runtime's ReadIndex; admin requests, which the runtime only takes on the leader, are
//! passed on over HTTP to the leader's API (see `proxy.rs`).

mod admin;
mod error;
mod incr;
mod metrics;
mod proxy;
mod status;
mod value;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use raft_runtime::RaftHandle;

use crate::state_machine::Counter;

pub use error::ApiError;

/// What every handler gets: the node's Raft handle, and an HTTP client for passing admin
/// requests on to the leader.
#[derive(Clone)]
struct AppState {
    raft: RaftHandle<Counter>,
    leader_client: reqwest::Client,
    metrics: Arc<metrics::Exporter>,
}

/// The API's routes over `raft`. `admin_timeout` bounds how long a forwarded admin request
/// may take (it should exceed the runtime's own `Config::admin_timeout`).
pub fn router(raft: RaftHandle<Counter>, admin_timeout: Duration) -> Router {
    let leader_client = reqwest::Client::builder()
        // Nodes talk to each other directly; a proxy from the environment has no business
        // between them.
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(admin_timeout)
        .build()
        .expect("a plain HTTP client always builds");
    let state = AppState {
        metrics: Arc::new(metrics::Exporter::new(raft.metrics())),
        raft,
        leader_client,
    };
    Router::new()
        .route("/incr", post(incr::handle))
        .route("/value", get(value::handle))
        .route("/status", get(status::handle))
        .route("/metrics", get(metrics::handle))
        .route("/admin/add", post(admin::add))
        .route("/admin/remove", post(admin::remove))
        .route("/admin/transfer", post(admin::transfer))
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
}

/// Parses a JSON request body, answering `400` with serde's reason when it does not fit.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}
