//! The scheduling core of quiesce, a deterministic asyncio event loop for tests.
//!
//! This crate knows nothing about Python. It owns what decides *what runs next and when*:
//! the ready queue and its [`Policy`], the timer queue, the virtual clock and the
//! clock decision (what an idle turn does). The binding crate stores Python handles in it as opaque
//! payloads.
//!
//! Determinism promise: given the same sequence of calls (pushes, timer inserts and cancels,
//! pops, clock moves) and the same policy, the core makes the same choices, on every platform.
//! No decision depends on addresses, hash order or wall-clock time.

pub mod clock;
pub mod idle;
mod pct;
pub mod policy;
pub mod ready;
pub mod schedule;
pub mod timers;

pub use clock::{validate_duration, ClockKind, DurationError, VirtualClock};
pub use idle::{decide, Action, DeadlockKind, Facts, IdleState, Outside, Pace, RunMode};
pub use policy::{
    Chooser, Decision, DecisionKind, Drift, Mismatch, Owner, Policy, FRESH_OWNER, MAX_PCT_DEPTH, PCT_MAX_STREAK,
    PLAIN_OWNER,
};
pub use ready::{permute_ties, LaneKey, ReadyQueue, PLAIN_LANE};
pub use schedule::{next_bounded, Schedule, ScheduleError, TraceDigest, TraceTag};
pub use timers::{TimerId, TimerQueue};

/// Where a piece of work will run: its lane, and the lane's owner (see [`ReadyQueue::push`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub lane: LaneKey,
    pub owner: Owner,
}

impl Placement {
    /// Plain callbacks: the shared FIFO lane.
    pub const PLAIN: Placement = Placement { lane: PLAIN_LANE, owner: PLAIN_OWNER };
}

/// Ready queue, timers and virtual clock of one loop.
pub struct Scheduler<T> {
    ready: ReadyQueue<T>,
    timers: TimerQueue<(Placement, T)>,
    clock_kind: ClockKind,
    clock: VirtualClock,
    /// Reused buffer for the timers released in one turn (only when ties can be permuted).
    released: Vec<(f64, Placement, T)>,
}

impl<T> Scheduler<T> {
    /// An empty scheduler.
    pub fn new(clock_kind: ClockKind, policy: Policy) -> Self {
        Self {
            ready: ReadyQueue::new(policy),
            timers: TimerQueue::new(),
            clock_kind,
            clock: VirtualClock::new(),
            released: Vec::new(),
        }
    }

    /// The clock this scheduler runs on.
    pub fn clock_kind(&self) -> ClockKind {
        self.clock_kind
    }

    /// The ready queue.
    pub fn ready(&self) -> &ReadyQueue<T> {
        &self.ready
    }

    /// The timer queue (payloads carry the lane they will join when due).
    pub fn timers(&self) -> &TimerQueue<(Placement, T)> {
        &self.timers
    }

    /// Whether lane keys matter (they do not under FIFO).
    pub fn uses_lanes(&self) -> bool {
        self.ready.uses_lanes()
    }

    /// A callback or task step is about to run (see [`ReadyQueue::begin_step`]).
    pub fn begin_step(&mut self) {
        self.ready.begin_step();
    }

    /// Makes `entry` runnable.
    pub fn push_ready(&mut self, at: Placement, entry: T) {
        self.ready.push(at.lane, at.owner, entry);
    }

    /// The policy's decision maker.
    pub fn chooser(&self) -> &Chooser {
        self.ready.chooser()
    }

    /// Names the interpreter for the schedules' tags (see [`Chooser::set_flavour`]).
    pub fn set_flavour(&mut self, flavour: u32) {
        self.ready.chooser_mut().set_flavour(flavour);
    }

    /// Forgets the decisions made so far (see [`Chooser::clear_log`]).
    pub fn clear_decision_log(&mut self) {
        self.ready.chooser_mut().clear_log();
    }

    /// A new owner id (see [`Chooser::fresh_owner`]).
    pub fn fresh_owner(&mut self) -> Owner {
        self.ready.chooser_mut().fresh_owner()
    }

    /// Whether a fault point fires (always false under FIFO); logged as a decision.
    pub fn fault(&mut self, probability: f64) -> bool {
        self.ready.chooser_mut().fault(probability)
    }

    /// The next runnable entry under the policy.
    pub fn pop_ready(&mut self) -> Option<T> {
        self.ready.pop()
    }

    /// Schedules `entry` to become runnable at `when` (loop time; must not be NaN).
    pub fn schedule(&mut self, when: f64, at: Placement, entry: T) -> TimerId {
        self.timers.insert(when, (at, entry))
    }

    /// Cancels a timer; returns its payload if it was still pending.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        self.timers.cancel(id).map(|(_, entry)| entry)
    }

    /// The earliest pending deadline.
    pub fn next_deadline(&mut self) -> Option<f64> {
        self.timers.peek_when()
    }

    /// Moves every timer due by `deadline` (inclusive or not) to the ready queue, in deadline
    /// order; returns how many moved. Under a policy other than FIFO, timers due at the same
    /// instant join in an order the policy chooses.
    pub fn release_due(&mut self, deadline: f64, inclusive: bool) -> usize {
        // Timers fire on their own: no earlier step's plain callbacks hold them back.
        self.ready.begin_step();
        if !self.ready.uses_lanes() {
            let mut moved = 0;
            while let Some((_, (at, entry))) = self.timers.pop_due(deadline, inclusive) {
                self.ready.push(at.lane, at.owner, entry);
                moved += 1;
            }
            return moved;
        }
        let mut released = std::mem::take(&mut self.released);
        while let Some((when, (at, entry))) = self.timers.pop_due(deadline, inclusive) {
            released.push((when, at, entry));
        }
        let moved = released.len();
        let mut start = 0;
        while start < released.len() {
            let when = released[start].0;
            let end = start + released[start..].iter().take_while(|(w, _, _)| *w == when).count();
            permute_ties(self.ready.chooser_mut(), &mut released[start..end]);
            start = end;
        }
        for (_, at, entry) in released.drain(..) {
            self.ready.push(at.lane, at.owner, entry);
        }
        self.released = released;
        moved
    }

    /// The virtual clock's instant (meaningless under the real clock).
    pub fn virtual_now(&self) -> f64 {
        self.clock.now()
    }

    /// Moves the virtual clock forward to `instant` (never back).
    pub fn move_clock_to(&mut self, instant: f64) {
        self.clock.move_to(instant);
        let now = self.clock.now();
        self.ready.chooser_mut().set_time(now);
    }

    /// Removes every ready entry, in queue order.
    pub fn pop_all_ready(&mut self) -> Vec<T> {
        self.ready.drain()
    }

    /// Removes every timer, in deadline order.
    pub fn drain_timers(&mut self) -> Vec<T> {
        self.timers.drain().into_iter().map(|(_, (_, entry))| entry).collect()
    }

    /// Removes everything: ready entries first, then timers in deadline order.
    pub fn drain(&mut self) -> Vec<T> {
        let mut all = self.ready.drain();
        all.extend(self.timers.drain().into_iter().map(|(_, (_, entry))| entry));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_timers_join_the_ready_queue_in_deadline_order() {
        let mut s = Scheduler::new(ClockKind::Virtual, Policy::Fifo);
        s.schedule(2.0, Placement::PLAIN, "late");
        s.schedule(1.0, Placement::PLAIN, "early");
        s.push_ready(Placement::PLAIN, "ready");
        assert_eq!(s.release_due(1.5, true), 1);
        let order: Vec<_> = std::iter::from_fn(|| s.pop_ready()).collect();
        assert_eq!(order, vec!["ready", "early"]);
        assert_eq!(s.next_deadline(), Some(2.0));
        s.move_clock_to(2.0);
        assert_eq!(s.release_due(s.virtual_now(), true), 1);
        assert_eq!(s.pop_ready(), Some("late"));
        assert_eq!(s.next_deadline(), None);
    }

    fn fire_order(policy: Policy) -> (Vec<&'static str>, Vec<Decision>) {
        let mut s = Scheduler::new(ClockKind::Virtual, policy);
        for (when, name) in [(1.0, "a"), (2.0, "x"), (1.0, "b"), (1.0, "c")] {
            s.schedule(when, Placement::PLAIN, name);
        }
        s.move_clock_to(2.0);
        s.release_due(2.0, true);
        let order = std::iter::from_fn(|| s.pop_ready()).collect();
        (order, s.chooser().log().to_vec())
    }

    #[test]
    fn only_timers_due_at_the_same_instant_are_permuted() {
        assert_eq!(fire_order(Policy::Fifo).0, vec!["a", "b", "c", "x"]);
        let mut orders = std::collections::BTreeSet::new();
        for seed in 0..100 {
            let (order, log) = fire_order(Policy::Random { seed });
            assert_eq!(order[3], "x", "a later deadline never fires first");
            assert!(log.iter().all(|d| d.kind == DecisionKind::TimerTie && d.time == 2.0));
            orders.insert(order);
        }
        assert_eq!(orders.len(), 6, "every order of the three ties");
    }
}
