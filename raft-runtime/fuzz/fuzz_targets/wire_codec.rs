//! The runtime's wire and command codecs: see `raft_runtime::fuzzing::wire_codec`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raft_runtime::fuzzing::CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fuzz_target!(|data: &[u8]| {
    raft_runtime::fuzzing::wire_codec(data);
});
