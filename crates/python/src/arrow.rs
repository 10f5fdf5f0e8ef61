//! Arrow input through the [Arrow PyCapsule interface]: any object with
//! `__arrow_c_stream__` (pyarrow `Table`/`RecordBatch`/`RecordBatchReader`, polars
//! `DataFrame`, ...) is imported without a copy through the C stream interface, and its
//! columns become engine columns without the GIL by the engine's own Arrow conversion
//! ([`chasync_core::arrow`], which the command line's Parquet and Arrow files share):
//! numbers, booleans, strings, binaries, timestamps and dates as typed columns (one copy of
//! the buffers, no per-cell values), and so are lists and maps of such columns; everything
//! else as values.
//!
//! One of the two places of the crate with `unsafe` code (the other is a cache prefetch hint
//! in `convert/columns.rs`): taking the stream out of its capsule.
//!
//! [Arrow PyCapsule interface]: https://arrow.apache.org/docs/format/CDataInterface/PyCapsuleInterface.html

use std::ffi::CStr;

use arrow_array::RecordBatch;
use arrow_array::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyCapsuleMethods};

pub use chasync_core::arrow::batch_chunks;

const STREAM_CAPSULE: &CStr = c"arrow_array_stream";

/// Whether `obj` exports an Arrow C stream.
pub fn is_arrow(obj: &Bound<'_, PyAny>) -> bool {
    obj.hasattr(intern!(obj.py(), "__arrow_c_stream__"))
        .unwrap_or(false)
}

/// Imports every record batch of `obj.__arrow_c_stream__()`. The batches share the
/// producer's buffers (no copy). Reading releases the GIL (producers that need it take it).
pub fn import_stream(obj: &Bound<'_, PyAny>) -> PyResult<Vec<RecordBatch>> {
    let py = obj.py();
    let capsule = obj.call_method0(intern!(py, "__arrow_c_stream__"))?;
    let capsule = capsule.cast::<PyCapsule>()?;
    let ptr = capsule.pointer_checked(Some(STREAM_CAPSULE))?;
    #[allow(unsafe_code)]
    // SAFETY: the PyCapsule interface says a capsule named "arrow_array_stream" holds a
    // pointer to a valid, initialised, aligned `struct ArrowArrayStream`, owned by the capsule
    // (`pointer_checked` verified the name and that the pointer is not null). `from_raw` moves
    // the stream out and leaves a released (empty) struct behind, so the capsule's destructor,
    // which releases only streams whose `release` is set, does not free it a second time. The
    // capsule stays alive (we hold a reference) while the struct is read.
    let reader =
        unsafe { RecordBatchStreamReader::from_raw(ptr.as_ptr().cast::<FFI_ArrowArrayStream>()) }
            .map_err(|e| PyValueError::new_err(format!("cannot import the Arrow stream: {e}")))?;
    py.detach(move || reader.collect::<Result<Vec<_>, _>>())
        .map_err(|e| PyValueError::new_err(format!("cannot read the Arrow stream: {e}")))
}
