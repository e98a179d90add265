//! Client-session state read from log entries and snapshots: see
//! `raft_runtime::fuzzing::session_state`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    raft_runtime::fuzzing::session_state(data);
});
