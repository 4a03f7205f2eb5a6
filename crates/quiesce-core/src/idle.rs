//! The clock decision: what the loop does on a turn where nothing is runnable.
//!
//! This is the only place that decides it. The binding gathers the [`Facts`] (the run mode,
//! the clock, the next timers, what outside the loop is still in flight and in what state,
//! how long nothing has run) and carries out the [`Action`] that [`decide`] returns: run, wake
//! the `wait_all_tasks_blocked()` callers, hand control back, jump the virtual clock, wait in
//! real time (with the virtual clock held still or following real time), or fail with a budget
//! overrun, a potential deadlock or a deadlock. [`IdleState`] keeps the little state the
//! decision needs between turns (the watchdog's count, a busy loop's credit) and the figures
//! reports show.
//!
//! The rules, in the order they apply:
//! 1. Something runnable runs; `wait_all_tasks_blocked()` callers wake before anything else.
//! 2. `run_until_blocked()` and `step()` never wait and never move the clock; `advance()`
//!    moves it from timer to timer up to its target and never waits.
//! 3. While outside work that will finish on its own is in flight (an executor job, a running
//!    child process, a thread that is running or in a timed wait, a socket or pipe whose peer
//!    is outside this process, a signal handler), the loop waits for it and the virtual clock
//!    follows real time, up to the next timer: a timeout around outside work fires after its
//!    real duration, however often the wait is cut short.
//! 4. Otherwise a pending timer is jumped to: in-process sockets with nothing in flight and
//!    threads parked on a lock of this process can never make anything runnable first. (Parked
//!    threads are believed on a second look, [`PARKED_SETTLE`] later: one the loop just woke
//!    can still read as parked for a moment.)
//! 5. Otherwise only threads blocked on outside I/O could still help: the loop waits for them,
//!    up to the watchdog. The watchdog never fires while a foreground timer is pending.
//! 6. Otherwise nothing can ever run again: a deadlock (`run_until_idle` returns instead).
//!
//! [`table`] renders these rules for the README from [`decide`] itself, so the two cannot
//! drift apart (a test compares them).

use crate::clock::ClockKind;

/// How the loop was asked to run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RunMode {
    /// `run_forever` / `run_until_complete`: keep going until stopped; a wait that can never
    /// end is a deadlock.
    Forever,
    /// `run_until_idle`: like `Forever`, but return once nothing but background tasks' timers
    /// is left.
    UntilIdle,
    /// `run_until_blocked`: return as soon as nothing can run at this instant.
    UntilBlocked,
    /// `step`: run at most one callback.
    Step,
    /// `advance`: fire every timer due up to `target`, settling at each instant, and end at
    /// exactly `target`. Never waits for outside activity.
    Advance {
        /// The loop time the clock ends at.
        target: f64,
    },
}

impl RunMode {
    /// Whether an idle turn may wait for outside activity or report a deadlock (rather than
    /// return at once).
    pub fn waits_when_idle(self) -> bool {
        matches!(self, RunMode::Forever | RunMode::UntilIdle)
    }
}

/// What outside the loop could still make a callback runnable, by what it means for the clock.
/// Counts; zero means none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outside {
    /// Executor jobs in flight and child processes still running: work that finishes on its own
    /// at a real-time instant. Holds the virtual clock at real pace.
    pub jobs: u32,
    /// Other threads that are running or in a timed wait (`time.sleep`, `Event.wait(5)`): they
    /// may call back on their own. Hold the virtual clock at real pace.
    pub running_threads: u32,
    /// Watched sockets and pipes whose peer is outside this process (or cannot be told), and
    /// signal handlers. Hold the virtual clock at real pace, unless the loop has an I/O grace
    /// period and they have been quiet for that long.
    pub external_io: u32,
    /// Other threads blocked indefinitely on a socket, a pipe, a signal or another process:
    /// only something from outside can wake them. They do not hold the clock.
    pub waiting_threads: u32,
    /// Other threads parked on a lock, condition or queue of this process with no timeout: only
    /// another thread of this process can wake them. They do not hold the clock and cannot end
    /// a deadlock.
    pub parked_threads: u32,
    /// Watched sockets and pipes whose peer is this process (listening sockets, connections to a
    /// server of this loop, socketpairs), with nothing in flight. They do not hold the clock
    /// and cannot end a deadlock.
    pub idle_internal: u32,
}

impl Outside {
    /// Nothing outside the loop at all.
    pub const NONE: Outside = Outside {
        jobs: 0,
        running_threads: 0,
        external_io: 0,
        waiting_threads: 0,
        parked_threads: 0,
        idle_internal: 0,
    };
}

/// Everything [`decide`] looks at.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Facts {
    /// How the loop was asked to run.
    pub mode: RunMode,
    /// Which clock the loop runs on.
    pub clock: ClockKind,
    /// The loop time (`loop.time()`, replaced or not).
    pub now: f64,
    /// A callback is ready or a timer is due now.
    pub runnable: bool,
    /// Some coroutine awaits `quiesce.wait_all_tasks_blocked()`.
    pub idle_waiters: bool,
    /// The earliest pending timer deadline, of any task.
    pub next_timer: Option<f64>,
    /// The earliest pending timer deadline that is not a background task's.
    pub next_foreground: Option<f64>,
    /// What is in flight outside the loop.
    pub outside: Outside,
    /// Real seconds since a callback last ran, counted from the first idle turn after it.
    pub stalled: f64,
    /// Idle turns in a row with nothing run, this one included (see [`IdleState::stalled`]).
    pub idle_looks: u32,
    /// Real seconds to wait for outside activity alone before a potential deadlock (`None`:
    /// forever).
    pub watchdog: Option<f64>,
    /// Real seconds of quiet after which external sockets stop holding the virtual clock
    /// (`None`: they always hold it).
    pub io_grace: Option<f64>,
    /// A loop time the virtual clock may not pass (`run_until_idle`'s `max_time`).
    pub time_limit: Option<f64>,
    /// Moving the virtual clock moves `loop.time()`. False when `loop.time` is replaced by a
    /// clock that ignores the loop's (a mock returning a fixed value).
    pub clock_follows_jumps: bool,
}

impl Facts {
    /// A virtual-clock loop in `mode` at time 0 with nothing scheduled and nothing outside: the
    /// base the tests and the table vary.
    pub fn idle(mode: RunMode) -> Self {
        Facts {
            mode,
            clock: ClockKind::Virtual,
            now: 0.0,
            runnable: false,
            idle_waiters: false,
            next_timer: None,
            next_foreground: None,
            outside: Outside::NONE,
            stalled: 0.0,
            idle_looks: 2,
            watchdog: Some(60.0),
            io_grace: None,
            time_limit: None,
            clock_follows_jumps: true,
        }
    }
}

/// How the virtual clock behaves while the loop waits in real time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// The virtual clock holds still (or, on the real clock, moves by itself).
    Hold,
    /// The virtual clock advances by the real time waited, up to `until` (the next timer, or a
    /// time budget), so time flows at real pace.
    Real {
        /// The loop time the clock may reach at most.
        until: Option<f64>,
    },
}

/// Why nothing can ever run again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadlockKind {
    /// No timer, nothing outside the loop that could make a callback runnable.
    NothingLeft,
    /// The only pending timers belong to background tasks, which never count.
    OnlyBackgroundTimers,
}

/// What to do on a turn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action {
    /// Something is runnable: run it.
    Run,
    /// Every other task is blocked: resume the `wait_all_tasks_blocked()` callers.
    WakeIdleWaiters,
    /// Blocked at this instant (or, in `run_until_idle`, nothing left): hand control back.
    Return,
    /// Move the virtual clock to this loop time; nothing can happen before it.
    JumpTo(f64),
    /// Wait in real time for outside activity, at most `timeout` seconds (`None`: no limit).
    Wait {
        /// Real seconds to wait at most.
        timeout: Option<f64>,
        /// What the virtual clock does meanwhile.
        pace: Pace,
    },
    /// Moving the clock to this loop time would pass the time limit.
    OverBudget(f64),
    /// Only outside activity could help, and nothing has run for the watchdog's time.
    PotentialDeadlock,
    /// Nothing can ever run again.
    Deadlock(DeadlockKind),
}

/// How often, at most, to look again at threads that hold the clock or are waited for: a
/// thread that stops running, or exits, does not wake the selector.
pub const THREAD_RECHECK: f64 = 0.05;

/// How long to let other threads run before a deadlock that parked threads are part of is
/// believed: a thread the loop just woke can read as parked for a moment (it waits for a lock
/// or the GIL on its way out of a wait) and then call back.
pub const PARKED_SETTLE: f64 = 0.0005;

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Decides a turn. See the module documentation for the rules.
pub fn decide(facts: &Facts) -> Action {
    if facts.runnable {
        return Action::Run;
    }
    if facts.idle_waiters {
        return Action::WakeIdleWaiters;
    }
    // A timer at +inf never fires: it cannot end a wait or be jumped to.
    let next = facts.next_timer.filter(|when| when.is_finite());
    let foreground = facts.next_foreground.filter(|when| when.is_finite());
    let now = facts.now;
    match facts.mode {
        RunMode::UntilBlocked | RunMode::Step => return Action::Return,
        RunMode::Advance { target } => {
            return match next {
                Some(when) if when <= target => Action::JumpTo(when),
                _ if now < target => Action::JumpTo(target),
                _ => Action::Return,
            };
        }
        RunMode::Forever | RunMode::UntilIdle => {}
    }
    let virtual_clock = facts.clock == ClockKind::Virtual;
    let outside = facts.outside;
    let grace_over = facts.io_grace.is_some_and(|grace| facts.stalled >= grace);
    let external_holds = outside.external_io > 0 && !grace_over;
    let holds = outside.jobs > 0 || outside.running_threads > 0 || external_holds;
    // Threads that can stop running or exit without waking the selector are looked at again.
    let thread_recheck = (outside.running_threads > 0 || outside.waiting_threads > 0).then_some(THREAD_RECHECK);
    let watchdog_left = facts.watchdog.map(|watchdog| (watchdog - facts.stalled).max(0.0));
    // On the real clock every timer fires when its time comes, whatever else happens.
    let until_timer = next.map(|when| (when - now).max(0.0));

    if holds {
        let mut timeout = until_timer;
        let mut until = next;
        if let (true, Some(limit)) = (virtual_clock, facts.time_limit) {
            if now >= limit {
                if let Some(when) = next.filter(|when| *when > limit) {
                    return Action::OverBudget(when);
                }
            }
            until = min_opt(until, Some(limit));
            timeout = min_opt(timeout, Some((limit - now).max(0.0)));
        }
        if foreground.is_none() {
            // Nothing in the loop will ever make progress by itself: the watchdog counts.
            if watchdog_left == Some(0.0) {
                return Action::PotentialDeadlock;
            }
            timeout = min_opt(timeout, watchdog_left);
        }
        timeout = min_opt(timeout, thread_recheck);
        if external_holds {
            if let Some(grace) = facts.io_grace {
                timeout = min_opt(timeout, Some((grace - facts.stalled).max(0.0)));
            }
        }
        let pace =
            if virtual_clock && (until.is_none() || until > Some(now)) { Pace::Real { until } } else { Pace::Hold };
        return Action::Wait { timeout, pace };
    }

    // Parked threads are believed only on a second look, after they had a moment to run: one
    // the loop just woke can still read as parked.
    let settle = outside.parked_threads > 0 && facts.idle_looks < 2;
    if let (Some(_), Some(when)) = (foreground, next) {
        if !virtual_clock {
            return Action::Wait { timeout: until_timer, pace: Pace::Hold };
        }
        if facts.time_limit.is_some_and(|limit| when > limit) {
            return Action::OverBudget(when);
        }
        if settle {
            return Action::Wait { timeout: Some(PARKED_SETTLE), pace: Pace::Hold };
        }
        if facts.clock_follows_jumps {
            return Action::JumpTo(when);
        }
        // `loop.time` is replaced by a clock that does not follow the loop's: wait for it in
        // real time, as stock asyncio would, but not forever.
        if watchdog_left == Some(0.0) {
            return Action::PotentialDeadlock;
        }
        return Action::Wait { timeout: min_opt(until_timer, watchdog_left), pace: Pace::Hold };
    }

    // No foreground timer, nothing holding the clock.
    let wakers = outside.waiting_threads > 0 || (grace_over && outside.external_io > 0);
    if facts.mode == RunMode::UntilIdle {
        return Action::Return;
    }
    if wakers {
        if watchdog_left == Some(0.0) {
            return Action::PotentialDeadlock;
        }
        let mut timeout = min_opt(watchdog_left, thread_recheck);
        if !virtual_clock {
            timeout = min_opt(timeout, until_timer);
        }
        return Action::Wait { timeout, pace: Pace::Hold };
    }
    if settle {
        return Action::Wait { timeout: Some(PARKED_SETTLE), pace: Pace::Hold };
    }
    Action::Deadlock(if next.is_some() { DeadlockKind::OnlyBackgroundTimers } else { DeadlockKind::NothingLeft })
}

/// What the decision keeps between turns, and the clock figures reports show.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdleState {
    /// Virtual seconds a busy streak has earned (see [`IdleState::busy_turn`]).
    busy_credit: f64,
    /// Real time of the first idle look after the last callback ran.
    stall_since: Option<f64>,
    /// Callbacks run (in all) at that look.
    stall_ran: u64,
    /// Idle looks since then, that one included.
    looks: u32,
    /// Automatic jumps of the virtual clock to a timer.
    pub jumps: u64,
    /// Of those, timers a busy loop reached (see [`IdleState::busy_turn`]).
    pub busy_jumps: u64,
    /// Virtual seconds the clock followed real time while the loop waited for outside activity.
    pub real_pace: f64,
}

impl IdleState {
    /// A fresh state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Real seconds nothing has run, given the real time now and the callbacks run in all; the
    /// count starts at the first look after a callback ran.
    pub fn stalled(&mut self, real_now: f64, total_ran: u64) -> f64 {
        match self.stall_since {
            Some(since) if self.stall_ran == total_ran => {
                self.looks = self.looks.saturating_add(1);
                (real_now - since).max(0.0)
            }
            _ => {
                self.stall_since = Some(real_now);
                self.stall_ran = total_ran;
                self.looks = 1;
                0.0
            }
        }
    }

    /// Idle looks since a callback last ran, counted by [`IdleState::stalled`].
    pub fn looks(&self) -> u32 {
        self.looks
    }

    /// Starts the watchdog's count afresh (after a report, or a new drive).
    pub fn reset_stall(&mut self) {
        self.stall_since = None;
    }

    /// A turn found something runnable. On the virtual clock, a loop that never blocks would
    /// still see time pass on a real clock: each such turn earns `turn_time` virtual seconds,
    /// and once the streak has earned the time to the next timer, the clock moves there
    /// (returned). Counted in turns, so it stays deterministic. `turn_time` is `None` to turn
    /// this off; any idle turn ends the streak.
    pub fn busy_turn(&mut self, turn_time: Option<f64>, now: f64, next_timer: Option<f64>) -> Option<f64> {
        let turn_time = turn_time?;
        self.busy_credit += turn_time;
        let when = next_timer.filter(|when| when.is_finite() && *when > now)?;
        if when - now > self.busy_credit {
            return None;
        }
        self.busy_credit -= when - now;
        self.jumps += 1;
        self.busy_jumps += 1;
        Some(when)
    }

    /// An idle turn: a busy streak, if any, is over.
    pub fn end_streak(&mut self) {
        self.busy_credit = 0.0;
    }

    /// The loop jumped the clock to a timer.
    pub fn jumped(&mut self) {
        self.jumps += 1;
    }

    /// The loop waited `waited` real seconds with pace `pace` at loop time `now`: the loop time
    /// the virtual clock moves to, if it moves. Reaching `until` lands on it exactly, so a timer
    /// callback sees its own deadline.
    pub fn waited(&mut self, pace: Pace, now: f64, waited: f64) -> Option<f64> {
        let Pace::Real { until } = pace else { return None };
        let waited = waited.max(0.0);
        let target = match until {
            Some(until) if now + waited >= until => until,
            _ => now + waited,
        };
        if target <= now {
            return None;
        }
        self.real_pace += target - now;
        Some(target)
    }
}

/// One row of the README's clock table: a state, and what each way of running does in it.
pub struct TableRow {
    /// The state, in the README's words.
    pub state: &'static str,
    /// `run_until_complete` / `run_forever` on the virtual clock.
    pub run_until_complete: String,
    /// `run_until_idle()`.
    pub run_until_idle: String,
    /// `run_until_blocked()` and `step()`.
    pub run_until_blocked: String,
    /// `advance(s)`.
    pub advance: String,
    /// `run_until_complete` on the real clock.
    pub real_clock: String,
}

fn describe(action: Action, facts: &Facts) -> String {
    let real_clock = facts.clock == ClockKind::Real;
    match action {
        Action::Run => "runs it".into(),
        Action::WakeIdleWaiters => "wakes that coroutine".into(),
        Action::Return => "returns".into(),
        Action::JumpTo(when) if Some(when) == facts.next_timer => "jumps to the next timer".into(),
        Action::JumpTo(_) => "moves the clock to its target".into(),
        Action::Wait { pace: Pace::Real { until: Some(_) }, .. } => {
            "waits; the clock follows real time up to the next timer".into()
        }
        Action::Wait { pace: Pace::Real { until: None }, .. } => "waits; the clock follows real time".into(),
        Action::Wait { .. } if real_clock && facts.next_timer.is_some() => "waits for the next timer".into(),
        Action::Wait { .. } if real_clock => "waits".into(),
        Action::Wait { .. } => "waits; the clock holds still".into(),
        Action::OverBudget(_) => "`BudgetExceeded`".into(),
        Action::PotentialDeadlock => "`Deadlock` (\"potential deadlock\")".into(),
        Action::Deadlock(_) => "`Deadlock`".into(),
    }
}

/// What `decide` does with `facts`, in words; where the watchdog changes the answer, both
/// halves ("waits ...; after `watchdog` s, ...").
fn outcome(facts: Facts) -> String {
    let first = describe(decide(&facts), &facts);
    let late = Facts { stalled: facts.watchdog.unwrap_or(f64::INFINITY), ..facts };
    let later = describe(decide(&late), &late);
    if later == first {
        first
    } else {
        format!("{first}; after `watchdog` s with nothing run: {later}")
    }
}

fn with_timer(mut facts: Facts) -> Facts {
    facts.next_timer = Some(5.0);
    facts.next_foreground = Some(5.0);
    facts
}

fn with_outside(mode: RunMode, outside: Outside) -> Facts {
    Facts { outside, ..Facts::idle(mode) }
}

const IN_PROCESS: Outside = Outside { idle_internal: 2, parked_threads: 1, ..Outside::NONE };
const IN_FLIGHT: Outside = Outside { jobs: 1, ..Outside::NONE };
const EXTERNAL_IO: Outside = Outside { external_io: 1, ..Outside::NONE };

/// The README's clock table, rendered from [`decide`].
pub fn table() -> Vec<TableRow> {
    type Row = (&'static str, fn(RunMode) -> Facts);
    let rows: [Row; 12] = [
        ("a ready callback, or a timer due now", |mode| Facts { runnable: true, ..with_timer(Facts::idle(mode)) }),
        ("a coroutine in `wait_all_tasks_blocked()`, nothing else runnable", |mode| Facts {
            idle_waiters: true,
            ..with_timer(Facts::idle(mode))
        }),
        ("timers pending, nothing outside the loop", |mode| with_timer(Facts::idle(mode))),
        (
            "timers pending; in-process sockets with nothing in flight (a listening socket, a connection to a \
             server of this loop, a socketpair); threads parked on a lock, queue or condition of this process",
            |mode| with_timer(with_outside(mode, IN_PROCESS)),
        ),
        ("the same, with no timer pending", |mode| with_outside(mode, IN_PROCESS)),
        (
            "timers pending; an executor job, a running child process, or a thread that is running or in a \
             timed wait (`time.sleep`, `Event.wait(5)`)",
            |mode| with_timer(with_outside(mode, IN_FLIGHT)),
        ),
        ("the same, with no timer pending", |mode| with_outside(mode, IN_FLIGHT)),
        ("timers pending; a watched socket or pipe whose peer is outside this process, or a signal handler", |mode| {
            with_timer(with_outside(mode, EXTERNAL_IO))
        }),
        ("the same, with `io_grace=g` and nothing received for `g` s", |mode| Facts {
            io_grace: Some(0.05),
            stalled: 0.05,
            ..with_timer(with_outside(mode, EXTERNAL_IO))
        }),
        ("no timer; only threads blocked on a socket, pipe or signal (indefinitely)", |mode| {
            with_outside(mode, Outside { waiting_threads: 1, ..Outside::NONE })
        }),
        ("only background tasks' timers (`quiesce.background`)", |mode| Facts {
            next_timer: Some(5.0),
            ..Facts::idle(mode)
        }),
        ("nothing at all", Facts::idle),
    ];
    rows.into_iter()
        .map(|(state, build)| TableRow {
            state,
            run_until_complete: outcome(build(RunMode::Forever)),
            run_until_idle: outcome(build(RunMode::UntilIdle)),
            run_until_blocked: outcome(build(RunMode::UntilBlocked)),
            advance: outcome(build(RunMode::Advance { target: 10.0 })),
            real_clock: outcome(Facts { clock: ClockKind::Real, ..build(RunMode::Forever) }),
        })
        .collect()
}

/// [`table`] as a Markdown table.
pub fn table_markdown() -> String {
    let mut out = String::from(
        "| state | `run_until_complete` (virtual clock) | `run_until_idle()` | `run_until_blocked()`, `step()` | \
         `advance(s)` | `run_until_complete` (real clock) |\n|---|---|---|---|---|---|\n",
    );
    for row in table() {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            row.state, row.run_until_complete, row.run_until_idle, row.run_until_blocked, row.advance, row.real_clock
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ClockKind::{Real, Virtual};
    use RunMode::*;

    fn facts(mode: RunMode) -> Facts {
        Facts::idle(mode)
    }

    fn timers(mut f: Facts, next: f64, foreground: Option<f64>) -> Facts {
        f.next_timer = Some(next);
        f.next_foreground = foreground;
        f
    }

    fn outside(mut f: Facts, outside: Outside) -> Facts {
        f.outside = outside;
        f
    }

    const JOB: Outside = Outside { jobs: 1, ..Outside::NONE };
    const EXTERNAL: Outside = Outside { external_io: 1, ..Outside::NONE };
    const RUNNING: Outside = Outside { running_threads: 1, ..Outside::NONE };
    const WAITING: Outside = Outside { waiting_threads: 1, ..Outside::NONE };
    const INTERNAL: Outside = Outside { idle_internal: 3, parked_threads: 2, ..Outside::NONE };

    #[test]
    fn runnable_work_and_idle_waiters_come_first() {
        for mode in [Forever, UntilIdle, UntilBlocked, Step, Advance { target: 1.0 }] {
            let f = Facts { runnable: true, idle_waiters: true, ..facts(mode) };
            assert_eq!(decide(&f), Action::Run);
            let f = Facts { idle_waiters: true, ..outside(facts(mode), JOB) };
            assert_eq!(decide(&f), Action::WakeIdleWaiters);
        }
    }

    #[test]
    fn blocked_modes_never_wait_or_jump() {
        for clock in [Virtual, Real] {
            for out in [Outside::NONE, JOB, EXTERNAL, RUNNING, WAITING, INTERNAL] {
                for mode in [UntilBlocked, Step] {
                    let f = Facts { clock, ..outside(timers(facts(mode), 1.0, Some(1.0)), out) };
                    assert_eq!(decide(&f), Action::Return);
                    assert_eq!(decide(&Facts { clock, ..outside(facts(mode), out) }), Action::Return);
                }
            }
        }
    }

    #[test]
    fn advance_goes_from_timer_to_timer_then_to_its_target() {
        let f = Facts { now: 1.0, ..facts(Advance { target: 10.0 }) };
        assert_eq!(decide(&timers(f, 4.0, None)), Action::JumpTo(4.0));
        assert_eq!(decide(&outside(timers(f, 10.0, Some(10.0)), JOB)), Action::JumpTo(10.0));
        assert_eq!(decide(&timers(f, 11.0, Some(11.0))), Action::JumpTo(10.0));
        assert_eq!(decide(&f), Action::JumpTo(10.0));
        let at_target = Facts { now: 10.0, ..f };
        assert_eq!(decide(&timers(at_target, 11.0, Some(11.0))), Action::Return);
        assert_eq!(decide(&outside(at_target, EXTERNAL)), Action::Return);
    }

    #[test]
    fn timers_alone_are_jumped_to() {
        let f = Facts { now: 1.0, ..facts(Forever) };
        assert_eq!(decide(&timers(f, 5.0, Some(5.0))), Action::JumpTo(5.0));
        // A background timer earlier than the foreground one fires on the way.
        assert_eq!(decide(&timers(f, 2.0, Some(5.0))), Action::JumpTo(2.0));
        assert_eq!(decide(&timers(facts(UntilIdle), 5.0, Some(5.0))), Action::JumpTo(5.0));
    }

    #[test]
    fn in_process_sockets_and_parked_threads_do_not_hold_the_clock() {
        assert_eq!(decide(&outside(timers(facts(Forever), 30.0, Some(30.0)), INTERNAL)), Action::JumpTo(30.0));
        assert_eq!(decide(&outside(facts(Forever), INTERNAL)), Action::Deadlock(DeadlockKind::NothingLeft));
        assert_eq!(decide(&outside(facts(UntilIdle), INTERNAL)), Action::Return);
    }

    #[test]
    fn a_deadlock_with_parked_threads_is_believed_on_the_second_look() {
        let first = Facts { idle_looks: 1, ..outside(facts(Forever), INTERNAL) };
        assert_eq!(decide(&first), Action::Wait { timeout: Some(PARKED_SETTLE), pace: Pace::Hold });
        assert_eq!(decide(&Facts { idle_looks: 2, ..first }), Action::Deadlock(DeadlockKind::NothingLeft));
        // A jump over parked threads waits for the second look too (with the clock held).
        let jump = Facts { idle_looks: 1, ..outside(timers(facts(Forever), 30.0, Some(30.0)), INTERNAL) };
        assert_eq!(decide(&jump), Action::Wait { timeout: Some(PARKED_SETTLE), pace: Pace::Hold });
        assert_eq!(decide(&Facts { idle_looks: 2, ..jump }), Action::JumpTo(30.0));
        // Without parked threads there is nothing to wait for.
        let alone = Facts { idle_looks: 1, ..facts(Forever) };
        assert_eq!(decide(&alone), Action::Deadlock(DeadlockKind::NothingLeft));
    }

    #[test]
    fn outside_work_holds_the_clock_at_real_pace_up_to_the_next_timer() {
        for out in [JOB, EXTERNAL, RUNNING] {
            let f = outside(timers(Facts { now: 1.0, ..facts(Forever) }, 5.0, Some(5.0)), out);
            match decide(&f) {
                Action::Wait { timeout: Some(timeout), pace: Pace::Real { until: Some(5.0) } } => {
                    assert!(timeout <= 4.0, "{out:?}: {timeout}");
                }
                other => panic!("{out:?}: {other:?}"),
            }
        }
        // Threads are looked at again, since one that stops running does not wake the loop.
        let f = outside(timers(facts(Forever), 5.0, Some(5.0)), RUNNING);
        assert_eq!(decide(&f), Action::Wait { timeout: Some(THREAD_RECHECK), pace: Pace::Real { until: Some(5.0) } });
    }

    #[test]
    fn the_watchdog_never_fires_while_a_foreground_timer_is_pending() {
        for out in [JOB, EXTERNAL, RUNNING] {
            let f = Facts { stalled: 1e9, ..outside(timers(facts(Forever), 10.0, Some(10.0)), out) };
            assert!(matches!(decide(&f), Action::Wait { .. }), "{out:?}");
        }
        let f = Facts { stalled: 1e9, watchdog: Some(3.0), ..outside(timers(facts(Forever), 10.0, None), JOB) };
        assert_eq!(decide(&f), Action::PotentialDeadlock);
        let f = Facts { stalled: 1.0, watchdog: Some(3.0), ..outside(facts(Forever), JOB) };
        assert_eq!(decide(&f), Action::Wait { timeout: Some(2.0), pace: Pace::Real { until: None } });
        let f = Facts { stalled: 1e9, watchdog: None, ..outside(facts(Forever), JOB) };
        assert_eq!(decide(&f), Action::Wait { timeout: None, pace: Pace::Real { until: None } });
    }

    #[test]
    fn threads_blocked_on_outside_io_are_waited_for_up_to_the_watchdog() {
        let f = outside(facts(Forever), WAITING);
        assert_eq!(decide(&f), Action::Wait { timeout: Some(THREAD_RECHECK), pace: Pace::Hold });
        assert_eq!(decide(&Facts { stalled: 60.0, ..f }), Action::PotentialDeadlock);
        // They do not hold the clock: a timer is jumped to.
        assert_eq!(decide(&outside(timers(facts(Forever), 3600.0, Some(3600.0)), WAITING)), Action::JumpTo(3600.0));
        assert_eq!(decide(&outside(facts(UntilIdle), WAITING)), Action::Return);
    }

    #[test]
    fn an_io_grace_period_lets_quiet_external_sockets_go() {
        let f = Facts { io_grace: Some(0.05), ..outside(timers(facts(Forever), 5.0, Some(5.0)), EXTERNAL) };
        assert_eq!(decide(&f), Action::Wait { timeout: Some(0.05), pace: Pace::Real { until: Some(5.0) } });
        assert_eq!(decide(&Facts { stalled: 0.05, ..f }), Action::JumpTo(5.0));
        // Jobs hold the clock whatever the grace.
        let f = Facts { stalled: 1.0, ..outside(f, Outside { jobs: 1, ..EXTERNAL }) };
        assert!(matches!(decide(&f), Action::Wait { pace: Pace::Real { .. }, .. }));
        // A quiet external socket can still wake a loop with no timer: up to the watchdog.
        let f = Facts { io_grace: Some(0.05), stalled: 0.05, ..outside(facts(Forever), EXTERNAL) };
        assert!(matches!(decide(&f), Action::Wait { pace: Pace::Hold, .. }));
    }

    #[test]
    fn background_timers_alone_are_a_deadlock_but_end_run_until_idle() {
        let f = timers(facts(Forever), 5.0, None);
        assert_eq!(decide(&f), Action::Deadlock(DeadlockKind::OnlyBackgroundTimers));
        assert_eq!(decide(&timers(facts(UntilIdle), 5.0, None)), Action::Return);
        assert_eq!(decide(&Facts { clock: Real, ..f }), Action::Deadlock(DeadlockKind::OnlyBackgroundTimers));
        // With outside work in flight, time flows for every timer, background ones too.
        assert!(matches!(decide(&outside(f, JOB)), Action::Wait { pace: Pace::Real { until: Some(5.0) }, .. }));
    }

    #[test]
    fn nothing_at_all_is_a_deadlock() {
        assert_eq!(decide(&facts(Forever)), Action::Deadlock(DeadlockKind::NothingLeft));
        assert_eq!(decide(&Facts { clock: Real, ..facts(Forever) }), Action::Deadlock(DeadlockKind::NothingLeft));
        assert_eq!(decide(&facts(UntilIdle)), Action::Return);
        // A timer at +inf never fires.
        let f = timers(facts(Forever), f64::INFINITY, Some(f64::INFINITY));
        assert_eq!(decide(&f), Action::Deadlock(DeadlockKind::NothingLeft));
    }

    #[test]
    fn the_time_limit_stops_jumps_and_real_pace() {
        let f = Facts { time_limit: Some(10.0), ..facts(UntilIdle) };
        assert_eq!(decide(&timers(f, 11.0, Some(11.0))), Action::OverBudget(11.0));
        assert_eq!(decide(&timers(f, 10.0, Some(10.0))), Action::JumpTo(10.0));
        let held = outside(timers(f, 11.0, Some(11.0)), JOB);
        assert_eq!(decide(&held), Action::Wait { timeout: Some(10.0), pace: Pace::Real { until: Some(10.0) } });
        assert_eq!(decide(&Facts { now: 10.0, ..held }), Action::OverBudget(11.0));
    }

    #[test]
    fn real_clock_waits_like_stock() {
        let f = Facts { clock: Real, now: 1.0, ..facts(Forever) };
        assert_eq!(decide(&timers(f, 1.5, Some(1.5))), Action::Wait { timeout: Some(0.5), pace: Pace::Hold });
        assert_eq!(decide(&timers(f, 0.5, Some(0.5))), Action::Wait { timeout: Some(0.0), pace: Pace::Hold });
        assert_eq!(decide(&outside(f, JOB)), Action::Wait { timeout: Some(60.0), pace: Pace::Hold });
        assert_eq!(
            decide(&outside(timers(f, 2.0, Some(2.0)), JOB)),
            Action::Wait { timeout: Some(1.0), pace: Pace::Hold }
        );
    }

    #[test]
    fn a_replaced_clock_that_ignores_jumps_is_waited_for_not_jumped() {
        let f = Facts { clock_follows_jumps: false, ..timers(facts(Forever), 5.0, Some(5.0)) };
        assert_eq!(decide(&f), Action::Wait { timeout: Some(5.0), pace: Pace::Hold });
        assert_eq!(decide(&Facts { stalled: 60.0, ..f }), Action::PotentialDeadlock);
    }

    #[test]
    fn busy_turns_reach_a_timer_after_its_delay_in_turns() {
        let mut state = IdleState::new();
        let mut reached = None;
        for turn in 1..=200_000u32 {
            if let Some(when) = state.busy_turn(Some(1e-6), 0.0, Some(0.1)) {
                reached = Some((turn, when));
                break;
            }
        }
        let (turns, when) = reached.expect("reached");
        assert_eq!(when, 0.1);
        assert!((99_999..=100_001).contains(&turns), "{turns}");
        assert_eq!(state.busy_jumps, 1);
        // An idle turn ends the streak; without a turn time nothing is ever reached.
        state.end_streak();
        assert_eq!(state.busy_turn(Some(1e-6), 0.0, Some(1e-5)), None);
        assert_eq!(state.busy_turn(None, 0.0, Some(0.0)), None);
    }

    #[test]
    fn waiting_at_real_pace_lands_exactly_on_the_timer() {
        let mut state = IdleState::new();
        assert_eq!(state.waited(Pace::Real { until: Some(5.0) }, 1.0, 0.25), Some(1.25));
        assert_eq!(state.waited(Pace::Real { until: Some(5.0) }, 1.25, 10.0), Some(5.0));
        assert_eq!(state.waited(Pace::Hold, 5.0, 10.0), None);
        assert_eq!(state.waited(Pace::Real { until: None }, 5.0, 0.0), None);
        assert_eq!(state.real_pace, 4.0);
    }

    #[test]
    fn the_watchdog_counts_from_the_first_look_after_progress() {
        let mut state = IdleState::new();
        assert_eq!(state.stalled(100.0, 7), 0.0);
        assert_eq!(state.looks(), 1);
        assert_eq!(state.stalled(102.5, 7), 2.5);
        assert_eq!(state.looks(), 2);
        assert_eq!(state.stalled(103.0, 8), 0.0, "a callback ran: count again");
        assert_eq!(state.looks(), 1);
        assert_eq!(state.stalled(104.0, 8), 1.0);
        state.reset_stall();
        assert_eq!(state.stalled(105.0, 8), 0.0);
    }

    fn any_outside() -> impl Strategy<Value = Outside> {
        (0..3u32, 0..3u32, 0..3u32, 0..3u32, 0..3u32, 0..3u32).prop_map(
            |(jobs, running_threads, external_io, waiting_threads, parked_threads, idle_internal)| Outside {
                jobs,
                running_threads,
                external_io,
                waiting_threads,
                parked_threads,
                idle_internal,
            },
        )
    }

    fn any_facts() -> impl Strategy<Value = Facts> {
        let mode = prop_oneof![
            Just(Forever),
            Just(UntilIdle),
            Just(UntilBlocked),
            Just(Step),
            (0.0..100.0f64).prop_map(|target| Advance { target }),
        ];
        // Ahead of now (a timer at or before now is due: runnable).
        let timer = prop_oneof![Just(None), (1e-9..200.0f64).prop_map(Some), Just(Some(f64::INFINITY))];
        let limits = (
            0.0..100.0f64,
            prop_oneof![Just(None), (0.1..80.0f64).prop_map(Some)],
            prop_oneof![Just(None), (0.01..1.0f64).prop_map(Some)],
            prop_oneof![Just(None), (0.0..150.0f64).prop_map(Some)],
        );
        (
            mode,
            any::<bool>(),
            0.0..100.0f64,
            any::<bool>(),
            any::<bool>(),
            timer,
            any::<bool>(),
            any_outside(),
            limits,
            (any::<bool>(), 1..4u32),
        )
            .prop_map(
                |(
                    mode,
                    real,
                    now,
                    runnable,
                    idle_waiters,
                    next_timer,
                    background,
                    outside,
                    (stalled, watchdog, io_grace, time_limit),
                    (follows, idle_looks),
                )| Facts {
                    mode,
                    clock: if real { Real } else { Virtual },
                    now,
                    runnable,
                    idle_waiters,
                    next_timer: next_timer.map(|delay| now + delay),
                    next_foreground: if background { None } else { next_timer.map(|delay| now + delay) },
                    outside,
                    stalled,
                    idle_looks,
                    watchdog,
                    io_grace,
                    time_limit,
                    clock_follows_jumps: follows,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Invariants every decision keeps, whatever the facts.
        #[test]
        fn decisions_keep_their_promises(f in any_facts()) {
            let action = decide(&f);
            match action {
                Action::JumpTo(when) => {
                    // Only the virtual clock jumps, only forward, never past a timer.
                    let advancing = matches!(f.mode, Advance { .. });
                    prop_assert!(f.clock == Virtual || advancing);
                    prop_assert!(when > f.now || advancing);
                    if let Some(next) = f.next_timer.filter(|t| t.is_finite()) {
                        prop_assert!(when <= next.max(f.now));
                    }
                    if let Some(limit) = f.time_limit.filter(|_| f.mode.waits_when_idle()) {
                        prop_assert!(when <= limit);
                    }
                    // Outside work in flight is never jumped over.
                    if f.mode.waits_when_idle() {
                        prop_assert!(f.outside.jobs == 0 && f.outside.running_threads == 0);
                    }
                }
                Action::Wait { timeout, pace } => {
                    prop_assert!(f.mode.waits_when_idle(), "only waiting modes wait");
                    prop_assert!(timeout.is_none_or(|t| t >= 0.0));
                    if let Pace::Real { until } = pace {
                        prop_assert!(f.clock == Virtual);
                        if let Some(next) = f.next_timer.filter(|t| t.is_finite()) {
                            prop_assert!(until.is_some_and(|u| u <= next));
                        }
                    }
                    // A wait with no limit only without a watchdog, and with no timer that counts.
                    if timeout.is_none() {
                        prop_assert!(f.watchdog.is_none() && f.next_foreground.is_none_or(|t| !t.is_finite()));
                    }
                }
                Action::PotentialDeadlock => {
                    prop_assert!(f.mode.waits_when_idle());
                    prop_assert!(f.watchdog.is_some_and(|w| f.stalled >= w));
                    // Never while a foreground timer can make progress.
                    prop_assert!(
                        f.next_foreground.is_none_or(|t| !t.is_finite())
                            || (!f.clock_follows_jumps && f.clock == Virtual)
                    );
                }
                Action::Deadlock(_) => {
                    prop_assert!(f.mode == Forever);
                    prop_assert!(f.outside.jobs == 0 && f.outside.running_threads == 0 && f.outside.waiting_threads == 0);
                    prop_assert!(f.next_foreground.is_none_or(|t| !t.is_finite()));
                }
                Action::Run => prop_assert!(f.runnable),
                Action::WakeIdleWaiters => prop_assert!(f.idle_waiters && !f.runnable),
                Action::Return => prop_assert!(!f.runnable && !f.idle_waiters),
                Action::OverBudget(when) => prop_assert!(f.time_limit.is_some_and(|l| when > l)),
            }
        }
    }

    /// The README's table is this module's table: regenerate it with
    /// `QUIESCE_BLESS=1 cargo test -p quiesce-core readme_clock_table`.
    #[test]
    fn readme_clock_table_matches_the_decision() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let Ok(readme) = std::fs::read_to_string(path) else {
            return; // a packaged crate has no README beside it
        };
        let (start, end) = ("<!-- clock-table:start -->\n", "<!-- clock-table:end -->");
        let (Some(from), Some(to)) = (readme.find(start), readme.find(end)) else {
            panic!("README.md has no {start:?} ... {end:?} section");
        };
        let current = &readme[from + start.len()..to];
        let expected = table_markdown();
        if current != expected {
            if std::env::var_os("QUIESCE_BLESS").is_some() {
                let updated = format!("{}{}{}", &readme[..from + start.len()], expected, &readme[to..]);
                std::fs::write(path, updated).expect("write README.md");
                return;
            }
            panic!("README.md's clock table differs from idle::table(); run with QUIESCE_BLESS=1.\n{expected}");
        }
    }
}
