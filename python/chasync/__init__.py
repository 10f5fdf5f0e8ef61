"""chasync: fast, safe streaming inserts into ClickHouse from asyncio.

The engine is Rust (batching by rows, bytes and linger time, bounded queue with backpressure,
bounded concurrency, retries by ClickHouse error code, idempotent batch ids, a durable
dead-letter spool). This package converts Python objects into the engine's values and hands
them over without blocking the event loop.

Three entry points:

* :class:`Inserter` -- ``async with chasync.Inserter(url, table, ...) as ins: await ins.write_many(rows)``
* :class:`SyncInserter` -- the same without ``async``, for scripts and notebooks:
  ``with chasync.SyncInserter(url, table, ...) as ins: ins.write_many(rows)``
* :class:`ClickHouseAsyncInserter` -- a drop-in replacement for the widely copied asyncio
  ``ClickHouseAsyncInserter`` (aiohttp + JSONEachRow) class: same constructor, same
  ``await ins.stream_insert(queue)``.

Engine events reach :mod:`logging` under the logger ``chasync``.
"""

from __future__ import annotations

from ._native import (
    ClosedError,
    ConfigError,
    ConnectionError,
    ConversionError,
    DeadLettered,
    Error,
    Inserter,
    QueueFull,
    ServerError,
    __version__,
    sync_log_level,
)
from ._dropin import STOP, ClickHouseAsyncInserter
from ._sync import SyncInserter

__all__ = [
    "Inserter",
    "SyncInserter",
    "ClickHouseAsyncInserter",
    "STOP",
    "Error",
    "ConfigError",
    "ConnectionError",
    "ConversionError",
    "ServerError",
    "QueueFull",
    "DeadLettered",
    "ClosedError",
    "sync_log_level",
    "__version__",
]
