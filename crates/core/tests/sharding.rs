//! Sharded clusters: two private ClickHouse instances as the two shards of a cluster (weights
//! 1 and 2). The same rows go through chasync (routed on the client, inserted into each
//! shard's local table) and through a `Distributed` table with
//! `distributed_foreground_insert = 1` (the server's own placement); per shard, the count
//! and the checksum of the rows must match.
//!
//! The shared server under test is not used: the test starts and stops its own two.

use std::time::Duration;

use chasync_core::{
    ColumnBatch, Config, DeadLetterSpool, DynInput, DynRow, DynTarget, NativeOptions, RouteError,
    ShardPlan, Sharded, ShardedDynIngestor, Value,
};
use chasync_testkit::cluster::TwoShards;
use chasync_testkit::server::PrivateServer;

const ROWS: u64 = 6_000;

/// The rows of both paths: the same expressions in SQL (for the server's insert) and here.
const ROWS_SQL: &str = "SELECT (number * 7919) % 1000003 AS id, \
     concat('user-', toString(number % 997), repeat('x', number % 90)) AS s, \
     toInt32(number % 2001) - 1000 AS n FROM numbers({rows})";

fn row(number: u64) -> DynRow {
    let id = (number * 7919) % 1_000_003;
    let s = format!(
        "user-{}{}",
        number % 997,
        "x".repeat((number % 90) as usize)
    );
    let n = (number % 2001) as i64 - 1000;
    DynRow::new().with("id", id).with("s", s).with("n", n)
}

struct Cluster(TwoShards);

impl std::ops::Deref for Cluster {
    type Target = TwoShards;
    fn deref(&self) -> &TwoShards {
        &self.0
    }
}

impl Cluster {
    fn start() -> Self {
        Self(TwoShards::start())
    }

    fn client(server: &PrivateServer) -> clickhouse::Client {
        TwoShards::client(server)
    }

    async fn exec(server: &PrivateServer, sql: &str) {
        TwoShards::exec(server, sql).await
    }

    async fn per_shard(&self, table: &str) -> [(u64, u64); 2] {
        self.0.per_shard(table, "id, s, n").await
    }

    /// The configuration of chasync's side: the entry server A, the HTTP endpoints of the
    /// replicas (the cluster lists their native ports).
    fn config(&self, table: &str, spool: &std::path::Path) -> Config {
        let urls = self.cluster_urls();
        Config::builder(self.a.url(), table)
            .set_text("cluster_urls", &urls)
            .max_rows(1_000)
            .stream_id(&format!("sharding-{table}"))
            .spool_dir(spool)
            .set("max_attempts", 5)
            .set("connect_timeout", 1.0)
            .set("initial_backoff", 0.05)
            .build()
            .unwrap()
    }
}

async fn ingest(config: Config, rows: impl Iterator<Item = DynRow>) -> (ShardPlan, u64) {
    let plan = ShardPlan::resolve(&config)
        .await
        .expect("the plan resolves")
        .expect("the target is sharded");
    let ingestor: ShardedDynIngestor =
        Sharded::start_dynamic(config, plan.clone(), NativeOptions::default())
            .await
            .expect("the shards' pipelines start");
    let handle = ingestor.handle();
    for r in rows {
        handle.send(DynInput::Row(r)).await.expect("routed");
    }
    let stats = ingestor.shutdown().await.expect("clean shutdown");
    assert_eq!(stats.rows_dead_lettered, 0);
    (plan, stats.rows_committed)
}

/// Every sharding key the client computes, checked against the server's placement; `rand()`
/// by its totals; errors for keys and rows it cannot route; failover to a shard's second
/// replica; the `cluster` option over a plain table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_land_on_the_shards_the_server_chooses() {
    let run = async {
        let c = Cluster::start();
        let spool = tempfile::tempdir().unwrap();
        c.on_both("CREATE DATABASE IF NOT EXISTS sh").await;
        let keys = [
            ("plain", "id"),
            ("signed", "n"),
            ("inthash", "intHash64(id)"),
            ("city", "cityHash64(s)"),
            ("city2", "cityHash64(s, n)"),
            ("sip", "sipHash64(s)"),
            ("xx", "xxHash64(s)"),
            ("rand", "rand()"),
        ];
        for (name, key) in keys {
            let (direct, via) = (format!("sh.{name}_direct"), format!("sh.{name}_via"));
            c.on_both(&format!(
                "CREATE TABLE {direct} (id UInt64, s String, n Int32, _insert_id UUID) \
                 ENGINE = MergeTree ORDER BY id"
            ))
            .await;
            c.on_both(&format!(
                "CREATE TABLE {via} (id UInt64, s String, n Int32) ENGINE = MergeTree ORDER BY id"
            ))
            .await;
            Cluster::exec(
                &c.a,
                &format!(
                    "CREATE TABLE {direct}_dist AS {direct} \
                     ENGINE = Distributed(two, sh, {name}_direct, {key})"
                ),
            )
            .await;
            Cluster::exec(
                &c.a,
                &format!(
                    "CREATE TABLE {via}_dist AS {via} ENGINE = Distributed(two, sh, {name}_via, {key})"
                ),
            )
            .await;
            // The server's placement (the profile sets distributed_foreground_insert = 1).
            Cluster::exec(
                &c.a,
                &format!(
                    "INSERT INTO {via}_dist {}",
                    ROWS_SQL.replace("{rows}", &ROWS.to_string())
                ),
            )
            .await;
            let (plan, committed) = ingest(
                c.config(&format!("{direct}_dist"), spool.path()),
                (0..ROWS).map(row),
            )
            .await;
            assert_eq!(committed, ROWS, "{key}");
            assert_eq!(plan.cluster, "two");
            assert_eq!(plan.table, format!("{name}_direct"));
            assert_eq!(
                plan.shards.iter().map(|s| s.weight).collect::<Vec<_>>(),
                [1, 2]
            );
            let (ours, theirs) = (c.per_shard(&direct).await, c.per_shard(&via).await);
            if key == "rand()" {
                // Any shard: only the totals can match; both shards get rows (by weight).
                assert_eq!(ours[0].0 + ours[1].0, ROWS);
                assert_eq!(
                    ours[0].1.wrapping_add(ours[1].1),
                    theirs[0].1.wrapping_add(theirs[1].1)
                );
                assert_eq!(ours[0].0, ROWS / 3, "round-robin over the weights 1 and 2");
            } else {
                assert_eq!(ours, theirs, "per-shard count and checksum, key {key}");
                assert!(ours[0].0 > 0 && ours[1].0 > 0, "{key}: {ours:?}");
            }
            // Each shard's rows came in that shard's own batches: no batch id on both.
            let ids = |s: &PrivateServer| {
                let sql = format!("SELECT DISTINCT toString(_insert_id) FROM {direct}");
                let client = Cluster::client(s);
                async move { client.query(&sql).fetch_all::<String>().await.unwrap() }
            };
            let (ia, ib) = (ids(&c.a).await, ids(&c.b).await);
            assert!(!ia.is_empty() && !ib.is_empty());
            assert!(
                ia.iter().all(|i| !ib.contains(i)),
                "{key}: shared batch ids"
            );
        }

        // A key the client does not compute: a clear error at start, nothing inserted.
        c.on_both("CREATE TABLE sh.mod_local (id UInt64, s String, n Int32) ENGINE = MergeTree ORDER BY id")
            .await;
        Cluster::exec(
            &c.a,
            "CREATE TABLE sh.mod_dist AS sh.mod_local ENGINE = Distributed(two, sh, mod_local, id % 3)",
        )
        .await;
        let e = ShardPlan::resolve(&c.config("sh.mod_dist", spool.path()))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("id % 3") && e.contains("Distributed"), "{e}");

        // A key column of a type the client does not hash, and a Distributed table of two
        // shards without a key: clear errors at start.
        c.on_both("CREATE TABLE sh.fkey (f Float64) ENGINE = MergeTree ORDER BY f")
            .await;
        Cluster::exec(
            &c.a,
            "CREATE TABLE sh.fkey_dist AS sh.fkey ENGINE = Distributed(two, sh, fkey, cityHash64(f))",
        )
        .await;
        let e = ShardPlan::resolve(&c.config("sh.fkey_dist", spool.path()))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("`f`") && e.contains("Float64"), "{e}");
        Cluster::exec(
            &c.a,
            "CREATE TABLE sh.nokey_dist AS sh.mod_local ENGINE = Distributed(two, sh, mod_local)",
        )
        .await;
        let e = ShardPlan::resolve(&c.config("sh.nokey_dist", spool.path()))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("without a sharding key"), "{e}");

        // The cluster option naming another cluster than the table's.
        let mut other = c.config("sh.city_direct_dist", spool.path());
        other.clickhouse.cluster = Some("two_failover".into());
        let e = ShardPlan::resolve(&other).await.unwrap_err().to_string();
        assert!(e.contains("two_failover") && e.contains("\"two\""), "{e}");

        // A cluster the server does not have.
        let mut unknown = c.config("sh.mod_local", spool.path());
        unknown.clickhouse.cluster = Some("nope".into());
        let e = ShardPlan::resolve(&unknown).await.unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("system.clusters"), "{e}");

        // A row without the key column is handed back with the reason; the others land.
        c.on_both("TRUNCATE TABLE sh.city_direct").await;
        let config = c.config("sh.city_direct_dist", spool.path());
        let plan = ShardPlan::resolve(&config).await.unwrap().unwrap();
        let ingestor = Sharded::start_dynamic(config, plan, NativeOptions::default())
            .await
            .unwrap();
        let handle = ingestor.handle();
        handle.send(row(1).into()).await.unwrap();
        let keyless = DynRow::new().with("id", 5u64).with("n", 1i64);
        match handle.send(keyless.into()).await {
            Err(RouteError::Unroutable(_, why)) => assert!(why.contains("`s`"), "{why}"),
            other => panic!("expected Unroutable, got {other:?}"),
        }
        let wrong = DynRow::new()
            .with("id", 5u64)
            .with("s", 17i64)
            .with("n", 1i64);
        assert!(matches!(
            handle.send(wrong.into()).await,
            Err(RouteError::Unroutable(..))
        ));
        handle.send(row(2).into()).await.unwrap();
        let stats = ingestor.shutdown().await.unwrap();
        assert_eq!(stats.rows_committed, 2);
        let total: u64 = c
            .per_shard("sh.city_direct")
            .await
            .iter()
            .map(|s| s.0)
            .sum();
        assert_eq!(total, 2);

        // Columnar input is split over the shards, row by row; rows without their key come
        // back, the others land where the server puts them.
        c.on_both(
            "CREATE TABLE sh.cols (id UInt64, s String, n Int32) ENGINE = MergeTree ORDER BY id",
        )
        .await;
        Cluster::exec(
            &c.a,
            "CREATE TABLE sh.cols_dist AS sh.cols ENGINE = Distributed(two, sh, cols, cityHash64(s))",
        )
        .await;
        let config = c.config("sh.cols_dist", spool.path());
        let plan = ShardPlan::resolve(&config).await.unwrap().unwrap();
        let ingestor = Sharded::start_dynamic(config, plan, NativeOptions::default())
            .await
            .unwrap();
        let handle = ingestor.handle();
        let columns = |rows: &[DynRow]| {
            let mut batch = ColumnBatch::new();
            for name in ["id", "s", "n"] {
                batch.push_column(
                    name,
                    rows.iter()
                        .map(|r| r.get(name).cloned().unwrap_or(Value::Null))
                        .collect(),
                );
            }
            DynInput::Columns(batch)
        };
        let all: Vec<DynRow> = (0..ROWS).map(row).collect();
        let (body, last) = all.split_at(all.len() - 2);
        for chunk in body.chunks(1_000) {
            handle.send(columns(chunk)).await.expect("routed");
        }
        let mut tail = last.to_vec();
        tail.insert(1, DynRow::new().with("id", 7u64).with("n", 1i64));
        match handle.send(columns(&tail)).await {
            Err(RouteError::Unroutable(DynInput::Columns(back), why)) => {
                assert_eq!(back.rows(), 1);
                assert!(why.contains("row 1") && why.contains("`s`"), "{why}");
            }
            other => panic!("expected one row handed back, got {other:?}"),
        }
        assert!(matches!(
            handle.try_send(columns(&tail[..1])),
            Err(RouteError::Full(_))
        ));
        let stats = ingestor.shutdown().await.unwrap();
        assert_eq!(stats.rows_committed, ROWS);
        assert_eq!(
            c.per_shard("sh.cols").await,
            c.per_shard("sh.city_via").await
        );

        // Failover: shard 2's first replica is down; its rows go to the second, and the
        // placement is still the server's.
        c.on_both("CREATE TABLE sh.fo_direct (id UInt64, s String, n Int32) ENGINE = MergeTree ORDER BY id")
            .await;
        Cluster::exec(
            &c.a,
            "CREATE TABLE sh.fo_dist AS sh.fo_direct \
             ENGINE = Distributed(two_failover, sh, fo_direct, cityHash64(s))",
        )
        .await;
        let (plan, committed) =
            ingest(c.config("sh.fo_dist", spool.path()), (0..ROWS).map(row)).await;
        assert_eq!(committed, ROWS);
        assert_eq!(plan.shards[1].urls.len(), 2);
        assert_eq!(
            plan.shards[1].urls[0],
            format!("http://127.0.0.1:{}", c.dead_http)
        );
        assert_eq!(
            c.per_shard("sh.fo_direct").await,
            c.per_shard("sh.city_via").await
        );

        // The cluster option over a plain table: the same local table on every shard, rows
        // spread by weight.
        c.on_both(
            "CREATE TABLE sh.plain (id UInt64, s String, n Int32) ENGINE = MergeTree ORDER BY id",
        )
        .await;
        let mut config = c.config("sh.plain", spool.path());
        config.clickhouse.cluster = Some("two".into());
        let (plan, committed) = ingest(config, (0..ROWS).map(row)).await;
        assert_eq!(committed, ROWS);
        assert_eq!(plan.sharding_key, None);
        let counts = c.per_shard("sh.plain").await;
        assert_eq!((counts[0].0, counts[1].0), (ROWS / 3, 2 * ROWS / 3));
    };
    tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the sharding test ends within 5 minutes");
}

/// A single-table pipeline refuses the `cluster` option instead of ignoring it (the shared
/// server; nothing is inserted).
#[tokio::test]
async fn a_single_table_pipeline_refuses_the_cluster_option() {
    let config = Config::builder(chasync_testkit::url(), "system.one")
        .set("cluster", "two")
        .build()
        .unwrap();
    let e = chasync_core::DynIngestor::start_dynamic(config, NativeOptions::default())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("cluster") && e.contains("Sharded"), "{e}");
}

/// `DynTarget`: a Distributed target routed; columnar rows without their key dead-lettered,
/// each with its own reason; acknowledgements over both shards; one flush reporting the dead
/// letters of both shards together; a plain table is one pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dyn_target_routes_acks_and_reports_the_dead_letters_of_every_shard() {
    let run = async {
        let c = Cluster::start();
        let spool = tempfile::tempdir().unwrap();
        c.on_both("CREATE DATABASE sh").await;
        c.on_both(
            "CREATE TABLE sh.t (id UInt64, s String, n Int32) ENGINE = MergeTree ORDER BY id",
        )
        .await;
        Cluster::exec(
            &c.a,
            "CREATE TABLE sh.t_dist AS sh.t ENGINE = Distributed(two, sh, t, cityHash64(s))",
        )
        .await;
        let target = DynTarget::start(
            c.config("sh.t_dist", spool.path()),
            NativeOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(target.plan().map(|p| p.shards.len()), Some(2));
        let h = target.handle();
        // Rows 0..1000 acknowledged, both shards taking some.
        let acks = h
            .send_acked((0..1_000).map(|i| DynInput::Row(row(i))).collect())
            .await
            .unwrap();
        acks.wait().await.unwrap();
        // Columnar: two rows without `s` among good ones.
        let mut batch = ColumnBatch::new();
        batch.push_column("id", vec![Value::UInt(1), Value::UInt(2), Value::UInt(3)]);
        batch.push_column(
            "s",
            vec![Value::Null, Value::String("a".into()), Value::Null],
        );
        batch.push_column("n", vec![Value::Int(1), Value::Int(2), Value::Int(3)]);
        h.send(DynInput::Columns(batch)).await.unwrap();
        // Rows both shards refuse: `n` out of Int32's range for the server (a string).
        for i in 0..30u64 {
            let bad = DynRow::new()
                .with("id", 5_000 + i)
                .with("s", format!("bad-{i}"))
                .with("n", "not a number");
            h.send(DynInput::Row(bad)).await.unwrap();
        }
        match h.flush().await {
            Err(chasync_core::Error::DeadLettered { rows, .. }) => assert_eq!(rows, 32),
            other => panic!("expected 32 dead-lettered rows, got {other:?}"),
        }
        let stats = target.shutdown().await.unwrap();
        assert_eq!(stats.rows_committed, 1_001, "{stats:?}");
        // The spool holds every refused row with its own reason: the two unroutable ones
        // (their column `s`), the 30 the encoder refused.
        let dlq = DeadLetterSpool::new(spool.path());
        let mut reasons = Vec::new();
        for r in dlq.list().unwrap() {
            let payload = dlq.payload(&r).unwrap();
            for line in String::from_utf8_lossy(&payload).lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                reasons.push(v["reason"].as_str().unwrap().to_string());
            }
        }
        let unroutable = reasons
            .iter()
            .filter(|r| r.contains("cannot be routed") && r.contains("`s` is null"))
            .count();
        assert_eq!((unroutable, reasons.len()), (2, 32), "{reasons:?}");
        let counts = c.per_shard("sh.t").await;
        assert!(counts[0].0 > 0 && counts[1].0 > 0, "{counts:?}");
        assert_eq!(counts[0].0 + counts[1].0, 1_001);

        // A plain table without the cluster option: one pipeline into it.
        let plain = DynTarget::start(c.config("sh.t", spool.path()), NativeOptions::default())
            .await
            .unwrap();
        assert!(plain.plan().is_none());
        plain.shutdown().await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the test ends within 2 minutes");
}
