//! Dead letters of every kind the CLI writes, through a real outage of inserts, replayed
//! exactly: the same statement, settings, user and dedup token.

mod common;

use std::path::Path;

use chasync_core::{DeadLetterSpool, EntryKind, RECORD_VERSION};
use chasync_testkit::proxy::{Fault, FaultProxy};
use common::{Run, TestDb, chasync, run_cmd};

const COLUMNS: &str = "(id UInt64, name String, d Date, v Float64)";
const HASH: &str = "sum(cityHash64(id, name, d, v))";

/// Runs the binary off the runtime (the proxy runs on it).
async fn run_off(dir: &Path, args: &[&str]) -> Run {
    let (dir, args): (std::path::PathBuf, Vec<String>) = (
        dir.to_path_buf(),
        args.iter().map(|s| s.to_string()).collect(),
    );
    tokio::task::spawn_blocking(move || run_cmd(chasync(&dir).args(&args)))
        .await
        .unwrap()
}

async fn export(db: &TestDb, format: &str) -> Vec<u8> {
    let sql = format!("SELECT * FROM src ORDER BY id FORMAT {format}");
    let mut cursor = db.client.query(&sql).fetch_bytes(format).unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = cursor.next().await.unwrap() {
        out.extend_from_slice(&chunk);
    }
    out
}

async fn source(db: &TestDb, rows: u64) {
    db.exec(&format!(
        "CREATE TABLE src {COLUMNS} ENGINE = MergeTree ORDER BY id"
    ))
    .await;
    db.exec(&format!(
        "INSERT INTO src SELECT number, concat('n\"\\t,', toString(number)), \
         toDate('2024-01-01') + number % 300, number / 7 FROM numbers({rows})"
    ))
    .await;
}

async fn target(db: &TestDb, name: &str) {
    db.exec(&format!(
        "CREATE TABLE {name} {COLUMNS} ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 1000"
    ))
    .await;
}

async fn same_as_src(db: &TestDb, table: &str) {
    assert_eq!(
        db.u64(&format!("SELECT count() FROM {table}")).await,
        db.u64("SELECT count() FROM src").await,
        "{table}"
    );
    assert_eq!(
        db.u64(&format!("SELECT {HASH} FROM {table}")).await,
        db.u64(&format!("SELECT {HASH} FROM src")).await,
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_dead_letter_replays_exactly_after_an_outage() {
    let db = TestDb::new("replay_kinds").await;
    source(&db, 3000).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // NDJSON with lines the client converts (RowBinaryWithDefaults) and lines it passes
    // through (a number where a string is expected: JSONEachRow), CSV, TSV, and NDJSON sent
    // as JSONEachRow throughout.
    let mut ndjson = export(&db, "JSONEachRow").await;
    ndjson.extend_from_slice(b"{\"id\":3000,\"name\":5,\"d\":\"2024-02-02\",\"v\":1.5}\n");
    db.exec(
        "INSERT INTO src SELECT 3000, '5', toDate('2024-02-02'), 1.5 \
         SETTINGS async_insert = 0",
    )
    .await;
    let mut cases = vec![
        ("ndjson", "t_ndjson", ndjson.clone(), vec![]),
        ("ndjson", "t_plain", ndjson, vec!["--no-convert"]),
    ];
    // src has one more row now: the CSV and TSV exports include it.
    cases.push(("csv", "t_csv", export(&db, "CSVWithNames").await, vec![]));
    cases.push(("tsv", "t_tsv", export(&db, "TSVWithNames").await, vec![]));

    let proxy = FaultProxy::start(&common::url(), vec![]).await;
    proxy.set_default(Fault::ResetInserts);
    for (ext, table, data, extra) in &cases {
        target(&db, table).await;
        let file = d.join(format!("{table}.{ext}"));
        std::fs::write(&file, data).unwrap();
        let spool = format!("spool-{table}");
        let (t, url) = (db.t(table), proxy.url());
        let mut args = vec![
            "--url",
            &url,
            "--quiet",
            "insert",
            "--table",
            &t,
            "--retries",
            "1",
            "--max-rows",
            "1000",
            "--spool-dir",
            &spool,
        ];
        args.extend(extra.iter().copied());
        let file = file.to_string_lossy().into_owned();
        args.push(&file);
        let r = run_off(d, &args).await;
        assert_eq!(r.code, 3, "{table}: {r:?}");
        assert_eq!(db.u64(&format!("SELECT count() FROM {table}")).await, 0);
        let records = DeadLetterSpool::new(d.join(&spool)).list().unwrap();
        assert!(!records.is_empty(), "{table}");
        for r in &records {
            assert_eq!(r.kind, EntryKind::Batch);
            assert_eq!(r.version, RECORD_VERSION);
            let insert = r.insert.as_ref().expect("the exact insert");
            assert_eq!(insert.dedup_token, r.id.to_string());
            assert_eq!(insert.query_id, r.id.to_string());
            assert_eq!(insert.user, "default");
            assert!(insert.statement.ends_with(&format!("FORMAT {}", r.format)));
            assert!(
                insert
                    .settings
                    .contains(&("input_format_skip_unknown_fields".into(), "0".into())),
                "{insert:?}"
            );
        }
        let formats: std::collections::BTreeSet<String> =
            records.iter().map(|r| r.format.clone()).collect();
        let expected: &[&str] = match *table {
            "t_ndjson" => &["JSONEachRow", "RowBinaryWithDefaults"],
            "t_plain" => &["JSONEachRow"],
            "t_csv" => &["CSV"],
            _ => &["TabSeparated"],
        };
        assert_eq!(
            formats.iter().map(String::as_str).collect::<Vec<_>>(),
            expected,
            "{table}"
        );
        // The server is back: replay lands exactly the rows of the file, once.
        let r = run_off(d, &["--json", "dlq", "replay", "--spool-dir", &spool]).await;
        assert_eq!(r.code, 0, "{table}: {r:?}");
        assert_eq!(r.json()["failed"].as_array().unwrap().len(), 0);
        same_as_src(&db, table).await;
        assert!(
            DeadLetterSpool::new(d.join(&spool))
                .list()
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_refused_for_an_unknown_field_stay_refused_on_replay() {
    let db = TestDb::new("replay_unknown").await;
    db.exec(
        "CREATE TABLE t (id UInt64, name String) ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 1000",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = d.join("x.ndjson");
    std::fs::write(
        &file,
        "{\"id\":1,\"name\":\"a\"}\n{\"id\":2,\"name\":\"b\",\"bogus\":1}\n{\"id\":3,\"name\":\"c\"}\n",
    )
    .unwrap();
    let t = db.t("t");
    let file = file.to_string_lossy().into_owned();
    let r = run_off(d, &["--quiet", "insert", "--table", &t, &file]).await;
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(db.u64("SELECT count() FROM t").await, 2);
    let spool = DeadLetterSpool::new(d.join("chasync-spool"));
    let records = spool.list().unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].format, "JSONEachRow");
    assert!(records[0].error.contains("bogus"), "{:?}", records[0].error);

    // The server's default (skip unknown fields) would land it with the field dropped; the
    // recorded insert refuses it again, and the entry stays.
    for _ in 0..2 {
        let r = run_off(d, &["dlq", "replay", "--retries", "0"]).await;
        assert_eq!(r.code, 3, "{r:?}");
        assert!(r.stdout.contains("failed again:"), "{r:?}");
        assert!(r.stdout.contains("bogus"), "{r:?}");
        assert_eq!(spool.list().unwrap().len(), 1);
        assert_eq!(db.u64("SELECT count() FROM t").await, 2);
    }

    // An entry of the same insert as an older chasync wrote it (no version, no insert, no
    // settings) is sent strict too: it stays.
    let mut old: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            d.join("chasync-spool")
                .join(format!("{}.json", records[0].id)),
        )
        .unwrap(),
    )
    .unwrap();
    let o = old.as_object_mut().unwrap();
    for k in ["version", "insert", "settings", "user"] {
        o.remove(k);
    }
    std::fs::write(
        d.join("chasync-spool")
            .join(format!("{}.json", records[0].id)),
        serde_json::to_vec(&old).unwrap(),
    )
    .unwrap();
    assert_eq!(spool.list().unwrap()[0].version, 1);
    let r = run_off(d, &["dlq", "replay", "--retries", "0"]).await;
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stdout.contains("older chasync"), "{r:?}");
    assert_eq!(spool.list().unwrap().len(), 1);
    assert_eq!(db.u64("SELECT count() FROM t").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_of_another_user_are_replayed_only_when_allowed() {
    let db = TestDb::new("replay_user").await;
    db.exec(
        "CREATE TABLE t (id UInt64, name String) ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 1000",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = d.join("x.csv");
    std::fs::write(&file, "id,name\n1,a\n2,b\n").unwrap();
    let proxy = FaultProxy::start(&common::url(), vec![]).await;
    proxy.set_default(Fault::ResetInserts);
    let (t, url) = (db.t("t"), proxy.url());
    let file = file.to_string_lossy().into_owned();
    let r = run_off(
        d,
        &[
            "--url",
            &url,
            "--user",
            "chasync_test",
            "--password",
            "chasync-secret",
            "--quiet",
            "insert",
            "--table",
            &t,
            "--retries",
            "0",
            &file,
        ],
    )
    .await;
    assert_eq!(r.code, 3, "{r:?}");
    let spool = DeadLetterSpool::new(d.join("chasync-spool"));
    let record = spool.list().unwrap().remove(0);
    assert_eq!(record.insert.as_ref().unwrap().user, "chasync_test");
    let json =
        std::fs::read_to_string(d.join(format!("chasync-spool/{}.json", record.id))).unwrap();
    assert!(!json.contains("chasync-secret"), "no password in the spool");

    // Replayed as `default`: refused, with what to do.
    let r = run_off(d, &["dlq", "replay"]).await;
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stdout.contains("recorded for user \"chasync_test\""),
        "{r:?}"
    );
    assert!(r.stdout.contains("--as-user chasync_test"), "{r:?}");
    assert_eq!(db.u64("SELECT count() FROM t").await, 0);
    assert_eq!(spool.list().unwrap().len(), 1);
    // As the recorded user, with its own password: lands.
    let r = run_off(
        d,
        &[
            "--user",
            "chasync_test",
            "--password",
            "chasync-secret",
            "dlq",
            "replay",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(db.u64("SELECT count() FROM t").await, 2);
    assert!(spool.list().unwrap().is_empty());

    // Allowed explicitly: another user replays it. The same file into the same table gives
    // the same batch ids: deduplicated.
    std::fs::create_dir_all(d.join("again")).unwrap();
    let r = run_off(
        d,
        &[
            "--url",
            &url,
            "--user",
            "chasync_test",
            "--password",
            "chasync-secret",
            "--quiet",
            "insert",
            "--table",
            &t,
            "--retries",
            "0",
            "--spool-dir",
            "again",
            &file,
        ],
    )
    .await;
    assert_eq!(r.code, 3, "{r:?}");
    let r = run_off(
        d,
        &[
            "dlq",
            "replay",
            "--spool-dir",
            "again",
            "--as-user",
            "chasync_test",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.matches("replayed 1 batch(es)").count(), 1, "{r:?}");
    assert_eq!(db.u64("SELECT count() FROM t").await, 2);
}
