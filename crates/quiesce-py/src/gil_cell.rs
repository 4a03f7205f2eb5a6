//! Interior mutability for state that is only ever touched with the GIL held.
//!
//! A `#[pyclass]` must be `Sync`, and the loop's state is mutated from `call_soon`, which a
//! running callback re-enters at any time. A `Mutex` would deadlock on that re-entry; this cell
//! instead turns it into a Python exception. Callers keep borrows short and never run Python
//! code (including dropping Python objects) while a borrow is open: values that may need
//! dropping are moved out of the closure and dropped after it returns.

use std::cell::{Cell, UnsafeCell};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// A `RefCell` whose borrows require the GIL.
pub struct GilCell<T> {
    borrowed: Cell<bool>,
    value: UnsafeCell<T>,
}

// SAFETY: every access path (`with`, `peek_for_gc`) requires the GIL: `with` takes a `Python`
// token and `peek_for_gc` is only called from `__traverse__`, which the garbage collector runs
// with the GIL held. The extension module is declared `gil_used = true`, so even a free-threaded
// interpreter re-enables the GIL when it loads us. Hence at most one thread is inside at a time,
// and the `borrowed` flag rejects re-entry from the same thread.
unsafe impl<T: Send> Sync for GilCell<T> {}

struct ReleaseOnDrop<'a>(&'a Cell<bool>);

impl Drop for ReleaseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl<T> GilCell<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Self { borrowed: Cell::new(false), value: UnsafeCell::new(value) }
    }

    /// Runs `f` with exclusive access. Fails (instead of aliasing) if already borrowed, which can
    /// only happen if Python code ran inside another borrow.
    pub fn with<R>(&self, _py: Python<'_>, f: impl FnOnce(&mut T) -> R) -> PyResult<R> {
        if self.borrowed.replace(true) {
            return Err(PyRuntimeError::new_err(
                "quiesce: loop state re-entered while it was being updated (a finalizer or another \
                 thread ran inside the scheduler); this is a quiesce bug, please report it",
            ));
        }
        let _release = ReleaseOnDrop(&self.borrowed);
        // SAFETY: the flag was false, so no other reference into the cell exists, and the GIL
        // (held: we have a `Python` token) keeps other threads out until `_release` drops.
        let value = unsafe { &mut *self.value.get() };
        Ok(f(value))
    }

    /// Read access for the garbage collector's traversal; `None` while a borrow is open (then
    /// the referents are simply not reported, which only keeps objects alive longer).
    pub fn peek_for_gc(&self) -> Option<&T> {
        if self.borrowed.get() {
            return None;
        }
        // SAFETY: called from `__traverse__` with the GIL held; no mutable borrow is open (flag
        // checked above) and none can start, because traversal runs no Python code.
        Some(unsafe { &*self.value.get() })
    }
}

/// An optional value only ever touched with the GIL held, which its owner may take out (a
/// cancelled handle drops its callback). Reads clone what they need under the GIL and run no
/// Python code while they look, so a value cannot be dropped under a live reference to it.
pub struct GilSlot<T>(UnsafeCell<Option<T>>);

// SAFETY: as for `GilCell`: every access (`get`, `take`) takes a `Python` token, and
// `peek_for_gc` runs only in `__traverse__`, with the GIL held and no Python code running; the
// module is `gil_used`, so one thread at a time is inside, and no access runs Python code
// while it holds a reference into the slot.
unsafe impl<T: Send> Sync for GilSlot<T> {}

impl<T> GilSlot<T> {
    /// A slot holding `value`.
    pub fn new(value: T) -> Self {
        Self(UnsafeCell::new(Some(value)))
    }

    /// What `read` makes of the value (`None` once taken). `read` must not run Python code
    /// (no calls, no drops of Python objects): it only looks, and clones what it needs.
    pub fn get<R>(&self, _py: Python<'_>, read: impl FnOnce(Option<&T>) -> R) -> R {
        // SAFETY: the GIL is held (`_py`), and `read` runs no Python code, so nothing can call
        // `take` while the shared reference lives.
        read(unsafe { (*self.0.get()).as_ref() })
    }

    /// Takes the value out, leaving `replacement`; the caller drops the old value (with the
    /// GIL held, outside any other access).
    pub fn replace(&self, _py: Python<'_>, replacement: Option<T>) -> Option<T> {
        // SAFETY: the GIL is held and no reference into the slot is alive: `get` hands out
        // references only to closures that run no Python code, and this is not one of them.
        unsafe { std::mem::replace(&mut *self.0.get(), replacement) }
    }

    /// The value, for the garbage collector's traversal only.
    pub fn peek_for_gc(&self) -> Option<&T> {
        // SAFETY: called from `__traverse__` with the GIL held; traversal runs no Python code,
        // so no `replace` can happen while the reference lives.
        unsafe { (*self.0.get()).as_ref() }
    }
}
