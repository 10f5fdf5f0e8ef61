//! `Writer`: buffered producers against the real ClickHouse. Rows encoded on the producer's
//! side must land exactly once with the right `_insert_id`, whatever happens to the writer
//! (idle, dropped, cancelled mid-hand-off, flushed from elsewhere, outliving shutdown).

use chasync_testkit as common;

use std::time::Duration;

use chasync_core::{Config, DynIngestor, Ingestor, StreamId, native::NativeOptions, value::DynRow};
use common::TestDb;

#[derive(clickhouse::Row, serde::Serialize, Clone, Debug)]
struct Ev {
    id: u64,
    name: String,
    value: f64,
    ts: u32,
}

fn ev(id: u64) -> Ev {
    Ev {
        id,
        name: format!("n{id}"),
        value: id as f64 * 0.5,
        ts: 1_700_000_000 + id as u32,
    }
}

fn expected_hash(n: u64) -> String {
    format!(
        "SELECT sum(cityHash64(number, concat('n', toString(number)), number * 0.5, \
         toDateTime(1700000000 + number))) FROM numbers({n})"
    )
}

const HASH: &str = "SELECT sum(cityHash64(id, name, value, ts)) FROM t";

async fn table(db: &TestDb, insert_id: Option<&str>) {
    let extra = insert_id
        .map(|ty| format!(", _insert_id {ty}"))
        .unwrap_or_default();
    db.exec(&format!(
        "CREATE TABLE t (id UInt64, name String, value Float64, ts DateTime{extra}) \
         ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 100000"
    ))
    .await;
}

fn config(db: &TestDb, dlq: &std::path::Path) -> Config {
    let mut c = db.config("t", dlq);
    c.linger = Duration::from_secs(3600);
    c
}

/// Polls until `sql` returns `want` (or 10 s pass).
async fn wait_for(db: &TestDb, sql: &str, want: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = db.u64(sql).await;
        if got == want || std::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn encoded_chunks_seal_exact_batches_with_their_own_insert_ids() {
    for id_type in ["UUID", "String"] {
        let db = TestDb::new("writer_ids").await;
        table(&db, Some(id_type)).await;
        let dlq = tempfile::tempdir().unwrap();
        let mut c = config(&db, dlq.path());
        c.max_rows = 1000;
        c.stream_id = StreamId::named("writer-ids");
        let ing = Ingestor::<Ev>::start(c).await.unwrap();
        // Two producers, chunks (125 rows) that cross batch boundaries in between.
        let mut a = ing.handle().writer();
        let mut b = ing.handle().writer();
        for i in 0..5_000 {
            if i % 3 == 0 {
                b.write(ev(i)).await.unwrap();
            } else {
                a.write(ev(i)).await.unwrap();
            }
        }
        a.close().await;
        b.close().await;
        let stats = ing.shutdown().await.unwrap();
        assert_eq!(stats.rows_accepted, 5_000);
        assert_eq!(stats.rows_committed, 5_000);
        assert_eq!(stats.batches_committed, 5, "{stats:?}");
        assert_eq!(db.u64(HASH).await, db.u64(&expected_hash(5_000)).await);
        // Every batch of 1000 rows carries its own id, the one the stream gives its sequence.
        let ids: Vec<(String, u64)> = db
            .client
            .query("SELECT toString(_insert_id), count() FROM t GROUP BY 1 ORDER BY 1")
            .fetch_all()
            .await
            .unwrap();
        let mut want: Vec<String> = (0..5)
            .map(|s| StreamId::named("writer-ids").batch_id(s).to_string())
            .collect();
        want.sort();
        assert_eq!(
            ids.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
            want,
            "{id_type}"
        );
        assert!(ids.iter().all(|(_, n)| *n == 1000), "{ids:?}");
    }
}

#[tokio::test]
async fn an_idle_writer_s_rows_land_after_linger() {
    let db = TestDb::new("writer_idle").await;
    table(&db, None).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = config(&db, dlq.path());
    c.linger = Duration::from_millis(200);
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    let mut w = ing.handle().writer();
    for i in 0..10 {
        w.write(ev(i)).await.unwrap();
    }
    assert_eq!(w.buffered_rows(), 10, "a chunk holds 4096 rows");
    // The writer stays alive and idle: the batcher takes its rows over.
    assert_eq!(wait_for(&db, "SELECT count() FROM t", 10).await, 10);
    assert_eq!(w.buffered_rows(), 0);
    drop(w);
    ing.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_dropped_writer_s_rows_land_without_a_flush() {
    let db = TestDb::new("writer_drop").await;
    table(&db, None).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = config(&db, dlq.path());
    c.linger = Duration::from_millis(100);
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    let mut w = ing.handle().writer();
    for i in 0..7 {
        w.write(ev(i)).await.unwrap();
    }
    drop(w);
    assert_eq!(wait_for(&db, "SELECT count() FROM t", 7).await, 7);
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_accepted, 7);
    assert_eq!(stats.rows_committed, 7);
}

#[tokio::test]
async fn flush_from_any_handle_covers_rows_buffered_in_writers() {
    let db = TestDb::new("writer_flush").await;
    table(&db, None).await;
    let dlq = tempfile::tempdir().unwrap();
    let ing = Ingestor::<Ev>::start(config(&db, dlq.path()))
        .await
        .unwrap();
    let mut w = ing.handle().writer();
    for i in 0..100 {
        w.write(ev(i)).await.unwrap();
    }
    ing.handle().flush().await.unwrap();
    assert_eq!(db.u64("SELECT count() FROM t").await, 100);
    for i in 100..250 {
        w.write(ev(i)).await.unwrap();
    }
    w.flush().await.unwrap();
    assert_eq!(db.u64("SELECT count() FROM t").await, 250);
    assert_eq!(db.u64(HASH).await, db.u64(&expected_hash(250)).await);
    drop(w);
    ing.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_takes_over_live_writers_and_later_writes_are_refused() {
    let db = TestDb::new("writer_shutdown").await;
    table(&db, None).await;
    let dlq = tempfile::tempdir().unwrap();
    let ing = Ingestor::<Ev>::start(config(&db, dlq.path()))
        .await
        .unwrap();
    let h = ing.handle();
    let mut w = h.writer();
    for i in 0..1234 {
        w.write(ev(i)).await.unwrap();
    }
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_committed, 1234);
    assert_eq!(db.u64(HASH).await, db.u64(&expected_hash(1234)).await);
    // The writer and new writers refuse rows, handing them back.
    let back = w.write(ev(5000)).await.unwrap_err();
    assert_eq!(back.0.id, 5000);
    let mut late = h.writer();
    assert!(late.write(ev(1)).await.is_err());
    let err = h.send_all((0..5).map(ev)).await.unwrap_err();
    assert_eq!(err.0.len(), 5);
}

#[tokio::test]
async fn cancelling_a_write_that_waits_for_room_loses_nothing() {
    let db = TestDb::new("writer_cancel").await;
    // Each insert takes about a second: the queue fills up behind it.
    db.exec(
        "CREATE TABLE t (id UInt64, name String, value Float64, ts DateTime, \
         slow UInt8 MATERIALIZED sleepEachRow(0.001)) ENGINE = MergeTree ORDER BY id",
    )
    .await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = config(&db, dlq.path());
    c.max_rows = 500;
    c.max_concurrency = 1;
    c.queue_capacity = 100;
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    let mut w = ing.handle().writer();
    let mut written = 0u64;
    let mut cancelled = 0;
    // Chunks of 62 rows; a queue of 100 rows; each write given 5 ms.
    while written < 3_000 {
        match tokio::time::timeout(Duration::from_millis(5), w.write(ev(written))).await {
            Ok(r) => {
                r.unwrap();
                written += 1;
            }
            // The row had been taken before the hand-off waited: it counts as written.
            Err(_) => {
                cancelled += 1;
                written += 1;
            }
        }
    }
    assert!(cancelled > 0, "no write ever waited for room");
    w.close().await;
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_committed, 3_000, "{stats:?}");
    assert_eq!(db.u64(HASH).await, db.u64(&expected_hash(3_000)).await);
}

#[tokio::test]
async fn dynamic_rows_go_through_writers_as_they_are() {
    let db = TestDb::new("writer_dyn").await;
    table(&db, None).await;
    let dlq = tempfile::tempdir().unwrap();
    let ing = DynIngestor::start_dynamic(config(&db, dlq.path()), NativeOptions::default())
        .await
        .unwrap();
    let mut w = ing.handle().writer();
    for i in 0..3000u64 {
        let e = ev(i);
        let row = DynRow::new()
            .with("id", e.id)
            .with("name", e.name)
            .with("value", e.value)
            .with("ts", e.ts);
        w.write(row.into()).await.unwrap();
    }
    // A row the schema refuses is dead-lettered, the others land.
    w.write(DynRow::new().with("id", "not a number").into())
        .await
        .unwrap();
    w.close().await;
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_committed, 3000);
    assert_eq!(stats.rows_dead_lettered, 1);
    assert_eq!(db.u64(HASH).await, db.u64(&expected_hash(3000)).await);
}

/// A value whose serialization fails for 13: a row the producer-side encoder refuses.
struct Picky(u64);

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(serde::ser::Error::custom("13 is refused"));
        }
        s.serialize_u64(self.0)
    }
}

#[derive(clickhouse::Row, serde::Serialize)]
struct PickyRow {
    id: Picky,
}

#[tokio::test]
async fn a_row_the_producer_side_encoder_refuses_is_dead_lettered_alone() {
    let db = TestDb::new("writer_refuse").await;
    db.exec("CREATE TABLE t (id UInt64) ENGINE = MergeTree ORDER BY id")
        .await;
    let dlq = tempfile::tempdir().unwrap();
    let ing = Ingestor::<PickyRow>::start(config(&db, dlq.path()))
        .await
        .unwrap();
    let mut w = ing.handle().writer();
    // Futures of a writer can be spawned.
    fn assert_send<T: Send>(t: T) -> T {
        t
    }
    for i in 0..100 {
        assert_send(w.write(PickyRow { id: Picky(i) }))
            .await
            .unwrap();
    }
    w.close().await;
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_committed, 99);
    assert_eq!(stats.rows_dead_lettered, 1);
    assert_eq!(stats.rows_accepted, 100);
    assert_eq!(db.u64("SELECT count() FROM t WHERE id = 13").await, 0);
    let spool = chasync_core::DeadLetterSpool::new(dlq.path());
    let entries = spool.list().unwrap();
    let text = format!("{entries:?}");
    assert!(text.contains("13 is refused"), "{text}");
}
