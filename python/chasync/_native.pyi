"""Type stubs of the native module ``chasync._native`` (Rust, PyO3)."""

from __future__ import annotations

import builtins
from os import PathLike
from types import TracebackType
from typing import Any, Coroutine, Dict, Generator, Iterable, Literal, Mapping, Optional, Sequence, Union

from typing_extensions import Self, final

__all__ = [
    "Error",
    "ConnectionError",
    "ConfigError",
    "ConversionError",
    "ServerError",
    "QueueFull",
    "DeadLettered",
    "ClosedError",
    "Ready",
    "Pending",
    "Inserter",
    "sync_log_level",
    "__version__",
]

__version__: str

class Error(Exception):
    """Base class of every chasync error."""

class ConfigError(Error):
    """A bad option, an unknown table, or a configuration that cannot work."""

class ConnectionError(Error, builtins.ConnectionError):
    """ClickHouse cannot be reached: the connection failed or broke (refused, reset). A
    subclass of both ``chasync.Error`` and the builtin ``ConnectionError``. A TLS failure
    (a certificate problem) is a plain ``chasync.Error`` naming it."""

class ConversionError(Error):
    """A Python value that cannot be converted; nothing of the call was taken."""

    row: int
    """Index of the row within the call (or of the value within its column)."""
    column: Optional[str]
    """The key or column, when known."""
    value: str
    """``repr()`` of the value, cut to about 200 characters."""
    target_type: Optional[str]
    """The ClickHouse type, when the engine knew it (``None`` for values the frontend could
    not convert; values the engine refuses for a column's type are dead-lettered instead)."""

class ServerError(Error):
    """ClickHouse answered with an exception."""

    code: int
    """The ClickHouse error code, e.g. 516 for AUTHENTICATION_FAILED."""
    name: Optional[str]
    """The error name, e.g. ``"AUTHENTICATION_FAILED"``."""

class QueueFull(Error):
    """``try_write`` found the engine's queue full; the row was not taken."""

class DeadLettered(Error):
    """Rows could not be committed and are in the dead-letter spool."""

    rows: int
    """Dead-lettered rows (since the previous flush)."""
    batches: int
    """Dead-lettered batches."""
    spool: str
    """The spool directory."""
    last_error: str
    """The error of the last dead-lettered batch."""

class ClosedError(Error):
    """The inserter is closed (or was never started)."""

@final
class Ready(Coroutine[Any, Any, None]):
    """An awaitable that is already done (a write the engine's queue took at once). A
    coroutine as asyncio sees one: ``asyncio.create_task`` takes it."""

    def __await__(self) -> Generator[Any, None, None]: ...
    def __iter__(self) -> Ready: ...
    def __next__(self) -> None: ...
    def send(self, value: Any) -> None: ...
    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> None: ...
    def close(self) -> None: ...

@final
class Pending(Coroutine[Any, Any, Any]):
    """An awaitable still waiting for the engine (it wraps an asyncio future). A coroutine
    as asyncio sees one: ``asyncio.create_task`` takes it."""

    def __await__(self) -> Generator[Any, None, Any]: ...
    def send(self, value: Any) -> Any: ...
    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any: ...
    def close(self) -> None: ...

_Row = Mapping[str, Any]
_Columns = Union[Mapping[str, Sequence[Any]], Any]

@final
class Inserter:
    """Streams rows into one ClickHouse table through the chasync engine.

    ``url`` is the HTTP endpoint (``http://host:8123``, or ``https://host:8443`` with TLS) or a
    list of them (attempts go to the least loaded healthy one);
    ``http://user:password@host:8123`` (percent-encoded) carries the credentials (a ``user``
    or ``password`` argument that differs from them is an error). ``None``: the environment's
    ``CHASYNC_URL`` or ``CLICKHOUSE_URL``, else ``http://127.0.0.1:8123``. ``table`` is
    ``name`` or ``db.name``.

    Every option is a keyword argument with the names the command line and the daemon share
    (docs/configuration.md); ``help(chasync.Inserter)`` describes each one. An option left
    out (or ``None``) comes from the environment (``CHASYNC_<OPTION>``; ``CLICKHOUSE_URL``,
    ``CLICKHOUSE_USER``, ``CLICKHOUSE_PASSWORD``, ``CLICKHOUSE_DATABASE``), else its default
    (the signature's): ``max_attempts`` 20000 attempts, the spool in ``chasync-spool`` under
    the working directory, ``max_rows`` 250000, ``max_bytes`` 32 MiB, ``linger`` 1 s. The
    aliases (``batch_rows``, ``batch_bytes``, ``queue_capacity``, ``timeout``, ``dlq_dir``,
    ``dead_letter_dir``, ``endpoints``, ``compress``) are accepted too.
    """

    def __new__(
        cls,
        url: Union[str, Sequence[str], None],
        table: str,
        *,
        database: Optional[str] = None,
        user: Optional[str] = None,
        password: Optional[str] = None,
        compression: Union[Literal["lz4", "none"], bool, None] = "lz4",
        connect_timeout: Union[float, str, None] = 5.0,
        send_timeout: Union[float, str, None] = 30.0,
        insert_timeout: Union[float, str, None] = 120.0,
        query_timeout: Union[float, str, None] = 10.0,
        settings: Optional[Mapping[str, Any]] = None,
        cluster: Optional[str] = None,
        cluster_urls: Optional[Mapping[str, str]] = None,
        max_rows: Optional[int] = 250000,
        max_bytes: Union[int, str, None] = 33554432,
        linger: Union[float, str, None] = 1.0,
        queue_rows: Optional[int] = 200000,
        max_concurrency: Optional[int] = 4,
        max_attempts: Optional[int] = 20000,
        retries: Optional[int] = None,
        initial_backoff: Union[float, str, None] = 0.1,
        max_backoff: Union[float, str, None] = 10.0,
        backoff_multiplier: Optional[float] = 2.0,
        fill_insert_id: Optional[bool] = True,
        stream_id: Optional[str] = None,
        first_sequence: Optional[int] = 0,
        spool_dir: Union[str, PathLike[str], None] = "chasync-spool",
        urls: Union[str, Sequence[str], None] = None,
        tls_ca_file: Union[str, PathLike[str], None] = None,
        tls_cert_file: Union[str, PathLike[str], None] = None,
        tls_key_file: Union[str, PathLike[str], None] = None,
        tls_insecure_skip_verify: Optional[bool] = False,
        skip_unknown_keys: bool = False,
        preserve_row_order: bool = True,
        insert_id_column: Optional[str] = "_insert_id",
        on_conversion_error: Literal["raise", "dead_letter"] = "raise",
        **aliases: Any,
    ) -> Self: ...
    def start(self) -> Coroutine[Any, Any, None]:
        """Reads the table's schema and starts the engine."""
    async def __aenter__(self) -> Inserter: ...
    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
        /,
    ) -> bool: ...
    def write(self, row: _Row) -> Coroutine[Any, Any, None]:
        """Queues one row; resolves when it is in the engine's queue."""
    def try_write(self, row: _Row) -> None:
        """Queues one row if there is room now, else raises ``QueueFull``."""
    def write_many(self, rows: Iterable[_Row]) -> Coroutine[Any, Any, None]:
        """Queues many rows, converted in one call; resolves when all are in the queue."""
    def write_columns(self, data: _Columns) -> Coroutine[Any, Any, None]:
        """Queues columnar data: a dict of equal-length lists / tuples / numpy arrays /
        pandas Series, or any object with ``__arrow_c_stream__`` (pyarrow Table, RecordBatch,
        RecordBatchReader, polars DataFrame, ...)."""
    def write_acked(self, rows: Iterable[_Row]) -> Coroutine[Any, Any, None]:
        """Queues rows and sends them at once (sealed into a batch with whatever the engine
        holds); resolves once every one of them is committed, or raises ``DeadLettered``
        (``rows``: these rows only) when some were dead-lettered instead."""
    def flush(self) -> Coroutine[Any, Any, None]:
        """Resolves when every row written before is committed or dead-lettered; raises
        ``DeadLettered`` when rows were dead-lettered since the previous flush."""
    def flush_nowait(self) -> None:
        """Asks the engine to send what it holds now, without waiting."""
    def close(self) -> Coroutine[Any, Any, Optional[Dict[str, Any]]]:
        """Flushes, stops the engine, returns the final stats; raises ``DeadLettered`` when
        rows were dead-lettered since the last flush."""
    def stats(self) -> Dict[str, Any]:
        """The engine's counters: rows_accepted, rows_committed, rows_dead_lettered,
        rows_rejected, batches_committed, retries, in_flight, queue_depth, latency_ms_p50 ...
        and dead_letter_dir."""
    def config_json(self) -> str:
        """The engine configuration the arguments resolve to, as JSON (the password as
        ``***``)."""
    @property
    def dead_letter_dir(self) -> str:
        """The dead-letter spool directory."""
    @property
    def target(self) -> str:
        """``database.table``."""
    @property
    def chunk_rows(self) -> int:
        """Rows per columnar piece handed to the engine."""
    @property
    def running(self) -> bool:
        """Whether the engine runs (started and not closed)."""
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""

def sync_log_level() -> None:
    """Reads the level of the ``chasync`` logger now (it is also read every second)."""

