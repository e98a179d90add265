//! The `cluster` fuzz harness: a small cluster of honest [`RawNode`]s driven by a schedule
//! decoded from the fuzz input, with hostile peers whose messages also come from the input.
//!
//! Not part of any stable API: this file is shared, through `#[path]`, by the cargo-fuzz
//! target `raft-core/fuzz/fuzz_targets/cluster.rs` and by the stable replay test
//! `raft-core/tests/fuzz_seeds.rs`, which runs every file of `raft-core/fuzz/seeds/cluster/`
//! through [`cluster`] so that every crash ever found stays fixed.
//!
//! # What the input drives
//!
//! Three honest nodes (ids 1, 2, 3) over [`MemStorage`], driven like the deterministic
//! simulator drives them (`raft-core/tests/sim/mod.rs`): persistence is asynchronous (a batch
//! becomes durable only when the input says so, in order), committed entries are applied
//! when the input says so, and a crash loses every batch not yet durable (and, for a node
//! whose state machine is not durable, rolls the state machine back to its last snapshot).
//! The honest network is a queue the input delivers from in any order, drops from and
//! duplicates from. On top of that the input injects *hostile* messages: every
//! [`MessageBody`] variant, sent from a hostile member id, from an id that is no member, or
//! forged with an honest node's id (a compromised member), with every field drawn from a
//! biased distribution (0, 1, the recipient's current term or index and its neighbours,
//! 2^63 - 1, 2^63, u64::MAX - 1, u64::MAX, anything), entries with extreme terms and
//! indexes, membership entries with odd configurations, snapshots with or without their
//! data, and replies to what honest nodes sent to hostile ids.
//!
//! The topology comes from the first byte: voters {1, 2, 3, 4} and learner 5 with 4 and 5
//! hostile; voters {1, 2, 3} and learner 4 with 4 hostile; or voters {1, 2, 3, 4, 5} with 4
//! and 5 hostile.
//!
//! # What a hostile member can and cannot break, and therefore what is asserted
//!
//! Raft tolerates crashes, loss, duplication and reordering, not lies. What a lying member
//! can do depends on what it lies about:
//!
//! * **Leader claims** (`Append`, `Heartbeat`, `Snapshot` at a term the recipient accepts).
//!   Followers believe a leader of their term: its entries, its commit index (a heartbeat's
//!   commit index commits whatever the follower holds, including entries of a deposed
//!   leader that the rest of the cluster overwrote), its snapshot (which replaces the log
//!   and the state machine). A hostile "leader" can tell two followers different things at
//!   the same index and commit both, or truncate an honest node's copy of an entry that
//!   honest nodes committed (the node cannot know it is committed), after which a candidate
//!   lacking the entry wins with that node's vote and overwrites it. So **agreement among
//!   honest nodes (log matching, committed entries never change, leader completeness,
//!   state machine safety, read linearizability) cannot hold once a hostile leader claim
//!   was accepted**, and is not asserted after one. Election safety survives as long as
//!   every honest node keeps the initial configuration: a leader claim grants no vote, and
//!   an honest voter votes at most once per term. A hostile membership entry or snapshot
//!   configuration, or a hostile truncation of a configuration entry once honest nodes
//!   changed the configuration, can give honest nodes configurations whose quorums do not
//!   intersect, so election safety is no longer asserted after those either.
//! * **Responder lies** (granted votes and pre-votes, acknowledgements, rejections,
//!   heartbeat responses, vote requests, `TimeoutNow`, read requests). An honest leader
//!   counts a hostile acknowledgement toward its commit quorum, an honest candidate counts a
//!   hostile vote, and a hostile voter may vote for everyone. In a voter set of `n` with
//!   quorum `q`, any two quorums share at least `2q - n` voters; while fewer than `2q - n`
//!   voters are hostile, every two quorums (two elections of one term, or a commit and a
//!   later election) share an honest voter, which tells the truth and votes once per term.
//!   That is all the Raft safety proof needs, so **with at most `2q - n - 1` hostile voters
//!   in every configuration, every safety property among honest nodes must still hold**
//!   (one hostile voter among four: yes; one among three, or two among five: no). A hostile
//!   `ReadIndexResponse` makes a follower serve a stale read, so reads are no longer checked
//!   after one. Lease reads are never checked: each node ticks on its own here, so the
//!   bounded clock drift that leases assume does not hold.
//! * **Forged honest ids**: the honest node is then effectively hostile too, adding a
//!   hostile voter, so nothing among honest nodes is asserted afterwards.
//!
//! Whatever hostile input arrives, **each honest node on its own** must hold: no panic;
//! every refusal is an error value, changes nothing the node's [`raft_core::Status`] shows
//! (but for [`StepError::PeerLostLog`], documented to act), and the node keeps working; no node
//! ever stops with a `Fatal` error (an invariant check firing is a bug, and no message may
//! stop a node); a snapshot body is refused by `step` and anything else by `step_snapshot`;
//! the term never decreases within a run of the node and the durable term never decreases
//! at all; a durable vote never changes within a term (never two votes in one term); the
//! commit index never decreases within a run and stays at most the last index; applied <=
//! commit; only durable, contiguous entries are applied; a leader's `matched` for a peer
//! never decreases while it leads in a term, but when the peer shows it lost entries; what
//! a message claims is durable before it leaves (acknowledgements, votes, vote requests,
//! leader messages of a new term); read outcomes answer only reads issued at that node; a
//! restart from durable state always succeeds; storage never refuses a batch the node
//! handed out. An honest message in a run without any lie may be refused only for the
//! reason a correct schedule produces (an answer from a peer the leader no longer tracks);
//! any other refusal of it is a finding.
//!
//! **Liveness.** A final `heal` action restarts every node, stops faults and lies, and
//! requires a stable honest leader to commit a proposal that every honest member applies
//! within [`LIVENESS_TICKS`] ticks: no message may wedge the cluster. Asserted while
//! agreement is, and while honest voters form a quorum of every voter set (a configuration
//! that needs a silent liar's vote cannot make progress).
//!
//! A liar may raise honest nodes' terms apart by up to `MAX_TERM_GAP` per election timeout
//! each; an honest message further ahead than its receiver's allowance is then refused with
//! [`StepError::TermTooFarAhead`] (the one honest refusal a lie may cause, and the one refusal
//! besides [`StepError::PeerLostLog`] documented to change the node), and the liveness phase
//! gives honest nodes one election timeout per `MAX_TERM_GAP` of spread to converge.
//! `RAFT_FUZZ_TRACE=1` prints the schedule an input decodes to.
//!
//! Every input's work is bounded: at most [`MAX_STEPS`] actions, [`MAX_QUEUE`] queued
//! honest messages, a bounded number of deliveries per "settle" action, and hostile messages
//! of at most a few small entries.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::OnceLock;

use arbitrary::Unstructured;
use bytes::Bytes;
use raft_core::{
    Append, AppendResponse, CampaignError, ConfChange, ConfChangeMode, ConfState, Config, DriverError, Entry,
    EntryPayload, Heartbeat, HeartbeatResponse, Index, LogStorage, MAX_TERM_GAP, MemStorage, MemberChange,
    MembershipError, Message, MessageBody, NodeId, Persist, ProposeError, RawNode, ReadError,
    ReadIndexRequest, ReadIndexResponse, RequestVote, Role, SnapshotMeta, SnapshotStatus, StepError, Term,
    TransferError, VoteResponse,
};

/// Most actions one input runs.
pub const MAX_STEPS: usize = 300;
/// Most honest messages in flight; more are dropped (a loss, which Raft tolerates).
pub const MAX_QUEUE: usize = 128;
/// Most deliveries, driver passes and writes in one "settle" action.
const SETTLE_BUDGET: usize = 96;
/// Ticks the liveness phase allows for a stable leader to commit and apply a proposal.
const LIVENESS_TICKS: usize = 300;
/// Extra ticks the liveness phase allows per `MAX_TERM_GAP` of spread between honest terms:
/// one allowance is regained per election timeout (5 ticks here), and a lagging node needs
/// a message from the node ahead (a vote request or refusal, up to 10 ticks apart) to climb.
const CONVERGE_TICKS_PER_GAP: usize = 40;
/// Most entries in a hostile append.
const MAX_HOSTILE_ENTRIES: usize = 5;
/// The honest nodes.
const HONEST: [NodeId; 3] = [1, 2, 3];
/// Ids used in hostile configurations and conf changes; 6 is never started.
const ID_POOL: [NodeId; 6] = [1, 2, 3, 4, 5, 6];

/// Runs one fuzz input. Panics (with a message naming the violated property) on a finding.
pub fn cluster(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut h = Harness::new(&mut u);
    h.run(&mut u);
}

fn tracing() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("RAFT_FUZZ_TRACE").is_some())
}

// ---------------------------------------------------------------------------------------
// Input decoding helpers.

fn byte(u: &mut Unstructured) -> u8 {
    u.arbitrary().unwrap_or(0)
}

fn below(u: &mut Unstructured, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    u.choose_index(n).unwrap_or(0)
}

fn flag(u: &mut Unstructured) -> bool {
    byte(u) & 1 == 1
}

fn any_u64(u: &mut Unstructured) -> u64 {
    u.arbitrary().unwrap_or(0)
}

const HALF: u64 = 1 << 63;

/// A value near `around` or at an extreme: the values that break arithmetic and bounds.
fn biased(u: &mut Unstructured, around: u64) -> u64 {
    match byte(u) % 20 {
        0 => 0,
        1 => 1,
        2 => around.wrapping_sub(1),
        3..=6 => around,
        7 | 8 => around.wrapping_add(1),
        9 => around.wrapping_add(2 + u64::from(byte(u) % 8)),
        10 => around.saturating_sub(2 + u64::from(byte(u) % 8)),
        11 => HALF - 2,
        12 => HALF - 1,
        13 => HALF,
        14 => match byte(u) % 3 {
            // The most a term may run ahead of the receiver's (MAX_TERM_GAP), and past it.
            0 => around.wrapping_add(1 << 32),
            1 => around.wrapping_add((1 << 32) + 1),
            _ => HALF + 1,
        },
        15 => u64::MAX - 1,
        16 => u64::MAX,
        17 => u64::from(byte(u) % 16),
        _ => any_u64(u),
    }
}

// ---------------------------------------------------------------------------------------
// The state machine model (as in the simulator): a hash chain over applied entries.

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sm {
    applied: Index,
    hash: u64,
}

fn mix(a: u64, b: u64) -> u64 {
    let mut x = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x
}

fn conf_hash(cs: &ConfState) -> u64 {
    let mut h = 3u64;
    for (tag, set) in [
        (1u64, &cs.voters),
        (2, &cs.voters_outgoing),
        (3, &cs.learners),
        (4, &cs.learners_next),
        (5, &cs.removed),
    ] {
        h = mix(h, tag);
        for v in set {
            h = mix(h, *v);
        }
    }
    mix(h, u64::from(cs.auto_leave))
}

fn entry_hash(e: &Entry) -> u64 {
    let p = match &e.payload {
        EntryPayload::Empty => 1,
        EntryPayload::Normal(d) => d.iter().fold(2u64, |h, b| mix(h, u64::from(*b))),
        EntryPayload::Internal(d) => d.iter().fold(3u64, |h, b| mix(h, u64::from(*b))),
        EntryPayload::Membership(cs) => conf_hash(cs),
    };
    mix(e.term, p)
}

// ---------------------------------------------------------------------------------------
// Classification of errors.

/// Where a message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// Sent by an honest node and carried by the (lossy, reordering) network.
    Honest,
    /// Made up by the input.
    Hostile,
}

/// Errors an honest message may produce in a run without lies: the answer of a peer this
/// leader no longer tracks (it was removed, or this node leads again after losing track).
fn honest_refusal_expected(e: &StepError) -> bool {
    match e {
        StepError::UnknownPeer { .. } => true,
        StepError::WrongRecipient { .. }
        | StepError::Malformed { .. }
        | StepError::TermTooFarAhead { .. }
        | StepError::PeerLostLog { .. }
        | StepError::SnapshotWithoutData { .. }
        | StepError::Fatal(_) => false,
    }
}

/// Refusals of the API calls the harness makes at random moments, with random arguments,
/// that a correct node may answer with; anything else (above all a stopped node) is a
/// finding. Each match lists every variant, so that a new one must be judged here.
fn propose_refusal_expected(e: &ProposeError) -> bool {
    match e {
        ProposeError::NotLeader { .. }
        | ProposeError::TransferInProgress { .. }
        | ProposeError::UncommittedLimit { .. } => true,
        ProposeError::Fatal(_) => false,
    }
}

fn membership_refusal_expected(e: &MembershipError) -> bool {
    match e {
        MembershipError::NotLeader { .. }
        | MembershipError::TransferInProgress { .. }
        | MembershipError::Pending { .. }
        | MembershipError::LeaderNotReady
        | MembershipError::LearnerNotCaughtUp { .. }
        | MembershipError::Invalid(_) => true,
        MembershipError::Fatal(_) => false,
    }
}

fn transfer_refusal_expected(e: &TransferError) -> bool {
    match e {
        TransferError::NotLeader { .. } | TransferError::ToSelf | TransferError::NotVoter { .. } => true,
        TransferError::Fatal(_) => false,
    }
}

/// Read contexts are unique here, as the API requires: a duplicate is a finding.
fn read_refusal_expected(e: &ReadError) -> bool {
    match e {
        ReadError::NotLeader { .. } | ReadError::TooManyPending { .. } => true,
        ReadError::DuplicateCtx { .. } | ReadError::Fatal(_) => false,
    }
}

fn campaign_refusal_expected(e: &CampaignError) -> bool {
    match e {
        CampaignError::NotVoter => true,
        CampaignError::Fatal(_) => false,
    }
}

// ---------------------------------------------------------------------------------------
// The cluster.

struct Envelope {
    msg: Message,
    /// The snapshot data travelling beside a snapshot message.
    snapshot: Option<Sm>,
}

struct Node {
    id: NodeId,
    config: Config,
    raw: Option<RawNode<MemStorage>>,
    /// Durable storage while the node is down.
    storage_down: Option<MemStorage>,
    pending: VecDeque<Persist>,
    to_apply: VecDeque<Entry>,
    sm: Sm,
    sm_durable: bool,
    /// The snapshot data stored with the log (index 0: the empty initial state).
    snapshot: (Index, Sm),
    /// Snapshot data received beside snapshot messages, by index.
    staged: BTreeMap<Index, Sm>,
    // Per-run monotonic trackers.
    run_term: Term,
    run_commit: Index,
    /// `(term, matched by peer)` while this node leads.
    leader_matched: Option<(Term, BTreeMap<NodeId, Index>)>,
    // Durable trackers (across crashes).
    durable_term: Term,
    durable_vote: Option<NodeId>,
    durable_commit: Index,
    // Cluster bookkeeping.
    recorded_commit: Index,
    was_leader_in: Option<Term>,
    /// Reads issued here and not answered, by context: `Some(required)` when checked.
    reads: HashMap<u64, Option<Index>>,
    /// Confirmed reads waiting for the state machine: (ctx, index, required applied).
    confirmed: Vec<(u64, Index, Option<Index>)>,
}

impl Node {
    fn storage(&self) -> &MemStorage {
        match &self.raw {
            Some(r) => r.storage(),
            None => self.storage_down.as_ref().expect("a down node keeps its storage"),
        }
    }
}

struct Harness {
    nodes: Vec<Node>,
    hostile: Vec<NodeId>,
    net: VecDeque<Envelope>,
    /// Recent messages honest nodes sent to hostile ids (for hostile replies).
    to_hostile: VecDeque<Message>,
    /// The latest heartbeat round an honest leader sent a hostile id.
    last_round_to_hostile: u64,
    step_no: usize,
    next_cmd: u64,
    next_ctx: u64,
    // What may still be asserted.
    /// A leader claim by a liar was accepted, or an honest id was forged, or a voter set
    /// had too many hostile voters: agreement among honest nodes is not asserted.
    log_taint: bool,
    /// Election safety is not asserted either.
    election_taint: bool,
    /// Reads are not checked.
    read_taint: bool,
    /// Some honest conf change was accepted.
    conf_changed: bool,
    /// The sum of every rise of an honest node's term that a hostile message caused.
    hostile_rise: u64,
    /// The liveness phase ran: the input is over.
    healed: bool,
    // Safety bookkeeping (as in the simulator).
    leaders: BTreeMap<Term, NodeId>,
    chain: HashMap<(Index, Term), u64>,
    committed: BTreeMap<Index, Term>,
    applied_entries: HashMap<Index, u64>,
    sm_at: HashMap<Index, Sm>,
    trace: Vec<String>,
}

impl Harness {
    fn new(u: &mut Unstructured) -> Harness {
        let header = byte(u);
        let (voters, learners, hostile): (Vec<NodeId>, Vec<NodeId>, Vec<NodeId>) = match header % 4 {
            0 | 1 => (vec![1, 2, 3, 4], vec![5], vec![4, 5]),
            2 => (vec![1, 2, 3], vec![4], vec![4]),
            _ => (vec![1, 2, 3, 4, 5], vec![], vec![4, 5]),
        };
        let cs = ConfState::with_voters(voters).and_learners(learners);
        let pre_vote = header & 4 == 0;
        let check_quorum = header & 8 == 0;
        let sizes = byte(u);
        let mut nodes = Vec::new();
        for &id in &HONEST {
            let mut c = Config::new(id);
            c.election_tick = 5;
            c.min_election_tick = 5;
            c.max_election_tick = 10;
            c.heartbeat_tick = 1 + u32::from(sizes & 1);
            c.pre_vote = pre_vote;
            c.check_quorum = check_quorum;
            c.max_inflight_msgs = [1, 2, 4, 256][usize::from((sizes >> 1) & 3)];
            c.max_append_bytes = if sizes & 8 == 0 { 60 } else { 1 << 20 };
            c.max_uncommitted_bytes = if sizes & 16 == 0 { 200 } else { 1 << 20 };
            c.max_apply_bytes = if sizes & 32 == 0 { 40 } else { 1 << 20 };
            c.max_pending_reads = if sizes & 64 == 0 { 4 } else { 1024 };
            c.max_inflight_bytes = if sizes & 128 == 0 { 150 } else { 16 << 20 };
            c.max_applying_bytes = if sizes & 128 == 0 { 100 } else { 32 << 20 };
            c.lease_drift_ticks = 2;
            c.seed = id.wrapping_mul(0x1234_5678).wrapping_add(u64::from(header));
            let raw = RawNode::new(c.clone(), MemStorage::new_with_conf_state(cs.clone()), 0)
                .expect("a valid configuration starts");
            nodes.push(Node {
                id,
                config: c,
                raw: Some(raw),
                storage_down: None,
                pending: VecDeque::new(),
                to_apply: VecDeque::new(),
                sm: Sm::default(),
                sm_durable: header & (16 << (id - 1)) != 0,
                snapshot: (0, Sm::default()),
                staged: BTreeMap::new(),
                run_term: 0,
                run_commit: 0,
                leader_matched: None,
                durable_term: 0,
                durable_vote: None,
                durable_commit: 0,
                recorded_commit: 0,
                was_leader_in: None,
                reads: HashMap::new(),
                confirmed: Vec::new(),
            });
        }
        let mut h = Harness {
            nodes,
            hostile,
            net: VecDeque::new(),
            to_hostile: VecDeque::new(),
            last_round_to_hostile: 1,
            step_no: 0,
            next_cmd: 1,
            next_ctx: 1,
            log_taint: false,
            election_taint: false,
            read_taint: false,
            conf_changed: false,
            hostile_rise: 0,
            healed: false,
            leaders: BTreeMap::new(),
            chain: HashMap::new(),
            committed: BTreeMap::new(),
            applied_entries: HashMap::new(),
            sm_at: HashMap::new(),
            trace: Vec::new(),
        };
        h.sm_at.insert(0, Sm::default());
        h.check_tolerance(&cs);
        h
    }

    fn log(&mut self, f: impl FnOnce() -> String) {
        if tracing() {
            let s = f();
            eprintln!("[{}] {s}", self.step_no);
            self.trace.push(s);
        }
    }

    #[track_caller]
    fn fail(&self, what: String) -> ! {
        let mut s = format!(
            "cluster fuzz finding at step {}: {what}\n(taint: log {} election {} read {}; rerun with RAFT_FUZZ_TRACE=1 for the schedule)\nnodes:\n",
            self.step_no, self.log_taint, self.election_taint, self.read_taint
        );
        for n in &self.nodes {
            match &n.raw {
                Some(raw) => {
                    let st = raw.status();
                    s.push_str(&format!(
                        "  {}: {:?} term {} vote {:?} commit {} first {} last {} persisted {} applied {} voters {:?} out {:?} learners {:?}\n",
                        n.id,
                        st.soft_state.role,
                        st.hard_state.term,
                        st.hard_state.vote,
                        st.hard_state.commit,
                        st.first_index,
                        st.last_index,
                        st.persisted,
                        st.applied,
                        st.conf_state.voters,
                        st.conf_state.voters_outgoing,
                        st.conf_state.learners
                    ));
                }
                None => s.push_str(&format!("  {}: down\n", n.id)),
            }
        }
        panic!("{s}");
    }

    fn idx(id: NodeId) -> usize {
        (id - 1) as usize
    }

    fn is_honest(id: NodeId) -> bool {
        HONEST.contains(&id)
    }

    fn up(&self, id: NodeId) -> bool {
        Self::is_honest(id) && self.nodes[Self::idx(id)].raw.is_some()
    }

    fn raw(&mut self, id: NodeId) -> &mut RawNode<MemStorage> {
        self.nodes[Self::idx(id)].raw.as_mut().expect("node is up")
    }

    /// Whether a voter set keeps every two quorums sharing an honest voter.
    fn tolerable(&self, voters: &BTreeSet<NodeId>) -> bool {
        let n = voters.len();
        if n == 0 {
            return true;
        }
        let q = n / 2 + 1;
        let h = voters.iter().filter(|v| !Self::is_honest(**v)).count();
        h == 0 || h < 2 * q - n
    }

    fn check_tolerance(&mut self, cs: &ConfState) {
        if !self.tolerable(&cs.voters) || !self.tolerable(&cs.voters_outgoing) {
            self.log(|| "a voter set tolerates no liar: agreement is no longer asserted".into());
            self.taint_all();
        }
    }

    fn taint_all(&mut self) {
        self.log_taint = true;
        self.election_taint = true;
        self.read_taint = true;
    }

    // -----------------------------------------------------------------------------------
    // The schedule.

    fn run(&mut self, u: &mut Unstructured) {
        while !u.is_empty() && self.step_no < MAX_STEPS && !self.healed {
            self.step_no += 1;
            self.action(u);
            self.check_all();
        }
    }

    fn pick_node(u: &mut Unstructured) -> NodeId {
        HONEST[below(u, HONEST.len())]
    }

    fn action(&mut self, u: &mut Unstructured) {
        let id = Self::pick_node(u);
        match byte(u) % 32 {
            0..=2 => {
                let n = 1 + below(u, 8);
                if self.up(id) {
                    self.log(|| format!("tick {id} x{n}"));
                    for _ in 0..n {
                        self.raw(id).tick();
                    }
                }
            }
            3 => {
                self.log(|| "tick all".into());
                for id in HONEST {
                    if self.up(id) {
                        self.raw(id).tick();
                    }
                }
            }
            4..=6 => self.process(id),
            7..=9 => {
                if !self.net.is_empty() {
                    let i = below(u, self.net.len());
                    let env = self.net.remove(i).expect("in range");
                    self.deliver(env);
                }
            }
            10 => {
                if !self.net.is_empty() {
                    let i = below(u, self.net.len());
                    let env = self.net.remove(i).expect("in range");
                    self.log(|| format!("drop {} {}->{}", env.msg.kind(), env.msg.from, env.msg.to));
                    // A driver learns that a snapshot transfer broke (its stream fails) and
                    // reports it, as the `report_snapshot` contract asks; a lost snapshot is
                    // never silent.
                    if matches!(env.msg.body, MessageBody::Snapshot(_)) && self.up(env.msg.from) {
                        self.raw(env.msg.from)
                            .report_snapshot(env.msg.to, SnapshotStatus::Failed);
                    }
                }
            }
            11 => {
                if !self.net.is_empty() && self.net.len() < MAX_QUEUE {
                    let i = below(u, self.net.len());
                    let e = &self.net[i];
                    let dup = Envelope {
                        msg: e.msg.clone(),
                        snapshot: e.snapshot,
                    };
                    self.log(|| format!("duplicate {} {}->{}", dup.msg.kind(), dup.msg.from, dup.msg.to));
                    self.net.push_back(dup);
                }
            }
            12 => {
                // Reorder: a message goes to the back of the queue.
                if !self.net.is_empty() {
                    let i = below(u, self.net.len());
                    let env = self.net.remove(i).expect("in range");
                    self.net.push_back(env);
                }
            }
            13..=14 => self.persist_one(id),
            15 => self.apply(id, 1 + below(u, 8)),
            16 => self.crash_or_restart(id),
            17 => self.propose(id, u),
            18 => self.read(id, u),
            19 => self.conf_change(id, u),
            20 => {
                let target = ID_POOL[below(u, ID_POOL.len())];
                if self.up(id) {
                    let res = self.raw(id).transfer_leader(target);
                    self.log(|| format!("transfer {id} -> {target}: {res:?}"));
                    self.api_result(id, "transfer_leader", res, transfer_refusal_expected);
                }
            }
            21 => {
                if self.up(id) {
                    let res = self.raw(id).campaign();
                    self.log(|| format!("campaign {id}: {res:?}"));
                    self.api_result(id, "campaign", res, campaign_refusal_expected);
                }
            }
            22 => self.compact(id),
            23 => self.driver_report(id, u),
            24..=26 => {
                let budget = 8 + below(u, SETTLE_BUDGET);
                self.settle(budget);
            }
            30 => {
                // Quiescence: the driver asks a leader to go quiet, or wakes a node.
                if self.up(id) {
                    if flag(u) {
                        let quiet = self.raw(id).quiesce();
                        self.log(|| format!("quiesce {id}: {quiet}"));
                    } else {
                        self.log(|| format!("wake {id}"));
                        self.raw(id).wake();
                    }
                }
            }
            31 => self.heal(),
            _ => self.hostile(u),
        }
    }

    fn api_result<T, E: std::fmt::Display>(
        &self,
        id: NodeId,
        what: &str,
        res: Result<T, E>,
        expected: fn(&E) -> bool,
    ) {
        if let Err(e) = res
            && !expected(&e)
        {
            self.fail(format!("node {id} {what} failed unexpectedly: {e}"));
        }
    }

    /// A bounded number of driver passes, writes and deliveries, in a fixed order: what a
    /// healthy stretch of time does.
    fn settle(&mut self, budget: usize) {
        self.log(|| format!("settle ({budget})"));
        let mut done = 0;
        while done < budget {
            let mut busy = false;
            for id in HONEST {
                if !self.up(id) {
                    continue;
                }
                if self.raw(id).has_ready() {
                    self.process(id);
                    busy = true;
                    done += 1;
                }
                while !self.nodes[Self::idx(id)].pending.is_empty() {
                    self.persist_one(id);
                    busy = true;
                    done += 1;
                }
                if !self.nodes[Self::idx(id)].to_apply.is_empty() {
                    self.apply(id, usize::MAX);
                    busy = true;
                }
            }
            let deliveries = self.net.len().min(budget.saturating_sub(done));
            for _ in 0..deliveries {
                if let Some(env) = self.net.pop_front() {
                    self.deliver(env);
                    busy = true;
                    done += 1;
                }
            }
            if !busy {
                break;
            }
        }
    }

    /// Liveness: once faults and lies stop and every node is up, a stable leader commits a
    /// new proposal and every honest member applies it within [`LIVENESS_TICKS`]. Asserted
    /// only while agreement is (a liar's accepted leader claim can leave honest logs that no
    /// honest leader may repair), and while honest voters form a quorum of every voter set.
    fn heal(&mut self) {
        self.healed = true;
        self.log(|| "heal: faults and lies stop".into());
        for id in HONEST {
            if !self.up(id) {
                self.restart(id);
            }
        }
        // The hostile nodes fall silent: a driver's liveness signal wakes the quiescent
        // nodes that may be following one of them.
        for id in HONEST {
            self.raw(id).wake();
        }
        let honest_quorums = HONEST.iter().all(|&id| {
            let cs = self.nodes[Self::idx(id)].raw.as_ref().expect("up").conf_state();
            [&cs.voters, &cs.voters_outgoing].iter().all(|set| {
                set.is_empty() || set.iter().filter(|v| Self::is_honest(**v)).count() > set.len() / 2
            })
        });
        let assert = !self.log_taint && !self.election_taint && honest_quorums;
        if !assert {
            return;
        }
        // Honest nodes whose terms a liar pushed apart close the gap by one allowance per
        // election timeout, and need a couple of election rounds for each step.
        let terms = HONEST.map(|id| self.raw(id).term());
        let spread = terms.iter().max().expect("three") - terms.iter().min().expect("three");
        let steps = usize::try_from(spread / MAX_TERM_GAP).unwrap_or(usize::MAX);
        let allowed = LIVENESS_TICKS.saturating_add(steps.saturating_mul(CONVERGE_TICKS_PER_GAP));
        let mut outstanding: Option<(NodeId, Index, Term)> = None;
        for _ in 0..allowed {
            self.settle(4000);
            if let Some((leader, index, term)) = outstanding {
                let members = self.nodes[Self::idx(leader)]
                    .raw
                    .as_ref()
                    .expect("up")
                    .conf_state()
                    .members();
                let done = members.iter().filter(|m| Self::is_honest(**m)).all(|&m| {
                    let n = &self.nodes[Self::idx(m)];
                    n.sm.applied >= index && n.raw.as_ref().expect("up").term_at(index).ok() == Some(term)
                });
                if done {
                    self.log(|| format!("live: entry {index}@{term} applied on every honest member"));
                    return;
                }
            }
            if let Some(leader) = self.stable_leader() {
                let stale = outstanding.is_none_or(|(l, index, term)| {
                    l != leader || self.raw(leader).term_at(index).is_ok_and(|t| t != term)
                });
                if stale {
                    let term = self.raw(leader).term();
                    match self.raw(leader).propose(Bytes::from_static(b"liveness")) {
                        Ok(index) => outstanding = Some((leader, index, term)),
                        Err(
                            ProposeError::UncommittedLimit { .. } | ProposeError::TransferInProgress { .. },
                        ) => {}
                        Err(e @ (ProposeError::NotLeader { .. } | ProposeError::Fatal(_))) => self.fail(
                            format!("liveness: stable leader {leader} refused a proposal: {e}"),
                        ),
                    }
                }
            }
            for id in HONEST {
                self.raw(id).tick();
            }
        }
        self.fail(format!(
            "liveness: no proposal committed and applied on every honest member within {allowed} ticks of healing (honest terms {terms:?}; outstanding {outstanding:?})"
        ));
    }

    /// The honest leader of the highest term, if every honest member of its configuration
    /// follows it in that term.
    fn stable_leader(&self) -> Option<NodeId> {
        let (leader, raw) = HONEST
            .iter()
            .filter_map(|&id| Some((id, self.nodes[Self::idx(id)].raw.as_ref()?)))
            .filter(|(_, r)| r.role() == Role::Leader)
            .max_by_key(|(_, r)| r.term())?;
        let term = raw.term();
        raw.conf_state()
            .members()
            .iter()
            .filter(|m| Self::is_honest(**m))
            .all(|&m| {
                self.nodes[Self::idx(m)]
                    .raw
                    .as_ref()
                    .is_some_and(|r| r.term() == term && r.leader() == Some(leader))
            })
            .then_some(leader)
    }

    // -----------------------------------------------------------------------------------
    // Driver.

    /// One driver pass: take the ready, send, queue the write and the entries to apply.
    fn process(&mut self, id: NodeId) {
        if !self.up(id) || !self.raw(id).has_ready() {
            return;
        }
        let ready = match self.raw(id).ready() {
            Ok(r) => r,
            Err(e) => self.fail(format!("node {id} ready() failed: {e}")),
        };
        if let Some(soft) = ready.soft_state {
            self.log(|| format!("node {id} is now {:?} (leader {:?})", soft.role, soft.leader));
        }
        for m in ready.messages {
            self.send(id, m);
        }
        let node = &mut self.nodes[Self::idx(id)];
        if let Some(p) = ready.persist {
            node.pending.push_back(p);
        }
        node.to_apply.extend(ready.committed_entries);
        for rs in ready.read_states {
            self.complete_read(id, rs);
        }
        self.check_node(id);
    }

    fn send(&mut self, from: NodeId, m: Message) {
        self.check_durable_before_send(from, &m);
        if m.from != from || m.to == from {
            self.fail(format!("node {from} sent a malformed message {m:?}"));
        }
        if !Self::is_honest(m.to) {
            if let MessageBody::Heartbeat(hb) = &m.body {
                self.last_round_to_hostile = hb.round;
            }
            if self.to_hostile.len() >= 8 {
                self.to_hostile.pop_front();
            }
            self.to_hostile.push_back(m);
            return;
        }
        let snapshot = match &m.body {
            MessageBody::Snapshot(meta) => {
                let node = &self.nodes[Self::idx(from)];
                if node.snapshot.0 != meta.index {
                    self.fail(format!(
                        "node {from} sent snapshot {} but stores snapshot {}",
                        meta.index, node.snapshot.0
                    ));
                }
                Some(node.snapshot.1)
            }
            _ => None,
        };
        if self.net.len() >= MAX_QUEUE {
            if snapshot.is_some() && self.up(from) {
                self.raw(from).report_snapshot(m.to, SnapshotStatus::Failed);
            }
            return;
        }
        self.net.push_back(Envelope { msg: m, snapshot });
    }

    /// The persistence contract: what a message claims is durable when it leaves.
    fn check_durable_before_send(&self, from: NodeId, m: &Message) {
        let storage = self.nodes[Self::idx(from)].storage();
        let hs = storage.hard_state();
        let durable_last = storage.last_index();
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
        if let Some(v) = violation {
            self.fail(v);
        }
    }

    fn deliver(&mut self, env: Envelope) {
        let m = env.msg;
        let (from, to) = (m.from, m.to);
        if !self.up(to) {
            self.log(|| format!("lost {} {from}->{to} (down)", m.kind()));
            if matches!(m.body, MessageBody::Snapshot(_)) && self.up(from) {
                self.raw(from).report_snapshot(to, SnapshotStatus::Failed);
            }
            return;
        }
        self.log(|| format!("deliver {from}->{to} t{} {}", m.term, short(&m)));
        let is_snapshot = matches!(m.body, MessageBody::Snapshot(_));
        if let (MessageBody::Snapshot(meta), Some(data)) = (&m.body, env.snapshot) {
            self.nodes[Self::idx(to)].staged.insert(meta.index, data);
        }
        // A snapshot travels with its data, which the driver holds by now.
        let before = self.raw(to).status();
        let res = if is_snapshot {
            self.raw(to).step_snapshot(m)
        } else {
            self.raw(to).step(m)
        };
        self.refusal_changed_nothing(to, &before, &res);
        self.step_result(to, Origin::Honest, res);
        if is_snapshot && self.up(from) {
            self.raw(from).report_snapshot(to, SnapshotStatus::Finished);
        }
        self.check_node(to);
    }

    /// A refused message has no effect (the error docs say so), but for the one refusal
    /// documented to act: a follower that shows it lost acknowledged entries.
    fn refusal_changed_nothing(&self, to: NodeId, before: &raft_core::Status, res: &Result<(), StepError>) {
        let Err(e) = res else { return };
        match e {
            StepError::PeerLostLog { .. } | StepError::TermTooFarAhead { .. } | StepError::Fatal(_) => return,
            StepError::WrongRecipient { .. }
            | StepError::Malformed { .. }
            | StepError::UnknownPeer { .. }
            | StepError::SnapshotWithoutData { .. } => {}
        }
        let after = self.nodes[Self::idx(to)].raw.as_ref().expect("up").status();
        if after != *before {
            self.fail(format!(
                "node {to} refused a message ({e}) but its state changed:\nbefore {before:?}\nafter  {after:?}"
            ));
        }
    }

    fn step_result(&mut self, to: NodeId, origin: Origin, res: Result<(), StepError>) {
        let Err(e) = res else { return };
        if let StepError::PeerLostLog { peer, .. } = e {
            // The one documented way a leader's match index goes down: the follower showed
            // that it lost entries it had acknowledged (a wiped disk, or a liar saying so).
            if let Some((_, matched)) = self.nodes[Self::idx(to)].leader_matched.as_mut() {
                matched.remove(&peer);
            }
        }
        if e.is_fatal() {
            self.fail(format!("node {to} became fatal on a {origin:?} message: {e}"));
        }
        if origin == Origin::Honest
            && !self.log_taint
            && !honest_refusal_expected(&e)
            && !self.lies_explain(&e)
        {
            self.fail(format!(
                "node {to} refused an honest message in a run without lies: {e}"
            ));
        }
        self.log(|| format!("node {to} refused ({origin:?}): {e}"));
    }

    /// Whether a refusal of an honest message is one that earlier lies explain: honest
    /// nodes whose terms a liar pushed more than an allowance apart.
    fn lies_explain(&self, e: &StepError) -> bool {
        matches!(e, StepError::TermTooFarAhead { .. }) && self.hostile_rise >= MAX_TERM_GAP / 2
    }

    fn persist_one(&mut self, id: NodeId) {
        if !self.up(id) {
            return;
        }
        let node = &mut self.nodes[Self::idx(id)];
        let Some(p) = node.pending.pop_front() else {
            return;
        };
        let mut installed = None;
        if let Some(meta) = &p.snapshot {
            let Some(data) = node.staged.remove(&meta.index) else {
                self.fail(format!(
                    "node {id} accepted snapshot {} whose data never arrived: the driver cannot install it",
                    meta.index
                ));
            };
            node.staged.retain(|&i, _| i > meta.index);
            if data.applied <= node.sm.applied {
                let applied = node.sm.applied;
                self.fail(format!(
                    "node {id} installs snapshot {} over applied {applied}",
                    meta.index
                ));
            }
            node.sm = data;
            node.snapshot = (meta.index, data);
            node.to_apply.retain(|e| e.index > meta.index);
            installed = Some(meta.index);
        }
        let raw = node.raw.as_mut().expect("up");
        if let Err(e) = raw.storage_mut().persist(&p) {
            self.fail(format!("node {id}: storage refused batch {}: {e}", p.token.0));
        }
        let hs = raw.storage().hard_state();
        if let Err(e) = raw.on_persisted(p.token) {
            self.fail(format!("node {id} on_persisted({}) failed: {e}", p.token.0));
        }
        if let Some(index) = installed
            && let Err(e) = raw.on_applied(index)
        {
            self.fail(format!("node {id} on_applied after snapshot {index}: {e}"));
        }
        // Durable state never goes back.
        if hs.term < node.durable_term {
            let t = node.durable_term;
            self.fail(format!(
                "node {id} durable term went back from {t} to {}",
                hs.term
            ));
        }
        if hs.term == node.durable_term && node.durable_vote.is_some() && hs.vote != node.durable_vote {
            let v = node.durable_vote;
            self.fail(format!(
                "node {id} changed its durable vote in term {} from {v:?} to {:?}",
                hs.term, hs.vote
            ));
        }
        if hs.commit < node.durable_commit {
            let c = node.durable_commit;
            self.fail(format!(
                "node {id} durable commit went back from {c} to {}",
                hs.commit
            ));
        }
        node.durable_term = hs.term;
        node.durable_vote = hs.vote;
        node.durable_commit = hs.commit;
        self.log(|| {
            format!(
                "node {id} persisted token {} ({} entries)",
                p.token.0,
                p.entries.len()
            )
        });
        if let Some(index) = installed {
            self.log(|| format!("node {id} installed snapshot {index}"));
            let sm = self.nodes[Self::idx(id)].sm;
            self.check_sm(id, sm);
            self.serve_reads(id);
        }
        for m in p.messages {
            self.send(id, m);
        }
        self.check_node(id);
    }

    fn apply(&mut self, id: NodeId, max: usize) {
        if !self.up(id) {
            return;
        }
        for _ in 0..max {
            let node = &mut self.nodes[Self::idx(id)];
            let Some(e) = node.to_apply.pop_front() else { break };
            if e.index != node.sm.applied + 1 {
                let applied = node.sm.applied;
                self.fail(format!("node {id} applies {} after {applied}", e.index));
            }
            let raw = node.raw.as_mut().expect("up");
            let durable = raw.storage().term(e.index);
            if durable.as_ref().ok() != Some(&e.term) {
                self.fail(format!(
                    "node {id} applies non-durable entry {} ({durable:?})",
                    e.index
                ));
            }
            let h = entry_hash(&e);
            node.sm.applied = e.index;
            node.sm.hash = mix(node.sm.hash, h);
            if let Err(err) = raw.on_applied(e.index) {
                self.fail(format!("node {id} on_applied({}) failed: {err}", e.index));
            }
            let sm = node.sm;
            if !self.log_taint {
                match self.applied_entries.get(&e.index) {
                    Some(&other) if other != h => self.fail(format!(
                        "state machine safety: node {id} applied a different entry at {}",
                        e.index
                    )),
                    _ => {
                        self.applied_entries.insert(e.index, h);
                    }
                }
            }
            self.check_sm(id, sm);
            self.serve_reads(id);
        }
        self.check_node(id);
    }

    fn check_sm(&mut self, id: NodeId, sm: Sm) {
        if self.log_taint {
            return;
        }
        match self.sm_at.get(&sm.applied) {
            Some(other) if *other != sm => self.fail(format!(
                "state machine safety: node {id} state at {} differs from another node's",
                sm.applied
            )),
            Some(_) => {}
            None => {
                self.sm_at.insert(sm.applied, sm);
            }
        }
    }

    fn crash_or_restart(&mut self, id: NodeId) {
        if self.up(id) {
            self.crash(id);
        } else {
            self.restart(id);
        }
    }

    fn crash(&mut self, id: NodeId) {
        let node = &mut self.nodes[Self::idx(id)];
        let raw = node.raw.take().expect("up");
        let durable = raw.storage().hard_state();
        node.storage_down = Some(raw.storage().clone());
        let lost = node.pending.len();
        node.pending.clear();
        node.staged.clear();
        node.to_apply.clear();
        if !node.sm_durable {
            node.sm = node.snapshot.1;
        }
        node.reads.clear();
        node.confirmed.clear();
        self.log(|| format!("crash {id} (lost {lost} batches)"));
        // A leadership whose term and vote never became durable was never seen by anyone
        // (the core holds every message back until they are): it vanishes with the crash.
        let unseen: Vec<Term> = self
            .leaders
            .iter()
            .filter(|&(&t, &l)| {
                l == id && (durable.term < t || (durable.term == t && durable.vote != Some(id)))
            })
            .map(|(&t, _)| t)
            .collect();
        for t in unseen {
            self.leaders.remove(&t);
        }
    }

    fn restart(&mut self, id: NodeId) {
        let node = &mut self.nodes[Self::idx(id)];
        let storage = node.storage_down.take().expect("down");
        let applied = node.sm.applied;
        match RawNode::new(node.config.clone(), storage, applied) {
            Ok(raw) => {
                node.run_term = raw.term();
                node.run_commit = raw.commit_index();
                node.raw = Some(raw);
            }
            Err(e) => self.fail(format!(
                "node {id} cannot restart from its durable state at applied {applied}: {e}"
            )),
        }
        node.leader_matched = None;
        node.was_leader_in = None;
        node.recorded_commit = node.recorded_commit.min(applied);
        self.log(|| format!("restart {id} at applied {applied}"));
        self.check_node(id);
    }

    fn propose(&mut self, id: NodeId, u: &mut Unstructured) {
        if !self.up(id) {
            return;
        }
        let cmd = self.next_cmd;
        self.next_cmd += 1;
        let mut payload = cmd.to_le_bytes().to_vec();
        payload.extend(std::iter::repeat_n(0u8, below(u, 48)));
        if flag(u) && flag(u) {
            payload.clear();
        }
        let res = self.raw(id).propose(Bytes::from(payload));
        self.log(|| format!("propose {cmd} at {id}: {res:?}"));
        self.api_result(id, "propose", res, propose_refusal_expected);
        self.check_node(id);
    }

    fn read(&mut self, id: NodeId, u: &mut Unstructured) {
        if !self.up(id) {
            return;
        }
        let lease = flag(u);
        // Contexts are unique, as the read API requires of its callers.
        self.next_ctx += 1;
        let ctx = self.next_ctx;
        let required = self.sm_at.keys().copied().max().unwrap_or(0);
        let res = if lease {
            self.raw(id).lease_read(ctx)
        } else {
            self.raw(id).read_index(ctx)
        };
        self.log(|| format!("read {ctx} at {id} (lease {lease}): {res:?}"));
        if res.is_ok() {
            let node = &mut self.nodes[Self::idx(id)];
            if node.reads.contains_key(&ctx) {
                self.fail(format!(
                    "node {id} accepted a second read with pending context {ctx}"
                ));
            }
            node.reads.insert(ctx, (!lease).then_some(required));
        }
        self.api_result(id, "read", res, read_refusal_expected);
        self.check_node(id);
    }

    fn complete_read(&mut self, id: NodeId, rs: raft_core::ReadState) {
        let node = &mut self.nodes[Self::idx(id)];
        let Some(required) = node.reads.remove(&rs.ctx) else {
            self.fail(format!(
                "node {id} answered read {} it never issued or answered twice",
                rs.ctx
            ));
        };
        if let Ok(index) = rs.result {
            node.confirmed.push((rs.ctx, index, required));
            self.serve_reads(id);
        }
    }

    /// Serves confirmed reads the state machine reached; a ReadIndex read must observe
    /// everything applied anywhere before it was issued.
    fn serve_reads(&mut self, id: NodeId) {
        let node = &mut self.nodes[Self::idx(id)];
        let applied = node.sm.applied;
        let mut stale = None;
        node.confirmed.retain(|&(ctx, index, required)| {
            if index > applied {
                return true;
            }
            if let Some(req) = required
                && applied < req
            {
                stale = Some((ctx, index, req));
            }
            false
        });
        if let Some((ctx, index, req)) = stale
            && !self.read_taint
        {
            self.fail(format!(
                "stale read {ctx} at node {id}: read index {index}, state at {applied} misses {req} applied before the read began"
            ));
        }
    }

    fn conf_change(&mut self, id: NodeId, u: &mut Unstructured) {
        if !self.up(id) {
            return;
        }
        let node = ID_POOL[below(u, ID_POOL.len())];
        let other = ID_POOL[below(u, ID_POOL.len())];
        let changes = match byte(u) % 6 {
            0 => vec![MemberChange::add_learner(node).with_meta(format!("addr-{node}"))],
            1 => vec![MemberChange::add_voter(node)],
            2 => vec![MemberChange::remove(node)],
            3 => vec![MemberChange::add_voter(node), MemberChange::remove(other)],
            4 => vec![MemberChange::add_learner(node), MemberChange::add_voter(other)],
            _ => vec![],
        };
        let mode = match byte(u) % 3 {
            0 => ConfChangeMode::Auto,
            1 => ConfChangeMode::Joint { auto_leave: true },
            _ => ConfChangeMode::Joint { auto_leave: false },
        };
        let cc = ConfChange { changes, mode };
        let before = self.raw(id).conf_state().clone();
        let res = self.raw(id).propose_conf_change(cc.clone());
        self.log(|| format!("conf change {cc:?} at {id}: {res:?}"));
        if res.is_ok() {
            self.conf_changed = true;
            if self.log_taint {
                self.election_taint = true;
            }
            match raft_core::apply_conf_change(&before, &cc) {
                Ok(next) => {
                    self.check_tolerance(&next);
                    if next.is_joint() {
                        let left = ConfState {
                            voters_outgoing: BTreeSet::new(),
                            ..next.clone()
                        };
                        self.check_tolerance(&left);
                    }
                }
                Err(e) => self.fail(format!(
                    "node {id} accepted conf change {cc:?} that apply_conf_change refuses: {e}"
                )),
            }
        }
        self.api_result(id, "propose_conf_change", res, membership_refusal_expected);
        self.check_node(id);
    }

    fn compact(&mut self, id: NodeId) {
        if !self.up(id) {
            return;
        }
        let node = &mut self.nodes[Self::idx(id)];
        let applied = node.sm.applied;
        let raw = node.raw.as_mut().expect("up");
        if applied <= raw.storage().first_index() {
            return;
        }
        let meta = match raw.snapshot_meta_at(applied) {
            Ok(m) => m,
            Err(DriverError::SnapshotPending { .. }) => return,
            Err(e) => self.fail(format!("node {id} cannot snapshot at applied {applied}: {e}")),
        };
        if let Err(e) = raw.storage_mut().compact(meta) {
            self.fail(format!(
                "node {id} storage refused compaction at applied {applied}: {e}"
            ));
        }
        node.snapshot = (applied, node.sm);
        self.log(|| format!("compact {id} to {applied}"));
    }

    /// The driver reports what it saw of a peer; a hostile peer decides how its snapshot
    /// transfer ends and whether it is reachable.
    fn driver_report(&mut self, id: NodeId, u: &mut Unstructured) {
        if !self.up(id) {
            return;
        }
        let peer = ID_POOL[below(u, ID_POOL.len())];
        match byte(u) % 3 {
            0 => self.raw(id).report_unreachable(peer),
            1 if !Self::is_honest(peer) => self.raw(id).report_snapshot(peer, SnapshotStatus::Finished),
            _ if !Self::is_honest(peer) => self.raw(id).report_snapshot(peer, SnapshotStatus::Failed),
            _ => {}
        }
        self.check_node(id);
    }

    // -----------------------------------------------------------------------------------
    // Hostile messages.

    fn hostile(&mut self, u: &mut Unstructured) {
        let to = Self::pick_node(u);
        if !self.up(to) {
            return;
        }
        let sel = byte(u);
        let (from, forged) = match sel % 16 {
            0 => (0, false),
            1 => (6, false),
            2 => (u64::MAX, false),
            3 | 4 => {
                let others: Vec<NodeId> = HONEST.iter().copied().filter(|&i| i != to).collect();
                (others[below(u, others.len())], true)
            }
            _ => (self.hostile[below(u, self.hostile.len())], false),
        };
        let (term, body, data) = if sel >= 192 && !self.to_hostile.is_empty() {
            self.reply(u)
        } else {
            self.made_up(u, to)
        };
        let to_field = if byte(u) == 255 { biased(u, to) } else { to };
        let msg = Message {
            from,
            to: to_field,
            term,
            body,
        };
        let raw = self.nodes[Self::idx(to)].raw.as_ref().expect("up");
        let my_term = raw.term();
        // What the message can break (see the module docs).
        let leader_claim = matches!(
            msg.body,
            MessageBody::Append(_) | MessageBody::Heartbeat(_) | MessageBody::Snapshot(_)
        ) && msg.term >= my_term;
        let carries_conf = match &msg.body {
            MessageBody::Append(a) => a.entries.iter().any(Entry::is_membership),
            MessageBody::Snapshot(_) => true,
            _ => false,
        };
        if forged {
            self.taint_all();
        }
        if leader_claim {
            self.log_taint = true;
            self.read_taint = true;
            if carries_conf || self.conf_changed {
                self.election_taint = true;
            }
        }
        if matches!(msg.body, MessageBody::ReadIndexResponse(_)) {
            self.read_taint = true;
        }
        self.log(|| {
            format!(
                "hostile {from}->{to} t{} {} (forged {forged})",
                msg.term,
                short(&msg)
            )
        });
        // A snapshot whose data the driver received goes to `step_snapshot`; the bare
        // metadata (on the message path) and, sometimes, any other body too go to `step`
        // and `step_snapshot` respectively, which must refuse them.
        let is_snapshot = matches!(msg.body, MessageBody::Snapshot(_));
        let with_data = if is_snapshot { data.is_some() } else { byte(u) == 1 };
        let before = self.raw(to).status();
        if let (MessageBody::Snapshot(meta), Some(d)) = (&msg.body, data) {
            self.nodes[Self::idx(to)].staged.insert(meta.index, d);
        }
        let res = if with_data {
            self.raw(to).step_snapshot(msg)
        } else {
            self.raw(to).step(msg)
        };
        match &res {
            Err(StepError::SnapshotWithoutData { .. }) if is_snapshot && !with_data => {}
            Err(StepError::Malformed { .. }) if !is_snapshot && with_data => {}
            _ if is_snapshot != with_data => self.fail(format!(
                "node {to} did not refuse a {} body through step{}: {res:?}",
                if is_snapshot { "snapshot" } else { "non-snapshot" },
                if with_data { "_snapshot" } else { "" }
            )),
            _ => {}
        }
        self.refusal_changed_nothing(to, &before, &res);
        self.step_result(to, Origin::Hostile, res);
        let jump = self.raw(to).term().saturating_sub(my_term);
        self.hostile_rise = self.hostile_rise.saturating_add(jump);
        self.check_node(to);
    }

    /// A reply to something an honest node sent a hostile id, possibly bent.
    fn reply(&mut self, u: &mut Unstructured) -> (Term, MessageBody, Option<Sm>) {
        let i = below(u, self.to_hostile.len());
        let m = self.to_hostile[i].clone();
        let bend = flag(u);
        // A transfer's target campaigns in the next term.
        let natural = if matches!(m.body, MessageBody::TimeoutNow) {
            m.term.saturating_add(1)
        } else {
            m.term
        };
        let term = if bend { biased(u, natural) } else { natural };
        let body = match &m.body {
            MessageBody::Append(a) => {
                let end = a.prev_index.wrapping_add(a.entries.len() as u64);
                if flag(u) {
                    let index = if bend { biased(u, end) } else { end };
                    MessageBody::AppendResponse(AppendResponse::Accepted { index })
                } else {
                    MessageBody::AppendResponse(AppendResponse::Rejected {
                        rejected: if bend {
                            biased(u, a.prev_index)
                        } else {
                            a.prev_index
                        },
                        hint_index: biased(u, a.prev_index.saturating_sub(1)),
                        hint_term: biased(u, a.prev_term),
                        round: biased(u, self.last_round_to_hostile),
                    })
                }
            }
            MessageBody::Snapshot(meta) => MessageBody::AppendResponse(AppendResponse::Accepted {
                index: if bend { biased(u, meta.index) } else { meta.index },
            }),
            MessageBody::Heartbeat(hb) => MessageBody::HeartbeatResponse(HeartbeatResponse {
                round: if bend { biased(u, hb.round) } else { hb.round },
            }),
            MessageBody::RequestVote(rv) => MessageBody::VoteResponse(VoteResponse {
                pre_vote: rv.pre_vote,
                granted: !bend || flag(u),
            }),
            MessageBody::ReadIndex(r) => MessageBody::ReadIndexResponse(ReadIndexResponse {
                ctx: r.ctx,
                index: flag(u).then(|| biased(u, 0)),
            }),
            MessageBody::TimeoutNow => MessageBody::RequestVote(RequestVote {
                pre_vote: false,
                last_index: any_u64(u),
                last_term: natural,
                leader_transfer: true,
            }),
            _ => MessageBody::TimeoutNow,
        };
        (term, body, None)
    }

    /// A made-up message for node `to`, its fields around `to`'s state or extreme.
    fn made_up(&mut self, u: &mut Unstructured, to: NodeId) -> (Term, MessageBody, Option<Sm>) {
        let raw = self.nodes[Self::idx(to)].raw.as_ref().expect("up");
        let my_term = raw.term();
        let last = raw.last_index();
        let commit = raw.commit_index();
        let term = biased(u, my_term);
        let mut data = None;
        let body = match byte(u) % 12 {
            0 => MessageBody::RequestVote(RequestVote {
                pre_vote: flag(u),
                last_index: biased(u, last),
                last_term: biased(u, term),
                leader_transfer: flag(u),
            }),
            1 => MessageBody::VoteResponse(VoteResponse {
                pre_vote: flag(u),
                granted: byte(u) < 200,
            }),
            2 | 3 => {
                let around = if flag(u) { last } else { commit };
                let prev_index = biased(u, around);
                let prev_term = match raw.term_at(prev_index) {
                    Ok(t) if byte(u) < 192 => t,
                    _ => biased(u, term),
                };
                let n = below(u, MAX_HOSTILE_ENTRIES + 1);
                let mut entries = Vec::with_capacity(n);
                let mut et = prev_term.max(if flag(u) { term } else { prev_term });
                for k in 0..n {
                    let index = if byte(u) < 240 {
                        prev_index.wrapping_add(k as u64 + 1)
                    } else {
                        biased(u, prev_index)
                    };
                    if byte(u) >= 224 {
                        et = biased(u, et);
                    }
                    entries.push(Entry::new(et, index, Self::payload(u)));
                }
                MessageBody::Append(Append {
                    prev_index,
                    prev_term,
                    entries,
                    commit: biased(u, commit),
                })
            }
            4 => {
                if flag(u) {
                    MessageBody::AppendResponse(AppendResponse::Accepted {
                        index: biased(u, last),
                    })
                } else {
                    MessageBody::AppendResponse(AppendResponse::Rejected {
                        rejected: biased(u, last),
                        hint_index: biased(u, commit),
                        hint_term: biased(u, my_term),
                        round: biased(u, self.last_round_to_hostile),
                    })
                }
            }
            5 => MessageBody::Heartbeat(Heartbeat {
                commit: biased(u, commit),
                round: biased(u, 1),
                quiesce: u.arbitrary().unwrap_or(false),
            }),
            6 => MessageBody::HeartbeatResponse(HeartbeatResponse {
                round: biased(u, self.last_round_to_hostile),
            }),
            7 => {
                let index = biased(u, commit);
                let meta = SnapshotMeta {
                    index,
                    term: biased(u, term),
                    conf_state: if flag(u) {
                        raw.conf_state().clone()
                    } else {
                        Self::conf(u)
                    },
                };
                if flag(u) {
                    data = Some(Sm {
                        applied: index,
                        hash: any_u64(u),
                    });
                }
                MessageBody::Snapshot(Box::new(meta))
            }
            8 => MessageBody::TimeoutNow,
            9 if flag(u) => MessageBody::Wake,
            9 => MessageBody::ReadIndex(ReadIndexRequest { ctx: any_u64(u) }),
            _ => {
                let pending: Vec<u64> = self.nodes[Self::idx(to)].reads.keys().copied().collect();
                let ctx = if !pending.is_empty() && flag(u) {
                    pending[below(u, pending.len())]
                } else {
                    any_u64(u)
                };
                MessageBody::ReadIndexResponse(ReadIndexResponse {
                    ctx,
                    index: flag(u).then(|| biased(u, commit)),
                })
            }
        };
        (term, body, data)
    }

    fn payload(u: &mut Unstructured) -> EntryPayload {
        match byte(u) % 8 {
            0..=2 => EntryPayload::Empty,
            3..=6 => {
                let n = below(u, 24);
                EntryPayload::Normal(Bytes::from(u.bytes(n).unwrap_or_default().to_vec()))
            }
            _ => EntryPayload::Membership(Box::new(Self::conf(u))),
        }
    }

    fn ids(u: &mut Unstructured) -> BTreeSet<NodeId> {
        let mask = byte(u);
        let mut s: BTreeSet<NodeId> = ID_POOL
            .iter()
            .copied()
            .filter(|&i| mask & (1 << (i - 1)) != 0)
            .collect();
        if mask & 0x40 != 0 {
            s.insert(0);
        }
        if mask & 0x80 != 0 {
            s.insert(u64::MAX);
        }
        s
    }

    /// A configuration, possibly nonsensical (empty, joint, with node 0, overlapping sets).
    fn conf(u: &mut Unstructured) -> ConfState {
        let mut cs = ConfState {
            voters: Self::ids(u),
            learners: Self::ids(u),
            ..ConfState::default()
        };
        if flag(u) {
            cs.voters_outgoing = Self::ids(u);
            cs.learners_next = Self::ids(u);
            cs.auto_leave = flag(u);
        }
        if flag(u) {
            cs.removed = Self::ids(u);
        }
        cs
    }

    // -----------------------------------------------------------------------------------
    // Checks.

    fn check_all(&mut self) {
        for id in HONEST {
            self.check_local(id);
        }
    }

    /// Properties of one node that hold whatever it was told.
    fn check_local(&mut self, id: NodeId) {
        let node = &self.nodes[Self::idx(id)];
        let Some(raw) = node.raw.as_ref() else { return };
        if let Some(invariant) = raw.fatal() {
            self.fail(format!("node {id} stopped on a broken invariant: {invariant}"));
        }
        let st = raw.status();
        let term = st.hard_state.term;
        let commit = st.hard_state.commit;
        if term < node.run_term {
            self.fail(format!(
                "node {id} term went back from {} to {term}",
                node.run_term
            ));
        }
        if commit < node.run_commit {
            self.fail(format!(
                "node {id} commit index went back from {} to {commit}",
                node.run_commit
            ));
        }
        if commit > st.last_index {
            self.fail(format!(
                "node {id} commit {commit} beyond its last index {}",
                st.last_index
            ));
        }
        if st.applied > commit {
            self.fail(format!("node {id} applied {} beyond commit {commit}", st.applied));
        }
        if st.emitted > commit {
            self.fail(format!(
                "node {id} handed out {} beyond commit {commit}",
                st.emitted
            ));
        }
        if st.persisted > st.last_index {
            self.fail(format!(
                "node {id} persisted {} beyond last {}",
                st.persisted, st.last_index
            ));
        }
        if st.first_index > st.last_index.saturating_add(1) {
            self.fail(format!(
                "node {id} first index {} beyond last {} + 1",
                st.first_index, st.last_index
            ));
        }
        let role = st.soft_state.role;
        if role == Role::Leader && st.soft_state.leader != Some(id) {
            self.fail(format!(
                "node {id} leads but names {:?} as leader",
                st.soft_state.leader
            ));
        }
        // A leader's view of its followers only moves forward while it leads in a term.
        let matched: Option<(Term, BTreeMap<NodeId, Index>)> = (role == Role::Leader)
            .then(|| (term, st.progress.iter().map(|(&p, s)| (p, s.matched)).collect()));
        if let (Some((t0, before)), Some((t1, now))) = (&node.leader_matched, &matched)
            && t0 == t1
        {
            for (p, &m) in now {
                if let Some(&b) = before.get(p)
                    && m < b
                {
                    self.fail(format!(
                        "leader {id} lowered matched of peer {p} from {b} to {m} in term {t1}"
                    ));
                }
            }
        }
        let node = &mut self.nodes[Self::idx(id)];
        node.run_term = term;
        node.run_commit = commit;
        node.leader_matched = matched;
    }

    /// Cluster-wide safety about one node, after anything touched it (as in the simulator).
    fn check_node(&mut self, id: NodeId) {
        self.check_local(id);
        let Some(raw) = self.nodes[Self::idx(id)].raw.as_ref() else {
            return;
        };
        let term = raw.term();
        if raw.role() == Role::Leader && !self.election_taint {
            if let Some(&other) = self.leaders.get(&term)
                && other != id
            {
                self.fail(format!(
                    "election safety: two leaders in term {term}: {other} and {id}"
                ));
            }
            self.leaders.insert(term, id);
        }
        if self.log_taint {
            return;
        }
        if raw.role() == Role::Leader && self.nodes[Self::idx(id)].was_leader_in != Some(term) {
            self.nodes[Self::idx(id)].was_leader_in = Some(term);
            self.check_leader_completeness(id);
        }
        // Log matching over durable logs, through a hash chain over (index, term).
        let storage = self.nodes[Self::idx(id)].storage();
        let base = storage.first_index() - 1;
        let mut h = if base == 0 {
            0
        } else {
            let t = match storage.term(base) {
                Ok(t) => t,
                Err(e) => self.fail(format!(
                    "node {id} storage has no term at its snapshot {base}: {e}"
                )),
            };
            self.chain
                .get(&(base, t))
                .copied()
                .unwrap_or_else(|| mix(base, t))
        };
        let mut new_links = Vec::new();
        for e in storage.all_entries() {
            h = mix(h, entry_hash(e));
            match self.chain.get(&(e.index, e.term)) {
                Some(&other) if other != h => self.fail(format!(
                    "log matching: node {id} disagrees with another log before ({}, {})",
                    e.index, e.term
                )),
                Some(_) => {}
                None => new_links.push(((e.index, e.term), h)),
            }
        }
        self.chain.extend(new_links);
        // Committed entries never change.
        let raw = self.nodes[Self::idx(id)].raw.as_ref().expect("up");
        let commit = raw.commit_index();
        let first = raw.status().first_index;
        let from = self.nodes[Self::idx(id)].recorded_commit.max(first - 1);
        for i in from + 1..=commit {
            let t = match raw.term_at(i) {
                Ok(t) => t,
                Err(e) => self.fail(format!("node {id} has no term for committed index {i}: {e}")),
            };
            match self.committed.get(&i) {
                Some(&ct) if ct != t => self.fail(format!(
                    "committed entry {i} changed term from {ct} to {t} on node {id}"
                )),
                _ => {
                    self.committed.insert(i, t);
                }
            }
        }
        let node = &mut self.nodes[Self::idx(id)];
        node.recorded_commit = node.recorded_commit.max(commit);
    }

    /// A new leader holds every entry committed so far.
    fn check_leader_completeness(&self, id: NodeId) {
        let raw = self.nodes[Self::idx(id)].raw.as_ref().expect("up");
        let st = raw.status();
        if let Some((&max, _)) = self.committed.iter().next_back()
            && st.last_index < max
        {
            self.fail(format!(
                "leader completeness: node {id} leads term {} with last index {} but {max} is committed",
                st.hard_state.term, st.last_index
            ));
        }
        for (&i, &t) in self.committed.range(st.first_index..) {
            if raw.term_at(i).ok() != Some(t) {
                self.fail(format!(
                    "leader completeness: node {id} lacks committed entry {i} (term {t})"
                ));
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
        MessageBody::Snapshot(meta) => format!("Snapshot({}@{})", meta.index, meta.term),
        other => format!("{other:?}"),
    }
}
