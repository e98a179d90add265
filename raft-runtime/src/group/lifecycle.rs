//! Metrics publishing and stopping.

use super::*;

impl<SM: StateMachine> Group<SM> {
    /// Publishes the metrics, when something changed: at the end of a turn
    /// ([`Publish::Changes`]) only a change of role, leader, term, membership, quiescence
    /// or health, at once; on a tick, also progress (commit, applied, log, counters), and
    /// every few ticks the counters of the store and transport and each follower's match.
    /// Comparing and cloning everything on every turn would cost more than the work it
    /// reports on, all the more with thousands of groups in a process.
    pub(super) fn publish_metrics(&mut self, when: Publish) {
        let important = |m: &Metrics, conf: Option<Index>, quiescent: bool, term: Term| {
            (m.role, m.leader, term, conf, quiescent, m.fatal.is_some())
        };
        let mut when = when;
        if when == Publish::Changes {
            if important(
                &self.metrics,
                self.last_conf_index,
                self.node.is_quiescent(),
                self.node.term(),
            ) == important(
                &self.published.0,
                self.published.1,
                self.published.0.quiescent,
                self.published.0.term,
            ) {
                return;
            }
            // Rare, and worth everything as of now (a new leader's followers, say).
            when = Publish::Now;
        }
        let m = &mut self.metrics;
        m.quiescent = self.node.is_quiescent();
        m.term = self.node.term();
        m.commit = self.node.commit_index();
        m.applied = self.applied;
        m.last_log_index = self.node.last_index();
        m.snapshot_index = self.snapshots.last();
        m.first_log_index = self.store.first_index();
        let refresh = match when {
            Publish::Changes | Publish::Now => true,
            Publish::Tick => {
                self.ticks_to_refresh = self.ticks_to_refresh.saturating_sub(1);
                self.ticks_to_refresh == 0
            }
        };
        if refresh {
            self.ticks_to_refresh = METRICS_REFRESH_TICKS;
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
        // Members are compared by their configuration's index, the rest field by field
        // (the store and transport counters only when refreshed).
        let published = &self.published.0;
        let unchanged = self.published.1 == self.last_conf_index
            && published.role == m.role
            && published.leader == m.leader
            && published.quiescent == m.quiescent
            && published.term == m.term
            && published.commit == m.commit
            && published.applied == m.applied
            && published.last_log_index == m.last_log_index
            && published.snapshot_index == m.snapshot_index
            && published.first_log_index == m.first_log_index
            && published.proposals == m.proposals
            && published.applied_entries == m.applied_entries
            && published.leader_changes == m.leader_changes
            && published.elections_won == m.elections_won
            && published.snapshots_taken == m.snapshots_taken
            && published.snapshots_installed == m.snapshots_installed
            && published.refused_messages == m.refused_messages
            && published.fatal.is_some() == m.fatal.is_some()
            && (!refresh
                || (published.store == m.store
                    && published.transport == m.transport
                    && published.matched == m.matched));
        if unchanged {
            return;
        }
        self.published = (self.metrics.clone(), self.last_conf_index);
        self.metrics_tx.send_replace(self.metrics.clone());
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

    pub(crate) async fn finish(mut self) -> Stopped<SM> {
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
        self.publish_metrics(Publish::Now);
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
