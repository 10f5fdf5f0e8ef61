//! TLS in `chasyncd`: ClickHouse upstreams at `https://` URLs (through a TLS terminator in
//! front of the real server, with a certificate authority made for the run), and HTTPS on
//! chasyncd's own listener, with the certificate read again on SIGHUP.

mod common;

use std::time::Duration;

use chasync_testkit::tls::{TestCa, TlsTerminator, read_certs, served_certificate};
use common::{Daemon, DaemonDb, DaemonOpts, Http, TestDb, eventually, rows, spool};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_at_https_urls_take_inserts_and_queries() {
    let ca = TestCa::new("chasync test CA");
    let server = ca.server("server", "chasync test server");
    let tls = TlsTerminator::start(&ca, &server, &common::url(), false);
    let db = TestDb::new("d_tls_up").await;
    db.events("t").await;
    let (_tmp, spool) = spool();
    let mut opts = DaemonOpts::new(&spool).config(&format!(
        "[tls]\nca_file = {:?}\n[batching]\nlinger = \"100ms\"\n",
        ca.ca_file()
    ));
    opts.urls = vec![tls.url()];
    let d = Daemon::start(opts);
    let http = Http::new();
    let r = http
        .post(
            &d.url(&format!("/v1/tables/{}.t?ack=committed", db.name)),
            rows(0..500),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(db.ids("t").await, (0..500).collect::<Vec<_>>());
    // A query passes through to ClickHouse over TLS.
    let r = http
        .get(&d.url(&format!("/?query=SELECT%20count()%20FROM%20{}.t", db.name)))
        .await;
    assert_eq!((r.status, r.body.trim()), (200, "500"));
    assert!(tls.handshakes.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    assert!(!d.log_text().contains("tls_insecure_skip_verify"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_certificate_of_another_ca_is_named_in_the_answer() {
    let ca = TestCa::new("chasync test CA");
    let other = TestCa::new("some other CA");
    let server = ca.server("server", "chasync test server");
    let tls = TlsTerminator::start(&ca, &server, &common::url(), false);
    let db = TestDb::new("d_tls_wrong").await;
    db.events("t").await;
    let (_tmp, spool) = spool();
    let mut opts = DaemonOpts::new(&spool)
        .arg("--set")
        .arg(&format!("tls_ca_file={}", other.ca_file().display()));
    opts.urls = vec![tls.url()];
    let d = Daemon::start(opts);
    let http = Http::new();
    let r = http.get(&d.url("/?query=SELECT%201")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.contains("invalid peer certificate: UnknownIssuer"),
        "{}",
        r.body
    );
    assert!(r.body.contains("set tls_ca_file"), "{}", r.body);
    let r = http
        .post(&d.url(&format!("/v1/tables/{}.t", db.name)), rows(0..5))
        .await;
    assert_ne!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("UnknownIssuer"), "{}", r.body);
    assert_eq!(db.ids("t").await, Vec::<u64>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipping_upstream_verification_works_and_warns_at_start() {
    let ca = TestCa::new("chasync test CA");
    let server = ca.server("server", "chasync test server");
    let tls = TlsTerminator::start(&ca, &server, &common::url(), false);
    let db = TestDb::new("d_tls_insecure").await;
    db.events("t").await;
    let (_tmp, spool) = spool();
    let mut opts = DaemonOpts::new(&spool)
        .config("[batching]\nlinger = \"100ms\"\n")
        .arg("--set")
        .arg("tls_insecure_skip_verify=true");
    opts.urls = vec![tls.url()];
    let d = Daemon::start(opts);
    let warning = d
        .log_text()
        .lines()
        .find(|l| l.contains("tls_insecure_skip_verify"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no warning at start:\n{}", d.log_text()));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("NOT verified"), "{warning}");
    let r = Http::new()
        .post(
            &d.url(&format!("/v1/tables/{}.t?ack=committed", db.name)),
            rows(0..100),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(db.ids("t").await.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_and_reloads_its_certificate_on_sighup() {
    let ca = TestCa::new("chasync test CA");
    let first = ca.server("first", "chasyncd first");
    let second = ca.server("second", "chasyncd second");
    // The files chasyncd reads: `first` now, `second` after the reload.
    let cert = ca.dir().join("listen.pem");
    let key = ca.dir().join("listen.key");
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let db = TestDb::new("d_https").await;
    db.events("t").await;
    let (_tmp, spool) = spool();
    let d = Daemon::start(
        DaemonOpts::new(&spool)
            .config(&format!(
                "[listen_tls]\ncert_file = {cert:?}\nkey_file = {key:?}\n\
                 [batching]\nlinger = \"100ms\"\n"
            ))
            .arg("--log-format")
            .arg("json"),
    );
    let addr: std::net::SocketAddr = d.addr.parse().unwrap();
    // The log is read from the daemon's stderr as it comes: the line may trail the start.
    eventually(Duration::from_secs(20), "the listening line", || async {
        d.log_text().contains("\"https\":true")
    })
    .await;
    let https = Http::trusting(ca.ca_file());
    let r = https
        .post(
            &d.https_url(&format!("/v1/tables/{}.t?ack=committed", db.name)),
            rows(0..200),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(db.ids("t").await.len(), 200);
    // Plain HTTP is not served on an HTTPS listener.
    assert!(
        Http::new()
            .request("GET", &d.url("/ping"), "", &[])
            .await
            .is_err()
    );
    // A client that does not trust the CA is refused, saying why.
    let e = Http::new()
        .request("GET", &d.https_url("/ping"), "", &[])
        .await
        .unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
    assert_eq!(
        served_certificate(addr, ca.ca_file()).await.unwrap(),
        read_certs(&first.cert)[0]
    );

    std::fs::copy(&second.cert, &cert).unwrap();
    std::fs::copy(&second.key, &key).unwrap();
    d.hangup();
    eventually(Duration::from_secs(20), "the reload", || async {
        d.log_text().contains("SIGHUP: TLS certificate reloaded")
    })
    .await;
    assert_eq!(
        served_certificate(addr, ca.ca_file()).await.unwrap(),
        read_certs(&second.cert)[0],
        "new connections get the new certificate"
    );
    let r = https
        .post(
            &d.https_url(&format!("/v1/tables/{}.t?ack=committed", db.name)),
            rows(200..300),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(db.ids("t").await.len(), 300);

    // A broken file on the next SIGHUP: an error, and the certificate in use stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    d.hangup();
    eventually(Duration::from_secs(20), "the failed reload", || async {
        d.log_text().contains("TLS certificate NOT reloaded")
    })
    .await;
    let line = d
        .log_text()
        .lines()
        .find(|l| l.contains("NOT reloaded"))
        .unwrap()
        .to_string();
    assert!(line.contains("listen_tls.cert_file"), "{line}");
    assert_eq!(
        served_certificate(addr, ca.ca_file()).await.unwrap(),
        read_certs(&second.cert)[0]
    );
    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");
}

#[test]
fn check_config_reads_the_listener_certificate() {
    let ca = TestCa::new("chasync test CA");
    let server = ca.server("server", "chasyncd");
    let other = ca.server("other", "other");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chasyncd"))
            .args(args)
            .arg("--check-config")
            .env_remove("CHASYNCD_CONFIG")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let (code, out, err) = run(&[
        "--listen-tls-cert",
        &s(&server.cert),
        "--listen-tls-key",
        &s(&server.key),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["listen_tls"]["cert_file"], s(&server.cert));
    let (code, _, err) = run(&[
        "--listen-tls-cert",
        &s(&server.cert),
        "--listen-tls-key",
        "/nonexistent.key",
    ]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("listen_tls.key_file /nonexistent.key"),
        "{err}"
    );
    let (code, _, err) = run(&[
        "--listen-tls-cert",
        &s(&server.cert),
        "--listen-tls-key",
        &s(&other.key),
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("does not go with the certificate"), "{err}");
    let (code, _, err) = run(&["--listen-tls-cert", &s(&server.cert)]);
    assert_eq!(code, Some(2));
    assert!(err.contains("go together"), "{err}");
}
