"""chasync.Inserter: columnar inputs, conversions, errors, logging, the event loop."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import decimal
import ipaddress
import logging
import uuid

import pytest

import chasync

np = pytest.importorskip("numpy")
pa = pytest.importorskip("pyarrow")

COLS = (
    "CREATE TABLE c (id UInt64, name String, score Float64, flag Bool, "
    "ts DateTime64(3, 'UTC'), tags Array(String), _insert_id UUID) ENGINE = MergeTree ORDER BY id "
    "SETTINGS non_replicated_deduplication_window = 1000"
)
BASE_MS = 1_700_000_000_000
# What columns(lo, hi) holds, computed by the server.
EXPECTED = (
    "SELECT sum(cityHash64(number, concat('n', toString(number)), number / 4, number % 2 = 1, "
    "toInt64({base} + number), [toString(number % 3)])) FROM numbers({lo}, {n})"
)
ACTUAL = (
    "SELECT sum(cityHash64(id, name, score, flag, toUnixTimestamp64Milli(ts), tags)) FROM c "
    "WHERE id >= {lo} AND id < {hi}"
)


def columns(lo: int, hi: int) -> dict:
    ids = list(range(lo, hi))
    return {
        "id": ids,
        "name": [f"n{i}" for i in ids],
        "score": [i / 4 for i in ids],
        "flag": [i % 2 == 1 for i in ids],
        "ts": [BASE_MS + i for i in ids],
        "tags": [[str(i % 3)] for i in ids],
    }


def with_datetimes(d: dict) -> dict:
    """ts as aware datetimes (an int would be read as epoch seconds)."""
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    d["ts"] = [epoch + dt.timedelta(milliseconds=ms) for ms in d["ts"]]
    return d


def check_range(db, lo: int, hi: int) -> None:
    assert db.int(f"SELECT count() FROM c WHERE id >= {lo} AND id < {hi}") == hi - lo
    assert db.int(ACTUAL.format(lo=lo, hi=hi)) == db.int(
        EXPECTED.format(base=BASE_MS, lo=lo, n=hi - lo)
    )


def new(db, tmp_path, table="c", **kw) -> chasync.Inserter:
    return chasync.Inserter(db.url, table, database=db.name, dlq_dir=str(tmp_path / "dlq"), **kw)


async def test_columnar_inputs_land_exactly(db, tmp_path):
    db.exec(COLS)
    n = 20_000
    async with new(db, tmp_path, batch_rows=15_000) as ins:
        # dict of lists (ts as epoch milliseconds)
        await ins.write_columns(with_datetimes(columns(0, n)))
        # dict of numpy arrays
        d = columns(n, 2 * n)
        await ins.write_columns(
            {
                "id": np.array(d["id"], dtype=np.uint64),
                "name": np.array(d["name"]),
                "score": np.array(d["score"], dtype=np.float64),
                "flag": np.array(d["flag"], dtype=np.bool_),
                "ts": np.array(d["ts"], dtype="datetime64[ms]"),
                "tags": d["tags"],
            }
        )
        # pyarrow Table and RecordBatch
        for lo, make in ((2 * n, pa.Table.from_pydict), (3 * n, pa.RecordBatch.from_pydict)):
            d = columns(lo, lo + n)
            d["ts"] = pa.array(d["ts"], type=pa.timestamp("ms", tz="UTC"))
            d["name"] = pa.array(d["name"]).dictionary_encode()
            await ins.write_columns(make(d))
        # pandas through pyarrow
        pd = pytest.importorskip("pandas")
        d = columns(4 * n, 5 * n)
        frame = pd.DataFrame(d)
        frame["ts"] = pd.to_datetime(frame["ts"], unit="ms", utc=True)
        await ins.write_columns(pa.Table.from_pandas(frame, preserve_index=False))
        await ins.flush()
        stats = ins.stats()
    assert stats["rows_accepted"] == 5 * n
    assert stats["rows_committed"] == 5 * n
    assert stats["rows_dead_lettered"] == 0
    for k in range(5):
        check_range(db, k * n, (k + 1) * n)


async def test_polars_dataframe_lands_exactly(db, tmp_path):
    pl = pytest.importorskip("polars")
    db.exec(COLS)
    n = 30_000
    d = columns(0, n)
    frame = pl.DataFrame(d).with_columns(pl.col("ts").cast(pl.Datetime("ms", "UTC")))
    async with new(db, tmp_path) as ins:
        await ins.write_columns(frame)
    check_range(db, 0, n)


async def test_python_values_convert_to_clickhouse_types(db, tmp_path):
    db.exec(
        "CREATE TABLE t (id UInt32, dt_naive DateTime('Asia/Tokyo'), "
        "dt_aware DateTime64(6, 'America/New_York'), dt64_naive DateTime64(3, 'Europe/Berlin'), "
        "d Date, d32 Date32, dec Decimal(38, 10), u UUID, ip4 IPv4, ip6 IPv6, raw String, "
        "n Nullable(Int32), dflt Int32 DEFAULT 42, arr Array(Array(Int32)), "
        "mp Map(String, Array(UInt8)), tup Tuple(Int32, String), ntup Tuple(a Int32, b String), "
        "big Int256, ubig UInt128, f32 Float32, b Bool, lc LowCardinality(String), "
        "e Enum8('red' = 1, 'green' = 2)) ENGINE = MergeTree ORDER BY id"
    )
    import enum
    import zoneinfo

    class Color(enum.Enum):
        GREEN = "green"

    P = collections.namedtuple("P", "a b")
    naive = dt.datetime(2026, 3, 4, 5, 6, 7)
    aware = dt.datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    u = uuid.uuid4()
    raw = bytes(range(256))
    dec = decimal.Decimal("1234567890123456789.0123456789")
    row = {
        "id": np.int64(1),
        "dt_naive": naive,
        "dt_aware": aware,
        "dt64_naive": np.datetime64("2026-03-04T05:06:07.250"),
        "d": dt.date(2026, 3, 4),
        "d32": dt.date(1950, 1, 2),
        "dec": dec,
        "u": u,
        "ip4": ipaddress.IPv4Address("10.1.2.3"),
        "ip6": ipaddress.IPv6Address("2001:db8::1"),
        "raw": raw,
        "n": None,
        "dflt": None,
        "arr": [[1, 2], [], [3]],
        "mp": {"a": [1, 2], "b": (3,)},
        "tup": (7, "x"),
        "ntup": P(8, "y"),
        "big": 2**200,
        "ubig": 2**128 - 1,
        "f32": np.float32(1.5),
        "b": np.bool_(True),
        "lc": "low",
        "e": Color.GREEN,
    }
    async with new(db, tmp_path, table="t") as ins:
        await ins.write(row)
        await ins.write_many([{"id": 2, "n": -5, "dflt": 7, "b": False, "raw": bytearray(b"\xff\x00"), "e": "red"}])
    got = db.rows(
        "SELECT id, toString(dt_naive) AS dt_naive_s, toUnixTimestamp(dt_naive) AS dt_naive_epoch, "
        "toUnixTimestamp64Micro(dt_aware) AS aware_us, toString(dt64_naive) AS dt64_naive, "
        "toString(d) AS d, toString(d32) AS d32, toString(dec) AS dec, toString(u) AS u, "
        "toString(ip4) AS ip4, toString(ip6) AS ip6, hex(raw) AS raw, n, dflt, arr, mp, "
        "tupleElement(tup, 1) AS t1, tupleElement(tup, 2) AS t2, tupleElement(ntup, 'b') AS nb, "
        "toString(big) AS big, toString(ubig) AS ubig, f32, b, lc, toString(e) AS e "
        "FROM t ORDER BY id"
    )
    r = got[0]
    assert r["dt_naive_s"] == naive.strftime("%Y-%m-%d %H:%M:%S")
    assert r["dt_naive_epoch"] == int(naive.replace(tzinfo=zoneinfo.ZoneInfo("Asia/Tokyo")).timestamp())
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    assert int(r["aware_us"]) == (aware - epoch) // dt.timedelta(microseconds=1)
    assert r["dt64_naive"] == "2026-03-04 05:06:07.250"
    assert r["d"] == "2026-03-04" and r["d32"] == "1950-01-02"
    assert r["dec"] == str(dec)
    assert r["u"] == str(u)
    assert r["ip4"] == "10.1.2.3" and r["ip6"] == "2001:db8::1"
    assert r["raw"] == raw.hex().upper()
    assert r["n"] is None and r["dflt"] == 42
    assert r["arr"] == row["arr"]
    assert r["mp"] == {"a": [1, 2], "b": [3]}
    assert (r["t1"], r["t2"], r["nb"]) == (7, "x", "y")
    assert r["big"] == str(2**200) and r["ubig"] == str(2**128 - 1)
    assert r["f32"] == 1.5 and r["b"] is True
    assert r["lc"] == "low" and r["e"] == "green"
    assert got[1]["n"] == -5 and got[1]["dflt"] == 7 and got[1]["b"] is False
    assert got[1]["raw"] == "FF00"


async def test_exceptions_map_to_the_hierarchy(db, tmp_path):
    db.exec("CREATE TABLE t (id UInt64, s String) ENGINE = MergeTree ORDER BY id")
    for cls in (
        chasync.ConfigError,
        chasync.ConversionError,
        chasync.ServerError,
        chasync.QueueFull,
        chasync.DeadLettered,
        chasync.ClosedError,
    ):
        assert issubclass(cls, chasync.Error) and issubclass(cls, Exception)
    with pytest.raises(chasync.ConfigError, match="http://"):
        chasync.Inserter("127.0.0.1:8123", "t")
    with pytest.raises(chasync.ConfigError, match="unknown option .bacth_rows."):
        new(db, tmp_path, table="t", bacth_rows=5)
    with pytest.raises(chasync.ConfigError, match="does not exist"):
        await new(db, tmp_path, table="missing").start()
    with pytest.raises(chasync.ServerError) as e:
        await new(db, tmp_path, table="t", user="chasync_nobody", password="wrong").start()
    assert e.value.code == 516 and e.value.name == "AUTHENTICATION_FAILED"

    ins = new(db, tmp_path, table="t", queue_capacity=1, batch_rows=1, max_concurrency=1)
    with pytest.raises(chasync.ClosedError, match="not started"):
        await ins.write({"id": 1})
    await ins.start()
    with pytest.raises(chasync.ConversionError) as e:
        await ins.write_many([{"id": 1}, {"id": 2, "s": object()}])
    assert e.value.row == 1 and e.value.column == "s"
    assert e.value.value.startswith("<object object") and e.value.target_type is None
    # QueueFull: one row per batch, one insert at a time, a queue of one: writing without
    # ever yielding outruns the engine.
    taken = 0
    with pytest.raises(chasync.QueueFull):
        for i in range(100_000):
            ins.try_write({"id": 10 + i, "s": "q"})
            taken += 1
    assert taken >= 1
    await ins.write({"id": 3, "s": "bad"})
    await ins.write({"id": "not a number"})
    with pytest.raises(chasync.DeadLettered) as e:
        await ins.flush()
    assert e.value.rows == 1 and e.value.spool == str(tmp_path / "dlq")
    assert "UInt64" in e.value.last_error
    stats = await ins.close()
    assert stats["rows_committed"] == taken + 1
    with pytest.raises(chasync.ClosedError):
        await ins.write({"id": 4})
    assert await ins.close() is None
    # ConversionError took nothing of its call.
    assert db.int("SELECT count() FROM t") == taken + 1
    assert db.int("SELECT countIf(id IN (1, 2)) FROM t") == 0


async def test_engine_events_reach_python_logging(db, tmp_path, caplog):
    db.exec("CREATE TABLE t (id UInt64) ENGINE = MergeTree ORDER BY id")
    caplog.set_level(logging.DEBUG, logger="chasync")
    chasync.sync_log_level()

    def engine_records(level):
        return [
            r
            for r in caplog.records
            if r.name == "chasync"
            and getattr(r, "chasync_target", "").startswith("chasync_core")
            and r.levelno == level
        ]

    async def wait_for(pred, timeout=5.0):
        deadline = asyncio.get_running_loop().time() + timeout
        while not pred():
            assert asyncio.get_running_loop().time() < deadline, caplog.text
            await asyncio.sleep(0.02)

    async with new(db, tmp_path, table="t") as ins:
        await ins.write_many([{"id": 1}, {"id": "x"}])
        with pytest.raises(chasync.DeadLettered):
            await ins.flush()
        def dead_lettered():
            return [
                r
                for r in engine_records(logging.WARNING)
                if "rejected rows dead-lettered" in r.getMessage()
            ]

        # Other warnings may come first (what the table guarantees when an answer is lost).
        await wait_for(dead_lettered)
        warn = dead_lettered()[0]
        assert warn.chasync_fields["rows"] == "1"
        await wait_for(lambda: engine_records(logging.DEBUG))  # "batch committed"
        # Raising the level stops the forwarding (read again within a second).
        logging.getLogger("chasync").setLevel(logging.ERROR)
        chasync.sync_log_level()
        before = len(engine_records(logging.WARNING))
        await ins.write_many([{"id": 2}, {"id": "y"}])
        with pytest.raises(chasync.DeadLettered):
            await ins.flush()
        await asyncio.sleep(1.2)
        assert len(engine_records(logging.WARNING)) == before


async def test_the_event_loop_keeps_running_during_a_large_write(db, tmp_path):
    db.exec(
        "CREATE TABLE t (id UInt64, name String, v Float64, ts DateTime64(6)) "
        "ENGINE = MergeTree ORDER BY id"
    )
    base = dt.datetime(2026, 1, 1)
    n = 300_000
    rows = [
        {"id": i, "name": f"n{i}", "v": i * 1.5, "ts": base + dt.timedelta(microseconds=i)}
        for i in range(n)
    ]
    loop = asyncio.get_running_loop()
    ticks: list = []

    async def heartbeat():
        while True:
            ticks.append(loop.time())
            await asyncio.sleep(0.005)

    async with new(db, tmp_path, table="t") as ins:
        hb = asyncio.create_task(heartbeat())
        await asyncio.sleep(0.05)
        t0 = loop.time()
        await ins.write_many(rows)
        await ins.flush()
        t1 = loop.time()
        hb.cancel()
    during = [t for t in ticks if t0 <= t <= t1]
    gaps = [b - a for a, b in zip(during, during[1:])]
    assert t1 - t0 > 0.1, "the write was too quick to tell anything"
    assert len(during) >= (t1 - t0) / 0.1, (len(during), t1 - t0)
    assert max(gaps) < 0.1, max(gaps)
    assert db.int("SELECT count() FROM t") == n


async def test_a_cancelled_write_still_lands(db, tmp_path):
    db.exec("CREATE TABLE t (id UInt64) ENGINE = MergeTree ORDER BY id")
    async with new(db, tmp_path, table="t", queue_capacity=4, batch_rows=100) as ins:
        fut = asyncio.ensure_future(ins.write_many([{"id": i} for i in range(50_000)]))
        await asyncio.sleep(0)
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
    assert db.int("SELECT count() FROM t") == 50_000
    assert db.int("SELECT sum(id) FROM t") == sum(range(50_000))


async def test_batch_ids_make_a_resend_land_once(db, tmp_path):
    """The same stream id and batches: the second run is deduplicated by the batch ids
    (insert_deduplication_token), as a retry of a batch that had landed would be."""
    db.exec(COLS)
    for _ in range(2):
        async with new(db, tmp_path, stream_id="resend", batch_rows=10_000) as ins:
            for lo in range(0, 50_000, 10_000):
                await ins.write_columns(with_datetimes(columns(lo, lo + 10_000)))
                await ins.flush()
            assert ins.stats()["batches_committed"] == 5
    check_range(db, 0, 50_000)
    assert db.int("SELECT uniqExact(_insert_id) FROM c") == 5


async def test_writes_land_in_the_order_they_were_called(db, tmp_path):
    """Writes land in the order they were called, whatever path each takes: converted in the
    call or on the background thread (more than 4096 rows), rows or columns, into a queue with
    room or a full one, all outstanding at once. `try_write` raises QueueFull rather than
    overtake a write still waiting. (A StripeLog table keeps the order rows arrived in.)"""
    db.exec("CREATE TABLE o (id UInt64, k String) ENGINE = StripeLog")
    n = 0

    def rows(count: int) -> list:
        nonlocal n
        out = [{"id": n + i, "k": "r"} for i in range(count)]
        n += count
        return out

    def cols(count: int) -> dict:
        nonlocal n
        out = {"id": list(range(n, n + count)), "k": ["c"] * count}
        n += count
        return out

    refused = 0
    async with new(
        db, tmp_path, table="o", queue_capacity=64, batch_rows=1000, max_concurrency=1
    ) as ins:
        pending = []
        for _ in range(3):
            pending.append(ins.write_many(rows(6_000)))  # background conversion
            pending.append(ins.write(rows(1)[0]))
            pending.append(ins.write_many(rows(100)))
            pending.append(ins.write_columns(cols(5_000)))  # background conversion
            pending.append(ins.write_columns(cols(50)))
            row = rows(1)[0]
            try:
                ins.try_write(row)
            except chasync.QueueFull:
                refused += 1
                pending.append(ins.write(row))
            pending.append(ins.write_many(rows(3)))
        await asyncio.gather(*pending)
    ids = [int(r["id"]) for r in db.rows("SELECT id FROM o SETTINGS max_threads = 1")]
    assert len(ids) == n
    assert ids == list(range(n))
    assert refused >= 1


async def test_start_against_a_silent_server_fails_within_the_query_timeout(tmp_path):
    # A listening socket that is never accepted from: the kernel completes the connection,
    # nothing ever answers. start() reads the table's schema: bounded by query_timeout.
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        port = silent.getsockname()[1]
        ins = chasync.Inserter(
            f"http://127.0.0.1:{port}", "t", dlq_dir=str(tmp_path / "dlq"), query_timeout=1
        )
        with pytest.raises(chasync.Error, match="no answer to the schema query"):
            # The liveness bound is generous; the timeout is the inserter's own.
            await asyncio.wait_for(ins.start(), 60)
    finally:
        silent.close()
