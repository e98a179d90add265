//! Leadership transfer: to an up-to-date or lagging voter, aborts, and refusals.

mod common;

use common::{Network, config};
use raft_core::{MembershipError, MessageBody, ProposeError, Role, TransferError};

#[test]
fn transfer_to_an_up_to_date_voter() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose_ok(1, "a");
    net.raw(1).transfer_leader(2).unwrap();
    net.process(1);
    assert!(
        net.msgs
            .iter()
            .any(|m| m.to == 2 && matches!(m.body, MessageBody::TimeoutNow))
    );
    net.stabilize();
    assert_eq!(net.role(2), Role::Leader);
    assert_eq!(net.role(1), Role::Follower);
    assert_eq!(net.term(2), 2);
}

#[test]
fn transfer_to_a_lagging_target_catches_it_up_first() {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(3);
    for i in 0..5 {
        net.propose_ok(1, &format!("c{i}"));
    }
    net.heal();
    net.raw(1).transfer_leader(3).unwrap();
    net.process(1);
    assert!(
        net.msgs
            .iter()
            .all(|m| !matches!(m.body, MessageBody::TimeoutNow)),
        "not before the target has the whole log"
    );
    net.stabilize();
    net.tick(1, 1);
    net.stabilize();
    assert_eq!(net.role(3), Role::Leader);
    assert_eq!(net.node(3).applied_data().len(), 5);
    net.assert_consistent_logs();
}

#[test]
fn transfer_to_an_isolated_target_aborts_after_an_election_timeout() {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(3);
    net.propose_ok(1, "a");
    net.raw(1).transfer_leader(3).unwrap();
    assert_eq!(net.raw(1).status().lead_transferee, Some(3));
    for _ in 0..10 {
        net.tick(1, 1);
        net.stabilize();
    }
    assert_eq!(net.raw(1).status().lead_transferee, None);
    assert_eq!(net.role(1), Role::Leader);
    net.propose_ok(1, "accepted again");
}

#[test]
fn proposals_are_refused_during_a_transfer() {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(3);
    net.raw(1).transfer_leader(3).unwrap();
    assert!(matches!(
        net.propose(1, "x"),
        Err(ProposeError::TransferInProgress { target: 3 })
    ));
    assert!(matches!(
        net.raw(1).propose_conf_change(raft_core::ConfChange::new([
            raft_core::MemberChange::add_learner(9)
        ])),
        Err(MembershipError::TransferInProgress { target: 3 })
    ));
}

#[test]
fn transfer_to_self_is_refused() {
    let mut net = Network::new(3);
    net.elect(1);
    assert!(matches!(
        net.raw(1).transfer_leader(1),
        Err(TransferError::ToSelf)
    ));
}

#[test]
fn transfer_to_a_learner_is_refused() {
    let mut net = Network::with(&[1, 2, 3], &[4], config);
    net.elect(1);
    assert!(matches!(
        net.raw(1).transfer_leader(4),
        Err(TransferError::NotVoter { target: 4 })
    ));
}

#[test]
fn transfer_to_a_non_member_is_refused() {
    let mut net = Network::new(3);
    net.elect(1);
    assert!(matches!(
        net.raw(1).transfer_leader(9),
        Err(TransferError::NotVoter { target: 9 })
    ));
}

#[test]
fn transfer_on_a_follower_is_refused_with_a_leader_hint() {
    let mut net = Network::new(3);
    net.elect(1);
    assert!(matches!(
        net.raw(2).transfer_leader(3),
        Err(TransferError::NotLeader { leader: Some(1) })
    ));
}

#[test]
fn a_second_transfer_to_another_target_replaces_the_first() {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(3);
    net.raw(1).transfer_leader(3).unwrap();
    net.heal();
    net.raw(1).transfer_leader(2).unwrap();
    assert_eq!(net.raw(1).status().lead_transferee, Some(2));
    net.stabilize();
    assert_eq!(net.role(2), Role::Leader);
}

#[test]
fn learner_ignores_a_timeout_now() {
    let mut net = Network::with(&[1, 2, 3], &[4], config);
    net.elect(1);
    net.raw(4)
        .step(common::msg(1, 4, 1, MessageBody::TimeoutNow))
        .unwrap();
    assert_eq!(net.role(4), Role::Follower);
    assert_eq!(net.term(4), 1);
}

#[test]
fn transfer_works_with_pre_vote_and_check_quorum() {
    let mut net = Network::with(&[1, 2, 3], &[], |id| {
        let mut c = config(id);
        c.pre_vote = true;
        c.check_quorum = true;
        c
    });
    net.elect(1);
    net.run_ticks(2);
    net.raw(1).transfer_leader(3).unwrap();
    net.stabilize();
    assert_eq!(
        net.role(3),
        Role::Leader,
        "the transfer's election skips pre-vote and the lease"
    );
}
