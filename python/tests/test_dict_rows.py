"""Rows given as dicts: runs of rows with the same keys become typed columns where a column's
cells are all ints, all floats, all str or all bools (with None), and values elsewhere. Every
table here is checked against the server's own values, and against the same rows written one
at a time (`write`, the value path), so that nothing is lost, reordered or converted
differently when a column changes kind in the middle of a run."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import glob
import os
import urllib.parse
import uuid

import pytest

import chasync

COLUMNS = (
    "id UInt64, v Nullable(String), w Nullable(Float64), n Nullable(Int64), d Int64 DEFAULT 42, "
    "u UInt64, h Int128, txt String, b Bool, bi UInt8, arr Array(Int64), m Map(String, Int64), "
    "tup Tuple(x Int64, y String), ts DateTime64(3, 'UTC'), dec Decimal(10, 2), uid UUID, "
    "raw String, s String"
)
N = 5_000  # more than INLINE_ROWS: converted on a thread of its own
CHUNK = 1_000  # batch_rows: columnar chunks of 1000 rows
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def row(i: int) -> dict:
    return {
        "id": i,
        "v": i if i < 1500 else (f"s{i}" if i < 2500 else None),  # int, then str, then None
        "w": i + 0.5 if i % 500 == 0 else i,  # ints with a float now and then
        "n": None if i < 1200 else i - 2000,  # None first, then ints
        # None: the column's default (those rows then take the encoder's row by row path:
        # only in the last rows)
        "d": None if i >= N and i % 2 else i,
        "u": i if i < 3000 else (2**64 - 1 if i == N - 1 else 2**63 + i),  # beyond i64
        "h": -i if i < 4000 else 2**100 + i,  # negative, then beyond 64 bits
        "txt": [True, False, 1, 0][i % 4],  # bool and int are not one kind
        "b": i % 3 == 0,
        "bi": (i % 2 == 0) if i < 2000 else i % 200,  # bools, then ints
        "arr": [i, i + 1],
        "m": {"k": i},
        "tup": {"x": i, "y": f"y{i}"},
        "ts": EPOCH + dt.timedelta(milliseconds=1_700_000_000_000 + i),
        "dec": decimal.Decimal(f"{i}.25"),
        "uid": uuid.UUID(int=i),
        "raw": f"r{i}".encode(),
        "s": f"s{i}é" if i % 7 else "",
    }


def expected(i: int) -> dict:
    """Row i as the server shows it (`toString` of every column)."""
    r = row(i)
    return {
        "id": str(i),
        "v": None if r["v"] is None else str(r["v"]),
        "w": str(r["w"]) if isinstance(r["w"], float) else str(i),
        "n": None if r["n"] is None else str(r["n"]),
        "d": str(42 if r["d"] is None else r["d"]),
        "u": str(r["u"]),
        "h": str(r["h"]),
        "txt": ["true", "false", "1", "0"][i % 4],
        "b": "true" if i % 3 == 0 else "false",
        "bi": str(int(r["bi"])),
        "arr": f"[{i},{i + 1}]",
        "m": f"{{'k':{i}}}",
        "tup": f"({i},'y{i}')",
        "ts": (EPOCH + dt.timedelta(milliseconds=1_700_000_000_000 + i)).strftime(
            "%Y-%m-%d %H:%M:%S.%f"
        )[:-3],
        "dec": f"{i}.25",
        "uid": str(uuid.UUID(int=i)),
        "raw": f"r{i}",
        "s": r["s"],
    }


NAMES = ["id", "v", "w", "n", "d", "u", "h", "txt", "b", "bi", "arr", "m", "tup", "ts", "dec",
         "uid", "raw", "s"]


def select(db, table: str) -> list:
    """Every row, every column as its text (NULL as None)."""
    cols = ", ".join(f"if(isNull({c}), NULL, toString({c})) AS text_{c}" for c in NAMES)
    rows = db.rows(f"SELECT {cols} FROM {table} ORDER BY id")
    return [{k[len("text_"):]: v for k, v in r.items()} for r in rows]


def spool_text(tmp_path, table: str) -> str:
    """The rejected rows' lines (a reason and the row's repr each)."""
    return "".join(
        open(p, encoding="utf-8", errors="replace").read()
        for p in glob.glob(os.path.join(str(tmp_path / f"dlq-{table}"), "*.rejected.jsonl"))
    )


async def test_columns_that_change_kind_land_like_the_value_path(db, tmp_path):
    db.create(COLUMNS, "t", "r")
    rows = [row(i) for i in range(N)]
    tail = [row(i) for i in range(N, N + 100)]
    async with db.inserter(tmp_path, "t", batch_rows=CHUNK) as ins:
        await ins.write_many(rows)  # background conversion (more than INLINE_ROWS)
        await ins.write_many(tail)  # inline
    await db.write_one_by_one(tmp_path, "r", rows + tail, batch_rows=CHUNK)
    got = select(db, "t")
    assert len(got) == N + 100
    want = [expected(i) for i in range(N + 100)]
    for g, w in zip(got, want):
        g = dict(g)
        g["tup"] = g["tup"].replace(" ", "")
        assert g == w
    assert got == select(db, "r")


async def test_a_bad_cell_raises_and_takes_nothing(db, tmp_path):
    db.create(COLUMNS, "t")
    async with db.inserter(tmp_path, "t", batch_rows=CHUNK) as ins:
        for i, col, bad in [
            (1700, "s", object()),  # a str column (typed so far)
            (2100, "raw", object()),  # the last column: the others of the row were taken
            (2200, "id", object()),  # the first column
            (2300, "s", "\ud800"),  # a str that is not UTF-8
            (10, "v", object()),  # a column that changed kind
        ]:
            rows = [row(j) for j in range(3000)]
            rows[i][col] = bad
            with pytest.raises(chasync.ConversionError) as e:
                await ins.write_many(rows)
            assert (e.value.row, e.value.column) == (i, col)
            if isinstance(bad, str):
                assert "surrogate" in str(e.value)
            else:
                assert e.value.value.startswith("<object object")
                assert "unsupported Python type object" in str(e.value)
        await ins.write_many([row(i) for i in range(3)])
    assert db.int("SELECT count() FROM t") == 3


async def test_bad_cells_dead_letter_only_their_rows(db, tmp_path):
    db.create(COLUMNS, "t", "r")
    rows = [row(i) for i in range(N)]
    bad = {10: ("s", object()), 1700: ("s", "\ud800"), 2500: ("raw", object()),
           2999: ("id", object()), 3001: ("v", [object()])}
    for i, (col, v) in bad.items():
        rows[i][col] = v
    mixed = rows[:4000] + ["not a row"] + rows[4000:]
    async with db.inserter(
        tmp_path, "t", batch_rows=CHUNK, on_conversion_error="dead_letter"
    ) as ins:
        await ins.write_many(mixed)
        with pytest.raises(chasync.DeadLettered) as e:
            await ins.flush()
    assert e.value.rows == len(bad) + 1
    good = [r for i, r in enumerate(rows) if i not in bad]
    await db.write_one_by_one(tmp_path, "r", good, batch_rows=CHUNK)
    got = select(db, "t")
    assert [int(g["id"]) for g in got] == [i for i in range(N) if i not in bad]
    assert got == select(db, "r")
    text = spool_text(tmp_path, "t")
    assert text.count("column `s`: unsupported Python type object") == 1
    assert text.count("column `raw`: unsupported Python type object") == 1
    assert text.count("column `id`: unsupported Python type object") == 1
    assert text.count("column `v`: unsupported Python type object") == 1
    assert "surrogate" in text
    assert "a row must be a dict, got str" in text


async def test_the_dropin_with_columns_of_changing_kinds(db, tmp_path):
    db.exec(
        "CREATE TABLE events (id UInt64, user String, value Float64, ts DateTime) "
        "ENGINE = MergeTree ORDER BY id"
    )
    n = 20_000
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(
            {
                "id": i,
                "user": None if i % 10 == 0 else f"u{i % 1000}",  # None: ''
                "value": i // 2 if i % 2 == 0 else i * 0.5,  # int and float: i * 0.5
                "ts": 1_700_000_000 + i,
            }
        )
    queue.put_nowait(chasync.STOP)
    u = urllib.parse.urlparse(db.url)
    async with chasync.ClickHouseAsyncInserter(
        u.hostname, u.port, db.name, "events", dlq_dir=str(tmp_path / "dlq")
    ) as ins:
        await ins.stream_insert(queue)
    assert db.int("SELECT count() FROM events") == n
    assert db.int(
        "SELECT sum(cityHash64(id, user, value, toDateTime(ts, 'UTC'))) FROM events"
    ) == db.int(
        "SELECT sum(cityHash64(number, if(number % 10 = 0, '', concat('u', toString(number % 1000))), "
        f"number * 0.5, toDateTime(1700000000 + number, 'UTC'))) FROM numbers({n})"
    )
