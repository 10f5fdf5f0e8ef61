//! The engine against the real ClickHouse: batching, backpressure, concurrency, retries,
//! dedup, `_insert_id`, the dead-letter spool, shutdown, and buffered writers.

use chasync_testkit as common;

use std::time::Duration;

use chasync_core::{
    Config, DeadLetterSpool, DynIngestor, DynRow, EntryKind, Error, ErrorKind, Ingestor,
    NativeOptions, StreamId, TrySendError,
};
use common::TestDb;
use common::proxy::{Fault, FaultProxy};

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

/// The same rows, computed by the server.
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

fn fast_retry(c: &mut Config, attempts: u32) {
    c.delivery.max_attempts = attempts;
    c.delivery.initial_backoff = Duration::from_millis(50);
    c.delivery.max_backoff = Duration::from_millis(400);
}

#[tokio::test]
async fn seals_batches_on_row_count_and_fills_insert_id() {
    let db = TestDb::new("rows").await;
    table(&db, Some("UUID")).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.batching.max_rows = 100;
    c.batching.linger = Duration::from_secs(3600);
    c.delivery.stream_id = Some(StreamId::named("rows-test"));
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    let h = ing.handle();
    for i in 0..1000 {
        h.send(ev(i)).await.unwrap();
    }
    h.flush().await.unwrap();
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.batches_committed, 10);
    assert_eq!(stats.rows_committed, 1000);
    assert_eq!(db.u64("SELECT count() FROM t").await, 1000);
    assert_eq!(db.u64("SELECT uniqExact(_insert_id) FROM t").await, 10);
    // Each batch of 100 rows carries its own deterministic id.
    let ids = db
        .strings("SELECT toString(_insert_id) FROM t GROUP BY _insert_id HAVING count() = 100 ORDER BY min(id)")
        .await;
    let expected: Vec<String> = (0..10)
        .map(|seq| StreamId::named("rows-test").batch_id(seq).to_string())
        .collect();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn insert_id_as_string_column() {
    let db = TestDb::new("idstr").await;
    table(&db, Some("String")).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.batching.max_rows = 7;
    c.delivery.stream_id = Some(StreamId::named("s"));
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    for i in 0..21 {
        ing.handle().send(ev(i)).await.unwrap();
    }
    ing.shutdown().await.unwrap();
    let ids = db
        .strings("SELECT _insert_id FROM t GROUP BY _insert_id ORDER BY min(id)")
        .await;
    let expected: Vec<String> = (0..3)
        .map(|s| StreamId::named("s").batch_id(s).to_string())
        .collect();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn seals_batches_on_bytes() {
    let db = TestDb::new("bytes").await;
    table(&db, None).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    // A row: 8 (id) + 1 + 83 (name) + 8 (value) + 4 (ts) = 104 bytes. 10 rows reach 1040.
    c.batching.max_bytes = 1000;
    c.batching.max_rows = 1_000_000;
    c.batching.linger = Duration::from_secs(3600);
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    let h = ing.handle();
    for i in 0..100u64 {
        let mut e = ev(i);
        e.name = format!("{:083}", i);
        h.send(e).await.unwrap();
    }
    h.flush().await.unwrap();
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.batches_committed, 10, "{stats:?}");
    assert_eq!(stats.bytes_committed, 100 * 104);
    assert_eq!(db.u64("SELECT count() FROM t").await, 100);
}

#[tokio::test]
async fn seals_a_batch_when_linger_expires_without_more_rows() {
    let db = TestDb::new("linger").await;
    table(&db, None).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.batching.max_rows = 1_000_000;
    c.batching.linger = Duration::from_millis(200);
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    let h = ing.handle();
    for i in 0..5 {
        h.send(ev(i)).await.unwrap();
    }
    // No flush, no more rows: only the linger timer can seal this batch.
    let mut landed = 0;
    for _ in 0..100 {
        landed = db.u64("SELECT count() FROM t").await;
        if landed == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(landed, 5);
    assert_eq!(h.stats().batches_committed, 1);
    ing.shutdown().await.unwrap();
}

/// A target table whose every insert takes about `secs` seconds on the server (a
/// materialized view that sleeps), for observing backpressure and concurrency.
async fn slow_table(db: &TestDb, secs: f64) {
    table(db, None).await;
    db.exec("CREATE TABLE sink (id UInt64) ENGINE = MergeTree ORDER BY id")
        .await;
    db.exec(&format!(
        "CREATE MATERIALIZED VIEW slow TO sink AS SELECT id FROM t WHERE sleep({secs}) = 0"
    ))
    .await;
}

#[tokio::test]
async fn a_full_queue_pushes_back_on_producers() {
    let db = TestDb::new("backpressure").await;
    slow_table(&db, 1.0).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.batching.max_rows = 1;
    c.delivery.max_concurrency = 1;
    c.batching.queue_rows = 2;
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    let h = ing.handle();
    // One batch in flight, one waiting for a slot, one held by the batcher, two in the queue:
    // the pipeline holds a handful of rows, then refuses.
    let mut accepted = 0u64;
    let mut refused = None;
    for i in 0..50 {
        match h.try_send(ev(i)) {
            Ok(()) => accepted += 1,
            Err(TrySendError::Full(row)) => {
                refused = Some(row);
                break;
            }
            Err(TrySendError::Closed(_)) => panic!("closed"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = refused.expect("the queue never filled up");
    assert!(accepted <= 6, "accepted {accepted} rows past a queue of 2");
    // `send` waits for room instead of failing.
    let blocked = tokio::time::timeout(Duration::from_millis(300), h.send(refused.clone())).await;
    assert!(blocked.is_err(), "send returned while the queue was full");
    h.send(refused).await.unwrap();
    h.flush().await.unwrap();
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_committed, accepted + 1);
    assert_eq!(db.u64("SELECT count() FROM t").await, accepted + 1);
}

#[tokio::test]
async fn inserts_run_concurrently_up_to_the_bound() {
    let db = TestDb::new("concurrency").await;
    slow_table(&db, 0.5).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.batching.max_rows = 10;
    c.delivery.max_concurrency = 3;
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    let h = ing.handle();
    for i in 0..120 {
        h.send(ev(i)).await.unwrap();
    }
    h.flush().await.unwrap();
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.max_in_flight, 3, "{stats:?}");
    assert_eq!(db.u64("SELECT count() FROM t").await, 120);
    // The server saw overlapping inserts too.
    db.exec("SYSTEM FLUSH LOGS").await;
    let overlapping = db
        .u64(&format!(
            "SELECT count() FROM system.query_log a, system.query_log b \
             WHERE a.type = 'QueryFinish' AND b.type = 'QueryFinish' \
             AND a.query_kind = 'Insert' AND b.query_kind = 'Insert' \
             AND has(a.databases, '{0}') AND has(b.databases, '{0}') \
             AND a.query_id < b.query_id \
             AND a.query_start_time_microseconds < b.event_time_microseconds \
             AND b.query_start_time_microseconds < a.event_time_microseconds",
            db.name
        ))
        .await;
    assert!(overlapping > 0, "no two inserts overlapped on the server");
}

#[tokio::test]
async fn a_retryable_server_error_is_retried_then_succeeds() {
    let db = TestDb::new("retry").await;
    table(&db, None).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.delivery.stream_id = Some(StreamId::named(&format!("retry-{}", db.name)));
    fast_retry(&mut c, 20);
    let first_batch = c.delivery.stream_id.unwrap().batch_id(0).to_string();
    // Occupy the first batch's query id on the server: the insert gets
    // QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING (216, retryable) until the blocker ends.
    let blocker = db.client.clone();
    let qid = first_batch.clone();
    let blocking = tokio::spawn(async move {
        blocker
            .query("SELECT sleep(1.5)")
            .with_setting("query_id", qid)
            .execute()
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    let h = ing.handle();
    for i in 0..100 {
        h.send(ev(i)).await.unwrap();
    }
    h.flush().await.unwrap();
    blocking.await.unwrap().unwrap();
    let stats = ing.shutdown().await.unwrap();
    assert!(stats.retries >= 1, "{stats:?}");
    assert_eq!(stats.rows_dead_lettered, 0);
    assert_eq!(db.u64("SELECT count() FROM t").await, 100);
    db.exec("SYSTEM FLUSH LOGS").await;
    let refused = db
        .u64(&format!(
            "SELECT count() FROM system.query_log WHERE query_id = '{first_batch}' \
             AND exception_code = 216"
        ))
        .await;
    assert!(refused >= 1, "the server never refused the first attempt");
}

#[tokio::test]
async fn a_connection_reset_is_retried() {
    let db = TestDb::new("reset").await;
    table(&db, None).await;
    let proxy = FaultProxy::start(&common::url(), vec![]).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    fast_retry(&mut c, 5);
    // Start through the real server, then insert through the proxy.
    let mut through = c.clone();
    through.clickhouse.url = vec![proxy.url()];
    let ing = Ingestor::<Ev>::start(through).await.unwrap();
    // Insert connections only: the engine's metadata queries share the pool.
    proxy.push_insert(Fault::ResetOnAccept);
    proxy.push_insert(Fault::ResetOnAccept);
    tokio::time::sleep(Duration::from_millis(2500)).await; // let pooled connections expire
    let h = ing.handle();
    for i in 0..500 {
        h.send(ev(i)).await.unwrap();
    }
    h.flush().await.unwrap();
    let stats = ing.shutdown().await.unwrap();
    assert!(stats.retries >= 1, "{stats:?}");
    assert_eq!(db.u64("SELECT count() FROM t").await, 500);
    assert_eq!(db.u64(HASH).await, db.u64(&expected_hash(500)).await);
}

#[tokio::test]
async fn a_lost_answer_is_retried_with_the_same_token_and_lands_once() {
    let db = TestDb::new("lostanswer").await;
    table(&db, Some("UUID")).await;
    let proxy = FaultProxy::start(&common::url(), vec![]).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.clickhouse.url = vec![proxy.url()];
    fast_retry(&mut c, 5);
    c.batching.max_rows = 1000;
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    // The metadata query used the first connection; the insert gets a fresh one after the
    // pool's idle timeout, and its answer is cut off after the server applied it (the
    // engine's look at the table's checks passes).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    proxy.push_insert(Fault::CutResponse);
    let h = ing.handle();
    for i in 0..1000 {
        h.send(ev(i)).await.unwrap();
    }
    h.flush().await.unwrap();
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.retries, 1, "{stats:?}");
    assert_eq!(stats.batches_committed, 1);
    // Applied by the cut attempt, deduplicated on the retry: exactly once.
    assert_eq!(db.u64("SELECT count() FROM t").await, 1000);
    assert_eq!(db.u64("SELECT uniqExact(id) FROM t").await, 1000);
    assert_eq!(db.u64(HASH).await, db.u64(&expected_hash(1000)).await);
}

#[tokio::test]
async fn the_same_batch_sent_twice_lands_once() {
    let db = TestDb::new("dedup").await;
    table(&db, Some("UUID")).await;
    let dlq = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        // Two runs of the same stream: same ids, same bytes.
        let mut c = db.config("t", dlq.path());
        c.delivery.stream_id = Some(StreamId::named("replayed-stream"));
        c.batching.max_rows = 250;
        let ing = Ingestor::<Ev>::start(c).await.unwrap();
        for i in 0..1000 {
            ing.handle().send(ev(i)).await.unwrap();
        }
        let stats = ing.shutdown().await.unwrap();
        assert_eq!(stats.batches_committed, 4);
    }
    assert_eq!(db.u64("SELECT count() FROM t").await, 1000);
    assert_eq!(db.u64(HASH).await, db.u64(&expected_hash(1000)).await);
}

#[tokio::test]
async fn without_a_dedup_window_plain_merge_tree_duplicates() {
    // Documents why tables need `non_replicated_deduplication_window`.
    let db = TestDb::new("nowindow").await;
    db.exec("CREATE TABLE t (id UInt64, name String, value Float64, ts DateTime) ENGINE = MergeTree ORDER BY id")
        .await;
    let dlq = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let mut c = db.config("t", dlq.path());
        c.delivery.stream_id = Some(StreamId::named("no-window"));
        let ing = Ingestor::<Ev>::start(c).await.unwrap();
        for i in 0..10 {
            ing.handle().send(ev(i)).await.unwrap();
        }
        ing.shutdown().await.unwrap();
    }
    assert_eq!(db.u64("SELECT count() FROM t").await, 20);
}

#[derive(clickhouse::Row, serde::Serialize, Clone)]
struct WithExtra {
    id: u64,
    name: String,
    value: f64,
    ts: u32,
    extra: String,
}

#[tokio::test]
async fn a_permanent_error_goes_straight_to_the_spool_and_replays_once() {
    let db = TestDb::new("dlq").await;
    table(&db, Some("UUID")).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    fast_retry(&mut c, 5);
    c.batching.max_rows = 50;
    let ing = Ingestor::<WithExtra>::start(c.clone()).await.unwrap();
    let h = ing.handle();
    for i in 0..100 {
        let e = ev(i);
        h.send(WithExtra {
            id: e.id,
            name: e.name,
            value: e.value,
            ts: e.ts,
            extra: format!("x{i}"),
        })
        .await
        .unwrap();
    }
    let err = h.flush().await.unwrap_err();
    match &err {
        Error::DeadLettered {
            batches,
            rows,
            last_error,
            ..
        } => {
            assert_eq!((*batches, *rows), (2, 100));
            assert!(last_error.contains("extra"), "{last_error}");
        }
        other => panic!("expected DeadLettered, got {other}"),
    }
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.retries, 0, "a permanent error must not be retried");
    assert_eq!(stats.rows_dead_lettered, 100);
    assert_eq!(db.u64("SELECT count() FROM t").await, 0);

    let spool = DeadLetterSpool::new(dlq.path());
    let entries = spool.list().unwrap();
    assert_eq!(entries.len(), 2);
    for e in &entries {
        assert_eq!(e.kind, EntryKind::Batch);
        assert_eq!(e.rows, 50);
        assert_eq!(e.attempts, 1);
        assert_eq!(e.error_kind, ErrorKind::Permanent);
        assert_eq!(e.code, Some(16), "{}", e.error); // NO_SUCH_COLUMN_IN_TABLE
        assert_eq!(e.format, "RowBinary");
        assert!(e.columns.contains(&"extra".to_string()));
    }

    // Fix the table; replay lands every row; a second replay of the same entries (restored
    // from a copy, as if the first replay's answer had been lost) lands nothing more.
    db.exec("ALTER TABLE t ADD COLUMN extra String").await;
    let copy = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(dlq.path()).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), copy.path().join(f.file_name())).unwrap();
    }
    let report = chasync_core::replay(&c, &spool).await.unwrap();
    assert_eq!((report.batches, report.rows), (2, 100));
    assert!(report.failed.is_empty());
    assert!(spool.list().unwrap().is_empty());
    assert_eq!(db.u64("SELECT count() FROM t").await, 100);
    let again = chasync_core::replay(&c, &DeadLetterSpool::new(copy.path()))
        .await
        .unwrap();
    assert_eq!(again.batches, 2);
    assert_eq!(db.u64("SELECT count() FROM t").await, 100);
    assert_eq!(db.u64(HASH).await, db.u64(&expected_hash(100)).await);
    assert_eq!(
        db.u64("SELECT count() FROM t WHERE extra = concat('x', toString(id))")
            .await,
        100
    );
}

#[tokio::test]
async fn retries_are_bounded_and_then_dead_letter() {
    let db = TestDb::new("exhausted").await;
    table(&db, None).await;
    // Every connection is reset: a retryable error that never clears.
    let proxy = FaultProxy::start(&common::url(), vec![Fault::ResetOnAccept; 100]).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    fast_retry(&mut c, 3);
    let mut through = c.clone();
    through.clickhouse.url = vec![proxy.url()];
    // start() needs the table's columns: fetch them through the real server, then insert
    // through the proxy with a pipeline of the same encoder.
    let cols = chasync_core::Catalog::new(&c)
        .unwrap()
        .table(&c.clickhouse.database, "t")
        .await
        .unwrap();
    assert_eq!(cols.columns.len(), 4);
    let ing = chasync_core::PipelineBuilder::new(through)
        .start_with_encoder(chasync_core::RowBinary::<Ev>::new(None))
        .unwrap();
    for i in 0..10 {
        ing.handle().send(ev(i)).await.unwrap();
    }
    let err = ing.flush().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::DeadLettered {
                batches: 1,
                rows: 10,
                ..
            }
        ),
        "{err}"
    );
    let stats = ing.shutdown().await.unwrap();
    // A reset after the connection was made may come after the request went out: before a
    // resend the engine must learn whether it landed (here: that the table deduplicates),
    // and the proxy resets that look too. Attempts and looks together are bounded.
    assert!((1..=3).contains(&stats.failed_attempts), "{stats:?}");
    assert_eq!(stats.retries, stats.failed_attempts - 1, "{stats:?}");
    let entries = DeadLetterSpool::new(dlq.path()).list().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(u64::from(entries[0].attempts), stats.failed_attempts);
    assert_eq!(entries[0].error_kind, ErrorKind::UnknownOutcome);
    assert!(entries[0].is_maybe_sent(), "{:?}", entries[0]);
    // Replay through the real server lands the rows.
    let report = chasync_core::replay(&c, &DeadLetterSpool::new(dlq.path()))
        .await
        .unwrap();
    assert_eq!(report.rows, 10);
    assert_eq!(db.u64("SELECT count() FROM t").await, 10);
}

#[tokio::test]
async fn shutdown_flushes_what_it_holds() {
    let db = TestDb::new("shutdown").await;
    table(&db, None).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.batching.max_rows = 1_000_000;
    c.batching.linger = Duration::from_secs(3600);
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    let h = ing.handle();
    for i in 0..777 {
        h.send(ev(i)).await.unwrap();
    }
    assert_eq!(db.u64("SELECT count() FROM t").await, 0);
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_committed, 777);
    assert_eq!(db.u64("SELECT count() FROM t").await, 777);
    // The handle is closed now and gives the row back.
    match h.send(ev(1)).await {
        Err(chasync_core::SendError(row)) => assert_eq!(row.id, 1),
        Ok(()) => panic!("accepted a row after shutdown"),
    }
    assert!(matches!(h.flush().await, Err(Error::Closed)));
}

#[tokio::test]
async fn dropping_every_handle_still_commits_accepted_rows() {
    let db = TestDb::new("drop").await;
    table(&db, None).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.batching.max_rows = 1_000_000;
    c.batching.linger = Duration::from_secs(3600);
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    let h = ing.handle();
    let producer = tokio::spawn(async move {
        for i in 0..300 {
            h.send(ev(i)).await.unwrap();
        }
    });
    producer.await.unwrap();
    drop(ing);
    let mut landed = 0;
    for _ in 0..100 {
        landed = db.u64("SELECT count() FROM t").await;
        if landed == 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(landed, 300);
}

#[tokio::test]
async fn a_million_rows_land_exactly() {
    let db = TestDb::new("million").await;
    table(&db, Some("UUID")).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.batching.max_rows = 100_000;
    c.delivery.max_concurrency = 4;
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    let mut producers = Vec::new();
    for p in 0..4u64 {
        let h = ing.handle();
        producers.push(tokio::spawn(async move {
            for i in (p..1_000_000).step_by(4) {
                h.send(ev(i)).await.unwrap();
            }
        }));
    }
    for p in producers {
        p.await.unwrap();
    }
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_committed, 1_000_000);
    assert_eq!(stats.rows_dead_lettered, 0);
    assert_eq!(db.u64("SELECT count() FROM t").await, 1_000_000);
    assert_eq!(db.u64("SELECT uniqExact(id) FROM t").await, 1_000_000);
    assert_eq!(db.u64(HASH).await, db.u64(&expected_hash(1_000_000)).await);
}

#[tokio::test]
async fn a_missing_table_or_bad_password_is_a_clear_error_at_start() {
    let db = TestDb::new("start").await;
    let dlq = tempfile::tempdir().unwrap();
    let err = Ingestor::<Ev>::start(db.config("nope", dlq.path()))
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains(&format!("{}.nope does not exist", db.name)),
        "{err}"
    );

    table(&db, None).await;
    let mut c = db.config("t", dlq.path());
    c.clickhouse.user = Some("chasync_test".into());
    c.clickhouse.password = Some(chasync_core::Secret::new("wrong-password"));
    let err = Ingestor::<Ev>::start(c.clone()).await.err().unwrap();
    assert_eq!(err.code(), Some(516), "{err}"); // AUTHENTICATION_FAILED
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(!err.to_string().contains("wrong-password"));

    // The second user with its real password can insert.
    c.clickhouse.password = Some(chasync_core::Secret::new(
        std::env::var("CH_TEST_PASSWORD").unwrap_or_else(|_| "chasync-secret".into()),
    ));
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    ing.handle().send(ev(1)).await.unwrap();
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_committed, 1);
    assert_eq!(db.u64("SELECT count() FROM t").await, 1);
}

#[test]
fn config_is_validated() {
    let mut c = Config::new("http://127.0.0.1:1", "t");
    c.batching.max_rows = 0;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt.block_on(Ingestor::<Ev>::start(c)).err().unwrap();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[tokio::test]
async fn an_ack_resolves_once_its_rows_are_committed_or_dead_lettered() {
    let db = TestDb::new("ack").await;
    table(&db, None).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.batching.max_rows = 300;
    c.batching.linger = Duration::from_millis(100);
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    let h = ing.handle();
    let ack = h.send_acked((0..1000).map(ev)).await.unwrap();
    ack.wait().await.unwrap();
    // Committed means visible: no flush needed.
    assert_eq!(db.u64("SELECT count() FROM t").await, 1000);
    ing.shutdown().await.unwrap();

    // The same through a table that refuses one column: the ack reports the dead letters.
    let ing = Ingestor::<WithExtra>::start(db.config("t", dlq.path()))
        .await
        .unwrap();
    let rows = (0..10).map(|i| WithExtra {
        id: i,
        name: String::new(),
        value: 0.0,
        ts: 0,
        extra: String::new(),
    });
    let err = ing
        .handle()
        .send_acked(rows)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap_err();
    match err {
        Error::DeadLettered {
            rows, last_error, ..
        } => {
            assert_eq!(rows, 10);
            assert!(last_error.contains("extra"), "{last_error}");
        }
        other => panic!("{other}"),
    }
    ing.shutdown().await.unwrap();
}

/// `seal` sends the batch being filled at once (the linger here is an hour) and reports
/// nothing: a later flush still reports what was dead-lettered.
#[tokio::test]
async fn seal_sends_the_open_batch_now_and_leaves_the_report_to_flush() {
    let db = TestDb::new("seal").await;
    table(&db, None).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.batching.max_rows = 100_000;
    c.batching.linger = Duration::from_secs(3600);
    let ing = Ingestor::<Ev>::start(c.clone()).await.unwrap();
    let h = ing.handle();
    let ack = h.send_acked((0..10).map(ev)).await.unwrap();
    h.seal().await.unwrap();
    tokio::time::timeout(Duration::from_secs(120), ack.wait())
        .await
        .expect("sealed rows are sent without waiting for the linger")
        .unwrap();
    assert_eq!(db.u64("SELECT count() FROM t").await, 10);
    ing.shutdown().await.unwrap();

    let ing = Ingestor::<WithExtra>::start(c).await.unwrap();
    let h = ing.handle();
    let rows = (0..3).map(|i| WithExtra {
        id: i,
        name: String::new(),
        value: 0.0,
        ts: 0,
        extra: String::new(),
    });
    let ack = h.send_acked(rows).await.unwrap();
    h.seal().await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(120), ack.wait())
        .await
        .expect("sealed rows end without waiting for the linger")
        .unwrap_err();
    assert!(matches!(err, Error::DeadLettered { rows: 3, .. }), "{err}");
    // The seal reported nothing, so the flush does.
    match h.flush().await {
        Err(Error::DeadLettered { rows, .. }) => assert_eq!(rows, 3),
        other => panic!("the flush must report the dead letters: {other:?}"),
    }
    ing.shutdown().await.unwrap();
    assert_eq!(db.u64("SELECT count() FROM t").await, 10);
}

/// Several acknowledgements share a batch that holds one bad row: after the batch is split to
/// isolate it, each acknowledgement hears only of its own rows (no error for rows that landed).
#[tokio::test]
async fn acks_sharing_a_batch_hear_only_of_their_own_rows() {
    use chasync_core::{JsonEachRow, PipelineBuilder};
    let db = TestDb::new("acksplit").await;
    table(&db, None).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.batching.max_rows = 1000;
    c.batching.linger = Duration::from_millis(200);
    let p = PipelineBuilder::new(c)
        .start(|t| JsonEachRow::new(t.insert_id(), Vec::new()))
        .await
        .unwrap();
    let h = p.handle();
    let line =
        |i: u64| bytes::Bytes::from(format!(r#"{{"id":{i},"name":"n","value":1.5,"ts":0}}"#));
    let mut acks = Vec::new();
    for k in 0..8u64 {
        let rows: Vec<bytes::Bytes> = (k * 10..k * 10 + 10)
            .map(|i| {
                if i == 53 {
                    bytes::Bytes::from_static(br#"{"id":"not a number"}"#)
                } else {
                    line(i)
                }
            })
            .collect();
        acks.push(h.send_acked(rows).await.unwrap());
    }
    let mut outcomes = Vec::new();
    for ack in acks {
        outcomes.push(ack.wait().await);
    }
    for (k, outcome) in outcomes.iter().enumerate() {
        if k == 5 {
            match outcome {
                Err(Error::DeadLettered {
                    rows,
                    code,
                    last_error,
                    ..
                }) => {
                    assert_eq!(*rows, 1, "only the bad row: {last_error}");
                    assert!(
                        matches!(code, Some(6 | 26 | 27 | 38 | 72 | 117)),
                        "{code:?} {last_error}"
                    );
                }
                other => panic!("ack {k}: {other:?}"),
            }
        } else {
            assert!(outcome.is_ok(), "ack {k}: {outcome:?}");
        }
    }
    assert_eq!(db.u64("SELECT count() FROM t").await, 79);
    assert_eq!(db.u64("SELECT countIf(id = 53) FROM t").await, 0);
    p.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_dispatcher_takes_batches_formed_elsewhere() {
    use chasync_core::{Batcher, Limits, Target};
    let db = TestDb::new("dispatcher").await;
    table(&db, None).await;
    let dlq = tempfile::tempdir().unwrap();
    let c = db.config("t", dlq.path());
    let dispatcher = chasync_core::Dispatcher::start(&c).unwrap();
    let mut batcher = Batcher::new(
        chasync_core::RowBinary::<Ev>::new(None),
        Limits {
            max_rows: 250,
            max_bytes: 1 << 20,
            linger: Duration::from_secs(60),
        },
        Target::new(db.name.as_str(), "t", StreamId::named("wal")),
    );
    let mut acks = Vec::new();
    for i in 0..1000 {
        if let (Some(batch), _) = batcher.push(ev(i)) {
            acks.push(dispatcher.submit(batch.clone()).await.unwrap());
            // The same batch twice (a replay): deduplicated by its id.
            acks.push(dispatcher.submit(batch).await.unwrap());
        }
    }
    for ack in acks {
        ack.wait().await.unwrap();
    }
    let stats = dispatcher.shutdown().await.unwrap();
    assert_eq!(stats.batches_committed, 8);
    assert_eq!(db.u64("SELECT count() FROM t").await, 1000);
    assert_eq!(db.u64(HASH).await, db.u64(&expected_hash(1000)).await);
}

#[tokio::test]
async fn send_all_moves_rows_in_chunks_through_a_small_queue() {
    let db = TestDb::new("sendall").await;
    table(&db, None).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.batching.queue_rows = 8;
    c.batching.max_rows = 3000;
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    let h = ing.handle();
    h.send_all((0..10_000).map(ev)).await.unwrap();
    assert_eq!(h.stats().rows_accepted, 10_000);
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_committed, 10_000);
    assert_eq!(db.u64(HASH).await, db.u64(&expected_hash(10_000)).await);
    // After shutdown every row comes back.
    let err = h.send_all((0..5).map(ev)).await.unwrap_err();
    assert_eq!(err.0.len(), 5);
}

// Writers: buffered producers. Rows encoded on the producer's side must land exactly once
// with the right `_insert_id`, whatever happens to the writer (idle, dropped, cancelled
// mid-hand-off, flushed from elsewhere, outliving shutdown).

/// A writer test's configuration: no linger unless the test sets one.
fn writer_config(db: &TestDb, dlq: &std::path::Path) -> Config {
    let mut c = db.config("t", dlq);
    c.batching.linger = Duration::from_secs(3600);
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
        let mut c = writer_config(&db, dlq.path());
        c.batching.max_rows = 1000;
        c.delivery.stream_id = Some(StreamId::named("writer-ids"));
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
    let mut c = writer_config(&db, dlq.path());
    c.batching.linger = Duration::from_millis(200);
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
    let mut c = writer_config(&db, dlq.path());
    c.batching.linger = Duration::from_millis(100);
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
    let ing = Ingestor::<Ev>::start(writer_config(&db, dlq.path()))
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
    let ing = Ingestor::<Ev>::start(writer_config(&db, dlq.path()))
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
    let mut c = writer_config(&db, dlq.path());
    c.batching.max_rows = 500;
    c.delivery.max_concurrency = 1;
    c.batching.queue_rows = 100;
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
    let ing = DynIngestor::start_dynamic(writer_config(&db, dlq.path()), NativeOptions::default())
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
    let ing = Ingestor::<PickyRow>::start(writer_config(&db, dlq.path()))
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
    let spool = DeadLetterSpool::new(dlq.path());
    let entries = spool.list().unwrap();
    let text = format!("{entries:?}");
    assert!(text.contains("13 is refused"), "{text}");
}
