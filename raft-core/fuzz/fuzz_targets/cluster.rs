//! Fuzz target (a) of the untrusted-input work: a small cluster of honest `RawNode`s under a
//! schedule and hostile messages decoded from the input, with Raft's invariants checked
//! after every step. The logic lives in `../harness.rs`, shared with the stable replay test
//! `raft-core/tests/fuzz_seeds.rs`.

#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::cluster(data);
});
