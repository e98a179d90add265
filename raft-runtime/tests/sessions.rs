//! Client sessions over in-process clusters: commands retried across faults are applied
//! exactly once, held responses survive snapshots and restarts, expiry follows the leaders'
//! stamps whatever the nodes' clocks say, and the bounds refuse without applying.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Cluster, InMemory, Log};
use raft_runtime::{Config, NodeId, ProposeError, SessionConfig, SessionError, UnknownOutcome};
use raft_testkit::{Plugins, SessionClock};

/// Generous: tests run on loaded 2-core machines (the time is paused, though).
const LONG: Duration = Duration::from_secs(60);

/// The fast configuration with sessions on and proposals forwarded to the leader.
fn config(sessions: SessionConfig) -> Config {
    Config {
        sessions: Some(sessions),
        forward_proposals: true,
        ..common::fast_config()
    }
}

/// A wall clock that follows tokio's (paused) time, from a fixed epoch, shifted per node by
/// `skews` (milliseconds; a node not listed is not shifted).
fn skewed_clock(skews: BTreeMap<NodeId, i64>) -> SessionClock {
    let start = tokio::time::Instant::now();
    Arc::new(move |id| {
        let now = 1_000_000_000 + start.elapsed().as_millis() as i64;
        (now + skews.get(&id).copied().unwrap_or(0)) as u64
    })
}

async fn cluster(n: u64, config: Config, clock: Option<SessionClock>) -> Cluster {
    Cluster::start_with_clock(
        n,
        config,
        InMemory::new(),
        |_, _: Option<&Log>| Log::new(false),
        clock,
    )
    .await
}

/// Many clients, each with its own session, send values through every node in turn while
/// the network drops messages and partitions come and go, and nodes restart. A client
/// retries every failure (unknown outcomes included) with the same session and sequence,
/// on another node, until it gets an answer. Every value must then be applied exactly
/// once, and every answer must be the one its first application gave: the [`Log`]
/// answers a value's position, so `values[answer - 1]` is the value.
#[tokio::test(start_paused = true)]
async fn retried_commands_in_sessions_are_applied_exactly_once_under_faults() {
    const CLIENTS: u64 = 8;
    const PER_CLIENT: u64 = 25;
    let mut c = cluster(
        3,
        Config {
            snapshot_every: 60,
            log_kept_entries: 10,
            propose_timeout: Duration::from_secs(2),
            ..config(SessionConfig::default())
        },
        None,
    )
    .await;
    c.leader().await;
    c.plugins.net.set_drop_rate(0.05, 7);
    c.plugins
        .net
        .set_delay(Some((Duration::from_micros(100), Duration::from_millis(3))));
    // The clients' view of the nodes: replaced as nodes restart.
    let nodes = Arc::new(Mutex::new(c.nodes.clone()));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let nodes = nodes.clone();
        clients.push(tokio::spawn(async move {
            let pick = |k: u64| {
                let nodes = nodes.lock().unwrap();
                nodes
                    .values()
                    .nth((k % nodes.len() as u64) as usize)
                    .unwrap()
                    .clone()
            };
            let mut failures = 0u64;
            let mut session = None;
            for attempt in 0u64.. {
                match pick(client + attempt).open_session(Duration::from_secs(5)).await {
                    Ok(s) => {
                        session = Some(s.id());
                        break;
                    }
                    Err(e) => {
                        assert!(!matches!(e, ProposeError::Session(_)), "opening refused: {e}");
                        failures += 1;
                        assert!(attempt < 500, "client {client} could not open a session: {e}");
                    }
                }
            }
            let session = session.unwrap();
            let mut answers = Vec::new();
            for seq in 1..=PER_CLIENT {
                let value = client * 1000 + seq;
                let mut attempt = 0u64;
                let answer = loop {
                    let node = pick(client + seq + attempt);
                    match node
                        .propose_in_session(session, seq, seq - 1, value, Duration::from_secs(3))
                        .await
                    {
                        Ok(answer) => break answer,
                        Err(e @ ProposeError::Session(_)) => panic!("{value} refused: {e}"),
                        Err(e @ ProposeError::Unknown(UnknownOutcome::SessionExpired { .. })) => {
                            panic!("{value}: {e}")
                        }
                        Err(_) => {
                            failures += 1;
                            attempt += 1;
                            assert!(attempt < 500, "client {client} gave up on {value}");
                        }
                    }
                };
                answers.push((value, answer));
            }
            (answers, failures)
        }));
    }
    // Faults while the clients run: partitions that come and go, message loss, restarts.
    for round in 0..6u64 {
        let victim = common::partition_round(&c, round).await;
        if round % 2 == 1 {
            c.restart(victim).await;
            nodes.lock().unwrap().insert(victim, c.node(victim).clone());
        }
    }
    let mut answers = Vec::new();
    let mut client_retries = 0;
    for cl in clients {
        let (a, f) = cl.await.unwrap();
        answers.extend(a);
        client_retries += f;
    }
    c.plugins.net.heal();
    let values = c.converged().await;
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for v in &values {
        *counts.entry(*v).or_default() += 1;
    }
    assert!(counts.values().all(|&n| n == 1), "a value was applied twice");
    assert_eq!(
        values.len() as u64,
        CLIENTS * PER_CLIENT,
        "as many values applied as (session, sequence) pairs acknowledged"
    );
    for (value, answer) in &answers {
        assert_eq!(
            values.get(*answer as usize - 1),
            Some(value),
            "the answer to {value} is its first application's"
        );
    }
    let handle_retries: u64 = c.nodes.values().map(|n| n.session_retries()).sum();
    println!(
        "{} values acknowledged; {client_retries} retries by the clients on other nodes, \
         {handle_retries} by the handles (nodes running at the end)",
        answers.len()
    );
    assert!(
        client_retries + handle_retries > 0,
        "the faults should have made some command be retried"
    );
    c.shutdown().await;
}

/// Opens a session through `node` and sends the values `101..=100 + n` in it as commands
/// `1..=n`, acknowledging none, so that the cluster holds every response. Returns the
/// session and each command's answer.
async fn unacknowledged(
    c: &Cluster,
    node: NodeId,
    n: u64,
) -> (raft_runtime::Session<Log>, BTreeMap<u64, u64>) {
    let session = c.node(node).open_session(LONG).await.unwrap();
    let mut answers = BTreeMap::new();
    for seq in 1..=n {
        let answer = c
            .node(node)
            .propose_in_session(session.id(), seq, 0, 100 + seq, LONG)
            .await
            .unwrap();
        answers.insert(seq, answer);
    }
    (session, answers)
}

/// A follower that was down while the log was compacted installs the leader's snapshot,
/// session table included: once it leads, a retry of a command applied long before gets
/// the response of its first application, and is not applied again. The same holds after
/// every node restarts (each restores the table from its snapshot and replays the log).
#[tokio::test(start_paused = true)]
async fn held_responses_survive_snapshot_install_and_restart() {
    let mut c = cluster(
        3,
        Config {
            snapshot_every: 10,
            log_kept_entries: 0,
            ..config(SessionConfig::default())
        },
        None,
    )
    .await;
    let leader = c.leader().await;
    let (session, first) = unacknowledged(&c, leader, 5).await;
    let down = if leader == 3 { 2 } else { 3 };
    c.stop(down).await;
    for v in 1..=30 {
        c.propose(v).await;
    }
    c.node(leader)
        .wait_for(LONG, |m| m.snapshot_index >= 30)
        .await
        .expect("the leader compacted its log");
    c.start_node(down, common::Mode::Bootstrap(c.members.clone()))
        .await;
    c.node(down)
        .wait_for(LONG, |m| m.snapshots_installed >= 1)
        .await
        .expect("the follower installed a snapshot");
    let values = c.converged().await;
    c.node(leader).transfer_leader(down).await.unwrap();
    for seq in [3, 5, 1] {
        let answer = c
            .node(down)
            .propose_in_session(session.id(), seq, 0, 100 + seq, LONG)
            .await
            .unwrap();
        assert_eq!(answer, first[&seq], "retry of {seq}");
    }
    assert_eq!(c.converged().await, values, "no retry was applied again");

    // Every node restarts: the table comes back from the snapshot and the log.
    for id in [1, 2, 3] {
        c.restart(id).await;
    }
    let leader = c.leader().await;
    let answer = c
        .node(leader)
        .propose_in_session(session.id(), 4, 0, 104, LONG)
        .await
        .unwrap();
    assert_eq!(answer, first[&4]);
    // A new command is applied, and acknowledging lets the table drop the old responses.
    let answer = c
        .node(leader)
        .propose_in_session(session.id(), 6, 5, 106, LONG)
        .await
        .unwrap();
    assert_eq!(answer as usize, values.len() + 1);
    assert_eq!(
        c.node(leader)
            .propose_in_session(session.id(), 2, 5, 102, LONG)
            .await,
        Err(ProposeError::Session(SessionError::Acknowledged {
            session: session.id(),
            seq: 2,
            acked: 5
        }))
    );
    let mut expected = values;
    expected.push(106);
    assert_eq!(c.converged().await, expected);
    c.shutdown().await;
}

/// The nodes' clocks disagree by seconds. Time in the session table is the largest stamp a
/// leader wrote, so a leader whose clock runs ahead expires a session, and a later leader
/// whose clock is behind cannot bring it back: every node refuses its commands alike (a node
/// that applied one would hold other values, and the cluster would not converge), also
/// after a restart that replays the log.
#[tokio::test(start_paused = true)]
async fn sessions_expire_by_the_leaders_stamps_alike_on_every_node() {
    let skews = BTreeMap::from([(1, 0), (2, 5_000), (3, -5_000)]);
    let mut c = cluster(
        3,
        config(SessionConfig {
            timeout: Duration::from_secs(2),
            ..SessionConfig::default()
        }),
        Some(skewed_clock(skews)),
    )
    .await;
    let leader = c.leader().await;
    if leader != 3 {
        c.node(leader).transfer_leader(3).await.unwrap();
    }
    // Node 3's clock is 5 s behind: the session is opened and used at t - 5 s.
    let a = c.node(3).open_session(LONG).await.unwrap();
    assert_eq!(a.propose(1, LONG).await.unwrap(), 1);
    // Node 2's clock is 5 s ahead: its first stamp moves the table's time 10 s on, past
    // session a's timeout.
    c.node(3).transfer_leader(2).await.unwrap();
    let b = c.node(2).open_session(LONG).await.unwrap();
    let expired = Err(ProposeError::Session(SessionError::Expired { session: a.id() }));
    assert_eq!(c.node(2).propose_in_session(a.id(), 2, 1, 2, LONG).await, expired);
    assert_eq!(b.propose(3, LONG).await.unwrap(), 2);
    // Back to node 3, behind: the table's time does not go back, so a stays expired, and
    // b, used 10 s "later" than node 3's clock says, lives on.
    c.node(2).transfer_leader(3).await.unwrap();
    assert_eq!(c.node(3).propose_in_session(a.id(), 2, 1, 2, LONG).await, expired);
    assert_eq!(b.propose(4, LONG).await.unwrap(), 3);
    assert_eq!(c.converged().await, vec![1, 3, 4]);
    c.restart(1).await;
    assert_eq!(c.converged().await, vec![1, 3, 4]);
    // An unused session expires once a leader's stamps pass its timeout: node 3's clock is
    // 10 s behind the table's time, so that takes 10 s more than the timeout.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let _ = c.node(3).open_session(LONG).await.unwrap();
    assert_eq!(
        b.propose(5, LONG).await,
        Ok(4),
        "not expired yet by node 3's stamps"
    );
    tokio::time::sleep(Duration::from_secs(13)).await;
    let _ = c.node(3).open_session(LONG).await.unwrap();
    assert_eq!(
        b.propose(6, LONG).await,
        Err(ProposeError::Session(SessionError::Expired { session: b.id() }))
    );
    assert_eq!(c.converged().await, vec![1, 3, 4, 5]);
    c.shutdown().await;
}

/// Past the bounds, opening a session or sending a command is refused, definitely not
/// applied, and works again once the client acknowledges answers.
#[tokio::test(start_paused = true)]
async fn the_bounds_refuse_sessions_and_commands_without_applying() {
    let c = cluster(
        3,
        config(SessionConfig {
            max_sessions: 2,
            max_pending: 2,
            ..SessionConfig::default()
        }),
        None,
    )
    .await;
    let leader = c.node(c.leader().await).clone();
    let a = leader.open_session(LONG).await.unwrap();
    let _b = leader.open_session(LONG).await.unwrap();
    let full = leader.open_session(LONG).await.unwrap_err();
    assert_eq!(full, ProposeError::Session(SessionError::TooManySessions));
    assert!(full.is_definitely_not_applied());
    for seq in 1..=2 {
        leader
            .propose_in_session(a.id(), seq, 0, seq, LONG)
            .await
            .unwrap();
    }
    assert_eq!(
        leader.propose_in_session(a.id(), 3, 0, 3, LONG).await,
        Err(ProposeError::Session(SessionError::TooManyPending {
            session: a.id()
        }))
    );
    assert_eq!(c.converged().await, vec![1, 2]);
    assert_eq!(leader.propose_in_session(a.id(), 3, 1, 3, LONG).await, Ok(3));
    // An id that never opened a session.
    assert_eq!(
        leader.propose_in_session(999, 1, 0, 9, LONG).await,
        Err(ProposeError::Session(SessionError::Expired { session: 999 }))
    );
    assert_eq!(c.converged().await, vec![1, 2, 3]);
    c.shutdown().await;
}

/// Sessions are opt-in: a cluster without them refuses to open one.
#[tokio::test(start_paused = true)]
async fn a_cluster_without_sessions_refuses_to_open_one() {
    let c = common::cluster(3).await;
    let leader = c.leader().await;
    assert_eq!(
        c.node(leader).open_session(LONG).await.unwrap_err(),
        ProposeError::Session(SessionError::NotEnabled)
    );
    c.shutdown().await;
}

/// A state machine that keeps its state on disk works with sessions too: at every start it
/// is restored from the stored snapshot, session table included, and replays the log
/// after it, so a retry after restarts (and a joining node's) still finds its response,
/// and nothing is applied twice (the test's state machine panics if an index is).
#[tokio::test(start_paused = true)]
async fn a_state_machine_on_disk_keeps_its_sessions_across_restarts() {
    let mut c = Cluster::with_logs(
        3,
        Config {
            snapshot_every: 8,
            log_kept_entries: 2,
            ..config(SessionConfig::default())
        },
        InMemory::new(),
        true,
    )
    .await;
    let leader = c.leader().await;
    let (session, first) = unacknowledged(&c, leader, 12).await;
    // Past the last snapshot, some commands are in the log only.
    c.node(leader)
        .wait_for(LONG, |m| m.snapshot_index >= 8)
        .await
        .unwrap();
    let values = c.converged().await;
    for id in [1, 2, 3] {
        c.restart(id).await;
    }
    let leader = c.leader().await;
    for seq in [12, 3, 9] {
        let answer = c
            .node(leader)
            .propose_in_session(session.id(), seq, 0, 100 + seq, LONG)
            .await
            .unwrap();
        assert_eq!(answer, first[&seq], "retry of {seq}");
    }
    assert_eq!(c.converged().await, values, "no retry was applied again");
    c.shutdown().await;
}

/// A node that joins with sessions on starts from its empty state, and a restart before it
/// has a snapshot of its own restarts from that.
#[tokio::test(start_paused = true)]
async fn a_joining_node_with_sessions_catches_up_and_restarts() {
    let mut c = cluster(3, config(SessionConfig::default()), None).await;
    let leader = c.leader().await;
    let session = c.node(leader).open_session(LONG).await.unwrap();
    assert_eq!(session.propose(7, LONG).await, Ok(1));
    let members = c.members.clone();
    c.start_node(4, common::Mode::Join(members)).await;
    c.node(leader).add_learner(4, c.plugins.member(4)).await.unwrap();
    assert_eq!(c.converged().await, vec![7]);
    c.stop(4).await;
    c.start_node(4, common::Mode::Join(c.members.clone())).await;
    assert_eq!(session.propose(8, LONG).await, Ok(2));
    assert_eq!(c.converged().await, vec![7, 8]);
    c.shutdown().await;
}
