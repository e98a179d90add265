//! A [`Transport`](raft_runtime::Transport) for `raft-runtime` over QUIC (quinn, rustls on
//! the ring provider) with mutual TLS.
//!
//! # What it does
//!
//! * **One connection per peer pair.** Either node dials when it has something to send;
//!   when both dial at once, both keep the connection dialled by the lower node id. A
//!   peer that restarted is recognised by a new per-process incarnation number in the
//!   stream greeting, and its new connection replaces the stale one.
//! * **Ordered, batched messages.** Each direction of the connection is one long-lived
//!   QUIC stream of length-prefixed frames, each a batch of [`WireMessage`]s encoded with
//!   serde and bincode (see [`codec`]). Batches queued while a write is in flight are
//!   coalesced into the next write.
//! * **Sending never blocks.** [`Transport::send`] puts the batch on a bounded per-peer
//!   queue and returns; a full queue answers [`SendError::Full`] and drops the batch (Raft
//!   retransmits). A per-peer task drains the queue into the stream.
//! * **Mutual TLS with a cluster CA.** Every certificate names its node as the DNS name
//!   `node-<id>.raft` (see [`identity`]). Both sides verify the chain and the name, and
//!   admit only listed members: until the transport is given the member list (by
//!   [`QuicConfig::with_initial_peers`] or the first [`Transport::set_peers`]) it refuses
//!   every peer (see [`TlsConfig`]).
//! * **Snapshots streamed on their own connection**: read from the sender's
//!   [`SnapshotStream`] as the receiver takes them, handed to the receiving node as they
//!   arrive, never held whole on either side (a reception holds at most the QUIC stream
//!   receive window plus one chunk), checked at the end with a length and a CRC-32C, with
//!   a size limit counted as data arrives; a transfer that breaks, or that the receiving
//!   node does not take, makes [`Transport::send_snapshot`] return an error (see
//!   `src/snapshot.rs` and [`codec`]).
//! * **Down peers are cheap.** Reconnects use capped exponential backoff with jitter,
//!   keep-alives run below the idle timeout, and "unreachable" is logged at most once per
//!   interval per peer.
//!
//! # Use
//!
//! Bind the transport, then hand it to the node's builder, which registers the node with it
//! (the node's id must be the one the certificate names) and keeps its member list current.
//!
//! ```no_run
//! # use raft_runtime::{async_trait, Applied, SnapshotStream, StateMachine, StateMachineError};
//! # struct Kv;
//! # #[async_trait]
//! # impl StateMachine for Kv {
//! #     type Command = u64;
//! #     type Response = u64;
//! #     async fn apply(&mut self, b: Vec<Applied<u64>>, _: u64) -> Result<Vec<u64>, StateMachineError> { Ok(vec![0; b.len()]) }
//! #     async fn applied_index(&self) -> Result<u64, StateMachineError> { Ok(0) }
//! #     async fn snapshot(&mut self) -> Result<SnapshotStream, StateMachineError> { Ok(SnapshotStream::from_bytes(Vec::new())) }
//! #     async fn restore(&mut self, _: u64, _: SnapshotStream) -> Result<(), StateMachineError> { Ok(()) }
//! # }
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use raft_runtime::{MemLogStore, MemberInfo, Raft};
//! use raft_transport_quic::{DevCa, QuicConfig, QuicTransport, TlsConfig};
//!
//! // Production: PEM files from your cluster CA.
//! // let tls = TlsConfig::from_pem_files("ca.pem", "node-1.pem", "node-1.key")?;
//! let ca = DevCa::generate()?; // development only
//! let tls = ca.node_tls(1)?;
//! let members = [
//!     (1, MemberInfo::new("127.0.0.1:7001")),
//!     (2, MemberInfo::new("127.0.0.1:7002")),
//!     (3, MemberInfo::new("127.0.0.1:7003")),
//! ];
//! let transport = QuicTransport::bind(QuicConfig::new("127.0.0.1:7001".parse()?, tls)).await?;
//! let raft = Raft::builder(1)
//!     .state_machine(Kv)
//!     .log_store(MemLogStore::new()) // raft-storage-file's FileLogStore in production
//!     .transport(transport)
//!     .bootstrap(members)
//!     .start()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Until the node starts, the transport refuses every peer, unless it is given the members
//! at bind time with [`QuicConfig::with_initial_peers`]. With port 0, bind every node's
//! transport first and read [`QuicTransport::local_addr`]: the member map needs the real
//! ports.
//!
//! [`WireMessage`]: raft_runtime::WireMessage
//! [`Transport::send`]: raft_runtime::Transport::send
//! [`Transport::set_peers`]: raft_runtime::Transport::set_peers
//! [`Transport::send_snapshot`]: raft_runtime::Transport::send_snapshot
//! [`SendError::Full`]: raft_runtime::SendError::Full
//! [`SnapshotStream`]: raft_runtime::SnapshotStream

#![deny(missing_docs)]

mod backoff;
pub mod codec;
mod config;
mod dev;
mod endpoint;
mod error;
#[doc(hidden)]
pub mod fuzzing;
#[cfg(test)]
mod golden_tests;
pub mod identity;
mod link;
mod snapshot;
mod stream;
mod tls;
mod transport;

pub use config::{Limits, QuicConfig, Tuning};
pub use dev::{DevCa, NodeCert, NodeFiles};
pub use error::QuicError;
/// The configuration error of every crate of the workspace (see [`QuicConfig::validate`]).
pub use raft_core::ConfigError;
pub use tls::TlsConfig;
pub use transport::{PeerConnection, QuicStats, QuicTransport};
