//! [`Raft`]: the cloneable handle through which an application talks to its node.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use raft_core::{ConfChange, MemberChange, NodeId};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::applier::Query;
use crate::batch;
use crate::codec;
use crate::config::Config;
use crate::error::{AdminError, BusyReason, Fatal, ProposeError, ReadError, SessionError, UnknownOutcome};
use crate::group::{ConfRequest, Request};
use crate::member::MemberInfo;
use crate::metrics::Metrics;
use crate::sessions::record;
use crate::state_machine::StateMachine;

/// A client session's id: the log index of the entry that opened it, the same on every node.
pub type SessionId = u64;

/// A command's sequence number within its session, chosen by the client: 1 for the first,
/// increasing.
pub type Seq = u64;

/// A client session: commands proposed through it are applied at most once each, however
/// often they are retried, and are retried by [`Session::propose`] until they get a
/// definite answer. Cheap to clone; clones share the session and its sequence numbers, so
/// concurrent proposals through clones are fine.
///
/// The session is kept by the cluster while it is used: left unused for longer than the
/// configured timeout ([`SessionConfig::timeout`](crate::SessionConfig)), it expires, and its
/// commands are refused ([`SessionError::Expired`]).
pub struct Session<SM: StateMachine> {
    raft: Raft<SM>,
    id: SessionId,
    state: Arc<std::sync::Mutex<SessionState>>,
}

struct SessionState {
    /// The next sequence number to hand out.
    next: Seq,
    /// Commands proposed and not yet answered (or given up on).
    outstanding: BTreeSet<Seq>,
}

impl SessionState {
    /// Every command up to this one was answered or given up on: the cluster may drop
    /// their responses.
    fn acked(&self) -> Seq {
        self.outstanding
            .first()
            .map_or(self.next.saturating_sub(1), |&s| s.saturating_sub(1))
    }
}

impl<SM: StateMachine> Clone for Session<SM> {
    fn clone(&self) -> Self {
        Session {
            raft: self.raft.clone(),
            id: self.id,
            state: self.state.clone(),
        }
    }
}

impl<SM: StateMachine> std::fmt::Debug for Session<SM> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<SM: StateMachine> Session<SM> {
    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The last sequence number handed out.
    pub fn last_seq(&self) -> Seq {
        self.state.lock().expect("not poisoned").next.saturating_sub(1)
    }

    /// Proposes `command` as the session's next command and returns the state machine's
    /// response, retrying across leader changes, unknown outcomes and busy nodes until a
    /// definite answer or until `timeout` passes. However many attempts it takes, the
    /// command is applied at most once. See [`Raft::propose_in_session`] for the errors.
    pub async fn propose(
        &self,
        command: SM::Command,
        timeout: Duration,
    ) -> Result<SM::Response, ProposeError> {
        let (seq, acked) = {
            let mut st = self.state.lock().expect("not poisoned");
            let seq = st.next;
            st.next = seq.saturating_add(1);
            st.outstanding.insert(seq);
            (seq, st.acked())
        };
        let outcome = self
            .raft
            .propose_in_session(self.id, seq, acked, command, timeout)
            .await;
        // Answered or given up on: either way its response is no longer needed.
        self.state.lock().expect("not poisoned").outstanding.remove(&seq);
        outcome
    }
}

/// A handle to a running node. Cheap to clone; every clone talks to the same node.
///
/// The node runs until [`Raft::shutdown`] is called or its last handle is dropped
/// (then it stops as if shut down, and what it leaves is dropped with it).
pub struct Raft<SM: StateMachine> {
    inner: Arc<Inner<SM>>,
}

struct Inner<SM: StateMachine> {
    id: NodeId,
    config: Arc<Config>,
    tx: mpsc::Sender<Request<SM>>,
    metrics: watch::Receiver<Metrics>,
    /// What the node leaves, once it has stopped.
    stopped: tokio::sync::Mutex<Option<oneshot::Receiver<Stopped<SM>>>>,
    session_retries: AtomicU64,
}

/// What a node leaves when it stops: the state machine, handed back, and the fatal error
/// that stopped it, if one did.
#[derive(Debug)]
#[non_exhaustive]
pub struct Stopped<SM> {
    /// The state machine, with everything the node applied. `None` only if the applier
    /// task did not survive (it panicked).
    pub state_machine: Option<SM>,
    /// Why the node stopped on its own (a failed disk, a failed state machine, a broken
    /// safety invariant), if it did; `None` after an ordinary shutdown.
    pub fatal: Option<Fatal>,
}

impl<SM: StateMachine> Clone for Raft<SM> {
    fn clone(&self) -> Self {
        Raft {
            inner: self.inner.clone(),
        }
    }
}

impl<SM: StateMachine> std::fmt::Debug for Raft<SM> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Raft")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

/// The node did not reach the awaited state in time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("timed out waiting for the node's metrics to satisfy the condition")]
pub struct WaitTimeout;

impl<SM: StateMachine> Raft<SM> {
    pub(crate) fn new(
        id: NodeId,
        config: Arc<Config>,
        tx: mpsc::Sender<Request<SM>>,
        metrics: watch::Receiver<Metrics>,
        stopped: oneshot::Receiver<Stopped<SM>>,
    ) -> Self {
        Raft {
            inner: Arc::new(Inner {
                id,
                config,
                tx,
                metrics,
                stopped: tokio::sync::Mutex::new(Some(stopped)),
                session_retries: AtomicU64::new(0),
            }),
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    fn enqueue(&self, req: Request<SM>) -> Result<(), (Request<SM>, bool)> {
        self.inner.tx.try_send(req).map_err(|e| match e {
            mpsc::error::TrySendError::Full(r) => (r, true),
            mpsc::error::TrySendError::Closed(r) => (r, false),
        })
    }

    /// Replicates `command` and returns the state machine's response to it, resolved exactly
    /// once. On error, [`ProposeError::is_definitely_not_applied`] tells whether retrying is
    /// safe.
    pub async fn propose(&self, command: SM::Command) -> Result<SM::Response, ProposeError> {
        let command = codec::encode(&command).map_err(ProposeError::Encode)?;
        self.submit(|reply| Request::Propose { command, reply }).await
    }

    /// Replicates every command of `commands` and returns the state machine's response to
    /// each, in the same order: one answer per command, as [`Raft::propose`] would give
    /// it. The commands enter the node as one request and are appended together, so a
    /// batch costs the node and the caller much less than as many single proposals; each
    /// is still its own entry, applied in the batch's order (other proposals may come
    /// between them). The call returns once every command has its answer.
    ///
    /// Every command is admitted on its own: past the node's limit of pending proposals
    /// ([`Config::max_pending_proposals`](crate::Config)) the rest of a batch gets
    /// [`ProposeError::Busy`], and a command that cannot be encoded gets
    /// [`ProposeError::Encode`] while the others go ahead. An empty batch gets no answers.
    pub async fn propose_batch(
        &self,
        commands: impl IntoIterator<Item = SM::Command>,
    ) -> Vec<Result<SM::Response, ProposeError>> {
        let mut encoded = Vec::new();
        let mut failed = Vec::new();
        for (at, command) in commands.into_iter().enumerate() {
            match codec::encode(&command) {
                Ok(bytes) => encoded.push(bytes),
                Err(e) => failed.push((at, Err(ProposeError::Encode(e)))),
            }
        }
        let len = encoded.len() + failed.len();
        let (slots, answers) = batch::new(len, failed);
        if !slots.is_empty()
            && let Err((request, full)) = self.enqueue(Request::ProposeBatch {
                commands: encoded.into_iter().zip(slots).collect(),
            })
        {
            let refusal = if full {
                ProposeError::Busy(BusyReason::Mailbox)
            } else {
                ProposeError::ShuttingDown
            };
            if let Request::ProposeBatch { commands } = request {
                for (_, slot) in commands {
                    slot.answer(Err(refusal.clone()));
                }
            }
        }
        answers.await.unwrap_or_else(|_| {
            (0..len)
                .map(|_| Err(ProposeError::Unknown(UnknownOutcome::ShutDown)))
                .collect()
        })
    }

    /// Proposes a runtime record once and returns its encoded response.
    async fn propose_record(&self, record: bytes::BytesMut) -> Result<Bytes, ProposeError> {
        self.submit(|reply| Request::ProposeRecord { record, reply })
            .await
    }

    /// Queues the proposal `request` makes of its reply channel, and waits for the outcome.
    async fn submit<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, ProposeError>>) -> Request<SM>,
    ) -> Result<T, ProposeError> {
        let (reply, rx) = oneshot::channel();
        if let Err((_, full)) = self.enqueue(request(reply)) {
            return Err(if full {
                ProposeError::Busy(BusyReason::Mailbox)
            } else {
                ProposeError::ShuttingDown
            });
        }
        rx.await
            .unwrap_or_else(|_| Err(ProposeError::Unknown(UnknownOutcome::ShutDown)))
    }

    /// Proposes a runtime record until it gets a definite answer or `deadline` passes:
    /// retried after every failure that may clear up (no leader yet, busy, an unknown
    /// outcome, a timeout). Only for records that are safe to apply more than once or that
    /// the session table applies at most once. Every retry is counted in
    /// [`Raft::session_retries`].
    async fn propose_record_until(
        &self,
        record: impl Fn() -> bytes::BytesMut,
        deadline: Instant,
        session: Option<SessionId>,
    ) -> Result<Bytes, ProposeError> {
        let pause = self.inner.config.tick_interval * 2;
        // A node that knows no leader for longer than two election timeouts is likely cut
        // off from the cluster: the caller does better to go elsewhere.
        let leaderless_limit =
            self.inner.config.tick_interval * self.inner.config.protocol.max_election_tick * 2;
        let mut leaderless_since: Option<Instant> = None;
        // Whether an attempt so far may have been applied.
        let mut uncertain = false;
        loop {
            // The node answers every attempt within its propose timeout; a deadline before
            // that needs a timer of its own.
            let attempt = self.propose_record(record());
            let attempt = if deadline < Instant::now() + self.inner.config.propose_timeout {
                match tokio::time::timeout_at(deadline, attempt).await {
                    Ok(outcome) => outcome,
                    // The attempt is still in flight: it may yet be applied.
                    Err(_) => return Err(ProposeError::Timeout),
                }
            } else {
                attempt.await
            };
            let e = match attempt {
                Ok(bytes) => return Ok(bytes),
                Err(e) => e,
            };
            match e {
                ProposeError::Session(SessionError::Expired { session }) if uncertain => {
                    return Err(ProposeError::Unknown(UnknownOutcome::SessionExpired { session }));
                }
                ProposeError::ShuttingDown if uncertain => {
                    return Err(ProposeError::Unknown(UnknownOutcome::ShutDown));
                }
                // A leader elsewhere, and this node does not forward: the caller must send the
                // command there (with the same session and sequence: that is safe).
                ProposeError::NotLeader { leader: Some(l) }
                    if l != self.inner.id && !self.inner.config.forward_proposals =>
                {
                    return Err(e);
                }
                ProposeError::NotLeader { leader: None }
                    if leaderless_since.get_or_insert_with(Instant::now).elapsed() >= leaderless_limit =>
                {
                    return Err(e);
                }
                e @ (ProposeError::Session(_) | ProposeError::ShuttingDown | ProposeError::Encode(_)) => {
                    return Err(e);
                }
                e @ (ProposeError::NotLeader { .. }
                | ProposeError::Busy(_)
                | ProposeError::Dropped
                | ProposeError::Timeout
                | ProposeError::Unknown(_)) => {
                    uncertain |= !e.is_definitely_not_applied();
                    if !matches!(e, ProposeError::NotLeader { leader: None }) {
                        leaderless_since = None;
                    }
                    if Instant::now() + pause >= deadline {
                        return Err(e);
                    }
                    self.inner.session_retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(session, error = %e, "retrying a session record");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// Opens a client session ([`Config::sessions`](crate::Config) must be on): a session
    /// lets commands be retried safely across leader changes and unknown outcomes, each
    /// applied at most once ([`Session::propose`]). The opening is retried until it is
    /// answered or `timeout` passes. A retried opening may leave an unused session behind,
    /// which expires with the session timeout.
    ///
    /// Fails with [`SessionError::TooManySessions`] when the cluster holds as many
    /// sessions as it may, [`SessionError::NotEnabled`] without sessions, and
    /// [`ProposeError::NotLeader`] on a follower that does not forward proposals.
    pub async fn open_session(&self, timeout: Duration) -> Result<Session<SM>, ProposeError> {
        let deadline = Instant::now() + timeout;
        let bytes = self.propose_record_until(record::open, deadline, None).await?;
        let id = <[u8; 8]>::try_from(&bytes[..])
            .map(u64::from_le_bytes)
            .map_err(|_| ProposeError::Unknown(UnknownOutcome::UndecodableResponse))?;
        Ok(self.session(id, 0))
    }

    /// A handle to session `id`, opened earlier (perhaps through another node or by
    /// another process), whose commands up to `last_seq` were sent already: the next
    /// command is `last_seq + 1`.
    pub fn session(&self, id: SessionId, last_seq: Seq) -> Session<SM> {
        Session {
            raft: self.clone(),
            id,
            state: Arc::new(std::sync::Mutex::new(SessionState {
                next: last_seq.saturating_add(1),
                outstanding: BTreeSet::new(),
            })),
        }
    }

    /// Proposes `command` as command `seq` of session `id`, whose client has its answers
    /// up to `acked`, retrying until a definite answer or until `timeout` passes. The
    /// session table applies each `(id, seq)` at most once: a retry of an applied command
    /// (this call's own, or any earlier call's with the same `id` and `seq`) gets the
    /// response of its first application. [`Session::propose`] picks `seq` and `acked`
    /// itself; this is for clients that keep them (across processes, over HTTP).
    ///
    /// Errors: [`ProposeError::Session`] when the table refuses the command (not applied);
    /// [`UnknownOutcome::SessionExpired`] when an attempt's outcome was unknown and the
    /// session has expired since; [`ProposeError::NotLeader`] when this node cannot reach
    /// a leader (it does not forward and another node leads, or it has known no leader for
    /// two election timeouts: it is likely cut off), for the caller to send the command to
    /// another node, with the same `seq`; and, once `timeout` passes, the last attempt's
    /// error (an unknown outcome or a timeout). After any of these but a session refusal,
    /// sending the command again with the same `id` and `seq` is safe while the session
    /// lives: it is applied at most once.
    pub async fn propose_in_session(
        &self,
        id: SessionId,
        seq: Seq,
        acked: Seq,
        command: SM::Command,
        timeout: Duration,
    ) -> Result<SM::Response, ProposeError> {
        let deadline = Instant::now() + timeout;
        let command = codec::encode(&command).map_err(ProposeError::Encode)?;
        let bytes = self
            .propose_record_until(|| record::command(id, seq, acked, &command), deadline, Some(id))
            .await?;
        codec::decode::<SM::Response>(&bytes).map_err(|e| {
            tracing::warn!(session = id, seq, error = %e, "undecodable response in a session");
            ProposeError::Unknown(UnknownOutcome::UndecodableResponse)
        })
    }

    /// How many times this node's handles retried a session's command or opening (after
    /// an unknown outcome, a timeout, no leader or a busy node).
    pub fn session_retries(&self) -> u64 {
        self.inner.session_retries.load(Ordering::Relaxed)
    }

    /// A linearizable read (ReadIndex): once the leader has confirmed its leadership and the
    /// local state machine has applied everything committed before the read began, runs `f`
    /// against the state machine and returns its result. During an election (no leader
    /// known, or leadership moving before the read is confirmed) it waits for the next
    /// leader; the whole read takes at most [`Config::read_timeout`](crate::Config), after
    /// which it fails with [`ReadError::Timeout`]. `f` runs at most once.
    pub async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&SM) -> R + Send + 'static,
    ) -> Result<R, ReadError> {
        self.read_inner(false, f).await
    }

    /// Like [`Raft::read`], but served from the leader's lease when it holds one (no
    /// round trip to a quorum). Falls back to ReadIndex otherwise. Needs check-quorum, and
    /// trusts that nodes' clocks tick at rates within the configured drift margin.
    pub async fn lease_read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&SM) -> R + Send + 'static,
    ) -> Result<R, ReadError> {
        self.read_inner(true, f).await
    }

    async fn read_inner<R: Send + 'static>(
        &self,
        lease: bool,
        f: impl FnOnce(&SM) -> R + Send + 'static,
    ) -> Result<R, ReadError> {
        // One deadline for the whole read. The node expires reads it holds; this also
        // bounds the wait for one queued behind a slow apply.
        let deadline = Instant::now() + self.inner.config.read_timeout;
        // The query runs at most once: it is handed back when an attempt fails before
        // running it, for the next attempt.
        let mut f = Some(f);
        loop {
            let (tx, rx) = oneshot::channel();
            let (give_back, take_back) = oneshot::channel();
            let f_now = f.take().expect("the query is back before each attempt");
            let query: Query<SM> = Box::new(move |sm: Result<&SM, ReadError>| match sm {
                Ok(sm) => {
                    let _ = tx.send(Ok(f_now(sm)));
                }
                Err(e) => {
                    let _ = give_back.send(f_now);
                    let _ = tx.send(Err(e));
                }
            });
            if let Err((_, full)) = self.enqueue(Request::Read { lease, query }) {
                return Err(if full {
                    ReadError::Busy(BusyReason::Mailbox)
                } else {
                    ReadError::ShuttingDown
                });
            }
            let answer = match tokio::time::timeout_at(deadline, rx).await {
                Ok(answer) => answer.unwrap_or(Err(ReadError::ShuttingDown)),
                Err(_) => return Err(ReadError::Timeout),
            };
            match answer {
                // No leader yet (an election), or leadership moved before the read was
                // confirmed: reads have no effect, so wait for the next leader while the
                // read's time lasts.
                Err(ReadError::NotLeader { leader: None } | ReadError::LeadershipLost) => {
                    let pause = self.inner.config.tick_interval * 2;
                    if Instant::now() + pause >= deadline {
                        return Err(ReadError::Timeout);
                    }
                    match take_back.await {
                        Ok(back) => f = Some(back),
                        Err(_) => return Err(ReadError::ShuttingDown),
                    }
                    tokio::time::sleep(pause).await;
                }
                Ok(r) => return Ok(r),
                Err(
                    e @ (ReadError::NotLeader { leader: Some(_) }
                    | ReadError::Busy(_)
                    | ReadError::Timeout
                    | ReadError::ShuttingDown),
                ) => return Err(e),
            }
        }
    }

    /// The deadline of an administrative call made now: one `admin_timeout` for the
    /// whole call, however many attempts and steps it takes.
    fn admin_deadline(&self) -> Instant {
        Instant::now() + self.inner.config.admin_timeout
    }

    async fn membership(
        &self,
        request: impl Fn() -> ConfRequest,
        wait_final: bool,
        deadline: Instant,
    ) -> Result<(), AdminError> {
        loop {
            let (reply, rx) = oneshot::channel();
            let req = Request::Membership {
                request: request(),
                wait_final,
                deadline,
                reply,
            };
            if let Err((_, full)) = self.enqueue(req) {
                return Err(if full {
                    AdminError::Busy(BusyReason::Mailbox)
                } else {
                    AdminError::ShuttingDown
                });
            }
            match rx.await.unwrap_or(Err(AdminError::ShuttingDown)) {
                // Retry what clears up by itself: another change finishing, a new leader
                // committing its first entry, a learner catching up.
                Err(AdminError::Pending | AdminError::NotCaughtUp { .. })
                    if Instant::now() + self.inner.config.tick_interval * 2 < deadline =>
                {
                    tokio::time::sleep(self.inner.config.tick_interval * 2).await;
                }
                Err(AdminError::Pending) => return Err(AdminError::Timeout),
                Ok(()) => return Ok(()),
                Err(
                    e @ (AdminError::NotLeader { .. }
                    | AdminError::Invalid(_)
                    | AdminError::InvalidTransfer(_)
                    | AdminError::NotCaughtUp { .. }
                    | AdminError::TransferAborted { .. }
                    | AdminError::LeadershipLost
                    | AdminError::Timeout
                    | AdminError::Busy(_)
                    | AdminError::ShuttingDown),
                ) => return Err(e),
            }
        }
    }

    /// Adds `node` as a learner described by `info` (its transport address and any
    /// application attributes, kept in the replicated configuration, so every member and every
    /// restart knows them). Resolves once the change is applied here. Must be called on the
    /// leader.
    pub async fn add_learner(&self, node: NodeId, info: impl Into<MemberInfo>) -> Result<(), AdminError> {
        self.add_learner_until(node, info.into(), self.admin_deadline())
            .await
    }

    async fn add_learner_until(
        &self,
        node: NodeId,
        info: MemberInfo,
        deadline: Instant,
    ) -> Result<(), AdminError> {
        let meta = info.encode();
        self.membership(
            || {
                ConfRequest::Change(ConfChange::new([
                    MemberChange::add_learner(node).with_meta(meta.clone())
                ]))
            },
            false,
            deadline,
        )
        .await
    }

    /// Adds `node` as a voter: as a learner first, then, once it has caught up, promoted.
    /// Resolves once the final configuration is applied here. Must be called on the leader.
    pub async fn add_voter(&self, node: NodeId, info: impl Into<MemberInfo>) -> Result<(), AdminError> {
        // Both steps share one deadline.
        let deadline = self.admin_deadline();
        let members = self.metrics().borrow().members.clone();
        match members.get(&node) {
            Some(m) if m.voter => return Ok(()),
            Some(_) => {}
            None => self.add_learner_until(node, info.into(), deadline).await?,
        }
        self.membership(
            || ConfRequest::Change(ConfChange::new([MemberChange::add_voter(node)])),
            true,
            deadline,
        )
        .await
    }

    /// Makes exactly `voters` the voters, through a joint configuration when more than one
    /// voter changes: listed learners are promoted, voters not listed are removed. Resolves
    /// once the final configuration is applied here. Must be called on the leader.
    pub async fn change_membership(&self, voters: BTreeSet<NodeId>) -> Result<(), AdminError> {
        self.membership(
            || ConfRequest::SetVoters(voters.clone()),
            true,
            self.admin_deadline(),
        )
        .await
    }

    /// Removes `node` (voter or learner). Its id can never be used again. Resolves once the
    /// change is applied here. Must be called on the leader.
    pub async fn remove_node(&self, node: NodeId) -> Result<(), AdminError> {
        self.membership(
            || ConfRequest::Change(ConfChange::new([MemberChange::remove(node)])),
            true,
            self.admin_deadline(),
        )
        .await
    }

    /// Hands leadership to the voter `to`; resolves once `to` leads. Must be called on the
    /// leader. Proposals are refused (busy) while the transfer is in progress.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<(), AdminError> {
        let (reply, rx) = oneshot::channel();
        let deadline = self.admin_deadline();
        if let Err((_, full)) = self.enqueue(Request::Transfer { to, deadline, reply }) {
            return Err(if full {
                AdminError::Busy(BusyReason::Mailbox)
            } else {
                AdminError::ShuttingDown
            });
        }
        rx.await.unwrap_or(Err(AdminError::ShuttingDown))
    }

    /// Live metrics: role, term, leader, commit and applied indexes, membership, per-peer
    /// replication on the leader, counters.
    pub fn metrics(&self) -> watch::Receiver<Metrics> {
        self.inner.metrics.clone()
    }

    /// Waits until the metrics satisfy `condition`, up to `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        condition: impl Fn(&Metrics) -> bool,
    ) -> Result<Metrics, WaitTimeout> {
        let mut rx = self.metrics();
        let wait = async {
            loop {
                {
                    let m = rx.borrow_and_update();
                    if condition(&m) {
                        return Ok(m.clone());
                    }
                }
                if rx.changed().await.is_err() {
                    let m = rx.borrow();
                    return if condition(&m) {
                        Ok(m.clone())
                    } else {
                        Err(WaitTimeout)
                    };
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or(Err(WaitTimeout))
    }

    /// The metrics as of now: unlike [`Raft::metrics`], whose commit and applied
    /// indexes are refreshed once per tick, this asks the node, so the figures are those of
    /// the moment it answers. Fails only if the node is stopped or its mailbox is full.
    pub async fn current_metrics(&self) -> Result<Metrics, ReadError> {
        let (reply, rx) = oneshot::channel();
        if let Err((_, full)) = self.enqueue(Request::Metrics { reply }) {
            return Err(if full {
                ReadError::Busy(BusyReason::Mailbox)
            } else {
                ReadError::ShuttingDown
            });
        }
        rx.await.map_err(|_| ReadError::ShuttingDown)
    }

    /// Stops the node: it stops accepting work, gives proposals in flight a short grace to
    /// finish, flushes the log store, stops applying and closes the transport. Returns once
    /// the node has stopped (at once if it already had): by then no task of the node runs,
    /// and the node no longer references its log store or transport, so both can be
    /// reopened at once.
    ///
    /// The first call to return gets what the node left ([`Stopped`]: the state machine
    /// and the fatal error, if any); every other call gets `None`.
    pub async fn shutdown(&self) -> Option<Stopped<SM>> {
        let (reply, rx) = oneshot::channel();
        if self.inner.tx.send(Request::Shutdown { reply }).await.is_ok() {
            let _ = rx.await;
        }
        let stopped = self.inner.stopped.lock().await.take()?;
        match stopped.await {
            Ok(stopped) => Some(stopped),
            Err(_) => {
                tracing::error!("the node's task failed (it panicked)");
                None
            }
        }
    }
}
