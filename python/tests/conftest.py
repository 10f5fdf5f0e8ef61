"""Tests of the Python package against a real ClickHouse (CLICKHOUSE_URL, default
http://127.0.0.1:8123). Every test gets a database of its own, dropped afterwards."""

from __future__ import annotations

import json
import os
import random
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, List

import pytest

import chasync

URL = os.environ.get("CLICKHOUSE_URL", "http://127.0.0.1:8123").rstrip("/")

# Under scripts/test-python.sh the package under test is the wheel installed into the venv;
# the source tree (python/chasync, without the compiled module) must not shadow it.
SOURCE_TREE = Path(__file__).resolve().parent.parent / "chasync"
if os.environ.get("CHASYNC_WHEEL") and Path(chasync.__file__).resolve().parent == SOURCE_TREE:
    raise RuntimeError(f"chasync was imported from the source tree {SOURCE_TREE}, not the wheel")


def query(sql: str, database: str | None = None) -> str:
    params = {"async_insert": "0"}
    if database:
        params["database"] = database
    req = urllib.request.Request(
        f"{URL}/?{urllib.parse.urlencode(params)}", data=sql.encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.read().decode()
    except urllib.error.HTTPError as e:
        raise AssertionError(f"{sql}: {e.read().decode()}") from e


class Db:
    """A database of its own for one test."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = URL

    def exec(self, sql: str) -> None:
        query(sql, self.name)

    def value(self, sql: str) -> Any:
        text = query(sql + " FORMAT JSONEachRow", self.name).strip()
        row = json.loads(text.splitlines()[0])
        return next(iter(row.values()))

    def int(self, sql: str) -> int:
        return int(self.value(sql))

    def rows(self, sql: str) -> List[dict]:
        text = query(sql + " FORMAT JSONEachRow", self.name)
        return [json.loads(line) for line in text.splitlines() if line]

    def create(self, columns: str, *tables: str) -> None:
        """MergeTree tables of `columns`, ordered by `id`."""
        for t in tables:
            self.exec(f"CREATE TABLE {t} ({columns}) ENGINE = MergeTree ORDER BY id")

    def inserter(self, dlq_root: Path, table: str, **kw) -> chasync.Inserter:
        """An inserter into `table`, its dead letters in `dlq_root/dlq-<table>`."""
        return chasync.Inserter(
            self.url, table, database=self.name, dlq_dir=str(dlq_root / f"dlq-{table}"), **kw
        )

    async def write_one_by_one(self, dlq_root: Path, table: str, rows, **kw) -> None:
        """The reference: one `write` per row, never a run."""
        async with self.inserter(dlq_root, table, **kw) as ins:
            for r in rows:
                await ins.write(r)


@pytest.fixture
def db():
    name = f"chasync_py_{os.getpid()}_{random.getrandbits(32):08x}"
    try:
        query(f"CREATE DATABASE {name}")
    except urllib.error.URLError as e:  # pragma: no cover - environment
        pytest.fail(f"no ClickHouse at {URL}: {e} (start one: ./run clickhouse-start)")
    d = Db(name)
    yield d
    query(f"DROP DATABASE IF EXISTS {name}")
