//! Client sessions: the table that lets the applier apply a retried command at most once
//! (the Raft dissertation, section 6.3).
//!
//! A session is opened through the log; its id is the index of the entry that opened it, so
//! every node gives it the same id. Each command in a session carries the session, a
//! sequence number the client picks (increasing), and the sequence up to which the client
//! has its answers. The table keeps, per session, the encoded responses of the commands
//! applied and not yet acknowledged: a retry of one of them is answered from the table and
//! not applied again.
//!
//! Everything here is a pure function of the entries applied, in log order, so every node
//! holds the same table at the same index:
//!
//! - **Time** is what the leader stamped into each session entry, never a node's clock. The
//!   table's clock is the largest stamp seen so far, so a new leader whose clock is behind
//!   cannot bring an expired session back.
//! - **Expiry**: a session unused for longer than the timeout (by that clock) is dropped the
//!   next time a session entry advances the clock. A command of a dropped session is
//!   refused as expired and not applied.
//! - **Bounds**: at most `max_sessions` sessions (an open past it is refused, and nothing
//!   is registered), and per session at most `max_pending` responses held and about
//!   `max_pending_bytes` of them (a command past either is refused as busy, not applied,
//!   until the client acknowledges answers it has).
//!
//! The table lives in snapshots: [`Sessions::encode`] and [`Sessions::decode`], the latter
//! checking every field of what may be a hostile or corrupt file.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use raft_core::Index;
use serde::{Deserialize, Serialize};

use crate::codec;

/// A session's id: the log index of the entry that opened it.
pub(crate) type SessionId = Index;

/// A client's sequence number for a command within its session.
pub(crate) type Seq = u64;

/// Milliseconds, as stamped into session entries by the leader that appended them.
pub(crate) type Millis = u64;

/// The clock a leader stamps session records with, in milliseconds.
pub(crate) type WallClock = std::sync::Arc<dyn Fn() -> Millis + Send + Sync>;

/// The system's clock: milliseconds since the UNIX epoch (0 before it).
pub(crate) fn system_clock() -> WallClock {
    std::sync::Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    })
}

/// The bounds and the timeout of a table. Every node of a cluster must use the same: they
/// decide what is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Sessions held at most.
    pub max_sessions: usize,
    /// Responses held per session at most (applied, not yet acknowledged by the client).
    pub max_pending: usize,
    /// Bytes of encoded responses held per session; a command is admitted while the
    /// session holds less, so the held bytes exceed this by at most one response.
    pub max_pending_bytes: usize,
    /// How long a session may go unused before it expires.
    pub timeout: Millis,
}

/// What the table says about a command in a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Not applied before: apply it, then [`Sessions::record`] its response.
    Apply,
    /// Applied before: this is its response, encoded. Do not apply it again.
    Duplicate(Bytes),
    /// The session is unknown: it expired, or it never existed. Not applied.
    Expired,
    /// The client said it has the answers up to `acked`, and this command's sequence is
    /// not past it: a stale retry, whose response is no longer held. Not applied now.
    Acknowledged {
        /// The sequence the session's answers are acknowledged up to.
        acked: Seq,
    },
    /// The session holds as many responses as it may; the client must acknowledge some
    /// first. Not applied.
    Busy,
}

/// Why a session could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenRefused {
    /// The table holds `max_sessions` sessions. Nothing was registered.
    Full,
}

/// Why stored session state was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The bytes do not decode as a session table.
    #[error("the session table does not decode: {0}")]
    Malformed(String),
    /// They decode, but break an invariant the table keeps.
    #[error("the session table is inconsistent: {0}")]
    Inconsistent(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    /// The table's clock when the session was last used.
    last_used: Millis,
    /// The client has its answers for every sequence up to this one.
    acked: Seq,
    /// Encoded responses of commands applied after `acked`, by sequence.
    responses: BTreeMap<Seq, Bytes>,
    /// The sum of `responses`' lengths.
    bytes: usize,
}

/// The session table. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sessions {
    limits: Limits,
    /// The largest time stamp applied.
    clock: Millis,
    sessions: BTreeMap<SessionId, Session>,
    /// `(last_used, id)` of every session, oldest first, for expiry.
    by_use: BTreeSet<(Millis, SessionId)>,
}

/// The form a table takes in a snapshot.
#[derive(Serialize, Deserialize)]
struct Stored {
    clock: Millis,
    sessions: Vec<(SessionId, Session)>,
}

impl Sessions {
    /// An empty table.
    pub(crate) fn new(limits: Limits) -> Sessions {
        Sessions {
            limits,
            clock: 0,
            sessions: BTreeMap::new(),
            by_use: BTreeSet::new(),
        }
    }

    /// The table's bounds and timeout.
    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// How many sessions the table holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// The table's clock: the largest time stamp applied.
    #[cfg(test)]
    pub(crate) fn clock(&self) -> Millis {
        self.clock
    }

    /// Moves the clock to `stamp` if that is later, and drops the sessions that have been
    /// unused for longer than the timeout since. Returns how many were dropped.
    pub(crate) fn advance(&mut self, stamp: Millis) -> usize {
        self.clock = self.clock.max(stamp);
        let mut dropped = 0;
        while let Some(&(used, id)) = self.by_use.first() {
            if self.clock.saturating_sub(used) <= self.limits.timeout {
                break;
            }
            self.by_use.pop_first();
            self.sessions.remove(&id);
            dropped += 1;
        }
        dropped
    }

    /// Opens session `id` (the index of the entry that opens it) at time `stamp`.
    pub(crate) fn open(&mut self, id: SessionId, stamp: Millis) -> Result<(), OpenRefused> {
        self.advance(stamp);
        if self.sessions.contains_key(&id) {
            // An index opens at most one session; applying it again changes nothing.
            return Ok(());
        }
        if self.sessions.len() >= self.limits.max_sessions {
            return Err(OpenRefused::Full);
        }
        let session = Session {
            last_used: self.clock,
            ..Session::default()
        };
        self.by_use.insert((session.last_used, id));
        self.sessions.insert(id, session);
        Ok(())
    }

    /// Decides about command `seq` of session `id`, whose client has its answers up to
    /// `acked`, stamped `stamp`. The responses the client acknowledged are dropped first,
    /// and the session counts as used (unless it is unknown).
    pub(crate) fn admit(&mut self, id: SessionId, seq: Seq, acked: Seq, stamp: Millis) -> Admit {
        self.advance(stamp);
        let clock = self.clock;
        let Some(session) = self.sessions.get_mut(&id) else {
            return Admit::Expired;
        };
        if session.last_used != clock {
            self.by_use.remove(&(session.last_used, id));
            session.last_used = clock;
            self.by_use.insert((clock, id));
        }
        if acked > session.acked {
            session.acked = acked;
            // Usually one response, the oldest: dropped in place.
            while let Some(held) = session.responses.first_entry() {
                if *held.key() > acked {
                    break;
                }
                session.bytes -= held.remove().len();
            }
        }
        if seq <= session.acked {
            return Admit::Acknowledged { acked: session.acked };
        }
        if let Some(response) = session.responses.get(&seq) {
            return Admit::Duplicate(response.clone());
        }
        if session.responses.len() >= self.limits.max_pending
            || session.bytes >= self.limits.max_pending_bytes
        {
            return Admit::Busy;
        }
        Admit::Apply
    }

    /// Holds the encoded `response` of command `seq` of session `id`, which
    /// [`Sessions::admit`] told the caller to apply. A session that is gone by now (it
    /// cannot be, within one entry) is ignored.
    pub(crate) fn record(&mut self, id: SessionId, seq: Seq, response: Bytes) {
        if let Some(session) = self.sessions.get_mut(&id)
            // Acknowledged meanwhile (not within one entry either): not needed any more.
            && seq > session.acked
        {
            session.bytes += response.len();
            if let Some(old) = session.responses.insert(seq, response) {
                session.bytes -= old.len();
            }
        }
    }

    /// The table as it goes into a snapshot.
    pub(crate) fn encode(&self) -> Result<Bytes, String> {
        codec::encode(&Stored {
            clock: self.clock,
            sessions: self.sessions.iter().map(|(&id, s)| (id, s.clone())).collect(),
        })
    }

    /// A table read back from a snapshot, with these limits. Everything is checked: the
    /// bytes may come from a corrupt file or a hostile peer.
    pub(crate) fn decode(bytes: &[u8], limits: Limits) -> Result<Sessions, DecodeError> {
        let stored: Stored = codec::decode(bytes).map_err(DecodeError::Malformed)?;
        let mut table = Sessions::new(limits);
        table.clock = stored.clock;
        for (id, session) in stored.sessions {
            if session.last_used > stored.clock {
                return Err(DecodeError::Inconsistent(format!(
                    "session {id} was last used at {}, after the table's clock {}",
                    session.last_used, stored.clock
                )));
            }
            if let Some((&first, _)) = session.responses.first_key_value()
                && first <= session.acked
            {
                return Err(DecodeError::Inconsistent(format!(
                    "session {id} holds the response of {first}, acknowledged up to {}",
                    session.acked
                )));
            }
            let bytes = session.responses.values().map(Bytes::len).sum::<usize>();
            if bytes != session.bytes {
                return Err(DecodeError::Inconsistent(format!(
                    "session {id} counts {} bytes of responses, holds {bytes}",
                    session.bytes
                )));
            }
            table.by_use.insert((session.last_used, id));
            if table.sessions.insert(id, session).is_some() {
                return Err(DecodeError::Inconsistent(format!("session {id} appears twice")));
            }
        }
        // A table stored under larger limits is kept whole: what it holds was admitted
        // under them, and dropping any of it could apply a retried command twice.
        Ok(table)
    }
}

/// The runtime's own records, carried in [`EntryPayload::Internal`](raft_core::EntryPayload)
/// entries. Each starts with a kind byte; session records (the only kind so far) then hold
/// the leader's time stamp and the operation, laid out by hand so that a command's bytes
/// are a slice of the entry's buffer, not a copy:
///
/// ```text
/// open:    [1] [stamp: u64 LE] [0]
/// command: [1] [stamp: u64 LE] [1] [session: u64 LE] [seq: u64 LE] [acked: u64 LE] [command...]
/// ```
///
/// A handle builds a record with a zero stamp; the leader that appends it writes its clock
/// into the stamp ([`stamp`]), so that time in the table is always a leader's.
pub(crate) mod record {
    use bytes::{BufMut, Bytes, BytesMut};

    use super::{Millis, Seq, SessionId};

    /// The kind byte of a session record.
    const SESSION: u8 = 1;
    const OPEN: u8 = 0;
    const COMMAND: u8 = 1;
    /// The kind byte and the stamp.
    const STAMPED: usize = 9;
    /// The header of a command record, up to its command bytes.
    const COMMAND_HEADER: usize = STAMPED + 1 + 24;

    /// A decoded session record.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub(crate) enum Record {
        /// Open a session; its id is the index of this entry.
        Open {
            /// The leader's time.
            stamp: Millis,
        },
        /// A command in a session.
        Command {
            /// The leader's time.
            stamp: Millis,
            /// The session.
            session: SessionId,
            /// The command's sequence number.
            seq: Seq,
            /// The client has its answers up to this sequence.
            acked: Seq,
            /// The encoded command, a slice of the entry.
            command: Bytes,
        },
    }

    /// A record opening a session, not yet stamped.
    pub(crate) fn open() -> BytesMut {
        let mut b = BytesMut::with_capacity(STAMPED + 1);
        b.put_u8(SESSION);
        b.put_u64_le(0);
        b.put_u8(OPEN);
        b
    }

    /// A record carrying `command` (encoded) in a session, not yet stamped.
    pub(crate) fn command(session: SessionId, seq: Seq, acked: Seq, command: &[u8]) -> BytesMut {
        let mut b = BytesMut::with_capacity(COMMAND_HEADER + command.len());
        b.put_u8(SESSION);
        b.put_u64_le(0);
        b.put_u8(COMMAND);
        b.put_u64_le(session);
        b.put_u64_le(seq);
        b.put_u64_le(acked);
        b.extend_from_slice(command);
        b
    }

    /// Writes the leader's time into a record a handle built (or a follower forwarded).
    /// Refuses bytes that are not a session record, naming what is wrong.
    pub(crate) fn stamp(record: &mut [u8], now: Millis) -> Result<(), String> {
        if record.len() <= STAMPED || record[0] != SESSION {
            return Err(format!(
                "not a session record ({} bytes, kind {:?})",
                record.len(),
                record.first()
            ));
        }
        record[1..STAMPED].copy_from_slice(&now.to_le_bytes());
        Ok(())
    }

    fn u64_at(data: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(data[at..at + 8].try_into().expect("eight bytes"))
    }

    /// Reads a record from an entry. Every node reads the same entry alike, so a record it
    /// refuses is refused everywhere.
    pub(crate) fn decode(data: &Bytes) -> Result<Record, String> {
        if data.len() <= STAMPED {
            return Err(format!("a runtime record of {} bytes is too short", data.len()));
        }
        if data[0] != SESSION {
            return Err(format!("unknown runtime record kind {}", data[0]));
        }
        let stamp = u64_at(data, 1);
        match data[STAMPED] {
            OPEN if data.len() == STAMPED + 1 => Ok(Record::Open { stamp }),
            OPEN => Err(format!("a session open record of {} bytes", data.len())),
            COMMAND if data.len() >= COMMAND_HEADER => Ok(Record::Command {
                stamp,
                session: u64_at(data, STAMPED + 1),
                seq: u64_at(data, STAMPED + 9),
                acked: u64_at(data, STAMPED + 17),
                command: data.slice(COMMAND_HEADER..),
            }),
            COMMAND => Err(format!(
                "a session command record of {} bytes is too short",
                data.len()
            )),
            op => Err(format!("unknown session operation {op}")),
        }
    }
}

/// A snapshot of a node with sessions: the session table, then the state machine's own
/// data. The table goes first, framed as `[MAGIC] [length: u64 LE] [table]`, so that it is
/// read off the front of the stream and the rest is handed to the state machine as it comes.
pub(crate) mod snapshot {
    use std::io;

    use bytes::{Buf, Bytes, BytesMut};
    use futures::StreamExt;

    use super::{Limits, Sessions};
    use crate::snapshot_stream::SnapshotStream;

    /// Marks a snapshot that starts with a session table.
    const MAGIC: &[u8; 8] = b"RSESSNS1";
    const HEADER: usize = MAGIC.len() + 8;

    /// The snapshot stream of a node with sessions: `table` in front of `data`.
    pub(crate) fn wrap(table: &Sessions, data: SnapshotStream) -> Result<SnapshotStream, String> {
        let encoded = table.encode()?;
        let mut head = BytesMut::with_capacity(HEADER + encoded.len());
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&(encoded.len() as u64).to_le_bytes());
        head.extend_from_slice(&encoded);
        let head = futures::stream::once(async move { Ok(head.freeze()) });
        Ok(SnapshotStream::new(head.chain(data)))
    }

    /// The largest table `limits` allow, encoded: a bound on what is read before decoding.
    fn largest(limits: &Limits) -> u64 {
        // Per session: its fields and, per held response, a sequence number and a length
        // (at most ten bytes each as variable-length integers), plus the held bytes, which
        // may pass the bound by one response (itself bounded by the codec's limit).
        let per_session = 64u64
            .saturating_add((limits.max_pending as u64).saturating_mul(20))
            .saturating_add(limits.max_pending_bytes as u64)
            .saturating_add(64 << 20);
        (limits.max_sessions as u64)
            .saturating_mul(per_session)
            .saturating_add(64)
    }

    /// Reads chunks of `data` into `buf` until it holds at least `n` bytes; `false` if the
    /// stream ends first.
    async fn fill(data: &mut SnapshotStream, buf: &mut BytesMut, n: usize) -> io::Result<bool> {
        while buf.len() < n {
            match data.next_chunk().await? {
                Some(chunk) => buf.extend_from_slice(&chunk),
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Splits a snapshot taken with [`wrap`]: the table, decoded and checked, and the state
    /// machine's data, the rest of the stream. A snapshot without a table, or with one
    /// that is corrupt or larger than `limits` allow, is refused with what is wrong.
    pub(crate) async fn split(
        mut data: SnapshotStream,
        limits: Limits,
    ) -> io::Result<(Sessions, SnapshotStream)> {
        let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
        let not_a_table = || {
            invalid(
                "the snapshot does not start with a session table (was it taken with sessions off?)".into(),
            )
        };
        let ends_inside = |at: usize| {
            invalid(format!(
                "the snapshot ends after {at} bytes, inside its session table"
            ))
        };
        let mut buf = BytesMut::new();
        if !fill(&mut data, &mut buf, HEADER).await? {
            return Err(if MAGIC.starts_with(&buf[..buf.len().min(MAGIC.len())]) {
                ends_inside(buf.len())
            } else {
                not_a_table()
            });
        }
        if &buf[..MAGIC.len()] != MAGIC {
            return Err(not_a_table());
        }
        let len = u64::from_le_bytes(buf[MAGIC.len()..HEADER].try_into().expect("eight bytes"));
        if len > largest(&limits) {
            return Err(invalid(format!(
                "the snapshot's session table claims {len} bytes, more than the limits allow"
            )));
        }
        // Checked: a length that fits a u64 need not fit a usize.
        let table_len =
            usize::try_from(len).map_err(|_| invalid(format!("a session table of {len} bytes")))?;
        let end = HEADER.saturating_add(table_len);
        if !fill(&mut data, &mut buf, end).await? {
            return Err(ends_inside(buf.len()));
        }
        buf.advance(HEADER);
        let rest: Bytes = buf.split_off(table_len).freeze();
        let table = Sessions::decode(&buf, limits).map_err(|e| invalid(e.to_string()))?;
        let rest = futures::stream::iter((!rest.is_empty()).then_some(Ok(rest)));
        Ok((table, SnapshotStream::new(rest.chain(data))))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const LIMITS: Limits = Limits {
        max_sessions: 3,
        max_pending: 4,
        max_pending_bytes: 100,
        timeout: 1_000,
    };

    fn response(n: u64) -> Bytes {
        Bytes::from(n.to_le_bytes().to_vec())
    }

    #[test]
    fn a_retried_command_gets_the_first_response_and_is_not_applied_again() {
        let mut t = Sessions::new(LIMITS);
        t.open(10, 5).unwrap();
        assert_eq!(t.admit(10, 1, 0, 6), Admit::Apply);
        t.record(10, 1, response(41));
        assert_eq!(t.admit(10, 1, 0, 7), Admit::Duplicate(response(41)));
        assert_eq!(t.admit(10, 2, 0, 8), Admit::Apply);
        t.record(10, 2, response(42));
        // Out of order: an older retry still gets its own answer.
        assert_eq!(t.admit(10, 1, 0, 9), Admit::Duplicate(response(41)));
        assert_eq!(t.admit(10, 2, 0, 9), Admit::Duplicate(response(42)));
    }

    #[test]
    fn acknowledged_responses_are_dropped_and_their_retries_refused() {
        let mut t = Sessions::new(LIMITS);
        t.open(1, 0).unwrap();
        for seq in 1..=3 {
            assert_eq!(t.admit(1, seq, 0, 0), Admit::Apply);
            t.record(1, seq, response(seq));
        }
        assert_eq!(t.admit(1, 4, 2, 0), Admit::Apply);
        assert_eq!(
            t.sessions[&1].responses.keys().copied().collect::<Vec<_>>(),
            vec![3]
        );
        assert_eq!(t.sessions[&1].bytes, 8);
        assert_eq!(t.admit(1, 2, 0, 0), Admit::Acknowledged { acked: 2 });
        // An older acknowledgement does not move it back.
        assert_eq!(t.admit(1, 3, 1, 0), Admit::Duplicate(response(3)));
    }

    #[test]
    fn sessions_expire_by_the_stamped_clock_which_never_goes_back() {
        let mut t = Sessions::new(LIMITS);
        t.open(1, 10_000).unwrap();
        t.open(2, 10_500).unwrap();
        // A leader whose clock is behind stamps an earlier time: the clock stays.
        assert_eq!(t.admit(1, 1, 0, 3_000), Admit::Apply);
        assert_eq!(t.clock(), 10_500);
        // Exactly the timeout after its last use, a session is still there.
        assert_eq!(t.advance(11_500), 0);
        assert_eq!(t.len(), 2);
        assert_eq!(t.advance(11_501), 2);
        assert_eq!(t.admit(1, 2, 0, 11_501), Admit::Expired);
        assert_eq!(t.admit(2, 1, 0, 0), Admit::Expired);
    }

    #[test]
    fn use_keeps_a_session_alive() {
        let mut t = Sessions::new(LIMITS);
        t.open(1, 0).unwrap();
        t.open(2, 0).unwrap();
        for now in (500..=5_000).step_by(500) {
            assert_eq!(t.admit(1, now, 0, now), Admit::Apply, "at {now}");
            t.record(1, now, Bytes::new());
            assert_eq!(t.admit(1, now, now, now), Admit::Acknowledged { acked: now });
        }
        assert!(t.sessions.contains_key(&1));
        assert!(!t.sessions.contains_key(&2));
    }

    #[test]
    fn the_bounds_refuse_without_registering_or_applying() {
        let mut t = Sessions::new(LIMITS);
        for id in 1..=3 {
            t.open(id, 0).unwrap();
        }
        assert_eq!(t.open(4, 0), Err(OpenRefused::Full));
        assert_eq!(t.len(), 3);
        assert_eq!(t.admit(4, 1, 0, 0), Admit::Expired);
        // Reopening an index that opened a session changes nothing.
        t.open(3, 0).unwrap();
        // Responses held per session: by count.
        for seq in 1..=4 {
            assert_eq!(t.admit(1, seq, 0, 0), Admit::Apply);
            t.record(1, seq, Bytes::new());
        }
        assert_eq!(t.admit(1, 5, 0, 0), Admit::Busy);
        assert_eq!(t.admit(1, 5, 1, 0), Admit::Apply);
        // And by bytes: admitted while under the bound, so one response may pass it.
        assert_eq!(t.admit(2, 1, 0, 0), Admit::Apply);
        t.record(2, 1, Bytes::from(vec![0; 99]));
        assert_eq!(t.admit(2, 2, 0, 0), Admit::Apply);
        t.record(2, 2, Bytes::from(vec![0; 50]));
        assert_eq!(t.admit(2, 3, 0, 0), Admit::Busy);
        // Acknowledging the first answer leaves 50 bytes held: under the bound again.
        assert_eq!(t.admit(2, 3, 1, 0), Admit::Apply);
    }

    #[test]
    fn a_table_survives_its_snapshot_form_and_corrupt_forms_are_refused() {
        let mut t = Sessions::new(LIMITS);
        t.open(7, 100).unwrap();
        t.open(9, 200).unwrap();
        assert_eq!(t.admit(7, 1, 0, 300), Admit::Apply);
        t.record(7, 1, response(1));
        let bytes = t.encode().unwrap();
        let back = Sessions::decode(&bytes, LIMITS).unwrap();
        assert_eq!(back, t);

        assert!(matches!(
            Sessions::decode(&bytes[..bytes.len() - 1], LIMITS),
            Err(DecodeError::Malformed(_))
        ));
        let bad = |stored: Stored| Sessions::decode(&codec::encode(&stored).unwrap(), LIMITS);
        let session = |last_used, acked, responses: &[(Seq, u64)], bytes| Session {
            last_used,
            acked,
            responses: responses.iter().map(|&(s, r)| (s, response(r))).collect(),
            bytes,
        };
        for (stored, what) in [
            (
                Stored {
                    clock: 5,
                    sessions: vec![(1, session(6, 0, &[], 0))],
                },
                "after the table's clock",
            ),
            (
                Stored {
                    clock: 5,
                    sessions: vec![(1, session(5, 3, &[(3, 0)], 8))],
                },
                "acknowledged up to 3",
            ),
            (
                Stored {
                    clock: 5,
                    sessions: vec![(1, session(5, 0, &[(1, 0)], 7))],
                },
                "counts 7 bytes",
            ),
            (
                Stored {
                    clock: 5,
                    sessions: vec![(1, session(5, 0, &[], 0)), (1, session(4, 0, &[], 0))],
                },
                "appears twice",
            ),
        ] {
            match bad(stored) {
                Err(DecodeError::Inconsistent(m)) => assert!(m.contains(what), "{m}"),
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn records_round_trip_and_malformed_ones_are_named() {
        let mut open = record::open();
        record::stamp(&mut open, 77).unwrap();
        assert_eq!(
            record::decode(&open.freeze()),
            Ok(record::Record::Open { stamp: 77 })
        );
        let mut cmd = record::command(5, 6, 4, b"payload");
        record::stamp(&mut cmd, 78).unwrap();
        assert_eq!(
            record::decode(&cmd.clone().freeze()),
            Ok(record::Record::Command {
                stamp: 78,
                session: 5,
                seq: 6,
                acked: 4,
                command: Bytes::from_static(b"payload"),
            })
        );
        for (bytes, what) in [
            (&b""[..], "too short"),
            (
                &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
                "unknown runtime record kind 2",
            ),
            (&[1, 0, 0, 0, 0, 0, 0, 0, 0, 9][..], "unknown session operation 9"),
            (&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..], "open record of 11 bytes"),
            (&cmd[..20], "command record of 20 bytes is too short"),
        ] {
            let err = record::decode(&Bytes::copy_from_slice(bytes)).unwrap_err();
            assert!(err.contains(what), "{what}: {err}");
        }
        assert!(
            record::stamp(&mut [0u8; 10], 1)
                .unwrap_err()
                .contains("not a session record")
        );
    }

    #[tokio::test]
    async fn a_snapshot_carries_the_table_in_front_of_the_state_machines_data() {
        use crate::snapshot_stream::SnapshotStream;

        let mut t = Sessions::new(LIMITS);
        t.open(7, 100).unwrap();
        assert_eq!(t.admit(7, 1, 0, 300), Admit::Apply);
        t.record(7, 1, response(1));
        let data = SnapshotStream::from_bytes(Bytes::from_static(b"the state machine's own"));
        let whole = snapshot::wrap(&t, data)
            .unwrap()
            .into_bytes(1 << 20)
            .await
            .unwrap();
        // Read back one byte a chunk: the table spans many chunks, and the rest starts in
        // the middle of one.
        let chunked = |bytes: &[u8]| {
            let chunks: Vec<std::io::Result<Bytes>> =
                bytes.iter().map(|b| Ok(Bytes::copy_from_slice(&[*b]))).collect();
            SnapshotStream::new(futures::stream::iter(chunks))
        };
        let (back, rest) = snapshot::split(chunked(&whole), LIMITS).await.unwrap();
        assert_eq!(back, t);
        assert_eq!(
            &rest.into_bytes(1 << 20).await.unwrap()[..],
            b"the state machine's own"
        );

        for (bytes, what) in [
            (b"plain state".to_vec(), "does not start with a session table"),
            (whole[..20].to_vec(), "inside its session table"),
            (
                [&whole[..8], &u64::MAX.to_le_bytes()[..], &whole[16..]].concat(),
                "more than the limits allow",
            ),
        ] {
            let err = snapshot::split(chunked(&bytes), LIMITS).await.unwrap_err();
            assert!(err.to_string().contains(what), "{what}: {err}");
        }
        // A length one short of the table: what is read does not decode as one.
        let len = u64::from_le_bytes(whole[8..16].try_into().unwrap());
        let short = [&whole[..8], &(len - 1).to_le_bytes()[..], &whole[16..]].concat();
        let err = snapshot::split(chunked(&short), LIMITS).await.unwrap_err();
        assert!(err.to_string().contains("does not decode"), "{err}");
    }

    /// One step a log may hold.
    #[derive(Clone, Debug)]
    enum Step {
        Open(Millis),
        Command {
            session: u8,
            seq: Seq,
            acked: Seq,
            stamp: Millis,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..20_000u64).prop_map(Step::Open),
            (0..8u8, 1..12u64, 0..12u64, 0..20_000u64).prop_map(|(session, seq, acked, stamp)| {
                Step::Command {
                    session,
                    seq,
                    acked,
                    stamp,
                }
            }),
        ]
    }

    proptest! {
        /// Over any sequence of entries: a (session, sequence) is applied at most once;
        /// a duplicate answers what the first application answered; two tables fed the
        /// same entries agree, also when one of them went through its snapshot form part
        /// way; and the bounds hold.
        #[test]
        fn at_most_once_deterministic_and_bounded(steps in proptest::collection::vec(step(), 1..200), cut in 0usize..200) {
            let mut a = Sessions::new(LIMITS);
            let mut b = Sessions::new(LIMITS);
            let mut applied: BTreeMap<(SessionId, Seq), Bytes> = BTreeMap::new();
            let mut opened = Vec::new();
            for (i, s) in steps.iter().enumerate() {
                let index = i as u64 + 1;
                if i == cut {
                    b = Sessions::decode(&b.encode().unwrap(), LIMITS).unwrap();
                }
                match *s {
                    Step::Open(stamp) => {
                        let ra = a.open(index, stamp);
                        prop_assert_eq!(ra, b.open(index, stamp));
                        if ra.is_ok() {
                            opened.push(index);
                        }
                    }
                    Step::Command { session, seq, acked, stamp } => {
                        let id = opened.get(session as usize).copied().unwrap_or(u64::MAX);
                        let ra = a.admit(id, seq, acked, stamp);
                        prop_assert_eq!(&ra, &b.admit(id, seq, acked, stamp));
                        match ra {
                            Admit::Apply => {
                                let r = response(index);
                                prop_assert!(applied.insert((id, seq), r.clone()).is_none(), "{id}/{seq} applied twice");
                                a.record(id, seq, r.clone());
                                b.record(id, seq, r);
                            }
                            Admit::Duplicate(r) => {
                                prop_assert_eq!(Some(&r), applied.get(&(id, seq)));
                            }
                            Admit::Expired | Admit::Acknowledged { .. } | Admit::Busy => {}
                        }
                    }
                }
                prop_assert_eq!(&a, &b);
                prop_assert!(a.len() <= LIMITS.max_sessions);
                for s in a.sessions.values() {
                    prop_assert!(s.responses.len() <= LIMITS.max_pending);
                    prop_assert!(s.bytes <= LIMITS.max_pending_bytes + 8);
                }
            }
        }
    }
}
