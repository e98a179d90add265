//! Loopback figures for the crate README: small-message rate with batching, bulk MB/s with
//! 64 KiB append batches, and round-trip latency, between two endpoints on 127.0.0.1.
//!
//! ```text
//! cargo bench -p raft-transport-quic --bench throughput
//! BENCH_TUNING=1 cargo bench -p raft-transport-quic --bench throughput   # also compare tunings
//! BENCH_BULK_ONLY=1 [BENCH_RUNTIME=current] cargo bench ...               # bulk vs raw quinn only
//! ```
//!
//! Each node runs on its own tokio runtime, like two processes; both runtime flavours are
//! measured. Raw quinn on the same settings is measured alongside as the ceiling.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use raft_core::{Append, Entry, EntryPayload, Message, MessageBody};
use raft_runtime::{Inbox, InboxReceiver, Incoming, SendError, Transport, WireMessage};
use raft_transport_quic::{DevCa, QuicConfig, QuicTransport, Tuning};

/// Each node runs on its own tokio runtime, as two processes would: either a multi-thread
/// runtime with two workers (the machine has two cores), or a current-thread runtime on a
/// dedicated thread.
struct Rt {
    handle: tokio::runtime::Handle,
    _multi: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// Whether nodes get current-thread runtimes (set by `main` between runs).
static CURRENT_THREAD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn runtime() -> Rt {
    if CURRENT_THREAD.load(Ordering::Relaxed) {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            handle_tx.send(rt.handle().clone()).unwrap();
            let _ = rt.block_on(stopped);
        });
        return Rt {
            handle: handle_rx.recv().unwrap(),
            _multi: None,
            stop: Some(stop),
            thread: Some(thread),
        };
    }
    let workers = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap();
    Rt {
        handle: rt.handle().clone(),
        _multi: Some(rt),
        stop: None,
        thread: None,
    }
}

/// Starts `f` on `rt`; the receiver yields its output.
fn run_on<F>(rt: &Rt, f: F) -> std::sync::mpsc::Receiver<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    rt.handle.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx
}

/// Runs `f` on `rt` and waits for it (the calling thread only parks).
fn on<F>(rt: &Rt, f: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    run_on(rt, f).recv().unwrap()
}

struct Pair {
    rt_a: Rt,
    rt_b: Rt,
    a: Arc<QuicTransport>,
    b: Arc<QuicTransport>,
    a_rx: Option<InboxReceiver>,
    b_rx: Option<InboxReceiver>,
}

async fn node(ca: Arc<DevCa>, id: u64, tuning: Tuning) -> (Arc<QuicTransport>, InboxReceiver) {
    let mut config = QuicConfig::new("127.0.0.1:0".parse().unwrap(), ca.node_tls(id).unwrap());
    config.tuning = tuning;
    config.limits.peer_queue_capacity = 4096;
    let t = Arc::new(QuicTransport::bind(config).await.unwrap());
    let (inbox, rx) = Inbox::channel(1 << 16);
    t.register(t.node_id(), 0, inbox).unwrap();
    (t, rx)
}

fn pair(ca: &Arc<DevCa>, tuning: &Tuning) -> Pair {
    let (rt_a, rt_b) = (runtime(), runtime());
    let (a, a_rx) = on(&rt_a, node(ca.clone(), 1, tuning.clone()));
    let (b, b_rx) = on(&rt_b, node(ca.clone(), 2, tuning.clone()));
    let peers: BTreeMap<_, _> = [&a, &b]
        .iter()
        .map(|t| (t.node_id(), Bytes::from(t.local_addr().to_string())))
        .collect();
    a.set_peers(peers.clone());
    b.set_peers(peers);
    let (a2, b2) = (a.clone(), b.clone());
    on(&rt_a, async move {
        a2.connect(2).await.unwrap();
        while b2.peer_connection(1).is_none() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    Pair {
        rt_a,
        rt_b,
        a,
        b,
        a_rx: Some(a_rx),
        b_rx: Some(b_rx),
    }
}

impl Pair {
    fn shutdown(self) {
        let (a, b) = (self.a.clone(), self.b.clone());
        on(&self.rt_a, async move { a.shutdown().await });
        on(&self.rt_b, async move { b.shutdown().await });
    }
}

/// Sends `batches` copies of `batch` from a to b as fast as the queue takes them, and
/// returns (messages received, payload bytes received, seconds from first send to last
/// delivery).
fn stream(
    pair: &mut Pair,
    batch: Vec<WireMessage>,
    batches: u64,
    payload_per_message: u64,
) -> (u64, u64, f64) {
    let expected = batches * batch.len() as u64;
    let received = Arc::new(AtomicU64::new(0));
    let mut b_rx = pair.b_rx.take().unwrap();
    let counter = received.clone();
    let start = Instant::now();
    let consumer = run_on(&pair.rt_b, async move {
        let mut last = Instant::now();
        loop {
            match tokio::time::timeout(Duration::from_secs(2), b_rx.recv()).await {
                Ok(Some(Incoming::Messages { messages, .. })) => {
                    let n =
                        counter.fetch_add(messages.len() as u64, Ordering::Relaxed) + messages.len() as u64;
                    last = Instant::now();
                    if n >= expected {
                        break;
                    }
                }
                Ok(Some(Incoming::Snapshot { .. })) => {}
                Ok(None) | Err(_) => break, // idle: some batches were dropped
            }
        }
        (b_rx, last)
    });
    let a = pair.a.clone();
    on(&pair.rt_a, async move {
        let mut sent = 0;
        while sent < batches {
            match a.send(2, 0, batch.clone()) {
                Ok(()) => sent += 1,
                // A full queue: back off like a Raft leader would (it retries on its next tick).
                Err(SendError::Full(_)) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(e) => panic!("{e}"),
            }
        }
    });
    let (b_rx, last) = consumer.recv().unwrap();
    pair.b_rx = Some(b_rx);
    let n = received.load(Ordering::Relaxed);
    (
        n,
        n * payload_per_message,
        last.duration_since(start).as_secs_f64(),
    )
}

fn small_messages(ca: &Arc<DevCa>, tuning: &Tuning) -> (f64, f64) {
    let mut pair = pair(ca, tuning);
    let command = Bytes::from(vec![7u8; 256]);
    let batch: Vec<WireMessage> = (0..64)
        .map(|id| WireMessage::Forward {
            id,
            command: command.clone(),
        })
        .collect();
    // Warm up, then measure.
    stream(&mut pair, batch.clone(), 5_000, 256);
    let (n, bytes, secs) = stream(&mut pair, batch, 80_000, 256);
    pair.shutdown();
    (n as f64 / secs, bytes as f64 / secs / 1e6)
}

fn append(payload: Bytes) -> WireMessage {
    WireMessage::Raft(Message {
        from: 1,
        to: 2,
        term: 1,
        body: MessageBody::Append(Append {
            prev_index: 1,
            prev_term: 1,
            entries: vec![Entry::new(1, 2, EntryPayload::Normal(payload))],
            commit: 1,
        }),
    })
}

fn bulk(ca: &Arc<DevCa>, tuning: &Tuning, total: u64) -> f64 {
    let mut pair = pair(ca, tuning);
    let batch = vec![append(Bytes::from(vec![9u8; 64 << 10]))];
    stream(&mut pair, batch.clone(), 1_000, 64 << 10);
    let (_, bytes, secs) = stream(&mut pair, batch, total / (64 << 10), 64 << 10);
    pair.shutdown();
    bytes as f64 / secs / 1e6
}

fn round_trip(ca: &Arc<DevCa>, tuning: &Tuning) -> (f64, f64, f64) {
    let mut pair = pair(ca, tuning);
    let b = pair.b.clone();
    let mut b_rx = pair.b_rx.take().unwrap();
    let echo = pair.rt_b.handle.spawn(async move {
        while let Some(incoming) = b_rx.recv().await {
            if let Incoming::Messages { messages, .. } = incoming {
                let _ = b.send(1, 0, messages);
            }
        }
    });
    let a = pair.a.clone();
    let mut a_rx = pair.a_rx.take().unwrap();
    let histogram = on(&pair.rt_a, async move {
        let payload = Bytes::from(vec![1u8; 64]);
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
        for round in 0..22_000u64 {
            let start = Instant::now();
            a.send(
                2,
                0,
                vec![WireMessage::Forward {
                    id: round,
                    command: payload.clone(),
                }],
            )
            .unwrap();
            loop {
                match a_rx.recv().await {
                    Some(Incoming::Messages { messages, .. }) if matches!(messages[..], [WireMessage::Forward { id, .. }] if id == round) =>
                    {
                        break;
                    }
                    Some(_) => {}
                    None => panic!("inbox closed"),
                }
            }
            // The first rounds warm up the connection and the caches.
            if round >= 2_000 {
                histogram.record(start.elapsed().as_nanos() as u64).unwrap();
            }
        }
        histogram
    });
    echo.abort();
    pair.shutdown();
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1e3;
    (us(0.5), us(0.99), us(0.999))
}

/// The ceiling: quinn alone, one unidirectional stream of 64 KiB chunks, no framing, no
/// codec, same windows, MTU bound and GSO setting as the transport's defaults, one runtime
/// per endpoint like the transport benchmarks.
fn raw_quinn(ca: &Arc<DevCa>, total: u64) -> f64 {
    use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
    let tuning = Tuning::default();
    let mut transport = quinn::TransportConfig::default();
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(tuning.max_mtu);
    transport
        .stream_receive_window(quinn::VarInt::from_u32(tuning.stream_window))
        .receive_window(quinn::VarInt::from_u32(tuning.connection_window))
        .send_window(tuning.send_window)
        .mtu_discovery_config(Some(mtu));
    let transport = Arc::new(transport);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = ca.node_tls(2).unwrap();
    let mut server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(tls.cert_chain.clone(), tls.key.clone_key())
        .unwrap();
    server_tls.alpn_protocols = vec![b"raw".to_vec()];
    let mut server =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(server_tls).unwrap()));
    server.transport_config(transport.clone());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(tls.ca_certs[0].clone()).unwrap();
    let mut client_tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_tls.alpn_protocols = vec![b"raw".to_vec()];
    let mut client_config =
        quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(client_tls).unwrap()));
    client_config.transport_config(transport);

    let (rt_a, rt_b) = (runtime(), runtime());
    let server = on(&rt_b, async move {
        quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap()
    });
    let addr = server.local_addr().unwrap();
    let receiver = run_on(&rt_b, async move {
        let conn = server.accept().await.unwrap().await.unwrap();
        let mut recv = conn.accept_uni().await.unwrap();
        let mut n = 0u64;
        while let Some(chunk) = recv.read_chunk(usize::MAX, true).await.unwrap() {
            n += chunk.bytes.len() as u64;
        }
        (n, Instant::now())
    });
    let start = on(&rt_a, async move {
        let client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = client
            .connect_with(client_config, addr, &raft_transport_quic::identity::node_name(2))
            .unwrap()
            .await
            .unwrap();
        let mut send = conn.open_uni().await.unwrap();
        let chunk = Bytes::from(vec![3u8; 64 << 10]);
        let start = Instant::now();
        for _ in 0..total / (64 << 10) {
            send.write_chunk(chunk.clone()).await.unwrap();
        }
        send.finish().unwrap();
        let _ = send.stopped().await;
        start
    });
    let (n, end) = receiver.recv().unwrap();
    n as f64 / end.duration_since(start).as_secs_f64() / 1e6
}

struct Figures {
    rate: f64,
    small_mbs: f64,
    bulk_mbs: f64,
    raw_mbs: f64,
    p50: f64,
    p99: f64,
    p999: f64,
}

fn measure(ca: &Arc<DevCa>, tuning: &Tuning) -> Figures {
    let (rate, small_mbs) = small_messages(ca, tuning);
    let bulk_mbs = bulk(ca, tuning, 2 << 30);
    let raw_mbs = raw_quinn(ca, 2 << 30);
    let (p50, p99, p999) = round_trip(ca, tuning);
    Figures {
        rate,
        small_mbs,
        bulk_mbs,
        raw_mbs,
        p50,
        p99,
        p999,
    }
}

fn main() {
    let ca = Arc::new(DevCa::generate().unwrap());
    let tuning = Tuning::default();
    if let Some(only) = std::env::var_os("BENCH_BULK_ONLY") {
        CURRENT_THREAD.store(
            std::env::var("BENCH_RUNTIME").as_deref() == Ok("current"),
            Ordering::Relaxed,
        );
        if only != "ours" {
            println!("raw quinn: {:.0} MB/s", raw_quinn(&ca, 4 << 30));
        }
        println!("bulk: {:.0} MB/s", bulk(&ca, &tuning, 4 << 30));
        return;
    }
    CURRENT_THREAD.store(true, Ordering::Relaxed);
    let current = measure(&ca, &tuning);
    CURRENT_THREAD.store(false, Ordering::Relaxed);
    let multi = measure(&ca, &tuning);
    println!(
        "| two endpoints on 127.0.0.1, default tuning | current-thread runtime per node | 2-worker runtime per node |"
    );
    println!("|---|---|---|");
    println!(
        "| small messages: 256 B `Forward`, batches of 64 | {:.2} M msg/s ({:.0} MB/s) | {:.2} M msg/s ({:.0} MB/s) |",
        current.rate / 1e6,
        current.small_mbs,
        multi.rate / 1e6,
        multi.small_mbs
    );
    println!(
        "| bulk: one 64 KiB-entry `Append` per batch | {:.0} MB/s | {:.0} MB/s |",
        current.bulk_mbs, multi.bulk_mbs
    );
    println!(
        "| ceiling: raw quinn stream, 64 KiB writes, same settings | {:.0} MB/s | {:.0} MB/s |",
        current.raw_mbs, multi.raw_mbs
    );
    println!(
        "| round trip, one 64 B message each way: p50 / p99 / p99.9 | {:.0} / {:.0} / {:.0} µs | {:.0} / {:.0} / {:.0} µs |",
        current.p50, current.p99, current.p999, multi.p50, multi.p99, multi.p999
    );

    if std::env::var_os("BENCH_TUNING").is_some() {
        CURRENT_THREAD.store(true, Ordering::Relaxed);
        println!();
        println!("| tuning (current-thread runtimes) | bulk MB/s |");
        println!("|---|---|");
        let variants: Vec<(&str, Tuning)> = vec![
            (
                "default (GSO on, MTU <= 6000, 4 MiB socket buffers)",
                Tuning::default(),
            ),
            (
                "GSO off",
                Tuning {
                    gso: false,
                    ..Tuning::default()
                },
            ),
            (
                "MTU <= 1452 (quinn's default bound)",
                Tuning {
                    max_mtu: 1452,
                    ..Tuning::default()
                },
            ),
            (
                "MTU <= 9000",
                Tuning {
                    max_mtu: 9000,
                    ..Tuning::default()
                },
            ),
            (
                "MTU <= 16000",
                Tuning {
                    max_mtu: 16000,
                    ..Tuning::default()
                },
            ),
            (
                "socket buffers 208 KiB (kernel default)",
                Tuning {
                    udp_send_buffer: 208 << 10,
                    udp_recv_buffer: 208 << 10,
                    ..Tuning::default()
                },
            ),
        ];
        for (name, tuning) in variants {
            let mbs = bulk(&ca, &tuning, 1 << 30);
            println!("| {name} | {mbs:.0} |");
        }
    }
}
