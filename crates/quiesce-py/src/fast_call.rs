//! A hand-written `METH_FASTCALL | METH_KEYWORDS` entry point for `CoreLoop.call_soon`.
//!
//! The C `Task` and `Future` call `loop.call_soon(callback, arg, context=ctx)` by name on every
//! wake-up. PyO3's generated wrapper for `call_soon(callback, *args, context=None)` packs the
//! extra positional arguments into a new tuple and matches each keyword by its UTF-8 text;
//! this entry point reads the vectorcall arguments in place instead. It takes only the forms
//! that cannot fail to bind (a positional callback, any further positional arguments, at most
//! the one keyword `context`) and hands every other call (no callback, `callback=` by
//! keyword, an unknown or repeated keyword) to the PyO3 method it replaced, so binding errors
//! keep PyO3's exact messages. What happens after binding is the same function either way
//! ([`CoreLoop::schedule_soon`]).
//!
//! It is installed on the class as an ordinary method descriptor named `call_soon`, so it
//! resolves through the MRO exactly like the method it replaces (a subclass that defines
//! `call_soon` still wins, and `super().call_soon(...)` still reaches it).

use std::ffi::CStr;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyType};

use crate::core_loop::CoreLoop;
use crate::handle::Args;

/// The PyO3-generated `call_soon` descriptor: binds every other form of call.
static CHECKED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Same text signature and doc as the PyO3 method, so `inspect.signature` and `help()` agree.
const DOC: &CStr = c"call_soon($self, callback, *args, context=None)\n--\n\nSchedules `callback(*args)` to run soon, in `context` (default: a copy of the current one).";

/// Replaces `CoreLoop.call_soon` (PyO3's) with the fast entry point; PyO3's stays reachable
/// for the forms the fast one does not bind.
pub fn install(py: Python<'_>, core_loop: &Bound<'_, PyType>) -> PyResult<()> {
    let checked = core_loop.getattr(pyo3::intern!(py, "call_soon"))?;
    CHECKED
        .set(py, checked.unbind())
        .map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("quiesce: the fast call_soon is already installed"))?;
    let meth = pyo3::get_trampoline_function!(fastcall_cfunction_with_keywords, call_soon);
    // The descriptor keeps a pointer to its `PyMethodDef` for as long as it lives: leak one.
    let def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"call_soon".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer { PyCFunctionFastWithKeywords: meth },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: DOC.as_ptr(),
    }));
    // SAFETY: the GIL is held; `core_loop` is a live type object and `def` lives forever.
    // `PyDescr_NewMethod` returns a new reference or NULL with an exception set, and
    // `from_owned_ptr_or_err` takes ownership of either.
    let descriptor =
        unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(core_loop.as_type_ptr(), def as *mut _))? };
    core_loop.setattr(pyo3::intern!(py, "call_soon"), descriptor)
}

/// The `context` keyword-name object the C `Task` and `Future` pass (the same object on every
/// call, though not our interned string): kept once it has been seen, so that later calls
/// compare one pointer.
static SEEN_CONTEXT_NAME: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Whether a keyword name is `context`.
fn is_context(py: Python<'_>, name: Borrowed<'_, '_, PyAny>) -> bool {
    if SEEN_CONTEXT_NAME.get(py).is_some_and(|seen| seen.as_ptr() == name.as_ptr())
        || name.as_ptr() == pyo3::intern!(py, "context").as_ptr()
    {
        return true;
    }
    let matches = name.cast::<PyString>().is_ok_and(|name| name.to_str().is_ok_and(|text| text == "context"));
    if matches {
        // The first `context` name seen stays the fast one (a strong reference: it cannot be
        // freed and its address reused by another string).
        let _ = SEEN_CONTEXT_NAME.set(py, name.to_owned().unbind());
    }
    matches
}

/// The `call_soon` method: `slf` is the loop, then `nargs` positional arguments and one value
/// per name in `kwnames`, as the vectorcall protocol lays them out.
///
/// # Safety
///
/// Called only by CPython through the method descriptor made in [`install`]: the GIL is held,
/// `slf` is an instance of `CoreLoop` (the descriptor checks its type before calling), `args`
/// points to `nargs` + len(`kwnames`) live objects and `kwnames` is NULL or a tuple of str.
unsafe fn call_soon(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: per the function's contract, `slf` and `kwnames` (unless NULL) are live, and
    // `args` holds `nargs` + len(`kwnames`) live objects, all kept alive by the caller for the
    // whole call.
    let (slf, all, kwnames, first_name) = unsafe {
        let kwcount = if kwnames.is_null() { 0 } else { ffi::PyTuple_GET_SIZE(kwnames) as usize };
        let first_name = (kwcount == 1).then(|| Borrowed::from_ptr(py, ffi::PyTuple_GET_ITEM(kwnames, 0)));
        let kwnames = (!kwnames.is_null()).then(|| Borrowed::from_ptr(py, kwnames));
        let count = nargs as usize + kwcount;
        let all: &[*mut ffi::PyObject] = if count == 0 { &[] } else { std::slice::from_raw_parts(args, count) };
        (Borrowed::from_ptr(py, slf), all, kwnames, first_name)
    };
    // SAFETY: every pointer in `all` is a live object for the whole call (see above).
    let arg = |index: usize| unsafe { Borrowed::from_ptr(py, all[index]) };
    let nargs = nargs as usize;
    let context = match (kwnames, first_name) {
        (None, _) => None,
        (Some(_), Some(name)) if is_context(py, name) => Some(arg(nargs)),
        (Some(_), _) => return checked(py, slf, all, nargs, kwnames),
    };
    if nargs == 0 {
        return checked(py, slf, all, nargs, kwnames);
    }
    // SAFETY: the method descriptor checked that `slf` is an instance of `CoreLoop` (or of a
    // subclass) before calling (see the contract above).
    let slf = unsafe { slf.cast_unchecked::<CoreLoop>() };
    // `context=None` means "not given", as for the PyO3 method.
    let context = context.filter(|context| !context.is_none());
    let args = match nargs {
        1 => Args::from_slice(py, &[])?,
        2 => Args::from_slice(py, &[arg(1)])?,
        _ => Args::from_slice(py, &(1..nargs).map(arg).collect::<Vec<_>>())?,
    };
    let handle = CoreLoop::schedule_soon(&slf, &arg(0), args, context.as_deref())?;
    Ok(handle.into_ptr())
}

/// Any other form of call: PyO3's `call_soon` binds it (and raises its errors).
fn checked(
    py: Python<'_>,
    slf: Borrowed<'_, '_, PyAny>,
    all: &[*mut ffi::PyObject],
    nargs: usize,
    kwnames: Option<Borrowed<'_, '_, PyAny>>,
) -> PyResult<*mut ffi::PyObject> {
    let checked = CHECKED.get(py).expect("installed before the descriptor that calls it");
    let mut stack = Vec::with_capacity(all.len() + 1);
    stack.push(slf.as_ptr());
    stack.extend_from_slice(all);
    let kwnames = kwnames.map_or(std::ptr::null_mut(), |names| names.as_ptr());
    // SAFETY: the GIL is held; `checked` is a live callable; `stack` holds `nargs + 1`
    // positional arguments then one value per keyword name, all borrowed and alive for the
    // call; `PyObject_Vectorcall` returns a new reference or NULL with an exception set.
    let result = unsafe { ffi::PyObject_Vectorcall(checked.as_ptr(), stack.as_ptr(), nargs + 1, kwnames) };
    // SAFETY: `result` is a new reference or NULL with an exception set.
    Ok(unsafe { Bound::from_owned_ptr_or_err(py, result)? }.into_ptr())
}
