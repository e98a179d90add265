//! The HTTP API a node serves: the service's own routes, plus the routes every service
//! shares (see [`crate::api`] for their bodies and statuses).
//!
//! Every node accepts every request. A service's writes are forwarded to the leader by the
//! Raft runtime itself (`Config::forward_proposals`); its reads are confirmed through the
//! leader by the runtime's ReadIndex; admin requests, which the runtime only takes on the
//! leader, are passed on over HTTP to the leader's API (see `proxy.rs`).
//!
//! What a client may cost a node is bounded: admin requests need the admin token
//! (`auth.rs`), bodies are bounded and must arrive in time ([`read_body`]), and the server
//! limits connections and how long a request head may take (`server.rs`). The bounds are
//! [`HttpLimits`].

mod admin;
mod auth;
mod body;
mod error;
mod log_limit;
mod metrics;
mod proxy;
mod server;
mod status;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::HeaderName;
use axum::middleware;
use axum::routing::{get, post};
use raft_runtime::{Raft, StateMachine};

use crate::admin_token::AdminToken;
use crate::api::forwarded_header;

pub use body::read as read_body;
pub use error::ApiError;
pub use server::{MAX_HEAD, serve};

/// What one client may cost a node's HTTP server. The defaults suit the API's own
/// clients; the `node` command has a flag for each.
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
    /// The largest request body a route accepts (`413` otherwise), unless the service
    /// gives one of its routes a limit of its own (the `kv` service's values). Every body
    /// of the shared routes is a few dozen bytes of JSON. Default 4 KiB.
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

/// What every shared handler gets: the node's Raft handle, an HTTP client for passing
/// admin requests on to the leader, the admin token, and the limits.
struct AppState<SM: StateMachine> {
    raft: Raft<SM>,
    leader_client: reqwest::Client,
    metrics: Arc<metrics::Exporter>,
    admin_token: AdminToken,
    auth_log: Arc<log_limit::LogLimit>,
    limits: HttpLimits,
    /// The service's name, for the hints in error messages.
    service: &'static str,
    /// The header that marks an admin request passed on to the leader.
    forwarded: HeaderName,
}

// Not derived: the derive would ask for `SM: Clone`, which a state machine need not be.
impl<SM: StateMachine> Clone for AppState<SM> {
    fn clone(&self) -> Self {
        AppState {
            raft: self.raft.clone(),
            leader_client: self.leader_client.clone(),
            metrics: self.metrics.clone(),
            admin_token: self.admin_token.clone(),
            auth_log: self.auth_log.clone(),
            limits: self.limits,
            service: self.service,
            forwarded: self.forwarded.clone(),
        }
    }
}

/// The API of a node of service `service` over `raft`: the service's own `routes`, plus
/// `/status`, `/metrics` and the `/admin/...` routes, and a JSON `404` for anything else.
/// `admin_timeout` bounds how long a forwarded admin request may take (it should exceed
/// the runtime's own `Config::admin_timeout`); admin requests must carry `admin_token`;
/// bodies are read within `limits`.
pub fn router<SM: StateMachine>(
    service: &'static str,
    routes: Router,
    raft: Raft<SM>,
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
    let forwarded =
        HeaderName::try_from(forwarded_header(service)).expect("a service's name makes a valid header name");
    let state = AppState {
        metrics: Arc::new(metrics::Exporter::new(raft.metrics())),
        raft,
        leader_client,
        admin_token,
        auth_log: Arc::default(),
        limits,
        service,
        forwarded,
    };
    // `route_layer`: the token is checked on these routes only, before their handlers.
    let admin = Router::new()
        .route("/admin/add", post(admin::add::<SM>))
        .route("/admin/remove", post(admin::remove::<SM>))
        .route("/admin/transfer", post(admin::transfer::<SM>))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin_token::<SM>,
        ));
    Router::new()
        .route("/status", get(status::handle::<SM>))
        .route("/metrics", get(metrics::handle::<SM>))
        .merge(admin)
        .with_state(state)
        .merge(routes)
        .fallback(|| async { ApiError::NotFound })
}

/// Parses a JSON request body, answering `400` with serde's reason when it does not fit.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}
