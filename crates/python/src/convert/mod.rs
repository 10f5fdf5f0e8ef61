//! Python objects to the engine's inputs, one concern a module:
//!
//! * `scalar`: one Python object to a [`Value`] (the table below);
//! * `rows`: dicts (`write`, `write_many`) to rows, and runs of dicts with the same keys to
//!   columnar batches;
//! * `columns`: a dict of columns (`write_columns`) to columnar batches, and the typed
//!   accumulator that both take Python objects into typed columns with;
//! * `numpy`: numpy arrays by their bytes.
//!
//! What comes out is an [`Item`] for the engine's queue (or its dead-letter spool).
//!
//! | Python | [`Value`] | lands in |
//! |---|---|---|
//! | `None` | `Null` | NULL, or the column's default when it is not `Nullable` |
//! | `bool` | `Bool` | Bool, integers |
//! | `int` | `Int`/`UInt` (64 bit), `Int128`/`UInt128`, else its decimal text | any integer width up to 256 bits, Decimal, Float |
//! | `float` | `Float` | Float32/64, Decimal |
//! | `str` | `String` | String, and anything ClickHouse can read from text |
//! | `bytes`, `bytearray`, `memoryview` | `Bytes` | String, FixedString (need not be UTF-8), UUID/IPv6 (16 bytes) |
//! | `datetime` | ISO text; naive ones are read in the column's time zone, aware ones keep their instant | DateTime, DateTime64, Date |
//! | `date`, `time` | ISO text | Date, Date32, DateTime*, String |
//! | `timedelta` | `Float` seconds | numbers |
//! | `Decimal`, `UUID`, `IPv4Address`, `IPv6Address` | their text (exact) | Decimal*, UUID, IPv4, IPv6, String |
//! | `enum.Enum` | its value | |
//! | `list`, `set` | `Array` | Array, positional Tuple, Map (as a list of pairs) |
//! | `tuple` | `Tuple`; a named tuple becomes an object with its field names | Tuple, Array |
//! | `dict` | `Object` (all keys `str`) or `Map` | Map, named Tuple, JSON |
//! | numpy scalars | their Python value (`datetime64` as ISO text, `NaT` as `None`) | |
//! | numpy arrays (nested) | `Array` | Array |

use chasync_core::DynInput;
#[cfg(doc)]
use chasync_core::Value;
use pyo3::Python;

mod columns;
mod numpy;
mod rows;
mod scalar;

pub use columns::{RawColumn, pieces, take_columns, zip_pieces};
pub use numpy::numpy_column;
pub use rows::convert_rows;
pub use scalar::{Types, short_repr, to_value, types};

/// What to do with a row the frontend cannot convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Raise `ConversionError`; nothing of the call is taken.
    Raise,
    /// Dead-letter the row with its reason (through the engine's spool); the others go on.
    DeadLetter,
}

/// One unit of work for the engine.
pub enum Item {
    /// Rows for the queue.
    Input(DynInput),
    /// A row that could not be converted, for the dead-letter spool.
    Reject {
        /// Why.
        reason: String,
        /// A readable copy of the row.
        record: String,
    },
}

impl Item {
    /// The rows it holds.
    pub fn rows(&self) -> usize {
        match self {
            Item::Input(DynInput::Row(_)) | Item::Reject { .. } => 1,
            Item::Input(DynInput::Columns(c)) => c.rows(),
        }
    }
}

/// Lets other threads (the event loop) take the GIL now and then during a long conversion on
/// a thread of its own. Native code holding the GIL is never asked to give it up, and releasing
/// it only to take it back at once starves the waiting thread (its timed wait restarts on every
/// release and never asks for a switch): a short pause lets it in. At most 0.1 ms per 2 ms of
/// work (~5%), only for conversions that run in the background.
pub struct Yielder {
    on: bool,
    n: u32,
    last: std::time::Instant,
}

impl Yielder {
    /// A yielder; `background` false makes it do nothing (conversions on the loop's thread).
    pub fn new(background: bool) -> Self {
        Self {
            on: background,
            n: 0,
            last: std::time::Instant::now(),
        }
    }

    /// Call once per converted item.
    #[inline]
    pub fn tick(&mut self, py: Python<'_>) {
        if !self.on {
            return;
        }
        self.n += 1;
        if self.n < 256 {
            return;
        }
        self.n = 0;
        if self.last.elapsed() >= std::time::Duration::from_millis(2) {
            py.detach(|| std::thread::sleep(std::time::Duration::from_micros(100)));
            self.last = std::time::Instant::now();
        }
    }
}

#[cfg(test)]
mod test_support {
    use chasync_core::Value;

    /// `UInt` within `i64` as `Int`: an accumulator that went unsigned keeps its earlier
    /// (non-negative) ints as `UInt`, which every column type reads the same.
    pub fn norm(v: Value) -> Value {
        match v {
            Value::UInt(u) if u <= i64::MAX as u64 => Value::Int(u as i64),
            Value::Array(items) => Value::Array(items.into_iter().map(norm).collect()),
            Value::Object(fields) => {
                Value::Object(fields.into_iter().map(|(k, v)| (k, norm(v))).collect())
            }
            other => other,
        }
    }
}
