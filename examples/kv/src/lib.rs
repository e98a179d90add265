//! A durable key-value service on raft-runtime.
//!
//! Its state and applied index live in an embedded database ([redb](https://docs.rs/redb)),
//! so a restarted node replays only the entries after what its database holds, never the
//! whole state; snapshots are read transactions streamed to the log store and to followers,
//! and a follower restores one into a new database file that replaces the current one at
//! once. See [`state_machine`].
//!
//! Around it, the service: an HTTP API on every node, a client, and the `kv` binary, built
//! like the counter's on `raft-service` (`examples/service`), which brings everything that
//! does not depend on the state (the node's assembly, `/status`, `/metrics`, `/admin/*`, the
//! client's retry rule, certificates, the admin token, and the shared subcommands).
//!
//! - [`state_machine`]: the replicated state, its commands, and the scan of the local
//!   state.
//! - [`node`]: the key-value store as a [`raft_service::Service`]: a node keeps its
//!   write-ahead log in `<data-dir>/wal` and its database in `<data-dir>/kv`.
//! - [`http`]: the routes (`/kv/{key}`, `/kv/{key}/cas`, `/kv`) and their consistency
//!   levels; [`api`]: their JSON bodies, and how values are written in JSON.
//! - [`client`]: the shared client plus the key-value requests.
//! - [`cmd`]: the `kv` binary's subcommands.

pub mod api;
pub mod client;
pub mod cmd;
pub mod http;
pub mod node;
pub mod state_machine;

pub use raft_service::{Error, admin_token, certs, outln, output, peers, shutdown};
pub use state_machine::{Command, KvError, KvStore, MAX_KEY_LEN, MAX_VALUE_LEN, Response, ScanPage};
