//! Log replication: proposals, append messages with flow control, acknowledgements,
//! the commit rule, heartbeats, and snapshots for followers that fell behind compaction.

use crate::error::{ProposeError, StepError};
use crate::message::{Append, AppendResponse, Heartbeat, HeartbeatResponse, MessageBody};
use crate::progress::ProgressState;
use crate::quorum::joint_value;
use crate::raft::Raft;
use crate::storage::{LogStorage, StorageError, total_size};
use crate::types::{Entry, EntryPayload, Index, NodeId, Role, SnapshotMeta};

/// The outcome of sending a snapshot, reported by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotStatus {
    /// The follower received the whole snapshot.
    Finished,
    /// The transfer failed; the leader will probe the follower again and, if it still needs
    /// one, send a new snapshot.
    Failed,
}

impl<S: LogStorage> Raft<S> {
    /// Appends an application command (`Normal`) or a driver's record (`Internal`).
    /// Returns its index. Refused on a non-leader and during a leadership transfer.
    pub(crate) fn propose(&mut self, payload: EntryPayload) -> Result<Index, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if let Some(target) = self.lead_transferee {
            return Err(ProposeError::TransferInProgress { target });
        }
        let empty = match &payload {
            EntryPayload::Normal(data) | EntryPayload::Internal(data) => data.is_empty(),
            EntryPayload::Empty | EntryPayload::Membership(_) => true,
        };
        let size = payload.entry_size();
        let limit = self.cfg.max_uncommitted_bytes;
        // Empty commands are always accepted, and so is one proposal when nothing is
        // uncommitted, however large, so that progress is always possible.
        if !empty && self.uncommitted_size > 0 && self.uncommitted_size.saturating_add(size) > limit {
            return Err(ProposeError::UncommittedLimit {
                uncommitted: self.uncommitted_size,
                size,
                limit,
            });
        }
        Ok(self.append_leader_entries(vec![payload]))
    }

    /// Appends entries of the current term to the leader's log; returns the last index.
    pub(crate) fn append_leader_entries(&mut self, payloads: Vec<EntryPayload>) -> Index {
        let mut index = self.log.last_index();
        let term = self.term;
        let entries: Vec<Entry> = payloads
            .into_iter()
            .map(|p| {
                index += 1;
                Entry::new(term, index, p)
            })
            .collect();
        for e in &entries {
            if let EntryPayload::Normal(_) | EntryPayload::Internal(_) = e.payload {
                let size = e.size();
                self.uncommitted.push_back((e.index, size));
                self.uncommitted_size += size;
            }
        }
        if entries.iter().any(Entry::is_membership) {
            self.log.append(&entries);
            self.note_appended(&entries);
        } else {
            // Without a configuration among them, the entries change no membership (a
            // leader's log only grows): they move into the log instead of being copied.
            self.log.append_owned(entries);
        }
        index
    }

    /// Sends every append this leader owes, within each follower's flow-control limits.
    pub(crate) fn flush_appends(&mut self) -> Result<(), StorageError> {
        if self.role != Role::Leader {
            return Ok(());
        }
        for id in self.peers() {
            self.maybe_send_append(id)?;
        }
        Ok(())
    }

    fn maybe_send_append(&mut self, to: NodeId) -> Result<(), StorageError> {
        loop {
            let last = self.log.last_index();
            let Some(pr) = self.progress.get(&to) else {
                return Ok(());
            };
            if pr.is_paused() || (pr.next > last && !pr.pending_send) {
                return Ok(());
            }
            let next = pr.next;
            let prev_index = next - 1;
            let prev_term = match self.log.term(prev_index) {
                Ok(t) => t,
                Err(StorageError::Compacted { .. }) => return self.send_snapshot(to),
                Err(StorageError::Unavailable { .. }) => return Ok(()),
                Err(e) => return Err(e),
            };
            let entries = if next <= last {
                match self.log.entries(next, last + 1, self.cfg.max_append_bytes) {
                    Ok(es) => es,
                    Err(StorageError::Compacted { .. }) => return self.send_snapshot(to),
                    Err(StorageError::Unavailable { .. }) => return Ok(()),
                    Err(e) => return Err(e),
                }
            } else {
                Vec::new()
            };
            let sent_last = prev_index + entries.len() as u64;
            let bytes = total_size(&entries);
            let empty = entries.is_empty();
            let commit = self.log.committed;
            self.send(
                to,
                MessageBody::Append(Append {
                    prev_index,
                    prev_term,
                    entries,
                    commit,
                }),
            );
            let pr = self.progress.get_mut(&to).expect("checked above");
            pr.sent(sent_last, bytes);
            if pr.state != ProgressState::Replicate || empty {
                return Ok(());
            }
        }
    }

    fn send_snapshot(&mut self, to: NodeId) -> Result<(), StorageError> {
        let meta = match self.log.store.snapshot_meta() {
            Ok(meta) => meta,
            // Being built: try again at the next flush.
            Err(StorageError::SnapshotTemporarilyUnavailable) => return Ok(()),
            Err(e) => return Err(e),
        };
        if meta.index == 0 {
            // Nothing was ever compacted; there is no snapshot to send.
            return Ok(());
        }
        let index = meta.index;
        self.send(to, MessageBody::Snapshot(Box::new(meta)));
        if let Some(pr) = self.progress.get_mut(&to) {
            pr.become_snapshot(index);
            pr.pending_send = false;
        }
        Ok(())
    }

    pub(crate) fn handle_append_response(
        &mut self,
        from: NodeId,
        r: AppendResponse,
    ) -> Result<(), StepError> {
        let last = self.log.last_index();
        let heartbeat_round = self.heartbeat_round;
        let Some(pr) = self.progress.get_mut(&from) else {
            return Err(StepError::UnknownPeer { id: from });
        };
        pr.recent_active = true;
        match r {
            AppendResponse::Rejected {
                rejected,
                hint_index,
                hint_term,
                round,
            } => {
                let malformed = |reason| StepError::Malformed {
                    kind: "AppendResponse",
                    from,
                    reason,
                };
                if rejected > last {
                    return Err(malformed("rejects an index beyond the leader's log"));
                }
                if round > heartbeat_round {
                    return Err(malformed("names a heartbeat round never sent"));
                }
                if hint_index < pr.matched && rejected >= pr.matched && round > pr.matched_round {
                    // Written after the follower heard a heartbeat sent after its
                    // acknowledgement arrived, the rejection shows it lacks entries it
                    // acknowledged in this term: it lost its log (or is a wiped node
                    // reusing the id). An older rejection delivered late says nothing of
                    // the sort, and `matched` stays.
                    return self.handle_lost_log(from, hint_index);
                }
                // Fast back-off: skip every entry of a term the follower cannot have.
                let probe = if hint_term > 0 {
                    self.log.find_conflict_by_term(hint_index, hint_term).0
                } else {
                    hint_index
                };
                let pr = self.progress.get_mut(&from).expect("checked above");
                if pr.maybe_decr_to(rejected, probe) {
                    if pr.state == ProgressState::Replicate {
                        pr.become_probe();
                    }
                    pr.pending_send = true;
                }
            }
            AppendResponse::Accepted { index } => {
                if index > last {
                    return Err(StepError::Malformed {
                        kind: "AppendResponse",
                        from,
                        reason: "acknowledges an index beyond the leader's log",
                    });
                }
                if !pr.maybe_update(index) {
                    return Ok(());
                }
                pr.matched_round = heartbeat_round;
                match pr.state {
                    ProgressState::Probe => pr.become_replicate(),
                    ProgressState::Snapshot { pending } if pr.matched >= pending => {
                        // The follower caught up (through the snapshot or otherwise).
                        pr.become_probe();
                        pr.become_replicate();
                    }
                    _ => {}
                }
                let caught_up = pr.matched == last;
                self.maybe_commit();
                if !self.conf.contains(from) {
                    self.retire_removed(false);
                }
                if caught_up && self.lead_transferee == Some(from) {
                    self.send(from, MessageBody::TimeoutNow);
                }
            }
        }
        Ok(())
    }

    pub(crate) fn handle_heartbeat_response(
        &mut self,
        from: NodeId,
        r: HeartbeatResponse,
    ) -> Result<(), StepError> {
        let last = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else {
            return Err(StepError::UnknownPeer { id: from });
        };
        pr.recent_active = true;
        pr.probe_sent = false;
        if r.round > self.heartbeat_round {
            return Err(StepError::Malformed {
                kind: "HeartbeatResponse",
                from,
                reason: "acknowledges a heartbeat round never sent",
            });
        }
        pr.acked_round = pr.acked_round.max(r.round);
        if pr.state == ProgressState::Replicate && pr.inflights.full() {
            // An append in flight may have been lost; let one more through so that a
            // rejection can tell us.
            pr.inflights.free_first();
        }
        if pr.matched < last {
            pr.pending_send = true;
        }
        self.check_confirmed_reads();
        Ok(())
    }

    /// A peer lost entries it had acknowledged. A removed peer is simply no longer
    /// replicated to; a member is repaired from what it still holds, and the loss reported.
    fn handle_lost_log(&mut self, from: NodeId, holds: Index) -> Result<(), StepError> {
        if !self.conf.contains(from) {
            self.progress.remove(&from);
            return Ok(());
        }
        let round = self.heartbeat_round;
        let pr = self.progress.get_mut(&from).expect("caller checked");
        let acknowledged = pr.matched;
        pr.matched = holds;
        pr.matched_round = round;
        pr.become_probe();
        pr.pending_send = true;
        Err(StepError::PeerLostLog {
            peer: from,
            acknowledged,
            holds,
        })
    }

    /// Commits the highest index a quorum holds, if it is of this leader's term (Raft
    /// paper, Figure 8: older entries commit only indirectly). Returns whether it advanced.
    pub(crate) fn maybe_commit(&mut self) -> bool {
        if self.role != Role::Leader {
            return false;
        }
        let progress = &self.progress;
        let quorum = joint_value(&self.conf.voters, &self.conf.voters_outgoing, |id| {
            progress.get(&id).map(|p| p.matched)
        });
        if quorum == u64::MAX || quorum <= self.log.committed {
            return false;
        }
        if !self.log.match_term(quorum, self.term) {
            return false;
        }
        self.log.commit_to(quorum);
        self.on_commit_advanced();
        true
    }

    fn on_commit_advanced(&mut self) {
        let committed = self.log.committed;
        while let Some(&(index, size)) = self.uncommitted.front() {
            if index > committed {
                break;
            }
            self.uncommitted.pop_front();
            self.uncommitted_size -= size;
        }
        // Followers learn the new commit index with the next append, sent right away.
        self.mark_all_pending_send();
        self.on_membership_committed();
        if self.role == Role::Leader {
            self.release_reads_waiting_commit();
        }
    }

    fn mark_all_pending_send(&mut self) {
        let me = self.id;
        for (&id, pr) in self.progress.iter_mut() {
            if id != me {
                pr.pending_send = true;
            }
        }
    }

    /// Starts a heartbeat round: every follower is asked to confirm this leader.
    pub(crate) fn broadcast_heartbeat(&mut self) {
        self.broadcast_heartbeat_round(false);
    }

    /// Starts a heartbeat round; `quiesce` asks the followers to stop their clocks.
    pub(crate) fn broadcast_heartbeat_round(&mut self, quiesce: bool) {
        self.heartbeat_round += 1;
        let round = self.heartbeat_round;
        self.note_round_sent(round);
        self.attach_unsent_reads(round);
        let committed = self.log.committed;
        let targets: Vec<(NodeId, Index)> = self
            .progress
            .iter()
            .filter(|&(&id, _)| id != self.id)
            .map(|(&id, pr)| (id, pr.matched.min(committed)))
            .collect();
        for (id, commit) in targets {
            self.send(
                id,
                MessageBody::Heartbeat(Heartbeat {
                    commit,
                    round,
                    quiesce,
                }),
            );
        }
    }

    /// Sends `peers` a heartbeat of the current round carrying the commit index.
    pub(crate) fn send_commit_heartbeats(&mut self, peers: &[NodeId]) {
        let committed = self.log.committed;
        let round = self.heartbeat_round;
        for &id in peers {
            if let Some(pr) = self.progress.get(&id) {
                let commit = pr.matched.min(committed);
                self.send(
                    id,
                    MessageBody::Heartbeat(Heartbeat {
                        commit,
                        round,
                        quiesce: false,
                    }),
                );
            }
        }
    }

    /// A follower handles an append from the leader of its term.
    pub(crate) fn handle_append(&mut self, from: NodeId, a: Append) -> Result<(), StepError> {
        if a.prev_index < self.log.committed {
            // Everything up to the commit index is known to match already.
            let index = self.log.committed;
            self.send(
                from,
                MessageBody::AppendResponse(AppendResponse::Accepted { index }),
            );
            return Ok(());
        }
        match self
            .log
            .maybe_append(a.prev_index, a.prev_term, a.commit, &a.entries)
        {
            Ok(Some((last_new, written))) => {
                if let Some(start) = written {
                    self.retract_acks_from(a.entries[start].index);
                    self.note_appended(&a.entries[start..]);
                }
                self.send(
                    from,
                    MessageBody::AppendResponse(AppendResponse::Accepted { index: last_new }),
                );
                Ok(())
            }
            Ok(None) => {
                let hint = a.prev_index.min(self.log.last_index());
                let (hint_index, hint_term) = self.log.find_conflict_by_term(hint, a.prev_term);
                self.send(
                    from,
                    MessageBody::AppendResponse(AppendResponse::Rejected {
                        rejected: a.prev_index,
                        hint_index,
                        hint_term,
                        round: self.leader_round,
                    }),
                );
                Ok(())
            }
            Err(_) => Err(StepError::Malformed {
                kind: "Append",
                from,
                reason: "would overwrite a committed entry",
            }),
        }
    }

    /// A follower handles a snapshot from the leader of its term.
    pub(crate) fn handle_snapshot(&mut self, from: NodeId, meta: SnapshotMeta) {
        let committed = self.log.committed;
        if meta.index <= committed {
            // Not newer than what we know is committed: ignore it.
            self.send(
                from,
                MessageBody::AppendResponse(AppendResponse::Accepted { index: committed }),
            );
            return;
        }
        let index = meta.index;
        if self.log.match_term(meta.index, meta.term) {
            // We hold the snapshot's last entry already: fast-forward the commit index only.
            self.log.commit_to(index);
        } else {
            // The log is replaced: queued acknowledgements of entries above the snapshot
            // vouch for entries this node no longer holds, durable or not (the ones up to
            // it stay true once the snapshot is durable, which they wait for).
            let durable = self.log.persisted;
            self.log.restore(meta.clone());
            self.retract_acks_from(durable.min(meta.index).saturating_add(1));
            self.restore_membership(&meta);
        }
        self.send(
            from,
            MessageBody::AppendResponse(AppendResponse::Accepted { index }),
        );
    }

    /// Entries from `from` on were replaced: acknowledgements of them still waiting to
    /// leave would vouch for entries this node no longer has.
    fn retract_acks_from(&mut self, from: Index) {
        self.msgs.retain(|m| {
            !matches!(m.body, MessageBody::AppendResponse(AppendResponse::Accepted { index }) if index >= from)
        });
    }

    pub(crate) fn report_snapshot(&mut self, peer: NodeId, status: SnapshotStatus) {
        if self.role != Role::Leader {
            return;
        }
        let Some(pr) = self.progress.get_mut(&peer) else {
            return;
        };
        if let ProgressState::Snapshot { .. } = pr.state {
            match status {
                SnapshotStatus::Finished => pr.become_probe(),
                SnapshotStatus::Failed => pr.snapshot_failed(),
            }
            // Wait for the follower's answer (or the next heartbeat response) before sending.
            pr.probe_sent = true;
        }
    }
}
