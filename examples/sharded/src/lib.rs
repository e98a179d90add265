//! Counters hashed across many Raft groups: the multi-Raft example.
//!
//! Every node runs one member of each of `--groups` Raft groups. A counter's name picks
//! its group ([`group_of`]); each group replicates the counters that hash to it
//! ([`state_machine::Counters`]), with a leader, a log and a term of its own. What the
//! groups of a node share:
//!
//! ```text
//!  client ──HTTP──> POST /incr {key}  ──group_of(key)──> Raft of that group ─┐
//!                   GET /value/{key}                                         │ one per group
//!                   GET /groups                                              │
//!                           ┌────────────────────────────────────────────────┘
//!                           ├── GroupLog ──> FileWal: one write-ahead log, one fdatasync
//!                           │                for the writes of every group at a time
//!                           └── MuxTransport ──> GroupMux ──> QuicTransport: one
//!                                                connection per pair of nodes, the group
//!                                                id in every frame
//! ```
//!
//! One task and one timer drive every group's node ([`raft_runtime::GroupHost`]).
//!
//! - [`state_machine`]: the replicated state of one group, a map of named counters.
//! - [`node`]: one node: its shared log, its QUIC endpoint, one Raft node per group, and
//!   its HTTP API.
//! - [`demo`]: three nodes in one process, concurrent increments over HTTP to every node,
//!   every counter read back from every node.
//!
//! Placement is static: every node runs a member of every group, with the same members.
//! Moving a group's replicas is a membership change of that group (its `Raft` handle's
//! `add_node` / `remove_node`), one group at a time.

pub mod demo;
pub mod node;
pub mod state_machine;

use raft_runtime::GroupId;

/// The group of the counter named `key`, among groups `1..=groups`: FNV-1a of the name,
/// so that every node and every build agree (the standard library's hasher is seeded per
/// process).
pub fn group_of(key: &str, groups: u64) -> GroupId {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % groups.max(1) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_over_every_group_and_stay_put() {
        let groups = 8;
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..200 {
            let key = format!("counter-{i}");
            let g = group_of(&key, groups);
            assert!((1..=groups).contains(&g));
            assert_eq!(g, group_of(&key, groups));
            seen.insert(g);
        }
        assert_eq!(seen.len(), groups as usize);
        assert_eq!(group_of("anything", 0), 1);
    }
}
