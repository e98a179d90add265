//! Live metrics of a node, published through a `tokio::sync::watch` channel.

use std::collections::BTreeMap;

use raft_core::{Index, NodeId, Role, Term};

use crate::transport::GroupId;

/// A member of the configuration, as the node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Votes in elections and commits (false for a learner).
    pub voter: bool,
    /// The member's transport address.
    pub address: String,
    /// The application attributes registered with it.
    pub attributes: BTreeMap<String, String>,
}

/// A snapshot of a node's state. Counters are totals since the node started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metrics {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// The Raft group it is a member of.
    pub group: GroupId,
    /// Whether its group is quiet ([`Config::quiesce_after_ticks`](crate::Config)): its
    /// clock stands still until a request or a message wakes it.
    pub quiescent: bool,
    /// Its current term.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// The commit index.
    pub commit: Index,
    /// The last index applied to the state machine.
    pub applied: Index,
    /// The index of the last log entry.
    pub last_log_index: Index,
    /// The index of the stored snapshot.
    pub snapshot_index: Index,
    /// Index of the first entry the log holds (entries before it are compacted; the log
    /// keeps some behind the snapshot for followers that lag a little).
    pub first_log_index: Index,
    /// The members of the configuration in effect, with their addresses and attributes
    /// (shared: a copy of the metrics does not copy them).
    pub members: std::sync::Arc<BTreeMap<NodeId, Member>>,
    /// Whether the configuration is joint (a change is half done).
    pub joint: bool,
    /// On the leader, each peer's replicated index.
    pub matched: BTreeMap<NodeId, Index>,
    /// Proposals accepted by this node (as leader, or forwarded).
    pub proposals: u64,
    /// Entries applied to the state machine.
    pub applied_entries: u64,
    /// Leaderships this node has seen: each (term, leader) counts once, including the first.
    pub leader_changes: u64,
    /// Times this node won an election.
    pub elections_won: u64,
    /// Log store counters.
    pub store: crate::store::StoreMetrics,
    /// Transport counters.
    pub transport: crate::transport::TransportMetrics,
    /// Snapshots taken locally.
    pub snapshots_taken: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
    /// Peer messages refused: malformed, out of bounds, from a node that may not send them,
    /// or answering something this node never asked of that peer.
    pub refused_messages: u64,
    /// Set when the node stopped because of a fatal error (storage, state machine, or a
    /// broken safety invariant).
    pub fatal: Option<crate::error::Fatal>,
}

impl Metrics {
    /// Metrics of a node that has done nothing yet.
    pub fn new(id: NodeId) -> Metrics {
        Metrics {
            id,
            group: 0,
            quiescent: false,
            role: Role::Follower,
            term: 0,
            leader: None,
            commit: 0,
            applied: 0,
            last_log_index: 0,
            snapshot_index: 0,
            first_log_index: 1,
            members: Default::default(),
            joint: false,
            matched: BTreeMap::new(),
            proposals: 0,
            applied_entries: 0,
            leader_changes: 0,
            elections_won: 0,
            store: Default::default(),
            transport: Default::default(),
            snapshots_taken: 0,
            snapshots_installed: 0,
            refused_messages: 0,
            fatal: None,
        }
    }

    /// The voters of the configuration in effect.
    pub fn voters(&self) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|(_, m)| m.voter)
            .map(|(&id, _)| id)
            .collect()
    }
}
