//! Which peers the transport may talk to while the membership changes.

use std::collections::BTreeMap;

use bytes::Bytes;
use raft_core::{Index, NodeId};

/// The peer addresses handed to the transport: the members of the latest configuration,
/// plus the members it dropped, until it has committed and a grace period has passed.
///
/// A configuration takes effect when it is appended, but the nodes it removes are still
/// needed until it commits, and a little after. A leader that removes itself must hear its
/// followers acknowledge the change before it can commit it and step down; a removed
/// follower must receive the entry and the news that it committed, or it keeps
/// campaigning; and the leader goes on replicating to removed nodes until they have both
/// (the protocol core drops them at the latest an election timeout after the commit). A
/// transport that disconnected and refused them as soon as the change was appended would
/// leave a leader that removed itself stuck with an uncommitted change forever.
#[derive(Debug)]
pub(crate) struct PeerSet {
    current: BTreeMap<NodeId, Bytes>,
    departing: BTreeMap<NodeId, Bytes>,
    /// Index of the entry of the latest configuration.
    conf_index: Index,
    /// Ticks the departing peers are kept once the latest configuration has committed.
    grace_ticks: u64,
    /// Ticks left, counted from the first tick that saw the configuration committed.
    grace_left: Option<u64>,
}

impl PeerSet {
    /// An empty set; departing peers are kept `grace_ticks` ticks after their removal commits.
    pub(crate) fn new(grace_ticks: u64) -> PeerSet {
        PeerSet {
            current: BTreeMap::new(),
            departing: BTreeMap::new(),
            conf_index: 0,
            grace_ticks,
            grace_left: None,
        }
    }

    /// A new latest configuration, carried by the entry at `conf_index`, with these
    /// members' addresses. Returns the addresses the transport must now know.
    pub(crate) fn set_config(
        &mut self,
        conf_index: Index,
        members: BTreeMap<NodeId, Bytes>,
    ) -> BTreeMap<NodeId, Bytes> {
        let previous = std::mem::replace(&mut self.current, members);
        self.departing.extend(previous);
        self.departing.retain(|id, _| !self.current.contains_key(id));
        self.conf_index = conf_index;
        self.grace_left = None;
        self.addresses()
    }

    /// One tick, with the commit index: returns the addresses to hand the transport when
    /// the departing peers were just let go.
    pub(crate) fn tick(&mut self, commit: Index) -> Option<BTreeMap<NodeId, Bytes>> {
        if self.departing.is_empty() || commit < self.conf_index {
            return None;
        }
        let left = self.grace_left.unwrap_or(self.grace_ticks).saturating_sub(1);
        self.grace_left = Some(left);
        if left > 0 {
            return None;
        }
        self.departing.clear();
        self.grace_left = None;
        Some(self.addresses())
    }

    /// Every address the transport may use now.
    pub(crate) fn addresses(&self) -> BTreeMap<NodeId, Bytes> {
        let mut all = self.departing.clone();
        all.extend(self.current.iter().map(|(&id, a)| (id, a.clone())));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(ids: &[NodeId]) -> BTreeMap<NodeId, Bytes> {
        ids.iter()
            .map(|&id| (id, Bytes::from(format!("10.0.0.{id}:7000"))))
            .collect()
    }

    fn ids(m: &BTreeMap<NodeId, Bytes>) -> Vec<NodeId> {
        m.keys().copied().collect()
    }

    #[test]
    fn removed_members_stay_until_the_change_commits_and_the_grace_passes() {
        let mut p = PeerSet::new(3);
        assert_eq!(ids(&p.set_config(1, members(&[1, 2, 3]))), vec![1, 2, 3]);
        assert_eq!(p.tick(1), None, "nothing departing");
        // Node 1 is removed by the entry at 10: it stays reachable while 10 is uncommitted.
        assert_eq!(ids(&p.set_config(10, members(&[2, 3]))), vec![1, 2, 3]);
        for _ in 0..20 {
            assert_eq!(p.tick(9), None);
        }
        // Committed: kept for the grace period, then let go.
        assert_eq!(p.tick(10), None);
        assert_eq!(p.tick(11), None);
        assert_eq!(p.tick(11).map(|m| ids(&m)), Some(vec![2, 3]));
        assert_eq!(p.tick(12), None);
        assert_eq!(ids(&p.addresses()), vec![2, 3]);
    }

    #[test]
    fn a_member_added_back_is_no_longer_departing() {
        let mut p = PeerSet::new(1);
        p.set_config(1, members(&[1, 2, 3]));
        p.set_config(5, members(&[1, 2]));
        // The removal was replaced (a new leader truncated it) by a configuration with 3.
        assert_eq!(ids(&p.set_config(5, members(&[1, 2, 3]))), vec![1, 2, 3]);
        assert_eq!(p.tick(5), None, "nothing departing any more");
        assert_eq!(ids(&p.addresses()), vec![1, 2, 3]);
    }

    #[test]
    fn joint_changes_keep_the_outgoing_members_until_the_last_one_commits() {
        let mut p = PeerSet::new(1);
        p.set_config(1, members(&[1, 2, 3]));
        // Joint {1,2,3} and {2,3,4}: every one of them is a member.
        assert_eq!(ids(&p.set_config(7, members(&[1, 2, 3, 4]))), vec![1, 2, 3, 4]);
        // Leaving the joint configuration drops 1, which stays until 8 commits.
        assert_eq!(ids(&p.set_config(8, members(&[2, 3, 4]))), vec![1, 2, 3, 4]);
        assert_eq!(p.tick(7), None);
        assert_eq!(p.tick(8).map(|m| ids(&m)), Some(vec![2, 3, 4]));
    }

    #[test]
    fn a_new_change_restarts_the_grace() {
        let mut p = PeerSet::new(2);
        p.set_config(1, members(&[1, 2, 3, 4]));
        p.set_config(5, members(&[1, 2, 3]));
        assert_eq!(p.tick(5), None);
        p.set_config(9, members(&[2, 3]));
        assert_eq!(p.tick(9), None, "grace counted again from the new commit");
        assert_eq!(p.tick(9).map(|m| ids(&m)), Some(vec![2, 3]));
    }
}
