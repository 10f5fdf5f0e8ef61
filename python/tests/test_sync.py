"""chasync.SyncInserter: the engine without `async`, for scripts and notebooks, including
inside a running event loop (as Jupyter runs cells)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

import chasync

T = "CREATE TABLE t (id UInt64, s String) ENGINE = MergeTree ORDER BY id"


def new(db, tmp_path, **kw) -> chasync.SyncInserter:
    return chasync.SyncInserter(db.url, "t", database=db.name, dlq_dir=str(tmp_path / "dlq"), **kw)


def test_a_script_writes_every_kind_of_input(db, tmp_path):
    db.exec(T)
    with new(db, tmp_path) as ins:
        assert ins.running
        ins.write({"id": 0, "s": "one"})
        ins.write_many([{"id": i, "s": "many"} for i in range(1, 5000)])
        ins.write_many({"id": i, "s": "gen"} for i in range(5000, 5100))
        ins.write_columns({"id": list(range(5100, 5200)), "s": ["cols"] * 100})
        ins.try_write({"id": 5200, "s": "try"})
        ins.flush()
        assert db.int("SELECT count() FROM t") == 5201
        ins.write_acked([{"id": 5201, "s": "acked"}])
        assert db.int("SELECT count() FROM t WHERE s = 'acked'") == 1
    assert ins.closed and not ins.running
    assert ins.stats()["rows_committed"] == 5202
    assert ins.close() is None  # a second close
    assert db.int("SELECT count() FROM t") == 5202
    assert db.int("SELECT sum(id) FROM t") == sum(range(5202))
    # Its thread is gone.
    assert not [t for t in threading.enumerate() if t.name == "chasync-sync"]


def test_backpressure_blocks_and_keeps_the_order(db, tmp_path):
    """A queue of 16 rows, 10-row batches, one insert at a time: `write` often finds the queue
    full and then waits on the loop's thread; every row lands, in the order written (a
    StripeLog table keeps the order rows arrived in)."""
    db.exec("CREATE TABLE o (id UInt64, k String) ENGINE = StripeLog")
    n = 2000
    with chasync.SyncInserter(
        db.url, "o", database=db.name, dlq_dir=str(tmp_path / "dlq"),
        queue_capacity=16, batch_rows=10, max_concurrency=1,
    ) as ins:
        for i in range(n):
            if i % 100 == 99:
                ins.write_many([{"id": i, "k": "m"}])
            else:
                ins.write({"id": i, "k": "w"})
    ids = [int(r["id"]) for r in db.rows("SELECT id FROM o SETTINGS max_threads = 1")]
    assert ids == list(range(n))


def test_it_works_inside_a_running_event_loop(db, tmp_path):
    """As in a notebook: the cell's code runs on the thread of a running loop and calls the
    blocking API; the inserter runs its own loop on its own thread, so nothing deadlocks."""
    db.exec(T)

    async def cell() -> dict:
        assert asyncio.get_running_loop().is_running()
        with new(db, tmp_path) as ins:
            ins.write_many([{"id": i, "s": "nb"} for i in range(10_000)])
            ins.write({"id": 10_000, "s": "nb"})
            ins.flush()
            stats = ins.stats()
        return stats

    stats = asyncio.run(cell())
    assert stats["rows_committed"] == 10_001
    assert db.int("SELECT count() FROM t") == 10_001


async def test_it_works_from_an_async_test_too(db, tmp_path):
    """The same from pytest-asyncio's running loop (the calls block that loop briefly)."""
    db.exec(T)
    ins = new(db, tmp_path).start()
    try:
        ins.write_many([{"id": i, "s": "a"} for i in range(100)])
    finally:
        ins.close()
    assert db.int("SELECT count() FROM t") == 100


def test_dead_letters_are_raised_at_flush_and_close(db, tmp_path):
    db.exec(T)
    ins = new(db, tmp_path)
    with pytest.raises(chasync.ClosedError):
        ins.write({"id": 1, "s": "not started"})
    ins.start()
    ins.write({"id": 1, "s": "good"})
    ins.write({"id": "not a number", "s": "bad"})
    with pytest.raises(chasync.DeadLettered) as e:
        ins.flush()
    assert e.value.rows == 1 and "UInt64" in e.value.last_error
    with pytest.raises(chasync.DeadLettered):
        ins.write_acked([{"id": "nope", "s": "bad"}, {"id": 2, "s": "good"}])
    ins.write({"id": "again not", "s": "bad"})
    with pytest.raises(chasync.DeadLettered):
        ins.close()
    assert ins.closed
    assert db.int("SELECT count() FROM t") == 2
    with pytest.raises(chasync.ConversionError):
        with new(db, tmp_path) as other:
            other.write({"id": 3, "s": object()})
    assert db.int("SELECT count() FROM t") == 2


def test_a_closed_port_raises_connection_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError):
        with chasync.SyncInserter(f"http://127.0.0.1:{port}", "t", dlq_dir=str(tmp_path)):
            pass


def test_an_inserter_left_open_is_closed_at_exit(db, tmp_path):
    """A script that starts an inserter, writes and ends without flush or close (and a linger
    of an hour, so nothing is sent on its own): the inserter is closed, its rows committed, by
    an exit hook, while the interpreter is still whole. (A hook of the script's, registered
    first, runs after it and reports what it sees.)"""
    db.exec(T)
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import atexit
        import chasync

        def report():
            print("at exit:", ins.closed, ins.stats()["rows_committed"], flush=True)

        atexit.register(report)
        ins = chasync.SyncInserter(
            {db.url!r}, "t", database={db.name!r}, dlq_dir={str(tmp_path / "dlq")!r}, linger=3600
        )
        ins.start()
        ins.write_many([{{"id": i, "s": "exit"}} for i in range(1000)])
        ins.write({{"id": 1000, "s": "exit"}})
        assert ins.stats()["rows_committed"] == 0
    """))
    r = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert "at exit: True 1001" in r.stdout, (r.stdout, r.stderr)
    assert db.int("SELECT count() FROM t") == 1001
    assert db.int("SELECT sum(id) FROM t") == sum(range(1001))
