//! The applier: the one task that owns the user's state machine.
//!
//! It receives, in log order, batches of committed entries (each with the responder of the
//! proposal waiting for it, if any), snapshots to install, requests to take a snapshot, and
//! read queries. Because all of these travel through one queue, a read query sent after
//! the entries up to its read index runs against a state that includes them.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use raft_core::{Entry, EntryPayload, Index, NodeId};
use tokio::sync::{mpsc, oneshot};

use crate::batch::LocalReply;
use crate::codec;
use crate::error::{Fatal, ProposeError, ReadError, SessionError, StateMachineError, UnknownOutcome};
use crate::persist::Restore;
use crate::sessions::record::{self, Record};
use crate::sessions::{Admit, OpenRefused, Seq, SessionId, Sessions, snapshot as session_snapshot};
use crate::snapshot_stream::SnapshotStream;
use crate::state_machine::{Applied, StateMachine};
use crate::transport::ForwardError;

/// Where the outcome of a proposal goes.
pub(crate) enum Responder<SM: StateMachine> {
    /// A local caller of a command, alone or in a batch.
    Local(LocalReply<SM::Response>),
    /// A local caller of a runtime record (a session's command or opening), who decodes the
    /// encoded response itself.
    Raw(RawReply),
    /// A follower that forwarded the proposal.
    Remote {
        /// The follower.
        peer: NodeId,
        /// Its request id.
        id: u64,
    },
}

/// Where the encoded response to a runtime record goes.
pub(crate) type RawReply = oneshot::Sender<Result<Bytes, ProposeError>>;

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
            Responder::Local(reply) => reply.send(Err(err)),
            Responder::Raw(tx) => {
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
            Responder::Local(reply) => reply.send(Ok(response)),
            responder @ (Responder::Raw(_) | Responder::Remote { .. }) => match codec::encode(&response) {
                Ok(bytes) => responder.succeed_encoded(bytes, remote),
                Err(e) => responder.fail(ProposeError::Encode(e), remote),
            },
        }
    }

    /// Answers with a response already encoded (a session's held response, or a session id).
    fn succeed_encoded(self, bytes: Bytes, remote: &mut Vec<RemoteReply>) {
        match self {
            Responder::Local(reply) => reply.send(decode_response::<SM>(&bytes)),
            Responder::Raw(tx) => {
                let _ = tx.send(Ok(bytes));
            }
            Responder::Remote { peer, id } => remote.push(RemoteReply {
                peer,
                id,
                result: Ok(bytes),
            }),
        }
    }
}

/// A response the applier holds encoded (a session's), decoded for a local caller.
fn decode_response<SM: StateMachine>(bytes: &[u8]) -> Result<SM::Response, ProposeError> {
    codec::decode::<SM::Response>(bytes)
        .map_err(|_| ProposeError::Unknown(UnknownOutcome::UndecodableResponse))
}

/// A read query, type-erased: it receives the state machine (or why the read failed).
pub(crate) type Query<SM> = Box<dyn FnOnce(Result<&SM, ReadError>) + Send + 'static>;

/// Work for the applier, in log order.
pub(crate) enum ApplyMsg<SM: StateMachine> {
    /// Committed entries, each with the responder of its proposal.
    Entries(Vec<(Entry, Option<Responder<SM>>)>),
    /// Install a snapshot. (Boxed: a channel's slots are as large as its largest item, and
    /// an idle node keeps a block of them.)
    Restore(Box<Restore>),
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
    mut sessions: Option<Sessions>,
) {
    let mut next: Option<ApplyMsg<SM>> = None;
    let mut call = Call::new();
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
                let result = apply_batch(
                    &mut sm,
                    &mut applied,
                    batch,
                    &mut replies,
                    &events,
                    &mut sessions,
                    &mut call,
                )
                .await;
                if !replies.is_empty() {
                    let _ = events.send(ApplierEvent::Replies(replies));
                }
                result
            }
            ApplyMsg::Restore(snapshot) => {
                let snapshot = *snapshot;
                let index = snapshot.meta.index;
                match restore(&mut sm, index, snapshot.data, &sessions).await {
                    Ok(table) => {
                        sessions = table;
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
            ApplyMsg::BuildSnapshot => match snapshot(&mut sm, &sessions).await {
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

/// Takes a snapshot of the state machine, with the session table in front when sessions
/// are on.
pub(crate) async fn snapshot<SM: StateMachine>(
    sm: &mut SM,
    sessions: &Option<Sessions>,
) -> Result<SnapshotStream, StateMachineError> {
    let data = sm.snapshot().await?;
    match sessions {
        None => Ok(data),
        Some(table) => session_snapshot::wrap(table, data)
            .map_err(|e| StateMachineError::msg(format!("encoding the session table: {e}"))),
    }
}

/// Restores the state machine from a snapshot taken at `index`; with sessions on
/// (`sessions` is the current table, or `None`), splits the session table off its front
/// first and returns it.
pub(crate) async fn restore<SM: StateMachine>(
    sm: &mut SM,
    index: Index,
    data: SnapshotStream,
    sessions: &Option<Sessions>,
) -> Result<Option<Sessions>, StateMachineError> {
    let Some(current) = sessions else {
        sm.restore(index, data).await?;
        return Ok(None);
    };
    let (table, data) = session_snapshot::split(data, current.limits())
        .await
        .map_err(|e| StateMachineError::msg(format!("the snapshot at {index}: {e}")))?;
    sm.restore(index, data).await?;
    Ok(Some(table))
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

/// Where a command's answer goes: its responder, and its session and sequence if it came in
/// a session (its response is then held in the table).
type Answer<SM> = (Option<Responder<SM>>, Option<(SessionId, Seq)>);

/// Commands decoded for one call to [`StateMachine::apply`], with where each answer goes.
struct Call<SM: StateMachine> {
    commands: Vec<Applied<SM::Command>>,
    /// Per command: where its answer goes.
    answers: Vec<Answer<SM>>,
    /// The sessions with a command in this call. The next command of such a session waits
    /// for the call to be applied: the table must hold the responses of a session's earlier
    /// commands when it admits the next (a retry finds its first copy's response; the
    /// bounds count what is held), exactly as if every entry were applied on its own.
    /// Otherwise the table would depend on how entries happened to be batched, which differs
    /// from node to node.
    in_call: HashSet<SessionId>,
}

impl<SM: StateMachine> Call<SM> {
    fn new() -> Self {
        Call {
            commands: Vec::new(),
            answers: Vec::new(),
            in_call: HashSet::new(),
        }
    }

    fn push(
        &mut self,
        index: Index,
        command: SM::Command,
        responder: Option<Responder<SM>>,
        key: Option<(SessionId, Seq)>,
    ) {
        self.commands.push(Applied { index, command });
        self.answers.push((responder, key));
        if let Some((session, _)) = key {
            self.in_call.insert(session);
        }
    }
}

async fn apply_batch<SM: StateMachine>(
    sm: &mut SM,
    applied: &mut Index,
    batch: Vec<(Entry, Option<Responder<SM>>)>,
    remote: &mut Vec<RemoteReply>,
    events: &mpsc::UnboundedSender<ApplierEvent>,
    sessions: &mut Option<Sessions>,
    call: &mut Call<SM>,
) -> Result<(), Arc<StateMachineError>> {
    let Some(last) = batch.last().map(|(e, _)| e.index) else {
        return Ok(());
    };
    let entries = batch.len() as u64;
    // One call, reused from batch to batch: its set of sessions keeps its capacity.
    call.commands.reserve(batch.len());
    call.answers.reserve(batch.len());
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
        // The command to apply, and its session and sequence if it came in one.
        let (data, key) = match entry.payload {
            EntryPayload::Normal(data) => (data, None),
            EntryPayload::Internal(data) => {
                let mut outcome = session_record(entry.index, &data, sessions, call);
                if let RecordOutcome::AfterCall = outcome {
                    // Another command of a session with one in this call: apply what comes
                    // before it first (see `Call::in_call`).
                    apply_call(sm, applied, call, entry.index - 1, sessions, remote).await?;
                    outcome = session_record(entry.index, &data, sessions, call);
                }
                match outcome {
                    RecordOutcome::Apply { key, command } => (command, Some(key)),
                    RecordOutcome::Answer(bytes) => {
                        if let Some(r) = responder {
                            r.succeed_encoded(bytes, remote);
                        }
                        continue;
                    }
                    RecordOutcome::Refuse(e) => {
                        if let Some(r) = responder {
                            r.fail(ProposeError::Session(e), remote);
                        }
                        continue;
                    }
                    RecordOutcome::AfterCall => unreachable!("the call was applied"),
                }
            }
            EntryPayload::Empty | EntryPayload::Membership(_) => {
                if let Some(r) = responder {
                    r.fail(ProposeError::Dropped, remote);
                }
                continue;
            }
        };
        match codec::decode_owned::<SM::Command>(data) {
            Ok(command) => call.push(entry.index, command, responder, key),
            Err(e) => {
                // Every node fails to decode it alike, so skipping keeps them equal.
                tracing::warn!(index = entry.index, error = %e, "skipping an undecodable command");
                if let Some(r) = responder {
                    r.fail(ProposeError::Encode(e), remote);
                }
            }
        }
    }
    if last <= *applied {
        // Every entry was covered by a snapshot installed meanwhile.
        let _ = events.send(ApplierEvent::Applied { index: last, entries });
        return Ok(());
    }
    apply_call(sm, applied, call, last, sessions, remote).await?;
    let _ = events.send(ApplierEvent::Applied { index: last, entries });
    Ok(())
}

/// What the session table makes of a runtime record.
enum RecordOutcome {
    /// Apply this command of this session.
    Apply { key: (SessionId, Seq), command: Bytes },
    /// Answer with these encoded bytes (a held response, or a new session's id).
    Answer(Bytes),
    /// Refused: not applied.
    Refuse(SessionError),
    /// A command of a session that has one in the call being gathered: apply the call
    /// first.
    AfterCall,
}

/// Feeds the runtime record at `index` to the session table. Every node does so alike, in
/// log order, whatever its batches: a record that cannot be read, or that arrives at a node
/// without sessions, is refused everywhere.
fn session_record<SM: StateMachine>(
    index: Index,
    data: &Bytes,
    sessions: &mut Option<Sessions>,
    call: &Call<SM>,
) -> RecordOutcome {
    let Some(table) = sessions.as_mut() else {
        tracing::warn!(index, "a session record reached a node without sessions; refused");
        return RecordOutcome::Refuse(SessionError::NotEnabled);
    };
    match record::decode(data) {
        Err(e) => {
            tracing::warn!(index, error = %e, "refusing a malformed runtime record");
            RecordOutcome::Refuse(SessionError::Malformed(e))
        }
        Ok(Record::Open { stamp }) => match table.open(index, stamp) {
            Ok(()) => RecordOutcome::Answer(Bytes::copy_from_slice(&index.to_le_bytes())),
            Err(OpenRefused::Full) => RecordOutcome::Refuse(SessionError::TooManySessions),
        },
        Ok(Record::Command {
            stamp,
            session,
            seq,
            acked,
            command,
        }) => {
            if call.in_call.contains(&session) {
                return RecordOutcome::AfterCall;
            }
            match table.admit(session, seq, acked, stamp) {
                Admit::Apply => RecordOutcome::Apply {
                    key: (session, seq),
                    command,
                },
                Admit::Duplicate(bytes) => RecordOutcome::Answer(bytes),
                Admit::Expired => RecordOutcome::Refuse(SessionError::Expired { session }),
                Admit::Acknowledged { acked } => {
                    RecordOutcome::Refuse(SessionError::Acknowledged { session, seq, acked })
                }
                Admit::Busy => RecordOutcome::Refuse(SessionError::TooManyPending { session }),
            }
        }
    }
}

/// Hands the gathered commands to the state machine as one call that brings it to
/// `through`, holds the responses of session commands in the table, and answers every
/// responder.
async fn apply_call<SM: StateMachine>(
    sm: &mut SM,
    applied: &mut Index,
    call: &mut Call<SM>,
    through: Index,
    sessions: &mut Option<Sessions>,
    remote: &mut Vec<RemoteReply>,
) -> Result<(), Arc<StateMachineError>> {
    let commands = std::mem::take(&mut call.commands);
    let answers = std::mem::take(&mut call.answers);
    call.in_call.clear();
    let expected = commands.len();
    let outcome = match sm.apply(commands, through).await {
        Ok(responses) if responses.len() == expected => Ok(responses),
        Ok(responses) => Err(StateMachineError::msg(format!(
            "apply returned {} responses for {expected} commands",
            responses.len()
        ))),
        Err(e) => Err(e),
    };
    let fail_all = |e: Arc<StateMachineError>,
                    answers: Vec<(Option<Responder<SM>>, _)>,
                    remote: &mut Vec<RemoteReply>| {
        // Committed, and perhaps applied on other nodes: the outcome is unknown.
        let reason = UnknownOutcome::NodeFailed(Fatal::StateMachine(e.clone()));
        for (r, _) in answers {
            if let Some(r) = r {
                r.fail(ProposeError::Unknown(reason.clone()), remote);
            }
        }
        e
    };
    let responses = match outcome {
        Ok(responses) => responses,
        Err(e) => return Err(fail_all(Arc::new(e), answers, remote)),
    };
    let mut answers = answers.into_iter();
    for response in responses {
        let (responder, key) = answers.next().expect("as many answers as commands");
        let Some((session, seq)) = key else {
            if let Some(r) = responder {
                r.succeed(response, remote);
            }
            continue;
        };
        // A session's response must be held for its retries, so it must encode.
        let bytes = match codec::encode(&response) {
            Ok(bytes) => bytes,
            Err(e) => {
                let e = Arc::new(StateMachineError::msg(format!(
                    "the response to command {seq} of session {session} cannot be encoded to be held: {e}"
                )));
                let rest = std::iter::once((responder, key)).chain(answers).collect();
                return Err(fail_all(e, rest, remote));
            }
        };
        if let Some(table) = sessions.as_mut() {
            table.record(session, seq, bytes.clone());
        }
        if let Some(r) = responder {
            r.succeed_encoded(bytes, remote);
        }
    }
    *applied = through;
    Ok(())
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use raft_core::Term;

    use super::*;

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
            Some(Responder::Local(LocalReply::One(first))),
        )]))
        .unwrap();
        tx.send(ApplyMsg::Entries(vec![(
            command(1, 2, 8),
            Some(Responder::Local(LocalReply::One(second))),
        )]))
        .unwrap();
        tx.send(ApplyMsg::Stop(stop)).unwrap();
        let failing = Counting {
            fail: true,
            ..Counting::default()
        };
        let task = tokio::spawn(run(failing, 0, rx, events_tx, 4 << 20, None));
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

    /// An idle node keeps one block of 32 slots in each of its channels, each slot as large
    /// as the channel's largest item: large variants are boxed.
    #[test]
    fn channel_items_stay_small() {
        assert!(std::mem::size_of::<ApplyMsg<Counting>>() <= 32);
        assert!(std::mem::size_of::<ApplierEvent>() <= 32);
        assert!(std::mem::size_of::<crate::group::Event>() <= 48);
    }

    /// Counts the commands it applies and the calls; answers each command with the count so
    /// far. With `fail`, every `apply` fails instead.
    #[derive(Default)]
    struct Counting {
        commands: Vec<u64>,
        calls: u64,
        fail: bool,
    }

    #[async_trait]
    impl StateMachine for Counting {
        type Command = u64;
        type Response = u64;

        async fn apply(
            &mut self,
            batch: Vec<Applied<u64>>,
            _applied: Index,
        ) -> Result<Vec<u64>, StateMachineError> {
            if self.fail {
                return Err(StateMachineError::msg("disk on fire"));
            }
            self.calls += 1;
            Ok(batch
                .into_iter()
                .map(|c| {
                    self.commands.push(c.command);
                    self.commands.len() as u64
                })
                .collect())
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

    fn stamped(mut record: bytes::BytesMut, stamp: u64) -> Bytes {
        record::stamp(&mut record, stamp).unwrap();
        record.freeze()
    }

    /// A retry of a session command that lands in the same batch as its first copy (the
    /// client retried before the first was answered) is answered with the first copy's
    /// response and not applied again: the applier hands the commands before it to the
    /// state machine first, so that the first copy's response is held when the retry is
    /// looked up.
    #[tokio::test]
    async fn a_retry_in_the_same_batch_as_its_first_copy_is_not_applied_again() {
        let limits = crate::config::SessionConfig::default().limits();
        let (tx, rx) = mpsc::unbounded_channel();
        let (events_tx, _events) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(
            Counting::default(),
            0,
            rx,
            events_tx,
            4 << 20,
            Some(Sessions::new(limits)),
        ));
        let value = |v: u64| codec::encode(&v).unwrap();
        let mut replies = Vec::new();
        let mut batch = Vec::new();
        let entries = [
            EntryPayload::Internal(stamped(record::open(), 10)),
            EntryPayload::Normal(value(7)),
            EntryPayload::Internal(stamped(record::command(1, 1, 0, &value(8)), 11)),
            EntryPayload::Internal(stamped(record::command(1, 1, 0, &value(8)), 12)),
            EntryPayload::Internal(stamped(record::command(1, 2, 0, &value(9)), 12)),
        ];
        for (i, payload) in entries.into_iter().enumerate() {
            let (reply, rx) = oneshot::channel();
            replies.push(rx);
            batch.push((Entry::new(1, i as u64 + 1, payload), Some(Responder::Raw(reply))));
        }
        tx.send(ApplyMsg::Entries(batch)).unwrap();
        let (stop, stopped) = oneshot::channel();
        tx.send(ApplyMsg::Stop(stop)).unwrap();
        let sm = stopped.await.unwrap();
        task.await.unwrap();
        let mut answers = Vec::new();
        for rx in replies {
            answers.push(rx.await.unwrap().unwrap());
        }
        assert_eq!(
            answers[0],
            Bytes::copy_from_slice(&1u64.to_le_bytes()),
            "the session's id"
        );
        let decoded: Vec<u64> = answers[1..].iter().map(|b| codec::decode(b).unwrap()).collect();
        assert_eq!(
            decoded,
            vec![1, 2, 2, 3],
            "the retry answers what its first copy did"
        );
        assert_eq!(sm.commands, vec![7, 8, 9]);
        assert_eq!(sm.calls, 2, "the batch was split before the retry");
    }

    /// One entry of a generated log.
    #[derive(Clone, Debug)]
    enum Op {
        Open(u64),
        Command {
            session: usize,
            seq: u64,
            acked: u64,
            stamp: u64,
        },
        Plain,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0..3_000u64).prop_map(Op::Open),
            (0..3usize, 1..6u64, 0..5u64, 0..3_000u64).prop_map(|(session, seq, acked, stamp)| Op::Command {
                session,
                seq,
                acked,
                stamp
            }),
            Just(Op::Plain),
        ]
    }

    /// Applies `ops` in batches cut where `cuts` says, and returns every entry's answer,
    /// the commands the state machine applied, and the session table, encoded.
    async fn apply_in_batches(
        ops: &[Op],
        cuts: &[bool],
    ) -> (Vec<Result<Bytes, ProposeError>>, Vec<u64>, Bytes) {
        let limits = crate::sessions::Limits {
            max_sessions: 2,
            max_pending: 3,
            max_pending_bytes: 2,
            timeout: 1_000,
        };
        let (events, _rx) = mpsc::unbounded_channel();
        let mut sm = Counting::default();
        let mut applied = 0;
        let mut sessions = Some(Sessions::new(limits));
        let mut opened = Vec::new();
        let mut call = Call::new();
        let mut replies = Vec::new();
        let mut batch = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let index = i as u64 + 1;
            let payload = match *op {
                Op::Open(stamp) => {
                    opened.push(index);
                    EntryPayload::Internal(stamped(record::open(), stamp))
                }
                Op::Command {
                    session,
                    seq,
                    acked,
                    stamp,
                } => {
                    let id = opened.get(session).copied().unwrap_or(999);
                    let command = codec::encode(&index).unwrap();
                    EntryPayload::Internal(stamped(record::command(id, seq, acked, &command), stamp))
                }
                Op::Plain => EntryPayload::Normal(codec::encode(&index).unwrap()),
            };
            let (reply, rx) = oneshot::channel();
            replies.push(rx);
            batch.push((Entry::new(1, index, payload), Some(Responder::Raw(reply))));
            if cuts.get(i).copied().unwrap_or(true) || i + 1 == ops.len() {
                let mut remote = Vec::new();
                apply_batch(
                    &mut sm,
                    &mut applied,
                    std::mem::take(&mut batch),
                    &mut remote,
                    &events,
                    &mut sessions,
                    &mut call,
                )
                .await
                .unwrap();
            }
        }
        let mut answers = Vec::new();
        for rx in replies {
            answers.push(rx.await.unwrap());
        }
        (answers, sm.commands, sessions.unwrap().encode().unwrap())
    }

    proptest::proptest! {
        /// The session table and every answer are a function of the log alone: applying
        /// the same entries in one batch, one at a time, or cut anywhere gives the same
        /// answers, the same commands applied and the same table, as every node must.
        #[test]
        fn sessions_do_not_depend_on_how_entries_are_batched(
            ops in proptest::collection::vec(op(), 1..60),
            cuts in proptest::collection::vec(proptest::bool::weighted(0.2), 60),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let one_by_one = rt.block_on(apply_in_batches(&ops, &[true; 60]));
            let whole = rt.block_on(apply_in_batches(&ops, &[false; 60]));
            let cut = rt.block_on(apply_in_batches(&ops, &cuts));
            proptest::prop_assert_eq!(&whole, &one_by_one);
            proptest::prop_assert_eq!(&cut, &one_by_one);
        }
    }
}
