//! Native `Handle` and `TimerHandle`: what `call_soon` and `call_at` return, and what the ready
//! queue holds. Running one enters its `contextvars.Context` with `PyContext_Enter`, which is
//! what makes a dispatch cost a fraction of stock asyncio's `Context.run` through Python.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
#[cfg(not(feature = "abi3"))]
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use quiesce_core::TimerId;

use crate::core_loop::CoreLoop;
use crate::gil_cell::GilSlot;

/// Positional arguments, specialised so the common 0- and 1-argument calls build no tuple.
/// Kept as one optional pointer plus a flag (not an enum) so that a handle, and so a pending
/// timer, stays as small as stock asyncio's.
pub struct Args {
    /// `None`: no arguments; else the one argument, or (when `spread`) a tuple of them.
    value: Option<Py<PyAny>>,
    spread: bool,
}

impl Args {
    pub fn from_tuple(args: &Bound<'_, PyTuple>) -> Self {
        match args.len() {
            0 => Args { value: None, spread: false },
            1 => Args { value: Some(args.get_item(0).expect("length checked").unbind()), spread: false },
            _ => Args { value: Some(args.clone().into_any().unbind()), spread: true },
        }
    }

    /// The arguments of a vectorcall, borrowed from the caller.
    pub fn from_slice(py: Python<'_>, args: &[Borrowed<'_, '_, PyAny>]) -> PyResult<Self> {
        Ok(match args {
            [] => Args { value: None, spread: false },
            [arg] => Args { value: Some(Borrowed::to_owned(*arg).unbind()), spread: false },
            _ => Args { value: Some(PyTuple::new(py, args)?.into_any().unbind()), spread: true },
        })
    }

    /// The one argument, if there is exactly one.
    pub fn single(&self) -> Option<&Py<PyAny>> {
        self.value.as_ref().filter(|_| !self.spread)
    }
}

/// A scheduled callback (asyncio's `Handle`): `cancel()`, `cancelled()`, `get_context()`.
///
/// Handles are recycled through a free list of up to [`HANDLE_FREE_LIST`] objects. Besides
/// saving the allocator, a recycled object skips the cyclic GC's allocation count: without
/// it, every burst of queued callbacks (one `Event.set()` waking 10,000 tasks queues 10,000
/// handles at once) triggers young-generation collections, which promote the handles and
/// the futures alive at that moment and so bring on full collections over every live task.
/// A freed handle has dropped its callback, arguments and context before it is recycled;
/// the list holds only memory (at most 16,384 x 80 bytes).
#[pyclass(module = "quiesce._core", name = "Handle", frozen, subclass, weakref, freelist = HANDLE_FREE_LIST)]
pub struct Handle {
    /// The callback and its arguments, dropped by `cancel()` as stock asyncio drops them: an
    /// object that keeps its own pending handle (a protocol's timeout handle) is otherwise
    /// kept alive by it until the cyclic GC runs.
    target: GilSlot<Target>,
    /// How `Target::args` is stored; a byte beside `cancelled`.
    args_kind: ArgsKind,
    context: Py<PyAny>,
    event_loop: Py<CoreLoop>,
    cancelled: AtomicBool,
}

/// What a handle calls: the callback and its arguments (see [`Args`]; stored flat so that a
/// pending timer stays as small as stock asyncio's).
struct Target {
    callback: Py<PyAny>,
    args: Option<Py<PyAny>>,
}

/// How `Target::args` is stored. A byte beside `cancelled` rather than another pointer field:
/// a pending timer must stay as small as stock asyncio's.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum ArgsKind {
    /// `None`: no arguments; `Some`: the one argument.
    Single,
    /// A tuple of the arguments.
    Spread,
    /// Debug mode: a pair `(tuple of the arguments, source traceback)`.
    WithTraceback,
}

impl Handle {
    /// A handle; `source_traceback` (debug mode only) is where it was made.
    pub fn new(
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Args,
        context: Py<PyAny>,
        event_loop: Py<CoreLoop>,
        source_traceback: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let (args, args_kind) = match source_traceback {
            None => (args.value, if args.spread { ArgsKind::Spread } else { ArgsKind::Single }),
            Some(traceback) => {
                let tuple = Self::tuple_of(py, &args.value, args.spread)?;
                let pair = PyTuple::new(py, [tuple.into_any(), traceback.into_bound(py)])?;
                (Some(pair.into_any().unbind()), ArgsKind::WithTraceback)
            }
        };
        Ok(Self {
            target: GilSlot::new(Target { callback, args }),
            args_kind,
            context,
            event_loop,
            cancelled: AtomicBool::new(false),
        })
    }

    /// The callback and its arguments (new references), or `None` once cancelled.
    fn target(&self, py: Python<'_>) -> Option<(Py<PyAny>, Option<Py<PyAny>>)> {
        self.target.get(py, |target| {
            target.map(|t| (t.callback.clone_ref(py), t.args.as_ref().map(|args| args.clone_ref(py))))
        })
    }

    fn tuple_of<'py>(py: Python<'py>, value: &Option<Py<PyAny>>, spread: bool) -> PyResult<Bound<'py, PyTuple>> {
        match (value, spread) {
            (None, _) => Ok(PyTuple::empty(py)),
            (Some(arg), false) => PyTuple::new(py, [arg.bind(py)]),
            (Some(tuple), true) => Ok(tuple.bind(py).cast::<PyTuple>()?.clone()),
        }
    }

    /// The `(arguments, source traceback)` pair of a debug-mode handle.
    fn debug_pair<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        if self.args_kind != ArgsKind::WithTraceback {
            return Ok(None);
        }
        match self.target(py) {
            Some((_, Some(pair))) => Ok(Some(pair.into_bound(py).cast_into::<PyTuple>()?)),
            _ => Ok(None),
        }
    }

    /// Marks the handle cancelled and drops its callback and arguments (a debug-mode handle
    /// keeps where it was made). Idempotent.
    fn cancel_and_release(&self, py: Python<'_>) -> PyResult<()> {
        if self.cancelled.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        let kept = match self.debug_pair(py)? {
            Some(pair) => {
                let traceback = pair.get_item(1)?;
                let empty = PyTuple::empty(py).into_any();
                let args = PyTuple::new(py, [empty, traceback])?.into_any().unbind();
                Some(Target { callback: py.None(), args: Some(args) })
            }
            None => None,
        };
        drop(self.target.replace(py, kept)); // may run finalizers: nothing is borrowed here
        Ok(())
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    fn args_tuple<'py>(&self, py: Python<'py>, args: &Option<Py<PyAny>>) -> PyResult<Bound<'py, PyTuple>> {
        if self.args_kind == ArgsKind::WithTraceback {
            let pair = args.as_ref().map(|pair| pair.bind(py).cast::<PyTuple>()).transpose()?;
            return match pair {
                Some(pair) => Ok(pair.get_item(0)?.cast_into::<PyTuple>()?),
                None => Ok(PyTuple::empty(py)),
            };
        }
        Self::tuple_of(py, args, self.args_kind == ArgsKind::Spread)
    }

    /// Calls the callback inside its context. Errors other than `SystemExit` and
    /// `KeyboardInterrupt` go to the loop's exception handler, as in stock `Handle._run`;
    /// those two propagate.
    pub fn run(slf: &Bound<'_, Handle>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let outcome = this.call_in_context(py);
        match outcome {
            Ok(()) => Ok(()),
            Err(err) if err.is_instance_of::<PySystemExit>(py) || err.is_instance_of::<PyKeyboardInterrupt>(py) => {
                Err(err)
            }
            Err(err) => {
                let event_loop = this.event_loop.bind(py);
                event_loop.call_method1(pyo3::intern!(py, "_q_callback_error"), (slf, err.into_value(py)))?;
                Ok(())
            }
        }
    }

    #[cfg(not(feature = "abi3"))]
    fn call_in_context(&self, py: Python<'_>) -> PyResult<()> {
        // New references for the call: the callback may cancel its own handle, which drops
        // the handle's.
        let Some((callback, args)) = self.target(py) else { return Ok(()) };
        let ctx = self.context.as_ptr();
        // SAFETY: the GIL is held; `ctx` is a live `contextvars.Context` (type-checked when the
        // handle was made) owned by `self` (the field never changes), which outlives this
        // call; `callback` and `args` are references owned here for the whole call.
        unsafe {
            if ffi::PyContext_Enter(ctx) < 0 {
                return Err(PyErr::fetch(py));
            }
            let result = match (&args, self.args_kind) {
                (None, _) => ffi::PyObject_CallNoArgs(callback.as_ptr()),
                (Some(arg), ArgsKind::Single) => ffi::PyObject_CallOneArg(callback.as_ptr(), arg.as_ptr()),
                // `Spread` is only set for a tuple (see `Args::from_tuple`).
                (Some(tuple), ArgsKind::Spread) => {
                    ffi::PyObject_Call(callback.as_ptr(), tuple.as_ptr(), std::ptr::null_mut())
                }
                // Debug mode: the pair is a 2-tuple whose first item is the arguments' tuple
                // (see `Handle::new`); `args` owns it for the call.
                (Some(pair), ArgsKind::WithTraceback) => {
                    let tuple = ffi::PyTuple_GetItem(pair.as_ptr(), 0);
                    ffi::PyObject_Call(callback.as_ptr(), tuple, std::ptr::null_mut())
                }
            };
            let outcome = if result.is_null() {
                Err(PyErr::fetch(py))
            } else {
                ffi::Py_DECREF(result);
                Ok(())
            };
            // Exiting fails only if the context is no longer the current one, which the call
            // cannot cause (contexts nest); report it rather than ignore it.
            if ffi::PyContext_Exit(ctx) < 0 {
                let exit_error = PyErr::fetch(py);
                return outcome.and(Err(exit_error));
            }
            outcome
        }
    }

    /// Limited-API dispatch: `context.run(callback, *args)` through a Python method call.
    #[cfg(feature = "abi3")]
    fn call_in_context(&self, py: Python<'_>) -> PyResult<()> {
        let run = pyo3::intern!(py, "run");
        let context = self.context.bind(py);
        let Some((callback, args)) = self.target(py) else { return Ok(()) };
        let mut items = vec![callback.into_bound(py)];
        items.extend(self.args_tuple(py, &args)?.iter());
        context.call_method1(run, PyTuple::new(py, items)?).map(drop)
    }

    fn info(&self, py: Python<'_>, class_name: &str, when: Option<f64>) -> PyResult<String> {
        let mut info = vec![class_name.to_owned()];
        if self.is_cancelled() {
            info.push("cancelled".to_owned());
        }
        if let Some(when) = when {
            info.push(format!("when={}", format_float(py, when)?));
        }
        if let (false, Some((callback, args))) = (self.is_cancelled(), self.target(py)) {
            let format_source = format_callback_source(py)?;
            let source = format_source.call1((callback, self.args_tuple(py, &args)?))?;
            info.push(source.extract::<String>()?);
        }
        Ok(format!("<{}>", info.join(" ")))
    }
}

fn format_float(py: Python<'_>, value: f64) -> PyResult<String> {
    // Python's float repr, so `when=` reads exactly like stock asyncio's.
    Ok(pyo3::types::PyFloat::new(py, value).repr()?.to_string())
}

fn format_callback_source(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static FORMAT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    FORMAT.import(py, "asyncio.format_helpers", "_format_callback_source")
}

#[pymethods]
impl Handle {
    /// Cancels the callback; a cancelled handle never runs and, as in stock asyncio, lets go
    /// of its callback and arguments. Idempotent.
    fn cancel(&self, py: Python<'_>) -> PyResult<()> {
        self.cancel_and_release(py)
    }

    /// Whether `cancel()` was called.
    fn cancelled(&self) -> bool {
        self.is_cancelled()
    }

    /// The `contextvars.Context` the callback runs in.
    fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
        self.context.clone_ref(py)
    }

    /// Runs the callback now (what the loop does when the handle's turn comes).
    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        if slf.get().is_cancelled() {
            return Ok(());
        }
        Handle::run(slf)
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        if self.is_cancelled() {
            return None;
        }
        self.target(py).map(|(callback, _)| callback)
    }

    #[getter]
    fn _args<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        match (self.is_cancelled(), self.target(py)) {
            (false, Some((_, args))) => self.args_tuple(py, &args).map(Some),
            _ => Ok(None),
        }
    }

    #[getter]
    fn _cancelled(&self) -> bool {
        self.is_cancelled()
    }

    #[getter]
    fn _context(&self, py: Python<'_>) -> Py<PyAny> {
        self.context.clone_ref(py)
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Py<CoreLoop> {
        self.event_loop.clone_ref(py)
    }

    /// Where the handle was made (a list of frame summaries) in debug mode, else `None`.
    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self.debug_pair(py)?.map(|pair| pair.get_item(1)).transpose()?.map(Bound::unbind))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let class_name = slf.get_type().name()?.to_string();
        slf.get().info(slf.py(), &class_name, None)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(target) = self.target.peek_for_gc() {
            visit.call(&target.callback)?;
            visit.call(&target.args)?;
        }
        visit.call(&self.context)?;
        visit.call(&self.event_loop)
    }
}

/// How many freed handles are kept for reuse (see [`Handle`]).
const HANDLE_FREE_LIST: usize = 16_384;

/// How many freed timer handles are kept for reuse.
const TIMER_FREE_LIST: usize = 4_096;

/// Marks a timer id as not yet assigned.
const NO_TIMER: u64 = u64::MAX;

/// A callback scheduled for a loop time (asyncio's `TimerHandle`): adds `when()`. Recycled like
/// [`Handle`], through a free list of its own (timers come in smaller bursts).
#[pyclass(module = "quiesce._core", name = "TimerHandle", extends = Handle, frozen, freelist = TIMER_FREE_LIST)]
pub struct TimerHandle {
    when: f64,
    timer_id: AtomicU64,
}

impl TimerHandle {
    pub fn new(when: f64) -> Self {
        Self { when, timer_id: AtomicU64::new(NO_TIMER) }
    }

    pub fn set_timer_id(&self, id: TimerId) {
        self.timer_id.store(id.to_bits(), Ordering::Relaxed);
    }

    pub fn timer_id(&self) -> Option<TimerId> {
        let bits = self.timer_id.load(Ordering::Relaxed);
        (bits != NO_TIMER).then(|| TimerId::from_bits(bits))
    }
}

#[pymethods]
impl TimerHandle {
    /// The loop time at which the callback is due.
    fn when(&self) -> f64 {
        self.when
    }

    #[getter]
    fn _when(&self) -> f64 {
        self.when
    }

    /// Cancels the timer and removes it from the loop's timer queue at once.
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        let base = slf.as_super().get();
        if base.is_cancelled() {
            return Ok(());
        }
        let py = slf.py();
        base.cancel_and_release(py)?;
        if let Some(id) = slf.get().timer_id() {
            base.event_loop.bind(py).get().cancel_timer(py, id)?;
        }
        Ok(())
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let class_name = slf.get_type().name()?.to_string();
        slf.as_super().get().info(slf.py(), &class_name, Some(slf.get().when))
    }
}
