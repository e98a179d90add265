//! Tokio actors that drive [`raft_core`]: the crate users depend on.
//!
//! This crate is being built. What exists so far are the plug-in traits a storage or
//! transport implements ([`LogStore`], [`Transport`]) and the types they exchange; the
//! actors and the user-facing handle follow.

#![deny(missing_docs)]

pub mod store;
pub mod transport;

pub use store::{Completion, LogStore, LogWrite, Snapshot, StoreError, StoreMetrics};
pub use transport::{
    DeliverError, ForwardError, Inbox, InboxReceiver, Incoming, SendError, Transport, TransportError,
    TransportMetrics, WireMessage,
};

/// The protocol crate, re-exported so that users and plug-ins name one version of it.
pub use raft_core;
