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
//!   every peer (see [`tls`]).
//! * **Snapshots on their own connection**, in acknowledged chunks, resumable after a
//!   broken connection, checked with CRC-32C, with a size limit; a transfer that cannot
//!   be completed makes [`Transport::send_snapshot`] return an error.
//! * **Down peers are cheap.** Reconnects use capped exponential backoff with jitter,
//!   keep-alives run below the idle timeout, and "unreachable" is logged at most once per
//!   interval per peer.
//!
//! # Use
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::collections::BTreeMap;
//! use raft_runtime::{Inbox, Transport};
//! use raft_transport_quic::{DevCa, QuicConfig, QuicTransport, TlsConfig};
//!
//! // Production: PEM files from your cluster CA.
//! // let tls = TlsConfig::from_pem_files("ca.pem", "node-1.pem", "node-1.key")?;
//! let ca = DevCa::generate()?; // development only
//! let tls = ca.node_tls(1)?;
//! let members = BTreeMap::from([
//!     (1, "127.0.0.1:7001".into()),
//!     (2, "127.0.0.1:7002".into()),
//! ]);
//! // The members known at bind time are admitted from the first moment; without them, the
//! // transport refuses every peer until the runtime's first `set_peers`.
//! let config = QuicConfig::new(1, "127.0.0.1:7001".parse()?, tls).with_initial_peers(members.clone());
//! let transport = QuicTransport::bind(config).await?;
//! let (inbox, mut received) = Inbox::channel(1024);
//! transport.register(inbox);
//! // The runtime calls this at start and on every membership change.
//! transport.set_peers(members);
//! # Ok(()) }
//! ```
//!
//! [`WireMessage`]: raft_runtime::WireMessage
//! [`Transport::send`]: raft_runtime::Transport::send
//! [`Transport::set_peers`]: raft_runtime::Transport::set_peers
//! [`Transport::send_snapshot`]: raft_runtime::Transport::send_snapshot
//! [`SendError::Full`]: raft_runtime::SendError::Full

#![deny(missing_docs)]

mod backoff;
mod budget;
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
pub mod tls;
mod transport;

pub use config::{Limits, QuicConfig, Tuning};
pub use dev::{DevCa, NodeCert, NodeFiles};
pub use error::QuicError;
pub use tls::TlsConfig;
pub use transport::{PeerConnection, QuicStats, QuicTransport};
