//! A test state machine and an in-process cluster harness.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use raft_runtime::raft_core::{Index, NodeId, Role};
use raft_runtime::{
    Applied, Config, MemLogStore, MemNetwork, MemberInfo, Metrics, Raft, StateMachine, StateMachineError,
};

/// The state: every value applied, in order.
#[derive(Clone, Debug, Default)]
pub struct LogState {
    pub values: Vec<u64>,
    pub applied: Index,
}

/// An append-only log of values. With `durable`, the state outlives the node (like a state
/// machine that persists itself) and reports its applied index at start.
#[derive(Clone)]
pub struct Log {
    pub state: Arc<Mutex<LogState>>,
    pub durable: bool,
}

impl Log {
    pub fn new(durable: bool) -> Log {
        Log {
            state: Arc::new(Mutex::new(LogState::default())),
            durable,
        }
    }

    pub fn values(&self) -> Vec<u64> {
        self.state.lock().unwrap().values.clone()
    }
}

#[async_trait]
impl StateMachine for Log {
    type Command = u64;
    type Response = u64;

    async fn apply(&mut self, batch: Vec<Applied<u64>>) -> Result<Vec<u64>, StateMachineError> {
        let mut s = self.state.lock().unwrap();
        Ok(batch
            .into_iter()
            .map(|c| {
                assert!(
                    c.index > s.applied,
                    "index {} applied twice (applied {})",
                    c.index,
                    s.applied
                );
                s.values.push(c.command);
                s.applied = c.index;
                s.values.len() as u64
            })
            .collect())
    }

    async fn applied_index(&self) -> Result<Index, StateMachineError> {
        Ok(if self.durable {
            self.state.lock().unwrap().applied
        } else {
            0
        })
    }

    async fn set_applied_index(&mut self, index: Index) -> Result<(), StateMachineError> {
        self.state.lock().unwrap().applied = index;
        Ok(())
    }

    async fn snapshot(&mut self) -> Result<Bytes, StateMachineError> {
        let s = self.state.lock().unwrap();
        let mut out = Vec::with_capacity(s.values.len() * 8);
        for v in &s.values {
            out.extend_from_slice(&v.to_le_bytes());
        }
        Ok(Bytes::from(out))
    }

    async fn restore(&mut self, index: Index, data: Bytes) -> Result<(), StateMachineError> {
        if data.len() % 8 != 0 {
            return Err(StateMachineError::msg("snapshot length is not a multiple of 8"));
        }
        let mut s = self.state.lock().unwrap();
        s.values = data
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        s.applied = index;
        Ok(())
    }
}

pub struct Cluster {
    pub net: MemNetwork,
    pub stores: BTreeMap<NodeId, MemLogStore>,
    pub sms: BTreeMap<NodeId, Log>,
    pub nodes: BTreeMap<NodeId, Raft<Log>>,
    /// The store each running node was given, to check it lets go of it when it stops.
    pub given: BTreeMap<NodeId, std::sync::Weak<MemLogStore>>,
    pub members: BTreeMap<NodeId, MemberInfo>,
    pub configure: fn(&mut Config),
    pub durable_sm: bool,
}

/// How a node of a test cluster starts on an empty store.
#[derive(Clone, Debug)]
pub enum Mode {
    /// With the cluster's initial members.
    Bootstrap(BTreeMap<NodeId, MemberInfo>),
    /// Joining the cluster of these members.
    Join(BTreeMap<NodeId, MemberInfo>),
}

pub fn fast_config() -> Config {
    Config {
        tick_interval: Duration::from_millis(10),
        propose_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(3),
        admin_timeout: Duration::from_secs(20),
        ..Config::default()
    }
}

/// The members map of an in-memory cluster with these ids.
pub fn members(ids: &[NodeId]) -> BTreeMap<NodeId, MemberInfo> {
    ids.iter().map(|&id| (id, format!("mem-{id}").into())).collect()
}

impl Cluster {
    pub async fn new(n: u64) -> Cluster {
        Cluster::with(n, |_| {}, false).await
    }

    pub async fn with(n: u64, configure: fn(&mut Config), durable_sm: bool) -> Cluster {
        let members = members(&(1..=n).collect::<Vec<_>>());
        let mut c = Cluster {
            net: MemNetwork::new(),
            stores: BTreeMap::new(),
            sms: BTreeMap::new(),
            nodes: BTreeMap::new(),
            given: BTreeMap::new(),
            members: members.clone(),
            configure,
            durable_sm,
        };
        for id in 1..=n {
            c.start(id, Mode::Bootstrap(members.clone())).await;
        }
        c
    }

    /// Starts (or restarts over its existing store) node `id`.
    pub async fn start(&mut self, id: NodeId, mode: Mode) {
        let store = self.stores.entry(id).or_default().clone();
        let sm = match self.sms.get(&id) {
            Some(sm) if self.durable_sm => sm.clone(),
            _ => {
                let sm = Log::new(self.durable_sm);
                self.sms.insert(id, sm.clone());
                sm
            }
        };
        let mut config = fast_config();
        (self.configure)(&mut config);
        let store = Arc::new(store);
        self.given.insert(id, Arc::downgrade(&store));
        let builder = Raft::builder(id)
            .config(config)
            .state_machine(sm)
            .log_store(store)
            .transport(self.net.transport(id));
        let builder = match mode {
            Mode::Bootstrap(members) => builder.bootstrap(members),
            Mode::Join(members) => builder.join(members),
        };
        let handle = builder.start().await.expect("node starts");
        self.nodes.insert(id, handle);
    }

    pub async fn stop(&mut self, id: NodeId) {
        if let Some(h) = self.nodes.remove(&id) {
            h.shutdown().await;
            // Once stopped, the node (and every task it started) holds no reference to
            // its store: it can be reopened at once.
            if let Some(store) = self.given.remove(&id) {
                assert!(
                    store.upgrade().is_none(),
                    "node {id} still holds its log store after shutdown"
                );
            }
        }
    }

    pub async fn restart(&mut self, id: NodeId) {
        self.stop(id).await;
        let members = self.members.clone();
        self.start(id, Mode::Bootstrap(members)).await;
    }

    pub fn node(&self, id: NodeId) -> &Raft<Log> {
        &self.nodes[&id]
    }

    pub fn metrics(&self, id: NodeId) -> Metrics {
        self.nodes[&id].metrics().borrow().clone()
    }

    /// Waits until one running node leads and every running node in `among` follows it.
    pub async fn leader_among(&self, among: &[NodeId], timeout: Duration) -> NodeId {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let leaders: Vec<(u64, NodeId)> = among
                .iter()
                .filter(|id| self.nodes.contains_key(id))
                .map(|&id| self.metrics(id))
                .filter(|m| m.role == Role::Leader)
                .map(|m| (m.term, m.id))
                .collect();
            if let Some(&(term, leader)) = leaders.iter().max() {
                let agreed = among.iter().filter(|id| self.nodes.contains_key(id)).all(|&id| {
                    let m = self.metrics(id);
                    m.term == term && m.leader == Some(leader)
                });
                if agreed {
                    return leader;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no agreed leader among {among:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn leader(&self) -> NodeId {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        self.leader_among(&ids, Duration::from_secs(30)).await
    }

    /// Proposes through whoever leads, retrying only when the value was definitely not
    /// applied. Returns the response.
    pub async fn propose(&self, value: u64) -> u64 {
        for _ in 0..200 {
            let leader = self.leader().await;
            match self.node(leader).propose(value).await {
                Ok(r) => return r,
                Err(e) if e.is_definitely_not_applied() => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("outcome of {value} unknown: {e}"),
            }
        }
        panic!("could not propose {value}");
    }

    /// Waits until every running node applied at least `index`.
    pub async fn wait_applied(&self, index: Index) {
        for (id, h) in &self.nodes {
            h.wait_for(Duration::from_secs(30), |m| m.applied >= index)
                .await
                .unwrap_or_else(|_| panic!("node {id} did not apply {index}"));
        }
    }

    /// Waits until every running node's state machine holds the same values, and returns them.
    pub async fn converged(&self) -> Vec<u64> {
        for _ in 0..3000 {
            let states: Vec<Vec<u64>> = self.nodes.keys().map(|id| self.sms[id].values()).collect();
            if states.windows(2).all(|w| w[0] == w[1]) {
                let commits: Vec<u64> = self.nodes.keys().map(|&id| self.metrics(id).applied).collect();
                if commits.windows(2).all(|w| w[0] == w[1]) {
                    return states[0].clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let states: BTreeMap<NodeId, usize> = self
            .nodes
            .keys()
            .map(|&id| (id, self.sms[&id].values().len()))
            .collect();
        panic!("state machines did not converge: {states:?}");
    }

    pub async fn shutdown(mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}
