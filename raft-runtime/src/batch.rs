//! Answers to a batch of proposals made in one call ([`Raft::propose_batch`]).
//!
//! Each command of a batch becomes a proposal of its own, with a [`Slot`] as its
//! responder; the caller waits on one channel, which receives every answer, in the
//! batch's order, once the last slot is filled. A slot dropped without an answer (its
//! proposal was lost in a way nobody answered) counts as an unknown outcome, as a dropped
//! reply channel does for a single proposal: the caller never waits for an answer that
//! cannot come.
//!
//! [`Raft::propose_batch`]: crate::Raft::propose_batch

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::error::{ProposeError, UnknownOutcome};

/// Every answer of a batch, in its order.
pub(crate) type Answers<R> = Vec<Result<R, ProposeError>>;

/// The answers filled so far, and where they go when complete.
struct Filling<R> {
    answers: Vec<Option<Result<R, ProposeError>>>,
    /// Slots not yet filled.
    missing: usize,
    done: Option<oneshot::Sender<Answers<R>>>,
}

/// One command's place in a batch.
pub(crate) struct Slot<R> {
    batch: Arc<Mutex<Filling<R>>>,
    at: usize,
    answered: bool,
}

/// Makes a batch of `len` answers, of which those `given` are known already (a command that
/// could not be encoded). Returns a slot for each answer still missing, in order, and the
/// channel the answers arrive on.
pub(crate) fn new<R>(
    len: usize,
    given: impl IntoIterator<Item = (usize, Result<R, ProposeError>)>,
) -> (Vec<Slot<R>>, oneshot::Receiver<Answers<R>>) {
    let (tx, rx) = oneshot::channel();
    let mut answers: Vec<Option<Result<R, ProposeError>>> = (0..len).map(|_| None).collect();
    for (at, answer) in given {
        if let Some(a) = answers.get_mut(at) {
            *a = Some(answer);
        }
    }
    let open: Vec<usize> = (0..len).filter(|&at| answers[at].is_none()).collect();
    let batch = Arc::new(Mutex::new(Filling {
        answers,
        missing: open.len(),
        done: Some(tx),
    }));
    if open.is_empty() {
        complete(&mut batch.lock().unwrap_or_else(|p| p.into_inner()));
    }
    let slots = open
        .into_iter()
        .map(|at| Slot {
            batch: batch.clone(),
            at,
            answered: false,
        })
        .collect();
    (slots, rx)
}

/// Sends the answers once every slot is filled.
fn complete<R>(filling: &mut Filling<R>) {
    if filling.missing != 0 {
        return;
    }
    if let Some(done) = filling.done.take() {
        let answers = std::mem::take(&mut filling.answers)
            .into_iter()
            .map(|a| a.unwrap_or(Err(ProposeError::Unknown(UnknownOutcome::ShutDown))))
            .collect();
        let _ = done.send(answers);
    }
}

/// Where a local caller's answer to a command goes: its own reply channel, or its place
/// in a batch. Everything that answers a command (the applier, a forwarded command's
/// reply, a refusal) answers through this, whichever way the command came.
pub(crate) enum LocalReply<R> {
    /// A command proposed alone.
    One(oneshot::Sender<Result<R, ProposeError>>),
    /// A command of a batch.
    InBatch(Slot<R>),
}

impl<R> LocalReply<R> {
    /// Delivers the command's outcome.
    pub(crate) fn send(self, outcome: Result<R, ProposeError>) {
        match self {
            LocalReply::One(tx) => {
                let _ = tx.send(outcome);
            }
            LocalReply::InBatch(slot) => slot.answer(outcome),
        }
    }
}

impl<R> Slot<R> {
    /// Fills this slot with its command's outcome.
    pub(crate) fn answer(mut self, outcome: Result<R, ProposeError>) {
        self.fill(outcome);
    }

    fn fill(&mut self, outcome: Result<R, ProposeError>) {
        if std::mem::replace(&mut self.answered, true) {
            return;
        }
        // A panic elsewhere while the lock was held leaves the answers as they were: still
        // worth delivering.
        let mut filling = self.batch.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = filling.answers.get_mut(self.at)
            && a.is_none()
        {
            *a = Some(outcome);
            filling.missing = filling.missing.saturating_sub(1);
        }
        complete(&mut filling);
    }
}

impl<R> Drop for Slot<R> {
    fn drop(&mut self) {
        if !self.answered {
            self.fill(Err(ProposeError::Unknown(UnknownOutcome::ShutDown)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::BusyReason;

    #[tokio::test]
    async fn answers_arrive_in_order_once_the_last_slot_is_filled() {
        let (mut slots, mut rx) = new::<u32>(4, [(1, Err(ProposeError::Dropped))]);
        assert_eq!(slots.len(), 3);
        let last = slots.pop().unwrap();
        last.answer(Ok(3));
        let first = slots.remove(0);
        first.answer(Ok(0));
        assert!(rx.try_recv().is_err(), "one slot is still open");
        slots
            .pop()
            .unwrap()
            .answer(Err(ProposeError::Busy(BusyReason::Mailbox)));
        let answers = rx.await.unwrap();
        assert!(matches!(answers[0], Ok(0)));
        assert!(matches!(answers[1], Err(ProposeError::Dropped)));
        assert!(matches!(answers[2], Err(ProposeError::Busy(BusyReason::Mailbox))));
        assert!(matches!(answers[3], Ok(3)));
    }

    #[tokio::test]
    async fn a_dropped_slot_is_an_unknown_outcome_not_a_hang() {
        let (mut slots, rx) = new::<u32>(2, []);
        slots.remove(0).answer(Ok(7));
        drop(slots);
        let answers = rx.await.unwrap();
        assert!(matches!(answers[0], Ok(7)));
        assert!(matches!(
            answers[1],
            Err(ProposeError::Unknown(UnknownOutcome::ShutDown))
        ));
    }

    #[tokio::test]
    async fn a_batch_known_in_full_is_answered_at_once() {
        let (slots, rx) = new::<u32>(1, [(0, Err(ProposeError::Dropped))]);
        assert!(slots.is_empty());
        assert!(matches!(rx.await.unwrap()[0], Err(ProposeError::Dropped)));
        let (slots, rx) = new::<u32>(0, []);
        assert!(slots.is_empty());
        assert!(rx.await.unwrap().is_empty());
    }
}
