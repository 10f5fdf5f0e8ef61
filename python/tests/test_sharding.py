"""The Inserter into a sharded cluster: two private servers started for this module as the two
shards (weights 1 and 2) of cluster `two`, rows routed on the client and checked against the
server's own placement (the same rows through a Distributed table with
`distributed_foreground_insert = 1`)."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

import chasync

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "clickhouse.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, root: Path, name: str) -> None:
        self.dir = root / name
        self.http, self.tcp = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http}"

    def run(self, cmd: str, *extra: str) -> None:
        args = ["bash", str(SCRIPT), cmd, "--dir", str(self.dir)]
        args += ["--http-port", str(self.http), "--tcp-port", str(self.tcp), *extra]
        subprocess.run(args, check=True, capture_output=True, timeout=300)

    def exec(self, sql: str) -> str:
        req = urllib.request.Request(
            f"{self.url}/?{urllib.parse.urlencode({'async_insert': '0'})}",
            data=sql.encode(),
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.read().decode()


class Cluster:
    def __init__(self, a: Server, b: Server) -> None:
        self.a, self.b = a, b
        self.urls = {f"127.0.0.1:{s.tcp}": s.url for s in (a, b)}

    def on_both(self, sql: str) -> None:
        for s in (self.a, self.b):
            s.exec(sql)

    def per_shard(self, table: str, columns: str) -> List[Tuple[int, int]]:
        out = []
        for s in (self.a, self.b):
            line = s.exec(f"SELECT count(), sum(cityHash64({columns})) FROM {table} FORMAT TSV")
            n, h = line.split()
            out.append((int(n), int(h)))
        return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("shards")
    a, b = Server(root, "a"), Server(root, "b")

    def replica(s: Server) -> str:
        return f"<replica><host>127.0.0.1</host><port>{s.tcp}</port></replica>"

    extra = root / "extra-config.xml"
    extra.write_text(
        "<remote_servers><two>"
        f"<shard><weight>1</weight>{replica(a)}</shard>"
        f"<shard><weight>2</weight>{replica(b)}</shard>"
        "</two></remote_servers>"
    )
    profile = root / "profile-settings.xml"
    profile.write_text("<distributed_foreground_insert>1</distributed_foreground_insert>")
    flags = ("--extra-config", str(extra), "--profile-settings", str(profile))
    started = []
    try:
        for s in (a, b):
            s.run("start", *flags)
            started.append(s)
        c = Cluster(a, b)
        c.on_both("CREATE DATABASE sh")
        yield c
    finally:
        for s in started:
            s.run("stop", *flags)


def rows(n: int, start: int = 0) -> List[dict]:
    return [{"id": i, "s": f"user-{i % 513}"} for i in range(start, start + n)]


async def test_rows_columns_and_acked_writes_land_on_the_shard_the_server_would_choose(
    cluster: Cluster, tmp_path: Path
) -> None:
    for t in ("direct", "via"):
        cluster.on_both(f"CREATE TABLE sh.{t} (id UInt64, s String) ENGINE = MergeTree ORDER BY id")
        cluster.a.exec(
            f"CREATE TABLE sh.{t}_dist AS sh.{t} ENGINE = Distributed(two, sh, {t}, cityHash64(s))"
        )
    cluster.a.exec(
        "INSERT INTO sh.via_dist SELECT number AS id, concat('user-', toString(number % 513)) "
        "AS s FROM numbers(3000)"
    )
    async with chasync.Inserter(
        cluster.a.url,
        "direct_dist",
        database="sh",
        cluster_urls=cluster.urls,
        dlq_dir=str(tmp_path / "dlq"),
        max_rows=400,
    ) as ins:
        await ins.write_many(rows(1000))
        await ins.write_columns(
            {"id": list(range(1000, 2000)), "s": [f"user-{i % 513}" for i in range(1000, 2000)]}
        )
        await ins.write_acked(rows(1000, 2000))
        # A row without its key column cannot be routed: dead-lettered, with the reason.
        await ins.write({"id": 99999})
        with pytest.raises(chasync.DeadLettered):
            await ins.flush()
        stats = ins.stats()
    assert stats["rows_committed"] == 3000, stats
    assert stats["rows_dead_lettered"] == 1, stats
    direct = cluster.per_shard("sh.direct", "id, s")
    assert direct == cluster.per_shard("sh.via", "id, s")
    assert direct[0][0] > 0 and direct[1][0] > 0, direct
    # Straight into shard 2's local table (not forwarded by the Distributed table).
    cluster.b.exec("SYSTEM FLUSH LOGS")
    sent = cluster.b.exec(
        "SELECT count() FROM system.query_log WHERE type = 'QueryFinish' "
        "AND query_kind = 'Insert' AND is_initial_query AND has(tables, 'sh.direct')"
    )
    assert int(sent) > 0, sent
    spooled = [json.loads(p.read_text()) for p in (tmp_path / "dlq").glob("*.json")]
    assert any("cannot be routed" in r["error"] for r in spooled), spooled


async def test_the_cluster_option_spreads_a_plain_table_by_weight(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.on_both("CREATE TABLE sh.plain (id UInt64) ENGINE = MergeTree ORDER BY id")
    async with chasync.Inserter(
        cluster.a.url,
        "plain",
        database="sh",
        cluster="two",
        cluster_urls=cluster.urls,
        dlq_dir=str(tmp_path / "dlq"),
    ) as ins:
        await ins.write_many([{"id": i} for i in range(30)])
    counts = [n for n, _ in cluster.per_shard("sh.plain", "id")]
    assert counts == [10, 20], counts


async def test_an_unknown_cluster_is_a_config_error(cluster: Cluster, tmp_path: Path) -> None:
    cluster.on_both("CREATE TABLE sh.lone (id UInt64) ENGINE = MergeTree ORDER BY id")
    ins = chasync.Inserter(
        cluster.a.url, "lone", database="sh", cluster="nope", dlq_dir=str(tmp_path / "dlq")
    )
    with pytest.raises(chasync.ConfigError, match="nope"):
        await ins.start()
