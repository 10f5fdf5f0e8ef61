//! HTTPS on chasyncd's own listener: the certificate and key of `[listen_tls]`, read at start
//! and again on SIGHUP. A reload swaps the certificate for new handshakes; the listener and
//! the connections already open stay as they are.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;

/// The `[listen_tls]` section (or `--listen-tls-cert` / `--listen-tls-key`): chasyncd serves
/// HTTPS with this certificate.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenTls {
    /// The server certificate (and its chain), PEM.
    pub cert_file: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// The certificate in use, swapped by [`ServerTls::reload`].
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The listener's TLS: an acceptor whose certificate can be reloaded.
pub struct ServerTls {
    files: ListenTls,
    current: Arc<Current>,
    acceptor: TlsAcceptor,
}

impl ServerTls {
    /// Reads the certificate and key of `files`; fails with a message naming the file.
    pub fn load(files: &ListenTls) -> Result<Self, String> {
        let current = Arc::new(Current(RwLock::new(Arc::new(read(files)?))));
        let mut config = rustls::ServerConfig::builder_with_provider(chasync_core::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            files: files.clone(),
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the files again and serves the new certificate to new connections; on an error
    /// the certificate in use stays.
    pub fn reload(&self) -> Result<(), String> {
        let key = read(&self.files)?;
        *self.current.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// The acceptor of new connections.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// The files it serves.
    pub fn files(&self) -> &ListenTls {
        &self.files
    }
}

/// The message of a configuration error, without the "invalid configuration" prefix.
fn message(e: chasync_core::Error) -> String {
    match e {
        chasync_core::Error::Config(m) => m,
        other => other.to_string(),
    }
}

fn read(files: &ListenTls) -> Result<CertifiedKey, String> {
    let chain = chasync_core::tls::certificates(&files.cert_file, "listen_tls.cert_file")
        .map_err(message)?;
    let key =
        chasync_core::tls::private_key(&files.key_file, "listen_tls.key_file").map_err(message)?;
    CertifiedKey::from_der(chain, key, &chasync_core::tls::provider()).map_err(|e| {
        format!(
            "listen_tls: the key {} does not go with the certificate {}: {e}",
            files.key_file.display(),
            files.cert_file.display()
        )
    })
}
