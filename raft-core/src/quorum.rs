//! Quorum arithmetic for simple majorities and joint configurations.
//!
//! A joint configuration is two majority configurations that must *both* agree: an index is
//! committed when both majorities have it, and an election is won when both majorities vote
//! for the candidate. An empty majority configuration agrees with everything, which makes a
//! non-joint configuration the special case of a joint one whose outgoing half is empty.

use std::collections::BTreeSet;

use crate::types::{Index, NodeId};

/// The outcome of counting votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// Not decided yet: some voters have not answered.
    Pending,
    /// A quorum refused.
    Lost,
    /// A quorum granted.
    Won,
}

/// Smallest value acknowledged by a majority of `voters`, where `acked(id)` gives each voter's
/// value (missing voters count as 0). Returns `u64::MAX` for an empty set, so that an empty
/// half never limits a joint configuration.
pub fn majority_value(voters: &BTreeSet<NodeId>, acked: impl Fn(NodeId) -> Option<u64>) -> u64 {
    if voters.is_empty() {
        return u64::MAX;
    }
    let mut values: Vec<u64> = voters.iter().map(|&id| acked(id).unwrap_or(0)).collect();
    // Sorted descending, the value at position `quorum - 1` is held by at least a quorum.
    values.sort_unstable_by(|a, b| b.cmp(a));
    values[voters.len() / 2]
}

/// Counts the votes of one majority configuration. Voters absent from `votes` have not
/// answered. An empty configuration always wins.
pub fn majority_vote(voters: &BTreeSet<NodeId>, vote: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let (mut granted, mut missing) = (0, 0);
    for &id in voters {
        match vote(id) {
            Some(true) => granted += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    let quorum = voters.len() / 2 + 1;
    if granted >= quorum {
        VoteResult::Won
    } else if granted + missing >= quorum {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

/// The value acknowledged by both majorities of a (possibly) joint configuration.
pub fn joint_value(
    incoming: &BTreeSet<NodeId>,
    outgoing: &BTreeSet<NodeId>,
    acked: impl Fn(NodeId) -> Option<u64>,
) -> Index {
    majority_value(incoming, &acked).min(majority_value(outgoing, &acked))
}

/// Counts votes in a (possibly) joint configuration: won when both halves won, lost when
/// either lost.
pub fn joint_vote(
    incoming: &BTreeSet<NodeId>,
    outgoing: &BTreeSet<NodeId>,
    vote: impl Fn(NodeId) -> Option<bool>,
) -> VoteResult {
    let a = majority_vote(incoming, &vote);
    let b = majority_vote(outgoing, &vote);
    match (a, b) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn majority_value_is_the_quorum_minimum() {
        let acks: BTreeMap<NodeId, u64> = [(1, 5), (2, 3), (3, 9)].into();
        assert_eq!(majority_value(&set(&[1, 2, 3]), |id| acks.get(&id).copied()), 5);
        // Four voters need three acknowledgements.
        assert_eq!(
            majority_value(&set(&[1, 2, 3, 4]), |id| acks.get(&id).copied()),
            3
        );
        assert_eq!(majority_value(&set(&[]), |_| None), u64::MAX);
    }

    #[test]
    fn joint_value_needs_both_halves() {
        let acks: BTreeMap<NodeId, u64> = [(1, 10), (2, 10), (3, 1), (4, 1), (5, 1)].into();
        let v = joint_value(&set(&[1, 2, 3]), &set(&[3, 4, 5]), |id| acks.get(&id).copied());
        assert_eq!(v, 1);
        let v = joint_value(&set(&[1, 2, 3]), &set(&[]), |id| acks.get(&id).copied());
        assert_eq!(v, 10);
    }

    #[test]
    fn votes_are_pending_until_decided() {
        let voters = set(&[1, 2, 3]);
        assert_eq!(
            majority_vote(&voters, |id| (id == 1).then_some(true)),
            VoteResult::Pending
        );
        assert_eq!(
            majority_vote(&voters, |id| (id != 3).then_some(true)),
            VoteResult::Won
        );
        assert_eq!(
            majority_vote(&voters, |id| (id != 3).then_some(id == 1)),
            VoteResult::Pending
        );
        assert_eq!(majority_vote(&voters, |id| Some(id == 1)), VoteResult::Lost);
        let out = set(&[4, 5, 6]);
        assert_eq!(
            joint_vote(&voters, &out, |id| Some(id <= 3)),
            VoteResult::Lost,
            "a joint election needs the outgoing half too"
        );
        assert_eq!(
            joint_vote(&voters, &out, |id| Some(id != 3 && id != 6)),
            VoteResult::Won
        );
    }
}
