//! What a service's `demo` command is built from: a 3-node cluster in one process, on the
//! real transport and the real write-ahead log, whose nodes can be stopped and started
//! again; and the demo's numbered steps on stdout.
//!
//! Nothing in such a cluster is simulated: each node has its own QUIC endpoint with mutual
//! TLS on 127.0.0.1, its own data directory, and its own HTTP API, exactly as with `node`
//! processes. Stopping a node stops all of it (Raft tasks, log, endpoint, HTTP server),
//! and restarting it reopens its data directory from disk.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use raft_runtime::raft_core::{NodeId, Role};
use raft_runtime::{Config, Metrics};
use raft_transport_quic::QuicError;
use tempfile::TempDir;
use tokio::time::Instant;

use crate::admin_token::AdminToken;
use crate::http::HttpLimits;
use crate::node::{BoundNode, Node, NodeConfig, NodeError};
use crate::output::OutputError;
use crate::peers::{self, PeerAddr};
use crate::{Error, Service, outln};

/// Arguments of the `demo` command.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the nodes' logs and certificates in this directory (which must be empty or
    /// missing) instead of a temporary one that is removed at the end.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Where a demo keeps its files: the directory `--dir` names, or a temporary one.
pub struct DemoDir {
    path: PathBuf,
    /// Removes the temporary directory when dropped.
    _temp: Option<TempDir>,
}

impl DemoDir {
    /// The directory `args` names, which must be empty or missing (the demo starts a new
    /// cluster), or else a new temporary directory named after service `S`, removed when
    /// this is dropped.
    pub fn new<S: Service>(args: &Args) -> Result<DemoDir, Error> {
        match &args.dir {
            Some(dir) => {
                if dir.read_dir().is_ok_and(|mut entries| entries.next().is_some()) {
                    return Err(format!(
                        "{} is not empty; the demo starts a new cluster in an empty directory",
                        dir.display()
                    )
                    .into());
                }
                Ok(DemoDir {
                    path: dir.clone(),
                    _temp: None,
                })
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix(&format!("{}-demo-", S::NAME))
                    .tempdir()?;
                Ok(DemoDir {
                    path: temp.path().to_path_buf(),
                    _temp: Some(temp),
                })
            }
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Three nodes of service `S`: the running ones, and how to start each again on the same
/// ports.
pub struct Cluster<S: Service> {
    configs: BTreeMap<NodeId, NodeConfig>,
    raft_peers: Vec<PeerAddr>,
    http_peers: Vec<PeerAddr>,
    nodes: BTreeMap<NodeId, Node<S>>,
    step_timeout: Duration,
}

impl<S: Service> Cluster<S> {
    /// Binds three nodes (ids 1, 2, 3; data in `dir/node-<id>`, certificates and admin
    /// token from `certs`) to ports the OS picks, then bootstraps them with each other's
    /// addresses. Each runs with the runtime settings `raft`. Waits (for a leader, a
    /// catch-up, a port to be free again) give up after `step_timeout`.
    pub async fn start(
        dir: &Path,
        certs: &Path,
        raft: Config,
        step_timeout: Duration,
    ) -> Result<Cluster<S>, Error> {
        let mut configs = BTreeMap::new();
        let mut bound = Vec::new();
        for id in 1..=3 {
            let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
            let config = NodeConfig {
                id,
                raft_addr: any_port,
                http_addr: any_port,
                data_dir: dir.join(format!("node-{id}")),
                tls: crate::certs::load(certs, id)?,
                admin_token: AdminToken::load(&crate::certs::admin_token_file(certs))?,
                http_limits: HttpLimits::default(),
                raft: raft.clone(),
                log: NodeConfig::log_defaults(),
            };
            let node = BoundNode::<S>::bind(config.clone()).await?;
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
            step_timeout,
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

    /// Each node's configuration, by id (running or not).
    pub fn configs(&self) -> &BTreeMap<NodeId, NodeConfig> {
        &self.configs
    }

    /// The running nodes, by id.
    pub fn nodes(&self) -> &BTreeMap<NodeId, Node<S>> {
        &self.nodes
    }

    /// The HTTP addresses of nodes `ids`, for a client of those nodes only: the demo
    /// chooses which nodes take each request.
    pub fn http_addrs(&self, ids: &[NodeId]) -> Vec<String> {
        ids.iter()
            .map(|id| self.configs[id].http_addr.to_string())
            .collect()
    }

    /// A client of the nodes `ids` only (the demo chooses which nodes take each request)
    /// that gives up after the step timeout: `C` is the service's client (see
    /// [`service_client!`](crate::service_client)).
    pub fn client<C: From<crate::client::Client>>(&self, ids: &[NodeId]) -> C {
        C::from(crate::client::Client::new(self.http_addrs(ids)).with_deadline(self.step_timeout))
    }

    /// Waits until every running node follows the same leader, other than `not`; returns
    /// it and its term.
    pub async fn wait_for_leader(&self, not: Option<NodeId>) -> Result<(NodeId, u64), Error> {
        let deadline = Instant::now() + self.step_timeout;
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
                return Err(format!("no leader agreed on within {:?}: {views:?}", self.step_timeout).into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops node `id` entirely; returns the index of the last entry in its log.
    pub async fn stop(&mut self, id: NodeId) -> Result<u64, Error> {
        let node = self.nodes.remove(&id).ok_or("no such node")?;
        let last_index = node.raft().metrics().borrow().last_log_index;
        node.shutdown().await?;
        Ok(last_index)
    }

    /// Starts node `id` again on its old ports; returns its metrics as recovered from its
    /// data directory. The ports were just released, and a UDP socket can take a moment
    /// to close after its endpoint stops, so a busy port is retried for a while.
    pub async fn restart(&mut self, id: NodeId) -> Result<Metrics, Error> {
        let deadline = Instant::now() + self.step_timeout;
        let bound = loop {
            match BoundNode::<S>::bind(self.configs[&id].clone()).await {
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

    /// Stops every running node.
    pub async fn shutdown(self) -> Result<(), Error> {
        for (_, node) in self.nodes {
            node.shutdown().await?;
        }
        Ok(())
    }
}

/// Fails naming `what` unless `value` is `expected`.
pub fn check<T: PartialEq + std::fmt::Debug>(value: T, expected: T, what: &str) -> Result<(), Error> {
    if value == expected {
        Ok(())
    } else {
        Err(format!("{what} is {value:?}, expected {expected:?}").into())
    }
}

/// Prints step `n` of the demo: its title, then its first line.
pub fn step(n: u32, title: &str, text: &str) -> Result<(), OutputError> {
    outln!("{n}. {title:<14}{text}")
}

/// Prints another line of the current step.
pub fn more(text: &str) -> Result<(), OutputError> {
    outln!("{:17}{text}", "")
}

/// Seconds since `since`.
pub fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}
