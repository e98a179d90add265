//! The link to one peer: a task that owns the peer's message connection.
//!
//! It dials when there is something to send (and an address), adopts connections the
//! peer opens, keeps exactly one (see [`prefer_new`]), drains the peer's bounded queue
//! into frames, and reconnects with capped exponential backoff and jitter. While the peer
//! is down, queued batches are discarded at each failed attempt (Raft retransmits), and
//! the failure is logged at most once per `unreachable_log_interval`. A write that makes
//! no progress for `write_timeout` (the peer stopped reading) closes the connection and
//! counts as a failure too, so a stuck peer holds only its own link, and only that long.
//!
//! Each adopted connection gets a reader task that decodes frames, checks that every
//! protocol message claims the authenticated peer as its sender, and delivers the batch to
//! the node's inbox without waiting.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use quinn::{Connection, ConnectionError, RecvStream, SendStream};
use raft_core::NodeId;
use raft_runtime::{DeliverError, WireMessage};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backoff::{Backoff, LogLimiter};
use crate::codec::{FrameDecoder, FrameEncoder, FrameError, MESSAGE_MAGIC, decode_batch, encode_greeting};
use crate::endpoint::close;
use crate::identity::node_name;
use crate::stream::{ReadFailure, read_frame, read_greeting};
use crate::transport::{Counters, NO_CONNECTION, Peer, PeerConnection, Queued, Shared, peer_id_of};

/// What other parts of the transport tell a link.
#[derive(Debug)]
pub(crate) enum Control {
    /// The peer opened a connection and greeted.
    Adopt(Established),
    /// The peer's address changed: re-evaluate.
    Wake,
    /// Connect now, even with nothing to send.
    Connect,
    /// The peer is no longer a member: close and stop.
    Stop,
}

/// A message connection after the greeting.
#[derive(Debug)]
pub(crate) struct Established {
    pub(crate) conn: Connection,
    pub(crate) send: SendStream,
    pub(crate) recv: RecvStream,
    pub(crate) peer_incarnation: u64,
    pub(crate) dialed_by_us: bool,
}

/// Whether a newly established connection should replace the current one.
///
/// * A different peer incarnation means the peer restarted since the current connection
///   was made, so the current one is stale: the new one wins.
/// * Otherwise both sides keep the connection dialled by the lower node id, so two
///   simultaneous connects resolve to the same single connection on both sides.
/// * Two connections dialled by the same side: the dialler gave up on the older one, so
///   the newer wins.
pub(crate) fn prefer_new(own: NodeId, peer: NodeId, current: (u64, bool), new: (u64, bool)) -> bool {
    let (current_incarnation, current_dialed_by_us) = current;
    let (new_incarnation, new_dialed_by_us) = new;
    if new_incarnation != current_incarnation {
        return true;
    }
    let canonical = |dialed_by_us: bool| dialed_by_us == (own < peer);
    // Keep the current one only if it is canonical and the new one is not.
    !canonical(current_dialed_by_us) || canonical(new_dialed_by_us)
}

struct Current {
    conn: Connection,
    send: SendStream,
    peer_incarnation: u64,
    dialed_by_us: bool,
}

enum Step {
    Shutdown,
    Control(Option<Control>),
    Lost(ConnectionError),
    Batch(Option<Queued>),
    Dial,
}

struct Link {
    shared: Arc<Shared>,
    peer: Arc<Peer>,
    queue: mpsc::Receiver<Queued>,
    control: mpsc::UnboundedReceiver<Control>,
    current: Option<Current>,
    /// A batch taken from the queue while disconnected; it triggers the dial.
    pending: Option<Queued>,
    want_dial: bool,
    next_attempt: Instant,
    backoff: Backoff,
    down_log: LogLimiter,
    encode_log: LogLimiter,
    encoder: FrameEncoder,
}

/// Runs the link to `peer` until the transport shuts down or the peer is removed.
pub(crate) async fn run(
    shared: Arc<Shared>,
    peer: Arc<Peer>,
    queue: mpsc::Receiver<Queued>,
    control: mpsc::UnboundedReceiver<Control>,
) {
    let tuning = &shared.tuning;
    let link = Link {
        backoff: Backoff::new(tuning.reconnect_initial, tuning.reconnect_max, peer.id),
        down_log: LogLimiter::new(tuning.unreachable_log_interval),
        encode_log: LogLimiter::new(tuning.unreachable_log_interval),
        encoder: FrameEncoder::new(shared.limits.max_frame_size, shared.limits.coalesce_bytes),
        next_attempt: Instant::now(),
        current: None,
        pending: None,
        want_dial: false,
        queue,
        control,
        peer,
        shared,
    };
    link.run().await
}

impl Link {
    async fn run(mut self) {
        loop {
            let step = match &self.current {
                Some(current) => {
                    let conn = current.conn.clone();
                    tokio::select! {
                        biased;
                        _ = self.shared.shutdown.cancelled() => Step::Shutdown,
                        control = self.control.recv() => Step::Control(control),
                        error = conn.closed() => Step::Lost(error),
                        batch = self.queue.recv() => Step::Batch(batch),
                    }
                }
                None => {
                    let dial_ready = self.want_dial && self.peer.address().is_some();
                    tokio::select! {
                        biased;
                        _ = self.shared.shutdown.cancelled() => Step::Shutdown,
                        control = self.control.recv() => Step::Control(control),
                        batch = self.queue.recv(), if self.pending.is_none() => Step::Batch(batch),
                        _ = tokio::time::sleep_until(self.next_attempt), if dial_ready => Step::Dial,
                    }
                }
            };
            match step {
                Step::Shutdown => {
                    self.close(close::SHUTDOWN, "shutdown");
                    return;
                }
                Step::Control(None) | Step::Control(Some(Control::Stop)) | Step::Batch(None) => {
                    self.close(close::NOT_MEMBER, "not a member");
                    return;
                }
                Step::Control(Some(Control::Adopt(established))) => self.adopt(established).await,
                Step::Control(Some(Control::Wake)) => {}
                Step::Control(Some(Control::Connect)) => self.want_dial = true,
                Step::Lost(error) => self.lost(error),
                Step::Batch(Some(batch)) => {
                    if self.current.is_some() {
                        self.write(batch).await;
                    } else {
                        self.pending = Some(batch);
                        self.want_dial = true;
                    }
                }
                Step::Dial => self.dial().await,
            }
        }
    }

    fn close(&mut self, code: quinn::VarInt, reason: &str) {
        if let Some(current) = self.current.take() {
            current.conn.close(code, reason.as_bytes());
        }
        self.set_connection(None);
    }

    fn set_connection(&self, connection: Option<PeerConnection>) {
        let designated = self
            .current
            .as_ref()
            .map_or(NO_CONNECTION, |current| current.conn.stable_id());
        self.peer.designated.store(designated, Ordering::Release);
        self.peer.connected.store(connection.is_some(), Ordering::Release);
        self.peer.state.send_modify(|state| state.connection = connection);
    }

    /// Encodes `first` and whatever else is queued (up to the coalescing size) and writes
    /// it to the stream in one go.
    async fn write(&mut self, first: Queued) {
        self.encode(first);
        while self.encoder.len() < self.shared.limits.coalesce_bytes {
            match self.queue.try_recv() {
                Ok(batch) => self.encode(batch),
                Err(_) => break,
            }
        }
        let mut chunks = self.encoder.take();
        if chunks.is_empty() {
            return;
        }
        let Some(current) = &mut self.current else {
            // Unreachable in practice (writes happen only while connected); count it as
            // one dropped batch all the same.
            self.shared.logical_drop(1);
            return;
        };
        let len = chunks.iter().map(|c| c.len() as u64).sum();
        // Each step must make progress within the write timeout: a peer that stops reading
        // blocks it through flow control.
        let write_timeout = self.shared.tuning.write_timeout;
        let mut rest = &mut chunks[..];
        let outcome = loop {
            if rest.is_empty() {
                break Ok(());
            }
            match tokio::time::timeout(write_timeout, current.send.write_chunks(rest)).await {
                Err(_) => break Err(None),
                Ok(Err(e)) => break Err(Some(e)),
                Ok(Ok(written)) => rest = &mut rest[written.chunks..],
            }
        };
        match outcome {
            Ok(()) => Counters::add(&self.shared.counters.bytes_sent, len),
            Err(None) => self.stalled(),
            Err(Some(e)) => {
                let error = match e {
                    quinn::WriteError::ConnectionLost(ref e) => e.clone(),
                    _ => ConnectionError::LocallyClosed,
                };
                tracing::debug!(
                    node = self.shared.node_id,
                    peer = self.peer.id,
                    "write failed: {e}"
                );
                if let Some(current) = &self.current {
                    current.conn.close(close::PROTOCOL, b"message stream failed");
                }
                self.lost(error);
            }
        }
    }

    /// The peer stopped reading: a write made no progress for the write timeout. Closes the
    /// connection, drops what is queued (Raft retransmits) and waits out the backoff before
    /// the next connection attempt.
    fn stalled(&mut self) {
        Counters::add(&self.shared.counters.write_timeouts, 1);
        let timeout = self.shared.tuning.write_timeout;
        self.close(close::WRITE_TIMEOUT, "write timeout: the peer stopped reading");
        let mut dropped = u64::from(self.pending.take().is_some());
        while self.queue.try_recv().is_ok() {
            dropped += 1;
        }
        self.shared.logical_drop(dropped);
        self.want_dial = false;
        let delay = self.backoff.fail();
        self.next_attempt = Instant::now() + delay;
        match self.down_log.allow() {
            Some(suppressed) => tracing::warn!(
                node = self.shared.node_id,
                peer = self.peer.id,
                dropped,
                retry_in = ?delay,
                suppressed,
                "peer stopped reading for {timeout:?}: connection closed"
            ),
            None => tracing::debug!(
                node = self.shared.node_id,
                peer = self.peer.id,
                dropped,
                "peer stopped reading for {timeout:?}: connection closed"
            ),
        }
    }

    fn encode(&mut self, batch: Queued) {
        for message in &batch.messages {
            if let Err(e) = self.encoder.push(batch.group, message) {
                self.shared.logical_drop(1);
                match self.encode_log.allow() {
                    Some(suppressed) => tracing::warn!(
                        node = self.shared.node_id,
                        peer = self.peer.id,
                        suppressed,
                        "dropping message: {e}"
                    ),
                    None => tracing::debug!(
                        node = self.shared.node_id,
                        peer = self.peer.id,
                        "dropping message: {e}"
                    ),
                }
            }
        }
    }

    async fn dial(&mut self) {
        let Some(address) = self.peer.address() else {
            return;
        };
        let shared = self.shared.clone();
        let id = self.peer.id;
        // The connection, once the handshake is done: a failure after it may be the peer
        // closing a duplicate, which is not a failure to reach it.
        let mut dialed: Option<Connection> = None;
        let result = {
            let attempt = async {
                let remote = resolve(&address, shared.endpoint.local_addr().ok()).await?;
                let connecting = shared
                    .endpoint
                    .connect_with(shared.client_messages.clone(), remote, &node_name(id))
                    .map_err(|e| format!("cannot connect to {remote}: {e}"))?;
                let conn = connecting.await.map_err(|e| e.to_string())?;
                dialed = Some(conn.clone());
                if peer_id_of(&conn) != Some(id) {
                    return Err("peer certificate does not name the node dialled".to_string());
                }
                let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
                send.write_all(&encode_greeting(MESSAGE_MAGIC, shared.incarnation))
                    .await
                    .map_err(|e| e.to_string())?;
                let peer_incarnation = read_greeting(&mut recv).await.map_err(|e| e.to_string())?;
                Ok(Established {
                    conn,
                    send,
                    recv,
                    peer_incarnation,
                    dialed_by_us: true,
                })
            };
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                result = tokio::time::timeout(self.shared.tuning.handshake_timeout, attempt) => {
                    result.unwrap_or_else(|_| Err("connection attempt timed out".to_string()))
                }
            }
        };
        match result {
            Ok(established) => self.adopt(established).await,
            Err(error) => {
                let duplicate = dialed.and_then(|c| c.close_reason()).is_some_and(
                    |reason| matches!(reason, ConnectionError::ApplicationClosed(c) if c.error_code == close::DUPLICATE),
                );
                if duplicate {
                    // The peer keeps a connection of its own, which is on its way to us;
                    // check back soon in case it is not.
                    tracing::debug!(
                        node = self.shared.node_id,
                        peer = id,
                        "peer kept its own connection"
                    );
                    self.next_attempt = Instant::now() + self.shared.tuning.reconnect_initial;
                } else {
                    self.dial_failed(&address, error);
                }
            }
        }
    }

    fn dial_failed(&mut self, address: &str, error: String) {
        let delay = self.backoff.fail();
        self.next_attempt = Instant::now() + delay;
        self.want_dial = false;
        // What is queued would be stale by the next attempt: drop it (Raft retransmits).
        let mut dropped = u64::from(self.pending.take().is_some());
        while self.queue.try_recv().is_ok() {
            dropped += 1;
        }
        self.shared.logical_drop(dropped);
        let failures = self.backoff.failures();
        self.peer.state.send_modify(|state| {
            state.failures += 1;
            state.last_error = Some(error.clone());
        });
        match self.down_log.allow() {
            Some(suppressed) => tracing::warn!(
                node = self.shared.node_id,
                peer = self.peer.id,
                address,
                failures,
                retry_in = ?delay,
                suppressed,
                "peer unreachable: {error}"
            ),
            None => tracing::debug!(
                node = self.shared.node_id,
                peer = self.peer.id,
                failures,
                "peer unreachable: {error}"
            ),
        }
    }

    async fn adopt(&mut self, new: Established) {
        let (own, peer) = (self.shared.node_id, self.peer.id);
        if let Some(current) = &self.current {
            let replace = prefer_new(
                own,
                peer,
                (current.peer_incarnation, current.dialed_by_us),
                (new.peer_incarnation, new.dialed_by_us),
            );
            if !replace {
                tracing::debug!(
                    node = own,
                    peer,
                    "closing a duplicate connection; keeping the current one"
                );
                new.conn.close(close::DUPLICATE, b"duplicate connection");
                return;
            }
            let why = if current.peer_incarnation != new.peer_incarnation {
                "peer restarted"
            } else {
                "duplicate connection"
            };
            tracing::debug!(node = own, peer, "replacing the current connection: {why}");
            current.conn.close(close::DUPLICATE, why.as_bytes());
        }
        let Established {
            conn,
            send,
            recv,
            peer_incarnation,
            dialed_by_us,
        } = new;
        let reader = read_messages(self.shared.clone(), peer, conn.clone(), recv);
        let task_shared = self.shared.clone();
        self.shared.spawn(async move {
            tokio::select! {
                _ = task_shared.shutdown.cancelled() => {}
                _ = reader => {}
            }
        });
        let info = PeerConnection {
            dialed_by: if dialed_by_us { own } else { peer },
            remote_addr: conn.remote_address(),
        };
        if self.backoff.failures() > 0 {
            tracing::info!(node = own, peer, "peer reachable again");
        }
        self.current = Some(Current {
            conn,
            send,
            peer_incarnation,
            dialed_by_us,
        });
        Counters::add(&self.shared.counters.connections_established, 1);
        self.backoff.reset();
        self.down_log.reset();
        self.want_dial = false;
        self.set_connection(Some(info));
        if let Some(batch) = self.pending.take() {
            self.write(batch).await;
        }
    }

    fn lost(&mut self, error: ConnectionError) {
        self.current = None;
        self.set_connection(None);
        if close::is_expected_end(&error) {
            tracing::debug!(
                node = self.shared.node_id,
                peer = self.peer.id,
                "connection closed: {error}"
            );
            if matches!(&error, ConnectionError::ApplicationClosed(c) if c.error_code == close::SHUTDOWN) {
                // The peer shut down on purpose, and is likely to be back soon (a restart):
                // attempts to reach it meanwhile fail (refused while it closes, then timed
                // out), which is no news. Only if it stays away for a whole interval is it
                // reported unreachable.
                self.down_log.hold();
            }
        } else {
            match self.down_log.allow() {
                Some(suppressed) => tracing::warn!(
                    node = self.shared.node_id,
                    peer = self.peer.id,
                    suppressed,
                    "connection lost: {error}"
                ),
                None => tracing::debug!(
                    node = self.shared.node_id,
                    peer = self.peer.id,
                    "connection lost: {error}"
                ),
            }
        }
        self.want_dial = self.pending.is_some() || !self.queue.is_empty();
        self.next_attempt = Instant::now() + self.backoff.fail();
    }
}

/// Turns a member's registered address (`host:port`) into a socket address, preferring
/// the address family of the local endpoint.
pub(crate) async fn resolve(address: &str, local: Option<SocketAddr>) -> Result<SocketAddr, String> {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let candidates: Vec<SocketAddr> = tokio::net::lookup_host(address)
        .await
        .map_err(|e| format!("cannot resolve {address}: {e}"))?
        .collect();
    let same_family = local.and_then(|l| candidates.iter().find(|c| c.is_ipv4() == l.is_ipv4()).copied());
    same_family
        .or_else(|| candidates.first().copied())
        .ok_or_else(|| format!("{address} resolves to no address"))
}

/// Reads frames from a peer's message stream and delivers them until the stream ends.
async fn read_messages(shared: Arc<Shared>, peer: NodeId, conn: Connection, mut recv: RecvStream) {
    let own = shared.node_id;
    let mut decoder = FrameDecoder::new(shared.limits.max_frame_size);
    let mut forged_log = LogLimiter::new(Duration::from_secs(10));
    let mut full_log = LogLimiter::new(Duration::from_secs(10));
    loop {
        let payload = match read_frame(&mut recv, &mut decoder).await {
            Ok(Some(payload)) => payload,
            Ok(None) => return,
            Err(ReadFailure::Stream(e)) => {
                tracing::debug!(node = own, peer, "message stream ended: {e}");
                return;
            }
            Err(ReadFailure::Frame(e)) => return refuse_frame(&shared, peer, &conn, e),
        };
        Counters::add(&shared.counters.bytes_received, payload.len() as u64 + 4);
        let (group, mut batch) = match decode_batch(&payload) {
            Ok(decoded) => decoded,
            Err(e) => return refuse_frame(&shared, peer, &conn, e),
        };
        let before = batch.len();
        batch.retain(|m| !matches!(m, WireMessage::Raft(m) if m.from != peer));
        let forged = before - batch.len();
        if forged > 0 {
            Counters::add(&shared.counters.forged_messages, forged as u64);
            if let Some(suppressed) = forged_log.allow() {
                tracing::warn!(
                    node = own,
                    peer,
                    forged,
                    suppressed,
                    "dropped messages claiming another sender"
                );
            }
            if batch.is_empty() {
                continue;
            }
        }
        let n = batch.len() as u64;
        let Some(inbox) = shared.inbox.get() else {
            // Not registered yet: the node is not running, so there is no one to tell.
            continue;
        };
        match inbox.deliver(peer, group, batch) {
            Ok(()) => Counters::add(&shared.counters.messages_received, n),
            Err(DeliverError::Full) => {
                Counters::add(&shared.counters.inbox_full, 1);
                if let Some(suppressed) = full_log.allow() {
                    tracing::debug!(node = own, peer, suppressed, "inbox full; dropped a batch");
                }
            }
            Err(DeliverError::Closed) => {}
        }
    }
}

fn refuse_frame(shared: &Shared, peer: NodeId, conn: &Connection, error: FrameError) {
    let code = match error {
        FrameError::Oversize { .. } => close::OVERSIZE,
        _ => close::MALFORMED,
    };
    Counters::add(&shared.counters.malformed_frames, 1);
    tracing::warn!(node = shared.node_id, peer, "closing connection: {error}");
    let mut reason = error.to_string();
    reason.truncate(200);
    conn.close(code, reason.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::prefer_new;

    #[test]
    fn simultaneous_connects_keep_the_one_dialled_by_the_lower_id() {
        // Node 1 and node 2 each dialled; same incarnations.
        // Node 1 holds its own dial (canonical) and receives node 2's: keeps its own.
        assert!(!prefer_new(1, 2, (7, true), (7, false)));
        // Node 1 holds node 2's dial and then its own completes: switches to its own.
        assert!(prefer_new(1, 2, (7, false), (7, true)));
        // Node 2 holds its own dial and receives node 1's: switches to node 1's.
        assert!(prefer_new(2, 1, (7, true), (7, false)));
        // Node 2 holds node 1's dial and its own completes: keeps node 1's.
        assert!(!prefer_new(2, 1, (7, false), (7, true)));
    }

    #[test]
    fn a_restarted_peer_replaces_the_stale_connection() {
        assert!(prefer_new(1, 2, (7, true), (8, false)));
        assert!(prefer_new(2, 1, (7, false), (8, true)));
    }

    #[test]
    fn a_redial_by_the_same_side_replaces_the_old_connection() {
        assert!(prefer_new(1, 2, (7, true), (7, true)));
        assert!(prefer_new(1, 2, (7, false), (7, false)));
    }
}
