//! An example ingest: N synthetic events into `chasync_demo.events` through the engine, with
//! progress, final stats, and a check of what landed.
//!
//! `cargo run --release -p chasync-core --example ingest -- 2000000` (needs a ClickHouse at
//! `CLICKHOUSE_URL`, default `http://127.0.0.1:8123`; `./run demo` starts one).

use std::time::{Duration, Instant};

use chasync_core::{Config, Ingestor, StreamId};

#[derive(clickhouse::Row, serde::Serialize)]
struct Event {
    id: u64,
    ts: u32,
    user: String,
    value: f64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(2_000_000);
    let url = std::env::var("CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into());
    let admin = clickhouse::Client::default().with_url(&url);
    admin
        .query("CREATE DATABASE IF NOT EXISTS chasync_demo")
        .execute()
        .await?;
    admin
        .query("DROP TABLE IF EXISTS chasync_demo.events SYNC")
        .execute()
        .await?;
    admin
        .query(
            "CREATE TABLE chasync_demo.events (id UInt64, ts DateTime, user String, \
             value Float64, _insert_id UUID) ENGINE = MergeTree ORDER BY id \
             SETTINGS non_replicated_deduplication_window = 1000",
        )
        .execute()
        .await?;

    let mut config = Config::new(&url, "events");
    config.clickhouse.database = "chasync_demo".into();
    config.batching.max_rows = 100_000;
    config.delivery.max_concurrency = 4;
    config.spool.dir = std::env::temp_dir().join("chasync-demo-dlq");
    config.delivery.stream_id = Some(StreamId::named("chasync-demo"));
    let ingestor = Ingestor::<Event>::start(config).await?;

    println!("ingesting {rows} rows into chasync_demo.events at {url}");
    let started = Instant::now();
    let producer = {
        // A writer: rows are encoded right here and handed over in chunks.
        let mut writer = ingestor.handle().writer();
        tokio::spawn(async move {
            for id in 0..rows {
                let event = Event {
                    id,
                    ts: 1_700_000_000 + (id % 86_400) as u32,
                    user: format!("user-{}", id % 10_000),
                    value: (id % 1000) as f64 / 10.0,
                };
                if writer.write(event).await.is_err() {
                    break;
                }
            }
            writer.close().await;
        })
    };
    let handle = ingestor.handle();
    let progress = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let s = handle.stats();
            let secs = started.elapsed().as_secs_f64();
            println!(
                "  {:>10} accepted  {:>10} committed  {:>4} batches  {:>9.0} rows/s",
                s.rows_accepted,
                s.rows_committed,
                s.batches_committed,
                s.rows_committed as f64 / secs
            );
        }
    });
    producer.await?;
    let stats = ingestor.shutdown().await?;
    progress.abort();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "done: {} rows committed in {} batches, {} retries, {} dead-lettered, {:.2}s, {:.0} rows/s, batch latency p50 {:.0} ms / p99 {:.0} ms",
        stats.rows_committed,
        stats.batches_committed,
        stats.retries,
        stats.rows_dead_lettered,
        secs,
        stats.rows_committed as f64 / secs,
        stats.latency_ms_p50,
        stats.latency_ms_p99,
    );
    let landed: u64 = admin
        .query("SELECT count() FROM chasync_demo.events")
        .fetch_one()
        .await?;
    let batches: u64 = admin
        .query("SELECT uniqExact(_insert_id) FROM chasync_demo.events")
        .fetch_one()
        .await?;
    println!("server: {landed} rows in table, {batches} distinct _insert_id values");
    if landed != rows {
        return Err(format!("expected {rows} rows, found {landed}").into());
    }
    Ok(())
}
