//! Computing the configuration that a [`ConfChange`] leads to.
//!
//! Two ways to change membership, both safe under the "one change pending at a time" rule:
//!
//! - **Simple**: at most one voter is added or removed (any number of learners may change).
//!   Any majority of the old voters overlaps any majority of the new ones, so the new
//!   configuration can replace the old one directly.
//! - **Joint**: the new configuration `C_new` first runs alongside the old one as
//!   `C_old,new`, where every decision needs a majority of both. Once the joint entry
//!   commits, the leader appends the final `C_new` (automatically with `auto_leave`).
//!
//! A voter demoted to learner during a joint change stays a voter of the outgoing half
//! until the joint configuration is left; it is recorded in `learners_next` meanwhile.
//!
//! Removed ids are remembered in [`ConfState::removed`] and never admitted again.

use std::collections::BTreeSet;

use crate::error::ConfChangeError;
use crate::types::{ChangeKind, ConfChange, ConfChangeMode, ConfState, NodeId};

/// Computes the configuration that `cc` produces from `current`.
pub fn apply(current: &ConfState, cc: &ConfChange) -> Result<ConfState, ConfChangeError> {
    if cc.is_leave_joint() {
        return leave_joint(current);
    }
    if current.is_joint() {
        return Err(ConfChangeError::AlreadyJoint);
    }
    let mut seen = BTreeSet::new();
    for ch in &cc.changes {
        if ch.node == 0 {
            return Err(ConfChangeError::ZeroNode);
        }
        if !seen.insert(ch.node) {
            return Err(ConfChangeError::DuplicateNode(ch.node));
        }
        if ch.kind == ChangeKind::Remove && !current.contains(ch.node) {
            return Err(ConfChangeError::NotMember(ch.node));
        }
        if ch.kind != ChangeKind::Remove && current.removed.contains(&ch.node) {
            return Err(ConfChangeError::Retired(ch.node));
        }
    }
    let use_joint = match cc.mode {
        ConfChangeMode::Joint { .. } => true,
        ConfChangeMode::Auto => {
            let incoming = apply_to_simple(current, cc).voters;
            incoming.symmetric_difference(&current.voters).count() > 1
        }
    };
    let next = if use_joint {
        let auto_leave = match cc.mode {
            ConfChangeMode::Joint { auto_leave } => auto_leave,
            ConfChangeMode::Auto => true,
        };
        enter_joint(current, cc, auto_leave)
    } else {
        apply_to_simple(current, cc)
    };
    if next.voters.is_empty() {
        return Err(ConfChangeError::NoVoters);
    }
    if next == *current {
        return Err(ConfChangeError::Empty);
    }
    Ok(next)
}

fn apply_to_simple(current: &ConfState, cc: &ConfChange) -> ConfState {
    let mut next = current.clone();
    for ch in &cc.changes {
        match ch.kind {
            ChangeKind::AddVoter => {
                next.learners.remove(&ch.node);
                next.voters.insert(ch.node);
            }
            ChangeKind::AddLearner => {
                next.voters.remove(&ch.node);
                next.learners.insert(ch.node);
            }
            ChangeKind::Remove => {
                next.voters.remove(&ch.node);
                next.learners.remove(&ch.node);
                next.removed.insert(ch.node);
            }
        }
        set_meta(&mut next, ch.node, ch.kind, ch.meta.as_ref());
    }
    drop_stale_meta(&mut next);
    next
}

fn enter_joint(current: &ConfState, cc: &ConfChange, auto_leave: bool) -> ConfState {
    let mut next = current.clone();
    next.voters_outgoing = current.voters.clone();
    next.auto_leave = auto_leave;
    for ch in &cc.changes {
        match ch.kind {
            ChangeKind::AddVoter => {
                next.learners.remove(&ch.node);
                next.learners_next.remove(&ch.node);
                next.voters.insert(ch.node);
            }
            ChangeKind::AddLearner => {
                next.voters.remove(&ch.node);
                next.learners.remove(&ch.node);
                next.learners_next.remove(&ch.node);
                // A voter of the outgoing half cannot be a learner at the same time; it
                // becomes one when the joint configuration is left.
                if next.voters_outgoing.contains(&ch.node) {
                    next.learners_next.insert(ch.node);
                } else {
                    next.learners.insert(ch.node);
                }
            }
            ChangeKind::Remove => {
                next.voters.remove(&ch.node);
                next.learners.remove(&ch.node);
                next.learners_next.remove(&ch.node);
                next.removed.insert(ch.node);
            }
        }
        set_meta(&mut next, ch.node, ch.kind, ch.meta.as_ref());
    }
    drop_stale_meta(&mut next);
    next
}

fn leave_joint(current: &ConfState) -> Result<ConfState, ConfChangeError> {
    if !current.is_joint() {
        return Err(ConfChangeError::NotJoint);
    }
    let mut next = current.clone();
    next.voters_outgoing.clear();
    let promoted = std::mem::take(&mut next.learners_next);
    next.learners.extend(promoted);
    next.auto_leave = false;
    drop_stale_meta(&mut next);
    Ok(next)
}

fn set_meta(cs: &mut ConfState, node: NodeId, kind: ChangeKind, meta: Option<&bytes::Bytes>) {
    if kind == ChangeKind::Remove {
        return;
    }
    if let Some(meta) = meta {
        cs.node_meta.insert(node, meta.clone());
    }
}

fn drop_stale_meta(cs: &mut ConfState) {
    let members = cs.members();
    cs.node_meta.retain(|id, _| members.contains(id));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::MemberChange;

    fn voters(cs: &ConfState) -> Vec<NodeId> {
        cs.voters.iter().copied().collect()
    }

    #[test]
    fn adding_one_voter_is_simple() {
        let cs = ConfState::with_voters([1, 2, 3]);
        let next = apply(&cs, &ConfChange::new([MemberChange::add_voter(4)])).unwrap();
        assert!(!next.is_joint());
        assert_eq!(voters(&next), vec![1, 2, 3, 4]);
    }

    #[test]
    fn replacing_a_voter_goes_through_joint() {
        let cs = ConfState::with_voters([1, 2, 3]);
        let cc = ConfChange::new([MemberChange::add_voter(4), MemberChange::remove(1)]);
        let joint = apply(&cs, &cc).unwrap();
        assert!(joint.is_joint());
        assert!(joint.auto_leave);
        assert_eq!(voters(&joint), vec![2, 3, 4]);
        assert_eq!(
            joint.voters_outgoing.iter().copied().collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        let done = apply(&joint, &ConfChange::leave_joint()).unwrap();
        assert!(!done.is_joint());
        assert_eq!(voters(&done), vec![2, 3, 4]);
        assert!(!done.contains(1));
    }

    #[test]
    fn demotion_in_joint_waits_for_leave() {
        let cs = ConfState::with_voters([1, 2, 3]);
        let joint = apply(&cs, &ConfChange::joint([MemberChange::add_learner(3)], false)).unwrap();
        assert!(joint.is_joint());
        assert!(!joint.auto_leave);
        assert!(joint.learners_next.contains(&3));
        assert!(!joint.learners.contains(&3));
        assert!(joint.is_voter(3), "still an outgoing voter");
        let done = apply(&joint, &ConfChange::leave_joint()).unwrap();
        assert!(done.learners.contains(&3));
        assert!(!done.is_voter(3));
    }

    #[test]
    fn invalid_changes_are_refused() {
        let cs = ConfState::with_voters([1, 2, 3]).and_learners([4]);
        assert_eq!(
            apply(&cs, &ConfChange::new([MemberChange::remove(9)])),
            Err(ConfChangeError::NotMember(9))
        );
        assert_eq!(
            apply(
                &cs,
                &ConfChange::new([MemberChange::add_voter(5), MemberChange::remove(5)])
            ),
            Err(ConfChangeError::DuplicateNode(5))
        );
        assert_eq!(
            apply(
                &cs,
                &ConfChange::new([
                    MemberChange::remove(1),
                    MemberChange::remove(2),
                    MemberChange::remove(3)
                ])
            ),
            Err(ConfChangeError::NoVoters)
        );
        assert_eq!(
            apply(&cs, &ConfChange::leave_joint()),
            Err(ConfChangeError::NotJoint)
        );
        assert_eq!(
            apply(&cs, &ConfChange::new([MemberChange::add_voter(1)])),
            Err(ConfChangeError::Empty)
        );
        assert_eq!(
            apply(&cs, &ConfChange::new([MemberChange::add_voter(0)])),
            Err(ConfChangeError::ZeroNode)
        );
        let joint = apply(&cs, &ConfChange::joint([MemberChange::add_voter(4)], true)).unwrap();
        assert_eq!(
            apply(&joint, &ConfChange::new([MemberChange::add_voter(5)])),
            Err(ConfChangeError::AlreadyJoint)
        );
    }

    #[test]
    fn metadata_follows_membership() {
        let cs = ConfState::with_voters([1]);
        let next = apply(
            &cs,
            &ConfChange::new([MemberChange::add_learner(2).with_meta("10.0.0.2:7000")]),
        )
        .unwrap();
        assert_eq!(next.meta(2).unwrap().as_ref(), b"10.0.0.2:7000");
        let promoted = apply(&next, &ConfChange::new([MemberChange::add_voter(2)])).unwrap();
        assert_eq!(
            promoted.meta(2).unwrap().as_ref(),
            b"10.0.0.2:7000",
            "kept on promotion"
        );
        let removed = apply(&promoted, &ConfChange::new([MemberChange::remove(2)])).unwrap();
        assert!(removed.meta(2).is_none());
    }

    #[test]
    fn removed_ids_are_never_reused() {
        let cs = ConfState::with_voters([1, 2, 3]);
        let next = apply(&cs, &ConfChange::new([MemberChange::remove(3)])).unwrap();
        assert!(next.removed.contains(&3));
        assert_eq!(
            apply(&next, &ConfChange::new([MemberChange::add_learner(3)])),
            Err(ConfChangeError::Retired(3))
        );
        let joint = apply(
            &next,
            &ConfChange::joint([MemberChange::add_voter(1), MemberChange::remove(2)], true),
        );
        assert!(
            joint.unwrap().removed.contains(&2),
            "recorded when a joint change starts"
        );
    }
}
