//! The key-value service's sequential specification, for checking histories of the kv
//! fault tests with porcupine-rs (an implementation of Porcupine's linearizability checker:
//! Wing and Gong's search with Lowe's memoization, and P-compositionality).
//!
//! Each key is a register, so a history is split by key and every key's sub-history is
//! checked on its own (a history is linearizable if and only if every key's is). A write
//! whose outcome is unknown (the client gave up) may have taken effect at any point after
//! its call, or never: it is recorded with a return time at the end of time and no output,
//! and the model accepts it whatever the state. A read whose outcome is unknown constrains
//! nothing and is left out of the history; so is a write that definitely did not happen.

use std::time::Duration;

use porcupine_rs::{CheckResult, Model, Operation};

/// A value in the history: `None` is an absent key.
pub type Value = Option<String>;

/// What a client asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Set the key.
    Put(String),
    /// Remove the key.
    Delete,
    /// Set the key to `new` if it holds `expected`.
    Cas {
        /// The value the key must hold.
        expected: Value,
        /// The value to set.
        new: Value,
    },
    /// Read the key.
    Get,
}

/// What the service answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// The key's value before a put or a delete.
    Previous(Value),
    /// A compare-and-swap's answer: whether it swapped, and the value after it.
    Swapped {
        /// Whether it swapped.
        swapped: bool,
        /// The value after it.
        current: Value,
    },
    /// A read's value.
    Read(Value),
}

/// One operation on one key: the input, and the output if it is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvOp {
    /// The key.
    pub key: String,
    /// The request.
    pub input: Input,
    /// The answer; `None` when the outcome is unknown.
    pub output: Option<Output>,
}

/// The specification: a map of registers, checked one key at a time.
#[derive(Clone, Copy, Debug)]
pub struct KvModel;

impl Model for KvModel {
    type State = Value;
    type Op = KvOp;
    type Metadata = ();

    fn partition_operations(history: &[Operation<Self>]) -> Vec<Vec<Operation<Self>>> {
        let mut by_key: std::collections::BTreeMap<&str, Vec<Operation<Self>>> = Default::default();
        for op in history {
            by_key.entry(&op.op.key).or_default().push(op.clone());
        }
        by_key.into_values().collect()
    }

    fn init() -> Value {
        None
    }

    fn step(state: &Value, op: &KvOp) -> (bool, Value) {
        let unchanged = || (false, state.clone());
        match (&op.input, &op.output) {
            (Input::Put(v), None) => (true, Some(v.clone())),
            (Input::Put(v), Some(Output::Previous(prev))) if prev == state => (true, Some(v.clone())),
            (Input::Delete, None) => (true, None),
            (Input::Delete, Some(Output::Previous(prev))) if prev == state => (true, None),
            (Input::Cas { expected, new }, None) => {
                if expected == state {
                    (true, new.clone())
                } else {
                    (true, state.clone())
                }
            }
            (Input::Cas { expected, new }, Some(Output::Swapped { swapped, current })) => {
                let swaps = expected == state;
                let after = if swaps { new } else { state };
                if *swapped == swaps && current == after {
                    (true, after.clone())
                } else {
                    unchanged()
                }
            }
            (Input::Get, Some(Output::Read(v))) if v == state => (true, state.clone()),
            // A read with no answer is never recorded; any other pairing is a wrong answer.
            _ => unchanged(),
        }
    }
}

/// One recorded operation, with its call and return times in nanoseconds since the run
/// began; `returned` is `None` for an unknown outcome.
pub fn operation(
    client: u32,
    key: &str,
    input: Input,
    call: u64,
    returned: Option<(u64, Output)>,
) -> Operation<KvModel> {
    let (return_time, output) = match returned {
        Some((at, output)) => (clamp(at), Some(output)),
        None => (i64::MAX, None),
    };
    Operation {
        client_id: Some(client),
        call_time: clamp(call),
        return_time,
        op: KvOp {
            key: key.to_string(),
            input,
            output,
        },
        metadata: None,
    }
}

fn clamp(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX - 1)
}

/// Checks `history`, giving up after `timeout`.
pub fn check(history: &[Operation<KvModel>], timeout: Duration) -> CheckResult {
    porcupine_rs::check_operations_timeout(history, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    fn s(v: &str) -> Value {
        Some(v.to_string())
    }

    fn put(c: u32, key: &str, v: &str, call: u64, ret: u64, prev: Value) -> Operation<KvModel> {
        operation(
            c,
            key,
            Input::Put(v.into()),
            call,
            Some((ret, Output::Previous(prev))),
        )
    }

    fn get(c: u32, key: &str, call: u64, ret: u64, v: Value) -> Operation<KvModel> {
        operation(c, key, Input::Get, call, Some((ret, Output::Read(v))))
    }

    #[test]
    fn accepts_what_a_register_may_answer() {
        let h = vec![
            put(1, "a", "x", 0, 10, None),
            // Concurrent with the put: either value.
            get(2, "a", 5, 15, None),
            get(3, "a", 20, 30, s("x")),
            // Another key is independent.
            get(3, "b", 31, 32, None),
            operation(
                1,
                "a",
                Input::Cas {
                    expected: s("x"),
                    new: s("y"),
                },
                40,
                Some((
                    50,
                    Output::Swapped {
                        swapped: true,
                        current: s("y"),
                    },
                )),
            ),
            operation(
                2,
                "a",
                Input::Cas {
                    expected: s("x"),
                    new: s("z"),
                },
                60,
                Some((
                    70,
                    Output::Swapped {
                        swapped: false,
                        current: s("y"),
                    },
                )),
            ),
            operation(2, "a", Input::Delete, 80, Some((90, Output::Previous(s("y"))))),
            get(1, "a", 100, 110, None),
        ];
        assert_eq!(check(&h, T), CheckResult::Ok);
    }

    #[test]
    fn rejects_a_stale_read_a_lost_write_and_a_wrong_swap() {
        // A read after an acknowledged put sees the old value.
        let stale = vec![put(1, "a", "x", 0, 10, None), get(2, "a", 20, 30, None)];
        assert_eq!(check(&stale, T), CheckResult::Illegal);
        // A put acknowledged with a previous value nobody wrote.
        let invented = vec![put(1, "a", "x", 0, 10, s("ghost"))];
        assert_eq!(check(&invented, T), CheckResult::Illegal);
        // A swap that claims success against the wrong value.
        let swap = vec![
            put(1, "a", "x", 0, 10, None),
            operation(
                2,
                "a",
                Input::Cas {
                    expected: s("y"),
                    new: s("z"),
                },
                20,
                Some((
                    30,
                    Output::Swapped {
                        swapped: true,
                        current: s("z"),
                    },
                )),
            ),
        ];
        assert_eq!(check(&swap, T), CheckResult::Illegal);
        // Two puts both see the same previous value: one of them was lost.
        let lost = vec![
            put(1, "a", "x", 0, 10, None),
            put(2, "a", "y", 20, 30, s("x")),
            put(3, "a", "z", 40, 50, s("x")),
        ];
        assert_eq!(check(&lost, T), CheckResult::Illegal);
    }

    #[test]
    fn an_unknown_write_may_have_happened_or_not() {
        let unknown = operation(1, "a", Input::Put("x".into()), 0, None);
        // Seen...
        assert_eq!(
            check(&[unknown.clone(), get(2, "a", 10, 20, s("x"))], T),
            CheckResult::Ok
        );
        // ...or not...
        assert_eq!(
            check(&[unknown.clone(), get(2, "a", 10, 20, None)], T),
            CheckResult::Ok
        );
        // ...but never taken back once seen.
        let flicker = vec![unknown, get(2, "a", 10, 20, s("x")), get(2, "a", 30, 40, None)];
        assert_eq!(check(&flicker, T), CheckResult::Illegal);
    }
}
