"""write_columns (typed columns) next to the Native ceiling, on the e2e harness's narrow table.

    CLICKHOUSE_URL=http://127.0.0.1:8123 python benches/python/bench_columns.py \\
        --rows 2000000 --repeat 5 [--batch-rows 500000] [--compression none]

Cases, interleaved per round: chasync.Inserter.write_columns with a dict of lists, a dict of
numpy arrays (`name` stays a list of str) and a pyarrow.Table; and the ceiling: curl posting a
Native file of the same rows (made by the server from numbers() before the clock starts). The
rows are benches/src/lib.rs narrow_row. Building the inputs is not timed; each run starts on an
empty table and ends when the server holds every row; count and sum(cityHash64(...)) are checked
against the server's own computation. Prints the best of --repeat per case and its ratio to the
ceiling. The overall end-to-end harness is benches/src/bin/e2e.rs (./run bench-e2e).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
import urllib.parse
import urllib.request

URL = os.environ.get("CLICKHOUSE_URL", "http://127.0.0.1:8123").rstrip("/")
DB = f"chasync_bench_cols_{os.getpid()}"
SELECT = (
    "SELECT number AS id, toDateTime(1700000000 + number % 86400) AS ts, "
    "concat('user-', toString(number % 10000)) AS name, (number % 1000) * 0.25 AS value "
    "FROM numbers({n})"
)


def query(sql: str, db: bool = True) -> bytes:
    url = f"{URL}/?database={DB}" if db else URL
    req = urllib.request.Request(url, data=sql.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=300) as r:
        return r.read()


def check(n: int, want: int) -> None:
    got = int(query("SELECT count() FROM narrow"))
    ok = got == n and int(query("SELECT sum(cityHash64(id, ts, name, value)) FROM narrow")) == want
    if not ok:
        raise SystemExit(f"WRONG RESULT: {got} of {n} rows, or a wrong checksum")


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch-rows", type=int, help="chasync.Inserter batch_rows")
    ap.add_argument("--compression", choices=["lz4", "none"], help="chasync.Inserter compression")
    args = ap.parse_args()
    import chasync
    import numpy as np
    import pyarrow as pa

    opts = {}
    if args.batch_rows:
        opts["batch_rows"] = args.batch_rows
    if args.compression:
        opts["compression"] = args.compression
    n = args.rows
    r = range(n)
    lists = {
        "id": list(r),
        "ts": [1_700_000_000 + i % 86_400 for i in r],
        "name": [f"user-{i % 10_000}" for i in r],
        "value": [(i % 1000) * 0.25 for i in r],
    }
    ids = np.arange(n, dtype=np.uint64)
    numpy = {
        "id": ids,
        "ts": (1_700_000_000 + ids % 86_400).astype(np.uint32),
        "name": lists["name"],
        "value": (ids % 1000).astype(np.float64) * 0.25,
    }
    table = pa.table(
        {
            "id": pa.array(lists["id"], pa.uint64()),
            "ts": pa.array(lists["ts"], pa.uint32()),
            "name": lists["name"],
            "value": lists["value"],
        }
    )
    native = f"/tmp/{DB}.native"
    dlq = f"/tmp/{DB}-dlq"

    async def columns(data):
        async with chasync.Inserter(URL, "narrow", database=DB, dlq_dir=dlq, **opts) as ins:
            await ins.write_columns(data)

    async def curl(_):
        sql = urllib.parse.quote(f"INSERT INTO {DB}.narrow FORMAT Native")
        subprocess.run(
            ["curl", "-fsS", f"{URL}/?query={sql}", "--data-binary", f"@{native}"], check=True
        )

    cases = [
        ("write_columns(dict of lists)", columns, lists),
        ("write_columns(dict of numpy arrays)", columns, numpy),
        ("write_columns(pyarrow.Table)", columns, table),
        ("curl posting a Native file (ceiling)", curl, None),
    ]
    query(f"CREATE DATABASE {DB}", db=False)
    try:
        query(
            "CREATE TABLE narrow (id UInt64, ts DateTime, name String, value Float64) "
            "ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 1000"
        )
        with open(native, "wb") as f:
            f.write(query(SELECT.format(n=n) + " FORMAT Native"))
        want = int(query(f"SELECT sum(cityHash64(id, ts, name, value)) FROM ({SELECT.format(n=n)})"))
        print(
            f"# {n} narrow rows, best of {args.repeat}, chasync options {opts or 'default'}; "
            f"ClickHouse {query('SELECT version()').decode().strip()} at {URL}; "
            f"Python {platform.python_version()}; {os.cpu_count()} CPUs",
            flush=True,
        )
        best = {name: float("inf") for name, _, _ in cases}
        for _ in range(args.repeat):
            for name, fn, data in cases:
                query("TRUNCATE TABLE narrow")
                t0 = time.perf_counter()
                await fn(data)
                best[name] = min(best[name], time.perf_counter() - t0)
                check(n, want)
        ceiling = n / best[cases[-1][0]]
        for name, _, _ in cases:
            rate = n / best[name]
            print(f"{name:40s} {rate:>12,.0f} rows/s  {rate / ceiling:.2f}x the ceiling", flush=True)
        return 0
    finally:
        if os.path.exists(native):
            os.unlink(native)
        query(f"DROP DATABASE IF EXISTS {DB}", db=False)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
