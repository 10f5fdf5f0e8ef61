"""clickhouse-connect (sync and async) pointed at chasyncd: its handshake, `insert` with lz4,
zstd and no compression (Native bodies), `insert_df`, `insert_arrow`, `query` and `command`."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import ipaddress
import uuid
from typing import Any, List

import clickhouse_connect
import pandas as pd
import pyarrow as pa
import pytest

from conftest import URL, Db, Daemon

COLUMNS = (
    "id UInt64, name String, ts DateTime64(3, 'UTC'), price Decimal(18, 4), tags Array(String), "
    "m Map(String, UInt32), n Nullable(Float64), u UUID, e Enum8('a' = 1, 'b' = 2), "
    "lc LowCardinality(String), d Date, ip IPv4"
)
NAMES = ["id", "name", "ts", "price", "tags", "m", "n", "u", "e", "lc", "d", "ip"]


def rows(lo: int, hi: int) -> List[List[Any]]:
    base = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    return [
        [
            i,
            f"name {i} \"q\" \t é",
            base + dt.timedelta(seconds=i, milliseconds=i % 1000),
            decimal.Decimal(i) / 7,
            [f"t{k}" for k in range(i % 4)],
            {f"k{k}": k * i for k in range(i % 3)},
            None if i % 5 == 0 else i / 3,
            uuid.UUID(int=i * 7919),
            "a" if i % 2 else "b",
            f"lc{i % 10}",
            dt.date(2024, 1, 1) + dt.timedelta(days=i % 300),
            ipaddress.IPv4Address(i * 65537 % 2**32),
        ]
        for i in range(lo, hi)
    ]


def client(host: str, port: int, db: Db, **kw: Any):
    return clickhouse_connect.get_client(host=host, port=port, database=db.name, **kw)


def direct(db: Db, **kw: Any):
    host, port = URL.removeprefix("http://").rsplit(":", 1)
    return client(host, int(port), db, settings={"async_insert": 0}, **kw)


@pytest.mark.parametrize("compress", ["lz4", "zstd", False])
def test_insert_with_each_compression(db: Db, daemon: Daemon, compress: Any) -> None:
    db.exec(f"CREATE TABLE direct ({COLUMNS}) ENGINE = MergeTree ORDER BY id")
    db.exec("CREATE TABLE via AS direct")
    through = client(daemon.host, daemon.port, db, compress=compress)
    straight = direct(db, compress=compress)
    for lo in range(0, 3000, 1000):
        straight.insert("direct", rows(lo, lo + 1000), column_names=NAMES)
        summary = through.insert("via", rows(lo, lo + 1000), column_names=NAMES)
        assert summary.written_rows == 1000
    # A query and a command through the daemon are ClickHouse's.
    assert through.query("SELECT count() FROM direct").result_rows == [(3000,)]
    assert through.command("SELECT 41 + 1") == 42
    through.command("CREATE TABLE made_through (id UInt8) ENGINE = Memory")
    assert db.int("EXISTS TABLE made_through") == 1
    daemon.stop()
    want = db.fingerprint("direct")
    assert want[0] == 3000
    assert db.fingerprint("via") == want


def test_insert_df_and_insert_arrow(db: Db, daemon: Daemon) -> None:
    db.exec(
        "CREATE TABLE direct (id UInt64, name String, score Float64, ts DateTime64(6, 'UTC'), "
        "flag Bool, n Nullable(Int32)) ENGINE = MergeTree ORDER BY id"
    )
    db.exec("CREATE TABLE via AS direct")
    n = 2000
    df = pd.DataFrame(
        {
            "id": range(n),
            "name": [f"n{i}" for i in range(n)],
            "score": [i / 9 for i in range(n)],
            "ts": pd.date_range("2024-01-01", periods=n, freq="37s", tz="UTC"),
            "flag": [i % 2 == 0 for i in range(n)],
            "n": pd.array([None if i % 4 == 0 else i for i in range(n)], dtype="Int32"),
        }
    )
    table = pa.Table.from_pandas(df.iloc[: n // 2], preserve_index=False)
    through = client(daemon.host, daemon.port, db)
    straight = direct(db)
    for c, t in ((straight, "direct"), (through, "via")):
        c.insert_df(t, df.iloc[n // 2 :])
        c.insert_arrow(t, table)
    daemon.stop()
    want = db.fingerprint("direct")
    assert want[0] == n
    assert db.fingerprint("via") == want


def test_the_async_client(db: Db, daemon: Daemon) -> None:
    db.exec(f"CREATE TABLE direct ({COLUMNS}) ENGINE = MergeTree ORDER BY id")
    db.exec("CREATE TABLE via AS direct")

    async def main() -> None:
        through = await clickhouse_connect.get_async_client(
            host=daemon.host, port=daemon.port, database=db.name
        )
        host, port = URL.removeprefix("http://").rsplit(":", 1)
        straight = await clickhouse_connect.get_async_client(
            host=host, port=int(port), database=db.name, settings={"async_insert": 0}
        )
        # Many small concurrent inserts: the case the daemon exists for.
        await asyncio.gather(
            *(through.insert("via", rows(k * 50, k * 50 + 50), column_names=NAMES) for k in range(40))
        )
        await asyncio.gather(
            *(straight.insert("direct", rows(k * 50, k * 50 + 50), column_names=NAMES) for k in range(40))
        )
        result = await through.query("SELECT count() FROM direct")
        assert result.result_rows == [(2000,)]
        assert await through.command("SELECT 1") == 1
        await through.close()
        await straight.close()

    asyncio.run(main())
    daemon.stop()
    want = db.fingerprint("direct")
    assert want[0] == 2000
    assert db.fingerprint("via") == want
    # The 40 inserts through the daemon made far fewer parts than the 40 direct ones.
    db.exec("SYSTEM FLUSH LOGS")
    inserts = db.rows(
        "SELECT count() AS c FROM system.query_log WHERE type = 'QueryFinish' "
        f"AND query_kind = 'Insert' AND has(tables, '{db.name}.via')"
    )[0]["c"]
    assert int(inserts) < 40
