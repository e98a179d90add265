//! A deterministic simulator for raft-core.
//!
//! A seeded scheduler drives a cluster of cores through random events: message delivery in
//! random order, loss, duplication, partitions, crashes that lose everything not reported
//! durable, restarts from durable state, asynchronous persistence completing at random
//! times, ticks, proposals and log compaction. After every event it checks the safety
//! properties of Raft; at the end it stops the faults and checks liveness.
//!
//! Everything that happens is a pure function of the seed, so a failing seed replays
//! exactly: `RAFT_SIM_SEED=<seed> cargo test -p raft-core --test simulation -- --nocapture`.

#![allow(dead_code)]

pub mod multi;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;

use bytes::Bytes;
use raft_core::{
    AppendResponse, ConfChange, ConfState, Config, Entry, EntryPayload, Index, MemStorage, MemberChange,
    Message, MessageBody, NodeId, Persist, RawNode, Role, SnapshotMeta, SnapshotStatus, Term,
};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// The state machine of a simulated node: the applied index and a hash chain of every
/// applied command, which two nodes share iff they applied the same sequence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sm {
    pub applied: Index,
    pub hash: u64,
    /// Number of normal commands applied (the "value" reads observe).
    pub count: u64,
}

fn mix(a: u64, b: u64) -> u64 {
    let mut x = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x
}

fn payload_hash(e: &Entry) -> u64 {
    match &e.payload {
        EntryPayload::Empty => 1,
        EntryPayload::Normal(d) => {
            let mut h = 2u64;
            for b in d.iter() {
                h = mix(h, u64::from(*b));
            }
            h
        }
        EntryPayload::Internal(d) => {
            let mut h = 4u64;
            for b in d.iter() {
                h = mix(h, u64::from(*b));
            }
            h
        }
        EntryPayload::Membership(cs) => {
            let mut h = 3u64;
            for v in cs.voters.iter().chain(&cs.voters_outgoing) {
                h = mix(h, *v);
            }
            for v in cs.learners.iter().chain(&cs.learners_next) {
                h = mix(h, v + 1000);
            }
            mix(h, u64::from(cs.auto_leave))
        }
    }
}

fn entry_hash(e: &Entry) -> u64 {
    mix(e.term, payload_hash(e))
}

/// Cuts `ids` in two at random: a side of at least one node and not all of them, and
/// every link between the sides, both ways.
fn random_partition(rng: &mut ChaCha8Rng, ids: &[NodeId]) -> (Vec<NodeId>, BTreeSet<(NodeId, NodeId)>) {
    let mut side: Vec<NodeId> = ids.iter().copied().filter(|_| rng.next_u64() % 2 == 0).collect();
    if side.is_empty() || side.len() == ids.len() {
        side = vec![ids[(rng.next_u64() % ids.len() as u64) as usize]];
    }
    let mut cut = BTreeSet::new();
    for &a in &side {
        for &b in ids {
            if !side.contains(&b) {
                cut.insert((a, b));
                cut.insert((b, a));
            }
        }
    }
    (side, cut)
}

/// Which features and fault rates a run uses.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub nodes: u64,
    pub steps: u64,
    /// Probability in percent that a sent message is lost.
    pub drop_pct: u64,
    /// Probability in percent that a delivered message is delivered again later.
    pub dup_pct: u64,
    pub crashes: bool,
    pub partitions: bool,
    pub compaction: bool,
    pub membership: bool,
    pub reads: bool,
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// The driver quiesces idle leaders, skips nothing (a quiescent node's ticks do
    /// nothing), and wakes quiescent followers whose leader it cannot reach, as a
    /// multi-group driver's liveness signal would; now and then it wakes one for no reason.
    pub quiesce: bool,
}

impl SimOptions {
    /// Turns on membership changes, leadership transfers and reads.
    pub fn with_membership_and_reads(mut self) -> SimOptions {
        self.membership = true;
        self.reads = true;
        self
    }

    /// Turns on quiescence.
    pub fn with_quiescence(mut self) -> SimOptions {
        self.quiesce = true;
        self
    }

    /// A mix of options derived from the seed, so that many seeds cover many combinations.
    pub fn from_seed(seed: u64, steps: u64) -> SimOptions {
        let mut r = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED);
        SimOptions {
            nodes: if r.next_u64() % 2 == 0 { 3 } else { 5 },
            steps,
            drop_pct: [0, 2, 5, 10][(r.next_u64() % 4) as usize],
            dup_pct: [0, 1, 3][(r.next_u64() % 3) as usize],
            crashes: r.next_u64() % 4 != 0,
            partitions: r.next_u64() % 3 != 0,
            compaction: r.next_u64() % 3 != 0,
            membership: false,
            reads: false,
            pre_vote: r.next_u64() % 2 == 0,
            check_quorum: r.next_u64() % 2 == 0,
            quiesce: false,
        }
    }
}

struct Envelope {
    msg: Message,
    /// The snapshot data travelling beside a snapshot message.
    snapshot: Option<Sm>,
}

struct SimNode {
    id: NodeId,
    config: Config,
    raw: Option<RawNode<MemStorage>>,
    /// Durable storage while the node is down (inside `raw` while it is up).
    storage_down: Option<MemStorage>,
    pending: VecDeque<Persist>,
    sm: Sm,
    /// The state machine survives crashes (like one that persists with its applied index);
    /// otherwise a crash rolls it back to the last snapshot.
    sm_durable: bool,
    /// The latest snapshot data stored with the log (index 0: the empty initial state).
    snapshot: (Index, Sm),
    /// Snapshot data received from leaders, by index, waiting to be installed.
    staged: BTreeMap<Index, Sm>,
    recorded_commit: Index,
    was_leader_in: Option<Term>,
    incarnation: u64,
    /// Has been a member of some configuration in this incarnation.
    ever_member: bool,
    /// Stopped for good by the operator (liveness phase).
    stopped: bool,
}

impl SimNode {
    fn storage(&self) -> &MemStorage {
        match &self.raw {
            Some(r) => r.storage(),
            None => self.storage_down.as_ref().expect("down nodes keep storage"),
        }
    }
}

/// A read issued by a client: completed reads are checked for linearizability.
#[derive(Clone, Debug)]
struct ClientRead {
    node: NodeId,
    /// The highest index applied anywhere when the read was issued.
    acked_at_start: u64,
    lease: bool,
    /// The confirmed read index, once known.
    index: Option<Index>,
}

pub struct Sim {
    pub seed: u64,
    pub opts: SimOptions,
    rng: ChaCha8Rng,
    nodes: BTreeMap<NodeId, SimNode>,
    net: Vec<Envelope>,
    /// Directed links that drop messages.
    cut: BTreeSet<(NodeId, NodeId)>,
    step_no: u64,
    trace: VecDeque<String>,
    verbose: bool,
    // Safety bookkeeping.
    leaders: BTreeMap<Term, NodeId>,
    chain: HashMap<(Index, Term), u64>,
    committed: BTreeMap<Index, Term>,
    applied_entries: HashMap<Index, u64>,
    sm_at: HashMap<Index, Sm>,
    next_command: u64,
    /// Commands whose application was observed, by command id.
    acked_commands: BTreeSet<u64>,
    // Reads.
    next_read_ctx: u64,
    reads: HashMap<u64, ClientRead>,
    pub reads_completed: u64,
    pub reads_failed: u64,
    // Membership.
    all_ids: Vec<NodeId>,
    pub conf_changes: u64,
    pub transfers: u64,
    // Statistics.
    pub proposals_accepted: u64,
    pub crashes: u64,
    pub snapshots_installed: u64,
    pub elections: u64,
    /// Times a leader's group went quiet, and times the driver woke a quiescent follower.
    pub quiescences: u64,
    pub wakes: u64,
    /// One of several groups on the same nodes (see `multi.rs`): node-wide events (crashes,
    /// partitions, ticks, log syncs) come from outside, and `random_event` makes none.
    shared_nodes: bool,
    /// Steps in each window with or without client requests, under quiescence.
    quiet_window: u64,
}

type Fail = String;

impl Sim {
    pub fn new(seed: u64, opts: SimOptions) -> Sim {
        let verbose = std::env::var("RAFT_SIM_VERBOSE").is_ok();
        let mut sim = Sim {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            nodes: BTreeMap::new(),
            net: Vec::new(),
            cut: BTreeSet::new(),
            step_no: 0,
            trace: VecDeque::new(),
            verbose,
            leaders: BTreeMap::new(),
            chain: HashMap::new(),
            committed: BTreeMap::new(),
            applied_entries: HashMap::new(),
            sm_at: HashMap::new(),
            next_command: 1,
            acked_commands: BTreeSet::new(),
            next_read_ctx: 1,
            reads: HashMap::new(),
            reads_completed: 0,
            reads_failed: 0,
            all_ids: Vec::new(),
            conf_changes: 0,
            transfers: 0,
            proposals_accepted: 0,
            crashes: 0,
            snapshots_installed: 0,
            elections: 0,
            quiescences: 0,
            wakes: 0,
            shared_nodes: false,
            quiet_window: 250,
            opts,
        };
        let n = sim.opts.nodes;
        let voters: Vec<NodeId> = (1..=n).collect();
        let cs = ConfState::with_voters(voters.clone());
        // With membership changes on, two spare nodes start empty, waiting to be added.
        let spares: Vec<NodeId> = if sim.opts.membership {
            vec![n + 1, n + 2]
        } else {
            vec![]
        };
        for &id in voters.iter().chain(&spares) {
            let storage = if voters.contains(&id) {
                MemStorage::new_with_conf_state(cs.clone())
            } else {
                MemStorage::new()
            };
            let config = sim.node_config(id);
            let raw = RawNode::new(config.clone(), storage, 0).expect("valid config");
            sim.nodes.insert(
                id,
                SimNode {
                    id,
                    config,
                    raw: Some(raw),
                    storage_down: None,
                    pending: VecDeque::new(),
                    sm: Sm::default(),
                    sm_durable: sim.rng.next_u64() % 2 == 0,
                    snapshot: (0, Sm::default()),
                    staged: BTreeMap::new(),
                    recorded_commit: 0,
                    was_leader_in: None,
                    incarnation: 0,
                    ever_member: voters.contains(&id),
                    stopped: false,
                },
            );
            sim.all_ids.push(id);
        }
        sim.sm_at.insert(0, Sm::default());
        sim
    }

    fn node_config(&mut self, id: NodeId) -> Config {
        let mut c = Config::new(id);
        c.election_tick = 10;
        c.min_election_tick = 10;
        c.max_election_tick = 20;
        c.heartbeat_tick = 1 + (self.rng.next_u64() % 3) as u32;
        c.pre_vote = self.opts.pre_vote;
        c.check_quorum = self.opts.check_quorum;
        c.max_inflight_msgs = 1 + (self.rng.next_u64() % 8) as usize;
        c.max_append_bytes = [60, 200, 1 << 20][(self.rng.next_u64() % 3) as usize];
        c.max_uncommitted_bytes = [500, 1 << 20][(self.rng.next_u64() % 2) as usize];
        c.max_apply_bytes = [40, 1 << 20][(self.rng.next_u64() % 2) as usize];
        c.lease_drift_ticks = 2;
        c.seed = self.rng.next_u64();
        // From the seed just drawn rather than a new draw, so that every run's schedule
        // stays what it was before this knob existed.
        c.max_inflight_bytes = [100, 400, 16 << 20][((c.seed >> 7) % 3) as usize];
        c.max_applying_bytes = [60, 300, 32 << 20][((c.seed >> 11) % 3) as usize];
        c
    }

    fn log(&mut self, s: String) {
        if self.verbose {
            println!("[{}] {}", self.step_no, s);
        }
        self.trace.push_back(format!("[{}] {}", self.step_no, s));
        if self.trace.len() > 80 {
            self.trace.pop_front();
        }
    }

    fn fail(&self, what: String) -> Fail {
        let mut s = format!(
            "simulation seed {} failed at step {}: {}\noptions: {:?}\nreplay: RAFT_SIM_SEED={} RAFT_SIM_STEPS={} {}{}RAFT_SIM_VERBOSE=1 cargo test -p raft-core --test simulation replay -- --nocapture\nlast events:\n",
            self.seed,
            self.step_no,
            what,
            self.opts,
            self.seed,
            self.opts.steps,
            if self.opts.membership {
                "RAFT_SIM_MEMBERSHIP=1 "
            } else {
                ""
            },
            if self.opts.quiesce {
                "RAFT_SIM_QUIESCE=1 "
            } else {
                ""
            }
        );
        for t in &self.trace {
            let _ = writeln!(s, "  {t}");
        }
        let _ = writeln!(s, "nodes:");
        for (id, n) in &self.nodes {
            match &n.raw {
                Some(raw) => {
                    let st = raw.status();
                    let _ = writeln!(
                        s,
                        "  {id}: {:?} term {} vote {:?} commit {} first {} last {} persisted {} conf@{} voters {:?} out {:?} learners {:?}",
                        st.soft_state.role,
                        st.hard_state.term,
                        st.hard_state.vote,
                        st.hard_state.commit,
                        st.first_index,
                        st.last_index,
                        st.persisted,
                        st.conf_index,
                        st.conf_state.voters,
                        st.conf_state.voters_outgoing,
                        st.conf_state.learners
                    );
                }
                None => {
                    let _ = writeln!(s, "  {id}: down");
                }
            }
        }
        s
    }

    fn pick(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n as u64) as usize
    }

    fn chance(&mut self, pct: u64) -> bool {
        self.rng.next_u64() % 100 < pct
    }

    fn live_ids(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.raw.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    /// Number of distinct committed entries observed.
    pub fn committed_entries(&self) -> u64 {
        self.committed.len() as u64
    }

    /// Runs the whole simulation: the fault phase, then the liveness phase.
    pub fn run(&mut self) -> Result<(), Fail> {
        for _ in 0..self.opts.steps {
            self.step_no += 1;
            self.random_event()?;
        }
        self.liveness()
    }

    fn random_event(&mut self) -> Result<(), Fail> {
        let roll = self.pick(1000);
        // With quiescence, every other window of steps has no client requests, so that
        // groups fall idle (faults go on).
        let quiet = self.opts.quiesce && (self.step_no / self.quiet_window) % 2 == 1;
        if quiet && (800..=919).contains(&roll) {
            return self.process_random();
        }
        // Events that belong to a node (a log sync, a tick of its timer, a crash, a
        // partition) are made by the node's own loop when groups share it.
        if self.shared_nodes && ((550..=799).contains(&roll) || (920..=949).contains(&roll)) {
            return self.process_random();
        }
        match roll {
            0..=349 => self.deliver_random(),
            350..=549 => self.process_random(),
            550..=699 => self.persist_random(),
            700..=799 => {
                self.tick_all();
                Ok(())
            }
            800..=859 => self.propose_random(),
            860..=899 if self.opts.reads => self.read_random(),
            860..=899 => self.propose_random(),
            900..=919 if self.opts.membership => self.membership_random(),
            920..=934 if self.opts.crashes => self.crash_or_restart(),
            935..=949 if self.opts.partitions => {
                self.partition_or_heal();
                Ok(())
            }
            950..=969 if self.opts.compaction => self.compact_random(),
            970..=979 if !self.net.is_empty() && self.opts.dup_pct > 0 => {
                let i = self.pick(self.net.len());
                let e = &self.net[i];
                let dup = Envelope {
                    msg: e.msg.clone(),
                    snapshot: e.snapshot,
                };
                self.log(format!(
                    "duplicate {} {}->{}",
                    dup.msg.kind(),
                    dup.msg.from,
                    dup.msg.to
                ));
                self.net.push(dup);
                Ok(())
            }
            _ => self.process_random(),
        }
    }

    fn tick_all(&mut self) {
        if self.opts.quiesce {
            self.wake_unreachable();
        }
        for id in self.live_ids() {
            self.nodes.get_mut(&id).unwrap().raw.as_mut().unwrap().tick();
        }
        if self.opts.quiesce {
            self.quiesce_leaders();
        }
    }

    /// The driver's duty under quiescence: a quiescent follower whose leader it cannot
    /// reach (down, cut off, or unknown) is woken, not always at the first tick (liveness
    /// signals take time); and now and then one is woken for no reason.
    fn wake_unreachable(&mut self) {
        for id in self.live_ids() {
            let raw = self.nodes[&id].raw.as_ref().unwrap();
            if !raw.is_quiescent() || raw.role() == Role::Leader {
                continue;
            }
            let unreachable = raw.leader().is_none_or(|l| {
                self.nodes.get(&l).is_none_or(|n| n.raw.is_none())
                    || self.cut.contains(&(l, id))
                    || self.cut.contains(&(id, l))
            });
            let pct = if unreachable { 30 } else { 3 };
            if self.chance(pct) {
                self.log(format!(
                    "driver wakes node {id} (leader unreachable: {unreachable})"
                ));
                self.wakes += 1;
                self.nodes.get_mut(&id).unwrap().raw.as_mut().unwrap().wake();
            }
        }
    }

    /// Leaders are asked to quiesce at half the ticks.
    fn quiesce_leaders(&mut self) {
        for id in self.live_ids() {
            let raw = self.nodes[&id].raw.as_ref().unwrap();
            if raw.role() != Role::Leader || raw.is_quiescent() {
                continue;
            }
            if self.rng.next_u64() % 2 == 0 {
                let raw = self.nodes.get_mut(&id).unwrap().raw.as_mut().unwrap();
                if raw.quiesce() {
                    self.quiescences += 1;
                    self.log(format!("node {id} quiesces"));
                }
            }
        }
    }

    fn deliver_random(&mut self) -> Result<(), Fail> {
        if self.net.is_empty() {
            return self.process_random();
        }
        let i = self.pick(self.net.len());
        let env = self.net.swap_remove(i);
        self.deliver(env)
    }

    fn deliver(&mut self, env: Envelope) -> Result<(), Fail> {
        let m = env.msg;
        let (from, to) = (m.from, m.to);
        let down = self.nodes.get(&to).is_none_or(|n| n.raw.is_none());
        let lost = self.cut.contains(&(from, to)) || down;
        let is_snapshot = matches!(m.body, MessageBody::Snapshot(_));
        if lost {
            self.log(format!("lost {} {from}->{to}", m.kind()));
            if is_snapshot {
                self.report_snapshot(from, to, SnapshotStatus::Failed);
            }
            return Ok(());
        }
        self.log(format!("deliver {from}->{to} t{} {:?}", m.term, short(&m)));
        let node = self.nodes.get_mut(&to).unwrap();
        if let (MessageBody::Snapshot(meta), Some(data)) = (&m.body, env.snapshot) {
            node.staged.insert(meta.index, data);
        }
        let raw = node.raw.as_mut().unwrap();
        let res = if is_snapshot {
            raw.step_snapshot(m)
        } else {
            raw.step(m)
        };
        match res {
            Ok(()) => {}
            // A late response from a peer the leader no longer tracks (it was removed, or
            // the leadership it answered is over) is the one refusal correct peers cause.
            Err(e @ raft_core::StepError::UnknownPeer { .. }) => self.log(format!("node {to} refused: {e}")),
            // Anything else (a malformed message, a second leader, lost entries, a stopped
            // node) means a correct peer broke the protocol, or the receiver did.
            Err(e) => return Err(self.fail(format!("node {to} refused a message from {from}: {e}"))),
        }
        if is_snapshot {
            self.report_snapshot(from, to, SnapshotStatus::Finished);
        }
        self.check_node(to)
    }

    fn report_snapshot(&mut self, leader: NodeId, peer: NodeId, status: SnapshotStatus) {
        if let Some(raw) = self.nodes.get_mut(&leader).and_then(|n| n.raw.as_mut()) {
            raw.report_snapshot(peer, status);
        }
    }

    fn process_random(&mut self) -> Result<(), Fail> {
        let live = self.live_ids();
        if live.is_empty() {
            return Ok(());
        }
        let id = live[self.pick(live.len())];
        self.process(id)
    }

    /// One driver pass: take the ready, send messages, queue the persist, apply.
    fn process(&mut self, id: NodeId) -> Result<(), Fail> {
        let node = self.nodes.get_mut(&id).unwrap();
        let raw = node.raw.as_mut().unwrap();
        if !raw.has_ready() {
            return Ok(());
        }
        let ready = match raw.ready() {
            Ok(r) => r,
            Err(e) => return Err(self.fail(format!("node {id} ready failed: {e}"))),
        };
        if let Some(soft) = ready.soft_state {
            self.log(format!(
                "node {id} is now {:?} (leader {:?})",
                soft.role, soft.leader
            ));
        }
        for m in ready.messages {
            self.send(id, m)?;
        }
        if let Some(p) = ready.persist {
            self.nodes.get_mut(&id).unwrap().pending.push_back(p);
        }
        for e in ready.committed_entries {
            self.apply(id, e)?;
        }
        for rs in ready.read_states {
            self.complete_read(id, rs)?;
        }
        self.check_node(id)
    }

    fn send(&mut self, from: NodeId, m: Message) -> Result<(), Fail> {
        self.check_durable_before_send(from, &m)?;
        let snapshot = match &m.body {
            MessageBody::Snapshot(meta) => {
                let node = &self.nodes[&from];
                if node.snapshot.0 != meta.index {
                    return Err(self.fail(format!(
                        "node {from} sent snapshot {} but stores snapshot {}",
                        meta.index, node.snapshot.0
                    )));
                }
                Some(node.snapshot.1)
            }
            _ => None,
        };
        if self.chance(self.opts.drop_pct) {
            self.log(format!("drop {} {}->{}", m.kind(), m.from, m.to));
            if snapshot.is_some() {
                self.report_snapshot(from, m.to, SnapshotStatus::Failed);
            }
            return Ok(());
        }
        self.net.push(Envelope { msg: m, snapshot });
        Ok(())
    }

    /// The persistence contract: what a message claims must be durable when it leaves.
    fn check_durable_before_send(&self, from: NodeId, m: &Message) -> Result<(), Fail> {
        let storage = self.nodes[&from].storage();
        let hs = storage.hard_state();
        let durable_last = raft_core::LogStorage::last_index(storage);
        // A durable higher term also covers a vote: the node can never vote again in the
        // lower term.
        let vote_covered =
            |voted_for: NodeId| hs.term > m.term || (hs.term == m.term && hs.vote == Some(voted_for));
        let violation = match &m.body {
            MessageBody::AppendResponse(AppendResponse::Accepted { index }) if durable_last < *index => Some(
                format!("node {from} acknowledged index {index} with only {durable_last} durable"),
            ),
            MessageBody::VoteResponse(v) if v.granted && !v.pre_vote && !vote_covered(m.to) => Some(format!(
                "node {from} granted a vote to {} in term {} before persisting it (durable {hs:?})",
                m.to, m.term
            )),
            MessageBody::RequestVote(rv) if !rv.pre_vote && !vote_covered(from) => Some(format!(
                "node {from} asked for votes in term {} before persisting its own vote ({hs:?})",
                m.term
            )),
            MessageBody::Append(_) | MessageBody::Heartbeat(_) | MessageBody::TimeoutNow
                if hs.term < m.term =>
            {
                Some(format!(
                    "node {from} sent {} in term {} with durable term {}",
                    m.kind(),
                    m.term,
                    hs.term
                ))
            }
            _ => None,
        };
        match violation {
            Some(v) => Err(self.fail(v)),
            None => Ok(()),
        }
    }

    fn persist_random(&mut self) -> Result<(), Fail> {
        let candidates: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.raw.is_some() && !n.pending.is_empty())
            .map(|(&id, _)| id)
            .collect();
        if candidates.is_empty() {
            return self.process_random();
        }
        let id = candidates[self.pick(candidates.len())];
        self.persist_one(id)
    }

    fn persist_one(&mut self, id: NodeId) -> Result<(), Fail> {
        let node = self.nodes.get_mut(&id).unwrap();
        let Some(p) = node.pending.pop_front() else {
            return Ok(());
        };
        let installed = Self::make_durable(node, &p).map_err(|e| self.fail(e))?;
        if let Some(index) = installed {
            self.snapshots_installed += 1;
            self.log(format!("node {id} installed snapshot {index}"));
            let sm = self.nodes[&id].sm;
            self.check_sm(id, sm)?;
            self.serve_reads(id)?;
        }
        self.log(format!(
            "node {id} persisted token {} ({} entries)",
            p.token.0,
            p.entries.len()
        ));
        for m in p.messages {
            self.send(id, m)?;
        }
        self.check_node(id)
    }

    /// Writes one batch to the node's durable storage (and installs its snapshot into the
    /// state machine); returns the index of an installed snapshot.
    fn make_durable(node: &mut SimNode, p: &Persist) -> Result<Option<Index>, String> {
        let id = node.id;
        let raw = node.raw.as_mut().unwrap();
        let mut installed = None;
        if let Some(meta) = &p.snapshot {
            let Some(data) = node.staged.remove(&meta.index) else {
                return Err(format!(
                    "node {id} installs snapshot {} it never received",
                    meta.index
                ));
            };
            node.staged.retain(|&i, _| i > meta.index);
            if data.applied != meta.index {
                return Err(format!(
                    "snapshot data at {} for meta {}",
                    data.applied, meta.index
                ));
            }
            if data.applied <= node.sm.applied {
                return Err(format!(
                    "node {id} installs snapshot {} over applied {}",
                    meta.index, node.sm.applied
                ));
            }
            node.sm = data;
            node.snapshot = (meta.index, data);
            installed = Some(meta.index);
        }
        raw.storage_mut()
            .persist(p)
            .map_err(|e| format!("persist failed: {e}"))?;
        raw.on_persisted(p.token)
            .map_err(|e| format!("node {id} on_persisted: {e}"))?;
        if let Some(index) = installed {
            raw.on_applied(index)
                .map_err(|e| format!("on_applied after snapshot: {e}"))?;
        }
        Ok(installed)
    }

    fn apply(&mut self, id: NodeId, e: Entry) -> Result<(), Fail> {
        let node = self.nodes.get_mut(&id).unwrap();
        if e.index != node.sm.applied + 1 {
            let applied = node.sm.applied;
            return Err(self.fail(format!("node {id} applies {} after {applied}", e.index)));
        }
        // Only durable entries may be applied.
        let durable = raft_core::LogStorage::term(node.raw.as_ref().unwrap().storage(), e.index);
        if durable.as_ref().ok() != Some(&e.term) {
            return Err(self.fail(format!(
                "node {id} applies non-durable entry {} ({durable:?})",
                e.index
            )));
        }
        let h = entry_hash(&e);
        node.sm.applied = e.index;
        node.sm.hash = mix(node.sm.hash, h);
        if let EntryPayload::Normal(d) | EntryPayload::Internal(d) = &e.payload {
            node.sm.count += 1;
            let cmd = u64::from_le_bytes(d[..8].try_into().unwrap());
            self.acked_commands.insert(cmd);
        }
        node.raw
            .as_mut()
            .unwrap()
            .on_applied(e.index)
            .map_err(|x| x.to_string())?;
        let sm = node.sm;
        match self.applied_entries.get(&e.index) {
            Some(&other) if other != h => {
                return Err(self.fail(format!(
                    "state machine safety: node {id} applied a different entry at {}",
                    e.index
                )));
            }
            _ => {
                self.applied_entries.insert(e.index, h);
            }
        }
        self.check_sm(id, sm)?;
        self.serve_reads(id)
    }

    fn check_sm(&mut self, id: NodeId, sm: Sm) -> Result<(), Fail> {
        match self.sm_at.get(&sm.applied) {
            Some(other) if *other != sm => Err(self.fail(format!(
                "state machine safety: node {id} state at {} differs from another node's",
                sm.applied
            ))),
            Some(_) => Ok(()),
            None => {
                self.sm_at.insert(sm.applied, sm);
                Ok(())
            }
        }
    }

    fn propose_random(&mut self) -> Result<(), Fail> {
        let live = self.live_ids();
        if live.is_empty() {
            return Ok(());
        }
        // Mostly to a leader, sometimes to anyone.
        let leaders: Vec<NodeId> = live
            .iter()
            .copied()
            .filter(|id| self.nodes[id].raw.as_ref().unwrap().role() == Role::Leader)
            .collect();
        let id = if !leaders.is_empty() && self.chance(90) {
            leaders[self.pick(leaders.len())]
        } else {
            live[self.pick(live.len())]
        };
        let cmd = self.next_command;
        self.next_command += 1;
        let mut payload = cmd.to_le_bytes().to_vec();
        payload.extend(std::iter::repeat_n(0u8, self.pick(40)));
        // Some are a driver's own records, which must travel exactly as commands do.
        let internal = self.chance(10);
        let raw = self.nodes.get_mut(&id).unwrap().raw.as_mut().unwrap();
        let res = if internal {
            raw.propose_internal(Bytes::from(payload))
        } else {
            raw.propose(Bytes::from(payload))
        };
        match res {
            Ok(index) => {
                self.proposals_accepted += 1;
                self.log(format!("node {id} accepted command {cmd} at {index}"));
            }
            Err(e) => self.log(format!("node {id} refused command {cmd}: {e}")),
        }
        self.check_node(id)
    }

    fn compact_random(&mut self) -> Result<(), Fail> {
        let live = self.live_ids();
        if live.is_empty() {
            return Ok(());
        }
        let id = live[self.pick(live.len())];
        let node = self.nodes.get_mut(&id).unwrap();
        let applied = node.sm.applied;
        let raw = node.raw.as_mut().unwrap();
        if applied < raft_core::LogStorage::first_index(raw.storage()) + 3 {
            return Ok(());
        }
        let meta: SnapshotMeta = match raw.snapshot_meta_at(applied) {
            Ok(m) => m,
            Err(raft_core::DriverError::SnapshotPending { .. }) => return Ok(()),
            Err(e) => return Err(self.fail(format!("node {id} cannot snapshot at applied {applied}: {e}"))),
        };
        raw.storage_mut()
            .compact(meta.clone())
            .map_err(|e| e.to_string())?;
        node.snapshot = (applied, node.sm);
        self.log(format!("node {id} compacted to {applied}"));
        Ok(())
    }

    fn crash_or_restart(&mut self) -> Result<(), Fail> {
        let down: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.raw.is_none() && !n.stopped)
            .map(|(&id, _)| id)
            .collect();
        if !down.is_empty() && self.chance(60) {
            let id = down[self.pick(down.len())];
            return self.restart(id);
        }
        let live = self.live_ids();
        // Keep at most a minority down at once so the run makes progress.
        if down.len() * 2 + 2 > self.opts.nodes as usize || live.is_empty() {
            return Ok(());
        }
        let id = live[self.pick(live.len())];
        self.crash(id);
        Ok(())
    }

    fn crash(&mut self, id: NodeId) {
        self.crashes += 1;
        let node = self.nodes.get_mut(&id).unwrap();
        let raw = node.raw.take().unwrap();
        node.storage_down = Some(raw.storage().clone());
        let durable = raw.storage().hard_state();
        let lost = node.pending.len();
        node.pending.clear();
        node.staged.clear();
        if !node.sm_durable {
            node.sm = node.snapshot.1;
        }
        let applied = node.sm.applied;
        // A snapshot the state machine still has to catch up to is the restart point.
        let _ = applied;
        self.log(format!("crash node {id} (lost {lost} pending batches)"));
        // A leadership whose term and vote never became durable was never seen by anyone:
        // the core holds every message back until they are, and commits nothing before. It
        // vanishes with the crash, and the term may then be won by another node (a lone
        // voter that wins a term on a tick and crashes at once); election safety is about
        // leaders that existed for the rest of the cluster.
        let unseen: Vec<Term> = self
            .leaders
            .iter()
            .filter(|&(&t, &leader)| {
                leader == id && (durable.term < t || (durable.term == t && durable.vote != Some(id)))
            })
            .map(|(&t, _)| t)
            .collect();
        for t in unseen {
            self.leaders.remove(&t);
            self.log(format!("node {id} led term {t} unseen: its term was not durable"));
        }
        // Reads issued at this node are abandoned.
        self.reads.retain(|_, r| r.node != id);
    }

    fn restart(&mut self, id: NodeId) -> Result<(), Fail> {
        let mut config = self.node_config(id);
        let node = self.nodes.get_mut(&id).unwrap();
        node.incarnation += 1;
        config.id = id;
        node.config = config.clone();
        let storage = node.storage_down.take().unwrap();
        let applied = node.sm.applied;
        match RawNode::new(config, storage, applied) {
            Ok(raw) => node.raw = Some(raw),
            Err(e) => return Err(self.fail(format!("node {id} cannot restart at applied {applied}: {e}"))),
        }
        node.recorded_commit = node.recorded_commit.min(applied);
        node.was_leader_in = None;
        self.log(format!("restart node {id} at applied {applied}"));
        self.check_node(id)
    }

    fn partition_or_heal(&mut self) {
        if !self.cut.is_empty() && self.chance(50) {
            self.cut.clear();
            self.log("heal".into());
            return;
        }
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let (side, cut) = random_partition(&mut self.rng, &ids);
        self.cut = cut;
        self.log(format!("partition {side:?} from the rest"));
    }

    /// Safety checks about one node, after anything touched it.
    fn check_node(&mut self, id: NodeId) -> Result<(), Fail> {
        let Some(raw) = self.nodes[&id].raw.as_ref() else {
            return Ok(());
        };
        if let Some(invariant) = raw.fatal() {
            return Err(self.fail(format!("node {id} stopped: {invariant}")));
        }
        let term = raw.term();
        let role = raw.role();
        let status = raw.status();
        if status.conf_state.contains(id) {
            self.nodes.get_mut(&id).unwrap().ever_member = true;
        }
        // Election safety: one leader per term.
        if role == Role::Leader {
            match self.leaders.get(&term) {
                Some(&other) if other != id => {
                    return Err(self.fail(format!("two leaders in term {term}: {other} and {id}")));
                }
                _ => {}
            }
            let fresh = self.nodes[&id].was_leader_in != Some(term);
            self.leaders.insert(term, id);
            if fresh {
                self.elections += 1;
                self.nodes.get_mut(&id).unwrap().was_leader_in = Some(term);
                self.check_leader_completeness(id)?;
            }
        }
        // Log matching, through a hash chain over (index, term) shared by all nodes. It
        // covers durable logs: entries that vanish in a crash before they were durable were
        // never seen by anyone and may legitimately be recreated differently (a lone voter
        // that wins a term and crashes before persisting it can win the same term again).
        let storage = self.nodes[&id].storage();
        let base_index = raft_core::LogStorage::first_index(storage) - 1;
        let mut h = if base_index == 0 {
            0
        } else {
            let t = raft_core::LogStorage::term(storage, base_index).map_err(|e| e.to_string())?;
            match self.chain.get(&(base_index, t)) {
                Some(&h) => h,
                // The snapshot's own entry may never have been seen in a log (a snapshot of
                // a snapshot); record it.
                None => mix(base_index, t),
            }
        };
        let entries = storage.all_entries().to_vec();
        let mut new_links = Vec::new();
        for e in &entries {
            h = mix(h, entry_hash(e));
            match self.chain.get(&(e.index, e.term)) {
                Some(&other) if other != h => {
                    return Err(self.fail(format!(
                        "log matching: node {id} disagrees with another log before ({}, {})",
                        e.index, e.term
                    )));
                }
                Some(_) => {}
                None => new_links.push(((e.index, e.term), h)),
            }
        }
        self.chain.extend(new_links);
        // Committed entries never change.
        let commit = status.hard_state.commit;
        let from = self.nodes[&id].recorded_commit.max(status.first_index - 1);
        for i in from + 1..=commit {
            let t = self.nodes[&id]
                .raw
                .as_ref()
                .unwrap()
                .term_at(i)
                .map_err(|e| e.to_string())?;
            match self.committed.get(&i) {
                Some(&ct) if ct != t => {
                    return Err(self.fail(format!(
                        "committed entry {i} changed term from {ct} to {t} on node {id}"
                    )));
                }
                _ => {
                    self.committed.insert(i, t);
                }
            }
        }
        let node = self.nodes.get_mut(&id).unwrap();
        node.recorded_commit = node.recorded_commit.max(commit);
        Ok(())
    }

    /// Leader completeness: a new leader holds every entry committed so far.
    fn check_leader_completeness(&self, id: NodeId) -> Result<(), Fail> {
        let raw = self.nodes[&id].raw.as_ref().unwrap();
        let status = raw.status();
        if let Some((&max, _)) = self.committed.iter().next_back()
            && status.last_index < max
        {
            return Err(self.fail(format!(
                "leader completeness: node {id} leads term {} with last index {} but {max} is committed",
                status.hard_state.term, status.last_index
            )));
        }
        for (&i, &t) in self.committed.range(status.first_index..) {
            if raw.term_at(i).ok() != Some(t) {
                return Err(self.fail(format!(
                    "leader completeness: node {id} lacks committed entry {i} (term {t})"
                )));
            }
        }
        Ok(())
    }

    /// Runs every live node's driver and the network with no faults until quiet.
    fn settle(&mut self) -> Result<(), Fail> {
        for _ in 0..10_000 {
            let mut busy = false;
            for id in self.live_ids() {
                if self.nodes[&id].raw.as_ref().unwrap().has_ready() {
                    self.process(id)?;
                    busy = true;
                }
                while !self.nodes[&id].pending.is_empty() {
                    self.persist_one(id)?;
                    busy = true;
                }
            }
            while !self.net.is_empty() {
                let env = self.net.remove(0);
                self.deliver(env)?;
                busy = true;
            }
            if !busy {
                return Ok(());
            }
        }
        Err(self.fail("the cluster never settled".into()))
    }

    /// Liveness: once faults stop, a leader is elected and new proposals commit everywhere
    /// within a bounded number of ticks.
    fn liveness(&mut self) -> Result<(), Fail> {
        self.log("faults stop".into());
        self.cut.clear();
        self.opts.drop_pct = 0;
        let down: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.raw.is_none() && !n.stopped)
            .map(|(&id, _)| id)
            .collect();
        for id in down {
            self.restart(id)?;
        }
        self.settle()?;
        // Within the bound, some leader must become stable and get a fresh proposal
        // committed and applied on every member. A proposal lost to a legitimate leader
        // change (say, a node that was cut off just before the heal wins an election) is
        // retried with the new leader.
        let bound = 40 * 20;
        let mut outstanding: Option<(NodeId, Index, Term)> = None;
        let mut last_status = String::new();
        for _ in 0..bound {
            self.settle()?;
            if self.opts.membership {
                self.stop_removed();
            }
            if let Some((_, index, term)) = outstanding {
                let members = self
                    .all_ids
                    .iter()
                    .copied()
                    .filter(|id| self.is_member(*id))
                    .collect::<Vec<_>>();
                if self.committed.get(&index) == Some(&term)
                    && members.iter().all(|id| self.nodes[id].sm.applied >= index)
                {
                    return if self.opts.reads {
                        self.reads_after_healing(&members)
                    } else {
                        Ok(())
                    };
                }
            }
            if let Some(leader) = self.stable_leader() {
                let stale = outstanding.is_none_or(|(l, index, term)| {
                    l != leader || self.committed.get(&index).is_some_and(|&t| t != term)
                });
                if stale {
                    let cmd = self.next_command;
                    let raw = self.nodes.get_mut(&leader).unwrap().raw.as_mut().unwrap();
                    let term = raw.term();
                    match raw.propose(Bytes::copy_from_slice(&cmd.to_le_bytes())) {
                        Ok(i) => {
                            self.next_command += 1;
                            outstanding = Some((leader, i, term));
                            self.log(format!("liveness: leader {leader} accepted command {cmd} at {i}"));
                            continue;
                        }
                        // The backlog must drain, and a transfer finish or abort, within the bound.
                        Err(
                            raft_core::ProposeError::UncommittedLimit { .. }
                            | raft_core::ProposeError::TransferInProgress { .. },
                        ) => {}
                        Err(e) => {
                            return Err(self.fail(format!(
                                "liveness: stable leader {leader} refused a proposal: {e}"
                            )));
                        }
                    }
                }
                last_status = format!("{:?}", self.nodes[&leader].raw.as_ref().unwrap().status());
            }
            self.tick_all();
        }
        Err(self.fail(format!(
            "liveness: no proposal committed everywhere within {bound} ticks of healing ({outstanding:?}); last leader status {last_status}"
        )))
    }

    fn is_member(&self, id: NodeId) -> bool {
        self.nodes
            .values()
            .filter_map(|n| n.raw.as_ref())
            .find(|r| r.role() == Role::Leader)
            .is_some_and(|r| r.conf_state().contains(id))
    }

    /// Once the cluster is healthy, a read issued at any member completes (and is checked
    /// for linearizability like every other read).
    fn reads_after_healing(&mut self, members: &[NodeId]) -> Result<(), Fail> {
        let mut issued = Vec::new();
        for &id in members {
            let ctx = self.next_read_ctx;
            self.next_read_ctx += 1;
            let required = self.max_applied();
            let res = self
                .nodes
                .get_mut(&id)
                .unwrap()
                .raw
                .as_mut()
                .unwrap()
                .read_index(ctx);
            if let Err(e) = res {
                return Err(self.fail(format!("liveness: member {id} refused a read after healing: {e}")));
            }
            self.reads.insert(
                ctx,
                ClientRead {
                    node: id,
                    acked_at_start: required,
                    lease: false,
                    index: None,
                },
            );
            issued.push(ctx);
        }
        for _ in 0..200 {
            self.settle()?;
            if issued.iter().all(|ctx| !self.reads.contains_key(ctx)) {
                return Ok(());
            }
            self.tick_all();
        }
        Err(self.fail(format!(
            "liveness: reads {issued:?} did not complete after healing"
        )))
    }

    /// A leader every member follows in the leader's term.
    fn stable_leader(&self) -> Option<NodeId> {
        let leader = self
            .nodes
            .iter()
            .find(|(_, n)| n.raw.as_ref().is_some_and(|r| r.role() == Role::Leader))
            .map(|(&id, _)| id)?;
        let raw = self.nodes[&leader].raw.as_ref().unwrap();
        let term = raw.term();
        let members = raw.conf_state().members();
        members
            .iter()
            .all(|id| {
                self.nodes
                    .get(id)
                    .and_then(|n| n.raw.as_ref())
                    .is_some_and(|r| r.term() == term && r.leader() == Some(leader))
            })
            .then_some(leader)
    }

    /// The highest index applied on any node: everything up to it is committed, so every
    /// read issued from now on must observe it.
    fn max_applied(&self) -> Index {
        self.sm_at.keys().copied().max().unwrap_or(0)
    }

    fn read_random(&mut self) -> Result<(), Fail> {
        let live = self.live_ids();
        if live.is_empty() {
            return Ok(());
        }
        let id = live[self.pick(live.len())];
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        let lease = self.chance(50);
        let required = self.max_applied();
        let raw = self.nodes.get_mut(&id).unwrap().raw.as_mut().unwrap();
        let res = if lease {
            raw.lease_read(ctx)
        } else {
            raw.read_index(ctx)
        };
        match res {
            Ok(()) => {
                self.reads.insert(
                    ctx,
                    ClientRead {
                        node: id,
                        acked_at_start: required,
                        lease,
                        index: None,
                    },
                );
                self.log(format!(
                    "node {id} read {ctx} (lease {lease}) must see {required}"
                ));
            }
            Err(e) => self.log(format!("node {id} refused read {ctx}: {e}")),
        }
        self.check_node(id)
    }

    fn complete_read(&mut self, id: NodeId, rs: raft_core::ReadState) -> Result<(), Fail> {
        let Some(node) = self.reads.get(&rs.ctx).map(|r| r.node) else {
            return Err(self.fail(format!(
                "node {id} answered read {} that was never issued there",
                rs.ctx
            )));
        };
        if node != id {
            return Err(self.fail(format!("read {} issued at {node} answered at {id}", rs.ctx)));
        }
        match rs.result {
            Ok(index) => {
                self.reads.get_mut(&rs.ctx).unwrap().index = Some(index);
                self.log(format!("node {id} read {} confirmed at {index}", rs.ctx));
                self.serve_reads(id)
            }
            Err(e) => {
                self.reads.remove(&rs.ctx);
                self.reads_failed += 1;
                self.log(format!("node {id} read {} failed: {e}", rs.ctx));
                Ok(())
            }
        }
    }

    /// Serves every confirmed read at `id` whose index the state machine has reached, and
    /// checks it is linearizable: it observes every write applied anywhere before it began.
    fn serve_reads(&mut self, id: NodeId) -> Result<(), Fail> {
        let applied = self.nodes[&id].sm.applied;
        let ready: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, r)| r.node == id && r.index.is_some_and(|i| i <= applied))
            .map(|(&ctx, _)| ctx)
            .collect();
        for ctx in ready {
            let r = self.reads.remove(&ctx).unwrap();
            if applied < r.acked_at_start {
                return Err(self.fail(format!(
                    "stale read {ctx} at node {id} (lease {}): state at {applied} misses index {} applied before the read began (read index {:?})",
                    r.lease, r.acked_at_start, r.index
                )));
            }
            self.reads_completed += 1;
        }
        Ok(())
    }

    fn live_leader(&mut self) -> Option<NodeId> {
        let leaders: Vec<NodeId> = self
            .live_ids()
            .into_iter()
            .filter(|id| self.nodes[id].raw.as_ref().unwrap().role() == Role::Leader)
            .collect();
        if leaders.is_empty() {
            None
        } else {
            Some(leaders[self.pick(leaders.len())])
        }
    }

    fn membership_random(&mut self) -> Result<(), Fail> {
        let Some(leader) = self.live_leader() else {
            return Ok(());
        };
        let raw = self.nodes[&leader].raw.as_ref().unwrap();
        let cs = raw.conf_state().clone();
        let committed = raw.status().conf_index <= raw.commit_index();
        let voters: Vec<NodeId> = cs.voters.iter().copied().collect();
        let learners: Vec<NodeId> = cs.learners.iter().copied().collect();
        let outsiders: Vec<NodeId> = self
            .all_ids
            .iter()
            .copied()
            .filter(|id| !cs.contains(*id) && !cs.removed.contains(id) && !self.nodes[id].stopped)
            .collect();
        let change = match self.pick(8) {
            0 | 1 if !outsiders.is_empty() => {
                let id = outsiders[self.pick(outsiders.len())];
                Some(ConfChange::new([
                    MemberChange::add_learner(id).with_meta(format!("addr-{id}"))
                ]))
            }
            2 if !learners.is_empty() => Some(ConfChange::new([MemberChange::add_voter(
                learners[self.pick(learners.len())],
            )])),
            3 if voters.len() > 1 => Some(ConfChange::new([MemberChange::add_learner(
                voters[self.pick(voters.len())],
            )])),
            4 if voters.len() + learners.len() > 1 => {
                let members: Vec<NodeId> = voters.iter().chain(&learners).copied().collect();
                let id = members[self.pick(members.len())];
                if voters == [id] {
                    None
                } else {
                    Some(ConfChange::new([MemberChange::remove(id)]))
                }
            }
            5 if !learners.is_empty() && !voters.is_empty() => {
                let auto_leave = self.chance(70);
                let out = voters[self.pick(voters.len())];
                let inn = learners[self.pick(learners.len())];
                Some(ConfChange::joint(
                    [MemberChange::add_voter(inn), MemberChange::remove(out)],
                    auto_leave,
                ))
            }
            6 => {
                if cs.is_joint() {
                    Some(ConfChange::leave_joint())
                } else {
                    let others: Vec<NodeId> = voters.iter().copied().filter(|&v| v != leader).collect();
                    if !others.is_empty() {
                        let target = others[self.pick(others.len())];
                        let res = self
                            .nodes
                            .get_mut(&leader)
                            .unwrap()
                            .raw
                            .as_mut()
                            .unwrap()
                            .transfer_leader(target);
                        match res {
                            Ok(()) => {
                                self.transfers += 1;
                                self.log(format!("leader {leader} transfers to {target}"));
                            }
                            Err(e) => self.log(format!("leader {leader} refused transfer to {target}: {e}")),
                        }
                    }
                    None
                }
            }
            7 if committed => {
                // An operator wipes a node whose removal has committed, so it can be added
                // back later with a clean data directory.
                let removed: Vec<NodeId> = cs
                    .removed
                    .iter()
                    .copied()
                    .filter(|id| !cs.contains(*id) && self.nodes.get(id).is_some_and(|n| !n.stopped))
                    .collect();
                if !removed.is_empty() {
                    let id = removed[self.pick(removed.len())];
                    self.wipe(id)?;
                }
                None
            }
            _ => None,
        };
        if let Some(cc) = change {
            let res = self
                .nodes
                .get_mut(&leader)
                .unwrap()
                .raw
                .as_mut()
                .unwrap()
                .propose_conf_change(cc.clone());
            match res {
                Ok(index) => {
                    self.conf_changes += 1;
                    self.log(format!("leader {leader} proposed {cc:?} at {index}"));
                }
                Err(e) => self.log(format!("leader {leader} refused {cc:?}: {e}")),
            }
        }
        self.check_node(leader)
    }

    /// An operator retires a node whose removal committed and brings the machine back as a
    /// fresh node with a clean data directory under a new id (ids are never reused). The old
    /// process is gone, and with it its connections: nothing it sent is delivered any more.
    fn wipe(&mut self, id: NodeId) -> Result<(), Fail> {
        if self.nodes[&id].raw.is_some() {
            self.crash(id);
        }
        self.nodes.get_mut(&id).unwrap().stopped = true;
        // A snapshot stream to the dead process fails, and its sender hears about it.
        let failed: Vec<NodeId> = self
            .net
            .iter()
            .filter(|e| e.msg.to == id && matches!(e.msg.body, MessageBody::Snapshot(_)))
            .map(|e| e.msg.from)
            .collect();
        self.net.retain(|e| e.msg.from != id && e.msg.to != id);
        for leader in failed {
            self.report_snapshot(leader, id, SnapshotStatus::Failed);
        }
        self.log(format!("retire node {id}"));
        if self.all_ids.len() >= 12 {
            return Ok(());
        }
        let new_id = self.all_ids.iter().copied().max().unwrap_or(0) + 1;
        let config = self.node_config(new_id);
        let raw = RawNode::new(config.clone(), MemStorage::new(), 0).map_err(|e| e.to_string())?;
        let sm_durable = self.chance(50);
        self.nodes.insert(
            new_id,
            SimNode {
                id: new_id,
                config,
                raw: Some(raw),
                storage_down: None,
                pending: VecDeque::new(),
                sm: Sm::default(),
                sm_durable,
                snapshot: (0, Sm::default()),
                staged: BTreeMap::new(),
                recorded_commit: 0,
                was_leader_in: None,
                incarnation: 0,
                ever_member: false,
                stopped: false,
            },
        );
        self.all_ids.push(new_id);
        self.log(format!("new node {new_id} replaces node {id}"));
        Ok(())
    }

    /// In the liveness phase, an operator stops nodes removed by a committed configuration.
    fn stop_removed(&mut self) {
        let Some(leader) = self
            .nodes
            .iter()
            .find(|(_, n)| n.raw.as_ref().is_some_and(|r| r.role() == Role::Leader))
            .map(|(&id, _)| id)
        else {
            return;
        };
        let raw = self.nodes[&leader].raw.as_ref().unwrap();
        if raw.status().conf_index > raw.commit_index() {
            return;
        }
        let cs = raw.conf_state().clone();
        for id in self.live_ids() {
            if !cs.contains(id) {
                self.log(format!("stop removed node {id}"));
                self.crash(id);
                self.nodes.get_mut(&id).unwrap().stopped = true;
            }
        }
    }
}

fn short(m: &Message) -> String {
    match &m.body {
        MessageBody::Append(a) => format!(
            "Append(prev {}@{}, {} entries, commit {})",
            a.prev_index,
            a.prev_term,
            a.entries.len(),
            a.commit
        ),
        MessageBody::AppendResponse(r) => format!("{r:?}"),
        MessageBody::Snapshot(meta) => format!("Snapshot({}@{})", meta.index, meta.term),
        MessageBody::RequestVote(r) => format!(
            "{}(last {}@{})",
            if r.pre_vote { "PreVote" } else { "Vote" },
            r.last_index,
            r.last_term
        ),
        MessageBody::VoteResponse(r) => format!(
            "{}Resp(granted {})",
            if r.pre_vote { "Pre" } else { "" },
            r.granted
        ),
        other => format!("{other:?}"),
    }
}
