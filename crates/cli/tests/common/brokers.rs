#![allow(dead_code)]
//! The `chasync consume` processes of the source tests; the brokers are the test kit's
//! ([`chasync_testkit::brokers`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use chasync_testkit::brokers::{Nats, Tansu};

/// A `chasync consume ...` process, killed when dropped; its stderr goes to a file.
pub struct Consumer {
    pub child: Child,
    pub log: PathBuf,
}

impl Consumer {
    /// Starts `chasync` with `args` in `dir`, with the environment `env` (crash points).
    pub fn start(dir: &Path, name: &str, args: &[String], env: &[(&str, String)]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("chasync"));
        cmd.env("CHASYNC_URL", chasync_testkit::url())
            .env_remove("CHASYNC_USER")
            .env_remove("CHASYNC_PASSWORD")
            .env_remove("CHASYNC_TEST_CRASH_AT")
            .env("RUST_LOG", "info")
            .current_dir(dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("chasync starts");
        Self { child, log }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to end by itself (a crash point), within `timeout`; true when it
    /// was killed by SIGKILL.
    pub fn wait_killed(&mut self, timeout: Duration) -> bool {
        use std::os::unix::process::ExitStatusExt;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.signal() == Some(9);
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and returns.
    pub fn signal_term(&self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }

    /// SIGTERM, then waits (the consumer finishes its open ranges); SIGKILL after `timeout`.
    pub fn stop(&mut self, timeout: Duration) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + timeout;
        while self.child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
