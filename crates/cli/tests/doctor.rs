//! `chasync doctor` against the real server.

mod common;

use common::{TestDb, chasync, run, run_cmd};

#[tokio::test]
async fn a_healthy_table_gets_a_clean_report() {
    let db = TestDb::new("healthy").await;
    db.exec(
        "CREATE TABLE t (id UInt64, _insert_id UUID) ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 100",
    )
    .await;
    db.exec("INSERT INTO t (id) SELECT number FROM numbers(10)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let table = db.t("t");
    let r = run(dir.path(), &["doctor", "--table", &table]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Insert exceptions (last 24h"), "{r:?}");
    assert!(r.stdout.contains(&format!("[ok] parts: at most 1 active parts per partition of {table}, delay at 1000 / throw at 3000")), "{r:?}");
    assert!(
        r.stdout.contains("[ok] exceptions: no failed inserts"),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("0 critical, 0 warning(s), 0 info"),
        "{r:?}"
    );

    let r = run(
        dir.path(),
        &[
            "--json",
            "doctor",
            "--table",
            &table,
            "--planned-connections",
            "16",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let v = r.json();
    assert_eq!(v["table"]["total_active_parts"], 1);
    assert_eq!(v["table"]["engine"], "MergeTree");
    assert_eq!(v["table"]["has_insert_id"], true);
    assert_eq!(v["table"]["non_replicated_deduplication_window"], 100);
    assert_eq!(v["insert_exceptions"].as_array().unwrap().len(), 0);
    assert_eq!(v["connections"]["planned"], 16);
    assert!(
        v["connections"]["metrics"]["HTTPConnection"]
            .as_i64()
            .unwrap()
            >= 1,
        "{v}"
    );
    assert!(
        v["connections"]["metrics"].get("TCPConnection").is_some(),
        "{v}"
    );
    assert_eq!(v["limits"]["planned_connections"], 16);
    assert_eq!(
        v["limits"]["nofile_soft"].as_u64(),
        Some(
            rustix::process::getrlimit(rustix::process::Resource::Nofile)
                .current
                .unwrap()
        )
    );
    for f in v["findings"].as_array().unwrap() {
        assert_eq!(f["severity"], "ok", "{f}");
    }
}

#[tokio::test]
async fn a_table_near_too_many_parts_is_named_with_its_thresholds_and_advice() {
    let db = TestDb::new("parts").await;
    db.exec(
        "CREATE TABLE t (d Date, x UInt64) ENGINE = MergeTree PARTITION BY toYYYYMM(d) \
         ORDER BY x SETTINGS parts_to_delay_insert = 4, parts_to_throw_insert = 7, \
         max_delay_to_insert = 1",
    )
    .await;
    db.exec("SYSTEM STOP MERGES t").await;
    for i in 0..5 {
        db.exec(&format!("INSERT INTO t VALUES ('2026-11-05', {i})"))
            .await;
    }
    // Another partition, well under the thresholds.
    db.exec("INSERT INTO t VALUES ('2026-10-01', 1)").await;
    assert_eq!(
        db.u64("SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = 't' AND active AND partition = '202611'").await,
        5
    );
    let dir = tempfile::tempdir().unwrap();
    let table = db.t("t");
    let r = run(dir.path(), &["doctor", "--table", &table]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stdout.contains(&format!(
            "[WARNING] parts: 5 active parts in partition 202611 of {table}, delay at 4 / throw at 7: inserts are being delayed"
        )),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains("advice: raise --max-rows or lower --max-concurrency"),
        "{r:?}"
    );
    assert!(!r.stdout.contains("partition 202610 of"), "{r:?}");
    // Without a dedup window, a lost answer is looked up in the query log before a resend.
    assert!(
        r.stdout.contains(&format!(
            "[ok] delivery: {table} (MergeTree, no dedup window) for user default: exactly once: \
             before a batch whose answer was lost is sent again, system.processes and \
             system.query_log tell whether it landed"
        )),
        "{r:?}"
    );

    // Up to the throw threshold: critical; the next insert fails and shows as an exception.
    db.exec("INSERT INTO t VALUES ('2026-11-05', 5)").await;
    db.exec("INSERT INTO t VALUES ('2026-11-05', 6)").await;
    let err = db
        .client
        .query("INSERT INTO t VALUES ('2026-11-05', 7)")
        .execute()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("TOO_MANY_PARTS"), "{err}");
    let r = run(dir.path(), &["--json", "doctor", "--table", &table]);
    assert_eq!(r.code, 4, "{r:?}");
    let v = r.json();
    assert_eq!(v["table"]["parts_to_delay_insert"], 4);
    assert_eq!(v["table"]["parts_to_throw_insert"], 7);
    assert_eq!(v["table"]["partitions"][0]["partition"], "202611");
    assert_eq!(v["table"]["partitions"][0]["active_parts"], 7);
    assert_eq!(v["table"]["partitions"][1]["active_parts"], 1);
    let first = &v["findings"][0];
    assert_eq!(first["severity"], "critical", "{v}");
    assert_eq!(
        first["message"],
        format!(
            "7 active parts in partition 202611 of {table}, delay at 4 / throw at 7: inserts fail with TOO_MANY_PARTS (252)"
        )
    );
    assert!(first["advice"].as_str().unwrap().contains("--max-rows"));
    let exceptions = v["insert_exceptions"].as_array().unwrap();
    assert_eq!(exceptions.len(), 1, "{v}");
    assert_eq!(exceptions[0]["code"], 252);
    assert_eq!(exceptions[0]["name"], "TOO_MANY_PARTS");
}

#[tokio::test]
async fn a_failed_insert_shows_in_the_exceptions_with_advice() {
    let db = TestDb::new("exc").await;
    db.exec(
        "CREATE TABLE t (id UInt64) ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 100",
    )
    .await;
    let query_id = uuid::Uuid::new_v4().to_string();
    let err = db
        .client
        .query("INSERT INTO t (id, nope) VALUES (1, 2)")
        .with_setting("query_id", &query_id)
        .execute()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NO_SUCH_COLUMN_IN_TABLE"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let table = db.t("t");
    let r = run(dir.path(), &["--json", "doctor", "--table", &table]);
    assert_eq!(r.code, 4, "{r:?}");
    let v = r.json();
    let ex = v["insert_exceptions"].as_array().unwrap();
    assert_eq!(ex.len(), 1, "{v}");
    assert_eq!(ex[0]["query_id"], query_id.as_str());
    assert_eq!(ex[0]["code"], 16);
    assert_eq!(ex[0]["kind"], "ExceptionBeforeStart");
    assert!(
        ex[0]["exception"]
            .as_str()
            .unwrap()
            .contains("No such column nope")
    );

    let r = run(dir.path(), &["doctor", "--table", &table]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stdout.contains(&query_id), "{r:?}");
    assert!(r.stdout.contains("16 NO_SUCH_COLUMN_IN_TABLE"), "{r:?}");
    assert!(
        r.stdout.contains("[WARNING] exceptions: 1 failed insert(s) with error 16 (NO_SUCH_COLUMN_IN_TABLE) in the last 24h"),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains("ADD COLUMN) or the data, then `chasync dlq replay`"),
        "{r:?}"
    );
    // Another table's failure is not this table's.
    let other = db.t("other");
    db.exec("CREATE TABLE other (id UInt64) ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 100").await;
    let r = run(dir.path(), &["--json", "doctor", "--table", &other]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["insert_exceptions"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_missing_table_is_critical() {
    let db = TestDb::new("missing").await;
    let dir = tempfile::tempdir().unwrap();
    let table = db.t("nope");
    let r = run(dir.path(), &["doctor", "--table", &table]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stdout
            .contains(&format!("[CRITICAL] table: table {table} does not exist")),
        "{r:?}"
    );
}

/// A user who may insert but not flush or read the query log (the test server's
/// `chasync_restricted`, on a server of the test's own): the table gets at-least-once, and the
/// report says so as a warning with the grants that are missing; sections the user may not
/// read are named, not fatal.
#[tokio::test]
async fn a_user_without_access_to_the_query_log_is_warned_that_retries_may_store_rows_twice() {
    let server = chasync_testkit::server::PrivateServer::start();
    let admin = clickhouse::Client::default().with_url(server.url());
    for sql in [
        "CREATE DATABASE chasync_restricted",
        "CREATE TABLE chasync_restricted.t (id UInt64) ENGINE = MergeTree ORDER BY id",
    ] {
        admin.query(sql).execute().await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let doctor = |json: bool| {
        let mut cmd = chasync(dir.path());
        cmd.env("CHASYNC_URL", server.url()).args([
            "--user",
            "chasync_restricted",
            "--password",
            "restricted-secret",
        ]);
        if json {
            cmd.arg("--json");
        }
        run_cmd(cmd.args(["doctor", "--table", "chasync_restricted.t"]))
    };
    let r = doctor(false);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stdout.contains(
            "[WARNING] delivery: chasync_restricted.t (MergeTree, no dedup window) for user \
             chasync_restricted: AT LEAST ONCE: a batch whose answer was lost is sent again \
             unchecked and may be stored twice, because user chasync_restricted may not flush \
             the query log (GRANT SYSTEM FLUSH LOGS ON *.* TO chasync_restricted)"
        ),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains("non_replicated_deduplication_window = 1000"),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("[info] parts: cannot read system.parts"),
        "{r:?}"
    );
    let v = doctor(true).json();
    assert_eq!(v["table"]["guarantee"]["guarantee"], "at_least_once", "{v}");
    assert_eq!(v["table"]["guarantee"]["user"], "chasync_restricted", "{v}");
    assert_eq!(v["findings"][0]["section"], "delivery", "{v}");
    assert_eq!(v["findings"][0]["severity"], "warning", "{v}");

    // A load of a few rows ends after the engine has said what the table gets.
    let r = run_cmd(
        chasync(dir.path())
            .env("CHASYNC_URL", server.url())
            .args([
                "--user",
                "chasync_restricted",
                "--password",
                "restricted-secret",
            ])
            .args([
                "insert",
                "--table",
                "chasync_restricted.t",
                "--format",
                "ndjson",
                "-",
            ])
            .write_stdin("{\"id\": 1}\n{\"id\": 2}\n"),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("AT LEAST ONCE") && r.stderr.contains("GRANT SYSTEM FLUSH LOGS"),
        "{r:?}"
    );
}
