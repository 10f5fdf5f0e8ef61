"""One Python contender of the end-to-end benchmark (benches/src/bin/e2e.rs), in a process of
its own, so that the harness can measure it under /usr/bin/time like the Rust contenders.

    python benches/python/e2e_python.py --one py-write-many --schema wide --rows 1000000 \\
        --input target/release/bench-e2e-data/wide-2000000.ndjson

The rows are the first --rows lines of the harness's NDJSON file (the same rows every other
contender gets), read with json.loads into dicts before the clock starts; the columnar inputs
(dict of lists, pyarrow.Table) are built from those dicts before the clock starts too.
Converting dicts to tuples for clickhouse-connect's insert() is timed (it is what a caller
holding dicts must do). The clock stops when the server holds every row (the contender's call
returned, or, for the seed's class, which never returns, count() reached the total).

Prints one line: rows=N seconds=S cpu=C rss_input_mb=I rss_peak_mb=P [p50= p95= p99=
batches=], where cpu is time.process_time() over the timed part only, rss_input_mb the
resident size before it (the input held in memory) and rss_peak_mb the peak resident size
during it (the kernel's high-water mark, reset before the timed part). CLICKHOUSE_URL names
the server; the tables chasync_bench.narrow / chasync_bench.wide exist (the harness creates
and truncates them).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import sys
import time
import urllib.parse
import urllib.request
from typing import Any, Callable, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from seed_inserter import ClickHouseAsyncInserter as SeedClickHouseAsyncInserter  # noqa: E402

URL = os.environ.get("CLICKHOUSE_URL", "http://127.0.0.1:8123").rstrip("/")
DB = "chasync_bench"
DLQ = os.path.join(os.environ.get("TMPDIR", "/tmp"), "chasync-e2e-dlq")
QUEUE_SIZE = 20_000
CC_BATCH = 50_000


def host_port():
    u = urllib.parse.urlparse(URL)
    return u.hostname, u.port or 8123


def count(table: str) -> int:
    req = urllib.request.Request(URL, data=f"SELECT count() FROM {DB}.{table}".encode(), method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return int(r.read().decode().strip())


def percentiles(lat_ms: List[float]) -> Dict[str, float]:
    if not lat_ms:
        return {}
    s = sorted(lat_ms)

    def rank(q: float) -> float:
        return s[min(len(s) - 1, max(0, int(q * len(s) + 0.999999) - 1))]

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "batches": float(len(s))}


def engine_latencies(stats: Optional[Dict[str, Any]]) -> Dict[str, float]:
    if not stats:
        return {}
    out = {}
    for k, key in (("p50", "latency_ms_p50"), ("p95", "latency_ms_p95"), ("p99", "latency_ms_p99"),
                   ("batches", "batches_committed")):
        if key in stats:
            out[k] = float(stats[key])
    if stats.get("rows_dead_lettered"):
        raise RuntimeError(f"rows dead-lettered: {stats}")
    return out


# --- inputs ---------------------------------------------------------------------------------


def read_rows(path: str, n: int) -> List[Dict[str, Any]]:
    with open(path, "rb") as f:
        rows = [json.loads(line) for line in itertools.islice(f, n)]
    if len(rows) != n:
        raise SystemExit(f"{path} holds {len(rows)} rows, fewer than {n}")
    return rows


def columns_of(rows: List[Dict[str, Any]]) -> Dict[str, List[Any]]:
    return {c: [r[c] for r in rows] for c in rows[0]}


def arrow_of(schema: str, cols: Dict[str, List[Any]]):
    import pyarrow as pa

    if schema == "narrow":
        types = {"id": pa.uint64(), "ts": pa.uint32(), "name": pa.string(), "value": pa.float64()}
        return pa.table({c: pa.array(v, types[c]) for c, v in cols.items()})
    types = {
        "id": pa.uint64(),
        "kind": pa.string(),
        "country": pa.string(),
        "user": pa.string(),
        "url": pa.string(),
        "referrer": pa.string(),
        "score": pa.float64(),
        "tags": pa.list_(pa.string()),
        "counts": pa.list_(pa.uint32()),
        "attrs": pa.map_(pa.string(), pa.uint64()),
        "status": pa.uint8(),
        "value": pa.float64(),
        "ok": pa.bool_(),
        "uid": pa.string(),
        "ip": pa.string(),
    }
    arrays = {}
    for c, v in cols.items():
        if c == "ts":
            # 'YYYY-MM-DD hh:mm:ss.mmm' in UTC -> timestamp[ms, UTC]
            arrays[c] = pa.array(v, pa.string()).cast(pa.timestamp("ms")).cast(pa.timestamp("ms", tz="UTC"))
        else:
            arrays[c] = pa.array(v, types[c])
    return pa.table(arrays)


# --- contenders -----------------------------------------------------------------------------


async def pipeline(ins: Any, rows: List[dict], consumer: Callable[[asyncio.Queue], Any], sentinel: bool,
                   table: str) -> None:
    """The seed's shape: a producer task fills a bounded asyncio.Queue with the dicts, a
    consumer (stream_insert) drains it."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_SIZE)

    async def producer():
        for r in rows:
            await queue.put(r)
        if sentinel:
            await queue.put(None)

    prod = asyncio.create_task(producer())
    cons = asyncio.create_task(consumer(queue))
    await prod
    if sentinel:
        await cons
    else:
        # The seed's stream_insert never returns: wait until the server has every row.
        n = len(rows)
        deadline = time.perf_counter() + 600
        while await asyncio.to_thread(count, table) < n:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the seed class did not land {n} rows")
            await asyncio.sleep(0.02)
        cons.cancel()
        try:
            await cons
        except asyncio.CancelledError:
            pass


async def floor_consumer(queue: asyncio.Queue) -> None:
    """The fastest pure-Python consumer of the pattern: takes what the queue holds (up to
    4096 items per wake-up), marks it done and drops it. No conversion, no insert."""
    get_nowait = queue.get_nowait
    while True:
        item = await queue.get()
        batch = []
        taken = 1
        stop = False
        while True:
            if item is None:
                stop = True
                break
            batch.append(item)
            if len(batch) >= 4096:
                break
            try:
                item = get_nowait()
            except asyncio.QueueEmpty:
                break
            taken += 1
        for _ in range(taken):
            queue.task_done()
        if stop:
            return
        await asyncio.sleep(0)


async def run(name: str, schema: str, data: Dict[str, Any]) -> Dict[str, float]:
    table = schema
    h, p = host_port()
    if name == "py-seed":
        lat: List[float] = []

        class Seed(SeedClickHouseAsyncInserter):
            # Observes each insert's latency; the class's behaviour is unchanged.
            async def _execute_insert(self, batch):
                t = time.perf_counter()
                ok = await super()._execute_insert(batch)
                lat.append((time.perf_counter() - t) * 1000)
                if not ok:
                    raise RuntimeError("the seed class failed an insert")
                return ok

        async with Seed(h, p, DB, table) as ins:
            await pipeline(ins, data["rows"], ins.stream_insert, sentinel=False, table=table)
        return percentiles(lat)
    if name == "py-asyncio-floor":
        await pipeline(None, data["rows"], floor_consumer, sentinel=True, table=table)
        return {}
    import chasync

    if name == "py-dropin":
        ins = chasync.ClickHouseAsyncInserter(h, p, DB, table, dlq_dir=DLQ)
        await ins.__aenter__()
        await pipeline(ins, data["rows"], ins.stream_insert, sentinel=True, table=table)
        return engine_latencies(await ins.close())
    if name in ("py-write-many", "py-write-columns-lists", "py-write-columns-arrow"):
        # The engine's defaults, as for the Rust contenders (CHASYNC_E2E_MAX_ROWS and
        # CHASYNC_E2E_COMPRESSION=none to explore).
        opts: Dict[str, Any] = {}
        if os.environ.get("CHASYNC_E2E_MAX_ROWS"):
            opts["batch_rows"] = int(os.environ["CHASYNC_E2E_MAX_ROWS"])
        if os.environ.get("CHASYNC_E2E_COMPRESSION"):
            opts["compression"] = os.environ["CHASYNC_E2E_COMPRESSION"]
        ins = chasync.Inserter(URL, table, database=DB, dlq_dir=DLQ, **opts)
        await ins.start()
        if name == "py-write-many":
            await ins.write_many(data["rows"])
        elif name == "py-write-columns-lists":
            await ins.write_columns(data["columns"])
        else:
            await ins.write_columns(data["arrow"])
        return engine_latencies(await ins.close())
    if name in ("py-cc-insert", "py-cc-insert-arrow"):
        import clickhouse_connect

        client = await clickhouse_connect.get_async_client(host=h, port=p, database=DB)
        lat = []
        try:
            if name == "py-cc-insert":
                rows = data["rows"]
                names = list(rows[0])
                for lo in range(0, len(rows), CC_BATCH):
                    t = time.perf_counter()
                    part = [tuple(r.values()) for r in rows[lo : lo + CC_BATCH]]
                    await client.insert(table, part, column_names=names)
                    lat.append((time.perf_counter() - t) * 1000)
            else:
                await client.insert_arrow(table, data["arrow"])
        finally:
            await client.close()
        return percentiles(lat)
    raise SystemExit(f"unknown Python contender {name}")


# --- measurement ----------------------------------------------------------------------------


def status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", required=True)
    ap.add_argument("--schema", choices=["narrow", "wide"], required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--input", required=True, help="the harness's NDJSON file of the schema")
    args = ap.parse_args()

    rows = read_rows(args.input, args.rows)
    data: Dict[str, Any] = {}
    if args.one in ("py-write-columns-lists", "py-write-columns-arrow", "py-cc-insert-arrow"):
        cols = columns_of(rows)
        del rows
        if args.one == "py-write-columns-lists":
            data["columns"] = cols
        else:
            data["arrow"] = arrow_of(args.schema, cols)
            del cols
    else:
        data["rows"] = rows
    gc.collect()

    input_mb = status_mb("VmRSS")
    peak_reset = reset_peak_rss()
    c0 = time.process_time()
    t0 = time.perf_counter()
    extra = asyncio.run(run(args.one, args.schema, data))
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    out = {"rows": float(args.rows), "seconds": seconds, "cpu": cpu, "rss_input_mb": input_mb}
    if peak_reset:
        out["rss_peak_mb"] = status_mb("VmHWM")
    out.update(extra)
    print(" ".join(f"{k}={v}" for k, v in out.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
