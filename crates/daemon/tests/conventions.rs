//! chasyncd's conventions: credentials in upstream URLs, the ClickHouse variables, settings
//! checked at start, a RUST_LOG that must parse, and `--check-config` into a closed pipe;
//! against the real server.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Daemon, DaemonDb, DaemonOpts, Http, TestDb, rows, url};

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
    let (scheme, rest) = url()
        .split_once("://")
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap();
    format!("{scheme}://{}:{}@{rest}", enc(user), enc(password))
}

/// `chasyncd` with no options from the environment but `vars`.
fn chasyncd(spool: &Path, vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chasyncd"));
    for var in [
        "CHASYNCD_URL",
        "CHASYNCD_USER",
        "CHASYNCD_PASSWORD",
        "CHASYNCD_TOKEN",
        "CHASYNCD_CONFIG",
        "CHASYNC_URL",
        "CHASYNC_USER",
        "CHASYNC_PASSWORD",
        "CLICKHOUSE_URL",
        "CLICKHOUSE_USER",
        "CLICKHOUSE_PASSWORD",
        "CLICKHOUSE_DATABASE",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--spool-dir")
        .arg(spool);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

fn output(cmd: &mut Command) -> (Option<i32>, String, String) {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_into_a_closed_pipe_ends_quietly() {
    let (_dir, spool) = common::spool();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = chasyncd(&spool, &[])
        .arg("--check-config")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn a_rust_log_that_does_not_parse_is_an_error_at_start() {
    let (_dir, spool) = common::spool();
    for check in [true, false] {
        let mut cmd = chasyncd(&spool, &[("RUST_LOG", "info,chasync_core=loud")]);
        cmd.arg("--url").arg(url());
        if check {
            cmd.arg("--check-config");
        }
        let (code, stdout, stderr) = output(&mut cmd);
        assert_eq!(code, Some(2), "{stdout}{stderr}");
        assert!(stderr.contains("RUST_LOG"), "{stderr}");
        assert!(stderr.contains("is not a log filter"), "{stderr}");
        assert!(!stderr.contains("listening"), "{stderr}");
    }
    // One that parses starts as before.
    let (code, _, stderr) = output(
        chasyncd(&spool, &[("RUST_LOG", "warn,chasync_core=debug")]).args([
            "--check-config",
            "--log-format",
            "human",
        ]),
    );
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn upstream_credentials_and_the_clickhouse_variables() {
    let (_dir, spool) = common::spool();
    let describe = |vars: &[(&str, &str)], args: &[&str]| {
        let (code, stdout, stderr) =
            output(chasyncd(&spool, vars).args(args).arg("--check-config"));
        assert_eq!(code, Some(0), "{stdout}{stderr}");
        assert!(!stdout.contains("pw-Ux3"), "{stdout}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        v["engine"]["clickhouse"].clone()
    };
    let c = describe(
        &[],
        &[
            "--url",
            "http://loader:pw-Ux3@ch-a:8123,http://loader:pw-Ux3@ch-b:8123",
        ],
    );
    assert_eq!(
        c["url"],
        serde_json::json!(["http://ch-a:8123", "http://ch-b:8123"])
    );
    assert_eq!(c["user"], "loader");
    assert_eq!(c["password"], "***");
    // CLICKHOUSE_URL and CLICKHOUSE_DATABASE, CHASYNC_URL over CLICKHOUSE_URL, flags over both.
    let c = describe(
        &[
            ("CLICKHOUSE_URL", "http://loader:pw-Ux3@ch-var:1"),
            ("CLICKHOUSE_DATABASE", "db_var"),
        ],
        &[],
    );
    assert_eq!(
        (
            c["url"][0].as_str(),
            c["user"].as_str(),
            c["database"].as_str()
        ),
        (Some("http://ch-var:1"), Some("loader"), Some("db_var"))
    );
    let c = describe(
        &[
            ("CLICKHOUSE_URL", "http://ch-var:1"),
            ("CHASYNC_URL", "http://chasync-var:1"),
        ],
        &[],
    );
    assert_eq!(c["url"][0], "http://chasync-var:1");
    let c = describe(
        &[("CHASYNC_URL", "http://chasync-var:1")],
        &["--url", "http://flag:1"],
    );
    assert_eq!(c["url"][0], "http://flag:1");
    // A user given twice, differently, is refused without the password.
    let (code, stdout, stderr) = output(
        chasyncd(&spool, &[])
            .args(["--url", "http://loader:pw-Ux3@ch:1", "--user", "other"])
            .arg("--check-config"),
    );
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("\"loader\"") && stderr.contains("\"other\""),
        "{stderr}"
    );
    assert!(!stderr.contains("pw-Ux3"), "{stderr}");
}

/// The users of the daemon's own queries of `db`'s tables' columns (the catalog's).
async fn catalog_users(db: &TestDb) -> Vec<String> {
    db.exec("SYSTEM FLUSH LOGS").await;
    db.strings(&format!(
        "SELECT DISTINCT user FROM system.query_log WHERE type = 'QueryFinish' \
         AND query LIKE '%FROM system.columns%' AND query LIKE '%{}%' \
         AND query NOT LIKE '%query_log%' AND log_comment != '{}'",
        db.name,
        // The look at what a table gets for an inserting user goes as that user, as the
        // inserts do.
        chasync_core::CHECKS_COMMENT
    ))
    .await
}

#[tokio::test]
async fn the_daemons_own_queries_go_as_the_urls_user_and_its_password_is_never_shown() {
    // (Inserts go as the client's user: see the gateway's tests.)
    let db = TestDb::new("durl").await;
    db.events("t").await;
    let (user, password) = test_user();
    let (_dir, spool) = common::spool();
    let mut opts = DaemonOpts::new(&spool);
    opts.urls = vec![url_with(&user, &password)];
    let d = Daemon::start(opts);
    let http = Http::new();
    let r = http
        .post(
            &d.url(&format!("/v1/tables/{}.t?ack=committed", db.name)),
            rows(0..10),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(db.u64("SELECT count() FROM t").await, 10);
    assert_eq!(catalog_users(&db).await, vec![user.clone()]);
    let metrics = http.get(&d.url("/metrics")).await.body;
    assert!(!metrics.contains(&password), "{metrics}");
    let log = d.log_text();
    assert!(!log.contains(&password), "{log}");
    drop(d);

    // A wrong password: the server refuses the daemon's own queries; what is said names the
    // user, never the password, and neither do the metrics, the log or the spool.
    let secret = "wrong-Kq7-daemon-secret";
    let (_dir2, spool2) = common::spool();
    let mut opts = DaemonOpts::new(&spool2);
    opts.urls = vec![url_with(&user, secret)];
    // Settings make the start check them, as the URL's user.
    opts.args = vec!["--set".into(), "settings=max_insert_threads=1".into()];
    let d = Daemon::start(opts);
    let r = http
        .post(
            &d.url(&format!("/v1/tables/{}.t?ack=committed", db.name)),
            rows(10..20),
        )
        .await;
    assert!(!r.body.contains(secret), "{}", r.body);
    let metrics = http.get(&d.url("/metrics")).await.body;
    let log = d.log_text();
    assert!(log.contains("AUTHENTICATION_FAILED"), "{log}");
    assert!(log.contains(&user), "the user is named: {log}");
    for (what, text) in [("metrics", &metrics), ("log", &log)] {
        assert!(!text.contains(secret), "{what}: {text}");
    }
    let mut spooled = String::new();
    for entry in walk(&spool2) {
        spooled.push_str(&String::from_utf8_lossy(&std::fs::read(entry).unwrap()));
    }
    assert!(!spooled.contains(secret), "spool: {spooled}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn settings_the_server_refuses_keep_the_daemon_from_starting() {
    let (_dir, spool) = common::spool();
    let (code, stdout, stderr) = output(
        chasyncd(&spool, &[("RUST_LOG", "info")])
            .arg("--url")
            .arg(url())
            .args(["--set", "settings=no_such_setting=1"]),
    );
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("`no_such_setting` is not a setting"),
        "{stderr}"
    );
    assert!(!stderr.contains("chasyncd listening"), "{stderr}");
}

#[test]
fn the_cluster_option_is_refused_at_start() {
    let (_dir, spool) = common::spool();
    for check in [true, false] {
        let mut cmd = chasyncd(&spool, &[]);
        cmd.arg("--url").arg(url()).args(["--set", "cluster=two"]);
        if check {
            cmd.arg("--check-config");
        }
        let (code, stdout, stderr) = output(&mut cmd);
        assert_eq!(code, Some(2), "{stdout}{stderr}");
        assert!(
            stderr.contains("cluster") && stderr.contains("chasyncd"),
            "{stderr}"
        );
        assert!(!stderr.contains("listening"), "{stderr}");
    }
}
