//! Test support: the real ClickHouse (`CLICKHOUSE_URL`), a database per test, and the binary.
#![allow(dead_code)]

use std::path::Path;

use assert_cmd::Command;

#[allow(unused_imports)]
pub use chasync_testkit::{TestDb, url};

/// Variables of the environment that reach the options, removed for every run.
pub const OPTION_VARS: [&str; 12] = [
    "CHASYNC_USER",
    "CHASYNC_PASSWORD",
    "CHASYNC_DATABASE",
    "CHASYNC_SPOOL_DIR",
    "CHASYNC_DLQ_DIR",
    "CHASYNC_CONFIG",
    "CLICKHOUSE_URL",
    "CLICKHOUSE_USER",
    "CLICKHOUSE_PASSWORD",
    "CLICKHOUSE_DATABASE",
    "RUST_LOG",
    "XDG_CONFIG_HOME",
];

/// The `chasync` binary, pointed at the server under test, with no other options from the
/// environment and no user config file (`HOME` is `dir`), run in `dir` (so a default spool
/// directory lands there).
pub fn chasync(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("chasync").expect("the chasync binary");
    for var in OPTION_VARS {
        cmd.env_remove(var);
    }
    cmd.env("CHASYNC_URL", url())
        .env("HOME", dir)
        .current_dir(dir);
    cmd
}

/// What a run of the binary gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `chasync args...` in `dir`.
pub fn run(dir: &Path, args: &[&str]) -> Run {
    run_cmd(chasync(dir).args(args))
}

/// Runs a prepared command.
pub fn run_cmd(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("run chasync");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A loopback port where nothing listens.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
