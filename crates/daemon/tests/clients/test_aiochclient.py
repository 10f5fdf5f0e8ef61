"""aiochclient pointed at chasyncd: `is_alive` (a GET), `INSERT ... VALUES` with its rows
in the body, and `fetch`."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import aiohttp
from aiochclient import ChClient

from conftest import URL, Db, Daemon


def test_aiochclient_values_insert(db: Db, daemon: Daemon) -> None:
    db.exec(
        "CREATE TABLE direct (id UInt64, name String, ts DateTime, u UUID, tags Array(String), "
        "n Nullable(Float64)) ENGINE = MergeTree ORDER BY id"
    )
    db.exec("CREATE TABLE via AS direct")
    rows = [
        (
            i,
            f"it's \"{i}\" \\ ok",
            dt.datetime(2024, 1, 1) + dt.timedelta(minutes=i),
            uuid.UUID(int=i),
            [f"a{k}" for k in range(i % 3)],
            None if i % 4 == 0 else i / 4,
        )
        for i in range(1000)
    ]

    async def main() -> None:
        async with aiohttp.ClientSession() as s:
            through = ChClient(s, url=daemon.url, database=db.name)
            straight = ChClient(s, url=URL, database=db.name)
            assert await through.is_alive()
            for lo in range(0, 1000, 100):
                await straight.execute("INSERT INTO direct VALUES", *rows[lo : lo + 100])
            await asyncio.gather(
                *(
                    through.execute(
                        "INSERT INTO via (id, name, ts, u, tags, n) VALUES", *rows[lo : lo + 100]
                    )
                    for lo in range(0, 1000, 100)
                )
            )
            got = await through.fetch("SELECT count() AS c FROM direct")
            assert got[0]["c"] == 1000

    asyncio.run(main())
    daemon.stop()
    want = db.fingerprint("direct")
    assert want[0] == 1000
    assert db.fingerprint("via") == want
