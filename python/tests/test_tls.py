"""https:// URLs: inserts through a TLS terminator in front of the real server
(`chasync-tls-terminator`, from the Rust test kit, with a certificate authority made for the
run), the CA from ``tls_ca_file`` or ``SSL_CERT_FILE``, a wrong CA, client certificates and
the opt-out of verification."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
from pathlib import Path

import pytest

import chasync

from conftest import URL

BIN = Path(os.environ["CHASYNC_BIN_DIR"])
N = 3_000
EXPECTED = f"SELECT sum(cityHash64(number, concat('n', toString(number)))) FROM numbers({N})"


def start_terminator(*args: str):
    proc = subprocess.Popen(
        [str(BIN / "chasync-tls-terminator"), "--upstream", URL, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    return proc, info


def stop_terminator(proc) -> None:
    proc.stdin.close()
    proc.wait(timeout=30)


@pytest.fixture
def tls():
    proc, info = start_terminator()
    yield info
    stop_terminator(proc)


@pytest.fixture
def mutual_tls():
    proc, info = start_terminator("--require-client-cert")
    yield info
    stop_terminator(proc)


def rows():
    return [{"id": i, "name": f"n{i}"} for i in range(N)]


def landed(db) -> bool:
    return db.int("SELECT count() FROM t") == N and db.int(
        "SELECT sum(cityHash64(id, name)) FROM t"
    ) == db.int(EXPECTED)


def table(db) -> None:
    db.exec("CREATE TABLE t (id UInt64, name String) ENGINE = MergeTree ORDER BY id")


async def insert(db, tmp_path: Path, url: str, **options) -> None:
    async with chasync.Inserter(
        url, "t", database=db.name, dlq_dir=str(tmp_path / "dlq"), max_attempts=2, **options
    ) as ins:
        await ins.write_many(rows())


async def test_inserts_over_https_land(db, tmp_path, tls):
    table(db)
    await insert(db, tmp_path, tls["url"], tls_ca_file=tls["ca_file"])
    assert landed(db)
    # The drop-in class: `secure=True` for https://, the TLS options as keywords.
    db.exec("TRUNCATE TABLE t")
    host, port = tls["url_localhost"].removeprefix("https://").split(":")
    async with chasync.ClickHouseAsyncInserter(
        host,
        int(port),
        db.name,
        "t",
        secure=True,
        tls_ca_file=Path(tls["ca_file"]),
        dlq_dir=str(tmp_path / "dlq2"),
    ) as ins:
        assert ins.base_url == tls["url_localhost"]
        queue: asyncio.Queue = asyncio.Queue()
        for r in rows():
            queue.put_nowait(r)
        queue.put_nowait(None)
        await ins.stream_insert(queue)
    assert landed(db)


async def test_ssl_cert_file_is_the_trust_store(db, tmp_path, tls, monkeypatch):
    table(db)
    monkeypatch.setenv("SSL_CERT_FILE", tls["ca_file"])
    await insert(db, tmp_path, tls["url_localhost"])
    assert landed(db)


async def test_a_wrong_ca_names_the_certificate_problem(db, tmp_path, tls):
    table(db)
    with pytest.raises(chasync.Error) as e:
        await insert(db, tmp_path, tls["url"], tls_ca_file=tls["other_ca_file"])
    assert "invalid peer certificate: UnknownIssuer" in str(e.value)
    assert "set tls_ca_file" in str(e.value)
    # A certificate problem is not a server that is down.
    assert not isinstance(e.value, chasync.ConnectionError), type(e.value)
    assert db.int("SELECT count() FROM t") == 0
    with pytest.raises(chasync.ConfigError, match="tls_ca_file /nonexistent.pem"):
        await insert(db, tmp_path, tls["url"], tls_ca_file="/nonexistent.pem")


async def test_client_certificates(db, tmp_path, mutual_tls):
    table(db)
    # With TLS 1.3 the server's refusal comes after the client's side of the handshake: a
    # connection can close before its first request, and then the client only sees that (a
    # known gap of the error message). Such a start is tried again, up to three times.
    for _ in range(3):
        with pytest.raises(chasync.Error) as e:
            await insert(db, tmp_path, mutual_tls["url"], tls_ca_file=mutual_tls["ca_file"])
        if "connection was not ready" not in str(e.value):
            break
    assert "CertificateRequired" in str(e.value)
    assert "set tls_cert_file and tls_key_file" in str(e.value)
    assert not isinstance(e.value, chasync.ConnectionError), type(e.value)
    with pytest.raises(chasync.ConfigError, match="go together"):
        chasync.Inserter(mutual_tls["url"], "t", tls_cert_file=mutual_tls["client_cert"])
    await insert(
        db,
        tmp_path,
        mutual_tls["url"],
        tls_ca_file=mutual_tls["ca_file"],
        tls_cert_file=mutual_tls["client_cert"],
        tls_key_file=mutual_tls["client_key"],
    )
    assert landed(db)


async def test_skipping_verification_works_and_warns(db, tmp_path, tls, caplog):
    table(db)
    caplog.set_level(logging.WARNING, logger="chasync")
    chasync.sync_log_level()
    await insert(db, tmp_path, tls["url"], tls_insecure_skip_verify=True)
    assert landed(db)

    def warnings():
        return [
            r
            for r in caplog.records
            if r.name == "chasync"
            and r.levelno == logging.WARNING
            and "tls_insecure_skip_verify" in r.getMessage()
        ]

    deadline = asyncio.get_running_loop().time() + 5
    while not warnings():
        assert asyncio.get_running_loop().time() < deadline, caplog.text
        await asyncio.sleep(0.02)
    assert "NOT verified" in warnings()[0].getMessage()
