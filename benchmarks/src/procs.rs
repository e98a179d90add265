//! Configuration `c`: three `raft-bench node` processes ([`crate::node`]), each with its
//! own write-ahead log and QUIC endpoint on 127.0.0.1, driven over the leader's HTTP API
//! with `POST /propose`, the payload as the request's body. Each client has its own
//! kept-alive connection ([`Connection`]); the few other requests (`GET /status`) use one
//! of their own.
//!
//! The processes are started for one run and stopped after it. Whatever happens, every
//! process started here is killed and reaped: the test kit's `NodeProcess` does it when dropped, and
//! the kernel does it if this process dies first (`PR_SET_PDEATHSIG`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use raft_runtime::raft_core::Role;
use raft_testkit::process::{NodeProcess, Ports};
use raft_transport_quic::DevCa;
use tempfile::TempDir;
use tokio::time::Instant;

use crate::http1::Connection;
use crate::node::{MAX_PAYLOAD, NodeStatus};
use crate::usage;
use crate::workload::{Client, Outcome};
use crate::{Counters, Error, Target, Usage, Workload};

/// How long the processes may take to start and elect a leader that commits.
const SETTLE: Duration = Duration::from_secs(30);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One `raft-bench node` child process.
struct Node {
    id: u64,
    http: SocketAddr,
    process: NodeProcess,
}

/// Three `raft-bench node` processes.
pub struct Processes {
    nodes: Vec<Node>,
    leader: SocketAddr,
    payload: Bytes,
    /// Whether every command goes through a client session.
    sessions: bool,
    /// Certificates and write-ahead logs, removed when dropped (after the processes).
    _dir: TempDir,
}

fn peer_list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",")
}

impl Processes {
    /// Starts three nodes of `exe` (`raft-bench node`) with their data under a new
    /// directory in `parent`, waits for a stable leader, and prepares a payload of
    /// `payload` bytes. `clients` is how many connections the load will hold open at once.
    pub async fn start(
        exe: &Path,
        payload: usize,
        clients: usize,
        snapshot_every: u64,
        sessions: bool,
        parent: &Path,
    ) -> Result<Processes, Error> {
        if payload > MAX_PAYLOAD {
            return Err(format!(
                "configuration c sends the payload as a request body, which a node takes up to {MAX_PAYLOAD} bytes; {payload} B is too large"
            )
            .into());
        }
        // What this load needs of the nodes' HTTP servers: every client's connection
        // served at once (plus a few for the status requests), and bodies of the payload's
        // size.
        let max_connections = clients.saturating_add(16);
        let dir = tempfile::Builder::new().prefix("nodes-c-").tempdir_in(parent)?;
        let certs = dir.path().join("certs");
        let ca = DevCa::generate()?;
        for id in 1..=3 {
            ca.write_node_files(&certs, id)?;
        }
        let mut ports = Ports::new();
        let mut raft = Vec::new();
        let mut http = Vec::new();
        for _ in 0..3 {
            raft.push(ports.udp()?);
            http.push(ports.tcp()?);
        }
        let mut nodes = Vec::new();
        for id in 1..=3u64 {
            let log = dir.path().join(format!("node-{id}.log"));
            let data = dir.path().join(format!("node-{id}"));
            let mut args: Vec<String> = vec![
                "node".into(),
                "--id".into(),
                id.to_string(),
                "--raft-addr".into(),
                raft[id as usize - 1].to_string(),
                "--http-addr".into(),
                http[id as usize - 1].to_string(),
                "--data-dir".into(),
                data.display().to_string(),
                "--certs".into(),
                certs.display().to_string(),
                "--peers".into(),
                peer_list(&raft),
                "--snapshot-every".into(),
                snapshot_every.to_string(),
                "--max-payload".into(),
                payload.to_string(),
                "--max-connections".into(),
                max_connections.to_string(),
            ];
            if sessions {
                args.push("--sessions".into());
            }
            nodes.push(Node {
                id,
                http: http[id as usize - 1],
                process: NodeProcess::start(exe, args, log, "warn")?,
            });
        }
        let mut processes = Processes {
            leader: nodes[0].http,
            nodes,
            payload: Bytes::from(vec![b'x'; payload]),
            sessions,
            _dir: dir,
        };
        processes.settle().await?;
        Ok(processes)
    }

    /// Waits until the three nodes agree on a leader and 100 proposals in a row succeed
    /// through it.
    async fn settle(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + SETTLE;
        loop {
            for node in &mut self.nodes {
                if let Some(status) = node.process.try_wait() {
                    return Err(format!(
                        "raft-bench node {} exited ({status}):\n{}",
                        node.id,
                        node.process.log_tail(10)
                    )
                    .into());
                }
            }
            if let Some(leader) = self.agreed_leader().await {
                self.leader = leader;
                let mut client = self.client();
                let mut stable = true;
                for _ in 0..100 {
                    if !matches!(client.call().await, Outcome::Done) {
                        stable = false;
                        break;
                    }
                }
                if stable {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| format!("node {}:\n{}", n.id, n.process.log_tail(10)))
                    .collect();
                return Err(format!(
                    "the nodes agreed on no stable leader within {SETTLE:?}\n{}",
                    logs.join("\n")
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The leader's HTTP address, once every node names it and it says it leads.
    async fn agreed_leader(&self) -> Option<SocketAddr> {
        let mut views = Vec::new();
        for node in &self.nodes {
            views.push(status(node.http).await.ok()?);
        }
        let leader = views[0].leader?;
        let agreed = views
            .iter()
            .all(|v| v.leader == Some(leader) && v.term == views[0].term);
        let leads = views.iter().any(|v| v.id == leader && v.role == Role::Leader);
        let node = self.nodes.iter().find(|n| n.id == leader)?;
        (agreed && leads).then_some(node.http)
    }

    fn client(&self) -> HttpClient {
        HttpClient {
            connection: Connection::post(self.leader, "/propose", &self.payload),
            leader: self.leader,
            session: self.sessions.then(|| ClientSession {
                id: None,
                seq: 0,
                payload: self.payload.clone(),
            }),
            read: None,
        }
    }

    /// Sends SIGTERM to every node and waits for it to stop; kills the ones that do not.
    async fn stop(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + STOP_GRACE;
        let mut failures = Vec::new();
        for node in &mut self.nodes {
            let left = deadline.saturating_duration_since(Instant::now());
            match node.process.terminate_within(left).await {
                Some(status) if status.success() => {}
                Some(status) => failures.push(format!(
                    "node {} exited with {status}:\n{}",
                    node.id,
                    node.process.log_tail(10)
                )),
                None => {
                    failures.push(format!(
                        "node {} did not stop within {STOP_GRACE:?}; killed",
                        node.id
                    ));
                    node.process.kill();
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("\n").into())
        }
    }
}

/// A node's `GET /status`, on a connection of its own.
async fn status(addr: SocketAddr) -> Result<NodeStatus, Error> {
    let mut connection = Connection::get(addr, "/status");
    let response = tokio::time::timeout(REQUEST_TIMEOUT, connection.send())
        .await
        .map_err(|_| format!("GET http://{addr}/status: no answer within {REQUEST_TIMEOUT:?}"))?
        .map_err(|e| format!("GET http://{addr}/status: {e}"))?;
    if response.status != 200 {
        return Err(format!(
            "GET http://{addr}/status: {} {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        )
        .into());
    }
    Ok(serde_json::from_slice(&response.body)?)
}

impl Target for Processes {
    type Client = HttpClient;

    fn clients(&self, n: usize, workload: Workload, _batch: usize) -> Result<Vec<HttpClient>, Error> {
        let followers: Vec<SocketAddr> = self
            .nodes
            .iter()
            .map(|n| n.http)
            .filter(|&a| a != self.leader)
            .collect();
        Ok((0..n)
            .map(|i| match workload {
                Workload::Write => self.client(),
                Workload::Read => HttpClient::reader(self.leader, "/applied"),
                Workload::LeaseRead => HttpClient::reader(self.leader, "/applied?lease"),
                Workload::FollowerRead => HttpClient::reader(followers[i % followers.len()], "/applied"),
            })
            .collect())
    }

    async fn counters(&self) -> Result<Counters, Error> {
        let mut counters = Counters::default();
        for node in &self.nodes {
            let status = status(node.http).await?;
            counters.fsyncs += status.fsyncs;
            counters.log_writes += status.log_writes;
            counters.wire_bytes += status.wire_bytes;
            if node.http == self.leader {
                counters.committed = status.commit;
            }
        }
        Ok(counters)
    }

    fn usage(&self) -> Usage {
        let mut nodes_cpu = Duration::ZERO;
        let mut memory = usage::Memory::default();
        for node in &self.nodes {
            if let Some(pid) = node.process.pid() {
                nodes_cpu += usage::process_cpu(pid);
                memory = memory + usage::memory(Some(pid));
            }
        }
        Usage {
            cpu: nodes_cpu + usage::self_cpu(),
            cpu_nodes: Some(nodes_cpu),
            memory,
        }
    }

    async fn shutdown(mut self) -> Result<(), Error> {
        self.stop().await
    }
}

/// A client that sends `POST /propose` to the leader, on a kept-alive connection of its
/// own (in a session of its own when the run uses sessions), or `GET /applied` to the node
/// it reads from.
pub struct HttpClient {
    connection: Connection,
    /// The node it sends to.
    leader: SocketAddr,
    session: Option<ClientSession>,
    /// The path it reads, for a reader.
    read: Option<&'static str>,
}

impl HttpClient {
    /// A client that reads `path` from the node at `addr`.
    fn reader(addr: SocketAddr, path: &'static str) -> HttpClient {
        HttpClient {
            connection: Connection::get(addr, path),
            leader: addr,
            session: None,
            read: Some(path),
        }
    }
}

/// A client's session: opened on the first call (in the warm-up).
struct ClientSession {
    id: Option<u64>,
    /// The last sequence number sent.
    seq: u64,
    payload: Bytes,
}

impl Client for HttpClient {
    async fn call(&mut self) -> Outcome {
        let leader = self.leader;
        if let Some(path) = self.read {
            return send_once(&mut self.connection, || format!("GET http://{leader}{path}")).await;
        }
        let Some(session) = &mut self.session else {
            return send_once(&mut self.connection, || format!("POST http://{leader}/propose")).await;
        };
        let id = match session.id {
            Some(id) => id,
            None => {
                let mut open = Connection::post(leader, "/sessions", b"");
                let response = match tokio::time::timeout(REQUEST_TIMEOUT, open.send()).await {
                    Ok(Ok(r)) if r.status == 200 => r,
                    Ok(Ok(r)) => return Outcome::Rejected(String::from_utf8_lossy(&r.body).into_owned()),
                    Ok(Err(e)) => return Outcome::Failed(format!("POST http://{leader}/sessions: {e}")),
                    Err(_) => return Outcome::Failed(format!("POST http://{leader}/sessions: no answer")),
                };
                match std::str::from_utf8(&response.body)
                    .ok()
                    .and_then(|b| b.parse().ok())
                {
                    Some(id) => *session.id.insert(id),
                    None => return Outcome::Failed("POST /sessions answered no session id".into()),
                }
            }
        };
        session.seq += 1;
        let path = format!("/propose?session={id}&seq={}", session.seq);
        self.connection.set_post(&path, &session.payload);
        send_once(&mut self.connection, || format!("POST http://{leader}{path}")).await
    }
}

/// Sends the request `connection` holds and classifies the answer: 200 done, 503 refused
/// for now (retried), anything else, a broken connection or no answer in time a failure,
/// named by `request` (called only then).
pub(crate) async fn send_once(connection: &mut Connection, request: impl Fn() -> String) -> Outcome {
    match tokio::time::timeout(REQUEST_TIMEOUT, connection.send()).await {
        Ok(Ok(response)) => match response.status {
            200 => Outcome::Done,
            503 => Outcome::Rejected(String::from_utf8_lossy(&response.body).into_owned()),
            status => Outcome::Failed(format!(
                "{}: {status} {}",
                request(),
                String::from_utf8_lossy(&response.body)
            )),
        },
        Ok(Err(e)) => Outcome::Failed(format!("{}: {e}", request())),
        Err(_) => Outcome::Failed(format!("{}: no answer within {REQUEST_TIMEOUT:?}", request())),
    }
}
