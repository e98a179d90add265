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

    /// How many sessions the table holds.
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// The table's clock: the largest time stamp applied.
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
        self.by_use.remove(&(session.last_used, id));
        session.last_used = clock;
        self.by_use.insert((clock, id));
        if acked > session.acked {
            session.acked = acked;
            let kept = session.responses.split_off(&acked.saturating_add(1));
            let dropped = std::mem::replace(&mut session.responses, kept);
            session.bytes -= dropped.values().map(Bytes::len).sum::<usize>();
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
        if let Some(session) = self.sessions.get_mut(&id) {
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
