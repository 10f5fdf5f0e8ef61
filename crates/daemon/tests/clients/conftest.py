"""Real ClickHouse clients pointed at `chasyncd` unchanged, against a real ClickHouse
(CLICKHOUSE_URL, default http://127.0.0.1:8123). Run by scripts/test-gateway.sh, which builds
`chasyncd` (CHASYNC_BIN_DIR) and makes a venv with the clients.

Every test compares what lands through the daemon with what the same client lands by
inserting into ClickHouse directly: the row count and an order-independent checksum."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

URL = os.environ.get("CLICKHOUSE_URL", "http://127.0.0.1:8123").rstrip("/")
BIN = Path(os.environ.get("CHASYNC_BIN_DIR", Path(__file__).resolve().parents[4] / "target/debug"))
TEST_USER = os.environ.get("CH_TEST_USER", "chasync_test")
TEST_PASSWORD = os.environ.get("CH_TEST_PASSWORD", "chasync-secret")


def http(
    url: str,
    body: bytes = b"",
    params: Optional[Dict[str, str]] = None,
    headers: Optional[Dict[str, str]] = None,
    method: str = "POST",
) -> "tuple[int, bytes, Dict[str, str]]":
    """One request; returns (status, body, headers) whatever the status."""
    if params:
        url = f"{url}/?{urllib.parse.urlencode(params)}"
    req = urllib.request.Request(url, data=body if method != "GET" else None, method=method)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, e.read(), {k.lower(): v for k, v in e.headers.items()}


def query(sql: str, database: Optional[str] = None, body: bytes = b"") -> bytes:
    """A statement run directly on ClickHouse; raises with ClickHouse's message."""
    params = {"query": sql, "async_insert": "0"}
    if database:
        params["database"] = database
    status, out, _ = http(URL, body, params)
    if status != 200:
        raise AssertionError(f"{sql}: {out.decode(errors='replace')}")
    return out


class Db:
    """A database of its own for one test, dropped afterwards."""

    def __init__(self, name: str) -> None:
        self.name = name

    def exec(self, sql: str, body: bytes = b"") -> bytes:
        return query(sql, self.name, body)

    def rows(self, sql: str) -> List[dict]:
        text = self.exec(sql + " FORMAT JSONEachRow").decode()
        return [json.loads(line) for line in text.splitlines() if line]

    def int(self, sql: str) -> int:
        row = self.rows(sql)[0]
        return int(next(iter(row.values())))

    def fingerprint(self, table: str) -> "tuple[int, int]":
        """count() and an order-independent checksum of every column of `table`."""
        cols = [
            r["name"]
            for r in self.rows(
                f"SELECT name FROM system.columns WHERE database = '{self.name}' "
                f"AND table = '{table}' AND name != '_insert_id' ORDER BY position"
            )
        ]
        parts = ", ".join(f"ifNull(toString({c}), 'null')" for c in cols)
        row = self.rows(f"SELECT count() AS c, sum(cityHash64({parts})) AS h FROM {table}")[0]
        return int(row["c"]), int(row["h"])

    def clone(self, source: str, *tables: str) -> None:
        for t in tables:
            self.exec(f"CREATE TABLE {t} AS {source}")


@pytest.fixture
def db():
    name = f"chasync_gw_{os.getpid()}_{random.getrandbits(32):08x}"
    query(f"CREATE DATABASE {name}")
    try:
        yield Db(name)
    finally:
        query(f"DROP DATABASE IF EXISTS {name}")


class Daemon:
    """A `chasyncd` on a port of its own, in front of the test server."""

    def __init__(self, config: str = "", args: Optional[List[str]] = None) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="chasyncd-")
        self.spool = Path(self.dir.name) / "spool"
        cfg = Path(self.dir.name) / "chasyncd.toml"
        cfg.write_text(config or '[batching]\nlinger = "50ms"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHASYNCD_")}
        env["RUST_LOG"] = "info"
        self.proc = subprocess.Popen(
            [
                str(BIN / "chasyncd"),
                "--listen", "127.0.0.1:0",
                "--spool-dir", str(self.spool),
                "--url", URL,
                "--config", str(cfg),
                *(args or []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.log: List[str] = []
        ready = threading.Event()
        self.addr = ""

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log.append(line.rstrip("\n"))
                m = re.search(r"addr=(\S+)", line)
                if "chasyncd listening" in line and m and not ready.is_set():
                    self.addr = m.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(30) or not self.addr:
            self.proc.kill()
            raise AssertionError("chasyncd did not start:\n" + "\n".join(self.log))
        self.host, port = self.addr.rsplit(":", 1)
        self.port = int(port)
        self.url = f"http://{self.addr}"

    def stop(self) -> None:
        """SIGTERM: the daemon drains everything it acknowledged, then exits 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            code = self.proc.wait(60)
            assert code == 0, "\n".join(self.log)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.dir.cleanup()


@pytest.fixture
def daemon():
    d = Daemon()
    try:
        yield d
    finally:
        d.close()


# A table of many column types, and rows for it generated by the server itself.
COLUMNS = (
    "id UInt64, name String, ts DateTime64(3, 'UTC'), price Decimal(18, 4), tags Array(String), "
    "m Map(String, UInt32), n Nullable(Float64), u UUID, e Enum8('a' = 1, 'b' = 2), "
    "lc LowCardinality(String), d Date, ip IPv4"
)


def make_reference(db: Db, rows: int = 1000, table: str = "ref") -> None:
    """`table` filled with `rows` deterministic rows of every type in COLUMNS."""
    db.exec(f"CREATE TABLE {table} ({COLUMNS}) ENGINE = MergeTree ORDER BY id")
    structure = COLUMNS.split(", ", 1)[1].replace("'", "\\'")
    db.exec(
        f"INSERT INTO {table} SELECT rowNumberInAllBlocks() AS id, * "
        f"FROM generateRandom('{structure}', 7, 12, 4) LIMIT {rows}"
    )
