//! The key-value store as a [`Service`], and one node of it (see [`raft_service::node`]).
//!
//! A node keeps two things in its data directory: the write-ahead log in `wal/` and the
//! database in `kv/`. At start the runtime asks the database for its applied index
//! ([`KvStore::applied`], committed with the state by every batch) and replays only the
//! log after it: a restart never rebuilds the state from the beginning.

use std::path::PathBuf;

use axum::Router;
use raft_runtime::Raft;
use raft_service::Service;

use crate::state_machine::KvStore;

pub use raft_service::http::HttpLimits;
pub use raft_service::node::{NodeConfig, NodeError};

/// The subdirectory of the data directory that holds the write-ahead log.
pub const WAL_DIR: &str = "wal";
/// The subdirectory of the data directory that holds the database.
pub const KV_DIR: &str = "kv";

/// The key-value service: the node's [`KvStore`], shared between the runtime (which
/// applies to it) and the HTTP routes (which read it).
#[derive(Clone, Debug)]
pub struct KvService {
    store: KvStore,
}

impl KvService {
    /// The node's store, as the runtime applies to it.
    pub fn store(&self) -> &KvStore {
        &self.store
    }
}

impl Service for KvService {
    const NAME: &'static str = "kv";
    type StateMachine = KvStore;

    fn log_dir(config: &NodeConfig) -> PathBuf {
        config.data_dir.join(WAL_DIR)
    }

    fn open(config: &NodeConfig) -> Result<(Self, KvStore), raft_service::Error> {
        let store = KvStore::open(config.data_dir.join(KV_DIR))?;
        Ok((KvService { store: store.clone() }, store))
    }

    fn routes(&self, raft: Raft<KvStore>, limits: HttpLimits) -> Router {
        crate::http::routes(raft, self.store.clone(), limits)
    }
}

/// A key-value node whose log and database are open and whose sockets are bound, but which
/// does not run yet.
pub type BoundNode = raft_service::node::BoundNode<KvService>;

/// A running key-value node.
pub type Node = raft_service::node::Node<KvService>;
