"""Credentials in URLs, the ClickHouse environment variables, and settings the server refuses,
against the real server."""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path

import pytest

import chasync

TEST_USER = os.environ.get("CH_TEST_USER", "chasync_test")
TEST_PASSWORD = os.environ.get("CH_TEST_PASSWORD", "chasync-secret")


def url_with(base: str, user: str, password: str) -> str:
    scheme, rest = base.split("://", 1)
    q = lambda s: urllib.parse.quote(s, safe="")  # noqa: E731
    return f"{scheme}://{q(user)}:{q(password)}@{rest}"


def insert_users(db, table: str) -> list:
    db.exec("SYSTEM FLUSH LOGS")
    rows = db.rows(
        "SELECT DISTINCT user FROM system.query_log WHERE query_kind = 'Insert' "
        f"AND type = 'QueryFinish' AND has(tables, '{db.name}.{table}')"
    )
    return [r["user"] for r in rows]


def all_text(path: Path) -> str:
    if not path.exists():
        return ""
    return "".join(p.read_text(errors="replace") for p in path.rglob("*") if p.is_file())


async def test_credentials_in_the_url_are_used_and_never_shown(db, tmp_path):
    db.exec(
        "CREATE TABLE t (id UInt64, v UInt8, CONSTRAINT small CHECK v < 100) "
        "ENGINE = MergeTree ORDER BY id"
    )
    url = url_with(db.url, TEST_USER, TEST_PASSWORD)
    spool = tmp_path / "dlq"
    ins = chasync.Inserter(url, "t", database=db.name, dlq_dir=str(spool))
    cfg = json.loads(ins.config_json())
    assert cfg["clickhouse"]["user"] == TEST_USER
    assert cfg["clickhouse"]["password"] == "***"
    assert "@" not in cfg["clickhouse"]["url"][0]
    assert TEST_PASSWORD not in ins.config_json() and TEST_PASSWORD not in repr(ins)
    with pytest.raises(chasync.DeadLettered):
        async with ins:
            # Row 7 breaks the constraint: refused by the server, dead-lettered.
            await ins.write_many([{"id": i, "v": 200 if i == 7 else i} for i in range(20)])
    assert db.int("SELECT count() FROM t") == 19
    assert insert_users(db, "t") == [TEST_USER]
    spooled = all_text(spool)
    assert "VIOLATED_CONSTRAINT" in spooled
    assert TEST_PASSWORD not in spooled


async def test_a_wrong_password_in_the_url_names_the_user_not_the_password(db, tmp_path):
    db.exec("CREATE TABLE t (id UInt64) ENGINE = MergeTree ORDER BY id")
    secret = "wrong-Zq8-python-secret"
    ins = chasync.Inserter(
        url_with(db.url, TEST_USER, secret), "t", database=db.name, dlq_dir=str(tmp_path / "d")
    )
    with pytest.raises(chasync.Error) as e:
        await ins.start()
    text = f"{e.value!s} {e.value!r}"
    assert "AUTHENTICATION_FAILED" in text or "516" in text, text
    assert TEST_USER in text, text
    assert secret not in text, text
    assert secret not in ins.config_json()


def test_credentials_given_twice_and_differently_are_refused():
    with pytest.raises(chasync.ConfigError) as e:
        chasync.Inserter("http://alice:s3cret-a@127.0.0.1:1", "t", user="bob")
    assert '"alice"' in str(e.value) and '"bob"' in str(e.value)
    with pytest.raises(chasync.ConfigError) as e:
        chasync.Inserter("http://alice:s3cret-a@127.0.0.1:1", "t", password="s3cret-b")
    assert "password" in str(e.value) and "s3cret" not in str(e.value)
    # The same user twice is one user.
    ins = chasync.Inserter("http://alice:s3cret-a@127.0.0.1:1", "t", user="alice")
    assert json.loads(ins.config_json())["clickhouse"]["user"] == "alice"


def test_the_environment_under_the_arguments(monkeypatch):
    for k in list(os.environ):
        if k.startswith(("CHASYNC_", "CLICKHOUSE_")):
            monkeypatch.delenv(k)
    cfg = lambda *a, **kw: json.loads(chasync.Inserter(*a, **kw).config_json())  # noqa: E731
    assert cfg(None, "t")["clickhouse"]["url"] == ["http://127.0.0.1:8123"]
    monkeypatch.setenv("CLICKHOUSE_URL", "http://loader:pw-var@ch-var:1")
    monkeypatch.setenv("CLICKHOUSE_DATABASE", "db_ch")
    c = cfg(None, "t")
    assert c["clickhouse"]["url"] == ["http://ch-var:1"]
    assert c["clickhouse"]["user"] == "loader"
    assert c["clickhouse"]["database"] == "db_ch"
    # CHASYNC_* over CLICKHOUSE_*.
    monkeypatch.setenv("CHASYNC_URL", "http://chasync-var:1")
    monkeypatch.setenv("CHASYNC_DATABASE", "db_chasync")
    monkeypatch.setenv("CHASYNC_DLQ_DIR", "spool-var")
    monkeypatch.setenv("CHASYNC_MAX_ROWS", "12")
    c = cfg(None, "t")
    assert c["clickhouse"]["url"] == ["http://chasync-var:1"]
    assert c["clickhouse"]["database"] == "db_chasync"
    assert c["spool"]["dir"] == "spool-var"
    assert c["batching"]["max_rows"] == 12
    # The arguments over the environment, credentials of the URL included.
    c = cfg("http://arg-user:pw-arg@arg:1", "t", database="db_arg", max_rows=13)
    assert c["clickhouse"]["url"] == ["http://arg:1"]
    assert c["clickhouse"]["user"] == "arg-user"
    assert c["clickhouse"]["database"] == "db_arg"
    assert c["batching"]["max_rows"] == 13
    # A bad value in the environment names its variable.
    monkeypatch.setenv("CHASYNC_MAX_ROWS", "lots")
    with pytest.raises(chasync.ConfigError, match="CHASYNC_MAX_ROWS"):
        cfg(None, "t")


async def test_settings_the_server_refuses_stop_the_start(db, tmp_path):
    db.exec("CREATE TABLE t (id UInt64) ENGINE = MergeTree ORDER BY id")
    spool = tmp_path / "dlq"
    for settings, says in [
        ({"no_such_setting": 1}, "`no_such_setting` is not a setting"),
        ({"async_inset": 0}, "did you mean `async_insert`"),
        ({"async_insert": "maybe"}, "CANNOT_PARSE_BOOL"),
    ]:
        ins = chasync.Inserter(
            db.url, "t", database=db.name, dlq_dir=str(spool), settings=settings
        )
        with pytest.raises(chasync.ConfigError) as e:
            async with ins:
                await ins.write({"id": 1})
        assert says in str(e.value), str(e.value)
    assert db.int("SELECT count() FROM t") == 0
    assert not spool.exists() or not any(spool.iterdir())
    # Settings the server knows start the engine.
    async with chasync.Inserter(
        db.url, "t", database=db.name, dlq_dir=str(spool), settings={"max_insert_threads": 2}
    ) as ins:
        await ins.write({"id": 1})
    assert db.int("SELECT count() FROM t") == 1
