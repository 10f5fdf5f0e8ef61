//! A fault-injecting TCP proxy between the client and the real server.
//!
//! Each accepted connection follows the next [`Fault`] of the plan (then the default fault,
//! [`Fault::Forward`] unless [`FaultProxy::set_default`] says otherwise, once the plan is used
//! up); a connection whose first request is an insert follows the next fault of the insert
//! plan first, if there is one ([`FaultProxy::push_insert`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with one accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Pass bytes both ways.
    Forward,
    /// Close the client's connection at once, before anything reaches the server.
    ResetOnAccept,
    /// Forward the request to the server, but cut the client off as soon as the server
    /// starts to answer: the insert is applied, the client never learns it.
    CutResponse,
    /// Accept and read, never forward and never answer (a stalled server).
    Stall,
    /// Forward with this much delay before each chunk from the server.
    Delay(Duration),
    /// A connection whose first request is an insert (`INSERT` in its first bytes, as the
    /// `clickhouse` crate puts the statement in the URL) is closed at once, before anything
    /// reaches the server; other connections (metadata queries) are forwarded, and closed
    /// when an insert follows on them.
    ResetInserts,
    /// Like [`Fault::ResetInserts`], but an insert's connection is held open and never
    /// answered (a server that takes the insert and hangs).
    StallInserts,
}

/// A proxy on a loopback port of its own, in front of the real server.
pub struct FaultProxy {
    /// The proxy's address.
    pub addr: SocketAddr,
    plan: Arc<Mutex<VecDeque<Fault>>>,
    default: Arc<Mutex<Fault>>,
    inserts: Arc<Mutex<VecDeque<Fault>>>,
    /// Connections accepted so far.
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`) that meets new connections with the
    /// faults of `plan`, in order.
    pub async fn start(upstream: &str, plan: Vec<Fault>) -> Self {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream host:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let plan = Arc::new(Mutex::new(VecDeque::from(plan)));
        let inserts = Arc::new(Mutex::new(VecDeque::new()));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let default = Arc::new(Mutex::new(Fault::Forward));
        let (p, ins, a, d) = (
            plan.clone(),
            inserts.clone(),
            accepted.clone(),
            default.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if ins.lock().unwrap().is_empty() {
                    let next = p.lock().unwrap().pop_front();
                    let fault = next.unwrap_or_else(|| *d.lock().unwrap());
                    tokio::spawn(handle(client, upstream, fault, Vec::new()));
                    continue;
                }
                // An insert fault is waiting: the first request of the connection says
                // whether it is an insert (the statement is in the request line).
                let (p, ins, d) = (p.clone(), ins.clone(), d.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let n = client.read(&mut buf).await.unwrap_or(0);
                    buf.truncate(n);
                    let head = String::from_utf8_lossy(&buf).to_ascii_uppercase();
                    let insert = head.contains("INSERT") && head.contains("QUERY=");
                    let fault = insert
                        .then(|| ins.lock().unwrap().pop_front())
                        .flatten()
                        .or_else(|| p.lock().unwrap().pop_front())
                        .unwrap_or_else(|| *d.lock().unwrap());
                    handle(client, upstream, fault, buf).await;
                });
            }
        });
        Self {
            addr,
            plan,
            default,
            inserts,
            accepted,
            task,
        }
    }

    /// `http://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Faults not met yet (of both plans).
    pub fn remaining(&self) -> usize {
        self.plan.lock().unwrap().len() + self.inserts.lock().unwrap().len()
    }

    /// Appends a fault for the next connection whose first request is an insert; until one
    /// comes, other connections follow the plan (or are forwarded).
    pub fn push_insert(&self, fault: Fault) {
        self.inserts.lock().unwrap().push_back(fault);
    }

    /// What connections meet once the plan is used up (from the next connection on).
    pub fn set_default(&self, fault: Fault) {
        *self.default.lock().unwrap() = fault;
    }

    /// Appends a fault to the plan.
    pub fn push(&self, fault: Fault) {
        self.plan.lock().unwrap().push_back(fault);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one connection whose first bytes `first` were already read from the client.
async fn handle(mut client: TcpStream, upstream: SocketAddr, fault: Fault, mut first: Vec<u8>) {
    // For insert faults on a connection whose first request is not an insert: the fault
    // that an insert later on the same connection (kept alive) meets.
    let mut later = None;
    let fault = match fault {
        Fault::ResetInserts | Fault::StallInserts => {
            // The request line (and so the statement) is in the first bytes.
            if first.is_empty() {
                let mut buf = vec![0u8; 64 * 1024];
                let n = client.read(&mut buf).await.unwrap_or(0);
                first.extend_from_slice(&buf[..n]);
            }
            let head = String::from_utf8_lossy(&first).to_ascii_uppercase();
            if !head.contains("INSERT") {
                later = Some(fault);
                Fault::Forward
            } else if fault == Fault::ResetInserts {
                Fault::ResetOnAccept
            } else {
                Fault::Stall
            }
        }
        f => f,
    };
    match fault {
        Fault::ResetOnAccept => {
            #[allow(deprecated)]
            let _ = client.set_linger(Some(Duration::ZERO));
            drop(client);
        }
        Fault::Stall => {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = client.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        }
        Fault::Forward
        | Fault::CutResponse
        | Fault::Delay(_)
        | Fault::ResetInserts
        | Fault::StallInserts => {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            // Client to server; ends `true` when a later insert must cut the connection.
            let mut up = tokio::spawn(async move {
                if sw.write_all(&first).await.is_err() {
                    return false;
                }
                let mut buf = vec![0u8; 64 * 1024];
                let mut stalled = false;
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if let Some(f) = later
                        && !stalled
                        && String::from_utf8_lossy(&buf[..n])
                            .to_ascii_uppercase()
                            .contains("QUERY=INSERT")
                    {
                        if f == Fault::ResetInserts {
                            return true;
                        }
                        stalled = true;
                    }
                    if stalled {
                        continue;
                    }
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = sw.shutdown().await;
                false
            });
            let mut up_done = false;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let read = tokio::select! {
                    r = sr.read(&mut buf) => r,
                    cut = &mut up, if !up_done => {
                        up_done = true;
                        if matches!(cut, Ok(true)) {
                            break;
                        }
                        continue;
                    }
                };
                let n = match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                match fault {
                    Fault::CutResponse => break,
                    Fault::Delay(d) => tokio::time::sleep(d).await,
                    _ => {}
                }
                if cw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            up.abort();
            // Dropping both halves closes the client's connection.
        }
    }
}
