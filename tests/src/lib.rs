//! Shared helpers for the cross-crate tests in `tests/tests/`: a small state machine and a
//! cluster of nodes on the real plug-ins (file WAL, QUIC with mutual TLS) on 127.0.0.1.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use raft_runtime::raft_core::{Index, NodeId, Role};
use raft_runtime::{Applied, Config, MemberInfo, Metrics, Raft, StateMachine, StateMachineError};
use raft_storage_file::{FileLogStore, Options};
use raft_transport_quic::{DevCa, QuicConfig, QuicTransport};

/// Every value applied, in order; shared so that tests can look at it.
#[derive(Clone, Default)]
pub struct Values(pub Arc<Mutex<Vec<u64>>>);

impl Values {
    /// The values applied so far.
    pub fn get(&self) -> Vec<u64> {
        self.0.lock().expect("values lock").clone()
    }
}

#[async_trait]
impl StateMachine for Values {
    type Command = u64;
    type Response = u64;

    async fn apply(&mut self, batch: Vec<Applied<u64>>) -> Result<Vec<u64>, StateMachineError> {
        let mut v = self.0.lock().expect("values lock");
        Ok(batch
            .into_iter()
            .map(|c| {
                v.push(c.command);
                v.len() as u64
            })
            .collect())
    }

    async fn applied_index(&self) -> Result<Index, StateMachineError> {
        Ok(0)
    }

    async fn snapshot(&mut self) -> Result<Bytes, StateMachineError> {
        let v = self.0.lock().expect("values lock");
        Ok(Bytes::from(
            v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
        ))
    }

    async fn restore(&mut self, _index: Index, data: Bytes) -> Result<(), StateMachineError> {
        if data.len() % 8 != 0 {
            return Err(StateMachineError::msg("snapshot length is not a multiple of 8"));
        }
        *self.0.lock().expect("values lock") = data
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Ok(())
    }
}

/// A cluster of nodes on the file WAL and QUIC, each with its own data directory.
pub struct RealCluster {
    /// The development CA every node's certificate comes from.
    pub ca: DevCa,
    /// Data directories (kept for restarts).
    pub root: tempfile::TempDir,
    /// Each node's raft address.
    pub addrs: BTreeMap<NodeId, SocketAddr>,
    /// Running nodes.
    pub nodes: BTreeMap<NodeId, Raft<Values>>,
    /// Each node's current state machine.
    pub values: BTreeMap<NodeId, Values>,
    /// Applied to every node's configuration.
    pub configure: fn(&mut Config),
}

impl RealCluster {
    /// Starts `n` nodes that bootstrap a cluster together.
    pub async fn start(n: u64, configure: fn(&mut Config)) -> RealCluster {
        let ca = DevCa::generate().expect("dev CA");
        let root = tempfile::tempdir().expect("temp dir");
        let mut c = RealCluster {
            ca,
            root,
            addrs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            values: BTreeMap::new(),
            configure,
        };
        // Bind every transport first: the bootstrap membership needs their ports.
        let mut transports = BTreeMap::new();
        for id in 1..=n {
            let t = c.bind(id, "127.0.0.1:0".parse().expect("address")).await;
            c.addrs.insert(id, t.local_addr());
            transports.insert(id, t);
        }
        for (id, t) in transports {
            c.launch(id, t).await;
        }
        c
    }

    async fn bind(&self, id: NodeId, addr: SocketAddr) -> QuicTransport {
        let tls = self.ca.node_tls(id).expect("node certificate");
        // A restarted node reuses its port; give the old socket a moment to go away.
        for attempt in 0..50 {
            match QuicTransport::bind(QuicConfig::new(addr, tls.clone())).await {
                Ok(t) => return t,
                Err(e) if attempt < 49 => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("binding node {id} to {addr}: {e}"),
            }
        }
        unreachable!()
    }

    fn dir(&self, id: NodeId) -> PathBuf {
        self.root.path().join(format!("node-{id}"))
    }

    async fn launch(&mut self, id: NodeId, transport: QuicTransport) {
        let store = FileLogStore::open(self.dir(id), Options::default()).expect("open the WAL");
        let values = Values::default();
        let mut config = Config {
            tick_interval: Duration::from_millis(10),
            ..Config::default()
        };
        (self.configure)(&mut config);
        let members: BTreeMap<NodeId, MemberInfo> = self
            .addrs
            .iter()
            .map(|(&i, a)| (i, MemberInfo::new(a.to_string())))
            .collect();
        let handle = Raft::builder(id)
            .config(config)
            .state_machine(values.clone())
            .log_store(store)
            .transport(transport)
            .bootstrap(members)
            .start()
            .await
            .expect("node starts");
        self.nodes.insert(id, handle);
        self.values.insert(id, values);
    }

    /// Stops node `id` (its tasks, WAL and transport).
    pub async fn stop(&mut self, id: NodeId) {
        if let Some(h) = self.nodes.remove(&id) {
            h.shutdown().await;
        }
    }

    /// Starts node `id` again over its data directory, on its old port.
    pub async fn restart(&mut self, id: NodeId) {
        self.stop(id).await;
        let t = self.bind(id, self.addrs[&id]).await;
        self.launch(id, t).await;
    }

    /// A node's metrics.
    pub fn metrics(&self, id: NodeId) -> Metrics {
        self.nodes[&id].metrics().borrow().clone()
    }

    /// The leader every running node agrees on.
    pub async fn leader(&self) -> NodeId {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let ms: Vec<Metrics> = self.nodes.keys().map(|&id| self.metrics(id)).collect();
            if let Some(l) = ms.iter().find(|m| m.role == Role::Leader)
                && ms.iter().all(|m| m.term == l.term && m.leader == Some(l.id))
            {
                return l.id;
            }
            assert!(tokio::time::Instant::now() < deadline, "no agreed leader");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Proposes through the leader, retrying what was definitely not applied.
    pub async fn propose(&self, value: u64) {
        for _ in 0..500 {
            let leader = self.leader().await;
            match self.nodes[&leader].propose(value).await {
                Ok(_) => return,
                Err(e) if e.is_definitely_not_applied() => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("outcome of {value} unknown: {e}"),
            }
        }
        panic!("could not propose {value}");
    }

    /// Waits until every running node's state machine holds the same values; returns them.
    pub async fn converged(&self) -> Vec<u64> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let states: Vec<Vec<u64>> = self.nodes.keys().map(|id| self.values[id].get()).collect();
            if states.windows(2).all(|w| w[0] == w[1]) {
                return states[0].clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "state machines did not converge: {:?}",
                states.iter().map(Vec::len).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}

pub mod linearizability;
pub mod netns;
pub mod process;
