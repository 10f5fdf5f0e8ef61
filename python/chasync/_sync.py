"""``SyncInserter``: the engine for scripts and notebooks, without ``async``.

::

    import chasync

    with chasync.SyncInserter("http://127.0.0.1:8123", "events", database="analytics") as ins:
        ins.write_many(rows)
        ins.write_columns(arrow_table)
    # close(): everything written is committed (or dead-lettered, raised as DeadLettered)

It runs an :class:`chasync.Inserter` on an event loop of its own, on a thread of its own, and
each call waits for its result there. So it works the same in a plain script and inside a
running event loop (Jupyter, IPython with autoawait, a callback of an asyncio program): the
caller's loop is never used, only blocked for the length of the call, as any blocking call
blocks it.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import weakref
from concurrent.futures import Future
from types import TracebackType
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    Mapping,
    Optional,
    Sequence,
    Type,
    TypeVar,
    Union,
)

from ._native import Inserter, QueueFull

T = TypeVar("T")


class SyncInserter:
    """Streams rows into one ClickHouse table, with blocking calls.

    Takes the arguments of :class:`chasync.Inserter` (``url``, ``None`` for the
    environment's, ``table`` and the same keyword options, TLS and the environment's
    ``CHASYNC_*`` / ``CLICKHOUSE_*`` variables included; ``help(chasync.Inserter)`` lists
    them). Use it as a context manager
    (``with``), or call :meth:`start` and :meth:`close`. The engine and an event loop run on
    a thread of their own; the calls are safe from any thread (one at a time is the usual
    use). An inserter not closed is closed at interpreter exit, so written rows are
    committed then too.
    """

    def __init__(
        self, url: Union[str, Sequence[str], None], table: str, **options: Any
    ) -> None:
        self._inserter = Inserter(url, table, **options)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._closed = False

    # -- the loop thread -------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=run, name="chasync-sync", daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
                atexit.register(_close_at_exit, weakref.ref(self))
            return self._loop

    def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Runs ``make()`` (an awaitable of the inserter, made on the loop's thread, where
        it belongs) on the loop and waits for its result."""
        if self._thread is not None and threading.current_thread() is self._thread:
            raise RuntimeError("SyncInserter cannot be called from its own event loop's thread")
        loop = self._ensure_loop()

        async def step() -> T:
            return await make()

        fut: "Future[T]" = asyncio.run_coroutine_threadsafe(step(), loop)
        return fut.result()

    def _stop_loop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    # -- the API ---------------------------------------------------------------------------

    def start(self) -> "SyncInserter":
        """Reads the table's schema and starts the engine (``with`` does this)."""
        self._call(self._inserter.start)
        return self

    def __enter__(self) -> "SyncInserter":
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def write(self, row: Mapping[str, Any]) -> None:
        """Queues one row (a dict); returns once it is in the engine's queue."""
        ins = self._inserter
        try:
            # The common case: room in the queue. No trip to the loop's thread.
            ins.try_write(row)
        except QueueFull:
            self._call(lambda: ins.write(row))

    def write_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Queues many rows (dicts), converted in one call; returns once all are queued."""
        if not isinstance(rows, (list, tuple)):
            rows = list(rows)
        ins = self._inserter
        self._call(lambda: ins.write_many(rows))

    def write_columns(self, data: Any) -> None:
        """Queues columnar data (a dict of equal-length lists / numpy arrays, or anything
        with ``__arrow_c_stream__``: pyarrow, polars ...); returns once it is queued."""
        ins = self._inserter
        self._call(lambda: ins.write_columns(data))

    def write_acked(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Sends rows at once and returns when every one is committed; raises
        ``DeadLettered`` when some were dead-lettered instead."""
        if not isinstance(rows, (list, tuple)):
            rows = list(rows)
        ins = self._inserter
        self._call(lambda: ins.write_acked(rows))

    def try_write(self, row: Mapping[str, Any]) -> None:
        """Queues one row if there is room now, else raises ``QueueFull``."""
        self._inserter.try_write(row)

    def flush(self) -> None:
        """Returns when every row written before is committed or dead-lettered; raises
        ``DeadLettered`` when rows were dead-lettered since the previous flush."""
        self._call(self._inserter.flush)

    def close(self) -> Optional[Dict[str, Any]]:
        """Flushes, stops the engine and its thread, and returns the final stats; raises
        ``DeadLettered`` when rows were dead-lettered since the last flush. A second call
        returns ``None``."""
        if self._closed:
            return None
        self._closed = True
        try:
            if self._loop is None:
                return None  # never started: nothing was written
            return self._call(self._inserter.close)
        finally:
            self._stop_loop()

    def stats(self) -> Dict[str, Any]:
        """The engine's counters (a dict, as ``Inserter.stats()``)."""
        return self._inserter.stats()

    @property
    def inserter(self) -> Inserter:
        """The underlying :class:`chasync.Inserter` (driven on the loop's thread)."""
        return self._inserter

    @property
    def dead_letter_dir(self) -> str:
        """The dead-letter spool directory."""
        return self._inserter.dead_letter_dir

    @property
    def running(self) -> bool:
        """Whether the engine runs (started and not closed)."""
        return self._inserter.running

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self.running else "idle")
        return f"<chasync.SyncInserter {self._inserter.target} {state}>"


def _close_at_exit(ref: "weakref.ReferenceType[SyncInserter]") -> None:
    ins = ref()
    if ins is not None and not ins.closed:
        try:
            ins.close()
        except Exception:  # pragma: no cover - reported by the logger at exit
            import logging

            logging.getLogger("chasync").exception("closing a SyncInserter at exit failed")


__all__ = ["SyncInserter"]
