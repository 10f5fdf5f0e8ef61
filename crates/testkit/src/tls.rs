//! TLS for tests: a certificate authority made per run ([`TestCa`]: server certificates for
//! `127.0.0.1` and `localhost`, client certificates for mutual TLS, as PEM files), and a
//! TLS-terminating proxy in front of the real server ([`TlsTerminator`]: TCP accept, rustls
//! handshake, bytes copied to the plain HTTP port).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};

/// A certificate authority of one test run, with the files of its certificates in a
/// temporary directory.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    dir: tempfile::TempDir,
    ca_file: PathBuf,
}

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    chasync_core::tls::provider()
}

impl TestCa {
    /// A new CA named `name` (its common name), its certificate written to `ca.pem`.
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("a CA key");
        let cert = params.self_signed(&key).expect("a CA certificate");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, cert.pem()).expect("write ca.pem");
        Self {
            issuer: Issuer::new(params, key),
            dir,
            ca_file,
        }
    }

    /// The CA's certificate (PEM file): what a client trusts.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The directory of this CA's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn issue(
        &self,
        file: &str,
        cn: &str,
        sans: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> CertFiles {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.issuer).expect("a certificate");
        let files = CertFiles {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write a certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write a key");
        files
    }

    /// A server certificate for `127.0.0.1` and `localhost` with common name `cn`, written to
    /// `<file>.pem` and `<file>.key`.
    pub fn server(&self, file: &str, cn: &str) -> CertFiles {
        self.server_for(file, cn, &["127.0.0.1", "localhost"])
    }

    /// A server certificate for `names` (host names or IP addresses).
    pub fn server_for(&self, file: &str, cn: &str, names: &[&str]) -> CertFiles {
        self.issue(file, cn, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate (mutual TLS) with common name `cn`, written to `<file>.pem` and
    /// `<file>.key`.
    pub fn client(&self, file: &str, cn: &str) -> CertFiles {
        self.issue(file, cn, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// The certificates of a PEM file.
pub fn read_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .expect("a PEM file")
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

/// The certificate a TLS server at `addr` presents (to a client that trusts `ca` and asks
/// for `localhost`): for checking which certificate is served.
pub async fn served_certificate(
    addr: SocketAddr,
    ca: &Path,
) -> Result<CertificateDer<'static>, String> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(read_certs(ca));
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = connector
        .connect("localhost".try_into().expect("a name"), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, session) = tls.get_ref();
    session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned())
        .ok_or_else(|| "no certificate".to_string())
}

/// A TLS-terminating proxy on a loopback port of its own: each accepted connection is
/// handshaken with rustls (with a client certificate of the CA required, when asked), then
/// its bytes are copied to and from the plain upstream (`http://host:port`).
///
/// It runs on a thread and runtime of its own, so tests that block their thread (running a
/// binary, say) do not stall it. Dropping it stops it.
pub struct TlsTerminator {
    /// The proxy's address.
    pub addr: SocketAddr,
    /// Handshakes that completed.
    pub handshakes: Arc<AtomicUsize>,
    /// Handshakes that failed, with the server side's reason.
    pub failures: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsTerminator {
    /// Starts a terminator to `upstream` serving `server` (a certificate of `ca`); when
    /// `require_client_cert`, a client must show a certificate of `ca`.
    pub fn start(
        ca: &TestCa,
        server: &CertFiles,
        upstream: &str,
        require_client_cert: bool,
    ) -> Self {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream host:port");
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = if require_client_cert {
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(read_certs(ca.ca_file()));
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::from_pem_file(&server.key).expect("a server key");
        let config = builder
            .with_single_cert(read_certs(&server.cert), key)
            .expect("a server configuration");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("an address");
        let handshakes = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (h, f) = (handshakes.clone(), failures.clone());
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("a tokio listener");
                loop {
                    let client = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((c, _)) => c,
                            Err(_) => return,
                        },
                        _ = &mut stopped => return,
                    };
                    let (acceptor, h, f) = (acceptor.clone(), h.clone(), f.clone());
                    tokio::spawn(async move {
                        let mut tls = match acceptor.accept(client).await {
                            Ok(t) => t,
                            Err(e) => {
                                f.lock().unwrap().push(e.to_string());
                                return;
                            }
                        };
                        h.fetch_add(1, Ordering::SeqCst);
                        let Ok(mut server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                    });
                }
            });
        });
        Self {
            addr,
            handshakes,
            failures,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `https://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// `https://localhost:port`.
    pub fn url_localhost(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
