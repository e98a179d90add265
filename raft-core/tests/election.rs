//! Leader election: the rules of section 5.2 and 5.4.1 of the Raft paper, randomized
//! timeouts, partitions and dueling candidates.

mod common;

use common::{Network, config, msg, storage_with_terms, vote_request};
use raft_core::{ConfState, MemStorage, MessageBody, RawNode, Role, VoteResponse};

fn vote_answers(net: &mut Network, id: u64) -> Vec<(u64, u64, bool)> {
    // Votes wait for persistence; the test network persists at once, so they are queued.
    net.process(id);
    net.msgs
        .drain(..)
        .filter_map(|m| match m.body {
            MessageBody::VoteResponse(v) => Some((m.to, m.term, v.granted)),
            _ => None,
        })
        .collect()
}

#[test]
fn candidate_with_majority_of_votes_becomes_leader() {
    let mut net = Network::new(3);
    net.elect(1);
    assert_eq!(net.term(1), 1);
    for id in [2, 3] {
        assert_eq!(net.role(id), Role::Follower);
        assert_eq!(net.node(id).raw.leader(), Some(1));
        assert_eq!(net.term(id), 1);
    }
}

#[test]
fn single_voter_elects_itself_at_once() {
    let mut net = Network::new(1);
    net.elect(1);
    assert_eq!(net.commit(1), 1, "the new leader's empty entry commits alone");
}

#[test]
fn candidate_without_majority_stays_candidate() {
    let mut net = Network::new(3);
    net.isolate(1);
    net.campaign(1);
    assert_eq!(net.role(1), Role::Candidate);
    assert_eq!(net.term(1), 1);
}

#[test]
fn minority_partition_cannot_elect_a_leader() {
    let mut net = Network::new(5);
    net.partition(&[1, 2], &[3, 4, 5]);
    net.campaign(1);
    assert_ne!(net.role(1), Role::Leader);
    net.campaign(3);
    assert_eq!(net.role(3), Role::Leader, "the majority side elects");
}

#[test]
fn each_node_votes_at_most_once_per_term() {
    let mut net = Network::new(3);
    net.raw(3).step(vote_request(1, 3, 1, 0, 0)).unwrap();
    net.raw(3).step(vote_request(2, 3, 1, 0, 0)).unwrap();
    assert_eq!(vote_answers(&mut net, 3), vec![(1, 1, true), (2, 1, false)]);
}

#[test]
fn repeated_request_from_the_same_candidate_is_granted_again() {
    let mut net = Network::new(3);
    net.raw(3).step(vote_request(1, 3, 1, 0, 0)).unwrap();
    net.raw(3).step(vote_request(1, 3, 1, 0, 0)).unwrap();
    assert_eq!(vote_answers(&mut net, 3), vec![(1, 1, true), (1, 1, true)]);
}

#[test]
fn vote_refused_to_candidate_whose_last_term_is_older() {
    let mut net = Network::empty();
    net.add_node(3, storage_with_terms(&[1, 2, 3], &[1, 2]), config(3));
    // Candidate's log is longer but ends in an older term.
    net.raw(3).step(vote_request(1, 3, 3, 5, 1)).unwrap();
    assert_eq!(vote_answers(&mut net, 3), vec![(1, 3, false)]);
}

#[test]
fn vote_refused_to_candidate_with_shorter_log_of_same_last_term() {
    let mut net = Network::empty();
    net.add_node(3, storage_with_terms(&[1, 2, 3], &[1, 2, 2]), config(3));
    net.raw(3).step(vote_request(1, 3, 3, 2, 2)).unwrap();
    assert_eq!(vote_answers(&mut net, 3), vec![(1, 3, false)]);
}

#[test]
fn vote_granted_to_candidate_at_least_as_up_to_date() {
    let mut net = Network::empty();
    net.add_node(3, storage_with_terms(&[1, 2, 3], &[1, 2, 2]), config(3));
    net.raw(3).step(vote_request(1, 3, 3, 3, 2)).unwrap();
    net.raw(3).step(vote_request(2, 3, 4, 1, 3)).unwrap();
    assert_eq!(vote_answers(&mut net, 3), vec![(1, 3, true), (2, 4, true)]);
}

#[test]
fn candidate_rejected_by_majority_returns_to_follower() {
    let mut net = Network::new(3);
    net.elect(2);
    net.isolate(1);
    net.propose_ok(2, "x");
    net.heal();
    // Node 1 missed an entry: the others refuse it, and it gives up at once.
    net.raw(1).campaign().unwrap();
    let term = net.term(1);
    net.stabilize();
    assert!(net.term(1) >= term);
    assert_ne!(net.role(1), Role::Leader);
}

#[test]
fn candidate_follows_leader_of_its_term() {
    let mut net = Network::new(3);
    net.isolate(3);
    net.raw(3).campaign().unwrap();
    net.collect();
    net.heal();
    // Node 1 wins term 1 while node 3 is a candidate in term 1.
    net.elect(1);
    assert_eq!(net.role(3), Role::Follower);
    assert_eq!(net.node(3).raw.leader(), Some(1));
}

#[test]
fn leader_steps_down_on_higher_term() {
    let mut net = Network::new(3);
    net.elect(1);
    net.raw(1)
        .step(msg(
            2,
            1,
            5,
            MessageBody::HeartbeatResponse(raft_core::HeartbeatResponse { round: 0 }),
        ))
        .unwrap();
    assert_eq!(net.role(1), Role::Follower);
    assert_eq!(net.term(1), 5);
}

#[test]
fn stale_leader_message_is_answered_with_current_term() {
    let mut net = Network::new(3);
    net.elect(1);
    net.raw(2)
        .step(msg(
            3,
            2,
            7,
            MessageBody::HeartbeatResponse(raft_core::HeartbeatResponse { round: 0 }),
        ))
        .unwrap();
    net.collect();
    // A heartbeat from the old term gets an answer that carries term 7.
    net.raw(2)
        .step(msg(
            1,
            2,
            1,
            MessageBody::Heartbeat(raft_core::Heartbeat {
                commit: 0,
                round: 1,
                quiesce: false,
            }),
        ))
        .unwrap();
    let out = net.collect();
    assert!(out.iter().any(|m| m.to == 1 && m.term == 7), "{out:?}");
}

#[test]
fn follower_campaigns_after_its_election_timeout() {
    let mut net = Network::new(3);
    let mut ticks = 0;
    while net.role(1) == Role::Follower {
        net.tick(1, 1);
        ticks += 1;
        assert!(ticks <= 20, "no campaign within the maximum timeout");
    }
    assert!(ticks >= 10, "campaigned after {ticks} ticks, below the minimum");
    assert_eq!(net.role(1), Role::Candidate);
}

#[test]
fn election_timeouts_are_randomized_within_range() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let mut cfg = config(1);
        cfg.seed = seed;
        let storage = MemStorage::new_with_conf_state(ConfState::with_voters([1, 2, 3]));
        let mut node = RawNode::new(cfg, storage, 0).unwrap();
        let mut ticks = 0;
        while node.role() == Role::Follower {
            node.tick();
            ticks += 1;
        }
        assert!((10..20).contains(&ticks), "timeout {ticks}");
        seen.insert(ticks);
    }
    assert!(seen.len() >= 5, "timeouts barely vary: {seen:?}");
}

#[test]
fn heartbeats_keep_followers_from_campaigning() {
    let mut net = Network::new(3);
    net.elect(1);
    net.run_ticks(100);
    assert_eq!(net.role(1), Role::Leader);
    assert_eq!(net.term(1), 1);
}

#[test]
fn leader_sends_heartbeats_every_heartbeat_tick() {
    let mut net = Network::new(3);
    net.elect(1);
    net.tick(1, 1);
    let out = net.collect();
    let beats = out.iter().filter(|m| m.kind() == "Heartbeat").count();
    assert_eq!(beats, 2, "one heartbeat per follower per heartbeat tick");
}

#[test]
fn dueling_candidates_resolve_to_one_leader() {
    let mut net = Network::new(3);
    net.cut.insert((1, 3));
    net.cut.insert((3, 1));
    net.campaign(1);
    net.campaign(3);
    // Node 2 voted for node 1 in term 1; node 3 lost that term.
    assert_eq!(net.role(1), Role::Leader);
    assert_ne!(net.role(3), Role::Leader);
    net.heal();
    net.run_ticks(60);
    let leaders: Vec<u64> = (1..=3).filter(|&id| net.role(id) == Role::Leader).collect();
    assert_eq!(leaders.len(), 1, "exactly one leader: {leaders:?}");
    net.assert_consistent_logs();
}

#[test]
fn isolated_leader_is_replaced_and_steps_down_after_heal() {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(1);
    net.propose(1, "lost").unwrap();
    net.stabilize();
    net.campaign(2);
    assert_eq!(net.role(2), Role::Leader);
    net.propose_ok(2, "kept");
    net.heal();
    net.run_ticks(3);
    assert_eq!(net.role(1), Role::Follower);
    assert_eq!(net.node(1).applied_data(), vec![common::data("kept")]);
    net.assert_consistent_logs();
}

#[test]
fn vote_and_vote_request_wait_for_persistence() {
    let mut net = Network::new(3);
    net.raw(1).campaign().unwrap();
    let ready = net.raw(1).ready().unwrap();
    assert!(
        ready.messages.iter().all(|m| m.kind() != "RequestVote"),
        "vote requests wait for the term to be durable"
    );
    let persist = ready.persist.unwrap();
    assert_eq!(persist.hard_state.unwrap().vote, Some(1));
    assert_eq!(
        persist
            .messages
            .iter()
            .filter(|m| m.kind() == "RequestVote")
            .count(),
        2
    );

    net.raw(2).step(vote_request(1, 2, 1, 0, 0)).unwrap();
    let ready = net.raw(2).ready().unwrap();
    assert!(ready.messages.is_empty());
    let persist = ready.persist.unwrap();
    assert_eq!(persist.hard_state.unwrap().vote, Some(1));
    assert!(matches!(
        persist.messages[0].body,
        MessageBody::VoteResponse(VoteResponse { granted: true, .. })
    ));
}

#[test]
fn learner_never_campaigns() {
    let mut net = Network::with(&[1, 2], &[3], config);
    net.tick(3, 200);
    assert_eq!(net.role(3), Role::Follower);
    assert_eq!(net.term(3), 0);
    assert!(
        net.raw(3).campaign().is_err(),
        "a learner cannot be made to campaign"
    );
}
