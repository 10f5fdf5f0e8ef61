//! `chasync insert` of Parquet and Arrow (IPC file and stream) inputs.
//!
//! The files are read here as Arrow record batches; the engine converts them
//! ([`chasync_core::arrow`], the path Python's `write_columns` takes for Arrow data) to
//! columns of the table's types, batches them, inserts them as Native with retries and
//! batch-id dedup, isolates the rows the server refuses, and dead-letters what cannot land,
//! each row that cannot be converted with its reason. Into a sharded target (a Distributed
//! table, or `--cluster`) each row goes to its shard ([`chasync_core::DynTarget`]).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use chasync_core::arrow::arrow_array::RecordBatch;
use chasync_core::arrow::batch_chunks;
use chasync_core::{DynInput, DynTarget, NativeOptions};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{InputFormat, InsertArgs};
use crate::error::{CliError, exit};
use crate::insert::{InsertSummary, print_summary};
use crate::output::print_json;
use crate::settings::Settings;

/// Record batches of one input, with its name.
struct Source {
    name: String,
    batches: Box<dyn Iterator<Item = Result<RecordBatch, String>> + Send>,
    /// Rows in all, when the file says (Parquet's footer).
    rows: Option<u64>,
}

/// Rows per record batch read from a Parquet file.
const READ_ROWS: usize = 65_536;

/// The magic bytes at the start of an Arrow IPC file (a stream has none).
const ARROW_FILE_MAGIC: &[u8; 6] = b"ARROW1";

fn open(path: &Path, format: InputFormat) -> Result<Source, CliError> {
    let name = path.display().to_string();
    let err = |e: &dyn std::fmt::Display| CliError::error(format!("{name}: {e}"));
    if path == Path::new("-") {
        if format != InputFormat::ArrowStream {
            return Err(CliError::usage(format!(
                "{format:?} input needs a file (it is read from its end); stdin can be an \
                 Arrow stream (--format ArrowStream)"
            )));
        }
        let reader = arrow_ipc::reader::StreamReader::try_new(
            BufReader::new(Box::new(std::io::stdin()) as Box<dyn Read + Send>),
            None,
        )
        .map_err(|e| err(&e))?;
        return Ok(Source {
            name,
            batches: Box::new(reader.map(|r| r.map_err(|e| e.to_string()))),
            rows: None,
        });
    }
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".gz") || lower.ends_with(".zst") || lower.ends_with(".zstd") {
        return Err(CliError::usage(format!(
            "{name}: Parquet and Arrow files are read as they are (they compress inside); \
             decompress the file first"
        )));
    }
    let mut file = File::open(path).map_err(|e| err(&format!("cannot open: {e}")))?;
    match format {
        InputFormat::Parquet => {
            let builder =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| err(&format!("not a Parquet file we can read: {e}")))?;
            let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).ok();
            let reader = builder
                .with_batch_size(READ_ROWS)
                .build()
                .map_err(|e| err(&e))?;
            Ok(Source {
                name,
                batches: Box::new(reader.map(|r| r.map_err(|e| e.to_string()))),
                rows,
            })
        }
        _ => {
            // The file and the stream format both name themselves `.arrow` at times: the
            // first bytes tell.
            let mut magic = [0u8; 6];
            let is_file = file.read_exact(&mut magic).is_ok() && &magic == ARROW_FILE_MAGIC;
            let file = File::open(path).map_err(|e| err(&format!("cannot open: {e}")))?;
            let batches: Box<dyn Iterator<Item = Result<RecordBatch, String>> + Send> = if is_file {
                let reader = arrow_ipc::reader::FileReader::try_new(file, None)
                    .map_err(|e| err(&format!("not an Arrow IPC file we can read: {e}")))?;
                Box::new(reader.map(|r| r.map_err(|e| e.to_string())))
            } else {
                let reader = arrow_ipc::reader::StreamReader::try_new(BufReader::new(file), None)
                    .map_err(|e| {
                    err(&format!("not an Arrow IPC file or stream we can read: {e}"))
                })?;
                Box::new(reader.map(|r| r.map_err(|e| e.to_string())))
            };
            Ok(Source {
                name,
                batches,
                rows: None,
            })
        }
    }
}

/// Runs `insert` of Parquet or Arrow inputs.
pub async fn run(
    settings: &Settings,
    args: InsertArgs,
    db: String,
    table: String,
    format: InputFormat,
) -> Result<u8, CliError> {
    for (given, flag) in [
        (args.strict, "--strict"),
        (args.no_header, "--no-header"),
        (args.no_convert, "--no-convert"),
        (args.threads.is_some(), "--threads"),
    ] {
        if given {
            return Err(CliError::usage(format!(
                "{flag} is for NDJSON, CSV and TSV input; Parquet and Arrow rows that cannot \
                 be converted are dead-lettered with their reason"
            )));
        }
    }
    for (given, flag) in [
        (args.resume, "--resume"),
        (args.deadline.is_some(), "--deadline"),
        (args.stop_on_bad_input, "--stop-on-bad-input"),
    ] {
        if given {
            return Err(CliError::usage(format!(
                "{flag} is for NDJSON, CSV and TSV input: loads of Parquet and Arrow files are \
                 not re-runnable (their batch ids are random)"
            )));
        }
    }
    // Every input opens (and its footer or schema reads) before anything is sent.
    let sources = args
        .files
        .iter()
        .map(|f| open(f, format))
        .collect::<Result<Vec<_>, _>>()?;
    let total_rows: Option<u64> = sources.iter().map(|s| s.rows).sum();
    let config = settings.config(&db, &table)?;
    let dlq_dir = config.spool.dir.clone();
    // Columnar pieces of at most ~64k rows that add up to the batch size.
    let k = config.batching.max_rows.div_ceil(65_536).max(1);
    let chunk_rows = config.batching.max_rows.div_ceil(k).max(1);
    let opts = NativeOptions {
        skip_unknown_keys: args.skip_unknown_fields,
        ..NativeOptions::default()
    };
    // One pipeline, or one per shard of a sharded target (a Distributed table, or
    // --cluster): each row goes to its shard, and rows that cannot be routed to the spool.
    let ingestor = DynTarget::start(config, opts).await.map_err(|e| match e {
        chasync_core::Error::Config(msg) => CliError::error(msg),
        e => e.into(),
    })?;
    let bar = progress_bar(settings, total_rows);
    let started = Instant::now();
    let ticker = {
        let handle = ingestor.handle();
        landed_ticker(&bar, move || handle.stats())
    };
    let feed = {
        let (handle, bar) = (ingestor.handle(), bar.clone());
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || -> Result<u64, CliError> {
            let mut read = 0u64;
            for source in sources {
                for batch in source.batches {
                    let batch = batch.map_err(|e| {
                        CliError::error(format!("read error: {}: {e}", source.name))
                    })?;
                    let rows = batch.num_rows() as u64;
                    let pieces = batch_chunks(&batch, chunk_rows).map_err(|e| {
                        CliError::error(format!(
                            "{}: {e} ({read} rows before it were handed to the engine)",
                            source.name
                        ))
                    })?;
                    for piece in pieces {
                        rt.block_on(handle.send(DynInput::Columns(piece)))
                            .map_err(|_| CliError::error("the engine stopped accepting rows"))?;
                    }
                    read += rows;
                    bar.inc(rows);
                }
            }
            Ok(read)
        })
    };
    let read = feed
        .await
        .map_err(|e| CliError::error(format!("reader failed: {e}")))?;
    ticker.abort();
    let _ = ticker.await;
    // Everything handed over is committed or dead-lettered before the run ends, also when
    // reading stopped with an error.
    let stats = ingestor.shutdown().await?;
    bar.finish_and_clear();
    let read = read?;
    let elapsed = started.elapsed().as_secs_f64();
    let summary = InsertSummary::native(
        format!("{db}.{table}"),
        &args,
        read,
        0,
        dlq_dir,
        elapsed,
        stats,
    );
    if settings.json {
        print_json(&summary);
    } else if !settings.quiet {
        print_summary(&summary);
    }
    Ok(if summary.rows_dead_lettered > 0 {
        exit::NOT_COMMITTED
    } else {
        exit::OK
    })
}

/// Shows the rows landed and dead-lettered on `bar` five times a second, until aborted.
pub(crate) fn landed_ticker(
    bar: &ProgressBar,
    stats: impl Fn() -> chasync_core::Stats + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let bar = bar.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            let s = stats();
            bar.set_message(format!(
                "{} rows landed, {} dead-lettered",
                s.rows_committed, s.rows_dead_lettered
            ));
        }
    })
}

pub(crate) fn progress_bar(settings: &Settings, total_rows: Option<u64>) -> ProgressBar {
    if settings.quiet || settings.json || settings.verbose_logs {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(total_rows, ProgressDrawTarget::stderr());
    let template = if total_rows.is_some() {
        "{elapsed_precise} [{bar:30}] {pos}/{len} rows read, ETA {eta} {msg}"
    } else {
        "{elapsed_precise} {spinner} {pos} rows read {msg}"
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("template")
            .progress_chars("=> "),
    );
    bar
}
