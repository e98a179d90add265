//! The HTTP API a node serves (see [`crate::api`] for the bodies and statuses).
//!
//! Every node accepts every request. Increments are forwarded to the leader by the Raft
//! runtime itself (`Config::forward_proposals`); reads are confirmed through the leader by
//! the runtime's ReadIndex; admin requests, which the runtime only takes on the leader, are
//! passed on over HTTP to the leader's API (see `proxy.rs`).
//!
//! What a client may cost a node is bounded: admin requests need the admin token
//! (`auth.rs`), bodies are small and must arrive in time (`body.rs`), and the server
//! limits connections and how long a request head may take (`server.rs`). The bounds are
//! [`HttpLimits`].

mod admin;
mod auth;
mod body;
mod error;
mod incr;
mod log_limit;
mod metrics;
mod proxy;
mod server;
mod status;
mod value;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use raft_runtime::Raft;

use crate::admin_token::AdminToken;
use crate::state_machine::Counter;

pub use error::ApiError;
pub use server::MAX_HEAD;
pub(crate) use server::serve;

/// What one client may cost a node's HTTP server. The defaults suit the API's own
/// clients; `counter node` has a flag for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a client may take to send a request's head (request line and headers),
    /// counted from when the connection is ready for it: from the connection's start, and
    /// from the end of the previous answer on a kept-alive connection. So it also bounds
    /// how long a kept-alive connection may sit idle. Default 10 s.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body, once its head has arrived
    /// (`408` otherwise). Default 10 s.
    pub body_timeout: Duration,
    /// How many connections are served at once. Further connections wait, unaccepted,
    /// until one closes. Keep it well below the process's open-file limit (`ulimit -n`):
    /// the write-ahead log needs descriptors too. Default 512.
    pub max_connections: usize,
    /// The largest request body any route accepts (`413` otherwise). Every body of this
    /// API is a few dozen bytes of JSON. Default 4 KiB.
    pub max_body: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 512,
            max_body: 4096,
        }
    }
}

/// What every handler gets: the node's Raft handle, an HTTP client for passing admin
/// requests on to the leader, the admin token, and the limits.
#[derive(Clone)]
struct AppState {
    raft: Raft<Counter>,
    leader_client: reqwest::Client,
    metrics: Arc<metrics::Exporter>,
    admin_token: AdminToken,
    auth_log: Arc<log_limit::LogLimit>,
    limits: HttpLimits,
}

/// The API's routes over `raft`. `admin_timeout` bounds how long a forwarded admin request
/// may take (it should exceed the runtime's own `Config::admin_timeout`); admin requests
/// must carry `admin_token`; bodies are read within `limits`.
pub fn router(
    raft: Raft<Counter>,
    admin_timeout: Duration,
    admin_token: AdminToken,
    limits: HttpLimits,
) -> Router {
    let leader_client = reqwest::Client::builder()
        // Nodes talk to each other directly; a proxy from the environment has no business
        // between them.
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(admin_timeout)
        // Let idle connections go before the leader's header-read timeout closes them
        // (assuming it has this node's limits), rather than send on one being closed.
        .pool_idle_timeout(limits.header_timeout / 2)
        .build()
        .expect("a plain HTTP client always builds");
    let state = AppState {
        metrics: Arc::new(metrics::Exporter::new(raft.metrics())),
        raft,
        leader_client,
        admin_token,
        auth_log: Arc::default(),
        limits,
    };
    // `route_layer`: the token is checked on these routes only, before their handlers.
    let admin = Router::new()
        .route("/admin/add", post(admin::add))
        .route("/admin/remove", post(admin::remove))
        .route("/admin/transfer", post(admin::transfer))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin_token,
        ));
    Router::new()
        .route("/incr", post(incr::handle))
        .route("/value", get(value::handle))
        .route("/status", get(status::handle))
        .route("/metrics", get(metrics::handle))
        .merge(admin)
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
}

/// Parses a JSON request body, answering `400` with serde's reason when it does not fit.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}
