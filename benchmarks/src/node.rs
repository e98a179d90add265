//! Configuration `c`'s node: `raft-bench node`, a hidden subcommand that the benchmark
//! starts three times (see `procs`).
//!
//! A node is what a deployed service is made of: the file write-ahead log, QUIC with
//! mutual TLS, the runtime, and an HTTP API in front, in a process of its own. Its state
//! machine is the benchmark's [`Sink`] of [`Bytes`]: the command is the payload, which is
//! replicated, logged and applied by counting it, so that the figures are those of the
//! runtime and the service around it, not of a model. Its HTTP/1.1 API is the least a load
//! generator needs:
//!
//! | request | body | answer |
//! |---|---|---|
//! | `POST /propose` | the payload, raw bytes | `200` (empty) once applied; `503` definitely not applied (busy, no leader), sent again by the client; `504` outcome unknown |
//! | `GET /status` | | `200` [`NodeStatus`] as JSON: role, term, leader, commit index, and the counters the benchmark reads |
//! | `GET /applied` | | `200` the number of commands this node has applied, as decimal text, read linearizably (ReadIndex; on a follower, the leader confirms the index); `503` busy or no leader; `504` not confirmed in time |
//! | `GET /applied?lease` | | the same, served from the leader's lease while it holds one |
//! | `POST /sessions` | | with `--sessions`: `200`, a new client session's id as decimal text |
//! | `POST /propose?session=S&seq=K` | the payload | with `--sessions`: command `K` of session `S` (the client has its answers up to `K - 1`), applied at most once however often it is sent, retried by the node until a definite answer (as `POST /propose` otherwise) |
//!
//! A follower forwards proposals to the leader (`Config::forward_proposals`), although the
//! benchmark sends them to the leader only.
//!
//! What a client may cost the node is bounded, as in a service: at most
//! `--max-connections` connections are served at once (more wait, unaccepted); a request
//! head must arrive within [`HEAD_TIMEOUT`] (also how long a kept-alive connection may sit
//! idle) and be at most [`MAX_HEAD`]; a body must arrive within [`BODY_TIMEOUT`] and be at
//! most `--max-payload` bytes, itself at most [`MAX_PAYLOAD`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use raft_runtime::raft_core::{NodeId, Role};
use raft_runtime::{Config, MemberInfo, Raft, ReadError, SessionConfig};
use raft_storage_file::{FileLogStore, Options};
use raft_transport_quic::{QuicConfig, QuicTransport, TlsConfig};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::Error;
use crate::cli::parse_size;
use crate::machine::Sink;

/// The largest `--max-payload`: 1 MiB.
pub const MAX_PAYLOAD: usize = 1024 * 1024;
/// The largest request head (request line and headers) a connection reads.
pub const MAX_HEAD: usize = 16 * 1024;
/// How long a request head may take to arrive, counted from the connection's start or
/// the previous answer.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request body may take to arrive after its head.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long stopping waits for open connections and for the log store's last users.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Arguments of `raft-bench node`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// This node's id.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    id: NodeId,
    /// Where to listen for Raft traffic (QUIC over UDP), IP:PORT.
    #[arg(long)]
    raft_addr: SocketAddr,
    /// Where to serve HTTP, IP:PORT.
    #[arg(long)]
    http_addr: SocketAddr,
    /// The write-ahead log's directory (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// The directory holding ca.pem, node-ID.pem and node-ID.key
    /// (`raft_transport_quic::DevCa::write_node_files`).
    #[arg(long)]
    certs: PathBuf,
    /// The Raft addresses of the three members, this node included (ID=IP:PORT,...): the
    /// cluster bootstraps from them.
    #[arg(long, value_delimiter = ',', required = true, value_parser = parse_peer)]
    peers: Vec<(NodeId, SocketAddr)>,
    /// Snapshot and compact the log every this many entries.
    #[arg(long, default_value_t = 10_000)]
    snapshot_every: u64,
    /// The largest payload (`POST /propose` body) taken; 413 beyond it. At most 1 MiB.
    #[arg(long, default_value = "4KiB", value_parser = parse_max_payload)]
    max_payload: usize,
    /// Serve at most this many connections at once; more wait, unaccepted.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: u32,
    /// Turn client sessions on (`POST /sessions`, `POST /propose?session=S&seq=K`).
    #[arg(long)]
    sessions: bool,
}

fn parse_peer(s: &str) -> Result<(NodeId, SocketAddr), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not ID=IP:PORT"))?;
    let id: NodeId = match id.trim().parse() {
        Ok(0) | Err(_) => return Err(format!("`{id}` in `{s}` is not a node id")),
        Ok(id) => id,
    };
    let addr = addr
        .trim()
        .parse()
        .map_err(|_| format!("`{addr}` in `{s}` is not IP:PORT"))?;
    Ok((id, addr))
}

fn parse_max_payload(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    if n > MAX_PAYLOAD {
        return Err(format!("at most {MAX_PAYLOAD} bytes (1 MiB)"));
    }
    Ok(n)
}

/// `GET /status`: what the benchmark reads from a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's id.
    pub id: NodeId,
    /// Its role in its current term.
    pub role: Role,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub commit: u64,
    /// fsyncs on its log store's write path so far.
    pub fsyncs: u64,
    /// Writes its log store made durable so far.
    pub log_writes: u64,
    /// Bytes its transport sent to the other nodes so far.
    pub wire_bytes: u64,
}

/// The node's HTTP server's bounds.
#[derive(Clone, Copy, Debug)]
struct Limits {
    max_payload: usize,
    max_connections: usize,
}

/// Runs the node until SIGINT or SIGTERM (exit 0 after a clean stop), or until it stops
/// by itself after a fatal error (an error naming it).
pub async fn run(args: Args) -> Result<(), Error> {
    let mut members = BTreeMap::new();
    for &(id, addr) in &args.peers {
        if members.insert(id, MemberInfo::new(addr.to_string())).is_some() {
            return Err(format!("node {id} is listed twice in --peers").into());
        }
    }
    if !members.contains_key(&args.id) {
        return Err(format!("node {} is not in --peers", args.id).into());
    }
    // Installed before anything starts, so that a signal always means a clean stop.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let tls = TlsConfig::from_pem_files(
        args.certs.join("ca.pem"),
        args.certs.join(format!("node-{}.pem", args.id)),
        args.certs.join(format!("node-{}.key", args.id)),
    )?;
    let dir = args.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || FileLogStore::open(dir, Options::default()))
        .await
        .expect("opening the log store panicked")
        .map_err(|e| {
            format!(
                "cannot open the write-ahead log in {}: {e}",
                args.data_dir.display()
            )
        })?;
    let store = Arc::new(store);
    let listener = TcpListener::bind(args.http_addr)
        .await
        .map_err(|e| format!("cannot bind HTTP on {}: {e}", args.http_addr))?;
    let transport = QuicTransport::bind(QuicConfig::new(args.raft_addr, tls)).await?;

    let config = Config {
        snapshot_every: args.snapshot_every,
        forward_proposals: true,
        sessions: args.sessions.then(SessionConfig::default),
        ..Config::default()
    };
    let raft = Raft::builder(args.id)
        .config(config)
        .state_machine(Sink::<Bytes>::default())
        .log_store(store.clone())
        .transport(transport)
        .bootstrap(members)
        .start()
        .await?;

    let limits = Limits {
        max_payload: args.max_payload,
        max_connections: args.max_connections as usize,
    };
    let (stop_http, stopped) = watch::channel(false);
    let server = tokio::spawn(serve(listener, raft.clone(), limits, stopped));
    let fatal = tokio::select! {
        _ = terminate.recv() => None,
        _ = interrupt.recv() => None,
        reason = failed(&raft) => Some(reason),
    };
    // Stop taking connections, answer what is in flight (the runtime's shutdown resolves
    // every pending proposal), let the connections close, then close the log.
    let _ = stop_http.send(true);
    raft.shutdown().await;
    let mut server = server;
    if tokio::time::timeout(STOP_GRACE, &mut server).await.is_err() {
        tracing::warn!("connections still open after {STOP_GRACE:?}; dropping them");
        server.abort();
    }
    drop(raft);
    let closed = close_store(store).await;
    match fatal {
        Some(reason) => Err(format!("node {} stopped after a fatal error: {reason}", args.id).into()),
        None => closed,
    }
}

/// Resolves if the node stops by itself after a fatal error, with the reason.
async fn failed(raft: &Raft<Sink<Bytes>>) -> String {
    let mut metrics = raft.metrics();
    loop {
        if let Some(fatal) = metrics.borrow_and_update().fatal.clone() {
            return fatal.to_string();
        }
        if metrics.changed().await.is_err() {
            return "the node stopped".into();
        }
    }
}

/// Closes the store: flushes it and releases its directory lock. A stopped node holds no
/// reference to its store (its shutdown awaits every task it started), so this is the last
/// one; should anything else still hold it, it closes when that lets go.
async fn close_store(store: Arc<FileLogStore>) -> Result<(), Error> {
    match Arc::try_unwrap(store) {
        Ok(store) => tokio::task::spawn_blocking(move || store.close())
            .await
            .expect("closing the log store panicked")
            .map_err(|e| format!("closing the write-ahead log: {e}").into()),
        Err(_) => {
            tracing::warn!("the log store is still referenced after shutdown; it closes when released");
            Ok(())
        }
    }
}

/// Serves HTTP on `listener` until `stop` turns true, then asks every connection to close
/// once its request in flight is answered, and returns when they have.
async fn serve(
    listener: TcpListener,
    raft: Raft<Sink<Bytes>>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        // The permit is taken before accepting: past the limit, connections wait in the
        // kernel's backlog instead of costing this process a task and buffers.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = stopped(&mut stop) => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let raft = raft.clone();
        let mut stop = stop.clone();
        connections.spawn(async move {
            let _permit = permit;
            let service = service_fn(move |request| handle(request, raft.clone(), limits));
            let mut connection = pin!(
                http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .max_buf_size(MAX_HEAD)
                    .serve_connection(TokioIo::new(stream), service)
            );
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = stopped(&mut stop) => {}
            }
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn handle(
    request: Request<Incoming>,
    raft: Raft<Sink<Bytes>>,
    limits: Limits,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match (request.method(), request.uri().path()) {
        (&Method::POST, "/propose") => propose(request, &raft, limits).await,
        (&Method::POST, "/sessions") => match raft.open_session(SESSION_TIMEOUT).await {
            Ok(session) => text(StatusCode::OK, session.id().to_string()),
            Err(e) if e.is_definitely_not_applied() => text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            Err(e) => text(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
        },
        (&Method::GET, "/status") => status(&raft),
        (&Method::GET, "/applied") => match request.uri().query() {
            None => applied(raft.read(|sm| sm.applied()).await),
            Some("lease") => applied(raft.lease_read(|sm| sm.applied()).await),
            Some(other) => text(
                StatusCode::BAD_REQUEST,
                format!("unknown query `{other}`: GET /applied takes `?lease` or nothing"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "the routes are POST /propose, POST /sessions, GET /applied and GET /status".to_string(),
        ),
    })
}

/// `POST /propose`: replicates the body and answers once it is applied.
async fn propose(
    request: Request<Incoming>,
    raft: &Raft<Sink<Bytes>>,
    limits: Limits,
) -> Response<Full<Bytes>> {
    // `?session=S&seq=K`: a command in a session.
    let in_session = match request.uri().query().map(session_query) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return text(StatusCode::BAD_REQUEST, e),
    };
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a payload is at most {} bytes", limits.max_payload),
        )
    };
    // A declared length over the limit is refused before a byte of the body is read; a
    // chunked body is counted as it arrives.
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_payload as u64) {
        return too_large();
    }
    let read = Limited::new(request.into_body(), limits.max_payload).collect();
    let payload = match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        Ok(Err(e)) => return text(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}")),
        Err(_) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {BODY_TIMEOUT:?}"),
            );
        }
    };
    let outcome = match in_session {
        None => raft.propose(payload).await,
        Some((session, seq)) => {
            raft.propose_in_session(session, seq, seq - 1, payload, SESSION_TIMEOUT)
                .await
        }
    };
    match outcome {
        Ok(()) => Response::new(Full::new(Bytes::new())),
        Err(e) if e.is_definitely_not_applied() => text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => text(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
    }
}

/// `GET /applied`: the commands this node's state machine has applied, read linearizably
/// (or from the leader's lease): 200 and the count; 503 busy, or no leader to confirm the
/// read; 504 not confirmed in time.
fn applied(read: Result<u64, ReadError>) -> Response<Full<Bytes>> {
    match read {
        Ok(count) => text(StatusCode::OK, count.to_string()),
        Err(e @ ReadError::Timeout) => text(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// How long a command in a session is retried before its outcome is reported unknown.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads `session=S&seq=K` (both numbers, `K` at least 1).
fn session_query(query: &str) -> Result<(u64, u64), String> {
    let (mut session, mut seq) = (None, None);
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("`{pair}`: not a number"))
        };
        match key {
            "session" => session = Some(number()?),
            "seq" => seq = Some(number()?),
            _ => return Err(format!("unknown query parameter `{key}`")),
        }
    }
    match (session, seq) {
        (Some(session), Some(seq)) if seq > 0 => Ok((session, seq)),
        _ => Err("a command in a session needs `session=S&seq=K` with K at least 1".into()),
    }
}

/// `GET /status`.
fn status(raft: &Raft<Sink<Bytes>>) -> Response<Full<Bytes>> {
    let status = {
        let metrics = raft.metrics();
        let m = metrics.borrow();
        NodeStatus {
            id: m.id,
            role: m.role,
            term: m.term,
            leader: m.leader,
            commit: m.commit,
            fsyncs: m.store.fsyncs,
            log_writes: m.store.writes,
            wire_bytes: m.transport.bytes_sent,
        }
    };
    let body = serde_json::to_vec(&status).expect("a status always serializes");
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_peers_and_payload_limits() {
        assert_eq!(
            parse_peer("2=127.0.0.1:7001"),
            Ok((2, "127.0.0.1:7001".parse().unwrap()))
        );
        assert!(parse_peer("0=127.0.0.1:7001").is_err());
        assert!(parse_peer("127.0.0.1:7001").is_err());
        assert!(parse_peer("1=localhost").is_err());
        assert_eq!(parse_max_payload("4KiB"), Ok(4096));
        assert_eq!(parse_max_payload("1MiB"), Ok(MAX_PAYLOAD));
        assert!(parse_max_payload("2MiB").is_err());
    }
}
