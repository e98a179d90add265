//! The counter as a [`Service`], and one node of it: its write-ahead log, its QUIC
//! endpoint, its Raft tasks and its HTTP API, started and stopped as a unit (see
//! [`raft_service::node`]).
//!
//! Starting takes two steps, [`BoundNode::bind`] then [`BoundNode::start`], because a
//! new cluster's members must know each other's addresses before any of them starts Raft:
//! the demo binds three nodes to ports the OS picks, collects the addresses, and only then
//! starts them. `counter node` simply calls one after the other.

use axum::Router;
use raft_runtime::Raft;
use raft_service::Service;

use crate::http::HttpLimits;
use crate::state_machine::Counter;

pub use raft_service::node::{NodeConfig, NodeError};

/// The counter service: a [`Counter`] in memory (restored from the write-ahead log at
/// start), and the routes of [`crate::http`]. The log is the data directory itself.
#[derive(Clone, Copy, Debug)]
pub struct CounterService;

impl Service for CounterService {
    const NAME: &'static str = "counter";
    type StateMachine = Counter;

    fn open(_config: &NodeConfig) -> Result<(Self, Counter), raft_service::Error> {
        Ok((CounterService, Counter::default()))
    }

    fn routes(&self, raft: Raft<Counter>, limits: HttpLimits) -> Router {
        crate::http::routes(raft, limits)
    }
}

/// A counter node whose log is open and whose sockets are bound, but which does not run
/// yet.
pub type BoundNode = raft_service::node::BoundNode<CounterService>;

/// A running counter node.
pub type Node = raft_service::node::Node<CounterService>;
