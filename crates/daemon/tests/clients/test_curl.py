"""curl, as people script it: every input format, every Content-Encoding, the query in the URL
or in the body, credentials in each form ClickHouse takes, and settings that change what lands.
The bodies are made by the server itself (`SELECT ... FORMAT X`)."""

from __future__ import annotations

import gzip
import lzma
import subprocess
import urllib.parse
import zlib
from typing import Dict, List, Optional

import brotli
import lz4.frame
import pytest
import zstandard

from conftest import TEST_PASSWORD, TEST_USER, URL, Db, Daemon, make_reference

CURL = ["curl", "--silent", "--show-error", "--max-time", "120"]


def curl(
    url: str,
    query: Optional[str] = None,
    body: bytes = b"",
    headers: Optional[Dict[str, str]] = None,
    params: Optional[Dict[str, str]] = None,
    user: Optional[str] = None,
) -> "tuple[int, str]":
    """`curl --data-binary @-`: returns (HTTP status, body)."""
    p = dict(params or {})
    if query is not None:
        p["query"] = query
    full = url + "/"
    if p:
        full += "?" + urllib.parse.urlencode(p)
    cmd = CURL + ["--write-out", "\n%{http_code}", "--data-binary", "@-", full]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    if user is not None:
        cmd += ["--user", user]
    out = subprocess.run(cmd, input=body, capture_output=True, check=True).stdout.decode(
        errors="replace"
    )
    text, _, code = out.rpartition("\n")
    return int(code), text


# (format, whether the server can write it for our columns)
FORMATS = [
    "JSONEachRow",
    "JSONCompactEachRow",
    "JSONCompactEachRowWithNames",
    "JSONCompactEachRowWithNamesAndTypes",
    "JSONStringsEachRow",
    "CSV",
    "CSVWithNames",
    "CSVWithNamesAndTypes",
    "TSV",
    "TSVWithNames",
    "TSVWithNamesAndTypes",
    "TabSeparatedRaw",
    "TSKV",
    "Values",
    "RowBinary",
    "RowBinaryWithNames",
    "RowBinaryWithNamesAndTypes",
    "Native",
    "Parquet",
    "Arrow",
    "ArrowStream",
    "ORC",
    "JSON",
    "JSONCompact",
    "Avro",
    "MsgPack",
    "CustomSeparated",
    "BSONEachRow",
]


# Columns a format cannot write (the server refuses them), left out of its bodies.
UNWRITABLE = {"ORC": ["u", "d"]}
NAMES = ["id", "name", "ts", "price", "tags", "m", "n", "u", "e", "lc", "d", "ip"]


def bodies(db: Db, fmt: str, parts: int) -> List[bytes]:
    """The reference rows in `parts` bodies of format `fmt`, made by the server."""
    n = db.int("SELECT count() FROM ref")
    step = (n + parts - 1) // parts
    cols = ", ".join(c for c in NAMES if c not in UNWRITABLE.get(fmt, []))
    return [
        db.exec(f"SELECT {cols} FROM ref ORDER BY id LIMIT {step} OFFSET {k * step} FORMAT {fmt}")
        for k in range(parts)
    ]


def insert(table: str, fmt: str) -> str:
    """The insert of bodies(fmt) into `table`."""
    skip = UNWRITABLE.get(fmt)
    if not skip:
        return f"INSERT INTO {table} FORMAT {fmt}"
    cols = ", ".join(c for c in NAMES if c not in skip)
    return f"INSERT INTO {table} ({cols}) FORMAT {fmt}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_input_format_lands_as_a_direct_insert(db: Db, daemon: Daemon, fmt: str) -> None:
    make_reference(db, 600)
    db.clone("ref", "direct", "via")
    for k, body in enumerate(bodies(db, fmt, 3)):
        # The query in the URL, and for one body as the body's first line, as ClickHouse allows.
        for url, table in ((URL, "direct"), (daemon.url, "via")):
            statement = insert(f"{db.name}.{table}", fmt)
            if k == 1:
                code, text = curl(url, None, statement.encode() + b"\n" + body)
            else:
                code, text = curl(url, statement, body)
            assert code == 200, f"{url}: {text}"
    daemon.stop()
    want = db.fingerprint("direct")
    assert want[0] == 600
    assert db.fingerprint("via") == want


def encode(name: str, data: bytes) -> bytes:
    return {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "br": brotli.compress,
        "zstd": lambda d: zstandard.ZstdCompressor().compress(d),
        "xz": lzma.compress,
        "lz4": lz4.frame.compress,
    }[name](data)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd", "xz", "lz4"])
@pytest.mark.parametrize("fmt", ["JSONEachRow", "CSVWithNames", "RowBinary", "Parquet"])
def test_every_content_encoding(db: Db, daemon: Daemon, encoding: str, fmt: str) -> None:
    make_reference(db, 300)
    db.clone("ref", "direct", "via")
    for body in bodies(db, fmt, 2):
        packed = encode(encoding, body)
        for url, table in ((URL, "direct"), (daemon.url, "via")):
            code, text = curl(
                url,
                f"INSERT INTO {db.name}.{table} FORMAT {fmt}",
                packed,
                headers={"Content-Encoding": encoding},
            )
            assert code == 200, f"{url} {encoding}: {text}"
    daemon.stop()
    assert db.fingerprint("via") == db.fingerprint("direct")


def same_answer(direct: "tuple[int, str]", via: "tuple[int, str]", exact: bool = True) -> None:
    """The daemon's refusal is ClickHouse's: the status and (`exact`) the exception code. A
    body the daemon checks itself may be refused with another parse error's code than the
    one the server's parser of that type meets first."""
    code = lambda text: text.split(".", 1)[0]  # noqa: E731 - "Code: N"
    assert via[0] == direct[0], f"{direct} vs {via}"
    assert not exact or code(via[1]) == code(direct[1]), f"{direct} vs {via}"
    assert via[1].startswith("Code: "), via


def test_a_corrupt_body_gets_clickhouse_s_answer_before_the_ack(db: Db, daemon: Daemon) -> None:
    make_reference(db, 50)
    db.clone("ref", "direct", "via")
    good = bodies(db, "JSONEachRow", 1)[0]
    cases = [
        ("JSONEachRow", gzip.compress(good)[:-20], {"Content-Encoding": "gzip"}),
        ("JSONEachRow", zstandard.ZstdCompressor().compress(good)[:-9], {"Content-Encoding": "zstd"}),
        ("JSONEachRow", b"\x1f\x8b not gzip", {"Content-Encoding": "gzip"}),
        ("JSONEachRow", good[:-30], {}),
        ("JSONEachRow", good, {"Content-Encoding": "snappy-not-a-thing"}),
        ("CSV", b"1,2,3\n\"unterminated\n", {}),
        ("Values", b"(1, 'a'", {}),
        ("RowBinary", b"\x01\x02\x03", {}),
        ("Native", b"\x05\x01garbage", {}),
    ]
    for fmt, body, headers in cases:
        direct = curl(URL, f"INSERT INTO {db.name}.direct FORMAT {fmt}", body, headers=headers)
        via = curl(daemon.url, f"INSERT INTO {db.name}.via FORMAT {fmt}", body, headers=headers)
        if direct[0] == 200 and headers.get("Content-Encoding") == "zstd":
            # ClickHouse 26.9 answers 200 to a truncated zstd body and inserts nothing: the
            # daemon refuses it, so that the client knows.
            assert direct == (200, "") and db.int("SELECT count() FROM direct") == 0
            assert via[0] == 500 and via[1].startswith("Code: 561."), via
        else:
            same_answer(direct, via, exact=fmt not in ("JSONEachRow", "CSV", "Values"))
    daemon.stop()
    assert db.fingerprint("via") == db.fingerprint("direct")


def test_vector_s_gzip_json_each_row(db: Db, daemon: Daemon) -> None:
    """As Vector's clickhouse sink sends it: gzip, query parameters for the names, unknown
    fields skipped, timestamps parsed best effort."""
    db.exec(
        "CREATE TABLE logs (ts DateTime64(3, 'UTC'), host String, message String, level "
        "LowCardinality(String)) ENGINE = MergeTree ORDER BY ts"
    )
    db.exec("CREATE TABLE direct AS logs")
    lines = []
    for i in range(500):
        lines.append(
            '{"ts":"2024-03-0%dT10:%02d:%02d.%03dZ","host":"h%d","message":"line %d \\"q\\"",'
            '"level":"info","kubernetes":{"pod":"p%d"},"extra":[1,2]}'
            % (1 + i % 9, i % 60, (i * 7) % 60, i % 1000, i % 5, i, i)
        )
    body = gzip.compress(("\n".join(lines) + "\n").encode())
    for url, table in ((URL, "direct"), (daemon.url, "logs")):
        code, text = curl(
            url,
            "INSERT INTO {database:Identifier}.{table:Identifier} FORMAT JSONEachRow",
            body,
            headers={"Content-Encoding": "gzip"},
            params={
                "param_database": db.name,
                "param_table": table,
                "input_format_skip_unknown_fields": "1",
                "date_time_input_format": "best_effort",
            },
        )
        assert code == 200, f"{url}: {text}"
    daemon.stop()
    assert db.fingerprint("logs") == db.fingerprint("direct")
    assert db.int("SELECT count() FROM logs") == 500


@pytest.mark.parametrize("how", ["basic", "headers", "url"])
def test_wrong_credentials_get_clickhouse_s_answer_and_nothing_lands(
    db: Db, daemon: Daemon, how: str
) -> None:
    db.exec("CREATE TABLE t (id UInt64) ENGINE = MergeTree ORDER BY id")
    statement = f"INSERT INTO {db.name}.t FORMAT JSONEachRow"

    def send(password: str) -> "tuple[int, str]":
        if how == "basic":
            return curl(daemon.url, statement, b'{"id":1}\n', user=f"{TEST_USER}:{password}")
        if how == "headers":
            return curl(
                daemon.url,
                statement,
                b'{"id":1}\n',
                headers={"X-ClickHouse-User": TEST_USER, "X-ClickHouse-Key": password},
            )
        return curl(
            daemon.url, statement, b'{"id":1}\n', params={"user": TEST_USER, "password": password}
        )

    code, text = send("wrong")
    assert "Code: 516" in text and "AUTHENTICATION_FAILED" in text, text
    direct = curl(URL, "SELECT 1", user=f"{TEST_USER}:wrong")
    assert code == direct[0], (code, direct)
    code, text = send(TEST_PASSWORD)
    assert code == 200, text
    daemon.stop()
    assert db.int("SELECT count() FROM t") == 1
    db.exec("SYSTEM FLUSH LOGS")
    users = db.rows(
        "SELECT DISTINCT user FROM system.query_log WHERE type = 'QueryFinish' "
        f"AND query_kind = 'Insert' AND has(tables, '{db.name}.t')"
    )
    assert users == [{"user": TEST_USER}]


def test_session_timezone_is_honoured(db: Db, daemon: Daemon) -> None:
    db.exec("CREATE TABLE t (id UInt64, ts DateTime) ENGINE = MergeTree ORDER BY id")
    db.exec("CREATE TABLE direct AS t")
    body = b'{"id":1,"ts":"2024-01-01 00:00:00"}\n{"id":2,"ts":"2024-06-30 23:59:59"}\n'
    for url, table in ((URL, "direct"), (daemon.url, "t")):
        code, text = curl(
            url,
            f"INSERT INTO {db.name}.{table} FORMAT JSONEachRow",
            body,
            params={"session_timezone": "Asia/Tokyo"},
        )
        assert code == 200, text
    # The same setting in a SETTINGS clause.
    code, text = curl(
        daemon.url,
        f"INSERT INTO {db.name}.t SETTINGS session_timezone = 'America/New_York' FORMAT JSONEachRow",
        b'{"id":3,"ts":"2024-01-01 00:00:00"}\n',
    )
    assert code == 200, text
    daemon.stop()
    got = db.rows("SELECT id, toUnixTimestamp(ts) AS t FROM t ORDER BY id")
    want = db.rows("SELECT id, toUnixTimestamp(ts) AS t FROM direct ORDER BY id")
    assert got[:2] == want
    assert got[0]["t"] == 1704034800  # 2024-01-01 00:00:00 in Tokyo
    assert got[2]["t"] == 1704085200  # 2024-01-01 00:00:00 in New York


def test_unknown_and_read_only_settings_get_clickhouse_s_error_before_any_ack(
    db: Db, daemon: Daemon
) -> None:
    db.exec("CREATE TABLE t (id UInt64) ENGINE = MergeTree ORDER BY id")
    db.exec("CREATE TABLE direct AS t")
    statement = f"INSERT INTO {db.name}.t FORMAT JSONEachRow"
    for params in ({"no_such_setting": "1"}, {"readonly": "1"}, {"max_threads": "lots"}):
        via = curl(daemon.url, statement, b'{"id":1}\n', params=params)
        direct = curl(URL, statement.replace(".t ", ".direct "), b'{"id":1}\n', params=params)
        assert direct[0] != 200, direct
        same_answer(direct, via)
    assert "no_such_setting" in curl(
        daemon.url, statement, b'{"id":1}\n', params={"no_such_setting": "1"}
    )[1]
    daemon.stop()
    assert db.int("SELECT count() FROM t") == 0
    assert db.int("SELECT count() FROM direct") == 0


def test_queries_pass_through_streamed(db: Db, daemon: Daemon) -> None:
    code, text = curl(daemon.url, "SELECT number FROM numbers(100000) FORMAT TSV")
    assert code == 200 and text.split("\n")[-2] == "99999"
    same_answer(curl(URL, "SELEC oops"), curl(daemon.url, "SELEC oops"))
    same_answer(curl(URL, "SELECT 1 FROM"), curl(daemon.url, "SELECT 1 FROM"))
    # GET, /ping and /replicas_status are ClickHouse's.
    out = subprocess.run(CURL + [daemon.url + "/?query=SELECT%201"], capture_output=True)
    assert out.stdout == b"1\n"
    out = subprocess.run(CURL + [daemon.url + "/ping"], capture_output=True)
    assert out.stdout == b"Ok.\n"
