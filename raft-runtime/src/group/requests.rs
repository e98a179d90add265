//! Requests from handles: proposals (local and forwarded), reads, membership changes
//! and the leader transfer.

use super::*;

impl<SM: StateMachine> Group<SM> {
    pub(super) fn on_request(&mut self, req: Request<SM>) {
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
            Request::Metrics { reply } => {
                self.publish_metrics(true);
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

    pub(super) fn forward(&mut self, leader: NodeId, command: Bytes, reply: ProposalReply<SM>) {
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

    pub(super) fn on_forward(&mut self, from: NodeId, id: u64, command: Bytes) {
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

    pub(super) fn on_forward_reply(&mut self, from: NodeId, id: u64, result: Result<Bytes, ForwardError>) {
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

    pub(super) fn on_read_state(&mut self, rs: ReadState) {
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
                let _ = reply.send(Err(admin_error(e)));
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
                let _ = reply.send(Err(admin_error(e)));
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
