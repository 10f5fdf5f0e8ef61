//! The JSONEachRow load generator of the gateway benchmark (`benches/gateway/bench_gateway.py`):
//! N concurrent clients, each on one keep-alive HTTP/1.1 connection of its own, each posting
//! `INSERT ... FORMAT JSONEachRow` requests of R narrow rows one after another until the
//! duration is over. It prints one JSON object: requests and rows acknowledged (200), failed
//! requests by status, the request latencies (p50, p90, p99, max), the wall time from the
//! first request to the last answer, its own CPU time, and a timeline: for each second of the
//! run (by when a request was sent), the requests answered and the slowest answer in ms.
//!
//! ```text
//! target/release/gateway_load --url 'http://127.0.0.1:8124/?query=INSERT%20INTO%20db.t%20FORMAT%20JSONEachRow' \
//!     [--clients 64] [--rows 100] [--duration 20]
//! ```
//!
//! Row ids are unique across clients and requests (client `c`'s n-th row has id `c << 40 | n`),
//! so `uniqExact(id)` of the table tells whether every acknowledged row landed once. A failed
//! request is counted and retried after 100 ms with new rows (its rows are not counted).
//!
//! Written in Rust so that the client side costs the shared cores as little as possible: one
//! request is a few microseconds of client CPU (see `cpu_s` in the output).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chasync_benches::{narrow_json, narrow_row};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

struct Args {
    url: String,
    clients: u64,
    rows: u64,
    duration: Duration,
}

fn args() -> Args {
    let mut a = Args {
        url: String::new(),
        clients: 64,
        rows: 100,
        duration: Duration::from_secs(20),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it
            .next()
            .unwrap_or_else(|| die(&format!("{flag} needs a value")));
        let num = |v: &str| -> f64 {
            v.parse()
                .unwrap_or_else(|_| die(&format!("{flag}: not a number: {v}")))
        };
        match flag.as_str() {
            "--url" => a.url = v,
            "--clients" => a.clients = num(&v) as u64,
            "--rows" => a.rows = num(&v) as u64,
            "--duration" => a.duration = Duration::from_secs_f64(num(&v)),
            other => die(&format!("unknown option {other}")),
        }
    }
    if a.url.is_empty() || a.clients == 0 || a.rows == 0 {
        die("usage: gateway_load --url URL [--clients N] [--rows N] [--duration S]");
    }
    a
}

fn die(msg: &str) -> ! {
    eprintln!("gateway_load: {msg}");
    std::process::exit(2)
}

/// What one client did.
#[derive(Default)]
struct Done {
    latencies: Vec<Duration>,
    /// Per second of the run (by when a request was sent): requests answered, slowest (ms).
    timeline: Vec<(u64, f64)>,
    rows: u64,
    failed: BTreeMap<String, u64>,
    first_error: Option<String>,
}

/// User + system CPU seconds of this process (`/proc/self/stat`).
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

async fn client(c: u64, a: &Args, started: Instant, deadline: Instant) -> Done {
    // One keep-alive connection per client, as a client library holds it.
    let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build(HttpConnector::new());
    let mut done = Done::default();
    let mut next_id = c << 40;
    let mut body = String::with_capacity(a.rows as usize * 80);
    while Instant::now() < deadline {
        body.clear();
        for id in next_id..next_id + a.rows {
            narrow_json(&narrow_row(id), &mut body);
        }
        next_id += a.rows;
        let req = hyper::Request::post(&a.url)
            .body(Full::new(Bytes::from(body.clone())))
            .expect("request");
        let t = Instant::now();
        let outcome = match http.request(req).await {
            Ok(resp) => {
                let status = resp.status();
                match resp.into_body().collect().await {
                    Ok(_) if status.is_success() => Ok(()),
                    Ok(b) => Err((
                        status.as_u16().to_string(),
                        String::from_utf8_lossy(&b.to_bytes()).into_owned(),
                    )),
                    Err(e) => Err(("body".to_string(), e.to_string())),
                }
            }
            Err(e) => Err(("connection".to_string(), e.to_string())),
        };
        match outcome {
            Ok(()) => {
                let took = t.elapsed();
                done.latencies.push(took);
                done.rows += a.rows;
                let second = (t - started).as_secs() as usize;
                if done.timeline.len() <= second {
                    done.timeline.resize(second + 1, (0, 0.0));
                }
                let slot = &mut done.timeline[second];
                slot.0 += 1;
                slot.1 = slot.1.max(took.as_secs_f64() * 1e3);
            }
            Err((kind, text)) => {
                *done.failed.entry(kind).or_default() += 1;
                done.first_error.get_or_insert(text);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    done
}

#[tokio::main]
async fn main() {
    let a: &'static Args = Box::leak(Box::new(args()));
    let cpu0 = cpu_s();
    let started = Instant::now();
    let deadline = started + a.duration;
    let tasks: Vec<_> = (0..a.clients)
        .map(|c| tokio::spawn(client(c, a, started, deadline)))
        .collect();
    let mut all = Done::default();
    for t in tasks {
        let d = t.await.expect("client task");
        all.latencies.extend(d.latencies);
        if all.timeline.len() < d.timeline.len() {
            all.timeline.resize(d.timeline.len(), (0, 0.0));
        }
        for (slot, (n, max)) in all.timeline.iter_mut().zip(d.timeline) {
            slot.0 += n;
            slot.1 = slot.1.max(max);
        }
        all.rows += d.rows;
        for (k, n) in d.failed {
            *all.failed.entry(k).or_default() += n;
        }
        if all.first_error.is_none() {
            all.first_error = d.first_error;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut l = all.latencies;
    l.sort();
    let q = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{}",
        json!({
            "requests": l.len(),
            "rows": all.rows,
            "failed": all.failed,
            "first_error": all.first_error,
            "elapsed_s": elapsed,
            "p50_ms": q(0.50),
            "p90_ms": q(0.90),
            "p99_ms": q(0.99),
            "max_ms": l.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
            "cpu_s": cpu_s() - cpu0,
            "timeline": all.timeline.iter().map(|(n, max)| json!([n, max])).collect::<Vec<_>>(),
        })
    );
}
