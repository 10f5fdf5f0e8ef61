"""write_columns of Arrow lists and maps (list, large_list, fixed_size_list, map, lists of
lists) through the typed nested path: what lands in the server is checked value by value
against what the test meant, and against the same data given as a dict of lists (the value
path). Sliced tables, NULL lists (a non-Nullable column's default, as with None in a dict of
lists), NULL items, empty lists, chunked columns of several chunks, batches split into pieces,
and values that do not fit (only their rows are dead-lettered)."""

from __future__ import annotations

import glob
import os

import pytest

import chasync

pa = pytest.importorskip("pyarrow")

COLUMNS = (
    "id UInt64, tags Array(String), counts Array(UInt32), big Array(UInt64), "
    "attrs Map(String, UInt64), nattrs Map(LowCardinality(String), Nullable(UInt64)), "
    "lc Array(LowCardinality(String)), ni Array(Nullable(Int64)), nested Array(Array(UInt32)), "
    "fixed Array(Float64), dflt Array(UInt8) DEFAULT [42]"
)
NAMES = ["id", "tags", "counts", "big", "attrs", "nattrs", "lc", "ni", "nested", "fixed", "dflt"]


def row(i: int, nulls: bool = False) -> dict:
    """Row i as Python values; with `nulls`, some lists and maps are None (NULL)."""
    r = {
        "id": i,
        "tags": [f"tag{(i + k) % 20}" for k in range(i % 4)],
        "counts": [(i * (k + 1)) % 1000 for k in range(i % 3)],
        "big": [2**64 - 1 - i, i] if i % 2 else [],
        "attrs": {"a": i % 10, **({"b": i % 100} if i % 2 else {})},
        "nattrs": {"x": None if i % 3 == 0 else i, "y": i + 1},
        "lc": [["view", "click", "buy"][(i + k) % 3] for k in range(i % 5)],
        "ni": [None if (i + k) % 4 == 0 else k - i for k in range(i % 3)],
        "nested": [[i, k] for k in range(i % 3)] + ([[]] if i % 7 == 0 else []),
        "fixed": [i / 2, -i / 4],
        "dflt": [i % 256] * (i % 2),
    }
    if nulls:
        for name, k in (("tags", 2), ("counts", 3), ("nattrs", 5), ("dflt", 4)):
            if i % k == 0:
                r[name] = None
    return r


def arrow_columns(rows: list) -> dict:
    col = lambda name: [r[name] for r in rows]  # noqa: E731
    return {
        "id": pa.array(col("id"), pa.uint64()),
        "tags": pa.array(col("tags"), pa.list_(pa.string())),
        "counts": pa.array(col("counts"), pa.list_(pa.uint32())),
        "big": pa.array(col("big"), pa.large_list(pa.uint64())),
        "attrs": pa.array(
            [list(a.items()) for a in col("attrs")], pa.map_(pa.string(), pa.uint64())
        ),
        "nattrs": pa.array(
            [None if a is None else list(a.items()) for a in col("nattrs")],
            pa.map_(pa.string(), pa.uint64()),
        ),
        "lc": pa.array(col("lc"), pa.list_(pa.large_string())),
        "ni": pa.array(col("ni"), pa.list_(pa.int64())),
        "nested": pa.array(col("nested"), pa.list_(pa.list_(pa.uint32()))),
        "fixed": pa.array(col("fixed"), pa.list_(pa.float64(), 2)),
        "dflt": pa.array(col("dflt"), pa.list_(pa.uint8())),
    }


def expected(r: dict) -> dict:
    """What the server holds for row r (NULL lists: the column's default)."""
    e = dict(r)
    for name in ("tags", "counts", "nattrs"):
        if e[name] is None:
            e[name] = {} if name == "nattrs" else []
    if e["dflt"] is None:
        e["dflt"] = [42]
    return e


SELECT = (
    "SELECT id, tags, counts, big, attrs, nattrs, lc, ni, nested, fixed, dflt FROM {t} ORDER BY id "
    "SETTINGS output_format_json_quote_64bit_integers = 0"
)


def table(db, name: str) -> None:
    db.exec(f"CREATE TABLE {name} ({COLUMNS}) ENGINE = MergeTree ORDER BY id")


async def test_arrow_lists_and_maps_land_like_their_values(db, tmp_path):
    table(db, "a")
    table(db, "d")
    n = 5_000
    rows = [row(i) for i in range(n)]
    cols = arrow_columns(rows)
    # Several chunks per column (not aligned between columns), then sliced.
    chunked = {}
    for k, (name, arr) in enumerate(cols.items()):
        cut = [0, 700 + 13 * k, 2_100, 2_101, n]
        chunked[name] = pa.chunked_array([arr.slice(lo, hi - lo) for lo, hi in zip(cut, cut[1:])])
    whole = pa.table(chunked)
    assert whole.column("tags").num_chunks > 1
    async with chasync.Inserter(
        db.url, "a", database=db.name, dlq_dir=str(tmp_path / "dlq"), batch_rows=1_500
    ) as ins:
        await ins.write_columns(whole.slice(0, 1_000))
        for b in whole.slice(1_000, 2_500).to_batches():
            await ins.write_columns(b)
        # A record batch sliced in the middle of its list arrays' children.
        await ins.write_columns(pa.record_batch(cols).slice(3_500))
        await ins.flush()
        assert ins.stats()["rows_dead_lettered"] == 0
    async with chasync.Inserter(
        db.url, "d", database=db.name, dlq_dir=str(tmp_path / "dlq2"), batch_rows=1_500
    ) as ins:
        await ins.write_columns({name: [r[name] for r in rows] for name in NAMES})
    got = db.rows(SELECT.format(t="a"))
    assert len(got) == n
    assert got == [expected(r) for r in rows]
    assert got == db.rows(SELECT.format(t="d"))


async def test_null_lists_are_the_columns_defaults(db, tmp_path):
    table(db, "a")
    rows = [row(i, nulls=True) for i in range(1_000)]
    t = pa.table(arrow_columns(rows))
    async with chasync.Inserter(
        db.url, "a", database=db.name, dlq_dir=str(tmp_path / "dlq")
    ) as ins:
        await ins.write_columns(t.slice(0, 0))
        await ins.write_columns(t.slice(0, 400))
        await ins.write_columns(t.slice(400))
    assert db.rows(SELECT.format(t="a")) == [expected(r) for r in rows]


async def test_items_that_do_not_fit_dead_letter_only_their_rows(db, tmp_path):
    db.exec("CREATE TABLE r (id UInt64, small Array(UInt8), m Map(String, UInt8)) "
            "ENGINE = MergeTree ORDER BY id")
    n = 3_000
    small = [[i % 200, (i * 7) % 200] for i in range(n)]
    small[123][1] = 300
    small[2_500] = [-1, 400]
    m = [[("k", i % 100)] for i in range(n)]
    m[77] = [("k", 1), ("z", 256)]
    t = pa.table(
        {
            "id": pa.array(range(n), pa.uint64()),
            "small": pa.array(small, pa.list_(pa.int64())),
            "m": pa.array(m, pa.map_(pa.string(), pa.int64())),
        }
    )
    async with chasync.Inserter(
        db.url, "r", database=db.name, dlq_dir=str(tmp_path / "dlq"), batch_rows=1_000
    ) as ins:
        await ins.write_columns(t)
        with pytest.raises(chasync.DeadLettered) as e:
            await ins.flush()
    assert e.value.rows == 3
    bad = (77, 123, 2_500)
    assert db.int("SELECT count() FROM r") == n - 3
    got = db.rows("SELECT id, small, m FROM r ORDER BY id")
    want = [
        {"id": i, "small": small[i], "m": dict(m[i])} for i in range(n) if i not in bad
    ]
    assert got == want
    text = "".join(
        open(p, encoding="utf-8", errors="replace").read()
        for p in glob.glob(os.path.join(str(tmp_path / "dlq"), "*"))
    )
    assert "column `small`: cannot insert value 300 as UInt8" in text
    assert "column `small`: cannot insert value -1 as UInt8" in text
    assert "column `m`: cannot insert value 256 as UInt8" in text
