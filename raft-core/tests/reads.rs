//! Linearizable reads: ReadIndex on leaders and followers, the new-leader rule, unique
//! contexts, and lease reads with their fallbacks.

mod common;

use common::{Network, config, msg};
use raft_core::{Message, MessageBody, ReadError, ReadFailure, ReadIndexResponse, ReadState, Role};

fn lease_config(id: u64) -> raft_core::Config {
    let mut c = config(id);
    c.check_quorum = true;
    c
}

fn reads(net: &Network, id: u64) -> Vec<ReadState> {
    net.node(id).read_states.clone()
}

#[test]
fn read_index_on_the_leader_is_confirmed_by_a_heartbeat_round() {
    let mut net = Network::new(3);
    net.elect(1);
    let commit = net.propose_ok(1, "a");
    net.raw(1).read_index(1).unwrap();
    net.process(1);
    assert!(
        reads(&net, 1).is_empty(),
        "not before a quorum confirmed the leadership"
    );
    assert_eq!(heartbeats(&net), 2);
    net.stabilize();
    assert_eq!(
        reads(&net, 1),
        vec![ReadState {
            ctx: 1,
            result: Ok(commit)
        }]
    );
}

#[test]
fn read_index_on_a_single_voter_is_immediate() {
    let mut net = Network::new(1);
    net.elect(1);
    net.raw(1).read_index(9).unwrap();
    net.process(1);
    assert_eq!(
        reads(&net, 1),
        vec![ReadState {
            ctx: 9,
            result: Ok(1)
        }]
    );
}

#[test]
fn read_index_on_a_follower_goes_through_the_leader() {
    let mut net = Network::new(3);
    net.elect(1);
    let commit = net.propose_ok(1, "a");
    net.raw(2).read_index(5).unwrap();
    net.stabilize();
    assert_eq!(
        reads(&net, 2),
        vec![ReadState {
            ctx: 5,
            result: Ok(commit)
        }]
    );
}

#[test]
fn no_read_from_a_new_leader_before_it_commits_in_its_term() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose_ok(1, "a");
    // Node 2 wins a new term but its empty entry has not committed yet.
    net.raw(2).campaign().unwrap();
    net.stabilize_filtered(|m| m.kind() != "Append");
    assert_eq!(net.role(2), Role::Leader);
    net.raw(2).read_index(1).unwrap();
    net.stabilize_filtered(|m| m.kind() != "Append");
    assert!(reads(&net, 2).is_empty(), "its commit index may be stale");
    // Its dropped probes resume with the next heartbeat.
    net.run_ticks(2);
    let rs = reads(&net, 2);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].result, Ok(3), "served at the first index of its term");
}

#[test]
fn pending_reads_fail_when_leadership_is_lost() {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(1);
    net.raw(1).read_index(1).unwrap();
    net.stabilize();
    assert!(reads(&net, 1).is_empty());
    net.raw(1)
        .step(msg(
            2,
            1,
            5,
            MessageBody::HeartbeatResponse(raft_core::HeartbeatResponse { round: 0 }),
        ))
        .unwrap();
    net.process(1);
    assert_eq!(
        reads(&net, 1),
        vec![ReadState {
            ctx: 1,
            result: Err(ReadFailure::LeadershipLost)
        }]
    );
}

#[test]
fn follower_read_fails_when_its_leader_changes() {
    let mut net = Network::new(3);
    net.elect(1);
    net.raw(2).read_index(1).unwrap();
    net.process(2);
    net.msgs.clear(); // the request is lost
    net.campaign(3);
    assert_eq!(
        reads(&net, 2),
        vec![ReadState {
            ctx: 1,
            result: Err(ReadFailure::LeadershipLost)
        }]
    );
}

/// `to` gets an answer from `from` for read context `ctx`, confirming index 0.
fn late_answer(net: &mut Network, from: u64, to: u64, ctx: u64) {
    let term = net.term(to);
    let answer = MessageBody::ReadIndexResponse(ReadIndexResponse { ctx, index: Some(0) });
    net.raw(to).step(msg(from, to, term, answer)).unwrap();
}

/// Successful reads of `ctxs`, in order, all at `index`.
fn confirmed(ctxs: &[u64], index: u64) -> Vec<ReadState> {
    ctxs.iter()
        .map(|&ctx| ReadState {
            ctx,
            result: Ok(index),
        })
        .collect()
}

#[test]
fn a_late_confirmation_does_not_answer_a_retried_read() {
    let mut net = Network::new(3);
    net.elect(1);
    net.raw(2).read_index(1).unwrap();
    net.process(2);
    net.msgs.clear();
    net.campaign(3);
    net.node_mut(2).read_states.clear();
    // The retry uses a new context; a late answer for the old one is ignored.
    net.raw(2).read_index(2).unwrap();
    late_answer(&mut net, 3, 2, 1);
    net.process(2);
    assert!(reads(&net, 2).is_empty(), "context 1 is no longer pending");
    net.stabilize();
    assert_eq!(reads(&net, 2).len(), 1);
    assert_eq!(reads(&net, 2)[0].ctx, 2);
}

#[test]
fn reads_arriving_together_share_one_heartbeat_round() {
    let mut net = Network::new(3);
    net.elect(1);
    for ctx in 0..10 {
        net.raw(1).read_index(ctx).unwrap();
    }
    net.process(1);
    assert_eq!(heartbeats(&net), 2);
    net.stabilize();
    assert_eq!(reads(&net, 1).len(), 10);
}

#[test]
fn too_many_pending_reads_are_refused() {
    let mut net = Network::with(&[1, 2, 3], &[], |id| {
        let mut c = config(id);
        c.max_pending_reads = 3;
        c
    });
    net.elect(1);
    net.isolate(1);
    for ctx in 0..3 {
        net.raw(1).read_index(ctx).unwrap();
    }
    assert!(matches!(
        net.raw(1).read_index(3),
        Err(ReadError::TooManyPending { limit: 3 })
    ));
}

#[test]
fn partitioned_old_leader_cannot_confirm_a_read() {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(1);
    net.raw(1).read_index(1).unwrap();
    net.stabilize();
    net.campaign(2);
    net.propose_ok(2, "new");
    net.run_ticks(3);
    assert!(
        reads(&net, 1).iter().all(|r| r.result.is_err()),
        "the old leader never confirmed a read after the new leader wrote"
    );
    net.heal();
    net.run_ticks(3);
    assert_eq!(
        reads(&net, 1),
        vec![ReadState {
            ctx: 1,
            result: Err(ReadFailure::LeadershipLost)
        }]
    );
}

#[test]
fn lease_read_is_served_without_a_round_while_the_lease_holds() {
    let mut net = Network::with(&[1, 2, 3], &[], lease_config);
    net.elect(1);
    net.run_ticks(2);
    net.raw(1).lease_read(1).unwrap();
    net.process(1);
    assert!(
        net.msgs.iter().all(|m| m.kind() != "Heartbeat"),
        "no round needed"
    );
    assert_eq!(
        reads(&net, 1),
        vec![ReadState {
            ctx: 1,
            result: Ok(1)
        }]
    );
}

#[test]
fn lease_read_falls_back_to_read_index_without_check_quorum() {
    let mut net = Network::new(3);
    net.elect(1);
    net.run_ticks(2);
    net.raw(1).lease_read(1).unwrap();
    net.process(1);
    assert!(reads(&net, 1).is_empty());
    assert_eq!(heartbeats(&net), 2);
    net.stabilize();
    assert_eq!(reads(&net, 1).len(), 1);
}

#[test]
fn lease_read_falls_back_when_the_lease_expired() {
    let mut net = Network::with(&[1, 2, 3], &[], lease_config);
    net.elect(1);
    net.run_ticks(2);
    net.isolate(1);
    // election_tick 10 minus 2 ticks of drift margin: after 8 silent ticks there is no lease.
    for _ in 0..9 {
        net.tick(1, 1);
        net.stabilize();
    }
    net.raw(1).lease_read(1).unwrap();
    net.process(1);
    assert!(reads(&net, 1).is_empty(), "the lease ran out; a round is needed");
}

#[test]
fn lease_read_falls_back_during_a_transfer() {
    let mut net = Network::with(&[1, 2, 3], &[], lease_config);
    net.elect(1);
    net.run_ticks(2);
    net.isolate(2);
    net.propose_ok(1, "x");
    net.raw(1).transfer_leader(2).unwrap();
    net.raw(1).lease_read(1).unwrap();
    net.process(1);
    assert!(
        reads(&net, 1).is_empty(),
        "the transfer's election would override the lease"
    );
}

#[test]
fn no_stale_read_right_after_a_transfer() {
    let mut net = Network::with(&[1, 2, 3], &[], lease_config);
    net.elect(1);
    net.run_ticks(2);
    net.raw(1).transfer_leader(2).unwrap();
    net.stabilize();
    assert_eq!(net.role(2), Role::Leader);
    let written = net.propose_ok(2, "after transfer");
    // The old leader is a follower now: even its lease read goes to the new leader.
    net.raw(1).lease_read(1).unwrap();
    net.stabilize();
    let rs = reads(&net, 1);
    assert_eq!(rs.len(), 1);
    assert!(rs[0].result.unwrap() >= written, "{rs:?}");
    // And the new leader's own first reads wait for its term's commit (done here).
    net.raw(2).lease_read(2).unwrap();
    net.stabilize();
    assert!(reads(&net, 2)[0].result.unwrap() >= written);
}

#[test]
fn new_leader_holds_no_lease_before_a_round_of_its_term_is_acknowledged() {
    let mut net = Network::with(&[1, 2, 3], &[], lease_config);
    net.elect(1);
    // Elected and its entry committed, but no heartbeat round answered yet.
    net.raw(1).lease_read(1).unwrap();
    net.process(1);
    assert!(reads(&net, 1).is_empty());
    assert_eq!(heartbeats(&net), 2, "fell back to ReadIndex");
    net.stabilize();
    assert_eq!(reads(&net, 1).len(), 1);
    // Now the lease holds.
    net.raw(1).lease_read(2).unwrap();
    net.process(1);
    assert_eq!(reads(&net, 1).len(), 2);
}

/// How many of `msgs` are of `kind`.
fn count<'a>(msgs: impl IntoIterator<Item = &'a Message>, kind: &str) -> usize {
    msgs.into_iter().filter(|m| m.kind() == kind).count()
}

/// Heartbeats in flight.
fn heartbeats(net: &Network) -> usize {
    count(&net.msgs, "Heartbeat")
}

#[test]
fn reads_arriving_while_a_round_is_out_wait_for_it_and_share_the_next() {
    let mut net = Network::new(3);
    net.elect(1);
    let commit = net.propose_ok(1, "a");
    net.raw(1).read_index(1).unwrap();
    net.process(1);
    assert_eq!(heartbeats(&net), 2, "the first read starts a round");
    let first_round: Vec<_> = net.msgs.drain(..).collect();

    // Reads arriving while that round is out start none of their own.
    net.raw(1).read_index(2).unwrap();
    net.raw(1).read_index(3).unwrap();
    assert!(
        !net.raw(1).has_ready(),
        "nothing to do until the round is answered"
    );
    net.process(1);
    assert_eq!(heartbeats(&net), 0);

    // The round's answers confirm the first read only: the others arrived after it was
    // sent. The same turn sends the next round, for both.
    for m in first_round {
        net.deliver(m);
    }
    net.process(2);
    net.process(3);
    while net.deliver_one() {}
    net.process(1);
    assert_eq!(reads(&net, 1), confirmed(&[1], commit));
    assert_eq!(heartbeats(&net), 2, "one round for the two waiting reads");
    net.stabilize();
    assert_eq!(reads(&net, 1), confirmed(&[1, 2, 3], commit));
}

#[test]
fn a_lost_read_round_holds_later_reads_back_for_one_tick_at_most() {
    let mut net = Network::with(&[1, 2, 3], &[], |id| {
        let mut c = config(id);
        // No heartbeat of the ticks' own in this test: only reads start rounds.
        c.heartbeat_tick = 5;
        c
    });
    net.elect(1);
    let commit = net.propose_ok(1, "a");
    net.raw(1).read_index(1).unwrap();
    net.process(1);
    assert_eq!(heartbeats(&net), 2);
    net.msgs.clear(); // the round is lost
    net.raw(1).read_index(2).unwrap();
    net.process(1);
    assert_eq!(heartbeats(&net), 0, "a round is still out in this tick");

    net.tick(1, 1);
    net.process(1);
    assert_eq!(
        heartbeats(&net),
        2,
        "the next tick starts a round for the waiting read"
    );
    net.stabilize();
    let mut got = reads(&net, 1);
    got.sort_by_key(|r| r.ctx);
    assert_eq!(
        got,
        confirmed(&[1, 2], commit),
        "the new round's answers confirm the read of the lost round as well"
    );
}

/// ReadIndex requests in flight.
fn read_requests(net: &Network) -> usize {
    count(&net.msgs, "ReadIndex")
}

#[test]
fn a_followers_reads_share_one_request_to_the_leader() {
    let mut net = Network::new(3);
    net.elect(1);
    let commit = net.propose_ok(1, "a");
    net.raw(2).read_index(1).unwrap();
    net.process(2);
    assert_eq!(read_requests(&net), 1);
    let first: Vec<_> = net.msgs.drain(..).collect();

    // Reads arriving while the request is out wait for its answer.
    net.raw(2).read_index(2).unwrap();
    net.raw(2).read_index(3).unwrap();
    assert!(!net.raw(2).has_ready());
    // Run the cluster until the first read is answered: by then exactly one more request
    // has gone out, for the two reads that waited.
    let mut in_flight = first;
    let mut requests = 0;
    while reads(&net, 2).is_empty() {
        assert!(!in_flight.is_empty(), "the first read is answered");
        for m in in_flight {
            net.deliver(m);
        }
        in_flight = net.collect();
        requests += count(&in_flight, "ReadIndex");
    }
    assert_eq!(requests, 1, "one request for reads 2 and 3");
    net.msgs.extend(in_flight);
    net.stabilize();
    assert_eq!(reads(&net, 2), confirmed(&[1, 2, 3], commit));
}

#[test]
fn a_late_answer_to_a_request_sent_again_confirms_none_of_the_reads_added_since() {
    let mut net = Network::new(3);
    net.elect(1);
    net.raw(2).read_index(1).unwrap();
    net.process(2);
    assert_eq!(read_requests(&net), 1);
    net.msgs.clear(); // unanswered so far

    // At the next tick the request goes again, with a read that arrived since.
    net.tick(2, 1);
    net.raw(2).read_index(2).unwrap();
    net.process(2);
    assert_eq!(read_requests(&net), 1, "one request for both reads");
    let again: Vec<_> = net.msgs.drain(..).collect();

    // Meanwhile the leader commits more, and the answer to the first send arrives: it was
    // worked out before read 2 arrived, so it must confirm neither.
    let commit = net.propose_ok(1, "b");
    late_answer(&mut net, 1, 2, 1);
    net.process(2);
    assert!(reads(&net, 2).is_empty(), "the late answer confirms nothing");

    for m in again {
        net.deliver(m);
    }
    net.stabilize();
    assert_eq!(reads(&net, 2), confirmed(&[1, 2], commit));
}

#[test]
fn a_lost_follower_request_is_sent_again_at_the_next_tick() {
    let mut net = Network::new(3);
    net.elect(1);
    let commit = net.propose_ok(1, "a");
    net.raw(2).read_index(7).unwrap();
    net.process(2);
    net.msgs.clear(); // the request is lost
    assert!(!net.raw(2).has_ready());
    net.tick(2, 1);
    net.process(2);
    assert_eq!(read_requests(&net), 1, "sent again");
    net.stabilize();
    assert_eq!(reads(&net, 2), confirmed(&[7], commit));
}
