//! The group task: the one task that owns a node's protocol state.
//!
//! It loops: wait for input (a tick, a request from a handle, traffic from peers, a write
//! that became durable, news from the applier), drain everything else already queued, feed
//! it all to the protocol, then dispatch the protocol's output: messages to the transport,
//! writes to the log store, committed entries to the applier, read confirmations to their
//! waiters. Nothing in here blocks: the store, the transport and the applier all report
//! back through channels.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use raft_core::{
    ChangeKind, ConfChange, ConfState, Entry, EntryPayload, Index, MemberChange, Message, MessageBody,
    NodeId, Persist, RawNode, ReadCtx, ReadState, Role, SnapshotStatus, SoftState, Term,
};
use rand_chacha::ChaCha8Rng;
use rand_core::Rng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::adapter::StoreReader;
use crate::applier::{ApplierEvent, ApplyMsg, Query, RemoteReply, Responder};
use crate::codec;
use crate::config::Config;
use crate::error::{AdminError, BusyReason, ProposeError, ReadError};
use crate::metrics::{Member, MemberInfo, Metrics};
use crate::peers::PeerSet;
use crate::persist::{Begin, Pipeline};
use crate::snapshot_policy::SnapshotPolicy;
use crate::state_machine::StateMachine;
use crate::store::{LogStore, Snapshot, StoreError};
use crate::transport::{ForwardError, InboxReceiver, Incoming, SendError, Transport, WireMessage};
use crate::waiting::Waiting;

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
        /// When the caller stops waiting: the change fails with a timeout then.
        deadline: Instant,
        reply: oneshot::Sender<Result<(), AdminError>>,
    },
    Transfer {
        to: NodeId,
        /// When the caller stops waiting.
        deadline: Instant,
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

/// A membership change waiting for its entry (and, if asked, the final configuration) to
/// be applied; keyed by the index of its entry.
struct ConfWaiter {
    term: Term,
    wait_final: bool,
    /// The change's own entry was applied; waiting for the final configuration.
    entered: bool,
    reply: oneshot::Sender<Result<(), AdminError>>,
}

/// Where an administrative request's outcome goes.
type AdminReply = oneshot::Sender<Result<(), AdminError>>;

struct Stopping {
    deadline: Instant,
    replies: Vec<oneshot::Sender<()>>,
}

/// What woke the loop.
enum Input<SM: StateMachine> {
    Tick,
    Applier(ApplierEvent),
    Event(Event),
    Peer(Incoming),
    /// A request from a handle, or `None` once every handle is gone.
    Request(Option<Request<SM>>),
}

/// Most requests, and most batches of peer traffic, handled per loop iteration.
const DRAIN: usize = 4_096;
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
    pub(crate) last_conf_index: Option<Index>,
    /// The peers the transport is told of (the members, and removed ones for a while).
    peers: PeerSet,
    // Work waiting for the protocol, one registry per kind (see waiting.rs).
    /// Local and forwarded proposals this leader appended, by index.
    proposals: Waiting<Index, Pending<SM>>,
    /// Proposals forwarded to a leader, by request id: the leader, and where the outcome goes.
    forwards: Waiting<u64, (NodeId, ProposalReply<SM>)>,
    next_forward: u64,
    /// Reads waiting for the protocol to confirm them, by context.
    reads: Waiting<ReadCtx, Query<SM>>,
    /// Confirmed reads waiting for their index to be applied, by (index, arrival).
    parked_reads: Waiting<(Index, u64), Query<SM>>,
    next_parked: u64,
    /// Membership changes, by the index of their entry.
    conf_waiters: Waiting<Index, ConfWaiter>,
    /// The leader transfer in progress, by target (at most one).
    transfer: Waiting<NodeId, AdminReply>,
    /// Answers to forwarded proposals, sent once per loop turn.
    remote_replies: Vec<RemoteReply>,
    /// Write batches on their way to the store.
    pipeline: Pipeline,
    snapshots: SnapshotPolicy,
    /// One permit per read in the node, from its arrival until it is answered wherever
    /// that happens (here or in the applier): bounds the reads a node holds.
    read_permits: Arc<tokio::sync::Semaphore>,
    /// When a refused peer message was last logged above debug level.
    refused_logged: Option<Instant>,
    /// The members a joining node was told of, admitted until it is in its configuration.
    seeds: BTreeMap<NodeId, Bytes>,
    sending_snapshots: BTreeSet<NodeId>,
    /// Tasks streaming snapshots to followers: aborted at stop.
    snapshot_sends: tokio::task::JoinSet<()>,
    /// Tasks saving a snapshot and compacting the log: awaited at stop, so that nothing
    /// holds the store once the node has stopped.
    snapshot_saves: tokio::task::JoinSet<()>,
    stopping: Option<Stopping>,
    fatal: Option<String>,
    unreachable_logged: HashMap<NodeId, Instant>,
    /// The last leadership (term, leader) counted in the metrics.
    last_leadership: Option<(Term, NodeId)>,
    /// The time at the start of the current loop turn: the one clock read of the turn.
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
        let snapshots = SnapshotPolicy::new(
            cfg.snapshot_every,
            cfg.snapshot_every_bytes,
            store.first_index().saturating_sub(1),
        );
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
            last_conf_index: None,
            peers,
            proposals: Waiting::default(),
            forwards: Waiting::default(),
            next_forward: 1,
            reads: Waiting::default(),
            parked_reads: Waiting::default(),
            next_parked: 0,
            conf_waiters: Waiting::default(),
            transfer: Waiting::default(),
            remote_replies: Vec::new(),
            pipeline: Pipeline::default(),
            snapshots,
            read_permits,
            seeds,
            refused_logged: None,
            sending_snapshots: BTreeSet::new(),
            snapshot_sends: tokio::task::JoinSet::new(),
            snapshot_saves: tokio::task::JoinSet::new(),
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
            let input = tokio::select! {
                biased;
                _ = ticker.tick() => Input::Tick,
                Some(ev) = self.applier_rx.recv() => Input::Applier(ev),
                Some(ev) = self.events_rx.recv() => Input::Event(ev),
                Some(inc) = self.inbox.recv() => Input::Peer(inc),
                req = self.requests.recv() => Input::Request(req),
            };
            self.now = Instant::now();
            match input {
                Input::Tick => self.on_tick(),
                Input::Applier(ev) => self.on_applier(ev),
                Input::Event(ev) => self.on_event(ev),
                Input::Peer(inc) => self.on_incoming(inc),
                Input::Request(Some(r)) => self.on_request(r),
                Input::Request(None) => self.begin_stop(None),
            }
            self.drain();
            self.handle_ready();
            if let Some(invariant) = self.node.fatal() {
                // Whatever input it came from, a broken invariant stops the node.
                self.set_fatal(format!("safety invariant violated: {invariant}"));
            }
            self.check_transfer();
            self.send_remote_replies();
            self.publish_metrics(false);
            if self.finished() {
                break;
            }
        }
        self.finish().await;
    }

    /// Sends the answers to forwarded proposals gathered this turn, one batch per peer.
    fn send_remote_replies(&mut self) {
        if self.remote_replies.is_empty() {
            return;
        }
        let mut batches: BTreeMap<NodeId, Vec<WireMessage>> = BTreeMap::new();
        for r in self.remote_replies.drain(..) {
            batches
                .entry(r.peer)
                .or_default()
                .push(WireMessage::ForwardReply {
                    id: r.id,
                    result: r.result,
                });
        }
        for (peer, batch) in batches {
            if let Err(e) = self.transport.send(peer, batch) {
                tracing::debug!(peer, error = %e, "answering forwarded proposals failed");
            }
        }
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
                deadline,
                reply,
            } => self.membership(request, wait_final, deadline, reply),
            Request::Transfer { to, deadline, reply } => self.start_transfer(to, deadline, reply),
            Request::Shutdown { reply } => self.begin_stop(Some(reply)),
        }
    }

    fn busy(&self) -> Option<BusyReason> {
        if self.proposals.len() >= self.cfg.max_pending_proposals {
            return Some(BusyReason::PendingProposals);
        }
        if self.pipeline.len() >= self.cfg.max_inflight_writes {
            return Some(BusyReason::Disk);
        }
        if self.node.commit_index().saturating_sub(self.applied) >= self.cfg.max_apply_lag {
            return Some(BusyReason::Apply);
        }
        None
    }

    fn propose(&mut self, command: Bytes, responder: Responder<SM>) {
        if self.stopping.is_some() || self.fatal.is_some() {
            return responder.fail(ProposeError::ShuttingDown, &mut self.remote_replies);
        }
        if let Some(reason) = self.busy() {
            return responder.fail(ProposeError::Busy(reason), &mut self.remote_replies);
        }
        if self.node.role() != Role::Leader {
            let leader = self.node.leader();
            return match (responder, leader) {
                (Responder::Local(reply), Some(leader)) if self.cfg.forward_proposals => {
                    self.forward(leader, command, reply)
                }
                (responder, _) => {
                    responder.fail(ProposeError::NotLeader { leader }, &mut self.remote_replies)
                }
            };
        }
        match self.node.propose(command) {
            Ok(index) => {
                let term = self.node.term();
                self.metrics.proposals += 1;
                let deadline = self.now + self.cfg.propose_timeout;
                if let Some(old) = self
                    .proposals
                    .insert(index, deadline, Pending { term, responder })
                {
                    // The protocol never hands out an index twice in a term; an entry of an
                    // earlier term at this index was overwritten.
                    old.responder
                        .fail(ProposeError::Dropped, &mut self.remote_replies);
                }
            }
            Err(raft_core::Error::NotLeader { leader }) => {
                responder.fail(ProposeError::NotLeader { leader }, &mut self.remote_replies)
            }
            Err(raft_core::Error::UncommittedLimit { .. }) => responder.fail(
                ProposeError::Busy(BusyReason::Uncommitted),
                &mut self.remote_replies,
            ),
            Err(raft_core::Error::TransferInProgress { .. }) => {
                responder.fail(ProposeError::Busy(BusyReason::Transfer), &mut self.remote_replies)
            }
            Err(e) => responder.fail(ProposeError::Unknown(e.to_string()), &mut self.remote_replies),
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
                    .insert(id, self.now + self.cfg.propose_timeout, (leader, reply));
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
            self.remote_replies.push(RemoteReply {
                peer: from,
                id,
                result: Err(ForwardError::NotLeader { leader }),
            });
            return;
        }
        self.propose(command, Responder::Remote { peer: from, id });
    }

    fn on_forward_reply(&mut self, from: NodeId, id: u64, result: Result<Bytes, ForwardError>) {
        // Only the node the proposal went to can answer it.
        if self.forwards.get(&id).is_none_or(|&(leader, _)| leader != from) {
            self.refused(from, "an answer to a proposal that was not forwarded to it");
            return;
        }
        let Some((_, reply)) = self.forwards.remove(&id) else {
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
                self.reads.insert(ctx, self.now + self.cfg.read_timeout, query);
            }
            Err(raft_core::Error::NotLeader { leader }) => query(Err(ReadError::NotLeader { leader })),
            Err(raft_core::Error::TooManyPendingReads { .. }) => {
                query(Err(ReadError::Busy(BusyReason::Reads)))
            }
            Err(_) => query(Err(ReadError::LeadershipLost)),
        }
    }

    fn on_read_state(&mut self, rs: ReadState) {
        let Some(deadline) = self.reads.deadline(&rs.ctx) else {
            return;
        };
        let query = self.reads.remove(&rs.ctx).expect("checked");
        match rs.result {
            Ok(index) if index <= self.emitted => {
                let _ = self.applier_tx.send(ApplyMsg::Query(query));
            }
            Ok(index) => {
                self.next_parked += 1;
                self.parked_reads
                    .insert((index, self.next_parked), deadline, query);
            }
            Err(_) => query(Err(ReadError::LeadershipLost)),
        }
    }

    /// Sends the queries of reads whose index has been handed to the applier.
    fn release_parked_reads(&mut self) {
        for (_, query) in self.parked_reads.take_through((self.emitted, u64::MAX)) {
            let _ = self.applier_tx.send(ApplyMsg::Query(query));
        }
    }

    fn membership(
        &mut self,
        request: ConfRequest,
        wait_final: bool,
        deadline: Instant,
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
            Ok(index) => {
                let waiter = ConfWaiter {
                    term: self.node.term(),
                    wait_final,
                    entered: false,
                    reply,
                };
                if let Some(old) = self.conf_waiters.insert(index, deadline, waiter) {
                    let _ = old.reply.send(Err(AdminError::LeadershipLost));
                }
            }
            Err(e) => {
                let _ = reply.send(Err(admin_error(e)));
            }
        }
    }

    fn start_transfer(&mut self, to: NodeId, deadline: Instant, reply: AdminReply) {
        if self.node.role() == Role::Follower && self.node.leader() == Some(to) {
            let _ = reply.send(Ok(()));
            return;
        }
        match self.node.transfer_leader(to) {
            Ok(()) => {
                for (target, old) in self.transfer.drain() {
                    let _ = old.send(Err(AdminError::TransferAborted { target }));
                }
                self.transfer.insert(to, deadline, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(admin_error(e)));
            }
        }
    }

    fn check_transfer(&mut self) {
        let Some((&to, _)) = self.transfer.first() else {
            return;
        };
        let outcome = if self.node.leader() == Some(to) {
            Ok(())
        } else if self.node.role() == Role::Leader && self.node.status().lead_transferee.is_none() {
            Err(AdminError::TransferAborted { target: to })
        } else if self.node.role() != Role::Leader && self.node.leader().is_some() {
            Err(AdminError::LeadershipLost)
        } else {
            // Still under way: it ends here, or expires with the other waiting work.
            return;
        };
        if let Some(reply) = self.transfer.remove(&to) {
            let _ = reply.send(outcome);
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
                self.pipeline.stage(meta.index, data);
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
            let stale = self.forwards.take_where(|_, (to, _)| Some(*to) != ss.leader);
            for (_, (to, reply)) in stale {
                let _ = reply.send(Err(ProposeError::Unknown(format!(
                    "leader {to} changed while the forwarded command was in flight"
                ))));
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
                let now = self.now;
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
        self.snapshot_sends.spawn(async move {
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
        match self.pipeline.begin(p) {
            Ok(Begin::Write { token, write }) => {
                let events = self.events_tx.clone();
                self.store.append(
                    write,
                    Box::new(move |result| {
                        let _ = events.send(Event::Persisted { token, result });
                    }),
                );
            }
            Ok(Begin::Durable { token, messages }) => {
                if let Err(e) = self.node.on_persisted(token) {
                    return self.set_fatal(format!("persist bookkeeping: {e}"));
                }
                self.send_messages(messages);
            }
            Ok(Begin::RidesAlong) => {}
            Err(e) => self.set_fatal(e.to_string()),
        }
    }

    fn on_persisted(&mut self, token: u64, result: Result<(), StoreError>) {
        if let Err(e) = result {
            return self.set_fatal(format!("log store write failed: {e}"));
        }
        let done = match self.pipeline.complete(token) {
            Ok(done) => done,
            Err(e) => return self.set_fatal(e.to_string()),
        };
        if let Some(s) = done.restore {
            self.emitted = self.emitted.max(s.meta.index);
            let _ = self.applier_tx.send(ApplyMsg::Restore(s));
            self.metrics.snapshots_installed += 1;
        }
        if let Err(e) = self.node.on_persisted(done.report) {
            return self.set_fatal(format!("persist bookkeeping: {e}"));
        }
        self.send_messages(done.messages);
        self.release_parked_reads();
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        let mut batch = Vec::with_capacity(entries.len());
        for e in entries {
            let responder = match self.proposals.remove(&e.index) {
                Some(p) if p.term == e.term => Some(p.responder),
                Some(p) => {
                    // Another leader's entry took this position: the proposal is gone.
                    p.responder.fail(ProposeError::Dropped, &mut self.remote_replies);
                    None
                }
                None => None,
            };
            if let EntryPayload::Membership(cs) = &e.payload {
                self.on_conf_applied(e.index, e.term, cs.is_joint());
            }
            self.emitted = self.emitted.max(e.index);
            self.snapshots.entries_applied(e.size());
            batch.push((e, responder));
        }
        let _ = self.applier_tx.send(ApplyMsg::Entries(batch));
        self.release_parked_reads();
    }

    fn on_conf_applied(&mut self, index: Index, term: Term, joint: bool) {
        // The change's own entry: done, lost to another leader, or entering the joint
        // configuration on the way to the final one.
        if let Some(w) = self.conf_waiters.get_mut(&index)
            && !w.entered
        {
            if w.term == term && w.wait_final && joint {
                w.entered = true;
            } else {
                let outcome = if w.term == term {
                    Ok(())
                } else {
                    Err(AdminError::LeadershipLost)
                };
                let w = self.conf_waiters.remove(&index).expect("checked");
                let _ = w.reply.send(outcome);
            }
        }
        // Changes that entered a joint configuration finish with the final one after it.
        if !joint {
            for (_, w) in self.conf_waiters.take_where(|&at, w| w.entered && index > at) {
                let _ = w.reply.send(Ok(()));
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
        // Reap the background tasks that ended (each reports before it ends).
        while self.snapshot_sends.try_join_next().is_some() {}
        while self.snapshot_saves.try_join_next().is_some() {}
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
            Event::SnapshotSaved { index, result } => match result {
                Ok(()) => {
                    self.snapshots.finished(Some(index));
                    self.metrics.snapshots_taken += 1;
                }
                Err(e) => {
                    self.snapshots.finished(None);
                    self.set_fatal(format!("saving a snapshot failed: {e}"));
                }
            },
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
            ApplierEvent::Installed { index } => self.snapshots.installed(index),
            ApplierEvent::Replies(replies) => self.remote_replies.extend(replies),
            ApplierEvent::SnapshotBuilt { index, data } => match self.node.snapshot_meta_at(index) {
                Ok(meta) => {
                    let store = self.store.clone();
                    let events = self.events_tx.clone();
                    self.snapshot_saves.spawn(async move {
                        let result = match store.save_snapshot(Snapshot { meta, data }).await {
                            Ok(()) => store.compact(index),
                            Err(e) => Err(e),
                        };
                        let _ = events.send(Event::SnapshotSaved { index, result });
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "snapshot skipped");
                    self.snapshots.finished(None);
                }
            },
            ApplierEvent::Fatal(e) => self.set_fatal(format!("state machine failed: {e}")),
        }
    }

    /// Starts a snapshot (which compacts the log) once enough entries, or enough bytes of
    /// entries, were applied since the last one.
    fn maybe_snapshot(&mut self) {
        if self.stopping.is_none() && self.snapshots.start_if_due(self.applied) {
            let _ = self.applier_tx.send(ApplyMsg::BuildSnapshot);
        }
    }

    // ---------------------------------------------------------------- time

    fn on_tick(&mut self) {
        self.node.tick();
        if let Some(addresses) = self.peers.tick(self.node.commit_index()) {
            self.transport.set_peers(addresses);
        }
        self.expire_waiting();
        self.publish_metrics(true);
    }

    /// Answers every waiting request whose deadline passed.
    fn expire_waiting(&mut self) {
        let now = self.now;
        for (_, p) in self.proposals.expire(now) {
            p.responder.fail(ProposeError::Timeout, &mut self.remote_replies);
        }
        for (_, (_, reply)) in self.forwards.expire(now) {
            let _ = reply.send(Err(ProposeError::Timeout));
        }
        // Reads not confirmed in time, and confirmed ones the applier did not reach in time.
        for (_, query) in self.reads.expire(now) {
            query(Err(ReadError::Timeout));
        }
        for (_, query) in self.parked_reads.expire(now) {
            query(Err(ReadError::Timeout));
        }
        for (_, w) in self.conf_waiters.expire(now) {
            let _ = w.reply.send(Err(AdminError::Timeout));
        }
        for (_, reply) in self.transfer.expire(now) {
            let _ = reply.send(Err(AdminError::Timeout));
        }
    }

    /// Answers everything still waiting: the node is stopping.
    fn fail_waiting(&mut self, reason: &str) {
        for (_, p) in self.proposals.drain() {
            p.responder
                .fail(ProposeError::Unknown(reason.to_owned()), &mut self.remote_replies);
        }
        for (_, (_, reply)) in self.forwards.drain() {
            let _ = reply.send(Err(ProposeError::Unknown(reason.to_owned())));
        }
        for (_, query) in self.reads.drain() {
            query(Err(ReadError::ShuttingDown));
        }
        for (_, query) in self.parked_reads.drain() {
            query(Err(ReadError::ShuttingDown));
        }
        for (_, w) in self.conf_waiters.drain() {
            let _ = w.reply.send(Err(AdminError::ShuttingDown));
        }
        for (_, reply) in self.transfer.drain() {
            let _ = reply.send(Err(AdminError::ShuttingDown));
        }
        self.send_remote_replies();
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
        m.snapshot_index = self.snapshots.last();
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
            deadline: self.now + grace,
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
                (self.proposals.is_empty() && self.forwards.is_empty() && self.pipeline.is_empty())
                    || self.now >= s.deadline
            }
        }
    }

    async fn finish(mut self) {
        let reason = self.fatal.clone().unwrap_or_else(|| "the node shut down".into());
        self.fail_waiting(&reason);
        // Snapshot streams stop; a snapshot being saved is finished, so that the store is
        // whole and no longer referenced when the node reports it has stopped.
        self.snapshot_sends.abort_all();
        while self.snapshot_sends.join_next().await.is_some() {}
        while self.snapshot_saves.join_next().await.is_some() {}
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
