//! `chasync._native`: the Python frontend of the chasync engine.
//!
//! This crate only converts: Python objects (dicts, lists, numpy arrays, anything that
//! exports an Arrow C stream) become the engine's [`chasync_core::value::Value`],
//! [`chasync_core::value::DynRow`] and [`chasync_core::value::ColumnBatch`]. Batching,
//! backpressure, retries, deduplication and dead-lettering are the engine's
//! ([`chasync_core::DynIngestor`]).
//!
//! * [`inserter`]: the `Inserter` class and its hand-off to the engine (the async bridge);
//! * [`convert`]: Python values, rows and columns to engine values;
//! * [`arrow`]: the Arrow PyCapsule stream interface (`__arrow_c_stream__`);
//! * [`errors`]: the exception hierarchy;
//! * [`logging`]: the engine's `tracing` events forwarded to Python's `logging`.

pub mod arrow;
pub mod convert;
pub mod errors;
pub mod inserter;
pub mod logging;

use pyo3::prelude::*;

/// An awaitable that is already done: `await` returns `None` at once, without a trip through
/// the event loop. Returned by writes that the engine's queue took immediately.
#[pyclass(module = "chasync._native", frozen)]
pub struct Ready;

#[pymethods]
impl Ready {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self) -> Option<()> {
        None
    }

    fn __repr__(&self) -> &'static str {
        "<chasync ready>"
    }
}

/// The native module.
#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    errors::register(m)?;
    m.add_class::<Ready>()?;
    m.add_class::<inserter::Inserter>()?;
    m.add_function(wrap_pyfunction!(logging::sync_log_level, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    logging::install(py);
    Ok(())
}
