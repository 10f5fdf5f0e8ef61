//! Load generator for `chasyncd`: many concurrent clients, each sending many small
//! JSONEachRow requests (ClickHouse-style `/?query=INSERT ...`), then waiting until
//! ClickHouse holds every row.
//!
//! ```text
//! cargo run --release -p chasync-daemon --example loadgen -- \
//!     --daemon http://127.0.0.1:8124 --clickhouse http://127.0.0.1:8123 \
//!     --clients 64 --requests 300 --rows 10
//! ```
//!
//! It (re)creates `chasyncd_bench.events` on the ClickHouse server, so point the daemon at
//! the same server.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

struct Args {
    daemon: String,
    clickhouse: String,
    clients: u64,
    requests: u64,
    rows: u64,
    ack: String,
}

fn args() -> Args {
    let mut a = Args {
        daemon: "http://127.0.0.1:8124".into(),
        clickhouse: "http://127.0.0.1:8123".into(),
        clients: 64,
        requests: 300,
        rows: 10,
        ack: "durable".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--daemon" => a.daemon = v,
            "--clickhouse" => a.clickhouse = v,
            "--clients" => a.clients = v.parse().unwrap(),
            "--requests" => a.requests = v.parse().unwrap(),
            "--rows" => a.rows = v.parse().unwrap(),
            "--ack" => a.ack = v,
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

async fn count(ch: &clickhouse::Client) -> u64 {
    ch.query("SELECT count() FROM chasyncd_bench.events")
        .fetch_one::<u64>()
        .await
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let a = args();
    let ch = clickhouse::Client::default().with_url(&a.clickhouse);
    for sql in [
        "CREATE DATABASE IF NOT EXISTS chasyncd_bench",
        "DROP TABLE IF EXISTS chasyncd_bench.events SYNC",
        "CREATE TABLE chasyncd_bench.events (id UInt64, ts DateTime, user String, value Float64, \
         _insert_id UUID) ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 1000",
    ] {
        ch.query(sql).execute().await.expect(sql);
    }
    let url = format!(
        "{}/?query=INSERT%20INTO%20chasyncd_bench.events%20FORMAT%20JSONEachRow&ack={}",
        a.daemon, a.ack
    );
    let started = Instant::now();
    let tasks: Vec<_> = (0..a.clients)
        .map(|c| {
            let url = url.clone();
            let (requests, rows) = (a.requests, a.rows);
            tokio::spawn(async move {
                // One keep-alive connection per client, as a client library would hold.
                let http: Client<HttpConnector, Full<Bytes>> =
                    Client::builder(TokioExecutor::new())
                        .pool_max_idle_per_host(1)
                        .build(HttpConnector::new());
                let mut latencies = Vec::with_capacity(requests as usize);
                let mut body = String::new();
                for r in 0..requests {
                    body.clear();
                    let first = (c * requests + r) * rows;
                    for id in first..first + rows {
                        body.push_str(&format!(
                            "{{\"id\":{id},\"ts\":1700000000,\"user\":\"user{}\",\"value\":{}}}\n",
                            id % 1000,
                            id as f64 * 0.5
                        ));
                    }
                    let t = Instant::now();
                    let req = hyper::Request::post(&url)
                        .body(Full::new(Bytes::from(body.clone())))
                        .unwrap();
                    let resp = http.request(req).await.expect("request");
                    let status = resp.status();
                    let text = resp.into_body().collect().await.unwrap().to_bytes();
                    assert!(
                        status.is_success(),
                        "{status}: {}",
                        String::from_utf8_lossy(&text)
                    );
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let accepted = started.elapsed();
    latencies.sort();
    let q = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let total_requests = a.clients * a.requests;
    let total_rows = total_requests * a.rows;
    let secs = accepted.as_secs_f64();
    println!(
        "{total_requests} requests ({} clients x {} requests x {} rows, ack={}) accepted in {:.2} s: \
         {:.0} requests/s, {:.0} rows/s; request latency p50 {:.2} ms, p99 {:.2} ms",
        a.clients,
        a.requests,
        a.rows,
        a.ack,
        secs,
        total_requests as f64 / secs,
        total_rows as f64 / secs,
        q(0.50).as_secs_f64() * 1e3,
        q(0.99).as_secs_f64() * 1e3
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&ch).await < total_rows {
        assert!(Instant::now() < deadline, "rows did not all land");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let landed = started.elapsed();
    let uniq: u64 = ch
        .query("SELECT uniqExact(id) FROM chasyncd_bench.events")
        .fetch_one()
        .await
        .unwrap();
    let inserts: u64 = ch
        .query("SELECT uniqExact(_insert_id) FROM chasyncd_bench.events")
        .fetch_one()
        .await
        .unwrap();
    println!(
        "all {total_rows} rows in ClickHouse after {:.2} s ({:.0} rows/s end to end), \
         {uniq} distinct ids, in {inserts} inserts",
        landed.as_secs_f64(),
        total_rows as f64 / landed.as_secs_f64()
    );
    assert_eq!(uniq, total_rows);
}
