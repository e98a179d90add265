//! Work that waits for the protocol: one registry per kind (proposals, forwarded proposals,
//! reads, confirmed reads waiting to be applied, membership changes, the leader transfer).
//!
//! Every registry is a [`Waiting`]: items by key, each with a deadline, and one way for an
//! item to end other than being answered: [`Waiting::expire`] takes every item whose
//! deadline has passed, [`Waiting::drain`] takes them all at shutdown. The group task
//! answers what comes out (it knows which error each kind gets); the registry only keeps
//! the bookkeeping that used to be spread over deadline queues, scans and polling.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use tokio::time::Instant;

/// Items waiting by key, each with a deadline.
pub(crate) struct Waiting<K, V> {
    items: BTreeMap<K, (Instant, V)>,
    /// `(deadline, key)` of every item, so expiring costs only what expires.
    deadlines: BTreeSet<(Instant, K)>,
}

impl<K: Ord + Copy, V> Default for Waiting<K, V> {
    fn default() -> Self {
        Waiting {
            items: BTreeMap::new(),
            deadlines: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Copy, V> Waiting<K, V> {
    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds an item; an item already under `key` is taken out and returned.
    pub(crate) fn insert(&mut self, key: K, deadline: Instant, value: V) -> Option<V> {
        let old = self.remove(&key);
        self.deadlines.insert((deadline, key));
        self.items.insert(key, (deadline, value));
        old
    }

    /// Takes the item under `key` out.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let (deadline, value) = self.items.remove(key)?;
        self.deadlines.remove(&(deadline, *key));
        Some(value)
    }

    /// The item under `key`.
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.items.get(key).map(|(_, v)| v)
    }

    /// The item under `key`, to change it in place.
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.items.get_mut(key).map(|(_, v)| v)
    }

    /// The first item, by key.
    pub(crate) fn first(&self) -> Option<(&K, &V)> {
        self.items.first_key_value().map(|(k, (_, v))| (k, v))
    }

    /// Takes out every item whose deadline is at or before `now`, soonest first.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<(K, V)> {
        let mut expired = Vec::new();
        while let Some(&(deadline, key)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some((_, value)) = self.items.remove(&key) {
                expired.push((key, value));
            }
        }
        expired
    }

    /// Takes out every item with a key at or below `key`, in key order.
    pub(crate) fn take_through(&mut self, key: K) -> Vec<(K, V)> {
        let mut taken = Vec::new();
        while let Some(entry) = self.items.first_entry() {
            if *entry.key() > key {
                break;
            }
            let (k, (deadline, value)) = entry.remove_entry();
            self.deadlines.remove(&(deadline, k));
            taken.push((k, value));
        }
        taken
    }

    /// Takes out every item `pick` selects, in key order.
    pub(crate) fn take_where(&mut self, mut pick: impl FnMut(&K, &mut V) -> bool) -> Vec<(K, V)> {
        let keys: Vec<K> = self
            .items
            .iter_mut()
            .filter_map(|(k, (_, v))| pick(k, v).then_some(*k))
            .collect();
        keys.into_iter()
            .filter_map(|k| self.remove(&k).map(|v| (k, v)))
            .collect()
    }

    /// Takes out every item, in key order.
    pub(crate) fn drain(&mut self) -> Vec<(K, V)> {
        self.deadlines.clear();
        std::mem::take(&mut self.items)
            .into_iter()
            .map(|(k, (_, v))| (k, v))
            .collect()
    }
}

/// Items added in increasing key order with deadlines that never decrease: a leader's
/// proposals, whose indexes grow and whose deadlines are their arrival plus one timeout.
/// Unlike [`Waiting`], each operation the group makes per entry (add at the back, take at
/// the front, expire at the front) costs O(1) and allocates nothing beyond the queue.
pub(crate) struct InOrder<V> {
    items: VecDeque<(u64, Instant, V)>,
}

impl<V> Default for InOrder<V> {
    fn default() -> Self {
        InOrder {
            items: VecDeque::new(),
        }
    }
}

impl<V> InOrder<V> {
    /// Items waiting.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds an item under `key`, after every item held. Items under `key` or a later key
    /// are taken out first and returned, in key order: they were added before the keys
    /// started again lower down (for proposals: in an earlier term, at positions this
    /// node's log no longer holds). A deadline before the last one held is raised to it,
    /// so that deadlines stay in order.
    pub(crate) fn push(&mut self, key: u64, deadline: Instant, value: V) -> Vec<(u64, V)> {
        let mut displaced = Vec::new();
        while self.items.back().is_some_and(|&(k, _, _)| k >= key) {
            if let Some((k, _, v)) = self.items.pop_back() {
                displaced.push((k, v));
            }
        }
        displaced.reverse();
        let deadline = self.items.back().map_or(deadline, |&(_, d, _)| d.max(deadline));
        self.items.push_back((key, deadline, value));
        displaced
    }

    /// Takes the item under `key` out, with its deadline (at the front, as entries are
    /// applied in order, in O(1); elsewhere by a binary search).
    pub(crate) fn remove(&mut self, key: u64) -> Option<(Instant, V)> {
        let at = if self.items.front().is_some_and(|&(k, _, _)| k == key) {
            0
        } else {
            self.items.binary_search_by_key(&key, |&(k, _, _)| k).ok()?
        };
        self.items.remove(at).map(|(_, d, v)| (d, v))
    }

    /// Takes out every item whose deadline is at or before `now`, soonest first.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<(u64, V)> {
        let mut expired = Vec::new();
        while self.items.front().is_some_and(|&(_, d, _)| d <= now) {
            if let Some((k, _, v)) = self.items.pop_front() {
                expired.push((k, v));
            }
        }
        expired
    }

    /// Takes out every item, in key order.
    pub(crate) fn drain(&mut self) -> Vec<(u64, V)> {
        self.items.drain(..).map(|(k, _, v)| (k, v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn items_expire_at_their_deadline_and_not_before() {
        let start = Instant::now();
        let mut w = Waiting::default();
        w.insert(3u64, at(start, 30), "c");
        w.insert(1, at(start, 10), "a");
        w.insert(2, at(start, 20), "b");
        assert!(w.expire(at(start, 9)).is_empty());
        assert_eq!(w.expire(at(start, 20)), vec![(1, "a"), (2, "b")]);
        assert_eq!(w.items.len(), 1);
        assert_eq!(w.expire(at(start, 100)), vec![(3, "c")]);
        assert!(w.is_empty());
    }

    #[test]
    fn an_answered_item_leaves_no_deadline_behind() {
        let start = Instant::now();
        let mut w = Waiting::default();
        for i in 0..1000u64 {
            w.insert(i, at(start, 10), i);
        }
        for i in 0..990u64 {
            assert_eq!(w.remove(&i), Some(i));
        }
        assert_eq!(w.deadlines.len(), 10, "answered items' deadlines must not linger");
        assert_eq!(w.expire(at(start, 10)).len(), 10);
        assert!(w.deadlines.is_empty());
    }

    #[test]
    fn inserting_under_a_taken_key_returns_the_old_item_and_its_deadline_goes() {
        let start = Instant::now();
        let mut w = Waiting::default();
        w.insert(7u64, at(start, 1), "old");
        assert_eq!(w.insert(7, at(start, 50), "new"), Some("old"));
        assert!(
            w.expire(at(start, 10)).is_empty(),
            "the old deadline went with the old item"
        );
        assert_eq!(w.items.get(&7).map(|(d, _)| *d), Some(at(start, 50)));
        assert_eq!(w.get(&7), Some(&"new"));
    }

    #[test]
    fn take_through_takes_keys_in_order_up_to_the_bound() {
        let start = Instant::now();
        let mut w = Waiting::default();
        for (i, k) in [(5u64, 1u64), (3, 2), (9, 3), (3, 1)] {
            w.insert((i, k), at(start, 10), i * 10 + k);
        }
        assert_eq!(
            w.take_through((5, u64::MAX)),
            vec![((3, 1), 31), ((3, 2), 32), ((5, 1), 51)]
        );
        assert_eq!(w.first(), Some((&(9, 3), &93)));
        assert_eq!(w.expire(at(start, 10)), vec![((9, 3), 93)]);
    }

    #[test]
    fn take_where_and_drain_take_what_they_say() {
        let start = Instant::now();
        let mut w = Waiting::default();
        for i in 1..=6u64 {
            w.insert(i, at(start, i), i);
        }
        if let Some(v) = w.get_mut(&2) {
            *v = 20;
        }
        assert_eq!(w.take_where(|_, v| *v % 2 == 0), vec![(2, 20), (4, 4), (6, 6)]);
        assert_eq!(w.drain(), vec![(1, 1), (3, 3), (5, 5)]);
        assert!(w.is_empty());
        assert!(w.expire(at(start, 100)).is_empty());
    }

    #[test]
    fn in_order_items_are_taken_at_the_front_and_expire_in_order() {
        let start = Instant::now();
        let mut w = InOrder::default();
        for k in 1..=5u64 {
            assert!(w.push(k, at(start, k), k * 10).is_empty());
        }
        assert_eq!(w.remove(1), Some((at(start, 1), 10)));
        assert_eq!(w.remove(3), Some((at(start, 3), 30)), "found past the front too");
        assert_eq!(w.remove(3), None);
        assert_eq!(w.remove(9), None);
        assert_eq!(w.expire(at(start, 4)), vec![(2, 20), (4, 40)]);
        assert_eq!(w.len(), 1);
        assert_eq!(w.drain(), vec![(5, 50)]);
        assert!(w.is_empty());
    }

    #[test]
    fn an_in_order_key_taken_again_displaces_it_and_everything_after() {
        let start = Instant::now();
        let mut w = InOrder::default();
        for k in 10..=14u64 {
            w.push(k, at(start, 1), k);
        }
        // Keys start again at 12: the items at 12, 13 and 14 are handed back.
        assert_eq!(w.push(12, at(start, 2), 120), vec![(12, 12), (13, 13), (14, 14)]);
        assert_eq!(w.len(), 3);
        // A deadline earlier than the last one held is raised to it: still in order.
        w.push(13, at(start, 0), 130);
        assert_eq!(w.expire(at(start, 1)), vec![(10, 10), (11, 11)]);
        assert_eq!(w.expire(at(start, 2)), vec![(12, 120), (13, 130)]);
    }
}
