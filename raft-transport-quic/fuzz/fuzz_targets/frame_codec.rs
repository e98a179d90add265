//! The QUIC transport's frame codec and snapshot control decoders: see
//! `raft_transport_quic::fuzzing::frame_codec`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raft_transport_quic::fuzzing::CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fuzz_target!(|data: &[u8]| {
    raft_transport_quic::fuzzing::frame_codec(data);
});
