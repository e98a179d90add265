//! Starting a node: recovery from storage, bootstrap, and the tasks that run it.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;

use raft_core::{ConfState, NodeId, RawNode, SnapshotMeta};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::adapter::StoreReader;
use crate::applier;
use crate::config::Config;
use crate::error::{BootstrapError, StartError};
use crate::group::Group;
use crate::handle::Raft;
use crate::host::{GroupHost, HostedGroup};
use crate::member::MemberInfo;
use crate::metrics::Metrics;
use crate::sessions::{Sessions, WallClock, system_clock};
use crate::state_machine::StateMachine;
use crate::store::LogStore;
use crate::transport::{GroupId, Inbox, Transport};

/// How a node with an empty log store joins its cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
enum StartMode {
    /// Bootstrap a new cluster with these voters.
    Bootstrap(BTreeMap<NodeId, MemberInfo>),
    /// Start empty and wait to be added by the cluster's leader.
    Join(BTreeMap<NodeId, MemberInfo>),
}

/// A builder part not given yet. [`Builder::start`] needs a state machine, a log store and a
/// transport; a builder that lacks one does not compile (`Unset: LogStore` or
/// `Unset: Transport` is not satisfied, or `start` is not found when the state machine is
/// missing).
#[derive(Clone, Copy, Debug, Default)]
pub struct Unset;

/// Assembles and starts a node: the one way to stand one up. Made by [`Raft::builder`].
///
/// ```
/// # use std::collections::BTreeMap;
/// # use raft_runtime::{async_trait, Applied, Config, MemLogStore, MemNetwork, MemberInfo, Raft, SnapshotStream, StateMachine, StateMachineError};
/// # #[derive(Default)] struct Counter(u64);
/// # #[async_trait]
/// # impl StateMachine for Counter {
/// #     type Command = u64;
/// #     type Response = u64;
/// #     async fn apply(&mut self, batch: Vec<Applied<u64>>, _applied: u64) -> Result<Vec<u64>, StateMachineError> {
/// #         Ok(batch.into_iter().map(|c| { self.0 += c.command; self.0 }).collect())
/// #     }
/// #     async fn applied_index(&self) -> Result<u64, StateMachineError> { Ok(0) }
/// #     async fn snapshot(&mut self) -> Result<SnapshotStream, StateMachineError> { Ok(SnapshotStream::from_bytes(self.0.to_le_bytes().to_vec())) }
/// #     async fn restore(&mut self, _: u64, data: SnapshotStream) -> Result<(), StateMachineError> {
/// #         let data = data.into_bytes(8).await.map_err(StateMachineError::new)?;
/// #         self.0 = u64::from_le_bytes(data.as_ref().try_into().map_err(StateMachineError::new)?);
/// #         Ok(())
/// #     }
/// # }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let network = MemNetwork::new();
/// let raft = Raft::builder(1)
///     .config(Config::default())
///     .state_machine(Counter::default())
///     .log_store(MemLogStore::new())
///     .transport(network.transport(1))
///     .bootstrap([(1, MemberInfo::new("node-1"))])
///     .start()
///     .await
///     .unwrap();
/// raft.wait_for(std::time::Duration::from_secs(10), |m| m.leader == Some(1)).await.unwrap();
/// assert_eq!(raft.propose(2).await.unwrap(), 2);
/// raft.shutdown().await;
/// # });
/// ```
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct Builder<SM, M = Unset, S = Unset, T = Unset> {
    id: NodeId,
    group: GroupId,
    config: Config,
    state_machine: M,
    store: S,
    transport: T,
    mode: Option<StartMode>,
    clock: WallClock,
    host: Option<GroupHost>,
    _sm: PhantomData<fn() -> SM>,
}

impl<SM: StateMachine> Raft<SM> {
    /// Starts assembling node `id`: give it a state machine, a log store and a transport,
    /// how to join on a first start ([`Builder::bootstrap`] or [`Builder::join`]), optionally
    /// a [`Config`], then [`Builder::start`] it.
    ///
    /// The id is given here only: the transport is asked to confirm it (a QUIC transport
    /// reads its id from its certificate), and a transport that serves another id, or
    /// already serves a node, fails the start with [`StartError::Register`].
    pub fn builder(id: NodeId) -> Builder<SM> {
        Builder {
            id,
            group: 0,
            config: Config::default(),
            state_machine: Unset,
            store: Unset,
            transport: Unset,
            mode: None,
            clock: system_clock(),
            host: None,
            _sm: PhantomData,
        }
    }
}

impl<SM: StateMachine, M, S, T> Builder<SM, M, S, T> {
    /// The Raft group this node is a member of (default: 0). The node tags everything it
    /// sends with it, and refuses traffic tagged with another group (counted in
    /// [`Metrics::refused_messages`](crate::Metrics::refused_messages)): nodes of two
    /// clusters that reach each other by mistake do not mix their logs. Every member of a
    /// cluster must be built with the same group.
    pub fn group(mut self, group: GroupId) -> Self {
        self.group = group;
        self
    }

    /// Runs the node on `host`, the task that drives many nodes of this process with one
    /// timer, instead of on a task of its own (see [`GroupHost`]). The node's
    /// [`Config::tick_interval`] must be the host's: [`Builder::start`] fails with
    /// [`StartError::HostTick`] otherwise.
    pub fn host(mut self, host: &GroupHost) -> Self {
        self.host = Some(host.clone());
        self
    }

    /// The runtime settings (defaults: [`Config::default`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The application's state machine, which the node applies committed commands to and
    /// hands back at [`Raft::shutdown`].
    pub fn state_machine(self, state_machine: SM) -> Builder<SM, SM, S, T> {
        Builder {
            id: self.id,
            group: self.group,
            config: self.config,
            state_machine,
            store: self.store,
            transport: self.transport,
            mode: self.mode,
            clock: self.clock,
            host: self.host,
            _sm: PhantomData,
        }
    }

    /// Where the log, the hard state and snapshots live. An `Arc<L>` works as well as an
    /// `L`, for callers that keep a reference (to close the store after shutdown).
    pub fn log_store<L: LogStore>(self, store: L) -> Builder<SM, M, L, T> {
        Builder {
            id: self.id,
            group: self.group,
            config: self.config,
            state_machine: self.state_machine,
            store,
            transport: self.transport,
            mode: self.mode,
            clock: self.clock,
            host: self.host,
            _sm: PhantomData,
        }
    }

    /// How the node reaches its peers. An `Arc<X>` works as well as an `X`.
    pub fn transport<X: Transport>(self, transport: X) -> Builder<SM, M, S, X> {
        Builder {
            id: self.id,
            group: self.group,
            config: self.config,
            state_machine: self.state_machine,
            store: self.store,
            transport,
            mode: self.mode,
            clock: self.clock,
            host: self.host,
            _sm: PhantomData,
        }
    }

    /// The wall clock, in milliseconds, this node stamps client-session records with while
    /// it leads (default: the system clock, since the UNIX epoch). Sessions expire by these
    /// stamps: the table's time is the largest stamp applied, so a leader whose clock is
    /// behind cannot revive an expired session, and one whose clock is ahead expires
    /// sessions early (never unsafely: an expired session's commands are refused, not
    /// applied). For tests that skew clocks; services keep the default.
    pub fn session_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// On a first start (an empty log store), bootstraps a new cluster with these voters,
    /// each with the address its transport listens on. Every initial member must be given
    /// the same map, this node included. Ignored when the store holds state: a restart
    /// resumes from it.
    pub fn bootstrap(mut self, members: impl IntoIterator<Item = (NodeId, MemberInfo)>) -> Self {
        self.mode = Some(StartMode::Bootstrap(members.into_iter().collect()));
        self
    }

    /// On a first start (an empty log store), starts empty and waits to be added by the
    /// cluster's leader. `members` names the cluster's current members (at least the leader
    /// that will add this node): until the node learns the configuration from its log, its
    /// transport admits only these peers. Ignored when the store holds state.
    pub fn join(mut self, members: impl IntoIterator<Item = (NodeId, MemberInfo)>) -> Self {
        self.mode = Some(StartMode::Join(members.into_iter().collect()));
        self
    }
}

impl<SM: StateMachine, S: LogStore, T: Transport> Builder<SM, SM, S, T> {
    /// Recovers the node from its log store (or bootstraps or joins as told, when the store
    /// is empty), registers it with its transport, starts its tasks on the current tokio
    /// runtime, and returns its handle.
    ///
    /// Fails, with no task started and nothing registered with the transport, on an
    /// invalid id or configuration, an empty store with neither [`Builder::bootstrap`] nor
    /// [`Builder::join`], a bootstrap map without this node, a store or state machine that
    /// cannot recover, and a transport that belongs to another node or already serves one
    /// ([`StartError::Register`], checked last: a bootstrap may have been written to the
    /// store by then, which a corrected retry resumes from).
    pub async fn start(self) -> Result<Raft<SM>, StartError> {
        start(
            self.id,
            self.group,
            self.config,
            self.state_machine,
            Arc::new(self.store),
            Arc::new(self.transport),
            self.mode,
            self.clock,
            self.host,
        )
        .await
    }
}

#[allow(clippy::too_many_arguments)]
async fn start<SM: StateMachine>(
    id: NodeId,
    group: GroupId,
    config: Config,
    mut state_machine: SM,
    store: Arc<dyn LogStore>,
    transport: Arc<dyn Transport>,
    mode: Option<StartMode>,
    clock: WallClock,
    host: Option<GroupHost>,
) -> Result<Raft<SM>, StartError> {
    if id == 0 {
        return Err(StartError::Bootstrap(BootstrapError::ReservedId));
    }
    config.validate()?;
    if let Some(host) = &host
        && host.tick_interval() != config.tick_interval
    {
        return Err(StartError::HostTick {
            host: host.tick_interval(),
            node: config.tick_interval,
        });
    }
    match &mode {
        Some(StartMode::Join(members)) if members.is_empty() => {
            return Err(StartError::Bootstrap(BootstrapError::NoMembers));
        }
        Some(StartMode::Join(members) | StartMode::Bootstrap(members)) if members.contains_key(&0) => {
            return Err(StartError::Bootstrap(BootstrapError::ReservedId));
        }
        _ => {}
    }
    let span = tracing::info_span!("raft", node = id);

    let pristine = {
        let init = store.initial_state()?;
        init.hard_state == Default::default()
            && store.last_index() == 0
            && store
                .snapshot_meta()
                .is_none_or(|m| m.index == 0 && m.conf_state == ConfState::default())
    };
    if pristine {
        match &mode {
            None => return Err(StartError::Uninitialized),
            Some(StartMode::Bootstrap(members)) => {
                if !members.contains_key(&id) {
                    return Err(StartError::Bootstrap(BootstrapError::NotAMember {
                        id,
                        members: members.keys().copied().collect(),
                    }));
                }
                let mut conf_state = ConfState::with_voters(members.keys().copied());
                conf_state.node_meta = members.iter().map(|(&n, info)| (n, info.encode())).collect();
                save_initial_snapshot(&*store, &mut state_machine, &config, conf_state).await?;
                tracing::info!(parent: &span, members = ?members.keys().collect::<Vec<_>>(), "bootstrapped a new cluster");
            }
            // With sessions, every start restores the stored snapshot (see below): a node
            // that joins keeps its empty state as the snapshot to start from until it
            // takes or receives one.
            Some(StartMode::Join(_)) if config.sessions.is_some() && store.snapshot_meta().is_none() => {
                save_initial_snapshot(&*store, &mut state_machine, &config, ConfState::default()).await?;
            }
            Some(StartMode::Join(_)) => {}
        }
    }

    // Bring the state machine to at least the snapshot the log starts from.
    let snapshot_index = store.first_index().saturating_sub(1);
    let mut applied = state_machine
        .applied_index()
        .await
        .map_err(StartError::StateMachine)?;
    // The session table is not part of the state machine's own state: it is rebuilt from
    // the stored snapshot and the log. So with sessions, every start restores the stored
    // snapshot, also into a state machine that keeps its state on disk (which then replays
    // the log after it, like one kept in memory): the table and the state come back
    // together, as of the same entry.
    let mut sessions = config.sessions.map(|c| Sessions::new(c.limits()));
    if applied < snapshot_index || sessions.is_some() {
        let snapshot = store.load_snapshot().await?.ok_or(StartError::MissingSnapshot {
            index: snapshot_index,
        })?;
        sessions = applier::restore(&mut state_machine, snapshot.meta.index, snapshot.data, &sessions)
            .await
            .map_err(StartError::StateMachine)?;
        applied = snapshot.meta.index;
    }

    let mut protocol = config.protocol.clone();
    protocol.id = id;
    if !config.deterministic_seed {
        protocol.seed = random_seed();
    }
    let node = RawNode::new(protocol, StoreReader(store.clone()), applied)?;
    tracing::info!(parent: &span, term = node.term(), applied, last = node.last_index(), "recovered");

    // The last step that can fail: the transport confirms the id and takes the inbox.
    let (inbox, inbox_rx) = Inbox::channel(config.inbox_capacity);
    transport.register(id, group, inbox)?;
    // The transport learns whom to admit before the node sends anything: the members of
    // the recovered configuration, or, for a node not (yet) in it, also the cluster it was
    // told to join.
    let seeds: BTreeMap<NodeId, Bytes> = match &mode {
        Some(StartMode::Join(members)) => members
            .iter()
            .filter(|&(&n, _)| n != id)
            .map(|(&n, info)| (n, Bytes::from(info.address.clone().into_bytes())))
            .collect(),
        Some(StartMode::Bootstrap(_)) | None => BTreeMap::new(),
    };
    if let Some(peers) = announced_peers(id, node.conf_state(), &seeds) {
        transport.set_peers(peers);
    }

    let config = Arc::new(config);
    let (req_tx, req_rx) = mpsc::channel(config.mailbox_capacity);
    let (metrics_tx, metrics_rx) = watch::channel(Metrics::new(id));
    let (apply_tx, apply_rx) = mpsc::unbounded_channel();
    let (applier_events_tx, applier_events_rx) = mpsc::unbounded_channel();
    let applier_task = tokio::spawn(
        applier::run(
            state_machine,
            applied,
            apply_rx,
            applier_events_tx,
            config.protocol.max_apply_bytes,
            sessions,
        )
        .instrument(span.clone()),
    );
    let group = Group::new(
        id,
        group,
        config.clone(),
        node,
        store,
        transport,
        req_rx,
        inbox_rx,
        apply_tx,
        applier_events_rx,
        applier_task,
        metrics_tx,
        // Below 2^63: the counter of read contexts cannot wrap within any run.
        random_seed() >> 1,
        applied,
        seeds,
        clock,
    );
    let (done, stopped) = oneshot::channel();
    match host {
        Some(host) => host.add(Box::new(HostedGroup { group, done, span })),
        None => {
            tokio::spawn(
                async move {
                    let _ = done.send(group.run().await);
                }
                .instrument(span),
            );
        }
    }
    Ok(Raft::new(id, config, req_tx, metrics_rx, stopped))
}

/// Stores the state machine's state as it is, with an empty session table if sessions are
/// on, as the snapshot at index 0 with configuration `conf_state`: where a new node starts.
async fn save_initial_snapshot<SM: StateMachine>(
    store: &dyn LogStore,
    state_machine: &mut SM,
    config: &Config,
    conf_state: ConfState,
) -> Result<(), StartError> {
    let empty = config.sessions.map(|c| Sessions::new(c.limits()));
    let data = applier::snapshot(state_machine, &empty)
        .await
        .map_err(StartError::StateMachine)?;
    let meta = SnapshotMeta {
        index: 0,
        term: 0,
        conf_state,
    };
    store.save_snapshot(meta, data).await?;
    Ok(())
}

/// The peers a node's transport admits for configuration `cs`: its members, when the node
/// is one of them. A node outside its configuration (waiting to join, or replaying
/// configurations from before it joined, which may not list the leader catching it up)
/// also admits the cluster it was told to join; with no such list (a removed node) it keeps
/// what it had, and `None` says so. Removed ids are never admitted.
pub(crate) fn announced_peers(
    id: NodeId,
    cs: &ConfState,
    seeds: &BTreeMap<NodeId, Bytes>,
) -> Option<BTreeMap<NodeId, Bytes>> {
    let mut peers: BTreeMap<NodeId, Bytes> = cs
        .node_meta
        .iter()
        .map(|(&n, raw)| (n, Bytes::from(MemberInfo::decode(raw).address.into_bytes())))
        .collect();
    if !cs.contains(id) {
        if seeds.is_empty() {
            return None;
        }
        for (&n, address) in seeds {
            peers.entry(n).or_insert_with(|| address.clone());
        }
    }
    peers.retain(|n, _| !cs.removed.contains(n) || cs.contains(*n));
    (!peers.is_empty()).then_some(peers)
}

/// A seed that differs between processes and between calls: read contexts must never repeat
/// across restarts, and election timeouts must differ between nodes.
fn random_seed() -> u64 {
    let mut rng = ChaCha8Rng::seed_from_u64(
        std::collections::hash_map::RandomState::new().hash_one(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        ),
    );
    rng.next_u64()
}
