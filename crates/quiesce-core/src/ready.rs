//! The ready queue and the policy that picks what runs next.
//!
//! FIFO is stock asyncio's order. Under a seed, entries are grouped into *lanes* and the next
//! entry is the head of a lane chosen by a seeded generator; inside a lane, order is FIFO. The
//! binding chooses lanes so that the orderings correct asyncio code relies on survive:
//! the done-callbacks of one future share a lane (registration order), one task's steps share a
//! lane, and plain callbacks share [`PLAIN_LANE`] (so `call_soon` stays FIFO among them).
//! What may be reordered is therefore exactly: which lane goes next.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

/// Identifies a lane; the binding derives it from the task or future an entry belongs to.
pub type LaneKey = u64;

/// The lane of plain callbacks that belong to no task or future.
pub const PLAIN_LANE: LaneKey = 0;

/// How the next runnable entry is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// First scheduled, first run: stock asyncio's order.
    Fifo,
    /// Seeded pseudo-random choice of lane; the same seed gives the same choices on every
    /// platform and Python version.
    Seeded(u64),
}

struct Lane<T> {
    entries: VecDeque<T>,
    /// Index of this lane's key in `SeededQueue::active`.
    position: usize,
}

struct SeededQueue<T> {
    rng: fastrand::Rng,
    lanes: FxHashMap<LaneKey, Lane<T>>,
    /// Keys of non-empty lanes, in the order they became non-empty (a deterministic order: it
    /// never depends on the key values, which are addresses).
    active: Vec<LaneKey>,
    /// Emptied deques kept for reuse, so steady-state scheduling does not allocate.
    spare: Vec<VecDeque<T>>,
}

enum Inner<T> {
    Fifo(VecDeque<T>),
    Seeded(Box<SeededQueue<T>>),
}

/// Runnable entries under one [`Policy`].
pub struct ReadyQueue<T> {
    inner: Inner<T>,
    len: usize,
    /// Number of picks that had more than one lane to choose from.
    choices: u64,
}

impl<T> ReadyQueue<T> {
    /// An empty queue under `policy`.
    pub fn new(policy: Policy) -> Self {
        let inner = match policy {
            Policy::Fifo => Inner::Fifo(VecDeque::new()),
            Policy::Seeded(seed) => Inner::Seeded(Box::new(SeededQueue {
                rng: fastrand::Rng::with_seed(seed),
                lanes: FxHashMap::default(),
                active: Vec::new(),
                spare: Vec::new(),
            })),
        };
        Self { inner, len: 0, choices: 0 }
    }

    /// Whether lanes matter (the binding skips computing lane keys under FIFO).
    pub fn uses_lanes(&self) -> bool {
        matches!(self.inner, Inner::Seeded(_))
    }

    /// Number of runnable entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is runnable.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of scheduling decisions that had a real choice (more than one lane).
    pub fn choices(&self) -> u64 {
        self.choices
    }

    /// Appends an entry to `lane` (ignored under FIFO).
    pub fn push(&mut self, lane: LaneKey, entry: T) {
        self.len += 1;
        match &mut self.inner {
            Inner::Fifo(queue) => queue.push_back(entry),
            Inner::Seeded(seeded) => seeded.push(lane, entry),
        }
    }

    /// Removes and returns the next entry to run.
    pub fn pop(&mut self) -> Option<T> {
        let entry = match &mut self.inner {
            Inner::Fifo(queue) => queue.pop_front(),
            Inner::Seeded(seeded) => {
                if seeded.active.len() > 1 {
                    self.choices += 1;
                }
                seeded.pop()
            }
        }?;
        self.len -= 1;
        Some(entry)
    }

    /// Removes every entry, in lane order.
    pub fn drain(&mut self) -> Vec<T> {
        self.len = 0;
        match &mut self.inner {
            Inner::Fifo(queue) => queue.drain(..).collect(),
            Inner::Seeded(seeded) => {
                let keys = std::mem::take(&mut seeded.active);
                keys.iter().filter_map(|k| seeded.lanes.remove(k)).flat_map(|lane| lane.entries).collect()
            }
        }
    }

    /// The runnable entries without removing them: FIFO order, or lane by lane.
    pub fn iter(&self) -> Box<dyn Iterator<Item = &T> + '_> {
        match &self.inner {
            Inner::Fifo(queue) => Box::new(queue.iter()),
            Inner::Seeded(seeded) => Box::new(seeded.active.iter().flat_map(move |k| seeded.lanes[k].entries.iter())),
        }
    }
}

impl<T> SeededQueue<T> {
    fn push(&mut self, key: LaneKey, entry: T) {
        if let Some(lane) = self.lanes.get_mut(&key) {
            lane.entries.push_back(entry);
            return;
        }
        let mut entries = self.spare.pop().unwrap_or_default();
        entries.push_back(entry);
        self.lanes.insert(key, Lane { entries, position: self.active.len() });
        self.active.push(key);
    }

    fn pop(&mut self) -> Option<T> {
        if self.active.is_empty() {
            return None;
        }
        let index = if self.active.len() == 1 { 0 } else { self.rng.usize(..self.active.len()) };
        let key = self.active[index];
        let lane = self.lanes.get_mut(&key).expect("active lane has an entry");
        let entry = lane.entries.pop_front();
        if lane.entries.is_empty() {
            let emptied = self.lanes.remove(&key).expect("lane present");
            self.active.swap_remove(index);
            if let Some(moved) = self.active.get(index) {
                self.lanes.get_mut(moved).expect("moved lane present").position = index;
            }
            debug_assert_eq!(emptied.position, index);
            self.spare.push(emptied.entries);
        }
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(policy: Policy, pushes: &[(LaneKey, u32)]) -> Vec<u32> {
        let mut q = ReadyQueue::new(policy);
        for (lane, v) in pushes {
            q.push(*lane, *v);
        }
        std::iter::from_fn(|| q.pop()).collect()
    }

    #[test]
    fn fifo_ignores_lanes() {
        assert_eq!(run(Policy::Fifo, &[(5, 1), (3, 2), (5, 3)]), vec![1, 2, 3]);
    }

    #[test]
    fn seeded_keeps_lane_order_and_is_reproducible() {
        let pushes: Vec<(LaneKey, u32)> = (0..200).map(|i| (u64::from(i % 7), i)).collect();
        let a = run(Policy::Seeded(42), &pushes);
        assert_eq!(a, run(Policy::Seeded(42), &pushes));
        assert_ne!(a, run(Policy::Seeded(43), &pushes));
        for lane in 0..7u32 {
            let in_lane: Vec<u32> = a.iter().copied().filter(|v| v % 7 == lane).collect();
            assert!(in_lane.windows(2).all(|w| w[0] < w[1]), "lane {lane} reordered");
        }
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..200).collect::<Vec<_>>());
    }
}
