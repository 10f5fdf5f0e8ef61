"""Rows per second into ClickHouse from Python: chasync next to the class it replaces and
clickhouse-connect, on the same rows, table and server, in one run.

    python benches/python/bench_python.py --rows 1000000 --repeat 2
    python benches/python/bench_python.py --schema narrow --only write_columns

`--schema narrow` uses the e2e harness's narrow table (id UInt64, ts DateTime, name String,
value Float64) and rows, and adds the Native ceiling: curl posting a Native file of the same
rows (the file is made by the server from numbers(), not timed).

CLICKHOUSE_URL (default http://127.0.0.1:8123) names the server. Every measurement starts on
an empty table and ends when the server holds every row (checked with count()); the figure
is rows / wall-clock seconds. Building the input (the dicts, the columns, the Arrow table)
is not timed; converting it to what a client takes (tuples for clickhouse-connect) is.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import statistics
import sys
import time
import urllib.parse
import urllib.request
from typing import Any, Callable, Dict, List

URL = os.environ.get("CLICKHOUSE_URL", "http://127.0.0.1:8123").rstrip("/")
DB = f"chasync_bench_py_{os.getpid()}"
TABLE = "events"
COLUMNS = ["id", "user", "value", "ts", "kind"]
SCHEMA = "events"
OPTS: Dict[str, Any] = {}  # extra chasync.Inserter options (--batch-rows, --compression)


def query(sql: str) -> str:
    req = urllib.request.Request(f"{URL}/?database={DB}", data=sql.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=300) as r:
        return r.read().decode()


def count() -> int:
    return int(query(f"SELECT count() FROM {TABLE}").strip())


def checksum() -> int:
    if SCHEMA == "narrow":
        return int(query(f"SELECT sum(cityHash64(id, ts, name, value)) FROM {TABLE}").strip())
    return int(query(f"SELECT sum(cityHash64(id, user, value, ts, kind)) FROM {TABLE}").strip())


NARROW_SELECT = (
    "SELECT number AS id, toDateTime(1700000000 + number % 86400) AS ts, "
    "concat('user-', toString(number % 10000)) AS name, (number % 1000) * 0.25 AS value "
    "FROM numbers({n})"
)


def expected_checksum(n: int) -> int:
    if SCHEMA == "narrow":
        return int(
            query(f"SELECT sum(cityHash64(id, ts, name, value)) FROM ({NARROW_SELECT.format(n=n)})")
        )
    return int(
        query(
            "SELECT sum(cityHash64(number, concat('u', toString(number % 1000)), number * 0.5, "
            "toDateTime(1700000000 + number, 'UTC'), ['a', 'b', 'c'][number % 3 + 1])) "
            f"FROM numbers({n})"
        ).strip()
    )


def row(i: int) -> Dict[str, Any]:
    if SCHEMA == "narrow":  # benches/src/lib.rs narrow_row
        return {
            "id": i,
            "ts": 1_700_000_000 + i % 86_400,
            "name": f"user-{i % 10_000}",
            "value": (i % 1000) * 0.25,
        }
    return {
        "id": i,
        "user": f"u{i % 1000}",
        "value": i * 0.5,
        "ts": 1_700_000_000 + i,
        "kind": "abc"[i % 3],
    }


# --- The class chasync replaces, recreated as its article gives it (aiohttp + JSONEachRow) ---

from seed_inserter import ClickHouseAsyncInserter as SeedClickHouseAsyncInserter  # noqa: E402


# --- Measurements ---------------------------------------------------------------------------


async def wait_for_count(n: int, timeout: float = 300.0) -> None:
    deadline = time.perf_counter() + timeout
    while count() < n:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"only {count()} of {n} rows arrived")
        await asyncio.sleep(0.02)


async def pipeline(make_inserter: Callable[[], Any], rows: List[dict], sentinel: bool) -> None:
    """The article's shape: a producer task fills a bounded asyncio.Queue, stream_insert
    drains it."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=20_000)

    async def producer():
        for r in rows:
            await queue.put(r)
        if sentinel:
            await queue.put(None)

    async with make_inserter() as ins:
        prod = asyncio.create_task(producer())
        consumer = asyncio.create_task(ins.stream_insert(queue))
        await prod
        if sentinel:
            await consumer
        else:
            # The original never returns: wait until the server has every row, then stop it.
            await wait_for_count(len(rows))
            consumer.cancel()
    await wait_for_count(len(rows))


def host_port():
    u = urllib.parse.urlparse(URL)
    return u.hostname, u.port or 8123


async def run_seed(rows, data):
    h, p = host_port()
    await pipeline(lambda: SeedClickHouseAsyncInserter(h, p, DB, TABLE), rows, sentinel=False)


async def run_dropin(rows, data):
    import chasync

    h, p = host_port()
    await pipeline(
        lambda: chasync.ClickHouseAsyncInserter(h, p, DB, TABLE, dlq_dir=data["dlq"]),
        rows,
        sentinel=True,
    )


async def run_write_many(rows, data):
    import chasync

    async with chasync.Inserter(URL, TABLE, database=DB, dlq_dir=data["dlq"], **OPTS) as ins:
        await ins.write_many(rows)


async def run_dict_of_lists(rows, data):
    import chasync

    async with chasync.Inserter(URL, TABLE, database=DB, dlq_dir=data["dlq"], **OPTS) as ins:
        await ins.write_columns(data["columns"])


async def run_numpy(rows, data):
    import chasync

    async with chasync.Inserter(URL, TABLE, database=DB, dlq_dir=data["dlq"], **OPTS) as ins:
        await ins.write_columns(data["numpy"])


async def run_arrow(rows, data):
    import chasync

    async with chasync.Inserter(URL, TABLE, database=DB, dlq_dir=data["dlq"], **OPTS) as ins:
        await ins.write_columns(data["arrow"])


async def run_cc_rows(rows, data):
    import clickhouse_connect

    h, p = host_port()
    client = await clickhouse_connect.get_async_client(host=h, port=p, database=DB)
    try:
        batch = 50_000
        for lo in range(0, len(rows), batch):
            part = [tuple(r.values()) for r in rows[lo : lo + batch]]
            await client.insert(TABLE, part, column_names=COLUMNS)
    finally:
        await client.close()


async def run_cc_arrow(rows, data):
    import clickhouse_connect

    h, p = host_port()
    client = await clickhouse_connect.get_async_client(host=h, port=p, database=DB)
    try:
        await client.insert_arrow(TABLE, data["arrow"])
    finally:
        await client.close()


async def run_curl_native(rows, data):
    import subprocess

    sql = urllib.parse.quote(f"INSERT INTO {DB}.{TABLE} FORMAT Native")
    subprocess.run(
        ["curl", "-fsS", f"{URL}/?query={sql}", "--data-binary", f"@{data['native']}"],
        check=True,
    )


CASES = [
    ("original class (aiohttp + JSONEachRow), queue of dicts", run_seed),
    ("chasync.ClickHouseAsyncInserter (drop-in), queue of dicts", run_dropin),
    ("chasync.Inserter.write_many(list of dicts)", run_write_many),
    ("chasync.Inserter.write_columns(dict of lists)", run_dict_of_lists),
    ("chasync.Inserter.write_columns(dict of numpy arrays)", run_numpy),
    ("chasync.Inserter.write_columns(pyarrow.Table)", run_arrow),
    ("clickhouse-connect async insert(rows as tuples, 50k per call)", run_cc_rows),
    ("clickhouse-connect async insert_arrow(pyarrow.Table)", run_cc_arrow),
    ("curl posting a Native file of the same rows (server ceiling)", run_curl_native),
]


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--only", help="run the cases whose name contains this text")
    ap.add_argument("--schema", choices=["events", "narrow"], default="events")
    ap.add_argument("--also", help="with --only: also the cases containing this text")
    ap.add_argument("--batch-rows", type=int, help="chasync.Inserter batch_rows")
    ap.add_argument("--compression", choices=["lz4", "none"], help="chasync.Inserter compression")
    args = ap.parse_args()
    if args.batch_rows:
        OPTS["batch_rows"] = args.batch_rows
    if args.compression:
        OPTS["compression"] = args.compression
    global SCHEMA, COLUMNS
    SCHEMA = args.schema
    if SCHEMA == "narrow":
        COLUMNS = ["id", "ts", "name", "value"]
    import numpy as np
    import pyarrow as pa

    n = args.rows
    rows = [row(i) for i in range(n)]
    columns = {c: [r[c] for r in rows] for c in COLUMNS}
    if SCHEMA == "narrow":
        return await narrow_main(args, rows, columns)
    data = {
        "columns": columns,
        "numpy": {
            "id": np.arange(n, dtype=np.uint64),
            "user": columns["user"],
            "value": np.arange(n, dtype=np.float64) * 0.5,
            "ts": 1_700_000_000 + np.arange(n, dtype=np.int64),
            "kind": columns["kind"],
        },
        "arrow": pa.table(
            {
                "id": pa.array(columns["id"], pa.uint64()),
                "user": columns["user"],
                "value": columns["value"],
                "ts": pa.array(columns["ts"], pa.uint32()),
                "kind": columns["kind"],
            }
        ),
        "dlq": f"/tmp/{DB}-dlq",
    }
    query_root = urllib.request.Request(URL, data=f"CREATE DATABASE {DB}".encode(), method="POST")
    urllib.request.urlopen(query_root).read()
    try:
        query(
            f"CREATE TABLE {TABLE} (id UInt64, user String, value Float64, ts DateTime('UTC'), "
            "kind LowCardinality(String)) ENGINE = MergeTree ORDER BY id"
        )
        want = expected_checksum(n)
        await measure(args, rows, data, want)
        return 0
    finally:
        urllib.request.urlopen(
            urllib.request.Request(URL, data=f"DROP DATABASE IF EXISTS {DB}".encode(), method="POST")
        ).read()


async def narrow_main(args, rows, columns) -> int:
    import numpy as np
    import pyarrow as pa

    n = args.rows
    ids = np.arange(n, dtype=np.uint64)
    data = {
        "columns": columns,
        "numpy": {
            "id": ids,
            "ts": (1_700_000_000 + ids % 86_400).astype(np.uint32),
            "name": columns["name"],
            "value": (ids % 1000).astype(np.float64) * 0.25,
        },
        "arrow": pa.table(
            {
                "id": pa.array(columns["id"], pa.uint64()),
                "ts": pa.array(columns["ts"], pa.uint32()),
                "name": columns["name"],
                "value": columns["value"],
            }
        ),
        "dlq": f"/tmp/{DB}-dlq",
        "native": f"/tmp/{DB}-narrow.native",
    }
    global TABLE
    TABLE = "narrow"
    urllib.request.urlopen(
        urllib.request.Request(URL, data=f"CREATE DATABASE {DB}".encode(), method="POST")
    ).read()
    try:
        query(
            f"CREATE TABLE {TABLE} (id UInt64, ts DateTime, name String, value Float64) "
            "ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 1000"
        )
        sql = urllib.parse.quote(NARROW_SELECT.format(n=n) + " FORMAT Native")
        with urllib.request.urlopen(f"{URL}/?query={sql}", timeout=300) as r, open(
            data["native"], "wb"
        ) as f:
            f.write(r.read())
        want = expected_checksum(n)
        await measure(args, rows, data, want)
        return 0
    finally:
        if os.path.exists(data["native"]):
            os.unlink(data["native"])
        urllib.request.urlopen(
            urllib.request.Request(URL, data=f"DROP DATABASE IF EXISTS {DB}".encode(), method="POST")
        ).read()


async def measure(args, rows, data, want) -> None:
    n = args.rows
    version = query("SELECT version()").strip()
    print(
        f"# {SCHEMA} schema, {n} rows, best of {args.repeat}, chasync options {OPTS or 'default'}; "
        f"ClickHouse {version} at {URL}; "
        f"Python {platform.python_version()}; {os.cpu_count()} CPUs",
        flush=True,
    )
    results = []
    for name, fn in CASES:
        if SCHEMA == "narrow" and fn in (run_seed, run_dropin, run_cc_rows):
            continue
        if fn is run_curl_native and "native" not in data:
            continue
        if args.only and args.only not in name and not (args.also and args.also in name):
            continue
        times = []
        for _ in range(args.repeat):
            query(f"TRUNCATE TABLE {TABLE}")
            t0 = time.perf_counter()
            await fn(rows, data)
            times.append(time.perf_counter() - t0)
            got = count()
            if got != n or checksum() != want:
                raise SystemExit(f"{name}: WRONG RESULT ({got} rows)")
        best = min(times)
        results.append((name, n / best))
        print(
            f"{name:66s} {n / best:>12,.0f} rows/s  (best {best:.2f} s, "
            f"median {statistics.median(times):.2f} s)",
            flush=True,
        )
    ceiling = [r for name, r in results if "ceiling" in name]
    if ceiling:
        for name, r in results:
            print(f"  {r / ceiling[0]:.2f}x the Native ceiling: {name}")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
