"""write_columns through the typed columnar path: Arrow (pyarrow, polars, pandas), numpy and
dicts of lists become typed engine columns. Every kind round-trips (checked against values
the server computes), NULLs, lossless conversions, values that do not fit (only their rows
are dead-lettered, with a clear reason), and lists of mixed kinds (value by value)."""

from __future__ import annotations

import asyncio
import datetime as dt
import glob
import os

import pytest

import chasync

np = pytest.importorskip("numpy")
pa = pytest.importorskip("pyarrow")

TABLE = (
    "CREATE TABLE t (id UInt64, i8 Int8, u16 UInt16, i32 Int32, i64 Int64, conv UInt32, "
    "f32 Float32, f64 Float64, b Bool, s String, lc LowCardinality(String), "
    "ns Nullable(String), ni Nullable(Int64), dt DateTime('UTC'), dt64 DateTime64(3, 'UTC'), "
    "dtn DateTime64(6, 'Asia/Tokyo'), d Date, _insert_id UUID) ENGINE = MergeTree ORDER BY id "
    "SETTINGS non_replicated_deduplication_window = 1000"
)
BASE = 1_700_000_000
# (on the table, the same from `number`)
CHECKS = [
    ("i8", "toInt8(toInt64(number % 200) - 100)"),
    ("u16", "toUInt16(number % 65536)"),
    ("i32", "toInt32(toInt64(number) * -7)"),
    ("i64", "toInt64(number) * toInt64(1000000007)"),
    ("conv", "toUInt32(number * 3)"),
    ("f32", "toFloat32(number / 8)"),
    ("f64", "number / 3"),
    ("b", "toBool(number % 3 = 0)"),
    ("s", "concat('s', toString(number))"),
    ("toString(lc)", "concat('k', toString(number % 10))"),
    ("ifNull(ns, 'null')", "if(number % 5 = 0, 'null', concat('n', toString(number)))"),
    ("ifNull(toString(ni), 'null')", "if(number % 7 = 0, 'null', toString(toInt64(number) - 50))"),
    ("toUnixTimestamp(dt)", f"toUInt32({BASE} + number)"),
    ("toUnixTimestamp64Milli(dt64)", f"toInt64({BASE}000 + number * 3)"),
    # wall clock read in Asia/Tokyo (UTC+9)
    ("toUnixTimestamp64Micro(dtn)", f"toInt64(({BASE} - 32400) * 1000000 + number)"),
    ("toUInt16(d)", "toUInt16(18000 + number % 1000)"),
]


def lists(lo: int, hi: int) -> dict:
    r = range(lo, hi)
    return {
        "id": list(r),
        "i8": [i % 200 - 100 for i in r],
        "u16": [i % 65536 for i in r],
        "i32": [i * -7 for i in r],
        "i64": [i * 1_000_000_007 for i in r],
        "conv": [i * 3 for i in r],
        "f32": [i / 8 for i in r],
        "f64": [i / 3 for i in r],
        "b": [i % 3 == 0 for i in r],
        "s": [f"s{i}" for i in r],
        "lc": [f"k{i % 10}" for i in r],
        "ns": [None if i % 5 == 0 else f"n{i}" for i in r],
        "ni": [None if i % 7 == 0 else i - 50 for i in r],
    }


def arrow_table(lo: int, hi: int) -> "pa.Table":
    d = lists(lo, hi)
    n = hi - lo
    return pa.table(
        {
            "id": pa.array(d["id"], pa.uint64()),
            "i8": pa.array(d["i8"], pa.int8()),
            "u16": pa.array(d["u16"], pa.uint16()),
            "i32": pa.array(d["i32"], pa.int32()),
            "i64": pa.array(d["i64"], pa.int64()),
            "conv": pa.array(d["conv"], pa.int64()),  # Int64 into UInt32
            "f32": pa.array(d["f32"], pa.float32()),
            "f64": pa.array(d["f64"], pa.float64()),
            "b": pa.array(d["b"], pa.bool_()),
            "s": pa.array(d["s"], pa.large_string()),
            "lc": pa.array(d["lc"]).dictionary_encode(),
            "ns": pa.array(d["ns"], pa.string()),
            "ni": pa.array(d["ni"], pa.int32()),
            "dt": pa.array([BASE + i for i in range(lo, hi)], pa.timestamp("s", tz="UTC")),
            "dt64": pa.array(
                [BASE * 1000 + i * 3 for i in range(lo, hi)], pa.timestamp("ms", tz="UTC")
            ),
            "dtn": pa.array(
                [BASE * 1_000_000 + i for i in range(lo, hi)], pa.timestamp("us")
            ),
            "d": pa.array([18000 + i % 1000 for i in range(lo, hi)], pa.date32()),
        }
    ).slice(0, n)


def check(db, n: int) -> None:
    assert db.int("SELECT count() FROM t") == n
    assert db.int("SELECT uniqExact(id) FROM t") == n
    for col, want in CHECKS:
        got = db.int(f"SELECT sum(cityHash64(id, {col})) FROM t")
        expected = db.int(f"SELECT sum(cityHash64(number, {want})) FROM numbers({n})")
        assert got == expected, col


def new(db, tmp_path, **kw) -> chasync.Inserter:
    return chasync.Inserter(db.url, "t", database=db.name, dlq_dir=str(tmp_path / "dlq"), **kw)


async def test_pyarrow_every_kind_round_trips(db, tmp_path):
    db.exec(TABLE)
    n = 30_000
    async with new(db, tmp_path, batch_rows=20_000) as ins:
        # Two pieces, the second a record batch of a slice.
        await ins.write_columns(arrow_table(0, 10_000))
        await ins.write_columns(arrow_table(10_000, n).to_batches()[0])
        await ins.flush()
        stats = ins.stats()
    assert stats["rows_committed"] == n and stats["rows_dead_lettered"] == 0
    check(db, n)


async def test_polars_and_pandas_round_trip(db, tmp_path):
    pl = pytest.importorskip("polars")
    pd = pytest.importorskip("pandas")
    db.exec(TABLE)
    n = 20_000
    table = arrow_table(0, n)
    frame = pl.from_arrow(table.drop_columns(["lc"])).with_columns(
        pl.Series("lc", lists(0, n)["lc"], dtype=pl.Categorical)
    )
    async with new(db, tmp_path) as ins:
        await ins.write_columns(frame.slice(0, n // 2))
        # pandas: through pyarrow, and a dict of Series
        df = table.slice(n // 2).to_pandas()
        await ins.write_columns(pa.Table.from_pandas(df.iloc[: n // 4], preserve_index=False))
        rest = df.iloc[n // 4 :]
        await ins.write_columns(
            {c: rest[c] for c in ("id", "i8", "u16", "i32", "i64", "conv", "f32", "f64", "b")}
            | {c: rest[c].tolist() for c in ("s", "lc", "dt", "dt64", "dtn", "d")}
            | {"ns": [None if pd.isna(x) else x for x in rest["ns"]]}
            | {"ni": [None if pd.isna(x) else int(x) for x in rest["ni"]]}
        )
    check(db, n)


async def test_numpy_and_dicts_of_lists_round_trip(db, tmp_path):
    db.exec(TABLE)
    n = 40_000  # lists of 20k str: more than one join of 16k
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    async with new(db, tmp_path, batch_rows=12_000) as ins:
        # numpy arrays of every numeric dtype and datetime64 (naive: wall clock)
        lo, hi = 0, n // 2
        d = lists(lo, hi)
        r = np.arange(lo, hi)
        await ins.write_columns(
            {
                "id": r.astype(np.uint64),
                "i8": (r % 200 - 100).astype(np.int8),
                "u16": (r % 65536).astype(np.uint16),
                "i32": (r * -7).astype(np.int32),
                "i64": r.astype(np.int64) * 1_000_000_007,
                "conv": (r * 3).astype(np.int64),
                "f32": (r / 8).astype(np.float32),
                "f64": r / 3,
                "b": r % 3 == 0,
                "s": np.array(d["s"]),
                "lc": d["lc"],
                "ns": d["ns"],
                "ni": d["ni"],
                "dt": (BASE + r).astype("datetime64[s]"),
                "dt64": (BASE * 1000 + r * 3).astype("datetime64[ms]"),
                "dtn": (BASE * 1_000_000 + r).astype("datetime64[us]"),
                "d": (18000 + r % 1000).astype("datetime64[D]"),
            }
        )
        # dicts of lists (ints, floats, bools, str, None), times as datetimes and ints
        lo, hi = n // 2, n
        d = lists(lo, hi)
        d["dt"] = [BASE + i for i in range(lo, hi)]  # epoch seconds
        d["dt64"] = [epoch + dt.timedelta(milliseconds=BASE * 1000 + i * 3) for i in range(lo, hi)]
        d["dtn"] = [
            dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=BASE * 1_000_000 + i)
            for i in range(lo, hi)
        ]
        d["d"] = [18000 + i % 1000 for i in range(lo, hi)]  # days
        await ins.write_columns(d)
    check(db, n)


async def test_values_that_do_not_fit_dead_letter_only_their_rows(db, tmp_path):
    db.exec(
        "CREATE TABLE r (id UInt64, small UInt8, ts DateTime('UTC')) "
        "ENGINE = MergeTree ORDER BY id"
    )
    n = 10_000
    small = [i % 200 for i in range(n)]
    small[123] = 300
    small[4567] = -1
    ts = [BASE + i for i in range(n)]
    ts[9000] = -5
    async with chasync.Inserter(
        db.url, "r", database=db.name, dlq_dir=str(tmp_path / "dlq")
    ) as ins:
        # a dict of lists and the same through pyarrow
        await ins.write_columns({"id": list(range(n)), "small": small, "ts": ts})
        await ins.write_columns(
            pa.table(
                {
                    "id": pa.array(range(n, 2 * n), pa.uint64()),
                    "small": pa.array(small, pa.int64()),
                    "ts": pa.array(ts, pa.int64()),
                }
            )
        )
        with pytest.raises(chasync.DeadLettered) as e:
            await ins.flush()
    assert e.value.rows == 6
    assert db.int("SELECT count() FROM r") == 2 * n - 6
    assert db.int("SELECT countIf(id % 10000 IN (123, 4567, 9000)) FROM r") == 0
    assert db.int(
        "SELECT sum(cityHash64(id, small, toUnixTimestamp(ts))) FROM r"
    ) == db.int(
        "SELECT sum(cityHash64(number, toUInt8(number % 10000 % 200), "
        f"toUInt32({BASE} + number % 10000))) FROM numbers({2 * n}) "
        "WHERE number % 10000 NOT IN (123, 4567, 9000)"
    )
    text = "".join(
        open(p, encoding="utf-8", errors="replace").read()
        for p in glob.glob(os.path.join(str(tmp_path / "dlq"), "*"))
    )
    assert "row 123, column `small`: cannot insert value 300 as UInt8" in text
    assert "row 4567, column `small`: cannot insert value -1 as UInt8" in text
    assert "row 9000, column `ts`: cannot insert value -5 as DateTime('UTC')" in text


async def test_lists_of_mixed_kinds_convert_value_by_value(db, tmp_path):
    db.exec(
        "CREATE TABLE m (id UInt64, s String, big UInt64, huge UInt256, x Float64, "
        "n Nullable(Int32), dflt Int32 DEFAULT 42, u String, a Nullable(String)) ENGINE = MergeTree ORDER BY id"
    )
    async with chasync.Inserter(
        db.url, "m", database=db.name, dlq_dir=str(tmp_path / "dlq")
    ) as ins:
        await ins.write_columns(
            {
                "id": [1, 2, 3, 4],
                "s": [1, "a", 2.5, True],  # mixed: each as its text
                "big": [2**63, 5, 2**64 - 1, 0],  # beyond i64: unsigned
                "huge": [2**200, 1, 2, 3],  # beyond 64 bits: value by value
                "x": [1.5, 2, None, 4.25],  # an int among floats
                "n": [None, None, 7, None],
                "dflt": [None, 1, None, 2],  # NULL in a non-Nullable column: its default
                "u": ["é", "日本", "a", ""],  # not ASCII
                "a": ["x", None, "yz", ""],  # ASCII with a NULL
            }
        )
    assert db.rows(
        "SELECT toInt32(id) AS id, s, toString(big) AS big, toString(huge) AS huge, x, n, dflt, "
        "u, a FROM m ORDER BY id"
    ) == [
        {"id": 1, "s": "1", "big": str(2**63), "huge": str(2**200), "x": 1.5, "n": None, "dflt": 42,
         "u": "é", "a": "x"},
        {"id": 2, "s": "a", "big": "5", "huge": "1", "x": 2, "n": None, "dflt": 1,
         "u": "日本", "a": None},
        {"id": 3, "s": "2.5", "big": str(2**64 - 1), "huge": "2", "x": 0, "n": 7, "dflt": 42,
         "u": "a", "a": "yz"},
        {"id": 4, "s": "true", "big": "0", "huge": "3", "x": 4.25, "n": None, "dflt": 2,
         "u": "", "a": ""},
    ]


async def test_the_event_loop_keeps_running_while_long_lists_convert(db, tmp_path):
    db.exec("CREATE TABLE e (id UInt64, name String, v Float64) ENGINE = MergeTree ORDER BY id")
    n = 600_000
    data = {
        "id": list(range(n)),
        "name": [f"name-{i}" for i in range(n)],
        "v": [i * 0.5 for i in range(n)],
    }
    loop = asyncio.get_running_loop()
    ticks: list = []

    async def heartbeat():
        while True:
            ticks.append(loop.time())
            await asyncio.sleep(0.005)

    async with chasync.Inserter(
        db.url, "e", database=db.name, dlq_dir=str(tmp_path / "dlq")
    ) as ins:
        hb = asyncio.create_task(heartbeat())
        await asyncio.sleep(0.05)
        t0 = loop.time()
        await ins.write_columns(data)
        await ins.flush()
        t1 = loop.time()
        hb.cancel()
    during = [t for t in ticks if t0 <= t <= t1]
    gaps = [b - a for a, b in zip(during, during[1:])]
    assert t1 - t0 > 0.05, "the write was too quick to tell anything"
    assert max(gaps) < 0.1, max(gaps)
    assert db.int("SELECT count() FROM e") == n
    assert db.int("SELECT sum(cityHash64(id, name, v)) FROM e") == db.int(
        "SELECT sum(cityHash64(number, concat('name-', toString(number)), number * 0.5)) "
        f"FROM numbers({n})"
    )
