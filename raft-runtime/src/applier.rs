//! The applier: the one task that owns the user's state machine.
//!
//! It receives, in log order, batches of committed entries (each with the responder of the
//! proposal waiting for it, if any), snapshots to install, requests to take a snapshot, and
//! read queries. Because all of these travel through one queue, a read query sent after
//! the entries up to its read index runs against a state that includes them.

use std::sync::Arc;

use bytes::Bytes;
use raft_core::{Entry, EntryPayload, Index, NodeId};
use tokio::sync::{mpsc, oneshot};

use crate::codec;
use crate::error::{Fatal, ProposeError, ReadError, StateMachineError, UnknownOutcome};
use crate::persist::Restore;
use crate::snapshot_stream::SnapshotStream;
use crate::state_machine::{Applied, StateMachine};
use crate::transport::ForwardError;

/// Where the outcome of a proposal goes.
pub(crate) enum Responder<SM: StateMachine> {
    /// A local caller.
    Local(oneshot::Sender<Result<SM::Response, ProposeError>>),
    /// A follower that forwarded the proposal.
    Remote {
        /// The follower.
        peer: NodeId,
        /// Its request id.
        id: u64,
    },
}

/// The answer to a proposal a follower forwarded, for the group task to send.
pub(crate) struct RemoteReply {
    /// The follower.
    pub(crate) peer: NodeId,
    /// Its request id.
    pub(crate) id: u64,
    /// The encoded response, or why the proposal failed.
    pub(crate) result: Result<Bytes, ForwardError>,
}

impl<SM: StateMachine> Responder<SM> {
    /// Reports a failure: to a local caller at once, to a follower through `remote`.
    pub(crate) fn fail(self, err: ProposeError, remote: &mut Vec<RemoteReply>) {
        match self {
            Responder::Local(tx) => {
                let _ = tx.send(Err(err));
            }
            Responder::Remote { peer, id } => remote.push(RemoteReply {
                peer,
                id,
                result: Err(err.to_forward()),
            }),
        }
    }

    fn succeed(self, response: SM::Response, remote: &mut Vec<RemoteReply>) {
        match self {
            Responder::Local(tx) => {
                let _ = tx.send(Ok(response));
            }
            Responder::Remote { peer, id } => {
                let result = codec::encode(&response).map_err(|e| ProposeError::Encode(e).to_forward());
                remote.push(RemoteReply { peer, id, result });
            }
        }
    }
}

/// A read query, type-erased: it receives the state machine (or why the read failed).
pub(crate) type Query<SM> = Box<dyn FnOnce(Result<&SM, ReadError>) + Send + 'static>;

/// Work for the applier, in log order.
pub(crate) enum ApplyMsg<SM: StateMachine> {
    /// Committed entries, each with the responder of its proposal.
    Entries(Vec<(Entry, Option<Responder<SM>>)>),
    /// Install a snapshot.
    Restore(Restore),
    /// Run a read query against the state as of now.
    Query(Query<SM>),
    /// Take a snapshot of the state.
    BuildSnapshot,
    /// Stop and hand the state machine back (the group returns it from shutdown).
    Stop(oneshot::Sender<SM>),
}

/// What the applier tells the node's main task.
pub(crate) enum ApplierEvent {
    /// Every entry up to this index was applied (or installed with a snapshot).
    Applied { index: Index, entries: u64 },
    /// A snapshot was installed.
    Installed { index: Index },
    /// A view of the state at `index` was taken, to be read while applying goes on.
    SnapshotBuilt { index: Index, data: SnapshotStream },
    /// Answers to forwarded proposals, for the group task to send.
    Replies(Vec<RemoteReply>),
    /// The state machine failed: the node must stop.
    Fatal(Arc<StateMachineError>),
}

/// Most commands handed to the state machine in one call.
const MAX_BATCH: usize = 8_192;

/// Runs the applier. Batches already queued are coalesced into one call to
/// [`StateMachine::apply`] up to [`MAX_BATCH`] entries and `max_batch_bytes` bytes of them
/// (as counted by `Entry::size`; a batch the core handed out whole is never split), so the
/// commands decoded for one call and the responses it returns stay bounded whatever the
/// backlog.
pub(crate) async fn run<SM: StateMachine>(
    mut sm: SM,
    mut applied: Index,
    mut rx: mpsc::UnboundedReceiver<ApplyMsg<SM>>,
    events: mpsc::UnboundedSender<ApplierEvent>,
    max_batch_bytes: u64,
) {
    let mut next: Option<ApplyMsg<SM>> = None;
    loop {
        let msg = match next.take() {
            Some(m) => m,
            None => match rx.recv().await {
                Some(m) => m,
                None => return,
            },
        };
        let result = match msg {
            ApplyMsg::Entries(mut batch) => {
                // Coalesce the batches already queued into one call.
                let mut bytes = batch_bytes(&batch);
                while batch.len() < MAX_BATCH && bytes < max_batch_bytes {
                    match rx.try_recv() {
                        Ok(ApplyMsg::Entries(more)) => {
                            bytes = bytes.saturating_add(batch_bytes(&more));
                            batch.extend(more);
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let mut replies = Vec::new();
                let result = apply_batch(&mut sm, &mut applied, batch, &mut replies, &events).await;
                if !replies.is_empty() {
                    let _ = events.send(ApplierEvent::Replies(replies));
                }
                result
            }
            ApplyMsg::Restore(snapshot) => {
                let index = snapshot.meta.index;
                match sm.restore(index, snapshot.data).await {
                    Ok(()) => {
                        applied = index;
                        let _ = events.send(ApplierEvent::Installed { index });
                        let _ = events.send(ApplierEvent::Applied { index, entries: 0 });
                        Ok(())
                    }
                    Err(e) => Err(Arc::new(e)),
                }
            }
            ApplyMsg::Query(query) => {
                query(Ok(&sm));
                Ok(())
            }
            ApplyMsg::BuildSnapshot => match sm.snapshot().await {
                Ok(data) => {
                    let _ = events.send(ApplierEvent::SnapshotBuilt { index: applied, data });
                    Ok(())
                }
                Err(e) => Err(Arc::new(e)),
            },
            ApplyMsg::Stop(reply) => {
                let _ = reply.send(sm);
                return;
            }
        };
        if let Err(e) = result {
            let _ = events.send(ApplierEvent::Fatal(e.clone()));
            // The node is stopping: fail everything queued and everything still to come,
            // until the node asks for the state machine back (which may be queued already)
            // or drops the queue.
            let mut replies = Vec::new();
            loop {
                // A message taken off the queue while coalescing comes first.
                let msg = match next.take().map_or_else(|| rx.try_recv(), Ok) {
                    Ok(msg) => msg,
                    Err(_) => {
                        if !replies.is_empty() {
                            let _ = events.send(ApplierEvent::Replies(std::mem::take(&mut replies)));
                        }
                        match rx.recv().await {
                            Some(msg) => msg,
                            None => return,
                        }
                    }
                };
                if let Some(reply) = fail(msg, &mut replies, &e) {
                    if !replies.is_empty() {
                        let _ = events.send(ApplierEvent::Replies(replies));
                    }
                    let _ = reply.send(sm);
                    return;
                }
            }
        }
    }
}

/// Answers `msg` after the state machine failed with `e`; hands back the reply channel of a
/// request to stop.
fn fail<SM: StateMachine>(
    msg: ApplyMsg<SM>,
    remote: &mut Vec<RemoteReply>,
    e: &Arc<StateMachineError>,
) -> Option<oneshot::Sender<SM>> {
    match msg {
        ApplyMsg::Entries(batch) => {
            let reason = UnknownOutcome::NodeFailed(Fatal::StateMachine(e.clone()));
            for (_, r) in batch {
                if let Some(r) = r {
                    r.fail(ProposeError::Unknown(reason.clone()), remote);
                }
            }
            None
        }
        ApplyMsg::Query(q) => {
            q(Err(ReadError::ShuttingDown));
            None
        }
        // Nothing is installed or snapshotted any more.
        ApplyMsg::Restore(_) | ApplyMsg::BuildSnapshot => None,
        ApplyMsg::Stop(reply) => Some(reply),
    }
}

/// The bytes of a batch's entries, as `Entry::size` counts them.
fn batch_bytes<SM: StateMachine>(batch: &[(Entry, Option<Responder<SM>>)]) -> u64 {
    batch.iter().fold(0u64, |n, (e, _)| n.saturating_add(e.size()))
}

async fn apply_batch<SM: StateMachine>(
    sm: &mut SM,
    applied: &mut Index,
    batch: Vec<(Entry, Option<Responder<SM>>)>,
    remote: &mut Vec<RemoteReply>,
    events: &mpsc::UnboundedSender<ApplierEvent>,
) -> Result<(), Arc<StateMachineError>> {
    let Some(last) = batch.last().map(|(e, _)| e.index) else {
        return Ok(());
    };
    let entries = batch.len() as u64;
    let mut commands = Vec::with_capacity(batch.len());
    let mut responders = Vec::with_capacity(batch.len());
    for (entry, responder) in batch {
        if entry.index <= *applied {
            // Already in the state (a snapshot installed meanwhile covers it).
            if let Some(r) = responder {
                r.fail(
                    ProposeError::Unknown(UnknownOutcome::SupersededBySnapshot),
                    remote,
                );
            }
            continue;
        }
        match entry.payload {
            EntryPayload::Normal(data) => match codec::decode::<SM::Command>(&data) {
                Ok(command) => {
                    commands.push(Applied {
                        index: entry.index,
                        command,
                    });
                    responders.push(responder);
                }
                Err(e) => {
                    // Every node fails to decode it alike, so skipping keeps them equal.
                    tracing::warn!(index = entry.index, error = %e, "skipping an undecodable command");
                    if let Some(r) = responder {
                        r.fail(ProposeError::Encode(e), remote);
                    }
                }
            },
            payload @ (EntryPayload::Empty | EntryPayload::Membership(_) | EntryPayload::Internal(_)) => {
                if let EntryPayload::Internal(_) = payload {
                    // This version proposes no records of its own; every node of it skips
                    // one alike, so their states stay equal.
                    tracing::warn!(
                        index = entry.index,
                        "skipping a runtime record this version does not know"
                    );
                }
                if let Some(r) = responder {
                    r.fail(ProposeError::Dropped, remote);
                }
            }
        }
    }
    if last <= *applied {
        // Every entry was covered by a snapshot installed meanwhile.
        let _ = events.send(ApplierEvent::Applied { index: last, entries });
        return Ok(());
    }
    let expected = commands.len();
    let outcome = match sm.apply(commands, last).await {
        Ok(responses) if responses.len() == expected => Ok(responses),
        Ok(responses) => Err(StateMachineError::msg(format!(
            "apply returned {} responses for {expected} commands",
            responses.len()
        ))),
        Err(e) => Err(e),
    };
    let responses = match outcome {
        Ok(responses) => responses,
        Err(e) => {
            // Committed, and perhaps applied on other nodes: the outcome is unknown.
            let e = Arc::new(e);
            let reason = UnknownOutcome::NodeFailed(Fatal::StateMachine(e.clone()));
            for r in responders.into_iter().flatten() {
                r.fail(ProposeError::Unknown(reason.clone()), remote);
            }
            return Err(e);
        }
    };
    for (response, responder) in responses.into_iter().zip(responders) {
        if let Some(r) = responder {
            r.succeed(response, remote);
        }
    }
    *applied = last;
    let _ = events.send(ApplierEvent::Applied { index: last, entries });
    Ok(())
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use raft_core::Term;

    use super::*;

    /// A state machine whose every `apply` fails.
    struct Failing;

    #[async_trait]
    impl StateMachine for Failing {
        type Command = u64;
        type Response = u64;

        async fn apply(
            &mut self,
            _batch: Vec<Applied<u64>>,
            _applied: Index,
        ) -> Result<Vec<u64>, StateMachineError> {
            Err(StateMachineError::msg("disk on fire"))
        }
        async fn applied_index(&self) -> Result<Index, StateMachineError> {
            Ok(0)
        }
        async fn snapshot(&mut self) -> Result<SnapshotStream, StateMachineError> {
            Ok(SnapshotStream::from_bytes(Bytes::new()))
        }
        async fn restore(&mut self, _index: Index, _data: SnapshotStream) -> Result<(), StateMachineError> {
            Ok(())
        }
    }

    fn command(term: Term, index: Index, value: u64) -> Entry {
        Entry::new(term, index, EntryPayload::Normal(codec::encode(&value).unwrap()))
    }

    /// A state machine that fails hands itself back even when the request to stop was
    /// queued behind the batch that failed; the proposals of that batch and of later ones
    /// learn that their outcome is unknown because the node failed.
    #[tokio::test]
    async fn after_a_failure_the_queued_stop_still_gets_the_state_machine() {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let (first, first_rx) = oneshot::channel();
        let (second, second_rx) = oneshot::channel();
        let (stop, stopped) = oneshot::channel();
        tx.send(ApplyMsg::Entries(vec![(
            command(1, 1, 7),
            Some(Responder::Local(first)),
        )]))
        .unwrap();
        tx.send(ApplyMsg::Entries(vec![(
            command(1, 2, 8),
            Some(Responder::Local(second)),
        )]))
        .unwrap();
        tx.send(ApplyMsg::Stop(stop)).unwrap();
        let task = tokio::spawn(run(Failing, 0, rx, events_tx, 4 << 20));
        let deadline = std::time::Duration::from_secs(30);
        tokio::time::timeout(deadline, stopped)
            .await
            .expect("the state machine is handed back")
            .expect("not dropped");
        // The queue is still open: the applier ended because it was asked to.
        tokio::time::timeout(deadline, task).await.unwrap().unwrap();
        drop(tx);
        for reply in [first_rx, second_rx] {
            match reply.await.unwrap() {
                Err(ProposeError::Unknown(UnknownOutcome::NodeFailed(Fatal::StateMachine(e)))) => {
                    assert!(e.to_string().contains("disk on fire"), "{e}")
                }
                other => panic!("expected an unknown outcome, got {other:?}"),
            }
        }
        assert!(matches!(events.recv().await, Some(ApplierEvent::Fatal(_))));
    }
}
