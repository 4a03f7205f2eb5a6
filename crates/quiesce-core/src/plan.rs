//! What the loop does when nothing is runnable: the run-until-blocked / advance state machine.
//!
//! The binding calls [`plan_idle`] at the start of a turn in which no callback is ready and no
//! timer is due. The answer depends on how the loop was asked to run, on the clock, on the next
//! timer, and on whether anything outside the loop (another thread, an executor job, a watched
//! file descriptor, a signal handler) could still make something runnable.

use crate::clock::ClockKind;

/// How the loop was asked to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// `run_forever` / `run_until_complete`: keep going until stopped.
    Forever,
    /// `run_until_blocked` / `advance`: return as soon as nothing can run at this instant.
    UntilBlocked,
    /// `step`: run at most one callback.
    Step,
    /// `run_until_idle`: like `Forever` (jump the virtual clock, wait for outside activity),
    /// but return instead of reporting a deadlock once nothing at all is scheduled.
    UntilIdle,
}

impl RunMode {
    /// Whether an idle turn may wait or move the clock (rather than return at once).
    pub fn waits_when_idle(self) -> bool {
        matches!(self, RunMode::Forever | RunMode::UntilIdle)
    }

    /// Whether the run counts callbacks against a budget.
    pub fn budgeted(self) -> bool {
        matches!(self, RunMode::UntilBlocked | RunMode::UntilIdle)
    }
}

/// What to do on an idle turn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum IdleAction {
    /// Stop running and hand control back: blocked at this instant.
    Return,
    /// Virtual clock: nothing else can happen first, so move the clock to this timer.
    JumpTo(f64),
    /// Wait in real time for outside activity, at most this many seconds (`None`: no limit).
    WaitReal(Option<f64>),
    /// Nothing can ever run again.
    Deadlock,
}

/// Decides an idle turn. `next_timer` is the earliest pending deadline; `external` says whether
/// something outside the loop could still make a callback runnable.
pub fn plan_idle(mode: RunMode, clock: ClockKind, now: f64, next_timer: Option<f64>, external: bool) -> IdleAction {
    if !mode.waits_when_idle() {
        return IdleAction::Return;
    }
    let nothing_left = if mode == RunMode::UntilIdle { IdleAction::Return } else { IdleAction::Deadlock };
    // A timer at +inf never fires: it cannot end a wait or be jumped to.
    let next_timer = next_timer.filter(|when| when.is_finite());
    match clock {
        ClockKind::Virtual => match (external, next_timer) {
            // Outside activity may arrive before the timer: let time flow at real pace until
            // then instead of jumping over it.
            (true, next) => IdleAction::WaitReal(next.map(|when| (when - now).max(0.0))),
            (false, Some(when)) => IdleAction::JumpTo(when),
            (false, None) => nothing_left,
        },
        ClockKind::Real => match (external, next_timer) {
            (_, Some(when)) => IdleAction::WaitReal(Some((when - now).max(0.0))),
            (true, None) => IdleAction::WaitReal(None),
            (false, None) => nothing_left,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ClockKind::{Real, Virtual};
    use IdleAction::*;
    use RunMode::*;

    #[test]
    fn blocked_modes_never_wait_or_jump() {
        for clock in [Virtual, Real] {
            for external in [false, true] {
                for next in [None, Some(1.0)] {
                    assert_eq!(plan_idle(UntilBlocked, clock, 0.0, next, external), Return);
                    assert_eq!(plan_idle(Step, clock, 0.0, next, external), Return);
                }
            }
        }
    }

    #[test]
    fn virtual_clock_jumps_only_when_nothing_external() {
        assert_eq!(plan_idle(Forever, Virtual, 1.0, Some(5.0), false), JumpTo(5.0));
        assert_eq!(plan_idle(Forever, Virtual, 1.0, Some(5.0), true), WaitReal(Some(4.0)));
        assert_eq!(plan_idle(Forever, Virtual, 1.0, None, true), WaitReal(None));
        assert_eq!(plan_idle(Forever, Virtual, 1.0, None, false), Deadlock);
        assert_eq!(plan_idle(Forever, Virtual, 1.0, Some(f64::INFINITY), false), Deadlock);
    }

    #[test]
    fn until_idle_jumps_and_waits_like_forever_but_returns_when_nothing_is_left() {
        assert_eq!(plan_idle(UntilIdle, Virtual, 1.0, Some(5.0), false), JumpTo(5.0));
        assert_eq!(plan_idle(UntilIdle, Virtual, 1.0, Some(5.0), true), WaitReal(Some(4.0)));
        assert_eq!(plan_idle(UntilIdle, Virtual, 1.0, None, true), WaitReal(None));
        assert_eq!(plan_idle(UntilIdle, Virtual, 1.0, None, false), Return);
        assert_eq!(plan_idle(UntilIdle, Real, 1.0, None, false), Return);
        assert_eq!(plan_idle(UntilIdle, Real, 1.0, Some(2.0), false), WaitReal(Some(1.0)));
    }

    #[test]
    fn real_clock_waits_like_stock() {
        assert_eq!(plan_idle(Forever, Real, 1.0, Some(0.5), false), WaitReal(Some(0.0)));
        assert_eq!(plan_idle(Forever, Real, 1.0, None, true), WaitReal(None));
        assert_eq!(plan_idle(Forever, Real, 1.0, None, false), Deadlock);
    }
}
