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
//!
//! One more order survives every policy: a plain callback runs before anything the same step
//! (the callback or task step that was running) scheduled after it. asyncio's own code relies
//! on it (a subprocess transport schedules `connection_made` and then completes the future
//! its creator awaits), and so does user code that does `loop.call_soon(f)` and then `await
//! asyncio.sleep(0)` expecting `f` to have run. Such entries carry a *barrier*: the sequence
//! number of that plain callback; a lane whose head has an unmet barrier is not an option.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::policy::{Chooser, Decision, DecisionKind, Owner, Policy, FRESH_OWNER};

/// Identifies a lane; the binding derives it from the task or future an entry belongs to.
pub type LaneKey = u64;

/// The lane of plain callbacks that belong to no task or future.
pub const PLAIN_LANE: LaneKey = 0;

/// "No barrier": the entry may run whenever its lane is chosen.
const NO_BARRIER: u64 = u64::MAX;

struct Lane<T> {
    /// Entries with the sequence number they were pushed with and their barrier.
    entries: VecDeque<(u64, u64, T)>,
    owner: Owner,
}

struct LaneQueue<T> {
    lanes: FxHashMap<LaneKey, Lane<T>>,
    /// Non-empty lanes as (sequence number of the head entry, its barrier, key), oldest head
    /// first.
    order: VecDeque<(u64, u64, LaneKey)>,
    next_seq: u64,
    /// The newest plain entry pushed since the current step began ([`NO_BARRIER`]: none).
    step_plain: u64,
    /// Queued entries that carry a barrier (met or not): while 0, every lane is an option.
    barriers: usize,
    /// Indices into `order` of the lanes that are options (reused buffer).
    options: Vec<usize>,
    /// Emptied deques kept for reuse, so steady-state scheduling does not allocate.
    spare: Vec<VecDeque<(u64, u64, T)>>,
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
                step_plain: NO_BARRIER,
                barriers: 0,
                options: Vec::new(),
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

    /// A new step begins (a callback or task step is about to run, or timers are released):
    /// plain callbacks it schedules act as barriers for what it schedules after them.
    pub fn begin_step(&mut self) {
        if let Inner::Lanes(lanes) = &mut self.inner {
            lanes.step_plain = NO_BARRIER;
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
                self.chooser.lanes_cleared();
                lanes.order.clear();
                lanes.barriers = 0;
                lanes.step_plain = NO_BARRIER;
                let mut all: Vec<(u64, u64, T)> = lanes.lanes.drain().flat_map(|(_, lane)| lane.entries).collect();
                all.sort_unstable_by_key(|(seq, _, _)| *seq);
                all.into_iter().map(|(_, _, entry)| entry).collect()
            }
        }
    }

    /// The runnable entries without removing them, oldest first.
    pub fn iter(&self) -> Box<dyn Iterator<Item = &T> + '_> {
        match &self.inner {
            Inner::Fifo(queue) => Box::new(queue.iter()),
            Inner::Lanes(lanes) => {
                let mut all: Vec<&(u64, u64, T)> = lanes.lanes.values().flat_map(|lane| lane.entries.iter()).collect();
                all.sort_unstable_by_key(|(seq, _, _)| *seq);
                Box::new(all.into_iter().map(|(_, _, entry)| entry))
            }
        }
    }
}

impl<T> LaneQueue<T> {
    fn push(&mut self, chooser: &mut Chooser, key: LaneKey, owner: Owner, entry: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let barrier = if key == PLAIN_LANE {
            self.step_plain = seq;
            NO_BARRIER
        } else {
            self.step_plain
        };
        if barrier != NO_BARRIER {
            self.barriers += 1;
        }
        if let Some(lane) = self.lanes.get_mut(&key) {
            lane.entries.push_back((seq, barrier, entry));
            return;
        }
        let owner = if owner == FRESH_OWNER && chooser.uses_owners() { chooser.fresh_owner() } else { owner };
        let mut entries = self.spare.pop().unwrap_or_default();
        entries.push_back((seq, barrier, entry));
        self.lanes.insert(key, Lane { entries, owner });
        // The newest entry: its lane goes last in head order.
        self.order.push_back((seq, barrier, key));
        chooser.lane_ready(key, owner, seq);
    }

    /// The index into `order` of `key`'s lane (`order` is sorted by head sequence number).
    fn order_index(&self, key: LaneKey) -> usize {
        let head = self.lanes[&key].entries.front().map_or(0, |entry| entry.0);
        self.order.partition_point(|&(seq, _, _)| seq < head)
    }

    /// The sequence number of the oldest queued plain callback (`u64::MAX`: none).
    fn plain_head(&self) -> u64 {
        self.lanes.get(&PLAIN_LANE).and_then(|lane| lane.entries.front()).map_or(u64::MAX, |e| e.0)
    }

    /// Fills `options` with the indices into `order` of the lanes that may go next: all but
    /// those whose head waits for a plain callback still queued. The oldest head is always
    /// among them (what it waits for is older still), so option 0 stays FIFO.
    fn collect_options(&mut self) {
        self.options.clear();
        let plain_head = self.plain_head();
        let order = &self.order;
        self.options.extend((0..order.len()).filter(|&i| order[i].1 == NO_BARRIER || order[i].1 < plain_head));
    }

    fn pop(&mut self, chooser: &mut Chooser) -> Option<T> {
        let ranked = chooser.uses_owners();
        let index = match (self.order.len(), self.barriers) {
            (0, _) => return None,
            (1, _) => 0,
            (options, 0) if ranked => chooser.choose_ranked_lane(options, |_| true, |key| self.order_index(key)),
            (options, 0) => {
                let (order, lanes) = (&self.order, &self.lanes);
                chooser.choose_lane(options, |i| lanes[&order[i].2].owner)
            }
            _ => {
                self.collect_options();
                match self.options.len() {
                    1 => self.options[0],
                    options if ranked => {
                        let plain_head = self.plain_head();
                        let eligible = |key: LaneKey| {
                            let barrier = self.lanes[&key].entries.front().map_or(NO_BARRIER, |entry| entry.1);
                            barrier == NO_BARRIER || barrier < plain_head
                        };
                        let position = |key: LaneKey| {
                            let index = self.order_index(key);
                            self.options.binary_search(&index).unwrap_or(0)
                        };
                        self.options[chooser.choose_ranked_lane(options, eligible, position)]
                    }
                    options => {
                        let (order, lanes, eligible) = (&self.order, &self.lanes, &self.options);
                        eligible[chooser.choose_lane(options, |i| lanes[&order[eligible[i]].2].owner)]
                    }
                }
            }
        };
        let (_, _, key) = self.order.remove(index).expect("chosen index is in range");
        let lane = self.lanes.get_mut(&key).expect("ordered lane is present");
        let (_, barrier, entry) = lane.entries.pop_front().expect("ordered lane is not empty");
        if barrier != NO_BARRIER {
            self.barriers -= 1;
        }
        match lane.entries.front() {
            Some(&(head, head_barrier, _)) => {
                let at = self.order.partition_point(|&(seq, _, _)| seq < head);
                self.order.insert(at, (head, head_barrier, key));
                chooser.lane_head(key, head);
            }
            None => {
                let emptied = self.lanes.remove(&key).expect("lane present");
                self.spare.push(emptied.entries);
                chooser.lane_gone(key);
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
        let mut q = ReadyQueue::new(Policy::Pct { seed: 5, depth: 3, horizon: 40, max_streak: crate::PCT_MAX_STREAK });
        for (lane, v) in &pushes {
            q.push(*lane, *lane + 1, *v);
        }
        let order: Vec<u32> = std::iter::from_fn(|| q.pop()).collect();
        let schedule = q.chooser().schedule();
        let replayed = run(Policy::Replay(schedule), &pushes);
        assert_eq!(replayed, order);
    }

    #[test]
    fn a_plain_callback_runs_before_what_its_step_scheduled_after_it() {
        // One step schedules a plain callback, then wakes a task (another lane): under every
        // seed the plain callback runs first. Work from different steps stays reorderable.
        let mut orders = std::collections::BTreeSet::new();
        for seed in 0..100 {
            let mut q = ReadyQueue::new(Policy::Random { seed });
            q.begin_step();
            q.push(PLAIN_LANE, FRESH_OWNER, "connection_made");
            q.push(7, FRESH_OWNER, "waiter woken");
            q.begin_step();
            q.push(8, FRESH_OWNER, "other task");
            let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
            let position = |name| order.iter().position(|e| *e == name).expect("popped");
            assert!(position("connection_made") < position("waiter woken"), "seed {seed}: {order:?}");
            orders.insert(order);
        }
        assert!(orders.len() >= 3, "the other step's work still moves: {orders:?}");
    }

    #[test]
    fn a_barrier_holds_only_until_its_plain_callback_ran() {
        let mut q = ReadyQueue::new(Policy::Replay(Schedule::from_choices(vec![1, 1])));
        q.begin_step();
        q.push(3, FRESH_OWNER, "older task");
        q.push(PLAIN_LANE, FRESH_OWNER, "plain");
        q.push(4, FRESH_OWNER, "after plain");
        // Options at first: "older task" and "plain" ("after plain" waits): choice 1 = plain.
        assert_eq!(q.pop(), Some("plain"));
        // Now both tasks are options: choice 1 = the younger one.
        assert_eq!(q.pop(), Some("after plain"));
        assert_eq!(q.pop(), Some("older task"));
        assert_eq!(q.chooser().log().iter().map(|d| d.options).collect::<Vec<_>>(), vec![2, 2]);
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
