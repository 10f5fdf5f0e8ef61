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
///
/// It is also a coroutine as asyncio sees one (`__await__`, `send`, `throw`, `close`:
/// `collections.abc.Coroutine`), so `asyncio.create_task(ins.write(row))` and
/// `asyncio.gather(...)` take it.
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

    /// Finishes at once: raises `StopIteration` (the result is `None`).
    fn send(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let _ = value;
        Err(pyo3::exceptions::PyStopIteration::new_err(()))
    }

    /// Raises the exception thrown in, as a coroutine that has not started does.
    #[pyo3(signature = (typ, val=None, tb=None))]
    fn throw(
        &self,
        typ: &Bound<'_, PyAny>,
        val: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let _ = tb;
        Err(thrown(typ, val))
    }

    /// Nothing to close.
    fn close(&self) {}

    fn __repr__(&self) -> &'static str {
        "<chasync ready>"
    }
}

/// An awaitable still waiting for the engine: it wraps the asyncio future of the hand-off
/// (`future_into_py`), which resolves on the event loop. `await` awaits the future itself;
/// `send`, `throw` and `close` make it a coroutine as asyncio sees one, so
/// `asyncio.create_task` takes it (a future alone is not a coroutine).
#[pyclass(module = "chasync._native")]
pub struct Pending {
    future: Py<PyAny>,
    /// The future's iterator, once the object is driven as a coroutine.
    iter: Option<Py<PyAny>>,
}

impl Pending {
    /// Wraps an asyncio future.
    pub fn wrap(future: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyAny>> {
        let py = future.py();
        Ok(Bound::new(
            py,
            Pending {
                future: future.unbind(),
                iter: None,
            },
        )?
        .into_any())
    }

    fn iter<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if self.iter.is_none() {
            self.iter = Some(self.future.bind(py).call_method0("__await__")?.unbind());
        }
        Ok(self.iter.as_ref().expect("set above").bind(py).clone())
    }
}

#[pymethods]
impl Pending {
    fn __await__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.future.bind(py).call_method0("__await__")
    }

    /// Drives the wrapped future one step (as a coroutine's `send`).
    fn send<'py>(
        &mut self,
        py: Python<'py>,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.iter(py)?.call_method1("send", (value,))
    }

    /// Throws an exception into the wrapped future's await (as a coroutine's `throw`).
    #[pyo3(signature = (typ, val=None, tb=None))]
    fn throw<'py>(
        &mut self,
        py: Python<'py>,
        typ: &Bound<'py, PyAny>,
        val: Option<&Bound<'py, PyAny>>,
        tb: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = tb;
        let iter = self.iter(py)?;
        Err(
            match iter.call_method1("throw", (thrown(typ, val).into_value(py),)) {
                Ok(yielded) => return Ok(yielded),
                Err(e) => e,
            },
        )
    }

    /// Closes the await (the rows handed over still land).
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        if let Some(iter) = &self.iter
            && let Ok(close) = iter.bind(py).getattr("close")
        {
            close.call0()?;
        }
        Ok(())
    }

    fn __repr__(&self) -> &'static str {
        "<chasync pending>"
    }
}

/// The exception of a `throw(typ, val)` call: `val` when it is one, else `typ` called with
/// `val` (or nothing), as generators do.
fn thrown(typ: &Bound<'_, PyAny>, val: Option<&Bound<'_, PyAny>>) -> PyErr {
    if typ.is_instance_of::<pyo3::exceptions::PyBaseException>() {
        return PyErr::from_value(typ.clone());
    }
    if let Some(v) = val.filter(|v| v.is_instance_of::<pyo3::exceptions::PyBaseException>()) {
        return PyErr::from_value(v.clone());
    }
    let made = match val.filter(|v| !v.is_none()) {
        Some(v) => typ.call1((v,)),
        None => typ.call0(),
    };
    match made {
        Ok(e) => PyErr::from_value(e),
        Err(e) => e,
    }
}

/// The native module.
#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    errors::register(m)?;
    m.add_class::<Ready>()?;
    m.add_class::<Pending>()?;
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
