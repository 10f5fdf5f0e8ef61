//! Dynamic rows and columnar batches through the whole pipeline (Native), against the real
//! server.

use chasync_testkit as common;

use std::time::Duration;

use chasync_core::NativeOptions;
use chasync_core::{ColumnBatch, DynRow, Value};
use chasync_core::{DeadLetterSpool, DynIngestor, EntryKind, StreamId};
use common::TestDb;

async fn table(db: &TestDb) {
    db.exec(
        "CREATE TABLE t (id UInt64, name String, ts DateTime64(3, 'Europe/Berlin'), \
         price Decimal(10, 2), tags Array(LowCardinality(String)), \
         created DateTime DEFAULT toDateTime('2020-01-02 03:04:05', 'UTC'), \
         doubled UInt64 DEFAULT id * 2, _insert_id UUID) \
         ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 1000",
    )
    .await;
}

fn row(i: u64) -> DynRow {
    DynRow::new()
        .with("id", i)
        .with("name", format!("n{i}"))
        .with("ts", "2026-11-24 10:00:00.250")
        .with("price", format!("{}.25", i % 100))
        .with("tags", vec!["a".to_string(), format!("t{}", i % 3)])
}

#[tokio::test]
async fn dynamic_rows_land_with_defaults_and_bad_rows_are_dead_lettered() {
    let db = TestDb::new("dyn").await;
    table(&db).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.batching.max_rows = 2500;
    c.delivery.stream_id = Some(StreamId::named("dyn"));
    let ing = DynIngestor::start_dynamic(c, NativeOptions::default())
        .await
        .unwrap();
    let h = ing.handle();
    for i in 0..10_000u64 {
        let mut r = row(i);
        if i == 4321 {
            r = r.with("doubled", "not a number");
        }
        if i == 777 {
            // Out of range for UInt64.
            r.fields[0].1 = Value::Int(-7);
        }
        h.send(r.into()).await.unwrap();
    }
    let err = h.flush().await.unwrap_err();
    assert!(
        matches!(err, chasync_core::Error::DeadLettered { rows: 2, .. }),
        "{err}"
    );
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_committed, 9998);
    assert_eq!(stats.rows_rejected, 2);
    assert_eq!(db.u64("SELECT count() FROM t").await, 9998);
    assert_eq!(
        db.u64("SELECT count() FROM t WHERE doubled = id * 2").await,
        9998
    );
    assert_eq!(
        db.u64("SELECT count() FROM t WHERE created = toDateTime('2020-01-02 03:04:05', 'UTC')")
            .await,
        9998
    );
    // The time zone of the column applies to the plain text.
    assert_eq!(
        db.u64("SELECT count() FROM t WHERE ts = toDateTime64('2026-11-24 10:00:00.250', 3, 'Europe/Berlin') AND toUnixTimestamp64Milli(ts) = 1795510800250")
            .await,
        9998
    );
    assert_eq!(
        db.u64("SELECT count() FROM t WHERE toString(price) = concat(toString(id % 100), '.25')")
            .await,
        9998
    );
    assert_eq!(db.u64("SELECT uniqExact(_insert_id) FROM t").await, 4);
    assert_eq!(
        db.u64(&format!(
            "SELECT count() FROM t WHERE _insert_id = '{}'",
            StreamId::named("dyn").batch_id(1)
        ))
        .await,
        2500
    );
    // The spool names row, column, value and type.
    let spool = DeadLetterSpool::new(dlq.path());
    let entries = spool.list().unwrap();
    assert!(entries.iter().all(|e| e.kind == EntryKind::Rejected));
    let text: String = entries
        .iter()
        .map(|e| String::from_utf8_lossy(&spool.payload(e).unwrap()).into_owned())
        .collect();
    assert!(text.contains("not a number"), "{text}");
    assert!(text.contains("UInt64"), "{text}");
    assert!(text.contains("doubled"), "{text}");
    assert!(text.contains("-7"), "{text}");
}

#[tokio::test]
async fn columnar_batches_land_exactly() {
    let db = TestDb::new("dyncols").await;
    table(&db).await;
    let dlq = tempfile::tempdir().unwrap();
    let ing = DynIngestor::start_dynamic(db.config("t", dlq.path()), NativeOptions::default())
        .await
        .unwrap();
    let h = ing.handle();
    for chunk in 0..10u64 {
        let ids: Vec<Value> = (chunk * 1000..(chunk + 1) * 1000)
            .map(Value::from)
            .collect();
        let names: Vec<Value> = (chunk * 1000..(chunk + 1) * 1000)
            .map(|i| Value::from(format!("n{i}")))
            .collect();
        let cols = ColumnBatch::new()
            .with_column("id", ids)
            .with_column("name", names);
        h.send(cols.into()).await.unwrap();
    }
    h.flush().await.unwrap();
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_committed, 10_000);
    assert_eq!(db.u64("SELECT count() FROM t").await, 10_000);
    assert_eq!(
        db.u64("SELECT sum(cityHash64(id, name, doubled)) FROM t").await,
        db.u64("SELECT sum(cityHash64(number, concat('n', toString(number)), number * 2)) FROM numbers(10000)")
            .await
    );
}

#[tokio::test]
async fn a_column_added_while_streaming_is_picked_up() {
    let db = TestDb::new("dynalter").await;
    table(&db).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.batching.linger = Duration::from_secs(60);
    let ing = DynIngestor::start_dynamic(c, NativeOptions::default())
        .await
        .unwrap();
    let h = ing.handle();
    for i in 0..100 {
        h.send(row(i).into()).await.unwrap();
    }
    db.exec("ALTER TABLE t ADD COLUMN color String DEFAULT 'none'")
        .await;
    // Same open batch: rows with the new key need the refreshed schema.
    for i in 100..200 {
        h.send(row(i).with("color", "red").into()).await.unwrap();
    }
    h.flush().await.unwrap();
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_dead_lettered, 0, "{stats:?}");
    assert_eq!(stats.batches_committed, 1);
    assert_eq!(db.u64("SELECT count() FROM t").await, 200);
    assert_eq!(
        db.u64("SELECT count() FROM t WHERE color = 'red' AND id >= 100")
            .await,
        100
    );
    assert_eq!(
        db.u64("SELECT count() FROM t WHERE color = 'none' AND id < 100")
            .await,
        100
    );
}

#[tokio::test]
async fn rows_the_server_refuses_are_isolated_in_native_batches_too() {
    let db = TestDb::new("dynpoison").await;
    db.exec(
        "CREATE TABLE t (id UInt64, v Int64, _insert_id UUID, CONSTRAINT positive CHECK v >= 0) \
         ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 1000",
    )
    .await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.batching.max_rows = 5000;
    let ing = DynIngestor::start_dynamic(c, NativeOptions::default())
        .await
        .unwrap();
    let h = ing.handle();
    let poison = [13u64, 4999, 12_345];
    let v = |i: u64| Value::Int(if poison.contains(&i) { -1 } else { i as i64 });
    // Rows one by one, then the same through columnar batches.
    for i in 0..10_000u64 {
        h.send(DynRow::new().with("id", i).with("v", v(i)).into())
            .await
            .unwrap();
    }
    for chunk in 0..4u64 {
        let ids = (10_000 + chunk * 2500..10_000 + (chunk + 1) * 2500).collect::<Vec<u64>>();
        let cols = ColumnBatch::new()
            .with_column("id", ids.iter().map(|i| Value::from(*i)).collect())
            .with_column("v", ids.iter().map(|i| v(*i)).collect());
        h.send(cols.into()).await.unwrap();
    }
    let err = h.flush().await.unwrap_err();
    assert!(
        matches!(err, chasync_core::Error::DeadLettered { rows: 3, .. }),
        "{err}"
    );
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_committed, 20_000 - 3, "{stats:?}");
    assert!(stats.batches_split > 0);
    assert_eq!(db.u64("SELECT count() FROM t").await, 19_997);
    assert_eq!(
        db.u64("SELECT sum(cityHash64(id, v)) FROM t").await,
        db.u64(
            "SELECT sum(cityHash64(number, toInt64(number))) FROM numbers(20000) \
             WHERE number NOT IN (13, 4999, 12345)"
        )
        .await
    );
    let spool = DeadLetterSpool::new(dlq.path());
    let entries = spool.list().unwrap();
    assert_eq!(entries.len(), 3);
    for e in &entries {
        assert_eq!(e.kind, EntryKind::Batch);
        assert_eq!(e.rows, 1);
        assert_eq!(e.format, "Native");
        assert_eq!(e.code, Some(469), "{}", e.error);
        assert!(e.error.contains("positive"), "{}", e.error);
    }
    // Each single-row entry replays to exactly its row once the constraint is dropped.
    db.exec("ALTER TABLE t DROP CONSTRAINT positive").await;
    let report = chasync_core::replay(&db.config("t", dlq.path()), &spool)
        .await
        .unwrap();
    assert_eq!(report.rows, 3);
    assert_eq!(
        db.strings("SELECT toString(id) FROM t WHERE v = -1 ORDER BY id")
            .await,
        vec!["13", "4999", "12345"]
    );
}

#[tokio::test]
async fn columnar_batches_count_rows_and_a_refused_batch_spools_every_row() {
    let db = TestDb::new("dyncount").await;
    table(&db).await;
    let dlq = tempfile::tempdir().unwrap();
    let ing = DynIngestor::start_dynamic(db.config("t", dlq.path()), NativeOptions::default())
        .await
        .unwrap();
    let h = ing.handle();
    let ids: Vec<Value> = (0..1000u64).map(Value::from).collect();
    h.send(ColumnBatch::new().with_column("id", ids).into())
        .await
        .unwrap();
    // A key that names no column refuses the whole batch: all 3 rows go to the spool.
    let bad = ColumnBatch::new()
        .with_column("id", vec![Value::UInt(1), Value::UInt(2), Value::UInt(3)])
        .with_column("nope", vec![Value::UInt(7), Value::UInt(8), Value::UInt(9)]);
    h.send(bad.into()).await.unwrap();
    let err = h.flush().await.unwrap_err();
    assert!(
        matches!(err, chasync_core::Error::DeadLettered { rows: 3, .. }),
        "{err}"
    );
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_accepted, 1003);
    assert_eq!(stats.rows_committed, 1000);
    assert_eq!(stats.rows_rejected, 3);
    assert_eq!(stats.rows_dead_lettered, 3);
    assert_eq!(stats.queue_depth, 0);
    assert_eq!(db.u64("SELECT count() FROM t").await, 1000);
    let spool = DeadLetterSpool::new(dlq.path());
    let text: String = spool
        .list()
        .unwrap()
        .iter()
        .map(|e| String::from_utf8_lossy(&spool.payload(e).unwrap()).into_owned())
        .collect();
    assert_eq!(text.lines().count(), 3, "{text}");
    for (id, nope) in [(1, 7), (2, 8), (3, 9)] {
        assert!(
            text.contains(&format!("{{\\\"id\\\":{id},\\\"nope\\\":{nope}}}")),
            "{text}"
        );
    }
    assert!(text.contains("nope"), "{text}");
}

#[tokio::test]
async fn omitted_enum_columns_get_what_json_each_row_gives_them() {
    let db = TestDb::new("dynenum").await;
    let ddl = "(id UInt64, e8 Enum8('x' = -3, 'y' = 5), e16 Enum16('p' = 300, 'q' = 200), \
               ed Enum8('a' = 1, 'b' = 2) DEFAULT 'b') ENGINE = MergeTree ORDER BY id";
    db.exec(&format!("CREATE TABLE t {ddl}")).await;
    db.exec(&format!("CREATE TABLE reference {ddl}")).await;
    // The server's own reading of the same rows as JSONEachRow, with the columns left out.
    // (An explicit JSON null there stores 0, no element of the enum; chasync treats a
    // top-level null in a non-Nullable column as left out.)
    db.exec(
        "INSERT INTO reference FORMAT JSONEachRow {\"id\": 1} {\"id\": 2} \
         {\"id\": 3, \"e8\": \"y\", \"ed\": \"a\"} {\"id\": 4} {\"id\": 5}",
    )
    .await;
    let dlq = tempfile::tempdir().unwrap();
    let ing = DynIngestor::start_dynamic(db.config("t", dlq.path()), NativeOptions::default())
        .await
        .unwrap();
    let h = ing.handle();
    h.send(DynRow::new().with("id", 1u64).into()).await.unwrap();
    h.send(
        DynRow::new()
            .with("id", 2u64)
            .with("e8", Value::Null)
            .into(),
    )
    .await
    .unwrap();
    h.send(
        DynRow::new()
            .with("id", 3u64)
            .with("e8", "y")
            .with("ed", "a")
            .into(),
    )
    .await
    .unwrap();
    let cols = ColumnBatch::new()
        .with_column("id", vec![Value::UInt(4), Value::UInt(5)])
        .with_column("e16", vec![Value::from("q"), Value::Null]);
    h.send(cols.into()).await.unwrap();
    h.flush().await.unwrap();
    ing.shutdown().await.unwrap();
    let read = "SELECT toString(tuple(id, e8, e16, ed)) FROM {} ORDER BY id";
    let got = db.strings(&read.replace("{}", "t")).await;
    let mut want = db.strings(&read.replace("{}", "reference")).await;
    // Row 4 gives e16 = 'q' in ours; the reference left it out.
    want[3] = want[3].replace("'p'", "'q'");
    assert_eq!(got, want);
    assert_eq!(got[0], "(1,'x','q','b')");
}
