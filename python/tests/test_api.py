"""The API's shape: awaitables that asyncio takes as coroutines (``create_task``), the
connection error, every option in the signature and the docstring."""

from __future__ import annotations

import asyncio
import inspect
import json
import socket

import pytest

import chasync

T = "CREATE TABLE t (id UInt64, s String) ENGINE = MergeTree ORDER BY id"


def new(db, tmp_path, **kw) -> chasync.Inserter:
    return chasync.Inserter(db.url, "t", database=db.name, dlq_dir=str(tmp_path / "dlq"), **kw)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_writes_and_flush_are_coroutines_for_create_task(db, tmp_path):
    db.exec(T)
    async with new(db, tmp_path) as ins:
        one = ins.write({"id": 0, "s": "a"})
        assert asyncio.iscoroutine(one)
        await asyncio.create_task(one)
        await asyncio.create_task(ins.write_many([{"id": i, "s": "b"} for i in range(1, 100)]))
        await asyncio.create_task(ins.write_columns({"id": list(range(100, 200)), "s": ["c"] * 100}))
        flush = ins.flush()
        assert asyncio.iscoroutine(flush)
        await asyncio.create_task(flush)
        assert db.int("SELECT count() FROM t") == 200
        # gather and ensure_future take them as well
        await asyncio.gather(ins.write({"id": 200, "s": "d"}), ins.write_many([{"id": 201, "s": "d"}]))
        await asyncio.ensure_future(ins.flush())
    assert db.int("SELECT count() FROM t") == 202
    assert db.int("SELECT sum(id) FROM t") == sum(range(202))


async def test_waiting_writes_are_coroutines_too(db, tmp_path):
    """Backpressure (a queue of one row, one insert at a time, a row per batch): writes that
    wait for room return the pending kind of awaitable, which create_task takes as well,
    and every row lands, in order."""
    db.exec(T)
    n = 300
    async with new(db, tmp_path, queue_capacity=1, batch_rows=1, max_concurrency=1) as ins:
        awaitables = [ins.write({"id": i, "s": "x"}) for i in range(n)]
        kinds = {type(a).__name__ for a in awaitables}
        assert "Pending" in kinds, kinds
        assert all(asyncio.iscoroutine(a) for a in awaitables)
        tasks = [asyncio.create_task(a) for a in awaitables]
        await asyncio.gather(*tasks)
        await asyncio.create_task(ins.flush())
    assert db.int("SELECT count() FROM t") == n
    assert db.int("SELECT uniqExact(id) FROM t") == n


async def test_a_cancelled_write_task_still_lands(db, tmp_path):
    db.exec(T)
    async with new(db, tmp_path, queue_capacity=1, batch_rows=1, max_concurrency=1) as ins:
        rows = [{"id": i, "s": "y"} for i in range(50)]
        tasks = [asyncio.create_task(ins.write(r)) for r in rows]
        tasks[-1].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert any(isinstance(r, asyncio.CancelledError) for r in results)
    # Cancelling the await does not take the rows back.
    assert db.int("SELECT count() FROM t") == 50


async def test_a_thrown_exception_reaches_the_awaiter(db, tmp_path):
    """The coroutine protocol of both awaitables: `throw` raises the exception in."""
    db.exec(T)
    async with new(db, tmp_path) as ins:
        ready = ins.write({"id": 1, "s": "z"})
        with pytest.raises(KeyError):
            ready.throw(KeyError("k"))
        with pytest.raises(StopIteration):
            ready.send(None)
        ready.close()
        pending = ins.flush()
        assert type(pending).__name__ == "Pending"
        with pytest.raises(ValueError, match="thrown"):
            pending.throw(ValueError("thrown"))
        pending.close()
        await ins.flush()
    assert db.int("SELECT count() FROM t") == 1


async def test_a_closed_port_raises_connection_error(tmp_path):
    port = closed_port()
    ins = chasync.Inserter(
        f"http://127.0.0.1:{port}", "t", dlq_dir=str(tmp_path / "dlq"), connect_timeout=5
    )
    with pytest.raises(chasync.ConnectionError) as e:
        await ins.start()
    err = e.value
    assert isinstance(err, chasync.Error)
    assert isinstance(err, ConnectionError)  # the builtin
    assert isinstance(err, OSError)
    assert f"127.0.0.1:{port}" in str(err) or "refused" in str(err).lower(), str(err)
    # The builtin's handlers catch it, as code that knows nothing of chasync writes them.
    try:
        async with chasync.Inserter(f"http://127.0.0.1:{port}", "t", dlq_dir=str(tmp_path)):
            raise AssertionError("started against a closed port")
    except ConnectionError:
        pass
    assert issubclass(chasync.ConnectionError, chasync.Error)
    assert issubclass(chasync.ConnectionError, ConnectionError)
    assert chasync.ConnectionError.__module__ == "chasync"
    assert not ins.running and not ins.closed


def engine_options() -> dict:
    """The engine's options by their flat names (docs/configuration.md), with the defaults
    they resolve to, read from the configuration a default Inserter resolves to."""
    cfg = json.loads(chasync.Inserter("http://127.0.0.1:8123", "t").config_json())
    out = {}
    for group, value in cfg.items():
        if isinstance(value, dict) and group != "settings":
            for field, default in value.items():
                if (group, field) == ("spool", "dir"):
                    field = "spool_dir"
                elif group == "tls":
                    field = "tls_" + field
                out[field] = default
        else:
            out[group] = value
    return out


def test_every_option_is_in_the_signature_and_the_docstring():
    params = inspect.signature(chasync.Inserter).parameters
    doc = chasync.Inserter.__doc__ or ""
    options = engine_options()
    assert {"max_rows", "linger", "spool_dir", "query_timeout", "stream_id",
            "tls_ca_file", "tls_insecure_skip_verify"} <= set(options)
    conversion = ["skip_unknown_keys", "preserve_row_order", "insert_id_column", "on_conversion_error"]
    for name in list(options) + conversion + ["retries", "urls"]:
        if name in ("url", "table"):
            assert list(params).index(name) < 2, name  # positional
            continue
        assert name in params, f"{name} is missing from the signature"
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert name in doc, f"{name} is not described in the docstring"
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    # The signature's defaults are the ones the engine resolves to.
    plain = {
        k: v for k, v in options.items() if isinstance(v, (int, float, str, bool)) and k in params
    }
    for name in ("max_rows", "max_bytes", "queue_rows", "max_concurrency", "max_attempts",
                 "first_sequence", "fill_insert_id", "compression", "backoff_multiplier",
                 "tls_insecure_skip_verify"):
        assert params[name].default == plain[name], (name, params[name].default, plain[name])
    assert params["spool_dir"].default == options["spool_dir"]
    # help() shows them (the text it prints is the signature and the docstring).
    text = inspect.getdoc(chasync.Inserter) or ""
    assert "max_concurrency" in text and "insert_timeout" in text


def test_every_public_method_has_a_docstring():
    for cls in (chasync.Inserter, chasync.SyncInserter, chasync.ClickHouseAsyncInserter):
        for name, member in inspect.getmembers(cls):
            if name.startswith("_") and name != "_execute_insert":
                continue
            if callable(member) or isinstance(member, property) or inspect.isgetsetdescriptor(member):
                assert (getattr(member, "__doc__", None) or "").strip(), f"{cls.__name__}.{name}"
