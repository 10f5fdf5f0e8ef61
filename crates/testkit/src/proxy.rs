//! A fault-injecting TCP proxy between the client and the real server.
//!
//! Each accepted connection follows the next [`Fault`] of the plan (then the default fault,
//! [`Fault::Forward`] unless [`FaultProxy::set_default`] says otherwise, once the plan is used
//! up).

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
    /// reaches the server; other connections (metadata queries) are forwarded.
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
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let default = Arc::new(Mutex::new(Fault::Forward));
        let (p, a, d) = (plan.clone(), accepted.clone(), default.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let next = p.lock().unwrap().pop_front();
                let fault = next.unwrap_or_else(|| *d.lock().unwrap());
                tokio::spawn(handle(client, upstream, fault));
            }
        });
        Self {
            addr,
            plan,
            default,
            accepted,
            task,
        }
    }

    /// `http://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Faults not met yet.
    pub fn remaining(&self) -> usize {
        self.plan.lock().unwrap().len()
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

async fn handle(mut client: TcpStream, upstream: SocketAddr, fault: Fault) {
    let mut first = Vec::new();
    let fault = match fault {
        Fault::ResetInserts | Fault::StallInserts => {
            // The request line (and so the statement) is in the first bytes.
            let mut buf = vec![0u8; 64 * 1024];
            let n = client.read(&mut buf).await.unwrap_or(0);
            first.extend_from_slice(&buf[..n]);
            let head = String::from_utf8_lossy(&first).to_ascii_uppercase();
            if !head.contains("INSERT") {
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
            let up = tokio::spawn(async move {
                if sw.write_all(&first).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy(&mut cr, &mut sw).await;
                let _ = sw.shutdown().await;
            });
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match sr.read(&mut buf).await {
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
