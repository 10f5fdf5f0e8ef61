"""Type stubs of the native module ``chasync._native`` (Rust, PyO3)."""

from __future__ import annotations

from os import PathLike
from typing import Any, Awaitable, Dict, Iterable, List, Literal, Mapping, Optional, Sequence, Union

__version__: str

class Error(Exception):
    """Base class of every chasync error."""

class ConfigError(Error):
    """A bad option, an unknown table, or a server that cannot be reached at start."""

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

class Ready:
    """An awaitable that is already done (a write the engine's queue took at once)."""

    def __await__(self) -> Any: ...

Row = Mapping[str, Any]
Columns = Union[Mapping[str, Sequence[Any]], Any]

class Inserter:
    """Streams rows into one ClickHouse table through the chasync engine.

    ``url`` is the HTTP endpoint (``http://host:8123``, or ``https://host:8443`` with TLS) or a
    list of them (attempts rotate);
    ``http://user:password@host:8123`` (percent-encoded) carries the credentials (a ``user``
    or ``password`` argument that differs from them is an error). ``None``: the environment's
    ``CHASYNC_URL`` or ``CLICKHOUSE_URL``, else ``http://127.0.0.1:8123``. The environment
    (``CHASYNC_<OPTION>``; ``CLICKHOUSE_URL``, ``_USER``, ``_PASSWORD``, ``_DATABASE``) sets
    any option the arguments leave out.
    Options (keyword arguments):

    * ``compression``: ``"lz4"`` (default) or ``"none"``;
    * ``batch_rows`` (250000), ``batch_bytes`` (32 MiB), ``linger`` (seconds, 1.0): a batch
      is sent at whichever comes first;
    * ``queue_capacity`` (200000 inputs): how far writers may run ahead of the inserts;
    * ``max_concurrency`` (4): inserts in flight;
    * ``max_attempts`` / ``retries`` (10), ``initial_backoff`` (0.1 s), ``max_backoff``
      (10 s), ``backoff_multiplier`` (2.0): the retry policy;
    * ``dlq_dir`` (``./chasync-dlq``): the dead-letter spool;
    * ``urls`` / ``endpoints``: more endpoints;
    * ``connect_timeout`` (5 s), ``send_timeout`` (30 s), ``timeout`` (120 s, the answer to
      one insert);
    * ``stream_id`` (a name: reproducible batch ids) and ``first_sequence``;
    * ``fill_insert_id`` (True): write the batch id into an ``_insert_id`` column;
    * ``settings``: extra ClickHouse settings of every insert;
    * ``tls_ca_file`` (a PEM file of the CAs to trust instead of the system's store, which
      ``SSL_CERT_FILE`` replaces), ``tls_cert_file`` and ``tls_key_file`` (a client
      certificate, for servers that require one), ``tls_insecure_skip_verify`` (False; True
      accepts any server certificate, unverified, and logs a warning): TLS of ``https://``
      URLs;
    * ``skip_unknown_keys`` (False), ``preserve_row_order`` (True), ``insert_id_column``;
    * ``on_conversion_error``: ``"raise"`` (default: ``ConversionError``, nothing of the call
      taken) or ``"dead_letter"`` (the row goes to the spool with its reason).
    """

    def __init__(
        self,
        url: Union[str, Sequence[str], None],
        table: str,
        *,
        database: Optional[str] = None,
        user: Optional[str] = None,
        password: Optional[str] = None,
        compression: Literal["lz4", "none"] = ...,
        batch_rows: int = ...,
        batch_bytes: int = ...,
        linger: float = ...,
        queue_capacity: int = ...,
        max_concurrency: int = ...,
        max_attempts: int = ...,
        retries: int = ...,
        initial_backoff: float = ...,
        max_backoff: float = ...,
        backoff_multiplier: float = ...,
        dlq_dir: Union[str, PathLike[str], None] = ...,
        urls: Union[str, Sequence[str], None] = ...,
        endpoints: Union[str, Sequence[str], None] = ...,
        connect_timeout: float = ...,
        send_timeout: float = ...,
        timeout: float = ...,
        stream_id: Optional[str] = ...,
        first_sequence: int = ...,
        fill_insert_id: bool = ...,
        settings: Optional[Mapping[str, Any]] = ...,
        tls_ca_file: Union[str, PathLike[str], None] = ...,
        tls_cert_file: Union[str, PathLike[str], None] = ...,
        tls_key_file: Union[str, PathLike[str], None] = ...,
        tls_insecure_skip_verify: bool = ...,
        skip_unknown_keys: bool = ...,
        preserve_row_order: bool = ...,
        insert_id_column: Optional[str] = ...,
        on_conversion_error: Literal["raise", "dead_letter"] = ...,
    ) -> None: ...
    def start(self) -> Awaitable[None]:
        """Reads the table's schema and starts the engine."""
    async def __aenter__(self) -> Inserter: ...
    async def __aexit__(self, *args: Any) -> bool: ...
    def write(self, row: Row) -> Awaitable[None]:
        """Queues one row; resolves when it is in the engine's queue."""
    def try_write(self, row: Row) -> None:
        """Queues one row if there is room now, else raises ``QueueFull``."""
    def write_many(self, rows: Iterable[Row]) -> Awaitable[None]:
        """Queues many rows, converted in one call; resolves when all are in the queue."""
    def write_columns(self, data: Columns) -> Awaitable[None]:
        """Queues columnar data: a dict of equal-length lists / tuples / numpy arrays /
        pandas Series, or any object with ``__arrow_c_stream__`` (pyarrow Table, RecordBatch,
        RecordBatchReader, polars DataFrame, ...)."""
    def flush(self) -> Awaitable[None]:
        """Resolves when every row written before is committed or dead-lettered; raises
        ``DeadLettered`` when rows were dead-lettered since the previous flush."""
    def flush_nowait(self) -> None:
        """Asks the engine to send what it holds now, without waiting."""
    def close(self) -> Awaitable[Optional[Dict[str, Any]]]:
        """Flushes, stops the engine, returns the final stats; raises ``DeadLettered`` when
        rows were dead-lettered since the last flush."""
    def stats(self) -> Dict[str, Any]:
        """The engine's counters: rows_accepted, rows_committed, rows_dead_lettered,
        rows_rejected, batches_committed, retries, in_flight, queue_depth, latency_ms_p50 ...
        and dead_letter_dir."""
    @property
    def dead_letter_dir(self) -> str: ...
    @property
    def target(self) -> str:
        """``database.table``."""
    @property
    def chunk_rows(self) -> int:
        """Rows per columnar piece handed to the engine."""
    @property
    def running(self) -> bool: ...
    @property
    def closed(self) -> bool: ...

def sync_log_level() -> None:
    """Reads the level of the ``chasync`` logger now (it is also read every second)."""

