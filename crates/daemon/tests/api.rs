//! The HTTP API of `chasyncd` against the real server: the insert paths, acknowledgement
//! modes, bad input, authentication, configuration, metrics, failover and coalescing.

mod common;

use std::time::Duration;

use common::{Daemon, DaemonDb, DaemonOpts, Http, TestDb, metric, rows, spool};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_land_via_query_param_first_body_line_and_v1_with_exact_metrics() {
    let db = TestDb::new("paths").await;
    db.events("t").await;
    let (_tmp, spool) = spool();
    let d = Daemon::start(
        DaemonOpts::new(&spool)
            .config("[batching]\nlinger = \"200ms\"\n")
            .arg("--log-format")
            .arg("json"),
    );
    // JSON logs: every line is an object.
    for line in d.log_text().lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("a JSON log line");
    }
    let http = Http::new();
    let n = &db.name;
    // 1. The query in the URL, as ClickHouse clients send it.
    let r = http
        .post(
            &d.url(&format!(
                "/?query=INSERT%20INTO%20{n}.t%20FORMAT%20JSONEachRow"
            )),
            rows(0..10),
        )
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert_eq!(r.headers["x-chasyncd-rows"], "10");
    // 2. The query as the first line of the body.
    let r = http
        .post(
            &d.url("/"),
            format!("INSERT INTO {n}.t FORMAT JSONEachRow\n{}", rows(10..20)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // 3. No database in the query: the `database` parameter.
    let r = http
        .post(
            &d.url(&format!(
                "/?database={n}&query=INSERT+INTO+t+FORMAT+JSONEachRow"
            )),
            rows(20..30),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // 4. The daemon's own endpoint.
    let r = http
        .post(&d.url(&format!("/v1/tables/{n}.t")), rows(30..40))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // 5. Committed mode: the answer comes once ClickHouse has the rows (and, the log being
    //    ordered, every row accepted before them).
    let r = http
        .post(
            &d.url(&format!("/v1/tables/{n}.t?ack=committed")),
            rows(40..50),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(db.u64("SELECT count() FROM t").await, 50);
    assert_eq!(db.ids("t").await, (0..50).collect::<Vec<_>>());

    let m = http.get(&d.url("/metrics")).await.body;
    let batches = db.u64("SELECT uniqExact(_insert_id) FROM t").await;
    assert_eq!(metric(&m, "chasyncd_requests_total{code=\"200\"}"), 5.0);
    assert_eq!(
        metric(
            &m,
            &format!("chasyncd_rows_accepted_total{{table=\"{n}.t\"}}")
        ),
        50.0
    );
    assert_eq!(metric(&m, "chasyncd_rows_committed_total"), 50.0);
    assert_eq!(
        metric(&m, "chasyncd_batches_committed_total"),
        batches as f64
    );
    assert_eq!(
        metric(&m, "chasyncd_batch_latency_seconds_count"),
        batches as f64
    );
    assert_eq!(metric(&m, "chasyncd_wal_records_total"), 5.0);
    assert_eq!(metric(&m, "chasyncd_rows_dead_lettered_total"), 0.0);
    assert_eq!(metric(&m, "chasyncd_queue_bytes"), 0.0);
    assert!(metric(&m, "chasyncd_spool_bytes") > 0.0);
    assert_eq!(metric(&m, "chasyncd_concurrency_limit"), 4.0);
    assert_eq!(http.get(&d.url("/health")).await.status, 200);
    assert_eq!(http.get(&d.url("/ready")).await.status, 200);
    assert_eq!(http.get(&d.url("/ping")).await.body, "Ok.\n");
    assert_eq!(http.get(&d.url("/nowhere")).await.status, 404);
    let (status, _) = d.terminate(Duration::from_secs(30));
    assert!(status.success());
    assert_eq!(db.u64("SELECT count() FROM t").await, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_exactly_and_disturbs_nothing_else() {
    let db = TestDb::new("bad").await;
    db.events("t").await;
    let (_tmp, spool) = spool();
    let n = db.name.clone();
    let mut opts = DaemonOpts::new(&spool).config(&format!(
        "token = \"file-token\"\n[limits]\nmax_body_bytes = 4096\n\
         [batching]\nlinger = \"100ms\"\n[tables.\"{n}.t\"]\nmax_rows = 7\n"
    ));
    // The environment overrides the file.
    opts.env.push(("CHASYNCD_TOKEN".into(), "env-token".into()));
    let d = Daemon::start(opts);
    let http = Http::new();
    let auth = [("Authorization", "Bearer env-token")];
    let post = |path: String, body: String| {
        let http = http.clone();
        let url = d.url(&path);
        async move { http.request("POST", &url, body, &auth).await.unwrap() }
    };
    let v1 = format!("/v1/tables/{n}.t");

    // Good requests run alongside the bad ones.
    let good: Vec<_> = (0..10u64)
        .map(|k| tokio::spawn(post(v1.clone(), rows(k * 10..k * 10 + 10))))
        .collect();

    // 401: no token, or the file's token (overridden by the environment).
    let r = http.post(&d.url(&v1), rows(1000..1001)).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    let r = http
        .request(
            "POST",
            &d.url(&v1),
            rows(1000..1001),
            &[("Authorization", "Bearer file-token")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    // 400: malformed JSON, in ClickHouse's words, naming the row and the line.
    let r = post(
        v1.clone(),
        "{\"id\":1000,\"name\":\"a\"}\n{\"id\":1001,\"name\":\"b\"}\n{\"id\":1002,\"name\":}\n"
            .into(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body
            .starts_with("Code: 27. DB::Exception: Cannot parse input")
            && r.body.contains("(at row 3, line 3)"),
        "{}",
        r.body
    );
    assert_eq!(r.headers["x-clickhouse-exception-code"], "27");
    // With the query in the body, rows and lines count from the data's start.
    let r = post(
        "/".into(),
        format!("INSERT INTO {n}.t FORMAT JSONEachRow\n{{\"id\":1}}\n[2]\n"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("(at row 2, line 2)"), "{}", r.body);
    // 404: unknown table, in ClickHouse's words.
    let r = post(format!("/v1/tables/{n}.nope"), rows(0..1)).await;
    assert_eq!(r.status, 404);
    assert!(
        r.body.contains("Code: 60") && r.body.contains("does not exist"),
        "{}",
        r.body
    );
    assert_eq!(r.headers["x-clickhouse-exception-code"], "60");
    // 400: unknown column, named.
    let colour = "{\"id\":2000,\"name\":\"c\",\"colour\":\"red\"}\n".to_string();
    let r = post(v1.clone(), colour.clone()).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body
            .contains("Unknown field found while parsing JSONEachRow format: colour"),
        "{}",
        r.body
    );
    // ... until the table has it: the cache is refreshed on a miss.
    db.exec("ALTER TABLE t ADD COLUMN colour String").await;
    let r = post(v1.clone(), colour).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // 400: rows must not carry the engine's _insert_id.
    let r = post(
        v1.clone(),
        format!(
            "{{\"id\":3000,\"name\":\"x\",\"_insert_id\":\"{}\"}}\n",
            uuid::Uuid::nil()
        ),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("_insert_id"), "{}", r.body);
    // 413: over the body limit, by Content-Length.
    let r = post(v1.clone(), rows(5000..5200)).await;
    assert_eq!(r.status, 413, "{}", r.body);
    // A query is ClickHouse's to answer.
    let r = post("/?query=SELECT%201".into(), String::new()).await;
    assert_eq!((r.status, r.body.as_str()), (200, "1\n"));

    for g in good {
        assert_eq!(g.await.unwrap().status, 200);
    }
    let m = http.get(&d.url("/metrics")).await.body;
    for (code, count) in [(200, 12.0), (400, 4.0), (401, 2.0), (404, 1.0), (413, 1.0)] {
        assert_eq!(
            metric(&m, &format!("chasyncd_requests_total{{code=\"{code}\"}}")),
            count,
            "{code}"
        );
    }
    let (status, _) = d.terminate(Duration::from_secs(30));
    assert!(status.success());
    let mut expected: Vec<u64> = (0..100).collect();
    expected.push(2000);
    assert_eq!(db.ids("t").await, expected);
    assert_eq!(
        db.u64("SELECT count() FROM t WHERE colour = 'red'").await,
        1
    );
    // The per-table override: batches of at most 7 rows, but a request is never split, so
    // every batch holds one 10-row request.
    assert_eq!(
        db.u64("SELECT max(c) FROM (SELECT count() c FROM t WHERE id < 100 GROUP BY _insert_id)")
            .await,
        10
    );
    assert_eq!(
        db.u64("SELECT uniqExact(_insert_id) FROM t WHERE id < 100")
            .await,
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_clients_coalesce_into_few_inserts_sharing_fsyncs() {
    let db = TestDb::new("coalesce").await;
    db.events("t").await;
    let (_tmp, spool) = spool();
    let d = Daemon::start(DaemonOpts::new(&spool).config("[batching]\nlinger = \"300ms\"\n"));
    let url = d.url(&format!(
        "/?query=INSERT%20INTO%20{}.t%20FORMAT%20JSONEachRow",
        db.name
    ));
    let (clients, requests, per) = (50u64, 20u64, 5u64);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let url = url.clone();
            tokio::spawn(async move {
                let http = Http::new();
                for r in 0..requests {
                    let first = (c * requests + r) * per;
                    let resp = http.post(&url, rows(first..first + per)).await;
                    assert_eq!(resp.status, 200, "{}", resp.body);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let m = Http::new().get(&d.url("/metrics")).await.body;
    let (fsyncs, records) = (
        metric(&m, "chasyncd_wal_fsyncs_total"),
        metric(&m, "chasyncd_wal_records_total"),
    );
    assert_eq!(records, (clients * requests) as f64);
    let (status, _) = d.terminate(Duration::from_secs(30));
    assert!(status.success());
    let total = clients * requests * per;
    assert_eq!(db.u64("SELECT count() FROM t").await, total);
    assert_eq!(db.u64("SELECT uniqExact(id) FROM t").await, total);
    let inserts = db.inserts("t").await;
    eprintln!(
        "{} requests -> {inserts} inserts; {records} WAL records -> {fsyncs} fsyncs",
        clients * requests
    );
    assert!(
        inserts >= 1 && inserts <= clients * requests / 20,
        "{inserts} inserts"
    );
    assert!(
        fsyncs < records,
        "group commit: {fsyncs} fsyncs for {records} records"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_to_the_live_endpoint() {
    let db = TestDb::new("failover").await;
    db.events("t").await;
    let (_tmp, spool) = spool();
    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let mut opts = DaemonOpts::new(&spool).config("[batching]\nlinger = \"50ms\"\n");
    opts.urls = vec![dead, common::url()];
    let d = Daemon::start(opts);
    let http = Http::new();
    for k in 0..5u64 {
        let r = http
            .post(
                &d.url(&format!("/v1/tables/{}.t?ack=committed", db.name)),
                rows(k * 100..k * 100 + 100),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(db.u64("SELECT count() FROM t").await, 500);
    assert_eq!(db.u64("SELECT uniqExact(id) FROM t").await, 500);
    assert_eq!(http.get(&d.url("/ready")).await.status, 200);
    let m = http.get(&d.url("/metrics")).await.body;
    assert_eq!(metric(&m, "chasyncd_rows_dead_lettered_total"), 0.0);
    let (status, _) = d.terminate(Duration::from_secs(30));
    assert!(status.success());
}

/// The seed's aiohttp inserter (`ClickHouseAsyncInserter`), unchanged but for its host and
/// port, writes through the daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_aiohttp_inserter_lands_its_rows() {
    let Some(python) = common::python_with_aiohttp() else {
        eprintln!("SKIPPED: aiohttp could not be installed into a venv (pip from PyPI)");
        return;
    };
    let db = TestDb::new("seed").await;
    db.events("t").await;
    let (_tmp, spool) = spool();
    let d = Daemon::start(DaemonOpts::new(&spool).config("[batching]\nlinger = \"100ms\"\n"));
    let port = d.addr.rsplit(':').next().unwrap().to_string();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../benches/python/seed_inserter.py"
    );
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .arg("127.0.0.1")
        .arg(&port)
        .arg(&db.name)
        .arg("t")
        .arg("20000")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("inserted 20000 rows"), "{stderr}");
    let (status, _) = d.terminate(Duration::from_secs(30));
    assert!(status.success());
    assert_eq!(db.u64("SELECT count() FROM t").await, 20000);
    assert_eq!(db.u64("SELECT uniqExact(id) FROM t").await, 20000);
}

/// A value ClickHouse refuses (valid JSON, wrong type) fails its own request and nothing
/// else, as a direct insert would: the request that shared its batch lands, and with
/// `ack=committed` each hears of its own rows only (400 with ClickHouse's error, or 200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_value_fails_its_own_request_only() {
    let db = TestDb::new("dead").await;
    db.events("t").await;
    let (_tmp, spool) = spool();
    let d = Daemon::start(DaemonOpts::new(&spool).config("[batching]\nlinger = \"300ms\"\n"));
    let http = Http::new();
    let v1 = d.url(&format!("/v1/tables/{}.t?ack=committed", db.name));
    let mut bad = rows(10..20);
    bad.push_str("{\"id\":\"not a number\",\"name\":\"bad\"}\n");
    let (good, bad) = tokio::join!(http.post(&v1, rows(0..10)), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        http.post(&v1, bad).await
    });
    assert_eq!(good.status, 200, "{}", good.body);
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(
        bad.body.starts_with("Code: 27. DB::Exception: ") && bad.body.contains("dead-letter"),
        "{}",
        bad.body
    );
    assert_eq!(bad.headers["x-clickhouse-exception-code"], "27");
    let m = http.get(&d.url("/metrics")).await.body;
    // Both requests were in one batch.
    assert_eq!(metric(&m, "chasyncd_batches_sealed_total"), 1.0);
    assert_eq!(metric(&m, "chasyncd_rows_dead_lettered_total"), 11.0);
    assert_eq!(metric(&m, "chasyncd_batches_dead_lettered_total"), 1.0);
    let (status, _) = d.terminate(Duration::from_secs(30));
    assert!(status.success());
    // None of the bad request's rows landed; all of them are in the spool.
    assert_eq!(db.ids("t").await, (0..10).collect::<Vec<_>>());
    let spool = chasync_core::DeadLetterSpool::new(spool.to_path_buf());
    let entries = spool.list().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].rows, 11);
    let payload = String::from_utf8(spool.payload(&entries[0]).unwrap().to_vec()).unwrap();
    assert!(
        payload.contains("not a number") && payload.contains("\"id\":19"),
        "{payload}"
    );
}

/// What is not an insert chasyncd batches goes through with its body streamed, unread: an
/// `INSERT ... SELECT ... FROM input()` over the body limit lands, and ClickHouse's answer to
/// a query comes back as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_pass_through_with_their_bodies_streamed() {
    let db = TestDb::new("stream").await;
    db.exec("CREATE TABLE t (id UInt64) ENGINE = MergeTree ORDER BY id")
        .await;
    let (_tmp, spool) = spool();
    let d = Daemon::start(DaemonOpts::new(&spool).config("[limits]\nmax_body_bytes = 4096\n"));
    let http = Http::new();
    let body: String = (0..100_000u64).map(|i| format!("{i}\n")).collect();
    assert!(body.len() > 4096 * 100);
    let r = http
        .post(
            &d.url(&format!(
                "/?query=INSERT+INTO+{}.t+SELECT+id+%2A+2+FROM+input%28%27id+UInt64%27%29+FORMAT+TSV",
                db.name
            )),
            body,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(db.u64("SELECT count() FROM t").await, 100_000);
    assert_eq!(db.u64("SELECT max(id) FROM t").await, 199_998);
    // A batched insert over the limit is refused, as configured.
    let r = http
        .post(
            &d.url(&format!("/?query=INSERT+INTO+{}.t+FORMAT+TSV", db.name)),
            "1\n".repeat(4096),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.body);
    let r = http
        .get(&d.url("/?query=SELECT+sum(number)+FROM+numbers(1000000)"))
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, "499999500000\n"));
}

/// Operations: systemd readiness (`READY=1` once listening, `STOPPING=1` on SIGTERM),
/// `chasyncd_build_info`, the process collector, per-table committed and dead-lettered rows
/// and bytes, and per-endpoint health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_tells_systemd_and_prometheus_what_it_does() {
    let db = TestDb::new("ops").await;
    db.events("t").await;
    let (tmp, spool) = spool();
    let socket_path = tmp.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut opts = DaemonOpts::new(&spool).config("[batching]\nlinger = \"50ms\"\n");
    opts.env.push((
        "NOTIFY_SOCKET".into(),
        socket_path.to_string_lossy().into_owned(),
    ));
    // A second endpoint that is down: the daemon fails over, and /metrics says which is up.
    opts.urls.push("http://127.0.0.1:9".into());
    let d = Daemon::start(opts);
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).unwrap();
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        ready.starts_with("READY=1\n") && ready.contains(&format!("listening on {}", d.addr)),
        "{ready}"
    );
    let http = Http::new();
    let v1 = d.url(&format!("/v1/tables/{}.t?ack=committed", db.name));
    let good = rows(0..10);
    let r = http.post(&v1, good.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let bad = "{\"id\":\"x\",\"name\":\"bad\"}\n".to_string();
    let r = http.post(&v1, bad.clone()).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(http.get(&d.url("/ready")).await.status, 200);
    let m = http.get(&d.url("/metrics")).await.body;
    let t = format!("{{table=\"{}.t\"}}", db.name);
    for (name, want) in [
        ("chasyncd_table_rows_committed_total", 10.0),
        ("chasyncd_table_bytes_committed_total", good.len() as f64),
        ("chasyncd_table_rows_dead_lettered_total", 1.0),
        ("chasyncd_table_bytes_dead_lettered_total", bad.len() as f64),
    ] {
        assert_eq!(metric(&m, &format!("{name}{t}")), want, "{name}");
    }
    assert_eq!(
        metric(
            &m,
            &format!(
                "chasyncd_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            &format!("chasyncd_endpoint_up{{url=\"{}\"}}", common::url())
        ),
        1.0
    );
    assert_eq!(
        metric(&m, "chasyncd_endpoint_up{url=\"http://127.0.0.1:9\"}"),
        0.0
    );
    assert!(metric(&m, "process_resident_memory_bytes") > 1e6);
    assert!(metric(&m, "process_open_fds") >= 3.0);
    assert!(metric(&m, "process_start_time_seconds") > 1.7e9);
    let (status, _) = d.terminate(Duration::from_secs(30));
    assert!(status.success());
    let n = socket.recv(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("STOPPING=1"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}
