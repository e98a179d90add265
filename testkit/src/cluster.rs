//! A cluster of in-process nodes on pluggable parts.

use std::collections::BTreeMap;
use std::time::Duration;

use raft_runtime::{
    Config, GroupHost, Index, LogStore, MemberInfo, Metrics, NodeId, Raft, Role, StateMachine, Stopped,
    Transport, async_trait,
};

use crate::log::Log;

/// Generous: tests run on loaded 2-core machines.
const WAIT: Duration = Duration::from_secs(60);

/// Where a cluster's nodes get their log store and transport.
#[async_trait]
pub trait Plugins: Send + 'static {
    /// The log store each node gets.
    type Store: LogStore;
    /// The transport each node gets.
    type Transport: Transport;

    /// The store and transport for a start of node `id` (its first, or a restart: the
    /// store must then hold what the node persisted before).
    async fn parts(&mut self, id: NodeId) -> (Self::Store, Self::Transport);

    /// How the configuration records node `id`: the address its transport listens on.
    /// Asked once [`Plugins::parts`] was called for the node.
    fn member(&self, id: NodeId) -> MemberInfo;

    /// Called once node `id` has stopped: a chance to check that it let go of its parts.
    fn stopped(&mut self, id: NodeId) {
        let _ = id;
    }
}

/// How a node of a cluster starts on an empty store.
#[derive(Clone, Debug)]
pub enum StartMode {
    /// With the cluster's initial members.
    Bootstrap(BTreeMap<NodeId, MemberInfo>),
    /// Joining the cluster of these members.
    Join(BTreeMap<NodeId, MemberInfo>),
}

/// Makes the state machine for a start of a node, given the one of its previous start.
pub type StateMachineFactory<SM> = Box<dyn FnMut(NodeId, Option<&SM>) -> SM + Send>;

/// The wall clock each node stamps client-session records with, given the node's id, in
/// milliseconds (see [`raft_runtime::Builder::session_clock`]).
pub type SessionClock = std::sync::Arc<dyn Fn(NodeId) -> u64 + Send + Sync>;

/// Nodes of one state machine type on [`Plugins`], started together as a new cluster.
pub struct Cluster<SM: StateMachine, P: Plugins> {
    /// Where the nodes get their parts (and, for [`crate::InMemory`], the network).
    pub plugins: P,
    /// The running nodes.
    pub nodes: BTreeMap<NodeId, Raft<SM>>,
    /// Each node's state machine as given at its last start (a clone: for [`Log`], clones
    /// share the state).
    pub state_machines: BTreeMap<NodeId, SM>,
    /// The initial members.
    pub members: BTreeMap<NodeId, MemberInfo>,
    config: Config,
    make_state_machine: StateMachineFactory<SM>,
    session_clock: Option<SessionClock>,
    /// With [`HOSTED_VAR`] set: each node's host, kept across its restarts.
    hosts: Option<BTreeMap<NodeId, GroupHost>>,
}

/// The environment variable that, set to `1`, runs every node of every [`Cluster`] on a
/// [`GroupHost`] of its own (kept across its restarts) instead of on a task of its own:
/// `RAFT_TEST_HOSTED=1 cargo test` runs every cluster scenario both ways.
pub const HOSTED_VAR: &str = "RAFT_TEST_HOSTED";

impl<SM: StateMachine + Clone, P: Plugins> Cluster<SM, P> {
    /// Starts nodes `1..=n` as a new cluster: prepares every node's parts first (a
    /// transport's address may only be known once bound), then starts them.
    pub async fn start(
        n: u64,
        config: Config,
        plugins: P,
        make_state_machine: impl FnMut(NodeId, Option<&SM>) -> SM + Send + 'static,
    ) -> Self {
        Cluster::start_with_clock(n, config, plugins, make_state_machine, None).await
    }

    /// Like [`Cluster::start`], with each node's session clock given by `session_clock`
    /// (the system clock when `None`), at this start and every restart.
    pub async fn start_with_clock(
        n: u64,
        config: Config,
        mut plugins: P,
        make_state_machine: impl FnMut(NodeId, Option<&SM>) -> SM + Send + 'static,
        session_clock: Option<SessionClock>,
    ) -> Self {
        let mut parts = BTreeMap::new();
        for id in 1..=n {
            parts.insert(id, plugins.parts(id).await);
        }
        let members = (1..=n).map(|id| (id, plugins.member(id))).collect();
        let mut c = Cluster {
            plugins,
            nodes: BTreeMap::new(),
            state_machines: BTreeMap::new(),
            members,
            config,
            make_state_machine: Box::new(make_state_machine),
            session_clock,
            hosts: (std::env::var(HOSTED_VAR).as_deref() == Ok("1")).then(BTreeMap::new),
        };
        for (id, (store, transport)) in parts {
            let mode = StartMode::Bootstrap(c.members.clone());
            c.launch(id, store, transport, mode).await;
        }
        c
    }

    /// The configuration every node starts with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts (or restarts over its existing store) node `id`.
    pub async fn start_node(&mut self, id: NodeId, mode: StartMode) {
        let (store, transport) = self.plugins.parts(id).await;
        self.launch(id, store, transport, mode).await;
    }

    async fn launch(&mut self, id: NodeId, store: P::Store, transport: P::Transport, mode: StartMode) {
        let sm = (self.make_state_machine)(id, self.state_machines.get(&id));
        self.state_machines.insert(id, sm.clone());
        let builder = Raft::builder(id)
            .config(self.config.clone())
            .state_machine(sm)
            .log_store(store)
            .transport(transport);
        let builder = match self.session_clock.clone() {
            Some(clock) => builder.session_clock(move || clock(id)),
            None => builder,
        };
        let tick = self.config.tick_interval;
        let builder = match &mut self.hosts {
            Some(hosts) => builder.host(hosts.entry(id).or_insert_with(|| GroupHost::new(tick))),
            None => builder,
        };
        let builder = match mode {
            StartMode::Bootstrap(members) => builder.bootstrap(members),
            StartMode::Join(members) => builder.join(members),
        };
        let node = builder
            .start()
            .await
            .unwrap_or_else(|e| panic!("node {id} did not start: {e}"));
        self.nodes.insert(id, node);
    }

    /// Stops node `id` and returns what it left; then lets the plugins check it let go of
    /// its parts.
    pub async fn stop(&mut self, id: NodeId) -> Option<Stopped<SM>> {
        let node = self.nodes.remove(&id)?;
        let stopped = node.shutdown().await;
        drop(node);
        self.plugins.stopped(id);
        stopped
    }

    /// Stops node `id` and starts it again over its store.
    pub async fn restart(&mut self, id: NodeId) {
        self.stop(id).await;
        let members = self.members.clone();
        self.start_node(id, StartMode::Bootstrap(members)).await;
    }

    /// Node `id`.
    pub fn node(&self, id: NodeId) -> &Raft<SM> {
        &self.nodes[&id]
    }

    /// Node `id`'s metrics as last published.
    pub fn metrics(&self, id: NodeId) -> Metrics {
        self.nodes[&id].metrics().borrow().clone()
    }

    /// Waits until one running node of `among` leads and every running node of `among`
    /// follows it in its term.
    pub async fn leader_among(&self, among: &[NodeId], timeout: Duration) -> NodeId {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let running: Vec<NodeId> = among
                .iter()
                .copied()
                .filter(|id| self.nodes.contains_key(id))
                .collect();
            let leaders: Vec<(u64, NodeId)> = running
                .iter()
                .map(|&id| self.metrics(id))
                .filter(|m| m.role == Role::Leader)
                .map(|m| (m.term, m.id))
                .collect();
            if let Some(&(term, leader)) = leaders.iter().max() {
                let agreed = running.iter().all(|&id| {
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

    /// Waits until the running nodes agree on a leader.
    pub async fn leader(&self) -> NodeId {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        self.leader_among(&ids, WAIT).await
    }

    /// Waits until every running node applied at least `index`.
    pub async fn wait_applied(&self, index: Index) {
        for (id, node) in &self.nodes {
            node.wait_for(WAIT, |m| m.applied >= index)
                .await
                .unwrap_or_else(|_| panic!("node {id} did not apply {index}"));
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

impl<P: Plugins> Cluster<Log, P> {
    /// Starts nodes `1..=n` with [`Log`] state machines (`durable`: a node's state outlives
    /// its restarts).
    pub async fn with_logs(n: u64, config: Config, plugins: P, durable: bool) -> Self {
        Cluster::start(
            n,
            config,
            plugins,
            move |_, previous: Option<&Log>| match previous {
                Some(log) if durable => log.clone(),
                _ => Log::new(durable),
            },
        )
        .await
    }

    /// Proposes `value` through whoever leads, retrying only while it was definitely not
    /// applied. Returns the response (the number of values applied with it).
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

    /// Waits until every running node's log holds the same values and the same applied
    /// index, and returns the values.
    pub async fn converged(&self) -> Vec<u64> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let states: Vec<Vec<u64>> = self
                .nodes
                .keys()
                .map(|id| self.state_machines[id].values())
                .collect();
            if states.windows(2).all(|w| w[0] == w[1]) {
                let applied: Vec<u64> = self.nodes.keys().map(|&id| self.metrics(id).applied).collect();
                if applied.windows(2).all(|w| w[0] == w[1]) {
                    return states.into_iter().next().unwrap_or_default();
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let lengths: BTreeMap<NodeId, usize> = self
                    .nodes
                    .keys()
                    .map(|&id| (id, self.state_machines[&id].values().len()))
                    .collect();
                panic!("state machines did not converge: {lengths:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
