//! A durable log store for `raft-runtime` on local files.
//!
//! This crate will hold a segmented write-ahead log (segment headers, length + CRC-32C
//! framed records, commit markers), a writer thread with group-commit fsync, snapshots
//! written atomically, and crash recovery that truncates a torn tail and reports mid-log
//! corruption by file and offset. It is being built; nothing in it is usable yet.
