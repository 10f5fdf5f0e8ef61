//! `chasync insert` against the real server.

mod common;

use std::io::Write;

use common::{TestDb, chasync, run, run_cmd};

const TYPES: &str = "(id UInt64, big UInt256, neg Int128, s String, f Float64, \
     n Nullable(Int32), a Array(String), m Map(String, UInt64), t DateTime64(3, 'UTC'), \
     _insert_id UUID) ENGINE = MergeTree ORDER BY id \
     SETTINGS non_replicated_deduplication_window = 1000";

const HASH: &str = "sum(cityHash64(id, big, neg, s, f, isNull(n), ifNull(n, 0), a, m, t))";

async fn fill_source(db: &TestDb) {
    db.exec(&format!("CREATE TABLE src {TYPES}")).await;
    db.exec(&format!("CREATE TABLE dst {TYPES}")).await;
    db.exec(
        "INSERT INTO src (id, big, neg, s, f, n, a, m, t) SELECT number, \
         toUInt256('115792089237316195423570985008687907853269984665640564039457584007913129639935') - number, \
         toInt128('-170141183460469231731687303715884105728') + number, \
         if(number % 3 = 0, unhex('FFFE41C3'), concat('s\"\\\\\t', toString(number))), \
         number / 3, if(number % 5 = 0, NULL, toInt32(number)), [toString(number), 'x'], \
         map('k', number * 18446744073709), toDateTime64(number / 1000, 3, 'UTC') \
         FROM numbers(20000)",
    )
    .await;
}

async fn export(db: &TestDb, quote_64: bool) -> Vec<u8> {
    let sql = format!(
        "SELECT * EXCEPT _insert_id FROM src ORDER BY id FORMAT JSONEachRow \
         SETTINGS output_format_json_quote_64bit_integers = {}",
        quote_64 as u8
    );
    let mut cursor = db.client.query(&sql).fetch_bytes("JSONEachRow").unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = cursor.next().await.unwrap() {
        out.extend_from_slice(&chunk);
    }
    out
}

#[tokio::test]
async fn ndjson_written_by_clickhouse_loads_back_identically() {
    let db = TestDb::new("ndjson_rt").await;
    fill_source(&db).await;
    let dir = tempfile::tempdir().unwrap();
    for quote in [false, true] {
        db.exec("TRUNCATE TABLE dst").await;
        let data = export(&db, quote).await;
        assert!(data.windows(2).any(|w| w == [0xff, 0xfe]), "raw bytes kept");
        let file = dir.path().join(format!("src-{quote}.ndjson"));
        std::fs::write(&file, &data).unwrap();
        let r = run(
            dir.path(),
            &[
                "--quiet",
                "insert",
                "--table",
                &db.t("dst"),
                "--batch-rows",
                "5000",
                file.to_str().unwrap(),
            ],
        );
        assert_eq!(r.code, 0, "{r:?}");
        assert_eq!(db.u64("SELECT count() FROM dst").await, 20000);
        assert_eq!(
            db.u64(&format!("SELECT {HASH} FROM dst")).await,
            db.u64(&format!("SELECT {HASH} FROM src")).await,
            "quoted 64-bit integers: {quote}"
        );
        assert_eq!(db.u64("SELECT uniqExact(_insert_id) FROM dst").await, 4);
    }
}

async fn plain_table(db: &TestDb) {
    db.exec(
        "CREATE TABLE t (id UInt64, name String, v Float64 DEFAULT 1.5, _insert_id UUID) \
         ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 1000",
    )
    .await;
}

fn gzip(path: &std::path::Path, data: &[u8]) {
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(data).unwrap();
    enc.finish().unwrap();
}

#[tokio::test]
async fn csv_tsv_compressed_and_stdin_inputs_land_exactly() {
    let db = TestDb::new("formats").await;
    plain_table(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut csv = String::from("id,name\n");
    let mut tsv = String::from("id\tname\tv\n");
    let mut ndjson = String::new();
    for i in 0..1000 {
        csv.push_str(&format!("{i},\"c,{i}\"\n"));
        tsv.push_str(&format!("{}\tt\\t{i}\t2.5\n", 1000 + i));
        ndjson.push_str(&format!("{{\"id\":{},\"name\":\"j{i}\"}}\n", 2000 + i));
    }
    gzip(&d.join("a.csv.gz"), csv.as_bytes());
    std::fs::write(
        d.join("b.tsv.zst"),
        zstd::encode_all(tsv.as_bytes(), 3).unwrap(),
    )
    .unwrap();
    let t = db.t("t");
    let r = run(d, &["--quiet", "insert", "--table", &t, "a.csv.gz"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = run(d, &["--quiet", "insert", "--table", &t, "b.tsv.zst"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = run_cmd(
        chasync(d)
            .args(["--json", "insert", "--table", &t, "--format", "ndjson", "-"])
            .write_stdin(ndjson),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let summary = r.json();
    assert_eq!(summary["rows_read"], 1000);
    assert_eq!(summary["rows_landed"], 1000);
    assert_eq!(summary["rows_dead_lettered"], 0);

    assert_eq!(db.u64("SELECT count() FROM t").await, 3000);
    // CSV: the quoted comma survives, the omitted column takes its DEFAULT.
    assert_eq!(
        db.u64("SELECT count() FROM t WHERE id < 1000 AND name = concat('c,', toString(id)) AND v = 1.5")
            .await,
        1000
    );
    // TSV: escapes are the server's to undo.
    assert_eq!(
        db.u64("SELECT count() FROM t WHERE id >= 1000 AND id < 2000 AND name = concat('t\\t', toString(id - 1000)) AND v = 2.5")
            .await,
        1000
    );
    assert_eq!(
        db.u64(
            "SELECT count() FROM t WHERE id >= 2000 AND name = concat('j', toString(id - 2000))"
        )
        .await,
        1000
    );
}

#[tokio::test]
async fn malformed_lines_are_dead_lettered_with_file_and_line_and_the_rest_lands() {
    let db = TestDb::new("malformed").await;
    plain_table(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut data = String::new();
    for i in 0..500 {
        match i {
            100 => data.push_str("{\"id\": 100, \"name\": \n"),
            200 => data.push_str("[200]\n"),
            // Well-formed, but the server refuses it: an unknown column.
            300 => data.push_str("{\"id\": 300, \"nope\": 1}\n"),
            // And a value the server cannot parse as UInt64.
            400 => data.push_str("{\"id\": \"four hundred\"}\n"),
            _ => data.push_str(&format!("{{\"id\": {i}, \"name\": \"n{i}\"}}\n")),
        }
    }
    std::fs::write(d.join("in.ndjson"), &data).unwrap();
    let r = run(
        d,
        &[
            "--json",
            "insert",
            "--table",
            &db.t("t"),
            "--dlq-dir",
            "dlq",
            "in.ndjson",
        ],
    );
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("in.ndjson:101: invalid JSON"), "{r:?}");
    assert!(
        r.stderr
            .contains("in.ndjson:201: invalid JSON: expected a JSON object"),
        "{r:?}"
    );
    let s = r.json();
    assert_eq!(s["rows_read"], 500);
    assert_eq!(s["rows_malformed"], 2);
    assert_eq!(s["rows_landed"], 496);
    assert_eq!(s["rows_dead_lettered"], 4);
    assert_eq!(db.u64("SELECT count() FROM t").await, 496);
    assert_eq!(
        db.u64("SELECT count() FROM t WHERE id IN (100, 200, 300, 400)")
            .await,
        0
    );
    // The spool holds the two malformed lines (with their places) and the two refused rows.
    let spool = chasync_core::DeadLetterSpool::new(d.join("dlq"));
    let entries = spool.list().unwrap();
    let mut texts = Vec::new();
    for e in &entries {
        texts.push(String::from_utf8_lossy(&spool.payload(e).unwrap()).into_owned());
    }
    let all = texts.join("\n")
        + &entries
            .iter()
            .map(|e| e.error.clone())
            .collect::<Vec<_>>()
            .join("\n");
    assert!(all.contains("in.ndjson:101"), "{all}");
    assert!(all.contains("in.ndjson:201"), "{all}");
    assert!(all.contains("\"nope\""), "{all}");
    assert!(all.contains("four hundred"), "{all}");
    assert_eq!(entries.iter().map(|e| e.rows).sum::<u64>(), 4);

    // --strict stops at the first malformed line.
    let r = run(
        d,
        &[
            "insert",
            "--table",
            &db.t("t"),
            "--strict",
            "--dlq-dir",
            "dlq2",
            "in.ndjson",
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("--strict: stopped at a malformed record: in.ndjson:101"),
        "{r:?}"
    );
    assert!(
        chasync_core::DeadLetterSpool::new(d.join("dlq2"))
            .list()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_missing_table_is_a_clear_error() {
    let db = TestDb::new("missing").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.ndjson"), "{\"id\":1}\n").unwrap();
    let r = run(
        dir.path(),
        &["insert", "--table", &db.t("nope"), "x.ndjson"],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("nope does not exist"), "{r:?}");
}

#[tokio::test]
async fn the_fast_path_converts_what_it_can_and_passes_the_rest_through_exactly() {
    let db = TestDb::new("fast_path").await;
    let ddl = "(id UInt64, s String, n Nullable(Int64), d DateTime64(3), \
         k UInt32 DEFAULT id * 2, _insert_id UUID) ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 1000";
    for t in ["fast", "slow", "par"] {
        db.exec(&format!("CREATE TABLE {t} {ddl}")).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut data = String::new();
    for i in 0..3000 {
        match i % 500 {
            // Outside the fast path: the server parses these (an object as a string, a
            // number as a string, an ISO date-time) or refuses them (a float for an integer).
            1 => data.push_str(&format!("{{\"id\": {i}, \"s\": {{\"a\": [1]}}}}\n")),
            2 => data.push_str(&format!("{{\"id\": {i}, \"s\": 12.5, \"n\": \"-7\"}}\n")),
            3 => data.push_str(&format!(
                "{{\"id\": {i}, \"d\": \"2024-01-02T03:04:05.5Z\"}}\n"
            )),
            4 => data.push_str(&format!("{{\"id\": {i}, \"k\": 1.0}}\n")),
            // Malformed: dead-lettered with its place.
            5 => data.push_str(&format!("{{\"id\": {i}, \"s\": \"x}}\n")),
            _ => data.push_str(&format!(
                "{{\"id\": \"{i}\", \"s\": \"s\\u00e9\\ud83d\\ude00{i}\", \"n\": {}, \
                 \"d\": \"2024-01-01 00:00:{:02}.{}\"}}\n",
                if i % 3 == 0 {
                    "null".to_string()
                } else {
                    format!("-{i}")
                },
                i % 60,
                i % 1000
            )),
        }
    }
    std::fs::write(d.join("in.ndjson"), &data).unwrap();
    let mut summaries = Vec::new();
    for (table, extra) in [
        ("fast", &[][..]),
        ("slow", &["--no-convert"][..]),
        // Converted on three threads.
        ("par", &["--threads", "3"][..]),
    ] {
        let t = db.t(table);
        let mut args = vec!["--json", "insert", "--table", &t, "--batch-rows", "1000"];
        args.extend(extra);
        args.extend(["--dlq-dir", table, "in.ndjson"]);
        let r = run(d, &args);
        assert_eq!(r.code, 3, "{r:?}");
        assert!(r.stderr.contains("in.ndjson:6: invalid JSON"), "{r:?}");
        summaries.push(r.json());
    }
    let (fast, slow, par) = (&summaries[0], &summaries[1], &summaries[2]);
    assert_eq!(fast["encoding"], "RowBinaryWithDefaults");
    assert_eq!(par["encoding"], "RowBinaryWithDefaults");
    assert_eq!(slow["encoding"], "JSONEachRow");
    assert_eq!(fast["rows_passed_through"], 24);
    assert_eq!(par["rows_passed_through"], 24);
    assert_eq!(slow["rows_passed_through"], 0);
    for s in [fast, slow, par] {
        assert_eq!(s["rows_malformed"], 6);
        assert_eq!(s["rows_landed"], 2988);
        assert_eq!(s["rows_dead_lettered"], 12);
    }
    let hash = "SELECT sum(cityHash64(tuple(id, s, n, d, k))) FROM {t}";
    for t in ["fast", "par"] {
        assert_eq!(
            db.u64(&hash.replace("{t}", t)).await,
            db.u64(&hash.replace("{t}", "slow")).await,
            "{t}"
        );
    }
    assert_eq!(
        db.u64("SELECT count() FROM fast WHERE s LIKE '{%[1]}'")
            .await,
        6
    );
    assert_eq!(
        db.u64("SELECT count() FROM fast WHERE id % 500 IN (4, 5)")
            .await,
        0
    );
    // Converted rows carry the ids of the main stream's batches, passed-through rows those of
    // a stream of their own.
    assert_eq!(
        db.u64("SELECT uniqExact(_insert_id) FROM fast").await,
        3 + 1
    );

    // A column type without a conversion: every line goes through, with a note.
    db.exec("CREATE TABLE dec (id UInt64, x Decimal(9, 2)) ENGINE = MergeTree ORDER BY id")
        .await;
    std::fs::write(d.join("dec.ndjson"), "{\"id\": 1, \"x\": 1.25}\n").unwrap();
    let r = run(d, &["insert", "--table", &db.t("dec"), "dec.ndjson"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("go to the server as JSONEachRow"),
        "{r:?}"
    );
    assert_eq!(db.u64("SELECT count() FROM dec WHERE x = 1.25").await, 1);
}
