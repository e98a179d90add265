//! The group task: the one task that owns a node's protocol state.
//!
//! It loops: wait for input (a tick, a request from a handle, traffic from peers, a write
//! that became durable, news from the applier), drain everything else already queued, feed
//! it all to the protocol, then dispatch the protocol's output: messages to the transport,
//! writes to the log store, committed entries to the applier, read confirmations to their
//! waiters. Nothing in here blocks: the store, the transport and the applier all report
//! back through channels.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use raft_core::{
    ChangeKind, ConfChange, ConfState, Entry, EntryPayload, Index, MemberChange, Message, MessageBody,
    NodeId, Persist, PersistToken, RawNode, ReadCtx, ReadState, Role, SnapshotStatus, SoftState, Term,
};
use rand_chacha::ChaCha8Rng;
use rand_core::Rng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::adapter::StoreReader;
use crate::applier::{ApplierEvent, ApplyMsg, Query, Responder};
use crate::codec;
use crate::config::Config;
use crate::error::{AdminError, BusyReason, ProposeError, ReadError};
use crate::metrics::{Member, MemberInfo, Metrics};
use crate::peers::PeerSet;
use crate::state_machine::StateMachine;
use crate::store::{LogStore, LogWrite, Snapshot, StoreError};
use crate::transport::{ForwardError, InboxReceiver, Incoming, SendError, Transport, WireMessage};

/// A membership request.
pub(crate) enum ConfRequest {
    /// A change as given.
    Change(ConfChange),
    /// Make exactly these nodes the voters (current learners are promoted, voters not
    /// listed are removed).
    SetVoters(BTreeSet<NodeId>),
}

/// What a handle asks of the group task.
pub(crate) enum Request<SM: StateMachine> {
    Propose {
        command: Bytes,
        reply: oneshot::Sender<Result<SM::Response, ProposeError>>,
    },
    Read {
        lease: bool,
        query: Query<SM>,
    },
    Membership {
        request: ConfRequest,
        /// Resolve only once the final (non-joint) configuration is applied.
        wait_final: bool,
        reply: oneshot::Sender<Result<(), AdminError>>,
    },
    Transfer {
        to: NodeId,
        reply: oneshot::Sender<Result<(), AdminError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Completions reported by the store and background tasks.
pub(crate) enum Event {
    Persisted {
        token: u64,
        result: Result<(), StoreError>,
    },
    SnapshotSent {
        to: NodeId,
        ok: bool,
    },
    SnapshotSaved {
        index: Index,
        result: Result<(), StoreError>,
    },
}

/// Where a local proposal's outcome goes.
type ProposalReply<SM> = oneshot::Sender<Result<<SM as StateMachine>::Response, ProposeError>>;

struct Pending<SM: StateMachine> {
    term: Term,
    responder: Responder<SM>,
}

struct InflightWrite {
    token: u64,
    /// The token to report when this write is durable: later empty batches ride on it.
    report: u64,
    messages: Vec<Message>,
    restore: Option<Snapshot>,
}

struct ConfWaiter {
    index: Index,
    term: Term,
    wait_final: bool,
    /// The change's own entry was applied; waiting for the final configuration.
    entered: bool,
    deadline: Instant,
    reply: oneshot::Sender<Result<(), AdminError>>,
}

struct TransferWaiter {
    to: NodeId,
    deadline: Instant,
    reply: oneshot::Sender<Result<(), AdminError>>,
}

struct Stopping {
    deadline: Instant,
    replies: Vec<oneshot::Sender<()>>,
}

/// Most requests, and most batches of peer traffic, handled per loop iteration.
const DRAIN: usize = 4_096;
/// Snapshot data received from leaders kept while the protocol decides on it.
const STAGED: usize = 2;
/// How often a refused peer message is logged as a warning (the rest go to debug).
const REFUSED_LOG_INTERVAL: Duration = Duration::from_secs(5);

pub(crate) struct Group<SM: StateMachine> {
    pub(crate) id: NodeId,
    pub(crate) cfg: Arc<Config>,
    pub(crate) node: RawNode<StoreReader>,
    pub(crate) store: Arc<dyn LogStore>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) requests: mpsc::Receiver<Request<SM>>,
    pub(crate) inbox: InboxReceiver,
    pub(crate) events_tx: mpsc::UnboundedSender<Event>,
    pub(crate) events_rx: mpsc::UnboundedReceiver<Event>,
    pub(crate) applier_tx: mpsc::UnboundedSender<ApplyMsg<SM>>,
    pub(crate) applier_rx: mpsc::UnboundedReceiver<ApplierEvent>,
    pub(crate) applier_task: Option<tokio::task::JoinHandle<()>>,
    pub(crate) metrics_tx: watch::Sender<Metrics>,
    pub(crate) metrics: Metrics,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) applied: Index,
    pub(crate) emitted: Index,
    pub(crate) last_snapshot: Index,
    pub(crate) last_conf_index: Option<Index>,
    /// The peers the transport is told of (the members, and removed ones for a while).
    peers: PeerSet,
    proposals: HashMap<Index, Pending<SM>>,
    proposal_deadlines: VecDeque<(Instant, Index, Term)>,
    /// Proposals forwarded to a leader: deadline, the leader, and where the outcome goes.
    forwards: HashMap<u64, (Instant, NodeId, ProposalReply<SM>)>,
    next_forward: u64,
    inflight: VecDeque<InflightWrite>,
    staged: BTreeMap<Index, Bytes>,
    reads: HashMap<ReadCtx, (Instant, Query<SM>)>,
    /// Confirmed reads waiting for their index to be applied, with their deadlines.
    parked_reads: BTreeMap<Index, Vec<(Instant, Query<SM>)>>,
    /// One permit per read in the node, from its arrival until it is answered wherever
    /// that happens (here or in the applier): bounds the reads a node holds.
    read_permits: Arc<tokio::sync::Semaphore>,
    /// Bytes of entries applied since the last snapshot was started.
    bytes_since_snapshot: u64,
    /// When a refused peer message was last logged above debug level.
    refused_logged: Option<Instant>,
    /// The members a joining node was told of, admitted until it is in its configuration.
    seeds: BTreeMap<NodeId, Bytes>,
    conf_waiters: Vec<ConfWaiter>,
    transfer: Option<TransferWaiter>,
    snapshot_in_progress: bool,
    sending_snapshots: BTreeSet<NodeId>,
    stopping: Option<Stopping>,
    fatal: Option<String>,
    unreachable_logged: HashMap<NodeId, Instant>,
    /// The last leadership (term, leader) counted in the metrics.
    last_leadership: Option<(Term, NodeId)>,
    /// The time at the start of the current loop iteration (one clock read per batch).
    now: Instant,
    request_buf: Vec<Request<SM>>,
    incoming_buf: Vec<Incoming>,
}

impl<SM: StateMachine> Group<SM> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        cfg: Arc<Config>,
        node: RawNode<StoreReader>,
        store: Arc<dyn LogStore>,
        transport: Arc<dyn Transport>,
        requests: mpsc::Receiver<Request<SM>>,
        inbox: InboxReceiver,
        applier_tx: mpsc::UnboundedSender<ApplyMsg<SM>>,
        applier_rx: mpsc::UnboundedReceiver<ApplierEvent>,
        applier_task: tokio::task::JoinHandle<()>,
        metrics_tx: watch::Sender<Metrics>,
        rng: ChaCha8Rng,
        applied: Index,
        seeds: BTreeMap<NodeId, Bytes>,
    ) -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let last_snapshot = store.first_index().saturating_sub(1);
        // Removed peers stay reachable two election timeouts after their removal commits:
        // the leader goes on replicating to them for up to one.
        let peers = PeerSet::new(2 * u64::from(cfg.protocol.election_tick));
        let read_permits = Arc::new(tokio::sync::Semaphore::new(cfg.max_pending_reads));
        Group {
            id: cfg.id,
            metrics: Metrics::new(cfg.id),
            cfg,
            node,
            store,
            transport,
            requests,
            inbox,
            events_tx,
            events_rx,
            applier_tx,
            applier_rx,
            applier_task: Some(applier_task),
            metrics_tx,
            rng,
            applied,
            emitted: applied,
            last_snapshot,
            last_conf_index: None,
            peers,
            proposals: HashMap::new(),
            proposal_deadlines: VecDeque::new(),
            forwards: HashMap::new(),
            next_forward: 1,
            inflight: VecDeque::new(),
            staged: BTreeMap::new(),
            reads: HashMap::new(),
            parked_reads: BTreeMap::new(),
            read_permits,
            seeds,
            bytes_since_snapshot: 0,
            refused_logged: None,
            conf_waiters: Vec::new(),
            transfer: None,
            snapshot_in_progress: false,
            sending_snapshots: BTreeSet::new(),
            stopping: None,
            fatal: None,
            unreachable_logged: HashMap::new(),
            last_leadership: None,
            now: Instant::now(),
            request_buf: Vec::new(),
            incoming_buf: Vec::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.cfg.tick_interval);
        // After a pause, missed ticks fire at once: the protocol's clock (and its lease)
        // catches up before anything else is served.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        self.sync_membership();
        self.publish_metrics(true);
        loop {
            tokio::select! {
                biased;
                _ = ticker.tick() => self.on_tick(),
                Some(ev) = self.applier_rx.recv() => self.on_applier(ev),
                Some(ev) = self.events_rx.recv() => self.on_event(ev),
                Some(inc) = self.inbox.recv() => self.on_incoming(inc),
                req = self.requests.recv() => match req {
                    Some(r) => self.on_request(r),
                    None => self.begin_stop(None),
                },
            }
            self.now = Instant::now();
            self.drain();
            self.handle_ready();
            if let Some(invariant) = self.node.fatal() {
                // Whatever input it came from, a broken invariant stops the node.
                self.set_fatal(format!("safety invariant violated: {invariant}"));
            }
            self.check_transfer();
            self.publish_metrics(false);
            if self.finished() {
                break;
            }
        }
        self.finish().await;
    }

    fn drain(&mut self) {
        while let Ok(ev) = self.applier_rx.try_recv() {
            self.on_applier(ev);
        }
        while let Ok(ev) = self.events_rx.try_recv() {
            self.on_event(ev);
        }
        let mut incoming = std::mem::take(&mut self.incoming_buf);
        if self
            .inbox
            .recv_many(&mut incoming, DRAIN)
            .now_or_never()
            .is_some()
        {
            for inc in incoming.drain(..) {
                self.on_incoming(inc);
            }
        }
        self.incoming_buf = incoming;
        let mut requests = std::mem::take(&mut self.request_buf);
        if self
            .requests
            .recv_many(&mut requests, DRAIN)
            .now_or_never()
            .is_some()
        {
            for r in requests.drain(..) {
                self.on_request(r);
            }
        }
        self.request_buf = requests;
    }

    // ---------------------------------------------------------------- requests

    fn on_request(&mut self, req: Request<SM>) {
        match req {
            Request::Propose { command, reply } => self.propose(command, Responder::Local(reply)),
            Request::Read { lease, query } => self.read(lease, query),
            Request::Membership {
                request,
                wait_final,
                reply,
            } => self.membership(request, wait_final, reply),
            Request::Transfer { to, reply } => self.start_transfer(to, reply),
            Request::Shutdown { reply } => self.begin_stop(Some(reply)),
        }
    }

    fn busy(&self) -> Option<BusyReason> {
        if self.proposals.len() >= self.cfg.max_pending_proposals {
            return Some(BusyReason::PendingProposals);
        }
        if self.inflight.len() >= self.cfg.max_inflight_writes {
            return Some(BusyReason::Disk);
        }
        if self.node.commit_index().saturating_sub(self.applied) >= self.cfg.max_apply_lag {
            return Some(BusyReason::Apply);
        }
        None
    }

    fn propose(&mut self, command: Bytes, responder: Responder<SM>) {
        if self.stopping.is_some() || self.fatal.is_some() {
            return responder.fail(ProposeError::ShuttingDown, &*self.transport);
        }
        if let Some(reason) = self.busy() {
            return responder.fail(ProposeError::Busy(reason), &*self.transport);
        }
        if self.node.role() != Role::Leader {
            let leader = self.node.leader();
            return match (responder, leader) {
                (Responder::Local(reply), Some(leader)) if self.cfg.forward_proposals => {
                    self.forward(leader, command, reply)
                }
                (responder, _) => responder.fail(ProposeError::NotLeader { leader }, &*self.transport),
            };
        }
        match self.node.propose(command) {
            Ok(index) => {
                let term = self.node.term();
                self.metrics.proposals += 1;
                self.proposal_deadlines
                    .push_back((self.now + self.cfg.propose_timeout, index, term));
                self.proposals.insert(index, Pending { term, responder });
            }
            Err(raft_core::Error::NotLeader { leader }) => {
                responder.fail(ProposeError::NotLeader { leader }, &*self.transport)
            }
            Err(raft_core::Error::UncommittedLimit { .. }) => {
                responder.fail(ProposeError::Busy(BusyReason::Uncommitted), &*self.transport)
            }
            Err(raft_core::Error::TransferInProgress { .. }) => {
                responder.fail(ProposeError::Busy(BusyReason::Transfer), &*self.transport)
            }
            Err(e) => responder.fail(ProposeError::Unknown(e.to_string()), &*self.transport),
        }
    }

    fn forward(&mut self, leader: NodeId, command: Bytes, reply: ProposalReply<SM>) {
        let id = self.next_forward;
        self.next_forward += 1;
        match self
            .transport
            .send(leader, vec![WireMessage::Forward { id, command }])
        {
            Ok(()) => {
                self.forwards
                    .insert(id, (self.now + self.cfg.propose_timeout, leader, reply));
            }
            Err(SendError::Full(_)) => {
                let _ = reply.send(Err(ProposeError::Busy(BusyReason::Forward)));
            }
            Err(_) => {
                let _ = reply.send(Err(ProposeError::NotLeader { leader: Some(leader) }));
            }
        }
    }

    fn on_forward(&mut self, from: NodeId, id: u64, command: Bytes) {
        // A forwarded proposal is never forwarded again.
        if !self.cfg.forward_proposals && self.node.role() != Role::Leader {
            let leader = self.node.leader();
            let _ = self.transport.send(
                from,
                vec![WireMessage::ForwardReply {
                    id,
                    result: Err(ForwardError::NotLeader { leader }),
                }],
            );
            return;
        }
        self.propose(command, Responder::Remote { peer: from, id });
    }

    fn on_forward_reply(&mut self, from: NodeId, id: u64, result: Result<Bytes, ForwardError>) {
        // Only the node the proposal went to can answer it.
        if self
            .forwards
            .get(&id)
            .is_none_or(|&(_, leader, _)| leader != from)
        {
            self.refused(from, "an answer to a proposal that was not forwarded to it");
            return;
        }
        let Some((_, _, reply)) = self.forwards.remove(&id) else {
            return;
        };
        let outcome = match result {
            Ok(bytes) => codec::decode::<SM::Response>(&bytes)
                .map_err(|e| ProposeError::Unknown(format!("undecodable response from the leader: {e}"))),
            Err(e) => Err(ProposeError::from_forward(e)),
        };
        let _ = reply.send(outcome);
    }

    fn read(&mut self, lease: bool, query: Query<SM>) {
        if self.stopping.is_some() || self.fatal.is_some() {
            return query(Err(ReadError::ShuttingDown));
        }
        let Ok(permit) = self.read_permits.clone().try_acquire_owned() else {
            return query(Err(ReadError::Busy(BusyReason::Reads)));
        };
        // The permit goes wherever the read goes and is returned when it is answered.
        let query: Query<SM> = Box::new(move |sm| {
            query(sm);
            drop(permit);
        });
        let ctx = self.rng.next_u64();
        let result = if lease {
            self.node.lease_read(ctx)
        } else {
            self.node.read_index(ctx)
        };
        match result {
            Ok(()) => {
                self.reads
                    .insert(ctx, (Instant::now() + self.cfg.read_timeout, query));
            }
            Err(raft_core::Error::NotLeader { leader }) => query(Err(ReadError::NotLeader { leader })),
            Err(raft_core::Error::TooManyPendingReads { .. }) => {
                query(Err(ReadError::Busy(BusyReason::Reads)))
            }
            Err(_) => query(Err(ReadError::LeadershipLost)),
        }
    }

    fn on_read_state(&mut self, rs: ReadState) {
        let Some((deadline, query)) = self.reads.remove(&rs.ctx) else {
            return;
        };
        match rs.result {
            Ok(index) if index <= self.emitted => {
                let _ = self.applier_tx.send(ApplyMsg::Query(query));
            }
            Ok(index) => self
                .parked_reads
                .entry(index)
                .or_default()
                .push((deadline, query)),
            Err(_) => query(Err(ReadError::LeadershipLost)),
        }
    }

    /// Sends the queries of reads whose index has been handed to the applier.
    fn release_parked_reads(&mut self) {
        while let Some(entry) = self.parked_reads.first_entry() {
            if *entry.key() > self.emitted {
                break;
            }
            for (_, query) in entry.remove() {
                let _ = self.applier_tx.send(ApplyMsg::Query(query));
            }
        }
    }

    fn membership(
        &mut self,
        request: ConfRequest,
        wait_final: bool,
        reply: oneshot::Sender<Result<(), AdminError>>,
    ) {
        if self.stopping.is_some() || self.fatal.is_some() {
            let _ = reply.send(Err(AdminError::ShuttingDown));
            return;
        }
        let change = match request {
            ConfRequest::Change(c) => c,
            ConfRequest::SetVoters(voters) => match voters_change(self.node.conf_state(), &voters) {
                Some(c) => c,
                None => {
                    let _ = reply.send(Ok(()));
                    return;
                }
            },
        };
        match self.node.propose_conf_change(change) {
            Ok(index) => self.conf_waiters.push(ConfWaiter {
                index,
                term: self.node.term(),
                wait_final,
                entered: false,
                deadline: Instant::now() + self.cfg.admin_timeout,
                reply,
            }),
            Err(e) => {
                let _ = reply.send(Err(admin_error(e)));
            }
        }
    }

    fn start_transfer(&mut self, to: NodeId, reply: oneshot::Sender<Result<(), AdminError>>) {
        if self.node.role() == Role::Follower && self.node.leader() == Some(to) {
            let _ = reply.send(Ok(()));
            return;
        }
        match self.node.transfer_leader(to) {
            Ok(()) => {
                if let Some(old) = self.transfer.take() {
                    let _ = old
                        .reply
                        .send(Err(AdminError::TransferAborted { target: old.to }));
                }
                self.transfer = Some(TransferWaiter {
                    to,
                    deadline: Instant::now() + self.cfg.admin_timeout,
                    reply,
                });
            }
            Err(e) => {
                let _ = reply.send(Err(admin_error(e)));
            }
        }
    }

    fn check_transfer(&mut self) {
        let Some(t) = &self.transfer else {
            return;
        };
        let outcome = if self.node.leader() == Some(t.to) {
            Some(Ok(()))
        } else if self.node.role() == Role::Leader && self.node.status().lead_transferee.is_none() {
            Some(Err(AdminError::TransferAborted { target: t.to }))
        } else if self.node.role() != Role::Leader && self.node.leader().is_some() {
            Some(Err(AdminError::LeadershipLost))
        } else if Instant::now() >= t.deadline {
            Some(Err(AdminError::Timeout))
        } else {
            None
        };
        if let Some(outcome) = outcome {
            let t = self.transfer.take().expect("checked");
            let _ = t.reply.send(outcome);
        }
    }

    // ---------------------------------------------------------------- peer traffic

    fn on_incoming(&mut self, inc: Incoming) {
        match inc {
            Incoming::Messages { from, messages } => {
                for w in messages {
                    match w {
                        WireMessage::Raft(m) => self.step(from, m, false),
                        WireMessage::Forward { id, command } => self.on_forward(from, id, command),
                        WireMessage::ForwardReply { id, result } => self.on_forward_reply(from, id, result),
                    }
                }
            }
            Incoming::Snapshot {
                from,
                message,
                data,
                ack,
            } => {
                let MessageBody::Snapshot(meta) = &message.body else {
                    let _ = ack.send(Err("not a snapshot message".into()));
                    return;
                };
                if message.from != from {
                    let _ = ack.send(Err(format!("sender {} claims to be {}", from, message.from)));
                    self.refused(from, "a snapshot with a forged sender");
                    return;
                }
                self.staged.insert(meta.index, data);
                while self.staged.len() > STAGED {
                    self.staged.pop_first();
                }
                self.step(from, *message, true);
                let _ = ack.send(Ok(()));
            }
        }
    }

    /// Steps a peer's message; `with_data` says it came with its snapshot's data.
    fn step(&mut self, from: NodeId, m: Message, with_data: bool) {
        if m.from != from {
            tracing::warn!(
                peer = from,
                claimed = m.from,
                "dropping a message with a forged sender"
            );
            return;
        }
        let result = if with_data {
            self.node.step_snapshot(m)
        } else {
            self.node.step(m)
        };
        if let Err(e) = result {
            match e {
                raft_core::Error::Fatal(_) => self.set_fatal(e.to_string()),
                raft_core::Error::PeerLostLog { .. } => {
                    tracing::error!(error = %e, "a follower lost its log")
                }
                e => self.refused(from, e),
            }
        }
    }

    /// Counts a peer message that was refused, and logs it: at most one warning every few
    /// seconds, so that a peer sending garbage cannot flood the log.
    fn refused(&mut self, peer: NodeId, why: impl std::fmt::Display) {
        self.metrics.refused_messages += 1;
        let now = self.now;
        if self
            .refused_logged
            .is_none_or(|t| now.duration_since(t) >= REFUSED_LOG_INTERVAL)
        {
            self.refused_logged = Some(now);
            tracing::warn!(
                peer,
                refused = self.metrics.refused_messages,
                "refused a peer message: {why}"
            );
        } else {
            tracing::debug!(peer, "refused a peer message: {why}");
        }
    }

    // ---------------------------------------------------------------- protocol output

    fn handle_ready(&mut self) {
        // Bounded: a leader that owes appends it cannot build yet must not spin.
        for _ in 0..64 {
            if self.fatal.is_some() || !self.node.has_ready() {
                return;
            }
            let ready = match self.node.ready() {
                Ok(r) => r,
                Err(e @ raft_core::Error::Fatal(_)) => return self.set_fatal(e.to_string()),
                Err(e) => return self.set_fatal(format!("reading the log failed: {e}")),
            };
            if let Some(ss) = ready.soft_state {
                self.on_soft_state(ss);
            }
            self.send_messages(ready.messages);
            if let Some(p) = ready.persist {
                self.persist(p);
            }
            if !ready.committed_entries.is_empty() {
                self.apply(ready.committed_entries);
            }
            for rs in ready.read_states {
                self.on_read_state(rs);
            }
            self.sync_membership();
        }
    }

    fn on_soft_state(&mut self, ss: SoftState) {
        let term = self.node.term();
        if ss.leader != self.metrics.leader {
            tracing::info!(node = self.id, term, role = ?ss.role, leader = ?ss.leader, "leadership changed");
            // Proposals forwarded to a former leader may or may not have been appended there;
            // say so now rather than when they time out.
            let stale: Vec<u64> = self
                .forwards
                .iter()
                .filter(|(_, (_, to, _))| Some(*to) != ss.leader)
                .map(|(&id, _)| id)
                .collect();
            for id in stale {
                if let Some((_, to, reply)) = self.forwards.remove(&id) {
                    let _ = reply.send(Err(ProposeError::Unknown(format!(
                        "leader {to} changed while the forwarded command was in flight"
                    ))));
                }
            }
        }
        if let Some(leader) = ss.leader
            && self.last_leadership != Some((term, leader))
        {
            self.last_leadership = Some((term, leader));
            self.metrics.leader_changes += 1;
            if leader == self.id {
                self.metrics.elections_won += 1;
            }
        }
        self.metrics.role = ss.role;
        self.metrics.leader = ss.leader;
    }

    fn send_messages(&mut self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        let mut batches: BTreeMap<NodeId, Vec<WireMessage>> = BTreeMap::new();
        for m in messages {
            if let MessageBody::Snapshot(_) = m.body {
                self.send_snapshot(m);
            } else {
                batches.entry(m.to).or_default().push(WireMessage::Raft(m));
            }
        }
        for (to, batch) in batches {
            if let Err(e) = self.transport.send(to, batch) {
                self.node.report_unreachable(to);
                let now = Instant::now();
                let last = self.unreachable_logged.get(&to).copied();
                if last.is_none_or(|t| now.duration_since(t) > Duration::from_secs(10)) {
                    self.unreachable_logged.insert(to, now);
                    tracing::warn!(peer = to, error = %e, "peer unreachable");
                }
            }
        }
    }

    fn send_snapshot(&mut self, m: Message) {
        let to = m.to;
        if !self.sending_snapshots.insert(to) {
            return;
        }
        let MessageBody::Snapshot(meta) = &m.body else {
            return;
        };
        let index = meta.index;
        let store = self.store.clone();
        let transport = self.transport.clone();
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let ok = match store.load_snapshot().await {
                Ok(Some(s)) if s.meta.index == index => match transport.send_snapshot(to, m, s.data).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(peer = to, error = %e, "sending a snapshot failed");
                        false
                    }
                },
                Ok(_) => false,
                Err(e) => {
                    tracing::error!(error = %e, "loading the snapshot to send failed");
                    false
                }
            };
            let _ = events.send(Event::SnapshotSent { to, ok });
        });
    }

    fn persist(&mut self, p: Persist) {
        let token = p.token.0;
        if p.is_empty() {
            // Nothing to write: its messages follow the latest write still in flight.
            match self.inflight.back_mut() {
                Some(last) => {
                    last.messages.extend(p.messages);
                    last.report = token;
                }
                None => {
                    if let Err(e) = self.node.on_persisted(p.token) {
                        return self.set_fatal(format!("persist bookkeeping: {e}"));
                    }
                    self.send_messages(p.messages);
                }
            }
            return;
        }
        let snapshot = match p.snapshot {
            Some(meta) => match self.staged.remove(&meta.index) {
                Some(data) => Some(Snapshot { meta, data }),
                None => {
                    return self.set_fatal(format!("snapshot {} accepted without its data", meta.index));
                }
            },
            None => None,
        };
        let write = LogWrite {
            snapshot: snapshot.clone(),
            entries: p.entries,
            hard_state: p.hard_state,
        };
        self.inflight.push_back(InflightWrite {
            token,
            report: token,
            messages: p.messages,
            restore: snapshot,
        });
        let events = self.events_tx.clone();
        self.store.append(
            write,
            Box::new(move |result| {
                let _ = events.send(Event::Persisted { token, result });
            }),
        );
    }

    fn on_persisted(&mut self, token: u64, result: Result<(), StoreError>) {
        if let Err(e) = result {
            return self.set_fatal(format!("log store write failed: {e}"));
        }
        let Some(w) = self.inflight.pop_front() else {
            return self.set_fatal(format!("completion for unknown write {token}"));
        };
        if w.token != token {
            return self.set_fatal(format!(
                "writes completed out of order ({token} before {})",
                w.token
            ));
        }
        if let Some(s) = w.restore {
            self.emitted = self.emitted.max(s.meta.index);
            let _ = self.applier_tx.send(ApplyMsg::Restore(s));
            self.metrics.snapshots_installed += 1;
        }
        if let Err(e) = self.node.on_persisted(PersistToken(w.report)) {
            return self.set_fatal(format!("persist bookkeeping: {e}"));
        }
        self.send_messages(w.messages);
        self.release_parked_reads();
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        let mut batch = Vec::with_capacity(entries.len());
        for e in entries {
            let responder = match self.proposals.remove(&e.index) {
                Some(p) if p.term == e.term => Some(p.responder),
                Some(p) => {
                    // Another leader's entry took this position: the proposal is gone.
                    p.responder.fail(ProposeError::Dropped, &*self.transport);
                    None
                }
                None => None,
            };
            if let EntryPayload::Membership(cs) = &e.payload {
                self.on_conf_applied(e.index, e.term, cs.is_joint());
            }
            self.emitted = self.emitted.max(e.index);
            self.bytes_since_snapshot = self.bytes_since_snapshot.saturating_add(e.size());
            batch.push((e, responder));
        }
        let _ = self.applier_tx.send(ApplyMsg::Entries(batch));
        self.release_parked_reads();
    }

    fn on_conf_applied(&mut self, index: Index, term: Term, joint: bool) {
        let mut i = 0;
        while i < self.conf_waiters.len() {
            let w = &mut self.conf_waiters[i];
            let done = if !w.entered && w.index == index {
                if w.term != term {
                    Some(Err(AdminError::LeadershipLost))
                } else if w.wait_final && joint {
                    w.entered = true;
                    None
                } else {
                    Some(Ok(()))
                }
            } else if w.entered && index > w.index && !joint {
                Some(Ok(()))
            } else {
                None
            };
            match done {
                Some(outcome) => {
                    let w = self.conf_waiters.swap_remove(i);
                    let _ = w.reply.send(outcome);
                }
                None => i += 1,
            }
        }
    }

    /// Tells the transport the members' addresses whenever the configuration changes, and
    /// refreshes the membership in the metrics.
    pub(crate) fn sync_membership(&mut self) {
        let index = self.node.conf_index();
        if self.last_conf_index == Some(index) {
            return;
        }
        self.last_conf_index = Some(index);
        let cs = self.node.conf_state().clone();
        self.metrics.members = members(&cs);
        self.metrics.joint = cs.is_joint();
        let Some(addresses) = crate::node::announced_peers(self.id, &cs, &self.seeds) else {
            return;
        };
        if cs.contains(self.id) {
            // In the cluster for good: the configuration alone says whom to admit now.
            self.seeds.clear();
        }
        let addresses = self.peers.set_config(index, addresses);
        self.transport.set_peers(addresses);
    }

    // ---------------------------------------------------------------- completions

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Persisted { token, result } => self.on_persisted(token, result),
            Event::SnapshotSent { to, ok } => {
                self.sending_snapshots.remove(&to);
                let status = if ok {
                    SnapshotStatus::Finished
                } else {
                    SnapshotStatus::Failed
                };
                self.node.report_snapshot(to, status);
            }
            Event::SnapshotSaved { index, result } => {
                self.snapshot_in_progress = false;
                match result {
                    Ok(()) => {
                        self.last_snapshot = self.last_snapshot.max(index);
                        self.metrics.snapshots_taken += 1;
                    }
                    Err(e) => self.set_fatal(format!("saving a snapshot failed: {e}")),
                }
            }
        }
    }

    fn on_applier(&mut self, ev: ApplierEvent) {
        match ev {
            ApplierEvent::Applied { index, entries } => {
                if index > self.applied {
                    self.applied = index;
                    self.metrics.applied_entries += entries;
                    if let Err(e) = self.node.on_applied(index) {
                        tracing::debug!(error = %e, "applied index refused");
                    }
                }
                self.maybe_snapshot();
            }
            ApplierEvent::Installed { index } => {
                self.last_snapshot = self.last_snapshot.max(index);
            }
            ApplierEvent::SnapshotBuilt { index, data } => match self.node.snapshot_meta_at(index) {
                Ok(meta) => {
                    let store = self.store.clone();
                    let events = self.events_tx.clone();
                    tokio::spawn(async move {
                        let result = match store.save_snapshot(Snapshot { meta, data }).await {
                            Ok(()) => store.compact(index),
                            Err(e) => Err(e),
                        };
                        let _ = events.send(Event::SnapshotSaved { index, result });
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "snapshot skipped");
                    self.snapshot_in_progress = false;
                }
            },
            ApplierEvent::Fatal(e) => self.set_fatal(format!("state machine failed: {e}")),
        }
    }

    /// Starts a snapshot (which compacts the log) once enough entries, or enough bytes of
    /// entries, were applied since the last one.
    fn maybe_snapshot(&mut self) {
        if self.snapshot_in_progress || self.stopping.is_some() {
            return;
        }
        let (every, every_bytes) = (self.cfg.snapshot_every, self.cfg.snapshot_every_bytes);
        let by_count = every > 0 && self.applied.saturating_sub(self.last_snapshot) >= every;
        let by_bytes = every_bytes > 0 && self.bytes_since_snapshot >= every_bytes;
        if by_count || by_bytes {
            self.snapshot_in_progress = true;
            self.bytes_since_snapshot = 0;
            let _ = self.applier_tx.send(ApplyMsg::BuildSnapshot);
        }
    }

    // ---------------------------------------------------------------- time

    fn on_tick(&mut self) {
        self.node.tick();
        if let Some(addresses) = self.peers.tick(self.node.commit_index()) {
            self.transport.set_peers(addresses);
        }
        let now = Instant::now();
        let proposals = &self.proposals;
        let expired = expire_deadlines(&mut self.proposal_deadlines, now, |index, term| {
            proposals.get(&index).is_some_and(|p| p.term == term)
        });
        for index in expired {
            let p = self.proposals.remove(&index).expect("pending");
            p.responder.fail(ProposeError::Timeout, &*self.transport);
        }
        let expired: Vec<u64> = self
            .forwards
            .iter()
            .filter(|(_, (d, _, _))| *d <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            if let Some((_, _, reply)) = self.forwards.remove(&id) {
                let _ = reply.send(Err(ProposeError::Timeout));
            }
        }
        let expired: Vec<ReadCtx> = self
            .reads
            .iter()
            .filter(|(_, (d, _))| *d <= now)
            .map(|(&c, _)| c)
            .collect();
        for ctx in expired {
            if let Some((_, query)) = self.reads.remove(&ctx) {
                query(Err(ReadError::Timeout));
            }
        }
        // Confirmed reads whose index the applier has not reached in time.
        self.parked_reads.retain(|_, queries| {
            let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(queries)
                .into_iter()
                .partition(|(deadline, _)| *deadline <= now);
            *queries = kept;
            for (_, query) in expired {
                query(Err(ReadError::Timeout));
            }
            !queries.is_empty()
        });
        let mut i = 0;
        while i < self.conf_waiters.len() {
            if self.conf_waiters[i].deadline <= now {
                let w = self.conf_waiters.swap_remove(i);
                let _ = w.reply.send(Err(AdminError::Timeout));
            } else {
                i += 1;
            }
        }
        self.publish_metrics(true);
    }

    // ---------------------------------------------------------------- metrics

    /// Publishes the metrics: everything on a tick, and at once only when the role, term,
    /// leader or membership changed (comparing and cloning everything on every loop
    /// iteration costs more than the work it reports on).
    fn publish_metrics(&mut self, full: bool) {
        if !full {
            let current = self.metrics_tx.borrow();
            let unchanged = current.role == self.metrics.role
                && current.leader == self.metrics.leader
                && current.term == self.node.term()
                && current.members == self.metrics.members
                && current.fatal == self.metrics.fatal;
            drop(current);
            if unchanged {
                return;
            }
        }
        let m = &mut self.metrics;
        m.term = self.node.term();
        m.commit = self.node.commit_index();
        m.applied = self.applied;
        m.last_log_index = self.node.last_index();
        m.snapshot_index = self.last_snapshot;
        if full {
            m.store = self.store.metrics();
            m.transport = self.transport.metrics();
            m.matched = if self.node.role() == Role::Leader {
                self.node
                    .status()
                    .progress
                    .iter()
                    .map(|(&id, p)| (id, p.matched))
                    .collect()
            } else {
                BTreeMap::new()
            };
        }
        let snapshot = self.metrics.clone();
        self.metrics_tx.send_if_modified(|current| {
            if *current == snapshot {
                false
            } else {
                *current = snapshot;
                true
            }
        });
    }

    // ---------------------------------------------------------------- stopping

    fn begin_stop(&mut self, reply: Option<oneshot::Sender<()>>) {
        let grace = self.cfg.propose_timeout.min(Duration::from_secs(3));
        let stopping = self.stopping.get_or_insert_with(|| Stopping {
            deadline: Instant::now() + grace,
            replies: Vec::new(),
        });
        stopping.replies.extend(reply);
    }

    fn set_fatal(&mut self, reason: String) {
        if self.fatal.is_none() {
            tracing::error!(node = self.id, reason = %reason, "node stopping after a fatal error");
            self.metrics.fatal = Some(reason.clone());
            self.fatal = Some(reason);
        }
    }

    fn finished(&self) -> bool {
        if self.fatal.is_some() {
            return true;
        }
        match &self.stopping {
            None => false,
            Some(s) => {
                (self.proposals.is_empty() && self.forwards.is_empty() && self.inflight.is_empty())
                    || Instant::now() >= s.deadline
            }
        }
    }

    async fn finish(mut self) {
        let reason = self.fatal.clone().unwrap_or_else(|| "the node shut down".into());
        for (_, p) in self.proposals.drain() {
            p.responder
                .fail(ProposeError::Unknown(reason.clone()), &*self.transport);
        }
        for (_, (_, _, reply)) in self.forwards.drain() {
            let _ = reply.send(Err(ProposeError::Unknown(reason.clone())));
        }
        for (_, (_, query)) in self.reads.drain() {
            query(Err(ReadError::ShuttingDown));
        }
        for (_, queries) in std::mem::take(&mut self.parked_reads) {
            for (_, q) in queries {
                q(Err(ReadError::ShuttingDown));
            }
        }
        for w in self.conf_waiters.drain(..) {
            let _ = w.reply.send(Err(AdminError::ShuttingDown));
        }
        if let Some(t) = self.transfer.take() {
            let _ = t.reply.send(Err(AdminError::ShuttingDown));
        }
        // Let writes in flight land (their completions are no longer needed), stop the
        // applier once it has applied what it was given, then close the transport.
        if self.fatal.is_none()
            && let Err(e) = self.store.flush().await
        {
            tracing::error!(error = %e, "flushing the log store failed");
        }
        let (tx, rx) = oneshot::channel();
        if self.applier_tx.send(ApplyMsg::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
        if let Some(task) = self.applier_task.take() {
            let _ = task.await;
        }
        self.transport.shutdown().await;
        self.metrics.role = Role::Follower;
        self.metrics.leader = None;
        self.publish_metrics(true);
        // Anyone still asking gets a clear answer.
        self.requests.close();
        while let Ok(req) = self.requests.try_recv() {
            match req {
                Request::Propose { reply, .. } => {
                    let _ = reply.send(Err(ProposeError::ShuttingDown));
                }
                Request::Read { query, .. } => query(Err(ReadError::ShuttingDown)),
                Request::Membership { reply, .. } | Request::Transfer { reply, .. } => {
                    let _ = reply.send(Err(AdminError::ShuttingDown));
                }
                Request::Shutdown { reply } => {
                    let _ = reply.send(());
                }
            }
        }
        if let Some(s) = self.stopping.take() {
            for r in s.replies {
                let _ = r.send(());
            }
        }
        tracing::info!(node = self.id, "stopped");
    }
}

fn admin_error(e: raft_core::Error) -> AdminError {
    match e {
        raft_core::Error::NotLeader { leader } => AdminError::NotLeader { leader },
        raft_core::Error::ConfChange(c) => AdminError::Invalid(c),
        raft_core::Error::LearnerNotCaughtUp { node, .. } => AdminError::NotCaughtUp { node },
        raft_core::Error::ConfChangePending { .. } | raft_core::Error::LeaderNotReady => AdminError::Pending,
        raft_core::Error::TransferInProgress { .. } => AdminError::Busy(BusyReason::Transfer),
        raft_core::Error::TransferToSelf => {
            AdminError::InvalidTransfer("the node is already the leader".into())
        }
        raft_core::Error::TransferTargetNotVoter { target } => {
            AdminError::InvalidTransfer(format!("node {target} is not a voter"))
        }
        other => AdminError::InvalidTransfer(other.to_string()),
    }
}

/// The change that makes `voters` the voter set of `cs`, or `None` if it already is.
fn voters_change(cs: &ConfState, voters: &BTreeSet<NodeId>) -> Option<ConfChange> {
    let mut changes = Vec::new();
    for &v in voters {
        if !cs.voters.contains(&v) {
            changes.push(MemberChange::add_voter(v));
        }
    }
    for &v in &cs.voters {
        if !voters.contains(&v) {
            changes.push(MemberChange::remove(v));
        }
    }
    if changes.is_empty() {
        return None;
    }
    debug_assert!(changes.iter().all(|c| c.kind != ChangeKind::AddLearner));
    Some(ConfChange::new(changes))
}

fn members(cs: &ConfState) -> BTreeMap<NodeId, Member> {
    cs.members()
        .into_iter()
        .map(|id| {
            let info = cs.meta(id).map(|b| MemberInfo::decode(b)).unwrap_or_default();
            (
                id,
                Member {
                    voter: cs.is_voter(id),
                    address: info.address,
                    attributes: info.attributes,
                },
            )
        })
        .collect()
}

/// Pops the deadlines at the front of `queue` (kept in proposal order) that have passed or
/// whose proposal is no longer pending, and returns the pending ones that passed.
/// Dropping answered proposals' deadlines keeps the queue about as long as the number of
/// proposals in flight, instead of `propose_timeout` worth of throughput.
fn expire_deadlines(
    queue: &mut VecDeque<(Instant, Index, Term)>,
    now: Instant,
    pending: impl Fn(Index, Term) -> bool,
) -> Vec<Index> {
    let mut expired = Vec::new();
    while let Some(&(deadline, index, term)) = queue.front() {
        let still_pending = pending(index, term);
        if still_pending && deadline > now {
            break;
        }
        queue.pop_front();
        if still_pending {
            expired.push(index);
        }
    }
    expired
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answered_deadlines_are_dropped_and_pending_ones_expire_on_time() {
        let start = Instant::now();
        let later = start + Duration::from_secs(10);
        let mut queue: VecDeque<_> = (1..=1000).map(|i| (later, i, 1)).collect();
        // Everything up to 990 was answered; 991 onwards is still pending.
        let expired = expire_deadlines(&mut queue, start, |i, _| i > 990);
        assert!(expired.is_empty());
        assert_eq!(queue.len(), 10, "answered proposals' deadlines must not linger");
        // Only 996 onwards of term 1 are still pending when their deadline passes.
        let expired = expire_deadlines(&mut queue, later, |i, t| i > 995 && t == 1);
        assert_eq!(expired, vec![996, 997, 998, 999, 1000]);
        assert!(queue.is_empty());
    }
}
