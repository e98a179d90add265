//! A replicated counter: the example service built on `raft-runtime`, and the code to copy
//! when starting a service of your own.
//!
//! # How the pieces fit
//!
//! ```text
//!  client ──HTTP──> http ──propose / read──> Raft ──> StateMachine (Counter)
//!  (client.rs)     (http/)   admin: proxy to leader   │
//!                                                     ├── FileLogStore (write-ahead log)
//!                                                     └── QuicTransport (peers, mutual TLS)
//! ```
//!
//! - [`state_machine`]: the replicated state, a `u64`, and its one command. The only code
//!   Raft replicates; everything else is plumbing around it.
//! - [`node`]: one node, assembled from the library's parts (the file log store, the QUIC
//!   transport, the runtime) plus the HTTP API, started and stopped as a unit.
//! - [`http`]: the HTTP API every node serves; [`api`]: its JSON bodies and statuses.
//! - [`client`]: a client that tries the nodes in turn and never retries an increment
//!   whose outcome is unknown.
//! - [`peers`], [`certs`], [`admin_token`], [`shutdown`]: command-line membership,
//!   certificate files, the secret that admin requests need, and signals.
//! - [`cmd`]: one file per subcommand of the `counter` binary, including the demo;
//!   [`output`]: how they print, so that `counter status | head -3` ends quietly.
//!
//! The benchmark of the runtime is a package of its own, `raft-bench` (`benchmarks/` at the
//! top of the repository).

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
pub mod state_machine;

/// The error of the commands: any error, reported to the user as one line.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
