"""The gateway benchmark: many concurrent clients sending small inserts, straight into
ClickHouse and through chasyncd, with what it costs the server.

Contenders (`--only` takes names or the groups `json`, `cc`, `direct`, `chasyncd`):

  json-direct        64 clients POST 100-row JSONEachRow inserts to ClickHouse (async_insert=0)
  json-direct-async  the same with ClickHouse's async_insert=1, wait_for_async_insert=1
  json-chasyncd      the same requests to chasyncd (ack=durable, its defaults)
  cc-direct          64 clickhouse-connect clients, `insert()` of 100 rows (Native, lz4), async_insert=0
  cc-direct-async    the same with async_insert=1, wait_for_async_insert=1
  cc-chasyncd        the same clients pointed at chasyncd

The JSONEachRow clients are `gateway_load` (Rust, benches/src/bin/gateway_load.rs: one tokio task
and one keep-alive connection per client), so that the client costs the shared cores little. The
clickhouse-connect clients are this file's `cc-worker` mode: threads with a client each, spread
over several processes (`--cc-procs`) so that one GIL does not bound them.

Every contender run gets a table of its own (narrow rows: id UInt64, ts DateTime, name String,
value Float64; MergeTree with non_replicated_deduplication_window = 1000, as chasyncd's
exactly-once delivery wants) and, through chasyncd, a daemon of its own with an empty spool.
The clients run for `--duration` seconds; through chasyncd the harness then waits until the
table holds every acknowledged row. Measured:

  rows/s           rows acknowledged (200) / the clients' wall time
  p50 / p99        request latency (clickhouse-connect: the `insert()` call, DESCRIBE + INSERT)
  parts/min        parts written by inserts (system.query_log: ProfileEvents InsertedCompactParts
                   + InsertedWideParts of the INSERTs into the table) per minute of the window
                   from the clients' start to the last row landed
  server CPU       utime + stime of the ClickHouse process (/proc/PID/stat) over that window
  chasyncd CPU     the same of the daemon; client CPU as the clients measure it
  check            count() and uniqExact(id) of the table equal the rows acknowledged

Runs are interleaved (run 1 of every contender, then run 2, ...; the order rotates each run);
the report gives medians. Results: OUT.md and OUT.json.

Usage (scripts/bench-gateway.sh builds and starts what it needs):
  python bench_gateway.py --clickhouse http://127.0.0.1:18124 --server-pid PID \
      --chasyncd target/release/chasyncd --load target/release/gateway_load \
      [--duration 20] [--runs 3] [--clients 64] [--rows 100] [--only json,cc-chasyncd] \
      [--cc-procs 4] [--spool-dir DIR] [--out target/bench-gateway]
  python bench_gateway.py ... --cc-profile [--calls 300]   # one client: CPU per insert() call, and
                                                           # of its DESCRIBE TABLE
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

DB = "chasync_gwbench"
HARNESS = "gwbench-harness-"
COLUMNS = ["id", "ts", "name", "value"]
DDL = (
    "CREATE TABLE {db}.{t} (id UInt64, ts DateTime, name String, value Float64) "
    "ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 1000"
)
SYNC = {"async_insert": "0"}
ASYNC = {"async_insert": "1", "wait_for_async_insert": "1"}
CONTENDERS: Dict[str, Dict[str, Any]] = {
    "json-direct": {"client": "json", "via": "direct", "settings": SYNC},
    "json-direct-async": {"client": "json", "via": "direct", "settings": ASYNC},
    "json-chasyncd": {"client": "json", "via": "chasyncd", "settings": {}},
    "cc-direct": {"client": "cc", "via": "direct", "settings": SYNC},
    "cc-direct-async": {"client": "cc", "via": "direct", "settings": ASYNC},
    "cc-chasyncd": {"client": "cc", "via": "chasyncd", "settings": {}},
}
DESCRIPTIONS = {
    "json-direct": "JSONEachRow POSTs straight to ClickHouse, `async_insert=0`",
    "json-direct-async": "the same, ClickHouse's `async_insert=1, wait_for_async_insert=1`",
    "json-chasyncd": "the same requests to chasyncd (`ack=durable`)",
    "cc-direct": "clickhouse-connect `insert()` (Native, lz4) straight to ClickHouse, `async_insert=0`",
    "cc-direct-async": "the same, `async_insert=1, wait_for_async_insert=1`",
    "cc-chasyncd": "the same clients pointed at chasyncd (`ack=durable`)",
}


# ---------------------------------------------------------------------------------------------
# clickhouse-connect clients (a process of threads; run by the harness as `cc-worker`)


def narrow_rows(first: int, n: int, names: List[str]) -> List[tuple]:
    """Rows first..first+n, as benches/src/lib.rs's narrow_row makes them."""
    return [
        (i, 1_700_000_000 + i % 86_400, names[i % 10_000], (i % 1000) * 0.25)
        for i in range(first, first + n)
    ]


def cc_worker(a: argparse.Namespace) -> int:
    import clickhouse_connect  # only the worker needs it

    settings = json.loads(a.settings)
    names = [f"user-{i}" for i in range(10_000)]
    clients = [
        clickhouse_connect.get_client(
            host=a.host, port=a.port, compress="lz4", settings=settings, autogenerate_session_id=False
        )
        for _ in range(a.threads)
    ]
    lock = threading.Lock()
    latencies: List[float] = []
    totals = {"rows": 0}
    failed: Dict[str, int] = {}
    first_error: List[str] = []
    timeline: Dict[int, List[float]] = {}
    go = threading.Event()
    deadline = [0.0]
    started = [0.0]

    def run(k: int) -> None:
        client = clients[k]
        next_id = (a.first_client + k) << 40
        mine: List[float] = []
        line: Dict[int, List[float]] = {}
        rows = 0
        go.wait()
        while time.perf_counter() < deadline[0]:
            data = narrow_rows(next_id, a.rows, names)
            next_id += a.rows
            t = time.perf_counter()
            try:
                client.insert(a.table, data, column_names=COLUMNS)
            except Exception as e:  # any failure is counted; the rows are not
                with lock:
                    kind = type(e).__name__
                    failed[kind] = failed.get(kind, 0) + 1
                    if not first_error:
                        first_error.append(str(e)[:500])
                time.sleep(0.1)
                continue
            took = (time.perf_counter() - t) * 1e3
            mine.append(took)
            slot = line.setdefault(int(t - started[0]), [0, 0.0])
            slot[0] += 1
            slot[1] = max(slot[1], took)
            rows += a.rows
        with lock:
            latencies.extend(mine)
            totals["rows"] += rows
            for sec, (n, mx) in line.items():
                slot = timeline.setdefault(sec, [0, 0.0])
                slot[0] += n
                slot[1] = max(slot[1], mx)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(a.threads)]
    for t in threads:
        t.start()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        go.set()
        return 1
    cpu0 = time.process_time()
    started[0] = time.perf_counter()
    deadline[0] = started[0] + a.duration
    go.set()
    for t in threads:
        t.join()
    print(
        json.dumps(
            {
                "rows": totals["rows"],
                "latencies_ms": latencies,
                "failed": failed,
                "first_error": first_error[0] if first_error else None,
                "elapsed_s": time.perf_counter() - started[0],
                "cpu_s": time.process_time() - cpu0,
                "timeline": [timeline.get(i, [0, 0.0]) for i in range(max(timeline, default=-1) + 1)],
            }
        ),
        flush=True,
    )
    for c in clients:
        c.close()
    return 0


# ---------------------------------------------------------------------------------------------
# the harness


class ClickHouse:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def query(self, sql: str, body: bytes = b"", settings: Optional[Dict[str, str]] = None) -> str:
        # The harness's own queries are told apart from the contenders' in system.query_log.
        params = {"query": sql, "query_id": f"{HARNESS}{os.urandom(8).hex()}", **(settings or {})}
        req = urllib.request.Request(
            f"{self.url}/?{urllib.parse.urlencode(params)}", data=body, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{sql}: {e.read().decode(errors='replace')}") from None

    def row(self, sql: str) -> List[str]:
        return self.query(sql).strip().split("\t")


def cpu_s(pid: Optional[int]) -> Optional[float]:
    """User + system CPU seconds of a process, all its threads (/proc/PID/stat)."""
    if not pid:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    f = stat[stat.rfind(")") + 2 :].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def percentile(sorted_ms: List[float], p: float) -> float:
    if not sorted_ms:
        return 0.0
    return sorted_ms[min(int(len(sorted_ms) * p), len(sorted_ms) - 1)]


class Daemon:
    """A chasyncd of its own for one run, with an empty spool, in front of the server."""

    def __init__(self, binary: str, clickhouse: str, spool: Path, log: Path) -> None:
        if spool.exists():
            shutil.rmtree(spool)
        spool.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CHASYNCD_", "CHASYNC_"))}
        env["RUST_LOG"] = "info"
        self.log_path = log
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--url", clickhouse, "--spool-dir", str(spool),
             "--log-format", "text"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env,
        )
        deadline = time.time() + 30
        self.addr = ""
        while time.time() < deadline and self.proc.poll() is None:
            m = re.search(r"chasyncd listening.*?addr=(\S+)", log.read_text())
            if m:
                self.addr = m.group(1)
                break
            time.sleep(0.05)
        if not self.addr:
            self.proc.kill()
            raise RuntimeError(f"chasyncd did not start:\n{log.read_text()[-3000:]}")
        self.url = f"http://{self.addr}"

    def metrics(self) -> Dict[str, float]:
        out: Dict[str, float] = {}
        try:
            with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as r:
                text = r.read().decode()
        except OSError:
            return out
        for line in text.splitlines():
            if line.startswith("#") or " " not in line:
                continue
            name, value = line.rsplit(" ", 1)
            if "_bucket" in name:
                continue
            try:
                out[name] = out.get(name, 0.0) + float(value)
            except ValueError:
                pass
        return out

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def run_json(a: argparse.Namespace, url: str, table: str, settings: Dict[str, str]) -> Dict[str, Any]:
    params = {"query": f"INSERT INTO {DB}.{table} FORMAT JSONEachRow", **settings}
    target = f"{url}/?{urllib.parse.urlencode(params, quote_via=urllib.parse.quote)}"
    out = subprocess.run(
        [a.load, "--url", target, "--clients", str(a.clients), "--rows", str(a.rows),
         "--duration", str(a.duration)],
        check=True, stdout=subprocess.PIPE, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def start_cc(a: argparse.Namespace, url: str, table: str, settings: Dict[str, str]) -> List[subprocess.Popen]:
    """The clickhouse-connect worker processes, each once its clients are connected."""
    u = urllib.parse.urlparse(url)
    procs = []
    per = [a.clients // a.cc_procs + (1 if i < a.clients % a.cc_procs else 0) for i in range(a.cc_procs)]
    first = 0
    for n in per:
        if n == 0:
            continue
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "cc-worker", "--host", u.hostname, "--port", str(u.port),
             "--table", f"{DB}.{table}", "--threads", str(n), "--first-client", str(first),
             "--rows", str(a.rows), "--duration", str(a.duration), "--settings", json.dumps(settings)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        ))
        first += n
    for p in procs:
        line = p.stdout.readline().strip()
        if line != "ready":
            for q in procs:
                q.kill()
            raise RuntimeError(f"a clickhouse-connect worker did not start: {line!r}")
    return procs


def finish_cc(procs: List[subprocess.Popen]) -> Dict[str, Any]:
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"a clickhouse-connect worker failed ({p.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    lat = sorted(x for r in results for x in r["latencies_ms"])
    failed: Dict[str, int] = {}
    for r in results:
        for k, n in r["failed"].items():
            failed[k] = failed.get(k, 0) + n
    timeline: List[List[float]] = []
    for r in results:
        for i, (n, mx) in enumerate(r["timeline"]):
            if len(timeline) <= i:
                timeline.append([0, 0.0])
            timeline[i][0] += n
            timeline[i][1] = max(timeline[i][1], mx)
    return {
        "timeline": timeline,
        "requests": len(lat),
        "rows": sum(r["rows"] for r in results),
        "failed": failed,
        "first_error": next((r["first_error"] for r in results if r["first_error"]), None),
        "elapsed_s": max(r["elapsed_s"] for r in results),
        "p50_ms": percentile(lat, 0.50),
        "p90_ms": percentile(lat, 0.90),
        "p99_ms": percentile(lat, 0.99),
        "max_ms": lat[-1] if lat else 0.0,
        "cpu_s": sum(r["cpu_s"] for r in results),
    }


def one_run(a: argparse.Namespace, ch: ClickHouse, name: str, run: int) -> Dict[str, Any]:
    spec = CONTENDERS[name]
    table = f"{name.replace('-', '_')}_run{run}_{os.urandom(3).hex()}"
    ch.query(f"DROP TABLE IF EXISTS {DB}.{table} SYNC")
    ch.query(DDL.format(db=DB, t=table))
    daemon = None
    url = ch.url
    if spec["via"] == "chasyncd":
        daemon = Daemon(a.chasyncd, ch.url, Path(a.spool_dir) / table, Path(a.spool_dir) / f"{table}.log")
        url = daemon.url
    procs = start_cc(a, url, table, spec["settings"]) if spec["client"] == "cc" else []
    load = loadavg()
    server0, daemon0 = cpu_s(a.server_pid), cpu_s(daemon.proc.pid if daemon else None)
    t0 = time.perf_counter()
    if spec["client"] == "json":
        client = run_json(a, url, table, spec["settings"])
    else:
        client = finish_cc(procs)
    t_load = time.perf_counter()
    acked = client["rows"]
    # Through chasyncd the rows land after the linger: wait until the table holds them all.
    landed = int(ch.row(f"SELECT count() FROM {DB}.{table}")[0])
    deadline = time.time() + a.land_timeout
    while landed < acked and time.time() < deadline:
        time.sleep(0.05)
        landed = int(ch.row(f"SELECT count() FROM {DB}.{table}")[0])
    t_landed = time.perf_counter()
    server1, daemon1 = cpu_s(a.server_pid), cpu_s(daemon.proc.pid if daemon else None)
    metrics = daemon.metrics() if daemon else {}
    count, uniq = (int(x) for x in ch.row(f"SELECT count(), uniqExact(id) FROM {DB}.{table}"))
    # Parts still listed (outdated ones can be gone already: a lower bound of what was written).
    listed, active = (int(x) for x in ch.row(
        f"SELECT countIf(level = 0), countIf(active) FROM system.parts "
        f"WHERE database = '{DB}' AND table = '{table}'"
    ))
    if daemon:
        code = daemon.stop()
        if code != 0:
            raise RuntimeError(f"chasyncd exited {code}; see {daemon.log_path}")
    window = t_landed - t0
    ch.query("SYSTEM FLUSH LOGS")
    # Parts written by inserts: each INSERT's own count of the parts it wrote.
    parts = int(ch.row(
        f"SELECT sum(ProfileEvents['InsertedCompactParts'] + ProfileEvents['InsertedWideParts']) "
        f"FROM system.query_log WHERE type = 'QueryFinish' AND query_kind = 'Insert' "
        f"AND has(tables, '{DB}.{table}') AND event_time >= now() - {int(window) + 600}"
    )[0] or 0)
    queries = {
        kind: int(n)
        for kind, n in (
            line.split("\t")
            for line in ch.query(
                f"SELECT query_kind, count() FROM system.query_log WHERE type = 'QueryFinish' "
                f"AND (has(tables, '{DB}.{table}') OR position(query, '{table}') > 0) "
                f"AND event_time >= now() - {int(window) + 600} AND NOT startsWith(query_id, '{HARNESS}') "
                f"GROUP BY query_kind"
            ).splitlines()
            if line
        )
    }
    r = {
        "contender": name,
        "run": run,
        "load_avg": load,
        "rows": acked,
        "requests": client["requests"],
        "failed": client["failed"],
        "first_error": client["first_error"],
        "elapsed_s": client["elapsed_s"],
        "rows_per_s": acked / client["elapsed_s"],
        "landed_s": window,
        "landed_rows_per_s": acked / window,
        "p50_ms": client["p50_ms"],
        "p90_ms": client["p90_ms"],
        "p99_ms": client["p99_ms"],
        "max_ms": client["max_ms"],
        "parts": parts,
        "parts_per_min": parts / window * 60,
        "rows_per_part": acked / parts if parts else None,
        "active_parts_after": active,
        "level0_parts_listed": listed,
        "server_queries": queries,
        "timeline": client.get("timeline"),
        "server_cpu_s": None if server0 is None or server1 is None else server1 - server0,
        "chasyncd_cpu_s": None if daemon0 is None or daemon1 is None else daemon1 - daemon0,
        "client_cpu_s": client["cpu_s"],
        "count": count,
        "uniq_ids": uniq,
        "ok": count == acked and uniq == acked,
        "chasyncd": {
            k: v for k, v in metrics.items()
            if k.startswith(("chasyncd_wal_", "chasyncd_batches_", "chasyncd_rows_", "chasyncd_requests_"))
        },
    }
    if r["server_cpu_s"] is not None and acked:
        r["server_cpu_s_per_m_rows"] = r["server_cpu_s"] / acked * 1e6
        # What every process of the contender (clients, chasyncd, server) spent per row; on
        # cores of its own it could go no faster than cores / that.
        total = r["server_cpu_s"] + (r["chasyncd_cpu_s"] or 0) + r["client_cpu_s"]
        r["cpu_s_per_m_rows"] = total / acked * 1e6
        r["cpu_bound_rows_per_s"] = (os.cpu_count() or 1) / total * acked if total else None
    if not a.keep_tables:
        ch.query(f"DROP TABLE IF EXISTS {DB}.{table} SYNC")
    return r


def median(xs: List[Optional[float]]) -> Optional[float]:
    v = [x for x in xs if x is not None]
    return statistics.median(v) if v else None


def summarise(runs: List[Dict[str, Any]], names: List[str]) -> Dict[str, Dict[str, Any]]:
    keys = ["rows_per_s", "landed_rows_per_s", "p50_ms", "p99_ms", "parts_per_min", "rows_per_part",
            "server_cpu_s", "server_cpu_s_per_m_rows", "cpu_s_per_m_rows", "cpu_bound_rows_per_s", "chasyncd_cpu_s", "client_cpu_s", "landed_s",
            "elapsed_s", "active_parts_after"]
    out = {}
    for n in names:
        rs = [r for r in runs if r["contender"] == n]
        if rs:
            s = {k: median([r.get(k) for r in rs]) for k in keys}
            s["runs"] = len(rs)
            s["all_ok"] = all(r["ok"] for r in rs)
            s["failed_requests"] = sum(sum(r["failed"].values()) for r in rs)
            # Cores busy: client + daemon + server CPU over the window.
            s["cores_busy"] = median([
                ((r["client_cpu_s"] or 0) + (r["chasyncd_cpu_s"] or 0) + (r["server_cpu_s"] or 0)) / r["landed_s"]
                for r in rs
            ])
            out[n] = s
    return out


def ratios(runs: List[Dict[str, Any]], summary: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """chasyncd against each direct contender of the same client: rows/s and parts/min."""
    out = []
    for client in ("json", "cc"):
        mine = f"{client}-chasyncd"
        for ref in (f"{client}-direct", f"{client}-direct-async"):
            if mine not in summary or ref not in summary:
                continue
            per_run_rows, per_run_parts, per_run_bound = [], [], []
            for r in [x for x in runs if x["contender"] == mine]:
                o = next((x for x in runs if x["contender"] == ref and x["run"] == r["run"]), None)
                if o:
                    per_run_rows.append(r["rows_per_s"] / o["rows_per_s"])
                    if r.get("cpu_bound_rows_per_s") and o.get("cpu_bound_rows_per_s"):
                        per_run_bound.append(r["cpu_bound_rows_per_s"] / o["cpu_bound_rows_per_s"])
                    if r["parts_per_min"]:
                        per_run_parts.append(o["parts_per_min"] / r["parts_per_min"])
            m, o = summary[mine], summary[ref]
            out.append({
                "contender": mine,
                "reference": ref,
                "rows_per_s_ratio": m["rows_per_s"] / o["rows_per_s"],
                "rows_per_s_ratio_per_run": per_run_rows,
                "fewer_parts_per_min": o["parts_per_min"] / m["parts_per_min"] if m["parts_per_min"] else None,
                "fewer_parts_per_min_per_run": per_run_parts,
                "cpu_bound_ratio": median(per_run_bound),
                "cpu_bound_ratio_per_run": per_run_bound,
                "fewer_parts_per_m_rows": (m["rows_per_part"] / o["rows_per_part"]) if o["rows_per_part"] else None,
            })
    return out


def fmt(x: Optional[float], digits: int = 0) -> str:
    if x is None:
        return ""
    return f"{x:,.{digits}f}"


def report(a: argparse.Namespace, meta: Dict[str, Any], runs, summary, rat) -> str:
    lines = [
        "# chasyncd gateway benchmark",
        "",
        f"`{meta['command']}`",
        "",
        f"Machine: {meta['machine']}. Load average at start {meta['load_start']}, at end {meta['load_end']}.",
        f"{a.clients} clients × {a.rows}-row inserts for {a.duration:g} s per run, {a.runs} runs interleaved, medians.",
        f"Parts counted from {meta['parts_counted_from']}.",
        "",
    ] + ([meta["async_insert_note"], ""] if meta.get("async_insert_note") else []) + [
        "| contender | rows/s | p50 / p99 ms | parts/min | rows/part | server CPU s (per M rows) | chasyncd CPU s | client CPU s | all CPU s per M rows | CPU bound rows/s | cores busy | landed after s | checks |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, s in summary.items():
        lines.append(
            f"| `{n}` | {fmt(s['rows_per_s'])} | {fmt(s['p50_ms'], 1)} / {fmt(s['p99_ms'], 1)} | "
            f"{fmt(s['parts_per_min'])} | {fmt(s['rows_per_part'])} | {fmt(s['server_cpu_s'], 1)} "
            f"({fmt(s['server_cpu_s_per_m_rows'], 1)}) | {fmt(s['chasyncd_cpu_s'], 1)} | "
            f"{fmt(s['client_cpu_s'], 1)} | {fmt(s['cpu_s_per_m_rows'], 1)} | {fmt(s['cpu_bound_rows_per_s'])} | {fmt(s['cores_busy'], 2)} | {fmt(s['landed_s'], 1)} | "
            f"{'ok' if s['all_ok'] else 'MISMATCH'}{'' if not s['failed_requests'] else ', %d failed requests' % s['failed_requests']} |"
        )
    lines += ["", "| chasyncd against | rows/s ratio (per run) | CPU-bound ratio (per run) | parts/min, times fewer (per run) | parts per M rows, times fewer |", "|---|---|---|---|---|"]
    for r in rat:
        lines.append(
            f"| `{r['contender']}` / `{r['reference']}` | {r['rows_per_s_ratio']:.2f}× "
            f"({', '.join(f'{x:.2f}' for x in r['rows_per_s_ratio_per_run'])}) | "
            f"{fmt(r['cpu_bound_ratio'], 1)}× ({', '.join(f'{x:.1f}' for x in r['cpu_bound_ratio_per_run'])}) | "
            f"{fmt(r['fewer_parts_per_min'], 1)}× ({', '.join(f'{x:.1f}' for x in r['fewer_parts_per_min_per_run'])}) | "
            f"{fmt(r['fewer_parts_per_m_rows'], 0)}× |"
        )
    lines += ["", "## Runs", "",
              "| contender | run | load | rows/s | p50 / p99 ms | parts | server CPU s | chasyncd CPU s | client CPU s | server queries | check |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        q = ", ".join(f"{k} {v}" for k, v in sorted(r["server_queries"].items()))
        lines.append(
            f"| `{r['contender']}` | {r['run']} | {r['load_avg'].split()[0]} | {fmt(r['rows_per_s'])} | "
            f"{fmt(r['p50_ms'], 1)} / {fmt(r['p99_ms'], 1)} | {r['parts']} | {fmt(r['server_cpu_s'], 1)} | "
            f"{fmt(r['chasyncd_cpu_s'], 1)} | {fmt(r['client_cpu_s'], 1)} | {q} | "
            f"{'ok' if r['ok'] else 'MISMATCH %d/%d/%d' % (r['count'], r['uniq_ids'], r['rows'])} |"
        )
    return "\n".join(lines) + "\n"


def machine(ch: ClickHouse) -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = 0.0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) / 1024 / 1024
    version = ch.query("SELECT version()").strip()
    return f"{model}, {os.cpu_count()} CPUs, {mem:.0f} GiB; ClickHouse {version} at {ch.url} (same machine, loopback)"


def select(only: Optional[str]) -> List[str]:
    if not only:
        return list(CONTENDERS)
    names: List[str] = []
    for item in only.split(","):
        item = item.strip()
        if item in CONTENDERS:
            picked = [item]
        elif item in ("json", "cc"):
            picked = [n for n, c in CONTENDERS.items() if c["client"] == item]
        elif item in ("direct", "chasyncd"):
            picked = [n for n, c in CONTENDERS.items() if c["via"] == item]
        else:
            raise SystemExit(f"bench_gateway: unknown contender or group {item!r}; known: {', '.join(CONTENDERS)}")
        names += [n for n in picked if n not in names]
    return names


def async_insert_batches(ch: ClickHouse) -> bool:
    """Whether the server batches `async_insert=1` inserts: 8 concurrent one-row inserts with
    wait_for_async_insert=1 into a new table must make fewer than 8 parts. (clickhouse-local,
    which the project's test server is, takes the setting but inserts each at once.)"""
    t = f"async_probe_{os.urandom(3).hex()}"
    ch.query(f"CREATE TABLE {DB}.{t} (id UInt64) ENGINE = MergeTree ORDER BY id")
    try:
        threads = [
            threading.Thread(target=ch.query, args=(
                f"INSERT INTO {DB}.{t} FORMAT JSONEachRow", f'{{"id":{i}}}'.encode(), ASYNC))
            for i in range(8)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        parts = int(ch.row(f"SELECT countIf(level = 0) FROM system.parts WHERE database = '{DB}' AND table = '{t}'")[0])
        return parts < 8
    finally:
        ch.query(f"DROP TABLE IF EXISTS {DB}.{t} SYNC")


def cc_profile(a: argparse.Namespace) -> int:
    """Where one clickhouse-connect `insert()` of `--rows` rows spends CPU: one client, one call
    after another (`--calls` each), in this process; client, server and chasyncd CPU per call,
    for the call and for its parts (the DESCRIBE TABLE it sends first; an insert with a prepared
    InsertContext, which sends none)."""
    import clickhouse_connect

    ch = ClickHouse(a.clickhouse)
    ch.query(f"CREATE DATABASE IF NOT EXISTS {DB}")
    table = f"cc_profile_{os.urandom(3).hex()}"
    ch.query(DDL.format(db=DB, t=table))
    spool = Path(a.spool_dir) / table
    daemon = Daemon(a.chasyncd, ch.url, spool, Path(a.spool_dir) / f"{table}.log")
    names = [f"user-{i}" for i in range(10_000)]
    next_id = [1 << 50]
    lines = [
        f"One clickhouse-connect client, {a.calls} calls of each kind one after another, {a.rows} rows "
        f"per insert; load average {loadavg()}. CPU ms per call.",
        "",
        "| call | to | wall ms | client CPU | server CPU | chasyncd CPU |",
        "|---|---|---|---|---|---|",
    ]

    def insert(c, ctx) -> None:
        next_id[0] += a.rows
        rows = narrow_rows(next_id[0], a.rows, names)
        if ctx is None:
            c.insert(f"{DB}.{table}", rows, column_names=COLUMNS)
        else:
            ctx.data = rows
            c.insert(context=ctx)

    try:
        u = urllib.parse.urlparse(daemon.url)
        d = urllib.parse.urlparse(ch.url)
        for to, host, port in (("chasyncd", u.hostname, u.port), ("ClickHouse", d.hostname, d.port)):
            c = clickhouse_connect.get_client(host=host, port=port, compress="lz4")
            ctx = c.create_insert_context(f"{DB}.{table}", column_names=COLUMNS)
            for label, call in (
                ("`DESCRIBE TABLE`", lambda: c.query(f"DESCRIBE TABLE {DB}.{table}")),
                ("`insert()` (DESCRIBE + INSERT)", lambda: insert(c, None)),
                ("`insert(context=…)` (INSERT only)", lambda: insert(c, ctx)),
            ):
                call()
                s0, d0 = cpu_s(a.server_pid), cpu_s(daemon.proc.pid)
                c0, t0 = time.process_time(), time.perf_counter()
                for _ in range(a.calls):
                    call()
                c1, t1 = time.process_time(), time.perf_counter()
                s1, d1 = cpu_s(a.server_pid), cpu_s(daemon.proc.pid)
                per = lambda x0, x1: fmt(None if x0 is None or x1 is None else (x1 - x0) / a.calls * 1e3, 2)
                lines.append(
                    f"| {label} | {to} | {(t1 - t0) / a.calls * 1e3:.2f} | {per(c0, c1)} | "
                    f"{per(s0, s1)} | {per(d0, d1) if to == 'chasyncd' else ''} |"
                )
                print(lines[-1], file=sys.stderr, flush=True)
            c.close()
    finally:
        daemon.stop()
        ch.query(f"DROP TABLE IF EXISTS {DB}.{table} SYNC")
        shutil.rmtree(spool, ignore_errors=True)
    md = "\n".join(lines) + "\n"
    Path(f"{a.out}-cc-profile.md").write_text(md)
    print(md)
    return 0


def harness(a: argparse.Namespace) -> int:
    ch = ClickHouse(a.clickhouse)
    names = select(a.only)
    ch.query(f"CREATE DATABASE IF NOT EXISTS {DB}")
    async_note = None
    if any(CONTENDERS[n]["settings"] is ASYNC for n in names) and not async_insert_batches(ch):
        async_note = (
            "The server does not batch `async_insert=1` inserts (8 concurrent one-row inserts made 8 "
            "parts; clickhouse-local, which the project's test server is, has no asynchronous insert "
            "queue): the `*-direct-async` contenders were "
            + ("run anyway (`--force-async`) and measure plain inserts." if a.force_async else "skipped.")
        )
        print(f"bench-gateway: {async_note}", file=sys.stderr)
        if not a.force_async:
            names = [n for n in names if CONTENDERS[n]["settings"] is not ASYNC]
    Path(a.spool_dir).mkdir(parents=True, exist_ok=True)
    meta = {
        "command": a.command or " ".join(sys.argv),
        "machine": machine(ch),
        "load_start": loadavg(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "options": {k: v for k, v in vars(a).items() if k not in ("func",)},
        "parts_counted_from": (
            "system.query_log: the sum of ProfileEvents InsertedCompactParts + InsertedWideParts "
            "of the INSERT queries into the run's table (system.part_log is not enabled on this "
            "server; system.parts loses outdated parts within a run)"
        ),
        "async_insert_note": async_note,
    }
    runs: List[Dict[str, Any]] = []
    for run in range(1, a.runs + 1):
        k = (run - 1) % len(names)
        for name in names[k:] + names[:k]:
            r = one_run(a, ch, name, run)
            runs.append(r)
            print(
                f"bench-gateway: run {run} {name}: {r['rows_per_s']:,.0f} rows/s, p50 {r['p50_ms']:.1f} ms, "
                f"p99 {r['p99_ms']:.1f} ms, {r['parts']} parts ({r['parts_per_min']:,.0f}/min), server CPU "
                f"{fmt(r['server_cpu_s'], 1)} s, chasyncd {fmt(r['chasyncd_cpu_s'], 1)} s, client "
                f"{r['client_cpu_s']:.1f} s, load {r['load_avg']}, "
                f"{'ok' if r['ok'] else 'MISMATCH'}"
                + (f", failed {r['failed']}: {r['first_error']}" if r["failed"] else ""),
                file=sys.stderr, flush=True,
            )
    meta["load_end"] = loadavg()
    summary = summarise(runs, names)
    rat = ratios(runs, summary)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps({"meta": meta, "summary": summary, "ratios": rat, "runs": runs}, indent=1))
    md = report(a, meta, runs, summary, rat)
    Path(f"{out}.md").write_text(md)
    print(md)
    bad = [r for r in runs if not r["ok"]]
    if bad:
        print(f"bench-gateway: {len(bad)} run(s) did not land exactly the acknowledged rows", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode")
    w = sub.add_parser("cc-worker")
    w.add_argument("--host", required=True)
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--table", required=True)
    w.add_argument("--threads", type=int, required=True)
    w.add_argument("--first-client", type=int, default=0)
    w.add_argument("--rows", type=int, default=100)
    w.add_argument("--duration", type=float, default=20)
    w.add_argument("--settings", default="{}")
    p.add_argument("--clickhouse", default=os.environ.get("CLICKHOUSE_URL", "http://127.0.0.1:18124"))
    p.add_argument("--server-pid", type=int, default=None, help="PID of the ClickHouse server (for its CPU)")
    p.add_argument("--chasyncd", default="target/release/chasyncd")
    p.add_argument("--load", default="target/release/gateway_load")
    p.add_argument("--duration", type=float, default=20)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--rows", type=int, default=100)
    p.add_argument("--cc-procs", type=int, default=4)
    p.add_argument("--only", default=None)
    p.add_argument("--spool-dir", default="/tmp/chasync-bench-gateway")
    p.add_argument("--land-timeout", type=float, default=180)
    p.add_argument("--keep-tables", action="store_true")
    p.add_argument("--force-async", action="store_true",
                   help="run the async_insert contenders even where the server does not batch them")
    p.add_argument("--out", default="target/bench-gateway")
    p.add_argument("--cc-profile", action="store_true",
                   help="instead of the contenders: where one clickhouse-connect insert() spends CPU "
                   "(OUT-cc-profile.md)")
    p.add_argument("--calls", type=int, default=300, help="calls of each kind for --cc-profile")
    p.add_argument("--command", default=None, help="the command line to state in the report")
    a = p.parse_args()
    if a.mode == "cc-worker":
        return cc_worker(a)
    if a.cc_profile:
        return cc_profile(a)
    return harness(a)


if __name__ == "__main__":
    sys.exit(main())
