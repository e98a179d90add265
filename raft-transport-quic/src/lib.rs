//! A transport for `raft-runtime` over QUIC (quinn, rustls on the ring provider).
//!
//! This crate will hold one mutually authenticated connection per peer pair, ordered
//! streams of length-prefixed message batches, snapshot transfer on a separate connection,
//! reconnection with backoff, and a development helper that generates a cluster CA and node
//! certificates. It is being built; nothing in it is usable yet.
