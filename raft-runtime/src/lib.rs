//! Tokio actors that drive [`raft_core`]: the crate users depend on.
//!
//! This crate will hold the plug-in traits (an async `StateMachine`, a log store and a
//! transport), in-memory implementations of the store and transport for tests, the actor
//! that owns each group's protocol state, and the cloneable handle with `propose`, reads,
//! membership changes, leadership transfer, metrics and shutdown. It is being built; nothing
//! in it is usable yet.
