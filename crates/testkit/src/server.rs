//! A ClickHouse of a test's own (scripts/clickhouse.sh with its own directory and ports), for
//! tests that kill and restart the server.

use std::path::PathBuf;
use std::process::Command;

/// A server of a test's own, stopped when dropped.
pub struct PrivateServer {
    /// Its data directory.
    pub dir: tempfile::TempDir,
    /// Its HTTP port.
    pub http_port: u16,
    /// Its native TCP port.
    pub tcp_port: u16,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/clickhouse.sh")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PrivateServer {
    /// Starts a server on free ports with a fresh data directory.
    pub fn start() -> Self {
        let s = Self {
            dir: tempfile::tempdir().unwrap(),
            http_port: free_port(),
            tcp_port: free_port(),
        };
        s.run("start");
        s
    }

    /// Its HTTP URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    fn run(&self, cmd: &str) {
        let out = Command::new("bash")
            .arg(script())
            .arg(cmd)
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--http-port")
            .arg(self.http_port.to_string())
            .arg("--tcp-port")
            .arg(self.tcp_port.to_string())
            .output()
            .expect("run scripts/clickhouse.sh");
        assert!(
            out.status.success(),
            "clickhouse.sh {cmd} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIGKILL: a crash.
    pub fn kill(&self) {
        self.run("kill");
    }

    /// Start again on the same data directory.
    pub fn restart(&self) {
        self.run("start");
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.run("stop");
    }
}
