//! The conventions of the command line: credentials in URLs, the environment and config file
//! layers, ClickHouse's format names with Parquet and Arrow input, log output, broken pipes,
//! help text, and ClickHouse settings checked at start; against the real server.

mod common;

use std::path::Path;
use std::sync::Arc;

use chasync_core::arrow::arrow_array::builder::{ListBuilder, StringBuilder};
use chasync_core::arrow::arrow_array::{
    ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray, TimestampMillisecondArray,
    UInt64Array,
};
use common::{Run, TestDb, chasync, closed_port, run, run_cmd};

/// The test user of the server under test and its password.
fn test_user() -> (String, String) {
    (
        std::env::var("CH_TEST_USER").unwrap_or_else(|_| "chasync_test".into()),
        std::env::var("CH_TEST_PASSWORD").unwrap_or_else(|_| "chasync-secret".into()),
    )
}

/// The server's URL with `user:password@` in it (percent-encoded).
fn url_with(user: &str, password: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let url = common::url();
    let (scheme, rest) = url.split_once("://").unwrap();
    format!("{scheme}://{}:{}@{rest}", enc(user), enc(password))
}

/// Every file under `dir`, as text.
fn files_text(dir: &Path) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.push_str(&files_text(&path));
        } else {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    out
}

/// The users of the finished inserts into `db.table`, from the query log.
async fn insert_users(db: &TestDb, table: &str) -> Vec<String> {
    db.exec("SYSTEM FLUSH LOGS").await;
    db.strings(&format!(
        "SELECT DISTINCT user FROM system.query_log WHERE query_kind = 'Insert' \
         AND type = 'QueryFinish' AND has(tables, '{}.{table}')",
        db.name
    ))
    .await
}

// ---------------------------------------------------------------------------------------
// Credentials in URLs

#[tokio::test]
async fn credentials_in_the_url_are_used_and_never_shown() {
    let db = TestDb::new("cliurl").await;
    db.exec("CREATE TABLE t (id UInt64, v UInt8, CONSTRAINT small CHECK v < 100) ENGINE = MergeTree ORDER BY id")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut rows = String::new();
    for i in 0..50 {
        // Row 7 breaks the constraint: refused by the server, dead-lettered.
        let v = if i == 7 { 200 } else { i };
        rows.push_str(&format!("{{\"id\":{i},\"v\":{v}}}\n"));
    }
    std::fs::write(dir.path().join("rows.ndjson"), rows).unwrap();
    let (user, password) = test_user();
    let url = url_with(&user, &password);
    let table = db.t("t");
    let r = run(
        dir.path(),
        &[
            "--url",
            &url,
            "--json",
            "insert",
            "--table",
            &table,
            "rows.ndjson",
        ],
    );
    assert_eq!(r.code, 3, "one row dead-lettered: {r:?}");
    assert_eq!(r.json()["rows_landed"], 49, "{r:?}");
    assert_eq!(insert_users(&db, "t").await, vec![user.clone()]);
    assert!(
        !r.stdout.contains(&password) && !r.stderr.contains(&password),
        "{r:?}"
    );
    let spooled = files_text(&dir.path().join("chasync-spool"));
    assert!(spooled.contains("VIOLATED_CONSTRAINT"), "{spooled}");
    assert!(
        !spooled.contains(&password),
        "no password in the spool: {spooled}"
    );

    // From CLICKHOUSE_URL, with the `chasync` variables unset.
    db.exec("CREATE TABLE u (id UInt64, v UInt8) ENGINE = MergeTree ORDER BY id")
        .await;
    let r = run_cmd(
        chasync(dir.path())
            .env_remove("CHASYNC_URL")
            .env("CLICKHOUSE_URL", &url)
            .args(["insert", "--table", &db.t("u"), "rows.ndjson"]),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(db.u64("SELECT count() FROM u").await, 50);
    assert_eq!(insert_users(&db, "u").await, vec![user.clone()]);

    // `chasync config` shows the user, the URL without its credentials, never the password.
    let r = run(dir.path(), &["--url", &url, "config"]);
    assert_eq!(r.code, 0, "{r:?}");
    let c = r.json();
    assert_eq!(c["clickhouse"]["user"], user.as_str(), "{r:?}");
    assert_eq!(c["clickhouse"]["password"], "***", "{r:?}");
    assert_eq!(
        c["clickhouse"]["url"][0],
        common::url().trim_end_matches('/')
    );
    assert!(!r.stdout.contains(&password), "{r:?}");
}

#[test]
fn a_wrong_password_in_the_url_names_the_user_not_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let (user, _) = test_user();
    let secret = "Zq8-url-secret-never-shown";
    std::fs::write(dir.path().join("rows.ndjson"), "{\"id\":1}\n").unwrap();
    let r = run(
        dir.path(),
        &[
            "--url",
            &url_with(&user, secret),
            "insert",
            "--table",
            "default.nowhere",
            "rows.ndjson",
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("AUTHENTICATION_FAILED"), "{r:?}");
    assert!(r.stderr.contains(&user), "the user is named: {r:?}");
    assert!(
        !r.stderr.contains(secret) && !r.stdout.contains(secret),
        "{r:?}"
    );
    assert!(
        !dir.path().join("chasync-spool").exists(),
        "nothing spooled: {r:?}"
    );
}

#[test]
fn credentials_given_twice_and_differently_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        &[
            "--url",
            "http://alice:s3cret-a@127.0.0.1:1",
            "--user",
            "bob",
            "config",
        ],
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("\"alice\"") && r.stderr.contains("\"bob\""),
        "{r:?}"
    );
    let r = run(
        dir.path(),
        &[
            "--url",
            "http://alice:s3cret-a@127.0.0.1:1",
            "--password",
            "s3cret-b",
            "config",
        ],
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("password"), "{r:?}");
    assert!(!r.stderr.contains("s3cret"), "{r:?}");
    // The same user twice is one user.
    let r = run(
        dir.path(),
        &[
            "--url",
            "http://alice:s3cret-a@127.0.0.1:1",
            "--user",
            "alice",
            "config",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    // A flag overrides the user of an environment variable's URL (a layer below).
    let r = run_cmd(
        chasync(dir.path())
            .env("CHASYNC_URL", "http://alice:s3cret-a@127.0.0.1:1")
            .args(["--user", "bob", "config"]),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["clickhouse"]["user"], "bob");
}

// ---------------------------------------------------------------------------------------
// Environment and config file

/// `chasync config` in `dir` with these variables (no `CHASYNC_URL` unless given).
fn config_with(dir: &Path, vars: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = chasync(dir);
    cmd.env_remove("CHASYNC_URL");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    run_cmd(cmd.arg("config").args(args))
}

#[test]
fn defaults_then_file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let field = |r: &Run, group: &str, name: &str| r.json()[group][name].clone();
    let url0 = |r: &Run| {
        r.json()["clickhouse"]["url"][0]
            .as_str()
            .unwrap()
            .to_string()
    };

    // Defaults.
    let r = config_with(d, &[], &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(url0(&r), "http://127.0.0.1:8123");
    assert_eq!(field(&r, "clickhouse", "database"), "default");
    assert_eq!(field(&r, "spool", "dir"), "chasync-spool");
    assert!(!r.stderr.contains("config file"), "{r:?}");

    // The user's file in ~/.config (HOME is the test's directory).
    let home_file = d.join(".config/chasync/config.toml");
    std::fs::create_dir_all(home_file.parent().unwrap()).unwrap();
    std::fs::write(
        &home_file,
        "[clickhouse]\nurl = \"http://home-file:1\"\ndatabase = \"db_home\"\n\
         [batching]\nmax_rows = 11\n[spool]\ndir = \"spool-home\"\n",
    )
    .unwrap();
    let r = config_with(d, &[], &[]);
    assert_eq!(url0(&r), "http://home-file:1", "{r:?}");
    assert_eq!(field(&r, "batching", "max_rows"), 11);
    assert!(
        r.stderr
            .contains(&format!("config file: {}", home_file.display())),
        "{r:?}"
    );

    // $XDG_CONFIG_HOME's file comes first.
    let xdg = d.join("xdg");
    let xdg_file = xdg.join("chasync/config.toml");
    std::fs::create_dir_all(xdg_file.parent().unwrap()).unwrap();
    std::fs::write(&xdg_file, "[clickhouse]\nurl = \"http://xdg-file:1\"\n").unwrap();
    let xdg_var = xdg.to_str().unwrap();
    let r = config_with(d, &[("XDG_CONFIG_HOME", xdg_var)], &[]);
    assert_eq!(url0(&r), "http://xdg-file:1", "{r:?}");
    assert_eq!(
        field(&r, "batching", "max_rows"),
        250_000,
        "one file, not both"
    );

    // CHASYNC_CONFIG names a file, and --config wins over it.
    let named = d.join("named.toml");
    std::fs::write(&named, "[clickhouse]\nurl = \"http://named-file:1\"\n").unwrap();
    let flag_file = d.join("flag.toml");
    std::fs::write(&flag_file, "[clickhouse]\nurl = \"http://flag-file:1\"\n").unwrap();
    let named_var = named.to_str().unwrap();
    let r = config_with(
        d,
        &[("XDG_CONFIG_HOME", xdg_var), ("CHASYNC_CONFIG", named_var)],
        &[],
    );
    assert_eq!(url0(&r), "http://named-file:1", "{r:?}");
    let r = config_with(
        d,
        &[("CHASYNC_CONFIG", named_var)],
        &["--config", flag_file.to_str().unwrap()],
    );
    assert_eq!(url0(&r), "http://flag-file:1", "{r:?}");
    // A --config that does not exist is an error, not a fallback.
    let r = config_with(d, &[], &["--config", "missing.toml"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("cannot read missing.toml"), "{r:?}");

    // The environment over the file: CLICKHOUSE_*, then CHASYNC_* over them.
    let r = config_with(
        d,
        &[
            ("CLICKHOUSE_URL", "http://ch-var:1"),
            ("CLICKHOUSE_DATABASE", "db_ch"),
            ("CHASYNC_DLQ_DIR", "spool-dlq-var"),
        ],
        &[],
    );
    assert_eq!(url0(&r), "http://ch-var:1", "{r:?}");
    assert_eq!(field(&r, "clickhouse", "database"), "db_ch");
    assert_eq!(field(&r, "spool", "dir"), "spool-dlq-var");
    assert_eq!(
        field(&r, "batching", "max_rows"),
        11,
        "the file's, not overridden"
    );
    let r = config_with(
        d,
        &[
            ("CLICKHOUSE_URL", "http://ch-var:1"),
            ("CHASYNC_URL", "http://chasync-var:1"),
            ("CLICKHOUSE_DATABASE", "db_ch"),
            ("CHASYNC_DATABASE", "db_chasync"),
            ("CHASYNC_DLQ_DIR", "spool-dlq-var"),
            ("CHASYNC_SPOOL_DIR", "spool-var"),
            ("CHASYNC_MAX_ROWS", "12"),
        ],
        &[],
    );
    assert_eq!(url0(&r), "http://chasync-var:1", "{r:?}");
    assert_eq!(field(&r, "clickhouse", "database"), "db_chasync");
    assert_eq!(field(&r, "spool", "dir"), "spool-var");
    assert_eq!(field(&r, "batching", "max_rows"), 12);

    // Flags over everything.
    let r = config_with(
        d,
        &[
            ("CHASYNC_URL", "http://chasync-var:1"),
            ("CHASYNC_MAX_ROWS", "12"),
        ],
        &[
            "--url",
            "http://flag:1",
            "--database",
            "db_flag",
            "--set",
            "max_rows=13",
        ],
    );
    assert_eq!(url0(&r), "http://flag:1", "{r:?}");
    assert_eq!(field(&r, "clickhouse", "database"), "db_flag");
    assert_eq!(field(&r, "batching", "max_rows"), 13);

    // A bad value in the environment names its variable.
    let r = config_with(d, &[("CHASYNC_MAX_ROWS", "lots")], &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("CHASYNC_MAX_ROWS"), "{r:?}");
}

#[test]
fn clickhouse_url_is_where_insert_goes() {
    // The issue: CLICKHOUSE_URL set, `chasync insert` went to 127.0.0.1:8123 all the same.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rows.ndjson"), "{\"id\":1}\n").unwrap();
    let closed = format!("http://127.0.0.1:{}", closed_port());
    let r = run_cmd(
        chasync(dir.path())
            .env_remove("CHASYNC_URL")
            .env("CLICKHOUSE_URL", &closed)
            .args(["insert", "--table", "default.t", "rows.ndjson"]),
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains(&format!("nothing answers at {closed}")),
        "{r:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Formats

const ROWS: u64 = 3000;
const BASE_SECS: i64 = 1_700_000_000;

fn name(i: u64) -> String {
    format!("name {i}, \"q\" é")
}

fn tags(i: u64) -> Vec<String> {
    (0..i % 3).map(|k| format!("t{}", (i + k) % 5)).collect()
}

fn n(i: u64) -> Option<i32> {
    (!i.is_multiple_of(5)).then(|| i as i32 - 100)
}

/// `YYYY-MM-DD hh:mm:ss.sss` of seconds since the epoch, UTC.
fn civil(secs: i64, millis: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{millis:03}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn ts_millis(i: u64) -> i64 {
    (BASE_SECS + i as i64 * 37) * 1000 + (i as i64 % 1000)
}

fn ts_text(i: u64) -> String {
    let ms = ts_millis(i);
    civil(ms.div_euclid(1000), ms.rem_euclid(1000))
}

fn value(i: u64) -> f64 {
    i as f64 * 0.25 - 7.5
}

fn ch_array(tags: &[String]) -> String {
    let items: Vec<String> = tags.iter().map(|t| format!("'{t}'")).collect();
    format!("[{}]", items.join(","))
}

fn write_text_inputs(dir: &Path) {
    let mut ndjson = String::new();
    let mut csv = String::from("id,name,ts,value,tags,n\n");
    let mut tsv = String::new();
    for i in 0..ROWS {
        let n_json = n(i).map_or("null".to_string(), |v| v.to_string());
        let n_text = n(i).map_or("\\N".to_string(), |v| v.to_string());
        ndjson.push_str(&format!(
            "{{\"id\":{i},\"name\":{},\"ts\":\"{}\",\"value\":{},\"tags\":{},\"n\":{n_json}}}\n",
            serde_json::to_string(&name(i)).unwrap(),
            ts_text(i),
            value(i),
            serde_json::to_string(&tags(i)).unwrap(),
        ));
        csv.push_str(&format!(
            "{i},\"{}\",{},{},\"{}\",{n_text}\n",
            name(i).replace('"', "\"\""),
            ts_text(i),
            value(i),
            ch_array(&tags(i)),
        ));
        tsv.push_str(&format!(
            "{i}\t{}\t{}\t{}\t{}\t{n_text}\n",
            name(i),
            ts_text(i),
            value(i),
            ch_array(&tags(i)),
        ));
    }
    std::fs::write(dir.join("rows.ndjson"), ndjson).unwrap();
    std::fs::write(dir.join("rows.csv"), csv).unwrap();
    std::fs::write(dir.join("rows.txt"), tsv).unwrap();
}

/// The rows as Arrow record batches of `per_batch` rows.
fn record_batches(per_batch: u64) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    let mut lo = 0;
    while lo < ROWS {
        let hi = (lo + per_batch).min(ROWS);
        let ids: Vec<u64> = (lo..hi).collect();
        let mut tag_lists = ListBuilder::new(StringBuilder::new());
        for &i in &ids {
            for t in tags(i) {
                tag_lists.values().append_value(t);
            }
            tag_lists.append(true);
        }
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("id", Arc::new(UInt64Array::from(ids.clone()))),
            (
                "name",
                Arc::new(StringArray::from_iter_values(ids.iter().map(|&i| name(i)))),
            ),
            (
                "ts",
                Arc::new(
                    TimestampMillisecondArray::from(
                        ids.iter().map(|&i| ts_millis(i)).collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
            ),
            (
                "value",
                Arc::new(Float64Array::from(
                    ids.iter().map(|&i| value(i)).collect::<Vec<_>>(),
                )),
            ),
            ("tags", Arc::new(tag_lists.finish())),
            (
                "n",
                Arc::new(Int32Array::from(
                    ids.iter().map(|&i| n(i)).collect::<Vec<_>>(),
                )),
            ),
        ];
        out.push(RecordBatch::try_from_iter(columns).unwrap());
        lo = hi;
    }
    out
}

fn write_columnar_inputs(dir: &Path) {
    let batches = record_batches(700);
    let schema = batches[0].schema();
    // Parquet, in row groups of 1000 rows.
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(1000))
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let file = std::fs::File::create(dir.join("rows.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    // An Arrow IPC file and an Arrow IPC stream.
    let file = std::fs::File::create(dir.join("rows.feather")).unwrap();
    let mut w = arrow_ipc::writer::FileWriter::try_new(file, &schema).unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    let file = std::fs::File::create(dir.join("rows.arrows")).unwrap();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(file, &schema).unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
}

/// `count()` and a checksum of every row of a table.
async fn count_and_checksum(db: &TestDb, table: &str) -> (u64, u64) {
    let count = db.u64(&format!("SELECT count() FROM {table}")).await;
    let sum = db
        .u64(&format!(
            "SELECT sum(cityHash64(id, name, toString(ts), value, toString(tags), \
             ifNull(toString(n), 'NULL'))) FROM {table}"
        ))
        .await;
    (count, sum)
}

/// Runs `chasync insert` with `stdin` (if any) as its standard input.
fn insert(dir: &Path, args: &[&str], stdin: Option<&Path>) -> Run {
    let mut cmd = chasync(dir);
    cmd.args(["--json", "insert"]).args(args);
    if let Some(path) = stdin {
        cmd.pipe_stdin(path).unwrap();
    }
    run_cmd(&mut cmd)
}

#[tokio::test]
async fn the_same_rows_from_ndjson_csv_tsv_parquet_and_arrow_land_the_same() {
    let db = TestDb::new("formats").await;
    let tables = [
        "ndjson",
        "csv",
        "tsv",
        "parquet",
        "arrow",
        "arrows",
        "arrows_stdin",
    ];
    for t in tables {
        db.exec(&format!(
            "CREATE TABLE {t} (id UInt64, name String, ts DateTime64(3, 'UTC'), \
             value Float64, tags Array(String), n Nullable(Int32)) ENGINE = MergeTree ORDER BY id"
        ))
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_text_inputs(d);
    write_columnar_inputs(d);
    let t = |name: &str| db.t(name);
    let runs = [
        // ClickHouse's names, on stdin.
        insert(
            d,
            &["--table", &t("ndjson"), "--format", "JSONEachRow", "-"],
            Some(&d.join("rows.ndjson")),
        ),
        insert(
            d,
            &["--table", &t("csv"), "--format", "CSVWithNames", "rows.csv"],
            None,
        ),
        // TSV as ClickHouse means it: no header line.
        insert(
            d,
            &["--table", &t("tsv"), "--format", "TSV", "rows.txt"],
            None,
        ),
        // Parquet by its extension.
        insert(d, &["--table", &t("parquet"), "rows.parquet"], None),
        insert(
            d,
            &["--table", &t("arrow"), "--format", "Arrow", "rows.feather"],
            None,
        ),
        insert(d, &["--table", &t("arrows"), "rows.arrows"], None),
        insert(
            d,
            &[
                "--table",
                &t("arrows_stdin"),
                "--format",
                "ArrowStream",
                "-",
            ],
            Some(&d.join("rows.arrows")),
        ),
    ];
    for (table, r) in tables.iter().zip(&runs) {
        assert_eq!(r.code, 0, "{table}: {r:?}");
        assert_eq!(r.json()["rows_landed"], ROWS, "{table}: {r:?}");
        assert_eq!(r.json()["rows_dead_lettered"], 0, "{table}: {r:?}");
    }
    assert_eq!(runs[3].json()["encoding"], "Native", "{:?}", runs[3]);
    let expected = count_and_checksum(&db, "ndjson").await;
    assert_eq!(expected.0, ROWS);
    for table in &tables[1..] {
        assert_eq!(
            count_and_checksum(&db, table).await,
            expected,
            "{table} differs from ndjson"
        );
    }
    // And the rows are the rows that were written.
    let row: Vec<String> = db
        .strings(
            "SELECT concat(name, '|', toString(ts), '|', toString(value), '|', \
             toString(tags), '|', ifNull(toString(n), 'NULL')) FROM parquet WHERE id IN (7, 10) \
             ORDER BY id",
        )
        .await;
    assert_eq!(
        row,
        vec![
            format!("{}|{}|{}|['t2']|-93", name(7), ts_text(7), value(7)),
            format!("{}|{}|{}|['t0']|NULL", name(10), ts_text(10), value(10)),
        ]
    );
}

#[tokio::test]
async fn parquet_compressions_and_extra_columns() {
    let db = TestDb::new("pqcodecs").await;
    let codecs = [
        ("uncompressed", parquet::basic::Compression::UNCOMPRESSED),
        (
            "zstd",
            parquet::basic::Compression::ZSTD(Default::default()),
        ),
        (
            "gzip",
            parquet::basic::Compression::GZIP(Default::default()),
        ),
        ("lz4", parquet::basic::Compression::LZ4_RAW),
        ("snappy", parquet::basic::Compression::SNAPPY),
    ];
    let dir = tempfile::tempdir().unwrap();
    let batches = record_batches(1000);
    for (name, codec) in codecs {
        db.exec(&format!(
            "CREATE TABLE {name} (id UInt64, name String, ts DateTime64(3, 'UTC'), \
             value Float64, tags Array(String), n Nullable(Int32)) ENGINE = MergeTree ORDER BY id"
        ))
        .await;
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(codec)
            .build();
        let path = dir.path().join(format!("{name}.parquet"));
        let file = std::fs::File::create(&path).unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(file, batches[0].schema(), Some(props)).unwrap();
        for b in &batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
        let r = insert(
            dir.path(),
            &["--table", &db.t(name), path.to_str().unwrap()],
            None,
        );
        assert_eq!(r.code, 0, "{name}: {r:?}");
    }
    let expected = count_and_checksum(&db, "uncompressed").await;
    assert_eq!(expected.0, ROWS);
    for (name, _) in &codecs[1..] {
        assert_eq!(count_and_checksum(&db, name).await, expected, "{name}");
    }
    // A column the table does not have: its rows are dead-lettered with the reason, or with
    // --skip-unknown-fields the column is left out.
    db.exec("CREATE TABLE narrow (id UInt64) ENGINE = MergeTree ORDER BY id")
        .await;
    let path = dir.path().join("snappy.parquet");
    let r = insert(
        dir.path(),
        &["--table", &db.t("narrow"), path.to_str().unwrap()],
        None,
    );
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(r.json()["rows_dead_lettered"], ROWS, "{r:?}");
    assert!(
        files_text(&dir.path().join("chasync-spool")).contains("name"),
        "{r:?}"
    );
    let r = insert(
        dir.path(),
        &[
            "--table",
            &db.t("narrow"),
            "--skip-unknown-fields",
            path.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(db.u64("SELECT count() FROM narrow").await, ROWS);
}

#[tokio::test]
async fn format_names_mean_what_they_mean_and_mistakes_are_clear() {
    let db = TestDb::new("fmtnames").await;
    db.exec("CREATE TABLE t (id UInt64, name String) ENGINE = MergeTree ORDER BY id")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("with_header.csv"), "id,name\n1,a\n2,b\n").unwrap();
    std::fs::write(d.join("no_header.csv"), "3,c\n4,d\n").unwrap();
    let table = db.t("t");
    // ClickHouse's CSV has no header line; chasync's csv has one unless --no-header.
    let r = insert(
        d,
        &["--table", &table, "--format", "CSV", "no_header.csv"],
        None,
    );
    assert_eq!(r.code, 0, "{r:?}");
    let r = insert(
        d,
        &["--table", &table, "--format", "csv", "with_header.csv"],
        None,
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        db.strings("SELECT name FROM t ORDER BY id").await,
        vec!["a", "b", "c", "d"]
    );
    // ClickHouse's names in any case and its aliases, as ClickHouse takes them.
    std::fs::write(d.join("more.tsv"), "name\tid\ne\t5\n").unwrap();
    let r = insert(
        d,
        &["--table", &table, "--format", "tsvwithnames", "more.tsv"],
        None,
    );
    assert_eq!(r.code, 0, "{r:?}");
    std::fs::write(d.join("more.json"), "{\"id\":6,\"name\":\"f\"}\n").unwrap();
    let r = insert(
        d,
        &["--table", &table, "--format", "JSONLines", "more.json"],
        None,
    );
    assert_eq!(r.code, 0, "{r:?}");
    // Unknown names, formats insert does not read, contradictions, and what columnar input
    // cannot do.
    let r = insert(
        d,
        &["--table", &table, "--format", "CSVWithNamez", "a.csv"],
        None,
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("unknown format \"CSVWithNamez\""),
        "{r:?}"
    );
    let r = insert(d, &["--table", &table, "--format", "values", "a.csv"], None);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("does not read ClickHouse's Values format"),
        "{r:?}"
    );
    let r = insert(
        d,
        &[
            "--table",
            &table,
            "--format",
            "CSVWithNames",
            "--no-header",
            "with_header.csv",
        ],
        None,
    );
    assert_eq!(r.code, 2, "{r:?}");
    let r = insert(d, &["--table", &table, "--format", "Parquet", "-"], None);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("needs a file"), "{r:?}");
    std::fs::write(d.join("x.parquet"), "not parquet at all").unwrap();
    let r = insert(d, &["--table", &table, "--strict", "x.parquet"], None);
    assert_eq!(r.code, 2, "{r:?}");
    let r = insert(d, &["--table", &table, "x.parquet"], None);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("x.parquet: not a Parquet file"), "{r:?}");
    assert_eq!(
        db.u64("SELECT count() FROM t").await,
        6,
        "nothing more landed"
    );
}

#[tokio::test]
async fn parquet_rows_that_cannot_be_converted_are_dead_lettered_with_their_reason() {
    let db = TestDb::new("pqbad").await;
    db.exec("CREATE TABLE t (id UInt64, day Date) ENGINE = MergeTree ORDER BY id")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(UInt64Array::from(vec![1, 2, 3])) as ArrayRef),
        (
            "day",
            Arc::new(StringArray::from(vec![
                "2026-01-02",
                "not a day",
                "2026-01-04",
            ])),
        ),
    ])
    .unwrap();
    let file = std::fs::File::create(dir.path().join("bad.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let r = insert(dir.path(), &["--table", &db.t("t"), "bad.parquet"], None);
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(r.json()["rows_landed"], 2, "{r:?}");
    assert_eq!(r.json()["rows_dead_lettered"], 1, "{r:?}");
    let spooled = files_text(&dir.path().join("chasync-spool"));
    assert!(spooled.contains("not a day"), "{spooled}");
    assert_eq!(db.u64("SELECT count() FROM t").await, 2);
}

// ---------------------------------------------------------------------------------------
// Settings

#[tokio::test]
async fn unknown_settings_stop_insert_before_any_batch() {
    let db = TestDb::new("clisettings").await;
    db.exec("CREATE TABLE t (id UInt64) ENGINE = MergeTree ORDER BY id")
        .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rows.ndjson"), "{\"id\":1}\n{\"id\":2}\n").unwrap();
    let table = db.t("t");
    for (setting, says) in [
        ("no_such_setting=1", "`no_such_setting` is not a setting"),
        ("insert_deduplicat=1", "did you mean `insert_deduplicate`"),
        ("async_insert=maybe", "CANNOT_PARSE_BOOL"),
    ] {
        let r = run(
            dir.path(),
            &[
                "insert",
                "--table",
                &table,
                "--setting",
                setting,
                "rows.ndjson",
            ],
        );
        assert_eq!(r.code, 1, "{setting}: {r:?}");
        assert!(r.stderr.contains(says), "{setting}: {r:?}");
    }
    // The same from a Parquet input (the columnar path) and from the config file.
    write_columnar_one(dir.path());
    let r = run(
        dir.path(),
        &[
            "insert",
            "--table",
            &table,
            "--setting",
            "no_such_setting=1",
            "one.parquet",
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("`no_such_setting` is not a setting"),
        "{r:?}"
    );
    std::fs::write(
        dir.path().join("c.toml"),
        "[clickhouse]\nsettings = { no_such_setting = 1 }\n",
    )
    .unwrap();
    let r = run(
        dir.path(),
        &[
            "--config",
            "c.toml",
            "insert",
            "--table",
            &table,
            "rows.ndjson",
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("`no_such_setting` is not a setting"),
        "{r:?}"
    );
    assert_eq!(db.inserts("t").await, 0, "no insert was sent");
    assert!(
        !dir.path().join("chasync-spool").exists(),
        "nothing dead-lettered"
    );
    // A setting the server knows works.
    let r = run(
        dir.path(),
        &[
            "insert",
            "--table",
            &table,
            "--setting",
            "max_insert_threads=2",
            "rows.ndjson",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
}

fn write_columnar_one(dir: &Path) {
    let batch =
        RecordBatch::try_from_iter([("id", Arc::new(UInt64Array::from(vec![5u64])) as ArrayRef)])
            .unwrap();
    let file = std::fs::File::create(dir.join("one.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

// ---------------------------------------------------------------------------------------
// Logs

#[tokio::test]
async fn retries_and_back_off_show_at_debug_and_a_bad_rust_log_is_an_error() {
    let db = TestDb::new("clilog").await;
    // Two partitions in one insert block, at most one allowed: TOO_MANY_PARTS (252), which
    // is retried.
    db.exec("CREATE TABLE t (id UInt64) ENGINE = MergeTree PARTITION BY id ORDER BY id")
        .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rows.ndjson"), "{\"id\":1}\n{\"id\":2}\n").unwrap();
    let table = db.t("t");
    let args = |extra: &[&'static str]| {
        let mut a: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        a.extend(
            [
                "insert",
                "--table",
                &table,
                "--retries",
                "2",
                "--set",
                "initial_backoff=10ms",
                "--setting",
                "max_partitions_per_insert_block=1",
                "--setting",
                "throw_on_max_partitions_per_insert_block=1",
                "rows.ndjson",
            ]
            .map(String::from),
        );
        a
    };
    let r = run_cmd(chasync(dir.path()).args(args(&[])));
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        !r.stderr.contains("insert failed, retrying"),
        "quiet by default: {r:?}"
    );
    assert!(
        r.stderr.contains("insert failed, not retrying"),
        "warnings show: {r:?}"
    );
    let r = run_cmd(chasync(dir.path()).args(args(&["-vv"])));
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(
        r.stderr.matches("insert failed, retrying").count(),
        2,
        "{r:?}"
    );
    assert!(
        r.stderr.contains("TOO_MANY_PARTS") && r.stderr.contains("wait="),
        "{r:?}"
    );
    assert!(r.stderr.contains("DEBUG"), "debug lines too: {r:?}");
    // The same as JSON lines.
    let r = run_cmd(chasync(dir.path()).args(args(&["-v", "--log-format", "json"])));
    let retry_lines: Vec<serde_json::Value> = r
        .stderr
        .lines()
        .filter(|l| l.contains("insert failed, retrying"))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(retry_lines.len(), 2, "{r:?}");
    assert_eq!(retry_lines[0]["level"], "INFO");
    assert!(
        retry_lines[0]["fields"]["wait"].is_string(),
        "{:?}",
        retry_lines[0]
    );
    // RUST_LOG works, and one that does not parse is an error at start.
    let r = run_cmd(
        chasync(dir.path())
            .env("RUST_LOG", "warn,chasync_core=info")
            .args(args(&[])),
    );
    assert_eq!(
        r.stderr.matches("insert failed, retrying").count(),
        2,
        "{r:?}"
    );
    for bad in [&["--log-level", "chasync=loud"][..], &[]] {
        let r = run_cmd(
            chasync(dir.path())
                .env("RUST_LOG", "chasync_core=loud")
                .args(bad)
                .arg("config"),
        );
        assert_eq!(r.code, 2, "{r:?}");
        assert!(r.stderr.contains("is not a log filter"), "{r:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Broken pipes and help

/// Runs `chasync args` with a stdout pipe whose reading end is closed.
fn with_closed_stdout(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("chasync"));
    for var in common::OPTION_VARS {
        cmd.env_remove(var);
    }
    let out = cmd
        .env("CHASYNC_URL", common::url())
        .env("HOME", dir)
        .current_dir(dir)
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_quietly_with_141() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["config"][..],
        &["doctor", "--json"],
        &["doctor"],
        &["dlq", "list"],
        &["schema", "buffer", "--table", "system.one"],
    ] {
        let (code, stderr) = with_closed_stdout(dir.path(), args);
        assert_eq!(code, Some(141), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "quietly: {args:?}: {stderr}");
    }
    // Help goes to a closed pipe without a panic too.
    let (code, stderr) = with_closed_stdout(dir.path(), &["--help"]);
    assert!(!stderr.contains("panicked"), "{code:?}: {stderr}");
    assert_ne!(code, Some(101), "{stderr}");
    // And an open one still gets everything.
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("chasync"))
        .env("HOME", dir.path())
        .env_remove("XDG_CONFIG_HOME")
        .args(["config"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok());
}

#[test]
fn help_is_right_and_global_options_are_grouped() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(dir.path(), &["--help"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        !r.stdout.to_lowercase().contains("not implemented"),
        "{r:?}"
    );
    assert!(r.stdout.contains("Global options:"), "{r:?}");
    for cmd in ["insert", "doctor", "dlq", "bench", "schema", "config"] {
        let r = run(dir.path(), &[cmd, "--help"]);
        assert_eq!(r.code, 0, "{cmd}: {r:?}");
        assert!(
            !r.stdout.to_lowercase().contains("not implemented"),
            "{cmd}: {r:?}"
        );
        let globals = r
            .stdout
            .find("Global options:")
            .unwrap_or_else(|| panic!("{cmd}: {r:?}"));
        // Each global option once, in its own section after the command's own.
        for flag in [
            "--url <URL>",
            "--password <PASSWORD>",
            "--log-level",
            "--json",
        ] {
            assert_eq!(r.stdout.matches(flag).count(), 1, "{cmd} {flag}: {r:?}");
            assert!(
                r.stdout.find(flag).unwrap() > globals,
                "{cmd} {flag}: {r:?}"
            );
        }
    }
    let r = run(dir.path(), &["insert", "--help"]);
    assert!(r.stdout.find("--table").unwrap() < r.stdout.find("Global options:").unwrap());
    assert!(
        r.stdout.contains("CSVWithNames") && r.stdout.contains("Parquet"),
        "{r:?}"
    );
}
