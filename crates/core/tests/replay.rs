//! Dead letters written while the server refuses inserts, replayed exactly once it takes them:
//! typed rows (RowBinary), dynamic rows (Native), and bodies of any ClickHouse format sent as
//! a given user with given settings (what the daemon's gateway spools).

use chasync_testkit as common;

use std::time::Duration;

use bytes::Bytes;
use chasync_core::{
    Bodies, Body, Config, DeadLetterSpool, DynIngestor, DynRow, Format, Ingestor, Joint,
    PipelineBuilder, RECORD_VERSION, ReplayOptions, replay, replay_with,
};
use common::TestDb;
use common::proxy::{Fault, FaultProxy};

#[derive(clickhouse::Row, serde::Serialize)]
struct Ev {
    id: u64,
    name: String,
}

const HASH: &str = "SELECT sum(cityHash64(id, name)) FROM t";
const EXPECTED: &str = "SELECT sum(cityHash64(number, concat('n', toString(number)))) \
     FROM numbers(3000)";

async fn table(db: &TestDb) {
    db.exec(
        "CREATE TABLE t (id UInt64, name String) ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 1000",
    )
    .await;
}

/// A configuration through `proxy`, one attempt per batch, 1000-row batches.
fn outage_config(db: &TestDb, proxy: &FaultProxy, spool: &std::path::Path) -> Config {
    let mut c = db.config("t", spool);
    c.clickhouse.url = vec![proxy.url()];
    c.delivery.max_attempts = 1;
    c.batching.max_rows = 1000;
    c.batching.linger = Duration::from_secs(60);
    c
}

async fn replay_lands_all(db: &TestDb, spool: &std::path::Path, format: &str) {
    let records = DeadLetterSpool::new(spool).list().unwrap();
    assert!(!records.is_empty());
    for r in &records {
        assert_eq!(r.format, format);
        assert_eq!(r.version, RECORD_VERSION);
        assert_eq!(r.insert.as_ref().unwrap().dedup_token, r.id.to_string());
    }
    assert_eq!(db.u64("SELECT count() FROM t").await, 0);
    let mut c = db.config("t", spool);
    c.delivery.max_attempts = 3;
    let report = replay(&c, &DeadLetterSpool::new(spool)).await.unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.rows, 3000);
    assert_eq!(db.u64("SELECT count() FROM t").await, 3000);
    assert_eq!(db.u64(HASH).await, db.u64(EXPECTED).await);
    assert!(DeadLetterSpool::new(spool).list().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_rows_spooled_in_an_outage_replay_exactly() {
    let db = TestDb::new("replay_rb").await;
    table(&db).await;
    let proxy = FaultProxy::start(&common::url(), vec![]).await;
    proxy.set_default(Fault::ResetInserts);
    let spool = tempfile::tempdir().unwrap();
    let ing = Ingestor::<Ev>::start(outage_config(&db, &proxy, spool.path()))
        .await
        .unwrap();
    for id in 0..3000 {
        ing.handle()
            .send(Ev {
                id,
                name: format!("n{id}"),
            })
            .await
            .unwrap();
    }
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_dead_lettered, 3000);
    replay_lands_all(&db, spool.path(), "RowBinary").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_rows_spooled_in_an_outage_replay_exactly() {
    let db = TestDb::new("replay_native").await;
    table(&db).await;
    let proxy = FaultProxy::start(&common::url(), vec![]).await;
    proxy.set_default(Fault::ResetInserts);
    let spool = tempfile::tempdir().unwrap();
    let ing =
        DynIngestor::start_dynamic(outage_config(&db, &proxy, spool.path()), Default::default())
            .await
            .unwrap();
    for id in 0..3000u64 {
        let row = DynRow::new().with("id", id).with("name", format!("n{id}"));
        ing.handle().send(row.into()).await.unwrap();
    }
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_dead_lettered, 3000);
    replay_lands_all(&db, spool.path(), "Native").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_bodies_replay_as_sent_and_only_for_their_user() {
    let db = TestDb::new("replay_other").await;
    table(&db).await;
    let proxy = FaultProxy::start(&common::url(), vec![]).await;
    proxy.set_default(Fault::ResetInserts);
    let spool = tempfile::tempdir().unwrap();
    // As the gateway sends them: a format of the client's, its columns, its settings, its
    // user. `input_format_allow_errors_num` would let a bad row through; it must come back on
    // replay as it was sent, as must the user.
    let mut c = outage_config(&db, &proxy, spool.path());
    c.clickhouse.user = Some("chasync_test".into());
    c.clickhouse.password = Some(chasync_core::Secret::new("chasync-secret"));
    c.clickhouse
        .settings
        .insert("input_format_allow_errors_num".into(), "1".into());
    let format = Format::named("JSONCompactEachRow");
    assert_eq!(format, Format::Other("JSONCompactEachRow"));
    let pipeline = PipelineBuilder::new(c)
        .start_with_encoder(Bodies::new(
            format,
            vec!["id".into(), "name".into()],
            Bytes::new(),
            Joint::Newline,
            false,
        ))
        .unwrap();
    for chunk in 0..30u64 {
        let mut text = String::new();
        for id in chunk * 100..(chunk + 1) * 100 {
            text.push_str(&format!("[{id}, \"n{id}\"]\n"));
        }
        if chunk == 7 {
            // One bad row, let through by the client's setting.
            text.push_str("[\"not a number\", \"x\"]\n");
        }
        let rows = if chunk == 7 { 101 } else { 100 };
        pipeline
            .handle()
            .send(Body {
                bytes: Bytes::from(text),
                rows,
            })
            .await
            .unwrap();
    }
    let stats = pipeline.shutdown().await.unwrap();
    assert_eq!(stats.rows_dead_lettered, 3001);
    let records = DeadLetterSpool::new(spool.path()).list().unwrap();
    for r in &records {
        assert_eq!(r.format, "JSONCompactEachRow");
        let insert = r.insert.as_ref().unwrap();
        assert_eq!(insert.user, "chasync_test");
        assert!(
            insert
                .settings
                .contains(&("input_format_allow_errors_num".into(), "1".into())),
            "{insert:?}"
        );
        assert!(
            insert
                .statement
                .ends_with("(`id`, `name`) FORMAT JSONCompactEachRow"),
            "{}",
            insert.statement
        );
    }

    // As `default`: kept, nothing sent.
    let mut as_default = db.config("t", spool.path());
    as_default.delivery.max_attempts = 3;
    let report = replay(&as_default, &DeadLetterSpool::new(spool.path()))
        .await
        .unwrap();
    assert_eq!(report.failed.len(), records.len(), "{report:?}");
    assert!(report.failed[0].1.contains("chasync_test"), "{report:?}");
    assert_eq!(db.u64("SELECT count() FROM t").await, 0);
    // Allowed for that user: sent as `default`, with the recorded settings (the bad row is
    // skipped as the client asked).
    let report = replay_with(
        &as_default,
        &DeadLetterSpool::new(spool.path()),
        &ReplayOptions {
            as_user: vec!["chasync_test".into()],
        },
    )
    .await
    .unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(db.u64("SELECT count() FROM t").await, 3000);
    assert_eq!(db.u64(HASH).await, db.u64(EXPECTED).await);
}
