//! [`QuicTransport`]: the shared state of one node's transport, the accept loop, and the
//! [`Transport`] implementation the runtime calls.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use quinn::{Connection, Endpoint};
use raft_core::{Message, NodeId};
use raft_runtime::{
    GroupId, Inbox, RegisterError, SendError, SnapshotStream, Transport, TransportError, TransportMetrics,
    WireMessage,
};
use rustls::pki_types::CertificateDer;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff::{Jitter, LogLimiter};
use crate::codec::{MESSAGE_MAGIC, encode_greeting};
use crate::config::{Limits, QuicConfig, Tuning};
use crate::endpoint::{self, close};
use crate::error::QuicError;
use crate::identity::node_id_of;
use crate::link::{self, Control, Established};
use crate::snapshot::{self, ReceiveSlot};
use crate::stream::read_greeting;
use crate::tls::{ALPN_MESSAGES, ALPN_SNAPSHOTS, Members, build_crypto};

/// Counters beyond [`TransportMetrics`], for operators and tests. Totals since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuicStats {
    /// Handshakes refused because of the peer's certificate (wrong CA, no node name,
    /// not a member, or not the node dialled), in either direction.
    pub refused_handshakes: u64,
    /// Message connections established (dialled or accepted, including replaced ones).
    pub connections_established: u64,
    /// Connections closed because the peer sent an oversize or malformed frame.
    pub malformed_frames: u64,
    /// Messages dropped because their claimed sender was not the authenticated peer.
    pub forged_messages: u64,
    /// Received batches dropped because the node's inbox was full.
    pub inbox_full: u64,
    /// Snapshots sent and acknowledged by the receiver's node.
    pub snapshots_sent: u64,
    /// Snapshots received and delivered to this node.
    pub snapshots_received: u64,
    /// Incoming connection attempts turned away (answered with a QUIC Retry, or refused)
    /// because [`Limits::max_concurrent_handshakes`] handshakes were in progress.
    pub handshakes_turned_away: u64,
    /// Connections closed because their peer held more than
    /// [`Limits::max_connections_per_peer`] connections to this node.
    pub excess_connections_closed: u64,
    /// Message connections closed because the peer stopped reading
    /// ([`Tuning::write_timeout`](crate::Tuning::write_timeout)).
    pub write_timeouts: u64,
}

/// How a node is connected to a peer right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerConnection {
    /// The node that opened the connection. When both nodes connect at once, both keep
    /// the connection opened by the lower id, so both sides report the same value.
    pub dialed_by: NodeId,
    /// The peer's UDP address.
    pub remote_addr: SocketAddr,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) messages_sent: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) messages_received: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) connections_established: AtomicU64,
    pub(crate) malformed_frames: AtomicU64,
    pub(crate) forged_messages: AtomicU64,
    pub(crate) inbox_full: AtomicU64,
    pub(crate) snapshots_sent: AtomicU64,
    pub(crate) snapshots_received: AtomicU64,
    pub(crate) handshakes_turned_away: AtomicU64,
    pub(crate) excess_connections_closed: AtomicU64,
    pub(crate) write_timeouts: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What the link task publishes about its connection.
#[derive(Clone, Debug, Default)]
pub(crate) struct LinkState {
    pub(crate) connection: Option<PeerConnection>,
    /// Failed connection attempts so far.
    pub(crate) failures: u64,
    pub(crate) last_error: Option<String>,
}

/// One peer: its send queue, its address, and the handle of its link task.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) id: NodeId,
    queue: mpsc::Sender<Queued>,
    /// Each group's share of the queue, when groups have one.
    shares: Option<Arc<GroupShares>>,
    control: mpsc::UnboundedSender<Control>,
    address: Mutex<Option<String>>,
    has_address: AtomicBool,
    pub(crate) connected: AtomicBool,
    /// The `stable_id` of the message connection the link uses ([`NO_CONNECTION`] if
    /// none): the one connection from this peer never closed to make room for another.
    pub(crate) designated: AtomicUsize,
    pub(crate) state: watch::Sender<LinkState>,
}

/// A batch of one group's messages queued for a peer. It holds a place in its group's share
/// of the peer's queue until it leaves the link, written or dropped.
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) group: GroupId,
    pub(crate) messages: Vec<WireMessage>,
    _place: Option<Place>,
}

/// How many batches each group has in a peer's queue, each at most `per_group`.
#[derive(Debug)]
struct GroupShares {
    per_group: usize,
    queued: Mutex<HashMap<GroupId, usize>>,
}

impl GroupShares {
    /// A place in `group`'s share, if one is free.
    fn take(self: &Arc<Self>, group: GroupId) -> Option<Place> {
        let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        let n = queued.entry(group).or_insert(0);
        if *n >= self.per_group {
            return None;
        }
        *n += 1;
        Some(Place {
            shares: self.clone(),
            group,
        })
    }
}

/// A place taken in a group's share; given back when dropped.
#[derive(Debug)]
struct Place {
    shares: Arc<GroupShares>,
    group: GroupId,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut queued = self.shares.queued.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = queued.get_mut(&self.group) {
            *n -= 1;
            if *n == 0 {
                queued.remove(&self.group);
            }
        }
    }
}

/// [`Peer::designated`] when the link has no connection.
pub(crate) const NO_CONNECTION: usize = usize::MAX;

/// How long [`Transport::shutdown`] lets the endpoints repeat their closes before it
/// returns (see there).
const CLOSE_LINGER: Duration = Duration::from_millis(200);

impl Peer {
    pub(crate) fn address(&self) -> Option<String> {
        self.address.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_address(&self, address: Option<String>) {
        let mut current = self.address.lock().unwrap_or_else(|e| e.into_inner());
        if *current != address {
            self.has_address.store(address.is_some(), Ordering::Release);
            *current = address;
            let _ = self.control.send(Control::Wake);
        }
    }

    pub(crate) fn control(&self, control: Control) {
        let _ = self.control.send(control);
    }
}

/// The state shared by the transport handle and its tasks.
pub(crate) struct Shared {
    pub(crate) node_id: NodeId,
    /// Random per process: tells a restarted peer from a duplicate connection.
    pub(crate) incarnation: u64,
    pub(crate) limits: Limits,
    pub(crate) tuning: Tuning,
    pub(crate) endpoint: Endpoint,
    pub(crate) snapshot_endpoint: Endpoint,
    pub(crate) client_messages: quinn::ClientConfig,
    pub(crate) client_snapshots: quinn::ClientConfig,
    pub(crate) members: Arc<Members>,
    peers: RwLock<HashMap<NodeId, Arc<Peer>>>,
    pub(crate) inbox: OnceLock<Inbox>,
    pub(crate) counters: Counters,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// The runtime the transport was bound in: every task runs there, whichever thread
    /// calls `set_peers`.
    pub(crate) runtime: tokio::runtime::Handle,
    /// One snapshot reception at a time per peer (so at most one per member node-wide).
    pub(crate) receive_slots: Mutex<HashMap<NodeId, Arc<ReceiveSlot>>>,
    /// The connections each peer opened to this node and that may still be open, oldest
    /// first; at most `max_connections_per_peer` each.
    incoming: Mutex<HashMap<NodeId, Vec<Connection>>>,
    /// Incoming handshakes in progress, at most `max_concurrent_handshakes`.
    handshakes: Arc<Semaphore>,
    /// Test hook: the receiver closes the next snapshot connection once this many bytes
    /// of its data arrived.
    #[cfg(test)]
    pub(crate) snapshot_fault: AtomicU64,
}

impl Shared {
    /// Spawns a task on the transport's runtime, tracked for shutdown.
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn_on(task, &self.runtime);
    }

    pub(crate) fn peer(&self, id: NodeId) -> Option<Arc<Peer>> {
        self.peers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// Creates the peer and starts its link task. The caller holds the peers lock.
    fn spawn_peer(self: &Arc<Self>, id: NodeId, address: Option<String>) -> Arc<Peer> {
        let (queue_tx, queue_rx) = mpsc::channel(self.limits.peer_queue_capacity);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let per_group = self.limits.peer_queue_group_share;
        let peer = Arc::new(Peer {
            id,
            queue: queue_tx,
            shares: (per_group < self.limits.peer_queue_capacity).then(|| {
                Arc::new(GroupShares {
                    per_group,
                    queued: Mutex::new(HashMap::new()),
                })
            }),
            control: control_tx,
            has_address: AtomicBool::new(address.is_some()),
            address: Mutex::new(address),
            connected: AtomicBool::new(false),
            designated: AtomicUsize::new(NO_CONNECTION),
            state: watch::Sender::new(LinkState::default()),
        });
        self.spawn(link::run(self.clone(), peer.clone(), queue_rx, control_rx));
        peer
    }

    /// The peer for an authenticated incoming connection, created without an address if
    /// it is new (a node must answer a peer whose address it does not know yet).
    fn peer_for_incoming(self: &Arc<Self>, id: NodeId) -> Option<Arc<Peer>> {
        if self.shutdown.is_cancelled() || self.members.admits(id).is_err() {
            return None;
        }
        let mut peers = self.peers.write().unwrap_or_else(|e| e.into_inner());
        Some(
            peers
                .entry(id)
                .or_insert_with(|| self.spawn_peer(id, None))
                .clone(),
        )
    }

    /// Replaces the membership: admits only `peers`, stops the links of peers no longer
    /// listed, and creates or readdresses the others.
    pub(crate) fn set_peers(self: &Arc<Self>, peers: BTreeMap<NodeId, Bytes>) {
        let shared = self;
        let ids: BTreeSet<NodeId> = peers.keys().copied().collect();
        shared.members.set(ids.clone());
        // Snapshot receptions from removed peers end (their nodes are told why), and the
        // peers' snapshot and not yet adopted connections close; their message
        // connections close with their links below.
        shared
            .receive_slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, slot| {
                let keep = ids.contains(id);
                if !keep {
                    slot.cancel(format!("node {id} was removed from the membership"));
                }
                keep
            });
        shared
            .incoming
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, connections| {
                let keep = ids.contains(id);
                if !keep {
                    for conn in connections.drain(..) {
                        conn.close(close::NOT_MEMBER, b"not a member");
                    }
                }
                keep
            });
        let mut map = shared.peers.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|id, peer| {
            let keep = ids.contains(id);
            if !keep {
                tracing::info!(
                    node = shared.node_id,
                    peer = id,
                    "peer removed from membership; disconnecting"
                );
                peer.control(Control::Stop);
            }
            keep
        });
        for (id, raw) in peers {
            if id == shared.node_id || id == 0 {
                continue;
            }
            let address = match std::str::from_utf8(&raw) {
                Ok(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
                Ok(_) => None,
                Err(_) => {
                    tracing::warn!(
                        node = shared.node_id,
                        peer = id,
                        "peer address is not UTF-8; ignoring it"
                    );
                    None
                }
            };
            match map.get(&id) {
                Some(peer) => peer.set_address(address),
                None if !shared.shutdown.is_cancelled() => {
                    let peer = shared.spawn_peer(id, address);
                    map.insert(id, peer);
                }
                None => {}
            }
        }
    }

    /// Registers a connection `peer` opened to this node. If the peer now holds more than
    /// `max_connections_per_peer`, closes its oldest connections until it does not, sparing
    /// the message connection its link uses.
    fn track_incoming(&self, peer: NodeId, conn: &Connection) {
        let designated = self
            .peer(peer)
            .map_or(NO_CONNECTION, |p| p.designated.load(Ordering::Acquire));
        let limit = self.limits.max_connections_per_peer;
        let mut incoming = self.incoming.lock().unwrap_or_else(|e| e.into_inner());
        let connections = incoming.entry(peer).or_default();
        connections.retain(|c| c.close_reason().is_none());
        connections.push(conn.clone());
        let mut excess = connections.len().saturating_sub(limit);
        let mut closed = 0;
        let mut i = 0;
        while excess > 0 && i < connections.len() {
            if connections[i].stable_id() == designated {
                i += 1;
                continue;
            }
            let oldest = connections.remove(i);
            oldest.close(
                close::TOO_MANY_CONNECTIONS,
                b"too many connections from this node",
            );
            excess -= 1;
            closed += 1;
        }
        drop(incoming);
        if closed > 0 {
            Counters::add(&self.counters.excess_connections_closed, closed);
            tracing::debug!(
                node = self.node_id,
                peer,
                closed,
                "closed connections past the per-peer limit of {limit}"
            );
        }
    }

    /// Forgets a connection `peer` opened, once it is closed.
    fn untrack_incoming(&self, peer: NodeId, conn: &Connection) {
        let mut incoming = self.incoming.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(connections) = incoming.get_mut(&peer) {
            connections.retain(|c| c.stable_id() != conn.stable_id());
            if connections.is_empty() {
                incoming.remove(&peer);
            }
        }
    }

    pub(crate) fn logical_drop(&self, n: u64) {
        Counters::add(&self.counters.dropped, n);
    }
}

/// The node id named by the certificate a connection's peer presented.
pub(crate) fn peer_id_of(conn: &Connection) -> Option<NodeId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    node_id_of(certs.first()?).ok()
}

fn alpn_of(conn: &Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// A Raft transport over QUIC with mutual TLS. See the crate documentation.
///
/// Dropping it stops its tasks and closes its connections; [`Transport::shutdown`] does
/// the same and waits for them: it closes every connection with the shutdown code (so
/// peers log it as an ordinary end), waits for the transport's tasks, and gives the close
/// packets at most 200 ms to go out, so that it returns promptly even when peers are down.
pub struct QuicTransport {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for QuicTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicTransport")
            .field("node_id", &self.shared.node_id)
            .field("local_addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}

impl QuicTransport {
    /// Validates the configuration, binds the UDP sockets and starts accepting peers.
    /// Must be called inside a tokio runtime; the transport's tasks run on that runtime.
    ///
    /// The transport serves the node its certificate names ([`QuicTransport::node_id`]).
    ///
    /// Fails with [`QuicError::Bind`] naming the address if it cannot be bound, and with
    /// [`QuicError::Identity`] if the certificate names no node or several.
    pub async fn bind(config: QuicConfig) -> Result<QuicTransport, QuicError> {
        config.validate()?;
        let node_id = config.tls.node_id()?;
        let initial_members = config
            .initial_peers
            .as_ref()
            .map(|peers| peers.keys().copied().collect::<BTreeSet<NodeId>>());
        let members = Arc::new(Members::new(node_id, initial_members));
        let crypto = build_crypto(&config.tls, &members)?;
        let endpoints = endpoint::build(config.listen_addr, &config.tuning, crypto)?;
        let handshakes = Arc::new(Semaphore::new(config.limits.max_concurrent_handshakes));
        let shared = Arc::new(Shared {
            node_id,
            incarnation: Jitter::new(node_id).next_u64(),
            limits: config.limits,
            tuning: config.tuning,
            endpoint: endpoints.main,
            snapshot_endpoint: endpoints.snapshots,
            client_messages: endpoints.client_messages,
            client_snapshots: endpoints.client_snapshots,
            members,
            peers: RwLock::new(HashMap::new()),
            inbox: OnceLock::new(),
            counters: Counters::default(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            runtime: tokio::runtime::Handle::current(),
            receive_slots: Mutex::new(HashMap::new()),
            incoming: Mutex::new(HashMap::new()),
            handshakes,
            #[cfg(test)]
            snapshot_fault: AtomicU64::new(0),
        });
        if let Some(peers) = config.initial_peers {
            shared.set_peers(peers);
        }
        shared.spawn(accept_loop(shared.clone()));
        tracing::info!(node = node_id, addr = ?shared.endpoint.local_addr().ok(), "QUIC transport listening");
        Ok(QuicTransport { shared })
    }

    /// The address the transport listens on (with the actual port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared
            .endpoint
            .local_addr()
            .expect("a bound endpoint has a local address")
    }

    /// The id of the node this transport serves: the one its certificate names.
    pub fn node_id(&self) -> NodeId {
        self.shared.node_id
    }

    /// Opens the message connection to `to` now instead of on the first send, and waits
    /// until it is established or one attempt has failed. Returns at once if connected.
    pub async fn connect(&self, to: NodeId) -> Result<(), TransportError> {
        let peer = self.shared.peer(to).ok_or(TransportError::UnknownPeer(to))?;
        let mut state = peer.state.subscribe();
        let failures_before = {
            let s = state.borrow_and_update();
            if s.connection.is_some() {
                return Ok(());
            }
            s.failures
        };
        if peer.address().is_none() {
            return Err(TransportError::UnknownPeer(to));
        }
        peer.control(Control::Connect);
        loop {
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return Err(TransportError::Closed),
                changed = state.changed() => {
                    if changed.is_err() {
                        return Err(TransportError::Closed);
                    }
                }
            }
            let s = state.borrow_and_update();
            if s.connection.is_some() {
                return Ok(());
            }
            if s.failures > failures_before {
                return Err(TransportError::Unreachable {
                    peer: to,
                    reason: s.last_error.clone().unwrap_or_default(),
                });
            }
        }
    }

    /// The current message connection to `peer`, if any.
    pub fn peer_connection(&self, peer: NodeId) -> Option<PeerConnection> {
        self.shared.peer(peer)?.state.borrow().connection
    }

    /// QUIC connections open on the listening endpoint: message connections in both
    /// directions plus incoming snapshot transfers. With one connection per peer pair and
    /// no transfer running, this is the number of connected peers.
    pub fn open_connections(&self) -> usize {
        self.shared.endpoint.open_connections()
    }

    /// Counters beyond [`TransportMetrics`].
    pub fn stats(&self) -> QuicStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        QuicStats {
            refused_handshakes: self.shared.members.refused(),
            connections_established: get(&c.connections_established),
            malformed_frames: get(&c.malformed_frames),
            forged_messages: get(&c.forged_messages),
            inbox_full: get(&c.inbox_full),
            snapshots_sent: get(&c.snapshots_sent),
            snapshots_received: get(&c.snapshots_received),
            handshakes_turned_away: get(&c.handshakes_turned_away),
            excess_connections_closed: get(&c.excess_connections_closed),
            write_timeouts: get(&c.write_timeouts),
        }
    }

    /// The shared state (tests).
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Test hook: this node's receiver closes the next snapshot connection once `bytes`
    /// bytes of its data arrived.
    #[cfg(test)]
    pub(crate) fn inject_snapshot_fault(&self, bytes: u64) {
        self.shared.snapshot_fault.store(bytes, Ordering::Relaxed);
    }
}

impl Drop for QuicTransport {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        self.shared.endpoint.close(close::SHUTDOWN, b"shutdown");
        self.shared.snapshot_endpoint.close(close::SHUTDOWN, b"shutdown");
    }
}

#[async_trait]
impl Transport for QuicTransport {
    /// Refuses a node of another id than its certificate's, a second node (a transport
    /// serves one node for its whole life: bind a new one to restart a node in-process),
    /// and any node once shut down.
    fn register(&self, id: NodeId, _group: GroupId, inbox: Inbox) -> Result<(), RegisterError> {
        let shared = &self.shared;
        if id != shared.node_id {
            return Err(RegisterError::WrongNode {
                transport: shared.node_id,
                node: id,
            });
        }
        if shared.shutdown.is_cancelled() {
            return Err(RegisterError::Closed);
        }
        shared
            .inbox
            .set(inbox)
            .map_err(|_| RegisterError::AlreadyRegistered(shared.node_id))
    }

    fn set_peers(&self, peers: BTreeMap<NodeId, Bytes>) {
        self.shared.set_peers(peers);
    }

    fn send(&self, to: NodeId, group: GroupId, messages: Vec<WireMessage>) -> Result<(), SendError> {
        let shared = &self.shared;
        if shared.shutdown.is_cancelled() {
            return Err(SendError::Closed);
        }
        if messages.is_empty() {
            return Ok(());
        }
        let peers = shared.peers.read().unwrap_or_else(|e| e.into_inner());
        let Some(peer) = peers.get(&to) else {
            shared.logical_drop(1);
            return Err(SendError::UnknownPeer(to));
        };
        if !peer.has_address.load(Ordering::Acquire) && !peer.connected.load(Ordering::Acquire) {
            shared.logical_drop(1);
            return Err(SendError::UnknownPeer(to));
        }
        let place = match &peer.shares {
            Some(shares) => match shares.take(group) {
                Some(place) => Some(place),
                None => {
                    shared.logical_drop(1);
                    return Err(SendError::Full(to));
                }
            },
            None => None,
        };
        let n = messages.len() as u64;
        let batch = Queued {
            group,
            messages,
            _place: place,
        };
        match peer.queue.try_send(batch) {
            Ok(()) => {
                Counters::add(&shared.counters.messages_sent, n);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                shared.logical_drop(1);
                Err(SendError::Full(to))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                shared.logical_drop(1);
                Err(SendError::Closed)
            }
        }
    }

    /// Streams the snapshot on a connection of its own, reading `data` as the peer takes
    /// it (QUIC flow control is the back-pressure), and returns once the peer's node took
    /// it. One attempt: a broken transfer is an error (`Unreachable`, also when reading
    /// `data` failed), as is a refusal by the peer or its node (`Refused`).
    async fn send_snapshot(
        &self,
        to: NodeId,
        group: GroupId,
        message: Message,
        data: SnapshotStream,
    ) -> Result<(), TransportError> {
        snapshot::send(&self.shared, to, group, message, data).await
    }

    async fn shutdown(&self) {
        let shared = &self.shared;
        shared.shutdown.cancel();
        shared.peers.write().unwrap_or_else(|e| e.into_inner()).clear();
        shared.endpoint.close(close::SHUTDOWN, b"shutdown");
        shared.snapshot_endpoint.close(close::SHUTDOWN, b"shutdown");
        shared.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(node = shared.node_id, "transport tasks did not stop within 5 s");
        }
        // Every connection now has its CONNECTION_CLOSE (code `SHUTDOWN`) queued; the
        // endpoints send it within moments. `wait_idle` would then wait out each closing
        // connection's closing period, three probe timeouts, which serves only to repeat
        // the close to a peer that missed it: about 80 ms to a peer on a LAN, but seconds
        // for a connection to a peer that is down (whose handshake never completed, or
        // whose round-trip time is unknown). So it is bounded: a peer that missed the close
        // times the connection out (`idle_timeout`), as it would anyway had this process
        // exited.
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            tokio::join!(shared.endpoint.wait_idle(), shared.snapshot_endpoint.wait_idle())
        })
        .await;
    }

    fn metrics(&self) -> TransportMetrics {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TransportMetrics {
            messages_sent: get(&c.messages_sent),
            bytes_sent: get(&c.bytes_sent),
            messages_received: get(&c.messages_received),
            bytes_received: get(&c.bytes_received),
            dropped: get(&c.dropped),
        }
    }
}

async fn accept_loop(shared: Arc<Shared>) {
    let mut busy_log = LogLimiter::new(Duration::from_secs(10));
    loop {
        let incoming = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            incoming = shared.endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => return,
            },
        };
        let Ok(permit) = shared.handshakes.clone().try_acquire_owned() else {
            turn_away(&shared, incoming, &mut busy_log);
            continue;
        };
        let task_shared = shared.clone();
        shared.spawn(async move {
            tokio::select! {
                _ = task_shared.shutdown.cancelled() => {}
                _ = handle_incoming(task_shared.clone(), incoming, permit) => {}
            }
        });
    }
}

/// Answers a connection attempt that finds every handshake slot taken, without a key
/// exchange: a Retry if the client's address is not validated yet, otherwise a refusal.
/// See [`Limits::max_concurrent_handshakes`] for why.
fn turn_away(shared: &Shared, incoming: quinn::Incoming, log: &mut LogLimiter) {
    Counters::add(&shared.counters.handshakes_turned_away, 1);
    let remote = incoming.remote_address();
    let answer = if incoming.remote_address_validated() {
        incoming.refuse();
        "refused"
    } else {
        match incoming.retry() {
            Ok(()) => "asked to retry",
            Err(e) => {
                e.into_incoming().refuse();
                "refused"
            }
        }
    };
    let limit = shared.limits.max_concurrent_handshakes;
    match log.allow() {
        Some(suppressed) => tracing::warn!(
            node = shared.node_id,
            %remote,
            suppressed,
            "{limit} handshakes in progress: connection attempt {answer}"
        ),
        None => tracing::debug!(
            node = shared.node_id,
            %remote,
            "{limit} handshakes in progress: connection attempt {answer}"
        ),
    }
}

async fn handle_incoming(shared: Arc<Shared>, incoming: quinn::Incoming, permit: OwnedSemaphorePermit) {
    let remote = incoming.remote_address();
    let conn = match tokio::time::timeout(shared.tuning.handshake_timeout, incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(node = shared.node_id, %remote, "incoming handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(node = shared.node_id, %remote, "incoming handshake timed out");
            return;
        }
    };
    // The key exchange is over: the slot is free for the next handshake.
    drop(permit);
    let Some(peer_id) = peer_id_of(&conn) else {
        // The verifier guarantees a node name; this is only reachable on a bug.
        conn.close(close::PROTOCOL, b"no node identity");
        return;
    };
    shared.track_incoming(peer_id, &conn);
    // The membership may have changed since the verifier admitted the peer.
    if shared.members.admits(peer_id).is_err() {
        conn.close(close::NOT_MEMBER, b"not a member");
        return;
    }
    match alpn_of(&conn).as_deref() {
        Some(ALPN_MESSAGES) => accept_messages(shared, conn, peer_id).await,
        Some(ALPN_SNAPSHOTS) => {
            snapshot::receive(shared.clone(), conn.clone(), peer_id).await;
            conn.close(close::SNAPSHOT_DONE, b"transfer over");
            shared.untrack_incoming(peer_id, &conn);
        }
        _ => conn.close(close::PROTOCOL, b"unknown application protocol"),
    }
}

/// Completes the greeting on an accepted message connection and hands it to the peer's
/// link task.
async fn accept_messages(shared: Arc<Shared>, conn: Connection, peer_id: NodeId) {
    let greeting = async {
        let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        let incarnation = read_greeting(&mut recv).await.map_err(|e| e.to_string())?;
        send.write_all(&encode_greeting(MESSAGE_MAGIC, shared.incarnation))
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((send, recv, incarnation))
    };
    let (send, recv, peer_incarnation) =
        match tokio::time::timeout(shared.tuning.handshake_timeout, greeting).await {
            Ok(Ok(streams)) => streams,
            Ok(Err(e)) => {
                tracing::debug!(
                    node = shared.node_id,
                    peer = peer_id,
                    "message stream greeting failed: {e}"
                );
                // The reason reaches the dialling peer: a version mismatch says so there.
                let mut reason = e;
                reason.truncate(200);
                conn.close(close::PROTOCOL, reason.as_bytes());
                return;
            }
            Err(_) => {
                tracing::debug!(
                    node = shared.node_id,
                    peer = peer_id,
                    "no message stream greeting in time"
                );
                conn.close(close::PROTOCOL, b"no greeting");
                return;
            }
        };
    match shared.peer_for_incoming(peer_id) {
        Some(peer) => peer.control(Control::Adopt(Established {
            conn,
            send,
            recv,
            peer_incarnation,
            dialed_by_us: false,
        })),
        None => conn.close(close::NOT_MEMBER, b"not a member"),
    }
}
