//! Starting a node: recovery from storage, bootstrap, and the tasks that run it.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;

use raft_core::{ConfState, NodeId, RawNode, SnapshotMeta};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::adapter::StoreReader;
use crate::applier;
use crate::config::Config;
use crate::error::StartError;
use crate::group::Group;
use crate::handle::RaftHandle;
use crate::metrics::{MemberInfo, Metrics};
use crate::state_machine::StateMachine;
use crate::store::{LogStore, Snapshot};
use crate::transport::{Inbox, Transport};

/// How a node joins its cluster on its very first start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Membership {
    /// Bootstrap a new cluster with these voters (the same map on every initial member).
    /// Ignored when the log store already holds state: a restart resumes.
    Bootstrap(BTreeMap<NodeId, MemberInfo>),
    /// Start empty and wait to be added by the cluster's leader. The map names the
    /// cluster's current members (at least the leader that will add this node): until the
    /// node learns the configuration from its log, its transport admits only these peers.
    /// Ignored when the log store already holds state.
    Join(BTreeMap<NodeId, MemberInfo>),
}

/// Starts nodes.
pub struct RaftNode;

impl RaftNode {
    /// Recovers a node from `store` (or bootstraps it), starts its tasks on the current tokio
    /// runtime, and returns its handle.
    pub async fn start<SM: StateMachine>(
        config: Config,
        mut state_machine: SM,
        store: Arc<dyn LogStore>,
        transport: Arc<dyn Transport>,
        membership: Membership,
    ) -> Result<RaftHandle<SM>, StartError> {
        config.validate()?;
        let id = config.id;
        if let Membership::Join(members) = &membership {
            if members.is_empty() {
                return Err(StartError::Bootstrap(
                    "a joining node needs the cluster's current members".into(),
                ));
            }
            if members.contains_key(&0) {
                return Err(StartError::Bootstrap("node id 0 is reserved".into()));
            }
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
        if let (Membership::Bootstrap(members), true) = (&membership, pristine) {
            if !members.contains_key(&id) {
                return Err(StartError::Bootstrap(format!(
                    "node {id} is not among the initial members {:?}",
                    members.keys().collect::<Vec<_>>()
                )));
            }
            if members.contains_key(&0) {
                return Err(StartError::Bootstrap("node id 0 is reserved".into()));
            }
            let mut conf_state = ConfState::with_voters(members.keys().copied());
            conf_state.node_meta = members.iter().map(|(&n, info)| (n, info.encode())).collect();
            let data = state_machine.snapshot().await.map_err(StartError::StateMachine)?;
            store
                .save_snapshot(Snapshot {
                    meta: SnapshotMeta {
                        index: 0,
                        term: 0,
                        conf_state,
                    },
                    data,
                })
                .await?;
            tracing::info!(parent: &span, members = ?members.keys().collect::<Vec<_>>(), "bootstrapped a new cluster");
        }

        // Bring the state machine to at least the snapshot the log starts from.
        let snapshot_index = store.first_index().saturating_sub(1);
        let mut applied = state_machine
            .applied_index()
            .await
            .map_err(StartError::StateMachine)?;
        if applied < snapshot_index {
            let snapshot = store.load_snapshot().await?.ok_or_else(|| {
                StartError::Bootstrap(format!(
                    "the log starts after {snapshot_index} but no snapshot is stored"
                ))
            })?;
            state_machine
                .restore(snapshot.meta.index, snapshot.data)
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

        let config = Arc::new(config);
        // The transport learns whom to admit before it delivers anything: the members of
        // the recovered configuration, or, for a node not (yet) in it, also the cluster it
        // was told to join.
        let seeds: BTreeMap<NodeId, Bytes> = match &membership {
            Membership::Join(members) => members
                .iter()
                .filter(|&(&n, _)| n != id)
                .map(|(&n, info)| (n, Bytes::from(info.address.clone().into_bytes())))
                .collect(),
            Membership::Bootstrap(_) => BTreeMap::new(),
        };
        if let Some(peers) = announced_peers(id, node.conf_state(), &seeds) {
            transport.set_peers(peers);
        }
        let (inbox, inbox_rx) = Inbox::channel(config.inbox_capacity);
        transport.register(inbox);
        let (req_tx, req_rx) = mpsc::channel(config.mailbox_capacity);
        let (metrics_tx, metrics_rx) = watch::channel(Metrics::new(id));
        let (apply_tx, apply_rx) = mpsc::unbounded_channel();
        let (applier_events_tx, applier_events_rx) = mpsc::unbounded_channel();
        let applier_task = tokio::spawn(
            applier::run(state_machine, applied, apply_rx, applier_events_tx).instrument(span.clone()),
        );
        let rng = ChaCha8Rng::seed_from_u64(random_seed());
        let group = Group::new(
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
            rng,
            applied,
            seeds,
        );
        let task = tokio::spawn(group.run().instrument(span));
        Ok(RaftHandle::new(config, req_tx, metrics_rx, task))
    }
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
