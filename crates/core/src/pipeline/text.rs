//! Text input: NDJSON, CSV and TSV records into a table, routed the fastest way that stores

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

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
use crate::pipeline::batcher::SealHook;
use crate::pipeline::writer::{Refused, Writer};
use crate::pipeline::{Pipeline, PipelineBuilder};
use crate::spool::journal::Journal;
use crate::stats::Stats;
use crate::types::schema::TableSchema;

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
    /// Make the load re-runnable: batch ids from the input's identity, batches cut by
    /// content only, a journal of committed batches (see [`Rerun`]). `None`: a random stream
    /// (unless the configuration names one) and batches sealed on `linger` too.
    pub rerun: Option<Rerun>,
}

impl TextOptions {
    /// The defaults for `format`: converted where exact, unknown fields refused, not
    /// re-runnable.
    pub fn new(format: TextFormat) -> Self {
        Self {
            format,
            columns: None,
            convert: true,
            skip_unknown_fields: false,
            rerun: None,
        }
    }
}

/// How a load of files is made re-runnable.
///
/// Its batch ids derive from `identity` and from everything else that decides which rows a
/// batch holds: the target table, its columns (names, types, defaults), the format and its
/// options (columns of a header, conversion, unknown fields), `max_rows` and `max_bytes`.
/// Batches are sealed on rows and bytes only, never on `linger` (time), so the same input
/// forms the same batches under the same ids on every run: a re-run after any crash lands
/// each row once on a table that deduplicates (the ids are the dedup tokens). Records must
/// reach the pipeline in the same order on every run (one producer).
///
/// Every committed batch is appended to a journal, `<spool_dir>/journal/<stream id>.log`;
/// with `resume`, the batches it lists are not sent again (counted in
/// [`TextPipeline::skipped`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rerun {
    /// What identifies the input (see [`Rerun::of_files`]).
    pub identity: String,
    /// Skip the batches the journal lists as committed.
    pub resume: bool,
}

impl Rerun {
    /// The identity of files: for each, in order, its absolute path, its size and its
    /// modification time (nanoseconds). Renaming, moving, rewriting or touching a file
    /// changes it; copying the files elsewhere does too.
    pub fn of_files(paths: &[PathBuf], resume: bool) -> std::io::Result<Self> {
        let mut identity = String::from("files");
        for p in paths {
            let abs = std::fs::canonicalize(p).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot open {}: {e}", p.display()))
            })?;
            let meta = std::fs::metadata(&abs)?;
            let mtime = meta
                .modified()?
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            identity.push_str(&format!("\n{}\t{}\t{mtime}", abs.display(), meta.len()));
        }
        Ok(Self { identity, resume })
    }
}

/// Batches left out of a resumed load because the journal lists them as committed.
#[derive(Debug, Default)]
struct Skipped {
    batches: AtomicU64,
    rows: AtomicU64,
}

/// The stream of a re-runnable load: its identity and all that decides batch contents.
fn rerun_stream(
    rerun: &Rerun,
    config: &Config,
    table: &TableSchema,
    opts: &TextOptions,
    insert_id: bool,
) -> StreamId {
    let mut key = format!(
        "chasync text load v1\n{}\n{}.{}\n{:?} columns={:?} convert={} skip_unknown={} \
         insert_id={insert_id} max_rows={} max_bytes={}\n",
        rerun.identity,
        config.clickhouse.database,
        config.table,
        opts.format,
        opts.columns,
        opts.convert,
        opts.skip_unknown_fields,
        config.batching.max_rows,
        config.batching.max_bytes,
    );
    key.push_str(&table.server_timezone);
    key.push('\n');
    for c in &table.columns {
        key.push_str(&format!(
            "{}\t{}\t{:?}\t{}\n",
            c.name, c.type_name, c.default_kind, c.default_expression
        ));
    }
    StreamId::named(&key)
}

/// Batch sealing never waits for time in a re-runnable load: a year.
const CONTENT_ONLY_LINGER: Duration = Duration::from_secs(365 * 86_400);

/// The seal hook of a re-runnable load's pipeline: batches the journal lists are held back
/// (when resuming); the others are watched, and recorded once committed.
fn journal_hook(
    journal: Arc<Journal>,
    resume: bool,
    skipped: Arc<Skipped>,
    pending: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    runtime: tokio::runtime::Handle,
) -> SealHook {
    Box::new(move |batch| {
        if resume && journal.committed(&batch.id()) {
            skipped.batches.fetch_add(1, Relaxed);
            skipped.rows.fetch_add(batch.rows() as u64, Relaxed);
            return Box::pin(async { false });
        }
        let ack = batch.watch();
        let (journal, id) = (journal.clone(), batch.id());
        let task = runtime.spawn(async move {
            if ack.wait().await.is_ok() {
                let j = journal.clone();
                let written = tokio::task::spawn_blocking(move || j.record(&id)).await;
                if let Ok(Err(e)) = written {
                    tracing::warn!(error = %e.report(), "cannot write the load's journal");
                }
            }
        });
        let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|t| !t.is_finished());
        pending.push(task);
        Box::pin(async { true })
    })
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
    stream: StreamId,
    journal: Option<Arc<Journal>>,
    skipped: Arc<Skipped>,
    pending: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

/// Where the journals of re-runnable loads are kept: `<spool_dir>/journal`.
pub(crate) fn journal_dir(spool_dir: &Path) -> PathBuf {
    spool_dir.join("journal")
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
        let catalog = Arc::new(Catalog::new(&config)?);
        catalog.check_settings(&config.clickhouse.settings).await?;
        let table = catalog
            .table(&config.clickhouse.database, &config.table)
            .await?;
        let insert_id = table.insert_id().filter(|_| config.delivery.fill_insert_id);
        if let Some(rerun) = &opts.rerun {
            // A stream the configuration names is kept: it is reproducible already.
            if config.delivery.stream_id.is_none() {
                config.delivery.stream_id = Some(rerun_stream(
                    rerun,
                    &config,
                    &table,
                    &opts,
                    insert_id.is_some(),
                ));
            }
            config.batching.linger = CONTENT_ONLY_LINGER;
        }
        let stream = *config
            .delivery
            .stream_id
            .get_or_insert_with(StreamId::random);
        let journal = match &opts.rerun {
            Some(_) => Some(Arc::new(Journal::open(
                &journal_dir(&config.spool.dir),
                stream.0,
            )?)),
            None => None,
        };
        let skipped = Arc::new(Skipped::default());
        let pending = Arc::new(std::sync::Mutex::new(Vec::new()));
        let resume = opts.rerun.as_ref().is_some_and(|r| r.resume);
        let hook = |journal: &Option<Arc<Journal>>| {
            journal.as_ref().map(|j| {
                journal_hook(
                    j.clone(),
                    resume,
                    skipped.clone(),
                    pending.clone(),
                    tokio::runtime::Handle::current(),
                )
            })
        };
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
            let mut b = PipelineBuilder::new(c).catalog(catalog.clone());
            if let Some(h) = hook(&journal) {
                b = b.on_seal(h);
            }
            Some(b.start_with_encoder(JsonEachRow::new(insert_id.clone(), Vec::new()))?)
        } else {
            None
        };
        let mut b = PipelineBuilder::new(config).catalog(catalog);
        if let Some(h) = hook(&journal) {
            b = b.on_seal(h);
        }
        let main = b.start_with_encoder(encoder)?;
        Ok(Self {
            main,
            pass_through,
            format: opts.format,
            encoding,
            injects_insert_id: insert_id.is_some(),
            width: width.filter(|_| opts.format == TextFormat::Tsv),
            not_converted,
            stream,
            journal,
            skipped,
            pending,
        })
    }

    /// The stream the batch ids derive from (the pass-through pipeline's derives from it).
    pub fn stream_id(&self) -> StreamId {
        self.stream
    }

    /// The journal of committed batches of a re-runnable load, and how many batches it
    /// listed when the load started.
    pub fn journal(&self) -> Option<(&Path, usize)> {
        self.journal.as_ref().map(|j| (j.path(), j.len()))
    }

    /// The dispatchers of the load's pipelines, e.g. to [`abandon`](crate::Dispatcher::abandon)
    /// delivery at a deadline (also while [`shutdown`](Self::shutdown) drains).
    pub fn dispatchers(&self) -> Vec<Arc<crate::Dispatcher>> {
        let mut out = vec![self.main.dispatcher().clone()];
        out.extend(self.pass_through.as_ref().map(|p| p.dispatcher().clone()));
        out
    }

    /// The error of the last failed insert attempt, if any failed.
    pub fn last_failure(&self) -> Option<String> {
        self.main.dispatcher().last_failure().or_else(|| {
            self.pass_through
                .as_ref()
                .and_then(|p| p.dispatcher().last_failure())
        })
    }

    /// Batches, and their rows, that a resumed load did not send because the journal lists
    /// them as committed.
    pub fn skipped(&self) -> (u64, u64) {
        (
            self.skipped.batches.load(Relaxed),
            self.skipped.rows.load(Relaxed),
        )
    }

    /// [`skipped`](Self::skipped), readable after [`shutdown`](Self::shutdown) (the last
    /// batches are sealed there).
    pub fn skipped_handle(&self) -> impl Fn() -> (u64, u64) + Send + Sync + 'static {
        let skipped = self.skipped.clone();
        move || (skipped.batches.load(Relaxed), skipped.rows.load(Relaxed))
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
        let main = self.main.shutdown().await;
        let pass = match self.pass_through {
            Some(p) => Some(p.shutdown().await),
            None => None,
        };
        // Every batch has ended: its journal line is being written.
        let pending: Vec<_> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for task in pending {
            let _ = task.await;
        }
        Ok((main?, pass.transpose()?))
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
