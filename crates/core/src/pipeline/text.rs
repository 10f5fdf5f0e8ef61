//! Text input: NDJSON, CSV and TSV records into a table, routed the fastest way that stores

use std::sync::Arc;

use bytes::Bytes;

use crate::batch::Format;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::dedup::StreamId;
use crate::error::{Error, Result};
use crate::format::{
    BatchEncoder, DelimitedRows, Delimiter, JsonEachRow, JsonRowBinary, JsonRowBinaryOptions,
    check_object,
};
use crate::pipeline::writer::{Refused, Writer};
use crate::pipeline::{Pipeline, PipelineBuilder};
use crate::stats::Stats;

/// A text format, a record at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    /// One JSON object per line.
    Ndjson,
    /// CSV records.
    Csv,
    /// TabSeparated lines (ClickHouse's escaping).
    Tsv,
}

/// How text records are loaded.
#[derive(Debug, Clone)]
pub struct TextOptions {
    /// The format of the records.
    pub format: TextFormat,
    /// The columns CSV/TSV records fill, in order (a header line's names); `None`: the table's
    /// [positional columns](crate::TableSchema::positional_columns).
    pub columns: Option<Vec<String>>,
    /// NDJSON: convert the lines the client can convert exactly to `RowBinaryWithDefaults`
    /// (otherwise every line goes to the server as `JSONEachRow`).
    pub convert: bool,
    /// Ignore fields that name no column (otherwise the server refuses such a row, and it is
    /// dead-lettered with its reason).
    pub skip_unknown_fields: bool,
}

impl TextOptions {
    /// The defaults for `format`: converted where exact, unknown fields refused.
    pub fn new(format: TextFormat) -> Self {
        Self {
            format,
            columns: None,
            convert: true,
            skip_unknown_fields: false,
        }
    }
}

/// Why a record was not taken.
#[derive(Debug)]
pub enum TextRefused {
    /// The record is malformed; dead-letter it (with [`TextWriter::reject`]) or stop.
    Malformed {
        /// Why.
        reason: String,
        /// The record.
        record: Bytes,
    },
    /// The pipeline is shut down.
    Closed,
}

/// A running load of text records into one table.
///
/// Text input: NDJSON, CSV and TSV records into a table, routed the fastest way that stores
/// exactly what the server's own parsing would.
///
/// NDJSON takes the fast path unless [`TextOptions::convert`] is off: [`JsonRowBinary`], as
/// the row encoder of a [`Writer`] on the producer's thread, converts each line to
/// `RowBinaryWithDefaults` for the table's column types where it can do so exactly; any
/// other line is checked (one JSON object) and goes to a second pipeline that sends it as
/// `JSONEachRow` (its own stream of batch ids, derived from the first), so the server parses
/// that line as it would have without the fast path. CSV and TSV records are sent as they are
/// (`CSV`, `TabSeparated`), with the columns they fill.
///
/// A malformed record is handed back with its reason ([`TextRefused::Malformed`]); the caller
/// dead-letters it with its place ([`TextWriter::reject`]) or stops.
pub struct TextPipeline {
    main: Pipeline<Box<dyn BatchEncoder<Row = Bytes>>>,
    pass_through: Option<Pipeline<JsonEachRow>>,
    format: TextFormat,
    encoding: Format,
    injects_insert_id: bool,
    width: Option<usize>,
    not_converted: Option<String>,
}

/// The stream id of the pass-through pipeline: derived from the main stream's, distinct from
/// it, and as reproducible as it is.
fn pass_through_stream(main: StreamId) -> StreamId {
    StreamId::named(&format!("{}/json-pass-through", main.0))
}

impl TextPipeline {
    /// Reads the table's schema and starts the pipelines on the current runtime.
    pub async fn start(mut config: Config, opts: TextOptions) -> Result<Self> {
        config.validate()?;
        if !opts.skip_unknown_fields {
            config
                .clickhouse
                .settings
                .entry("input_format_skip_unknown_fields".into())
                .or_insert_with(|| "0".into());
        }
        let stream = *config
            .delivery
            .stream_id
            .get_or_insert_with(StreamId::random);
        let catalog = Arc::new(Catalog::new(&config));
        catalog.check_settings(&config.clickhouse.settings).await?;
        let table = catalog
            .table(&config.clickhouse.database, &config.table)
            .await?;
        let insert_id = table.insert_id().filter(|_| config.delivery.fill_insert_id);
        let mut not_converted = None;
        let (encoder, encoding, width): (Box<dyn BatchEncoder<Row = Bytes>>, _, _) =
            match opts.format {
                TextFormat::Ndjson => {
                    let converter = if opts.convert {
                        JsonRowBinary::new(
                            &table,
                            insert_id.clone(),
                            JsonRowBinaryOptions {
                                skip_unknown_fields: opts.skip_unknown_fields,
                            },
                        )
                        .map_err(|why| not_converted = Some(why))
                        .ok()
                    } else {
                        None
                    };
                    match converter {
                        Some(c) => (Box::new(c), Format::RowBinaryWithDefaults, None),
                        None => (
                            Box::new(JsonEachRow::new(insert_id.clone(), Vec::new())),
                            Format::JsonEachRow,
                            None,
                        ),
                    }
                }
                TextFormat::Csv | TextFormat::Tsv => {
                    let (delimiter, encoding) = if opts.format == TextFormat::Csv {
                        (Delimiter::Csv, Format::Csv)
                    } else {
                        (Delimiter::Tsv, Format::TabSeparated)
                    };
                    let columns = match opts.columns.clone().filter(|c| !c.is_empty()) {
                        Some(c) => c,
                        None => table.positional_columns().map(|c| c.name.clone()).collect(),
                    };
                    // A header's width is checked on the client; positional columns are the
                    // server's to check.
                    let width = opts.columns.as_ref().map(|_| columns.len());
                    (
                        Box::new(DelimitedRows::new(delimiter, columns, insert_id.clone())),
                        encoding,
                        width,
                    )
                }
            };
        let pass_through = if encoding == Format::RowBinaryWithDefaults {
            let mut c = config.clone();
            c.delivery.stream_id = Some(pass_through_stream(stream));
            Some(
                PipelineBuilder::new(c)
                    .catalog(catalog.clone())
                    .start_with_encoder(JsonEachRow::new(insert_id.clone(), Vec::new()))?,
            )
        } else {
            None
        };
        let main = PipelineBuilder::new(config)
            .catalog(catalog)
            .start_with_encoder(encoder)?;
        Ok(Self {
            main,
            pass_through,
            format: opts.format,
            encoding,
            injects_insert_id: insert_id.is_some(),
            width: width.filter(|_| opts.format == TextFormat::Tsv),
            not_converted,
        })
    }

    /// The format the main pipeline sends: `RowBinaryWithDefaults` (NDJSON converted on the
    /// client), `JSONEachRow`, `CSV` or `TabSeparated`.
    pub fn encoding(&self) -> Format {
        self.encoding
    }

    /// Why NDJSON is not converted on the client (a column type without an exact conversion),
    /// when it was asked for and is not.
    pub fn not_converted(&self) -> Option<&str> {
        self.not_converted.as_deref()
    }

    /// A writer for one producer (one thread or task).
    pub fn writer(&self) -> TextWriter {
        TextWriter {
            main: self.main.handle().writer(),
            pass_through: self.pass_through.as_ref().map(|p| p.handle().writer()),
            format: self.format,
            injects_insert_id: self.injects_insert_id,
            width: self.width,
            passed_through: 0,
        }
    }

    /// The counters of the main pipeline and, on the fast path, of the lines passed through.
    pub fn stats(&self) -> (Stats, Option<Stats>) {
        (
            self.main.stats(),
            self.pass_through.as_ref().map(Pipeline::stats),
        )
    }

    /// Commits or dead-letters everything written, then stops; the final counters as
    /// [`stats`](Self::stats).
    pub async fn shutdown(self) -> Result<(Stats, Option<Stats>)> {
        let main = self.main.shutdown().await?;
        let pass = match self.pass_through {
            Some(p) => Some(p.shutdown().await?),
            None => None,
        };
        Ok((main, pass))
    }
}

/// One producer's writer of text records: see [`TextPipeline::writer`].
pub struct TextWriter {
    main: Writer<Bytes>,
    pass_through: Option<Writer<Bytes>>,
    format: TextFormat,
    injects_insert_id: bool,
    width: Option<usize>,
    passed_through: u64,
}

impl TextWriter {
    /// Takes one record (without its line end): converted, or checked and passed through.
    pub async fn write(&mut self, record: Bytes) -> std::result::Result<(), TextRefused> {
        let record = match &mut self.pass_through {
            // Converted here, or handed back unconverted: then checked and sent as JSONEachRow.
            Some(_) => match self.main.try_write(record).await {
                Ok(()) => return Ok(()),
                Err(Refused::Closed(_)) => return Err(TextRefused::Closed),
                Err(Refused::Unencodable(record, _)) => record,
            },
            None => record,
        };
        match self.format {
            TextFormat::Ndjson => match check_object(&record) {
                Err(reason) => {
                    return Err(TextRefused::Malformed {
                        reason: format!("invalid JSON: {reason}"),
                        record,
                    });
                }
                Ok(info) if info.has_insert_id && self.injects_insert_id => {
                    return Err(TextRefused::Malformed {
                        reason: "the row sets _insert_id, which chasync fills with the batch id"
                            .into(),
                        record,
                    });
                }
                Ok(_) => {}
            },
            TextFormat::Tsv => {
                if let Some(reason) = check_tsv_line(&record, self.width) {
                    return Err(TextRefused::Malformed { reason, record });
                }
            }
            TextFormat::Csv => {}
        }
        let writer = match &mut self.pass_through {
            Some(w) => {
                self.passed_through += 1;
                w
            }
            None => &mut self.main,
        };
        writer.write(record).await.map_err(|_| TextRefused::Closed)
    }

    /// Dead-letters a malformed record with its reason (say, `file:line: why`), in order with
    /// the records written before it.
    pub async fn reject(&mut self, reason: String, raw: Option<String>) -> Result<()> {
        self.main.send_buffered().await;
        self.main.handle().reject(reason, raw).await
    }

    /// Records sent as JSONEachRow because the fast path did not convert them.
    pub fn passed_through(&self) -> u64 {
        self.passed_through
    }

    /// Hands what the writer buffers to the engine and drops it.
    pub async fn close(self) {
        self.main.close().await;
        if let Some(w) = self.pass_through {
            w.close().await;
        }
    }
}

/// Why a TabSeparated line is malformed: its width against the columns, or a dangling
/// backslash.
fn check_tsv_line(text: &[u8], width: Option<usize>) -> Option<String> {
    let fields = text.iter().filter(|b| **b == b'\t').count() + 1;
    if let Some(w) = width
        && fields != w
    {
        return Some(format!("{fields} fields, the header has {w}"));
    }
    let trailing = text.iter().rev().take_while(|b| **b == b'\\').count();
    (trailing % 2 == 1).then(|| "a backslash at the end of a field".into())
}

/// The error of a record that cannot be handed to a closed pipeline.
impl From<TextRefused> for Error {
    fn from(r: TextRefused) -> Self {
        match r {
            TextRefused::Closed => Error::Closed,
            TextRefused::Malformed { reason, .. } => Error::Encode(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_lines_are_checked() {
        assert_eq!(check_tsv_line(b"a\tb", Some(2)), None);
        assert_eq!(
            check_tsv_line(b"a\tb\tc", Some(2)).as_deref(),
            Some("3 fields, the header has 2")
        );
        assert!(check_tsv_line(b"a\\", None).is_some());
        assert_eq!(check_tsv_line(b"a\\\\", None), None);
    }
}
