//! An in-process [`Transport`] with fault injection, for tests and users' unit tests.
//!
//! A [`MemNetwork`] connects any number of nodes in one process. It can drop a share of the
//! messages, cut links (partitions), delay delivery, and pause a node (its traffic, both
//! ways, is held and delivered when it resumes, like a stopped process's socket buffers).
//! Messages are moved, not serialized.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use raft_core::{Message, NodeId};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::snapshot_stream::SnapshotStream;
use crate::transport::{
    GroupId, Inbox, RegisterError, SendError, Transport, TransportError, TransportMetrics, WireMessage,
};

struct Held {
    from: NodeId,
    to: NodeId,
    group: GroupId,
    batch: Vec<WireMessage>,
}

struct NetInner {
    inboxes: HashMap<NodeId, Inbox>,
    /// Directed links that drop everything.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Per-mille of messages dropped at random.
    drop_per_mille: u64,
    delay: Option<(Duration, Duration)>,
    paused: BTreeSet<NodeId>,
    held: Vec<Held>,
    rng: ChaCha8Rng,
    metrics: HashMap<NodeId, TransportMetrics>,
    /// Snapshot transfers still to break part way.
    break_snapshots: u64,
    /// Snapshot transfers broken so far.
    snapshots_broken: u64,
    /// How long each chunk of a snapshot transfer takes.
    snapshot_chunk_delay: Option<Duration>,
}

/// A network of in-process nodes. Cloning shares it.
#[derive(Clone)]
pub struct MemNetwork {
    inner: Arc<Mutex<NetInner>>,
}

impl Default for MemNetwork {
    fn default() -> Self {
        MemNetwork::new()
    }
}

enum Route {
    Deliver(Inbox),
    Delay(Inbox, Duration),
    Dropped,
    Unknown,
}

impl MemNetwork {
    /// A network with no faults.
    pub fn new() -> Self {
        MemNetwork {
            inner: Arc::new(Mutex::new(NetInner {
                inboxes: HashMap::new(),
                cut: BTreeSet::new(),
                drop_per_mille: 0,
                delay: None,
                paused: BTreeSet::new(),
                held: Vec::new(),
                rng: ChaCha8Rng::seed_from_u64(0x5eed),
                metrics: HashMap::new(),
                break_snapshots: 0,
                snapshots_broken: 0,
                snapshot_chunk_delay: None,
            })),
        }
    }

    /// The transport of node `id` on this network.
    pub fn transport(&self, id: NodeId) -> MemTransport {
        MemTransport {
            id,
            net: self.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NetInner> {
        self.inner.lock().expect("network lock")
    }

    /// Drops each message with probability `rate` (0.0 to 1.0); `seed` makes the choice
    /// reproducible.
    pub fn set_drop_rate(&self, rate: f64, seed: u64) {
        let mut n = self.lock();
        n.drop_per_mille = (rate.clamp(0.0, 1.0) * 1000.0) as u64;
        n.rng = ChaCha8Rng::seed_from_u64(seed);
    }

    /// Delays every message by a random duration in `[min, max]` (messages may overtake
    /// each other); `None` delivers at once.
    pub fn set_delay(&self, delay: Option<(Duration, Duration)>) {
        self.lock().delay = delay;
    }

    /// Cuts every link between the two groups, both ways.
    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        let mut n = self.lock();
        for &x in a {
            for &y in b {
                n.cut.insert((x, y));
                n.cut.insert((y, x));
            }
        }
    }

    /// Cuts `id` from every other node registered so far, and from `others`.
    pub fn isolate(&self, id: NodeId, others: &[NodeId]) {
        let all: Vec<NodeId> = {
            let n = self.lock();
            n.inboxes.keys().copied().chain(others.iter().copied()).collect()
        };
        let rest: Vec<NodeId> = all.into_iter().filter(|&o| o != id).collect();
        self.partition(&[id], &rest);
    }

    /// Breaks the next `n` snapshot transfers part way: after the first chunk of data, the
    /// receiver's stream ends in an error, as when a connection drops mid-transfer.
    pub fn break_snapshots(&self, n: u64) {
        self.lock().break_snapshots = n;
    }

    /// Slows every snapshot transfer started from now on: each chunk of data takes
    /// `per_chunk` to arrive (`None`: at once), as over a slow link.
    pub fn slow_snapshots(&self, per_chunk: Option<Duration>) {
        self.lock().snapshot_chunk_delay = per_chunk;
    }

    /// How many snapshot transfers [`MemNetwork::break_snapshots`] has broken so far.
    pub fn snapshots_broken(&self) -> u64 {
        self.lock().snapshots_broken
    }

    /// Restores every cut link and stops random drops (pauses and delays stay).
    pub fn heal(&self) {
        let mut n = self.lock();
        n.cut.clear();
        n.drop_per_mille = 0;
    }

    /// Holds all traffic to and from `id` until [`MemNetwork::resume`].
    pub fn pause(&self, id: NodeId) {
        self.lock().paused.insert(id);
    }

    /// Delivers the traffic held for `id` and lets it flow again.
    pub fn resume(&self, id: NodeId) {
        let released: Vec<(Inbox, Held)> = {
            let mut n = self.lock();
            n.paused.remove(&id);
            let held = std::mem::take(&mut n.held);
            let mut keep = Vec::new();
            let mut out = Vec::new();
            for h in held {
                if n.paused.contains(&h.from) || n.paused.contains(&h.to) {
                    keep.push(h);
                } else if let Some(inbox) = n.inboxes.get(&h.to) {
                    out.push((inbox.clone(), h));
                }
            }
            n.held = keep;
            out
        };
        for (inbox, h) in released {
            let _ = inbox.deliver(h.from, h.group, h.batch);
        }
    }

    /// Counters of node `id`'s transport.
    pub fn metrics(&self, id: NodeId) -> TransportMetrics {
        self.lock().metrics.get(&id).copied().unwrap_or_default()
    }

    fn route(
        &self,
        from: NodeId,
        to: NodeId,
        group: GroupId,
        batch: Vec<WireMessage>,
    ) -> Result<(), SendError> {
        let n_msgs = batch.len() as u64;
        let route = {
            let mut n = self.lock();
            n.metrics.entry(from).or_default().messages_sent += n_msgs;
            if n.paused.contains(&from) || n.paused.contains(&to) {
                n.held.push(Held {
                    from,
                    to,
                    group,
                    batch,
                });
                return Ok(());
            }
            let route = if !n.inboxes.contains_key(&to) {
                Route::Unknown
            } else if n.cut.contains(&(from, to))
                || (n.drop_per_mille > 0 && n.rng.next_u64() % 1000 < n.drop_per_mille)
            {
                Route::Dropped
            } else {
                let inbox = n.inboxes[&to].clone();
                match n.delay {
                    Some((lo, hi)) => {
                        let span = hi.saturating_sub(lo).as_micros() as u64;
                        let extra = if span == 0 {
                            0
                        } else {
                            n.rng.next_u64() % (span + 1)
                        };
                        Route::Delay(inbox, lo + Duration::from_micros(extra))
                    }
                    None => Route::Deliver(inbox),
                }
            };
            if matches!(route, Route::Dropped | Route::Unknown) {
                n.metrics.entry(from).or_default().dropped += 1;
            }
            route
        };
        match route {
            Route::Unknown => Err(SendError::UnknownPeer(to)),
            Route::Dropped => Ok(()),
            Route::Deliver(inbox) => {
                self.note_received(to, n_msgs);
                let _ = inbox.deliver(from, group, batch);
                Ok(())
            }
            Route::Delay(inbox, d) => {
                let net = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    net.note_received(to, n_msgs);
                    let _ = inbox.deliver(from, group, batch);
                });
                Ok(())
            }
        }
    }

    fn note_received(&self, id: NodeId, n_msgs: u64) {
        self.lock().metrics.entry(id).or_default().messages_received += n_msgs;
    }
}

/// One node's endpoint on a [`MemNetwork`].
#[derive(Clone)]
pub struct MemTransport {
    id: NodeId,
    net: MemNetwork,
}

/// `data`, each chunk `delay` late.
fn slowed(data: SnapshotStream, delay: Duration) -> SnapshotStream {
    SnapshotStream::new(futures::stream::try_unfold(data, move |mut data| async move {
        tokio::time::sleep(delay).await;
        Ok(data.next_chunk().await?.map(|chunk| (chunk, data)))
    }))
}

/// `data`'s first chunk, then an error in place of the rest.
fn broken_after_first_chunk(data: SnapshotStream) -> SnapshotStream {
    SnapshotStream::new(futures::stream::try_unfold(Some(data), |data| async move {
        let Some(mut data) = data else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "the transfer broke (injected)",
            ));
        };
        Ok(data.next_chunk().await?.map(|chunk| (chunk, None)))
    }))
}

#[async_trait]
impl Transport for MemTransport {
    /// Refuses another id than the one the transport was made for, and a second node while
    /// one runs; once the node has stopped, a node may register again (a restart).
    fn register(&self, id: NodeId, _group: GroupId, inbox: Inbox) -> Result<(), RegisterError> {
        if id != self.id {
            return Err(RegisterError::WrongNode {
                transport: self.id,
                node: id,
            });
        }
        let mut net = self.net.lock();
        if net.inboxes.get(&self.id).is_some_and(|i| !i.is_closed()) {
            return Err(RegisterError::AlreadyRegistered(self.id));
        }
        net.inboxes.insert(self.id, inbox);
        Ok(())
    }

    fn set_peers(&self, _peers: BTreeMap<NodeId, Bytes>) {
        // Every node registered on the network is reachable by id.
    }

    fn send(&self, to: NodeId, group: GroupId, messages: Vec<WireMessage>) -> Result<(), SendError> {
        self.net.route(self.id, to, group, messages)
    }

    async fn send_snapshot(
        &self,
        to: NodeId,
        group: GroupId,
        message: Message,
        data: SnapshotStream,
    ) -> Result<(), TransportError> {
        let (inbox, data) = {
            let mut n = self.net.lock();
            if n.cut.contains(&(self.id, to)) || n.paused.contains(&to) || n.paused.contains(&self.id) {
                return Err(TransportError::Unreachable {
                    peer: to,
                    reason: "link cut".into(),
                });
            }
            let inbox = match n.inboxes.get(&to) {
                Some(i) => i.clone(),
                None => return Err(TransportError::UnknownPeer(to)),
            };
            let data = if n.break_snapshots > 0 {
                n.break_snapshots -= 1;
                n.snapshots_broken += 1;
                broken_after_first_chunk(data)
            } else {
                data
            };
            let data = match n.snapshot_chunk_delay {
                Some(delay) => slowed(data, delay),
                None => data,
            };
            (inbox, data)
        };
        inbox
            .deliver_snapshot(self.id, group, message, data)
            .await
            .map_err(|e| TransportError::Refused {
                peer: to,
                reason: e.to_string(),
            })
    }

    async fn shutdown(&self) {
        self.net.lock().inboxes.remove(&self.id);
    }

    fn metrics(&self) -> TransportMetrics {
        self.net.metrics(self.id)
    }
}
