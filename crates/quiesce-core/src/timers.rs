//! Timer queue ordered by `(deadline, insertion sequence)`.
//!
//! Deadlines are kept exactly as the caller computed them (an `f64` of loop time): no
//! quantisation and no "now + (when - now)" round trip, so two timers scheduled for the same
//! instant stay tied and fire in the order they were scheduled.
//!
//! Cancellation is O(1): the payload leaves its slot at once (so a cancelled hour-long timeout
//! frees its callback immediately), and the heap entry that pointed at the slot goes stale. Stale
//! entries are skipped when they reach the top and swept out in one pass once they outnumber the
//! live ones, so the heap never holds more than about twice the live timers.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Identifies one scheduled timer; stays valid (and harmless) after the timer fired or was
/// cancelled, because slots are reused under a new generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    slot: u32,
    generation: u32,
}

impl TimerId {
    /// Packs the id into one integer, for bindings that store it in an atomic.
    pub fn to_bits(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.slot)
    }

    /// Inverse of [`TimerId::to_bits`].
    pub fn from_bits(bits: u64) -> Self {
        Self { slot: bits as u32, generation: (bits >> 32) as u32 }
    }
}

struct Slot<T> {
    generation: u32,
    /// `None` once the timer fired or was cancelled. The deadline lives only in the heap entry:
    /// one pending timer costs one heap entry and one slot, nothing more.
    payload: Option<T>,
}

/// A heap entry; `BinaryHeap` is a max-heap, so `Ord` is reversed to pop the earliest first.
#[derive(Clone, Copy)]
struct Entry {
    when: f64,
    seq: u64,
    slot: u32,
    generation: u32,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        other.when.total_cmp(&self.when).then_with(|| other.seq.cmp(&self.seq))
    }
}

/// Below this many heap entries a sweep is not worth it (stock asyncio uses 100).
const MIN_HEAP_FOR_SWEEP: usize = 64;

/// Pending timers, earliest deadline first, ties in scheduling order.
pub struct TimerQueue<T> {
    heap: BinaryHeap<Entry>,
    slots: Vec<Slot<T>>,
    free_slots: Vec<u32>,
    live: usize,
    next_seq: u64,
}

impl<T> Default for TimerQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TimerQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self { heap: BinaryHeap::new(), slots: Vec::new(), free_slots: Vec::new(), live: 0, next_seq: 0 }
    }

    /// Number of pending (not fired, not cancelled) timers.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Heap entries including stale ones; exposed so tests can check that memory stays bounded.
    pub fn heap_len(&self) -> usize {
        self.heap.len()
    }

    /// Schedules `payload` at `when`. `when` must not be NaN (callers validate input; a NaN
    /// would have no place in the order).
    pub fn insert(&mut self, when: f64, payload: T) -> TimerId {
        debug_assert!(!when.is_nan(), "timer deadline is NaN");
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot as usize].payload = Some(payload);
                slot
            }
            None => {
                let slot = u32::try_from(self.slots.len()).expect("more than 2^32 live timers");
                self.slots.push(Slot { generation: 0, payload: Some(payload) });
                slot
            }
        };
        let generation = self.slots[slot as usize].generation;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { when, seq, slot, generation });
        self.live += 1;
        TimerId { slot, generation }
    }

    /// Removes a pending timer and returns its payload; `None` if it already fired or was
    /// cancelled.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let payload = slot.payload.take()?;
        self.release_slot(id.slot);
        self.maybe_sweep();
        Some(payload)
    }

    /// Whether `id` is still pending.
    pub fn contains(&self, id: TimerId) -> bool {
        self.slots.get(id.slot as usize).is_some_and(|slot| slot.generation == id.generation && slot.payload.is_some())
    }

    /// Deadline of the earliest pending timer.
    pub fn peek_when(&mut self) -> Option<f64> {
        self.drop_stale_top();
        self.heap.peek().map(|entry| entry.when)
    }

    /// Pops the earliest timer if its deadline is at or before `deadline` (or strictly before,
    /// when `inclusive` is false).
    pub fn pop_due(&mut self, deadline: f64, inclusive: bool) -> Option<(f64, T)> {
        self.drop_stale_top();
        let top = *self.heap.peek()?;
        let due = if inclusive { top.when <= deadline } else { top.when < deadline };
        if !due {
            return None;
        }
        self.heap.pop();
        let fired = self.slots[top.slot as usize].payload.take();
        self.release_slot(top.slot);
        fired.map(|payload| (top.when, payload))
    }

    /// Removes every timer and returns the payloads, earliest first. Ids issued before stay
    /// harmless: every slot moves to a new generation.
    pub fn drain(&mut self) -> Vec<(f64, T)> {
        let mut entries = std::mem::take(&mut self.heap).into_sorted_vec();
        entries.reverse(); // `Ord` is reversed: the sorted vec is latest first
        let mut out = Vec::with_capacity(self.live);
        for entry in entries {
            if self.is_live(&entry) {
                if let Some(payload) = self.slots[entry.slot as usize].payload.take() {
                    out.push((entry.when, payload));
                }
                self.release_slot(entry.slot);
            }
        }
        debug_assert_eq!(self.live, 0);
        out
    }

    /// Pending timers' payloads in no particular order, without removing them.
    pub fn payloads(&self) -> impl Iterator<Item = &T> + '_ {
        self.slots.iter().filter_map(|slot| slot.payload.as_ref())
    }

    /// Pending timers in firing order, without removing them.
    pub fn sorted(&self) -> Vec<(f64, &T)> {
        let mut entries: Vec<Entry> = self.heap.iter().copied().filter(|e| self.is_live(e)).collect();
        entries.sort_by(|a, b| b.cmp(a));
        entries
            .iter()
            .filter_map(|e| self.slots[e.slot as usize].payload.as_ref().map(|payload| (e.when, payload)))
            .collect()
    }

    fn is_live(&self, entry: &Entry) -> bool {
        let slot = &self.slots[entry.slot as usize];
        slot.generation == entry.generation && slot.payload.is_some()
    }

    fn release_slot(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        s.generation = s.generation.wrapping_add(1);
        self.free_slots.push(slot);
        self.live -= 1;
    }

    fn drop_stale_top(&mut self) {
        while let Some(top) = self.heap.peek() {
            if self.is_live(top) {
                break;
            }
            self.heap.pop();
        }
    }

    fn maybe_sweep(&mut self) {
        let stale = self.heap.len() - self.live;
        if self.heap.len() >= MIN_HEAP_FOR_SWEEP && stale > self.live {
            let entries = std::mem::take(&mut self.heap).into_vec();
            let kept: Vec<Entry> = entries.into_iter().filter(|e| self.is_live(e)).collect();
            self.heap = BinaryHeap::from(kept);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_fire_in_scheduling_order() {
        let mut q = TimerQueue::new();
        for i in 0..50 {
            q.insert(1.0, i);
        }
        let order: Vec<i32> = std::iter::from_fn(|| q.pop_due(1.0, true).map(|(_, v)| v)).collect();
        assert_eq!(order, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn cancel_frees_payload_and_stale_entries_are_swept() {
        let mut q = TimerQueue::new();
        let ids: Vec<TimerId> = (0..1000).map(|i| q.insert(f64::from(i), i)).collect();
        for id in &ids[..900] {
            assert!(q.cancel(*id).is_some());
        }
        assert_eq!(q.len(), 100);
        assert!(q.heap_len() <= 2 * q.len() + MIN_HEAP_FOR_SWEEP);
        assert_eq!(q.peek_when(), Some(900.0));
    }

    #[test]
    fn cancel_after_fire_or_twice_is_none() {
        let mut q = TimerQueue::new();
        let a = q.insert(1.0, "a");
        assert_eq!(q.pop_due(1.0, true), Some((1.0, "a")));
        assert_eq!(q.cancel(a), None);
        let b = q.insert(2.0, "b");
        // `b` reuses a's slot under a new generation: a's id must not reach it.
        assert_eq!(q.cancel(a), None);
        assert!(q.contains(b));
        assert_eq!(q.cancel(b), Some("b"));
        assert_eq!(q.cancel(b), None);
    }

    #[test]
    fn ids_from_before_a_drain_do_not_reach_new_timers() {
        let mut q = TimerQueue::new();
        let old = q.insert(1.0, "old");
        assert_eq!(q.drain(), vec![(1.0, "old")]);
        let new = q.insert(2.0, "new");
        assert_eq!(q.cancel(old), None);
        assert!(q.contains(new));
    }

    #[test]
    fn exclusive_deadline() {
        let mut q = TimerQueue::new();
        q.insert(1.0, ());
        assert!(q.pop_due(1.0, false).is_none());
        assert!(q.pop_due(1.0, true).is_some());
    }
}
