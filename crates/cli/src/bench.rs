//! `chasync bench`: synthetic typed rows through the engine's [`Ingestor`], flat out or at a
//! target rate, for a row count or a duration; the figures come from the engine's [`Stats`].

use std::time::{Duration, Instant};

use chasync_core::quote_ident;
use chasync_core::{Ingestor, Stats};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::cli::BenchArgs;
use crate::error::{CliError, exit};
use crate::output::print_json;
use crate::settings::Settings;

/// One synthetic row: `id UInt64, ts DateTime, name String, value Float64`.
#[derive(Debug, Clone, clickhouse::Row, Serialize)]
pub struct BenchRow {
    /// A running number from `--start-id`.
    pub id: u64,
    /// `1700000000 + id % 86400`.
    pub ts: u32,
    /// `n` followed by `id % 1000`.
    pub name: String,
    /// `(id % 1000) * 0.5`.
    pub value: f64,
}

impl BenchRow {
    /// The row with this id (deterministic, so what landed can be checked on the server).
    pub fn new(id: u64) -> Self {
        Self {
            id,
            ts: 1_700_000_000 + (id % 86_400) as u32,
            name: format!("n{}", id % 1000),
            value: (id % 1000) as f64 * 0.5,
        }
    }
}

/// The columns the rows need.
const COLUMNS: [&str; 4] = ["id", "ts", "name", "value"];

/// The report of a run.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// `db.table`.
    pub table: String,
    /// Rows handed to the engine.
    pub rows_sent: u64,
    /// Rows committed.
    pub rows_committed: u64,
    /// Wall time from the first row to the end of shutdown, seconds.
    pub elapsed_s: f64,
    /// Committed rows per second.
    pub rows_per_s: f64,
    /// Committed (uncompressed, encoded) megabytes per second (10^6 bytes).
    pub mb_per_s: f64,
    /// Batches committed.
    pub batches: u64,
    /// Re-sent attempts.
    pub retries: u64,
    /// Rows dead-lettered.
    pub rows_dead_lettered: u64,
    /// Batches dead-lettered.
    pub batches_dead_lettered: u64,
    /// Batch latency percentiles, milliseconds.
    pub latency_ms_p50: f64,
    /// 95th percentile.
    pub latency_ms_p95: f64,
    /// 99th percentile.
    pub latency_ms_p99: f64,
    /// The target rate, if any.
    pub target_rate: Option<f64>,
    /// The engine's final counters.
    pub stats: Stats,
}

async fn prepare_table(
    settings: &Settings,
    db: &str,
    table: &str,
    create: bool,
) -> Result<(), CliError> {
    let client = settings.client()?;
    if create {
        client
            .query(&format!(
                "CREATE TABLE IF NOT EXISTS {}.{} (id UInt64, ts DateTime, name String, \
                 value Float64, _insert_id UUID) ENGINE = MergeTree ORDER BY id \
                 SETTINGS non_replicated_deduplication_window = 1000",
                quote_ident(db),
                quote_ident(table)
            ))
            .execute()
            .await?;
    }
    let columns = match settings.columns(db, table).await {
        Ok(c) => c,
        Err(e @ chasync_core::Error::UnknownTable { .. }) => {
            return Err(CliError::error(e.to_string()).hint("add --create to create it"));
        }
        Err(e) => return Err(e.into()),
    };
    let missing: Vec<&str> = COLUMNS
        .iter()
        .copied()
        .filter(|c| !columns.iter().any(|(name, _)| name == c))
        .collect();
    if !missing.is_empty() {
        return Err(CliError::error(format!(
            "{db}.{table} lacks the bench columns {missing:?}; bench needs id UInt64, \
             ts DateTime, name String, value Float64"
        )));
    }
    Ok(())
}

/// Runs the load generator.
pub async fn run(settings: &Settings, args: BenchArgs) -> Result<u8, CliError> {
    let (db, table) = settings.table_ref(&args.table)?;
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(CliError::usage("--rate must be a positive number"));
    }
    let limit_rows = match (args.rows, args.duration) {
        (Some(n), _) => Some(n),
        (None, Some(_)) => None,
        (None, None) => Some(1_000_000),
    };
    let config = settings.config(&db, &table)?;
    prepare_table(settings, &db, &table, args.create).await?;
    let ingestor = Ingestor::<BenchRow>::start(config).await?;
    let handle = ingestor.handle();

    let bar = if settings.quiet || settings.json {
        ProgressBar::hidden()
    } else {
        let bar = match limit_rows {
            Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} rows committed {msg}",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        bar
    };
    let ticker = {
        let bar = bar.clone();
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let s = handle.stats();
                bar.set_position(s.rows_committed);
                bar.set_message(format!(
                    "(sent {}, dead-lettered {})",
                    s.rows_accepted, s.rows_dead_lettered
                ));
            }
        })
    };

    let started = Instant::now();
    let deadline = args.duration.map(|d| started + d);
    // Pace in steps of ~10 ms of rows at a target rate; check the clock every 1024 rows
    // otherwise.
    let step = args
        .rate
        .map(|r| ((r / 100.0) as u64).max(1))
        .unwrap_or(1024);
    let mut sent = 0u64;
    loop {
        if limit_rows.is_some_and(|n| sent >= n) {
            break;
        }
        if sent.is_multiple_of(step) {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            if let Some(rate) = args.rate {
                let due = started + Duration::from_secs_f64(sent as f64 / rate);
                if due > now {
                    let until = deadline.map_or(due, |d| d.min(due));
                    tokio::time::sleep_until(until.into()).await;
                    continue;
                }
            }
        }
        if handle
            .send(BenchRow::new(args.start_id + sent))
            .await
            .is_err()
        {
            return Err(CliError::error("the engine stopped accepting rows"));
        }
        sent += 1;
    }
    drop(handle);
    let stats = ingestor.shutdown().await?;
    let elapsed = started.elapsed().as_secs_f64();
    ticker.abort();
    bar.set_position(stats.rows_committed);
    bar.finish_and_clear();

    let report = BenchReport {
        table: format!("{db}.{table}"),
        rows_sent: sent,
        rows_committed: stats.rows_committed,
        elapsed_s: elapsed,
        rows_per_s: stats.rows_committed as f64 / elapsed.max(1e-9),
        mb_per_s: stats.bytes_committed as f64 / 1e6 / elapsed.max(1e-9),
        batches: stats.batches_committed,
        retries: stats.retries,
        rows_dead_lettered: stats.rows_dead_lettered,
        batches_dead_lettered: stats.batches_dead_lettered,
        latency_ms_p50: stats.latency_ms_p50,
        latency_ms_p95: stats.latency_ms_p95,
        latency_ms_p99: stats.latency_ms_p99,
        target_rate: args.rate,
        stats,
    };
    if settings.json {
        print_json(&report);
    } else {
        print_report(&report);
    }
    Ok(if report.rows_dead_lettered > 0 {
        exit::NOT_COMMITTED
    } else {
        exit::OK
    })
}

fn print_report(r: &BenchReport) {
    println!("table:          {}", r.table);
    println!("rows sent:      {}", r.rows_sent);
    println!("rows committed: {}", r.rows_committed);
    println!("elapsed:        {:.3} s", r.elapsed_s);
    println!(
        "throughput:     {:.0} rows/s, {:.2} MB/s",
        r.rows_per_s, r.mb_per_s
    );
    println!("batches:        {}", r.batches);
    println!("retries:        {}", r.retries);
    println!(
        "dead-lettered:  {} row(s) in {} batch(es)",
        r.rows_dead_lettered, r.batches_dead_lettered
    );
    println!(
        "batch latency:  p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
        r.latency_ms_p50, r.latency_ms_p95, r.latency_ms_p99
    );
    if let Some(rate) = r.target_rate {
        println!("target rate:    {rate} rows/s");
    }
}
