//! `kv node` processes, started as a user starts them (the flags the README gives).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kv::api::StatusResponse;
use raft_testkit::process::{NodeProcess, Ports};

use super::KV;

/// One node process and its addresses.
pub struct Node {
    /// Its Raft (QUIC) address.
    pub raft: SocketAddr,
    /// Its HTTP address.
    pub http: SocketAddr,
    /// The process.
    pub process: NodeProcess,
}

/// The nodes; dropping them prints the end of each node's log if the test fails, then
/// kills and reaps every process.
pub struct Nodes(pub Vec<Node>);

impl Drop for Nodes {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in &self.0 {
                eprintln!(
                    "----- {} -----\n{}",
                    node.process.log().display(),
                    node.process.log_tail(30)
                );
            }
        }
    }
}

impl Nodes {
    /// `ID=ADDR,...` of the nodes' Raft or HTTP addresses.
    pub fn list(&self, f: fn(&Node) -> SocketAddr) -> String {
        self.0
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{}={}", i + 1, f(n)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Node `id`'s data directory under `dir`.
pub fn data_dir(dir: &Path, id: usize) -> PathBuf {
    dir.join(format!("node-{id}"))
}

fn spawn(dir: &Path, certs: &Path, id: usize, membership: &[String], extra: &[&str]) -> Node {
    let mut ports = Ports::new();
    let (raft, http) = (ports.udp().unwrap(), ports.tcp().unwrap());
    spawn_at(dir, certs, id, raft, http, membership, extra)
}

fn spawn_at(
    dir: &Path,
    certs: &Path,
    id: usize,
    raft: SocketAddr,
    http: SocketAddr,
    membership: &[String],
    extra: &[&str],
) -> Node {
    let mut args: Vec<String> = [
        "node",
        "--id",
        &id.to_string(),
        "--raft-addr",
        &raft.to_string(),
        "--http-addr",
        &http.to_string(),
        "--data-dir",
        &data_dir(dir, id).display().to_string(),
        "--certs",
        &certs.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    args.extend(membership.iter().cloned());
    args.extend(extra.iter().map(|s| s.to_string()));
    let log = dir.join(format!("node-{id}.log"));
    let process = NodeProcess::start(KV, args, log, "info").expect("spawn kv node");
    Node { raft, http, process }
}

/// Starts `kv node` for ids 1, 2, 3 in `dir`, bootstrapping a cluster, with `extra` flags.
pub fn start(dir: &Path, certs: &Path, extra: &[&str]) -> Nodes {
    let mut ports = Ports::new();
    let addrs: Vec<(SocketAddr, SocketAddr)> = (0..3)
        .map(|_| (ports.udp().unwrap(), ports.tcp().unwrap()))
        .collect();
    let list = |f: fn(&(SocketAddr, SocketAddr)) -> SocketAddr| {
        addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={}", i + 1, f(a)))
            .collect::<Vec<_>>()
            .join(",")
    };
    let membership = vec![
        "--peers".to_string(),
        list(|a| a.0),
        "--peers-http".to_string(),
        list(|a| a.1),
    ];
    Nodes(
        addrs
            .iter()
            .enumerate()
            .map(|(i, &(raft, http))| spawn_at(dir, certs, i + 1, raft, http, &membership, extra))
            .collect(),
    )
}

/// Starts `kv node --join` for `id`, to be added to the cluster of `members` (the first
/// nodes of the cluster, ids from 1).
pub fn start_joining(dir: &Path, certs: &Path, id: usize, members: &Nodes, extra: &[&str]) -> Node {
    let membership = vec![
        "--join".to_string(),
        "--peers".to_string(),
        members.list(|n| n.raft),
    ];
    spawn(dir, certs, id, &membership, extra)
}

/// A node's `/status`, if it answers.
pub async fn status(http: &reqwest::Client, node: &Node) -> Option<StatusResponse> {
    let r = http
        .get(format!("http://{}/status", node.http))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

/// A node's `/metrics` text.
pub async fn metrics(http: &reqwest::Client, node: &Node) -> String {
    let r = http.get(format!("http://{}/metrics", node.http)).send().await;
    r.expect("GET /metrics").text().await.expect("metrics text")
}
