//! `chasync insert`: NDJSON / CSV / TSV files (or stdin) into a table; Parquet and Arrow
//! files go to [`crate::columnar`].
//!
//! Records are read here, with their file and line, and handed to the engine's
//! [`TextPipeline`], which routes each one (NDJSON converted to RowBinary on the client where
//! that is exact, or checked and passed through as JSONEachRow; CSV and TSV as they are),
//! batches, inserts with retries and batch-id dedup, isolates rows the server refuses, and
//! dead-letters what cannot land. A malformed record goes to the dead-letter spool with its
//! `file:line` (or stops the run under `--strict`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use chasync_core::{
    Format, Rerun, Stats, TextFormat, TextOptions, TextPipeline, TextRefused, TextWriter,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::cli::{FormatName, InputFormat, InsertArgs};
use crate::error::{CliError, exit};
use crate::input::{Item, Reader, format_from_name};
use crate::output::print_json;
use crate::settings::Settings;

/// The formats of the inputs, from `--format` or their names.
pub fn formats(args: &InsertArgs) -> Result<Vec<FormatName>, CliError> {
    args.files
        .iter()
        .map(|f| {
            args.format.or_else(|| format_from_name(f)).ok_or_else(|| {
                CliError::usage(format!(
                    "cannot tell the format of {} from its name: give --format (JSONEachRow, \
                     CSVWithNames, TSVWithNames, Parquet, Arrow, ... or ndjson, csv, tsv)",
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
    /// Inputs that could not be read to their end, each with the place it reached and why
    /// (the rows before that place were loaded).
    pub bad_inputs: Vec<String>,
    /// Where reading stopped because `--deadline` passed (`file:line`), if it did.
    pub deadline_passed_at: Option<String>,
    /// The stream the batch ids derive from: from the inputs' identity for files (the same
    /// command on the same files gives the same ids), random for stdin or `--threads` > 1.
    pub stream_id: String,
    /// Whether the batch ids derive from the inputs (a re-run lands each row once on a
    /// deduplicating table).
    pub rerunnable: bool,
    /// The journal of committed batches, for `--resume`.
    pub journal: Option<PathBuf>,
    /// Batches an earlier run committed, not sent again (`--resume`).
    pub batches_skipped: u64,
    /// Rows of those batches.
    pub rows_skipped: u64,
    /// The format the rows were sent in: `RowBinaryWithDefaults` (NDJSON converted on the
    /// client), `JSONEachRow`, `CSV`, `TabSeparated`, or `Native` (Parquet and Arrow).
    pub encoding: Format,
    /// NDJSON lines the fast path did not convert and sent as JSONEachRow.
    pub rows_passed_through: u64,
    /// The engine's counters (of the main pipeline).
    pub stats: Stats,
    /// The counters of the pipeline of lines passed through as JSONEachRow, on the fast path.
    pub pass_through_stats: Option<Stats>,
}

impl InsertSummary {
    /// The summary of a load of one engine pipeline sending `Native` (Parquet, Arrow, and
    /// sharded NDJSON): random batch ids, nothing passed through, no journal.
    pub(crate) fn native(
        table: String,
        args: &InsertArgs,
        rows_read: u64,
        rows_malformed: u64,
        dlq_dir: PathBuf,
        elapsed_s: f64,
        stats: Stats,
    ) -> Self {
        Self {
            table,
            files: args.files.iter().map(PathBuf::from).collect(),
            rows_read,
            rows_malformed,
            rows_landed: stats.rows_committed,
            rows_dead_lettered: stats.rows_dead_lettered,
            dlq_dir,
            retries: stats.retries,
            batches: stats.batches_committed,
            elapsed_s,
            rows_per_s: stats.rows_committed as f64 / elapsed_s.max(1e-9),
            stopped_at: None,
            bad_inputs: Vec::new(),
            deadline_passed_at: None,
            stream_id: String::new(),
            rerunnable: false,
            journal: None,
            batches_skipped: 0,
            rows_skipped: 0,
            encoding: Format::Native,
            rows_passed_through: 0,
            stats,
            pass_through_stats: None,
        }
    }
}

/// Runs `insert`.
pub async fn run(settings: &Settings, args: InsertArgs) -> Result<u8, CliError> {
    let (db, table) = settings.table_ref(&args.table)?;
    let formats = formats(&args)?;
    let FormatName { format, header } = formats[0];
    if formats.iter().any(|f| f.format != format) {
        return Err(CliError::usage(
            "all inputs of one run must have the same format; run chasync insert once per format",
        ));
    }
    if format.columnar() {
        return crate::columnar::run(settings, args, db, table, format).await;
    }
    let header = match (header, args.no_header) {
        (Some(true), true) => {
            return Err(CliError::usage(
                "--no-header contradicts a format *WithNames (which has a header line)",
            ));
        }
        (Some(h), _) => h,
        (None, no_header) => !no_header,
    };
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
        let reader = Reader::open(f, format, header).map_err(|e| CliError::error(e.to_string()))?;
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
    let files_only = args.files.iter().all(|f| f.as_path() != Path::new("-"));
    let threads = if format == InputFormat::Ndjson && !args.no_convert && !args.strict {
        args.threads.unwrap_or(1).clamp(1, 64)
    } else {
        1
    };
    if args.resume && !files_only {
        return Err(CliError::usage(
            "--resume needs files: stdin has no identity to resume",
        ));
    }
    if args.resume && threads > 1 {
        return Err(CliError::usage(
            "--resume needs one thread: with --threads, rows reach batches in no fixed order",
        ));
    }
    if threads > 1 && !settings.quiet && !settings.json {
        eprintln!(
            "note: with --threads {threads}, rows reach batches in no fixed order: the batch ids \
             are random, and running this load again would not be deduplicated"
        );
    }
    let rerun = if files_only && threads == 1 {
        Some(
            Rerun::of_files(&args.files, args.resume)
                .map_err(|e| CliError::error(e.to_string()))?,
        )
    } else {
        None
    };
    let deadline = args.deadline.map(|d| tokio::time::Instant::now() + d);
    let config = settings.config(&db, &table)?;
    if let Some(plan) = crate::sharded::plan(settings, &config, format).await? {
        return crate::sharded::run(settings, &args, config, plan, readers).await;
    }
    let dlq_dir = config.spool.dir.clone();
    let start = TextPipeline::start(
        config,
        TextOptions {
            format: match format {
                InputFormat::Ndjson => TextFormat::Ndjson,
                InputFormat::Csv => TextFormat::Csv,
                _ => TextFormat::Tsv,
            },
            columns: header.filter(|h| !h.is_empty()),
            convert: !args.no_convert,
            skip_unknown_fields: args.skip_unknown_fields,
            rerun,
        },
    );
    let started = match deadline {
        Some(d) => tokio::time::timeout_at(d, start).await.map_err(|_| {
            CliError::error("the deadline passed before the table could be read: nothing was sent")
        })?,
        None => start.await,
    };
    let pipeline = started.map_err(|e| match e {
        chasync_core::Error::Config(msg) => CliError::error(msg),
        e => e.into(),
    })?;
    if let Some((path, n)) = pipeline.journal()
        && args.resume
        && !settings.quiet
        && !settings.json
    {
        eprintln!(
            "resuming: {n} batch(es) committed by earlier runs ({})",
            path.display()
        );
    }
    if let Some(why) = pipeline.not_converted()
        && !settings.quiet
        && !settings.json
    {
        eprintln!("note: NDJSON lines go to the server as JSONEachRow: {why}");
    }
    let encoding = pipeline.encoding();

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
    let pipeline = std::sync::Arc::new(pipeline);
    let ticker = {
        let (bar, pipeline) = (bar.clone(), pipeline.clone());
        let notes = !settings.quiet && !settings.json;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            // Progress, and how long nothing has committed while attempts fail.
            let (mut last_landed, mut since) = (0u64, Instant::now());
            let (mut reported_failures, mut reported) = (0u64, Instant::now());
            loop {
                tick.tick().await;
                let (s, o) = pipeline.stats();
                let o = o.unwrap_or_default();
                let landed = s.rows_committed + o.rows_committed;
                bar.set_message(format!(
                    "{} rows landed, {} dead-lettered, {:.0} rows/s",
                    landed,
                    s.rows_dead_lettered + o.rows_dead_lettered,
                    landed as f64 / started.elapsed().as_secs_f64().max(1e-3)
                ));
                if landed != last_landed {
                    (last_landed, since) = (landed, Instant::now());
                }
                let failures = s.failed_attempts + o.failed_attempts;
                let stalled = since.elapsed();
                if notes
                    && failures > reported_failures
                    && stalled >= WAITING_NOTE
                    && reported.elapsed() >= WAITING_NOTE
                {
                    let line = format!(
                        "waiting for ClickHouse: nothing committed for {}s, {failures} failed \
                         attempt(s), retrying; last error: {}",
                        stalled.as_secs(),
                        pipeline.last_failure().unwrap_or_default()
                    );
                    if bar.is_hidden() {
                        eprintln!("{line}");
                    } else {
                        bar.println(line);
                    }
                    (reported_failures, reported) = (failures, Instant::now());
                }
            }
        })
    };
    let expired = Arc::new(AtomicBool::new(false));
    let deadline_task = deadline.map(|d| {
        let (dispatchers, expired) = (pipeline.dispatchers(), expired.clone());
        let notes = !settings.quiet && !settings.json;
        tokio::spawn(async move {
            tokio::time::sleep_until(d).await;
            expired.store(true, Relaxed);
            if notes {
                eprintln!(
                    "the deadline passed: reading stops, inserts in progress are given up and \
                     what did not land is dead-lettered"
                );
            }
            for d in dispatchers {
                d.abandon();
            }
        })
    });

    // Reading and converting is blocking work: a thread of its own feeds the engine; on the
    // fast path, converting lines may be spread over threads of their own.
    let feed = {
        let (pipeline, bar) = (pipeline.clone(), bar.clone());
        let strict = args.strict;
        let threads = if encoding == Format::RowBinaryWithDefaults {
            threads
        } else {
            1
        };
        let stop_on_bad_input = args.stop_on_bad_input;
        let expired = expired.clone();
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let feeder = || Feeder {
                writer: pipeline.writer(),
                bar: &bar,
                strict,
                stop_on_bad_input,
                expired: &expired,
                fed: Fed::default(),
            };
            if threads == 1 {
                let mut f = feeder();
                return rt.block_on(async {
                    let result = f.feed(readers.into_iter().flatten()).await;
                    let fed = f.finish().await;
                    result.map(|_| fed)
                });
            }
            feed_in_parallel(readers, threads, &rt, stop_on_bad_input, &expired, feeder)
        })
    };
    let fed = feed
        .await
        .map_err(|e| CliError::error(format!("reader failed: {e}")))?;
    ticker.abort();
    let _ = ticker.await;
    // The deadline still holds while what was read is committed or dead-lettered.
    let stream_id = pipeline.stream_id().0.to_string();
    let journal = pipeline.journal().map(|(p, _)| p.to_path_buf());
    let skipped = pipeline.skipped_handle();
    let pipeline = std::sync::Arc::into_inner(pipeline)
        .ok_or_else(|| CliError::error("the pipeline is still in use"))?;
    let shutdown = pipeline.shutdown().await;
    if let Some(task) = deadline_task {
        task.abort();
    }
    let (stats, pass_through_stats) = shutdown?;
    let (batches_skipped, rows_skipped) = skipped();
    bar.finish_and_clear();
    let fed = fed?;
    let other = pass_through_stats.clone().unwrap_or_default();

    let elapsed = started.elapsed().as_secs_f64();
    let summary = InsertSummary {
        table: format!("{db}.{table}"),
        files: args.files.clone(),
        rows_read: fed.read,
        rows_malformed: fed.malformed,
        rows_landed: stats.rows_committed + other.rows_committed,
        rows_dead_lettered: stats.rows_dead_lettered + other.rows_dead_lettered,
        dlq_dir,
        retries: stats.retries + other.retries,
        batches: stats.batches_committed + other.batches_committed,
        elapsed_s: elapsed,
        rows_per_s: (stats.rows_committed + other.rows_committed) as f64 / elapsed.max(1e-9),
        stopped_at: fed.stopped_at.clone(),
        bad_inputs: fed.bad_inputs.clone(),
        deadline_passed_at: fed.deadline_at.clone(),
        stream_id,
        rerunnable: journal.is_some(),
        journal,
        batches_skipped,
        rows_skipped,
        encoding,
        rows_passed_through: fed.passed_through,
        stats,
        pass_through_stats,
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
    if !fed.bad_inputs.is_empty() || fed.deadline_at.is_some() {
        let mut why = Vec::new();
        if !fed.bad_inputs.is_empty() {
            why.push(format!(
                "{} input(s) could not be read to the end ({}){}",
                fed.bad_inputs.len(),
                fed.bad_inputs.join("; "),
                if args.stop_on_bad_input {
                    ", and --stop-on-bad-input stopped the load there"
                } else {
                    ""
                }
            ));
        }
        if let Some(place) = &fed.deadline_at {
            why.push(format!(
                "the deadline passed: reading stopped after {place}"
            ));
        }
        return Err(CliError::with_code(
            exit::INCOMPLETE,
            format!(
                "{}; {} row(s) landed, {} dead-lettered",
                why.join("; "),
                summary.rows_landed,
                summary.rows_dead_lettered
            ),
        ));
    }
    Ok(if summary.rows_dead_lettered > 0 {
        exit::NOT_COMMITTED
    } else {
        exit::OK
    })
}

/// How long nothing may commit while attempts fail before the load says it is waiting.
const WAITING_NOTE: Duration = Duration::from_secs(5);

fn progress_bar(settings: &Settings, total_bytes: Option<u64>) -> ProgressBar {
    if settings.quiet || settings.json || settings.verbose_logs {
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

#[derive(Default)]
struct Fed {
    read: u64,
    malformed: u64,
    passed_through: u64,
    stopped_at: Option<String>,
    bad_inputs: Vec<String>,
    deadline_at: Option<String>,
}

/// An input that could not be read to its end: named on stderr now, in the summary and the
/// exit code at the end. `true` when the load stops there.
fn bad_input(e: &std::io::Error, stop: bool, bad: &mut Vec<String>, bar: &ProgressBar) -> bool {
    let line = format!(
        "input not read to its end: {e}; the rows before it are loaded{}",
        if stop {
            "; stopping (--stop-on-bad-input)"
        } else {
            "; going on with the next input"
        }
    );
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
    bad.push(e.to_string());
    stop
}

/// Records read on this thread, handed in chunks to `threads` feeders on threads of their
/// own (each with its own writers: conversion runs in parallel; batches then hold rows in no
/// particular order, as with any producers running side by side).
fn feed_in_parallel<'a>(
    readers: Vec<Reader>,
    threads: usize,
    rt: &tokio::runtime::Handle,
    stop_on_bad_input: bool,
    expired: &AtomicBool,
    feeder: impl Fn() -> Feeder<'a> + Sync,
) -> Result<Fed, CliError> {
    const CHUNK: usize = 512;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<std::io::Result<Item>>>(threads * 2);
    let rx = std::sync::Mutex::new(rx);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (rx, feeder) = (&rx, &feeder);
                scope.spawn(move || {
                    let mut f = feeder();
                    rt.block_on(async {
                        let mut result = Ok(());
                        loop {
                            let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                            let Ok(items) = next else { break };
                            if let Err(e) = f.feed(items).await {
                                result = Err(e);
                                break;
                            }
                        }
                        let fed = f.finish().await;
                        result.map(|()| fed)
                    })
                })
            })
            .collect();
        let mut bad = Vec::new();
        let mut deadline_at = None;
        let mut chunk = Vec::with_capacity(CHUNK);
        let hidden = ProgressBar::hidden();
        'read: for reader in readers {
            let source = reader.source().to_string();
            let mut last_line = 0;
            for item in reader {
                if expired.load(Relaxed) {
                    deadline_at = Some(format!("{source}:{last_line}"));
                    break 'read;
                }
                match &item {
                    Err(e) => {
                        if bad_input(e, stop_on_bad_input, &mut bad, &hidden) {
                            break 'read;
                        }
                        continue;
                    }
                    Ok(i) => last_line = i.line,
                }
                chunk.push(item);
                if chunk.len() == CHUNK
                    && tx
                        .send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))
                        .is_err()
                {
                    // Every feeder stopped (with an error, reported below).
                    break 'read;
                }
            }
        }
        if !chunk.is_empty() {
            let _ = tx.send(chunk);
        }
        drop(tx);
        let mut total = Fed::default();
        for w in workers {
            let fed = w
                .join()
                .map_err(|_| CliError::error("a feeder thread panicked"))??;
            total.read += fed.read;
            total.malformed += fed.malformed;
            total.passed_through += fed.passed_through;
        }
        total.bad_inputs = bad;
        total.deadline_at = deadline_at;
        Ok(total)
    })
}

/// Hands the records of the inputs to the engine.
struct Feeder<'a> {
    writer: TextWriter,
    bar: &'a ProgressBar,
    strict: bool,
    stop_on_bad_input: bool,
    /// Set when `--deadline` passes: reading stops.
    expired: &'a AtomicBool,
    fed: Fed,
}

impl Feeder<'_> {
    /// Hands over `items`; `Ok(true)` when a `--strict` run stopped at a malformed record.
    async fn feed(
        &mut self,
        items: impl IntoIterator<Item = std::io::Result<Item>>,
    ) -> Result<bool, CliError> {
        // The progress bar moves once per this many bytes, not per record.
        let mut unreported = 0u64;
        let mut last: Option<(std::sync::Arc<str>, u64)> = None;
        for item in items {
            if self.expired.load(Relaxed) {
                self.fed.deadline_at = Some(match &last {
                    Some((source, line)) => format!("{source}:{line}"),
                    None => "the start".into(),
                });
                break;
            }
            let Item {
                source,
                line,
                record,
            } = match item {
                Ok(item) => item,
                Err(e) => {
                    if bad_input(
                        &e,
                        self.stop_on_bad_input,
                        &mut self.fed.bad_inputs,
                        self.bar,
                    ) {
                        break;
                    }
                    continue;
                }
            };
            if last.as_ref().is_none_or(|(s, _)| *s != source) {
                last = Some((source.clone(), line));
            } else if let Some(l) = &mut last {
                l.1 = line;
            }
            self.fed.read += 1;
            let record = match record {
                Ok(r) => r,
                Err(bad) => {
                    if self.malformed(&source, line, bad.reason, bad.raw).await? {
                        return Ok(true);
                    }
                    continue;
                }
            };
            unreported += record.len() as u64 + 1;
            if unreported >= 1 << 20 {
                self.bar.inc(std::mem::take(&mut unreported));
            }
            match self.writer.write(record).await {
                Ok(()) => {}
                Err(TextRefused::Closed) => {
                    return Err(CliError::error("the engine stopped accepting rows"));
                }
                Err(TextRefused::Malformed { reason, record }) => {
                    let raw = String::from_utf8_lossy(&record).into_owned();
                    if self.malformed(&source, line, reason, Some(raw)).await? {
                        return Ok(true);
                    }
                }
            }
        }
        self.bar.inc(unreported);
        Ok(false)
    }

    /// Closes the writer (handing over what it buffers) and returns the counts.
    async fn finish(mut self) -> Fed {
        self.fed.passed_through = self.writer.passed_through();
        self.writer.close().await;
        self.fed
    }

    /// Dead-letters a malformed record with its place; `true` when it stops a `--strict` run.
    async fn malformed(
        &mut self,
        source: &str,
        line: u64,
        reason: String,
        raw: Option<String>,
    ) -> Result<bool, CliError> {
        self.fed.malformed += 1;
        if let Some(raw) = &raw {
            self.bar.inc(raw.len() as u64 + 1);
        }
        let reason = format!("{source}:{line}: {reason}");
        if self.strict {
            self.fed.stopped_at = Some(reason);
            return Ok(true);
        }
        if !self.bar.is_hidden() {
            self.bar
                .println(format!("malformed record dead-lettered: {reason}"));
        } else {
            eprintln!("malformed record dead-lettered: {reason}");
        }
        self.writer
            .reject(reason, raw)
            .await
            .map_err(|e| CliError::error(e.to_string()))?;
        Ok(false)
    }
}

pub(crate) fn print_summary(s: &InsertSummary) {
    println!("table:          {}", s.table);
    println!(
        "rows read:      {} ({} malformed)",
        s.rows_read, s.rows_malformed
    );
    println!("rows landed:    {}", s.rows_landed);
    if s.encoding == Format::RowBinaryWithDefaults {
        println!(
            "converted:      {} row(s) to RowBinary, {} passed through as JSONEachRow",
            s.rows_read - s.rows_malformed - s.rows_passed_through,
            s.rows_passed_through
        );
    }
    if s.rows_dead_lettered > 0 {
        println!(
            "dead-lettered:  {} row(s), spool {} (chasync dlq list --spool-dir {})",
            s.rows_dead_lettered,
            s.dlq_dir.display(),
            s.dlq_dir.display()
        );
    } else {
        println!("dead-lettered:  0");
    }
    if s.batches_skipped > 0 {
        println!(
            "skipped:        {} batch(es), {} row(s) committed by an earlier run (--resume)",
            s.batches_skipped, s.rows_skipped
        );
    }
    for bad in &s.bad_inputs {
        println!("not read:       {bad}");
    }
    if let Some(place) = &s.deadline_passed_at {
        println!("deadline:       passed; reading stopped after {place}");
    }
    println!("retries:        {}", s.retries);
    println!("batches:        {}", s.batches);
    println!("elapsed:        {:.3} s", s.elapsed_s);
    println!("throughput:     {:.0} rows/s", s.rows_per_s);
}
