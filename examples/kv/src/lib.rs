//! A durable key-value service on raft-runtime.
//!
//! Its state and applied index live in an embedded database ([redb](https://docs.rs/redb)),
//! so a restarted node replays only the entries after what its database holds, never the
//! whole state; snapshots are read transactions streamed to the log store and to followers,
//! and a follower restores one into a new database file that replaces the current one at
//! once. See [`state_machine`].

pub mod state_machine;

pub use state_machine::{Command, KvError, KvStore, Response, ScanPage};
