//! The scheduling core of quiesce, a deterministic asyncio event loop for tests.
//!
//! This crate knows nothing about Python. It owns what decides *what runs next and when*:
//! the ready queue and its [`Policy`], the timer queue, the virtual clock and the
//! run-until-blocked state machine. The binding crate stores Python handles in it as opaque
//! payloads.
//!
//! Determinism promise: given the same sequence of calls (pushes, timer inserts and cancels,
//! pops, clock moves) and the same policy, the core makes the same choices, on every platform.
//! No decision depends on addresses, hash order or wall-clock time.

pub mod clock;
pub mod plan;
pub mod ready;
pub mod timers;

pub use clock::{validate_duration, ClockKind, DurationError, VirtualClock};
pub use plan::{plan_idle, IdleAction, RunMode};
pub use ready::{LaneKey, Policy, ReadyQueue, PLAIN_LANE};
pub use timers::{TimerId, TimerQueue};

/// Ready queue, timers and virtual clock of one loop.
pub struct Scheduler<T> {
    ready: ReadyQueue<T>,
    timers: TimerQueue<(LaneKey, T)>,
    clock_kind: ClockKind,
    clock: VirtualClock,
}

impl<T> Scheduler<T> {
    /// An empty scheduler.
    pub fn new(clock_kind: ClockKind, policy: Policy) -> Self {
        Self { ready: ReadyQueue::new(policy), timers: TimerQueue::new(), clock_kind, clock: VirtualClock::new() }
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
    pub fn timers(&self) -> &TimerQueue<(LaneKey, T)> {
        &self.timers
    }

    /// Whether lane keys matter (they do not under FIFO).
    pub fn uses_lanes(&self) -> bool {
        self.ready.uses_lanes()
    }

    /// Makes `entry` runnable.
    pub fn push_ready(&mut self, lane: LaneKey, entry: T) {
        self.ready.push(lane, entry);
    }

    /// The next runnable entry under the policy.
    pub fn pop_ready(&mut self) -> Option<T> {
        self.ready.pop()
    }

    /// Schedules `entry` to become runnable at `when` (loop time; must not be NaN).
    pub fn schedule(&mut self, when: f64, lane: LaneKey, entry: T) -> TimerId {
        self.timers.insert(when, (lane, entry))
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
    /// order; returns how many moved.
    pub fn release_due(&mut self, deadline: f64, inclusive: bool) -> usize {
        let mut moved = 0;
        while let Some((_, (lane, entry))) = self.timers.pop_due(deadline, inclusive) {
            self.ready.push(lane, entry);
            moved += 1;
        }
        moved
    }

    /// The virtual clock's instant (meaningless under the real clock).
    pub fn virtual_now(&self) -> f64 {
        self.clock.now()
    }

    /// Moves the virtual clock forward to `instant` (never back).
    pub fn move_clock_to(&mut self, instant: f64) {
        self.clock.move_to(instant);
    }

    /// Decides an idle turn (see [`plan_idle`]).
    pub fn plan_idle(&mut self, mode: RunMode, now: f64, external: bool) -> IdleAction {
        let next = self.next_deadline();
        plan_idle(mode, self.clock_kind, now, next, external)
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
        s.schedule(2.0, PLAIN_LANE, "late");
        s.schedule(1.0, PLAIN_LANE, "early");
        s.push_ready(PLAIN_LANE, "ready");
        assert_eq!(s.release_due(1.5, true), 1);
        let order: Vec<_> = std::iter::from_fn(|| s.pop_ready()).collect();
        assert_eq!(order, vec!["ready", "early"]);
        assert_eq!(s.plan_idle(RunMode::Forever, 1.5, false), IdleAction::JumpTo(2.0));
        s.move_clock_to(2.0);
        assert_eq!(s.release_due(s.virtual_now(), true), 1);
        assert_eq!(s.pop_ready(), Some("late"));
        assert_eq!(s.plan_idle(RunMode::Forever, 2.0, false), IdleAction::Deadlock);
    }
}
