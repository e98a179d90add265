//! Quiescence: an idle group stops its clock and its heartbeats, wakes on traffic or a
//! request, gives up its lease, and elects a new leader once the driver wakes the followers
//! of a leader that died quiet.

mod common;

use common::{Network, config, data};
use raft_core::{MessageBody, ReadState, Role};

/// Pre-vote and check-quorum, as the runtime runs.
fn quiet_config(id: u64) -> raft_core::Config {
    let mut c = config(id);
    c.pre_vote = true;
    c.check_quorum = true;
    c
}

/// Three nodes, 1 leading with one command committed everywhere.
fn settled() -> Network {
    let mut net = Network::with(&[1, 2, 3], &[], quiet_config);
    net.elect(1);
    net.propose_ok(1, "a");
    net.run_ticks(2);
    net
}

/// Node `id`'s one read so far, `ctx`, was confirmed at its commit index.
fn assert_confirmed_at_commit(net: &Network, id: u64, ctx: u64) {
    let commit = net.commit(id);
    assert_eq!(
        net.node(id).read_states,
        vec![ReadState {
            ctx,
            result: Ok(commit)
        }]
    );
}

/// Node 1, the leader, quiesces the group, and every node goes quiet.
fn go_quiet(net: &mut Network) {
    assert!(net.raw(1).quiesce());
    net.stabilize();
    assert_eq!(quiescent(net), vec![true, true, true]);
}

fn quiescent(net: &Network) -> Vec<bool> {
    net.nodes.values().map(|n| n.raw.is_quiescent()).collect()
}

/// Ticks every node `n` times, processing and delivering everything after each tick;
/// returns how many messages were sent.
fn ticks_sending(net: &mut Network, n: u32) -> usize {
    let mut sent = 0;
    for _ in 0..n {
        net.tick_all(1);
        loop {
            let msgs = net.collect();
            if msgs.is_empty() {
                break;
            }
            sent += msgs.len();
            for m in msgs {
                net.deliver(m);
            }
        }
    }
    sent
}

#[test]
fn an_idle_group_goes_quiet_and_its_ticks_send_nothing() {
    let mut net = settled();
    let awake = ticks_sending(&mut net, 10);
    assert!(awake > 0, "an awake leader heartbeats");
    go_quiet(&mut net);
    let term = net.term(1);
    assert_eq!(ticks_sending(&mut net, 200), 0, "no heartbeats, no elections");
    assert_eq!(net.leader(), Some(1));
    assert_eq!(net.term(2), term);
    assert!(net.raw(1).status().quiescent);
}

#[test]
fn a_leader_with_anything_in_flight_stays_awake() {
    // A follower that does not hold the whole log.
    let mut net = settled();
    net.cut.insert((1, 3));
    net.propose_ok(1, "b");
    assert!(!net.raw(1).quiesce(), "node 3 lacks an entry");
    net.heal();
    net.run_ticks(2);
    assert!(net.raw(1).quiesce(), "caught up: quiet");

    // A read waiting for its round.
    let mut net = settled();
    net.raw(1).read_index(7).unwrap();
    assert!(!net.raw(1).quiesce());
    net.stabilize();
    assert!(net.raw(1).quiesce(), "answered: quiet");

    // A command not yet committed.
    let mut net = settled();
    net.raw(1).propose(data("b")).unwrap();
    assert!(!net.raw(1).quiesce());

    // Only a leader quiesces a group.
    let mut net = settled();
    assert!(!net.raw(2).quiesce());
    assert_eq!(quiescent(&net), vec![false, false, false]);
}

#[test]
fn a_proposal_wakes_the_group_which_commits_it_and_can_go_quiet_again() {
    let mut net = settled();
    go_quiet(&mut net);
    let index = net.propose_ok(1, "b");
    assert_eq!(quiescent(&net), vec![false, false, false]);
    for id in 1..=3 {
        assert_eq!(net.commit(id), index, "node {id}");
    }
    assert!(ticks_sending(&mut net, 3) > 0, "awake again: heartbeats");
    go_quiet(&mut net);
}

#[test]
fn a_quiescent_leader_gives_up_its_lease() {
    let mut net = settled();
    net.raw(1).lease_read(1).unwrap();
    net.process(1);
    assert_eq!(net.node(1).read_states.len(), 1, "served from the lease at once");

    go_quiet(&mut net);
    net.node_mut(1).read_states.clear();
    net.raw(1).lease_read(2).unwrap();
    net.process(1);
    assert!(
        net.node(1).read_states.is_empty(),
        "no lease after quiescing: the read waits for a round"
    );
    assert_eq!(
        net.in_flight(1, 2, "Heartbeat").len(),
        1,
        "the read's round wakes the followers"
    );
    net.stabilize();
    assert_confirmed_at_commit(&net, 1, 2);
    assert_eq!(quiescent(&net), vec![false, false, false]);
}

#[test]
fn a_follower_woken_by_its_driver_wakes_its_leader() {
    let mut net = settled();
    go_quiet(&mut net);
    net.raw(2).wake();
    net.process(2);
    assert_eq!(net.in_flight(2, 1, "Wake").len(), 1);
    net.stabilize();
    assert!(!net.raw(1).is_quiescent(), "the leader woke");
    // Its next heartbeat (one tick away in these tests) wakes node 3 too.
    assert!(ticks_sending(&mut net, 1) > 0);
    assert_eq!(quiescent(&net), vec![false, false, false]);
    assert_eq!(net.leader(), Some(1));
    assert!(ticks_sending(&mut net, 30) > 0);
    assert_eq!(
        net.leader(),
        Some(1),
        "the leader's heartbeats keep node 2 following"
    );
}

#[test]
fn followers_of_a_leader_that_died_quiet_elect_a_new_one_once_woken() {
    let mut net = settled();
    let term = net.term(1);
    go_quiet(&mut net);
    net.isolate(1);
    ticks_sending(&mut net, 100);
    assert_eq!(
        net.term(2),
        term,
        "quiescent followers never time out on their own"
    );
    assert_eq!(net.role(2), Role::Follower);

    // Their driver learns that node 1 is down.
    net.raw(2).wake();
    net.raw(3).wake();
    ticks_sending(&mut net, 60);
    let leader = [2, 3]
        .into_iter()
        .find(|&id| net.role(id) == Role::Leader)
        .expect("a new leader among 2 and 3");
    assert!(net.term(leader) > term);
    let index = net.propose_ok(leader, "after");
    let other = if leader == 2 { 3 } else { 2 };
    assert_eq!(net.commit(other), index);
}

#[test]
fn a_follower_that_missed_the_last_heartbeat_wakes_the_group_without_an_election() {
    let mut net = settled();
    let term = net.term(1);
    assert!(net.raw(1).quiesce());
    net.process(1);
    // Node 3 never hears that the group went quiet.
    net.msgs.retain(|m| m.to != 3);
    net.stabilize();
    assert_eq!(quiescent(&net), vec![true, true, false]);
    ticks_sending(&mut net, 60);
    assert_eq!(net.leader(), Some(1), "its pre-vote was turned down");
    assert_eq!(net.term(3), term, "and raised no term");
    assert_eq!(net.role(3), Role::Follower);
    assert!(!net.raw(1).is_quiescent(), "the pre-vote woke the leader");
    go_quiet(&mut net);
}

#[test]
fn a_follower_with_a_read_of_its_own_wakes_the_leader_instead_of_going_quiet() {
    let mut net = settled();
    net.raw(2).read_index(5).unwrap();
    // The leader goes quiet before the follower's request reaches it.
    assert!(net.raw(1).quiesce());
    let quiesce = net.collect();
    assert!(quiesce.iter().any(|m| matches!(
        &m.body,
        MessageBody::Heartbeat(h) if h.quiesce && m.to == 2
    )));
    for m in quiesce.into_iter().filter(|m| m.from == 1) {
        net.deliver(m);
    }
    assert!(!net.raw(2).is_quiescent());
    net.process(2);
    assert_eq!(net.in_flight(2, 1, "Wake").len(), 1);
    net.stabilize();
    assert!(!net.raw(1).is_quiescent());
    ticks_sending(&mut net, 2);
    assert_confirmed_at_commit(&net, 2, 5);
}

#[test]
fn a_refused_message_leaves_a_quiescent_node_as_it_was() {
    let mut net = settled();
    let term = net.term(1);
    go_quiet(&mut net);
    // Node 2 claims node 1's term as a second leader: node 3 refuses it and stays quiet.
    let forged = common::msg(
        2,
        3,
        term,
        MessageBody::Heartbeat(raft_core::Heartbeat {
            commit: 0,
            round: 1,
            quiesce: false,
        }),
    );
    let before = net.raw(3).status();
    assert!(net.raw(3).step(forged).is_err());
    assert!(net.raw(3).is_quiescent());
    assert_eq!(net.raw(3).status(), before);
}
