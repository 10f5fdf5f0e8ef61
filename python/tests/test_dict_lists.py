"""Rows given as dicts whose cells are lists (of str, of int, with None items) or dicts (of
str keys and scalar values): typed lists and maps in runs, values where a column's cells change
kind. Every table is checked against the server's own values and against the same rows written
one at a time (`write`, the value path)."""

from __future__ import annotations

import glob
import os

import pytest

import chasync

COLUMNS = (
    "id UInt64, tags Array(String), counts Array(UInt32), ni Array(Nullable(Int64)), "
    "attrs Map(String, UInt64), sattrs Map(String, String), nt Tuple(a UInt64, b UInt64)"
)
NAMES = ["id", "tags", "counts", "ni", "attrs", "sattrs", "nt"]
N = 5_000
CHUNK = 1_000


def row(i: int) -> dict:
    return {
        "id": i,
        # None in a non-Nullable Array: an empty array, as on the value path
        "tags": None if i % 13 == 0 else [f"t{j}" for j in range(i % 4)],
        # lists of ints, then tuples (values from there on)
        "counts": [i + j for j in range(i % 3)] if i < 3000 else (i, 7),
        # empty lists first (the items' kind unknown), None items
        "ni": [] if i < 150 else [None if j % 2 else j - 5 for j in range(i % 5)],
        # beyond i64 late in the run: unsigned items
        "attrs": None if i % 17 == 0 else {f"k{j}": (2**63 + j if i > 4000 else j) for j in range(i % 3)},
        # None values in a non-Nullable String: ''
        "sattrs": {"a": f"s{i}", "b": None} if i % 4 else {},
        # dicts of ints into a named tuple
        "nt": {"a": i, "b": 2 * i},
    }


def expected(i: int) -> dict:
    """Row i as the server shows it (`toString` of every column)."""
    r = row(i)

    def arr(items) -> str:
        return "[" + ",".join(items) + "]"

    def mp(d) -> str:
        return "{" + ",".join(f"'{k}':{v}" for k, v in d.items()) + "}"

    return {
        "id": str(i),
        "tags": arr(f"'{t}'" for t in r["tags"] or []),
        "counts": arr(str(c) for c in r["counts"]),
        "ni": arr("NULL" if x is None else str(x) for x in r["ni"]),
        "attrs": mp(r["attrs"] or {}),
        "sattrs": mp({k: f"'{v or ''}'" for k, v in r["sattrs"].items()}),
        "nt": f"({i},{2 * i})",
    }


def select(db, table: str) -> list:
    cols = ", ".join(f"toString({c}) AS text_{c}" for c in NAMES)
    rows = db.rows(f"SELECT {cols} FROM {table} ORDER BY id")
    return [{k[len("text_"):]: v.replace(" ", "") for k, v in r.items()} for r in rows]


async def test_lists_and_dicts_land_like_the_value_path(db, tmp_path):
    db.create(COLUMNS, "t", "r")
    rows = [row(i) for i in range(N)]
    tail = [row(i) for i in range(N, N + 50)]
    async with db.inserter(tmp_path, "t", batch_rows=CHUNK) as ins:
        await ins.write_many(rows)  # background conversion
        await ins.write_many(tail)  # inline
    await db.write_one_by_one(tmp_path, "r", rows + tail, batch_rows=CHUNK)
    got = select(db, "t")
    assert got == [expected(i) for i in range(N + 50)]
    assert got == select(db, "r")


async def test_columns_of_lists_and_dicts(db, tmp_path):
    db.create(COLUMNS, "t")
    rows = [row(i) for i in range(2000)]
    cols = {name: [r[name] for r in rows] for name in NAMES}
    async with db.inserter(tmp_path, "t", batch_rows=CHUNK) as ins:
        await ins.write_columns(cols)
    assert select(db, "t") == [expected(i) for i in range(2000)]


async def test_a_bad_item_raises_and_dead_letters_only_its_row(db, tmp_path):
    db.create(COLUMNS, "t", "r")
    rows = [row(i) for i in range(3000)]
    rows[1234]["counts"] = [1, object()]
    async with db.inserter(tmp_path, "t", batch_rows=CHUNK) as ins:
        with pytest.raises(chasync.ConversionError) as e:
            await ins.write_many(rows)
        assert (e.value.row, e.value.column) == (1234, "counts")
        assert e.value.value.startswith("[1, <object object")
        assert "unsupported Python type object" in str(e.value)
    assert db.int("SELECT count() FROM t") == 0

    bad = {1234: ("counts", [1, object()]), 2100: ("attrs", {"k": object()}),
           2500: ("ni", [None, 1, object()])}
    rows = [row(i) for i in range(3000)]
    for i, (col, v) in bad.items():
        rows[i][col] = v
    async with db.inserter(
        tmp_path, "t", batch_rows=CHUNK, on_conversion_error="dead_letter"
    ) as ins:
        await ins.write_many(rows)
        with pytest.raises(chasync.DeadLettered) as e:
            await ins.flush()
    assert e.value.rows == len(bad)
    good = [r for i, r in enumerate(rows) if i not in bad]
    await db.write_one_by_one(tmp_path, "r", good, batch_rows=CHUNK)
    got = select(db, "t")
    assert got == [expected(i) for i in range(3000) if i not in bad]
    assert got == select(db, "r")
    text = "".join(
        open(p, encoding="utf-8").read()
        for p in glob.glob(os.path.join(str(tmp_path / "dlq-t"), "*.rejected.jsonl"))
    )
    for col in ["counts", "attrs", "ni"]:
        assert text.count(f"column `{col}`: unsupported Python type object") == 1


async def test_a_bad_item_in_a_later_piece_of_a_column_raises_and_writes_nothing(db, tmp_path):
    # Columns are taken a chunk of rows at a time; the error names the row in the whole
    # column, and no piece before it is written (the call takes all of it or nothing).
    db.create(COLUMNS, "t")
    rows = [row(i) for i in range(3000)]
    cols = {name: [r[name] for r in rows] for name in NAMES}
    cols["counts"][2345] = [1, object()]
    async with db.inserter(tmp_path, "t", batch_rows=CHUNK) as ins:
        with pytest.raises(chasync.ConversionError) as e:
            await ins.write_columns(cols)
        assert (e.value.row, e.value.column) == (2345, "counts")
        assert "unsupported Python type object" in str(e.value)
        cols["counts"][2345] = [7]
        await ins.write_columns(cols)
    assert db.int("SELECT count() FROM t") == 3000
    assert db.int("SELECT sum(length(counts)) FROM t WHERE id = 2345") == 1


NULLS = (
    "id UInt64, n Nullable(Int64), s Nullable(String), d Int32 DEFAULT 42, "
    "a Array(Nullable(String)), e Array(UInt8), m Map(String, Nullable(Float64))"
)


def all_none(i: int) -> dict:
    """Only None: whole columns, the items of lists, the values of dicts; and lists and
    dicts with no items at all."""
    return {
        "id": i,
        "n": None,
        "s": None,
        "d": None,
        "a": [None] * (i % 3),
        "e": [],
        "m": {"k": None} if i % 2 else {},
    }


def all_none_landed(i: int) -> dict:
    """Row i of all_none as the server holds it: NULL in a Nullable column, the column's
    default in the others."""
    return {
        "id": i,
        "n": None,
        "s": None,
        "d": 42,
        "a": [None] * (i % 3),
        "e": [],
        "m": {"k": None} if i % 2 else {},
    }


async def test_all_none_columns_are_nulls_on_every_path(db, tmp_path):
    """An all-None column (or lists and dicts of only None items, or of none) is the core's
    all-NULL column (`TypedColumn::all_null`, the column the core makes of NULL values) on
    every path: runs of dict rows, dict-of-lists columns, inline and on the background
    thread. Python's accumulator used to make such items an Int64 column where the core makes
    a Bool one; the kind does not show in ClickHouse (every row is NULL either way), so this
    pins what lands, against the value path, and the Rust test
    `convert::columns::tests::the_cores_typed_columns` pins the kind."""
    db.create(NULLS, "t", "c", "r")
    small = [all_none(i) for i in range(20)]
    big = [all_none(i) for i in range(20, 5_020)]
    names = list(small[0])
    async with db.inserter(tmp_path, "t", batch_rows=CHUNK) as ins:
        await ins.write_many(small)  # inline
        await ins.write_many(big)  # background conversion
    async with db.inserter(tmp_path, "c", batch_rows=CHUNK) as ins:
        for rows in (small, big):
            await ins.write_columns({k: [r[k] for r in rows] for k in names})
    await db.write_one_by_one(tmp_path, "r", small + big[:100])
    want = [all_none_landed(i) for i in range(5_020)]
    for table in ("t", "c"):
        got = db.rows(f"SELECT id, n, s, d, a, e, m FROM {table} ORDER BY id")
        assert got == want, table
    assert db.rows("SELECT id, n, s, d, a, e, m FROM r ORDER BY id") == want[:120]
