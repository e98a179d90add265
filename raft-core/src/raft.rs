//! The protocol state shared by every role, role transitions, ticks, elections and the
//! dispatch of incoming messages. Replication, membership and reads live in sibling modules
//! as further `impl` blocks of [`Raft`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::config::Config;
use crate::error::{CampaignError, Inconsistency, Invariant, RecoverError, StepError};
use crate::log::RaftLog;
use crate::message::{
    Append, AppendResponse, Heartbeat, HeartbeatResponse, Message, MessageBody, RequestVote, VoteResponse,
};
use crate::progress::{Progress, ProgressState};
use crate::quorum::{VoteResult, joint_vote};
use crate::read::PendingRead;
use crate::storage::LogStorage;
use crate::types::{
    ConfState, EntryPayload, HardState, Index, MAX_INDEX, MAX_TERM, MAX_TERM_GAP, NodeId, ReadCtx, Role,
    SoftState, Term,
};

/// Why a node campaigns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Campaign {
    /// A pre-vote round first (when enabled).
    PreElection,
    /// A real election.
    Election,
    /// A real election ordered by a leadership transfer: it overrides followers' leases.
    Transfer,
}

/// The protocol state of one node.
pub(crate) struct Raft<S> {
    pub(crate) id: NodeId,
    pub(crate) cfg: Config,
    pub(crate) term: Term,
    pub(crate) vote: Option<NodeId>,
    pub(crate) role: Role,
    pub(crate) leader: Option<NodeId>,
    pub(crate) log: RaftLog<S>,

    // Membership: the configuration in effect is the latest one in the log (see membership.rs).
    pub(crate) conf: ConfState,
    pub(crate) conf_index: Index,
    /// Configuration at the snapshot point, and configuration entries after it, ascending.
    pub(crate) base_conf: (Index, ConfState),
    pub(crate) conf_history: Vec<(Index, ConfState)>,
    /// This node votes in the configuration before the one in effect.
    pub(crate) voter_before_conf: bool,

    // Leader state.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) lead_transferee: Option<NodeId>,
    /// Sizes of this leader's uncommitted proposals, by index.
    pub(crate) uncommitted: VecDeque<(Index, u64)>,
    pub(crate) uncommitted_size: u64,

    // Candidate state.
    pub(crate) votes: BTreeMap<NodeId, bool>,

    // Follower state.
    /// The highest heartbeat round heard from the leader of this term. Rejections carry it,
    /// so the leader can tell a rejection written after an acknowledgement it has seen (the
    /// follower lost entries) from one that was merely delivered late.
    pub(crate) leader_round: u64,

    // Timers, in ticks.
    pub(crate) election_elapsed: u32,
    pub(crate) heartbeat_elapsed: u32,
    pub(crate) randomized_election_timeout: u32,
    /// Ticks since the node started: the protocol's only clock.
    pub(crate) ticks: u64,
    /// How much further peers may raise this node's term in the current window of
    /// `election_tick` ticks (see `spend_term_allowance`), and when that window began.
    pub(crate) term_allowance: Term,
    pub(crate) term_allowance_since: u64,
    /// Until one election timeout has passed after a restart, a node with check-quorum
    /// behaves as if it had just heard from a leader, protecting a lease it may have granted
    /// before it restarted. A brand-new node (term 0) never granted one.
    pub(crate) just_started: bool,
    rng: ChaCha8Rng,

    // Reads (see read.rs).
    pub(crate) heartbeat_round: u64,
    /// `(first round sent in a tick, that tick)`, for lease expiry.
    pub(crate) round_ticks: VecDeque<(u64, u64)>,
    /// Rounds below this do not extend the lease (they were sent before a transfer ended).
    pub(crate) lease_min_round: u64,
    pub(crate) reads_waiting_commit: Vec<PendingRead>,
    pub(crate) reads_unsent: Vec<PendingRead>,
    pub(crate) reads_awaiting: VecDeque<PendingRead>,
    /// Contexts of this node's own reads that are pending (here or at the leader).
    pub(crate) local_reads: BTreeSet<ReadCtx>,
    /// A follower's reads not yet part of a request to the leader.
    pub(crate) follower_reads: Vec<ReadCtx>,
    /// A follower's request to the leader that is out, for the reads it names.
    pub(crate) follower_request: Option<crate::read::FollowerRequest>,

    /// The clock stands still until something wakes the node (see quiesce.rs).
    pub(crate) quiescent: bool,

    // Output not yet taken by `ready`.
    pub(crate) msgs: Vec<Message>,
    pub(crate) read_states: Vec<crate::types::ReadState>,

    /// The first safety invariant a change would have broken; the change was refused and
    /// the node stops (see [`Invariant`]).
    pub(crate) violation: Option<Invariant>,
}

impl<S: LogStorage> Raft<S> {
    /// Recovers a node from storage; the state machine has applied up to `applied`.
    pub(crate) fn new(cfg: Config, store: S, applied: Index) -> Result<Self, RecoverError> {
        cfg.validate()?;
        let init = store.initial_state()?;
        let hs = init.hard_state;
        let snapshot_index = store.first_index() - 1;
        let last = store.last_index();
        if applied < snapshot_index {
            return Err(Inconsistency::AppliedBelowSnapshot {
                applied,
                snapshot: snapshot_index,
            }
            .into());
        }
        if applied > last {
            return Err(Inconsistency::AppliedBeyondLog { applied, last }.into());
        }
        if hs.commit > last {
            return Err(Inconsistency::CommitBeyondLog {
                commit: hs.commit,
                last,
            }
            .into());
        }
        if let Some(v) = hs.vote
            && v == 0
        {
            return Err(Inconsistency::VoteForZero.into());
        }
        let committed = hs.commit.max(applied).max(snapshot_index);
        let log = RaftLog::new(store, committed, applied);
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut raft = Raft {
            id: cfg.id,
            term: hs.term,
            vote: hs.vote,
            role: Role::Follower,
            leader: None,
            log,
            conf: init.conf_state.clone(),
            conf_index: snapshot_index,
            base_conf: (snapshot_index, init.conf_state),
            conf_history: Vec::new(),
            voter_before_conf: false,
            progress: BTreeMap::new(),
            lead_transferee: None,
            uncommitted: VecDeque::new(),
            uncommitted_size: 0,
            votes: BTreeMap::new(),
            leader_round: 0,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: cfg.min_election_tick,
            ticks: 0,
            term_allowance: MAX_TERM_GAP,
            term_allowance_since: 0,
            just_started: hs.term > 0,
            rng,
            heartbeat_round: 0,
            round_ticks: VecDeque::new(),
            lease_min_round: 0,
            reads_waiting_commit: Vec::new(),
            reads_unsent: Vec::new(),
            reads_awaiting: VecDeque::new(),
            local_reads: BTreeSet::new(),
            follower_reads: Vec::new(),
            follower_request: None,
            quiescent: false,
            msgs: Vec::new(),
            read_states: Vec::new(),
            violation: None,
            cfg,
        };
        raft.recover_membership()?;
        raft.reset_randomized_timeout();
        Ok(raft)
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }

    pub(crate) fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.role,
            leader: self.leader,
        }
    }

    /// Whether this node may campaign: it is a voter of its configuration, or of the one
    /// before it while the latest is uncommitted. The second case matters when the latest
    /// entry removes this node and only this node holds it: the others still run the old
    /// configuration and need this node, whose log is ahead of theirs, to lead and commit
    /// the change (it then steps down).
    pub(crate) fn promotable(&self) -> bool {
        self.conf.is_voter(self.id) || (self.voter_before_conf && self.conf_index > self.log.committed)
    }

    /// Whether this leader has committed an entry of its own term.
    pub(crate) fn committed_in_term(&self) -> bool {
        self.log.term(self.log.committed).is_ok_and(|t| t == self.term)
    }

    /// Every node this leader tracks except itself.
    pub(crate) fn peers(&self) -> Vec<NodeId> {
        self.progress
            .keys()
            .copied()
            .filter(|&id| id != self.id)
            .collect()
    }

    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody) {
        let term = self.term;
        self.send_with_term(to, term, body);
    }

    pub(crate) fn send_with_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        self.msgs.push(Message {
            from: self.id,
            to,
            term,
            body,
        });
    }

    fn reset_randomized_timeout(&mut self) {
        let span = u64::from(self.cfg.max_election_tick - self.cfg.min_election_tick);
        let jitter = self.rng.next_u64() % span;
        self.randomized_election_timeout = self.cfg.min_election_tick + jitter as u32;
    }

    /// State common to every role change. Moving to a new term forgets the vote.
    fn reset(&mut self, term: Term) {
        if term < self.term {
            self.violation.get_or_insert(Invariant::TermDecreased {
                from: self.term,
                to: term,
            });
            return;
        }
        if self.term != term {
            self.term = term;
            self.vote = None;
        }
        self.leader = None;
        self.leader_round = 0;
        self.quiescent = false;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_randomized_timeout();
        self.abort_transfer();
        self.votes.clear();
        self.progress.clear();
        self.uncommitted.clear();
        self.uncommitted_size = 0;
        self.fail_pending_reads();
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    fn become_pre_candidate(&mut self) {
        // A pre-candidate keeps its term and vote: nothing about it is durable.
        let term = self.term;
        self.reset(term);
        self.role = Role::PreCandidate;
    }

    fn become_candidate(&mut self) {
        // `campaign` checked that the term space is not exhausted.
        let term = self.term.saturating_add(1);
        self.reset(term);
        self.vote = Some(self.id);
        self.role = Role::Candidate;
    }

    fn become_leader(&mut self) {
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.just_started = false;
        let next = self.log.last_index() + 1;
        for id in self.conf.members() {
            self.progress.insert(
                id,
                Progress::new(next, self.cfg.max_inflight_msgs, self.cfg.max_inflight_bytes),
            );
        }
        if let Some(me) = self.progress.get_mut(&self.id) {
            me.matched = self.log.persisted;
            me.become_replicate();
            me.next = next;
            me.recent_active = true;
        }
        // Lease reads wait for a heartbeat round of this term.
        self.lease_min_round = self.heartbeat_round + 1;
        // An empty entry of the new term lets the leader commit (and serve reads) now.
        self.append_leader_entries(vec![EntryPayload::Empty]);
    }

    /// Advances the logical clock by one tick, unless the node is quiescent.
    pub(crate) fn tick(&mut self) {
        if self.quiescent {
            return;
        }
        self.ticks += 1;
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => self.tick_election(),
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        if self.election_elapsed >= self.cfg.election_tick {
            self.just_started = false;
        }
        if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
            self.election_elapsed = 0;
            let kind = self.election_kind();
            self.campaign(kind);
        } else if self.leader.is_none()
            && self.conf.learners.contains(&self.id)
            && self.election_elapsed >= self.randomized_election_timeout
        {
            // A learner never campaigns, so a learner that knows no leader (say, it just
            // restarted) asks the voters to wake up: the leader of a quiescent group would
            // otherwise never tell it who leads (see quiesce.rs).
            self.election_elapsed = 0;
            for id in self.conf.all_voters() {
                self.send(id, MessageBody::Wake);
            }
        }
    }

    /// Pre-vote when configured, and always for a node outside its latest configuration
    /// (see `promotable`): its removal has most likely committed without its knowledge, and
    /// a pre-vote finds out without disturbing anyone's term, since voters holding the
    /// removal (or a newer log) refuse it.
    fn election_kind(&self) -> Campaign {
        if self.cfg.pre_vote || !self.conf.is_voter(self.id) {
            Campaign::PreElection
        } else {
            Campaign::Election
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.cfg.election_tick {
            self.election_elapsed = 0;
            if self.cfg.check_quorum && !self.quorum_recently_active() {
                let term = self.term;
                self.become_follower(term, None);
                return;
            }
            if self.lead_transferee.is_some() {
                self.abort_transfer();
            }
            // Removed nodes that did not catch up within an election timeout are dropped.
            self.retire_removed(true);
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
    }

    /// Check-quorum: whether a quorum was heard from since the last check; resets the marks.
    fn quorum_recently_active(&mut self) -> bool {
        let me = self.id;
        let active: BTreeMap<NodeId, bool> = self
            .progress
            .iter()
            .map(|(&id, pr)| (id, id == me || pr.recent_active))
            .collect();
        for (&id, pr) in self.progress.iter_mut() {
            if id != me {
                pr.recent_active = false;
            }
        }
        joint_vote(&self.conf.voters, &self.conf.voters_outgoing, |id| {
            Some(active.get(&id).copied().unwrap_or(false))
        }) == VoteResult::Won
    }

    pub(crate) fn campaign(&mut self, kind: Campaign) {
        // Peers refuse terms above MAX_TERM, and MAX_TERM_GAP bounds how fast peers can
        // raise a node's term toward it; should it ever be reached, the node stops
        // campaigning rather than wrap around to a smaller term.
        if !self.promotable() || self.term >= MAX_TERM {
            return;
        }
        let pre_vote = kind == Campaign::PreElection;
        let vote_term = if pre_vote {
            self.become_pre_candidate();
            self.term.saturating_add(1)
        } else {
            self.become_candidate();
            self.term
        };
        let me = self.id;
        match self.poll(me, true) {
            VoteResult::Won => {
                if pre_vote {
                    self.campaign(Campaign::Election);
                } else {
                    self.become_leader();
                }
                return;
            }
            VoteResult::Lost | VoteResult::Pending => {}
        }
        let last_index = self.log.last_index();
        let last_term = self.log.last_term();
        for id in self.conf.all_voters() {
            if id == me {
                continue;
            }
            self.send_with_term(
                id,
                vote_term,
                MessageBody::RequestVote(RequestVote {
                    pre_vote,
                    last_index,
                    last_term,
                    leader_transfer: kind == Campaign::Transfer,
                }),
            );
        }
    }

    fn poll(&mut self, from: NodeId, granted: bool) -> VoteResult {
        self.votes.entry(from).or_insert(granted);
        let votes = &self.votes;
        joint_vote(&self.conf.voters, &self.conf.voters_outgoing, |id| {
            votes.get(&id).copied()
        })
    }

    /// Feeds one message from a peer.
    pub(crate) fn step(&mut self, m: Message) -> Result<(), StepError> {
        self.validate(&m)?;
        // A quiescent node wakes on a message it takes, other than the traffic of
        // quiescence itself (see quiesce.rs); a refused message leaves it as it was.
        let wakes = self.quiescent
            && m.term >= self.term
            && !(m.term == self.term && self.stays_quiescent(m.from, &m.body));
        let from_leader = self.leader == Some(m.from);
        self.step_validated(m)?;
        if wakes {
            self.wake(from_leader);
        }
        Ok(())
    }

    fn step_validated(&mut self, m: Message) -> Result<(), StepError> {
        if m.term > self.term {
            if let MessageBody::RequestVote(rv) = &m.body {
                let in_lease = self.cfg.check_quorum
                    && (self.leader.is_some() || self.just_started)
                    && self.election_elapsed < self.cfg.election_tick;
                if in_lease && !rv.leader_transfer {
                    // We heard from a leader recently: this candidate is disruptive.
                    return Ok(());
                }
            }
            // A pre-vote and its grant name a term nobody holds yet; everything else makes
            // this node adopt the message's term, as far as the term allowance reaches.
            let adopts = !matches!(&m.body, MessageBody::RequestVote(rv) if rv.pre_vote)
                && !matches!(&m.body, MessageBody::VoteResponse(vr) if vr.pre_vote && vr.granted);
            if adopts {
                self.spend_term_allowance(&m)?;
            }
            match &m.body {
                MessageBody::RequestVote(rv) if rv.pre_vote => {}
                MessageBody::VoteResponse(vr) if vr.pre_vote && vr.granted => {}
                MessageBody::Append(_) | MessageBody::Heartbeat(_) | MessageBody::Snapshot(_) => {
                    self.become_follower(m.term, Some(m.from));
                }
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term {
            match &m.body {
                MessageBody::Append(_) | MessageBody::Heartbeat(_) => {
                    // A stale leader: tell it the current term so that it steps down (Raft
                    // paper, figure 2). Ignoring it instead would strand a node whose term
                    // ran ahead and that cannot campaign to catch the cluster up (a learner
                    // that was once a voter).
                    self.send(
                        m.from,
                        MessageBody::HeartbeatResponse(HeartbeatResponse { round: 0 }),
                    );
                }
                MessageBody::RequestVote(rv) if rv.pre_vote => {
                    let term = self.term;
                    self.send_with_term(
                        m.from,
                        term,
                        MessageBody::VoteResponse(VoteResponse {
                            pre_vote: true,
                            granted: false,
                        }),
                    );
                }
                _ => {}
            }
            return Ok(());
        }

        if let MessageBody::RequestVote(rv) = &m.body {
            self.handle_vote_request(&m, rv);
            return Ok(());
        }
        self.check_leader_source(&m)?;
        match self.role {
            Role::Leader => self.step_leader(m),
            Role::Candidate | Role::PreCandidate => self.step_candidate(m),
            Role::Follower => self.step_follower(m),
        }
    }

    /// A message at term `m.term` (above this node's) is about to make this node adopt it.
    /// Peers may raise this node's term by at most [`MAX_TERM_GAP`] per election timeout
    /// (`election_tick` ticks). A message further ahead than what remains is refused, and
    /// the node raises its own term by what remains instead, as a follower that knows no
    /// leader: a node any distance behind its peers catches up within a bounded number of
    /// timeouts, while no member can push terms toward [`MAX_TERM`] faster than that.
    fn spend_term_allowance(&mut self, m: &Message) -> Result<(), StepError> {
        let window = u64::from(self.cfg.election_tick);
        if self.ticks.saturating_sub(self.term_allowance_since) >= window {
            self.term_allowance = MAX_TERM_GAP;
            self.term_allowance_since = self.ticks;
        }
        let rise = m.term.saturating_sub(self.term);
        if rise <= self.term_allowance {
            self.term_allowance -= rise;
            return Ok(());
        }
        // `m.term` is at most MAX_TERM (validated) and above `raised_to`, so no overflow.
        let raised_to = self.term.saturating_add(self.term_allowance);
        if raised_to > self.term {
            self.term_allowance = 0;
            self.become_follower(raised_to, None);
        }
        Err(StepError::TermTooFarAhead {
            kind: m.kind(),
            from: m.from,
            term: m.term,
            raised_to,
        })
    }

    /// Messages only a leader sends must come from the one leader of this term that this
    /// follower knows: Raft elects at most one leader per term, so a second node claiming
    /// the term, or ordering a transfer, or answering reads, is not a correct peer.
    fn check_leader_source(&self, m: &Message) -> Result<(), StepError> {
        if self.role != Role::Follower {
            return Ok(());
        }
        let reason = match &m.body {
            MessageBody::Append(_) | MessageBody::Heartbeat(_) | MessageBody::Snapshot(_) => {
                "a second leader claims this node's term"
            }
            MessageBody::TimeoutNow => "a node that is not the leader orders an election",
            // Any node may turn a read down (a follower passes on none); only the leader
            // confirms one.
            MessageBody::ReadIndexResponse(r) if r.index.is_some() => {
                "a node that is not the leader confirms a read"
            }
            _ => return Ok(()),
        };
        match self.leader {
            Some(leader) if leader != m.from => {}
            _ => return Ok(()),
        }
        Err(StepError::Malformed {
            kind: m.kind(),
            from: m.from,
            reason,
        })
    }

    fn validate(&self, m: &Message) -> Result<(), StepError> {
        let malformed = |reason| StepError::Malformed {
            kind: m.kind(),
            from: m.from,
            reason,
        };
        if m.to != self.id {
            return Err(StepError::WrongRecipient {
                to: m.to,
                me: self.id,
            });
        }
        if m.from == 0 {
            return Err(malformed("sender id 0 is reserved"));
        }
        if m.from == self.id {
            return Err(malformed("message from this node to itself"));
        }
        if m.term == 0 {
            return Err(malformed("term 0"));
        }
        if m.term > MAX_TERM {
            return Err(malformed("term above the largest term a peer may send"));
        }
        let index = |i: Index| {
            if i > MAX_INDEX {
                Err(malformed("index above the largest index a peer may send"))
            } else {
                Ok(())
            }
        };
        match &m.body {
            MessageBody::Append(a) => {
                index(a.prev_index)?;
                index(a.commit)?;
                validate_append(m.term, a).map_err(malformed)?;
            }
            MessageBody::Snapshot(meta) => {
                index(meta.index)?;
                if let Some(reason) = meta.conf_state.malformation() {
                    return Err(malformed(reason));
                }
                if meta.index == 0 {
                    return Err(malformed("snapshot at index 0"));
                }
                if meta.term == 0 {
                    return Err(malformed("snapshot with term 0"));
                }
                if meta.term > m.term {
                    return Err(malformed("snapshot term above the message term"));
                }
            }
            MessageBody::RequestVote(rv) => {
                index(rv.last_index)?;
                if rv.last_term > m.term {
                    return Err(malformed("last log term above the election term"));
                }
                if rv.last_index > 0 && rv.last_term == 0 {
                    return Err(malformed("last log entry above index 0 with term 0"));
                }
            }
            MessageBody::AppendResponse(AppendResponse::Accepted { index: i }) => index(*i)?,
            MessageBody::AppendResponse(AppendResponse::Rejected {
                rejected,
                hint_index,
                hint_term,
                ..
            }) => {
                index(*rejected)?;
                if hint_index > rejected {
                    return Err(malformed("rejection hint above the rejected index"));
                }
                if *hint_term > m.term {
                    return Err(malformed("rejection hint term above the message term"));
                }
                if *hint_index > 0 && *hint_term == 0 {
                    return Err(malformed("rejection hint above index 0 with term 0"));
                }
            }
            MessageBody::Heartbeat(h) => index(h.commit)?,
            MessageBody::ReadIndexResponse(r) => {
                if let Some(i) = r.index {
                    index(i)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_vote_request(&mut self, m: &Message, rv: &RequestVote) {
        // A node that never joined (or was wiped) cannot know whom it voted for before; and
        // no vote goes to a candidate this node knows was removed from the cluster (an
        // outgoing voter of a joint configuration is not removed yet). Known means by a
        // committed configuration: an uncommitted one may be cut from the log by a leader
        // whose history never removed the candidate, and one that refused that leader's
        // votes could leave the cluster without a leader for good.
        let removed = self.conf_index <= self.log.committed
            && self.conf.removed.contains(&m.from)
            && !self.conf.contains(m.from);
        let can_vote = !self.conf_is_empty()
            && !removed
            && (self.vote == Some(m.from)
                || (self.vote.is_none() && self.leader.is_none())
                || (rv.pre_vote && m.term > self.term));
        let granted = can_vote && self.log.is_up_to_date(rv.last_index, rv.last_term);
        // A grant carries the term asked about (for a pre-vote, the future term); a refusal
        // carries ours, so that a stale candidate learns it.
        let term = if granted { m.term } else { self.term };
        if granted && !rv.pre_vote {
            self.election_elapsed = 0;
            self.vote = Some(m.from);
        }
        self.send_with_term(
            m.from,
            term,
            MessageBody::VoteResponse(VoteResponse {
                pre_vote: rv.pre_vote,
                granted,
            }),
        );
    }

    fn step_candidate(&mut self, m: Message) -> Result<(), StepError> {
        match &m.body {
            MessageBody::Append(_) | MessageBody::Heartbeat(_) | MessageBody::Snapshot(_) => {
                // A leader of our term exists: follow it.
                self.become_follower(m.term, Some(m.from));
                self.step_follower(m)
            }
            MessageBody::VoteResponse(vr) => {
                let pre = self.role == Role::PreCandidate;
                if vr.pre_vote != pre {
                    return Ok(());
                }
                // A granted pre-vote must be for the term this pre-campaign would start.
                if pre && vr.granted && m.term != self.term.saturating_add(1) {
                    return Ok(());
                }
                match self.poll(m.from, vr.granted) {
                    VoteResult::Won => {
                        if pre {
                            self.campaign(Campaign::Election);
                        } else {
                            self.become_leader();
                        }
                    }
                    VoteResult::Lost => {
                        let term = self.term;
                        self.become_follower(term, None);
                    }
                    VoteResult::Pending => {}
                }
                Ok(())
            }
            MessageBody::ReadIndex(r) => {
                let ctx = r.ctx;
                self.reject_remote_read(m.from, ctx);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn step_follower(&mut self, m: Message) -> Result<(), StepError> {
        match m.body {
            MessageBody::Append(a) => {
                self.election_elapsed = 0;
                self.leader = Some(m.from);
                self.handle_append(m.from, a)
            }
            MessageBody::Heartbeat(h) => {
                self.election_elapsed = 0;
                self.leader = Some(m.from);
                let quiesce = h.quiesce;
                let commit = h.commit;
                self.handle_heartbeat(m.from, h);
                if quiesce {
                    self.follow_into_quiescence(m.from, commit);
                }
                Ok(())
            }
            MessageBody::Snapshot(meta) => {
                self.election_elapsed = 0;
                self.leader = Some(m.from);
                self.handle_snapshot(m.from, *meta);
                Ok(())
            }
            MessageBody::TimeoutNow => {
                // Only a voter can take over; a learner ignores the order. So does a node
                // that has not heard from the leader of this term since it restarted: it
                // cannot tell the order comes from the leader (the transfer times out).
                if self.promotable() && self.leader == Some(m.from) {
                    self.campaign(Campaign::Transfer);
                }
                Ok(())
            }
            MessageBody::ReadIndexResponse(r) => {
                self.handle_read_index_response(r);
                Ok(())
            }
            MessageBody::ReadIndex(r) => {
                self.reject_remote_read(m.from, r.ctx);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn step_leader(&mut self, m: Message) -> Result<(), StepError> {
        match m.body {
            MessageBody::AppendResponse(r) => self.handle_append_response(m.from, r),
            MessageBody::HeartbeatResponse(r) => self.handle_heartbeat_response(m.from, r),
            MessageBody::ReadIndex(r) => {
                self.handle_remote_read(m.from, r.ctx);
                Ok(())
            }
            MessageBody::Wake => {
                // The step woke this leader if it was quiescent; the sender is alive.
                if let Some(pr) = self.progress.get_mut(&m.from) {
                    pr.recent_active = true;
                }
                Ok(())
            }
            MessageBody::Append(_) | MessageBody::Heartbeat(_) | MessageBody::Snapshot(_) => {
                Err(StepError::Malformed {
                    kind: m.kind(),
                    from: m.from,
                    reason: "a second leader claims this node's term",
                })
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, h: Heartbeat) {
        self.leader_round = self.leader_round.max(h.round);
        // The leader never sends a commit index above what it knows this log matches.
        let commit = h.commit.min(self.log.last_index());
        self.log.commit_to(commit);
        self.send(
            from,
            MessageBody::HeartbeatResponse(HeartbeatResponse { round: h.round }),
        );
    }

    /// Forces an election now (or a pre-vote round first, when enabled).
    pub(crate) fn campaign_now(&mut self) -> Result<(), CampaignError> {
        if self.role == Role::Leader {
            return Ok(());
        }
        if !self.promotable() {
            return Err(CampaignError::NotVoter);
        }
        let kind = self.election_kind();
        self.campaign(kind);
        Ok(())
    }

    /// The driver could not reach `peer`: stop streaming to it optimistically.
    pub(crate) fn report_unreachable(&mut self, peer: NodeId) {
        if self.role != Role::Leader {
            return;
        }
        if let Some(pr) = self.progress.get_mut(&peer)
            && pr.state == ProgressState::Replicate
        {
            pr.become_probe();
        }
    }
}

fn validate_append(term: Term, a: &Append) -> Result<(), &'static str> {
    if a.prev_term > term {
        return Err("previous entry's term above the message term");
    }
    // Every entry above index 0 was created by a leader, whose term is at least 1.
    if a.prev_index > 0 && a.prev_term == 0 {
        return Err("previous entry above index 0 with term 0");
    }
    let count = u64::try_from(a.entries.len()).unwrap_or(u64::MAX);
    if a.prev_index
        .checked_add(count)
        .is_none_or(|last| last > MAX_INDEX)
    {
        return Err("entries run past the largest index a peer may send");
    }
    let mut prev_term = a.prev_term;
    for (expected, e) in (a.prev_index + 1..).zip(&a.entries) {
        if e.index != expected {
            return Err("entries are not contiguous after prev_index");
        }
        if e.term > term {
            return Err("entry term above the message term");
        }
        if e.term == 0 {
            return Err("entry with term 0");
        }
        if e.term < prev_term {
            return Err("entry terms decrease");
        }
        if let EntryPayload::Membership(cs) = &e.payload
            && let Some(reason) = cs.malformation()
        {
            return Err(reason);
        }
        prev_term = e.term;
    }
    Ok(())
}
