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

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use raft_core::{
    ChangeKind, ConfChange, ConfState, DriverError, Entry, EntryPayload, Index, MemberChange, Message,
    MessageBody, NodeId, Persist, ProgressState, RawNode, ReadCtx, ReadFailure, ReadState, Role,
    SnapshotMeta, SnapshotStatus, SoftState, StepError, Term,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::adapter::StoreReader;
use crate::applier::{ApplierEvent, ApplyMsg, Query, RawReply, RemoteReply, Responder};
use crate::batch::{LocalReply, Slot};
use crate::codec;
use crate::config::Config;
use crate::error::{
    AdminError, BusyReason, Fatal, InvalidTransfer, ProposeError, ReadError, SessionError, StateMachineError,
    UnknownOutcome,
};
use crate::handle::Stopped;
use crate::member::MemberInfo;
use crate::metrics::{Member, Metrics};
use crate::peers::PeerSet;
use crate::persist::{Begin, Pipeline};
use crate::sessions::{WallClock, record};
use crate::snapshot_policy::{Retention, SnapshotPolicy};
use crate::snapshot_stream::SnapshotStream;
use crate::state_machine::StateMachine;
use crate::store::{LogStore, Staged, StoreError};
use crate::transport::{
    DeliverSnapshotError, ForwardError, GroupId, InboxReceiver, Incoming, SendError, Transport, WireMessage,
};
use crate::waiting::{InOrder, Waiting};

mod inbound;
mod lifecycle;
mod output;
mod requests;

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
    /// Commands proposed in one call, each with its place among the call's answers.
    ProposeBatch {
        commands: Vec<(Bytes, Slot<SM::Response>)>,
    },
    /// A record of the runtime's own (a session's command or opening), not yet stamped.
    ProposeRecord {
        record: BytesMut,
        reply: RawReply,
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
    /// The metrics as of now.
    Metrics {
        reply: oneshot::Sender<Metrics>,
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
        index: Index,
        ok: bool,
    },
    SnapshotSaved {
        index: Index,
        result: Result<(), Fatal>,
    },
    /// A snapshot received from a peer was written to the store's staging area.
    SnapshotStaged {
        from: NodeId,
        message: Box<Message>,
        /// Boxed, as the message is: a channel's slots are as large as its largest item,
        /// and an idle node keeps a block of them.
        result: Box<Result<Staged, StoreError>>,
        ack: oneshot::Sender<Result<(), DeliverSnapshotError>>,
    },
}

/// Where the outcome of a proposal forwarded to the leader goes.
pub(crate) enum ForwardWaiter<SM: StateMachine> {
    /// A command's caller (alone or in a batch), who gets the decoded response.
    Command(LocalReply<SM::Response>),
    /// A runtime record's caller, who gets the encoded response.
    Record(RawReply),
}

impl<SM: StateMachine> ForwardWaiter<SM> {
    fn fail(self, e: ProposeError) {
        match self {
            ForwardWaiter::Command(reply) => reply.send(Err(e)),
            ForwardWaiter::Record(reply) => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

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
    /// A tick, with the time it was due.
    Tick(Instant),
    Applier(ApplierEvent),
    Event(Event),
    Peer(Incoming),
    /// A request from a handle, or `None` once every handle is gone.
    Request(Option<Request<SM>>),
}

/// When the metrics are published (see `Group::publish_metrics`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Publish {
    /// At the end of a turn: only what must be seen at once.
    Changes,
    /// On a tick: progress too, and every few ticks everything.
    Tick,
    /// Everything, as of now.
    Now,
}

/// Every how many ticks the metrics take in the store's and transport's counters and each
/// follower's match (each a lock or a copy: with thousands of groups, not every tick).
const METRICS_REFRESH_TICKS: u32 = 5;

/// Most requests, and most batches of peer traffic, handled per loop iteration.
const DRAIN: usize = 4_096;
/// How often a refused peer message is logged as a warning (the rest go to debug).
const REFUSED_LOG_INTERVAL: Duration = Duration::from_secs(5);

pub(crate) struct Group<SM: StateMachine> {
    pub(crate) id: NodeId,
    /// The group this node is a member of: its traffic is tagged with it.
    pub(crate) group: GroupId,
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
    /// The metrics last published, with the index of the configuration their members are
    /// from.
    published: (Metrics, Option<Index>),
    /// Ticks until the metrics take in the counters of the store and transport again.
    ticks_to_refresh: u32,
    pub(crate) applied: Index,
    pub(crate) emitted: Index,
    pub(crate) last_conf_index: Option<Index>,
    /// The peers the transport is told of (the members, and removed ones for a while).
    peers: PeerSet,
    // Work waiting for the protocol, one registry per kind (see waiting.rs).
    /// Local and forwarded proposals this leader appended, by index.
    proposals: InOrder<Pending<SM>>,
    /// Proposals forwarded to a leader, by request id: the leader, and where the outcome goes.
    forwards: Waiting<u64, (NodeId, ForwardWaiter<SM>)>,
    next_forward: u64,
    /// Reads waiting for the protocol to confirm them, by context.
    reads: InOrder<Query<SM>>,
    /// The context of the next read: a counter from a random start, so that reads wait in
    /// the order of their contexts and a late answer to a read before a restart matches
    /// none after it.
    next_read_ctx: ReadCtx,
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
    /// On a leader: the snapshot each follower was last sent in full, until it reports
    /// having it (it may still be restoring it). The log after it is kept for it.
    delivered_snapshots: BTreeMap<NodeId, Index>,
    /// Tasks streaming snapshots to followers: aborted at stop.
    snapshot_sends: tokio::task::JoinSet<()>,
    /// Snapshots received from peers, being written to the store's staging area.
    snapshot_receives: tokio::task::JoinSet<()>,
    /// Tasks saving a snapshot and compacting the log: awaited at stop, so that nothing
    /// holds the store once the node has stopped.
    snapshot_saves: tokio::task::JoinSet<()>,
    /// Cancelled at stop: a snapshot still being read from the state machine is dropped
    /// (one being stored is awaited).
    snapshot_reads: CancellationToken,
    stopping: Option<Stopping>,
    fatal: Option<Fatal>,
    unreachable_logged: HashMap<NodeId, Instant>,
    /// The last leadership (term, leader) counted in the metrics.
    last_leadership: Option<(Term, NodeId)>,
    /// The time at the start of the current loop turn: the one clock read of the turn.
    now: Instant,
    /// When the last tick handled was due: the protocol's clock has counted the time up to
    /// here. Ticks missed while the process was paused (or the loop behind) are handled
    /// one per turn, so for a few turns after a pause this is well behind the time.
    tick_due: Instant,
    request_buf: Vec<Request<SM>>,
    incoming_buf: Vec<Incoming>,
    /// Ticks this leader has had no request to handle (see `Config::quiesce_after_ticks`).
    idle_ticks: u32,
    /// The wall clock a leader stamps session records with.
    clock: WallClock,
    /// Its reading this loop turn, taken at the first record that needs it: one clock read
    /// per turn, like `now`.
    stamp: Option<u64>,
}

impl<SM: StateMachine> Group<SM> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: NodeId,
        group: GroupId,
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
        first_read_ctx: ReadCtx,
        applied: Index,
        seeds: BTreeMap<NodeId, Bytes>,
        clock: WallClock,
    ) -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let mut snapshots = SnapshotPolicy::new(
            cfg.snapshot_every,
            cfg.snapshot_every_bytes,
            Retention {
                entries: cfg.log_kept_entries,
                bytes: cfg.log_kept_bytes,
            },
            store
                .snapshot_meta()
                .map_or(store.first_index().saturating_sub(1), |m| m.index),
        )
        .with_log_percent(cfg.snapshot_log_percent, cfg.snapshot_log_max_entries);
        snapshots.stored_len(store.snapshot_len());
        // Removed peers stay reachable two election timeouts after their removal commits:
        // the leader goes on replicating to them for up to one.
        let peers = PeerSet::new(2 * u64::from(cfg.protocol.election_tick));
        let read_permits = Arc::new(tokio::sync::Semaphore::new(cfg.max_pending_reads));
        Group {
            id,
            group,
            metrics: Metrics {
                group,
                ..Metrics::new(id)
            },
            published: (Metrics::new(id), None),
            ticks_to_refresh: 0,
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
            applied,
            emitted: applied,
            last_conf_index: None,
            peers,
            proposals: InOrder::default(),
            forwards: Waiting::default(),
            next_forward: 1,
            reads: InOrder::default(),
            next_read_ctx: first_read_ctx,
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
            delivered_snapshots: BTreeMap::new(),
            snapshot_sends: tokio::task::JoinSet::new(),
            snapshot_receives: tokio::task::JoinSet::new(),
            snapshot_saves: tokio::task::JoinSet::new(),
            snapshot_reads: CancellationToken::new(),
            stopping: None,
            fatal: None,
            unreachable_logged: HashMap::new(),
            last_leadership: None,
            now: Instant::now(),
            tick_due: Instant::now(),
            request_buf: Vec::new(),
            incoming_buf: Vec::new(),
            idle_ticks: 0,
            clock,
            stamp: None,
        }
    }

    pub(crate) async fn run(mut self) -> Stopped<SM> {
        let mut ticker = tokio::time::interval(self.cfg.tick_interval);
        // After a pause, missed ticks fire at once, one per turn, ahead of everything else:
        // the protocol's clock catches up within a few turns. Requests drained in those turns
        // trust no lease (see `tick_due`).
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        self.begin();
        // Whether the ticker was left unpolled last turn (a quiet group with nothing waiting
        // on a deadline): its missed ticks must not all fire at once when it resumes.
        let mut paused = false;
        loop {
            let ticking = self.ticking();
            if paused && ticking {
                ticker.reset();
            }
            paused = !ticking;
            let input = tokio::select! {
                biased;
                due = ticker.tick(), if ticking => Input::Tick(due),
                Some(ev) = self.applier_rx.recv() => Input::Applier(ev),
                Some(ev) = self.events_rx.recv() => Input::Event(ev),
                Some(inc) = self.inbox.recv() => Input::Peer(inc),
                req = self.requests.recv() => Input::Request(req),
            };
            self.start_turn();
            match input {
                Input::Tick(due) => self.tick_at(due),
                Input::Applier(ev) => self.on_applier(ev),
                Input::Event(ev) => self.on_event(ev),
                Input::Peer(inc) => self.on_incoming(inc),
                Input::Request(Some(r)) => self.on_request(r),
                Input::Request(None) => self.begin_stop(None),
            }
            self.drain();
            if self.end_turn() {
                break;
            }
        }
        self.finish().await
    }

    /// What a node does once before its first turn.
    pub(crate) fn begin(&mut self) {
        self.sync_membership();
        self.publish_metrics(Publish::Now);
    }

    /// Whether the node's clock must run: its group is not quiet, or something waits on a
    /// deadline. A quiet, idle node is not ticked (it costs nothing) until input wakes it.
    pub(crate) fn ticking(&self) -> bool {
        !self.node.is_quiescent() || !self.idle()
    }

    /// The start of a loop turn: the one clock read of the turn.
    pub(crate) fn start_turn(&mut self) {
        self.now = Instant::now();
        self.stamp = None;
    }

    /// A tick that was due at `due`.
    pub(crate) fn tick_at(&mut self, due: Instant) {
        self.tick_due = due;
        self.on_tick();
    }

    /// The end of a loop turn, once its input is handled: dispatches the protocol's output
    /// and publishes what changed. Returns whether the node has finished (it stops).
    pub(crate) fn end_turn(&mut self) -> bool {
        self.handle_ready();
        if let Some(invariant) = self.node.fatal() {
            // Whatever input it came from, a broken invariant stops the node.
            self.set_fatal(Fatal::Invariant(invariant));
        }
        self.check_transfer();
        self.send_remote_replies();
        // A quiet node has no tick to publish its metrics in full: it does so whenever
        // it has done something (rarely, or it would not be quiet).
        self.publish_metrics(if self.node.is_quiescent() {
            Publish::Now
        } else {
            Publish::Changes
        });
        self.finished()
    }

    /// Handles what is queued on the node's channels, registering `cx`'s waker with each
    /// channel left empty: the turn of a node driven by a [`GroupHost`](crate::GroupHost).
    /// Takes at most a bounded amount of input per channel; returns whether some was left
    /// (the caller gives the node another turn soon, after the other nodes').
    pub(crate) fn poll_inputs(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        use std::task::Poll;
        let mut more = false;
        let mut taken = 0;
        while let Poll::Ready(Some(ev)) = self.applier_rx.poll_recv(cx) {
            self.on_applier(ev);
            taken += 1;
            if taken >= DRAIN {
                more = true;
                break;
            }
        }
        taken = 0;
        while let Poll::Ready(Some(ev)) = self.events_rx.poll_recv(cx) {
            self.on_event(ev);
            taken += 1;
            if taken >= DRAIN {
                more = true;
                break;
            }
        }
        // Each channel is polled until it says `Pending`, which registers the waker: a
        // channel that gave something without being asked again would not wake the node
        // for its next item.
        let mut incoming = std::mem::take(&mut self.incoming_buf);
        taken = 0;
        while let Poll::Ready(n) = self.inbox.poll_recv_many(cx, &mut incoming, DRAIN) {
            if n == 0 {
                break;
            }
            for inc in incoming.drain(..) {
                self.on_incoming(inc);
            }
            taken += n;
            if taken >= DRAIN {
                more = true;
                break;
            }
        }
        self.incoming_buf = incoming;
        let mut requests = std::mem::take(&mut self.request_buf);
        taken = 0;
        while let Poll::Ready(n) = self.requests.poll_recv_many(cx, &mut requests, DRAIN) {
            if n == 0 {
                // Every handle is gone: the node stops as if shut down.
                self.begin_stop(None);
                break;
            }
            for r in requests.drain(..) {
                self.on_request(r);
            }
            taken += n;
            if taken >= DRAIN {
                more = true;
                break;
            }
        }
        self.request_buf = requests;
        more
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
            if let Err(e) = self.transport.send(peer, self.group, batch) {
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

    // ---------------------------------------------------------------- time

    pub(super) fn on_tick(&mut self) {
        self.node.tick();
        if let Some(addresses) = self.peers.tick(self.node.commit_index()) {
            self.transport.set_peers(addresses);
        }
        self.expire_waiting();
        self.maybe_quiesce();
        self.publish_metrics(Publish::Tick);
    }

    /// Counts a tick with no request on a leader, and asks an idle one to let its group go
    /// quiet (the protocol agrees only once every member holds the whole log).
    fn maybe_quiesce(&mut self) {
        let after = self.cfg.quiesce_after_ticks;
        if after == 0 || self.node.role() != Role::Leader || self.node.is_quiescent() {
            self.idle_ticks = 0;
            return;
        }
        self.idle_ticks = self.idle_ticks.saturating_add(1);
        if self.idle_ticks >= after && self.idle() {
            self.node.quiesce();
        }
    }

    /// Whether nothing waits in the runtime: no proposal, forward, read, membership change,
    /// transfer, write or outgoing snapshot, and no stop in progress.
    fn idle(&self) -> bool {
        self.proposals.is_empty()
            && self.forwards.is_empty()
            && self.reads.is_empty()
            && self.parked_reads.is_empty()
            && self.conf_waiters.is_empty()
            && self.transfer.is_empty()
            && self.pipeline.is_empty()
            && self.sending_snapshots.is_empty()
            && self.stopping.is_none()
    }

    /// A request arrived: the group is in use. A quiet node wakes (a follower tells its
    /// leader, and its clock runs again, so that a leader that died is replaced).
    pub(super) fn in_use(&mut self) {
        self.idle_ticks = 0;
        if self.node.is_quiescent() {
            self.node.wake();
        }
    }

    /// Answers every waiting request whose deadline passed.
    pub(super) fn expire_waiting(&mut self) {
        let now = self.now;
        for (_, p) in self.proposals.expire(now) {
            p.responder.fail(ProposeError::Timeout, &mut self.remote_replies);
        }
        for (_, (_, waiter)) in self.forwards.expire(now) {
            waiter.fail(ProposeError::Timeout);
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

    /// Answers everything still waiting: the node is stopping, for `reason`.
    pub(super) fn fail_waiting(&mut self, reason: UnknownOutcome) {
        for (_, p) in self.proposals.drain() {
            p.responder
                .fail(ProposeError::Unknown(reason.clone()), &mut self.remote_replies);
        }
        for (_, (_, waiter)) in self.forwards.drain() {
            waiter.fail(ProposeError::Unknown(reason.clone()));
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
}
