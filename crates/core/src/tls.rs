//! TLS of `https://` endpoints, with rustls (the `ring` provider): the trust store (the
//! system's, or a CA file), a client certificate for mutual TLS, and an explicit opt-out of
//! verification.
//!
//! Every ClickHouse client of the engine, and the daemon's pass-through, connect through
//! [`connector`]: `http://` URLs in plain text, `https://` URLs with TLS.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::Tls;
use crate::error::{Error, Result};

/// The connector of every ClickHouse client: TLS for `https://` URLs, plain TCP for
/// `http://` ones.
pub type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The crypto provider: `ring`, which builds with a C compiler alone (`aws-lc-rs`, rustls'
/// default, needs far more C to build). rustls 0.23.48 deprecates `ring`'s provider for its
/// lack of post-quantum key exchange; every other algorithm of it is supported.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A connector for `http://` and `https://` URLs with the TLS options of `tls`; TCP connects
/// time out after `connect_timeout`.
pub fn connector(tls: &Tls, connect_timeout: Duration) -> Result<Connector> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    http.set_nodelay(true);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(tls)?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// The rustls client configuration of `tls`: whom to trust, and the client certificate.
pub fn client_config(tls: &Tls) -> Result<ClientConfig> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?;
    let builder = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(
                provider.signature_verification_algorithms,
            )))
    } else {
        builder.with_root_certificates(roots(tls)?)
    };
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert, "tls_cert_file")?;
            let key = private_key(key, "tls_key_file")?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                Error::Config(format!(
                    "tls_cert_file {} with tls_key_file: {e}",
                    cert.display()
                ))
            })
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(Error::Config(
            "tls_cert_file and tls_key_file go together: set both or neither".into(),
        )),
    }
}

/// What to do about a TLS failure, by the reason in an error's text ([`crate::error::tls_hint`]).
pub use crate::error::tls_hint as hint;

/// Logs a warning, once per endpoint and process, that `url` is reached without verifying
/// its certificate.
pub(crate) fn warn_unverified(tls: &Tls, url: &str) {
    static WARNED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    if !tls.insecure_skip_verify || !url.starts_with("https://") {
        return;
    }
    let url = crate::config::redact_url(url);
    let first = WARNED
        .lock()
        .map(|mut w| w.get_or_insert_with(HashSet::new).insert(url.clone()))
        .unwrap_or(true);
    if first {
        tracing::warn!(
            url = %url,
            "tls_insecure_skip_verify is set: the server's TLS certificate is NOT verified; \
             anyone on the path can read and change the data"
        );
    }
}

/// The CA certificates to trust: those of `tls.ca_file`, else the system's (where
/// `SSL_CERT_FILE` and `SSL_CERT_DIR` replace the platform's store).
fn roots(tls: &Tls) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    if let Some(file) = &tls.ca_file {
        let certs = certificates(file, "tls_ca_file")?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(Error::Config(format!(
                "tls_ca_file {}: no usable CA certificate in it",
                file.display()
            )));
        }
        return Ok(roots);
    }
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        let why = native
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Error::Config(format!(
            "TLS: no CA certificates found in the system's trust store{}; set tls_ca_file \
             (or SSL_CERT_FILE)",
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({why})")
            }
        )));
    }
    Ok(roots)
}

/// The certificates of a PEM file; errors name the file and `option`, the option that named it.
pub fn certificates(file: &Path, option: &str) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(file, option)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("{option} {}: {e}", file.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{option} {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            file.display()
        )));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1); errors name the file and
/// `option`, the option that named it.
pub fn private_key(file: &Path, option: &str) -> Result<PrivateKeyDer<'static>> {
    let pem = read(file, option)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        Error::Config(format!(
            "{option} {}: no private key read from it ({e})",
            file.display()
        ))
    })
}

fn read(file: &Path, option: &str) -> Result<Vec<u8>> {
    std::fs::read(file).map_err(|e| Error::Config(format!("{option} {}: {e}", file.display())))
}

/// `tls_insecure_skip_verify`: any certificate is taken; the handshake's signatures are still
/// checked (the connection is encrypted, the server not authenticated).
#[derive(Debug)]
struct NoVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
