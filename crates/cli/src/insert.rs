//! `chasync insert`: NDJSON / CSV / TSV files (or stdin) into a table.
//!
//! Records are read and checked here (well-formed JSON object, field count against the
//! header) and passed to the engine as they are: the engine batches them (JSONEachRow, CSV or
//! TabSeparated), inserts with retries and batch-id dedup, isolates rows the server refuses,
//! and dead-letters what cannot land. A malformed record goes to the dead-letter spool with
//! its `file:line` (or stops the run under `--strict`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chasync_core::encode::{DelimitedRows, Delimiter, JsonEachRow};
use chasync_core::{BatchEncoder, Handle, Pipeline, Stats};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::cli::{InputFormat, InsertArgs};
use crate::error::{CliError, exit};
use crate::input::{Item, Reader, format_from_name};
use crate::output::print_json;
use crate::settings::Settings;

/// The formats of the inputs, from `--format` or their names.
pub fn formats(args: &InsertArgs) -> Result<Vec<InputFormat>, CliError> {
    args.files
        .iter()
        .map(|f| {
            args.format.or_else(|| format_from_name(f)).ok_or_else(|| {
                CliError::usage(format!(
                    "cannot tell the format of {} from its name: give --format ndjson|csv|tsv",
                    f.display()
                ))
            })
        })
        .collect()
}

/// The summary printed at the end.
#[derive(Debug, Serialize)]
pub struct InsertSummary {
    /// `db.table`.
    pub table: String,
    /// Inputs read.
    pub files: Vec<PathBuf>,
    /// Records read, malformed ones included.
    pub rows_read: u64,
    /// Malformed records (dead-lettered, or the one that stopped a `--strict` run).
    pub rows_malformed: u64,
    /// Rows ClickHouse committed.
    pub rows_landed: u64,
    /// Rows in the dead-letter spool from this run (malformed and refused ones).
    pub rows_dead_lettered: u64,
    /// The dead-letter spool.
    pub dlq_dir: PathBuf,
    /// Insert attempts after the first.
    pub retries: u64,
    /// Batches committed.
    pub batches: u64,
    /// Seconds.
    pub elapsed_s: f64,
    /// Rows landed per second.
    pub rows_per_s: f64,
    /// The `--strict` stop, if any (`file:line: reason`).
    pub stopped_at: Option<String>,
    /// The engine's counters.
    pub stats: Stats,
}

enum Encoders {
    Json,
    Delimited(Delimiter, Vec<String>),
}

/// The columns a header-less CSV/TSV file fills: the table's insertable columns, in order,
/// but `_insert_id` (the engine fills it).
async fn positional_columns(
    settings: &Settings,
    db: &str,
    table: &str,
) -> Result<Vec<String>, CliError> {
    let client = settings.client()?;
    let cols: Vec<(String, String)> = client
        .query(
            "SELECT name, default_kind FROM system.columns WHERE database = ? AND table = ? \
             ORDER BY position",
        )
        .bind(db)
        .bind(table)
        .fetch_all()
        .await?;
    Ok(cols
        .into_iter()
        .filter(|(name, kind)| {
            name != "_insert_id" && !matches!(kind.as_str(), "MATERIALIZED" | "ALIAS" | "EPHEMERAL")
        })
        .map(|(name, _)| name)
        .collect())
}

/// Runs `insert`.
pub async fn run(settings: &Settings, args: InsertArgs) -> Result<u8, CliError> {
    let (db, table) = settings.table_ref(&args.table)?;
    let formats = formats(&args)?;
    let format = formats[0];
    if formats.iter().any(|f| *f != format) {
        return Err(CliError::usage(
            "all inputs of one run must have the same format; run chasync insert once per format",
        ));
    }
    if args
        .files
        .iter()
        .filter(|f| f.as_path() == Path::new("-"))
        .count()
        > 1
    {
        return Err(CliError::usage("stdin (-) can be read once"));
    }
    let mut readers = Vec::new();
    for f in &args.files {
        let reader =
            Reader::open(f, format, !args.no_header).map_err(|e| CliError::error(e.to_string()))?;
        readers.push(reader);
    }
    let header = readers
        .first()
        .and_then(|r| r.header().map(<[String]>::to_vec));
    if readers
        .iter()
        .any(|r| r.header().map(<[String]>::to_vec) != header)
    {
        return Err(CliError::usage(
            "the inputs have different header lines; run chasync insert once per layout",
        ));
    }
    let encoders = match format {
        InputFormat::Ndjson => Encoders::Json,
        InputFormat::Csv | InputFormat::Tsv => {
            let delimiter = if format == InputFormat::Csv {
                Delimiter::Csv
            } else {
                Delimiter::Tsv
            };
            let columns = match header {
                Some(h) if !h.is_empty() => h,
                _ => positional_columns(settings, &db, &table).await?,
            };
            Encoders::Delimited(delimiter, columns)
        }
    };

    let mut config = settings.config(&db, &table)?;
    if !args.skip_unknown_fields {
        config
            .settings
            .push(("input_format_skip_unknown_fields".into(), "0".into()));
    }
    let dlq_dir = config.dead_letter_dir.clone();
    let mut injects_insert_id = false;
    let pipeline = Pipeline::start_with(config, |t| -> Box<dyn BatchEncoder<Row = Bytes>> {
        match encoders {
            Encoders::Json => {
                injects_insert_id = t.insert_id.is_some();
                Box::new(JsonEachRow::new(t.insert_id.clone(), Vec::new()))
            }
            Encoders::Delimited(d, columns) => {
                Box::new(DelimitedRows::new(d, columns, t.insert_id.clone()))
            }
        }
    })
    .await
    .map_err(|e| match e {
        chasync_core::Error::Config(msg) => CliError::error(msg),
        e => e.into(),
    })?;

    let total_bytes: Option<u64> = args
        .files
        .iter()
        .map(|f| {
            let name = f.to_string_lossy();
            if f.as_path() == Path::new("-") || name.ends_with(".gz") || name.contains(".zst") {
                None
            } else {
                std::fs::metadata(f).ok().map(|m| m.len())
            }
        })
        .sum();
    let bar = progress_bar(settings, total_bytes);
    let started = Instant::now();
    let handle = pipeline.handle();
    let ticker = {
        let (bar, handle) = (bar.clone(), handle.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let s = handle.stats();
                bar.set_message(format!(
                    "{} rows landed, {} dead-lettered, {:.0} rows/s",
                    s.rows_committed,
                    s.rows_dead_lettered,
                    s.rows_committed as f64 / started.elapsed().as_secs_f64().max(1e-3)
                ));
            }
        })
    };

    // Reading and checking is blocking work: a thread of its own feeds the engine.
    let feed = {
        let (handle, bar) = (handle.clone(), bar.clone());
        let strict = args.strict;
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            feed(readers, &handle, &bar, strict, injects_insert_id, &rt)
        })
    };
    let fed = feed
        .await
        .map_err(|e| CliError::error(format!("reader failed: {e}")))?;
    drop(handle);
    let stats = pipeline.shutdown().await?;
    ticker.abort();
    bar.finish_and_clear();
    let fed = fed?;

    let elapsed = started.elapsed().as_secs_f64();
    let summary = InsertSummary {
        table: format!("{db}.{table}"),
        files: args.files.clone(),
        rows_read: fed.read,
        rows_malformed: fed.malformed,
        rows_landed: stats.rows_committed,
        rows_dead_lettered: stats.rows_dead_lettered,
        dlq_dir,
        retries: stats.retries,
        batches: stats.batches_committed,
        elapsed_s: elapsed,
        rows_per_s: stats.rows_committed as f64 / elapsed.max(1e-9),
        stopped_at: fed.stopped_at.clone(),
        stats,
    };
    if settings.json {
        print_json(&summary);
    } else if !settings.quiet {
        print_summary(&summary);
    }
    if let Some(place) = fed.stopped_at {
        return Err(CliError::error(format!(
            "--strict: stopped at a malformed record: {place} ({} rows before it landed)",
            summary.rows_landed
        )));
    }
    Ok(if summary.rows_dead_lettered > 0 {
        exit::NOT_COMMITTED
    } else {
        exit::OK
    })
}

fn progress_bar(settings: &Settings, total_bytes: Option<u64>) -> ProgressBar {
    if settings.quiet || settings.json {
        return ProgressBar::hidden();
    }
    match total_bytes {
        Some(total) => {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                )
                .expect("template")
                .progress_chars("=> "),
            );
            bar
        }
        None => {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{elapsed_precise} {spinner} {bytes} read {msg}")
                    .expect("template"),
            );
            bar
        }
    }
}

struct Fed {
    read: u64,
    malformed: u64,
    stopped_at: Option<String>,
}

fn feed(
    readers: Vec<Reader>,
    handle: &Handle<Bytes>,
    bar: &ProgressBar,
    strict: bool,
    injects_insert_id: bool,
    rt: &tokio::runtime::Handle,
) -> Result<Fed, CliError> {
    let mut fed = Fed {
        read: 0,
        malformed: 0,
        stopped_at: None,
    };
    // Records go to the engine in chunks: one hand-off per chunk, not per record.
    let mut chunk: Vec<Bytes> = Vec::with_capacity(CHUNK);
    let send = |chunk: &mut Vec<Bytes>| -> Result<(), CliError> {
        if chunk.is_empty() {
            return Ok(());
        }
        bar.inc(chunk.iter().map(|r| r.len() as u64 + 1).sum());
        rt.block_on(handle.send_all(chunk.drain(..)))
            .map_err(|_| CliError::error("the engine stopped accepting rows"))
    };
    for reader in readers {
        for item in reader {
            let Item {
                source,
                line,
                record,
            } = item.map_err(|e| CliError::error(format!("read error: {e}")))?;
            fed.read += 1;
            let place = format!("{source}:{line}");
            let record = match record {
                Ok(r) if injects_insert_id && r.has_insert_id => Err(crate::input::Malformed {
                    reason: "the row sets _insert_id, which chasync fills with the batch id".into(),
                    raw: Some(String::from_utf8_lossy(&r.bytes).into_owned()),
                }),
                other => other,
            };
            match record {
                Ok(r) => {
                    chunk.push(r.bytes);
                    if chunk.len() >= CHUNK {
                        send(&mut chunk)?;
                    }
                }
                Err(bad) => {
                    // Keep the order: what came before goes first.
                    send(&mut chunk)?;
                    fed.malformed += 1;
                    if let Some(raw) = &bad.raw {
                        bar.inc(raw.len() as u64 + 1);
                    }
                    let reason = format!("{place}: {}", bad.reason);
                    if strict {
                        fed.stopped_at = Some(reason);
                        return Ok(fed);
                    }
                    if !bar.is_hidden() {
                        bar.println(format!("malformed record dead-lettered: {reason}"));
                    } else {
                        eprintln!("malformed record dead-lettered: {reason}");
                    }
                    rt.block_on(handle.reject(reason, bad.raw))
                        .map_err(|e| CliError::error(e.to_string()))?;
                }
            }
        }
    }
    send(&mut chunk)?;
    Ok(fed)
}

/// Records per hand-off to the engine.
const CHUNK: usize = 1024;

fn print_summary(s: &InsertSummary) {
    println!("table:          {}", s.table);
    println!(
        "rows read:      {} ({} malformed)",
        s.rows_read, s.rows_malformed
    );
    println!("rows landed:    {}", s.rows_landed);
    if s.rows_dead_lettered > 0 {
        println!(
            "dead-lettered:  {} row(s), spool {} (chasync dlq list --dlq-dir {})",
            s.rows_dead_lettered,
            s.dlq_dir.display(),
            s.dlq_dir.display()
        );
    } else {
        println!("dead-lettered:  0");
    }
    println!("retries:        {}", s.retries);
    println!("batches:        {}", s.batches);
    println!("elapsed:        {:.3} s", s.elapsed_s);
    println!("throughput:     {:.0} rows/s", s.rows_per_s);
}
