"""``ClickHouseAsyncInserter``: a drop-in replacement for the asyncio + aiohttp inserter class.

A pipeline written for that class works after changing only its import::

    from chasync import ClickHouseAsyncInserter

    async with ClickHouseAsyncInserter("127.0.0.1", 8123, "db", "events") as ins:
        await ins.stream_insert(queue)      # queue: asyncio.Queue of dicts

What differs (on purpose):

* inserts run with real concurrency (``max_concurrency`` in flight) in the Rust engine, in
  native format, each batch with a deterministic id, so a retry never duplicates rows (on
  tables that deduplicate: Replicated*, or ``non_replicated_deduplication_window``);
* ``stream_insert`` returns when the queue delivers a sentinel: ``None`` or
  :data:`chasync.STOP` (put one per consumer);
* nothing is dropped: a batch that cannot be committed after ``retries`` attempts, rows
  ClickHouse refuses and items that are not dicts go to the dead-letter spool
  (``dlq_dir``, default ``$CHASYNC_DLQ_DIR`` or ``./chasync-dlq``) with their reason;
* ``_execute_insert(batch)``, which some pipelines call directly with a ready-made batch,
  sends the batch through the engine at once and returns whether every row of it was
  committed (``False``: some are in the dead-letter spool, not lost);
* the guarantee (cancellation included): every item ``stream_insert`` took from the queue is
  committed or dead-lettered by the time the ``async with`` block exits (``close()``
  returns). Items still in the queue are not touched. ``queue.task_done()`` is called for
  each taken item once the engine holds it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Dict, List, Optional

from ._native import DeadLettered, Inserter

logger = logging.getLogger("chasync")


class _Stop:
    __slots__ = ()

    def __repr__(self) -> str:
        return "chasync.STOP"

    def __reduce__(self) -> str:
        return "STOP"


#: Put this (or ``None``) into the queue to make ``stream_insert`` return.
STOP: Any = _Stop()

#: Items taken from the queue per hand-off to the engine (one bridge crossing each).
DRAIN_MAX = 4096


class ClickHouseAsyncInserter:
    """Streams dicts from an :class:`asyncio.Queue` into ``database.table``.

    The first eight parameters are those of the class it replaces: ``batch_size`` is the
    engine's batch size in rows, ``timeout_sec`` the timeout of one insert, ``retries`` the
    attempts per batch (then it goes to the dead-letter spool). The keyword-only extras:

    * ``dlq_dir``: the dead-letter spool directory;
    * ``user``, ``password``: ClickHouse credentials;
    * ``linger``: seconds a partial batch waits for more rows before it is sent (1.0, as the
      1 s idle flush of the original);
    * ``secure``: ``https://`` instead of ``http://`` (False), with the TLS options
      ``tls_ca_file``, ``tls_cert_file``, ``tls_key_file``, ``tls_insecure_skip_verify``;
    * any other option of :class:`chasync.Inserter` (``compression``, ``queue_capacity``,
      ``stream_id``, ``settings``, ...).
    """

    def __init__(
        self,
        host: str,
        port: int,
        database: str,
        table: str,
        max_concurrency: int = 8,
        batch_size: int = 50_000,
        timeout_sec: int = 30,
        retries: int = 3,
        *,
        dlq_dir: Optional[str] = None,
        user: Optional[str] = None,
        password: Optional[str] = None,
        linger: float = 1.0,
        secure: bool = False,
        **options: Any,
    ) -> None:
        self.base_url = f"{'https' if secure else 'http'}://{host}:{port}"
        self.database = database
        self.table = table
        self.batch_size = batch_size
        self.retries = retries
        if dlq_dir is None:
            dlq_dir = os.environ.get("CHASYNC_DLQ_DIR", "chasync-dlq")
        options.setdefault("on_conversion_error", "dead_letter")
        self._inserter = Inserter(
            self.base_url,
            table,
            database=database,
            user=user,
            password=password,
            max_concurrency=max_concurrency,
            batch_rows=batch_size,
            timeout=timeout_sec,
            send_timeout=timeout_sec,
            max_attempts=max(1, retries),
            linger=linger,
            dlq_dir=dlq_dir,
            **options,
        )

    @property
    def inserter(self) -> Inserter:
        """The underlying :class:`chasync.Inserter`."""
        return self._inserter

    @property
    def dead_letter_dir(self) -> str:
        """Where failed batches and refused rows are written."""
        return self._inserter.dead_letter_dir

    async def __aenter__(self) -> "ClickHouseAsyncInserter":
        await self._inserter.start()
        return self

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        await self.close()

    async def close(self) -> Optional[Dict[str, Any]]:
        """Commits (or dead-letters) everything taken, stops the engine, returns final stats.

        Dead-lettered rows are reported through the ``chasync`` logger, not raised, as the
        original class logged failed batches.
        """
        try:
            stats = await self._inserter.close()
        except DeadLettered as e:
            logger.critical(
                "%d row(s) could not be inserted and are in the dead-letter spool %s (last error: %s)",
                e.rows,
                e.spool,
                e.last_error,
            )
            return self._inserter.stats()
        return stats

    def stats(self) -> Dict[str, Any]:
        """The engine's counters (a dict)."""
        return self._inserter.stats()

    async def flush(self) -> None:
        """Waits until everything taken so far is committed or dead-lettered (reported in the
        log, not raised)."""
        try:
            await self._inserter.flush()
        except DeadLettered as e:
            logger.critical(
                "%d row(s) could not be inserted and are in the dead-letter spool %s (last error: %s)",
                e.rows,
                e.spool,
                e.last_error,
            )

    async def _execute_insert(self, batch: List[Dict[str, Any]]) -> bool:
        """Commits one ready-made batch (a list of dicts) and returns whether it landed.

        As in the class this replaces, the batch is sent at once (sealed with whatever the
        engine holds, not held for ``linger``), retried up to ``retries`` attempts, and the
        call returns when it is done: ``True`` when every row was committed, ``False`` when
        some were not. Unlike the original, those rows are not dropped: they are in the
        dead-letter spool with the reason (logged here as an error). Starts the engine if
        needed.
        """
        if not batch:
            return True
        ins = self._inserter
        if not ins.running:
            await ins.start()
        try:
            await ins.write_acked(batch)
        except DeadLettered as e:
            logger.error(
                "%d row(s) of a batch of %d could not be inserted and are in the dead-letter spool %s (last error: %s)",
                e.rows,
                len(batch),
                e.spool,
                e.last_error,
            )
            return False
        return True

    async def stream_insert(self, data_stream: "asyncio.Queue[Any]") -> None:
        """Consumes ``data_stream`` until it yields ``None`` or :data:`chasync.STOP`.

        Items are handed to the engine in groups (everything the queue holds, up to
        ``DRAIN_MAX`` per call). When the sentinel arrives, the items before it are flushed
        (committed or dead-lettered) before this returns. When the task is cancelled, the
        items already taken stay with the engine, which is asked to send them at once; the
        ``async with`` exit waits for them.
        """
        ins = self._inserter
        if not ins.running:
            await ins.start()
        get_nowait = data_stream.get_nowait
        try:
            while True:
                item = await data_stream.get()
                batch = []
                taken = 1
                stop = False
                while True:
                    if item is None or item is STOP:
                        stop = True
                        break
                    batch.append(item)
                    if len(batch) >= DRAIN_MAX:
                        break
                    try:
                        item = get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    taken += 1
                try:
                    if batch:
                        # Converted and taken by the engine in this call; awaiting only waits
                        # for room in the engine's queue (backpressure). Cancelling the await
                        # does not take the rows back.
                        await ins.write_many(batch)
                finally:
                    for _ in range(taken):
                        data_stream.task_done()
                if stop:
                    await self.flush()
                    return
                # A full queue and an engine with room never suspend: let the other tasks
                # (producers, heartbeats) run between two hand-offs.
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            ins.flush_nowait()
            raise
