//! Traffic from peers: protocol messages, snapshots with their data, forwarded
//! proposals and the answers to ours.

use super::requests::Proposal;
use super::*;

impl<SM: StateMachine> Group<SM> {
    pub(super) fn on_incoming(&mut self, inc: Incoming) {
        match inc {
            Incoming::Messages { from, group, .. } if group != self.group => {
                self.refused(from, format_args!("a batch for group {group}, not this node's"));
            }
            Incoming::Messages { from, messages, .. } => {
                for w in messages {
                    match w {
                        WireMessage::Raft(m) => self.step(from, m, false),
                        WireMessage::Forward { id, command } => {
                            self.on_forward(from, id, Proposal::Command(command))
                        }
                        WireMessage::ForwardReply { id, result } => self.on_forward_reply(from, id, result),
                        // The record is stamped in place: it is copied out of the received
                        // buffer once.
                        WireMessage::ForwardRecord { id, record } => {
                            self.on_forward(from, id, Proposal::Record(BytesMut::from(&record[..])))
                        }
                    }
                }
            }
            Incoming::Snapshot { from, group, ack, .. } if group != self.group => {
                let _ = ack.send(Err(DeliverSnapshotError::UnknownGroup { group }));
                self.refused(
                    from,
                    format_args!("a snapshot for group {group}, not this node's"),
                );
            }
            Incoming::Snapshot {
                from,
                message,
                data,
                ack,
                ..
            } => {
                let MessageBody::Snapshot(meta) = &message.body else {
                    let _ = ack.send(Err(DeliverSnapshotError::NotASnapshot { kind: message.kind() }));
                    return;
                };
                if message.from != from {
                    let _ = ack.send(Err(DeliverSnapshotError::ForgedSender {
                        from,
                        claimed: message.from,
                    }));
                    self.refused(from, "a snapshot with a forged sender");
                    return;
                }
                // The data is written to the store as it arrives, off this task; the
                // protocol hears of the snapshot once it is staged durably.
                let meta = (**meta).clone();
                let store = self.store.clone();
                let events = self.events_tx.clone();
                self.snapshot_receives.spawn(async move {
                    let result = store.stage_snapshot(meta, data).await;
                    let _ = events.send(Event::SnapshotStaged {
                        from,
                        message,
                        result: Box::new(result),
                        ack,
                    });
                });
            }
        }
    }

    /// A received snapshot is staged in the store (or failed to be): the protocol takes it.
    pub(super) fn on_snapshot_staged(
        &mut self,
        from: NodeId,
        message: Message,
        result: Result<Staged, StoreError>,
        ack: oneshot::Sender<Result<(), DeliverSnapshotError>>,
    ) {
        let staged = match result {
            Ok(staged) => staged,
            Err(e) => {
                // The transfer broke, the data failed a check, or the store could not write
                // it: nothing was kept, the log is untouched, and the leader sends it again.
                tracing::warn!(peer = from, error = %e, "a received snapshot was not stored");
                let _ = ack.send(Err(DeliverSnapshotError::NotStored(e.to_string())));
                return;
            }
        };
        for given_up in self.pipeline.stage(staged) {
            self.store.discard_staged(&given_up);
        }
        self.step(from, message, true);
        let _ = ack.send(Ok(()));
    }

    /// Steps a peer's message; `with_data` says it came with its snapshot's data.
    pub(super) fn step(&mut self, from: NodeId, m: Message, with_data: bool) {
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
        let Err(e) = result else {
            return;
        };
        match e {
            StepError::Fatal(invariant) => self.set_fatal(Fatal::Invariant(invariant)),
            // Acted upon (the leader repairs the follower), but an operator must look into it.
            StepError::PeerLostLog { .. } => tracing::error!(error = %e, "a follower lost its log"),
            StepError::WrongRecipient { .. }
            | StepError::Malformed { .. }
            | StepError::TermTooFarAhead { .. }
            | StepError::UnknownPeer { .. }
            | StepError::SnapshotWithoutData { .. } => self.refused(from, e),
        }
    }

    /// Counts a peer message that was refused, and logs it: at most one warning every few
    /// seconds, so that a peer sending garbage cannot flood the log.
    pub(super) fn refused(&mut self, peer: NodeId, why: impl std::fmt::Display) {
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
}
