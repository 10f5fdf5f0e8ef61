//! The daemon's own counters and the Prometheus text rendering of everything `/metrics`
//! shows.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use chasync_core::Stats;

/// Upper bounds (seconds) of the batch latency histogram.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// A cumulative Prometheus histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if s <= *b {
                self.counts[i].fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                self.counts[i].load(Relaxed)
            );
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Counters of the HTTP side.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Responses of the ingest endpoints by status code.
    pub requests: Mutex<BTreeMap<u16, u64>>,
    /// Seal-to-end latency of batches (queueing in the engine, retries and the insert).
    pub batch_latency: Histogram,
    /// Requests answered from an earlier request with the same retry key.
    pub retries_answered: std::sync::atomic::AtomicU64,
    /// Damaged ranges found in write-ahead logs by this process's recoveries.
    pub wal_corruptions: AtomicU64,
    /// Bytes of those ranges.
    pub wal_corrupt_bytes: AtomicU64,
    /// Connections open.
    pub connections: AtomicU64,
    /// Most connections open at once (`limits.max_connections`, or fewer when the limit of
    /// open files is lower).
    pub connections_max: AtomicU64,
    /// Connections closed at once because every connection was busy.
    pub connections_refused: AtomicU64,
    /// Idle connections closed to make room for a new one.
    pub connections_evicted: AtomicU64,
    /// Connections closed because a request's head did not arrive in time.
    pub header_timeouts: AtomicU64,
    /// Requests answered 408 because their body did not arrive in time.
    pub body_timeouts: AtomicU64,
    /// Requests answered 503 because their body did not fit in the budget of bodies in flight.
    pub bodies_refused: AtomicU64,
}

impl Metrics {
    /// Counts one ingest response.
    pub fn request(&self, status: u16) {
        *self.requests.lock().unwrap().entry(status).or_default() += 1;
    }
}

/// Gauges and per-table counters sampled at render time.
pub struct Sample<'a> {
    /// The engine's counters.
    pub engine: Stats,
    /// Bytes of accepted rows not yet in a batcher.
    pub queue_bytes: u64,
    /// Bytes of write-ahead log on disk.
    pub spool_bytes: u64,
    /// fsyncs of the WAL.
    pub fsyncs: u64,
    /// Data records appended to the WAL.
    pub wal_records: u64,
    /// Per table `(name, rows accepted, bytes accepted)`.
    pub tables: Vec<TableSample<'a>>,
    /// Endpoints and whether the last readiness check reached them (`None`: not checked yet).
    pub endpoints: Vec<(String, Option<bool>)>,
    /// Reports of write-ahead log damage no operator has acknowledged.
    pub damage_unacknowledged: u64,
    /// Bytes of request bodies held in memory.
    pub body_bytes_in_flight: u64,
    /// `limits.max_body_bytes_in_flight`.
    pub body_bytes_in_flight_max: u64,
    /// `limits.header_read_timeout_s`.
    pub header_read_timeout_s: u64,
    /// `limits.body_read_timeout_s`.
    pub body_read_timeout_s: u64,
}

/// The counters of one table (its streams summed).
#[derive(Debug, Default, Clone)]
pub struct TableSample<'a> {
    /// `db.table`.
    pub name: &'a str,
    /// Rows and bytes accepted (durable in the WAL).
    pub accepted: (u64, u64),
    /// Rows and bytes ClickHouse committed.
    pub committed: (u64, u64),
    /// Rows and bytes written to the dead-letter spool.
    pub dead_lettered: (u64, u64),
}

/// The process, as the Prometheus client libraries' process collector shows it (Linux).
#[derive(Debug, Default)]
pub struct Process {
    /// CPU seconds, user and system.
    pub cpu_seconds: f64,
    /// Resident memory.
    pub resident_bytes: u64,
    /// Virtual memory.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The limit of open file descriptors.
    pub max_fds: u64,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

impl Process {
    /// Reads `/proc/self` (zeros where it cannot).
    pub fn read() -> Self {
        let mut p = Process::default();
        // Times in /proc are in USER_HZ ticks, 100 a second on the architectures Linux runs.
        let ticks = 100.0;
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r)
        {
            // Fields after the command name, starting at field 3 (state).
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| {
                f.get(i - 3)
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            p.cpu_seconds = (num(14) + num(15)) / ticks;
            p.virtual_bytes = num(23) as u64;
            let start_ticks = num(22);
            if let Some(boot) = std::fs::read_to_string("/proc/stat").ok().and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())
            }) {
                p.start_time_seconds = boot + start_ticks / ticks;
            }
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            p.resident_bytes = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024);
        }
        p.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
            p.max_fds = limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
                .unwrap_or(0);
        }
        p
    }
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders the Prometheus text exposition.
pub fn render(m: &Metrics, s: &Sample) -> String {
    let mut out = String::with_capacity(4096);
    let e = &s.engine;
    let _ = writeln!(
        out,
        "# HELP chasyncd_requests_total Ingest requests answered, by HTTP status.\n# TYPE chasyncd_requests_total counter"
    );
    for (code, n) in m.requests.lock().unwrap().iter() {
        let _ = writeln!(out, "chasyncd_requests_total{{code=\"{code}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP chasyncd_rows_accepted_total Rows accepted (written to the WAL), by table.\n# TYPE chasyncd_rows_accepted_total counter"
    );
    for t in &s.tables {
        let _ = writeln!(
            out,
            "chasyncd_rows_accepted_total{{table=\"{}\"}} {}",
            escape(t.name),
            t.accepted.0
        );
    }
    type Pick = fn(&TableSample<'_>) -> u64;
    let per_table: [(&str, &str, Pick); 5] = [
        (
            "chasyncd_bytes_accepted_total",
            "Bytes of rows accepted, by table.",
            |t| t.accepted.1,
        ),
        (
            "chasyncd_table_rows_committed_total",
            "Rows ClickHouse committed, by table.",
            |t| t.committed.0,
        ),
        (
            "chasyncd_table_bytes_committed_total",
            "Bytes (as received) of the rows ClickHouse committed, by table.",
            |t| t.committed.1,
        ),
        (
            "chasyncd_table_rows_dead_lettered_total",
            "Rows written to the dead-letter spool, by table.",
            |t| t.dead_lettered.0,
        ),
        (
            "chasyncd_table_bytes_dead_lettered_total",
            "Bytes (as received) of the rows written to the dead-letter spool, by table.",
            |t| t.dead_lettered.1,
        ),
    ];
    for (name, help, pick) in per_table {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for t in &s.tables {
            let _ = writeln!(out, "{name}{{table=\"{}\"}} {}", escape(t.name), pick(t));
        }
    }
    let _ = writeln!(
        out,
        "# HELP chasyncd_build_info The version of chasyncd.\n# TYPE chasyncd_build_info gauge\n\
         chasyncd_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        out,
        "# HELP chasyncd_endpoint_up Whether the last readiness check reached the ClickHouse endpoint.\n# TYPE chasyncd_endpoint_up gauge"
    );
    for (url, up) in &s.endpoints {
        if let Some(up) = up {
            let _ = writeln!(
                out,
                "chasyncd_endpoint_up{{url=\"{}\"}} {}",
                escape(url),
                u8::from(*up)
            );
        }
    }
    let p = Process::read();
    let _ = writeln!(
        out,
        "# HELP process_cpu_seconds_total User and system CPU time.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}\n\
         # HELP process_resident_memory_bytes Resident memory.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}\n\
         # HELP process_virtual_memory_bytes Virtual memory.\n# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes {}\n\
         # HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {}\n\
         # HELP process_max_fds The limit of open file descriptors.\n# TYPE process_max_fds gauge\nprocess_max_fds {}\n\
         # HELP process_start_time_seconds Start time since the Unix epoch.\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {}",
        p.cpu_seconds,
        p.resident_bytes,
        p.virtual_bytes,
        p.open_fds,
        p.max_fds,
        p.start_time_seconds
    );
    let counters: [(&str, &str, u64); 14] = [
        (
            "chasyncd_retried_requests_total",
            "Inserts answered from an earlier insert with the same insert_deduplication_token (not appended again).",
            m.retries_answered
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "chasyncd_rows_committed_total",
            "Rows ClickHouse committed.",
            e.rows_committed,
        ),
        (
            "chasyncd_bytes_committed_total",
            "Bytes (uncompressed JSON) ClickHouse committed.",
            e.bytes_committed,
        ),
        (
            "chasyncd_batches_sealed_total",
            "Batches sealed and submitted.",
            e.batches_sealed,
        ),
        (
            "chasyncd_batches_committed_total",
            "Batches ClickHouse committed.",
            e.batches_committed,
        ),
        (
            "chasyncd_retries_total",
            "Insert attempts after the first.",
            e.retries,
        ),
        (
            "chasyncd_failed_attempts_total",
            "Insert attempts that failed.",
            e.failed_attempts,
        ),
        (
            "chasyncd_batches_dead_lettered_total",
            "Batches written to the dead-letter spool.",
            e.batches_dead_lettered,
        ),
        (
            "chasyncd_rows_dead_lettered_total",
            "Rows written to the dead-letter spool.",
            e.rows_dead_lettered,
        ),
        (
            "chasyncd_wal_fsyncs_total",
            "fsyncs of the write-ahead log (group commits).",
            s.fsyncs,
        ),
        (
            "chasyncd_outcomes_landed_total",
            "Batches whose earlier attempt had an unknown outcome (a lost answer, a crash) found to have landed: committed, not sent again.",
            e.outcomes_landed,
        ),
        (
            "chasyncd_outcomes_not_landed_total",
            "Batches whose earlier attempt had an unknown outcome found not to have landed, and sent.",
            e.outcomes_not_landed,
        ),
        (
            "chasyncd_outcomes_unresolved_total",
            "Batches whose earlier attempt had an unknown outcome that the checks could not tell: not sent again, dead-lettered.",
            e.outcomes_unresolved,
        ),
        (
            "chasyncd_unchecked_resends_total",
            "Batches sent again after an unknown outcome without any check (at-least-once tables): each may have landed twice.",
            e.unchecked_resends,
        ),
    ];
    for (name, help, v) in counters {
        metric(&mut out, name, "counter", help, v);
    }
    metric(
        &mut out,
        "chasyncd_wal_records_total",
        "counter",
        "Data records (accepted requests) appended to the write-ahead log.",
        s.wal_records,
    );
    metric(
        &mut out,
        "chasyncd_wal_corruptions_total",
        "counter",
        "Damaged byte ranges found in write-ahead logs at start (records after them are recovered).",
        m.wal_corruptions.load(Relaxed),
    );
    metric(
        &mut out,
        "chasyncd_wal_corrupt_bytes_total",
        "counter",
        "Bytes of write-ahead log found damaged at start (lost).",
        m.wal_corrupt_bytes.load(Relaxed),
    );
    metric(
        &mut out,
        "chasyncd_wal_damage_unacknowledged",
        "gauge",
        "Reports of write-ahead log damage not acknowledged (chasyncd --ack-corruption); /ready is 503 while above 0.",
        s.damage_unacknowledged,
    );
    let gauges: [(&str, &str, u64); 6] = [
        (
            "chasyncd_queue_bytes",
            "Bytes of accepted rows waiting for a batcher.",
            s.queue_bytes,
        ),
        (
            "chasyncd_spool_bytes",
            "Bytes of write-ahead log on disk.",
            s.spool_bytes,
        ),
        (
            "chasyncd_inserts_in_flight",
            "Inserts in flight.",
            e.in_flight,
        ),
        (
            "chasyncd_concurrency_limit",
            "The adaptive limit of inserts in flight.",
            e.concurrency_limit,
        ),
        (
            "chasyncd_breaker_open",
            "1 while the circuit breaker holds inserts back.",
            e.breaker_open as u64,
        ),
        (
            "chasyncd_at_least_once_tables",
            "Tables (per user) that get at-least-once delivery: neither deduplicated by ClickHouse nor checkable after a lost answer (see /ready).",
            e.at_least_once_tables,
        ),
    ];
    for (name, help, v) in gauges {
        metric(&mut out, name, "gauge", help, v);
    }
    let abuse: [(&str, &str, &str, u64); 11] = [
        (
            "chasyncd_connections",
            "gauge",
            "Client connections open.",
            m.connections.load(Relaxed),
        ),
        (
            "chasyncd_connections_max",
            "gauge",
            "Most client connections open at once (limits.max_connections, or fewer when the limit of open files is lower).",
            m.connections_max.load(Relaxed),
        ),
        (
            "chasyncd_connections_evicted_total",
            "counter",
            "Idle connections closed to make room for a new one (at the connection limit).",
            m.connections_evicted.load(Relaxed),
        ),
        (
            "chasyncd_connections_refused_total",
            "counter",
            "Connections closed at once: at the connection limit with every connection busy.",
            m.connections_refused.load(Relaxed),
        ),
        (
            "chasyncd_header_timeouts_total",
            "counter",
            "Connections closed because a request's head did not arrive within limits.header_read_timeout_s.",
            m.header_timeouts.load(Relaxed),
        ),
        (
            "chasyncd_header_read_timeout_seconds",
            "gauge",
            "limits.header_read_timeout_s.",
            s.header_read_timeout_s,
        ),
        (
            "chasyncd_body_timeouts_total",
            "counter",
            "Requests answered 408: the body did not arrive within limits.body_read_timeout_s.",
            m.body_timeouts.load(Relaxed),
        ),
        (
            "chasyncd_body_read_timeout_seconds",
            "gauge",
            "limits.body_read_timeout_s.",
            s.body_read_timeout_s,
        ),
        (
            "chasyncd_body_bytes_in_flight",
            "gauge",
            "Bytes of request bodies held in memory (read or decoded, not yet in the write-ahead log).",
            s.body_bytes_in_flight,
        ),
        (
            "chasyncd_body_bytes_in_flight_max",
            "gauge",
            "limits.max_body_bytes_in_flight.",
            s.body_bytes_in_flight_max,
        ),
        (
            "chasyncd_bodies_refused_total",
            "counter",
            "Requests answered 503: their body did not fit in limits.max_body_bytes_in_flight.",
            m.bodies_refused.load(Relaxed),
        ),
    ];
    for (name, kind, help, v) in abuse {
        metric(&mut out, name, kind, help, v);
    }
    m.batch_latency.render(
        "chasyncd_batch_latency_seconds",
        "Time from sealing a batch to its commit (or dead letter).",
        &mut out,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_labels_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.request(200);
        m.request(200);
        m.request(503);
        m.batch_latency.observe(Duration::from_millis(20));
        m.batch_latency.observe(Duration::from_secs(2));
        let text = render(
            &m,
            &Sample {
                engine: Stats {
                    rows_committed: 42,
                    outcomes_landed: 3,
                    at_least_once_tables: 1,
                    ..Stats::default()
                },
                queue_bytes: 5,
                spool_bytes: 6,
                fsyncs: 1,
                wal_records: 2,
                tables: vec![TableSample {
                    name: "db.t\"x",
                    accepted: (3, 30),
                    committed: (2, 20),
                    dead_lettered: (1, 10),
                }],
                endpoints: vec![
                    ("http://a:8123".into(), Some(true)),
                    ("http://b:8123".into(), None),
                ],
                damage_unacknowledged: 1,
                body_bytes_in_flight: 7,
                body_bytes_in_flight_max: 8,
                header_read_timeout_s: 9,
                body_read_timeout_s: 10,
            },
        );
        for line in [
            "chasyncd_requests_total{code=\"200\"} 2",
            "chasyncd_requests_total{code=\"503\"} 1",
            "chasyncd_rows_accepted_total{table=\"db.t\\\"x\"} 3",
            "chasyncd_table_rows_committed_total{table=\"db.t\\\"x\"} 2",
            "chasyncd_table_bytes_dead_lettered_total{table=\"db.t\\\"x\"} 10",
            "chasyncd_endpoint_up{url=\"http://a:8123\"} 1",
            "chasyncd_rows_committed_total 42",
            "chasyncd_outcomes_landed_total 3",
            "chasyncd_outcomes_unresolved_total 0",
            "chasyncd_at_least_once_tables 1",
            "chasyncd_spool_bytes 6",
            "chasyncd_wal_damage_unacknowledged 1",
            "chasyncd_body_bytes_in_flight 7",
            "chasyncd_body_bytes_in_flight_max 8",
            "chasyncd_header_read_timeout_seconds 9",
            "chasyncd_batch_latency_seconds_bucket{le=\"0.01\"} 0",
            "chasyncd_batch_latency_seconds_bucket{le=\"0.025\"} 1",
            "chasyncd_batch_latency_seconds_bucket{le=\"2.5\"} 2",
            "chasyncd_batch_latency_seconds_bucket{le=\"+Inf\"} 2",
            "chasyncd_batch_latency_seconds_count 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        let build = format!(
            "chasyncd_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.lines().any(|l| l == build), "{text}");
        assert!(
            !text.contains("http://b:8123"),
            "an endpoint not checked yet has no value"
        );
        // The process collector reads this process.
        let rss = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap();
        assert!(rss > 1 << 20, "{rss}");
    }
}
