//! `quiesce._core`: the native half of `quiesce.Loop`.

mod core_loop;
#[cfg(not(feature = "abi3"))]
mod fast_call;
mod gil_cell;
mod handle;
mod thread_calls;
mod turn;

use pyo3::prelude::*;

/// Native scheduling core of quiesce; use `quiesce.Loop`, not this module.
#[pymodule(gil_used = true)]
mod _core {
    use pyo3::prelude::*;

    #[pymodule_export]
    use crate::core_loop::CoreLoop;
    #[pymodule_export]
    use crate::handle::{Handle, TimerHandle};
    #[pymodule_export]
    use crate::thread_calls::thread_system_calls;
    #[pymodule_export]
    use crate::turn::OutsideFacts;

    #[pymodule_init]
    fn init(module: &Bound<'_, PyModule>) -> PyResult<()> {
        #[cfg(not(feature = "abi3"))]
        crate::fast_call::install(module.py(), &module.py().get_type::<CoreLoop>())?;
        module.add("MAX_PCT_DEPTH", quiesce_core::MAX_PCT_DEPTH)?;
        module.add("PCT_MAX_STREAK", quiesce_core::PCT_MAX_STREAK)?;
        Ok(())
    }
}
