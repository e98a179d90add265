//! Configurations `a` and `b`: three nodes in this process, driven through the leader's
//! [`Raft`], with the [`Sink`] state machine.
//!
//! - `a`: the in-memory log store and network the runtime ships for tests (no fsync, no
//!   serialization between nodes), the conditions of openraft's `benchmarks/minimal`.
//! - `b`: the file write-ahead log (one `fdatasync` per group commit) and QUIC with
//!   mutual TLS over 127.0.0.1, each node on its own endpoint.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use raft_runtime::{Config, MemLogStore, MemNetwork, MemberInfo, Raft};
use raft_storage_file::{FileLogStore, Options};
use raft_transport_quic::{DevCa, QuicConfig, QuicTransport};
use tempfile::TempDir;
use tokio::time::Instant;

use crate::machine::{Payload, Sink};
use crate::usage;
use crate::workload::{Client, Outcome};
use crate::{Counters, Error, Target, Usage};

/// How long the cluster may take to elect a leader that commits.
const SETTLE: Duration = Duration::from_secs(30);

/// Three nodes in this process.
pub struct InProcess<P: Payload> {
    nodes: Vec<Raft<Sink<P>>>,
    leader: Raft<Sink<P>>,
    /// The file stores of configuration `b`, closed after the nodes stop.
    stores: Vec<Arc<FileLogStore>>,
    payload: P,
    /// The write-ahead logs of configuration `b`, removed when the cluster is dropped.
    _dir: Option<TempDir>,
}

fn raft_config(snapshot_every: u64) -> Config {
    Config {
        snapshot_every,
        ..Config::default()
    }
}

impl<P: Payload> InProcess<P> {
    /// Configuration `a`: in-memory log stores and network.
    pub async fn start_in_memory(payload: usize, snapshot_every: u64) -> Result<InProcess<P>, Error> {
        let network = MemNetwork::new();
        let members: BTreeMap<u64, MemberInfo> = (1..=3)
            .map(|id| (id, MemberInfo::new(format!("node-{id}"))))
            .collect();
        let mut nodes = Vec::new();
        for id in 1..=3 {
            let node = Raft::builder(id)
                .config(raft_config(snapshot_every))
                .state_machine(Sink::default())
                .log_store(MemLogStore::new())
                .transport(network.transport(id))
                .bootstrap(members.clone())
                .start()
                .await?;
            nodes.push(node);
        }
        InProcess::settle(nodes, Vec::new(), payload, None).await
    }

    /// Configuration `b`: a write-ahead log per node in a new directory under `parent`,
    /// and QUIC with mutual TLS (certificates from a fresh development CA) on 127.0.0.1.
    pub async fn start_durable(
        payload: usize,
        snapshot_every: u64,
        parent: &Path,
    ) -> Result<InProcess<P>, Error> {
        let dir = tempfile::Builder::new().prefix("wal-b-").tempdir_in(parent)?;
        let ca = DevCa::generate()?;
        let mut stores = Vec::new();
        let mut transports = Vec::new();
        for id in 1..=3 {
            let path = dir.path().join(format!("node-{id}"));
            let store = tokio::task::spawn_blocking(move || FileLogStore::open(path, Options::default()))
                .await
                .expect("opening a log store panicked")?;
            stores.push(Arc::new(store));
            let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
            let quic = QuicConfig::new(listen, ca.node_tls(id)?);
            transports.push(Arc::new(QuicTransport::bind(quic).await?));
        }
        let members: BTreeMap<u64, MemberInfo> = transports
            .iter()
            .map(|t| (t.node_id(), MemberInfo::new(t.local_addr().to_string())))
            .collect();
        let mut nodes = Vec::new();
        for (store, transport) in stores.iter().zip(transports) {
            let node = Raft::builder(transport.node_id())
                .config(raft_config(snapshot_every))
                .state_machine(Sink::default())
                .log_store(store.clone())
                .transport(transport)
                .bootstrap(members.clone())
                .start()
                .await?;
            nodes.push(node);
        }
        InProcess::settle(nodes, stores, payload, Some(dir)).await
    }

    /// Waits for a stable leader: one through which 100 proposals in a row succeed.
    async fn settle(
        nodes: Vec<Raft<Sink<P>>>,
        stores: Vec<Arc<FileLogStore>>,
        payload: usize,
        dir: Option<TempDir>,
    ) -> Result<InProcess<P>, Error> {
        let payload = P::of_size(payload);
        let deadline = Instant::now() + SETTLE;
        let leader = 'found: loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if let Ok(m) = nodes[0].wait_for(remaining, |m| m.leader.is_some()).await
                && let Some(leader) = nodes.iter().find(|n| Some(n.id()) == m.leader)
            {
                let mut stable = true;
                for _ in 0..100 {
                    if leader.propose(payload.clone()).await.is_err() {
                        stable = false;
                        break;
                    }
                }
                if stable {
                    break 'found leader.clone();
                }
            }
            if Instant::now() >= deadline {
                for node in &nodes {
                    node.shutdown().await;
                }
                return Err(format!("no stable leader within {SETTLE:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Ok(InProcess {
            nodes,
            leader,
            stores,
            payload,
            _dir: dir,
        })
    }
}

impl<P: Payload> Target for InProcess<P> {
    type Client = Proposer<P>;

    fn clients(&self, n: usize) -> Vec<Proposer<P>> {
        (0..n)
            .map(|_| Proposer {
                leader: self.leader.clone(),
                payload: self.payload.clone(),
            })
            .collect()
    }

    async fn counters(&self) -> Result<Counters, Error> {
        let mut counters = Counters::default();
        for node in &self.nodes {
            let m = node.metrics().borrow().clone();
            counters.fsyncs += m.store.fsyncs;
            counters.log_writes += m.store.writes;
            counters.wire_bytes += m.transport.bytes_sent;
            if node.id() == self.leader.id() {
                counters.committed = m.commit;
            }
        }
        Ok(counters)
    }

    fn usage(&self) -> Usage {
        Usage {
            cpu: usage::self_cpu(),
            cpu_nodes: None,
            memory: usage::memory(None),
        }
    }

    async fn shutdown(self) -> Result<(), Error> {
        for node in &self.nodes {
            node.shutdown().await;
        }
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id()).collect();
        drop(self.nodes);
        drop(self.leader);
        for (id, store) in ids.into_iter().zip(self.stores) {
            crate::node::close_store(store)
                .await
                .map_err(|e| format!("node {id}: {e}"))?;
        }
        Ok(())
    }
}

/// A client that proposes a payload to the leader through its handle.
pub struct Proposer<P: Payload> {
    leader: Raft<Sink<P>>,
    payload: P,
}

impl<P: Payload> Client for Proposer<P> {
    async fn call(&mut self) -> Outcome {
        match self.leader.propose(self.payload.clone()).await {
            Ok(()) => Outcome::Done,
            Err(e) if e.is_definitely_not_applied() => Outcome::Rejected(e.to_string()),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}
