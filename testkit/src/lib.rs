//! Clusters for tests and benchmarks: in-process nodes assembled with
//! [`Raft::builder`](raft_runtime::Raft::builder) from pluggable parts.
//!
//! A [`Cluster`] runs nodes of one state machine type on [`Plugins`], which hand each node
//! its log store and transport at every start (and may check, after a stop, that the node
//! let go of them). Two come with the kit:
//!
//! * [`InMemory`]: `MemLogStore`s that outlive restarts, on one `MemNetwork` whose faults
//!   (partitions, drops, pauses) the test controls;
//! * `OnDisk` (feature `durable`): a file write-ahead log per node in a temporary directory
//!   and QUIC with mutual TLS on 127.0.0.1, certificates from a fresh development CA.
//!
//! With feature `process`, [`process`] runs nodes as child processes and [`netns`] puts
//! them in network namespaces with packet filters, for end-to-end fault tests.
//!
//! [`Log`] is a state machine that records every value it applies, for checking that nodes
//! agree.
//!
//! Not published; shared by the runtime's tests, the cross-crate tests and the benchmark.

mod cluster;
mod log;
mod mem;
#[cfg(feature = "process")]
pub mod netns;
#[cfg(feature = "durable")]
mod on_disk;
#[cfg(feature = "process")]
pub mod process;

pub use cluster::{Cluster, HOSTED_VAR, Plugins, SessionClock, StartMode};
pub use log::{Log, LogState};
pub use mem::InMemory;
#[cfg(feature = "durable")]
pub use on_disk::OnDisk;

/// A figure of this process from `/proc/self/status`, in bytes: `"VmHWM:"` (the peak
/// resident memory) or `"VmRSS:"`, say. Tests that bound what a large transfer may hold
/// compare the peak before and after it (each alone in its test binary, since other tests
/// would raise the peak too).
///
/// # Panics
///
/// If the file or the field cannot be read (not Linux).
pub fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"));
    kib * 1024
}
