//! In-process clusters over the in-memory store and network: elections, replication,
//! crashes, partitions, snapshots, membership, reads, shutdown.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::Log;
use raft_runtime::raft_core::Role;
use raft_runtime::{
    AdminError, BusyReason, Config, Fatal, InvalidTransfer, ProposeError, ReadError, UnknownOutcome,
};

#[tokio::test(start_paused = true)]
async fn three_nodes_elect_a_leader_and_replicate() {
    let c = common::cluster(3).await;
    let leader = c.leader().await;
    for v in 1..=20 {
        assert_eq!(c.node(leader).propose(v).await.unwrap(), v);
    }
    assert_eq!(c.converged().await, (1..=20).collect::<Vec<_>>());
    let m = c.metrics(leader);
    assert_eq!(m.matched.len(), 3, "the leader reports each peer's replication");
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn five_nodes_elect_a_leader_and_replicate() {
    let c = common::cluster(5).await;
    for v in 1..=10 {
        c.propose(v).await;
    }
    assert_eq!(c.converged().await.len(), 10);
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn follower_refuses_with_a_leader_hint() {
    let c = common::cluster(3).await;
    let leader = c.leader().await;
    let follower = *c.nodes.keys().find(|&&id| id != leader).unwrap();
    let err = c.node(follower).propose(1).await.unwrap_err();
    assert_eq!(err, ProposeError::NotLeader { leader: Some(leader) });
    assert!(err.is_definitely_not_applied());
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn followers_forward_proposals_when_configured() {
    let c = common::cluster_with(3, |cfg| cfg.forward_proposals = true, false).await;
    let leader = c.leader().await;
    let follower = *c.nodes.keys().find(|&&id| id != leader).unwrap();
    assert_eq!(c.node(follower).propose(7).await.unwrap(), 1);
    assert_eq!(c.node(follower).propose(8).await.unwrap(), 2);
    assert_eq!(c.converged().await, vec![7, 8]);
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn leader_crash_and_restart() {
    let mut c = common::cluster(3).await;
    for v in 1..=5 {
        c.propose(v).await;
    }
    let old = c.leader().await;
    c.stop(old).await;
    let others: Vec<u64> = (1..=3).filter(|&id| id != old).collect();
    let new = c.leader_among(&others, Duration::from_secs(30)).await;
    assert_ne!(new, old);
    for v in 6..=10 {
        c.propose(v).await;
    }
    c.restart(old).await;
    assert_eq!(c.converged().await, (1..=10).collect::<Vec<_>>());
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn partitioned_minority_leader_cannot_commit() {
    let c = common::cluster(5).await;
    c.propose(1).await;
    let old = c.leader().await;
    let buddy = if old == 1 { 2 } else { 1 };
    let majority: Vec<u64> = (1..=5).filter(|&id| id != old && id != buddy).collect();
    c.plugins.net.partition(&[old, buddy], &majority);
    // The old leader accepts the proposal but can never commit it.
    let stuck = {
        let h = c.node(old).clone();
        tokio::spawn(async move { h.propose(100).await })
    };
    let new = c.leader_among(&majority, Duration::from_secs(30)).await;
    assert!(majority.contains(&new));
    assert_eq!(c.node(new).propose(2).await.unwrap(), 2);
    c.plugins.net.heal();
    let outcome = stuck.await.unwrap();
    assert!(
        matches!(outcome, Err(ProposeError::Dropped) | Err(ProposeError::Timeout)),
        "{outcome:?}"
    );
    let values = c.converged().await;
    assert_eq!(values, vec![1, 2], "the minority's proposal never took effect");
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn every_proposal_resolves_exactly_once_under_faults() {
    let c = common::cluster_with(3, |_| {}, true).await;
    c.plugins.net.set_drop_rate(0.05, 7);
    c.plugins
        .net
        .set_delay(Some((Duration::from_micros(100), Duration::from_millis(3))));
    let mut clients = Vec::new();
    for client in 0..8u64 {
        let handles: Vec<_> = c.nodes.values().cloned().collect();
        clients.push(tokio::spawn(async move {
            // Each attempt is recorded; a client retries only what was definitely not applied.
            let mut attempts = Vec::new();
            for i in 0..25u64 {
                let value = client * 1000 + i;
                for attempt in 0..200u64 {
                    let h = &handles[((client + i + attempt) % handles.len() as u64) as usize];
                    let outcome = h.propose(value).await;
                    let retry = matches!(&outcome, Err(e) if e.is_definitely_not_applied());
                    attempts.push((value, outcome));
                    if !retry {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            attempts
        }));
    }
    // Faults while the clients run: partitions that come and go, and message loss.
    for round in 0..6u64 {
        common::partition_round(&c, round).await;
    }
    let mut attempts = Vec::new();
    for cl in clients {
        attempts.extend(cl.await.unwrap());
    }
    c.plugins.net.heal();
    let values = c.converged().await;
    let counts: BTreeMap<u64, usize> = values.iter().fold(BTreeMap::new(), |mut m, v| {
        *m.entry(*v).or_default() += 1;
        m
    });
    assert!(counts.values().all(|&n| n == 1), "a value was applied twice");
    let mut by_value: BTreeMap<u64, Vec<&Result<u64, ProposeError>>> = BTreeMap::new();
    for (value, outcome) in &attempts {
        by_value.entry(*value).or_default().push(outcome);
    }
    assert_eq!(by_value.len(), 200, "every proposal was answered");
    let (mut ok, mut unknown) = (0, 0);
    for (value, outcomes) in &by_value {
        let last = outcomes.last().unwrap();
        match last {
            Ok(_) => {
                ok += 1;
                assert!(counts.contains_key(value), "acknowledged {value} is missing");
            }
            Err(e) if e.is_definitely_not_applied() => {
                assert!(!counts.contains_key(value), "{value} was applied despite {e}");
            }
            Err(_) => unknown += 1,
        }
    }
    println!(
        "{ok} acknowledged, {unknown} unknown, {} attempts",
        attempts.len()
    );
    assert!(ok >= 150, "most proposals should get through: {ok}");
    c.shutdown().await;
}

/// Stops a follower of the current leader, proposes the values `1..=values` without it, and
/// waits until the leader has taken a snapshot at `snapshot_at` or later. Returns the
/// leader and the stopped follower.
async fn leave_a_follower_behind(c: &mut common::Cluster, values: u64, snapshot_at: u64) -> (u64, u64) {
    let leader = c.leader().await;
    let down = if leader == 3 { 2 } else { 3 };
    c.stop(down).await;
    for v in 1..=values {
        c.propose(v).await;
    }
    c.node(leader)
        .wait_for(Duration::from_secs(30), |m| m.snapshot_index >= snapshot_at)
        .await
        .expect("the leader took its snapshots");
    (leader, down)
}

#[tokio::test(start_paused = true)]
async fn follower_down_during_compaction_catches_up_by_snapshot() {
    let mut c = common::cluster_with(
        3,
        |cfg| {
            cfg.snapshot_every = 20;
            cfg.log_kept_entries = 0;
        },
        false,
    )
    .await;
    let (_, down) = leave_a_follower_behind(&mut c, 100, 60).await;
    c.restart(down).await;
    assert_eq!(c.converged().await, (1..=100).collect::<Vec<_>>());
    // Counters are published once per tick: wait for them rather than read them at once.
    c.node(down)
        .wait_for(Duration::from_secs(10), |m| m.snapshots_installed >= 1)
        .await
        .expect("caught up through a snapshot");
    c.shutdown().await;
}

/// The log keeps `log_kept_entries` behind each snapshot: a follower that lags by fewer
/// catches up from the log, one that lags by more receives a snapshot, and the leader's log
/// stays within the bound.
#[tokio::test(start_paused = true)]
async fn a_follower_lagging_within_the_kept_log_catches_up_without_a_snapshot() {
    let mut c = common::cluster_with(
        3,
        |cfg| {
            cfg.snapshot_every = 20;
            cfg.log_kept_entries = 50;
        },
        false,
    )
    .await;
    // 40 entries behind: within the 50 kept, though two snapshots were taken meanwhile.
    let (leader, down) = leave_a_follower_behind(&mut c, 40, 40).await;
    let up = 6 - leader - down;
    c.restart(down).await;
    assert_eq!(c.converged().await, (1..=40).collect::<Vec<_>>());
    assert_eq!(c.metrics(down).snapshots_installed, 0, "caught up from the log");

    // 200 entries behind: beyond the log kept, so a snapshot.
    c.stop(up).await;
    for v in 41..=240 {
        c.propose(v).await;
    }
    let m = c
        .node(leader)
        .wait_for(Duration::from_secs(30), |m| m.snapshot_index >= 220)
        .await
        .expect("the leader took its snapshots");
    // Kept: at most 50 entries behind the snapshot (and the entries after it).
    assert!(
        m.first_log_index + 50 >= m.snapshot_index,
        "the log keeps more than the bound: first {} snapshot {}",
        m.first_log_index,
        m.snapshot_index
    );
    assert!(
        m.first_log_index < m.snapshot_index,
        "the log keeps nothing behind the snapshot: first {} snapshot {}",
        m.first_log_index,
        m.snapshot_index
    );
    c.restart(up).await;
    assert_eq!(c.converged().await, (1..=240).collect::<Vec<_>>());
    c.node(up)
        .wait_for(Duration::from_secs(10), |m| m.snapshots_installed >= 1)
        .await
        .expect("caught up through a snapshot");
    c.shutdown().await;
}

/// A follower that receives a snapshot slowly, or restores it slowly, while the leader
/// takes newer ones catches up from the log after the snapshot it received, not by another
/// snapshot: the leader keeps that log (within `log_kept_bytes`) although it keeps none for
/// its other followers. Without it, the same run installs a second snapshot.
#[tokio::test(start_paused = true)]
async fn the_log_after_a_snapshot_in_flight_is_kept_for_its_follower() {
    fn keep_log_bytes(cfg: &mut Config) {
        cfg.snapshot_every = 20;
        cfg.log_kept_entries = 0;
    }
    fn keep_no_log(cfg: &mut Config) {
        keep_log_bytes(cfg);
        cfg.log_kept_bytes = 0;
    }
    enum Slow {
        Transfer,
        Restore,
    }
    type Configure = fn(&mut Config);
    let runs: [(Configure, Slow, u64); 3] = [
        (keep_log_bytes, Slow::Transfer, 1),
        (keep_log_bytes, Slow::Restore, 1),
        (keep_no_log, Slow::Transfer, 2),
    ];
    for (configure, slow, installs) in runs {
        let mut c = common::cluster_with(3, configure, false).await;
        let (leader, down) = leave_a_follower_behind(&mut c, 150, 140).await;
        // The snapshot (three chunks of the Log's 64 values) takes 15 s to arrive, or to
        // restore; meanwhile the leader takes more snapshots.
        // (A slow restore gets a transfer that takes a moment, so that the restarted
        // node's state machine is made slow before the data arrives.)
        let per_chunk = match slow {
            Slow::Transfer => Duration::from_secs(5),
            Slow::Restore => Duration::from_millis(10),
        };
        c.plugins.net.slow_snapshots(Some(per_chunk));
        c.restart(down).await;
        if let Slow::Restore = slow {
            c.state_machines[&down].slow_restores(Duration::from_secs(15));
        }
        c.node(down)
            .wait_for(Duration::from_secs(5), |m| m.leader.is_some())
            .await
            .expect("the follower heard from the leader");
        for v in 151..=250 {
            c.propose(v).await;
        }
        let m = c
            .node(leader)
            .wait_for(Duration::from_secs(30), |m| m.snapshot_index >= 240)
            .await
            .expect("the leader took more snapshots");
        assert!(m.snapshots_taken >= 10);
        assert_eq!(
            c.metrics(down).snapshots_installed,
            0,
            "the leader's snapshots were taken while the first one was on its way"
        );
        c.plugins.net.slow_snapshots(None);
        c.state_machines[&down].slow_restores(Duration::ZERO);
        assert_eq!(c.converged().await, (1..=250).collect::<Vec<_>>());
        let installed = c.metrics(down).snapshots_installed;
        let kept = c.node(leader).current_metrics().await.unwrap();
        assert_eq!(
            installed, installs,
            "{installed} snapshots installed (leader's log from {}, snapshot at {})",
            kept.first_log_index, kept.snapshot_index
        );
        c.shutdown().await;
    }
}

/// A snapshot's data reaches the follower's store as it arrives. Transfers that break part
/// way leave nothing staged and the follower's log untouched; the leader sends the
/// snapshot again and the follower catches up.
#[tokio::test(start_paused = true)]
async fn snapshot_transfers_that_break_part_way_are_sent_again() {
    let mut c = common::cluster_with(
        3,
        |cfg| {
            cfg.snapshot_every = 20;
            cfg.log_kept_entries = 0;
        },
        false,
    )
    .await;
    // More than one chunk of the Log's snapshot (64 values each).
    let (_, down) = leave_a_follower_behind(&mut c, 150, 100).await;
    c.plugins.net.break_snapshots(2);
    c.restart(down).await;
    assert_eq!(c.converged().await, (1..=150).collect::<Vec<_>>());
    assert_eq!(c.plugins.net.snapshots_broken(), 2, "both transfers broke");
    c.node(down)
        .wait_for(Duration::from_secs(10), |m| m.snapshots_installed >= 1)
        .await
        .expect("caught up through a snapshot");
    // Nothing of the broken transfers stayed staged.
    let store = &c.plugins.stores[&down];
    assert_eq!(store.staged_snapshots(), 0);
    c.shutdown().await;
}

/// A snapshot is read while applying goes on: the state machine hands over a view of its
/// state as of the applied index, which the runtime reads off the applier. Held back, it
/// stops neither proposals nor their application; let go, it is saved with the state it
/// was taken with, and a node that restarts from it converges without applying anything
/// twice.
#[tokio::test(start_paused = true)]
async fn applying_goes_on_while_a_snapshot_is_read() {
    let mut c = common::cluster_with(3, |cfg| cfg.snapshot_every = 20, false).await;
    for id in 1..=3 {
        c.state_machines[&id].pause_snapshots(true);
    }
    for v in 1..=60 {
        c.propose(v).await;
    }
    let leader = c.leader().await;
    let commit = c.node(leader).current_metrics().await.unwrap().commit;
    c.wait_applied(commit).await;
    for id in 1..=3 {
        let m = c.node(id).current_metrics().await.unwrap();
        assert_eq!(
            (m.snapshots_taken, m.snapshot_index),
            (0, 0),
            "node {id}: a held snapshot was saved"
        );
        assert_eq!(c.state_machines[&id].values(), (1..=60).collect::<Vec<_>>());
    }
    for id in 1..=3 {
        c.state_machines[&id].pause_snapshots(false);
    }
    for id in 1..=3 {
        let m = c
            .node(id)
            .wait_for(Duration::from_secs(30), |m| m.snapshots_taken >= 1)
            .await
            .unwrap_or_else(|_| panic!("node {id} saved no snapshot"));
        // Taken when 20 entries had been applied, long before the last.
        assert!(
            m.snapshot_index >= 20 && m.snapshot_index < commit,
            "node {id}: {}",
            m.snapshot_index
        );
    }
    // A restarted node starts empty, restores the snapshot (the values as of its index,
    // not as of when it was read) and replays the rest.
    c.restart(1).await;
    c.propose(61).await;
    assert_eq!(c.converged().await, (1..=61).collect::<Vec<_>>());
    c.shutdown().await;
}

/// A node stops while a snapshot is still being read from its state machine: the read is
/// dropped rather than awaited, and nothing of it is saved.
#[tokio::test(start_paused = true)]
async fn a_node_stops_while_a_snapshot_is_being_read() {
    let mut c = common::cluster_with(3, |cfg| cfg.snapshot_every = 10, false).await;
    for id in 1..=3 {
        c.state_machines[&id].pause_snapshots(true);
    }
    for v in 1..=15 {
        c.propose(v).await;
    }
    let leader = c.leader().await;
    let commit = c.node(leader).current_metrics().await.unwrap().commit;
    c.wait_applied(commit).await;
    // The snapshot is due, and taken: the node stops while it is held.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while c.state_machines[&leader].views_taken() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no snapshot was taken");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let m = c.node(leader).current_metrics().await.unwrap();
    assert_eq!(
        (m.snapshots_taken, m.snapshot_index),
        (0, 0),
        "a held snapshot was saved"
    );
    let stopped = tokio::time::timeout(Duration::from_secs(60), c.stop(leader))
        .await
        .expect("the node stopped with a snapshot held back")
        .expect("the node was running");
    assert!(stopped.fatal.is_none(), "{:?}", stopped.fatal);
    tokio::time::timeout(Duration::from_secs(60), c.shutdown())
        .await
        .expect("the other nodes stopped with a snapshot held back");
}

/// A state machine whose snapshot data ends in an error stops its node with a state
/// machine error (not a log store one), and the others go on.
#[tokio::test(start_paused = true)]
async fn a_snapshot_that_fails_to_read_stops_the_node_as_a_state_machine_failure() {
    let c = common::cluster_with(3, |cfg| cfg.snapshot_every = 10, false).await;
    let leader = c.leader().await;
    c.state_machines[&leader].fail_snapshots();
    // The node stops once the snapshot is due: later proposals fail.
    for v in 1..=15 {
        let _ = c.node(leader).propose(v).await;
    }
    let m = c
        .node(leader)
        .wait_for(Duration::from_secs(30), |m| m.fatal.is_some())
        .await
        .expect("the node stopped");
    let fatal = m.fatal.unwrap();
    assert!(matches!(fatal, Fatal::StateMachine(_)), "{fatal}");
    assert!(fatal.to_string().contains("injected"), "{fatal}");
    let others: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    let new = c.leader_among(&others, Duration::from_secs(30)).await;
    c.node(new).propose(16).await.unwrap();
    c.shutdown().await;
}

/// Large commands cannot fill the disk between snapshots: the log is also compacted once
/// enough bytes were applied, however few the entries.
#[tokio::test(start_paused = true)]
async fn the_log_is_compacted_by_bytes_as_well_as_by_entries() {
    fn by_bytes(cfg: &mut raft_runtime::Config) {
        cfg.snapshot_every = 0;
        cfg.snapshot_every_bytes = 500;
    }
    let c = common::cluster_with(3, by_bytes, false).await;
    let leader = c.leader().await;
    // About 17 bytes an entry as counted (16 of overhead): 60 entries pass the threshold.
    for v in 1..=60 {
        c.propose(v).await;
    }
    let m = c
        .node(leader)
        .wait_for(Duration::from_secs(30), |m| m.snapshots_taken >= 1)
        .await
        .expect("a snapshot was taken by bytes");
    // With snapshots by entry count off, only the bytes can have triggered it.
    assert!(m.snapshot_index > 0, "{}", m.snapshot_index);
    c.shutdown().await;
}

/// Committed entries that queue up behind a slow state machine are handed to it in calls
/// of about `max_apply_bytes` each, not all at once: what one call decodes and answers
/// stays bounded whatever the backlog.
#[tokio::test(start_paused = true)]
async fn a_backlog_is_applied_in_batches_bounded_by_bytes() {
    // Ten of the smallest entries per batch the core hands out.
    const MAX_APPLY_BYTES: u64 = 10 * (raft_runtime::raft_core::ENTRY_OVERHEAD + 9);
    let c = common::cluster_with(3, |cfg| cfg.protocol.max_apply_bytes = MAX_APPLY_BYTES, false).await;
    c.propose(1_000).await;
    for id in 1..=3 {
        c.state_machines[&id].pause_applying(true);
    }
    let leader = c.leader().await;
    let before = c.node(leader).current_metrics().await.unwrap().commit;
    let handle = c.node(leader).clone();
    let proposals: Vec<_> = (1..=300u64)
        .map(|v| {
            let h = handle.clone();
            tokio::spawn(async move { h.propose(v).await })
        })
        .collect();
    let backlog = before + 300;
    for id in 1..=3 {
        c.node(id)
            .wait_for(Duration::from_secs(30), |m| m.commit >= backlog)
            .await
            .unwrap_or_else(|_| panic!("node {id} did not see {backlog} committed"));
    }
    for id in 1..=3 {
        c.state_machines[&id].pause_applying(false);
    }
    for p in proposals {
        p.await
            .unwrap()
            .expect("every proposal is applied once applying resumes");
    }
    let values = c.converged().await;
    assert_eq!(values.len(), 301);
    // A call coalesces the batches queued until it holds `MAX_APPLY_BYTES`, the last of
    // them whole: under twice that, so at most 2 * 250 / 17 commands of at least 17 bytes.
    let bound = 2 * MAX_APPLY_BYTES / (raft_runtime::raft_core::ENTRY_OVERHEAD + 1);
    for id in 1..=3 {
        let largest = c.state_machines[&id].largest_batch();
        assert!(
            (2..=bound).contains(&largest),
            "node {id}: {largest} commands in one call (bound {bound}) of a backlog of 300"
        );
    }
    c.shutdown().await;
}

/// A snapshot copies the whole state: with `snapshot_log_percent`, the next one waits until
/// the entries applied since add up to that share of the last one's size, so a growing
/// state is snapshotted less and less often, and without it every `snapshot_every` entries.
#[tokio::test(start_paused = true)]
async fn snapshots_of_a_growing_state_are_spaced_by_its_size() {
    async fn snapshots_taken(configure: fn(&mut raft_runtime::Config)) -> (u64, u64) {
        let c = common::cluster_with(3, configure, false).await;
        let leader = c.leader().await;
        for v in 1..=300 {
            c.propose(v).await;
        }
        let m = c
            .node(leader)
            .wait_for(Duration::from_secs(30), |m| {
                m.applied >= 300 && m.snapshot_index >= 10
            })
            .await
            .expect("the leader applied every value and took a snapshot");
        c.shutdown().await;
        (m.snapshots_taken, m.snapshot_index)
    }
    let (every_ten, _) = snapshots_taken(|cfg| {
        cfg.snapshot_every = 10;
        cfg.snapshot_log_percent = 0;
    })
    .await;
    // The state keeps every value (1 to 2 bytes each), an entry counts about 17 bytes: at
    // 2000 % the next snapshot waits until the log has more than doubled the state.
    let (spaced, last) = snapshots_taken(|cfg| {
        cfg.snapshot_every = 10;
        cfg.snapshot_log_percent = 2000;
    })
    .await;
    assert!(every_ten >= 25, "one snapshot every 10 entries: {every_ten}");
    assert!(
        (2..=10).contains(&spaced),
        "snapshots spaced by the state's size: {spaced} taken, the last at {last}"
    );
}

#[tokio::test(start_paused = true)]
async fn members_are_added_and_removed_under_load() {
    let mut c = common::cluster(3).await;
    let load = {
        let handles: Vec<_> = c.nodes.values().cloned().collect();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for v in 1..=150u64 {
                for _ in 0..100 {
                    let mut done = false;
                    for h in &handles {
                        match h.propose(v).await {
                            Ok(_) => {
                                acked.push(v);
                                done = true;
                                break;
                            }
                            Err(e) if e.is_definitely_not_applied() => {}
                            Err(_) => {
                                done = true;
                                break;
                            }
                        }
                    }
                    if done {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.start_node(4, common::Mode::Join(common::members(&[1, 2, 3])))
        .await;
    let leader = c.leader_among(&[1, 2, 3], Duration::from_secs(30)).await;
    c.node(leader)
        .add_voter(
            4,
            raft_runtime::MemberInfo::new("mem-4").with("http", "127.0.0.1:8004"),
        )
        .await
        .unwrap();
    let leader = c.leader_among(&[1, 2, 3, 4], Duration::from_secs(30)).await;
    let removed = if leader == 1 { 2 } else { 1 };
    c.node(leader).remove_node(removed).await.unwrap();
    let acked = load.await.unwrap();
    c.stop(removed).await;
    let values = c.converged().await;
    for v in &acked {
        assert!(values.contains(v), "acknowledged {v} missing");
    }
    let m = c.metrics(4);
    let voters: BTreeSet<u64> = m.voters().into_iter().collect();
    let expected: BTreeSet<u64> = [1, 2, 3, 4].into_iter().filter(|&id| id != removed).collect();
    assert_eq!(voters, expected);
    assert_eq!(m.members[&4].address, "mem-4");
    assert_eq!(
        m.members[&4].attributes["http"], "127.0.0.1:8004",
        "attributes are replicated"
    );
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn removed_ids_cannot_be_reused() {
    let c = common::cluster(3).await;
    let leader = c.leader().await;
    let victim = if leader == 3 { 2 } else { 3 };
    c.node(leader).remove_node(victim).await.unwrap();
    let err = c.node(leader).add_learner(victim, "again").await.unwrap_err();
    assert!(matches!(err, AdminError::Invalid(_)), "{err}");
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reads_during_partitions_never_return_stale_state() {
    let c = common::cluster(3).await;
    c.propose(1).await;
    let old = c.leader().await;
    let others: Vec<u64> = (1..=3).filter(|&id| id != old).collect();
    c.plugins.net.isolate(old, &[1, 2, 3]);
    let new = c.leader_among(&others, Duration::from_secs(30)).await;
    c.node(new).propose(2).await.unwrap();
    // The isolated old leader cannot confirm a read: it must not answer with [1].
    let stale = c.node(old).read(|l: &Log| l.values()).await;
    assert!(
        matches!(
            stale,
            Err(ReadError::Timeout | ReadError::LeadershipLost | ReadError::NotLeader { .. })
        ),
        "{stale:?}"
    );
    for &id in &others {
        assert_eq!(c.node(id).read(|l: &Log| l.values()).await.unwrap(), vec![1, 2]);
    }
    c.plugins.net.heal();
    // Once healed, a read anywhere sees the write.
    let healed = loop {
        match c.node(old).read(|l: &Log| l.values()).await {
            Ok(v) => break v,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert_eq!(healed, vec![1, 2]);
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn lease_reads_are_served_by_the_leader() {
    let c = common::cluster(3).await;
    let leader = c.leader().await;
    c.node(leader).propose(5).await.unwrap();
    assert_eq!(
        c.node(leader).lease_read(|l: &Log| l.values()).await.unwrap(),
        vec![5]
    );
    c.shutdown().await;
}

/// A read that arrives while there is no leader (the leader just stopped) waits for the
/// next one within its timeout, instead of failing at once and leaving every caller to
/// write a retry loop.
#[tokio::test(start_paused = true)]
async fn reads_wait_for_a_new_leader_within_their_timeout() {
    let mut c = common::cluster(3).await;
    let leader = c.leader().await;
    c.node(leader).propose(5).await.unwrap();
    c.stop(leader).await;
    for id in (1..=3).filter(|&id| id != leader) {
        let values = c
            .node(id)
            .read(|l: &Log| l.values())
            .await
            .unwrap_or_else(|e| panic!("node {id}: read failed instead of waiting for a leader: {e}"));
        assert_eq!(values, vec![5]);
    }
    c.shutdown().await;
}

/// Shutdown hands the state machine back (to the first caller), and current metrics are
/// those of the moment they are asked for, not of the last tick.
#[tokio::test(start_paused = true)]
async fn shutdown_returns_the_state_machine_and_metrics_are_current() {
    let mut c = common::cluster(3).await;
    let leader = c.leader().await;
    let h = c.node(leader).clone();
    for v in 1..=5 {
        h.propose(v).await.unwrap();
    }
    // The proposals were applied on the leader before they were answered.
    let now = h.current_metrics().await.unwrap();
    assert!(now.applied >= 6 && now.commit >= 6, "{now:?}");
    c.nodes.remove(&leader);
    let stopped = h
        .shutdown()
        .await
        .expect("the first shutdown gets what the node left");
    assert!(stopped.fatal.is_none());
    let sm = stopped.state_machine.expect("the state machine");
    assert_eq!(sm.values(), vec![1, 2, 3, 4, 5]);
    assert!(h.shutdown().await.is_none(), "only the first caller gets it");
    assert!(h.current_metrics().await.is_err());
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn leadership_is_transferred() {
    let c = common::cluster(3).await;
    let leader = c.leader().await;
    let target = if leader == 3 { 1 } else { 3 };
    c.node(leader).transfer_leader(target).await.unwrap();
    assert_eq!(c.leader().await, target);
    let err = c.node(target).transfer_leader(target).await.unwrap_err();
    assert_eq!(
        err,
        AdminError::InvalidTransfer(InvalidTransfer::AlreadyLeader { target }),
        "{err}"
    );
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_transfer_to_a_learner_is_refused_as_invalid() {
    let c = common::cluster(3).await;
    let leader = c.leader().await;
    c.node(leader).add_learner(4, "mem-4").await.unwrap();
    let err = c.node(leader).transfer_leader(4).await.unwrap_err();
    assert_eq!(
        err,
        AdminError::InvalidTransfer(InvalidTransfer::NotVoter { target: 4 }),
        "{err}"
    );
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_in_flight_work() {
    let mut c = common::cluster_with(3, |_| {}, true).await;
    let leader = c.leader().await;
    let h = c.node(leader).clone();
    let mut tasks = Vec::new();
    for v in 0..200u64 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move { (v, h.propose(v).await) }));
    }
    tokio::task::yield_now().await;
    c.stop(leader).await;
    let mut acked = Vec::new();
    for t in tasks {
        let (v, outcome) = tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("every proposal resolves after shutdown")
            .unwrap();
        match outcome {
            Ok(_) => acked.push(v),
            Err(e) => assert!(
                matches!(
                    e,
                    ProposeError::ShuttingDown | ProposeError::Unknown(_) | ProposeError::Busy(_)
                ),
                "{e}"
            ),
        }
    }
    // Everything acknowledged survives the restart.
    c.restart(leader).await;
    let values = c.converged().await;
    for v in acked {
        assert!(values.contains(&v));
    }
    let err = h.propose(1).await.unwrap_err();
    assert_eq!(err, ProposeError::ShuttingDown, "the old handle reports the stop");
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn overload_is_refused_with_busy() {
    let c = common::cluster_with(3, |cfg| cfg.max_pending_proposals = 4, false).await;
    let leader = c.leader().await;
    c.plugins.net.isolate(leader, &[1, 2, 3]);
    let mut tasks = Vec::new();
    for v in 0..10u64 {
        let h = c.node(leader).clone();
        tasks.push(tokio::spawn(async move { h.propose(v).await }));
    }
    let mut busy = 0;
    for t in tasks {
        if let Err(ProposeError::Busy(BusyReason::PendingProposals)) = t.await.unwrap() {
            busy += 1;
        }
    }
    assert!(busy >= 6, "{busy} refused");
    c.plugins.net.heal();
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn restart_does_not_apply_twice() {
    let mut c = common::cluster_with(3, |_| {}, true).await;
    for v in 1..=30 {
        c.propose(v).await;
    }
    for id in 1..=3 {
        c.restart(id).await;
    }
    c.propose(31).await;
    // The durable state machines asserted, as they applied, that no index came twice.
    assert_eq!(c.converged().await, (1..=31).collect::<Vec<_>>());
    c.shutdown().await;
}

/// A durable state machine's applied index covers entries that carry no command (a new
/// leader's empty entry): `apply` receives it, even for a batch without commands, so after
/// a restart the runtime delivers nothing twice.
#[tokio::test(start_paused = true)]
async fn the_applied_index_given_to_apply_covers_entries_without_commands() {
    let mut c = common::cluster_with(3, |_| {}, true).await;
    for v in 1..=5 {
        c.propose(v).await;
    }
    // A new leader's first entry carries no command: once it is committed, the commit
    // index is past every command.
    let old = c.leader().await;
    let before = c.node(old).current_metrics().await.unwrap();
    let last_command = c.state_machines[&old].state().applied;
    assert_eq!(
        before.last_log_index, last_command,
        "nothing after the last command yet"
    );
    c.restart(old).await;
    let commit = loop {
        let leader = c.leader().await;
        let m = c.node(leader).current_metrics().await.unwrap();
        if m.term > before.term && m.commit > last_command {
            break m.commit;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    c.wait_applied(commit).await;
    for id in 1..=3 {
        let state = c.state_machines[&id].state().clone();
        assert_eq!(state.values, (1..=5).collect::<Vec<_>>(), "node {id}");
        assert!(
            state.applied >= commit,
            "node {id}: the state machine holds entries up to {}, the commit index is {commit}",
            state.applied
        );
    }
    for id in 1..=3 {
        c.restart(id).await;
    }
    c.propose(6).await;
    // The durable state machines asserted, as they applied, that no index came twice.
    assert_eq!(c.converged().await, (1..=6).collect::<Vec<_>>());
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_disk_stops_the_node() {
    let c = common::cluster(3).await;
    let leader = c.leader().await;
    c.plugins.stores[&leader].fail_writes("injected: device error");
    let err = c.node(leader).propose(1).await.unwrap_err();
    assert!(
        !err.is_definitely_not_applied() || err == ProposeError::ShuttingDown,
        "{err}"
    );
    let m = c
        .node(leader)
        .wait_for(Duration::from_secs(10), |m| m.fatal.is_some())
        .await
        .unwrap();
    let fatal = m.fatal.unwrap();
    assert!(matches!(fatal, Fatal::LogWrite(_)), "{fatal}");
    assert!(fatal.to_string().contains("device error"), "{fatal}");
    let others: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    let new = c.leader_among(&others, Duration::from_secs(30)).await;
    assert_ne!(new, leader);
    assert_eq!(c.node(leader).metrics().borrow().role, Role::Follower);
    c.shutdown().await;
}

/// The same cluster on a multi-threaded runtime with real time, where the group tasks,
/// appliers and clients run in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_on_a_multi_threaded_runtime() {
    let c = common::cluster_with(3, |cfg| cfg.forward_proposals = true, true).await;
    let mut tasks = Vec::new();
    for client in 0..16u64 {
        let h = c.node(1 + client % 3).clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..50u64 {
                let v = client * 100 + i;
                loop {
                    match h.propose(v).await {
                        Ok(_) => {
                            acked.push(v);
                            break;
                        }
                        Err(e) if e.is_definitely_not_applied() => {
                            tokio::time::sleep(Duration::from_millis(20)).await
                        }
                        Err(e) => panic!("unknown outcome without faults: {e}"),
                    }
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let values = c.converged().await;
    assert_eq!(values.len(), 800);
    let set: BTreeSet<u64> = values.into_iter().collect();
    assert_eq!(set, acked.into_iter().collect::<BTreeSet<_>>());
    c.shutdown().await;
}

/// A joining node admits exactly the cluster it was told to join, from before its first
/// message, and never announces an empty membership (which an authenticating transport
/// reads as "admit no one", so the leader could never reach it).
#[tokio::test(start_paused = true)]
async fn a_joining_node_admits_the_cluster_it_joins_from_the_start() {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use bytes::Bytes;
    use raft_runtime::raft_core::Message;
    use raft_runtime::{
        GroupId, Inbox, MemTransport, RegisterError, SendError, SnapshotStream, Transport, TransportError,
        WireMessage,
    };

    struct Recording(MemTransport, Arc<Mutex<Vec<Vec<u64>>>>);

    #[async_trait]
    impl Transport for Recording {
        fn register(&self, id: u64, group: GroupId, inbox: Inbox) -> Result<(), RegisterError> {
            self.0.register(id, group, inbox)
        }
        fn set_peers(&self, peers: BTreeMap<u64, Bytes>) {
            self.1.lock().unwrap().push(peers.keys().copied().collect());
            self.0.set_peers(peers)
        }
        fn send(&self, to: u64, group: GroupId, messages: Vec<WireMessage>) -> Result<(), SendError> {
            assert!(
                !self.1.lock().unwrap().is_empty(),
                "members announced before traffic flows"
            );
            self.0.send(to, group, messages)
        }
        async fn send_snapshot(
            &self,
            to: u64,
            group: GroupId,
            message: Message,
            data: SnapshotStream,
        ) -> Result<(), TransportError> {
            self.0.send_snapshot(to, group, message, data).await
        }
        async fn shutdown(&self) {
            self.0.shutdown().await
        }
    }

    let c = common::cluster(3).await;
    let announced = Arc::new(Mutex::new(Vec::new()));
    let joiner = raft_runtime::Raft::builder(4)
        .config(common::fast_config())
        .state_machine(Log::new(false))
        .log_store(raft_runtime::MemLogStore::new())
        .transport(Recording(c.plugins.net.transport(4), announced.clone()))
        .join(common::members(&[1, 2, 3]))
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = announced.lock().unwrap().clone();
    assert!(
        !before.is_empty() && before.iter().all(|ids| ids == &[1, 2, 3]),
        "the cluster it joins, from the start: {before:?}"
    );
    let leader = c.leader().await;
    c.node(leader).add_learner(4, "mem-4").await.unwrap();
    joiner
        .wait_for(Duration::from_secs(10), |m| m.members.contains_key(&4))
        .await
        .unwrap();
    let seen = announced.lock().unwrap().clone();
    assert!(seen.iter().all(|ids| !ids.is_empty()), "{seen:?}");
    assert_eq!(seen.last().unwrap(), &vec![1, 2, 3, 4], "{seen:?}");
    joiner.shutdown().await;
    c.shutdown().await;
}

/// A node assembled wrongly fails at start with an error that says what disagrees, instead
/// of running deaf; a corrected retry starts.
#[tokio::test(start_paused = true)]
async fn a_misassembled_node_fails_at_start_and_says_why() {
    use raft_runtime::{MemLogStore, MemNetwork, Raft, RegisterError, StartError};

    let net = MemNetwork::new();
    let members = common::members(&[1]);
    let build = |id: u64, transport: raft_runtime::MemTransport, store: MemLogStore| {
        Raft::builder(id)
            .config(common::fast_config())
            .state_machine(Log::new(false))
            .log_store(store)
            .transport(transport)
    };

    // The transport is node 2's.
    let store = MemLogStore::new();
    let err = build(1, net.transport(2), store.clone())
        .bootstrap(members.clone())
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StartError::Register(RegisterError::WrongNode {
                transport: 2,
                node: 1
            })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("node 2") && err.to_string().contains("node 1"),
        "{err}"
    );

    // An empty store, told neither to bootstrap nor to join.
    let err = build(1, net.transport(1), MemLogStore::new())
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, StartError::Uninitialized), "{err}");
    assert!(err.to_string().contains("bootstrap"), "{err}");

    // Id 0 is reserved.
    let err = build(0, net.transport(0), MemLogStore::new())
        .bootstrap(members.clone())
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("0"), "{err}");

    // The corrected retry on the same store starts and leads.
    let node = build(1, net.transport(1), store.clone())
        .bootstrap(members.clone())
        .start()
        .await
        .unwrap();
    node.wait_for(Duration::from_secs(10), |m| m.leader == Some(1))
        .await
        .unwrap();

    // A second node on a transport that already serves a running node.
    let err = build(1, net.transport(1), MemLogStore::new())
        .bootstrap(members.clone())
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(err, StartError::Register(RegisterError::AlreadyRegistered(1))),
        "{err}"
    );
    // The first node was not disturbed.
    assert_eq!(node.propose(7).await.unwrap(), 1, "the first command applied");
    node.shutdown().await;

    // Once it stopped, a node may start on the transport again (a restart).
    let node = build(1, net.transport(1), store)
        .bootstrap(members)
        .start()
        .await
        .unwrap();
    node.wait_for(Duration::from_secs(10), |m| m.leader == Some(1))
        .await
        .unwrap();
    node.shutdown().await;
}

/// A leader whose last proposals another leader's entries replaced in its log, elected
/// again, puts new entries where they were. It must not answer them "definitely not
/// applied" then: a node that still holds them could yet be elected and commit them. They
/// are reported as unknown (displaced), while those whose positions were committed to other
/// entries are reported dropped.
#[tokio::test(start_paused = true)]
async fn proposals_a_reelected_leader_overwrites_are_reported_unknown_not_dropped() {
    let c = common::cluster_with(5, |cfg| cfg.propose_timeout = Duration::from_secs(300), false).await;
    let l = c.leader().await;
    c.propose(1).await;
    let others: Vec<u64> = (1..=5).filter(|&n| n != l).collect();
    let (a, rest) = (others[0], others[1..].to_vec());
    // Everything so far committed and applied: the log ends at `before`.
    let before = c
        .node(l)
        .wait_for(Duration::from_secs(10), |m| {
            m.applied == m.last_log_index && m.commit == m.last_log_index && m.applied >= 2
        })
        .await
        .expect("the first value is applied")
        .last_log_index;

    // The leader and one follower apart from the rest: three proposals reach the follower
    // only, at before+1..=before+3.
    c.plugins.net.partition(&[l, a], &rest);
    let h = c.node(l).clone();
    let lost = tokio::spawn(async move { h.propose_batch([101u64, 102, 103]).await });
    c.node(a)
        .wait_for(Duration::from_secs(10), |m| m.last_log_index == before + 3)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the follower holds the three proposals: before {before}, leader {:?}, follower {:?}",
                c.metrics(l),
                c.metrics(a)
            )
        });

    // The rest elect a leader, whose first entry takes before+1.
    let b = c.leader_among(&rest, Duration::from_secs(30)).await;
    c.node(b)
        .wait_for(Duration::from_secs(10), |m| m.commit == before + 1)
        .await
        .expect("the new leader commits its first entry");

    // The old leader hears from the new one (the follower holding the proposals stays
    // cut off): its log now ends at before+1.
    c.plugins.net.heal();
    c.plugins.net.isolate(a, &[]);
    c.node(l)
        .wait_for(Duration::from_secs(30), |m| {
            m.leader == Some(b) && m.last_log_index == before + 1 && m.commit == before + 1
        })
        .await
        .expect("the old leader follows the new one");

    // Elected again, its first entry takes before+2 and its next proposal before+3.
    c.node(b).transfer_leader(l).await.unwrap();
    assert_eq!(c.leader_among(&[l, b], Duration::from_secs(30)).await, l);
    c.node(l).propose(200).await.unwrap();

    let answers = lost.await.unwrap();
    assert_eq!(
        answers[0],
        Err(ProposeError::Dropped),
        "before+1 holds another entry, committed"
    );
    assert_eq!(
        answers[1],
        Err(ProposeError::Dropped),
        "before+2 holds another entry, committed"
    );
    assert_eq!(
        answers[2],
        Err(ProposeError::Unknown(UnknownOutcome::Displaced)),
        "before+3 was taken before anything was committed there"
    );
    assert!(!answers[2].as_ref().unwrap_err().is_definitely_not_applied());
    c.plugins.net.heal();
    let values = c.converged().await;
    assert_eq!(values, vec![1, 200]);
    c.shutdown().await;
}
