//! The protocol's output (messages, writes, committed entries, read confirmations) and
//! the completions that come back (durable writes, sent and saved snapshots, the applier).

use super::*;

impl<SM: StateMachine> Group<SM> {
    pub(super) fn handle_ready(&mut self) {
        // Bounded: a leader that owes appends it cannot build yet must not spin.
        for _ in 0..64 {
            if self.fatal.is_some() || !self.node.has_ready() {
                return;
            }
            let ready = match self.node.ready() {
                Ok(r) => r,
                Err(e) => return self.set_fatal(Fatal::from(e)),
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

    pub(super) fn on_soft_state(&mut self, ss: SoftState) {
        let term = self.node.term();
        if ss.leader != self.metrics.leader {
            tracing::info!(node = self.id, term, role = ?ss.role, leader = ?ss.leader, "leadership changed");
            // Proposals forwarded to a former leader may or may not have been appended there;
            // say so now rather than when they time out.
            let stale = self.forwards.take_where(|_, (to, _)| Some(*to) != ss.leader);
            for (_, (to, waiter)) in stale {
                waiter.fail(ProposeError::Unknown(UnknownOutcome::LeaderChanged {
                    leader: to,
                }));
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

    pub(super) fn send_messages(&mut self, messages: Vec<Message>) {
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
            if let Err(e) = self.transport.send(to, self.group, batch) {
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

    pub(super) fn send_snapshot(&mut self, m: Message) {
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
        let group = self.group;
        let events = self.events_tx.clone();
        self.snapshot_sends.spawn(async move {
            let ok = match store.load_snapshot().await {
                // Read from the store as the transport sends it, never gathered whole.
                Ok(Some(s)) if s.meta.index == index => {
                    match transport.send_snapshot(to, group, m, s.data).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(peer = to, error = %e, "sending a snapshot failed");
                            false
                        }
                    }
                }
                // A newer snapshot replaced it: the protocol asks again with that one.
                Ok(_) => false,
                Err(e) => {
                    tracing::error!(error = %e, "loading the snapshot to send failed");
                    false
                }
            };
            let _ = events.send(Event::SnapshotSent { to, index, ok });
        });
    }

    pub(super) fn persist(&mut self, p: Persist) {
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
                    return self.set_fatal(Fatal::from(e));
                }
                self.send_messages(messages);
            }
            Ok(Begin::RidesAlong) => {}
            Err(e) => self.set_fatal(Fatal::Pipeline(e)),
        }
    }

    pub(super) fn on_persisted(&mut self, token: u64, result: Result<(), StoreError>) {
        if let Err(e) = result {
            return self.set_fatal(Fatal::LogWrite(e));
        }
        let done = match self.pipeline.complete(token) {
            Ok(done) => done,
            Err(e) => return self.set_fatal(Fatal::Pipeline(e)),
        };
        if let Some(s) = done.restore {
            self.emitted = self.emitted.max(s.meta.index);
            let _ = self.applier_tx.send(ApplyMsg::Restore(Box::new(s)));
            self.metrics.snapshots_installed += 1;
        }
        if let Err(e) = self.node.on_persisted(done.report) {
            return self.set_fatal(Fatal::from(e));
        }
        self.send_messages(done.messages);
        self.release_parked_reads();
    }

    pub(super) fn apply(&mut self, entries: Vec<Entry>) {
        let mut batch = Vec::with_capacity(entries.len());
        let mut bytes = 0u64;
        for e in entries {
            let responder = match self.proposals.remove(e.index) {
                Some((_, p)) if p.term == e.term => Some(p.responder),
                Some((_, p)) => {
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
            bytes = bytes.saturating_add(e.size());
            batch.push((e, responder));
        }
        if let Some((last, _)) = batch.last() {
            self.snapshots.entries_applied(last.index, bytes);
        }
        let _ = self.applier_tx.send(ApplyMsg::Entries(batch));
        self.release_parked_reads();
    }

    pub(super) fn on_conf_applied(&mut self, index: Index, term: Term, joint: bool) {
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
        self.metrics.members = Arc::new(super::lifecycle::members(&cs));
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

    pub(super) fn on_event(&mut self, ev: Event) {
        // Reap the background tasks that ended (each reports before it ends).
        while self.snapshot_sends.try_join_next().is_some() {}
        while self.snapshot_receives.try_join_next().is_some() {}
        while self.snapshot_saves.try_join_next().is_some() {}
        match ev {
            Event::Persisted { token, result } => self.on_persisted(token, result),
            Event::SnapshotSent { to, index, ok } => {
                self.sending_snapshots.remove(&to);
                let status = if ok {
                    if self.node.role() == Role::Leader {
                        self.delivered_snapshots.insert(to, index);
                    }
                    SnapshotStatus::Finished
                } else {
                    SnapshotStatus::Failed
                };
                self.node.report_snapshot(to, status);
            }
            Event::SnapshotSaved { index, result } => match result {
                Ok(()) => {
                    self.snapshots.finished(Some(index));
                    self.snapshots.stored_len(self.store.snapshot_len());
                    self.metrics.snapshots_taken += 1;
                    // Decided now rather than when the snapshot was started: a follower
                    // may have begun to receive an older snapshot meanwhile (saving a large
                    // one takes a while), and it needs the log after that one.
                    let needed = self.log_needed_by_followers();
                    let compact_to = self.snapshots.compact_to(index, needed);
                    if let Err(e) = self.store.compact(compact_to) {
                        self.set_fatal(Fatal::SnapshotSave(e));
                    }
                }
                Err(fatal) => {
                    self.snapshots.finished(None);
                    self.set_fatal(fatal);
                }
            },
            Event::SnapshotStaged {
                from,
                message,
                result,
                ack,
            } => self.on_snapshot_staged(from, *message, *result, ack),
        }
    }

    pub(super) fn on_applier(&mut self, ev: ApplierEvent) {
        match ev {
            ApplierEvent::Applied { index, entries } => {
                if index > self.applied {
                    self.applied = index;
                    self.metrics.applied_entries += entries;
                    match self.node.on_applied(index) {
                        Ok(()) => {}
                        Err(DriverError::Fatal(invariant)) => self.set_fatal(Fatal::Invariant(invariant)),
                        // A snapshot installed from the leader moves the applied index
                        // past what the protocol handed out; nothing to record.
                        Err(
                            e @ (DriverError::IndexOutOfRange { .. }
                            | DriverError::Storage(_)
                            | DriverError::UnknownPersistToken { .. }
                            | DriverError::SnapshotPending { .. }),
                        ) => tracing::debug!(error = %e, "applied index refused"),
                    }
                }
                self.maybe_snapshot();
            }
            ApplierEvent::Installed { index } => {
                self.snapshots.installed(index);
                self.snapshots.stored_len(self.store.snapshot_len());
            }
            ApplierEvent::Replies(replies) => self.remote_replies.extend(replies),
            ApplierEvent::SnapshotBuilt { index, data } => match self.node.snapshot_meta_at(index) {
                Ok(meta) => {
                    let store = self.store.clone();
                    let events = self.events_tx.clone();
                    let cancel = self.snapshot_reads.clone();
                    self.snapshot_saves.spawn(async move {
                        if let Some(result) = save_snapshot(&*store, meta, data, cancel).await {
                            let _ = events.send(Event::SnapshotSaved { index, result });
                        }
                    });
                }
                Err(DriverError::Fatal(invariant)) => {
                    self.snapshots.finished(None);
                    self.set_fatal(Fatal::Invariant(invariant));
                }
                // Not now (a snapshot from the leader is being installed and covers it, or
                // a compaction moved the log past it): the next one is taken when due.
                Err(
                    e @ (DriverError::SnapshotPending { .. }
                    | DriverError::IndexOutOfRange { .. }
                    | DriverError::Storage(_)
                    | DriverError::UnknownPersistToken { .. }),
                ) => {
                    tracing::debug!(error = %e, "snapshot skipped");
                    self.snapshots.finished(None);
                }
            },
            ApplierEvent::Fatal(e) => self.set_fatal(Fatal::StateMachine(e)),
        }
    }

    /// On a leader, the first entry of its log that a follower will need once it has
    /// installed the snapshot it is being sent, or was sent and has not reported having
    /// yet: the one after that snapshot. (Followers that lag otherwise get only the
    /// retention bounds: a follower that is down must not hold the log.)
    fn log_needed_by_followers(&mut self) -> Option<Index> {
        if self.node.role() != Role::Leader {
            self.delivered_snapshots.clear();
            return None;
        }
        let status = self.node.status();
        self.delivered_snapshots.retain(|id, index| {
            status
                .progress
                .get(id)
                .is_some_and(|p| p.matched < *index && !matches!(p.state, ProgressState::Snapshot { .. }))
        });
        status
            .progress
            .iter()
            .filter(|&(&id, _)| id != self.id)
            .filter_map(|(id, p)| match p.state {
                ProgressState::Snapshot { pending } => Some(pending),
                ProgressState::Probe | ProgressState::Replicate => self.delivered_snapshots.get(id).copied(),
            })
            .map(|index| index.saturating_add(1))
            .filter(|&needed| needed >= status.first_index)
            .min()
    }

    /// Starts a snapshot (which compacts the log) once enough entries, or enough bytes of
    /// entries, were applied since the last one.
    pub(super) fn maybe_snapshot(&mut self) {
        if self.stopping.is_none() && self.snapshots.start_if_due(self.applied) {
            let _ = self.applier_tx.send(ApplyMsg::BuildSnapshot);
        }
    }
}

/// Streams the state machine's view of its state at `meta.index` into the store while
/// applying goes on (the node compacts the log once it hears of it). `None` if the node
/// began to stop meanwhile: the stream then fails, so that the store keeps nothing of it,
/// and the store's call is still awaited, so that nothing holds the store once the node
/// has stopped.
async fn save_snapshot<L: LogStore + ?Sized>(
    store: &L,
    meta: SnapshotMeta,
    data: SnapshotStream,
    cancel: CancellationToken,
) -> Option<Result<(), Fatal>> {
    // The state machine's own error, told apart from the store's.
    let source_error: Arc<std::sync::Mutex<Option<std::io::Error>>> = Arc::default();
    // The state travels from one chunk to the next; `None` once the stream has ended.
    let state = Some((data, source_error.clone(), cancel.clone()));
    let guarded = futures::stream::unfold(state, |state| async move {
        let (mut data, seen, stopping) = state?;
        tokio::select! {
            biased;
            () = stopping.cancelled() => {
                Some((Err(std::io::Error::other("the node is stopping")), None))
            }
            item = data.next_chunk() => match item {
                Ok(Some(chunk)) => Some((Ok(chunk), Some((data, seen, stopping)))),
                Ok(None) => None,
                Err(e) => {
                    let told = std::io::Error::new(e.kind(), e.to_string());
                    *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    Some((Err(told), None))
                }
            },
        }
    });
    let saved = store.save_snapshot(meta, SnapshotStream::new(guarded)).await;
    if cancel.is_cancelled() {
        return None;
    }
    let source = source_error.lock().unwrap_or_else(|p| p.into_inner()).take();
    Some(match (saved, source) {
        (_, Some(e)) => Err(Fatal::StateMachine(Arc::new(StateMachineError::new(e)))),
        (Ok(()), None) => Ok(()),
        (Err(e), None) => Err(Fatal::SnapshotSave(e)),
    })
}
