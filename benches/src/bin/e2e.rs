//! End-to-end benchmark against a real ClickHouse: the same rows through each contender, in
//! separate processes (so client CPU and peak RSS are each contender's own), interleaved over
//! several runs; reports medians as markdown and JSON.
//!
//! ```text
//! cargo run --release -p chasync-benches --bin e2e -- [--rows N] [--runs K] [--only a,b]
//! ```
//!
//! Needs a server at `CLICKHOUSE_URL` (default `http://127.0.0.1:8123`); `./run bench-e2e`
//! starts the project's own. Each contender process is run under `/usr/bin/time` for wall
//! time, user+system CPU and peak RSS.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use chasync_benches::{NARROW_DDL, Narrow, narrow_row};
use chasync_core::native::{NativeBatch, NativeOptions};
use chasync_core::schema::TableSchema;
use chasync_core::value::{ColumnBatch, DynRow, Value};
use chasync_core::{BatchEncoder, Config, DynIngestor, Ingestor, RowBinary, Stats};

const CONTENDERS: &[&str] = &[
    "chasync-typed",
    "raw-crate-insert",
    "curl-rowbinary",
    "chasync-dynamic-rows",
    "chasync-dynamic-columns",
    "curl-native",
];

fn url() -> String {
    std::env::var("CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

fn client() -> clickhouse::Client {
    clickhouse::Client::default()
        .with_url(url())
        .with_setting("async_insert", "0")
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rows: u64 = arg(&args, "--rows").map_or(2_000_000, |v| v.parse().expect("--rows"));
    if let Some(one) = arg(&args, "--one") {
        let result = run_one(&one, rows).await;
        println!("{}", kv_line(&result));
        return;
    }
    let runs: usize = arg(&args, "--runs").map_or(3, |v| v.parse().expect("--runs"));
    let only: Vec<String> = arg(&args, "--only")
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_else(|| CONTENDERS.iter().map(|s| s.to_string()).collect());
    prepare(rows).await;
    let exe = std::env::current_exe().expect("own path");
    let mut results: BTreeMap<String, Vec<Measured>> = BTreeMap::new();
    for run in 0..runs {
        for name in &only {
            reset().await;
            let out = Command::new("/usr/bin/time")
                .args(["-f", "TIME %e %U %S %M"])
                .arg(&exe)
                .args(["--one", name, "--rows", &rows.to_string()])
                .output()
                .expect("run a contender under /usr/bin/time");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{name} failed:\n{stdout}\n{stderr}");
            let time_line = stderr
                .lines()
                .rev()
                .find(|l| l.starts_with("TIME "))
                .expect("time output");
            let t: Vec<f64> = time_line[5..]
                .split_whitespace()
                .map(|v| v.parse().unwrap())
                .collect();
            let inner: BTreeMap<String, f64> = parse_line(stdout.lines().last().unwrap_or(""));
            let landed = count().await;
            assert_eq!(landed, rows, "{name} landed {landed} of {rows} rows");
            let m = Measured {
                seconds: inner["seconds"],
                cpu_s: t[1] + t[2],
                rss_mb: t[3] / 1024.0,
                p50: inner.get("p50").copied(),
                p95: inner.get("p95").copied(),
                p99: inner.get("p99").copied(),
            };
            eprintln!(
                "run {}: {name:<24} {:>8.3} s  {:>10.0} rows/s  cpu {:.2} s  rss {:.0} MB",
                run + 1,
                m.seconds,
                rows as f64 / m.seconds,
                m.cpu_s,
                m.rss_mb
            );
            results.entry(name.clone()).or_default().push(m);
        }
    }
    report(rows, runs, &only, &results);
}

#[derive(Clone, Copy)]
struct Measured {
    /// Time of the ingest itself (the contender's own measurement, excluding process start
    /// and data generation).
    seconds: f64,
    /// User + system CPU seconds of the whole contender process.
    cpu_s: f64,
    rss_mb: f64,
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn report(rows: u64, runs: usize, order: &[String], results: &BTreeMap<String, Vec<Measured>>) {
    let mut md = format!(
        "| contender | rows/s (median of {runs}) | ingest s | client CPU s / M rows | peak RSS MB | batch p50 / p95 / p99 ms |\n|---|---|---|---|---|---|\n"
    );
    let mut json = String::from("[");
    for name in order {
        let ms = &results[name];
        let secs = median(ms.iter().map(|m| m.seconds).collect());
        let cpu = median(ms.iter().map(|m| m.cpu_s).collect());
        let rss = median(ms.iter().map(|m| m.rss_mb).collect());
        let lat = match (ms[0].p50, ms[0].p95, ms[0].p99) {
            (Some(_), Some(_), Some(_)) => format!(
                "{:.0} / {:.0} / {:.0}",
                median(ms.iter().filter_map(|m| m.p50).collect()),
                median(ms.iter().filter_map(|m| m.p95).collect()),
                median(ms.iter().filter_map(|m| m.p99).collect())
            ),
            _ => "one insert".into(),
        };
        md.push_str(&format!(
            "| {name} | {:.0} | {secs:.3} | {:.2} | {rss:.0} | {lat} |\n",
            rows as f64 / secs,
            cpu / (rows as f64 / 1e6)
        ));
        if json.len() > 1 {
            json.push(',');
        }
        json.push_str(&format!(
            "{{\"contender\":\"{name}\",\"rows\":{rows},\"rows_per_s\":{:.1},\"seconds\":{secs:.4},\"cpu_s_per_m_rows\":{:.4},\"peak_rss_mb\":{rss:.1}}}",
            rows as f64 / secs,
            cpu / (rows as f64 / 1e6)
        ));
    }
    json.push(']');
    println!("{md}");
    let dir = std::path::Path::new("target/e2e");
    std::fs::create_dir_all(dir).ok();
    std::fs::write(dir.join("results.json"), &json).ok();
    std::fs::write(dir.join("results.md"), &md).ok();
    eprintln!("written: target/e2e/results.md, target/e2e/results.json");
}

fn kv_line(m: &BTreeMap<String, f64>) -> String {
    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(" ")
}

fn parse_line(line: &str) -> BTreeMap<String, f64> {
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

async fn exec(sql: &str) {
    client()
        .query(sql)
        .execute()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn prepare(rows: u64) {
    exec("CREATE DATABASE IF NOT EXISTS chasync_bench").await;
    exec("DROP TABLE IF EXISTS chasync_bench.narrow SYNC").await;
    exec(NARROW_DDL).await;
    eprintln!("e2e: {rows} narrow rows per contender, server {}", url());
}

async fn reset() {
    exec("TRUNCATE TABLE chasync_bench.narrow").await;
}

async fn count() -> u64 {
    client()
        .query("SELECT count() FROM chasync_bench.narrow")
        .fetch_one()
        .await
        .expect("count")
}

fn config() -> Config {
    let mut c = Config::new(url(), "narrow");
    c.database = "chasync_bench".into();
    // Overridable to explore tuning: CHASYNC_E2E_MAX_ROWS, CHASYNC_E2E_CONCURRENCY,
    // CHASYNC_E2E_COMPRESSION=none.
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    c.max_rows = env("CHASYNC_E2E_MAX_ROWS").unwrap_or(100_000);
    c.max_concurrency = env("CHASYNC_E2E_CONCURRENCY").unwrap_or(4);
    if std::env::var("CHASYNC_E2E_COMPRESSION").as_deref() == Ok("none") {
        c.compression = chasync_core::Compression::None;
    }
    c.dead_letter_dir = std::env::temp_dir().join("chasync-e2e-dlq");
    c
}

fn latencies(stats: &Stats, m: &mut BTreeMap<String, f64>) {
    assert_eq!(stats.rows_dead_lettered, 0, "{stats:?}");
    m.insert("p50".into(), stats.latency_ms_p50);
    m.insert("p95".into(), stats.latency_ms_p95);
    m.insert("p99".into(), stats.latency_ms_p99);
}

fn dyn_row(r: &Narrow) -> DynRow {
    DynRow::new()
        .with("id", r.id)
        .with("ts", Value::UInt(r.ts as u64))
        .with("name", r.name.clone())
        .with("value", Value::Float(r.value))
}

async fn run_one(name: &str, rows: u64) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    match name {
        "chasync-typed" => {
            let started = Instant::now();
            let ing = Ingestor::<Narrow>::start(config()).await.unwrap();
            let mut w = ing.handle().writer();
            for i in 0..rows {
                w.write(narrow_row(i)).await.unwrap();
            }
            w.close().await;
            let stats = ing.shutdown().await.unwrap();
            m.insert("seconds".into(), started.elapsed().as_secs_f64());
            latencies(&stats, &mut m);
        }
        "chasync-dynamic-rows" => {
            let started = Instant::now();
            let ing = DynIngestor::start_dynamic(config(), NativeOptions::default())
                .await
                .unwrap();
            let h = ing.handle();
            for i in 0..rows {
                h.send(dyn_row(&narrow_row(i)).into()).await.unwrap();
            }
            let stats = ing.shutdown().await.unwrap();
            m.insert("seconds".into(), started.elapsed().as_secs_f64());
            latencies(&stats, &mut m);
        }
        "chasync-dynamic-columns" => {
            let started = Instant::now();
            let ing = DynIngestor::start_dynamic(config(), NativeOptions::default())
                .await
                .unwrap();
            let h = ing.handle();
            let chunk = 100_000u64;
            let mut start = 0;
            while start < rows {
                let end = (start + chunk).min(rows);
                let rs: Vec<Narrow> = (start..end).map(narrow_row).collect();
                let cols = ColumnBatch::new()
                    .with_column("id", rs.iter().map(|r| Value::UInt(r.id)).collect())
                    .with_column("ts", rs.iter().map(|r| Value::UInt(r.ts as u64)).collect())
                    .with_column(
                        "name",
                        rs.iter().map(|r| Value::String(r.name.clone())).collect(),
                    )
                    .with_column("value", rs.iter().map(|r| Value::Float(r.value)).collect());
                h.send(cols.into()).await.unwrap();
                start = end;
            }
            let stats = ing.shutdown().await.unwrap();
            m.insert("seconds".into(), started.elapsed().as_secs_f64());
            latencies(&stats, &mut m);
        }
        "raw-crate-insert" => {
            let started = Instant::now();
            let mut client = client().with_database("chasync_bench");
            if std::env::var("CHASYNC_E2E_COMPRESSION").as_deref() == Ok("none") {
                client = client.with_compression(clickhouse::Compression::None);
            }
            let mut insert = client.insert::<Narrow>("narrow").await.unwrap();
            for i in 0..rows {
                insert.write(&narrow_row(i)).await.unwrap();
            }
            insert.end().await.unwrap();
            m.insert("seconds".into(), started.elapsed().as_secs_f64());
        }
        "curl-rowbinary" | "curl-native" => {
            // Encode the file first (not timed), then time curl posting it.
            let dir = std::env::temp_dir().join("chasync-e2e");
            std::fs::create_dir_all(&dir).unwrap();
            let (path, format) = if name == "curl-rowbinary" {
                let mut enc = RowBinary::<Narrow>::new(None);
                enc.begin(uuid::Uuid::nil());
                let mut rejected = Vec::new();
                for i in 0..rows {
                    enc.push(narrow_row(i), &mut rejected);
                }
                let p = dir.join(format!("narrow-{rows}.rowbinary"));
                std::fs::write(&p, &enc.finish().bytes).unwrap();
                (p, "RowBinary")
            } else {
                let schema = TableSchema::fetch(&client(), "chasync_bench", "narrow")
                    .await
                    .unwrap();
                let mut batch = NativeBatch::new(Arc::new(schema), NativeOptions::default());
                for i in 0..rows {
                    batch.push_row(&dyn_row(&narrow_row(i))).unwrap();
                }
                let p = dir.join(format!("narrow-{rows}.native"));
                std::fs::write(&p, &batch.finish(None).bytes).unwrap();
                (p, "Native")
            };
            let query = format!(
                "{}/?query=INSERT%20INTO%20chasync_bench.narrow%20(id,ts,name,value)%20FORMAT%20{format}",
                url()
            );
            let started = Instant::now();
            let status = Command::new("curl")
                .args(["-fsS", &query, "--data-binary"])
                .arg(format!("@{}", path.display()))
                .status()
                .expect("curl");
            assert!(status.success());
            m.insert("seconds".into(), started.elapsed().as_secs_f64());
        }
        other => panic!("unknown contender {other}; known: {CONTENDERS:?}"),
    }
    m
}
