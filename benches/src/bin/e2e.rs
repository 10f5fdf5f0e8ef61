//! End-to-end benchmark against a real ClickHouse: the same rows through every contender
//! (chasync in Rust, Python and the shell; the raw `clickhouse` crate; clickhouse-connect; the
//! seed's aiohttp class; curl posting pre-encoded files as the server's ceiling), each in a
//! process of its own (so client CPU and peak RSS are each contender's own), interleaved over
//! several runs; reports medians as markdown and JSON, with the performance issue's targets.
//!
//! ```text
//! target/release/e2e [--rows N] [--runs K] [--schema narrow|wide|both] [--only a,b]
//!                    [--py-rows N] [--seed-rows N] [--python PATH] [--chasync PATH]
//!                    [--out FILE.json]
//! target/release/e2e --one CONTENDER --schema narrow|wide --rows N   # one Rust contender
//! ```
//!
//! Defaults: 2,000,000 rows, 3 runs, both schemas, every contender; the Python contenders
//! get the first `--py-rows` (default min(rows, 1,000,000)) and the seed's class the first
//! `--seed-rows` (default min(rows, 100,000)) of the same rows. `--only` takes contender names
//! and the groups `rust`, `curl`, `cli`, `python`. Results: `target/bench-e2e.md` and
//! `target/bench-e2e.json` (next to the binary's profile directory).
//!
//! `./run bench-e2e` (scripts/bench-e2e.sh) builds what it needs, prepares the Python venv
//! and starts the project's ClickHouse. Needs a server at `CLICKHOUSE_URL` (default
//! `http://127.0.0.1:8123`), `curl` and `/usr/bin/time`.
//!
//! The rows: one deterministic generator (`chasync_benches::narrow_row` / `wide_row`). The
//! harness writes them once per schema as NDJSON, RowBinary and Native files (not timed), each
//! only when a contender reads it; the curl and `chasync insert` contenders post those files,
//! the Python contenders read the NDJSON file (not timed) into dicts, the Rust contenders
//! generate the rows in the producer loop. Before the runs the server loads the NDJSON rows
//! once (from the file, or streamed from the generator when no file is written) and computes
//! the reference: `count()` and `sum(cityHash64(tuple(*)))` (of the first N ids for
//! contenders given fewer rows). After every contender run the same two figures must match,
//! or the harness stops.
//!
//! When the server runs on this machine (it owns the listening socket of the URL's port), the
//! harness also reads the server process's CPU time before and after each contender process:
//! client and server share the cores, so client + server CPU per row bounds what a contender
//! can reach.
//!
//! With `CHASYNC_E2E_HEAP=1` the Rust contenders also count their live heap (a counting
//! global allocator, [`chasync_benches::heap`]) and report its peak next to peak RSS (`heap N
//! MB` in the log lines, `peak_heap_mb` in the JSON's runs): what the program held at its
//! busiest, without what the allocator keeps after frees.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chasync_benches::{
    NARROW_DDL, Narrow, WIDE_DDL, Wide, heap, narrow_json, narrow_row, wide_json, wide_row,
};
use chasync_core::TableSchema;
use chasync_core::{BatchEncoder, Config, DynIngestor, Ingestor, RowBinary, Stats};
use chasync_core::{ColumnBatch, DynRow, Value};
use chasync_core::{NativeBatch, NativeOptions};
use serde_json::json;

/// How a contender runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// This binary with `--one NAME`.
    Rust,
    /// `curl --data-binary @FILE` of the pre-encoded file in this format.
    Curl(&'static str),
    /// The `chasync` CLI: `chasync insert` of the NDJSON file.
    Cli,
    /// `benches/python/e2e_python.py --one NAME`.
    Python,
}

/// How many rows a contender gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Size {
    Full,
    Python,
    Seed,
}

struct Contender {
    name: &'static str,
    kind: Kind,
    size: Size,
    /// Whether it inserts (the asyncio floor does not).
    lands: bool,
    what: &'static str,
}

const fn c(
    name: &'static str,
    kind: Kind,
    size: Size,
    lands: bool,
    what: &'static str,
) -> Contender {
    Contender {
        name,
        kind,
        size,
        lands,
        what,
    }
}

const CONTENDERS: &[Contender] = &[
    c(
        "chasync-typed",
        Kind::Rust,
        Size::Full,
        true,
        "chasync `Ingestor<T>`, typed rows → RowBinary",
    ),
    c(
        "raw-crate-insert",
        Kind::Rust,
        Size::Full,
        true,
        "raw `clickhouse` crate `insert()` of the same typed rows (one insert)",
    ),
    c(
        "curl-rowbinary",
        Kind::Curl("RowBinary"),
        Size::Full,
        true,
        "curl posting the RowBinary file (server ceiling)",
    ),
    c(
        "chasync-dynamic-rows",
        Kind::Rust,
        Size::Full,
        true,
        "chasync `DynIngestor`, `DynRow`s → Native",
    ),
    c(
        "chasync-dynamic-columns",
        Kind::Rust,
        Size::Full,
        true,
        "chasync `DynIngestor`, `ColumnBatch`es of 100k → Native",
    ),
    c(
        "curl-native",
        Kind::Curl("Native"),
        Size::Full,
        true,
        "curl posting the Native file (server ceiling)",
    ),
    c(
        "chasync-insert-ndjson",
        Kind::Cli,
        Size::Full,
        true,
        "`chasync insert` of the NDJSON file (CLI)",
    ),
    c(
        "curl-ndjson",
        Kind::Curl("JSONEachRow"),
        Size::Full,
        true,
        "curl posting the NDJSON file as JSONEachRow",
    ),
    c(
        "py-seed",
        Kind::Python,
        Size::Seed,
        true,
        "Python: the seed's class (aiohttp + JSONEachRow), `stream_insert` from an asyncio.Queue of dicts",
    ),
    c(
        "py-asyncio-floor",
        Kind::Python,
        Size::Python,
        false,
        "Python: the same producer/consumer over an asyncio.Queue, no insert at all (floor)",
    ),
    c(
        "py-dropin",
        Kind::Python,
        Size::Python,
        true,
        "Python: chasync drop-in `ClickHouseAsyncInserter.stream_insert`, same queue",
    ),
    c(
        "py-write-many",
        Kind::Python,
        Size::Python,
        true,
        "Python: chasync `Inserter.write_many(list of dicts)`",
    ),
    c(
        "py-write-columns-lists",
        Kind::Python,
        Size::Python,
        true,
        "Python: chasync `Inserter.write_columns(dict of lists)`",
    ),
    c(
        "py-write-columns-arrow",
        Kind::Python,
        Size::Python,
        true,
        "Python: chasync `Inserter.write_columns(pyarrow.Table)`",
    ),
    c(
        "py-cc-insert",
        Kind::Python,
        Size::Python,
        true,
        "Python: clickhouse-connect async `insert()` (dicts → tuples, 50k per call)",
    ),
    c(
        "py-cc-insert-arrow",
        Kind::Python,
        Size::Python,
        true,
        "Python: clickhouse-connect async `insert_arrow(pyarrow.Table)` (reference)",
    ),
];

/// Ratios shown next to a contender: (reference contender, label).
fn ratio_refs(name: &str) -> &'static [(&'static str, &'static str)] {
    match name {
        "chasync-typed" => &[
            ("raw-crate-insert", "raw insert()"),
            ("curl-rowbinary", "RowBinary ceiling"),
        ],
        "raw-crate-insert" => &[("curl-rowbinary", "RowBinary ceiling")],
        "chasync-dynamic-rows" | "chasync-dynamic-columns" => &[("curl-native", "Native ceiling")],
        "chasync-insert-ndjson" => &[("curl-ndjson", "curl NDJSON")],
        "py-dropin" => &[
            ("py-seed", "seed class"),
            ("py-asyncio-floor", "asyncio floor"),
        ],
        "py-write-many" => &[("py-cc-insert", "cc insert()")],
        "py-write-columns-lists" | "py-write-columns-arrow" | "py-cc-insert-arrow" => {
            &[("curl-native", "Native ceiling")]
        }
        _ => &[],
    }
}

/// The performance issue's targets: (contender, reference, minimum ratio).
const TARGETS: &[(&str, &str, f64)] = &[
    ("chasync-typed", "raw-crate-insert", 1.1),
    ("chasync-typed", "curl-rowbinary", 0.8),
    ("py-write-columns-arrow", "curl-native", 0.8),
    ("py-write-columns-lists", "curl-native", 0.8),
    ("py-write-many", "py-cc-insert", 3.0),
    ("py-dropin", "py-seed", 10.0),
    ("py-dropin", "py-asyncio-floor", 0.8),
    ("chasync-insert-ndjson", "curl-ndjson", 1.5),
];

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Schema {
    Narrow,
    Wide,
}

impl Schema {
    fn name(self) -> &'static str {
        match self {
            Schema::Narrow => "narrow",
            Schema::Wide => "wide",
        }
    }

    fn parse(s: &str) -> Schema {
        match s {
            "narrow" => Schema::Narrow,
            "wide" => Schema::Wide,
            other => panic!("unknown schema {other}: narrow or wide"),
        }
    }

    fn ddl(self) -> &'static str {
        match self {
            Schema::Narrow => NARROW_DDL,
            Schema::Wide => WIDE_DDL,
        }
    }

    fn table(self) -> String {
        format!("chasync_bench.{}", self.name())
    }
}

fn url() -> String {
    std::env::var("CLICKHOUSE_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8123".into())
        .trim_end_matches('/')
        .to_string()
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

struct Opts {
    rows: u64,
    py_rows: u64,
    seed_rows: u64,
    runs: usize,
    schemas: Vec<Schema>,
    only: Vec<&'static Contender>,
    python: String,
    python_script: PathBuf,
    chasync: PathBuf,
    data_dir: PathBuf,
    out: PathBuf,
}

impl Opts {
    fn rows_of(&self, c: &Contender) -> u64 {
        match c.size {
            Size::Full => self.rows,
            Size::Python => self.py_rows,
            Size::Seed => self.seed_rows,
        }
    }
}

/// Counts the live heap when `CHASYNC_E2E_HEAP=1` (off otherwise: one relaxed load per
/// allocation).
#[global_allocator]
static ALLOC: heap::CountingAlloc = heap::CountingAlloc;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        eprintln!(
            "e2e [--rows N] [--runs K] [--schema narrow|wide|both] [--only a,b] [--py-rows N] \
             [--seed-rows N] [--python PATH] [--chasync PATH] [--out FILE.json]\n\
             e2e --one CONTENDER --schema narrow|wide --rows N\ncontenders: {}",
            CONTENDERS
                .iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
                .join(", ")
        );
        return;
    }
    let rows: u64 = arg(&args, "--rows").map_or(2_000_000, |v| v.parse().expect("--rows"));
    if let Some(one) = arg(&args, "--one") {
        let count_heap = std::env::var("CHASYNC_E2E_HEAP").as_deref() == Ok("1");
        if count_heap {
            heap::enable();
        }
        let schema = Schema::parse(&arg(&args, "--schema").unwrap_or_else(|| "narrow".into()));
        let mut result = run_one(&one, schema, rows).await;
        if count_heap {
            result.insert(
                "heap_peak_mb".into(),
                heap::peak_bytes() as f64 / 1_048_576.0,
            );
        }
        println!("{}", kv_line(&result));
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    let bin_dir = exe.parent().expect("binary directory").to_path_buf();
    let repo = std::env::current_dir().expect("working directory");
    // `--only` takes contender names and the groups `rust`, `curl`, `cli`, `python`.
    let only: Vec<&'static Contender> = match arg(&args, "--only") {
        Some(v) => {
            let wanted: Vec<&str> = v.split(',').collect();
            for n in &wanted {
                assert!(
                    ["rust", "curl", "cli", "python"].contains(n)
                        || CONTENDERS.iter().any(|c| c.name == *n),
                    "unknown contender {n}"
                );
            }
            CONTENDERS
                .iter()
                .filter(|c| {
                    let group = match c.kind {
                        Kind::Rust => "rust",
                        Kind::Curl(_) => "curl",
                        Kind::Cli => "cli",
                        Kind::Python => "python",
                    };
                    wanted.iter().any(|n| *n == c.name || *n == group)
                })
                .collect()
        }
        None => CONTENDERS.iter().collect(),
    };
    let opts = Opts {
        rows,
        py_rows: arg(&args, "--py-rows")
            .map_or(rows.min(1_000_000), |v| v.parse().expect("--py-rows")),
        seed_rows: arg(&args, "--seed-rows")
            .map_or(rows.min(100_000), |v| v.parse().expect("--seed-rows")),
        runs: arg(&args, "--runs").map_or(3, |v| v.parse().expect("--runs")),
        schemas: match arg(&args, "--schema").as_deref().unwrap_or("both") {
            "both" => vec![Schema::Narrow, Schema::Wide],
            s => vec![Schema::parse(s)],
        },
        only,
        python: arg(&args, "--python")
            .or_else(|| std::env::var("CHASYNC_BENCH_PYTHON").ok())
            .unwrap_or_else(|| "python3".into()),
        python_script: repo.join("benches/python/e2e_python.py"),
        chasync: arg(&args, "--chasync").map_or_else(|| bin_dir.join("chasync"), PathBuf::from),
        data_dir: bin_dir.join("bench-e2e-data"),
        out: arg(&args, "--out").map_or_else(
            || bin_dir.parent().unwrap_or(&bin_dir).join("bench-e2e.json"),
            PathBuf::from,
        ),
    };
    assert!(
        opts.py_rows <= opts.rows && opts.seed_rows <= opts.rows,
        "--py-rows and --seed-rows cannot exceed --rows (they are the first ids of the same rows)"
    );
    let machine = machine().await;
    eprintln!("e2e: {machine}");
    let mut references: BTreeMap<(Schema, u64), (u64, u64)> = BTreeMap::new();
    exec("CREATE DATABASE IF NOT EXISTS chasync_bench").await;
    for &schema in &opts.schemas {
        prepare(&opts, schema, &mut references).await;
    }
    let mut results: BTreeMap<(Schema, &'static str), Vec<Measured>> = BTreeMap::new();
    for run in 0..opts.runs {
        for &schema in &opts.schemas {
            for c in &opts.only {
                let m = run_contender(&opts, c, schema, &exe, &references).await;
                eprintln!(
                    "run {}: {:<6} {:<24} {:>9} rows {:>8.3} s {:>11.0} rows/s  cpu {:>6.2} s  server cpu {:>6.2} s  rss {:>5.0} MB{}{}",
                    run + 1,
                    schema.name(),
                    c.name,
                    m.rows,
                    m.seconds,
                    m.rows_per_s(),
                    m.cpu_s,
                    m.server_cpu_s.unwrap_or(f64::NAN),
                    m.rss_mb,
                    m.heap_mb
                        .map_or(String::new(), |h| format!(" (heap {h:.0} MB)")),
                    m.p50.map_or(String::new(), |p| format!(
                        "  p50/p95/p99 {:.0}/{:.0}/{:.0} ms",
                        p,
                        m.p95.unwrap_or(f64::NAN),
                        m.p99.unwrap_or(f64::NAN)
                    ))
                );
                results.entry((schema, c.name)).or_default().push(m);
            }
        }
    }
    report(&opts, &machine, &references, &results);
}

#[derive(Clone, Debug)]
struct Measured {
    rows: u64,
    /// Time of the ingest itself: measured inside the contender around the timed part (Rust,
    /// Python), or around the process by the harness (curl, the CLI).
    seconds: f64,
    /// Client CPU seconds: user + system of the contender process (`/usr/bin/time`), or, for
    /// the Python contenders, of the timed part only (`time.process_time()`), so that
    /// reading the input file is not counted.
    cpu_s: f64,
    /// Peak RSS: of the process (`/usr/bin/time`), or of the timed part (Python: the peak
    /// reset before it), in MB.
    rss_mb: f64,
    /// Python: resident MB before the timed part (the input rows held in memory).
    input_rss_mb: Option<f64>,
    /// Rust contenders with `CHASYNC_E2E_HEAP=1`: the peak of the live heap in MB (what the
    /// program held, without what the allocator keeps; see [`heap`]).
    heap_mb: Option<f64>,
    /// CPU seconds (user + system) the ClickHouse server process used while the contender
    /// process ran, when the server runs on this machine (see [`server_pid`]).
    server_cpu_s: Option<f64>,
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
    batches: Option<f64>,
}

impl Measured {
    /// Rows landed per second of ingest.
    fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.seconds
    }
}

async fn run_contender(
    opts: &Opts,
    c: &Contender,
    schema: Schema,
    exe: &Path,
    references: &BTreeMap<(Schema, u64), (u64, u64)>,
) -> Measured {
    let rows = opts.rows_of(c);
    reset(schema).await;
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "TIME %e %U %S %M"]);
    let files = files(opts, schema);
    match c.kind {
        Kind::Rust => {
            cmd.arg(exe)
                .args(["--one", c.name, "--schema", schema.name()])
                .args(["--rows", &rows.to_string()]);
        }
        Kind::Curl(format) => {
            let file = match format {
                "RowBinary" => &files.rowbinary,
                "Native" => &files.native,
                _ => &files.ndjson,
            };
            cmd.arg("curl")
                .args(["-fsS", "-o", "/dev/null"])
                .arg(insert_url(schema, format))
                .arg("--data-binary")
                .arg(format!("@{}", file.display()));
        }
        Kind::Cli => {
            cmd.arg(&opts.chasync)
                .args(["--quiet", "--json", "insert", "--url", &url()])
                .args(["--table", &schema.table()])
                .arg("--dlq-dir")
                .arg(std::env::temp_dir().join("chasync-e2e-dlq"))
                .arg(&files.ndjson);
        }
        Kind::Python => {
            cmd.arg(&opts.python)
                .arg(&opts.python_script)
                .args(["--one", c.name, "--schema", schema.name()])
                .args(["--rows", &rows.to_string()])
                .arg("--input")
                .arg(&files.ndjson);
        }
    }
    let server = server_pid();
    let server_before = server.and_then(process_cpu_s);
    let started = Instant::now();
    let out = cmd.output().expect("run a contender under /usr/bin/time");
    let wall = started.elapsed().as_secs_f64();
    // Read before the checks below, which are server work of the harness's own.
    let server_cpu_s = match (server.and_then(process_cpu_s), server_before) {
        (Some(after), Some(before)) => Some(after - before),
        _ => None,
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} ({}) failed:\n{stdout}\n{stderr}",
        c.name,
        schema.name()
    );
    let time_line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("TIME "))
        .expect("time output");
    let t: Vec<f64> = time_line[5..]
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let inner: BTreeMap<String, f64> = match c.kind {
        Kind::Cli => cli_summary(&stdout),
        _ => parse_line(stdout.lines().last().unwrap_or("")),
    };
    if c.lands {
        let (count, sum) = checksum(schema, rows).await;
        let want = references[&(schema, rows)];
        assert_eq!(
            (count, sum),
            want,
            "{} ({}): count and checksum {:?} differ from the reference {:?}: not the same rows",
            c.name,
            schema.name(),
            (count, sum),
            want
        );
        let total = count_all(schema).await;
        assert_eq!(total, rows, "{}: {total} rows in the table", c.name);
    }
    if let Some(&n) = inner.get("rows") {
        assert_eq!(n as u64, rows, "{} moved {n} rows", c.name);
    }
    Measured {
        rows,
        seconds: match c.kind {
            Kind::Rust | Kind::Python => inner["seconds"],
            Kind::Curl(_) | Kind::Cli => wall,
        },
        cpu_s: inner.get("cpu").copied().unwrap_or(t[1] + t[2]),
        rss_mb: inner.get("rss_peak_mb").copied().unwrap_or(t[3] / 1024.0),
        input_rss_mb: inner.get("rss_input_mb").copied(),
        heap_mb: inner.get("heap_peak_mb").copied(),
        server_cpu_s,
        p50: inner.get("p50").copied(),
        p95: inner.get("p95").copied(),
        p99: inner.get("p99").copied(),
        batches: inner.get("batches").copied(),
    }
}

/// The process of the ClickHouse server at `CLICKHOUSE_URL`, when it listens on this machine:
/// the owner of the listening TCP socket on the URL's port on a loopback or local address
/// (`/proc/net/tcp{,6}`, then `/proc/*/fd`). `None` for a remote server or where `/proc`
/// does not tell (then the server CPU column is left empty). Looked up once.
fn server_pid() -> Option<u32> {
    static PID: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *PID.get_or_init(find_server_pid)
}

fn find_server_pid() -> Option<u32> {
    let u = url();
    let hostport = u.split("://").nth(1).unwrap_or(&u);
    let hostport = hostport.split('/').next()?;
    let port: u16 = hostport.rsplit(':').next()?.parse().ok()?;
    let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "0.0.0.0") {
        return None;
    }
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEX_IP:HEX_PORT; state 0A is LISTEN; field 9 is the inode.
            if f.len() > 9
                && f[3] == "0A"
                && f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    == Some(port)
            {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| link.as_os_str() == i.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// User + system CPU seconds of a process, all its threads (`/proc/PID/stat`).
fn process_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks())
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux, where it is not told).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The latencies of the CLI's `--json` summary (the engine's `Stats` fields).
fn cli_summary(stdout: &str) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    let Ok(v) = serde_json::from_str::<serde_json::Value>(stdout.trim()) else {
        return m;
    };
    let find = |key: &str| -> Option<f64> {
        v.get(key)
            .or_else(|| v.get("stats").and_then(|s| s.get(key)))
            .and_then(serde_json::Value::as_f64)
    };
    for (k, key) in [
        ("p50", "latency_ms_p50"),
        ("p95", "latency_ms_p95"),
        ("p99", "latency_ms_p99"),
        ("batches", "batches_committed"),
    ] {
        if let Some(x) = find(key) {
            m.insert(k.to_string(), x);
        }
    }
    m
}

fn insert_url(schema: Schema, format: &str) -> String {
    format!(
        "{}/?query=INSERT%20INTO%20{}%20FORMAT%20{format}",
        url(),
        schema.table()
    )
}

struct Files {
    ndjson: PathBuf,
    rowbinary: PathBuf,
    native: PathBuf,
}

fn files(opts: &Opts, schema: Schema) -> Files {
    let base = opts
        .data_dir
        .join(format!("{}-{}", schema.name(), opts.rows));
    Files {
        ndjson: base.with_extension("ndjson"),
        rowbinary: base.with_extension("rowbinary"),
        native: base.with_extension("native"),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn median_of(ms: &[Measured], f: impl Fn(&Measured) -> Option<f64>) -> Option<f64> {
    let v: Vec<f64> = ms.iter().filter_map(f).collect();
    (!v.is_empty()).then(|| median(v))
}

/// The ratio of `a`'s rate to `b`'s in each round both ran (run `i` of each).
fn per_run_ratios(a: &[Measured], b: &[Measured]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.rows_per_s() / y.rows_per_s())
        .collect()
}

fn rate(ms: &[Measured]) -> f64 {
    median(ms.iter().map(Measured::rows_per_s).collect())
}

fn report(
    opts: &Opts,
    machine: &str,
    references: &BTreeMap<(Schema, u64), (u64, u64)>,
    results: &BTreeMap<(Schema, &'static str), Vec<Measured>>,
) {
    let mut md = format!(
        "Machine: {machine}.\n\n`e2e --rows {} --py-rows {} --seed-rows {} --runs {}`: medians of {} runs, \
         contenders interleaved, the table truncated before each run; count and \
         `sum(cityHash64(tuple(*)))` checked against the server's load of the same NDJSON file \
         after every run.\n",
        opts.rows, opts.py_rows, opts.seed_rows, opts.runs, opts.runs
    );
    let mut schemas_json = serde_json::Map::new();
    let mut target_lines = Vec::new();
    for &schema in &opts.schemas {
        let get = |name: &str| results.get(&(schema, name)).map(|ms| rate(ms));
        md.push_str(&format!(
            "\n### {} schema\n\n| contender | rows | rows/s | ratio | ingest s | client CPU s / M rows | server CPU s / M rows | peak RSS MB | batch p50 / p95 / p99 ms |\n|---|---|---|---|---|---|---|---|---|\n",
            schema.name()
        ));
        let mut contenders_json = Vec::new();
        for c in &opts.only {
            let Some(ms) = results.get(&(schema, c.name)) else {
                continue;
            };
            let rows = ms[0].rows;
            let r = rate(ms);
            let secs = median(ms.iter().map(|m| m.seconds).collect());
            let cpu_per_m = median(ms.iter().map(|m| m.cpu_s / (m.rows as f64 / 1e6)).collect());
            let rss = median(ms.iter().map(|m| m.rss_mb).collect());
            let server_per_m = median_of(ms, |m| m.server_cpu_s.map(|s| s / (m.rows as f64 / 1e6)));
            let input_rss = median_of(ms, |m| m.input_rss_mb);
            let (p50, p95, p99) = (
                median_of(ms, |m| m.p50),
                median_of(ms, |m| m.p95),
                median_of(ms, |m| m.p99),
            );
            let ratios: Vec<(String, f64)> = ratio_refs(c.name)
                .iter()
                .filter_map(|(reference, label)| get(reference).map(|x| (label.to_string(), r / x)))
                .collect();
            let ratio_text = ratios
                .iter()
                .map(|(l, x)| format!("{x:.2}× {l}"))
                .collect::<Vec<_>>()
                .join(", ");
            let lat = match (p50, p95, p99) {
                (Some(a), Some(b), Some(c)) => format!("{a:.0} / {b:.0} / {c:.0}"),
                _ if !c.lands => "no insert".into(),
                _ => "one insert".into(),
            };
            let rss_text = match input_rss {
                Some(i) => format!("{rss:.0} (input {i:.0})"),
                None => format!("{rss:.0}"),
            };
            md.push_str(&format!(
                "| `{}`: {} | {} | {} | {} | {secs:.3} | {cpu_per_m:.2} | {} | {rss_text} | {lat} |\n",
                c.name,
                c.what,
                thousands(rows),
                thousands(r.round() as u64),
                if ratio_text.is_empty() {
                    "".into()
                } else {
                    ratio_text
                },
                server_per_m.map_or(String::new(), |s| format!("{s:.2}")),
            ));
            contenders_json.push(json!({
                "contender": c.name,
                "what": c.what,
                "rows": rows,
                "rows_per_s": r,
                "seconds": secs,
                "cpu_s_per_m_rows": cpu_per_m,
                "server_cpu_s_per_m_rows": server_per_m,
                "peak_rss_mb": rss,
                "input_rss_mb": input_rss,
                "batch_ms_p50": p50,
                "batch_ms_p95": p95,
                "batch_ms_p99": p99,
                "ratios": ratios.iter().map(|(l, x)| json!({"to": l, "ratio": x})).collect::<Vec<_>>(),
                "runs": ms.iter().map(|m| json!({
                    "seconds": m.seconds,
                    "rows_per_s": m.rows_per_s(),
                    "cpu_s": m.cpu_s,
                    "server_cpu_s": m.server_cpu_s,
                    "peak_rss_mb": m.rss_mb,
                    "input_rss_mb": m.input_rss_mb,
                    "peak_heap_mb": m.heap_mb,
                    "batch_ms_p50": m.p50,
                    "batch_ms_p95": m.p95,
                    "batch_ms_p99": m.p99,
                    "batches": m.batches,
                })).collect::<Vec<_>>(),
            }));
        }
        let mut targets_json = Vec::new();
        for &(name, reference, min) in TARGETS {
            let (Some(a), Some(b)) = (get(name), get(reference)) else {
                continue;
            };
            let ratio = a / b;
            let met = ratio >= min;
            // Round by round (the contenders of a round ran one after the other): how far the
            // ratio moves with the machine, and in how many rounds it held.
            let per_run = per_run_ratios(&results[&(schema, name)], &results[&(schema, reference)]);
            let met_runs = per_run.iter().filter(|&&x| x >= min).count();
            let line = format!(
                "target ({}): {name} / {reference} = {ratio:.2}× (≥ {min}×): {}; per run {} (met in {met_runs} of {})",
                schema.name(),
                if met { "met" } else { "NOT met" },
                per_run
                    .iter()
                    .map(|x| format!("{x:.2}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                per_run.len(),
            );
            target_lines.push(line);
            targets_json.push(json!({
                "contender": name, "reference": reference, "ratio": ratio, "min": min, "met": met,
                "per_run": per_run, "met_runs": met_runs,
            }));
        }
        let refs: Vec<_> = references
            .iter()
            .filter(|((s, _), _)| *s == schema)
            .map(|((_, n), (count, sum))| json!({"rows": n, "count": count, "checksum": sum.to_string()}))
            .collect();
        schemas_json.insert(
            schema.name().into(),
            json!({"contenders": contenders_json, "targets": targets_json, "reference": refs}),
        );
    }
    md.push_str(
        "\nTargets (ratios of medians within this run; per run: the ratio in each round, as \
         the machine moved):\n\n",
    );
    for l in &target_lines {
        md.push_str(&format!("- {l}\n"));
    }
    println!("{md}");
    let doc = json!({
        "machine": machine,
        "clickhouse_url": url(),
        "rows": opts.rows,
        "py_rows": opts.py_rows,
        "seed_rows": opts.seed_rows,
        "runs": opts.runs,
        "schemas": schemas_json,
    });
    if let Some(dir) = opts.out.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    std::fs::write(&opts.out, serde_json::to_string_pretty(&doc).unwrap()).expect("write JSON");
    let md_path = opts.out.with_extension("md");
    std::fs::write(&md_path, &md).expect("write markdown");
    eprintln!("written: {}, {}", opts.out.display(), md_path.display());
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
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

/// The machine, stated in the report.
async fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|s| s.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let version: String = client()
        .query("SELECT version()")
        .fetch_one()
        .await
        .expect("server version");
    format!(
        "{model}, {cpus} CPUs, {mem_gib:.0} GiB; ClickHouse {version} at {} (same machine, loopback); load average at start {load}",
        url()
    )
}

/// Creates the table, writes the data files once, loads the NDJSON file with the server's own
/// parser and records count and checksum for every row count a contender gets.
async fn prepare(
    opts: &Opts,
    schema: Schema,
    references: &mut BTreeMap<(Schema, u64), (u64, u64)>,
) {
    exec(&format!("DROP TABLE IF EXISTS {} SYNC", schema.table())).await;
    exec(schema.ddl()).await;
    std::fs::create_dir_all(&opts.data_dir).expect("data directory");
    let f = files(opts, schema);
    let started = Instant::now();
    // Written afresh every time, so they always hold what the generator makes now: the
    // NDJSON file when a contender reads it (the CLI, Python, curl's JSONEachRow), the binary
    // files when a contender posts them. Without the NDJSON file the reference load is
    // streamed from the generator, so that runs of the Rust contenders alone need no disk
    // for their rows (100M wide rows are 32 GB of NDJSON).
    let wants = |format: &'static str| opts.only.iter().any(|c| c.kind == Kind::Curl(format));
    let ndjson_file = wants("JSONEachRow")
        || opts
            .only
            .iter()
            .any(|c| matches!(c.kind, Kind::Cli | Kind::Python));
    let (rowbinary_file, native_file) = (wants("RowBinary"), wants("Native"));
    for p in [&f.ndjson, &f.rowbinary, &f.native] {
        std::fs::remove_file(p).ok();
    }
    if ndjson_file {
        write_ndjson(schema, opts.rows, &f.ndjson);
    }
    if rowbinary_file {
        write_rowbinary(schema, opts.rows, &f.rowbinary);
    }
    if native_file {
        let table = chasync_core::Catalog::with_client(client(), Duration::from_secs(60))
            .table("chasync_bench", schema.name())
            .await
            .expect("table schema");
        write_native(schema, opts.rows, table, &f.native);
    }
    eprintln!(
        "e2e: {} rows of the {} schema in {} (.ndjson {} MB, .rowbinary {} MB, .native {} MB; {:.1} s){}",
        opts.rows,
        schema.name(),
        opts.data_dir.display(),
        size_mb(&f.ndjson),
        size_mb(&f.rowbinary),
        size_mb(&f.native),
        started.elapsed().as_secs_f64(),
        if ndjson_file {
            ""
        } else {
            "; no NDJSON file (no contender reads one): the reference load streams the rows"
        }
    );
    reset(schema).await;
    // Streamed (`-T -`, stdin): `--data-binary @file` reads it into memory first, and
    // refuses files of several GB (100M rows).
    let mut load = Command::new("curl");
    load.args(["-fsS", "-o", "/dev/null", "-X", "POST", "-T", "-"])
        .arg(insert_url(schema, "JSONEachRow"));
    let status = if ndjson_file {
        load.stdin(std::fs::File::open(&f.ndjson).expect("the NDJSON file"))
            .status()
            .expect("curl")
    } else {
        let mut child = load
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("curl");
        let stdin = child.stdin.take().expect("curl's stdin");
        // A write fails only when curl has stopped reading: its status tells why.
        let written = write_ndjson_to(schema, opts.rows, stdin);
        let status = child.wait().expect("curl");
        written.unwrap_or_else(|e| panic!("streaming the reference rows to curl ({status}): {e}"));
        status
    };
    assert!(status.success(), "loading the reference NDJSON failed");
    let mut sizes: Vec<u64> = opts.only.iter().map(|c| opts.rows_of(c)).collect();
    sizes.push(opts.rows);
    sizes.sort_unstable();
    sizes.dedup();
    for n in sizes {
        let r = checksum(schema, n).await;
        assert_eq!(r.0, n, "the reference load holds {} of {n} rows", r.0);
        eprintln!(
            "e2e: reference {} first {n} rows: count {} checksum {}",
            schema.name(),
            r.0,
            r.1
        );
        references.insert((schema, n), r);
    }
}

fn size_mb(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len() >> 20)
}

fn write_ndjson(schema: Schema, rows: u64, path: &Path) {
    let tmp = path.with_extension("tmp");
    write_ndjson_to(schema, rows, std::fs::File::create(&tmp).unwrap())
        .unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap();
}

/// The first `rows` rows as NDJSON lines into `out`, which is closed at the end.
fn write_ndjson_to(schema: Schema, rows: u64, out: impl std::io::Write) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
    let mut line = String::new();
    for i in 0..rows {
        line.clear();
        match schema {
            Schema::Narrow => narrow_json(&narrow_row(i), &mut line),
            Schema::Wide => wide_json(&wide_row(i), &mut line),
        }
        w.write_all(line.as_bytes())?;
    }
    w.flush()
}

fn write_rowbinary(schema: Schema, rows: u64, path: &Path) {
    fn encode<T: clickhouse::Row + serde::Serialize + Send + 'static>(
        rows: u64,
        row: impl Fn(u64) -> T,
    ) -> bytes::Bytes {
        let mut enc = RowBinary::<T>::new(None);
        enc.begin(uuid::Uuid::nil());
        let mut rejected = Vec::new();
        for i in 0..rows {
            assert!(enc.push(row(i), &mut rejected).is_done());
        }
        assert!(rejected.is_empty());
        enc.finish().bytes
    }
    let bytes = match schema {
        Schema::Narrow => encode(rows, narrow_row),
        Schema::Wide => encode(rows, wide_row),
    };
    std::fs::write(path, &bytes).unwrap();
}

fn write_native(schema: Schema, rows: u64, table: Arc<TableSchema>, path: &Path) {
    let mut batch = NativeBatch::new(table, NativeOptions::default());
    for i in 0..rows {
        batch.push_row(&dyn_row(schema, i)).unwrap();
    }
    std::fs::write(path, &batch.finish(None).bytes).unwrap();
}

async fn reset(schema: Schema) {
    exec(&format!("TRUNCATE TABLE {}", schema.table())).await;
}

async fn count_all(schema: Schema) -> u64 {
    client()
        .query(&format!("SELECT count() FROM {}", schema.table()))
        .fetch_one()
        .await
        .expect("count")
}

/// Count and checksum, computed by the server, of the rows with `id < n`.
async fn checksum(schema: Schema, n: u64) -> (u64, u64) {
    client()
        .query(&format!(
            "SELECT count(), sum(cityHash64(tuple(*))) FROM {} WHERE id < {n}",
            schema.table()
        ))
        .fetch_one::<(u64, u64)>()
        .await
        .expect("checksum")
}

fn config(schema: Schema) -> Config {
    let mut c = Config::new(url(), schema.name());
    c.clickhouse.database = "chasync_bench".into();
    // The engine's defaults; overridable to explore tuning: CHASYNC_E2E_MAX_ROWS,
    // CHASYNC_E2E_CONCURRENCY, CHASYNC_E2E_COMPRESSION=none.
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = env("CHASYNC_E2E_MAX_ROWS") {
        c.batching.max_rows = n;
    }
    if let Some(n) = env("CHASYNC_E2E_CONCURRENCY") {
        c.delivery.max_concurrency = n;
    }
    if std::env::var("CHASYNC_E2E_COMPRESSION").as_deref() == Ok("none") {
        c.clickhouse.compression = chasync_core::Compression::None;
    }
    c.spool.dir = std::env::temp_dir().join("chasync-e2e-dlq");
    c
}

fn latencies(stats: &Stats, m: &mut BTreeMap<String, f64>) {
    assert_eq!(stats.rows_dead_lettered, 0, "{stats:?}");
    m.insert("p50".into(), stats.latency_ms_p50);
    m.insert("p95".into(), stats.latency_ms_p95);
    m.insert("p99".into(), stats.latency_ms_p99);
    m.insert("batches".into(), stats.batches_committed as f64);
}

fn narrow_dyn(r: Narrow) -> Vec<(&'static str, Value)> {
    vec![
        ("id", Value::UInt(r.id)),
        ("ts", Value::UInt(r.ts as u64)),
        ("name", Value::String(r.name)),
        ("value", Value::Float(r.value)),
    ]
}

fn wide_dyn(r: Wide) -> Vec<(&'static str, Value)> {
    vec![
        ("id", Value::UInt(r.id)),
        // Seconds with the milliseconds as a fraction (exact after rounding to ticks).
        ("ts", Value::Float(r.ts as f64 / 1000.0)),
        ("kind", Value::String(r.kind)),
        ("country", Value::String(r.country)),
        ("user", Value::String(r.user)),
        ("url", Value::String(r.url)),
        ("referrer", r.referrer.map_or(Value::Null, Value::String)),
        ("score", r.score.map_or(Value::Null, Value::Float)),
        (
            "tags",
            Value::Array(r.tags.into_iter().map(Value::String).collect()),
        ),
        (
            "counts",
            Value::Array(
                r.counts
                    .into_iter()
                    .map(|c| Value::UInt(c as u64))
                    .collect(),
            ),
        ),
        (
            "attrs",
            Value::Map(
                r.attrs
                    .into_iter()
                    .map(|(k, v)| (Value::String(k), Value::UInt(v)))
                    .collect(),
            ),
        ),
        ("status", Value::UInt(r.status as u64)),
        ("value", Value::Float(r.value)),
        ("ok", Value::Bool(r.ok)),
        ("uid", Value::UInt128(r.uid.as_u128())),
        ("ip", Value::UInt(u32::from(r.ip) as u64)),
    ]
}

fn dyn_fields(schema: Schema, i: u64) -> Vec<(&'static str, Value)> {
    match schema {
        Schema::Narrow => narrow_dyn(narrow_row(i)),
        Schema::Wide => wide_dyn(wide_row(i)),
    }
}

fn dyn_row(schema: Schema, i: u64) -> DynRow {
    let mut row = DynRow::new();
    for (k, v) in dyn_fields(schema, i) {
        row = row.with(k, v);
    }
    row
}

async fn typed<T>(schema: Schema, rows: u64, row: impl Fn(u64) -> T) -> BTreeMap<String, f64>
where
    T: clickhouse::Row + serde::Serialize + Send + Sync + 'static,
{
    let mut m = BTreeMap::new();
    let started = Instant::now();
    let ing = Ingestor::<T>::start(config(schema)).await.unwrap();
    // A writer: each row encoded on this task, queued in chunks.
    let mut w = ing.handle().writer();
    for i in 0..rows {
        w.write(row(i)).await.unwrap();
    }
    w.close().await;
    let stats = ing.shutdown().await.unwrap();
    m.insert("seconds".into(), started.elapsed().as_secs_f64());
    latencies(&stats, &mut m);
    m
}

async fn raw_insert<T>(schema: Schema, rows: u64, row: impl Fn(u64) -> T) -> BTreeMap<String, f64>
where
    T: clickhouse::RowOwned + clickhouse::RowWrite + serde::Serialize + Send + Sync,
{
    let mut m = BTreeMap::new();
    let started = Instant::now();
    let mut client = client().with_database("chasync_bench");
    if std::env::var("CHASYNC_E2E_COMPRESSION").as_deref() == Ok("none") {
        client = client.with_compression(clickhouse::Compression::None);
    }
    let mut insert = client.insert::<T>(schema.name()).await.unwrap();
    for i in 0..rows {
        insert.write(&row(i)).await.unwrap();
    }
    insert.end().await.unwrap();
    m.insert("seconds".into(), started.elapsed().as_secs_f64());
    m
}

async fn run_one(name: &str, schema: Schema, rows: u64) -> BTreeMap<String, f64> {
    let mut m = match (name, schema) {
        ("chasync-typed", Schema::Narrow) => typed(schema, rows, narrow_row).await,
        ("chasync-typed", Schema::Wide) => typed(schema, rows, wide_row).await,
        ("raw-crate-insert", Schema::Narrow) => raw_insert(schema, rows, narrow_row).await,
        ("raw-crate-insert", Schema::Wide) => raw_insert(schema, rows, wide_row).await,
        ("chasync-dynamic-rows", _) => {
            let mut m = BTreeMap::new();
            let started = Instant::now();
            let ing = DynIngestor::start_dynamic(config(schema), NativeOptions::default())
                .await
                .unwrap();
            let mut w = ing.handle().writer();
            for i in 0..rows {
                w.write(dyn_row(schema, i).into()).await.unwrap();
            }
            w.close().await;
            let stats = ing.shutdown().await.unwrap();
            m.insert("seconds".into(), started.elapsed().as_secs_f64());
            latencies(&stats, &mut m);
            m
        }
        ("chasync-dynamic-columns", _) => {
            let mut m = BTreeMap::new();
            let started = Instant::now();
            let ing = DynIngestor::start_dynamic(config(schema), NativeOptions::default())
                .await
                .unwrap();
            let h = ing.handle();
            let chunk = 100_000u64;
            let mut start = 0;
            while start < rows {
                let end = (start + chunk).min(rows);
                let mut columns: Vec<(&'static str, Vec<Value>)> = Vec::new();
                for i in start..end {
                    for (j, (k, v)) in dyn_fields(schema, i).into_iter().enumerate() {
                        if j == columns.len() {
                            columns.push((k, Vec::with_capacity((end - start) as usize)));
                        }
                        columns[j].1.push(v);
                    }
                }
                let mut batch = ColumnBatch::new();
                for (k, v) in columns {
                    batch = batch.with_column(k, v);
                }
                h.send(batch.into()).await.unwrap();
                start = end;
            }
            let stats = ing.shutdown().await.unwrap();
            m.insert("seconds".into(), started.elapsed().as_secs_f64());
            latencies(&stats, &mut m);
            m
        }
        (other, _) => panic!(
            "unknown Rust contender {other}; known: chasync-typed, raw-crate-insert, chasync-dynamic-rows, chasync-dynamic-columns"
        ),
    };
    m.insert("rows".into(), rows as f64);
    m
}
