//! The JSONEachRow pass-through pipeline against the real server.

use chasync_testkit as common;

use bytes::Bytes;
use chasync_core::JsonEachRow;
use chasync_core::{DeadLetterSpool, ErrorKind, PipelineBuilder, StreamId};
use common::TestDb;

#[tokio::test]
async fn json_rows_land_with_defaults_insert_ids_and_bad_rows_isolated() {
    let db = TestDb::new("json").await;
    db.exec(
        "CREATE TABLE t (id UInt64, name String, doubled UInt64 DEFAULT id * 2, \
         _insert_id UUID) ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 1000",
    )
    .await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.delivery.stream_id = Some(StreamId::named("json"));
    c.batching.max_rows = 1000;
    let p = PipelineBuilder::new(c)
        .start(|t| JsonEachRow::new(t.insert_id(), Vec::new()))
        .await
        .unwrap();
    let h = p.handle();
    for i in 0..3000u64 {
        let line = if i == 1234 {
            r#"{"id": "not a number", "name": "bad"}"#.to_string()
        } else {
            format!(r#"{{"id": {i}, "name": "n{i}"}}"#)
        };
        h.send(Bytes::from(line)).await.unwrap();
    }
    let err = h.flush().await.unwrap_err();
    assert!(
        matches!(err, chasync_core::Error::DeadLettered { rows: 1, .. }),
        "{err}"
    );
    let stats = p.shutdown().await.unwrap();
    assert_eq!(stats.rows_committed, 2999);
    assert_eq!(db.u64("SELECT count() FROM t").await, 2999);
    assert_eq!(
        db.u64("SELECT count() FROM t WHERE doubled = id * 2").await,
        2999
    );
    assert_eq!(db.u64("SELECT uniqExact(_insert_id) FROM t").await, 3);
    assert_eq!(
        db.u64(&format!(
            "SELECT count() FROM t WHERE _insert_id = '{}'",
            StreamId::named("json").batch_id(0)
        ))
        .await,
        1000
    );
    let entries = DeadLetterSpool::new(dlq.path()).list().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].error_kind,
        ErrorKind::Data,
        "{}",
        entries[0].error
    );
    let payload = DeadLetterSpool::new(dlq.path())
        .payload(&entries[0])
        .unwrap();
    assert!(
        String::from_utf8_lossy(&payload).contains("not a number"),
        "{payload:?}"
    );
}
