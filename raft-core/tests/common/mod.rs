//! A small in-memory network of nodes for scenario tests: a synchronous driver per node,
//! a FIFO message queue, and knobs to cut links, isolate nodes, delay persistence and
//! crash-restart nodes.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use raft_core::{
    ConfState, Config, Entry, EntryPayload, Index, MemStorage, Message, MessageBody, NodeId, Persist,
    RawNode, ReadState, Role, SnapshotMeta, SnapshotStatus, SoftState, Term,
};

/// One node and what its driver observed.
pub struct TestNode {
    pub raw: RawNode<MemStorage>,
    pub config: Config,
    /// Every committed entry handed out, in order (the "state machine").
    pub applied: Vec<Entry>,
    /// Snapshot installed into the state machine (index), if any.
    pub installed_snapshot: Option<Index>,
    pub read_states: Vec<ReadState>,
    /// Persist batches handed out but not yet made durable (only in manual mode).
    pub pending: VecDeque<Persist>,
    /// When set, persistence is not automatic: tests call `persist_one`.
    pub manual_persist: bool,
    pub soft: SoftState,
    pub soft_changes: Vec<SoftState>,
}

impl TestNode {
    pub fn applied_data(&self) -> Vec<Bytes> {
        self.applied
            .iter()
            .filter_map(|e| match &e.payload {
                EntryPayload::Normal(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn applied_index(&self) -> Index {
        self.applied
            .last()
            .map(|e| e.index)
            .unwrap_or(0)
            .max(self.installed_snapshot.unwrap_or(0))
    }
}

pub struct Network {
    pub nodes: BTreeMap<NodeId, TestNode>,
    /// Messages in flight, in send order.
    pub msgs: VecDeque<Message>,
    /// Directed links that drop everything.
    pub cut: BTreeSet<(NodeId, NodeId)>,
    /// Message kinds dropped everywhere (by `Message::kind`).
    pub drop_kinds: BTreeSet<&'static str>,
    /// Messages dropped so far.
    pub dropped: Vec<Message>,
    /// Accept `StepError::TermTooFarAhead` refusals of messages between nodes (a scenario where
    /// a liar pushed honest terms apart) instead of failing; counted here.
    pub term_refusals: Option<usize>,
}

pub fn data(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A default test configuration: election after 10..20 ticks, heartbeat 1, pre-vote and
/// check-quorum off (scenarios that want them turn them on).
pub fn config(id: NodeId) -> Config {
    let mut c = Config::new(id);
    c.heartbeat_tick = 1;
    c.pre_vote = false;
    c.check_quorum = false;
    c
}

impl Network {
    /// A cluster of voters `1..=n` with default test configs.
    pub fn new(n: u64) -> Network {
        Network::with(&(1..=n).collect::<Vec<_>>(), &[], config)
    }

    /// Voters and learners with a config builder applied to every node.
    pub fn with(voters: &[NodeId], learners: &[NodeId], cfg: impl Fn(NodeId) -> Config) -> Network {
        let cs = ConfState::with_voters(voters.iter().copied()).and_learners(learners.iter().copied());
        let mut net = Network::empty();
        for &id in voters.iter().chain(learners) {
            net.add_node(id, MemStorage::new_with_conf_state(cs.clone()), cfg(id));
        }
        net
    }

    pub fn empty() -> Network {
        Network {
            nodes: BTreeMap::new(),
            msgs: VecDeque::new(),
            cut: BTreeSet::new(),
            drop_kinds: BTreeSet::new(),
            dropped: Vec::new(),
            term_refusals: None,
        }
    }

    /// Adds a node over the given storage (a fresh node joining uses `MemStorage::new()`).
    pub fn add_node(&mut self, id: NodeId, storage: MemStorage, cfg: Config) {
        let raw = RawNode::new(cfg.clone(), storage, 0).expect("valid node");
        let soft = SoftState {
            role: raw.role(),
            leader: raw.leader(),
        };
        self.nodes.insert(
            id,
            TestNode {
                raw,
                config: cfg,
                applied: Vec::new(),
                installed_snapshot: None,
                read_states: Vec::new(),
                pending: VecDeque::new(),
                manual_persist: false,
                soft,
                soft_changes: Vec::new(),
            },
        );
    }

    pub fn node(&self, id: NodeId) -> &TestNode {
        &self.nodes[&id]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut TestNode {
        self.nodes.get_mut(&id).expect("node exists")
    }

    pub fn raw(&mut self, id: NodeId) -> &mut RawNode<MemStorage> {
        &mut self.node_mut(id).raw
    }

    pub fn role(&self, id: NodeId) -> Role {
        self.nodes[&id].raw.role()
    }

    pub fn term(&self, id: NodeId) -> Term {
        self.nodes[&id].raw.term()
    }

    pub fn commit(&self, id: NodeId) -> Index {
        self.nodes[&id].raw.commit_index()
    }

    /// The only node that believes it leads in the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        let leaders: Vec<(Term, NodeId)> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.raw.role() == Role::Leader)
            .map(|(&id, n)| (n.raw.term(), id))
            .collect();
        leaders.into_iter().max().map(|(_, id)| id)
    }

    /// Runs one driver pass on `id`: takes its ready, queues messages, persists (unless
    /// manual), applies committed entries.
    pub fn process(&mut self, id: NodeId) -> bool {
        let node = self.nodes.get_mut(&id).expect("node exists");
        if !node.raw.has_ready() {
            return false;
        }
        let mut ready = node.raw.ready().expect("storage works");
        if let Some(soft) = ready.soft_state {
            node.soft = soft;
            node.soft_changes.push(soft);
        }
        self.msgs.extend(ready.messages.drain(..));
        if let Some(p) = ready.persist.take() {
            node.pending.push_back(p);
        }
        for e in ready.committed_entries {
            assert!(
                e.index == node.applied_index() + 1,
                "node {id} applies index {} after {}",
                e.index,
                node.applied_index()
            );
            node.raw.on_applied(e.index).expect("applied in order");
            node.applied.push(e);
        }
        node.read_states.extend(ready.read_states);
        if !node.manual_persist {
            while self.persist_one(id) {}
        }
        true
    }

    /// Makes the oldest pending batch of `id` durable and releases its messages.
    pub fn persist_one(&mut self, id: NodeId) -> bool {
        let node = self.nodes.get_mut(&id).expect("node exists");
        let Some(p) = node.pending.pop_front() else {
            return false;
        };
        if let Some(meta) = &p.snapshot {
            node.installed_snapshot = Some(meta.index);
            node.applied.retain(|e| e.index <= meta.index);
        }
        node.raw.storage_mut().persist(&p).expect("persist");
        node.raw.on_persisted(p.token).expect("token in order");
        if let Some(meta) = &p.snapshot {
            // The state machine restores it at once here.
            node.raw
                .on_applied(meta.index)
                .expect("the snapshot was handed out");
        }
        self.msgs.extend(p.messages);
        true
    }

    /// Delivers the oldest in-flight message (or drops it per the faults). Returns false
    /// when nothing is in flight.
    pub fn deliver_one(&mut self) -> bool {
        let Some(m) = self.msgs.pop_front() else {
            return false;
        };
        self.deliver(m);
        true
    }

    pub fn deliver(&mut self, m: Message) {
        if self.cut.contains(&(m.from, m.to))
            || self.drop_kinds.contains(m.kind())
            || !self.nodes.contains_key(&m.to)
        {
            if let MessageBody::Snapshot(_) = m.body
                && let Some(leader) = self.nodes.get_mut(&m.from)
            {
                leader.raw.report_snapshot(m.to, SnapshotStatus::Failed);
            }
            self.dropped.push(m);
            return;
        }
        let is_snapshot = matches!(m.body, MessageBody::Snapshot(_));
        let (from, to) = (m.from, m.to);
        let raw = &mut self.nodes.get_mut(&to).expect("checked").raw;
        let result = if is_snapshot {
            raw.step_snapshot(m)
        } else {
            raw.step(m)
        };
        // Correct peers over a lossy network produce no other error: a response from a
        // peer the leader no longer tracks is the one refusal that is part of normal life.
        match result {
            Ok(()) | Err(raft_core::StepError::UnknownPeer { .. }) => {}
            Err(raft_core::StepError::TermTooFarAhead { .. }) if self.term_refusals.is_some() => {
                *self.term_refusals.as_mut().expect("checked") += 1;
            }
            Err(e) => panic!("node {to} refused a message from node {from}: {e}"),
        }
        if is_snapshot && let Some(leader) = self.nodes.get_mut(&from) {
            leader.raw.report_snapshot(to, SnapshotStatus::Finished);
        }
    }

    /// Processes every node and delivers every message until nothing moves.
    pub fn stabilize(&mut self) {
        for _ in 0..100_000 {
            let mut busy = false;
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                busy |= self.process(id);
            }
            while self.deliver_one() {
                busy = true;
            }
            if !busy {
                return;
            }
        }
        panic!("network did not stabilize");
    }

    /// Processes every node once and returns the messages they sent, without delivering.
    pub fn collect(&mut self) -> Vec<Message> {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.process(id);
        }
        self.msgs.drain(..).collect()
    }

    pub fn tick(&mut self, id: NodeId, n: u32) {
        for _ in 0..n {
            self.raw(id).tick();
        }
    }

    pub fn tick_all(&mut self, n: u32) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for _ in 0..n {
            for &id in &ids {
                self.raw(id).tick();
            }
        }
    }

    /// Ticks every node one at a time, stabilizing after each tick.
    pub fn run_ticks(&mut self, n: u32) {
        for _ in 0..n {
            self.tick_all(1);
            self.stabilize();
        }
    }

    /// Makes `id` campaign and runs the network until quiet.
    pub fn campaign(&mut self, id: NodeId) {
        self.raw(id).campaign().expect("promotable");
        self.stabilize();
    }

    /// Elects `id` and asserts it leads.
    pub fn elect(&mut self, id: NodeId) {
        self.campaign(id);
        assert_eq!(self.role(id), Role::Leader, "node {id} should have won");
    }

    pub fn propose(&mut self, id: NodeId, s: &str) -> Result<Index, raft_core::ProposeError> {
        self.raw(id).propose(data(s))
    }

    /// Proposes and stabilizes, asserting acceptance.
    pub fn propose_ok(&mut self, id: NodeId, s: &str) -> Index {
        let idx = self.propose(id, s).expect("proposal accepted");
        self.stabilize();
        idx
    }

    pub fn isolate(&mut self, id: NodeId) {
        for &other in self.nodes.keys() {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    /// Cuts both directions between two groups.
    pub fn partition(&mut self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x, y));
                self.cut.insert((y, x));
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
        self.drop_kinds.clear();
    }

    /// Crashes `id`, losing every batch not yet durable, and restarts it from storage with
    /// its state machine intact (applied index preserved).
    pub fn crash_restart(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node exists");
        node.pending.clear();
        let storage = node.raw.storage().clone();
        let applied = node.applied_index();
        node.raw = RawNode::new(node.config.clone(), storage, applied).expect("restart");
        node.soft = SoftState {
            role: node.raw.role(),
            leader: node.raw.leader(),
        };
        // Messages addressed to the crashed node are lost.
        self.msgs.retain(|m| m.to != id && m.from != id);
    }

    /// Takes a snapshot of `id`'s state machine at its applied index and compacts its log.
    pub fn compact(&mut self, id: NodeId) -> SnapshotMeta {
        let node = self.nodes.get_mut(&id).expect("node exists");
        let applied = node.applied_index();
        let meta = node.raw.snapshot_meta_at(applied).expect("snapshot at applied");
        node.raw.storage_mut().compact(meta.clone()).expect("compact");
        meta
    }

    /// In-flight messages from `from` to `to` of the given kind.
    pub fn in_flight(&self, from: NodeId, to: NodeId, kind: &str) -> Vec<&Message> {
        self.msgs
            .iter()
            .filter(|m| m.from == from && m.to == to && m.kind() == kind)
            .collect()
    }

    /// Asserts every node holds the same committed log.
    pub fn assert_consistent_logs(&self) {
        let mut reference: Option<(NodeId, Vec<(Index, Term)>)> = None;
        for (&id, n) in &self.nodes {
            let commit = n.raw.commit_index();
            let first = n.raw.status().first_index;
            let log: Vec<(Index, Term)> = (first..=commit).map(|i| (i, n.raw.term_at(i).unwrap())).collect();
            if let Some((rid, r)) = &reference {
                for (i, t) in &log {
                    if let Some((_, rt)) = r.iter().find(|(ri, _)| ri == i) {
                        assert_eq!(t, rt, "nodes {rid} and {id} disagree at committed index {i}");
                    }
                }
            } else {
                reference = Some((id, log));
            }
        }
    }
}

/// Storage holding a log with the given terms (entry `i + 1` has `terms[i]`), a hard state at
/// the last term, and configuration `voters`.
pub fn storage_with_terms(voters: &[NodeId], terms: &[Term]) -> MemStorage {
    let mut s = MemStorage::new_with_conf_state(ConfState::with_voters(voters.iter().copied()));
    let entries: Vec<Entry> = terms
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            Entry::new(
                t,
                i as u64 + 1,
                EntryPayload::Normal(data(&format!("{t}-{}", i + 1))),
            )
        })
        .collect();
    s.append(&entries).unwrap();
    s.set_hard_state(raft_core::HardState {
        term: terms.last().copied().unwrap_or(0),
        vote: None,
        commit: 0,
    });
    s
}

pub fn msg(from: NodeId, to: NodeId, term: Term, body: MessageBody) -> Message {
    Message { from, to, term, body }
}

pub fn vote_request(from: NodeId, to: NodeId, term: Term, last_index: Index, last_term: Term) -> Message {
    msg(
        from,
        to,
        term,
        MessageBody::RequestVote(raft_core::RequestVote {
            pre_vote: false,
            last_index,
            last_term,
            leader_transfer: false,
        }),
    )
}

impl Network {
    /// Delivers in-flight messages for which `keep` holds and drops the others, until nothing
    /// moves.
    pub fn stabilize_filtered(&mut self, keep: impl Fn(&Message) -> bool) {
        for _ in 0..100_000 {
            let mut busy = false;
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                busy |= self.process(id);
            }
            while let Some(m) = self.msgs.pop_front() {
                busy = true;
                if keep(&m) {
                    self.deliver(m);
                } else {
                    self.dropped.push(m);
                }
            }
            if !busy {
                return;
            }
        }
        panic!("network did not stabilize");
    }

    /// Log terms of `id` from its first index to its last.
    pub fn log_terms(&self, id: NodeId) -> Vec<Term> {
        let n = &self.nodes[&id].raw;
        let s = n.status();
        (s.first_index..=s.last_index)
            .map(|i| n.term_at(i).unwrap())
            .collect()
    }

    /// Sum of entries in the in-flight append messages from `from` to `to`.
    pub fn appends(&self, from: NodeId, to: NodeId) -> Vec<&raft_core::Append> {
        self.msgs
            .iter()
            .filter(|m| m.from == from && m.to == to)
            .filter_map(|m| match &m.body {
                MessageBody::Append(a) => Some(a),
                _ => None,
            })
            .collect()
    }
}
