//! A linearizability checker for a counter with increment-and-return and read, in the style
//! of Wing and Gong with Lowe's memoization (the algorithm Porcupine implements).
//!
//! A history is a set of operations, each with the time its client invoked it, the time it
//! returned, and what it returned. An operation whose outcome is unknown (the client gave up:
//! a 504, a lost connection) may have taken effect at any time after its invocation, or not at
//! all; it is given a return time of infinity and accepts any result. Placing such an
//! increment after every operation that observes the counter is the same as it never having
//! happened, so "at any time, or never" needs no special case. Reads with an unknown outcome
//! constrain nothing and are dropped.
//!
//! The search walks the history in time order and, at each step, linearizes one operation
//! whose invocation is pending and whose result the sequential counter reproduces; it
//! backtracks when it meets the return of an operation it has not linearized. A cache of
//! (linearized set, counter value) pairs already explored keeps it from repeating work. For a
//! counter the search is nearly linear in practice: every acknowledged increment returns a
//! distinct value, which fixes its place.
//!
//! Increments with unknown outcomes would make the search exponential (any subset of them may
//! have happened), but those of equal amount are interchangeable: in any linearization, one
//! invoked later can swap places with an unused one invoked earlier. So the search takes them
//! in invocation order, each only once the previous one of the same amount is linearized.
//!
//! The search needs some hundred steps per operation on the histories of a fault run, which
//! for the million operations of a ten-minute soak is more than a budget of memory and time
//! allows. When every increment adds one, as in the fault tests, [`check`] takes an exact
//! O(n log n) route instead, [`check_unit_increments`]: the value an acknowledged increment
//! returned fixes its place in the sequence of increments, and what is left is a scheduling
//! question that a single greedy pass answers.
//!
//! The tests below prove both reject the histories they must (a stale read, a lost
//! increment, a duplicated one, a value from the future) and that they agree on thousands
//! of random histories, linearizable and broken.

use std::collections::HashSet;

/// What a client asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Op {
    /// Increment by `n`; returns the value right after this increment.
    Incr(u64),
    /// Read the value.
    Read,
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Operation {
    /// The client that issued it (operations of one client never overlap).
    pub client: u64,
    /// The request.
    pub op: Op,
    /// When it was invoked (any monotonic unit, e.g. nanoseconds since the test began).
    pub call: u64,
    /// When it returned, and what it returned; `None` when the outcome is unknown.
    pub result: Option<(u64, u64)>,
}

impl Operation {
    /// A completed operation.
    pub fn ok(client: u64, op: Op, call: u64, ret: u64, value: u64) -> Operation {
        Operation {
            client,
            op,
            call,
            result: Some((ret, value)),
        }
    }

    /// An operation whose outcome is unknown.
    pub fn unknown(client: u64, op: Op, call: u64) -> Operation {
        Operation {
            client,
            op,
            call,
            result: None,
        }
    }
}

/// The verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A linearization exists.
    Linearizable,
    /// None exists.
    NotLinearizable {
        /// The longest partial linearization found (operation indexes into the history, in
        /// linearization order), which points at where it went wrong. For histories of unit
        /// increments it holds the increments, in the order that places them.
        deepest: Vec<usize>,
        /// What could not be placed, in words.
        why: String,
    },
    /// The search gave up after its step budget.
    Inconclusive {
        /// How many operations the deepest partial linearization held: where the search
        /// spent its budget.
        deepest: usize,
    },
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
}

/// Checks `history` (starting from a counter at `initial`).
///
/// When every increment adds one, as in the fault tests, an exact check runs in
/// O(n log n) and `max_steps` is not used (see [`check_unit_increments`]); otherwise the
/// search runs within `max_steps` steps.
pub fn check(history: &[Operation], initial: u64, max_steps: u64) -> Verdict {
    if history.iter().all(|o| matches!(o.op, Op::Read | Op::Incr(1))) {
        check_unit_increments(history, initial)
    } else {
        search(history, initial, max_steps)
    }
}

/// The Wing and Gong search, for any history.
fn search(history: &[Operation], initial: u64, max_steps: u64) -> Verdict {
    // Unknown reads constrain nothing.
    let ops: Vec<(usize, &Operation)> = history
        .iter()
        .enumerate()
        .filter(|(_, o)| !(o.op == Op::Read && o.result.is_none()))
        .collect();
    let n = ops.len();
    // Events in time order; at equal times returns come before calls, so that operations that
    // merely touch are not taken as concurrent (the stricter reading).
    let mut events: Vec<(u64, u8, Event)> = Vec::with_capacity(2 * n);
    for (i, (_, o)) in ops.iter().enumerate() {
        events.push((o.call, 1, Event { op: i, is_call: true }));
        let ret = o.result.map_or(u64::MAX, |(r, _)| r);
        events.push((
            ret,
            0,
            Event {
                op: i,
                is_call: false,
            },
        ));
    }
    events.sort_by_key(|&(t, kind, e)| (t, kind, e.op));
    // A doubly linked list over the events, so linearized operations can be lifted out and
    // put back in O(1).
    let len = events.len();
    let head = len; // sentinel
    let mut next: Vec<usize> = (1..=len + 1).collect();
    let mut prev: Vec<usize> = vec![0; len + 1];
    next[head] = if len == 0 { usize::MAX } else { 0 };
    for (i, p) in prev.iter_mut().enumerate().take(len) {
        *p = if i == 0 { head } else { i - 1 };
    }
    if len > 0 {
        next[len - 1] = usize::MAX;
    }
    let mut call_pos = vec![0usize; n];
    let mut ret_pos = vec![0usize; n];
    for (pos, &(_, _, e)) in events.iter().enumerate() {
        if e.is_call {
            call_pos[e.op] = pos;
        } else {
            ret_pos[e.op] = pos;
        }
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, p: usize| {
        let (a, b) = (prev[p], next[p]);
        next[a] = b;
        if b != usize::MAX {
            prev[b] = a;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, p: usize| {
        let (a, b) = (prev[p], next[p]);
        next[a] = p;
        if b != usize::MAX {
            prev[b] = p;
        }
    };

    // For an increment with an unknown outcome, the previous one of the same amount (in
    // invocation order): it must be linearized first.
    let mut after_unknown: Vec<Option<usize>> = vec![None; n];
    let mut unknowns: Vec<(u64, u64, usize)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, (_, o))| match (o.op, o.result) {
            (Op::Incr(k), None) => Some((k, o.call, i)),
            _ => None,
        })
        .collect();
    unknowns.sort_unstable();
    for w in unknowns.windows(2) {
        if w[0].0 == w[1].0 {
            after_unknown[w[1].2] = Some(w[0].2);
        }
    }

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let is_linearized = |lin: &Vec<u64>, i: usize| lin[i / 64] & (1 << (i % 64)) != 0;
    let definite_total = ops.iter().filter(|(_, o)| o.result.is_some()).count();
    let mut definite_done = 0usize;
    // States already explored, keyed by a 128-bit Zobrist hash of the linearized set (kept up
    // to date in O(1) per step) mixed with the counter value: 16 bytes per state. Storing
    // the set itself would cost n/8 bytes per state, which a history of some hundred
    // thousand operations turns into gigabytes; a false match between two 128-bit keys is
    // out of reach.
    let keys: Vec<u128> = (0..n as u64).map(zobrist_key).collect();
    let mut set_hash = 0u128;
    let mut seen: HashSet<u128> = HashSet::new();
    let mut state = initial;
    let mut deepest: Vec<usize> = Vec::new();
    let mut path: Vec<usize> = Vec::new();
    let mut steps = 0u64;

    // Candidates at the current point: operations invoked before the first pending return,
    // definite ones first, then the unknown increment whose turn it is.
    let candidates = |next: &Vec<usize>, lin: &Vec<u64>| -> Vec<usize> {
        let mut definite = Vec::new();
        let mut unknown = Vec::new();
        let mut p = next[head];
        while p != usize::MAX {
            let Event { op, is_call } = events[p].2;
            if !is_call {
                break;
            }
            if ops[op].1.result.is_some() {
                definite.push(op);
            } else if after_unknown[op].is_none_or(|q| is_linearized(lin, q)) {
                unknown.push(op);
            }
            p = next[p];
        }
        definite.extend(unknown);
        definite
    };

    struct Frame {
        candidates: Vec<usize>,
        next: usize,
        /// The operation this frame linearized on the way down, and the state before it.
        taken: Option<(usize, u64)>,
    }
    let mut frames = vec![Frame {
        candidates: candidates(&next, &linearized),
        next: 0,
        taken: None,
    }];
    loop {
        if definite_done == definite_total {
            // What is left has unknown outcomes: it may never have happened.
            return Verdict::Linearizable;
        }
        steps += 1;
        if steps > max_steps {
            return Verdict::Inconclusive {
                deepest: deepest.len().max(path.len()),
            };
        }
        let top = frames.last_mut().expect("the root frame stays");
        if top.next < top.candidates.len() {
            let op = top.candidates[top.next];
            top.next += 1;
            let o = ops[op].1;
            let (after, result) = match o.op {
                Op::Incr(k) => (state.wrapping_add(k), state.wrapping_add(k)),
                Op::Read => (state, state),
            };
            if o.result.is_some_and(|(_, v)| v != result) {
                continue;
            }
            if !seen.insert(set_hash ^ keys[op] ^ u128::from(after).wrapping_mul(VALUE_MIX)) {
                continue;
            }
            linearized[op / 64] |= 1 << (op % 64);
            set_hash ^= keys[op];
            unlink(&mut next, &mut prev, call_pos[op]);
            unlink(&mut next, &mut prev, ret_pos[op]);
            if o.result.is_some() {
                definite_done += 1;
            }
            let before = state;
            state = after;
            path.push(ops[op].0);
            frames.push(Frame {
                candidates: candidates(&next, &linearized),
                next: 0,
                taken: Some((op, before)),
            });
        } else {
            // Backtracking: remember the path if it is the deepest so far (copied here, at a
            // dead end, rather than on every step down).
            if path.len() > deepest.len() {
                deepest.clone_from(&path);
            }
            let frame = frames.pop().expect("checked");
            let Some((op, before)) = frame.taken else {
                let why = match deepest.last() {
                    Some(&last) => format!(
                        "at best {} operations linearize; after operation {last} ({:?}) none of the pending ones fits",
                        deepest.len(),
                        history[last]
                    ),
                    None => "no operation can come first".to_string(),
                };
                return Verdict::NotLinearizable { deepest, why };
            };
            linearized[op / 64] &= !(1 << (op % 64));
            set_hash ^= keys[op];
            relink(&mut next, &mut prev, ret_pos[op]);
            relink(&mut next, &mut prev, call_pos[op]);
            if ops[op].1.result.is_some() {
                definite_done -= 1;
            }
            state = before;
            path.pop();
        }
    }
}

/// An exact check for histories whose increments all add one, in O(n log n).
///
/// In any linearization the increments form a sequence, and the one at position `p` takes the
/// counter to `initial + p`. An acknowledged increment that returned `v` must therefore be
/// the one at position `v - initial`, and a read that returned `v` must fall between the
/// increments at positions `v - initial` and `v - initial + 1`. Every position up to the
/// highest value observed needs an increment; those no acknowledged increment holds are
/// filled by increments with unknown outcomes, which may take effect any time after their
/// invocation. So the question is whether points in time `t(1) < t(2) < ... < t(m)` exist
/// with each `t(p)` inside the interval of the increment at `p`, and, for a read of
/// `initial + p` invoked at `c` and returned at `r`, `t(p) < r` and `t(p + 1) > c` (the read
/// then has a point of its own between them).
///
/// Choosing each `t(p)` as early as its bounds allow, in order of `p`, finds such points
/// whenever they exist: an earlier `t(p)` only loosens what follows. A position without an
/// acknowledged increment takes the unused unknown increment invoked first: if it was
/// invoked by the earliest allowed time, so was any other candidate, and every later
/// position could use either; if not, no other one can start earlier.
///
/// Intervals are closed here: two operations that merely touch (one returns at the instant
/// the other is invoked) may take either order, where the search takes them as ordered. The
/// fault tests stamp operations in microseconds, at which equal stamps cannot tell the order
/// of two events apart, so the looser reading is the faithful one for them.
pub fn check_unit_increments(history: &[Operation], initial: u64) -> Verdict {
    // A point in time: (a time of the history plus one, infinitesimal steps after it). The
    // shift keeps every point above `(0, 0)`, so bounds are points too: a strict lower bound
    // `t > c` is `(c + 1, 1)`, a strict upper bound `t < r` is `(r, MAX)`, as every point's
    // first component is a shifted time of the history.
    type Point = (u64, u64);
    let shift = |t: u64| t.saturating_add(1);
    const NEVER: Point = (u64::MAX, u64::MAX);
    fn describe(history: &[Operation], i: usize) -> String {
        format!("operation {i} ({:?})", history[i])
    }

    // For each position: the acknowledged increment there, the earliest point its increment
    // may take effect at and the latest, each with the operation that sets it.
    struct Slot {
        acked: Option<usize>,
        after: (Point, Option<usize>),
        by: (Point, Option<usize>),
    }
    // No value above `initial` plus the number of increments can be observed; checking that
    // first bounds the positions below by the number of increments.
    let increments = history.iter().filter(|o| matches!(o.op, Op::Incr(_))).count() as u64;
    let ceiling = initial.saturating_add(increments);
    if let Some((i, v)) = history
        .iter()
        .enumerate()
        .find_map(|(i, o)| o.result.map(|(_, v)| (i, v)).filter(|&(_, v)| v > ceiling))
    {
        return Verdict::NotLinearizable {
            deepest: Vec::new(),
            why: format!(
                "{} observed {v}, more than the {increments} increments issued could reach from {initial}",
                describe(history, i)
            ),
        };
    }
    // Positions 0 to `increments`, and one above for what reads of the highest value bound.
    let mut slots: Vec<Slot> = (0..increments + 2)
        .map(|_| Slot {
            acked: None,
            after: ((0, 0), None),
            by: (NEVER, None),
        })
        .collect();
    let mut unknowns: Vec<(u64, usize)> = Vec::new();
    // The highest position observed.
    let mut top = 0usize;
    for (i, o) in history.iter().enumerate() {
        match (o.op, o.result) {
            (Op::Incr(_), None) => unknowns.push((shift(o.call), i)),
            (Op::Read, None) => {}
            (Op::Incr(_), Some((ret, v))) => {
                if v <= initial {
                    return Verdict::NotLinearizable {
                        deepest: Vec::new(),
                        why: format!(
                            "{} returned {v}, yet the counter started at {initial}",
                            describe(history, i)
                        ),
                    };
                }
                let p = (v - initial) as usize;
                top = top.max(p);
                if let Some(j) = slots[p].acked {
                    return Verdict::NotLinearizable {
                        deepest: Vec::new(),
                        why: format!(
                            "{} and {} both returned {v}: one increment was lost or applied twice",
                            describe(history, j),
                            describe(history, i)
                        ),
                    };
                }
                let s = &mut slots[p];
                s.acked = Some(i);
                s.after = s.after.max(((shift(o.call), 0), Some(i)));
                s.by = s.by.min(((shift(ret), 0), Some(i)));
            }
            (Op::Read, Some((ret, v))) => {
                if v < initial {
                    return Verdict::NotLinearizable {
                        deepest: Vec::new(),
                        why: format!(
                            "{} read {v}, yet the counter started at {initial}",
                            describe(history, i)
                        ),
                    };
                }
                let p = (v - initial) as usize;
                top = top.max(p);
                if p > 0 {
                    // Before the read returned...
                    let s = &mut slots[p];
                    s.by = s.by.min(((shift(ret) - 1, u64::MAX), Some(i)));
                }
                // ...and the next one after it was invoked.
                let s = &mut slots[p + 1];
                s.after = s.after.max(((shift(o.call), 1), Some(i)));
            }
        }
    }
    unknowns.sort_unstable();
    // Positions above the highest value observed need no increment: an increment there may
    // come after every operation.
    let mut used = 0usize;
    let mut previous: Point = (0, 0);
    let mut placed: Vec<usize> = Vec::with_capacity(top);
    for p in 1..=top {
        let s = &slots[p];
        let (mut at, mut why_at) = s.after;
        if (previous.0, previous.1 + 1) > at {
            at = (previous.0, previous.1 + 1);
            why_at = placed.last().copied();
        }
        let op = match s.acked {
            Some(i) => i,
            None => {
                let Some(&(call, i)) = unknowns.get(used) else {
                    return Verdict::NotLinearizable {
                        deepest: placed,
                        why: format!(
                            "the counter reached {}, but no increment is left to take it there: {} acknowledged and all {} with unknown outcomes are placed below it",
                            initial + p as u64,
                            slots.iter().filter(|s| s.acked.is_some()).count(),
                            unknowns.len()
                        ),
                    };
                };
                used += 1;
                if (call, 0) > at {
                    at = (call, 0);
                    why_at = Some(i);
                }
                i
            }
        };
        if at > s.by.0 {
            let name = |o: Option<usize>| o.map_or("the start".to_string(), |i| describe(history, i));
            return Verdict::NotLinearizable {
                deepest: placed,
                why: format!(
                    "the increment that took the counter to {} ({}) cannot come after {} and still before {}",
                    initial + p as u64,
                    describe(history, op),
                    name(why_at),
                    name(s.by.1)
                ),
            };
        }
        previous = at;
        placed.push(op);
    }
    Verdict::Linearizable
}

/// Mixes the counter value into a state's key (an odd constant: distinct values give
/// distinct products).
const VALUE_MIX: u128 = 0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835;

/// A fixed pseudo-random 128-bit key for operation `i` (two rounds of SplitMix64).
fn zobrist_key(i: u64) -> u128 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let hi = mix(2 * i);
    let lo = mix(2 * i + 1);
    (u128::from(hi) << 64) | u128::from(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: u64 = 10_000_000;

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            Operation::ok(1, Op::Incr(1), 0, 1, 1),
            Operation::ok(1, Op::Incr(2), 2, 3, 3),
            Operation::ok(2, Op::Read, 4, 5, 3),
        ];
        assert_eq!(check(&h, 0, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn concurrent_increments_may_take_either_order() {
        let h = vec![
            Operation::ok(1, Op::Incr(1), 0, 10, 3),
            Operation::ok(2, Op::Incr(2), 1, 9, 2),
            Operation::ok(3, Op::Read, 11, 12, 3),
        ];
        assert_eq!(check(&h, 0, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_is_rejected() {
        let h = vec![
            Operation::ok(1, Op::Incr(1), 0, 1, 1),
            // Invoked after the increment returned, yet it misses it.
            Operation::ok(2, Op::Read, 2, 3, 0),
        ];
        assert!(matches!(check(&h, 0, BUDGET), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn lost_increment_is_rejected() {
        let h = vec![
            Operation::ok(1, Op::Incr(1), 0, 1, 1),
            Operation::ok(2, Op::Incr(1), 2, 3, 2),
            // The acknowledged second increment is missing from the final read.
            Operation::ok(3, Op::Read, 4, 5, 1),
        ];
        assert!(matches!(check(&h, 0, BUDGET), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn duplicated_increment_is_rejected() {
        let h = vec![
            Operation::ok(1, Op::Incr(1), 0, 1, 1),
            // Applied twice: the counter went up by two for one increment.
            Operation::ok(2, Op::Read, 2, 3, 2),
        ];
        assert!(matches!(check(&h, 0, BUDGET), Verdict::NotLinearizable { .. }));
        let h = vec![
            Operation::ok(1, Op::Incr(1), 0, 10, 1),
            // Two increments that both return 1: one of them was applied without effect.
            Operation::ok(2, Op::Incr(1), 0, 10, 1),
        ];
        assert!(matches!(check(&h, 0, BUDGET), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn value_from_the_future_is_rejected() {
        let h = vec![
            Operation::ok(1, Op::Read, 0, 1, 5),
            Operation::ok(2, Op::Incr(5), 2, 3, 5),
        ];
        assert!(matches!(check(&h, 0, BUDGET), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn unknown_increment_may_or_may_not_have_happened() {
        // Taken effect, as the later read shows.
        let h = vec![
            Operation::unknown(1, Op::Incr(4), 0),
            Operation::ok(2, Op::Read, 10, 11, 4),
        ];
        assert_eq!(check(&h, 0, BUDGET), Verdict::Linearizable);
        // Never taken effect.
        let h = vec![
            Operation::unknown(1, Op::Incr(4), 0),
            Operation::ok(2, Op::Read, 10, 11, 0),
        ];
        assert_eq!(check(&h, 0, BUDGET), Verdict::Linearizable);
        // But not before it was invoked.
        let h = vec![
            Operation::ok(2, Op::Read, 0, 1, 4),
            Operation::unknown(1, Op::Incr(4), 2),
        ];
        assert!(matches!(check(&h, 0, BUDGET), Verdict::NotLinearizable { .. }));
    }

    /// Checks a history saved by a failed fault run:
    /// `RAFT_CHECK_HISTORY=/path/history.json cargo test -p raft-tests --lib saved -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn saved_history() {
        let Ok(path) = std::env::var("RAFT_CHECK_HISTORY") else {
            println!("set RAFT_CHECK_HISTORY to a history.json");
            return;
        };
        let h: Vec<Operation> = serde_json::from_str(&std::fs::read_to_string(&path).expect("history file"))
            .expect("history JSON");
        let start = std::time::Instant::now();
        let steps = std::env::var("RAFT_CHECK_STEPS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(500_000_000);
        let v = check(&h, 0, steps);
        println!("{} operations: {v:?} in {:?}", h.len(), start.elapsed());
    }

    #[test]
    fn many_unknown_increments_check_quickly() {
        // 300 increments whose outcome is unknown, half of which took effect, among
        // acknowledged ones and reads: without the symmetry rule this search explodes.
        let mut h = Vec::new();
        let mut value = 0u64;
        for i in 0..600u64 {
            let t = i * 10;
            h.push(Operation::unknown(100 + i, Op::Incr(1), t));
            if i % 2 == 0 {
                value += 1; // this one took effect
            }
            value += 1;
            h.push(Operation::ok(1, Op::Incr(1), t + 1, t + 2, value));
            h.push(Operation::ok(2, Op::Read, t + 3, t + 4, value));
        }
        let start = std::time::Instant::now();
        assert_eq!(check(&h, 0, BUDGET), Verdict::Linearizable);
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        // And a read that no number of unknown increments explains is still caught.
        h.push(Operation::ok(3, Op::Read, 100_000, 100_001, value + 10_000));
        assert!(matches!(check(&h, 0, BUDGET), Verdict::NotLinearizable { .. }));
    }

    /// `clients` clients issuing `len` operations, each executed atomically at a random point
    /// of its interval: linearizable by construction. Operations still open at the end may
    /// already have taken effect: their outcome is unknown.
    fn random_history(clients: usize, len: usize, max_incr: u64, mut seed: u64) -> Vec<Operation> {
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut h = Vec::new();
        let mut value = 0u64;
        let mut time = 0u64;
        let mut open: Vec<Option<(Op, u64, Option<u64>)>> = vec![None; clients];
        while h.len() < len {
            time += 1;
            let c = (rnd() % clients as u64) as usize;
            match open[c].take() {
                None => {
                    let op = if rnd() % 3 == 0 {
                        Op::Read
                    } else {
                        Op::Incr(1 + rnd() % max_incr)
                    };
                    open[c] = Some((op, time, None));
                }
                Some((op, call, None)) => {
                    let v = match op {
                        Op::Incr(k) => {
                            value += k;
                            value
                        }
                        Op::Read => value,
                    };
                    open[c] = Some((op, call, Some(v)));
                }
                Some((op, call, Some(v))) => h.push(Operation::ok(c as u64, op, call, time, v)),
            }
        }
        for (c, o) in open.iter().enumerate() {
            if let Some((op, call, _)) = o {
                h.push(Operation::unknown(c as u64, *op, *call));
            }
        }
        h
    }

    #[test]
    fn long_concurrent_history_checks_quickly() {
        let h = random_history(16, 6_000, 3, 7);
        let start = std::time::Instant::now();
        assert_eq!(check(&h, 0, BUDGET), Verdict::Linearizable);
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "{:?}",
            start.elapsed()
        );
        // One wrong read in the middle makes the same history fail.
        let mut bad = h.clone();
        let i = bad
            .iter()
            .position(|o| o.op == Op::Read && o.result.is_some() && o.call > 3_000)
            .expect("a read");
        if let Some((ret, v)) = bad[i].result {
            bad[i].result = Some((ret, v + 1_000));
        }
        assert!(matches!(check(&bad, 0, BUDGET), Verdict::NotLinearizable { .. }));
    }

    /// A history as long as a ten-minute fault run produces. The explored-state cache once
    /// held the whole linearized set per state, a few dozen kilobytes each at this length,
    /// which ran a real check out of memory; and the deepest path was copied on every step.
    #[test]
    fn a_history_of_300_000_operations_checks_in_bounded_memory() {
        let h = random_history(6, 300_000, 3, 11);
        assert_eq!(check(&h, 0, BUDGET), Verdict::Linearizable);
        let mut bad = h;
        let i = bad
            .iter()
            .rposition(|o| o.op == Op::Read && o.result.is_some())
            .expect("a read");
        if let Some((ret, v)) = bad[i].result {
            bad[i].result = Some((ret, v + 1_000_000));
        }
        assert!(matches!(check(&bad, 0, BUDGET), Verdict::NotLinearizable { .. }));
    }

    /// Both checkers' verdicts on a history of unit increments.
    fn both(h: &[Operation]) -> (Verdict, Verdict) {
        (search(h, 0, BUDGET), check_unit_increments(h, 0))
    }

    fn rejected(v: &Verdict) -> bool {
        matches!(v, Verdict::NotLinearizable { .. })
    }

    #[test]
    fn both_checkers_reject_the_known_bad_histories() {
        let bad = [
            // A stale read.
            vec![
                Operation::ok(1, Op::Incr(1), 0, 1, 1),
                Operation::ok(2, Op::Read, 2, 3, 0),
            ],
            // A lost increment.
            vec![
                Operation::ok(1, Op::Incr(1), 0, 1, 1),
                Operation::ok(2, Op::Incr(1), 2, 3, 2),
                Operation::ok(3, Op::Read, 4, 5, 1),
            ],
            // A duplicated increment, seen by a read and by two equal answers.
            vec![
                Operation::ok(1, Op::Incr(1), 0, 1, 1),
                Operation::ok(2, Op::Read, 2, 3, 2),
            ],
            vec![
                Operation::ok(1, Op::Incr(1), 0, 10, 1),
                Operation::ok(2, Op::Incr(1), 0, 10, 1),
            ],
            // A value from the future.
            vec![
                Operation::ok(1, Op::Read, 0, 1, 1),
                Operation::ok(2, Op::Incr(1), 2, 3, 1),
            ],
            // An unknown increment taking effect before it was invoked.
            vec![
                Operation::ok(2, Op::Read, 0, 1, 1),
                Operation::unknown(1, Op::Incr(1), 2),
            ],
            // One unknown increment cannot fill two missing values.
            vec![
                Operation::unknown(1, Op::Incr(1), 0),
                Operation::ok(2, Op::Read, 5, 6, 2),
            ],
            // Two increments, each acknowledged before the other was invoked, in the wrong
            // order.
            vec![
                Operation::ok(1, Op::Incr(1), 0, 1, 2),
                Operation::ok(2, Op::Incr(1), 2, 3, 1),
            ],
            // A read that goes backwards.
            vec![
                Operation::ok(1, Op::Incr(1), 0, 10, 1),
                Operation::ok(2, Op::Read, 1, 2, 1),
                Operation::ok(3, Op::Read, 3, 4, 0),
            ],
            // A value no number of the increments issued reaches (and which must not make
            // the check allocate a place for every value below it).
            vec![
                Operation::unknown(1, Op::Incr(1), 0),
                Operation::ok(2, Op::Read, 5, 6, u64::MAX / 2),
            ],
        ];
        for h in &bad {
            let (a, b) = both(h);
            assert!(rejected(&a), "search accepted {h:?}");
            assert!(rejected(&b), "unit check accepted {h:?}: {b:?}");
            assert_eq!(check(h, 0, BUDGET), b);
        }
        let Verdict::NotLinearizable { why, .. } = check_unit_increments(&bad[0], 0) else {
            unreachable!()
        };
        assert!(why.contains("operation 1"), "{why}");
    }

    /// The two checkers agree on thousands of small random histories of unit increments,
    /// linearizable ones and ones broken in random ways.
    #[test]
    fn the_unit_check_agrees_with_the_search() {
        let mut seed = 0x5EED_u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut accepted, mut refused) = (0, 0);
        for round in 0..20_000u64 {
            let mut h = random_history(1 + (rnd() % 5) as usize, 4 + (rnd() % 20) as usize, 1, round + 1);
            // Forget outcomes, as clients that time out do: then several increments of
            // unknown outcome compete for the same places.
            for _ in 0..rnd() % 4 {
                let i = (rnd() % h.len() as u64) as usize;
                h[i].result = None;
            }
            // Break it, or leave it alone.
            for _ in 0..rnd() % 3 {
                let i = (rnd() % h.len() as u64) as usize;
                match rnd() % 4 {
                    // A different answer.
                    0 => {
                        if let Some((ret, v)) = h[i].result {
                            let v = if rnd() % 2 == 0 {
                                v + 1
                            } else {
                                v.saturating_sub(1)
                            };
                            h[i].result = Some((ret, v));
                        }
                    }
                    // A forgotten outcome.
                    1 => h[i].result = None,
                    // An operation that never happened.
                    2 => {
                        h.remove(i);
                    }
                    // An increment read as a read, or the other way round.
                    _ => {
                        h[i].op = match h[i].op {
                            Op::Read => Op::Incr(1),
                            Op::Incr(_) => Op::Read,
                        }
                    }
                }
            }
            let (a, b) = both(&h);
            assert_eq!(
                rejected(&a),
                rejected(&b),
                "round {round}: {h:?}: search {a:?}, unit {b:?}"
            );
            assert!(!matches!(a, Verdict::Inconclusive { .. }), "round {round}: {a:?}");
            if rejected(&b) {
                refused += 1;
            } else {
                accepted += 1;
            }
        }
        // Both kinds were tried in numbers.
        assert!(
            accepted > 5_000 && refused > 5_000,
            "{accepted} accepted, {refused} refused"
        );
    }

    /// A history as long as a ten-minute fault run on a fast machine, with many unknown
    /// outcomes: the unit check takes it in one pass.
    #[test]
    fn a_history_of_a_million_unit_increments_and_reads_checks() {
        let mut h = random_history(64, 1_000_000, 1, 3);
        // Forget a share of outcomes, as clients that time out do.
        for (i, o) in h.iter_mut().enumerate() {
            if i % 97 == 0 {
                o.result = None;
            }
        }
        assert_eq!(check(&h, 0, 0), Verdict::Linearizable);
        let i = h
            .iter()
            .position(|o| o.op == Op::Read && o.result.is_some() && o.call > 1_000_000)
            .expect("a read");
        if let Some((ret, v)) = h[i].result {
            h[i].result = Some((ret, v.saturating_sub(200)));
        }
        assert!(rejected(&check(&h, 0, 0)));
    }
}
