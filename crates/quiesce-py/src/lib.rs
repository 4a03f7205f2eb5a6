//! `quiesce._core`: the native half of `quiesce.Loop`.

mod core_loop;
mod gil_cell;
mod handle;

use pyo3::prelude::*;

/// Native scheduling core of quiesce; use `quiesce.Loop`, not this module.
#[pymodule(gil_used = true)]
mod _core {
    #[pymodule_export]
    use crate::core_loop::CoreLoop;
    #[pymodule_export]
    use crate::handle::{Handle, TimerHandle};
}
