//! A TLS terminator in front of the test server, for tests outside Rust (the Python
//! package's): makes a certificate authority for the run, a server certificate for
//! `127.0.0.1`/`localhost` and a client certificate, starts a [`TlsTerminator`] and prints one
//! JSON line with its URLs and the files. It runs until its standard input closes.
//!
//! ```text
//! chasync-tls-terminator [--upstream http://127.0.0.1:8123] [--require-client-cert]
//! ```

use std::io::Read;

use chasync_testkit::tls::{TestCa, TlsTerminator};

fn main() {
    let mut upstream = chasync_testkit::url();
    let mut require_client_cert = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--upstream" => upstream = args.next().expect("--upstream URL"),
            "--require-client-cert" => require_client_cert = true,
            other => {
                eprintln!("chasync-tls-terminator: unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    let ca = TestCa::new("chasync test CA");
    let other = TestCa::new("some other CA");
    let server = ca.server("server", "chasync test server");
    let client = ca.client("client", "chasync test client");
    let tls = TlsTerminator::start(&ca, &server, &upstream, require_client_cert);
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    println!(
        "{}",
        serde_json::json!({
            "url": tls.url(),
            "url_localhost": tls.url_localhost(),
            "ca_file": path(ca.ca_file()),
            "other_ca_file": path(other.ca_file()),
            "client_cert": path(&client.cert),
            "client_key": path(&client.key),
        })
    );
    // Until the caller closes stdin (or is gone).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(tls);
}
