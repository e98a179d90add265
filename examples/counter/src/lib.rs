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
//! Only what is particular to a counter lives here; everything a service needs that does
//! not depend on its state comes from `raft-service` (`examples/service`), re-exported
//! under the same module names.
//!
//! - [`state_machine`]: the replicated state, a `u64`, and its one command. The only code
//!   Raft replicates; everything else is plumbing around it.
//! - [`node`]: the counter as a [`raft_service::Service`], and one node of it, assembled
//!   from the library's parts (the file log store, the QUIC transport, the runtime) plus
//!   the HTTP API, started and stopped as a unit ([`raft_service::node`]).
//! - [`http`]: the counter's routes (`POST /sessions`, `POST /incr`, `GET /value`), served
//!   with the shared ones (`/status`, `/metrics`, `/admin/*`); [`api`]: the JSON bodies and
//!   statuses.
//! - [`client`]: a client that tries the nodes in turn; it retries an increment whose
//!   outcome is unknown only in a client session, where the cluster counts it once
//!   however often it is sent.
//! - [`peers`], [`certs`], [`admin_token`], [`shutdown`]: command-line membership,
//!   certificate files, the secret that admin requests need, and signals (all shared).
//! - [`cmd`]: the `counter` binary's subcommands: the demo and the clients of the counter's
//!   routes here, the others shared; [`output`]: how they print, so that
//!   `counter status | head -3` ends quietly.
//!
//! The benchmark of the runtime is a package of its own, `raft-bench` (`benchmarks/` at the
//! top of the repository).

pub mod api;
pub mod client;
pub mod cmd;
pub mod http;
pub mod node;
pub mod state_machine;

pub use raft_service::{Error, admin_token, certs, outln, output, peers, shutdown};
