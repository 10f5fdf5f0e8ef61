//! `chasync schema buffer` and `chasync bench` against the real server.

mod common;

use common::{TestDb, run};

const TARGET: &str = "CREATE TABLE t (id UInt64, ts DateTime64(3, 'UTC'), name LowCardinality(String), \
     tags Array(String), n Nullable(Int32) DEFAULT 3, m Map(String, UInt8)) \
     ENGINE = MergeTree ORDER BY id";

#[tokio::test]
async fn buffer_ddl_is_printed_then_applied_and_flushes_into_the_target() {
    let db = TestDb::new("buffer").await;
    db.exec(TARGET).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let table = db.t("t");
    let n = &db.name;

    let r = run(
        d,
        &["schema", "buffer", "--table", &table, "--min-rows", "100"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stdout.trim(),
        format!(
            "CREATE TABLE `{n}`.`t_buffer` AS `{n}`.`t` ENGINE = Buffer(`{n}`, `t`, 16, 10, 100, \
             100, 1000000, 10000000, 100000000);"
        )
    );
    assert_eq!(
        db.u64("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 't_buffer'").await,
        0,
        "printing creates nothing"
    );

    let r = run(d, &["schema", "buffer", "--table", &table, "--apply"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains(&format!(
            "created {n}.t_buffer (6 columns, the same as {table})"
        )),
        "{r:?}"
    );
    assert_eq!(db.columns("t_buffer").await, db.columns("t").await);
    assert_eq!(
        db.strings("SELECT engine FROM system.tables WHERE database = currentDatabase() AND name = 't_buffer'").await,
        vec!["Buffer".to_string()]
    );

    db.exec(
        "INSERT INTO t_buffer (id, ts, name, tags, m) SELECT number, toDateTime64(number, 3, 'UTC'), \
         toString(number % 7), [toString(number)], map('k', toUInt8(number % 200)) FROM numbers(1000)",
    )
    .await;
    // Buffered, not yet in the target (thresholds far away) ...
    assert_eq!(db.u64("SELECT count() FROM t").await, 0);
    // ... until flushed.
    db.exec("OPTIMIZE TABLE t_buffer").await;
    assert_eq!(db.u64("SELECT count() FROM t").await, 1000);
    assert_eq!(
        db.u64("SELECT sum(cityHash64(id, ts, name, tags, assumeNotNull(n), m)) FROM t").await,
        db.u64(
            "SELECT sum(cityHash64(number, toDateTime64(number, 3, 'UTC'), toLowCardinality(toString(number % 7)), \
             [toString(number)], toInt32(3), map('k', toUInt8(number % 200)))) FROM numbers(1000)"
        )
        .await
    );

    // A custom name, as JSON; the same name again is the server's error.
    let r = run(
        d,
        &[
            "--json",
            "schema",
            "buffer",
            "--table",
            &table,
            "--buffer-table",
            "buf2",
            "--apply",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let v = r.json();
    assert_eq!(v["applied"], true);
    assert_eq!(v["buffer_table"], format!("{n}.buf2"));
    assert_eq!(v["columns"].as_array().unwrap().len(), 6);
    assert_eq!(v["columns"][1]["type"], "DateTime64(3, 'UTC')");
    assert_eq!(db.columns("buf2").await, db.columns("t").await);
    let r = run(
        d,
        &[
            "schema",
            "buffer",
            "--table",
            &table,
            "--buffer-table",
            "buf2",
            "--apply",
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("TABLE_ALREADY_EXISTS"), "{r:?}");

    // Bad thresholds and a missing target.
    let r = run(
        d,
        &["schema", "buffer", "--table", &table, "--min-time", "200"],
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("--min-time (200) is larger than --max-time (100)"),
        "{r:?}"
    );
    let r = run(d, &["schema", "buffer", "--table", &db.t("nope")]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("does not exist"), "{r:?}");
}

/// The bench rows, computed by the server.
fn expected_hash(start: u64, n: u64) -> String {
    format!(
        "SELECT sum(cityHash64(number, toDateTime(1700000000 + number % 86400), \
         concat('n', toString(number % 1000)), (number % 1000) * 0.5)) FROM numbers({start}, {n})"
    )
}

#[tokio::test]
async fn bench_figures_match_what_landed() {
    let db = TestDb::new("bench").await;
    let dir = tempfile::tempdir().unwrap();
    let table = db.t("b");
    let r = run(
        dir.path(),
        &[
            "--json",
            "bench",
            "--table",
            &table,
            "--create",
            "--rows",
            "30000",
            "--batch-rows",
            "7000",
            "--start-id",
            "5",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let v = r.json();
    assert_eq!(v["rows_sent"], 30000);
    assert_eq!(v["rows_committed"], 30000);
    assert_eq!(db.u64("SELECT count() FROM b").await, 30000);
    assert_eq!(
        db.u64("SELECT sum(cityHash64(id, ts, name, value)) FROM b")
            .await,
        db.u64(&expected_hash(5, 30000)).await
    );
    // Every committed batch carries its own id in _insert_id.
    assert_eq!(
        v["batches"],
        db.u64("SELECT uniqExact(_insert_id) FROM b").await
    );
    assert!(v["batches"].as_u64().unwrap() >= 5, "{v}");
    assert_eq!(
        db.u64("SELECT max(c) FROM (SELECT count() AS c FROM b GROUP BY _insert_id)")
            .await,
        7000
    );
    assert_eq!(v["rows_dead_lettered"], 0);
    assert_eq!(v["stats"]["rows_committed"], 30000);
    let p50 = v["latency_ms_p50"].as_f64().unwrap();
    let p99 = v["latency_ms_p99"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= p99, "{v}");
    let elapsed = v["elapsed_s"].as_f64().unwrap();
    let rate = v["rows_per_s"].as_f64().unwrap();
    assert!((rate * elapsed - 30000.0).abs() < 1.0, "{v}");
    let mb = v["mb_per_s"].as_f64().unwrap();
    let bytes = v["stats"]["bytes_committed"].as_f64().unwrap();
    assert!((mb * elapsed * 1e6 - bytes).abs() < 1.0, "{v}");

    // Human output, and the table is reused without --create.
    let r = run(
        dir.path(),
        &[
            "bench",
            "--table",
            &table,
            "--rows",
            "1000",
            "--start-id",
            "30005",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("rows committed: 1000\n"), "{r:?}");
    assert!(
        r.stdout.contains("dead-lettered:  0 row(s) in 0 batch(es)"),
        "{r:?}"
    );
    assert_eq!(db.u64("SELECT count() FROM b").await, 31000);
    assert_eq!(
        db.u64("SELECT sum(cityHash64(id, ts, name, value)) FROM b")
            .await,
        db.u64(&expected_hash(5, 31000)).await
    );
}

#[tokio::test]
async fn bench_for_a_duration_at_a_rate() {
    let db = TestDb::new("rate").await;
    let dir = tempfile::tempdir().unwrap();
    let table = db.t("b");
    let r = run(
        dir.path(),
        &[
            "--json",
            "bench",
            "--table",
            &table,
            "--create",
            "--duration",
            "1s",
            "--rate",
            "2000",
            "--linger",
            "200ms",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let v = r.json();
    let sent = v["rows_sent"].as_u64().unwrap();
    // Paced: never ahead of 2000 rows/s (in steps of 20 rows), and not far behind.
    assert!((1000..=2020).contains(&sent), "{v}");
    assert_eq!(v["rows_committed"].as_u64().unwrap(), sent);
    assert_eq!(db.u64("SELECT count() FROM b").await, sent);
    assert_eq!(v["target_rate"], 2000.0);
    // Linger of 200 ms over ~1 s: several batches.
    assert!(v["batches"].as_u64().unwrap() >= 3, "{v}");
}

#[tokio::test]
async fn bench_needs_a_table_or_create_and_reports_dead_letters() {
    let db = TestDb::new("benchbad").await;
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        &["bench", "--table", &db.t("nope"), "--rows", "10"],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("does not exist"), "{r:?}");
    assert!(r.stderr.contains("hint: add --create"), "{r:?}");
    // A CHECK constraint every batch violates (469, a data error): dead-lettered, exit 3.
    db.exec("CREATE TABLE w (id UInt64, ts DateTime, name String, value Float64) ENGINE = MergeTree ORDER BY id").await;
    db.exec("ALTER TABLE w ADD CONSTRAINT big CHECK id >= 1000000")
        .await;
    let r = run(
        dir.path(),
        &[
            "--json",
            "bench",
            "--table",
            &db.t("w"),
            "--rows",
            "10",
            "--retries",
            "0",
            "--dlq-dir",
            "spool",
        ],
    );
    assert_eq!(r.code, 3, "{r:?}");
    let v = r.json();
    assert_eq!(v["rows_dead_lettered"], 10);
    assert_eq!(v["rows_committed"], 0);
    assert_eq!(db.u64("SELECT count() FROM w").await, 0);
    let r = run(dir.path(), &["--json", "dlq", "list", "--dlq-dir", "spool"]);
    assert_eq!(r.json()["entries"][0]["code"], 469);
}
