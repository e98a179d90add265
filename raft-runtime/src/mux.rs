//! Many nodes of one process, each a member of its own Raft group, sharing one transport:
//! one connection per peer carries every group two processes share.
//!
//! A [`GroupMux`] wraps a transport (a QUIC transport, say). Each node built on it gets a
//! [`MuxTransport`] from [`GroupMux::transport`]; the node's group
//! ([`Builder::group`](crate::Builder::group)) routes its traffic. Incoming batches and
//! snapshots go to the node of the group they are tagged with; the peers the underlying
//! transport admits are the union of every group's members.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use raft_core::{Message, NodeId};

use crate::snapshot_stream::SnapshotStream;
use crate::transport::{
    DeliverSnapshotError, GroupId, Inbox, InboxReceiver, Incoming, RegisterError, SendError, Transport,
    TransportError, TransportMetrics, WireMessage,
};

/// One transport shared by the nodes of many groups in one process. Cloning shares it.
///
/// Every node built on it must have the same node id (the id the transport serves) and a
/// group of its own. A node that stops leaves the transport running for the others;
/// [`GroupMux::shutdown`] stops it.
#[derive(Clone)]
pub struct GroupMux {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Arc<dyn Transport>,
    per_peer: usize,
    per_group: usize,
    routes: Mutex<Routes>,
}

#[derive(Default)]
struct Routes {
    /// The node id registered with the transport, once the first node registered.
    node: Option<NodeId>,
    groups: HashMap<GroupId, Route>,
    /// Batches that arrived for a group no node here runs.
    unrouted: u64,
}

struct Route {
    inbox: Inbox,
    /// The members this group's node told its transport of.
    peers: BTreeMap<NodeId, Bytes>,
}

impl Routes {
    /// The members of every group, each once (a peer's address as the last group to name
    /// it gave it).
    fn union(&self) -> BTreeMap<NodeId, Bytes> {
        let mut all = BTreeMap::new();
        for route in self.groups.values() {
            all.extend(route.peers.iter().map(|(&n, a)| (n, a.clone())));
        }
        all
    }
}

impl GroupMux {
    /// Shares `transport` between groups. The inbox it registers holds at most `per_peer`
    /// batches from each peer, and at most `per_group` of them for any one group, so that
    /// one busy group cannot crowd out the others (see [`Inbox::with_group_shares`]).
    pub fn new(transport: impl Transport, per_peer: usize, per_group: usize) -> GroupMux {
        GroupMux {
            inner: Arc::new(Inner {
                transport: Arc::new(transport),
                per_peer,
                per_group,
                routes: Mutex::new(Routes::default()),
            }),
        }
    }

    /// A transport for one more node: give it to the node's builder.
    pub fn transport(&self) -> MuxTransport {
        MuxTransport {
            mux: self.inner.clone(),
            group: Arc::new(Mutex::new(None)),
        }
    }

    /// The groups whose nodes are registered, in no particular order.
    pub fn groups(&self) -> Vec<GroupId> {
        self.inner.lock().groups.keys().copied().collect()
    }

    /// Batches that arrived for a group no node here runs (dropped), since the start.
    pub fn unrouted(&self) -> u64 {
        self.inner.lock().unrouted
    }

    /// Stops the underlying transport. Nodes still running on it can no longer reach
    /// their peers: stop them first.
    pub async fn shutdown(&self) {
        self.inner.transport.shutdown().await;
    }

    /// The underlying transport's counters.
    pub fn metrics(&self) -> TransportMetrics {
        self.inner.transport.metrics()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Passes one delivery on to its group's node.
    fn route(&self, incoming: Incoming) {
        let group = incoming.group();
        let inbox = {
            let mut routes = self.lock();
            let inbox = routes.groups.get(&group).map(|r| r.inbox.clone());
            if inbox.is_none() {
                routes.unrouted += 1;
            }
            inbox
        };
        match (incoming, inbox) {
            (incoming, Some(inbox)) => inbox.forward(incoming),
            (Incoming::Messages { from, .. }, None) => {
                tracing::debug!(peer = from, group, "dropped a batch for a group not run here");
            }
            (Incoming::Snapshot { ack, .. }, None) => {
                let _ = ack.send(Err(DeliverSnapshotError::UnknownGroup { group }));
            }
        }
    }

    /// Tells the transport the members of every group.
    fn announce(&self, routes: &Routes) {
        let peers = routes.union();
        if !peers.is_empty() {
            self.transport.set_peers(peers);
        }
    }
}

/// Moves deliveries from the shared inbox to the groups' nodes until every inbox is gone
/// or the mux is. It holds the mux weakly: the transport holds the shared inbox, so a
/// strong reference would keep the mux, and with it the transport and its sockets, alive
/// for ever once everything else had let go.
async fn run_router(mux: Weak<Inner>, mut rx: InboxReceiver) {
    let mut buf = Vec::new();
    while rx.recv_many(&mut buf, 1024).await > 0 {
        let Some(mux) = mux.upgrade() else { return };
        for incoming in buf.drain(..) {
            mux.route(incoming);
        }
    }
}

/// One node's share of a [`GroupMux`]: the transport its builder takes.
#[derive(Clone)]
pub struct MuxTransport {
    mux: Arc<Inner>,
    /// The group of the node registered on it.
    group: Arc<Mutex<Option<GroupId>>>,
}

impl MuxTransport {
    fn group(&self) -> Option<GroupId> {
        *self.group.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Transport for MuxTransport {
    /// Refuses a node id other than the first node's, a group whose node is still
    /// running, and a second node on this same `MuxTransport`.
    fn register(&self, id: NodeId, group: GroupId, inbox: Inbox) -> Result<(), RegisterError> {
        let mut mine = self.group.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(taken) = *mine {
            return Err(RegisterError::AlreadyRegistered(taken));
        }
        let mut routes = self.mux.lock();
        match routes.node {
            Some(node) if node != id => {
                return Err(RegisterError::WrongNode {
                    transport: node,
                    node: id,
                });
            }
            Some(_) => {}
            None => {
                let (shared, rx) = Inbox::with_group_shares(self.mux.per_peer, self.mux.per_group);
                self.mux.transport.register(id, group, shared)?;
                tokio::spawn(run_router(Arc::downgrade(&self.mux), rx));
                routes.node = Some(id);
            }
        }
        if routes.groups.get(&group).is_some_and(|r| !r.inbox.is_closed()) {
            return Err(RegisterError::GroupTaken(group));
        }
        routes.groups.insert(
            group,
            Route {
                inbox,
                peers: BTreeMap::new(),
            },
        );
        *mine = Some(group);
        Ok(())
    }

    fn set_peers(&self, peers: BTreeMap<NodeId, Bytes>) {
        let Some(group) = self.group() else {
            return;
        };
        let mut routes = self.mux.lock();
        if let Some(route) = routes.groups.get_mut(&group) {
            route.peers = peers;
            self.mux.announce(&routes);
        }
    }

    fn send(&self, to: NodeId, group: GroupId, messages: Vec<WireMessage>) -> Result<(), SendError> {
        self.mux.transport.send(to, group, messages)
    }

    async fn send_snapshot(
        &self,
        to: NodeId,
        group: GroupId,
        message: Message,
        data: SnapshotStream,
    ) -> Result<(), TransportError> {
        self.mux.transport.send_snapshot(to, group, message, data).await
    }

    /// Forgets the node's group (its peers are no longer admitted unless another group
    /// has them); the shared transport goes on for the others.
    async fn shutdown(&self) {
        let Some(group) = self.group.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let mut routes = self.mux.lock();
        routes.groups.remove(&group);
        self.mux.announce(&routes);
    }

    fn metrics(&self) -> TransportMetrics {
        self.mux.transport.metrics()
    }
}
