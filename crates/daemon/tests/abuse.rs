//! `chasyncd` under abuse, against the real server: slow-loris heads and bodies, many large
//! bodies held in flight, and thousands of idle connections. Whatever the clients do, the
//! daemon's memory stays within its budget and `/ping` answers throughout.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Daemon, DaemonDb, DaemonOpts, Http, TestDb, eventually, metric, spool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET path` on a connection of its own, with a generous timeout: the status and body.
async fn get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: chasyncd\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status in {text:?}"))?;
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
}

/// Asks `/ping` (ClickHouse's, passed through) and `/health` (the daemon's) in turn every
/// 100 ms until stopped; counts the answers and the failures.
struct Pinger {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, Vec<String>)>,
}

impl Pinger {
    fn start(addr: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                let (path, expect) = if n.is_multiple_of(2) {
                    // Passed through from ClickHouse (chunked).
                    ("/ping", "Ok.")
                } else {
                    ("/health", "ok")
                };
                n += 1;
                match get(&addr, path).await {
                    Ok((200, body)) if body.contains(expect) => ok += 1,
                    Ok((status, body)) => failed.push(format!("{path}: {status}: {body}")),
                    Err(e) => failed.push(format!("{path}: {e}")),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (ok, failed)
        });
        Self { stop, task }
    }

    /// Stops; asserts every ping answered.
    async fn check(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let (ok, failed) = self.task.await.unwrap();
        assert!(
            failed.is_empty(),
            "{} pings failed: {failed:?}",
            failed.len()
        );
        assert!(ok > 0);
        ok
    }
}

/// A line `Name: value kB` of `/proc/<pid>/status`, in bytes.
fn proc_status(pid: u32, name: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("{name} not in {text}"))
}

/// Raises this process's limit of open files to its hard limit.
fn raise_fd_limit(need: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let l = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: l.maximum,
            maximum: l.maximum,
        },
    );
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    assert!(
        now >= need,
        "this test needs {need} open files, the limit is {now}"
    );
}

/// Whether the server closed `s` (end of stream or reset) before `within`.
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_heads_and_bodies_are_cut_off_and_ping_answers_throughout() {
    let (_tmp, spool) = spool();
    let d = Daemon::start(
        DaemonOpts::new(&spool)
            .config("[limits]\nheader_read_timeout_s = 1\nbody_read_timeout_s = 2\n"),
    );
    let addr = d.addr.clone();
    let pinger = Pinger::start(addr.clone());

    // 300 sockets sending a request head one byte every 100 ms, and 20 sending a body so.
    let head = b"POST /?query=INSERT%20INTO%20t%20FORMAT%20JSONEachRow HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n";
    let mut tasks = Vec::new();
    for k in 0..320 {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            let slow_body = k >= 300;
            if slow_body {
                s.write_all(head).await.unwrap();
            }
            let mut reply = Vec::new();
            let (mut rd, mut wr) = s.split();
            for i in 0.. {
                let byte = [if slow_body {
                    b'{'
                } else {
                    head[i % head.len()]
                }];
                tokio::select! {
                    w = wr.write_all(&byte) => if w.is_err() { break },
                    r = rd.read_buf(&mut reply) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    },
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                assert!(i < 300, "socket {k} still open after 30 s");
            }
            // The rest of the answer, if any.
            let _ = tokio::time::timeout(Duration::from_secs(2), rd.read_to_end(&mut reply)).await;
            (slow_body, String::from_utf8_lossy(&reply).into_owned())
        }));
    }
    let mut bodies_timed_out = 0;
    for t in tasks {
        let (slow_body, reply) = t.await.unwrap();
        if slow_body {
            assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
            bodies_timed_out += 1;
        }
    }
    assert_eq!(bodies_timed_out, 20);
    let pings = pinger.check().await;
    let http = Http::new();
    let m = http.get(&d.url("/metrics")).await.body;
    assert!(metric(&m, "chasyncd_header_timeouts_total") >= 300.0, "{m}");
    assert_eq!(metric(&m, "chasyncd_body_timeouts_total"), 20.0, "{m}");
    assert_eq!(metric(&m, "chasyncd_header_read_timeout_seconds"), 1.0);
    eprintln!("{pings} pings answered while 320 slow sockets were cut off");
    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");
}

/// 60 requests announcing 15 MB bodies (and sending most of them) against a budget of 64 MiB:
/// the ones that do not fit are answered 503 with `Retry-After` before their bodies are
/// read, and the daemon's memory stays within the budget and a constant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_in_flight_stay_within_the_budget() {
    const BUDGET: u64 = 64 << 20;
    const BODY: usize = 15_000_000;
    let db = TestDb::new("bodies").await;
    db.events("t").await;
    let (_tmp, spool) = spool();
    let d = Daemon::start(DaemonOpts::new(&spool).config(&format!(
        "[limits]\nmax_body_bytes_in_flight = {BUDGET}\nbody_read_timeout_s = 4\n"
    )));
    let pid = d.child.id();
    let http = Http::new();
    let v1 = d.url(&format!("/v1/tables/{}.t", db.name));
    assert_eq!(http.post(&v1, common::rows(0..10)).await.status, 200);
    let base = proc_status(pid, "VmRSS");
    let pinger = Pinger::start(d.addr.clone());

    // Announced bodies (Content-Length) with `Expect: 100-continue`: a refused request is
    // answered before the client sends its body.
    let path = format!("/v1/tables/{}.t", db.name);
    let mut tasks = Vec::new();
    for _ in 0..60 {
        let (addr, path) = (d.addr.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            s.write_all(
                format!(
                    "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {BODY}\r\nExpect: 100-continue\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
            let mut head = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut head))
                .await
                .expect("an answer to the head")
                .unwrap();
            let head = String::from_utf8_lossy(&head[..n]).into_owned();
            if head.starts_with("HTTP/1.1 100") {
                // Taken: send all but the last megabyte, and hold.
                let row = format!("{{\"id\":1,\"name\":\"{}\"}}\n", "x".repeat(990));
                let chunk = row.repeat(64);
                let mut sent = 0;
                while sent + chunk.len() < BODY - (1 << 20) {
                    if s.write_all(chunk.as_bytes()).await.is_err() {
                        break;
                    }
                    sent += chunk.len();
                }
                let mut rest = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut rest)).await;
                (true, String::from_utf8_lossy(&rest).into_owned())
            } else {
                (false, head)
            }
        }));
    }
    // While they are held.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = http.get(&d.url("/metrics")).await.body;
    let in_flight = metric(&m, "chasyncd_body_bytes_in_flight");
    assert!(in_flight <= BUDGET as f64, "{in_flight}");
    assert!(in_flight >= BODY as f64, "{in_flight}: no body taken");
    let held_rss = proc_status(pid, "VmRSS");
    let (mut taken, mut refused) = (0, 0);
    for t in tasks {
        let (admitted, reply) = t.await.unwrap();
        if admitted {
            taken += 1;
            assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
        } else {
            refused += 1;
            assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
            assert!(
                reply.to_ascii_lowercase().contains("retry-after: 1"),
                "{reply}"
            );
            assert!(reply.contains("max_body_bytes_in_flight"), "{reply}");
        }
    }
    assert!(
        (1..=4).contains(&taken),
        "{taken} bodies of 15 MB taken in 64 MiB"
    );
    let peak_announced = proc_status(pid, "VmHWM");
    assert_eq!(refused, 60 - taken);

    // Bodies without a length (chunked), sent as fast as the daemon reads: refused once the
    // budget is spent, while they are being read.
    let mut tasks = Vec::new();
    for _ in 0..60 {
        let (addr, path) = (d.addr.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            let head =
                format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let row = format!("{{\"id\":1,\"name\":\"{}\"}}\n", "x".repeat(990));
            let data = row.repeat(64);
            let chunk = format!("{:x}\r\n{data}\r\n", data.len());
            let mut sent = 0;
            while sent < BODY {
                if s.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
                sent += data.len();
            }
            // Hold (no last chunk) until the daemon gives up.
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut rest)).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let m = http.get(&d.url("/metrics")).await.body;
    assert!(
        metric(&m, "chasyncd_bodies_refused_total") > refused as f64,
        "{m}"
    );
    assert_eq!(metric(&m, "chasyncd_body_bytes_in_flight"), 0.0);
    pinger.check().await;

    let peak = proc_status(pid, "VmHWM");
    eprintln!(
        "RSS {} MiB at start, {} MiB while 4 bodies were held, peak {} MiB after them, {} MiB \
         after the chunked ones; budget {} MiB",
        base >> 20,
        held_rss >> 20,
        peak_announced >> 20,
        peak >> 20,
        BUDGET >> 20
    );
    const SLACK: u64 = 64 << 20;
    assert!(
        peak <= base + BUDGET + SLACK,
        "peak RSS {} MiB over {} MiB at start + the budget {} MiB + {} MiB",
        peak >> 20,
        base >> 20,
        BUDGET >> 20,
        SLACK >> 20
    );
    // Still taking inserts.
    assert_eq!(http.post(&v1, common::rows(10..20)).await.status, 200);
    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    assert_eq!(db.u64("SELECT count() FROM t").await, 20);
}

/// 2000 idle connections against a daemon allowed 1024 open files: it keeps within its
/// connection limit by closing the connections idle the longest, and `/ping` answers
/// throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_connections_do_not_keep_ping_out() {
    raise_fd_limit(2500);
    let (_tmp, spool) = spool();
    let mut opts = DaemonOpts::new(&spool).config("[limits]\nheader_read_timeout_s = 60\n");
    opts.fd_limit = Some(1024);
    let d = Daemon::start(opts);
    eventually(
        Duration::from_secs(10),
        "the warning about the limit of open files",
        || async { d.log_text().contains("limits.max_connections is above") },
    )
    .await;
    let addr = d.addr.clone();
    let pinger = Pinger::start(addr.clone());
    let mut held = Vec::new();
    let opened = Arc::new(AtomicU64::new(0));
    for _ in 0..2000 {
        let s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&addr))
            .await
            .expect("connect within 10 s")
            .unwrap();
        opened.fetch_add(1, Ordering::Relaxed);
        held.push(s);
    }
    // Held a while: the daemon has closed the oldest to make room.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let http = Http::new();
    let m = http.get(&d.url("/metrics")).await.body;
    let max = metric(&m, "chasyncd_connections_max");
    assert_eq!(max, (1024 - 64) as f64, "{m}");
    assert!(metric(&m, "chasyncd_connections") <= max, "{m}");
    assert!(
        metric(&m, "chasyncd_connections_evicted_total") >= 2000.0 - max,
        "{m}"
    );
    let mut closed = 0;
    for s in &mut held {
        if closed_by_server(s, Duration::from_millis(1)).await {
            closed += 1;
        }
    }
    assert!(closed as f64 >= 2000.0 - max, "{closed} closed");
    let pings = pinger.check().await;
    eprintln!(
        "{pings} pings answered while 2000 connections were opened and held; {closed} closed by the daemon"
    );
    drop(held);
    // Back to normal.
    eventually(Duration::from_secs(10), "connections closed", || {
        let http = http.clone();
        let url = d.url("/metrics");
        async move { metric(&http.get(&url).await.body, "chasyncd_connections") <= 2.0 }
    })
    .await;
    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");
}
