//! Tokio actors that drive [`raft_core`]: replicate a service's state with Raft.
//!
//! You implement one async trait, [`StateMachine`], pick a [`LogStore`] and a
//! [`Transport`] (the `raft-storage-file` and `raft-transport-quic` crates, or the in-memory
//! [`MemLogStore`] and [`MemNetwork`] shipped here for tests), and [`Raft::builder`]
//! assembles and starts a node and gives you its cloneable [`Raft`] handle with `propose`, linearizable reads, membership changes,
//! leadership transfer, metrics and shutdown.
//!
//! # Architecture
//!
//! ```text
//! handle ──propose/read/admin──> group task ──writes──> LogStore (group commit) ──┐
//!                                 ^   │                                           │
//!     peers ──> Transport/Inbox ──┘   ├──messages──> Transport ──> peers          │
//!                                     └──committed──> applier ──> StateMachine    │
//!                                 ^                                               │
//!                                 └──────── "durable" / "applied up to" <─────────┘
//! ```
//!
//! One task (the group task) owns the protocol state and never blocks: the log store
//! reports durability through callbacks, the transport queues per peer and drops when full,
//! and a separate applier task owns the state machine. Every queue is bounded, or bounded by
//! a limit the group task enforces: proposals past a limit get [`ProposeError::Busy`].
//!
//! # Client sessions
//!
//! A proposal whose outcome is unknown (the leader was lost after appending it) cannot be
//! retried blindly: it might be applied twice. With [`Config::sessions`] on, commands
//! proposed in a [`Session`] ([`Raft::open_session`], [`Session::propose`]) are applied at
//! most once per (session, sequence) however often they are retried, and
//! [`Session::propose`] retries by itself until it has a definite answer. The README's
//! "Client sessions" section gives the semantics and their limits.
//!
//! # Example
//!
//! ```
//! use raft_runtime::{
//!     Applied, Config, MemLogStore, MemNetwork, MemberInfo, Raft, SnapshotStream, StateMachine,
//!     StateMachineError, async_trait,
//! };
//!
//! /// A replicated counter.
//! #[derive(Default)]
//! struct Counter(u64);
//!
//! #[async_trait]
//! impl StateMachine for Counter {
//!     type Command = u64;
//!     type Response = u64;
//!
//!     async fn apply(&mut self, batch: Vec<Applied<u64>>, _applied: u64) -> Result<Vec<u64>, StateMachineError> {
//!         Ok(batch.into_iter().map(|c| { self.0 += c.command; self.0 }).collect())
//!     }
//!     async fn applied_index(&self) -> Result<u64, StateMachineError> { Ok(0) }
//!     // A state this small is taken and read back in one buffer.
//!     async fn snapshot(&mut self) -> Result<SnapshotStream, StateMachineError> {
//!         Ok(SnapshotStream::from_bytes(self.0.to_le_bytes().to_vec()))
//!     }
//!     async fn restore(&mut self, _index: u64, data: SnapshotStream) -> Result<(), StateMachineError> {
//!         let data = data.into_bytes(8).await.map_err(StateMachineError::new)?;
//!         let bytes = data.as_ref().try_into().map_err(|_| StateMachineError::msg("bad snapshot"))?;
//!         self.0 = u64::from_le_bytes(bytes);
//!         Ok(())
//!     }
//! }
//!
//! # tokio_test_block_on(async {
//! let network = MemNetwork::new();
//! let members: Vec<(u64, MemberInfo)> = (1..=3).map(|id| (id, format!("node-{id}").into())).collect();
//! let mut config = Config::default();
//! config.tick_interval = std::time::Duration::from_millis(5);
//! let mut nodes = Vec::new();
//! for id in 1..=3 {
//!     let node = Raft::builder(id)
//!         .config(config.clone())
//!         .state_machine(Counter::default())
//!         .log_store(MemLogStore::new())
//!         .transport(network.transport(id))
//!         .bootstrap(members.clone())
//!         .start()
//!         .await
//!         .unwrap();
//!     nodes.push(node);
//! }
//! // Wait for a leader, then increment through it.
//! let m = nodes[0].wait_for(std::time::Duration::from_secs(10), |m| m.leader.is_some()).await.unwrap();
//! let leader = &nodes[(m.leader.unwrap() - 1) as usize];
//! assert_eq!(leader.propose(5).await.unwrap(), 5);
//! assert_eq!(leader.read(|c: &Counter| c.0).await.unwrap(), 5);
//! for n in &nodes {
//!     n.shutdown().await;
//! }
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

#![deny(missing_docs)]

mod adapter;
mod applier;
mod batch;
mod codec;
mod config;
mod error;
#[doc(hidden)]
pub mod fuzzing;
#[doc(hidden)]
pub mod golden;
mod group;
mod handle;
mod host;
mod mem_store;
mod mem_transport;
mod member;
mod metrics;
mod mux;
mod node;
mod peers;
mod persist;
mod sessions;
mod snapshot_policy;
mod snapshot_stream;
mod state_machine;
mod store;
mod transport;
mod waiting;
#[cfg(test)]
mod wire_golden;

pub use config::{Config, ConfigError, SessionConfig};
pub use error::{
    AdminError, BootstrapError, BusyReason, Fatal, InvalidTransfer, PipelineError, ProposeError, ReadError,
    SessionError, StartError, StateMachineError, UnknownOutcome,
};
pub use handle::{Raft, Seq, Session, SessionId, Stopped, WaitTimeout};
pub use host::GroupHost;
pub use mem_store::{MemLogStore, MemStoreError};
pub use mem_transport::{MemNetwork, MemTransport};
pub use member::MemberInfo;
pub use metrics::{Member, Metrics};
pub use mux::{GroupMux, MuxTransport};
pub use node::{Builder, Unset};
pub use snapshot_stream::{READ_CHUNK, SnapshotStream};
pub use state_machine::{Applied, StateMachine};
pub use store::{
    Completion, LogStore, LogWrite, Snapshot, Staged, StagedSnapshot, StoreError, StoreMetrics,
    StoredSnapshot,
};
pub use transport::{
    DeliverError, DeliverSnapshotError, ForwardError, GroupId, Inbox, InboxReceiver, Incoming, RegisterError,
    SendError, Transport, TransportError, TransportMetrics, WIRE_VERSION, WireMessage,
};

/// The attribute that implements the async traits ([`StateMachine`], [`LogStore`],
/// [`Transport`]), re-exported so that an implementation needs no dependency of its own.
pub use async_trait::async_trait;
/// The byte buffer commands, snapshots and addresses travel in.
pub use bytes::Bytes;
/// Protocol types that appear in this crate's API.
pub use raft_core::{Index, NodeId, Role, Term};

/// The protocol crate, re-exported so that users and plug-ins name one version of it.
pub use raft_core;
