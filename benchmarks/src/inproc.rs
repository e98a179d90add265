//! Configurations `a` and `b`: three nodes in this process, driven through the leader's
//! [`Raft`], with the [`Sink`] state machine.
//!
//! - `a`: the in-memory log store and network the runtime ships for tests (no fsync, no
//!   serialization between nodes), the conditions of openraft's `benchmarks/minimal`.
//! - `b`: the file write-ahead log (one `fdatasync` per group commit) and QUIC with
//!   mutual TLS over 127.0.0.1, each node on its own endpoint.

use std::path::Path;
use std::time::Duration;

use raft_runtime::{Config, Raft, ReadError, Session, SessionConfig};
use raft_testkit::{Cluster, InMemory, OnDisk, Plugins};
use tokio::time::Instant;

use crate::machine::{Payload, Sink};
use crate::usage;
use crate::workload::{Client, Outcome};
use crate::{Counters, Error, Target, Usage, Workload};

/// How long the cluster may take to elect a leader that commits.
const SETTLE: Duration = Duration::from_secs(30);

/// How long a command in a session is retried before its outcome is reported unknown.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Three nodes in this process, on the test kit's parts `K`.
pub struct InProcess<P: Payload, K: Plugins> {
    cluster: Cluster<Sink<P>, K>,
    leader: Raft<Sink<P>>,
    /// The payload's size: each client makes its own, so that clients share no buffer
    /// (and no reference count) as distinct clients would not.
    payload: usize,
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
    async fn settle(
        cluster: Cluster<Sink<P>, K>,
        payload_size: usize,
        sessions: bool,
    ) -> Result<Self, Error> {
        let payload = P::of_size(payload_size);
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
            payload: payload_size,
            sessions,
        })
    }
}

impl<P: Payload, K: Plugins> Target for InProcess<P, K> {
    type Client = Proposer<P>;

    fn clients(&self, n: usize, workload: Workload, batch: usize) -> Result<Vec<Proposer<P>>, Error> {
        let followers: Vec<Raft<Sink<P>>> = self
            .cluster
            .nodes
            .values()
            .filter(|node| node.id() != self.leader.id())
            .cloned()
            .collect();
        Ok((0..n)
            .map(|i| Proposer {
                node: match workload {
                    Workload::FollowerRead => followers[i % followers.len()].clone(),
                    Workload::Write | Workload::Read | Workload::LeaseRead => self.leader.clone(),
                },
                payload: P::of_size(self.payload),
                op: match workload {
                    Workload::Write if self.sessions => Op::Session(None),
                    Workload::Write if batch > 1 => Op::Batch { size: batch, left: 0 },
                    Workload::Write => Op::Propose,
                    Workload::Read | Workload::FollowerRead => Op::Read { lease: false },
                    Workload::LeaseRead => Op::Read { lease: true },
                },
            })
            .collect())
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

/// A client of one node: proposes the payload (alone, in batches, or in a session of its
/// own) or reads the state machine's count.
pub struct Proposer<P: Payload> {
    node: Raft<Sink<P>>,
    payload: P,
    op: Op<P>,
}

/// What a [`Proposer`] does each call.
enum Op<P: Payload> {
    /// `Raft::propose`.
    Propose,
    /// `Raft::propose_batch` of `size` commands; `left` of the current batch still to
    /// send again after a refusal (0: a new batch).
    Batch { size: usize, left: usize },
    /// `Session::propose`, in a session opened on the first call (in the warm-up).
    Session(Option<Session<Sink<P>>>),
    /// `Raft::read`, or `Raft::lease_read`.
    Read { lease: bool },
}

impl<P: Payload> Client for Proposer<P> {
    fn ops_per_call(&self) -> u64 {
        match self.op {
            Op::Batch { size, .. } => size as u64,
            Op::Propose | Op::Session(_) | Op::Read { .. } => 1,
        }
    }

    async fn call(&mut self) -> Outcome {
        let outcome = match &mut self.op {
            Op::Propose => self.node.propose(self.payload.clone()).await,
            Op::Batch { size, left } => {
                if *left == 0 {
                    *left = *size;
                }
                let answers = self
                    .node
                    .propose_batch(std::iter::repeat_n(self.payload.clone(), *left))
                    .await;
                // Send again only what was definitely not applied; any other failure fails
                // the call.
                let mut refused = None;
                let mut failed = None;
                *left = 0;
                for answer in answers {
                    match answer {
                        Ok(()) => {}
                        Err(e) if e.is_definitely_not_applied() => {
                            *left += 1;
                            refused.get_or_insert(e);
                        }
                        Err(e) => {
                            failed.get_or_insert(e);
                        }
                    }
                }
                match (failed, refused) {
                    (Some(e), _) => {
                        *left = 0;
                        Err(e)
                    }
                    (None, Some(e)) => Err(e),
                    (None, None) => Ok(()),
                }
            }
            Op::Session(None) => match self.node.open_session(SESSION_TIMEOUT).await {
                Ok(session) => {
                    let outcome = session.propose(self.payload.clone(), SESSION_TIMEOUT).await;
                    self.op = Op::Session(Some(session));
                    outcome
                }
                Err(e) => Err(e),
            },
            Op::Session(Some(session)) => session.propose(self.payload.clone(), SESSION_TIMEOUT).await,
            Op::Read { lease } => {
                let read = if *lease {
                    self.node.lease_read(|sm| sm.applied()).await
                } else {
                    self.node.read(|sm| sm.applied()).await
                };
                return match read {
                    Ok(_) => Outcome::Done,
                    // Busy: too many reads waiting; nothing else clears up by itself.
                    Err(e @ ReadError::Busy(_)) => Outcome::Rejected(e.to_string()),
                    Err(e) => Outcome::Failed(e.to_string()),
                };
            }
        };
        match outcome {
            Ok(()) => Outcome::Done,
            Err(e) if e.is_definitely_not_applied() => Outcome::Rejected(e.to_string()),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}
