//! The counter as a [`Service`], and one node of it: its write-ahead log, its QUIC
//! endpoint, its Raft tasks and its HTTP API, started and stopped as a unit (see
//! [`raft_service::node`]).
//!
//! Starting takes two steps, [`BoundNode::bind`] then [`BoundNode::start`], because a
//! new cluster's members must know each other's addresses before any of them starts Raft:
//! the demo binds three nodes to ports the OS picks, collects the addresses, and only then
//! starts them. `counter node` simply calls one after the other.

use std::time::Duration;

use axum::Router;
use raft_runtime::{Config, Raft, SessionConfig};
use raft_service::Service;

use crate::http::HttpLimits;
use crate::state_machine::Counter;

pub use raft_service::node::{NodeConfig, NodeError};

/// The counter service: a [`Counter`] in memory (restored from the write-ahead log at
/// start), and the routes of [`crate::http`]. The log is the data directory itself.
///
/// It runs with client sessions on ([`CounterService::raft_defaults`]), which is what lets
/// a client send an increment again after an unknown outcome without counting it twice.
#[derive(Clone, Copy, Debug)]
pub struct CounterService {
    /// What the routes give a request in a session: the runtime's proposal timeout.
    propose_timeout: Duration,
}

impl Service for CounterService {
    const NAME: &'static str = "counter";
    type StateMachine = Counter;

    /// The shared settings ([`NodeConfig::raft_defaults`]) with client sessions on, at
    /// [`SessionConfig`]'s defaults: at most 10,000 sessions, each holding up to 32
    /// unacknowledged answers and 16 KiB of them, expiring after 10 minutes unused. Every
    /// node of a cluster must run with the same, from the cluster's first start.
    fn raft_defaults() -> Config {
        Config {
            sessions: Some(SessionConfig::default()),
            ..NodeConfig::raft_defaults()
        }
    }

    fn open(config: &NodeConfig) -> Result<(Self, Counter), raft_service::Error> {
        let service = CounterService {
            propose_timeout: config.raft.propose_timeout,
        };
        Ok((service, Counter::default()))
    }

    fn routes(&self, raft: Raft<Counter>, limits: HttpLimits) -> Router {
        crate::http::routes(raft, limits, self.propose_timeout)
    }
}

/// A counter node whose log is open and whose sockets are bound, but which does not run
/// yet.
pub type BoundNode = raft_service::node::BoundNode<CounterService>;

/// A running counter node.
pub type Node = raft_service::node::Node<CounterService>;
