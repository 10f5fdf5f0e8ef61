//! `chasync insert` into a sharded cluster: two private servers as two shards (weights 1
//! and 2), NDJSON routed by the client, checked against the server's own placement (the same
//! rows through a Distributed table with `distributed_foreground_insert = 1`).

mod common;

use std::io::Write;
use std::time::Duration;

use chasync_testkit::cluster::TwoShards;
use common::{chasync, run_cmd};

const ROWS: u64 = 3_000;

/// Database `sh` on both shards with tables `direct` and `via` (and `direct_dist`,
/// `via_dist` over them, keyed by `cityHash64(s)`); rows `0..ROWS` inserted through
/// `via_dist`, where the server places them.
async fn direct_and_via(c: &TwoShards) {
    c.on_both("CREATE DATABASE sh").await;
    for t in ["direct", "via"] {
        c.on_both(&format!(
            "CREATE TABLE sh.{t} (id UInt64, s String) ENGINE = MergeTree ORDER BY id"
        ))
        .await;
        TwoShards::exec(
            &c.a,
            &format!(
                "CREATE TABLE sh.{t}_dist AS sh.{t} \
                 ENGINE = Distributed(two, sh, {t}, cityHash64(s))"
            ),
        )
        .await;
    }
    TwoShards::exec(
        &c.a,
        &format!(
            "INSERT INTO sh.via_dist SELECT number AS id, \
             concat('user-', toString(number % 513)) AS s FROM numbers({ROWS})"
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_routes_ndjson_to_the_shards() {
    let run = async {
        let c = TwoShards::start();
        let dir = tempfile::tempdir().unwrap();
        direct_and_via(&c).await;
        let mut file = std::fs::File::create(dir.path().join("rows.ndjson")).unwrap();
        for n in 0..ROWS {
            writeln!(file, r#"{{"id": {n}, "s": "user-{}"}}"#, n % 513).unwrap();
        }
        // A line without the key column: dead-lettered with its place, the rest lands.
        writeln!(file, r#"{{"id": 99999}}"#).unwrap();
        drop(file);

        let out = run_cmd(
            chasync(dir.path())
                .env("CHASYNC_URL", c.a.url())
                .args(["insert", "--table", "sh.direct_dist", "--json"])
                .args(["--cluster-url", &c.cluster_urls()])
                .args(["--max-rows", "500", "rows.ndjson"]),
        );
        assert_eq!(out.code, 3, "{out:?}");
        let summary = out.json();
        assert_eq!(summary["rows_landed"], ROWS, "{out:?}");
        assert_eq!(summary["rows_dead_lettered"], 1, "{out:?}");
        assert_eq!(
            c.per_shard("sh.direct", "id, s").await,
            c.per_shard("sh.via", "id, s").await
        );
        let dlq = run_cmd(
            chasync(dir.path())
                .env("CHASYNC_URL", c.a.url())
                .args(["dlq", "list", "--json"]),
        );
        assert!(
            dlq.stdout.contains("rows.ndjson:3001") && dlq.stdout.contains("`s`"),
            "{dlq:?}"
        );

        // --cluster names the cluster of a plain table: rows spread by weight.
        c.on_both("CREATE TABLE sh.plain (id UInt64, s String) ENGINE = MergeTree ORDER BY id")
            .await;
        let out = run_cmd(
            chasync(dir.path())
                .env("CHASYNC_URL", c.a.url())
                .args(["insert", "--table", "sh.plain", "--cluster", "two"])
                .args(["--cluster-url", &c.cluster_urls()])
                .args(["--format", "ndjson", "-"])
                .write_stdin(
                    (0..30)
                        .map(|n| format!("{{\"id\": {n}, \"s\": \"x\"}}\n"))
                        .collect::<String>(),
                ),
        );
        assert_eq!(out.code, 0, "{out:?}");
        let counts = c.per_shard("sh.plain", "id, s").await;
        assert_eq!((counts[0].0, counts[1].0), (10, 20));

        // Without --cluster, CSV into the Distributed table, and NDJSON into one whose key the
        // client does not compute, go through the Distributed table, with a note.
        TwoShards::exec(
            &c.a,
            "CREATE TABLE sh.mod_dist AS sh.plain ENGINE = Distributed(two, sh, plain, id % 3)",
        )
        .await;
        c.on_both("TRUNCATE TABLE sh.plain").await;
        let out = run_cmd(
            chasync(dir.path())
                .env("CHASYNC_URL", c.a.url())
                .args([
                    "insert",
                    "--table",
                    "sh.mod_dist",
                    "--format",
                    "ndjson",
                    "-",
                ])
                .write_stdin("{\"id\": 1, \"s\": \"a\"}\n{\"id\": 2, \"s\": \"b\"}\n"),
        );
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            out.stderr.contains("id % 3") && out.stderr.contains("through the Distributed"),
            "{out:?}"
        );
        let counts = c.per_shard("sh.plain", "id, s").await;
        // id % 3 over the slots [shard 1, shard 2, shard 2]: 1 and 2 -> shard 2.
        assert_eq!((counts[0].0, counts[1].0), (0, 2), "{out:?}");
        let before: u64 = c
            .per_shard("sh.direct", "id, s")
            .await
            .iter()
            .map(|s| s.0)
            .sum();
        let out = run_cmd(
            chasync(dir.path())
                .env("CHASYNC_URL", c.a.url())
                .args([
                    "insert",
                    "--table",
                    "sh.direct_dist",
                    "--format",
                    "csv",
                    "--no-header",
                    "-",
                ])
                .write_stdin("5000,user-1\n"),
        );
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stderr.contains("not CSV or TSV"), "{out:?}");
        let after: u64 = c
            .per_shard("sh.direct", "id, s")
            .await
            .iter()
            .map(|s| s.0)
            .sum();
        assert_eq!(after, before + 1);

        // With --cluster, a key the client does not compute is an error, and so is a flag of
        // the single-table path.
        let out = run_cmd(
            chasync(dir.path())
                .env("CHASYNC_URL", c.a.url())
                .args(["insert", "--table", "sh.mod_dist", "--cluster", "two"])
                .args(["--format", "ndjson", "-"])
                .write_stdin("{\"id\": 1, \"s\": \"a\"}\n"),
        );
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("id % 3"), "{out:?}");
        let out = run_cmd(
            chasync(dir.path())
                .env("CHASYNC_URL", c.a.url())
                .args(["insert", "--table", "sh.direct_dist", "--resume"])
                .args(["--cluster-url", &c.cluster_urls(), "rows.ndjson"]),
        );
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains("--resume"), "{out:?}");

        // --cluster with CSV: refused before anything is sent.
        let out = run_cmd(
            chasync(dir.path())
                .env("CHASYNC_URL", c.a.url())
                .args(["insert", "--table", "sh.plain", "--cluster", "two"])
                .args(["--format", "csv", "-"])
                .write_stdin("1,x\n"),
        );
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains("NDJSON"), "{out:?}");
    };
    tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the test ends within 4 minutes");
}

/// A shard's dead letters record their shard, and `dlq replay` from the entry server sends
/// them to that shard's replicas, not to the server it is given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_replay_sends_a_shards_entries_to_that_shard() {
    let run = async {
        let c = TwoShards::start();
        let dir = tempfile::tempdir().unwrap();
        c.on_both("CREATE DATABASE sh").await;
        c.on_both("CREATE TABLE sh.t (id UInt64, s String) ENGINE = MergeTree ORDER BY id")
            .await;
        // Shard 2 refuses every row until its constraint is dropped.
        TwoShards::exec(&c.b, "ALTER TABLE sh.t ADD CONSTRAINT nope CHECK s != 'x'").await;
        let rows: String = (0..30)
            .map(|n| format!("{{\"id\": {n}, \"s\": \"x\"}}\n"))
            .collect();
        let out = run_cmd(
            chasync(dir.path())
                .env("CHASYNC_URL", c.a.url())
                .args(["insert", "--json", "--table", "sh.t", "--cluster", "two"])
                .args(["--cluster-url", &c.cluster_urls()])
                .args(["--format", "ndjson", "-"])
                .write_stdin(rows),
        );
        assert_eq!(out.code, 3, "{out:?}");
        assert_eq!(out.json()["rows_dead_lettered"], 20, "{out:?}");
        assert_eq!(c.per_shard("sh.t", "id, s").await.map(|s| s.0), [10, 0]);

        let list = run_cmd(
            chasync(dir.path())
                .env("CHASYNC_URL", c.a.url())
                .args(["dlq", "list"]),
        );
        assert!(list.stdout.contains("sh.t (shard 2 of two)"), "{list:?}");

        TwoShards::exec(&c.b, "ALTER TABLE sh.t DROP CONSTRAINT nope").await;
        let replay = run_cmd(chasync(dir.path()).env("CHASYNC_URL", c.a.url()).args([
            "dlq",
            "replay",
            "--cluster-url",
            &c.cluster_urls(),
        ]));
        assert_eq!(replay.code, 0, "{replay:?}");
        // Every row on the shard the key chose, none on the server the replay was given.
        assert_eq!(c.per_shard("sh.t", "id, s").await.map(|s| s.0), [10, 20]);
        let list = run_cmd(
            chasync(dir.path())
                .env("CHASYNC_URL", c.a.url())
                .args(["dlq", "list"]),
        );
        assert!(list.stdout.contains("no entries"), "{list:?}");
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the test ends within 2 minutes");
}

/// Writes rows `0..n` (`id`, `s` = `user-{id % 513}`) as a Parquet file.
fn write_parquet(path: &std::path::Path, n: u64) {
    use chasync_core::arrow::arrow_array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
    use std::sync::Arc;
    let ids: Vec<u64> = (0..n).collect();
    let names: Vec<String> = ids.iter().map(|i| format!("user-{}", i % 513)).collect();
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(UInt64Array::from(ids)) as ArrayRef),
        ("s", Arc::new(StringArray::from(names)) as ArrayRef),
    ])
    .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Parquet into a Distributed table, and with --cluster into a plain one: routed to the
/// shards by the client, as the server would place the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_routes_parquet_to_the_shards() {
    let run = async {
        let c = TwoShards::start();
        let dir = tempfile::tempdir().unwrap();
        direct_and_via(&c).await;
        write_parquet(&dir.path().join("rows.parquet"), ROWS);
        let out = run_cmd(
            chasync(dir.path())
                .env("CHASYNC_URL", c.a.url())
                .args(["insert", "--json", "--table", "sh.direct_dist"])
                .args(["--cluster-url", &c.cluster_urls()])
                .args(["--max-rows", "500", "rows.parquet"]),
        );
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(out.json()["rows_landed"], ROWS, "{out:?}");
        let direct = c.per_shard("sh.direct", "id, s").await;
        assert_eq!(direct, c.per_shard("sh.via", "id, s").await);
        assert!(direct[0].0 > 0 && direct[1].0 > 0, "{direct:?}");

        c.on_both("CREATE TABLE sh.plain (id UInt64, s String) ENGINE = MergeTree ORDER BY id")
            .await;
        write_parquet(&dir.path().join("thirty.parquet"), 30);
        let out = run_cmd(
            chasync(dir.path())
                .env("CHASYNC_URL", c.a.url())
                .args(["insert", "--table", "sh.plain", "--cluster", "two"])
                .args(["--cluster-url", &c.cluster_urls(), "thirty.parquet"]),
        );
        assert_eq!(out.code, 0, "{out:?}");
        let counts = c.per_shard("sh.plain", "id, s").await;
        assert_eq!((counts[0].0, counts[1].0), (10, 20), "{out:?}");
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the test ends within 2 minutes");
}
