//! `counter demo`: a 3-node cluster in one process, on the real transport and the real
//! write-ahead log, taken through a leader failure and a recovery.
//!
//! Nothing here is simulated: each node has its own QUIC endpoint with mutual TLS on
//! 127.0.0.1, its own log directory, and its own HTTP API, and every increment and read
//! goes through that API, exactly as with `counter node` processes. Stopping the leader
//! stops all of it (Raft tasks, log, endpoint, HTTP server), and restarting it reopens its
//! log from disk.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use raft_runtime::Metrics;
use raft_runtime::raft_core::{NodeId, Role};
use raft_transport_quic::QuicError;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Error;
use crate::admin_token::AdminToken;
use crate::client::{Client, ClientError};
use crate::http::HttpLimits;
use crate::node::{BoundNode, Node, NodeConfig, NodeError};
use crate::outln;
use crate::output::OutputError;
use crate::peers::{self, PeerAddr};

/// Increments before the leader is stopped, spread over the three nodes.
const FIRST_INCREMENTS: u64 = 30;
/// Increments while it is down: more than `SNAPSHOT_EVERY`, so that the new leader
/// snapshots and compacts its log past the stopped node's, and the node must catch up
/// from a snapshot rather than from log entries alone.
const INCREMENTS_WHILE_DOWN: u64 = 150;
/// How many increments are in flight at once while the leader is down: enough to show
/// the log writer committing several per `fsync`.
const CONCURRENCY: u64 = 10;
/// Snapshot every this many entries (the default, 10,000, would never trigger here).
const SNAPSHOT_EVERY: u64 = 100;
/// How long any one step may take before the demo gives up. Generous: the demo must pass
/// on a slow, busy machine too.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// Arguments of `counter demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the nodes' logs and certificates in this directory (which must be empty or
    /// missing) instead of a temporary one that is removed at the end.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Runs the demo; fails with the step that went wrong.
pub async fn run(args: Args) -> Result<(), Error> {
    let started = Instant::now();
    let temp;
    let dir = match args.dir {
        Some(dir) => {
            if dir.read_dir().is_ok_and(|mut entries| entries.next().is_some()) {
                return Err(format!(
                    "{} is not empty; the demo starts a new cluster in an empty directory",
                    dir.display()
                )
                .into());
            }
            dir
        }
        None => {
            temp = tempfile::Builder::new().prefix("counter-demo-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    outln!("counter demo: a 3-node cluster in this process, on QUIC with mutual TLS over 127.0.0.1")?;
    outln!("data: {}", dir.display())?;
    outln!()?;

    // Certificates, written the way `counter certs` writes them and read back the way
    // `counter node` reads them.
    let certs = dir.join("certs");
    crate::certs::write(&certs, &[1, 2, 3], false)?;
    let text = format!(
        "a development CA, certificates for nodes 1, 2, 3 and an admin token in {}",
        certs.display()
    );
    step(1, "certificates", &text)?;

    let mut cluster = Cluster::start(&dir, &certs).await?;
    for (i, c) in cluster.configs.values().enumerate() {
        let text = format!(
            "node {}: raft {} (QUIC), http {}, log {}",
            c.id,
            c.raft_addr,
            c.http_addr,
            c.data_dir.display()
        );
        if i == 0 {
            step(2, "start", &text)?
        } else {
            more(&text)?
        }
    }

    let t = Instant::now();
    let (leader, term) = cluster.wait_for_leader(None).await?;
    step(
        3,
        "election",
        &format!("node {leader} leads (term {term}), elected in {:.1} s", secs(t)),
    )?;

    // Through every node in turn: followers forward the increments to the leader.
    let mut expected = 0;
    for i in 0..FIRST_INCREMENTS {
        let id = i % 3 + 1;
        let value = cluster.client(&[id]).incr(1).await?;
        expected += 1;
        check(
            value,
            expected,
            &format!("increment {expected} through node {id}"),
        )?;
    }
    let text = format!(
        "{FIRST_INCREMENTS} increments over HTTP, {} through each node: value = {expected}",
        FIRST_INCREMENTS / 3
    );
    step(4, "increments", &text)?;

    let stopped = leader;
    let last_index = cluster.stop(stopped).await?;
    let text =
        format!("stopped node {stopped}: its Raft tasks, write-ahead log, QUIC endpoint and HTTP server");
    step(5, "stop leader", &text)?;
    let t = Instant::now();
    let (leader, term) = cluster.wait_for_leader(Some(stopped)).await?;
    let leader_changes = 1;
    more(&format!(
        "node {leader} leads (term {term}), elected in {:.1} s",
        secs(t)
    ))?;
    let survivors: Vec<NodeId> = cluster.nodes.keys().copied().collect();
    let value = cluster.client(&survivors).get().await?;
    check(value, expected, "the value after the election")?;
    more(&format!(
        "value read through the survivors: {value} (nothing lost)"
    ))?;

    let done = increment_concurrently(cluster.client(&survivors)).await?;
    expected += done;
    let value = cluster.client(&survivors).get().await?;
    check(value, expected, "the value after the increments")?;
    let text = format!(
        "{done} more increments through nodes {} and {}, {CONCURRENCY} at a time: value = {value}",
        survivors[0], survivors[1]
    );
    step(6, "while down", &text)?;
    let compacted = cluster.nodes[&leader]
        .raft()
        .wait_for(STEP_TIMEOUT, |m| m.snapshot_index > last_index)
        .await;
    if let Ok(m) = compacted {
        more(&format!(
            "node {leader} snapshotted the counter at index {} and dropped the log before it",
            m.snapshot_index
        ))?;
    }

    let recovered = cluster.restart(stopped).await?;
    let text = format!(
        "node {stopped} reopened its write-ahead log: term {}, log up to index {}",
        recovered.term, recovered.last_log_index
    );
    step(7, "restart", &text)?;
    let target = cluster.nodes[&leader].raft().metrics().borrow().commit;
    let caught_up = cluster.nodes[&stopped]
        .raft()
        .wait_for(STEP_TIMEOUT, |m| m.applied >= target && m.leader.is_some())
        .await
        .map_err(|_| format!("node {stopped} did not catch up to index {target}"))?;
    let how = if caught_up.snapshots_installed > 0 {
        format!("installed node {leader}'s snapshot, then the entries after it")
    } else {
        "replayed the entries it missed".to_string()
    };
    more(&format!(
        "node {stopped} caught up: {how}; applied up to index {}",
        caught_up.applied
    ))?;
    let value = cluster.client(&[stopped]).get().await?;
    more(&format!("value read through node {stopped}: {value}"))?;

    for id in 1..=3 {
        let value = cluster.client(&[id]).get().await?;
        check(value, expected, &format!("the value read through node {id}"))?;
    }
    step(8, "agreement", &format!("all 3 nodes read value = {expected}"))?;

    cluster.shutdown().await?;
    outln!()?;
    outln!(
        "demo ok: value={expected} leader_changes={leader_changes} ({:.1} s)",
        secs(started)
    )?;
    Ok(())
}

/// The three nodes: the running ones, and how to start each again on the same ports.
struct Cluster {
    configs: BTreeMap<NodeId, NodeConfig>,
    raft_peers: Vec<PeerAddr>,
    http_peers: Vec<PeerAddr>,
    nodes: BTreeMap<NodeId, Node>,
}

impl Cluster {
    /// Binds three nodes to ports the OS picks, then bootstraps them with each other's
    /// addresses.
    async fn start(dir: &Path, certs: &Path) -> Result<Cluster, Error> {
        let mut configs = BTreeMap::new();
        let mut bound = Vec::new();
        for id in 1..=3 {
            let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
            let mut raft = NodeConfig::raft_defaults();
            raft.snapshot_every = SNAPSHOT_EVERY;
            let config = NodeConfig {
                id,
                raft_addr: any_port,
                http_addr: any_port,
                data_dir: dir.join(format!("node-{id}")),
                tls: crate::certs::load(certs, id)?,
                admin_token: AdminToken::load(&crate::certs::admin_token_file(certs))?,
                http_limits: HttpLimits::default(),
                raft,
            };
            let node = BoundNode::bind(config.clone()).await?;
            // A restart must come back on the same ports: they are in the membership.
            let config = NodeConfig {
                raft_addr: node.raft_addr(),
                http_addr: node.http_addr(),
                ..config
            };
            configs.insert(id, config);
            bound.push((id, node));
        }
        let peers = |addr: fn(&NodeConfig) -> SocketAddr| {
            configs
                .values()
                .map(|c| PeerAddr {
                    id: c.id,
                    addr: addr(c).to_string(),
                })
                .collect()
        };
        let mut cluster = Cluster {
            raft_peers: peers(|c| c.raft_addr),
            http_peers: peers(|c| c.http_addr),
            configs,
            nodes: BTreeMap::new(),
        };
        for (id, node) in bound {
            let node = node.start(cluster.start_mode(id)?).await?;
            cluster.nodes.insert(id, node);
        }
        Ok(cluster)
    }

    fn start_mode(&self, id: NodeId) -> Result<peers::StartMode, Error> {
        Ok(peers::bootstrap(id, &self.raft_peers, &self.http_peers)?)
    }

    /// A client of the nodes `ids` only: the demo chooses which nodes take each request.
    fn client(&self, ids: &[NodeId]) -> Client {
        Client::new(ids.iter().map(|id| self.configs[id].http_addr.to_string())).with_deadline(STEP_TIMEOUT)
    }

    /// Waits until every running node follows the same leader, other than `not`.
    async fn wait_for_leader(&self, not: Option<NodeId>) -> Result<(NodeId, u64), Error> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let views: Vec<_> = self
                .nodes
                .values()
                .map(|n| {
                    let m = n.raft().metrics().borrow().clone();
                    (m.leader, m.term, m.role, m.id)
                })
                .collect();
            if let Some((Some(leader), term, _, _)) = views.first().copied()
                && Some(leader) != not
                && views.iter().all(|v| v.0 == Some(leader) && v.1 == term)
                && views.iter().any(|v| v.3 == leader && v.2 == Role::Leader)
            {
                return Ok((leader, term));
            }
            if Instant::now() >= deadline {
                return Err(format!("no leader agreed on within {STEP_TIMEOUT:?}: {views:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops node `id` entirely; returns the index of the last entry in its log.
    async fn stop(&mut self, id: NodeId) -> Result<u64, Error> {
        let node = self.nodes.remove(&id).ok_or("no such node")?;
        let last_index = node.raft().metrics().borrow().last_log_index;
        node.shutdown().await?;
        Ok(last_index)
    }

    /// Starts node `id` again on its old ports; returns its metrics as recovered from its
    /// log. The ports were just released, and a UDP socket can take a moment to close
    /// after its endpoint stops, so a busy port is retried for a while.
    async fn restart(&mut self, id: NodeId) -> Result<Metrics, Error> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let bound = loop {
            match BoundNode::bind(self.configs[&id].clone()).await {
                Ok(bound) => break bound,
                Err(NodeError::Transport(QuicError::Bind { .. }) | NodeError::HttpBind { .. })
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let node = bound.start(self.start_mode(id)?).await?;
        let recovered = node.raft().metrics().borrow().clone();
        self.nodes.insert(id, node);
        Ok(recovered)
    }

    async fn shutdown(self) -> Result<(), Error> {
        for (_, node) in self.nodes {
            node.shutdown().await?;
        }
        Ok(())
    }
}

/// Sends `INCREMENTS_WHILE_DOWN` increments, `CONCURRENCY` at a time; returns how many.
async fn increment_concurrently(client: Client) -> Result<u64, Error> {
    let client = Arc::new(client);
    let per_worker = INCREMENTS_WHILE_DOWN / CONCURRENCY;
    let mut workers = JoinSet::new();
    for _ in 0..CONCURRENCY {
        let client = client.clone();
        workers.spawn(async move {
            for _ in 0..per_worker {
                client.incr(1).await?;
            }
            Ok::<_, ClientError>(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(per_worker * CONCURRENCY)
}

fn check(value: u64, expected: u64, what: &str) -> Result<(), Error> {
    if value == expected {
        Ok(())
    } else {
        Err(format!("{what} is {value}, expected {expected}").into())
    }
}

fn step(n: u32, title: &str, text: &str) -> Result<(), OutputError> {
    outln!("{n}. {title:<14}{text}")
}

fn more(text: &str) -> Result<(), OutputError> {
    outln!("{:17}{text}", "")
}

fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}
