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
//! Tests elsewhere in this crate prove it rejects the histories it must: a stale read, a lost
//! increment, a duplicated one.

use std::collections::HashSet;

/// What a client asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Increment by `n`; returns the value right after this increment.
    Incr(u64),
    /// Read the value.
    Read,
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    Inconclusive,
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

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, u64)> = HashSet::new();
    let mut stack: Vec<(usize, u64)> = Vec::new(); // (op, state before it)
    let mut state = initial;
    let mut deepest: Vec<usize> = Vec::new();
    let mut steps = 0u64;
    let mut cursor = next[head];
    loop {
        if next[head] == usize::MAX {
            return Verdict::Linearizable;
        }
        steps += 1;
        if steps > max_steps {
            return Verdict::Inconclusive;
        }
        if cursor == usize::MAX {
            // Only unknown operations are left and none applies: cannot happen for a counter
            // (an increment with an unknown result always applies), but stay total.
            return Verdict::Linearizable;
        }
        let Event { op, is_call } = events[cursor].2;
        if is_call {
            let o = ops[op].1;
            let (after, result) = match o.op {
                Op::Incr(k) => (state.wrapping_add(k), state.wrapping_add(k)),
                Op::Read => (state, state),
            };
            let matches = o.result.is_none_or(|(_, v)| v == result);
            if matches {
                linearized[op / 64] |= 1 << (op % 64);
                let fresh = seen.insert((linearized.clone(), after));
                if fresh {
                    stack.push((op, state));
                    state = after;
                    unlink(&mut next, &mut prev, call_pos[op]);
                    unlink(&mut next, &mut prev, ret_pos[op]);
                    if stack.len() > deepest.len() {
                        deepest = stack.iter().map(|&(i, _)| ops[i].0).collect();
                    }
                    cursor = next[head];
                    continue;
                }
                linearized[op / 64] &= !(1 << (op % 64));
            }
            cursor = next[cursor];
        } else {
            // The return of an operation not yet linearized: everything before it must be
            // revisited. Undo the last choice and try the next candidate after it.
            let Some((op, before)) = stack.pop() else {
                return Verdict::NotLinearizable { deepest };
            };
            linearized[op / 64] &= !(1 << (op % 64));
            state = before;
            relink(&mut next, &mut prev, ret_pos[op]);
            relink(&mut next, &mut prev, call_pos[op]);
            cursor = next[call_pos[op]];
        }
    }
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

    #[test]
    fn long_concurrent_history_checks_quickly() {
        // 16 clients, 6,000 operations, executed atomically at random points of their
        // intervals: linearizable by construction.
        let mut seed = 7u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut h = Vec::new();
        let mut value = 0u64;
        let mut time = 0u64;
        let mut open: Vec<Option<(Op, u64, Option<u64>)>> = vec![None; 16];
        while h.len() < 6_000 {
            time += 1;
            let c = (rnd() % 16) as usize;
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
        // Operations still open may already have taken effect: their outcome is unknown.
        for (c, o) in open.iter().enumerate() {
            if let Some((op, call, _)) = o {
                h.push(Operation::unknown(c as u64, *op, *call));
            }
        }
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
}
