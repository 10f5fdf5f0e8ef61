"""The drop-in ClickHouseAsyncInserter: the original's pipeline shape, exact outcomes."""

from __future__ import annotations

import asyncio
import json
import pathlib
import urllib.parse

import pytest

import chasync
from chasync import STOP, ClickHouseAsyncInserter

TABLE = (
    "CREATE TABLE events (id UInt64, user String, value Float64, ts DateTime, _insert_id UUID) "
    "ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 1000"
)
# The same rows as row(i) below, computed by the server.
EXPECTED_HASH = (
    "SELECT sum(cityHash64(number, concat('u', toString(number % 1000)), number * 0.5, "
    "toDateTime(1700000000 + number, 'UTC'))) FROM numbers({n})"
)
ACTUAL_HASH = "SELECT sum(cityHash64(id, user, value, toDateTime(ts, 'UTC'))) FROM events"


def row(i: int) -> dict:
    return {"id": i, "user": f"u{i % 1000}", "value": i * 0.5, "ts": 1_700_000_000 + i}


def inserter(db, tmp_path: pathlib.Path, **kw) -> ClickHouseAsyncInserter:
    u = urllib.parse.urlparse(db.url)
    return ClickHouseAsyncInserter(
        u.hostname, u.port, db.name, "events", dlq_dir=str(tmp_path / "dlq"), **kw
    )


def spool_lines(tmp_path: pathlib.Path) -> list:
    out = []
    for f in sorted((tmp_path / "dlq").glob("*.rejected.jsonl")):
        out += [json.loads(line) for line in f.read_text().splitlines()]
    return out


async def test_seed_pipeline_lands_a_million_rows_exactly(db, tmp_path):
    """Producer task -> asyncio.Queue -> stream_insert, as the original is used."""
    db.exec(TABLE)
    n = 1_000_000
    queue: asyncio.Queue = asyncio.Queue(maxsize=20_000)

    async def producer():
        for i in range(n):
            await queue.put(row(i))
        await queue.put(None)

    async with inserter(db, tmp_path) as ins:
        prod = asyncio.create_task(producer())
        await ins.stream_insert(queue)
        await prod
        stats = ins.stats()
    assert stats["rows_committed"] == n
    assert stats["rows_dead_lettered"] == 0
    assert stats["max_in_flight"] >= 1
    assert db.int("SELECT count() FROM events") == n
    assert db.int("SELECT uniqExact(id) FROM events") == n
    assert db.int(ACTUAL_HASH) == db.int(EXPECTED_HASH.format(n=n))
    assert not (tmp_path / "dlq").exists() or not any((tmp_path / "dlq").iterdir())


async def test_cancel_mid_stream_loses_nothing_taken(db, tmp_path):
    """Guarantee: every item stream_insert took from the queue (queue size went down) is
    committed by the time the `async with` block exits; items left in the queue are
    untouched."""
    db.exec(TABLE)
    n = 300_000
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(row(i))
    async with inserter(db, tmp_path, batch_size=10_000, linger=30.0) as ins:
        task = asyncio.create_task(ins.stream_insert(queue))
        while queue.qsize() > n // 2:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        taken = n - queue.qsize()
        assert 0 < taken < n
        # The 30 s linger would hold a partial batch: what lands is the cancel's flush and
        # the exit's close, not a timer.
    assert db.int("SELECT count() FROM events") == taken
    assert db.int("SELECT min(id) FROM events") == 0
    assert db.int("SELECT max(id) FROM events") == taken - 1
    assert db.int("SELECT uniqExact(id) FROM events") == taken
    assert db.int(ACTUAL_HASH) == db.int(EXPECTED_HASH.format(n=taken))
    # What was not taken is still there, in order.
    assert queue.qsize() == n - taken
    assert queue.get_nowait()["id"] == taken


async def test_sentinels_stop_cleanly(db, tmp_path):
    db.exec(TABLE)
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(5_000):
        queue.put_nowait(row(i))
    queue.put_nowait(None)
    for i in range(5_000, 7_000):
        queue.put_nowait(row(i))
    queue.put_nowait(STOP)
    async with inserter(db, tmp_path, linger=30.0) as ins:
        await asyncio.wait_for(ins.stream_insert(queue), 30)
        # Returned at None: everything before it is committed already (no linger wait),
        # everything after it is still queued.
        assert db.int("SELECT count() FROM events") == 5_000
        assert queue.qsize() == 2_001
        await asyncio.wait_for(ins.stream_insert(queue), 30)
        assert db.int("SELECT count() FROM events") == 7_000
        assert queue.empty()
        # task_done() was called for every item, the sentinels included.
        await asyncio.wait_for(queue.join(), 5)
    assert db.int(ACTUAL_HASH) == db.int(EXPECTED_HASH.format(n=7_000))


async def test_bad_rows_go_to_the_spool_with_their_reason(db, tmp_path):
    db.exec(TABLE)
    queue: asyncio.Queue = asyncio.Queue()
    n = 10_000
    for i in range(n):
        queue.put_nowait(row(i))
        if i == 100:
            queue.put_nowait({"id": "abc", "user": "bad-number"})  # the engine refuses it
        if i == 200:
            queue.put_nowait({"id": -7, "user": "negative"})  # out of range for UInt64
        if i == 300:
            queue.put_nowait({"id": 1, "user": object()})  # no conversion for object()
        if i == 400:
            queue.put_nowait("not a row")
    queue.put_nowait(STOP)
    async with inserter(db, tmp_path) as ins:
        await ins.stream_insert(queue)
        stats = ins.stats()
    assert db.int("SELECT count() FROM events") == n
    assert db.int(ACTUAL_HASH) == db.int(EXPECTED_HASH.format(n=n))
    assert stats["rows_dead_lettered"] == 4
    assert stats["rows_committed"] == n
    lines = spool_lines(tmp_path)
    assert len(lines) == 4
    text = json.dumps(lines)
    by_row = {line["row"]: line["reason"] for line in lines}
    bad_number = next(r for k, r in by_row.items() if "bad-number" in k)
    assert "UInt64" in bad_number and "abc" in bad_number
    negative = next(r for k, r in by_row.items() if "negative" in k)
    assert "-7" in negative
    assert "unsupported Python type object" in text
    assert "a row must be a dict, got str" in text and "not a row" in text


async def test_a_permanent_error_goes_to_the_spool(db, tmp_path):
    """A column dropped after start: the server refuses the insert (NO_SUCH_COLUMN_IN_TABLE),
    which no retry can fix: the batch is dead-lettered at once, nothing is lost."""
    db.exec(TABLE.replace("ts DateTime,", "ts DateTime, extra String,"))
    queue: asyncio.Queue = asyncio.Queue()
    async with inserter(db, tmp_path) as ins:
        db.exec("ALTER TABLE events DROP COLUMN extra")
        for i in range(1_000):
            queue.put_nowait({**row(i), "extra": "x"})
        queue.put_nowait(None)
        await ins.stream_insert(queue)
        stats = ins.stats()
    assert db.int("SELECT count() FROM events") == 0
    assert stats["rows_dead_lettered"] == 1_000
    assert stats["retries"] == 0
    records = [json.loads(p.read_text()) for p in (tmp_path / "dlq").glob("*.json")]
    assert len(records) == 1
    rec = records[0]
    assert rec["kind"] == "batch" and rec["rows"] == 1_000
    assert rec["error_kind"] == "permanent" and rec["code"] == 16, rec
    assert "extra" in rec["error"]
    assert (tmp_path / "dlq" / rec["payload_file"]).stat().st_size == rec["bytes"] > 0


async def test_an_unchanged_pipeline_only_swaps_the_import(db, tmp_path, monkeypatch):
    """The original's constructor by position and its usage, with the spool from the
    environment (no chasync-specific argument at all)."""
    db.exec(TABLE)
    monkeypatch.setenv("CHASYNC_DLQ_DIR", str(tmp_path / "env-dlq"))
    u = urllib.parse.urlparse(db.url)
    ins = chasync.ClickHouseAsyncInserter(u.hostname, u.port, db.name, "events", 4, 1000, 30, 3)
    assert ins.dead_letter_dir == str(tmp_path / "env-dlq")
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(2_500):
        queue.put_nowait(row(i))
    queue.put_nowait(None)
    async with ins:
        await ins.stream_insert(queue)
        assert ins.stats()["batches_committed"] >= 3  # batch_size 1000
    assert db.int("SELECT count() FROM events") == 2_500


async def test_execute_insert_commits_a_ready_made_batch(db, tmp_path):
    """`_execute_insert(batch)`, which pipelines call directly: True once the batch is
    committed, sent at once (the linger here is an hour: returning means it was sent)."""
    db.exec(TABLE)
    async with inserter(db, tmp_path, linger=3600.0) as ins:
        assert await ins._execute_insert([]) is True
        assert await ins._execute_insert([row(i) for i in range(1000)]) is True
        assert db.int("SELECT count() FROM events") == 1000
        # Concurrent calls, as a pipeline with several workers makes them.
        results = await asyncio.gather(
            *(ins._execute_insert([row(i) for i in range(k, k + 500)]) for k in range(1000, 6000, 500))
        )
        assert results == [True] * 10
        assert db.int("SELECT count() FROM events") == 6000
    assert db.int(ACTUAL_HASH) == db.int(EXPECTED_HASH.format(n=6000))
    assert spool_lines(tmp_path) == []


async def test_execute_insert_starts_the_engine_when_needed(db, tmp_path):
    db.exec(TABLE)
    ins = inserter(db, tmp_path)
    assert await ins._execute_insert([row(1), row(2)]) is True
    await ins.close()
    assert db.int("SELECT count() FROM events") == 2


async def test_execute_insert_returns_false_when_rows_are_dead_lettered(db, tmp_path, caplog):
    """A batch with rows the server refuses (a value that is not a number) and an item that
    is not a dict: False, the refused rows are in the spool with their reason, the others
    landed."""
    db.exec(TABLE)
    batch = [row(i) for i in range(100)]
    batch[10] = dict(row(10), value="not a number")
    batch[20] = "not a dict"  # type: ignore[call-overload]
    async with inserter(db, tmp_path, linger=3600.0) as ins:
        with caplog.at_level("ERROR", logger="chasync"):
            assert await ins._execute_insert(batch) is False
        assert any("dead-letter spool" in r.getMessage() for r in caplog.records)
        # A batch that is all good still returns True afterwards.
        assert await ins._execute_insert([row(i) for i in range(100, 110)]) is True
    assert db.int("SELECT count() FROM events") == 98 + 10
    assert db.int("SELECT countIf(id IN (10, 20)) FROM events") == 0
    lines = spool_lines(tmp_path)
    assert len(lines) >= 1
    reasons = json.dumps(lines)
    assert "not a dict" in reasons or "str" in reasons


async def test_execute_insert_returns_false_when_the_table_refuses_the_batch(db, tmp_path):
    """Every row refused (the table lost a column the rows carry after the engine read its
    schema): the whole batch is dead-lettered, False."""
    db.exec(TABLE)
    async with inserter(db, tmp_path, linger=3600.0, retries=1) as ins:
        db.exec("ALTER TABLE events DROP COLUMN user")
        assert await ins._execute_insert([row(i) for i in range(50)]) is False
    assert db.int("SELECT count() FROM events") == 0
    assert (tmp_path / "dlq").exists() and any((tmp_path / "dlq").iterdir())
