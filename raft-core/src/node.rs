//! [`RawNode`]: the one entry point a driver uses, and the [`Ready`] batches it hands out.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::config::Config;
use crate::error::{
    CampaignError, DriverError, Halted, Invariant, MembershipError, ProposeError, ReadError, RecoverError,
    StepError, TransferError,
};
use crate::message::{Message, MessageBody};
use crate::progress::ProgressState;
use crate::raft::Raft;
use crate::replication::SnapshotStatus;
use crate::storage::{LogStorage, StorageError};
use crate::types::{
    ConfChange, ConfState, Entry, EntryPayload, HardState, Index, NodeId, ReadCtx, ReadState, Role,
    SnapshotMeta, SoftState, Term,
};

/// Identifies one [`Persist`] batch; the driver returns it to
/// [`RawNode::on_persisted`] once the batch is durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersistToken(pub u64);

/// What the driver must make durable, in this order: the snapshot (install it, replacing
/// the whole log), then the entries (discarding any stored entries at or after the first
/// one's index), then the hard state. Batches must be made durable in the order they are
/// handed out, and `messages` sent only once this batch and all earlier ones are durable.
#[derive(Debug, Default)]
pub struct Persist {
    /// The token to report to [`RawNode::on_persisted`].
    pub token: PersistToken,
    /// A snapshot received from the leader, to install before anything else. Its data was
    /// received by the driver beside the snapshot message.
    pub snapshot: Option<SnapshotMeta>,
    /// Entries to append.
    pub entries: Vec<Entry>,
    /// The hard state to store. Present when the term or vote changed, and with every batch
    /// of entries or snapshot if the commit index moved. A change of the commit index alone
    /// waits for the next entries or the next tick, so that it costs no write or sync of its
    /// own per commit: after a restart the commit index is relearned from the leader and is
    /// never taken below the applied index.
    pub hard_state: Option<HardState>,
    /// Messages that must not leave before this batch is durable (acknowledgements, votes,
    /// vote requests of a new term).
    pub messages: Vec<Message>,
}

impl Persist {
    /// Whether the batch writes nothing (it only orders `messages` after earlier batches).
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.entries.is_empty() && self.hard_state.is_none()
    }
}

/// Everything the node produced since the last call to [`RawNode::ready`].
#[derive(Debug, Default)]
pub struct Ready {
    /// The role or known leader changed to this.
    pub soft_state: Option<SoftState>,
    /// Messages to send now, before or while persisting.
    pub messages: Vec<Message>,
    /// State to make durable (see [`Persist`]).
    pub persist: Option<Persist>,
    /// Committed, locally durable entries to apply, in order. Entries are never handed out
    /// twice while the node runs; after a restart, entries after the `applied` index passed
    /// to [`RawNode::new`] are handed out again.
    pub committed_entries: Vec<Entry>,
    /// Outcomes of read requests.
    pub read_states: Vec<ReadState>,
}

impl Ready {
    /// Whether the batch holds nothing at all.
    pub fn is_empty(&self) -> bool {
        self.soft_state.is_none()
            && self.messages.is_empty()
            && self.persist.is_none()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
    }
}

/// A leader's view of one peer, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// Highest index known to be replicated on the peer.
    pub matched: Index,
    /// Next index to send.
    pub next: Index,
    /// Flow-control state.
    pub state: ProgressState,
    /// Append messages in flight (replicate state).
    pub inflight: usize,
    /// Bytes of entries in those messages.
    pub inflight_bytes: u64,
}

/// A snapshot of the node's state for metrics and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Persistent state (term, vote, commit).
    pub hard_state: HardState,
    /// Role and leader.
    pub soft_state: SoftState,
    /// Index of the first entry in the log.
    pub first_index: Index,
    /// Index of the last entry in the log.
    pub last_index: Index,
    /// Highest index known durable locally.
    pub persisted: Index,
    /// Highest index handed out for applying.
    pub emitted: Index,
    /// Highest index the driver reported applied.
    pub applied: Index,
    /// Bytes of entries handed out for applying and not yet reported applied.
    pub applying_bytes: u64,
    /// The configuration in effect.
    pub conf_state: ConfState,
    /// Index of the entry that carried the configuration in effect.
    pub conf_index: Index,
    /// On a leader, every peer's replication state.
    pub progress: BTreeMap<NodeId, PeerStatus>,
    /// On a leader, the target of a leadership transfer in progress.
    pub lead_transferee: Option<NodeId>,
    /// The node is quiescent: its clock stands still (see [`RawNode::quiesce`]).
    pub quiescent: bool,
}

struct PendingPersist {
    token: u64,
    snapshot: Option<Index>,
    last_entry: Option<(Index, Term)>,
    hard_state: Option<HardState>,
}

/// A Raft node driven by its owner: the protocol's only public entry point.
///
/// See the [crate docs](crate) for the driving loop and the persistence contract.
pub struct RawNode<S: LogStorage> {
    raft: Raft<S>,
    prev_soft: SoftState,
    prev_hard: HardState,
    /// Set by every tick: the next ready writes a commit index that moved on its own.
    commit_flush_due: bool,
    /// Term and vote known durable: until they are, even a leader's messages wait.
    durable_term_vote: (Term, Option<NodeId>),
    next_token: u64,
    pending: VecDeque<PendingPersist>,
    /// The invariant whose violation stopped the node; every call then fails with it.
    fatal: Option<Invariant>,
    /// Scratch space for the match indexes before a step (kept to avoid an allocation).
    matched_before: Vec<(NodeId, Index)>,
}

impl<S: LogStorage> RawNode<S> {
    /// Starts (or restarts) a node over `storage`. `applied` is the index up to which the
    /// state machine has applied entries (0 for a new node); committed entries after it will
    /// be handed out again.
    pub fn new(config: Config, storage: S, applied: Index) -> Result<Self, RecoverError> {
        let raft = Raft::new(config, storage, applied)?;
        let hs = raft.hard_state();
        Ok(RawNode {
            prev_soft: raft.soft_state(),
            prev_hard: hs,
            commit_flush_due: false,
            durable_term_vote: (hs.term, hs.vote),
            raft,
            next_token: 1,
            pending: VecDeque::new(),
            fatal: None,
            matched_before: Vec::new(),
        })
    }

    /// Advances the logical clock by one tick. A quiescent node's clock stands still: the
    /// call returns at once (see [`RawNode::quiesce`]).
    pub fn tick(&mut self) {
        if self.raft.quiescent && self.fatal.is_none() {
            return;
        }
        // A violation surfaces as an error from the next fallible call (`has_ready` is true).
        let _ = self.guard(|raft| {
            raft.tick();
            Ok::<(), DriverError>(())
        });
        self.commit_flush_due = true;
    }

    /// Feeds a message received from a peer.
    ///
    /// A snapshot travels with its data, so a [`MessageBody::Snapshot`] is refused here with
    /// [`StepError::SnapshotWithoutData`]: give it to [`RawNode::step_snapshot`] once its data has
    /// arrived. Every message is checked against what a correct peer can send (terms and
    /// indexes within [`MAX_TERM`](crate::MAX_TERM) and [`MAX_INDEX`](crate::MAX_INDEX),
    /// leader-only messages from the leader of the term, ...); a refused message is an
    /// error value and has no effect.
    pub fn step(&mut self, message: Message) -> Result<(), StepError> {
        if let MessageBody::Snapshot(_) = message.body {
            return Err(StepError::SnapshotWithoutData { from: message.from });
        }
        self.guard(|raft| raft.step(message))
    }

    /// Feeds a snapshot message whose data the driver has received in full and holds: if the
    /// node accepts it, the next [`Persist`] carries its metadata and the driver installs that
    /// data. Any other message is refused.
    pub fn step_snapshot(&mut self, message: Message) -> Result<(), StepError> {
        if !matches!(message.body, MessageBody::Snapshot(_)) {
            return Err(StepError::Malformed {
                kind: message.kind(),
                from: message.from,
                reason: "not a snapshot",
            });
        }
        self.guard(|raft| raft.step(message))
    }

    /// Runs `f` on the protocol state unless the node has stopped, then checks the safety
    /// invariants that every input must keep: terms and the commit index never decrease,
    /// and a leader's knowledge of what a follower holds never shrinks (but for a follower
    /// that reported losing entries). A violation stops the node for good.
    fn guard<T, E: Halted>(&mut self, f: impl FnOnce(&mut Raft<S>) -> Result<T, E>) -> Result<T, E> {
        if let Some(invariant) = self.fatal {
            return Err(E::halted(invariant));
        }
        let term = self.raft.term;
        let commit = self.raft.log.committed;
        let leading = self.raft.role == Role::Leader;
        self.matched_before.clear();
        if leading {
            self.matched_before
                .extend(self.raft.progress.iter().map(|(&id, p)| (id, p.matched)));
        }
        let result = f(&mut self.raft);
        let raft = &self.raft;
        let violation = raft.violation.or(raft.log.violation).or_else(|| {
            if raft.term < term {
                return Some(Invariant::TermDecreased {
                    from: term,
                    to: raft.term,
                });
            }
            if raft.log.committed < commit {
                return Some(Invariant::CommitRegressed {
                    from: commit,
                    to: raft.log.committed,
                });
            }
            if !leading || raft.role != Role::Leader || raft.term != term {
                return None;
            }
            let lost = result.as_ref().err().and_then(Halted::lost_log_of);
            self.matched_before.iter().find_map(|&(peer, before)| {
                let now = raft.progress.get(&peer)?.matched;
                (now < before && lost != Some(peer)).then_some(Invariant::MatchDecreased {
                    peer,
                    from: before,
                    to: now,
                })
            })
        });
        if let Some(invariant) = violation {
            self.fatal = Some(invariant);
            return Err(E::halted(invariant));
        }
        result
    }

    /// The invariant whose violation stopped this node, if one did: every call that can fail
    /// then fails with it (the `Fatal` variant of its error).
    pub fn fatal(&self) -> Option<Invariant> {
        self.fatal
    }

    /// Proposes an application command (possibly empty; an empty command is exempt from the
    /// uncommitted limit). Returns the index of its entry, whose term is [`RawNode::term`]:
    /// the command is applied iff the entry handed out at that index later has that term.
    pub fn propose(&mut self, data: impl Into<Bytes>) -> Result<Index, ProposeError> {
        self.guard(|raft| {
            raft.wake_leader();
            raft.propose(EntryPayload::Normal(data.into()))
        })
    }

    /// Proposes a record of the driver's own ([`EntryPayload::Internal`]), under the same
    /// rules and limits as [`RawNode::propose`]. Returns its index.
    pub fn propose_internal(&mut self, data: impl Into<Bytes>) -> Result<Index, ProposeError> {
        self.guard(|raft| {
            raft.wake_leader();
            raft.propose(EntryPayload::Internal(data.into()))
        })
    }

    /// Proposes a membership change. Returns the index of its configuration entry.
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<Index, MembershipError> {
        self.guard(|raft| {
            raft.wake_leader();
            raft.propose_conf_change(change)
        })
    }

    /// Starts transferring leadership to `target`, a voter.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), TransferError> {
        self.guard(|raft| {
            raft.wake_leader();
            raft.transfer_leader(target)
        })
    }

    /// Requests a ReadIndex read with a unique context (see [`ReadCtx`]).
    pub fn read_index(&mut self, ctx: ReadCtx) -> Result<(), ReadError> {
        self.guard(|raft| {
            raft.wake(true);
            raft.read_index(ctx)
        })
    }

    /// Requests a lease read; falls back to ReadIndex when no valid lease is held.
    pub fn lease_read(&mut self, ctx: ReadCtx) -> Result<(), ReadError> {
        self.guard(|raft| {
            raft.wake(true);
            raft.lease_read(ctx)
        })
    }

    /// Starts an election now, without waiting for the election timeout (on a leader, does
    /// nothing). Refused on a node that is not a voter.
    pub fn campaign(&mut self) -> Result<(), CampaignError> {
        self.guard(|raft| {
            raft.wake(true);
            raft.campaign_now()
        })
    }

    /// Asks an idle leader to let its group go quiet: if every member holds the whole log
    /// durably, all of it committed, and no read, transfer or joint configuration is
    /// pending, the leader sends a last heartbeat round telling its followers to stop their
    /// clocks, and stops its own: [`RawNode::tick`] then does nothing, and no heartbeats go
    /// out, until a message or a request of its own wakes the node. Returns whether the
    /// node is quiescent now (always `false` on a node that is not the leader).
    ///
    /// Quiescence is what lets a driver host thousands of groups of which most are idle:
    /// it need not tick a quiescent group at all ([`RawNode::is_quiescent`]). A driver that
    /// quiesces leaders takes on one duty: a quiescent follower hears nothing from a leader
    /// that died, so the driver must [`RawNode::wake`] the followers of a leader whose node it
    /// suspects is down (from one liveness signal per peer node, say); they then elect a new
    /// leader as usual. A leader gives up its lease when it quiesces: after waking, lease
    /// reads wait for a new heartbeat round. Quiescence changes no durable state, so safety
    /// never depends on it. It works best with pre-vote and check-quorum: a follower that
    /// lost the leader's last heartbeat then merely wakes the group when it times out.
    pub fn quiesce(&mut self) -> bool {
        let mut quiescent = false;
        let _ = self.guard(|raft| {
            quiescent = raft.quiesce();
            Ok::<(), DriverError>(())
        });
        quiescent
    }

    /// Whether the node is quiescent: its clock stands still (see [`RawNode::quiesce`]).
    pub fn is_quiescent(&self) -> bool {
        self.raft.quiescent
    }

    /// Wakes a quiescent node (see [`RawNode::quiesce`]); does nothing on one that is not.
    /// A follower tells its leader, which resumes its heartbeats; a leader's heartbeats
    /// resume at its next heartbeat tick. A driver calls this on the followers of a leader that may
    /// have died: they campaign after an election timeout unless they hear from it.
    pub fn wake(&mut self) {
        let _ = self.guard(|raft| {
            raft.wake(false);
            Ok::<(), DriverError>(())
        });
    }

    /// Tells a leader that `peer` could not be reached.
    pub fn report_unreachable(&mut self, peer: NodeId) {
        let _ = self.guard(|raft| {
            raft.report_unreachable(peer);
            Ok::<(), DriverError>(())
        });
    }

    /// Tells a leader how sending a snapshot to `peer` ended.
    ///
    /// A driver must report every [`MessageBody::Snapshot`](crate::MessageBody::Snapshot) it
    /// was handed, once its transfer ends either way: until then the leader keeps `peer` in
    /// snapshot state and sends it nothing but heartbeats, so a transfer lost without a report
    /// leaves that follower behind for as long as this node leads.
    pub fn report_snapshot(&mut self, peer: NodeId, status: SnapshotStatus) {
        let _ = self.guard(|raft| {
            raft.report_snapshot(peer, status);
            Ok::<(), DriverError>(())
        });
    }

    /// Whether [`RawNode::ready`] would return anything.
    pub fn has_ready(&self) -> bool {
        let r = &self.raft;
        self.fatal.is_some()
            || r.soft_state() != self.prev_soft
            || (r.term, r.vote) != (self.prev_hard.term, self.prev_hard.vote)
            || (self.commit_flush_due && r.hard_state().commit != self.prev_hard.commit)
            || !r.msgs.is_empty()
            || !r.read_states.is_empty()
            || r.log.has_unpersisted()
            || r.log.has_next_committed(r.cfg.max_applying_bytes)
            || r.owes_read_round()
            || r.owes_follower_request()
            || (r.role == Role::Leader && self.leader_owes_appends())
    }

    fn leader_owes_appends(&self) -> bool {
        let r = &self.raft;
        let last = r.log.last_index();
        r.progress
            .iter()
            .any(|(&id, pr)| id != r.id && !pr.is_paused() && (pr.next <= last || pr.pending_send))
    }

    /// Takes everything the node produced: messages, state to persist, entries to apply,
    /// read outcomes. Fails only if storage fails ([`DriverError::Storage`]) or the node
    /// has stopped ([`DriverError::Fatal`]).
    pub fn ready(&mut self) -> Result<Ready, DriverError> {
        self.guard(|raft| {
            raft.flush_reads();
            raft.flush_follower_reads();
            raft.flush_appends().map_err(DriverError::Storage)
        })?;

        let mut ready = Ready::default();
        let soft = self.raft.soft_state();
        if soft != self.prev_soft {
            ready.soft_state = Some(soft);
            self.prev_soft = soft;
        }
        let (snapshot, entries) = self.raft.log.take_unpersisted();
        // A change of the commit index alone is not written at once: it rides along with the
        // next entries, or goes out at the next tick, instead of costing a write and a sync
        // of its own per commit. Safe because the commit index is relearned from the leader
        // after a restart and is never taken below the applied index.
        let hs = self.raft.hard_state();
        let must_write = (hs.term, hs.vote) != (self.prev_hard.term, self.prev_hard.vote)
            || snapshot.is_some()
            || !entries.is_empty()
            || self.commit_flush_due;
        self.commit_flush_due = false;
        let hard_state = (hs != self.prev_hard && must_write).then(|| {
            self.prev_hard = hs;
            hs
        });
        ready.committed_entries = self
            .raft
            .log
            .next_committed(self.raft.cfg.max_apply_bytes, self.raft.cfg.max_applying_bytes)?;
        ready.read_states = std::mem::take(&mut self.raft.read_states);

        let leader_free = self.raft.role == Role::Leader
            && self.durable_term_vote == (self.raft.term, self.raft.vote)
            && hard_state.is_none_or(|h| (h.term, h.vote) == self.durable_term_vote);
        let (now, after): (Vec<Message>, Vec<Message>) = std::mem::take(&mut self.raft.msgs)
            .into_iter()
            .partition(|m| leader_free || needs_no_durability(m));
        ready.messages = now;

        let nothing_to_write = snapshot.is_none() && entries.is_empty() && hard_state.is_none();
        if nothing_to_write && (after.is_empty() || self.pending.is_empty()) {
            // Everything earlier is durable already: the gated messages can go now.
            ready.messages.extend(after);
        } else {
            let token = self.next_token;
            self.next_token += 1;
            self.pending.push_back(PendingPersist {
                token,
                snapshot: snapshot.as_ref().map(|s| s.index),
                last_entry: entries.last().map(|e| (e.index, e.term)),
                hard_state,
            });
            ready.persist = Some(Persist {
                token: PersistToken(token),
                snapshot,
                entries,
                hard_state,
                messages: after,
            });
        }
        Ok(ready)
    }

    /// Reports that the batch `token` (and every earlier one) is durable. A token that was
    /// never handed out, or was reported already, is refused
    /// ([`DriverError::UnknownPersistToken`]).
    pub fn on_persisted(&mut self, token: PersistToken) -> Result<(), DriverError> {
        if let Some(invariant) = self.fatal {
            return Err(DriverError::Fatal(invariant));
        }
        if self.pending.front().is_none_or(|p| p.token > token.0) || token.0 >= self.next_token {
            return Err(DriverError::UnknownPersistToken { token: token.0 });
        }
        while self.pending.front().is_some_and(|p| p.token <= token.0) {
            let p = self.pending.pop_front().expect("checked");
            if let Some(index) = p.snapshot {
                self.raft.log.snapshot_persisted(index);
            }
            if let Some((index, term)) = p.last_entry {
                self.raft.log.entries_persisted(index, term);
            }
            if let Some(hs) = p.hard_state {
                self.durable_term_vote = (hs.term, hs.vote);
            }
        }
        self.guard(|raft| {
            raft.on_self_persisted();
            Ok(())
        })
    }

    /// Reports that the state machine applied every entry up to `index` (or installed a
    /// snapshot at `index`). An index beyond what was handed out is refused
    /// ([`DriverError::IndexOutOfRange`]). After a snapshot from the leader is persisted,
    /// no committed entries are handed out until the driver reports the snapshot's index
    /// here, once its state machine has restored it.
    pub fn on_applied(&mut self, index: Index) -> Result<(), DriverError> {
        let log = &mut self.raft.log;
        if index > log.emitted {
            return Err(DriverError::IndexOutOfRange {
                index,
                low: log.applied,
                high: log.emitted,
            });
        }
        log.applied_to(index);
        Ok(())
    }

    /// Metadata for a snapshot of the state machine taken at `index` (at most the applied
    /// index). After storing the snapshot, the driver may discard log entries up to `index`.
    /// Refused while a snapshot from the leader is being installed
    /// ([`DriverError::SnapshotPending`]), and for an index outside the log or beyond the
    /// applied index ([`DriverError::IndexOutOfRange`]).
    pub fn snapshot_meta_at(&mut self, index: Index) -> Result<SnapshotMeta, DriverError> {
        self.guard(|raft| raft.snapshot_meta_at(index))
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.raft.id
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.raft.term
    }

    /// The node's role.
    pub fn role(&self) -> Role {
        self.raft.role
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.leader
    }

    /// The commit index.
    pub fn commit_index(&self) -> Index {
        self.raft.log.committed
    }

    /// The index of the last log entry.
    pub fn last_index(&self) -> Index {
        self.raft.log.last_index()
    }

    /// The configuration in effect.
    pub fn conf_state(&self) -> &ConfState {
        &self.raft.conf
    }

    /// The index of the entry that carried the configuration in effect.
    pub fn conf_index(&self) -> Index {
        self.raft.conf_index
    }

    /// Entries `[low, high)` of the log (for inspection and tests).
    pub fn entries(&self, low: Index, high: Index) -> Result<Vec<Entry>, StorageError> {
        self.raft.log.entries(low, high, u64::MAX)
    }

    /// The term of the entry at `index`.
    pub fn term_at(&self, index: Index) -> Result<Term, StorageError> {
        self.raft.log.term(index)
    }

    /// A full status report.
    pub fn status(&self) -> Status {
        let r = &self.raft;
        Status {
            id: r.id,
            hard_state: r.hard_state(),
            soft_state: r.soft_state(),
            first_index: r.log.first_index(),
            last_index: r.log.last_index(),
            persisted: r.log.persisted,
            emitted: r.log.emitted,
            applying_bytes: r.log.applying_bytes(),
            applied: r.log.applied,
            conf_state: r.conf.clone(),
            conf_index: r.conf_index,
            progress: r
                .progress
                .iter()
                .map(|(&id, p)| {
                    (
                        id,
                        PeerStatus {
                            matched: p.matched,
                            next: p.next,
                            state: p.state,
                            inflight: p.inflights.len(),
                            inflight_bytes: p.inflights.bytes(),
                        },
                    )
                })
                .collect(),
            lead_transferee: r.lead_transferee,
            quiescent: r.quiescent,
        }
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.raft.log.store
    }

    /// The storage, for the driver to write to.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.raft.log.store
    }
}

/// Messages whose meaning does not depend on anything this node has yet to make durable.
fn needs_no_durability(m: &Message) -> bool {
    match &m.body {
        // Confirms a leader of the current term; promises nothing about the log.
        MessageBody::HeartbeatResponse(_) => true,
        // Pre-votes change no durable state.
        MessageBody::RequestVote(rv) => rv.pre_vote,
        MessageBody::VoteResponse(vr) => vr.pre_vote,
        MessageBody::ReadIndex(_) | MessageBody::ReadIndexResponse(_) => true,
        _ => false,
    }
}

impl<S: LogStorage> Raft<S> {
    /// The driver made more of this node's log durable: a leader counts itself now.
    pub(crate) fn on_self_persisted(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let persisted = self.log.persisted;
        if let Some(me) = self.progress.get_mut(&self.id) {
            me.matched = me.matched.max(persisted);
        }
        self.maybe_commit();
        self.release_reads_waiting_commit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;
    use crate::types::EntryPayload;

    fn leader() -> RawNode<MemStorage> {
        let storage = MemStorage::new_with_conf_state(ConfState::with_voters([1]));
        let mut node = RawNode::new(Config::new(1), storage, 0).unwrap();
        node.campaign().unwrap();
        drive(&mut node);
        node.propose(Bytes::from_static(b"a")).unwrap();
        drive(&mut node);
        assert_eq!(node.commit_index(), 2);
        node
    }

    fn drive(node: &mut RawNode<MemStorage>) {
        while node.has_ready() {
            let mut ready = node.ready().unwrap();
            if let Some(p) = ready.persist.take() {
                node.storage_mut().persist(&p).unwrap();
                node.on_persisted(p.token).unwrap();
            }
            if let Some(last) = ready.committed_entries.last() {
                node.on_applied(last.index).unwrap();
            }
        }
    }

    fn assert_stopped(node: &mut RawNode<MemStorage>, invariant: Invariant) {
        assert_eq!(node.fatal(), Some(invariant));
        assert!(node.has_ready(), "the driver must call ready() to learn of it");
        assert!(matches!(node.ready(), Err(DriverError::Fatal(i)) if i == invariant));
        assert!(matches!(node.propose(Bytes::new()), Err(ProposeError::Fatal(i)) if i == invariant));
        assert!(matches!(node.read_index(7), Err(ReadError::Fatal(_))));
        assert!(matches!(
            node.on_persisted(PersistToken(1)),
            Err(DriverError::Fatal(_))
        ));
        assert!(matches!(node.snapshot_meta_at(1), Err(DriverError::Fatal(_))));
        assert!(matches!(node.campaign(), Err(CampaignError::Fatal(_))));
        assert!(matches!(node.transfer_leader(2), Err(TransferError::Fatal(_))));
        assert!(
            matches!(node.propose_conf_change(ConfChange::new([crate::MemberChange::add_learner(2)])), Err(e) if e.is_fatal())
        );
    }

    #[test]
    fn committed_entries_wait_while_the_applying_window_is_full() {
        let storage = MemStorage::new_with_conf_state(ConfState::with_voters([1]));
        let mut config = Config::new(1);
        config.max_apply_bytes = 1; // one entry per batch
        config.max_applying_bytes = 100;
        let mut node = RawNode::new(config, storage, 0).unwrap();
        node.campaign().unwrap();
        drive(&mut node);
        for _ in 0..10 {
            node.propose(Bytes::from(vec![7u8; 40])).unwrap();
        }
        // Persist and commit everything, but report nothing applied.
        let mut handed_out = Vec::new();
        while node.has_ready() {
            let mut ready = node.ready().unwrap();
            if let Some(p) = ready.persist.take() {
                node.storage_mut().persist(&p).unwrap();
                node.on_persisted(p.token).unwrap();
            }
            handed_out.extend(ready.committed_entries);
        }
        assert_eq!(node.commit_index(), 11);
        let size = handed_out[0].size();
        let window = 100u64.div_ceil(size) as usize;
        assert_eq!(
            handed_out.len(),
            window,
            "entries of {size} bytes stop once 100 bytes are out"
        );
        assert!(node.status().applying_bytes >= 100);
        // Applying the first batch makes room for one more.
        node.on_applied(handed_out[0].index).unwrap();
        assert!(node.has_ready());
        let ready = node.ready().unwrap();
        assert_eq!(ready.committed_entries.len(), 1);
        assert_eq!(ready.committed_entries[0].index, handed_out[window - 1].index + 1);
        // Applying everything handed out lets the rest go.
        node.on_applied(ready.committed_entries[0].index).unwrap();
        let mut rest = 0;
        while node.has_ready() {
            let ready = node.ready().unwrap();
            if let Some(last) = ready.committed_entries.last() {
                rest += ready.committed_entries.len();
                node.on_applied(last.index).unwrap();
            }
        }
        assert_eq!(window + 1 + rest, 10, "indexes 2 to 11");
        assert_eq!(node.status().applying_bytes, 0);
    }

    #[test]
    fn an_entry_larger_than_the_applying_window_still_goes_out_alone() {
        let storage = MemStorage::new_with_conf_state(ConfState::with_voters([1]));
        let mut config = Config::new(1);
        config.max_applying_bytes = 1;
        let mut node = RawNode::new(config, storage, 0).unwrap();
        node.campaign().unwrap();
        drive(&mut node);
        node.propose(Bytes::from(vec![1u8; 1000])).unwrap();
        node.propose(Bytes::from(vec![2u8; 1000])).unwrap();
        let mut batches = Vec::new();
        for _ in 0..2 {
            while node.has_ready() {
                let mut ready = node.ready().unwrap();
                if let Some(p) = ready.persist.take() {
                    node.storage_mut().persist(&p).unwrap();
                    node.on_persisted(p.token).unwrap();
                }
                if !ready.committed_entries.is_empty() {
                    batches.push(ready.committed_entries.len());
                }
            }
            let emitted = node.status().emitted;
            node.on_applied(emitted).unwrap();
        }
        assert_eq!(batches, vec![1, 1], "one entry at a time, never none");
    }

    #[test]
    fn replacing_committed_entries_stops_the_node_and_changes_nothing() {
        let mut node = leader();
        let err = node
            .guard(|raft| {
                raft.log.append(&[Entry::new(9, 2, EntryPayload::Empty)]);
                Ok(())
            })
            .unwrap_err();
        let invariant = Invariant::TruncateCommitted { at: 2, commit: 2 };
        assert!(matches!(err, DriverError::Fatal(i) if i == invariant), "{err}");
        assert_eq!(node.term_at(2).unwrap(), 1, "the entry was not replaced");
        assert_stopped(&mut node, invariant);
    }

    #[test]
    fn a_decreasing_term_stops_the_node() {
        let mut node = leader();
        let err = node
            .guard(|raft| {
                raft.become_follower(0, None);
                Ok(())
            })
            .unwrap_err();
        assert!(
            matches!(
                err,
                DriverError::Fatal(Invariant::TermDecreased { from: 1, to: 0 })
            ),
            "{err}"
        );
        assert_eq!(node.term(), 1, "the term was kept");
        assert_stopped(&mut node, Invariant::TermDecreased { from: 1, to: 0 });
    }

    #[test]
    fn a_commit_index_past_the_log_or_going_back_stops_the_node() {
        let mut node = leader();
        let err = node
            .guard(|raft| {
                raft.log.commit_to(50);
                Ok(())
            })
            .unwrap_err();
        assert!(
            matches!(
                err,
                DriverError::Fatal(Invariant::CommitBeyondLog { commit: 50, last: 2 })
            ),
            "{err}"
        );
        assert_eq!(node.commit_index(), 2);

        let mut node = leader();
        let err = node
            .guard(|raft| {
                raft.log.committed = 1;
                Ok(())
            })
            .unwrap_err();
        assert!(
            matches!(
                err,
                DriverError::Fatal(Invariant::CommitRegressed { from: 2, to: 1 })
            ),
            "{err}"
        );
    }

    #[test]
    fn a_shrinking_match_index_stops_the_leader() {
        let mut node = leader();
        let err = node
            .guard(|raft| {
                raft.progress.get_mut(&1).unwrap().matched = 1;
                Ok(())
            })
            .unwrap_err();
        assert!(
            matches!(
                err,
                DriverError::Fatal(Invariant::MatchDecreased {
                    peer: 1,
                    from: 2,
                    to: 1
                })
            ),
            "{err}"
        );
    }
}
