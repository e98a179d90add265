//! Batched proposals (`Raft::propose_batch`): one answer per command, in order, each command
//! applied at most once, and each answer as true as a single proposal's, under faults too.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use raft_runtime::{BusyReason, ProposeError};

#[tokio::test(start_paused = true)]
async fn a_batch_is_answered_in_order_on_the_leader_and_through_a_follower() {
    let c = common::cluster_with(3, |cfg| cfg.forward_proposals = true, false).await;
    let leader = c.leader().await;
    let answers = c.node(leader).propose_batch(1..=100u64).await;
    // The response to each command is the number of values applied with it.
    let responses: Vec<u64> = answers.into_iter().map(Result::unwrap).collect();
    assert_eq!(responses, (1..=100).collect::<Vec<_>>());

    let follower = *c.nodes.keys().find(|&&id| id != leader).unwrap();
    let answers = c.node(follower).propose_batch(101..=150u64).await;
    let responses: Vec<u64> = answers.into_iter().map(Result::unwrap).collect();
    // Forwarded one by one, they may interleave with nothing else here: in order.
    assert_eq!(responses, (101..=150).collect::<Vec<_>>());

    assert!(c.node(leader).propose_batch(Vec::<u64>::new()).await.is_empty());
    assert_eq!(c.converged().await, (1..=150).collect::<Vec<_>>());
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_batch_past_the_pending_limit_is_refused_in_part_and_the_refused_are_not_applied() {
    let c = common::cluster_with(3, |cfg| cfg.max_pending_proposals = 8, false).await;
    let leader = c.leader().await;
    let answers = c.node(leader).propose_batch(1..=20u64).await;
    assert_eq!(answers.len(), 20);
    for (i, answer) in answers.iter().enumerate() {
        if i < 8 {
            assert_eq!(answer, &Ok(i as u64 + 1), "command {i}");
        } else {
            assert_eq!(
                answer,
                &Err(ProposeError::Busy(BusyReason::PendingProposals)),
                "command {i}"
            );
        }
    }
    assert_eq!(c.converged().await, (1..=8).collect::<Vec<_>>());
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_batch_on_a_follower_that_does_not_forward_or_a_stopped_node_is_refused_whole() {
    let mut c = common::cluster(3).await;
    let leader = c.leader().await;
    let follower = *c.nodes.keys().find(|&&id| id != leader).unwrap();
    for answer in c.node(follower).propose_batch([1u64, 2, 3]).await {
        assert_eq!(answer, Err(ProposeError::NotLeader { leader: Some(leader) }));
    }
    let handle = c.node(follower).clone();
    c.stop(follower).await;
    for answer in handle.propose_batch([4u64, 5]).await {
        assert_eq!(answer, Err(ProposeError::ShuttingDown));
    }
    assert!(c.converged().await.is_empty());
    c.shutdown().await;
}

/// Clients propose batches through every node while partitions come and go and messages
/// are lost; a command is sent again only after an answer saying it was definitely not
/// applied. Every command must be answered, none applied twice, every acknowledged one
/// applied, and none refused as not applied found applied.
#[tokio::test(start_paused = true)]
async fn batches_under_faults_get_one_true_answer_per_command() {
    let c = common::cluster_with(3, |cfg| cfg.forward_proposals = true, true).await;
    c.plugins.net.set_drop_rate(0.05, 11);
    c.plugins
        .net
        .set_delay(Some((Duration::from_micros(100), Duration::from_millis(3))));
    let mut clients = Vec::new();
    for client in 0..4u64 {
        let handles: Vec<_> = c.nodes.values().cloned().collect();
        clients.push(tokio::spawn(async move {
            let mut outcomes: Vec<(u64, Result<u64, ProposeError>)> = Vec::new();
            for round in 0..10u64 {
                let mut todo: Vec<u64> = (0..8).map(|i| client * 10_000 + round * 100 + i).collect();
                for attempt in 0..200u64 {
                    if todo.is_empty() {
                        break;
                    }
                    let h = &handles[((client + round + attempt) % handles.len() as u64) as usize];
                    let answers = h.propose_batch(todo.clone()).await;
                    assert_eq!(answers.len(), todo.len(), "one answer per command");
                    let mut again = Vec::new();
                    for (value, answer) in todo.iter().zip(answers) {
                        if matches!(&answer, Err(e) if e.is_definitely_not_applied()) {
                            again.push(*value);
                        }
                        outcomes.push((*value, answer));
                    }
                    todo = again;
                    if !todo.is_empty() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            outcomes
        }));
    }
    for round in 0..6u64 {
        common::partition_round(&c, round).await;
    }
    let mut outcomes = Vec::new();
    for client in clients {
        outcomes.extend(client.await.unwrap());
    }
    c.plugins.net.heal();
    let values = c.converged().await;
    let mut applied: BTreeMap<u64, usize> = BTreeMap::new();
    for v in &values {
        *applied.entry(*v).or_default() += 1;
    }
    assert!(applied.values().all(|&n| n == 1), "a command was applied twice");
    let mut last: BTreeMap<u64, &Result<u64, ProposeError>> = BTreeMap::new();
    for (value, outcome) in &outcomes {
        last.insert(*value, outcome);
    }
    assert_eq!(last.len(), 4 * 10 * 8, "every command was answered");
    let (mut ok, mut unknown) = (0, 0);
    for (value, outcome) in last {
        match outcome {
            Ok(_) => {
                ok += 1;
                assert!(applied.contains_key(&value), "acknowledged {value} is missing");
            }
            Err(e) if e.is_definitely_not_applied() => {
                assert!(!applied.contains_key(&value), "{value} was applied despite {e}");
            }
            Err(_) => unknown += 1,
        }
    }
    println!("{ok} acknowledged, {unknown} unknown, {} answers", outcomes.len());
    // A batch is in flight through most of each partition, so many outcomes are unknown.
    assert!(ok >= 160, "at least half the commands should get through: {ok}");
    c.shutdown().await;
}
