//! Recovery of arbitrary log directories: see `raft_storage_file::fuzzing::wal_recovery`.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use raft_runtime::fuzzing::CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// One scratch directory for the whole run, in memory when /dev/shm exists.
fn scratch() -> &'static Path {
    static SCRATCH: OnceLock<tempfile::TempDir> = OnceLock::new();
    SCRATCH
        .get_or_init(|| {
            let builder = tempfile::Builder::new()
                .prefix("wal-fuzz-")
                .tempdir_in("/dev/shm");
            builder
                .or_else(|_| tempfile::tempdir())
                .expect("a scratch directory")
        })
        .path()
}

fuzz_target!(|data: &[u8]| {
    raft_storage_file::fuzzing::wal_recovery(scratch(), data);
});
