//! The data that moves between the stages: what an encoder makes of a batch's rows
//! ([`Encoded`]), the sealed [`Batch`] that delivery sends, and the [`Format`] of its bytes.
//!
//! Nothing here does I/O or knows how batches are formed: the batcher makes batches, delivery
//! sends them, the spool keeps those that cannot land.

pub(crate) mod ack;

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use crate::batch::ack::{AckSpan, AckState};
use crate::config::Credentials;

/// The ClickHouse input format of a batch's bytes.
///
/// Names are read ([`Format::named`], [`Format::from_name`], `FromStr`, `Deserialize`)
/// through the catalog of ClickHouse's formats ([`crate::format_info`]), aliases and case as
/// ClickHouse reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// `RowBinary`: typed rows, every column in the insert's column list.
    RowBinary,
    /// `RowBinaryWithDefaults`: RowBinary where each value may be replaced by the column's
    /// default (NDJSON converted on the client).
    RowBinaryWithDefaults,
    /// `Native`: columnar blocks (dynamic rows and columns).
    Native,
    /// `JSONEachRow`: one JSON object per line, parsed by the server.
    JsonEachRow,
    /// `CSV`.
    Csv,
    /// `TabSeparated`.
    TabSeparated,
    /// Any other ClickHouse input format, by its name (what a gateway's client sends).
    Other(&'static str),
}

impl Format {
    /// Every format, for parsing and listing.
    pub const ALL: [Format; 6] = [
        Format::RowBinary,
        Format::RowBinaryWithDefaults,
        Format::Native,
        Format::JsonEachRow,
        Format::Csv,
        Format::TabSeparated,
    ];

    /// ClickHouse's name of the format, as it appears after `FORMAT`.
    pub fn name(self) -> &'static str {
        match self {
            Format::RowBinary => "RowBinary",
            Format::RowBinaryWithDefaults => "RowBinaryWithDefaults",
            Format::Native => "Native",
            Format::JsonEachRow => "JSONEachRow",
            Format::Csv => "CSV",
            Format::TabSeparated => "TabSeparated",
            Format::Other(name) => name,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Format {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A row the encoder refused; it goes to the dead-letter spool and the batch goes on.
#[derive(Debug, Clone)]
pub struct RejectedRow {
    /// Why the row could not be encoded.
    pub reason: String,
    /// A readable copy of the row for the dead-letter spool (e.g. a JSON line), when the
    /// encoder can make one.
    pub record: Option<String>,
}

/// How a batch's rows can be told apart, to split the batch when the server rejects some of
/// its rows.
#[derive(Clone, Default)]
pub enum Parts {
    /// The batch cannot be split.
    #[default]
    Whole,
    /// Where each row starts in the bytes (formats whose rows are contiguous: RowBinary,
    /// JSONEachRow, CSV, TSV).
    Offsets(Arc<[u32]>),
    /// The rows themselves, to encode any range of them again (formats whose bytes cannot be
    /// cut at row boundaries: Native).
    Source(RowSourceRef),
    /// Indivisible inputs of several rows each (a gateway's requests), after a header that
    /// every part of the batch starts with (the header of a format `WithNames`, say).
    Units(Arc<Units>),
}

/// The inputs of a batch of [`Parts::Units`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Units {
    /// Bytes at the start of the batch that belong to no input and start every part of it.
    pub header_len: usize,
    /// Where each input starts in the batch's bytes.
    pub starts: Vec<u32>,
    /// The rows before each input, and all the rows at the end (one more than `starts`).
    pub rows: Vec<u64>,
}

impl Parts {
    /// Where each row starts, for [`Parts::Offsets`].
    pub fn offsets(&self) -> Option<&[u32]> {
        match self {
            Parts::Offsets(o) => Some(o),
            _ => None,
        }
    }
}

impl fmt::Debug for Parts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Parts::Whole => f.write_str("Whole"),
            Parts::Offsets(o) => write!(f, "Offsets({} rows)", o.len()),
            Parts::Source(s) => write!(f, "{s:?}"),
            Parts::Units(u) => write!(f, "Units({} inputs)", u.starts.len()),
        }
    }
}

/// What an encoder hands over for one batch.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The column list for `INSERT INTO t (columns)`, empty for all columns in table order.
    pub columns: Vec<String>,
    /// The format of `bytes`.
    pub format: Format,
    /// The encoded rows.
    pub bytes: Bytes,
    /// How many rows `bytes` holds.
    pub rows: usize,
    /// How the rows can be told apart (see [`Parts`]).
    pub parts: Parts,
}

/// The rows of a batch, kept so that any range of them can be encoded again (for formats
/// whose bytes cannot be cut at row boundaries).
pub trait RowSource: Send + Sync {
    /// Rows in the source.
    fn rows(&self) -> usize;
    /// Encodes rows `range` (of this source) as a batch with id `batch_id`; the result's
    /// parts cover just that range.
    fn encode(&self, range: Range<usize>, batch_id: Uuid) -> Encoded;
}

/// A shared [`RowSource`].
#[derive(Clone)]
pub struct RowSourceRef(pub Arc<dyn RowSource>);

impl fmt::Debug for RowSourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RowSource({} rows)", self.0.rows())
    }
}

/// Where a batch goes and how its id was made.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    /// The stream the id derives from.
    pub stream_id: Uuid,
    /// Sequence number of the batch in its stream.
    pub sequence: u64,
    /// Database of the target table.
    pub database: Arc<str>,
    /// Target table.
    pub table: Arc<str>,
    /// ClickHouse settings of its insert.
    pub settings: Arc<[(String, String)]>,
    /// The user it is inserted as (`None`: the dispatcher's).
    pub credentials: Option<Credentials>,
    /// `settings` are every setting of the insert, the engine's own included (a replay of a
    /// recorded insert): the sink sends them as they are and adds none.
    pub exact_settings: bool,
}

/// A sealed batch: the unit that delivery sends and, if need be, the spool keeps.
///
/// Its id is deterministic ([`crate::StreamId::batch_id`]): it is the insert's
/// `insert_deduplication_token` and `query_id`, and the value of the table's `_insert_id`
/// column, so every attempt and every replay of the batch lands once on a table that
/// deduplicates. Every attempt sends the same bytes.
#[derive(Debug, Clone)]
pub struct Batch {
    pub(crate) id: Uuid,
    pub(crate) origin: Origin,
    pub(crate) columns: Arc<[String]>,
    pub(crate) format: Format,
    pub(crate) bytes: Bytes,
    pub(crate) rows: usize,
    pub(crate) parts: Parts,
    /// The numbers of the inputs the batch was formed from (see [`Batch::inputs`]).
    pub(crate) inputs: Range<u64>,
    /// Rows the encoder refused while this batch was open.
    pub(crate) rejected: Vec<RejectedRow>,
    /// Acknowledgements waiting for this batch, each with the units that hold its rows.
    pub(crate) acks: Vec<AckSpan>,
    /// An attempt of this batch may have been sent already, with an unknown outcome.
    pub(crate) maybe_sent: Option<MaybeSent>,
    /// Its rows carry its id in the table's `_insert_id` column.
    pub(crate) insert_id: bool,
}

/// An attempt of a batch may have been sent, and whether it landed is not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MaybeSent {
    /// The earliest time such an attempt can have started (`None`: not known).
    pub since: Option<std::time::SystemTime>,
}

impl MaybeSent {
    /// The earlier of two.
    pub(crate) fn merge(self, other: MaybeSent) -> MaybeSent {
        MaybeSent {
            since: match (self.since, other.since) {
                (Some(a), Some(b)) => Some(a.min(b)),
                _ => None,
            },
        }
    }
}

impl Batch {
    /// The batch id: dedup token, `query_id` and `_insert_id` value.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The stream the id derives from.
    pub fn stream_id(&self) -> Uuid {
        self.origin.stream_id
    }

    /// The sequence number of the batch in its stream.
    pub fn sequence(&self) -> u64 {
        self.origin.sequence
    }

    /// The database of the target table.
    pub fn database(&self) -> &str {
        &self.origin.database
    }

    /// The target table.
    pub fn table(&self) -> &str {
        &self.origin.table
    }

    /// The ClickHouse settings its insert is sent with.
    pub fn settings(&self) -> &[(String, String)] {
        &self.origin.settings
    }

    /// The user it is inserted as, when not the dispatcher's.
    pub fn user(&self) -> Option<&str> {
        self.origin.credentials.as_ref().map(|c| c.user.as_str())
    }

    /// The insert's column list (empty: every column, in table order).
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The format of [`bytes`](Self::bytes).
    pub fn format(&self) -> Format {
        self.format
    }

    /// The encoded rows, sent as they are by every attempt.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Rows in the bytes.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The numbers of the inputs the batch was formed from: inputs are numbered in the order
    /// they reach the batcher, from [`crate::Target::first_input`], refused ones included.
    /// A frontend that numbers its inputs the same way (a write-ahead log's rows, a file's
    /// lines) knows from it exactly which of them a batch holds. The halves of a split batch
    /// keep the range of the batch they came from.
    pub fn inputs(&self) -> Range<u64> {
        self.inputs.clone()
    }

    /// Marks the batch as one that may have been sent before, by a process that did not live
    /// to hear the answer (a write-ahead log's batch sealed before a crash, formed again
    /// under the same id). Before sending it, delivery establishes whether that attempt
    /// landed, and sends it only if it did not (see [`crate::Guarantee`]). `not_before` is the
    /// earliest time such an attempt can have started (`None`: not known); the absence of the
    /// attempt from the server's query log proves that it never started only when the server
    /// has been up since then.
    pub fn mark_maybe_sent(&mut self, not_before: Option<std::time::SystemTime>) {
        let new = MaybeSent { since: not_before };
        self.maybe_sent = Some(match self.maybe_sent {
            Some(old) => old.merge(new),
            None => new,
        });
    }

    /// Whether an attempt of the batch may have been sent already (see
    /// [`mark_maybe_sent`](Self::mark_maybe_sent)).
    pub fn maybe_sent(&self) -> bool {
        self.maybe_sent.is_some()
    }

    /// Whether every row of the batch carries the batch id in the table's `_insert_id`
    /// column, so that the rows of the batch can be found in the table.
    pub fn carries_insert_id(&self) -> bool {
        self.insert_id
    }

    /// Rows the encoder refused while the batch was open (they go to the spool).
    pub fn rejected(&self) -> &[RejectedRow] {
        &self.rejected
    }

    /// An acknowledgement that resolves when this batch has ended: committed (`Ok`), or with
    /// rows in the dead-letter spool (`Err(Error::DeadLettered)`); for a frontend that keeps
    /// its own record of each batch (a write-ahead log's commit).
    pub fn watch(&mut self) -> crate::batch::ack::Ack {
        let (state, ack) = AckState::new(1);
        self.acks.push(AckSpan {
            ack: state,
            units: 0..u32::MAX,
            refused: 0,
        });
        ack
    }

    /// The units the batch splits at: rows, or the inputs of [`Parts::Units`].
    pub(crate) fn units(&self) -> usize {
        match &self.parts {
            Parts::Whole => self.rows,
            Parts::Offsets(o) => o.len(),
            Parts::Source(s) => s.0.rows(),
            Parts::Units(u) => u.starts.len(),
        }
    }

    /// The rows of units `units` (clamped to the batch).
    pub(crate) fn rows_in(&self, units: &Range<u32>) -> u64 {
        let n = self.units() as u64;
        let (start, end) = (u64::from(units.start).min(n), u64::from(units.end).min(n));
        if n == 0 || end <= start {
            return 0;
        }
        // One row per unit, but for a batch that cannot be split (one unit, all rows).
        match &self.parts {
            Parts::Whole => self.rows as u64,
            Parts::Units(u) => u.rows[end as usize] - u.rows[start as usize],
            _ => end - start,
        }
    }

    /// How the batch's rows can be told apart.
    pub fn parts(&self) -> &Parts {
        &self.parts
    }

    /// Whether the batch has nothing to send: no rows, and no input whose rows are not
    /// counted (a body of a format the engine does not read, such as Parquet, counts as
    /// rows it cannot see).
    pub fn is_empty(&self) -> bool {
        match &self.parts {
            Parts::Units(u) => u.starts.is_empty(),
            _ => self.rows == 0,
        }
    }

    /// Whether the batch can be split into halves (see [`split`](Self::split)).
    pub fn splittable(&self) -> bool {
        match &self.parts {
            Parts::Whole => false,
            Parts::Units(u) => u.starts.len() > 1,
            _ => self.rows > 1,
        }
    }

    /// The acknowledgement spans of the halves of a split at unit `mid`: a span on both sides
    /// of the cut is held by both halves (one more hold), each with its own units.
    fn split_acks(&self, mid: u32) -> (Vec<AckSpan>, Vec<AckSpan>) {
        let (mut left, mut right) = (Vec::new(), Vec::new());
        for span in &self.acks {
            let u = &span.units;
            if u.end <= mid || u.start == u.end {
                left.push(span.clone());
            } else if u.start >= mid {
                right.push(AckSpan {
                    units: u.start - mid..u.end - mid,
                    ..span.clone()
                });
            } else {
                span.ack.hold();
                left.push(AckSpan {
                    units: u.start..mid,
                    ..span.clone()
                });
                right.push(AckSpan {
                    units: 0..u.end - mid,
                    refused: 0,
                    ack: span.ack.clone(),
                });
            }
        }
        (left, right)
    }

    /// Splits the batch into two halves at a row boundary, each with an id derived from this
    /// batch's id (`id/0`, `id/1`). Only for a batch known not to have landed (the server
    /// rejected its data: one batch is one atomic insert block). `None` when the batch has
    /// one row or its format cannot be split.
    pub fn split(&self) -> Option<(Batch, Batch)> {
        if !self.splittable() {
            return None;
        }
        let mid = self.units() / 2;
        let derived = |part| crate::dedup::derived_id(&self.id, part);
        // The halves of a batch whose bytes are cut keep the parent's id in `_insert_id`;
        // those encoded again carry their own.
        let insert_id = self.insert_id && matches!(self.parts, Parts::Source(_));
        let half = |id: Uuid, columns: Arc<[String]>, format, bytes, rows, parts, acks| Batch {
            id,
            origin: self.origin.clone(),
            columns,
            format,
            bytes,
            rows,
            parts,
            inputs: self.inputs.clone(),
            rejected: Vec::new(),
            acks,
            maybe_sent: None,
            insert_id,
        };
        match &self.parts {
            Parts::Whole => None,
            Parts::Units(units) => {
                let cut = units.starts[mid] as usize;
                let header = self.bytes.slice(..units.header_len);
                let part = |n: u32, inputs: Range<usize>, bytes: Range<usize>, acks| {
                    let base = bytes.start as u32;
                    let body = self.bytes.slice(bytes);
                    let joined = if header.is_empty() {
                        body
                    } else {
                        let mut b = bytes::BytesMut::with_capacity(header.len() + body.len());
                        b.extend_from_slice(&header);
                        b.extend_from_slice(&body);
                        b.freeze()
                    };
                    let shift = base as i64 - units.header_len as i64;
                    let first_rows = units.rows[inputs.start];
                    half(
                        derived(n),
                        self.columns.clone(),
                        self.format,
                        joined,
                        (units.rows[inputs.end] - first_rows) as usize,
                        Parts::Units(Arc::new(Units {
                            header_len: units.header_len,
                            starts: units.starts[inputs.clone()]
                                .iter()
                                .map(|s| (*s as i64 - shift) as u32)
                                .collect(),
                            rows: units.rows[inputs.start..=inputs.end]
                                .iter()
                                .map(|r| r - first_rows)
                                .collect(),
                        })),
                        acks,
                    )
                };
                let (left_acks, right_acks) = self.split_acks(mid as u32);
                let n = units.starts.len();
                Some((
                    part(0, 0..mid, units.starts[0] as usize..cut, left_acks),
                    part(1, mid..n, cut..self.bytes.len(), right_acks),
                ))
            }
            Parts::Source(source) => {
                let encoded = |part: u32, range: Range<usize>, acks| {
                    let id = derived(part);
                    let enc = source.0.encode(range, id);
                    half(
                        id,
                        enc.columns.into(),
                        enc.format,
                        enc.bytes,
                        enc.rows,
                        enc.parts,
                        acks,
                    )
                };
                let (left_acks, right_acks) = self.split_acks(mid as u32);
                Some((
                    encoded(0, 0..mid, left_acks),
                    encoded(1, mid..self.rows, right_acks),
                ))
            }
            Parts::Offsets(offsets) => {
                if offsets.len() != self.rows {
                    return None;
                }
                let cut = offsets[mid] as usize;
                let sliced = |part: u32, rows: Range<usize>, bytes: Range<usize>, acks| {
                    let base = bytes.start as u32;
                    half(
                        derived(part),
                        self.columns.clone(),
                        self.format,
                        self.bytes.slice(bytes),
                        rows.len(),
                        Parts::Offsets(offsets[rows].iter().map(|o| o - base).collect()),
                        acks,
                    )
                };
                let (left_acks, right_acks) = self.split_acks(mid as u32);
                Some((
                    sliced(0, 0..mid, 0..cut, left_acks),
                    sliced(1, mid..self.rows, cut..self.bytes.len(), right_acks),
                ))
            }
        }
    }
}
