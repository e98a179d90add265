//! Metrics publishing and stopping.

use super::*;

impl<SM: StateMachine> Group<SM> {
    /// Publishes the metrics: everything on a tick, and at once only when the role, term,
    /// leader or membership changed (comparing and cloning everything on every loop
    /// iteration costs more than the work it reports on).
    pub(super) fn publish_metrics(&mut self, full: bool) {
        if !full {
            let current = self.metrics_tx.borrow();
            let unchanged = current.role == self.metrics.role
                && current.leader == self.metrics.leader
                && current.term == self.node.term()
                && current.members == self.metrics.members
                && current.quiescent == self.node.is_quiescent()
                && current.fatal == self.metrics.fatal;
            drop(current);
            if unchanged {
                return;
            }
        }
        let m = &mut self.metrics;
        m.quiescent = self.node.is_quiescent();
        m.term = self.node.term();
        m.commit = self.node.commit_index();
        m.applied = self.applied;
        m.last_log_index = self.node.last_index();
        m.snapshot_index = self.snapshots.last();
        m.first_log_index = self.store.first_index();
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

    pub(super) fn begin_stop(&mut self, reply: Option<oneshot::Sender<()>>) {
        let grace = self.cfg.propose_timeout.min(Duration::from_secs(3));
        let stopping = self.stopping.get_or_insert_with(|| Stopping {
            deadline: self.now + grace,
            replies: Vec::new(),
        });
        stopping.replies.extend(reply);
    }

    pub(super) fn set_fatal(&mut self, reason: Fatal) {
        if self.fatal.is_none() {
            tracing::error!(node = self.id, reason = %reason, "node stopping after a fatal error");
            self.metrics.fatal = Some(reason.clone());
            self.fatal = Some(reason);
        }
    }

    pub(super) fn finished(&self) -> bool {
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

    pub(super) async fn finish(mut self) -> Stopped<SM> {
        let reason = match self.fatal.clone() {
            Some(fatal) => UnknownOutcome::NodeFailed(fatal),
            None => UnknownOutcome::ShutDown,
        };
        self.fail_waiting(reason);
        // Snapshot streams stop; a snapshot being saved is finished, so that the store is
        // whole and no longer referenced when the node reports it has stopped.
        self.snapshot_sends.abort_all();
        while self.snapshot_sends.join_next().await.is_some() {}
        // Snapshots being received stop (the store keeps nothing of them), and those staged
        // but not installed are given up.
        self.snapshot_receives.abort_all();
        while self.snapshot_receives.join_next().await.is_some() {}
        for staged in self.pipeline.take_staged() {
            self.store.discard_staged(&staged);
        }
        self.snapshot_reads.cancel();
        while self.snapshot_saves.join_next().await.is_some() {}
        // Let writes in flight land (their completions are no longer needed), stop the
        // applier once it has applied what it was given, then close the transport.
        if self.fatal.is_none()
            && let Err(e) = self.store.flush().await
        {
            tracing::error!(error = %e, "flushing the log store failed");
        }
        let (tx, rx) = oneshot::channel();
        let state_machine = match self.applier_tx.send(ApplyMsg::Stop(tx)) {
            Ok(()) => rx.await.ok(),
            Err(_) => None,
        };
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
                Request::ProposeRecord { reply, .. } => {
                    let _ = reply.send(Err(ProposeError::ShuttingDown));
                }
                Request::ProposeBatch { commands } => {
                    for (_, slot) in commands {
                        slot.answer(Err(ProposeError::ShuttingDown));
                    }
                }
                Request::Read { query, .. } => query(Err(ReadError::ShuttingDown)),
                Request::Membership { reply, .. } | Request::Transfer { reply, .. } => {
                    let _ = reply.send(Err(AdminError::ShuttingDown));
                }
                Request::Shutdown { reply } => {
                    let _ = reply.send(());
                }
                Request::Metrics { reply } => {
                    let _ = reply.send(self.metrics.clone());
                }
            }
        }
        if let Some(s) = self.stopping.take() {
            for r in s.replies {
                let _ = r.send(());
            }
        }
        tracing::info!(node = self.id, "stopped");
        Stopped {
            state_machine,
            fatal: self.fatal.take(),
        }
    }
}

pub(super) fn members(cs: &ConfState) -> BTreeMap<NodeId, Member> {
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
