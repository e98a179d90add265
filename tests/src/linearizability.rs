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
//! Tests elsewhere in this crate prove it rejects the histories it must: a stale read, a lost
//! increment, a duplicated one.

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
    /// None exists; the longest prefix the search could linearize is given (operation indexes
    /// into the history, in linearization order), which points at where it went wrong.
    NotLinearizable {
        /// The deepest partial linearization found.
        deepest: Vec<usize>,
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

/// Checks `history` (starting from a counter at `initial`) within `max_steps` search steps.
pub fn check(history: &[Operation], initial: u64, max_steps: u64) -> Verdict {
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
                return Verdict::NotLinearizable { deepest };
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
    fn random_history(clients: usize, len: usize, mut seed: u64) -> Vec<Operation> {
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
                        Op::Incr(1 + rnd() % 3)
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
        let h = random_history(16, 6_000, 7);
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
        let h = random_history(6, 300_000, 11);
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
}
