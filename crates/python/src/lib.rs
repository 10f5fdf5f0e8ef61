//! `chasync._native`: the Python frontend of the chasync engine.
//!
//! This crate only converts: Python objects (dicts, lists, numpy arrays, anything that
//! exports an Arrow C stream) become the engine's [`chasync_core::Value`],
//! [`chasync_core::DynRow`] and [`chasync_core::ColumnBatch`]. Batching,
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
pub mod runtime;

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
    let at_exit =
        pyo3::types::PyCFunction::new_closure(py, None, None, |args, _| args.py().detach(at_exit))?;
    py.import("atexit")?.call_method1("register", (at_exit,))?;
    Ok(())
}

/// At interpreter exit, while the interpreter is still whole (an `atexit` hook, run without
/// the GIL): no thread of ours may take the GIL once it finalizes, or the process aborts
/// (`PyGILState_Release: thread state ... must be current`, or a crash in a thread that
/// CPython ends while it waits for the GIL). The log forwarder stops; then, for up to two
/// seconds, the hook waits until no task is alive on the async runtime and every hand-over
/// of a result to Python, and every conversion job, has left the interpreter (see
/// [`runtime`]). The hand-over of the last awaitable may still be attached here: Python
/// sees the result as soon as `call_soon_threadsafe` has run, before that thread is done.
fn at_exit() {
    logging::stop();
    // Past the limit (a task that never ends), exit goes on: nothing is left to report to.
    let _ = runtime::wait_until_idle(std::time::Duration::from_secs(2));
}
