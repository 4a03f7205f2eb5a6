//! The ready queue: runnable work, and the policy that picks what runs next.
//!
//! Under FIFO (stock asyncio's order) it is one deque. Under any other policy, entries are
//! grouped into *lanes* and each pop is a decision among the lanes' heads; inside a lane, order
//! is FIFO. The binding chooses lanes so that the orderings correct asyncio code relies on
//! survive: the done-callbacks of one future share a lane (registration order), one task's
//! steps share a lane, and plain callbacks share [`PLAIN_LANE`] (so `call_soon` stays FIFO
//! among them). What may be reordered is therefore exactly which lane goes next.
//!
//! Lanes are kept ordered by the age of their head entry, so decision index 0 (the oldest
//! head) is the oldest runnable entry overall: choosing 0 every time is exactly FIFO.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::policy::{Chooser, Decision, DecisionKind, Owner, Policy, FRESH_OWNER};

/// Identifies a lane; the binding derives it from the task or future an entry belongs to.
pub type LaneKey = u64;

/// The lane of plain callbacks that belong to no task or future.
pub const PLAIN_LANE: LaneKey = 0;

struct Lane<T> {
    /// Entries with the sequence number they were pushed with.
    entries: VecDeque<(u64, T)>,
    owner: Owner,
}

struct LaneQueue<T> {
    lanes: FxHashMap<LaneKey, Lane<T>>,
    /// Non-empty lanes as (sequence number of the head entry, key), oldest head first.
    order: VecDeque<(u64, LaneKey)>,
    next_seq: u64,
    /// Emptied deques kept for reuse, so steady-state scheduling does not allocate.
    spare: Vec<VecDeque<(u64, T)>>,
}

enum Inner<T> {
    Fifo(VecDeque<T>),
    Lanes(Box<LaneQueue<T>>),
}

/// Runnable entries under one [`Policy`].
pub struct ReadyQueue<T> {
    inner: Inner<T>,
    chooser: Chooser,
    len: usize,
}

impl<T> ReadyQueue<T> {
    /// An empty queue under `policy`.
    pub fn new(policy: Policy) -> Self {
        let inner = if policy.is_fifo() {
            Inner::Fifo(VecDeque::new())
        } else {
            Inner::Lanes(Box::new(LaneQueue {
                lanes: FxHashMap::default(),
                order: VecDeque::new(),
                next_seq: 0,
                spare: Vec::new(),
            }))
        };
        Self { inner, chooser: Chooser::new(policy), len: 0 }
    }

    /// Whether lanes matter (the binding skips computing lane keys under FIFO).
    pub fn uses_lanes(&self) -> bool {
        matches!(self.inner, Inner::Lanes(_))
    }

    /// The policy's decision maker (also used for timer ties and fault points).
    pub fn chooser(&self) -> &Chooser {
        &self.chooser
    }

    /// Mutable access to the decision maker.
    pub fn chooser_mut(&mut self) -> &mut Chooser {
        &mut self.chooser
    }

    /// Number of runnable entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is runnable.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The decisions made so far.
    pub fn decisions(&self) -> &[Decision] {
        self.chooser.log()
    }

    /// Appends an entry to `lane`, owned by `owner` if the lane is new (both ignored under
    /// FIFO; [`FRESH_OWNER`] asks for a new owner).
    pub fn push(&mut self, lane: LaneKey, owner: Owner, entry: T) {
        self.len += 1;
        match &mut self.inner {
            Inner::Fifo(queue) => queue.push_back(entry),
            Inner::Lanes(lanes) => lanes.push(&mut self.chooser, lane, owner, entry),
        }
    }

    /// Removes and returns the next entry to run.
    pub fn pop(&mut self) -> Option<T> {
        let entry = match &mut self.inner {
            Inner::Fifo(queue) => queue.pop_front(),
            Inner::Lanes(lanes) => lanes.pop(&mut self.chooser),
        }?;
        self.len -= 1;
        Some(entry)
    }

    /// Removes every entry, oldest first.
    pub fn drain(&mut self) -> Vec<T> {
        self.len = 0;
        match &mut self.inner {
            Inner::Fifo(queue) => queue.drain(..).collect(),
            Inner::Lanes(lanes) => {
                lanes.order.clear();
                let mut all: Vec<(u64, T)> = lanes.lanes.drain().flat_map(|(_, lane)| lane.entries).collect();
                all.sort_unstable_by_key(|(seq, _)| *seq);
                all.into_iter().map(|(_, entry)| entry).collect()
            }
        }
    }

    /// The runnable entries without removing them, oldest first.
    pub fn iter(&self) -> Box<dyn Iterator<Item = &T> + '_> {
        match &self.inner {
            Inner::Fifo(queue) => Box::new(queue.iter()),
            Inner::Lanes(lanes) => {
                let mut all: Vec<&(u64, T)> = lanes.lanes.values().flat_map(|lane| lane.entries.iter()).collect();
                all.sort_unstable_by_key(|(seq, _)| *seq);
                Box::new(all.into_iter().map(|(_, entry)| entry))
            }
        }
    }
}

impl<T> LaneQueue<T> {
    fn push(&mut self, chooser: &mut Chooser, key: LaneKey, owner: Owner, entry: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(lane) = self.lanes.get_mut(&key) {
            lane.entries.push_back((seq, entry));
            return;
        }
        let owner = if owner == FRESH_OWNER && chooser.uses_owners() { chooser.fresh_owner() } else { owner };
        let mut entries = self.spare.pop().unwrap_or_default();
        entries.push_back((seq, entry));
        self.lanes.insert(key, Lane { entries, owner });
        // The newest entry: its lane goes last in head order.
        self.order.push_back((seq, key));
    }

    fn pop(&mut self, chooser: &mut Chooser) -> Option<T> {
        let index = match self.order.len() {
            0 => return None,
            1 => 0,
            options => {
                let (order, lanes) = (&self.order, &self.lanes);
                chooser.choose_lane(options, |i| lanes[&order[i].1].owner)
            }
        };
        let (_, key) = self.order.remove(index).expect("chosen index is in range");
        let lane = self.lanes.get_mut(&key).expect("ordered lane is present");
        let (_, entry) = lane.entries.pop_front().expect("ordered lane is not empty");
        match lane.entries.front() {
            Some(&(head, _)) => {
                let at = self.order.partition_point(|&(seq, _)| seq < head);
                self.order.insert(at, (head, key));
            }
            None => {
                let emptied = self.lanes.remove(&key).expect("lane present");
                self.spare.push(emptied.entries);
            }
        }
        Some(entry)
    }
}

/// Chooses an order for `entries` (timers due at one instant, in scheduling order) under the
/// policy: one decision per position but the last. Choosing 0 each time keeps the order.
pub fn permute_ties<T>(chooser: &mut Chooser, entries: &mut [T]) {
    let count = entries.len();
    for position in 0..count.saturating_sub(1) {
        let chosen = chooser.choose(DecisionKind::TimerTie, (count - position) as u32) as usize;
        // Bring the chosen one forward, keeping the rest in their order.
        entries[position..=position + chosen].rotate_right(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;

    fn run(policy: Policy, pushes: &[(LaneKey, u32)]) -> Vec<u32> {
        let mut q = ReadyQueue::new(policy);
        for (lane, v) in pushes {
            q.push(*lane, FRESH_OWNER, *v);
        }
        std::iter::from_fn(|| q.pop()).collect()
    }

    #[test]
    fn fifo_ignores_lanes() {
        assert_eq!(run(Policy::Fifo, &[(5, 1), (3, 2), (5, 3)]), vec![1, 2, 3]);
    }

    #[test]
    fn choosing_zero_every_time_is_fifo() {
        let pushes: Vec<(LaneKey, u32)> = (0..100).map(|i| (u64::from(i % 7), i)).collect();
        let replayed = run(Policy::Replay(Schedule::default()), &pushes);
        assert_eq!(replayed, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn random_keeps_lane_order_and_is_reproducible() {
        let pushes: Vec<(LaneKey, u32)> = (0..200).map(|i| (u64::from(i % 7), i)).collect();
        let a = run(Policy::Random { seed: 42 }, &pushes);
        assert_eq!(a, run(Policy::Random { seed: 42 }, &pushes));
        assert_ne!(a, run(Policy::Random { seed: 43 }, &pushes));
        for lane in 0..7u32 {
            let in_lane: Vec<u32> = a.iter().copied().filter(|v| v % 7 == lane).collect();
            assert!(in_lane.windows(2).all(|w| w[0] < w[1]), "lane {lane} reordered");
        }
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn a_recorded_run_replays_exactly() {
        let pushes: Vec<(LaneKey, u32)> = (0..60).map(|i| (u64::from(i % 5), i)).collect();
        let mut q = ReadyQueue::new(Policy::Pct { seed: 5, depth: 3, horizon: 40 });
        for (lane, v) in &pushes {
            q.push(*lane, *lane + 1, *v);
        }
        let order: Vec<u32> = std::iter::from_fn(|| q.pop()).collect();
        let schedule = q.chooser().schedule();
        let replayed = run(Policy::Replay(schedule), &pushes);
        assert_eq!(replayed, order);
    }

    #[test]
    fn drain_and_iter_go_oldest_first() {
        let mut q = ReadyQueue::new(Policy::Random { seed: 1 });
        for (lane, v) in [(1, 10), (2, 20), (1, 30)] {
            q.push(lane, FRESH_OWNER, v);
        }
        assert_eq!(q.iter().copied().collect::<Vec<_>>(), vec![10, 20, 30]);
        assert_eq!(q.drain(), vec![10, 20, 30]);
        assert!(q.is_empty() && q.pop().is_none());
    }

    #[test]
    fn tie_permutation_keeps_order_at_zero_and_covers_every_order() {
        let mut fifo = Chooser::new(Policy::Replay(Schedule::default()));
        let mut v = [1, 2, 3];
        permute_ties(&mut fifo, &mut v);
        assert_eq!(v, [1, 2, 3]);
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let mut c = Chooser::new(Policy::Random { seed });
            let mut v = [1, 2, 3];
            permute_ties(&mut c, &mut v);
            seen.insert(v);
        }
        assert_eq!(seen.len(), 6);
    }
}
