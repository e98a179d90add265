//! Requests from handles: proposals (local and forwarded), reads, membership changes
//! and the leader transfer.

use super::*;

/// The leader's encoded response to a forwarded command, decoded for its caller.
fn forwarded_response<SM: StateMachine>(leader: NodeId, bytes: &[u8]) -> Result<SM::Response, ProposeError> {
    codec::decode::<SM::Response>(bytes).map_err(|e| {
        tracing::warn!(leader, error = %e, "undecodable response to a forwarded command");
        ProposeError::Unknown(UnknownOutcome::UndecodableResponse)
    })
}

impl<SM: StateMachine> Group<SM> {
    pub(super) fn on_request(&mut self, req: Request<SM>) {
        if !matches!(req, Request::Metrics { .. } | Request::Shutdown { .. }) {
            self.in_use();
        }
        match req {
            Request::Propose { command, reply } => {
                self.propose(command, Responder::Local(LocalReply::One(reply)))
            }
            Request::ProposeBatch { commands } => {
                for (command, slot) in commands {
                    self.propose(command, Responder::Local(LocalReply::InBatch(slot)));
                }
            }
            Request::ProposeRecord { record, reply } => {
                self.propose_any(Proposal::Record(record), Responder::Raw(reply))
            }
            Request::Read { lease, query } => self.read(lease, query),
            Request::Membership {
                request,
                wait_final,
                deadline,
                reply,
            } => self.membership(request, wait_final, deadline, reply),
            Request::Transfer { to, deadline, reply } => self.start_transfer(to, deadline, reply),
            Request::Shutdown { reply } => self.begin_stop(Some(reply)),
            Request::Metrics { reply } => {
                self.publish_metrics(Publish::Now);
                let _ = reply.send(self.metrics.clone());
            }
        }
    }

    pub(super) fn busy(&self) -> Option<BusyReason> {
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

    pub(super) fn propose(&mut self, command: Bytes, responder: Responder<SM>) {
        self.propose_any(Proposal::Command(command), responder)
    }

    pub(super) fn propose_any(&mut self, proposal: Proposal, responder: Responder<SM>) {
        if self.stopping.is_some() || self.fatal.is_some() {
            return responder.fail(ProposeError::ShuttingDown, &mut self.remote_replies);
        }
        if let Some(reason) = self.busy() {
            return responder.fail(ProposeError::Busy(reason), &mut self.remote_replies);
        }
        if self.node.role() != Role::Leader {
            let leader = self.node.leader();
            return match (responder, leader, proposal) {
                (Responder::Local(reply), Some(leader), Proposal::Command(command))
                    if self.cfg.forward_proposals =>
                {
                    self.forward(leader, ForwardWaiter::Command(reply), |id| WireMessage::Forward {
                        id,
                        command,
                    })
                }
                (Responder::Raw(reply), Some(leader), Proposal::Record(record))
                    if self.cfg.forward_proposals =>
                {
                    let record = record.freeze();
                    self.forward(leader, ForwardWaiter::Record(reply), |id| {
                        WireMessage::ForwardRecord { id, record }
                    })
                }
                (responder, _, _) => {
                    responder.fail(ProposeError::NotLeader { leader }, &mut self.remote_replies)
                }
            };
        }
        let appended = match proposal {
            Proposal::Command(command) => self.node.propose(command),
            Proposal::Record(mut record) => {
                // Time in the session table is always a leader's, stamped as it appends.
                let now = *self.stamp.get_or_insert_with(|| (self.clock)());
                if let Err(e) = record::stamp(&mut record, now) {
                    return responder.fail(
                        ProposeError::Session(SessionError::Malformed(e)),
                        &mut self.remote_replies,
                    );
                }
                self.node.propose_internal(record.freeze())
            }
        };
        match appended {
            Ok(index) => {
                let term = self.node.term();
                self.metrics.proposals += 1;
                let deadline = self.now + self.cfg.propose_timeout;
                // The protocol never hands out an index twice in a term. Proposals of an
                // earlier term at this index or after lost their entries from this node's
                // log, but another node may still hold them and, elected, commit them: their
                // outcome is unknown until then, and this node will not learn it.
                for (_, old) in self.proposals.push(index, deadline, Pending { term, responder }) {
                    old.responder.fail(
                        ProposeError::Unknown(UnknownOutcome::Displaced),
                        &mut self.remote_replies,
                    );
                }
            }
            // A refused command was not appended: definitely not applied.
            Err(e) => {
                if let raft_core::ProposeError::Fatal(invariant) = &e {
                    self.set_fatal(Fatal::Invariant(*invariant));
                }
                responder.fail(refused_proposal(e), &mut self.remote_replies)
            }
        }
    }

    /// Forwards a proposal to `leader`: `message` builds what is sent from the request id.
    fn forward(
        &mut self,
        leader: NodeId,
        waiter: ForwardWaiter<SM>,
        message: impl FnOnce(u64) -> WireMessage,
    ) {
        let id = self.next_forward;
        self.next_forward += 1;
        match self.transport.send(leader, self.group, vec![message(id)]) {
            Ok(()) => {
                self.forwards
                    .insert(id, self.now + self.cfg.propose_timeout, (leader, waiter));
            }
            Err(SendError::Full(_)) => waiter.fail(ProposeError::Busy(BusyReason::Forward)),
            Err(SendError::UnknownPeer(_)) => waiter.fail(ProposeError::NotLeader { leader: Some(leader) }),
            Err(SendError::Closed) => waiter.fail(ProposeError::ShuttingDown),
        }
    }

    pub(super) fn on_forward(&mut self, from: NodeId, id: u64, proposal: Proposal) {
        self.in_use();
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
        self.propose_any(proposal, Responder::Remote { peer: from, id });
    }

    pub(super) fn on_forward_reply(&mut self, from: NodeId, id: u64, result: Result<Bytes, ForwardError>) {
        // Only the node the proposal went to can answer it.
        if self.forwards.get(&id).is_none_or(|&(leader, _)| leader != from) {
            self.refused(from, "an answer to a proposal that was not forwarded to it");
            return;
        }
        let Some((_, waiter)) = self.forwards.remove(&id) else {
            return;
        };
        match (waiter, result) {
            (ForwardWaiter::Command(reply), Ok(bytes)) => reply.send(forwarded_response::<SM>(from, &bytes)),
            // The caller decodes a record's response.
            (ForwardWaiter::Record(reply), Ok(bytes)) => {
                let _ = reply.send(Ok(bytes));
            }
            (waiter, Err(e)) => waiter.fail(ProposeError::from_forward(e)),
        }
    }

    pub(super) fn read(&mut self, lease: bool, query: Query<SM>) {
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
        // A lease is counted in ticks. A node that owes ticks (its process was paused, or its
        // loop fell behind, and the missed ticks are still being handled) has not yet counted
        // the time that passed, and could take a lease that ran out during the pause for a
        // valid one, while another leader was elected: it confirms the read with a heartbeat
        // round instead.
        let lease = lease
            && self
                .tick_due
                .checked_add(self.cfg.tick_interval)
                .is_none_or(|next_due| Instant::now() < next_due);
        loop {
            let ctx = self.next_read_ctx;
            self.next_read_ctx = ctx.wrapping_add(1);
            let result = if lease {
                self.node.lease_read(ctx)
            } else {
                self.node.read_index(ctx)
            };
            return match result {
                Ok(()) => {
                    // Contexts only grow: nothing is displaced (should the counter ever
                    // wrap, the reads displaced are answered as timed out).
                    for (_, old) in self.reads.push(ctx, self.now + self.cfg.read_timeout, query) {
                        old(Err(ReadError::Timeout));
                    }
                }
                Err(raft_core::ReadError::NotLeader { leader }) => {
                    query(Err(ReadError::NotLeader { leader }))
                }
                Err(raft_core::ReadError::TooManyPending { .. }) => {
                    query(Err(ReadError::Busy(BusyReason::Reads)))
                }
                // The context matched one still pending in the protocol (a read this node
                // stopped waiting for): take the next.
                Err(raft_core::ReadError::DuplicateCtx { .. }) => continue,
                Err(raft_core::ReadError::Fatal(invariant)) => {
                    self.set_fatal(Fatal::Invariant(invariant));
                    query(Err(ReadError::ShuttingDown))
                }
            };
        }
    }

    pub(super) fn on_read_state(&mut self, rs: ReadState) {
        let Some((deadline, query)) = self.reads.remove(rs.ctx) else {
            return;
        };
        match rs.result {
            Ok(index) if index <= self.emitted => {
                let _ = self.applier_tx.send(ApplyMsg::Query(query));
            }
            Ok(index) => {
                self.next_parked += 1;
                self.parked_reads
                    .insert((index, self.next_parked), deadline, query);
            }
            Err(ReadFailure::LeadershipLost) => query(Err(ReadError::LeadershipLost)),
        }
    }

    /// Sends the queries of reads whose index has been handed to the applier.
    pub(super) fn release_parked_reads(&mut self) {
        for (_, query) in self.parked_reads.take_through((self.emitted, u64::MAX)) {
            let _ = self.applier_tx.send(ApplyMsg::Query(query));
        }
    }

    pub(super) fn membership(
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
                if let raft_core::MembershipError::Fatal(invariant) = &e {
                    self.set_fatal(Fatal::Invariant(*invariant));
                }
                let _ = reply.send(Err(refused_change(e)));
            }
        }
    }

    pub(super) fn start_transfer(&mut self, to: NodeId, deadline: Instant, reply: AdminReply) {
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
                if let raft_core::TransferError::Fatal(invariant) = &e {
                    self.set_fatal(Fatal::Invariant(*invariant));
                }
                let _ = reply.send(Err(refused_transfer(e, self.id)));
            }
        }
    }

    pub(super) fn check_transfer(&mut self) {
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
}

/// What a proposal appends.
pub(super) enum Proposal {
    /// An application command, encoded.
    Command(Bytes),
    /// A record of the runtime's own, to be stamped by the leader.
    Record(BytesMut),
}

/// A proposal the protocol refused: it appended nothing, so the command is definitely not
/// applied, and the caller may retry.
pub(super) fn refused_proposal(e: raft_core::ProposeError) -> ProposeError {
    match e {
        raft_core::ProposeError::NotLeader { leader } => ProposeError::NotLeader { leader },
        raft_core::ProposeError::UncommittedLimit { .. } => ProposeError::Busy(BusyReason::Uncommitted),
        raft_core::ProposeError::TransferInProgress { .. } => ProposeError::Busy(BusyReason::Transfer),
        // The node stopped; the group stops with it.
        raft_core::ProposeError::Fatal(_) => ProposeError::ShuttingDown,
    }
}

/// A membership change the protocol refused: nothing was appended.
pub(super) fn refused_change(e: raft_core::MembershipError) -> AdminError {
    match e {
        raft_core::MembershipError::NotLeader { leader } => AdminError::NotLeader { leader },
        raft_core::MembershipError::TransferInProgress { .. } => AdminError::Busy(BusyReason::Transfer),
        raft_core::MembershipError::Pending { .. } | raft_core::MembershipError::LeaderNotReady => {
            AdminError::Pending
        }
        raft_core::MembershipError::LearnerNotCaughtUp { node, .. } => AdminError::NotCaughtUp { node },
        raft_core::MembershipError::Invalid(c) => AdminError::Invalid(c),
        raft_core::MembershipError::Fatal(_) => AdminError::ShuttingDown,
    }
}

/// A leadership transfer the protocol refused to start.
/// `me` is this node.
pub(super) fn refused_transfer(e: raft_core::TransferError, me: NodeId) -> AdminError {
    match e {
        raft_core::TransferError::NotLeader { leader } => AdminError::NotLeader { leader },
        raft_core::TransferError::ToSelf => {
            AdminError::InvalidTransfer(InvalidTransfer::AlreadyLeader { target: me })
        }
        raft_core::TransferError::NotVoter { target } => {
            AdminError::InvalidTransfer(InvalidTransfer::NotVoter { target })
        }
        raft_core::TransferError::Fatal(_) => AdminError::ShuttingDown,
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use raft_core::{ConfChangeError, Config as CoreConfig, Invariant, MemStorage, RawNode};

    use super::*;

    /// A cluster of one voter, node 1, with `learners`; node 1 leads and has committed the
    /// first entry of its term.
    fn leader(config: CoreConfig, learners: &[NodeId]) -> RawNode<MemStorage> {
        let mut cs = ConfState::with_voters([1]);
        cs.learners.extend(learners);
        let mut node = RawNode::new(config, MemStorage::new_with_conf_state(cs), 0).unwrap();
        node.campaign().unwrap();
        drive(&mut node);
        assert_eq!(node.role(), Role::Leader);
        node
    }

    fn follower() -> RawNode<MemStorage> {
        let cs = ConfState::with_voters([1, 2]);
        RawNode::new(CoreConfig::new(2), MemStorage::new_with_conf_state(cs), 0).unwrap()
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

    const BROKEN: Invariant = Invariant::TermDecreased { from: 2, to: 1 };

    #[test]
    fn a_refused_proposal_is_never_reported_as_possibly_applied() {
        let refusals = [
            raft_core::ProposeError::NotLeader { leader: Some(2) },
            raft_core::ProposeError::TransferInProgress { target: 2 },
            raft_core::ProposeError::UncommittedLimit {
                uncommitted: 10,
                size: 5,
                limit: 12,
            },
            raft_core::ProposeError::Fatal(BROKEN),
        ];
        for e in refusals {
            let mapped = refused_proposal(e.clone());
            assert!(
                mapped.is_definitely_not_applied() && !matches!(mapped, ProposeError::Unknown(_)),
                "{e} became {mapped}, which says it may have been applied"
            );
        }
    }

    #[test]
    fn refused_proposals_keep_their_reason() {
        let e = follower().propose(Bytes::from_static(b"x")).unwrap_err();
        assert_eq!(refused_proposal(e), ProposeError::NotLeader { leader: None });

        // Nothing is made durable, so nothing commits: the second proposal passes the limit.
        let mut config = CoreConfig::new(1);
        config.max_uncommitted_bytes = 64;
        let mut node = leader(config, &[]);
        node.propose(vec![1u8; 32]).unwrap();
        let e = node.propose(vec![2u8; 64]).unwrap_err();
        assert!(
            matches!(e, raft_core::ProposeError::UncommittedLimit { .. }),
            "{e}"
        );
        assert_eq!(refused_proposal(e), ProposeError::Busy(BusyReason::Uncommitted));

        assert_eq!(
            refused_proposal(raft_core::ProposeError::TransferInProgress { target: 3 }),
            ProposeError::Busy(BusyReason::Transfer)
        );
        assert_eq!(
            refused_proposal(raft_core::ProposeError::Fatal(BROKEN)),
            ProposeError::ShuttingDown
        );
    }

    #[test]
    fn a_change_while_another_is_pending_is_pending() {
        let mut node = leader(CoreConfig::new(1), &[]);
        // Not made durable: the first change stays uncommitted.
        node.propose_conf_change(ConfChange::new([MemberChange::add_learner(5)]))
            .unwrap();
        let e = node
            .propose_conf_change(ConfChange::new([MemberChange::add_learner(6)]))
            .unwrap_err();
        assert!(matches!(e, raft_core::MembershipError::Pending { .. }), "{e}");
        assert_eq!(refused_change(e), AdminError::Pending);
    }

    #[test]
    fn refused_changes_keep_their_reason() {
        let e = follower()
            .propose_conf_change(ConfChange::new([MemberChange::add_learner(5)]))
            .unwrap_err();
        assert_eq!(refused_change(e), AdminError::NotLeader { leader: None });

        // Learner 4 joins and never answers: it cannot have caught up.
        let mut node = leader(CoreConfig::new(1), &[]);
        node.propose_conf_change(ConfChange::new([MemberChange::add_learner(4)]))
            .unwrap();
        drive(&mut node);
        let e = node
            .propose_conf_change(ConfChange::new([MemberChange::add_voter(4)]))
            .unwrap_err();
        assert_eq!(refused_change(e), AdminError::NotCaughtUp { node: 4 });
        let e = node
            .propose_conf_change(ConfChange::new([MemberChange::remove(9)]))
            .unwrap_err();
        assert_eq!(
            refused_change(e),
            AdminError::Invalid(ConfChangeError::NotMember(9))
        );

        assert_eq!(
            refused_change(raft_core::MembershipError::LeaderNotReady),
            AdminError::Pending
        );
        assert_eq!(
            refused_change(raft_core::MembershipError::TransferInProgress { target: 2 }),
            AdminError::Busy(BusyReason::Transfer)
        );
        assert_eq!(
            refused_change(raft_core::MembershipError::Fatal(BROKEN)),
            AdminError::ShuttingDown
        );
    }

    #[test]
    fn a_transfer_to_a_non_voter_or_to_the_leader_is_invalid() {
        let mut node = leader(CoreConfig::new(1), &[4]);
        for target in [4, 9] {
            let e = node.transfer_leader(target).unwrap_err();
            assert_eq!(
                refused_transfer(e, 1),
                AdminError::InvalidTransfer(InvalidTransfer::NotVoter { target })
            );
        }
        let e = node.transfer_leader(1).unwrap_err();
        assert_eq!(
            refused_transfer(e, 1),
            AdminError::InvalidTransfer(InvalidTransfer::AlreadyLeader { target: 1 })
        );
        let e = follower().transfer_leader(1).unwrap_err();
        assert_eq!(refused_transfer(e, 2), AdminError::NotLeader { leader: None });
        assert_eq!(
            refused_transfer(raft_core::TransferError::Fatal(BROKEN), 1),
            AdminError::ShuttingDown
        );
    }
}
