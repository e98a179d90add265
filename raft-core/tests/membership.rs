//! Membership changes: joint consensus, learners, one change at a time, configurations that
//! take effect on append, removed nodes.

mod common;

use common::{Network, config, data, vote_request};
use raft_core::{
    ConfChange, ConfChangeError, ConfState, MemStorage, MemberChange, MembershipError, Message, MessageBody,
    NodeId, Role, VoteResponse,
};

fn change(net: &mut Network, leader: u64, cc: ConfChange) -> Result<u64, MembershipError> {
    let r = net.raw(leader).propose_conf_change(cc);
    net.stabilize();
    r
}

/// Whether `answers` hold a vote answered to `to` that was `granted` (or refused).
fn answered_vote(answers: &[Message], to: NodeId, granted: bool) -> bool {
    answers.iter().any(|m| {
        m.to == to
            && matches!(&m.body, MessageBody::VoteResponse(VoteResponse { granted: g, .. }) if *g == granted)
    })
}

/// Adds `id` as a fresh learner and waits until it has caught up.
fn add_learner(net: &mut Network, leader: u64, id: u64) {
    net.add_node(id, MemStorage::new(), config(id));
    change(
        net,
        leader,
        ConfChange::new([MemberChange::add_learner(id).with_meta(format!("addr-{id}"))]),
    )
    .unwrap();
    net.tick(leader, 1);
    net.stabilize();
}

#[test]
fn joint_change_that_replaces_the_leader() {
    let mut net = Network::new(3);
    net.elect(1);
    add_learner(&mut net, 1, 4);
    let cc = ConfChange::new([MemberChange::add_voter(4), MemberChange::remove(1)]);
    let index = change(&mut net, 1, cc).unwrap();
    // The joint entry committed, the leader left the joint configuration by itself and, no
    // longer a voter once that committed, stepped down.
    assert_eq!(net.role(1), Role::Follower);
    for id in 2..=4 {
        let cs = net.raw(id).conf_state().clone();
        assert!(!cs.is_joint(), "node {id}: {cs:?}");
        assert_eq!(cs.voters.iter().copied().collect::<Vec<_>>(), vec![2, 3, 4]);
        assert!(net.commit(id) >= index);
    }
    net.run_ticks(40);
    let leader = net.leader().unwrap();
    assert!([2, 3, 4].contains(&leader));
    for id in 2..=4 {
        assert!(
            net.commit(id) > index + 1,
            "node {id} learned that the final configuration committed"
        );
    }
    net.propose_ok(leader, "after");
    assert_eq!(net.node(4).applied_data(), vec![data("after")]);
}

#[test]
fn two_node_cluster_commits_while_removing_the_second_node() {
    let mut net = Network::new(2);
    net.elect(1);
    net.isolate(2);
    // The removal takes effect on append: node 1 alone is the quorum for it.
    let index = change(&mut net, 1, ConfChange::new([MemberChange::remove(2)])).unwrap();
    assert_eq!(net.commit(1), index);
    let next = net.propose_ok(1, "alone");
    assert_eq!(net.commit(1), next);
}

#[test]
fn a_second_pending_change_is_refused() {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(2);
    net.isolate(3);
    let index = net
        .raw(1)
        .propose_conf_change(ConfChange::new([MemberChange::add_learner(4)]))
        .unwrap();
    let err = net
        .raw(1)
        .propose_conf_change(ConfChange::new([MemberChange::add_learner(5)]))
        .unwrap_err();
    assert!(
        matches!(err, MembershipError::Pending { index: i } if i == index),
        "{err}"
    );
}

#[test]
fn learner_replicates_but_never_campaigns() {
    let mut net = Network::with(&[1, 2, 3], &[4], config);
    net.elect(1);
    net.propose_ok(1, "x");
    assert_eq!(net.node(4).applied_data(), vec![data("x")]);
    net.isolate(1);
    for _ in 0..100 {
        net.tick(4, 1);
        net.stabilize();
    }
    assert_eq!(net.role(4), Role::Follower);
}

#[test]
fn learner_vote_does_not_count() {
    let mut net = Network::with(&[1, 2, 3], &[4], config);
    net.isolate(1);
    net.raw(1).campaign().unwrap();
    net.collect();
    let term = net.term(1);
    net.raw(1)
        .step(common::msg(
            4,
            1,
            term,
            MessageBody::VoteResponse(VoteResponse {
                pre_vote: false,
                granted: true,
            }),
        ))
        .unwrap();
    assert_eq!(net.role(1), Role::Candidate, "a learner's grant is no vote");
}

#[test]
fn learner_commit_is_not_needed() {
    let mut net = Network::with(&[1, 2, 3], &[4], config);
    net.elect(1);
    net.isolate(4);
    let i = net.propose_ok(1, "x");
    assert_eq!(net.commit(1), i);
}

#[test]
fn learner_is_promoted_to_voter() {
    let mut net = Network::new(3);
    net.elect(1);
    add_learner(&mut net, 1, 4);
    change(&mut net, 1, ConfChange::new([MemberChange::add_voter(4)])).unwrap();
    assert!(net.raw(4).conf_state().voters.contains(&4));
    // Node 4's acknowledgement now counts: with 2 and 3 gone, 1 and 4 are not a quorum of 4.
    net.isolate(2);
    net.isolate(3);
    let i = net.propose_ok(1, "x");
    assert!(net.commit(1) < i);
}

#[test]
fn voter_is_demoted_to_learner() {
    let mut net = Network::new(3);
    net.elect(1);
    change(&mut net, 1, ConfChange::new([MemberChange::add_learner(3)])).unwrap();
    let cs = net.raw(1).conf_state().clone();
    assert_eq!(cs.voters.iter().copied().collect::<Vec<_>>(), vec![1, 2]);
    assert!(cs.learners.contains(&3));
    net.tick(3, 100);
    assert_eq!(net.role(3), Role::Follower, "a demoted voter no longer campaigns");
}

#[test]
fn removed_leader_steps_down_once_the_change_commits() {
    let mut net = Network::new(3);
    net.elect(1);
    change(&mut net, 1, ConfChange::new([MemberChange::remove(1)])).unwrap();
    assert_eq!(net.role(1), Role::Follower);
    net.run_ticks(40);
    let leader = net.leader().unwrap();
    assert_ne!(leader, 1);
    for _ in 0..50 {
        net.tick(1, 1);
    }
    assert_eq!(net.role(1), Role::Follower, "the removed node never campaigns");
}

#[test]
fn removed_node_learns_of_its_removal_and_stops_campaigning() {
    let mut net = Network::new(3);
    net.elect(1);
    change(&mut net, 1, ConfChange::new([MemberChange::remove(3)])).unwrap();
    assert!(
        !net.raw(3).conf_state().contains(3),
        "the leader replicated the removal to node 3"
    );
    net.isolate(1);
    for _ in 0..100 {
        net.tick(3, 1);
        net.stabilize();
    }
    assert_eq!(net.role(3), Role::Follower);
    assert_eq!(net.term(3), 1);
}

#[test]
fn a_removed_node_gets_no_vote_once_its_removal_is_committed() {
    let mut net = Network::new(3);
    net.elect(1);
    change(&mut net, 1, ConfChange::new([MemberChange::remove(3)])).unwrap();
    assert!(net.commit(2) >= net.raw(2).conf_index());
    // A later term, and a log as long as could be: still refused.
    net.raw(2).step(vote_request(3, 2, 9, 100, 8)).unwrap();
    let answers = net.collect();
    assert!(answered_vote(&answers, 3, false), "{answers:?}");
}

/// A removal that is not committed may be undone: a leader elected without it cuts it from
/// the log. A node holding it must still vote for such a leader, or the cluster may never
/// elect one (the deterministic simulation found such a cluster: the only node that could
/// win needed the vote of one that held its uncommitted removal).
#[test]
fn an_uncommitted_removal_does_not_cost_the_removed_node_votes() {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(3);
    net.raw(1)
        .propose_conf_change(ConfChange::new([MemberChange::remove(3)]))
        .unwrap();
    // Node 2 appends the change (it takes effect at once), but its acknowledgement is lost:
    // the change is not committed.
    net.stabilize_filtered(|m| !(m.from == 2 && m.kind() == "AppendResponse"));
    assert!(!net.raw(2).conf_state().contains(3), "node 2 took the removal");
    assert!(net.commit(2) < net.raw(2).conf_index(), "uncommitted");
    // Node 3, in a later term, with a longer log of a later term (a history in which the
    // removal never happened), asks node 2 for its vote.
    net.raw(2).step(vote_request(3, 2, 5, 10, 4)).unwrap();
    let answers = net.collect();
    assert!(answered_vote(&answers, 3, true), "{answers:?}");
}

/// {1,2,3} -> {1,4,5} through a joint configuration left explicitly.
fn joint_123_to_145(net: &mut Network) {
    net.elect(1);
    add_learner(net, 1, 4);
    add_learner(net, 1, 5);
    let cc = ConfChange::joint(
        [
            MemberChange::add_voter(4),
            MemberChange::add_voter(5),
            MemberChange::remove(2),
            MemberChange::remove(3),
        ],
        false,
    );
    change(net, 1, cc).unwrap();
    assert!(net.raw(1).conf_state().is_joint());
}

#[test]
fn joint_configuration_needs_both_majorities_to_commit() {
    let mut net = Network::new(3);
    joint_123_to_145(&mut net);
    net.isolate(2);
    net.isolate(3);
    let i = net.propose_ok(1, "x");
    assert!(
        net.commit(1) < i,
        "the new majority {{1,4,5}} alone is not enough"
    );
    net.heal();
    net.tick(1, 1);
    net.stabilize();
    assert_eq!(net.commit(1), i, "both majorities now hold it");
    net.isolate(4);
    net.isolate(5);
    let j = net.propose_ok(1, "y");
    assert!(
        net.commit(1) < j,
        "the old majority {{1,2,3}} alone is not enough"
    );
    net.heal();
    net.tick(1, 1);
    net.stabilize();
    assert_eq!(net.commit(1), j);
}

#[test]
fn joint_configuration_needs_both_majorities_to_elect() {
    let mut net = Network::new(3);
    joint_123_to_145(&mut net);
    // Node 4 can reach only 5: a majority of the incoming half but not of the outgoing one.
    net.isolate(1);
    net.partition(&[4, 5], &[2, 3]);
    net.campaign(4);
    assert_ne!(net.role(4), Role::Leader);
    net.heal();
    net.isolate(1);
    net.campaign(4);
    assert_eq!(net.role(4), Role::Leader, "with 2 or 3 as well it wins");
}

#[test]
fn joint_configuration_is_left_explicitly() {
    let mut net = Network::new(3);
    joint_123_to_145(&mut net);
    net.run_ticks(5);
    assert!(net.raw(1).conf_state().is_joint(), "no automatic leave");
    change(&mut net, 1, ConfChange::leave_joint()).unwrap();
    let cs = net.raw(4).conf_state().clone();
    assert!(!cs.is_joint());
    assert_eq!(cs.voters.iter().copied().collect::<Vec<_>>(), vec![1, 4, 5]);
}

#[test]
fn joint_configuration_is_left_automatically_after_it_commits() {
    let mut net = Network::new(3);
    net.elect(1);
    add_learner(&mut net, 1, 4);
    change(
        &mut net,
        1,
        ConfChange::joint([MemberChange::add_voter(4), MemberChange::remove(3)], true),
    )
    .unwrap();
    let cs = net.raw(2).conf_state().clone();
    assert!(!cs.is_joint());
    assert_eq!(cs.voters.iter().copied().collect::<Vec<_>>(), vec![1, 2, 4]);
}

#[test]
fn configuration_takes_effect_on_append_and_reverts_on_truncation() {
    let mut net = Network::new(5);
    net.elect(1);
    // The change reaches node 2 only: not committed.
    net.partition(&[1, 2], &[3, 4, 5]);
    net.raw(1)
        .propose_conf_change(ConfChange::new([MemberChange::add_learner(6)]))
        .unwrap();
    net.stabilize();
    assert!(
        net.raw(2).conf_state().learners.contains(&6),
        "in effect on node 2 as soon as appended"
    );
    // Node 3 leads a new term without it and overwrites node 2's log.
    net.heal();
    net.isolate(1);
    net.campaign(3);
    assert_eq!(net.role(3), Role::Leader);
    net.propose_ok(3, "x");
    assert!(
        !net.raw(2).conf_state().learners.contains(&6),
        "reverted with the truncation"
    );
    assert_eq!(net.raw(2).conf_state(), &ConfState::with_voters(1..=5));
}

#[test]
fn new_leader_must_commit_in_its_term_before_changing_configuration() {
    let mut net = Network::new(3);
    net.raw(1).campaign().unwrap();
    net.stabilize_filtered(|m| m.kind() != "Append");
    assert_eq!(net.role(1), Role::Leader);
    let err = net
        .raw(1)
        .propose_conf_change(ConfChange::new([MemberChange::add_learner(4)]))
        .unwrap_err();
    assert!(matches!(err, MembershipError::LeaderNotReady), "{err}");
}

#[test]
fn voter_must_join_as_a_learner_first() {
    let mut net = Network::new(3);
    net.elect(1);
    let err = net
        .raw(1)
        .propose_conf_change(ConfChange::new([MemberChange::add_voter(4)]))
        .unwrap_err();
    assert!(
        matches!(err, MembershipError::Invalid(ConfChangeError::NotLearner(4))),
        "{err}"
    );
}

#[test]
fn learner_must_catch_up_before_promotion() {
    let mut net = Network::new(3);
    net.elect(1);
    net.add_node(4, MemStorage::new(), config(4));
    net.isolate(4);
    change(&mut net, 1, ConfChange::new([MemberChange::add_learner(4)])).unwrap();
    let err = net
        .raw(1)
        .propose_conf_change(ConfChange::new([MemberChange::add_voter(4)]))
        .unwrap_err();
    assert!(
        matches!(err, MembershipError::LearnerNotCaughtUp { node: 4, .. }),
        "{err}"
    );
    net.heal();
    net.tick(1, 1);
    net.stabilize();
    change(&mut net, 1, ConfChange::new([MemberChange::add_voter(4)])).unwrap();
}

#[test]
fn node_without_a_configuration_never_votes() {
    let mut net = Network::empty();
    net.add_node(4, MemStorage::new(), config(4));
    net.raw(4).step(vote_request(1, 4, 3, 0, 0)).unwrap();
    let out = net.collect();
    assert!(
        matches!(&out[0].body, MessageBody::VoteResponse(v) if !v.granted),
        "{out:?}"
    );
}

#[test]
fn restart_recovers_an_uncommitted_configuration_from_the_log() {
    let mut net = Network::new(5);
    net.elect(1);
    net.partition(&[1, 2], &[3, 4, 5]);
    net.raw(1)
        .propose_conf_change(ConfChange::new([MemberChange::add_learner(6)]))
        .unwrap();
    net.stabilize();
    net.crash_restart(2);
    assert!(net.raw(2).conf_state().learners.contains(&6));
}

#[test]
fn node_holding_the_only_copy_of_its_removal_can_still_lead() {
    let mut net = Network::new(2);
    net.elect(2);
    // Node 2 removes itself; the entry reaches no one else before node 2 restarts.
    net.isolate(2);
    net.raw(2)
        .propose_conf_change(ConfChange::new([MemberChange::remove(2)]))
        .unwrap();
    net.stabilize();
    net.crash_restart(2);
    net.heal();
    assert!(!net.raw(2).conf_state().contains(2));
    // Node 1 still runs {1, 2} and cannot win without node 2, whose log is ahead.
    net.campaign(1);
    assert_ne!(net.role(1), Role::Leader);
    // Node 2 may campaign while its removal is uncommitted: it wins with node 1's vote,
    // commits the change and steps down; node 1 then leads alone.
    net.run_ticks(80);
    assert_eq!(net.leader(), Some(1));
    assert_eq!(
        net.raw(1).conf_state().voters.iter().copied().collect::<Vec<_>>(),
        vec![1]
    );
    net.propose_ok(1, "alive");
}

#[test]
fn node_metadata_is_replicated_with_the_configuration() {
    let mut net = Network::new(3);
    net.elect(1);
    add_learner(&mut net, 1, 4);
    for id in 1..=4 {
        assert_eq!(
            net.raw(id).conf_state().meta(4).unwrap().as_ref(),
            b"addr-4",
            "node {id}"
        );
    }
    change(&mut net, 1, ConfChange::new([MemberChange::remove(4)])).unwrap();
    assert!(net.raw(2).conf_state().meta(4).is_none());
}

#[test]
fn removing_the_last_voter_is_refused() {
    let mut net = Network::new(1);
    net.elect(1);
    let err = net
        .raw(1)
        .propose_conf_change(ConfChange::new([MemberChange::remove(1)]))
        .unwrap_err();
    assert!(matches!(err, MembershipError::Invalid(ConfChangeError::NoVoters)));
}
