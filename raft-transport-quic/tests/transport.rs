//! End-to-end tests of the QUIC transport on 127.0.0.1. Certificates are generated at run
//! time. Every wait is for a condition with a generous deadline; no verdict depends on
//! timing.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_core::{ConfState, Heartbeat, HeartbeatResponse, Message, MessageBody, NodeId, SnapshotMeta};
use raft_runtime::{
    DeliverSnapshotError, Inbox, InboxReceiver, Incoming, RegisterError, SendError, SnapshotStream,
    Transport, TransportError, WireMessage,
};
use raft_transport_quic::{DevCa, QuicConfig, QuicError, QuicTransport, TlsConfig};

/// Generous: this is a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(30);

fn config(tls: TlsConfig) -> QuicConfig {
    let mut config = QuicConfig::new("127.0.0.1:0".parse().unwrap(), tls);
    config.tuning.reconnect_initial = Duration::from_millis(10);
    config.tuning.reconnect_max = Duration::from_millis(200);
    config.tuning.handshake_timeout = Duration::from_secs(3);
    config
}

async fn bind(ca: &DevCa, id: NodeId) -> QuicTransport {
    QuicTransport::bind(config(ca.node_tls(id).unwrap()))
        .await
        .unwrap()
}

fn addresses(nodes: &[&QuicTransport]) -> BTreeMap<NodeId, Bytes> {
    nodes
        .iter()
        .map(|n| (n.node_id(), Bytes::from(n.local_addr().to_string())))
        .collect()
}

/// Binds nodes that all know each other, each with a registered inbox.
async fn cluster(ca: &DevCa, ids: &[NodeId]) -> Vec<(Arc<QuicTransport>, InboxReceiver)> {
    cluster_with(ca, ids, |_| {}).await
}

/// [`cluster`], with each node's configuration adjusted by `adjust`.
async fn cluster_with(
    ca: &DevCa,
    ids: &[NodeId],
    adjust: impl Fn(&mut QuicConfig),
) -> Vec<(Arc<QuicTransport>, InboxReceiver)> {
    let mut nodes = Vec::new();
    for &id in ids {
        let mut cfg = config(ca.node_tls(id).unwrap());
        adjust(&mut cfg);
        let t = Arc::new(QuicTransport::bind(cfg).await.unwrap());
        let (inbox, rx) = Inbox::channel(1 << 16);
        t.register(t.node_id(), 0, inbox).unwrap();
        nodes.push((t, rx));
    }
    let peers = addresses(&nodes.iter().map(|(t, _)| &**t).collect::<Vec<_>>());
    for (t, _) in &nodes {
        t.set_peers(peers.clone());
    }
    nodes
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Connects every pair (from the lower id) and waits until both sides agree on the one
/// connection, so that no duplicate is being torn down while a test sends.
async fn settle(nodes: &[(Arc<QuicTransport>, InboxReceiver)]) {
    for (a, _) in nodes {
        for (b, _) in nodes {
            if a.node_id() < b.node_id() {
                a.connect(b.node_id()).await.unwrap();
                wait_for("both sides to agree on one connection", || {
                    let ab = a.peer_connection(b.node_id());
                    let ba = b.peer_connection(a.node_id());
                    ab.is_some() && ab.map(|c| c.dialed_by) == ba.map(|c| c.dialed_by)
                })
                .await;
            }
        }
    }
}

fn forward(id: u64) -> WireMessage {
    WireMessage::Forward {
        id,
        command: Bytes::from_static(b"cmd"),
    }
}

fn heartbeat(from: NodeId, to: NodeId, round: u64) -> WireMessage {
    WireMessage::Raft(Message {
        from,
        to,
        term: 1,
        body: MessageBody::Heartbeat(Heartbeat {
            commit: 0,
            round,
            quiesce: false,
        }),
    })
}

fn snapshot_message(from: NodeId, to: NodeId) -> Message {
    Message {
        from,
        to,
        term: 1,
        body: MessageBody::Snapshot(Box::new(SnapshotMeta {
            index: 100,
            term: 1,
            conf_state: ConfState::with_voters([from, to]),
        })),
    }
}

/// A snapshot of `size` bytes generated a chunk of 1 MiB at a time as it is read (never
/// held whole), with the CRC-32C of what it generated so far (the whole snapshot's once the
/// stream has ended).
fn generated(size: u64, seed: u64) -> (SnapshotStream, Arc<AtomicU32>) {
    const CHUNK: u64 = 1 << 20;
    let crc = Arc::new(AtomicU32::new(0));
    let state = (0u64, seed | 1, crc.clone());
    let stream = futures::stream::unfold(state, move |(at, mut x, crc)| async move {
        if at >= size {
            return None;
        }
        let len = CHUNK.min(size - at) as usize;
        let mut chunk = vec![0u8; len];
        for word in chunk.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
        }
        crc.store(
            crc32c::crc32c_append(crc.load(Ordering::Relaxed), &chunk),
            Ordering::Relaxed,
        );
        Some((Ok(Bytes::from(chunk)), (at + len as u64, x, crc)))
    });
    (SnapshotStream::new(stream), crc)
}

/// Reads a snapshot to its end: its length and CRC-32C, or the error it ended with.
async fn read_snapshot(mut data: SnapshotStream) -> Result<(u64, u32), std::io::Error> {
    let (mut len, mut crc) = (0u64, 0u32);
    while let Some(chunk) = data.next_chunk().await? {
        len += chunk.len() as u64;
        crc = crc32c::crc32c_append(crc, &chunk);
    }
    Ok((len, crc))
}

/// What a node's runtime answers once it has read a snapshot: the store's verdict on
/// what it read.
fn verdict(read: &Result<(u64, u32), std::io::Error>) -> Result<(), DeliverSnapshotError> {
    match read {
        Ok(_) => Ok(()),
        Err(e) => Err(DeliverSnapshotError::NotStored(e.to_string())),
    }
}

/// The next value on `rx`, within the deadline.
async fn next<T>(rx: &mut tokio::sync::mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("timed out waiting for the runtime")
        .expect("the runtime is running")
}

/// A snapshot that sends `first` bytes, then never yields again (nor ends): a transfer
/// that stays in progress.
fn stalling(first: usize) -> SnapshotStream {
    SnapshotStream::new(futures::StreamExt::chain(
        futures::stream::iter(vec![Ok(Bytes::from(garbage(3, first)))]),
        futures::stream::pending(),
    ))
}

/// Sends a batch, retrying while the peer's queue is full.
async fn send_retrying(t: &QuicTransport, to: NodeId, batch: Vec<WireMessage>) {
    let start = Instant::now();
    loop {
        match t.send(to, 0, batch.clone()) {
            Ok(()) => return,
            Err(SendError::Full(_)) => {
                assert!(start.elapsed() < DEADLINE, "queue to {to} stayed full");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => panic!("send to {to}: {e}"),
        }
    }
}

async fn next_incoming(rx: &mut InboxReceiver) -> Incoming {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("timed out waiting for a delivery")
        .expect("inbox closed")
}

/// Every node sends `batches` batches of `per_batch` numbered messages to every other node;
/// every node checks it receives each sender's messages complete and in order.
async fn exchange_in_order(nodes: Vec<(Arc<QuicTransport>, InboxReceiver)>, batches: u64, per_batch: u64) {
    let ids: Vec<NodeId> = nodes.iter().map(|(t, _)| t.node_id()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (t, mut rx) in nodes {
        let others: Vec<NodeId> = ids.iter().copied().filter(|&i| i != t.node_id()).collect();
        let sender = t.clone();
        let targets = others.clone();
        tasks.spawn(async move {
            for b in 0..batches {
                for &to in &targets {
                    let batch = (0..per_batch).map(|i| forward(b * per_batch + i)).collect();
                    send_retrying(&sender, to, batch).await;
                }
            }
        });
        tasks.spawn(async move {
            let mut next: HashMap<NodeId, u64> = others.iter().map(|&o| (o, 0)).collect();
            let total = batches * per_batch;
            while next.values().any(|&n| n < total) {
                match next_incoming(&mut rx).await {
                    Incoming::Messages { from, messages, .. } => {
                        for m in messages {
                            let WireMessage::Forward { id, .. } = m else {
                                panic!("unexpected {m:?}")
                            };
                            let expected = next.get_mut(&from).expect("a known sender");
                            assert_eq!(id, *expected, "node {} from {from}: out of order", t.node_id());
                            *expected += 1;
                        }
                    }
                    Incoming::Snapshot { .. } => panic!("unexpected snapshot"),
                }
            }
            assert_eq!(t.stats().inbox_full, 0);
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_arrive_in_order_between_two_nodes() {
    let ca = DevCa::generate().unwrap();
    let nodes = cluster(&ca, &[1, 2]).await;
    settle(&nodes).await;
    let handles: Vec<_> = nodes.iter().map(|(t, _)| t.clone()).collect();
    exchange_in_order(nodes, 2_000, 10).await;
    for t in &handles {
        let m = t.metrics();
        assert_eq!(m.messages_sent, 20_000);
        assert_eq!(m.messages_received, 20_000);
        assert!(m.bytes_sent > 0 && m.bytes_received > 0);
        assert_eq!(t.open_connections(), 1, "one connection per pair");
    }
    for t in &handles {
        t.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_arrive_in_order_between_three_nodes() {
    let ca = DevCa::generate().unwrap();
    let nodes = cluster(&ca, &[1, 2, 3]).await;
    settle(&nodes).await;
    let handles: Vec<_> = nodes.iter().map(|(t, _)| t.clone()).collect();
    exchange_in_order(nodes, 500, 8).await;
    for t in &handles {
        assert_eq!(t.open_connections(), 2, "one connection per pair");
    }
    for t in &handles {
        t.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_connects_resolve_to_one_connection() {
    let ca = DevCa::generate().unwrap();
    for _round in 0..5 {
        let nodes = cluster(&ca, &[1, 2]).await;
        let (a, b) = (&nodes[0].0, &nodes[1].0);
        let (ra, rb) = tokio::join!(a.connect(2), b.connect(1));
        ra.unwrap();
        rb.unwrap();
        wait_for("one agreed connection", || {
            let (ab, ba) = (a.peer_connection(2), b.peer_connection(1));
            ab.is_some()
                && ab.map(|c| c.dialed_by) == ba.map(|c| c.dialed_by)
                && a.open_connections() == 1
                && b.open_connections() == 1
        })
        .await;
        // If both dialled, the connection dialled by the lower id won on both sides.
        if a.stats().connections_established > 1 || b.stats().connections_established > 1 {
            assert_eq!(a.peer_connection(2).unwrap().dialed_by, 1);
        }
        for (t, _) in &nodes {
            t.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_reconnected() {
    let ca = DevCa::generate().unwrap();
    let mut nodes = cluster(&ca, &[1, 2]).await;
    settle(&nodes).await;
    let (b, mut b_rx) = nodes.pop().unwrap();
    let (a, mut a_rx) = nodes.pop().unwrap();
    send_retrying(&a, 2, vec![forward(0)]).await;
    assert!(matches!(
        next_incoming(&mut b_rx).await,
        Incoming::Messages { from: 1, .. }
    ));

    let b_addr = b.local_addr();
    b.shutdown().await;
    drop(b);
    // While the peer is down, sends are accepted or refused as Full, never block or panic.
    for i in 0..100 {
        match a.send(2, 0, vec![forward(i)]) {
            Ok(()) | Err(SendError::Full(_)) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }

    // Restart node 2 on the same address (the old socket may take a moment to close).
    let start = Instant::now();
    let b = loop {
        let mut cfg = config(ca.node_tls(2).unwrap());
        cfg.listen_addr = b_addr;
        match QuicTransport::bind(cfg).await {
            Ok(t) => break t,
            Err(QuicError::Bind { .. }) if start.elapsed() < DEADLINE => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("rebind: {e}"),
        }
    };
    let (inbox, mut b_rx) = Inbox::channel(1024);
    b.register(b.node_id(), 0, inbox).unwrap();
    b.set_peers(addresses(&[&a, &b]));

    // Keep sending until the restarted node hears from node 1.
    let heard = Arc::new(AtomicBool::new(false));
    let pinger = {
        let (a, heard) = (a.clone(), heard.clone());
        tokio::spawn(async move {
            let mut i = 1_000;
            while !heard.load(Ordering::Relaxed) {
                let _ = a.send(2, 0, vec![forward(i)]);
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    loop {
        if let Incoming::Messages { from: 1, .. } = next_incoming(&mut b_rx).await {
            break;
        }
    }
    heard.store(true, Ordering::Relaxed);
    pinger.await.unwrap();
    // And the other direction works over the new connection.
    send_retrying(&b, 1, vec![forward(7)]).await;
    loop {
        if let Incoming::Messages {
            from: 2, messages, ..
        } = next_incoming(&mut a_rx).await
        {
            if messages.contains(&forward(7)) {
                break;
            }
        }
    }
    assert!(a.stats().connections_established >= 2);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_peers_full_queues_and_shutdown_are_reported() {
    let ca = DevCa::generate().unwrap();
    // Something that never answers QUIC: a bound but unread UDP socket.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cfg = config(ca.node_tls(1).unwrap());
    cfg.limits.peer_queue_capacity = 8;
    cfg.limits.peer_queue_group_share = 3;
    let a = QuicTransport::bind(cfg).await.unwrap();
    let mut peers = addresses(&[&a]);
    peers.insert(9, Bytes::from(silent.local_addr().unwrap().to_string()));
    a.set_peers(peers);

    assert_eq!(a.send(5, 0, vec![forward(0)]), Err(SendError::UnknownPeer(5)));
    let fill = |group| {
        let mut full = 0;
        for i in 0..1_000 {
            if let Err(e) = a.send(9, group, vec![forward(i)]) {
                assert_eq!(e, SendError::Full(9));
                full += 1;
            }
        }
        full
    };
    let full = fill(0);
    assert!(full > 0, "a bounded queue to a silent peer fills up");
    // Group 0 took only its share of the queue: another group's batches still get in.
    assert_eq!(a.send(9, 1, vec![forward(0)]), Ok(()), "group 1 is crowded out");
    let full = full + fill(1);
    assert!(a.metrics().dropped > full, "the unknown peer counted too");
    assert!(matches!(
        a.send_snapshot(
            5,
            0,
            snapshot_message(1, 5),
            SnapshotStream::from_bytes(Bytes::new())
        )
        .await,
        Err(TransportError::UnknownPeer(5))
    ));
    a.shutdown().await;
    assert_eq!(a.send(9, 0, vec![forward(0)]), Err(SendError::Closed));
}

/// Counts "peer unreachable" log events by level.
#[derive(Clone, Default)]
struct UnreachableLog {
    warn: Arc<AtomicUsize>,
    other: Arc<AtomicUsize>,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for UnreachableLog {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        if text.0.contains("peer unreachable") {
            if *event.metadata().level() == tracing::Level::WARN {
                self.warn.fetch_add(1, Ordering::Relaxed);
            } else {
                self.other.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

// A current-thread runtime, so that the thread-local log subscriber sees every task.
#[tokio::test]
async fn a_down_peer_is_logged_once_per_interval_not_per_message() {
    use tracing_subscriber::layer::SubscriberExt;
    let log = UnreachableLog::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(log.clone()));

    let ca = DevCa::generate().unwrap();
    let other = DevCa::generate_named("another CA").unwrap();
    // Node 9's address answers with a certificate from another CA: every attempt fails fast.
    let impostor = QuicTransport::bind(config(other.node_tls(9).unwrap()))
        .await
        .unwrap();
    let mut cfg = config(ca.node_tls(1).unwrap());
    cfg.tuning.reconnect_max = Duration::from_millis(20);
    cfg.tuning.unreachable_log_interval = Duration::from_secs(3600);
    let a = QuicTransport::bind(cfg).await.unwrap();
    let mut peers = addresses(&[&a]);
    peers.insert(9, Bytes::from(impostor.local_addr().to_string()));
    a.set_peers(peers);

    let start = Instant::now();
    let mut sent = 0;
    while log.other.load(Ordering::Relaxed) < 5 {
        assert!(start.elapsed() < DEADLINE, "too few connection attempts");
        let _ = a.send(9, 0, vec![forward(sent)]);
        sent += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        log.warn.load(Ordering::Relaxed),
        1,
        "one warning for {sent} sends"
    );
    a.shutdown().await;
    impostor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_another_ca_are_refused_in_both_directions() {
    let ca = DevCa::generate().unwrap();
    let other = DevCa::generate_named("another CA").unwrap();

    // A client whose certificate another CA signed (it trusts the cluster CA).
    let b = bind(&ca, 2).await;
    let (inbox, mut b_rx) = Inbox::channel(16);
    b.register(b.node_id(), 0, inbox).unwrap();
    let foreign = other.issue(1).unwrap();
    let a_tls = TlsConfig::from_pem(ca.ca_cert_pem(), &foreign.cert_pem, &foreign.key_pem).unwrap();
    let a = QuicTransport::bind(config(a_tls)).await.unwrap();
    let peers = addresses(&[&a, &b]);
    a.set_peers(peers.clone());
    b.set_peers(peers);
    let err = a.connect(2).await.unwrap_err();
    assert!(
        matches!(err, TransportError::Unreachable { peer: 2, .. }),
        "{err}"
    );
    wait_for("the server to refuse", || b.stats().refused_handshakes >= 1).await;
    assert!(b.peer_connection(1).is_none());
    assert!(b_rx.try_recv().is_none(), "nothing delivered from a refused peer");

    // A server whose certificate another CA signed: the client refuses it.
    let c = QuicTransport::bind(config({
        let n = other.issue(3).unwrap();
        TlsConfig::from_pem(ca.ca_cert_pem(), &n.cert_pem, &n.key_pem).unwrap()
    }))
    .await
    .unwrap();
    let d = bind(&ca, 4).await;
    d.set_peers(addresses(&[&c, &d]));
    let err = d.connect(3).await.unwrap_err();
    assert!(
        matches!(err, TransportError::Unreachable { peer: 3, .. }),
        "{err}"
    );
    assert!(
        d.stats().refused_handshakes >= 1,
        "the client verified the server"
    );
    for t in [a, b, c, d] {
        t.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_certificates_naming_non_members_are_refused() {
    let ca = DevCa::generate().unwrap();
    let a = bind(&ca, 1).await;
    let b = bind(&ca, 2).await;
    let c = bind(&ca, 3).await;
    let (inbox, mut b_rx) = Inbox::channel(16);
    b.register(b.node_id(), 0, inbox).unwrap();
    b.set_peers(addresses(&[&a, &b]));

    // Node 3 has a valid cluster certificate but is not a member of node 2's cluster.
    c.set_peers(addresses(&[&b, &c]));
    let err = c.connect(2).await.unwrap_err();
    assert!(
        matches!(err, TransportError::Unreachable { peer: 2, .. }),
        "{err}"
    );
    wait_for("node 2 to refuse node 3", || b.stats().refused_handshakes >= 1).await;
    assert!(b.peer_connection(3).is_none());

    // A client checks the server is the node it dialled: node 1 thinks node 2 lives at
    // node 3's address, and node 3's certificate names node 3.
    let mut wrong = addresses(&[&a, &b]);
    wrong.insert(2, Bytes::from(c.local_addr().to_string()));
    a.set_peers(wrong);
    assert!(a.connect(2).await.is_err());
    assert!(a.stats().refused_handshakes >= 1);

    // A member that is removed is disconnected and refused.
    a.set_peers(addresses(&[&a, &b]));
    a.connect(2).await.unwrap();
    send_retrying(&a, 2, vec![forward(1)]).await;
    assert!(matches!(
        next_incoming(&mut b_rx).await,
        Incoming::Messages { from: 1, .. }
    ));
    b.set_peers(addresses(&[&b, &c]));
    assert_eq!(b.send(1, 0, vec![forward(2)]), Err(SendError::UnknownPeer(1)));
    wait_for("node 1 to lose its connection", || a.peer_connection(2).is_none()).await;
    let refused_before = b.stats().refused_handshakes;
    assert!(a.connect(2).await.is_err());
    wait_for("node 2 to refuse the removed node", || {
        b.stats().refused_handshakes > refused_before
    })
    .await;
    for t in [a, b, c] {
        t.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_is_admitted_before_the_first_member_list() {
    let ca = DevCa::generate().unwrap();
    // Node 4 has been told nothing yet: not even the leader that will add it is admitted.
    let joining = bind(&ca, 4).await;
    let (inbox, mut j_rx) = Inbox::channel(16);
    joining.register(joining.node_id(), 0, inbox).unwrap();
    let leader = bind(&ca, 1).await;
    leader.set_peers(addresses(&[&leader, &joining]));
    let err = leader.connect(4).await.unwrap_err();
    assert!(
        matches!(err, TransportError::Unreachable { peer: 4, .. }),
        "{err}"
    );
    wait_for("node 4 to refuse", || joining.stats().refused_handshakes >= 1).await;
    assert!(joining.peer_connection(1).is_none());
    // A raw client with a valid cluster certificate is refused the same way.
    let refused = joining.stats().refused_handshakes;
    assert!(raw_connect_refused(&ca, 1, joining.local_addr(), 4).await);
    wait_for("node 4 to refuse the raw client", || {
        joining.stats().refused_handshakes > refused
    })
    .await;
    assert!(
        j_rx.try_recv().is_none(),
        "nothing delivered before the member list"
    );
    wait_for("the refused connections to be gone", || {
        joining.open_connections() == 0
    })
    .await;

    // Once told its members, it admits them.
    joining.set_peers(BTreeMap::from([(1, Bytes::new()), (4, Bytes::new())]));
    leader.connect(4).await.unwrap();
    leader.shutdown().await;
    joining.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initial_member_list_admits_members_from_the_start() {
    let ca = DevCa::generate().unwrap();
    let a = bind(&ca, 1).await;
    let stranger = bind(&ca, 3).await;
    // Node 2 knows its members at bind time and is never given set_peers.
    let b = QuicTransport::bind(
        config(ca.node_tls(2).unwrap()).with_initial_peers(BTreeMap::from([
            (1, Bytes::from(a.local_addr().to_string())),
            (2, Bytes::new()),
        ])),
    )
    .await
    .unwrap();
    let (inbox, mut b_rx) = Inbox::channel(16);
    b.register(b.node_id(), 0, inbox).unwrap();
    a.set_peers(addresses(&[&a, &b]));
    send_retrying(&a, 2, vec![forward(1)]).await;
    assert!(matches!(
        next_incoming(&mut b_rx).await,
        Incoming::Messages { from: 1, .. }
    ));
    // It dials the members it has an address for.
    let (inbox, mut a_rx) = Inbox::channel(16);
    a.register(a.node_id(), 0, inbox).unwrap();
    send_retrying(&b, 1, vec![forward(2)]).await;
    assert!(matches!(
        next_incoming(&mut a_rx).await,
        Incoming::Messages { from: 2, .. }
    ));
    // A node the CA vouches for but the list does not name is refused.
    stranger.set_peers(addresses(&[&b, &stranger]));
    assert!(stranger.connect(2).await.is_err());
    wait_for("node 2 to refuse node 3", || b.stats().refused_handshakes >= 1).await;
    assert!(b.peer_connection(3).is_none());
    for t in [a, b, stranger] {
        t.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_answers_peers_it_has_no_address_for() {
    let ca = DevCa::generate().unwrap();
    // Node 4 joins: it was told its members (the leader among them) but no addresses.
    let joining = bind(&ca, 4).await;
    let (inbox, mut j_rx) = Inbox::channel(16);
    joining.register(joining.node_id(), 0, inbox).unwrap();
    joining.set_peers(BTreeMap::from([(1, Bytes::new()), (4, Bytes::new())]));
    let leader = bind(&ca, 1).await;
    let (inbox, mut l_rx) = Inbox::channel(16);
    leader.register(leader.node_id(), 0, inbox).unwrap();
    leader.set_peers(addresses(&[&leader, &joining]));

    assert_eq!(
        joining.send(1, 0, vec![forward(0)]),
        Err(SendError::UnknownPeer(1))
    );
    // A forged sender in the batch is dropped; the genuine message is delivered.
    send_retrying(&leader, 4, vec![heartbeat(7, 4, 1), heartbeat(1, 4, 2)]).await;
    match next_incoming(&mut j_rx).await {
        Incoming::Messages { from, messages, .. } => {
            assert_eq!(from, 1);
            assert_eq!(messages, vec![heartbeat(1, 4, 2)]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(joining.stats().forged_messages, 1);

    // The joining node answers over the connection the leader opened.
    let reply = WireMessage::Raft(Message {
        from: 4,
        to: 1,
        term: 1,
        body: MessageBody::HeartbeatResponse(HeartbeatResponse { round: 2 }),
    });
    send_retrying(&joining, 1, vec![reply.clone()]).await;
    match next_incoming(&mut l_rx).await {
        Incoming::Messages { from, messages, .. } => {
            assert_eq!(from, 4);
            assert_eq!(messages, vec![reply]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(joining.peer_connection(1).unwrap().dialed_by, 1);

    // Once that connection is gone, the joining node has no way to reach node 1.
    leader.shutdown().await;
    wait_for("the joining node to see the leader gone", || {
        joining.send(1, 0, vec![forward(1)]) == Err(SendError::UnknownPeer(1))
    })
    .await;
    joining.shutdown().await;
}

/// A hand-made QUIC client endpoint presenting a valid cluster certificate for `id`, to
/// behave as a hostile member would.
fn raw_client(ca: &DevCa, id: NodeId, alpn: &[u8]) -> quinn::Endpoint {
    let tls = ca.node_tls(id).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(tls.ca_certs[0].clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(tls.cert_chain, tls.key)
        .unwrap();
    crypto.alpn_protocols = vec![alpn.to_vec()];
    let client = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap(),
    ));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(client);
    endpoint
}

/// Whether the node `server_id` refuses a raw client presenting a valid cluster
/// certificate for `id`: the handshake fails, or (since in TLS 1.3 the server checks the
/// client's certificate after the client considers the handshake done) the connection is
/// closed with a transport error right after it.
async fn raw_connect_refused(ca: &DevCa, id: NodeId, server: SocketAddr, server_id: NodeId) -> bool {
    let endpoint = raw_client(ca, id, b"raft-msg/1");
    let name = raft_transport_quic::identity::node_name(server_id);
    let conn = match endpoint.connect(server, &name).unwrap().await {
        Ok(conn) => conn,
        Err(_) => return true,
    };
    // The server never answers a greeting it did not get: a kept connection stays open
    // until this deadline.
    match tokio::time::timeout(DEADLINE, conn.closed()).await {
        Ok(quinn::ConnectionError::ConnectionClosed(_)) => true,
        Ok(other) => panic!("unexpected close {other}"),
        Err(_) => false,
    }
}

/// A raw client's message stream to the node `server_id`.
async fn raw_stream(
    ca: &DevCa,
    id: NodeId,
    server: SocketAddr,
    server_id: NodeId,
) -> (
    quinn::Endpoint,
    quinn::Connection,
    quinn::SendStream,
    quinn::RecvStream,
) {
    let endpoint = raw_client(ca, id, b"raft-msg/1");
    let name = raft_transport_quic::identity::node_name(server_id);
    let conn = endpoint.connect(server, &name).unwrap().await.unwrap();
    let (send, recv) = conn.open_bi().await.unwrap();
    (endpoint, conn, send, recv)
}

/// The message stream's greeting of the current stream version (`STREAM_VERSION` in
/// `src/codec.rs`; the README documents it).
const MESSAGE_GREETING: &[u8; 4] = b"RQM6";

fn greeting() -> Vec<u8> {
    let mut g = MESSAGE_GREETING.to_vec();
    g.extend_from_slice(&42u64.to_le_bytes());
    g
}

async fn closed_with(conn: &quinn::Connection) -> (u64, String) {
    match tokio::time::timeout(DEADLINE, conn.closed()).await.unwrap() {
        quinn::ConnectionError::ApplicationClosed(close) => (
            close.error_code.into_inner(),
            String::from_utf8_lossy(&close.reason).into_owned(),
        ),
        other => panic!("unexpected close {other}"),
    }
}

fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_and_random_frames_close_only_that_connection() {
    let ca = DevCa::generate().unwrap();
    let mut nodes = cluster(&ca, &[1, 2]).await;
    let server = nodes[1].0.clone();
    let addr = server.local_addr();
    let mut peers = addresses(&[&nodes[0].0, &server]);
    peers.insert(3, Bytes::new());
    server.set_peers(peers);

    // A frame that claims 4 GiB: refused from its length prefix alone.
    let (_ep, conn, mut send, mut recv) = raw_stream(&ca, 3, addr, 2).await;
    send.write_all(&greeting()).await.unwrap();
    let mut reply = [0u8; 12];
    recv.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply[..4], MESSAGE_GREETING);
    send.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
    let (code, reason) = closed_with(&conn).await;
    assert_eq!(code, 3, "oversize: {reason}");
    assert!(reason.contains("exceeds"), "{reason}");

    // Frames of random bytes: every one is malformed, none crashes the node.
    for seed in 1..=20u64 {
        let (_ep, conn, mut send, _recv) = raw_stream(&ca, 3, addr, 2).await;
        send.write_all(&greeting()).await.unwrap();
        let body = garbage(seed, 16 + seed as usize * 37);
        let mut frame = (body.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&body);
        // Ignore write errors: the node may close the connection before all is written.
        let _ = send.write_all(&frame).await;
        let (code, reason) = closed_with(&conn).await;
        assert_eq!(code, 2, "random frame {seed}: {reason}");
    }

    // An empty frame, and a random greeting.
    let (_ep, conn, mut send, _recv) = raw_stream(&ca, 3, addr, 2).await;
    send.write_all(&greeting()).await.unwrap();
    send.write_all(&0u32.to_le_bytes()).await.unwrap();
    assert_eq!(closed_with(&conn).await.0, 2);
    let (_ep, conn, mut send, _recv) = raw_stream(&ca, 3, addr, 2).await;
    let _ = send.write_all(&garbage(99, 4096)).await;
    assert_eq!(closed_with(&conn).await.0, 5);
    // A greeting of another stream format version: refused, and the reason names both.
    let (_ep, conn, mut send, _recv) = raw_stream(&ca, 3, addr, 2).await;
    let mut newer = b"RQM7".to_vec();
    newer.extend_from_slice(&42u64.to_le_bytes());
    let _ = send.write_all(&newer).await;
    let (code, reason) = closed_with(&conn).await;
    assert_eq!(code, 5, "{reason}");
    assert!(reason.contains("version 7, this node version 6"), "{reason}");

    assert_eq!(server.stats().malformed_frames, 22);
    // The node still serves its real peer.
    let (client, _) = &nodes[0];
    send_retrying(client, 2, vec![forward(5)]).await;
    let rx = &mut nodes[1].1;
    match next_incoming(rx).await {
        Incoming::Messages { from, messages, .. } => {
            assert_eq!(from, 1);
            assert_eq!(messages, vec![forward(5)]);
        }
        other => panic!("unexpected {other:?}"),
    }
    for (t, _) in &nodes {
        t.shutdown().await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_snapshot_arrives_intact_while_heartbeats_flow() {
    snapshot_while_heartbeats_flow(64 << 20).await;
}

/// The long variant:
/// `cargo test -p raft-transport-quic --release --test transport -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: a 1 GiB snapshot"]
async fn a_1_gib_snapshot_arrives_intact_while_heartbeats_flow() {
    snapshot_while_heartbeats_flow(1 << 30).await;
}

/// Sends a snapshot of `size` bytes, generated as it is read, while node 1 keeps
/// exchanging heartbeats with node 2, checks it arrives intact and prints the heartbeat
/// latency.
async fn snapshot_while_heartbeats_flow(size: u64) {
    const HEARTBEATS_DURING: usize = 20;
    let ca = DevCa::generate().unwrap();
    let mut nodes = cluster_with(&ca, &[1, 2], |cfg| {
        cfg.limits.max_snapshot_size = cfg.limits.max_snapshot_size.max(size);
    })
    .await;
    settle(&nodes).await;
    let (b, mut b_rx) = nodes.pop().unwrap();
    let (a, mut a_rx) = nodes.pop().unwrap();

    // Node 2 answers heartbeats, reads the snapshot as it arrives, and takes it only once
    // it has read it all and answered HEARTBEATS_DURING more heartbeats: heartbeats must
    // flow while a snapshot is pending.
    let follower = {
        let b = b.clone();
        tokio::spawn(async move {
            let mut answered = 0usize;
            type Pending = (
                usize,
                tokio::sync::oneshot::Sender<Result<(), DeliverSnapshotError>>,
                tokio::task::JoinHandle<Result<(u64, u32), std::io::Error>>,
            );
            let mut pending: Option<Pending> = None;
            loop {
                match b_rx.recv().await {
                    None => panic!("the inbox closed before the snapshot was taken"),
                    Some(Incoming::Messages { messages, .. }) => {
                        for m in messages {
                            if let WireMessage::Raft(Message {
                                body: MessageBody::Heartbeat(h),
                                ..
                            }) = m
                            {
                                let reply = WireMessage::Raft(Message {
                                    from: 2,
                                    to: 1,
                                    term: 1,
                                    body: MessageBody::HeartbeatResponse(HeartbeatResponse {
                                        round: h.round,
                                    }),
                                });
                                let _ = b.send(1, 0, vec![reply]);
                                answered += 1;
                            }
                        }
                        if pending
                            .as_ref()
                            .is_some_and(|(target, _, reader)| answered >= *target && reader.is_finished())
                        {
                            let (_, ack, reader) = pending.take().unwrap();
                            let read = reader.await.unwrap();
                            ack.send(verdict(&read)).unwrap();
                            return read.expect("the snapshot arrives intact");
                        }
                    }
                    Some(Incoming::Snapshot { data, ack, from, .. }) => {
                        assert_eq!(from, 1);
                        let reader = tokio::spawn(read_snapshot(data));
                        pending = Some((answered + HEARTBEATS_DURING, ack, reader));
                    }
                }
            }
        })
    };

    // Node 1 sends a heartbeat, waits for its answer, and repeats.
    let transferring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let pinger = {
        let (a, transferring, stop) = (a.clone(), transferring.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut idle, mut busy) = (Vec::new(), Vec::new());
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let during = transferring.load(Ordering::Relaxed);
                let start = Instant::now();
                send_retrying(&a, 2, vec![heartbeat(1, 2, round)]).await;
                loop {
                    let Ok(Some(incoming)) =
                        tokio::time::timeout(Duration::from_millis(500), a_rx.recv()).await
                    else {
                        break; // lost (a queue was full): send the next one
                    };
                    if let Incoming::Messages { messages, .. } = incoming {
                        if messages.iter().any(|m| {
                            matches!(m, WireMessage::Raft(Message { body: MessageBody::HeartbeatResponse(r), .. }) if r.round == round)
                        }) {
                            let rtt = start.elapsed();
                            if during && transferring.load(Ordering::Relaxed) {
                                busy.push(rtt);
                            } else if !during {
                                idle.push(rtt);
                            }
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (idle, busy)
        })
    };

    tokio::time::sleep(Duration::from_millis(200)).await;
    let (data, sent_crc) = generated(size, 7);
    transferring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    a.send_snapshot(2, 0, snapshot_message(1, 2), data).await.unwrap();
    let elapsed = start.elapsed();
    transferring.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);

    let (len, crc) = follower.await.unwrap();
    assert_eq!(len, size);
    assert_eq!(crc, sent_crc.load(Ordering::Relaxed), "snapshot intact");
    let (mut idle, mut busy) = pinger.await.unwrap();
    idle.sort();
    busy.sort();
    println!(
        "{} MiB snapshot in {elapsed:?} ({:.0} MB/s incl. delivery); heartbeat RTT idle: n={} p50={:?} p99={:?}; \
         during transfer: n={} p50={:?} p99={:?} max={:?}",
        size >> 20,
        size as f64 / elapsed.as_secs_f64() / 1e6,
        idle.len(),
        percentile(&idle, 0.5),
        percentile(&idle, 0.99),
        busy.len(),
        percentile(&busy, 0.5),
        percentile(&busy, 0.99),
        busy.last().copied().unwrap_or_default(),
    );
    assert_eq!(a.stats().snapshots_sent, 1);
    assert_eq!(b.stats().snapshots_received, 1);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_snapshots_are_reported() {
    let ca = DevCa::generate().unwrap();
    let a = bind(&ca, 1).await;
    let mut cfg = config(ca.node_tls(2).unwrap());
    cfg.limits.max_snapshot_size = 1 << 20;
    let b = QuicTransport::bind(cfg).await.unwrap();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut peers = addresses(&[&a, &b]);
    peers.insert(3, Bytes::from(silent.local_addr().unwrap().to_string()));
    a.set_peers(peers.clone());
    b.set_peers(peers);
    let (inbox, mut b_rx) = Inbox::channel(16);
    b.register(b.node_id(), 0, inbox).unwrap();
    // Node 2's runtime reads every snapshot; it refuses those it read whole (the sender
    // gets its reason as text), and says why the others were not stored.
    let refuser = tokio::spawn(async move {
        while let Some(incoming) = b_rx.recv().await {
            if let Incoming::Snapshot { data, ack, .. } = incoming {
                let answer = match read_snapshot(data).await {
                    Ok(_) => Err(DeliverSnapshotError::ForgedSender { from: 2, claimed: 7 }),
                    read => verdict(&read),
                };
                let _ = ack.send(answer);
            }
        }
    });

    let err = a
        .send_snapshot(2, 0, snapshot_message(1, 2), generated(1000, 1).0)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        TransportError::Refused {
            peer: 2,
            reason: "sender 2 claims to be 7".into()
        }
    );
    // Too large: refused once the data passes the receiver's limit.
    let err = a
        .send_snapshot(2, 0, snapshot_message(1, 2), generated(2 << 20, 2).0)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransportError::Refused { peer: 2, reason }
            if reason.contains("not stored") && reason.contains("exceeds the limit of 1048576 bytes")),
        "{err}"
    );
    // A message not from the peer: refused before any data.
    let mut forged = snapshot_message(1, 2);
    forged.from = 3;
    let err = a
        .send_snapshot(2, 0, forged, SnapshotStream::from_bytes(Bytes::from_static(b"x")))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransportError::Refused { reason, .. } if reason.contains("claims sender 3")),
        "{err}"
    );

    // A peer that never answers: the one attempt times out, and the caller is told.
    let mut cfg = config(ca.node_tls(4).unwrap());
    cfg.tuning.handshake_timeout = Duration::from_millis(300);
    let c = QuicTransport::bind(cfg).await.unwrap();
    let mut peers = addresses(&[&c]);
    peers.insert(3, Bytes::from(silent.local_addr().unwrap().to_string()));
    c.set_peers(peers);
    let err = c
        .send_snapshot(
            3,
            0,
            snapshot_message(4, 3),
            SnapshotStream::from_bytes(Bytes::from_static(b"data")),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransportError::Unreachable { peer: 3, reason } if reason.contains("timed out")),
        "{err}"
    );
    assert_eq!(a.stats().snapshots_sent, 0);
    for t in [a, b, c] {
        t.shutdown().await;
    }
    refuser.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_transfer_from_a_peer_supersedes_the_one_in_progress_while_other_peers_proceed() {
    let ca = DevCa::generate().unwrap();
    let mut nodes = cluster(&ca, &[1, 2, 3]).await;
    let (one, two, three) = (nodes[0].0.clone(), nodes[1].0.clone(), nodes[2].0.clone());
    let mut rx = std::mem::replace(&mut nodes[1].1, Inbox::channel(1).1);
    // Node 2's runtime reads each snapshot as it arrives, as a real one does, telling the
    // test when the first bytes arrived and how the stream ended.
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let (read_tx, mut read) = tokio::sync::mpsc::unbounded_channel();
    let runtime = tokio::spawn(async move {
        while let Some(incoming) = rx.recv().await {
            if let Incoming::Snapshot {
                from, mut data, ack, ..
            } = incoming
            {
                let (started_tx, read_tx) = (started_tx.clone(), read_tx.clone());
                tokio::spawn(async move {
                    let (mut len, mut crc, mut told) = (0u64, 0u32, false);
                    let result = loop {
                        match data.next_chunk().await {
                            Ok(Some(chunk)) => {
                                if !told {
                                    let _ = started_tx.send(from);
                                    told = true;
                                }
                                len += chunk.len() as u64;
                                crc = crc32c::crc32c_append(crc, &chunk);
                            }
                            Ok(None) => break Ok((len, crc)),
                            Err(e) => break Err(e),
                        }
                    };
                    let _ = ack.send(verdict(&result));
                    let _ = read_tx.send((from, result));
                });
            }
        }
    });

    // Node 1's first transfer stays in progress: its source sends 1 MiB and stalls.
    let first = tokio::spawn({
        let one = one.clone();
        async move {
            one.send_snapshot(2, 0, snapshot_message(1, 2), stalling(1 << 20))
                .await
        }
    });
    assert_eq!(next(&mut started).await, 1);

    // Node 3's transfer goes through meanwhile.
    let (data, crc) = generated(4 << 20, 3);
    three
        .send_snapshot(2, 0, snapshot_message(3, 2), data)
        .await
        .unwrap();
    assert_eq!(next(&mut started).await, 3);
    let (from, result) = next(&mut read).await;
    assert_eq!(from, 3);
    assert_eq!(result.unwrap(), (4 << 20, crc.load(Ordering::Relaxed)));

    // Node 1 starts over: its first transfer ends, on both sides, and the new one arrives.
    let (data, crc) = generated(8 << 20, 1);
    let second = tokio::spawn({
        let one = one.clone();
        async move { one.send_snapshot(2, 0, snapshot_message(1, 2), data).await }
    });
    let (from, result) = next(&mut read).await;
    assert_eq!(from, 1);
    let err = result.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(
        err.to_string(),
        "the reception was cancelled: superseded by a newer transfer from node 1"
    );
    let first = tokio::time::timeout(DEADLINE, first).await.unwrap().unwrap();
    assert!(
        matches!(&first, Err(TransportError::Refused { peer: 2, reason }) if reason.contains("superseded")),
        "{first:?}"
    );
    tokio::time::timeout(DEADLINE, second)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let (from, result) = next(&mut read).await;
    assert_eq!(from, 1);
    assert_eq!(result.unwrap(), (8 << 20, crc.load(Ordering::Relaxed)));
    assert_eq!(two.stats().snapshots_received, 2);
    assert_eq!(one.stats().snapshots_sent, 1);
    assert_eq!(three.stats().snapshots_sent, 1);
    for (t, _) in &nodes {
        t.shutdown().await;
    }
    runtime.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_holds_an_idle_connection_open() {
    let ca = DevCa::generate().unwrap();
    let mut nodes = Vec::new();
    for id in [1, 2] {
        let mut cfg = config(ca.node_tls(id).unwrap());
        cfg.tuning.idle_timeout = Duration::from_secs(2);
        cfg.tuning.keep_alive_interval = Duration::from_millis(250);
        nodes.push(QuicTransport::bind(cfg).await.unwrap());
    }
    let peers = addresses(&[&nodes[0], &nodes[1]]);
    for n in &nodes {
        n.set_peers(peers.clone());
    }
    nodes[0].connect(2).await.unwrap();
    wait_for("node 2 to adopt the connection", || {
        nodes[1].peer_connection(1).is_some()
    })
    .await;
    // Three idle timeouts with no traffic at all.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for n in &nodes {
        assert_eq!(
            n.stats().connections_established,
            1,
            "the connection never dropped"
        );
        assert_eq!(n.open_connections(), 1);
    }
    assert!(nodes[0].peer_connection(2).is_some());
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_name_what_is_wrong() {
    let ca = DevCa::generate().unwrap();
    // A busy port.
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let mut cfg = config(ca.node_tls(1).unwrap());
    cfg.listen_addr = addr;
    let err = QuicTransport::bind(cfg).await.unwrap_err();
    assert!(
        matches!(&err, QuicError::Bind { addr: a, .. } if *a == addr),
        "{err}"
    );
    assert!(err.to_string().contains(&addr.to_string()), "{err}");

    // The transport serves the node its certificate names: another id is refused at
    // registration, as is a second node, and any node once the transport is shut down.
    let t = QuicTransport::bind(config(ca.node_tls(2).unwrap()))
        .await
        .unwrap();
    assert_eq!(t.node_id(), 2);
    let err = t.register(1, 0, Inbox::channel(8).0).unwrap_err();
    assert_eq!(
        err,
        RegisterError::WrongNode {
            transport: 2,
            node: 1
        }
    );
    assert!(
        err.to_string().contains("node 2") && err.to_string().contains("node 1"),
        "{err}"
    );
    t.register(2, 0, Inbox::channel(8).0).unwrap();
    assert_eq!(
        t.register(2, 0, Inbox::channel(8).0).unwrap_err(),
        RegisterError::AlreadyRegistered(2)
    );
    t.shutdown().await;
    let t = QuicTransport::bind(config(ca.node_tls(2).unwrap()))
        .await
        .unwrap();
    t.shutdown().await;
    assert_eq!(
        t.register(2, 0, Inbox::channel(8).0).unwrap_err(),
        RegisterError::Closed
    );

    // Keep-alive not below the idle timeout: the error names the field, its value and the
    // rule.
    let mut cfg = config(ca.node_tls(1).unwrap());
    cfg.tuning.keep_alive_interval = cfg.tuning.idle_timeout;
    let err = QuicTransport::bind(cfg).await.unwrap_err();
    assert!(
        matches!(&err, QuicError::Config(e) if e.field == "tuning.keep_alive_interval"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "invalid configuration: `tuning.keep_alive_interval` = 10s: must be below idle_timeout (10s)"
    );

    // PEM files: written by the dev helper, loaded back; errors name the file.
    let dir = tempfile::tempdir().unwrap();
    let files = ca.write_node_files(dir.path(), 1).unwrap();
    let tls = TlsConfig::from_pem_files(&files.ca, &files.cert, &files.key).unwrap();
    assert_eq!(tls.node_id().unwrap(), 1);
    let t = QuicTransport::bind(config(tls)).await.unwrap();
    t.shutdown().await;

    let missing = dir.path().join("missing.pem");
    let err = TlsConfig::from_pem_files(&files.ca, &missing, &files.key).unwrap_err();
    assert!(
        matches!(&err, QuicError::ReadFile { path, .. } if *path == missing),
        "{err}"
    );
    assert!(err.to_string().contains("missing.pem"), "{err}");

    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let err = TlsConfig::from_pem_files(&junk, &files.cert, &files.key).unwrap_err();
    assert!(
        matches!(&err, QuicError::Pem { path, .. } if *path == junk),
        "{err}"
    );
    assert!(err.to_string().contains("junk.pem"), "{err}");

    // A key file that holds a certificate instead.
    let err = TlsConfig::from_pem_files(&files.ca, &files.cert, &files.cert).unwrap_err();
    assert!(err.to_string().contains("no PRIVATE KEY"), "{err}");

    // A certificate naming two nodes is not a node identity.
    let twin = ca.issue_with_names(1, &[1, 2]).unwrap();
    let tls = TlsConfig::from_pem(ca.ca_cert_pem(), &twin.cert_pem, &twin.key_pem).unwrap();
    assert!(matches!(tls.node_id(), Err(QuicError::Identity(_))));
}

/// A peer (node 3, a listed member) dialled by a raw client that greets and then never
/// reads: the node's writes to it block on flow control.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_cut_off_without_stalling_the_others() {
    let ca = DevCa::generate().unwrap();
    let mut nodes = cluster_with(&ca, &[1, 2], |cfg| {
        cfg.tuning.write_timeout = Duration::from_secs(2);
    })
    .await;
    settle(&nodes).await;
    let server = nodes[1].0.clone();
    let mut peers = addresses(&[&nodes[0].0, &server]);
    peers.insert(3, Bytes::new());
    server.set_peers(peers);

    let (_ep, conn, mut send, mut recv) = raw_stream(&ca, 3, server.local_addr(), 2).await;
    send.write_all(&greeting()).await.unwrap();
    let mut reply = [0u8; 12];
    recv.read_exact(&mut reply).await.unwrap();
    wait_for("node 2 to adopt the connection", || {
        server.peer_connection(3).is_some()
    })
    .await;

    // Far more than the client's receive window, which it never opens again.
    let big = Bytes::from(vec![9u8; 64 << 10]);
    for id in 0..200 {
        let batch = vec![WireMessage::Forward {
            id,
            command: big.clone(),
        }];
        let _ = server.send(3, 0, batch);
    }
    // Node 2's link to node 3 is stuck; its link to node 1 is not.
    send_retrying(&server, 1, vec![forward(77)]).await;
    let rx = &mut nodes[0].1;
    loop {
        if let Incoming::Messages {
            from: 2, messages, ..
        } = next_incoming(rx).await
        {
            if messages.contains(&forward(77)) {
                break;
            }
        }
    }
    // The stuck link gives up: it closes the connection and drops what was queued.
    let (code, reason) = closed_with(&conn).await;
    assert_eq!(code, 8, "write timeout: {reason}");
    assert!(reason.contains("stopped reading"), "{reason}");
    assert_eq!(server.stats().write_timeouts, 1);
    wait_for("node 2 to forget the connection", || {
        server.peer_connection(3).is_none()
    })
    .await;
    assert!(server.metrics().dropped > 0);
    // And node 1 is still served.
    send_retrying(&server, 1, vec![forward(78)]).await;
    loop {
        if let Incoming::Messages {
            from: 2, messages, ..
        } = next_incoming(rx).await
        {
            if messages.contains(&forward(78)) {
                break;
            }
        }
    }
    for (t, _) in &nodes {
        t.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_opening_many_connections_keeps_only_a_bounded_number() {
    let ca = DevCa::generate().unwrap();
    let mut cfg = config(ca.node_tls(2).unwrap());
    // Long enough that no connection is closed for not greeting during the test.
    cfg.tuning.handshake_timeout = Duration::from_secs(120);
    let limit = cfg.limits.max_connections_per_peer;
    let server =
        QuicTransport::bind(cfg.with_initial_peers(BTreeMap::from([(2, Bytes::new()), (3, Bytes::new())])))
            .await
            .unwrap();
    let (inbox, _rx) = Inbox::channel(16);
    server.register(server.node_id(), 0, inbox).unwrap();
    let addr = server.local_addr();

    // Node 3's message connection, in use.
    let endpoint = raw_client(&ca, 3, b"raft-msg/1");
    let name = raft_transport_quic::identity::node_name(2);
    let designated = endpoint.connect(addr, &name).unwrap().await.unwrap();
    let (mut send, mut recv) = designated.open_bi().await.unwrap();
    send.write_all(&greeting()).await.unwrap();
    let mut reply = [0u8; 12];
    recv.read_exact(&mut reply).await.unwrap();
    wait_for("node 2 to adopt the connection", || {
        server.peer_connection(3).is_some()
    })
    .await;

    // The protocol's one stream per connection is all a peer may open.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), designated.open_bi())
            .await
            .is_err(),
        "a second stream was granted"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), designated.open_uni())
            .await
            .is_err(),
        "a unidirectional stream was granted"
    );

    // Ten more connections that never greet.
    let mut extra = Vec::new();
    for _ in 0..10 {
        extra.push(endpoint.connect(addr, &name).unwrap().await.unwrap());
    }
    wait_for("the extra connections to be closed", || {
        extra.iter().filter(|c| c.close_reason().is_none()).count() < limit
    })
    .await;
    assert!(
        designated.close_reason().is_none(),
        "the connection in use survives"
    );
    assert!(server.peer_connection(3).is_some());
    assert!(server.stats().excess_connections_closed >= (10 + 1 - limit) as u64);
    let mut closed = 0;
    for conn in &extra {
        if conn.close_reason().is_some() {
            let (code, reason) = closed_with(conn).await;
            assert_eq!(code, 7, "{reason}");
            closed += 1;
        }
    }
    assert!(closed > 10 - limit, "{closed} closed");
    // The message connection still works: node 2 writes a frame on it.
    server.send(3, 0, vec![forward(1)]).unwrap();
    let mut prefix = [0u8; 4];
    tokio::time::timeout(DEADLINE, recv.read_exact(&mut prefix))
        .await
        .unwrap()
        .unwrap();
    assert!(u32::from_le_bytes(prefix) > 0);
    server.shutdown().await;
}

/// Forwards datagrams from its own address to `server` and drops every answer, so the
/// handshakes of clients dialling it never complete. Clearing the flag cuts it entirely.
async fn one_way_relay(server: SocketAddr) -> (SocketAddr, Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let upstream = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    let open = Arc::new(AtomicBool::new(true));
    let task = tokio::spawn({
        let open = open.clone();
        async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, _)) = front.recv_from(&mut buf).await {
                if open.load(Ordering::Relaxed) {
                    let _ = upstream.send_to(&buf[..n], server).await;
                }
            }
        }
    });
    (addr, open, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_flood_is_capped() {
    const CAP: usize = 2;
    let ca = DevCa::generate().unwrap();
    let a = bind(&ca, 1).await;
    let mut cfg = config(ca.node_tls(2).unwrap());
    cfg.limits.max_concurrent_handshakes = CAP;
    // The flood's handshakes hold their slots this long (their connections linger a little
    // longer, closing, once it has passed).
    cfg.tuning.handshake_timeout = Duration::from_secs(4);
    let server = QuicTransport::bind(cfg).await.unwrap();
    let mut peers = addresses(&[&a, &server]);
    peers.insert(3, Bytes::new());
    server.set_peers(peers.clone());
    a.set_peers(peers);

    // Eight handshakes that never complete, from a member's valid certificate.
    let (relay, open, relay_task) = one_way_relay(server.local_addr()).await;
    let mut flood = Vec::new();
    for _ in 0..8 {
        let endpoint = raw_client(&ca, 3, b"raft-msg/1");
        let connecting = endpoint
            .connect(relay, &raft_transport_quic::identity::node_name(2))
            .unwrap();
        flood.push((endpoint, tokio::spawn(connecting)));
    }
    wait_for("the attempts past the cap to be turned away", || {
        server.stats().handshakes_turned_away >= 8 - CAP as u64
    })
    .await;
    assert!(
        server.open_connections() <= CAP,
        "{} handshakes in progress",
        server.open_connections()
    );

    // Once the flood stops and its handshakes time out, a member connects.
    open.store(false, Ordering::Relaxed);
    let start = Instant::now();
    while a.connect(2).await.is_err() {
        assert!(start.elapsed() < DEADLINE, "node 1 never got through");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.peer_connection(1).is_some() || a.peer_connection(2).is_some());
    for (endpoint, task) in flood {
        task.abort();
        endpoint.close(0u32.into(), b"");
    }
    relay_task.abort();
    a.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_peer_loses_its_snapshot_transfer_too() {
    let ca = DevCa::generate().unwrap();
    let mut nodes = cluster(&ca, &[1, 2, 3]).await;
    let (a, b) = (nodes[0].0.clone(), nodes[1].0.clone());
    let mut b_rx = std::mem::replace(&mut nodes[1].1, Inbox::channel(1).1);
    // Node 2's runtime reads the snapshot as it arrives; node 1's source sends 1 MiB and
    // stalls, so the transfer is in progress when node 1 is removed.
    let (got_tx, got_rx) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(async move {
        let Some(Incoming::Snapshot { mut data, ack, .. }) = b_rx.recv().await else {
            panic!("expected a snapshot");
        };
        let first = data.next_chunk().await;
        assert!(matches!(first, Ok(Some(_))), "{first:?}");
        got_tx.send(()).unwrap();
        let read = read_snapshot(data).await;
        let _ = ack.send(verdict(&read));
        read
    });
    let sender = tokio::spawn({
        let a = a.clone();
        async move {
            a.send_snapshot(2, 0, snapshot_message(1, 2), stalling(1 << 20))
                .await
        }
    });
    tokio::time::timeout(DEADLINE, got_rx).await.unwrap().unwrap();
    // Node 1 is removed: its transfer is cut on both sides, and a new one refused.
    b.set_peers(addresses(&[&b, &nodes[2].0]));
    let read = tokio::time::timeout(DEADLINE, reader).await.unwrap().unwrap();
    let err = read.unwrap_err();
    assert!(
        err.to_string().contains("node 1 was removed from the membership"),
        "{err}"
    );
    // The sender learns the node's refusal if it got out before the connection closed
    // (the node's task may run on another worker meanwhile), or finds the connection closed.
    let result = tokio::time::timeout(DEADLINE, sender).await.unwrap().unwrap();
    match &result {
        Err(TransportError::Unreachable { peer: 2, .. }) => {}
        Err(TransportError::Refused { peer: 2, reason })
            if reason.contains("removed from the membership") => {}
        other => panic!("{other:?}"),
    }
    let again = a
        .send_snapshot(2, 0, snapshot_message(1, 2), generated(1000, 1).0)
        .await;
    assert!(
        matches!(again, Err(TransportError::Unreachable { peer: 2, .. })),
        "{again:?}"
    );
    assert!(b.stats().refused_handshakes >= 1);
    wait_for("node 2 to hold no connection from node 1", || {
        b.open_connections() == 0
    })
    .await;
    for (t, _) in &nodes {
        t.shutdown().await;
    }
}

/// Collects the warnings logged on this thread.
#[derive(Clone, Default)]
struct Warnings(Arc<std::sync::Mutex<Vec<String>>>);

impl Warnings {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() > tracing::Level::WARN {
            return;
        }
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        self.0.lock().unwrap().push(text.0);
    }
}

/// A UDP relay in front of a node's address, which can be cut: a peer that reaches the
/// node only through it sees the node vanish as a killed process would (no close, no
/// answer, no ICMP error: the relay's sockets stay open and drop everything).
struct Relay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn new(to: SocketAddr) -> Relay {
        let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let back = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        back.connect(to).await.unwrap();
        let addr = front.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let cut = cut.clone();
            async move {
                let (mut up, mut down) = (vec![0u8; 65536], vec![0u8; 65536]);
                let mut client = None;
                loop {
                    tokio::select! {
                        Ok((n, from)) = front.recv_from(&mut up) => {
                            client = Some(from);
                            if !cut.load(Ordering::Relaxed) {
                                let _ = back.send(&up[..n]).await;
                            }
                        }
                        Ok(n) = back.recv(&mut down) => {
                            if let (Some(client), false) = (client, cut.load(Ordering::Relaxed)) {
                                let _ = front.send_to(&down[..n], client).await;
                            }
                        }
                    }
                }
            }
        });
        Relay { addr, cut, task }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Node 1 reaches node 2 through a relay; node 2 never dials node 1 (it sends nothing).
async fn pair_through_relay(ca: &DevCa) -> (QuicTransport, QuicTransport, Relay) {
    let quick_timeout = |cfg: &mut QuicConfig| {
        cfg.tuning.idle_timeout = Duration::from_millis(1500);
        cfg.tuning.keep_alive_interval = Duration::from_millis(300);
    };
    let mut cfg = config(ca.node_tls(1).unwrap());
    quick_timeout(&mut cfg);
    let a = QuicTransport::bind(cfg).await.unwrap();
    let mut cfg = config(ca.node_tls(2).unwrap());
    quick_timeout(&mut cfg);
    let b = QuicTransport::bind(cfg).await.unwrap();
    let relay = Relay::new(b.local_addr()).await;
    let mut peers = addresses(&[&a, &b]);
    b.set_peers(peers.clone());
    peers.insert(2, Bytes::from(relay.addr.to_string()));
    a.set_peers(peers);
    a.connect(2).await.unwrap();
    (a, b, relay)
}

/// Shuts `t` down, checking that it returns within a generous bound; returns how long it
/// took.
async fn timed_shutdown(t: &QuicTransport) -> Duration {
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), t.shutdown())
        .await
        .expect("shutdown returns within 5 s");
    start.elapsed()
}

// Current-thread runtimes, so that the thread-local log subscriber sees every task.
#[tokio::test]
async fn a_peer_that_shuts_down_is_not_a_warning_and_shutdown_is_prompt() {
    use tracing_subscriber::layer::SubscriberExt;
    let warnings = Warnings::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings.clone()));
    let ca = DevCa::generate().unwrap();

    // Node 2 shuts down: node 1 sees its connection closed with the shutdown code.
    let (a, b, _relay) = pair_through_relay(&ca).await;
    let took = timed_shutdown(&b).await;
    eprintln!("shutdown with the peer up: {took:?}");
    wait_for("node 1 to see the connection end", || {
        a.peer_connection(2).is_none()
    })
    .await;
    assert_eq!(
        warnings.take(),
        Vec::<String>::new(),
        "a peer's shutdown was logged as a warning"
    );
    // Node 1 tries to reach node 2 meanwhile (refused by its closed endpoint): a peer that shut down is not reported unreachable before it has
    // been away for `unreachable_log_interval` (30 s), so a restart goes unremarked.
    for _ in 0..3 {
        let refused = a.connect(2).await;
        assert!(
            matches!(refused, Err(TransportError::Unreachable { peer: 2, .. })),
            "{refused:?}"
        );
    }
    assert_eq!(
        warnings.take(),
        Vec::<String>::new(),
        "a stopped peer was reported at once"
    );
    let took = timed_shutdown(&a).await;
    eprintln!("shutdown after dialling a stopped peer: {took:?}");

    // Node 2 vanishes without a word: node 1's connection times out.
    let (a, b, relay) = pair_through_relay(&ca).await;
    relay.cut();
    wait_for("node 1's connection to time out", || {
        a.peer_connection(2).is_none()
    })
    .await;
    assert_eq!(
        warnings.take(),
        Vec::<String>::new(),
        "a vanished peer's timeout was logged as a warning"
    );
    let took = timed_shutdown(&a).await;
    eprintln!("shutdown after the peer vanished: {took:?}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_prompt_while_a_peer_does_not_answer() {
    let ca = DevCa::generate().unwrap();
    // Something that never answers QUIC: a bound but unread UDP socket. Sending to it
    // starts a handshake that cannot complete.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let a = bind(&ca, 1).await;
    let mut peers = addresses(&[&a]);
    peers.insert(9, Bytes::from(silent.local_addr().unwrap().to_string()));
    a.set_peers(peers);
    let _ = a.send(9, 0, vec![forward(0)]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let took = timed_shutdown(&a).await;
    eprintln!("shutdown while dialling a silent peer: {took:?}");
}
