"""Typed use of the package, checked by `mypy --strict` (tests/test_typing.py); never run."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional

from typing_extensions import assert_type

import chasync


async def main(rows: List[Dict[str, Any]]) -> None:
    ins = chasync.Inserter(
        ["http://127.0.0.1:8123"],
        "db.events",
        user="loader",
        max_rows=100_000,
        linger=0.5,
        max_concurrency=8,
        settings={"async_insert": 0},
        on_conversion_error="dead_letter",
        batch_rows=1000,  # an alias
    )
    async with ins:
        await ins.write(rows[0])
        task: asyncio.Task[None] = asyncio.create_task(ins.write_many(rows))
        await task
        await asyncio.gather(ins.write_columns({"id": [1, 2]}), ins.flush())
        await ins.write_acked(rows)
        ins.try_write(rows[0])
        ins.flush_nowait()
        assert_type(ins.stats(), Dict[str, Any])
    stats = await ins.close()
    assert_type(stats, Optional[Dict[str, Any]])

    try:
        await ins.start()
    except chasync.ConnectionError as e:
        assert_type(e.errno, Optional[int])  # a builtin ConnectionError (OSError) too
    except chasync.ServerError as e:
        assert_type(e.code, int)
    except chasync.DeadLettered as e:
        assert_type(e.rows, int)
    except chasync.ConversionError as e:
        assert_type(e.column, Optional[str])

    # The URL from the environment (CHASYNC_URL / CLICKHOUSE_URL), TLS options.
    tls = chasync.Inserter(
        None,
        "events",
        tls_ca_file="/etc/chasync/ca.pem",
        tls_insecure_skip_verify=False,
        spool_dir=None,  # None: the environment's, else the default
    )
    assert_type(tls.config_json(), str)

    dropin = chasync.ClickHouseAsyncInserter("127.0.0.1", 8123, "db", "events", batch_size=10)
    async with dropin:
        landed = await dropin._execute_insert(rows)
        assert_type(landed, bool)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        queue.put_nowait(chasync.STOP)
        await dropin.stream_insert(queue)


def script(rows: List[Dict[str, Any]]) -> None:
    with chasync.SyncInserter("http://127.0.0.1:8123", "events", database="db") as ins:
        ins.write(rows[0])
        ins.write_many(rows)
        ins.write_many(r for r in rows)
        ins.write_acked(rows)
        ins.flush()
        assert_type(ins.stats(), Dict[str, Any])
    assert_type(ins.close(), Optional[Dict[str, Any]])
