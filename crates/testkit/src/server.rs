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

/// A port nothing listens on now (for a replica that is down).
pub fn unused_port() -> u16 {
    free_port()
}

impl PrivateServer {
    /// Starts a server on free ports with a fresh data directory.
    pub fn start() -> Self {
        let s = Self::unstarted();
        s.run("start");
        s
    }

    /// A server on free ports with a fresh data directory, not started yet: its ports are
    /// known before it starts (for a cluster's configuration), see
    /// [`start_with`](Self::start_with).
    pub fn unstarted() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            http_port: free_port(),
            tcp_port: free_port(),
        }
    }

    /// Starts the server with `extra_config` (XML elements put into its `config.xml`, e.g.
    /// `<remote_servers>`) and `profile_settings` (XML elements put into its default profile,
    /// e.g. `<distributed_foreground_insert>1</distributed_foreground_insert>`); a restart
    /// keeps them.
    pub fn start_with(&self, extra_config: &str, profile_settings: &str) {
        std::fs::write(self.dir.path().join("extra-config.xml"), extra_config).unwrap();
        std::fs::write(
            self.dir.path().join("profile-settings.xml"),
            profile_settings,
        )
        .unwrap();
        self.run("start");
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
            .args(self.fragments())
            .output()
            .expect("run scripts/clickhouse.sh");
        assert!(
            out.status.success(),
            "clickhouse.sh {cmd} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The `--extra-config` / `--profile-settings` flags of the fragments it was started with.
    fn fragments(&self) -> Vec<std::ffi::OsString> {
        let mut flags = Vec::new();
        for (flag, file) in [
            ("--extra-config", "extra-config.xml"),
            ("--profile-settings", "profile-settings.xml"),
        ] {
            let path = self.dir.path().join(file);
            if path.exists() {
                flags.push(flag.into());
                flags.push(path.into_os_string());
            }
        }
        flags
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
