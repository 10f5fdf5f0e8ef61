//! Global options, config file, exit codes, the unreachable-server hint, secrets, and the
//! checks of `insert`'s arguments.

mod common;

use common::{TestDb, chasync, closed_port, run, run_cmd};

#[test]
fn help_lists_the_commands_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(dir.path(), &["--help"]);
    assert_eq!(r.code, 0, "{r:?}");
    for cmd in ["doctor", "dlq", "schema", "bench", "insert"] {
        assert!(r.stdout.contains(cmd), "{r:?}");
    }
    assert!(r.stdout.contains("Exit codes"), "{r:?}");
}

#[test]
fn nothing_answering_gives_the_way_to_start_the_local_server() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", closed_port());
    let r = run(dir.path(), &["--url", &url, "doctor"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("Connection refused"), "{r:?}");
    assert!(
        r.stderr.contains(&format!("nothing answers at {url}")),
        "{r:?}"
    );
    assert!(r.stderr.contains("./run clickhouse-start"), "{r:?}");
    assert!(r.stderr.contains("scripts/clickhouse.sh start"), "{r:?}");
    // The same as JSON on stderr.
    let r = run(dir.path(), &["--url", &url, "--json", "doctor"]);
    assert_eq!(r.code, 1, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(v["exit_code"], 1);
    assert!(
        v["hint"]
            .as_str()
            .unwrap()
            .contains("./run clickhouse-start")
    );
}

#[test]
fn a_wrong_password_is_reported_but_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "pw-Zq8x-never-print-me";
    let r = run(
        dir.path(),
        &["--user", "chasync_test", "--password", secret, "doctor"],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("516"), "{r:?}");
    assert!(
        r.stderr.contains("--password"),
        "the hint names the flag: {r:?}"
    );
    assert!(
        !r.stderr.contains(secret) && !r.stdout.contains(secret),
        "{r:?}"
    );
    // From the environment and with JSON errors too.
    let r = run_cmd(
        chasync(dir.path())
            .env("CHASYNC_USER", "chasync_test")
            .env("CHASYNC_PASSWORD", secret)
            .args(["--json", "doctor"]),
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("AUTHENTICATION_FAILED"), "{r:?}");
    assert!(
        !r.stderr.contains(secret) && !r.stdout.contains(secret),
        "{r:?}"
    );
}

#[test]
fn the_right_password_from_the_environment_works() {
    let dir = tempfile::tempdir().unwrap();
    let password =
        std::env::var("CH_TEST_PASSWORD").unwrap_or_else(|_| "chasync-secret".to_string());
    let r = run_cmd(
        chasync(dir.path())
            .env("CHASYNC_USER", "chasync_test")
            .env("CHASYNC_PASSWORD", &password)
            .args(["--json", "doctor"]),
    );
    assert!(r.code == 0 || r.code == 4, "{r:?}");
    assert!(
        r.json()["version"].as_str().unwrap().starts_with("26."),
        "{r:?}"
    );
    assert!(!r.stdout.contains(&password) && !r.stderr.contains(&password));
}

#[tokio::test]
async fn config_file_then_environment_then_flags() {
    let db = TestDb::new("cfg").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("chasync.toml");
    std::fs::write(
        &cfg,
        format!(
            "url = \"{}\"\ndatabase = \"{}\"\ndlq_dir = \"spool-from-file\"\n",
            common::url(),
            db.name
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    // The file alone: URL and database come from it (a bare table name is in its database).
    let r = run_cmd(chasync(dir.path()).env_remove("CHASYNC_URL").args([
        "--config", cfg, "bench", "--table", "b", "--create", "--rows", "10",
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(db.u64("SELECT count() FROM b").await, 10);
    let r = run_cmd(
        chasync(dir.path())
            .env_remove("CHASYNC_URL")
            .args(["--config", cfg, "dlq", "list"]),
    );
    assert!(r.stdout.contains("spool-from-file"), "{r:?}");
    // The environment overrides the file ...
    let closed = format!("http://127.0.0.1:{}", closed_port());
    let r = run_cmd(
        chasync(dir.path())
            .env("CHASYNC_URL", &closed)
            .args(["--config", cfg, "doctor"]),
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains(&closed), "{r:?}");
    // ... and a flag overrides both.
    let r = run_cmd(chasync(dir.path()).env("CHASYNC_URL", &closed).args([
        "--config",
        cfg,
        "--url",
        &common::url(),
        "--json",
        "doctor",
    ]));
    assert!(r.code == 0 || r.code == 4, "{r:?}");
    // A typo in the file is an error, not silently ignored.
    std::fs::write(dir.path().join("bad.toml"), "batch_rowz = 5\n").unwrap();
    let r = run(dir.path(), &["--config", "bad.toml", "dlq", "list"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("unknown option \"batch_rowz\""), "{r:?}");
}

#[test]
fn bad_values_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(dir.path(), &["bench", "--table", "t", "--linger", "5"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("missing unit"), "{r:?}");
    let r = run(
        dir.path(),
        &["bench", "--table", "t", "--batch-bytes", "12 parsecs"],
    );
    assert_eq!(r.code, 2, "{r:?}");
    let r = run(
        dir.path(),
        &["bench", "--table", "t", "--max-concurrency", "0"],
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("max_concurrency must be at least 1"),
        "{r:?}"
    );
    let r = run(
        dir.path(),
        &["bench", "--table", "t", "--rows", "5", "--duration", "1s"],
    );
    assert_eq!(r.code, 2, "{r:?}");
}

#[test]
fn insert_checks_its_arguments() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rows.txt"), "x\n").unwrap();
    let r = run(dir.path(), &["insert", "--table", "db.t", "rows.txt"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("give --format (JSONEachRow"), "{r:?}");
    let r = run(dir.path(), &["insert", "--table", "db.t", "missing.csv"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("cannot open missing.csv"), "{r:?}");
}
