//! Configurations `a` and `b`: three nodes in this process, driven through the leader's
//! [`Raft`], with the [`Sink`] state machine.
//!
//! - `a`: the in-memory log store and network the runtime ships for tests (no fsync, no
//!   serialization between nodes), the conditions of openraft's `benchmarks/minimal`.
//! - `b`: the file write-ahead log (one `fdatasync` per group commit) and QUIC with
//!   mutual TLS over 127.0.0.1, each node on its own endpoint.

use std::path::Path;
use std::time::Duration;

use raft_runtime::{Config, Raft, Session, SessionConfig};
use raft_testkit::{Cluster, InMemory, OnDisk, Plugins};
use tokio::time::Instant;

use crate::machine::{Payload, Sink};
use crate::usage;
use crate::workload::{Client, Outcome};
use crate::{Counters, Error, Target, Usage};

/// How long the cluster may take to elect a leader that commits.
const SETTLE: Duration = Duration::from_secs(30);

/// How long a command in a session is retried before its outcome is reported unknown.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Three nodes in this process, on the test kit's parts `K`.
pub struct InProcess<P: Payload, K: Plugins> {
    cluster: Cluster<Sink<P>, K>,
    leader: Raft<Sink<P>>,
    payload: P,
    sessions: bool,
}

fn raft_config(snapshot_every: u64, sessions: bool) -> Config {
    Config {
        snapshot_every,
        sessions: sessions.then(SessionConfig::default),
        ..Config::default()
    }
}

impl<P: Payload> InProcess<P, InMemory> {
    /// Configuration `a`: in-memory log stores and network.
    /// With `sessions`, every command goes through a client session.
    pub async fn start_in_memory(payload: usize, snapshot_every: u64, sessions: bool) -> Result<Self, Error> {
        let config = raft_config(snapshot_every, sessions);
        let cluster = Cluster::start(3, config, InMemory::new(), |_, _| Sink::default()).await;
        InProcess::settle(cluster, payload, sessions).await
    }
}

impl<P: Payload> InProcess<P, OnDisk> {
    /// Configuration `b`: a write-ahead log per node in a new directory under `parent`,
    /// and QUIC with mutual TLS (certificates from a fresh development CA) on 127.0.0.1.
    /// With `sessions`, every command goes through a client session.
    pub async fn start_durable(
        payload: usize,
        snapshot_every: u64,
        sessions: bool,
        parent: &Path,
    ) -> Result<Self, Error> {
        let parts = OnDisk::in_dir(parent)?;
        let config = raft_config(snapshot_every, sessions);
        let cluster = Cluster::start(3, config, parts, |_, _| Sink::default()).await;
        InProcess::settle(cluster, payload, sessions).await
    }
}

impl<P: Payload, K: Plugins> InProcess<P, K> {
    /// Waits for a stable leader: one through which 100 proposals in a row succeed.
    async fn settle(cluster: Cluster<Sink<P>, K>, payload: usize, sessions: bool) -> Result<Self, Error> {
        let payload = P::of_size(payload);
        let deadline = Instant::now() + SETTLE;
        let leader = 'found: loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if let Ok(m) = cluster.node(1).wait_for(remaining, |m| m.leader.is_some()).await
                && let Some(leader) = m.leader.and_then(|id| cluster.nodes.get(&id))
            {
                let mut stable = true;
                for _ in 0..100 {
                    if leader.propose(payload.clone()).await.is_err() {
                        stable = false;
                        break;
                    }
                }
                if stable {
                    break 'found leader.clone();
                }
            }
            if Instant::now() >= deadline {
                cluster.shutdown().await;
                return Err(format!("no stable leader within {SETTLE:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Ok(InProcess {
            cluster,
            leader,
            payload,
            sessions,
        })
    }
}

impl<P: Payload, K: Plugins> Target for InProcess<P, K> {
    type Client = Proposer<P>;

    fn clients(&self, n: usize) -> Vec<Proposer<P>> {
        (0..n)
            .map(|_| Proposer {
                leader: self.leader.clone(),
                payload: self.payload.clone(),
                session: self.sessions.then_some(None),
            })
            .collect()
    }

    async fn counters(&self) -> Result<Counters, Error> {
        let mut counters = Counters::default();
        for node in self.cluster.nodes.values() {
            let m = node.metrics().borrow().clone();
            counters.fsyncs += m.store.fsyncs;
            counters.log_writes += m.store.writes;
            counters.wire_bytes += m.transport.bytes_sent;
            if node.id() == self.leader.id() {
                counters.committed = m.commit;
            }
        }
        Ok(counters)
    }

    fn usage(&self) -> Usage {
        Usage {
            cpu: usage::self_cpu(),
            cpu_nodes: None,
            memory: usage::memory(None),
        }
    }

    async fn shutdown(self) -> Result<(), Error> {
        drop(self.leader);
        // Stopping checks that each node let go of its store; dropping the parts closes
        // the logs and removes their directory.
        self.cluster.shutdown().await;
        Ok(())
    }
}

/// A client that proposes a payload to the leader through its handle, in a session of its
/// own when the run uses sessions.
pub struct Proposer<P: Payload> {
    leader: Raft<Sink<P>>,
    payload: P,
    /// `None` without sessions; `Some(None)` until the session is opened (on the first
    /// call, in the warm-up).
    session: Option<Option<Session<Sink<P>>>>,
}

impl<P: Payload> Client for Proposer<P> {
    async fn call(&mut self) -> Outcome {
        let outcome = match &mut self.session {
            None => self.leader.propose(self.payload.clone()).await,
            Some(None) => match self.leader.open_session(SESSION_TIMEOUT).await {
                Ok(session) => {
                    let outcome = session.propose(self.payload.clone(), SESSION_TIMEOUT).await;
                    self.session = Some(Some(session));
                    outcome
                }
                Err(e) => Err(e),
            },
            Some(Some(session)) => session.propose(self.payload.clone(), SESSION_TIMEOUT).await,
        };
        match outcome {
            Ok(()) => Outcome::Done,
            Err(e) if e.is_definitely_not_applied() => Outcome::Rejected(e.to_string()),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}
