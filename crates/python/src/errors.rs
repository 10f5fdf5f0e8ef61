//! The exception hierarchy, and how engine errors map onto it.
//!
//! ```text
//! chasync.Error
//!  ├── ConfigError       bad options, unknown table, unreachable at start
//!  ├── ConversionError   a Python value the engine cannot take (.row .column .value .target_type)
//!  ├── ConnectionError   ClickHouse cannot be reached (also a builtin `ConnectionError`)
//!  ├── ServerError       ClickHouse answered with an exception (.code .name)
//!  ├── QueueFull         try_write found the queue full
//!  ├── DeadLettered      rows went to the dead-letter spool (.rows .batches .spool .last_error)
//!  └── ClosedError       the inserter is closed (or not started)
//! ```

use chasync_core::Error as CoreError;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

create_exception!(
    chasync,
    Error,
    PyException,
    "Base class of every chasync error."
);
create_exception!(
    chasync,
    ConfigError,
    Error,
    "The configuration cannot work: a bad option, an unknown table, a server that cannot be reached at start."
);
create_exception!(
    chasync,
    ConversionError,
    Error,
    "A Python value cannot be converted. Attributes: row, column, value, target_type."
);
create_exception!(
    chasync,
    ServerError,
    Error,
    "ClickHouse answered with an exception. Attributes: code, name."
);
create_exception!(
    chasync,
    QueueFull,
    Error,
    "The engine's queue is full (try_write); nothing of the call was taken."
);
create_exception!(
    chasync,
    DeadLettered,
    Error,
    "Rows could not be committed and were written to the dead-letter spool. Attributes: rows, batches, spool, last_error."
);
create_exception!(
    chasync,
    ClosedError,
    Error,
    "The inserter is closed (or was never started)."
);

/// `chasync.ConnectionError`, made at import: it derives from both `chasync.Error` and the
/// builtin `ConnectionError` (an `OSError`), which `create_exception!` (one base) cannot say.
static CONNECTION_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// The class `chasync.ConnectionError`.
pub fn connection_error_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    CONNECTION_ERROR
        .get_or_try_init(py, || {
            let builtins = py.import("builtins")?;
            let bases = PyTuple::new(
                py,
                [
                    py.get_type::<Error>().into_any(),
                    builtins.getattr("ConnectionError")?,
                ],
            )?;
            let namespace = PyDict::new(py);
            namespace.set_item("__module__", "chasync")?;
            namespace.set_item(
                "__doc__",
                "ClickHouse cannot be reached: the connection failed or broke (refused, reset). \
                 A subclass of both chasync.Error and the builtin ConnectionError.",
            )?;
            let class = builtins
                .getattr("type")?
                .call1(("ConnectionError", bases, namespace))?;
            Ok::<_, PyErr>(class.cast_into::<PyType>()?.unbind())
        })
        .map(|t| t.bind(py))
}

/// A `chasync.ConnectionError` with this message.
pub fn connection_error(py: Python<'_>, msg: String) -> PyErr {
    match connection_error_type(py) {
        Ok(t) => PyErr::from_type(t.clone(), msg),
        Err(e) => e,
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("ConnectionError", connection_error_type(py)?)?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("ConversionError", py.get_type::<ConversionError>())?;
    m.add("ServerError", py.get_type::<ServerError>())?;
    m.add("QueueFull", py.get_type::<QueueFull>())?;
    m.add("DeadLettered", py.get_type::<DeadLettered>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    Ok(())
}

/// A `ConversionError` raised by the frontend (the value never reached the engine, so
/// `target_type` is `None`).
#[derive(Debug, Clone)]
pub struct PyConversion {
    /// Index of the row in the call (or within the column).
    pub row: usize,
    /// The key or column.
    pub column: Option<String>,
    /// `repr()` of the value, cut to 200 characters.
    pub value: String,
    /// Why.
    pub reason: String,
}

impl PyConversion {
    /// The Python exception.
    pub fn into_pyerr(self, py: Python<'_>) -> PyErr {
        let msg = match &self.column {
            Some(c) => format!(
                "row {}, column `{c}`: cannot convert {}: {}",
                self.row, self.value, self.reason
            ),
            None => format!(
                "row {}: cannot convert {}: {}",
                self.row, self.value, self.reason
            ),
        };
        let err = ConversionError::new_err(msg);
        let v = err.value(py);
        let _ = v.setattr("row", self.row);
        let _ = v.setattr("column", self.column);
        let _ = v.setattr("value", self.value);
        let _ = v.setattr("target_type", py.None());
        err
    }
}

/// The Python exception for an engine error.
pub fn to_pyerr(py: Python<'_>, err: CoreError) -> PyErr {
    let msg = err.report();
    match err {
        CoreError::Config(_) | CoreError::UnknownTable { .. } => ConfigError::new_err(msg),
        CoreError::Server { code, name, .. } => {
            let e = ServerError::new_err(msg);
            let v = e.value(py);
            let _ = v.setattr("code", code);
            let _ = v.setattr("name", name);
            e
        }
        CoreError::DeadLettered {
            batches,
            rows,
            spool,
            last_error,
            code,
        } => {
            let e = DeadLettered::new_err(msg);
            let v = e.value(py);
            let _ = v.setattr("code", code);
            let _ = v.setattr("rows", rows);
            let _ = v.setattr("batches", batches);
            let _ = v.setattr("spool", spool.display().to_string());
            let _ = v.setattr("last_error", last_error);
            e
        }
        CoreError::Closed => ClosedError::new_err(msg),
        // A TLS failure (a certificate problem, a server that does not speak TLS) is a
        // configuration to fix, not a server that is down: the base class, as the CLI does.
        CoreError::Network { message, .. } if chasync_core::tls::hint(&message).is_some() => {
            Error::new_err(msg)
        }
        CoreError::Network { .. } => connection_error(py, msg),
        _ => Error::new_err(msg),
    }
}

/// [`to_pyerr`] from a thread that may not be attached to Python.
pub fn to_pyerr_attached(err: CoreError) -> PyErr {
    Python::try_attach(|py| to_pyerr(py, err))
        .unwrap_or_else(|| Error::new_err("the Python interpreter is shutting down"))
}
