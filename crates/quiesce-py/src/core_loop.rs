//! `CoreLoop`: the scheduling half of `quiesce.Loop`.
//!
//! `quiesce.Loop` is `class Loop(CoreLoop, asyncio.SelectorEventLoop)`, so the methods here
//! come first in the MRO: the C `Task` finds our `call_soon` by name on every wake-up, and
//! `BaseEventLoop.run_forever` calls our `_run_once` once per turn. Everything that is not
//! scheduling (transports, sockets, subprocesses, signals, executors) stays asyncio's own.
//!
//! The turn itself, and the idle decision it carries out, live in [`crate::turn`]. Hooks into
//! the Python half (all prefixed `_q_`, all off the hot path): `_q_select` (selector I/O),
//! `_q_outside` (what is in flight outside the loop), `_q_fail` and `_q_budget_exceeded`
//! (raise the reports), `_q_wake_idle_waiters`, `_q_trace`, and `_q_callback_error` (format
//! and forward a callback's exception to the handler).

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pyclass_init::PyClassInitializer;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use quiesce_core::{
    next_bounded, validate_duration, ClockKind, DecisionKind, IdleState, Owner, Placement, Policy, RunMode, Schedule,
    Scheduler, TimerId, FRESH_OWNER, MAX_PCT_DEPTH,
};
use rustc_hash::FxHashMap;

use crate::gil_cell::GilCell;
use crate::handle::{Args, Handle, TimerHandle};

/// An entry of the ready queue or the timer queue: one of our `Handle`s (made by `call_soon`
/// or `call_at`), or an `asyncio.Handle` that asyncio's own code handed to `_add_callback`
/// (I/O callbacks). One pointer, told apart by type when it runs.
pub struct Ready(pub(crate) Py<PyAny>);

impl Ready {
    pub(crate) fn object(&self, py: Python<'_>) -> Py<PyAny> {
        self.0.clone_ref(py)
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.0)
    }
}

pub(crate) struct State {
    pub(crate) scheduler: Scheduler<Ready>,
    pub(crate) mode: RunMode,
    /// Callbacks run since the mode was last set (in `advance`, since the last instant).
    pub(crate) ran: u64,
    /// Callbacks run since the loop was made.
    pub(crate) total_ran: u64,
    /// Limit on `ran`, whatever the mode.
    pub(crate) max_steps: Option<u64>,
    /// A loop time the virtual clock may not pass in this drive (`run_until_idle`'s `max_time`).
    pub(crate) time_limit: Option<f64>,
    /// Executor jobs in flight and child processes still running (each counted once).
    pub(crate) executor_jobs: u64,
    /// What the idle decision keeps between turns.
    pub(crate) idle: IdleState,
    /// Real seconds to wait for outside activity alone (`Loop(watchdog=)`; None: forever).
    pub(crate) watchdog: Option<f64>,
    /// Real seconds of quiet after which external sockets stop holding the clock.
    pub(crate) io_grace: Option<f64>,
    /// Virtual seconds a turn of a loop that never blocks is worth (None: nothing).
    pub(crate) turn_time: Option<f64>,
    /// `loop.time` is replaced by a clock that did not follow a jump of the core's.
    pub(crate) replaced_ignores_jumps: bool,
    /// `time.get_clock_info('monotonic').resolution`: stock's slack for "due" on the real clock.
    clock_resolution: f64,
    /// The selector's fd -> key map (its length tells how many fds are watched).
    fd_map: Option<Py<PyDict>>,
    /// The loop's signal handlers (signals are outside activity).
    signal_handlers: Option<Py<PyDict>>,
    /// Under PCT, each task's owner id, by address. The entry holds the task, so an address
    /// cannot be reused by another task while it is listed; done tasks are purged.
    task_owners: FxHashMap<usize, (Py<PyAny>, Owner)>,
    /// Size of `task_owners` at which done tasks are next purged.
    purge_owners_at: usize,
    /// `{"loop": self}`, reused by `create_future` for the C `Future` (which only reads it).
    /// Dropped when the loop closes, so that a closed loop is not kept in a reference cycle.
    future_kwargs: Option<Py<PyDict>>,
}

impl State {
    /// Which timers are due at loop time `now`: on the virtual clock exactly those at or before
    /// it; on the real clock, or with a replaced `time`, stock's rule (before `now` plus the
    /// clock's resolution).
    fn due_deadline(&self, now: f64, replaced: bool) -> (f64, bool) {
        match self.scheduler.clock_kind() {
            ClockKind::Virtual if !replaced => (now, true),
            _ => (now + self.clock_resolution, false),
        }
    }

    pub(crate) fn has_due(&mut self, now: f64, replaced: bool) -> bool {
        let (deadline, inclusive) = self.due_deadline(now, replaced);
        self.scheduler.next_deadline().is_some_and(|when| if inclusive { when <= deadline } else { when < deadline })
    }

    pub(crate) fn release_due(&mut self, now: f64, replaced: bool) {
        let (deadline, inclusive) = self.due_deadline(now, replaced);
        self.scheduler.release_due(deadline, inclusive);
    }
}

/// Scheduling core of `quiesce.Loop`; not meant to be used on its own.
#[pyclass(module = "quiesce._core", name = "CoreLoop", frozen, subclass)]
pub struct CoreLoop {
    state: GilCell<State>,
    /// The loop is (about to be) blocked in the selector: other threads must wake it.
    waiting: AtomicBool,
    /// Some coroutine awaits `quiesce.wait_all_tasks_blocked()`: wake it instead of idling.
    pub(crate) idle_waiters: AtomicBool,
    /// Background tasks may be pending: the idle decision asks `_q_outside` for the earliest
    /// timer that is not theirs. Cleared by the idle turn once none is left.
    pub(crate) has_background: AtomicBool,
    /// `loop.time` is replaced (patched on the instance, or overridden or patched on the class):
    /// the loop time is whatever it returns, as in stock asyncio. Kept up to date by
    /// `__setattr__`/`__delattr__`.
    pub(crate) time_replaced: AtomicBool,
    /// `== !policy.is_fifo()`: entries carry their lane.
    uses_lanes: AtomicBool,
    /// The policy keeps per-task state (PCT): entries carry their task's owner id.
    uses_owners: AtomicBool,
    /// Call `_q_trace(entry)` before running each entry (the determinism self-check).
    pub(crate) trace: AtomicBool,
    /// `== (clock kind == Real)`.
    real_clock: AtomicBool,
    pub(crate) stopping: AtomicBool,
    closed: AtomicBool,
    debug: AtomicBool,
}

fn asyncio_type<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    expr: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || {
        let (module, attrs) = expr.split_once(':').expect("module:attr");
        let mut object = py.import(module)?.into_any();
        for attr in attrs.split('.') {
            object = object.getattr(attr)?;
        }
        Ok(object.unbind())
    })
    .map(|object| object.bind(py))
}

fn future_types(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static TYPES: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    TYPES
        .get_or_try_init(py, || {
            let futures = py.import("asyncio.futures")?;
            Ok(PyTuple::new(py, [futures.getattr("Future")?, futures.getattr("_PyFuture")?])?.into_any().unbind())
        })
        .map(|types| types.bind(py))
}

/// `asyncio.futures.__dict__` (where `BaseEventLoop.create_future` finds `Future`), and the C
/// `_asyncio.Future` if the accelerator module is there.
fn future_types_for_create(py: Python<'_>) -> PyResult<(&Bound<'_, PyDict>, Option<&Bound<'_, PyAny>>)> {
    static TYPES: PyOnceLock<(Py<PyDict>, Option<Py<PyAny>>)> = PyOnceLock::new();
    let (dict, c_future) = TYPES.get_or_try_init(py, || {
        let dict = py.import("asyncio.futures")?.dict().unbind();
        let c_future = match py.import("_asyncio") {
            Ok(module) => Some(module.getattr("Future")?.unbind()),
            Err(_) => None,
        };
        Ok::<_, PyErr>((dict, c_future))
    })?;
    Ok((dict.bind(py), c_future.as_ref().map(|c_future| c_future.bind(py))))
}

/// `dict[key]` for a str key, or None (also if looking it up raised: the caller falls back
/// to an attribute lookup, which raises again). `PyDict_GetItemWithError` borrows the item;
/// it is taken as a new reference at once, before any Python code can run.
#[cfg(not(feature = "abi3"))]
fn dict_item<'py>(dict: &Bound<'py, PyDict>, key: &Bound<'py, pyo3::types::PyString>) -> Option<Bound<'py, PyAny>> {
    let py = dict.py();
    // SAFETY: the GIL is held and both objects are live; the result is a borrowed reference
    // (or NULL, possibly with an exception set) that `from_borrowed_ptr_or_opt` increments.
    let item =
        unsafe { Bound::from_borrowed_ptr_or_opt(py, ffi::PyDict_GetItemWithError(dict.as_ptr(), key.as_ptr())) };
    if item.is_none() {
        // Discard a lookup error (the caller's fallback raises its own).
        drop(PyErr::take(py));
    }
    item
}

#[cfg(feature = "abi3")]
fn dict_item<'py>(dict: &Bound<'py, PyDict>, key: &Bound<'py, pyo3::types::PyString>) -> Option<Bound<'py, PyAny>> {
    dict.get_item(key).ok().flatten()
}

fn task_types(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static TYPES: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    TYPES
        .get_or_try_init(py, || {
            let tasks = py.import("asyncio.tasks")?;
            Ok(PyTuple::new(py, [tasks.getattr("Task")?, tasks.getattr("_PyTask")?])?.into_any().unbind())
        })
        .map(|types| types.bind(py))
}

/// Debug mode's record of where a handle was made, as stock's `Handle.__init__` takes it: the
/// stack of the code that called `call_soon` & co. (we run in no Python frame of our own).
fn source_traceback(py: Python<'_>) -> PyResult<Py<PyAny>> {
    static EXTRACT_STACK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let extract_stack = asyncio_type(py, &EXTRACT_STACK, "asyncio.format_helpers:extract_stack")?;
    let frame = py.import("sys")?.call_method1("_getframe", (0,))?;
    Ok(extract_stack.call1((frame,))?.unbind())
}

fn decode_schedule(text: &str) -> PyResult<Schedule> {
    Schedule::decode(text).map_err(|err| {
        PyValueError::new_err(format!(
            "not a quiesce schedule string ({err}): {text:?}; paste it as printed, e.g. 'q1-AwI'"
        ))
    })
}

/// The task a callback is bound to (a task's step or wake-up), if any.
fn bound_task<'py>(callback: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = callback.py();
    if is_plain_function(callback) {
        return Ok(None);
    }
    match callback.getattr(intern!(py, "__self__")) {
        Ok(owner) if owner.is_instance(task_types(py)?)? => Ok(Some(owner)),
        _ => Ok(None),
    }
}

/// Where an entry runs under a policy other than FIFO (see `quiesce_core::ready`): in the lane
/// of the future whose completion scheduled it, else of the task whose step it is, else in the
/// shared plain lane. The owner (used by PCT) is the task the entry will resume, if known.
fn placement_for(
    owners: Option<&CoreLoop>,
    callback: &Bound<'_, PyAny>,
    args: &Args,
    explicit_context: bool,
) -> PyResult<Placement> {
    let py = callback.py();
    // A future schedules its done-callbacks when it completes, each with the future as the one
    // argument and always with `context=`; a plain `call_soon(f, fut)` from user code has no
    // context and stays in the plain lane.
    if let (true, Some(first)) = (explicit_context, args.single()) {
        let first = first.bind(py);
        if first.is_instance(future_types(py)?)? && first.call_method0(intern!(py, "done"))?.is_truthy()? {
            let owner = match (owners, bound_task(callback)?) {
                (Some(owners), Some(task)) => owners.owner_of(&task)?,
                _ => FRESH_OWNER,
            };
            return Ok(Placement { lane: first.as_ptr() as u64, owner });
        }
    }
    match bound_task(callback)? {
        Some(task) => {
            let owner = match owners {
                Some(owners) => owners.owner_of(&task)?,
                None => FRESH_OWNER,
            };
            Ok(Placement { lane: task.as_ptr() as u64, owner })
        }
        None => Ok(Placement::PLAIN),
    }
}

#[cfg(not(feature = "abi3"))]
fn copy_current_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // SAFETY: the GIL is held; `PyContext_CopyCurrent` returns a new reference or NULL with an
    // exception set, and `from_owned_ptr_or_err` takes ownership of either.
    Ok(unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent())? }.unbind())
}

#[cfg(feature = "abi3")]
fn copy_current_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    static COPY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    Ok(asyncio_type(py, &COPY, "contextvars:copy_context")?.call0()?.unbind())
}

#[cfg(not(feature = "abi3"))]
fn is_context(object: &Bound<'_, PyAny>) -> PyResult<bool> {
    // SAFETY: `object` is a live object and the GIL is held.
    Ok(unsafe { ffi::PyContext_CheckExact(object.as_ptr()) } != 0)
}

#[cfg(feature = "abi3")]
fn is_context(object: &Bound<'_, PyAny>) -> PyResult<bool> {
    static CONTEXT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    object.is_instance(asyncio_type(object.py(), &CONTEXT, "contextvars:Context")?)
}

/// Plain Python functions have no `__self__`: skip the (failing, costly) attribute lookup.
#[cfg(not(feature = "abi3"))]
fn is_plain_function(callback: &Bound<'_, PyAny>) -> bool {
    // SAFETY: `callback` is a live object and the GIL is held.
    unsafe { ffi::PyFunction_Check(callback.as_ptr()) != 0 }
}

#[cfg(feature = "abi3")]
fn is_plain_function(_callback: &Bound<'_, PyAny>) -> bool {
    false
}

pub(crate) fn monotonic(py: Python<'_>) -> PyResult<f64> {
    static MONOTONIC: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    asyncio_type(py, &MONOTONIC, "time:monotonic")?.call0()?.extract()
}

fn check_when(value: f64, name: &str) -> PyResult<f64> {
    if value.is_nan() {
        return Err(PyValueError::new_err(format!("{name} must be a number of seconds, got NaN")));
    }
    Ok(value)
}

/// `object.__setattr__(obj, name, value)`, or `object.__delattr__(obj, name)` for `None`.
fn generic_setattr(
    obj: &Bound<'_, CoreLoop>,
    name: &Bound<'_, PyString>,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let value = value.map_or(std::ptr::null_mut(), |value| value.as_ptr());
    // SAFETY: the GIL is held and `obj` and `name` are live objects; `value` is a live object or
    // NULL, which `PyObject_GenericSetAttr` documents as a deletion. It only borrows them.
    let status = unsafe { ffi::PyObject_GenericSetAttr(obj.as_ptr(), name.as_ptr(), value) };
    if status < 0 {
        return Err(PyErr::fetch(obj.py()));
    }
    Ok(())
}

impl CoreLoop {
    /// An attribute was set or deleted: keep `time_replaced` true to the instance and class.
    fn noticed(slf: &Bound<'_, Self>, name: &Bound<'_, PyString>) -> PyResult<()> {
        let py = slf.py();
        if name.is(intern!(py, "time")) || name.is(intern!(py, "_thread_id")) {
            return CoreLoop::update_time_replaced(slf);
        }
        let name = name.to_cow()?;
        if name == "time" || name == "_thread_id" {
            return CoreLoop::update_time_replaced(slf);
        }
        Ok(())
    }

    /// The PCT owner id of `task`, assigned in the order tasks are first seen (deterministic).
    fn owner_of(&self, task: &Bound<'_, PyAny>) -> PyResult<Owner> {
        let py = task.py();
        let key = task.as_ptr() as usize;
        let (known, listed) = self.with(py, |s| {
            let known = s.task_owners.get(&key).map(|(_, owner)| *owner);
            let listed = (known.is_none() && s.task_owners.len() >= s.purge_owners_at)
                .then(|| s.task_owners.iter().map(|(address, (t, _))| (*address, t.clone_ref(py))).collect::<Vec<_>>());
            (known, listed)
        })?;
        if let Some(owner) = known {
            return Ok(owner);
        }
        if let Some(listed) = listed {
            // Done tasks never run again: forget them (outside the borrow, since asking a task
            // whether it is done, or dropping it, may run Python code).
            let mut done = Vec::new();
            for (address, listed_task) in &listed {
                if listed_task.bind(py).call_method0(intern!(py, "done"))?.is_truthy()? {
                    done.push(*address);
                }
            }
            let removed: Vec<_> = self.with(py, |s| {
                let removed = done.iter().filter_map(|address| s.task_owners.remove(address)).collect();
                s.purge_owners_at = (s.task_owners.len() * 2).max(64);
                removed
            })?;
            drop(removed);
            drop(listed);
        }
        self.with(py, |s| {
            let owner = s.scheduler.fresh_owner();
            s.task_owners.insert(key, (task.clone().unbind(), owner));
            owner
        })
    }

    pub(crate) fn with<R>(&self, py: Python<'_>, f: impl FnOnce(&mut State) -> R) -> PyResult<R> {
        self.state.with(py, f)
    }

    pub(crate) fn is_real_clock(&self) -> bool {
        self.real_clock.load(Ordering::Relaxed)
    }

    /// The core's clock: virtual seconds, or `time.monotonic()`.
    fn now(&self, py: Python<'_>) -> PyResult<f64> {
        if self.is_real_clock() {
            monotonic(py)
        } else {
            self.with(py, |s| s.scheduler.virtual_now())
        }
    }

    /// The loop time: `loop.time()` if it is replaced, else the core's clock (no Python call).
    pub(crate) fn loop_time(&self, slf: &Bound<'_, Self>) -> PyResult<f64> {
        if self.time_replaced.load(Ordering::Relaxed) {
            let now: f64 = slf.call_method0(intern!(slf.py(), "time"))?.extract()?;
            return check_when(now, "loop.time()");
        }
        self.now(slf.py())
    }

    /// Whether `time` is replaced on the instance or the class (see `time_replaced`).
    fn update_time_replaced(slf: &Bound<'_, Self>) -> PyResult<()> {
        static OWN_TIME: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let py = slf.py();
        let own =
            OWN_TIME.get_or_try_init(py, || Ok::<_, PyErr>(py.get_type::<CoreLoop>().getattr("time")?.unbind()))?;
        let on_class = !slf.get_type().getattr(intern!(py, "time"))?.is(own.bind(py));
        let on_instance = match slf.getattr(intern!(py, "__dict__")) {
            Ok(dict) => {
                dict.cast_into::<PyDict>().is_ok_and(|dict| dict.contains(intern!(py, "time")).unwrap_or(false))
            }
            Err(_) => false,
        };
        let this = slf.get();
        let replaced = on_class || on_instance;
        if this.time_replaced.swap(replaced, Ordering::Relaxed) != replaced || replaced {
            // A new clock: see again whether it follows the loop's.
            this.with(py, |s| s.replaced_ignores_jumps = false)?;
        }
        Ok(())
    }

    /// Stock checks `call_soon` and friends make, plus one stock makes only in debug mode (a
    /// non-callable callback fails here, not later inside the loop).
    fn check_schedulable(&self, slf: &Bound<'_, Self>, callback: &Bound<'_, PyAny>, method: &str) -> PyResult<()> {
        let py = slf.py();
        if self.closed.load(Ordering::Relaxed) {
            return Err(PyRuntimeError::new_err("Event loop is closed"));
        }
        if self.debug.load(Ordering::Relaxed) {
            if method != "call_soon_threadsafe" {
                slf.call_method0(intern!(py, "_check_thread"))?;
            }
            slf.call_method1(intern!(py, "_check_callback"), (callback, method))?;
        }
        if !callback.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "a callable object was expected by {method}(), got {}",
                callback.repr()?
            )));
        }
        Ok(())
    }

    fn new_handle(
        &self,
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        args: Args,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(Handle, Placement)> {
        let py = slf.py();
        let explicit_context = context.is_some();
        let context = match context {
            None => copy_current_context(py)?,
            Some(context) => {
                if !is_context(context)? {
                    return Err(PyTypeError::new_err(format!(
                        "context must be a contextvars.Context, got {}",
                        context.get_type().name()?
                    )));
                }
                context.clone().unbind()
            }
        };
        let placement = if self.uses_lanes.load(Ordering::Relaxed) {
            let owners = self.uses_owners.load(Ordering::Relaxed).then_some(self);
            placement_for(owners, callback, &args, explicit_context)?
        } else {
            Placement::PLAIN
        };
        let source_traceback = if self.debug.load(Ordering::Relaxed) { Some(source_traceback(py)?) } else { None };
        Ok((
            Handle::new(py, callback.clone().unbind(), args, context, slf.clone().unbind(), source_traceback)?,
            placement,
        ))
    }

    /// `call_soon`: checks, makes the handle, queues it.
    pub(crate) fn schedule_soon(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        args: Args,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        this.check_schedulable(slf, callback, "call_soon")?;
        let (handle, placement) = this.new_handle(slf, callback, args, context)?;
        let handle = Py::new(py, handle)?;
        let entry = Ready(handle.clone_ref(py).into_any());
        this.with(py, |s| s.scheduler.push_ready(placement, entry))?;
        Ok(handle)
    }

    fn schedule_at(
        &self,
        slf: &Bound<'_, Self>,
        when: f64,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        context: Option<&Bound<'_, PyAny>>,
        method: &str,
    ) -> PyResult<Py<TimerHandle>> {
        let py = slf.py();
        self.check_schedulable(slf, callback, method)?;
        let (handle, placement) = self.new_handle(slf, callback, Args::from_tuple(args), context)?;
        let init = PyClassInitializer::from(handle).add_subclass(TimerHandle::new(when));
        let timer = Bound::new(py, init)?;
        let entry = Ready(timer.clone().into_any().unbind());
        let id = self.with(py, |s| s.scheduler.schedule(when, placement, entry))?;
        timer.get().set_timer_id(id);
        Ok(timer.unbind())
    }

    /// Removes a cancelled timer from the queue (called by `TimerHandle.cancel`).
    pub fn cancel_timer(&self, py: Python<'_>, id: TimerId) -> PyResult<()> {
        let removed = self.with(py, |s| s.scheduler.cancel(id))?;
        drop(removed); // outside the borrow: dropping may run Python code
        Ok(())
    }

    /// Number of watched file descriptors besides the loop's own self-pipe, and whether signal
    /// handlers are installed.
    pub(crate) fn watched(&self, py: Python<'_>) -> PyResult<(usize, bool)> {
        self.with(py, |s| {
            let fds = s.fd_map.as_ref().map_or(0, |map| map.bind(py).len().saturating_sub(1));
            let signals = s.signal_handlers.as_ref().is_some_and(|handlers| !handlers.bind(py).is_empty());
            (fds, signals)
        })
    }
}

#[pymethods]
impl CoreLoop {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Self {
            state: GilCell::new(State {
                scheduler: Scheduler::new(ClockKind::Virtual, Policy::Fifo),
                mode: RunMode::Forever,
                ran: 0,
                total_ran: 0,
                max_steps: None,
                time_limit: None,
                executor_jobs: 0,
                idle: IdleState::new(),
                watchdog: Some(60.0),
                io_grace: None,
                turn_time: None,
                replaced_ignores_jumps: false,
                clock_resolution: 1e-9,
                fd_map: None,
                signal_handlers: None,
                task_owners: FxHashMap::default(),
                purge_owners_at: 64,
                future_kwargs: None,
            }),
            waiting: AtomicBool::new(false),
            idle_waiters: AtomicBool::new(false),
            has_background: AtomicBool::new(false),
            time_replaced: AtomicBool::new(false),
            uses_lanes: AtomicBool::new(false),
            uses_owners: AtomicBool::new(false),
            trace: AtomicBool::new(false),
            real_clock: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            // Closed until asyncio's `__init__` opens it, so a loop whose construction failed
            // is not mistaken for an unclosed one by `BaseEventLoop.__del__`.
            closed: AtomicBool::new(true),
            debug: AtomicBool::new(false),
        }
    }

    /// Sets the policy, the clock and the idle decision's settings; only before anything is
    /// scheduled. `policy` is "fifo", "random" or "pct" (both need `seed`), or "replay" (needs
    /// `schedule`). The Python layer has validated every value.
    #[pyo3(signature = (policy, seed, depth, horizon, max_streak, schedule, clock, clock_resolution, watchdog, io_grace, turn_time))]
    #[allow(clippy::too_many_arguments)]
    fn _q_configure(
        slf: &Bound<'_, Self>,
        policy: &str,
        seed: Option<u64>,
        depth: u32,
        horizon: u64,
        max_streak: u32,
        schedule: Option<&str>,
        clock: &str,
        clock_resolution: f64,
        watchdog: Option<f64>,
        io_grace: Option<f64>,
        turn_time: Option<f64>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let kind = ClockKind::parse(clock)
            .ok_or_else(|| PyValueError::new_err(format!("clock must be 'virtual' or 'real', got {clock:?}")))?;
        let seed_for =
            |name: &str| seed.ok_or_else(|| PyValueError::new_err(format!("the {name:?} policy needs a seed")));
        let policy = match policy {
            "fifo" => Policy::Fifo,
            "random" => Policy::Random { seed: seed_for("random")? },
            "pct" if (1..=MAX_PCT_DEPTH).contains(&depth) => {
                Policy::Pct { seed: seed_for("pct")?, depth, horizon, max_streak: max_streak.max(1) }
            }
            "pct" => {
                return Err(PyValueError::new_err(format!("pct_depth must be in 1..={MAX_PCT_DEPTH}, got {depth}")))
            }
            "replay" => {
                let text = schedule.ok_or_else(|| PyValueError::new_err("the \"replay\" policy needs a schedule"))?;
                Policy::Replay(decode_schedule(text)?)
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "policy must be 'fifo', 'random', 'pct' or 'replay', got {other:?}"
                )))
            }
        };
        let lanes = !policy.is_fifo();
        let owners = matches!(policy, Policy::Pct { .. });
        let replaced = this.with(py, |s| {
            s.clock_resolution = clock_resolution;
            s.watchdog = watchdog;
            s.io_grace = io_grace;
            s.turn_time = turn_time;
            let owners = std::mem::take(&mut s.task_owners);
            let mut scheduler = Scheduler::new(kind, policy);
            let version = py.version_info();
            scheduler.set_flavour(u32::from(version.major) * 100 + u32::from(version.minor));
            (std::mem::replace(&mut s.scheduler, scheduler).drain(), owners)
        })?;
        drop(replaced);
        this.uses_lanes.store(lanes, Ordering::Relaxed);
        this.uses_owners.store(owners, Ordering::Relaxed);
        this.real_clock.store(kind == ClockKind::Real, Ordering::Relaxed);
        // A subclass may override `time`.
        CoreLoop::update_time_replaced(slf)
    }

    /// Whether a fault point with firing `probability` fires (always False under FIFO). The
    /// answer is a logged decision, so schedules replay it.
    fn _q_fault(&self, py: Python<'_>, probability: f64) -> PyResult<bool> {
        if !(0.0..=1.0).contains(&probability) {
            return Err(PyValueError::new_err(format!("probability must be between 0 and 1, got {probability}")));
        }
        self.with(py, |s| s.scheduler.fault(probability))
    }

    /// The schedule string of the decisions made so far.
    fn _q_schedule(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |s| s.scheduler.chooser().schedule().encode())
    }

    /// For a replay of a tagged schedule, at the end of the run: how it differs from the
    /// recorded run, as (recorded decisions, recorded interpreter as 100 * major + minor,
    /// decisions made); None if it matches (or nothing was recorded to compare).
    fn _q_drift(&self, py: Python<'_>) -> PyResult<Option<(u64, u32, u64)>> {
        self.with(py, |s| {
            s.scheduler.chooser().drift().map(|d| (d.recorded.decisions, d.recorded.flavour, d.decisions))
        })
    }

    /// The decisions made so far (the first `limit` of them), as (kind, options, chosen,
    /// virtual time) tuples.
    #[pyo3(signature = (limit = None))]
    fn _q_decisions<'py>(&self, py: Python<'py>, limit: Option<usize>) -> PyResult<Bound<'py, PyList>> {
        let log: Vec<(&'static str, u32, u32, f64)> = self.with(py, |s| {
            let log = s.scheduler.chooser().log();
            log[..limit.unwrap_or(log.len()).min(log.len())]
                .iter()
                .map(|d| (d.kind.name(), d.options, d.chosen, d.time))
                .collect()
        })?;
        PyList::new(py, log)
    }

    /// (decisions, lane decisions, decisions that differ from stock order) so far: what an
    /// exploration needs of every run, without copying a long log into Python.
    fn _q_decision_counts(&self, py: Python<'_>) -> PyResult<(usize, usize, usize)> {
        self.with(py, |s| {
            let log = s.scheduler.chooser().log();
            let lanes = log.iter().filter(|d| d.kind == DecisionKind::Lane).count();
            let deviations = log.iter().filter(|d| d.chosen != 0).count();
            (log.len(), lanes, deviations)
        })
    }

    /// Where a replayed schedule first did not fit: (decision index, kind, recorded, options).
    fn _q_mismatch(&self, py: Python<'_>) -> PyResult<Option<(usize, &'static str, u32, u32)>> {
        self.with(py, |s| s.scheduler.chooser().mismatch().map(|m| (m.index, m.kind.name(), m.recorded, m.options)))
    }

    /// Turns the per-entry `_q_trace` hook on or off.
    fn _q_set_trace(&self, on: bool) {
        self.trace.store(on, Ordering::Relaxed);
    }

    /// Checks a schedule string; returns its deviations from stock order, as
    /// `(decision index, chosen index)` pairs in decision order (memory in proportion to the
    /// string, whatever indices it names).
    #[staticmethod]
    fn _q_decode_schedule(text: &str) -> PyResult<Vec<(u64, u32)>> {
        Ok(decode_schedule(text)?.deviations().to_vec())
    }

    /// The schedule string of `deviations`, `(decision index, chosen index)` pairs in
    /// increasing decision order (zero choices are stock order and dropped).
    #[staticmethod]
    fn _q_encode_schedule(deviations: Vec<(u64, u32)>) -> PyResult<String> {
        Schedule::from_deviations(deviations)
            .map(|schedule| schedule.encode())
            .ok_or_else(|| PyValueError::new_err("deviations must be in strictly increasing decision order"))
    }

    /// Bounded exhaustive search: the choices to replay next after a run whose decisions had
    /// `options` options each and chose `chosen` (missing trailing choices are 0), or None
    /// when every schedule within `bound` delays has been run.
    #[staticmethod]
    fn _q_next_bounded(options: Vec<u32>, chosen: Vec<u32>, bound: u64) -> Option<Vec<u32>> {
        let decisions: Vec<(u32, u32)> =
            options.iter().enumerate().map(|(i, options)| (*options, chosen.get(i).copied().unwrap_or(0))).collect();
        next_bounded(&decisions, bound)
    }

    /// (options of each decision, chosen index of each decision up to the last non-zero
    /// one): what the bounded search keeps of a run, compactly.
    fn _q_decision_choices(&self, py: Python<'_>) -> PyResult<(Vec<u32>, Vec<u32>)> {
        self.with(py, |s| {
            let log = s.scheduler.chooser().log();
            let options = log.iter().map(|d| d.options).collect();
            let last = log.iter().rposition(|d| d.chosen != 0).map_or(0, |i| i + 1);
            (options, log[..last].iter().map(|d| d.chosen).collect())
        })
    }

    /// Tells the core where asyncio keeps the watched fds and the signal handlers.
    #[pyo3(signature = (fd_map, signal_handlers))]
    fn _q_watch(
        &self,
        py: Python<'_>,
        fd_map: Option<Bound<'_, PyDict>>,
        signal_handlers: Option<Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let old = self.with(py, |s| {
            (
                std::mem::replace(&mut s.fd_map, fd_map.map(Bound::unbind)),
                std::mem::replace(&mut s.signal_handlers, signal_handlers.map(Bound::unbind)),
            )
        })?;
        drop(old);
        Ok(())
    }

    /// The loop's clock: virtual seconds since the loop was made, or `time.monotonic()`.
    fn time(&self, py: Python<'_>) -> PyResult<f64> {
        self.now(py)
    }

    /// Schedules `callback(*args)` to run soon, in `context` (default: a copy of the current one).
    ///
    /// On a full (non-abi3) build the module replaces this method on the class by
    /// [`fast_call_soon::install`]'s, which parses the common calls itself and hands every
    /// other form to this one.
    #[pyo3(signature = (callback, *args, context = None))]
    fn call_soon(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        CoreLoop::schedule_soon(slf, callback, Args::from_tuple(args), context)
    }

    /// Like `call_soon`, callable from any thread; wakes the loop if it is waiting.
    ///
    /// The entry goes straight into the ready queue, as stock asyncio appends to `_ready`, so
    /// it keeps its FIFO place against `call_soon` from the loop's thread. That is sound from
    /// any thread: every access to the scheduler state holds the GIL (see `GilCell`).
    #[pyo3(signature = (callback, *args, context = None))]
    fn call_soon_threadsafe(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        this.check_schedulable(slf, callback, "call_soon_threadsafe")?;
        let (handle, placement) = this.new_handle(slf, callback, Args::from_tuple(args), context)?;
        let handle = Py::new(py, handle)?;
        let entry = Ready(handle.clone_ref(py).into_any());
        this.with(py, |s| s.scheduler.push_ready(placement, entry))?;
        if this.waiting.load(Ordering::Acquire) {
            slf.call_method0(intern!(py, "_write_to_self"))?;
        }
        Ok(handle)
    }

    /// Schedules `callback(*args)` at loop time `when`.
    #[pyo3(signature = (when, callback, *args, context = None))]
    fn call_at(
        slf: &Bound<'_, Self>,
        when: f64,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        let when = check_when(when, "when")?;
        slf.get().schedule_at(slf, when, callback, args, context, "call_at")
    }

    /// Schedules `callback(*args)` `delay` seconds from now (exactly `call_at(time() + delay)`).
    #[pyo3(signature = (delay, callback, *args, context = None))]
    fn call_later(
        slf: &Bound<'_, Self>,
        delay: f64,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        let this = slf.get();
        let when = check_when(this.loop_time(slf)? + check_when(delay, "delay")?, "delay")?;
        this.schedule_at(slf, when, callback, args, context, "call_later")
    }

    /// Queues an `asyncio.Handle` made by asyncio's own code (I/O callbacks).
    fn _add_callback(slf: &Bound<'_, Self>, handle: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        if handle.getattr(intern!(py, "_cancelled"))?.is_truthy()? {
            return Ok(());
        }
        let entry = Ready(handle.clone().unbind());
        slf.get().with(py, |s| s.scheduler.push_ready(Placement::PLAIN, entry))
    }

    /// Stock's hook for cancelled timers; our timers leave the queue in `TimerHandle.cancel`.
    fn _timer_handle_cancelled(&self, _handle: &Bound<'_, PyAny>) {}

    /// A new future bound to this loop: `asyncio.futures.Future(loop=self)`, exactly as
    /// `BaseEventLoop.create_future`, without its Python frame. (A subclass that defines its own
    /// `create_future` still wins, and may call this one through `super()`.)
    fn create_future<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let (futures_dict, c_future) = future_types_for_create(py)?;
        let future = match dict_item(futures_dict, intern!(py, "Future")) {
            Some(future) => future,
            None => py.import("asyncio.futures")?.getattr(intern!(py, "Future"))?,
        };
        let this = slf.get();
        let cached = match c_future {
            // The C future reads its keyword arguments and keeps nothing of the dict.
            Some(c_future) if future.is(c_future) && !this.closed.load(Ordering::Relaxed) => {
                this.with(py, |s| s.future_kwargs.as_ref().map(|kwargs| kwargs.clone_ref(py)))?
            }
            _ => None,
        };
        if let Some(kwargs) = cached {
            return future.call((), Some(kwargs.bind(py)));
        }
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "loop"), slf)?;
        if c_future.is_some_and(|c_future| future.is(c_future)) && !this.closed.load(Ordering::Relaxed) {
            let kept = kwargs.clone().unbind();
            let replaced = this.with(py, |s| s.future_kwargs.replace(kept))?;
            drop(replaced);
        }
        future.call((), Some(&kwargs))
    }

    /// Whether debug mode is on.
    fn get_debug(&self) -> bool {
        self.debug.load(Ordering::Relaxed)
    }

    #[getter(_debug)]
    fn debug_flag(&self) -> bool {
        self.debug.load(Ordering::Relaxed)
    }

    #[setter(_debug)]
    fn set_debug_flag(&self, value: bool) {
        self.debug.store(value, Ordering::Relaxed);
    }

    #[getter(_stopping)]
    fn stopping_flag(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    #[setter(_stopping)]
    fn set_stopping_flag(&self, value: bool) {
        self.stopping.store(value, Ordering::Relaxed);
    }

    #[getter(_closed)]
    fn closed_flag(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    #[setter(_closed)]
    fn set_closed_flag(&self, py: Python<'_>, value: bool) -> PyResult<()> {
        self.closed.store(value, Ordering::Relaxed);
        if value {
            let kwargs = self.with(py, |s| s.future_kwargs.take())?;
            drop(kwargs); // outside the borrow: dropping may run Python code
        }
        Ok(())
    }

    /// One turn (see [`crate::turn`]): poll I/O, or carry out the idle decision when nothing is
    /// runnable; release the due timers; run the callbacks that were ready at that point.
    fn _run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        CoreLoop::run_once(slf)
    }

    /// Sets an attribute as `object.__setattr__` does, and notices a replaced `time` (and, when
    /// `run_forever` sets `_thread_id` as it starts, a `time` patched on the class since).
    fn __setattr__(slf: &Bound<'_, Self>, name: &Bound<'_, PyString>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        generic_setattr(slf, name, Some(value))?;
        CoreLoop::noticed(slf, name)
    }

    /// Deletes an attribute as `object.__delattr__` does (a patch of `time` being undone).
    fn __delattr__(slf: &Bound<'_, Self>, name: &Bound<'_, PyString>) -> PyResult<()> {
        generic_setattr(slf, name, None)?;
        CoreLoop::noticed(slf, name)
    }

    /// Sets how the next `run_forever` behaves: "forever", "until_blocked", "step",
    /// "until_idle" or "advance" (to loop time `target`), within `max_steps` callbacks and, for
    /// the virtual clock, up to loop time `time_limit`. The watchdog's count starts afresh.
    #[pyo3(signature = (mode, max_steps = None, target = None, time_limit = None))]
    fn _q_set_mode(
        &self,
        py: Python<'_>,
        mode: &str,
        max_steps: Option<u64>,
        target: Option<f64>,
        time_limit: Option<f64>,
    ) -> PyResult<()> {
        let mode = match (mode, target) {
            ("forever", None) => RunMode::Forever,
            ("until_blocked", None) => RunMode::UntilBlocked,
            ("step", None) => RunMode::Step,
            ("until_idle", None) => RunMode::UntilIdle,
            ("advance", Some(target)) => RunMode::Advance { target: check_when(target, "target")? },
            (other, target) => {
                return Err(PyValueError::new_err(format!("unknown run mode {other:?} (target {target:?})")))
            }
        };
        self.with(py, |s| {
            s.mode = mode;
            s.max_steps = max_steps;
            s.time_limit = time_limit;
            s.ran = 0;
            s.idle.reset_stall();
        })
    }

    /// Whether settling would run nothing: nothing ready, no timer due, and no file
    /// descriptor or signal to poll. O(1) whatever the number of tasks.
    fn _q_settled(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        if this.idle_waiters.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let (fds, signals) = this.watched(py)?;
        if fds > 0 || signals {
            return Ok(false);
        }
        let now = this.loop_time(slf)?;
        let replaced = this.time_replaced.load(Ordering::Relaxed);
        this.with(py, |s| s.scheduler.ready().is_empty() && !s.has_due(now, replaced))
    }

    /// Callbacks run since the mode was last set.
    fn _q_ran(&self, py: Python<'_>) -> PyResult<u64> {
        self.with(py, |s| s.ran)
    }

    /// The earliest pending timer deadline, or None.
    fn _q_next_deadline(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        self.with(py, |s| s.scheduler.next_deadline())
    }

    /// Moves the virtual clock forward to `instant` (never back).
    fn _q_move_clock(&self, py: Python<'_>, instant: f64) -> PyResult<()> {
        self.with(py, |s| s.scheduler.move_clock_to(instant))
    }

    /// Checks a duration for `advance()`; raises ValueError with the reason.
    #[staticmethod]
    fn _q_validate_duration(seconds: f64) -> PyResult<f64> {
        validate_duration(seconds).map_err(|err| PyValueError::new_err(err.to_string()))
    }

    /// Adds `delta` to the count of executor jobs in flight; returns the new count.
    fn _q_executor_jobs(&self, py: Python<'_>, delta: i64) -> PyResult<u64> {
        self.with(py, |s| {
            s.executor_jobs = s.executor_jobs.saturating_add_signed(delta);
            s.executor_jobs
        })
    }

    /// Says that a coroutine awaits `wait_all_tasks_blocked()` (woken at the next idle turn).
    fn _q_set_idle_waiters(&self, waiting: bool) {
        self.idle_waiters.store(waiting, Ordering::Relaxed);
    }

    /// Says that background tasks may be pending (`quiesce.background`).
    fn _q_set_background(&self) {
        self.has_background.store(true, Ordering::Relaxed);
    }

    /// Marks the loop as blocked in the selector (threadsafe callers must then wake it).
    fn _q_set_waiting(&self, waiting: bool) {
        self.waiting.store(waiting, Ordering::Release);
    }

    /// Whether a callback is runnable now (queued by any thread).
    fn _q_has_ready(&self, py: Python<'_>) -> PyResult<bool> {
        self.with(py, |s| !s.scheduler.ready().is_empty())
    }

    /// The runnable handles, in queue order (a snapshot).
    fn _q_ready_handles<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let objects: Vec<Py<PyAny>> = self.with(py, |s| s.scheduler.ready().iter().map(|e| e.object(py)).collect())?;
        PyList::new(py, objects)
    }

    /// The pending timer handles, in firing order (a snapshot).
    fn _q_timer_handles<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let objects: Vec<Py<PyAny>> =
            self.with(py, |s| s.scheduler.timers().sorted().into_iter().map(|(_, (_, e))| e.object(py)).collect())?;
        PyList::new(py, objects)
    }

    /// Drops every ready entry (`which="ready"`), every timer (`"timers"`), or both (`"all"`);
    /// `"owners"` forgets the tasks PCT keeps priorities for (when the loop closes); `"log"`
    /// drops the record of decisions (an exploration run is done with it).
    fn _q_clear(&self, py: Python<'_>, which: &str) -> PyResult<()> {
        let dropped = self.with(py, |s| match which {
            "ready" => Ok((s.scheduler.pop_all_ready(), FxHashMap::default())),
            "timers" => Ok((s.scheduler.drain_timers(), FxHashMap::default())),
            "all" => Ok((s.scheduler.drain(), FxHashMap::default())),
            "owners" => Ok((Vec::new(), std::mem::take(&mut s.task_owners))),
            "log" => {
                s.scheduler.clear_decision_log();
                Ok((Vec::new(), FxHashMap::default()))
            }
            other => Err(PyValueError::new_err(format!("unknown queue {other:?}"))),
        })??;
        drop(dropped); // outside the borrow: dropping may run Python code
        Ok(())
    }

    /// Counters for tests and reports.
    fn _q_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (ready, timers, heap, choices, ran, total, jobs, idle) = self.with(py, |s| {
            (
                s.scheduler.ready().len(),
                s.scheduler.timers().len(),
                s.scheduler.timers().heap_len(),
                s.scheduler.chooser().log().len(),
                s.ran,
                s.total_ran,
                s.executor_jobs,
                s.idle.clone(),
            )
        })?;
        let stats = PyDict::new(py);
        stats.set_item("ready", ready)?;
        stats.set_item("timers", timers)?;
        stats.set_item("timer_heap", heap)?;
        stats.set_item("choices", choices)?;
        stats.set_item("ran", ran)?;
        stats.set_item("total_ran", total)?;
        stats.set_item("executor_jobs", jobs)?;
        stats.set_item("jumps", idle.jumps)?;
        stats.set_item("busy_jumps", idle.busy_jumps)?;
        stats.set_item("real_pace", idle.real_pace)?;
        Ok(stats)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(state) = self.state.peek_for_gc() {
            for entry in state.scheduler.ready().iter() {
                entry.traverse(&visit)?;
            }
            for (_, entry) in state.scheduler.timers().payloads() {
                entry.traverse(&visit)?;
            }
            // Each listed task refers back to this loop: without this, a closed PCT loop and
            // its tasks would form a cycle the collector cannot see.
            for (task, _) in state.task_owners.values() {
                visit.call(task)?;
            }
            visit.call(&state.fd_map)?;
            visit.call(&state.signal_handlers)?;
            visit.call(&state.future_kwargs)?;
        }
        Ok(())
    }
}
