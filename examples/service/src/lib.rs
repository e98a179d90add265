//! What the example services on `raft-runtime` share: everything around the replicated
//! state that a service needs and that does not depend on what the state is.
//!
//! A service (the `counter`, the `kv` store) is a [`StateMachine`], a few HTTP routes
//! of its own that propose commands and read the state, and a binary. This crate is the
//! rest:
//!
//! ```text
//!  client ──HTTP──> service routes ──propose / read──> Raft ──> the service's StateMachine
//!  (client.rs)      + /status, /metrics, /admin/*       │
//!                   (http/)                             ├── FileLogStore (write-ahead log)
//!                                                       └── QuicTransport (peers, mutual TLS)
//! ```
//!
//! - [`Service`]: what a service tells this crate: its name, how it opens its state
//!   machine, and its own routes.
//! - [`node`]: one node, assembled from the library's parts (the file log store, the QUIC
//!   transport, the runtime) plus the HTTP API, started and stopped as a unit.
//! - [`http`]: the HTTP server, the routes every service serves (`/status`, `/metrics`,
//!   `/admin/*`), and what a service's own handlers use (reading bodies within limits,
//!   errors as JSON with statuses that say whether a retry is safe); [`api`]: the JSON
//!   bodies of the shared routes.
//! - [`client`]: a client that tries the nodes in turn and never retries a write whose
//!   outcome is unknown, unless the cluster applies it at most once (a command in a client
//!   session).
//! - [`peers`], [`certs`], [`admin_token`], [`shutdown`]: command-line membership,
//!   certificate files, the secret that admin requests need, and signals.
//! - [`cmd`]: the subcommands every service's binary has (`certs`, `token`, `node`,
//!   `status`, `add-node`, `remove-node`, `transfer-leader`), what its demo is built from,
//!   and its `main`; [`output`]: how they print, so that `counter status | head -3` ends
//!   quietly.

pub mod admin_token;
pub mod api;
pub mod certs;
pub mod client;
pub mod cmd;
pub mod http;
pub mod node;
pub mod output;
pub mod peers;
pub mod shutdown;

use axum::Router;
use raft_runtime::{Config, Raft, StateMachine};

use crate::http::HttpLimits;
use crate::node::NodeConfig;

/// The error of the commands: any error, reported to the user as one line.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A service built on this crate: its state machine, where it keeps it, and its own HTTP
/// routes. A value of it lives as long as the node, and its routes may hold parts of it
/// (the `kv` service keeps a handle on its database there, for local reads).
pub trait Service: Send + Sync + Sized + 'static {
    /// The service's name, which is also its binary's: it names the commands in the hints
    /// of error messages (`counter certs`), the header a node adds to an admin request it
    /// passes on to the leader (`x-counter-forwarded`), and the demo's temporary directory.
    const NAME: &'static str;

    /// The replicated state.
    type StateMachine: StateMachine;

    /// The runtime settings a node of this service starts from, which the `node` command
    /// and the demos then adjust with their own flags. The default is
    /// [`NodeConfig::raft_defaults`]; a service that needs more of the runtime says so here
    /// (the counter turns client sessions on, [`Config::sessions`]).
    fn raft_defaults() -> Config {
        NodeConfig::raft_defaults()
    }

    /// Where the write-ahead log lives in a node's data directory. The default is the data
    /// directory itself, for a service that keeps nothing else there.
    fn log_dir(config: &NodeConfig) -> std::path::PathBuf {
        config.data_dir.clone()
    }

    /// Opens what the service keeps for a node configured by `config` (its database,
    /// say): the service value, and the state machine the runtime will drive. Called once
    /// per start, after the write-ahead log is open, on a thread where blocking is fine.
    fn open(config: &NodeConfig) -> Result<(Self, Self::StateMachine), Error>;

    /// The service's own routes, over the running node `raft`. The shared routes
    /// (`/status`, `/metrics`, `/admin/*`) are added to them, and so is the answer to
    /// unknown routes: the service must not set a fallback of its own. Bodies should be
    /// read with [`http::read_body`] within `limits`.
    fn routes(&self, raft: Raft<Self::StateMachine>, limits: HttpLimits) -> Router;
}
