//! Pre-vote and check-quorum: disruptive nodes, leases on votes, and a leader that loses its
//! quorum.

mod common;

use common::{Network, config, msg, storage_with_terms, vote_request};
use raft_core::{MemStorage, MessageBody, RawNode, RequestVote, Role};

fn pre_vote(id: u64) -> raft_core::Config {
    let mut c = config(id);
    c.pre_vote = true;
    c
}

fn check_quorum(id: u64) -> raft_core::Config {
    let mut c = config(id);
    c.check_quorum = true;
    c
}

fn both(id: u64) -> raft_core::Config {
    let mut c = pre_vote(id);
    c.check_quorum = true;
    c
}

#[test]
fn pre_vote_then_vote_elects_a_leader() {
    let mut net = Network::with(&[1, 2, 3], &[], pre_vote);
    net.elect(1);
    assert_eq!(net.term(1), 1, "one term for the pre-vote round and the election");
}

#[test]
fn failed_pre_vote_does_not_bump_the_term() {
    let mut net = Network::with(&[1, 2, 3], &[], pre_vote);
    net.isolate(1);
    for _ in 0..5 {
        net.campaign(1);
    }
    assert_eq!(net.role(1), Role::PreCandidate);
    assert_eq!(net.term(1), 0);
}

#[test]
fn rejoining_node_does_not_disrupt_the_leader_with_pre_vote() {
    let mut net = Network::with(&[1, 2, 3], &[], pre_vote);
    net.elect(1);
    net.isolate(3);
    net.tick(3, 100);
    net.stabilize();
    net.heal();
    net.run_ticks(5);
    assert_eq!(net.role(1), Role::Leader);
    assert_eq!(net.term(1), 1, "the term never moved");
}

#[test]
fn without_pre_vote_a_rejoining_node_disrupts_the_leader() {
    // The contrast that shows what pre-vote prevents.
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(3);
    net.tick(3, 100);
    net.stabilize();
    assert!(net.term(3) > 1);
    net.heal();
    net.run_ticks(5);
    assert!(
        net.term(1) > 1,
        "the isolated node's higher term deposed the leader"
    );
}

#[test]
fn pre_vote_is_granted_only_to_an_up_to_date_log() {
    let mut net = Network::empty();
    net.add_node(2, storage_with_terms(&[1, 2, 3], &[1, 1, 2]), pre_vote(2));
    let req = |last_index, last_term| {
        msg(
            1,
            2,
            3,
            MessageBody::RequestVote(RequestVote {
                pre_vote: true,
                last_index,
                last_term,
                leader_transfer: false,
            }),
        )
    };
    net.raw(2).step(req(2, 1)).unwrap();
    net.raw(2).step(req(3, 2)).unwrap();
    let out = net.collect();
    let grants: Vec<bool> = out
        .iter()
        .filter_map(|m| match &m.body {
            MessageBody::VoteResponse(v) => Some(v.granted),
            _ => None,
        })
        .collect();
    assert_eq!(grants, vec![false, true]);
    assert_eq!(net.term(2), 2, "pre-votes change no term");
}

#[test]
fn check_quorum_leader_steps_down_without_a_quorum() {
    let mut net = Network::with(&[1, 2, 3], &[], check_quorum);
    net.elect(1);
    net.isolate(1);
    for _ in 0..25 {
        net.tick(1, 1);
        net.stabilize();
    }
    assert_eq!(
        net.role(1),
        Role::Follower,
        "no quorum heard for an election timeout"
    );
}

#[test]
fn check_quorum_leader_stays_with_a_quorum() {
    let mut net = Network::with(&[1, 2, 3], &[], check_quorum);
    net.elect(1);
    net.isolate(3);
    net.run_ticks(50);
    assert_eq!(net.role(1), Role::Leader);
}

#[test]
fn followers_in_lease_ignore_vote_requests() {
    let mut net = Network::with(&[1, 2, 3], &[], check_quorum);
    net.elect(1);
    net.raw(2).step(vote_request(3, 2, 2, 10, 1)).unwrap();
    assert_eq!(
        net.term(2),
        1,
        "a follower that just heard from its leader ignores it"
    );
    assert!(net.collect().is_empty());
    // Once the lease has run out, the same request is considered.
    net.tick(2, 10);
    net.raw(2).step(vote_request(3, 2, 2, 10, 1)).unwrap();
    assert_eq!(net.term(2), 2);
}

#[test]
fn transfer_election_overrides_the_lease() {
    let mut net = Network::with(&[1, 2, 3], &[], check_quorum);
    net.elect(1);
    let mut req = vote_request(3, 2, 2, 10, 1);
    if let MessageBody::RequestVote(rv) = &mut req.body {
        rv.leader_transfer = true;
    }
    net.raw(2).step(req).unwrap();
    assert_eq!(net.term(2), 2);
}

#[test]
fn restarted_node_respects_a_lease_for_one_election_timeout() {
    let mut net = Network::with(&[1, 2, 3], &[], check_quorum);
    net.elect(1);
    net.crash_restart(2);
    net.raw(2).step(vote_request(3, 2, 2, 10, 1)).unwrap();
    assert_eq!(
        net.term(2),
        1,
        "it may have acknowledged the leader's lease just before restarting"
    );
    net.tick(2, 10);
    net.raw(2).step(vote_request(3, 2, 2, 10, 1)).unwrap();
    assert_eq!(net.term(2), 2);
}

#[test]
fn brand_new_node_grants_votes_at_once() {
    let mut node = RawNode::new(
        check_quorum(2),
        MemStorage::new_with_conf_state(raft_core::ConfState::with_voters([1, 2, 3])),
        0,
    )
    .unwrap();
    node.step(vote_request(1, 2, 1, 0, 0)).unwrap();
    assert_eq!(node.term(), 1);
}

#[test]
fn pre_vote_and_check_quorum_keep_a_healthy_cluster_stable() {
    let mut net = Network::with(&[1, 2, 3, 4, 5], &[], both);
    net.elect(1);
    net.partition(&[4, 5], &[1, 2, 3]);
    net.run_ticks(100);
    net.heal();
    net.run_ticks(20);
    assert_eq!(net.role(1), Role::Leader);
    assert_eq!(net.term(1), 1);
    net.propose_ok(1, "still here");
    assert_eq!(net.node(5).applied_data().len(), 1);
}
