//! A transport adapter for a node that starts with `--join`.
//!
//! A joining node knows no members yet, and the QUIC transport then accepts any peer that
//! the cluster CA vouches for, so that the leader can reach it and add it. But the runtime
//! tells the transport the membership as soon as the node starts, and for a joining node
//! that membership is empty, which the transport takes as "admit no one": the leader's
//! connections are refused and the node never catches up. Until the runtime stops
//! announcing an empty membership, this adapter holds such announcements back. Every
//! other call goes straight through, and once the leader has added the node, the real
//! membership (never empty again) reaches the transport as usual.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use raft_runtime::raft_core::{Message, NodeId};
use raft_runtime::{Inbox, SendError, Transport, TransportError, TransportMetrics, WireMessage};

/// Wraps a transport, dropping empty membership announcements.
pub struct WaitingToJoin<T>(pub Arc<T>);

#[async_trait]
impl<T: Transport> Transport for WaitingToJoin<T> {
    fn register(&self, inbox: Inbox) {
        self.0.register(inbox)
    }

    fn set_peers(&self, peers: BTreeMap<NodeId, Bytes>) {
        if !peers.is_empty() {
            self.0.set_peers(peers)
        }
    }

    fn send(&self, to: NodeId, messages: Vec<WireMessage>) -> Result<(), SendError> {
        self.0.send(to, messages)
    }

    async fn send_snapshot(&self, to: NodeId, message: Message, data: Bytes) -> Result<(), TransportError> {
        self.0.send_snapshot(to, message, data).await
    }

    async fn shutdown(&self) {
        self.0.shutdown().await
    }

    fn metrics(&self) -> TransportMetrics {
        self.0.metrics()
    }
}
