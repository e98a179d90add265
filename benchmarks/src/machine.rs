//! The state machine of every configuration: it replicates a payload of the requested
//! size and does nothing with it.
//!
//! The command is the payload itself: [`Bytes`] of the requested size, or, in the
//! in-process configurations `a` and `b`, `()` for a payload of 0 bytes, which encodes to
//! nothing at all (the command of openraft's `benchmarks/minimal`, and of
//! `cargo bench -p raft-bench`). Configuration `c`'s nodes take the body of each request
//! as the command, so they always replicate [`Bytes`] (empty for a payload of 0 bytes,
//! one byte once encoded).
//!
//! This is the "empty state machine" of openraft's `benchmarks/minimal`, so that the
//! figures measure the runtime (proposal, log, replication, commit, apply, response) and
//! not a service. It counts what it applies, so that a snapshot has something to say.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use raft_runtime::raft_core::Index;
use raft_runtime::{Applied, SnapshotStream, StateMachine, StateMachineError};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A command that is nothing but a payload.
pub trait Payload: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// A payload of `size` bytes.
    fn of_size(size: usize) -> Self;
}

/// No payload: the command encodes to zero bytes.
impl Payload for () {
    fn of_size(size: usize) {
        assert_eq!(size, 0, "() is the payload of 0 bytes only");
    }
}

impl Payload for Bytes {
    fn of_size(size: usize) -> Bytes {
        Bytes::from(vec![b'x'; size])
    }
}

/// Applies payloads by counting them. Clones share the count.
#[derive(Debug)]
pub struct Sink<P> {
    applied: Arc<AtomicU64>,
    payload: PhantomData<fn() -> P>,
}

impl<P> Default for Sink<P> {
    fn default() -> Self {
        Sink {
            applied: Arc::new(AtomicU64::new(0)),
            payload: PhantomData,
        }
    }
}

impl<P> Sink<P> {
    /// The commands applied so far (what a read of the benchmark reads).
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }
}

impl<P> Clone for Sink<P> {
    fn clone(&self) -> Self {
        Sink {
            applied: self.applied.clone(),
            payload: PhantomData,
        }
    }
}

#[async_trait]
impl<P: Payload> StateMachine for Sink<P> {
    /// The payload: replicated, logged, then dropped.
    type Command = P;
    type Response = ();

    async fn apply(&mut self, batch: Vec<Applied<P>>, _applied: Index) -> Result<Vec<()>, StateMachineError> {
        self.applied.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(vec![(); batch.len()])
    }

    async fn applied_index(&self) -> Result<Index, StateMachineError> {
        Ok(0)
    }

    async fn snapshot(&mut self) -> Result<SnapshotStream, StateMachineError> {
        let applied = self.applied.load(Ordering::Relaxed);
        Ok(SnapshotStream::from_bytes(applied.to_le_bytes().to_vec()))
    }

    async fn restore(&mut self, _index: Index, data: SnapshotStream) -> Result<(), StateMachineError> {
        let data = data.into_bytes(8).await.map_err(StateMachineError::new)?;
        let bytes: [u8; 8] = data
            .as_ref()
            .try_into()
            .map_err(|_| StateMachineError::msg("a sink snapshot is 8 bytes"))?;
        self.applied.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        Ok(())
    }
}
