//! Message brokers on loopback for the source tests: tansu (a Kafka-protocol broker, memory
//! only; its binary in `TANSU_BIN`) and nats-server with JetStream (`NATS_SERVER`, default
//! `nats-server` on the PATH). `scripts/test-sources.sh` installs both and runs the tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tansu broker, killed when dropped.
pub struct Tansu {
    /// Its port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
    child: Child,
}

impl Tansu {
    /// Starts one on a free port (`TANSU_BIN`).
    pub fn start(log: &Path) -> Self {
        let bin = PathBuf::from(std::env::var("TANSU_BIN").expect(
            "TANSU_BIN is not set: run the source tests with scripts/test-sources.sh \
             (it installs the tansu broker)",
        ));
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("tansu starts");
        wait_port(port, "tansu");
        Self { port, bin, child }
    }

    /// `host:port` for `--brokers`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let status = Command::new(&self.bin)
            .args([
                "topic",
                "create",
                topic,
                "--partitions",
                &partitions.to_string(),
            ])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .status()
            .expect("tansu topic create");
        assert!(status.success(), "tansu topic create {topic}");
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A nats-server with JetStream, its store in a directory of the test's, killed when
/// dropped; [`restart`](Self::restart) kills it and starts it again on the same port and
/// store.
pub struct Nats {
    /// Its port on 127.0.0.1.
    pub port: u16,
    store: PathBuf,
    log: PathBuf,
    child: Child,
}

impl Nats {
    /// Starts one on a free port, storing in `dir`.
    pub fn start(dir: &Path) -> Self {
        let port = free_port();
        let store = dir.join("jetstream");
        let log = dir.join("nats.log");
        let child = Self::spawn(port, &store, &log);
        Self {
            port,
            store,
            log,
            child,
        }
    }

    fn spawn(port: u16, store: &Path, log: &Path) -> Child {
        let bin = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let child = Command::new(&bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
            .arg("-sd")
            .arg(store)
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .expect("log file"),
            )
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{bin} does not start ({e}): run the source tests with scripts/test-sources.sh"
                )
            });
        wait_port(port, "nats-server");
        child
    }

    /// The URL for `--server`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and store.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(self.port, &self.store, &self.log);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
