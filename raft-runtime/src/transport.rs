//! The transport plug-in: how messages and snapshots travel between nodes.
//!
//! Outgoing traffic goes through [`Transport::send`], which must never block: a transport
//! keeps a bounded queue per peer and, when it is full, drops the batch and says so. Raft
//! retransmits whatever is lost, and a stalled peer must never stall the leader.
//!
//! Incoming traffic is handed to the [`Inbox`] the runtime registers with
//! [`Transport::register`]. A transport authenticates its peers and passes the
//! authenticated sender id along; the runtime drops messages whose claimed sender differs.
//!
//! Every batch and snapshot belongs to one Raft group, named by its [`GroupId`]: one
//! transport, and one connection per pair of nodes, carries the traffic of every group the
//! two nodes share. A node refuses traffic for a group it does not run.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use raft_core::{Message, NodeId};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::snapshot_stream::SnapshotStream;

/// The version of the serialized form of [`WireMessage`]: its serde data model and that of
/// every raft-core type it carries ([`Message`], entries, configurations, snapshot
/// metadata), laid out by bincode 2's standard configuration (little endian,
/// variable-length integers), as the QUIC transport sends them.
///
/// A node can only decode messages of its own version, so a transport that serializes
/// [`WireMessage`]s names this version in its handshake, refusing peers of another. Bump it
/// with any change to those types that changes their bytes (a field added, removed,
/// reordered or retyped, a variant inserted): the golden test `wire_golden` fails until it
/// is bumped and its golden file regenerated
/// (`UPDATE_GOLDEN=1 cargo test -p raft-runtime --lib golden`).
///
/// Version 2 added [`EntryPayload::Internal`](raft_core::EntryPayload::Internal); version 3
/// added [`WireMessage::ForwardRecord`] and [`ForwardError::Session`] (client sessions);
/// version 4 added [`Heartbeat::quiesce`](raft_core::Heartbeat::quiesce) and
/// [`MessageBody::Wake`](raft_core::MessageBody::Wake) (quiescence).
pub const WIRE_VERSION: u32 = 4;

/// The id of a Raft group. Every batch of messages and every snapshot a transport carries is
/// tagged with the group it belongs to, so that the groups two nodes share travel over one
/// connection. A node running a single group runs group 0 unless its builder names another
/// ([`Builder::group`](crate::Builder::group)).
pub type GroupId = u64;

/// What travels between the runtimes of two nodes: protocol messages, and proposals that a
/// follower forwards to the leader together with their answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireMessage {
    /// A protocol message.
    Raft(Message),
    /// A follower forwards a client command to the leader.
    Forward {
        /// The follower's request id, echoed in the reply.
        id: u64,
        /// The serialized command.
        command: Bytes,
    },
    /// The leader's answer to a forwarded command.
    ForwardReply {
        /// The id of the request.
        id: u64,
        /// The serialized response, or why the command failed.
        result: Result<Bytes, ForwardError>,
    },
    /// A follower forwards a record of the runtime's own (a client session's command or
    /// opening) to the leader, which stamps its time into it and appends it. Answered by a
    /// [`WireMessage::ForwardReply`] like a command.
    ForwardRecord {
        /// The follower's request id, echoed in the reply.
        id: u64,
        /// The record, not yet stamped.
        record: Bytes,
    },
}

/// Why a forwarded command failed, as told by the leader. Mirrors the proposal errors so the
/// follower can answer its client precisely.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    /// The receiving node is not the leader (definitely not applied).
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader {
        /// The leader it knows of.
        leader: Option<NodeId>,
    },
    /// The leader is overloaded (definitely not applied).
    #[error("leader busy")]
    Busy,
    /// The leader is shutting down (definitely not applied).
    #[error("leader shutting down")]
    ShuttingDown,
    /// The command could not be decoded by the leader (definitely not applied).
    #[error("malformed command: {0}")]
    Malformed(String),
    /// The command was appended but leadership was lost: it may or may not be applied.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The session table refused the command or the new session (definitely not applied).
    #[error("session: {0}")]
    Session(crate::error::SessionError),
}

/// Why [`Transport::send`] did not queue a batch. The batch is dropped either way.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The peer's queue is full (it is slow or unreachable).
    #[error("queue to node {0} is full")]
    Full(NodeId),
    /// No address is known for the peer.
    #[error("no address known for node {0}")]
    UnknownPeer(NodeId),
    /// The transport is shut down.
    #[error("transport is shut down")]
    Closed,
}

/// A transport failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No address is known for the peer.
    #[error("no address known for node {0}")]
    UnknownPeer(NodeId),
    /// The peer could not be reached or the connection broke.
    #[error("node {peer} unreachable: {reason}")]
    Unreachable {
        /// The peer.
        peer: NodeId,
        /// What went wrong.
        reason: String,
    },
    /// The peer refused the snapshot (for example, it was too large or it is shutting down).
    #[error("node {peer} refused the snapshot: {reason}")]
    Refused {
        /// The peer.
        peer: NodeId,
        /// Its reason.
        reason: String,
    },
    /// The transport is shut down.
    #[error("transport is shut down")]
    Closed,
}

/// Traffic delivered to a node.
#[derive(Debug)]
pub enum Incoming {
    /// A batch of messages from an authenticated peer.
    Messages {
        /// The authenticated sender.
        from: NodeId,
        /// The group the messages belong to, as the sender tagged them.
        group: GroupId,
        /// The messages, in the order sent.
        messages: Vec<WireMessage>,
    },
    /// A snapshot from an authenticated peer, its data still arriving.
    Snapshot {
        /// The authenticated sender.
        from: NodeId,
        /// The group the snapshot belongs to, as the sender tagged it.
        group: GroupId,
        /// The protocol message announcing the snapshot (its body is
        /// [`raft_core::MessageBody::Snapshot`]).
        message: Box<Message>,
        /// The snapshot's data, read as it arrives: the runtime writes it to its log store
        /// a chunk at a time, so the transport holds no more of it than its flow control
        /// lets in. A transfer that breaks, or data that fails the transport's checks,
        /// ends the stream with an error.
        data: SnapshotStream,
        /// Answered by the runtime once it has read the whole stream and taken the
        /// snapshot (or refused it); the transport then acknowledges the transfer to the
        /// sender, or passes the refusal on.
        ack: oneshot::Sender<Result<(), DeliverSnapshotError>>,
    },
}

/// Where a transport delivers incoming traffic: a queue into a node, bounded per peer.
///
/// Each sender has its own share of the queue: a peer whose batches fill its share has
/// its next batches dropped, while every other peer's still get through. One member
/// flooding a node (a bug, a version mismatch, an attack) cannot make the node deaf to the
/// rest of the cluster. Within a sender's share, each of its groups may be given a smaller
/// share of its own ([`Inbox::with_group_shares`]), so that one busy group cannot crowd out
/// the others. Snapshots are not counted: each waits for the node to take it, and the
/// transport bounds how many it receives at once.
#[derive(Clone, Debug)]
pub struct Inbox {
    tx: mpsc::UnboundedSender<Incoming>,
    shares: Arc<Shares>,
}

/// The receiving end of an [`Inbox`], owned by the runtime (or by a test).
#[derive(Debug)]
pub struct InboxReceiver {
    rx: mpsc::UnboundedReceiver<Incoming>,
    shares: Arc<Shares>,
}

/// How many message batches each peer, and each of its groups, has queued.
#[derive(Debug)]
struct Shares {
    per_peer: usize,
    /// At most this many per (peer, group); at least `per_peer` means no limit of its own.
    per_group: usize,
    queued: Mutex<Queued>,
}

#[derive(Debug, Default)]
struct Queued {
    peers: HashMap<NodeId, usize>,
    /// Only kept when groups have a share of their own.
    groups: HashMap<(NodeId, GroupId), usize>,
}

impl Shares {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn group_shares(&self) -> bool {
        self.per_group < self.per_peer
    }

    /// Takes a place in `from`'s share and in that of its `group`, if both have one free.
    fn take(&self, from: NodeId, group: GroupId) -> bool {
        let mut queued = self.lock();
        let queued = &mut *queued;
        let peer = queued.peers.entry(from).or_insert(0);
        if *peer >= self.per_peer {
            return false;
        }
        if self.group_shares() {
            let g = queued.groups.entry((from, group)).or_insert(0);
            if *g >= self.per_group {
                return false;
            }
            *g += 1;
        }
        *peer += 1;
        true
    }

    /// Gives back the places of the deliveries that left the queue.
    fn give_back<'a>(&self, taken: impl IntoIterator<Item = &'a Incoming>) {
        let mut queued: Option<std::sync::MutexGuard<'_, Queued>> = None;
        for inc in taken {
            if let Incoming::Messages { from, group, .. } = inc {
                let queued = &mut **queued.get_or_insert_with(|| self.lock());
                release(&mut queued.peers, *from);
                if self.group_shares() {
                    release(&mut queued.groups, (*from, *group));
                }
            }
        }
    }
}

/// Gives back one place of `key`'s, forgetting keys that hold none.
fn release<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: K) {
    if let Some(n) = counts.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(&key);
        }
    }
}

/// Why an [`Inbox`] did not take a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliverError {
    /// The sender's share of the node's inbox is full; the batch was dropped.
    #[error("inbox full")]
    Full,
    /// The node is gone.
    #[error("node stopped")]
    Closed,
}

/// Why a node did not take a snapshot delivered to its [`Inbox`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliverSnapshotError {
    /// The message delivered with the data is not a snapshot message.
    #[error("not a snapshot message (a {kind} message)")]
    NotASnapshot {
        /// The message's kind.
        kind: &'static str,
    },
    /// The snapshot belongs to a group the node does not run.
    #[error("the node runs no group {group}")]
    UnknownGroup {
        /// The group the sender tagged the snapshot with.
        group: GroupId,
    },
    /// The message names a sender other than the authenticated peer that delivered it.
    #[error("sender {from} claims to be {claimed}")]
    ForgedSender {
        /// The authenticated peer.
        from: NodeId,
        /// The sender the message names.
        claimed: NodeId,
    },
    /// The snapshot's data could not be read to its end or stored (the transfer broke,
    /// the data failed a check, the store failed); nothing of it was kept.
    #[error("the snapshot's data was not stored: {0}")]
    NotStored(String),
    /// The node is gone.
    #[error("node stopped")]
    Closed,
}

impl Inbox {
    /// A new inbox holding at most `per_peer` message batches from each sender.
    pub fn channel(per_peer: usize) -> (Inbox, InboxReceiver) {
        Inbox::with_group_shares(per_peer, per_peer)
    }

    /// A new inbox holding at most `per_peer` message batches from each sender, and at most
    /// `per_group` of them for any one group: for a node running many groups, where one
    /// group busy with large appends must not take the places of every other group's
    /// heartbeats. (A `per_group` of `per_peer` or more sets no limit per group.)
    pub fn with_group_shares(per_peer: usize, per_group: usize) -> (Inbox, InboxReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shares = Arc::new(Shares {
            per_peer: per_peer.max(1),
            per_group: per_group.max(1),
            queued: Mutex::new(Queued::default()),
        });
        (
            Inbox {
                tx,
                shares: shares.clone(),
            },
            InboxReceiver { rx, shares },
        )
    }

    /// Whether the node this inbox delivers to has stopped (its receiver is gone).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Delivers a batch of `group`'s messages without waiting; drops it if the sender's
    /// share of the inbox (or that of its group) is full.
    pub fn deliver(
        &self,
        from: NodeId,
        group: GroupId,
        messages: Vec<WireMessage>,
    ) -> Result<(), DeliverError> {
        if self.tx.is_closed() {
            return Err(DeliverError::Closed);
        }
        if !self.shares.take(from, group) {
            return Err(DeliverError::Full);
        }
        self.tx
            .send(Incoming::Messages {
                from,
                group,
                messages,
            })
            .map_err(|e| {
                self.shares.give_back([&e.0]);
                DeliverError::Closed
            })
    }

    /// Delivers a snapshot whose data the node reads from `data` as it arrives, then waits
    /// for the node to take it. Returns the node's verdict. A transport that must tell the
    /// sender why a snapshot was refused sends the error's `Display` text.
    pub async fn deliver_snapshot(
        &self,
        from: NodeId,
        group: GroupId,
        message: Message,
        data: SnapshotStream,
    ) -> Result<(), DeliverSnapshotError> {
        let (ack, verdict) = oneshot::channel();
        self.tx
            .send(Incoming::Snapshot {
                from,
                group,
                message: Box::new(message),
                data,
                ack,
            })
            .map_err(|_| DeliverSnapshotError::Closed)?;
        verdict.await.map_err(|_| DeliverSnapshotError::Closed)?
    }
}

impl Incoming {
    /// The group the delivery belongs to, as its sender tagged it.
    pub(crate) fn group(&self) -> GroupId {
        match self {
            Incoming::Messages { group, .. } | Incoming::Snapshot { group, .. } => *group,
        }
    }
}

impl Inbox {
    /// Passes a delivery taken from another inbox on (a snapshot keeps its verdict channel).
    /// A batch of messages takes a place in this inbox's shares, or is dropped; a delivery
    /// to a stopped node is dropped, and a snapshot's sender told so.
    pub(crate) fn forward(&self, incoming: Incoming) {
        match incoming {
            Incoming::Messages {
                from,
                group,
                messages,
            } => {
                let _ = self.deliver(from, group, messages);
            }
            snapshot @ Incoming::Snapshot { .. } => {
                if let Err(mpsc::error::SendError(Incoming::Snapshot { ack, .. })) = self.tx.send(snapshot) {
                    let _ = ack.send(Err(DeliverSnapshotError::Closed));
                }
            }
        }
    }
}

impl InboxReceiver {
    /// The next delivery, or `None` once every [`Inbox`] is dropped.
    pub async fn recv(&mut self) -> Option<Incoming> {
        let inc = self.rx.recv().await;
        self.shares.give_back(inc.as_ref());
        inc
    }

    /// The next delivery if one is queued.
    pub fn try_recv(&mut self) -> Option<Incoming> {
        let inc = self.rx.try_recv().ok();
        self.shares.give_back(inc.as_ref());
        inc
    }

    /// Waits for at least one delivery, then moves up to `limit` queued ones into `buf`.
    /// Returns how many were moved (0 once every [`Inbox`] is dropped).
    pub async fn recv_many(&mut self, buf: &mut Vec<Incoming>, limit: usize) -> usize {
        let start = buf.len();
        let n = self.rx.recv_many(buf, limit).await;
        self.shares.give_back(&buf[start..]);
        n
    }

    /// [`InboxReceiver::recv_many`] as a poll: moves up to `limit` queued deliveries into
    /// `buf`, or registers `cx`'s waker and returns `Pending` when none is queued.
    pub(crate) fn poll_recv_many(
        &mut self,
        cx: &mut std::task::Context<'_>,
        buf: &mut Vec<Incoming>,
        limit: usize,
    ) -> std::task::Poll<usize> {
        let start = buf.len();
        let polled = self.rx.poll_recv_many(cx, buf, limit);
        self.shares.give_back(&buf[start..]);
        polled
    }
}

/// Why [`Transport::register`] refused a node. The node does not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The transport serves another node id (a QUIC transport's id is the one its
    /// certificate names).
    #[error("the transport is node {transport}'s, but node {node} was built on it")]
    WrongNode {
        /// The id the transport serves.
        transport: NodeId,
        /// The id the node was built with.
        node: NodeId,
    },
    /// The transport already delivers to a node (each transport serves one node at a time).
    #[error("the transport already delivers to node {0}")]
    AlreadyRegistered(NodeId),
    /// A node of this group already runs on the shared transport.
    #[error("a node of group {0} already runs on this transport")]
    GroupTaken(GroupId),
    /// The transport is shut down.
    #[error("transport is shut down")]
    Closed,
}

/// Counters a transport keeps for metrics and benchmarks. Totals since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportMetrics {
    /// Messages queued for sending.
    pub messages_sent: u64,
    /// Bytes written to the network (framing included).
    pub bytes_sent: u64,
    /// Messages received and delivered.
    pub messages_received: u64,
    /// Bytes read from the network.
    pub bytes_received: u64,
    /// Batches dropped because a peer's queue was full or the peer unknown.
    pub dropped: u64,
}

/// Moves messages and snapshots between nodes.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Starts delivering traffic addressed to node `id`, a member of `group`, into `inbox`.
    /// Called once, when the node starts, before the first [`Transport::set_peers`]. A
    /// transport that serves one node delivers every group's traffic to it (the node
    /// refuses other groups'); one shared by the nodes of many groups
    /// ([`GroupMux`](crate::GroupMux)) delivers to each node its own group's. A transport that knows its
    /// own id (from its certificate, say) refuses another with
    /// [`RegisterError::WrongNode`]; a transport that already delivers to a running node
    /// refuses with [`RegisterError::AlreadyRegistered`], so that a misassembled node fails
    /// at start instead of running deaf. (A transport may serve a node again after
    /// [`Transport::shutdown`] only if it says so in its docs.)
    fn register(&self, id: NodeId, group: GroupId, inbox: Inbox) -> Result<(), RegisterError>;

    /// The members' addresses, from the replicated configuration (the bytes each member
    /// registered, typically `host:port`). Called at start, after [`Transport::register`],
    /// and whenever the configuration changes; never with an empty map. Members a change
    /// removes stay listed until the change has committed and two election timeouts have
    /// passed, since the protocol still needs to reach them (a leader that removes itself
    /// must hear its followers acknowledge the change). A node joining a cluster is given
    /// the members it was told to join until its log lists it. Peers not listed are
    /// disconnected; a transport that authenticates peers refuses them, and refuses
    /// everyone until the first list.
    fn set_peers(&self, peers: BTreeMap<NodeId, Bytes>);

    /// Queues a batch of `group`'s messages for `to`. Never blocks; drops the batch when the
    /// peer's queue is full. A transport that serves many groups keeps one queue per peer
    /// for all of them and gives each group a share of it, so that one busy group cannot
    /// fill it for the rest.
    fn send(&self, to: NodeId, group: GroupId, messages: Vec<WireMessage>) -> Result<(), SendError>;

    /// Streams a snapshot to `to`, reading `data` a chunk at a time as the peer takes it
    /// (never gathering it whole: a snapshot may be larger than memory), and returns once
    /// the peer's node took all of it. An error reading `data` fails the transfer, and the
    /// peer stores nothing of it. The runtime sends a failed snapshot again later with a
    /// fresh stream; a transport need not retry on its own.
    async fn send_snapshot(
        &self,
        to: NodeId,
        group: GroupId,
        message: Message,
        data: SnapshotStream,
    ) -> Result<(), TransportError>;

    /// Stops the transport: closes connections and stops delivering.
    async fn shutdown(&self);

    /// Counters for metrics.
    fn metrics(&self) -> TransportMetrics {
        TransportMetrics::default()
    }
}

/// A shared transport is a transport: the builder takes an `Arc<X>` as well as an `X`.
#[async_trait]
impl<X: Transport + ?Sized> Transport for Arc<X> {
    fn register(&self, id: NodeId, group: GroupId, inbox: Inbox) -> Result<(), RegisterError> {
        (**self).register(id, group, inbox)
    }

    fn set_peers(&self, peers: BTreeMap<NodeId, Bytes>) {
        (**self).set_peers(peers)
    }

    fn send(&self, to: NodeId, group: GroupId, messages: Vec<WireMessage>) -> Result<(), SendError> {
        (**self).send(to, group, messages)
    }

    async fn send_snapshot(
        &self,
        to: NodeId,
        group: GroupId,
        message: Message,
        data: SnapshotStream,
    ) -> Result<(), TransportError> {
        (**self).send_snapshot(to, group, message, data).await
    }

    async fn shutdown(&self) {
        (**self).shutdown().await
    }

    fn metrics(&self) -> TransportMetrics {
        (**self).metrics()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Vec<WireMessage> {
        vec![WireMessage::Forward {
            id: 1,
            command: Bytes::new(),
        }]
    }

    #[tokio::test]
    async fn a_flooding_peer_fills_only_its_own_share() {
        let (inbox, mut rx) = Inbox::channel(3);
        for group in 0..3 {
            inbox.deliver(2, group, batch()).unwrap();
        }
        assert_eq!(inbox.deliver(2, 7, batch()), Err(DeliverError::Full));
        // Everyone else still gets through.
        inbox.deliver(3, 0, batch()).unwrap();
        inbox.deliver(4, 0, batch()).unwrap();
        let mut got = Vec::new();
        assert_eq!(rx.recv_many(&mut got, 2).await, 2);
        // Two of node 2's batches left the queue: it has room for two more.
        inbox.deliver(2, 0, batch()).unwrap();
        inbox.deliver(2, 0, batch()).unwrap();
        assert_eq!(inbox.deliver(2, 0, batch()), Err(DeliverError::Full));
        while rx.try_recv().is_some() {}
        assert!(rx.shares.lock().peers.is_empty(), "every place was given back");
        drop(rx);
        assert_eq!(inbox.deliver(5, 0, batch()), Err(DeliverError::Closed));
    }

    #[tokio::test]
    async fn a_busy_group_fills_only_its_own_share_of_its_peers() {
        let (inbox, mut rx) = Inbox::with_group_shares(5, 2);
        inbox.deliver(2, 10, batch()).unwrap();
        inbox.deliver(2, 10, batch()).unwrap();
        assert_eq!(inbox.deliver(2, 10, batch()), Err(DeliverError::Full));
        // The peer's other groups still get through, up to the peer's own share.
        inbox.deliver(2, 11, batch()).unwrap();
        inbox.deliver(2, 12, batch()).unwrap();
        inbox.deliver(2, 13, batch()).unwrap();
        assert_eq!(inbox.deliver(2, 14, batch()), Err(DeliverError::Full));
        // Another peer's group 10 has a share of its own.
        inbox.deliver(3, 10, batch()).unwrap();
        let first = rx.try_recv().expect("queued");
        assert!(matches!(
            first,
            Incoming::Messages {
                from: 2,
                group: 10,
                ..
            }
        ));
        inbox.deliver(2, 10, batch()).unwrap();
        assert_eq!(inbox.deliver(2, 10, batch()), Err(DeliverError::Full));
        while rx.try_recv().is_some() {}
        let queued = rx.shares.lock();
        assert!(
            queued.peers.is_empty() && queued.groups.is_empty(),
            "every place was given back"
        );
    }
}
