//! The loop turn (`_run_once`) and the idle turn: gathering the facts, asking the core's
//! [`quiesce_core::decide`], and carrying out its answer.
//!
//! Python answers two hooks here: `_q_outside()` (what outside the loop is in flight and in
//! what state: sockets classified as in-process or external, threads as running, parked or
//! waiting; only called when something outside could exist) and `_q_select(timeout)` (poll or
//! wait in the selector and process the events). A failure the core decides on goes to
//! `_q_fail(kind, when)`, which raises `Deadlock` or `BudgetExceeded` with the report.

use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Instant;

use pyo3::intern;
use pyo3::prelude::*;

use quiesce_core::{decide, Action, ClockKind, DeadlockKind, Facts, Outside, Pace, RunMode};

use crate::core_loop::{CoreLoop, State};
use crate::handle::Handle;

/// Stock asyncio's cap on one selector wait (`base_events.MAXIMUM_SELECT_TIMEOUT`).
const MAX_SELECT_TIMEOUT: f64 = 24.0 * 3600.0;

/// What `_q_outside()` reports: the outside activity Python can see (jobs are counted here).
#[pyclass(module = "quiesce._core", name = "OutsideFacts", frozen, get_all)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OutsideFacts {
    /// Other threads that are running or in a timed wait.
    pub running_threads: u32,
    /// Threads blocked indefinitely on outside I/O (a socket, a pipe, a signal, a process).
    pub waiting_threads: u32,
    /// Threads parked on a lock, condition or queue of this process.
    pub parked_threads: u32,
    /// Watched sockets and pipes with a peer outside this process (or unknown), and signal
    /// handlers.
    pub external_io: u32,
    /// Watched in-process sockets and pipes with nothing in flight.
    pub idle_internal: u32,
    /// Whether background tasks (`quiesce.background`) are still pending.
    pub background: bool,
    /// With background tasks: the earliest timer that is not theirs.
    pub next_foreground: Option<f64>,
}

#[pymethods]
impl OutsideFacts {
    #[new]
    #[pyo3(signature = (*, running_threads = 0, waiting_threads = 0, parked_threads = 0, external_io = 0, idle_internal = 0, background = false, next_foreground = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        running_threads: u32,
        waiting_threads: u32,
        parked_threads: u32,
        external_io: u32,
        idle_internal: u32,
        background: bool,
        next_foreground: Option<f64>,
    ) -> Self {
        Self {
            running_threads,
            waiting_threads,
            parked_threads,
            external_io,
            idle_internal,
            background,
            next_foreground,
        }
    }

    fn __repr__(&self) -> String {
        format!("{self:?}")
    }
}

/// Real seconds on a monotonic clock, for the idle bookkeeping (how long nothing has run, how
/// long a wait took): only differences matter, so Rust's clock serves, without a call into
/// Python on every idle turn.
fn real_seconds() -> f64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// Whether this interpreter has another thread than the running one: only then must the hook
/// look at threads. A walk of the interpreter's thread states (two pointer reads), where
/// `threading.active_count()` would cost a call into Python on every idle turn.
#[cfg(not(feature = "abi3"))]
fn other_threads(_py: Python<'_>) -> PyResult<bool> {
    // SAFETY: the GIL is held (`_py`), and a thread state is added to or removed from the
    // interpreter's list only by a thread holding the GIL (the build declares it needs one), so
    // the list cannot change while these two pointers are read; neither is dereferenced here.
    let second = unsafe {
        let head = pyo3::ffi::PyInterpreterState_ThreadHead(pyo3::ffi::PyInterpreterState_Get());
        !head.is_null() && !pyo3::ffi::PyThreadState_Next(head).is_null()
    };
    Ok(second)
}

/// `threading.active_count() > 1` (the thread-state list is outside the limited API).
#[cfg(feature = "abi3")]
fn other_threads(py: Python<'_>) -> PyResult<bool> {
    static ACTIVE_COUNT: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
    let active_count = ACTIVE_COUNT
        .get_or_try_init(py, || Ok::<_, PyErr>(py.import("threading")?.getattr("active_count")?.unbind()))?;
    Ok(active_count.bind(py).call0()?.extract::<usize>()? > 1)
}

/// Moves the virtual clock so that the loop time goes from `now` to `target`. With a replaced
/// `time`, the loop time is not the core's: the core's clock moves by the same amount.
fn move_loop_time(state: &mut State, replaced: bool, now: f64, target: f64) {
    if replaced {
        let core_now = state.scheduler.virtual_now();
        state.scheduler.move_clock_to(core_now + (target - now));
    } else {
        state.scheduler.move_clock_to(target);
    }
}

impl CoreLoop {
    /// One turn: poll I/O (or, if nothing is runnable, carry out the idle decision), release the
    /// due timers, then run the callbacks that were ready at that point (one, in step mode).
    pub(crate) fn run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let mode = this.with(py, |s| s.mode)?;
        let (fds, signals) = this.watched(py)?;
        if fds > 0 || signals {
            slf.call_method1(intern!(py, "_q_select"), (0.0f64,))?;
        }
        let replaced = this.time_replaced.load(Ordering::Relaxed);
        let mut now = this.loop_time(slf)?;
        let (has_ready, due, timer_pending) = this.with(py, |s| {
            (!s.scheduler.ready().is_empty(), s.has_due(now, replaced), s.scheduler.next_deadline().is_some())
        })?;
        if !this.stopping.load(Ordering::Relaxed) {
            if has_ready || due {
                // A loop that never blocks still sees time pass on a real clock: a busy streak
                // earns time towards the timer pending (none pending, nothing to earn towards).
                if timer_pending && mode.waits_when_idle() && !replaced && !this.is_real_clock() {
                    let reached = this.with(py, |s| {
                        let next = s.scheduler.next_deadline();
                        let reached = s.idle.busy_turn(s.turn_time, now, next);
                        if let Some(when) = reached {
                            s.scheduler.move_clock_to(when);
                        }
                        reached
                    })?;
                    if let Some(when) = reached {
                        now = when;
                    }
                }
            } else {
                this.idle_turn(slf, mode, now)?;
                // The idle turn may have waited or moved the clock.
                now = this.loop_time(slf)?;
            }
        }
        let todo = this.with(py, |s| {
            s.release_due(now, replaced);
            s.scheduler.ready().len()
        })?;
        let mut remaining = if mode == RunMode::Step { 1 } else { todo };
        let mut popped = 0;
        while remaining > 0 && popped < todo {
            let (entry, over_budget) = this.with(py, |s| {
                if s.max_steps.is_some_and(|max| s.ran >= max) {
                    (None, true)
                } else {
                    // What this entry schedules while it runs belongs to its step.
                    s.scheduler.begin_step();
                    (s.scheduler.pop_ready(), false)
                }
            })?;
            if over_budget {
                // Raises, unless everything left is cancelled (then it is dropped).
                slf.call_method0(intern!(py, "_q_budget_exceeded"))?;
                break;
            }
            let Some(entry) = entry else { break };
            popped += 1;
            if this.trace.load(Ordering::Relaxed) {
                slf.call_method1(intern!(py, "_q_trace"), (entry.object(py),))?;
            }
            if CoreLoop::dispatch(py, &entry.0)? {
                remaining -= 1;
                this.with(py, |s| {
                    s.ran += 1;
                    s.total_ran += 1;
                })?;
            }
        }
        if mode == RunMode::Step {
            this.stopping.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Whether outside activity that only Python can see might exist (so `_q_outside` must be
    /// asked): watched descriptors, signal handlers, background tasks, other threads.
    fn maybe_outside(&self, py: Python<'_>) -> PyResult<bool> {
        let (fds, signals) = self.watched(py)?;
        Ok(fds > 0 || signals || self.has_background.load(Ordering::Relaxed) || other_threads(py)?)
    }

    /// Everything `decide` needs, at loop time `now`.
    fn facts(&self, slf: &Bound<'_, Self>, mode: RunMode, now: f64) -> PyResult<Facts> {
        let py = slf.py();
        let seen = if mode.waits_when_idle() && self.maybe_outside(py)? {
            Some(slf.call_method0(intern!(py, "_q_outside"))?.cast_into::<OutsideFacts>()?.get().to_owned())
        } else {
            None
        };
        if seen.is_some_and(|seen| !seen.background) {
            self.has_background.store(false, Ordering::Relaxed);
        }
        let real_now = real_seconds();
        let replaced = self.time_replaced.load(Ordering::Relaxed);
        let idle_waiters = self.idle_waiters.load(Ordering::Relaxed);
        // Read after the threads were looked at: one that posted work and exited since is seen
        // here as runnable work, not missed.
        self.with(py, |s| {
            let next_timer = s.scheduler.next_deadline();
            let jobs = u32::try_from(s.executor_jobs).unwrap_or(u32::MAX);
            let (outside, next_foreground) = match seen {
                Some(seen) => (
                    Outside {
                        jobs,
                        running_threads: seen.running_threads,
                        external_io: seen.external_io,
                        waiting_threads: seen.waiting_threads,
                        parked_threads: seen.parked_threads,
                        idle_internal: seen.idle_internal,
                    },
                    if seen.background { seen.next_foreground } else { next_timer },
                ),
                None => (Outside { jobs, ..Outside::NONE }, next_timer),
            };
            Facts {
                mode,
                clock: s.scheduler.clock_kind(),
                now,
                runnable: !s.scheduler.ready().is_empty() || s.has_due(now, replaced),
                idle_waiters,
                next_timer,
                next_foreground,
                outside,
                stalled: s.idle.stalled(real_now, s.total_ran),
                idle_looks: s.idle.looks(),
                watchdog: s.watchdog,
                io_grace: s.io_grace,
                time_limit: s.time_limit,
                clock_follows_jumps: !s.replaced_ignores_jumps,
            }
        })
    }

    /// A turn with nothing runnable: decide, and do what the core says.
    fn idle_turn(&self, slf: &Bound<'_, Self>, mode: RunMode, now: f64) -> PyResult<()> {
        let py = slf.py();
        let facts = self.facts(slf, mode, now)?;
        let action = decide(&facts);
        self.with(py, |s| s.idle.end_streak())?;
        match action {
            Action::Run => {}
            Action::WakeIdleWaiters => {
                self.idle_waiters.store(false, Ordering::Relaxed);
                slf.call_method0(intern!(py, "_q_wake_idle_waiters"))?;
            }
            Action::Return => self.stopping.store(true, Ordering::Relaxed),
            Action::JumpTo(when) => self.jump_to(slf, mode, now, when)?,
            Action::Wait { timeout, pace } => self.wait(slf, now, timeout, pace)?,
            Action::OverBudget(when) => {
                slf.call_method1(intern!(py, "_q_fail"), ("over_time", Some(when)))?;
            }
            Action::PotentialDeadlock => {
                self.with(py, |s| s.idle.reset_stall())?;
                slf.call_method1(intern!(py, "_q_fail"), ("potential", None::<f64>))?;
            }
            Action::Deadlock(kind) => {
                let kind = match kind {
                    DeadlockKind::NothingLeft => "deadlock",
                    DeadlockKind::OnlyBackgroundTimers => "background",
                };
                slf.call_method1(intern!(py, "_q_fail"), (kind, None::<f64>))?;
            }
        }
        Ok(())
    }

    fn jump_to(&self, slf: &Bound<'_, Self>, mode: RunMode, now: f64, when: f64) -> PyResult<()> {
        let py = slf.py();
        let replaced = self.time_replaced.load(Ordering::Relaxed);
        self.with(py, |s| {
            move_loop_time(s, replaced, now, when);
            match mode {
                // Each instant an advance stops at settles within its own budget.
                RunMode::Advance { .. } => s.ran = 0,
                _ => s.idle.jumped(),
            }
        })?;
        if replaced && self.loop_time(slf)? < when {
            // The replaced clock ignores the loop's: jumping again would never reach the timer.
            self.with(py, |s| s.replaced_ignores_jumps = true)?;
        }
        Ok(())
    }

    fn wait(&self, slf: &Bound<'_, Self>, now: f64, timeout: Option<f64>, pace: Pace) -> PyResult<()> {
        let py = slf.py();
        let timeout = timeout.map_or(MAX_SELECT_TIMEOUT, |timeout| timeout.min(MAX_SELECT_TIMEOUT));
        let started = real_seconds();
        slf.call_method1(intern!(py, "_q_select"), (timeout,))?;
        let waited = real_seconds() - started;
        if self.with(py, |s| s.scheduler.clock_kind())? == ClockKind::Virtual {
            let replaced = self.time_replaced.load(Ordering::Relaxed);
            self.with(py, |s| {
                if let Some(target) = s.idle.waited(pace, now, waited) {
                    move_loop_time(s, replaced, now, target);
                }
            })?;
        }
        Ok(())
    }

    /// Runs one entry of the ready queue; returns whether it ran (it was not cancelled).
    pub(crate) fn dispatch(py: Python<'_>, object: &Py<PyAny>) -> PyResult<bool> {
        let object = object.bind(py);
        if let Ok(handle) = object.cast::<Handle>() {
            if handle.get().is_cancelled() {
                return Ok(false);
            }
            Handle::run(handle)?;
        } else {
            if object.getattr(intern!(py, "_cancelled"))?.is_truthy()? {
                return Ok(false);
            }
            object.call_method0(intern!(py, "_run"))?;
        }
        Ok(true)
    }
}
