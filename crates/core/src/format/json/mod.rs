//! JSON rows: the scanner ([`scan`]) that both readers share, the object checker
//! ([`check`]), the JSONEachRow pass-through ([`each_row`]) and the converter of NDJSON lines
//! to `RowBinaryWithDefaults` ([`to_rowbinary`]).

pub(crate) mod check;
pub(crate) mod each_row;
pub(crate) mod scan;
pub(crate) mod to_rowbinary;

pub use check::{JsonError, ObjectInfo, check_object, read_object};
pub use each_row::JsonEachRow;
pub(crate) use each_row::{id_prefix, write_object};
pub use to_rowbinary::{JsonRowBinary, JsonRowBinaryOptions};
