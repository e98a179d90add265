//! The persist pipeline: the protocol's write batches on their way to the log store.
//!
//! The protocol hands out batches in order, each with a token and with the messages that
//! may leave only once the batch is durable (DESIGN.md, "persistence ordering"). The store
//! completes writes in order. This keeps the batches in flight, lets a batch with nothing to
//! write ride on the write before it (so it costs no write of its own), pairs a received
//! snapshot's data with the batch that installs it, and checks that completions come back
//! in the order the writes went out.

use std::collections::{BTreeMap, VecDeque};

use raft_core::{Index, Message, Persist, PersistToken, SnapshotMeta};

use crate::error::PipelineError;
use crate::snapshot_stream::SnapshotStream;
use crate::store::{LogWrite, Staged, StagedSnapshot};

/// Snapshots received from leaders and staged in the store, kept while the protocol
/// decides on them.
const STAGED: usize = 2;

/// A snapshot the state machine restores once its write is durable: its metadata and the
/// staged data, opened when it was staged.
pub(crate) struct Restore {
    pub(crate) meta: SnapshotMeta,
    pub(crate) data: SnapshotStream,
}

struct InflightWrite {
    token: u64,
    /// The token to report when this write is durable: later empty batches ride on it.
    report: u64,
    messages: Vec<Message>,
    restore: Option<Restore>,
}

/// What to do with a batch the protocol handed out.
// Returned once per batch and taken apart at once: boxing the write would only add an
// allocation per batch.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Begin {
    /// Write this to the store, and report `token` when it is durable.
    Write { token: u64, write: LogWrite },
    /// Nothing to write and nothing in flight: report `token` as durable and send the
    /// messages now.
    Durable {
        token: PersistToken,
        messages: Vec<Message>,
    },
    /// Nothing to write: it completes with the write in flight before it.
    RidesAlong,
}

/// A write that became durable.
pub(crate) struct Durable {
    /// The token to report to the protocol (the latest batch that rode along, if any).
    pub(crate) report: PersistToken,
    /// Messages that waited for it.
    pub(crate) messages: Vec<Message>,
    /// The snapshot it installed, for the state machine.
    pub(crate) restore: Option<Restore>,
}

/// The batches between the protocol and the store.
#[derive(Default)]
pub(crate) struct Pipeline {
    inflight: VecDeque<InflightWrite>,
    /// Staged snapshots by index, until the protocol installs one.
    staged: BTreeMap<Index, Staged>,
}

impl Pipeline {
    /// Writes in flight.
    pub(crate) fn len(&self) -> usize {
        self.inflight.len()
    }

    /// Whether no write is in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.inflight.is_empty()
    }

    /// Keeps a staged snapshot until the protocol installs it (or a newer one). Returns the
    /// staged snapshots given up to make room (or replaced), for the store to discard.
    pub(crate) fn stage(&mut self, staged: Staged) -> Vec<StagedSnapshot> {
        let mut given_up = Vec::new();
        if let Some(old) = self.staged.insert(staged.snapshot.meta.index, staged) {
            given_up.push(old.snapshot);
        }
        while self.staged.len() > STAGED {
            if let Some((_, old)) = self.staged.pop_first() {
                given_up.push(old.snapshot);
            }
        }
        given_up
    }

    /// Gives up every staged snapshot (the node stops), for the store to discard.
    pub(crate) fn take_staged(&mut self) -> Vec<StagedSnapshot> {
        std::mem::take(&mut self.staged)
            .into_values()
            .map(|s| s.snapshot)
            .collect()
    }

    /// Takes a batch from the protocol.
    pub(crate) fn begin(&mut self, p: Persist) -> Result<Begin, PipelineError> {
        let token = p.token.0;
        if p.is_empty() {
            return Ok(match self.inflight.back_mut() {
                Some(last) => {
                    last.messages.extend(p.messages);
                    last.report = token;
                    Begin::RidesAlong
                }
                None => Begin::Durable {
                    token: p.token,
                    messages: p.messages,
                },
            });
        }
        let (snapshot, restore) = match p.snapshot {
            Some(meta) => {
                let staged = self
                    .staged
                    .remove(&meta.index)
                    .filter(|s| s.snapshot.meta == meta)
                    .ok_or(PipelineError::SnapshotWithoutData(meta.index))?;
                (
                    Some(staged.snapshot),
                    Some(Restore {
                        meta,
                        data: staged.data,
                    }),
                )
            }
            None => (None, None),
        };
        self.inflight.push_back(InflightWrite {
            token,
            report: token,
            messages: p.messages,
            restore,
        });
        Ok(Begin::Write {
            token,
            write: LogWrite {
                snapshot,
                entries: p.entries,
                hard_state: p.hard_state,
            },
        })
    }

    /// The store reports the write `token` durable.
    pub(crate) fn complete(&mut self, token: u64) -> Result<Durable, PipelineError> {
        let expected = self
            .inflight
            .front()
            .map(|w| w.token)
            .ok_or(PipelineError::UnknownWrite(token))?;
        if expected != token {
            return Err(PipelineError::OutOfOrder { got: token, expected });
        }
        let w = self.inflight.pop_front().expect("checked");
        Ok(Durable {
            report: PersistToken(w.report),
            messages: w.messages,
            restore: w.restore,
        })
    }
}

#[cfg(test)]
mod tests {
    use raft_core::{ConfState, Entry, EntryPayload, HardState, MessageBody, SnapshotMeta};

    use super::*;

    fn message(to: u64) -> Message {
        Message {
            from: 1,
            to,
            term: 1,
            body: MessageBody::TimeoutNow,
        }
    }

    fn batch(token: u64, entries: u64, messages: Vec<Message>) -> Persist {
        Persist {
            token: PersistToken(token),
            snapshot: None,
            entries: (1..=entries)
                .map(|i| Entry::new(1, i, EntryPayload::Empty))
                .collect(),
            hard_state: None,
            messages,
        }
    }

    #[test]
    fn an_empty_batch_rides_on_the_write_before_it() {
        let mut p = Pipeline::default();
        assert!(matches!(
            p.begin(batch(1, 2, vec![message(2)])),
            Ok(Begin::Write { token: 1, .. })
        ));
        assert!(matches!(
            p.begin(batch(2, 0, vec![message(3)])),
            Ok(Begin::RidesAlong)
        ));
        assert_eq!(p.len(), 1);
        let done = p.complete(1).unwrap();
        assert_eq!(done.report, PersistToken(2), "the rider's token is reported");
        assert_eq!(done.messages.iter().map(|m| m.to).collect::<Vec<_>>(), vec![2, 3]);
        assert!(p.is_empty());
    }

    #[test]
    fn an_empty_batch_with_nothing_in_flight_is_durable_at_once() {
        let mut p = Pipeline::default();
        match p.begin(batch(1, 0, vec![message(2)])) {
            Ok(Begin::Durable { token, messages }) => {
                assert_eq!(token, PersistToken(1));
                assert_eq!(messages.len(), 1);
            }
            _ => panic!("expected Durable"),
        }
    }

    #[test]
    fn completions_out_of_order_or_unknown_are_errors() {
        let mut p = Pipeline::default();
        assert_eq!(p.complete(1).err(), Some(PipelineError::UnknownWrite(1)));
        p.begin(batch(1, 1, vec![])).ok();
        p.begin(batch(2, 1, vec![])).ok();
        assert_eq!(
            p.complete(2).err(),
            Some(PipelineError::OutOfOrder { got: 2, expected: 1 })
        );
    }

    #[test]
    fn a_snapshot_batch_takes_its_staged_data_and_fails_without_it() {
        let mut p = Pipeline::default();
        let meta = |index| SnapshotMeta {
            index,
            term: 1,
            conf_state: ConfState::with_voters([1, 2]),
        };
        let with_snapshot = |token, index| Persist {
            token: PersistToken(token),
            snapshot: Some(meta(index)),
            entries: vec![],
            hard_state: Some(HardState {
                term: 1,
                vote: None,
                commit: index,
            }),
            messages: vec![],
        };
        let staged = |index: u64| Staged {
            snapshot: StagedSnapshot {
                meta: meta(index),
                id: index / 10,
            },
            data: SnapshotStream::from_bytes(vec![(index / 10) as u8]),
        };
        // Only the newest staged snapshots are kept; the others are given up.
        assert!(p.stage(staged(10)).is_empty());
        assert!(p.stage(staged(20)).is_empty());
        let given_up = p.stage(staged(30));
        assert_eq!(given_up.iter().map(|s| s.id).collect::<Vec<_>>(), vec![1]);
        assert_eq!(
            p.begin(with_snapshot(1, 10)).err(),
            Some(PipelineError::SnapshotWithoutData(10))
        );
        match p.begin(with_snapshot(2, 30)) {
            Ok(Begin::Write { write, .. }) => assert_eq!(write.snapshot.map(|s| s.id), Some(3)),
            _ => panic!("expected a write"),
        }
        let done = p.complete(2).unwrap();
        let restore = done.restore.expect("the snapshot to install");
        assert_eq!(restore.meta.index, 30);
        let data = futures::executor::block_on(restore.data.into_bytes(16)).unwrap();
        assert_eq!(&data[..], &[3u8]);
        assert_eq!(p.take_staged().iter().map(|s| s.id).collect::<Vec<_>>(), vec![2]);
    }
}
