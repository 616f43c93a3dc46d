//! TLS material for https endpoints: the rustls crypto provider, PEM files, client configs.
//!
//! reqwest is built with `rustls-no-provider` (no aws-lc-rs C build), so rustls has no
//! process-wide provider until one is installed, and building any `reqwest::Client` without
//! one panics. [`install_crypto_provider`] installs ring; every process of the workspace calls
//! it before building a client (the [`Client`](crate::Client) constructor does too). The
//! server side (`pyxis::tls`) reads its certificate, key and CA with the readers here, so a
//! file is read, and its errors worded, in one place.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS file that could not be used; every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no PEM block of the kind asked for, or a broken one.
    #[error("{}: {message}", path.display())]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What was expected and what was wrong.
        message: String,
    },
    /// rustls refused the material (a key that does not match its certificate, say).
    #[error("{what}: {message}")]
    Rejected {
        /// The files involved, as the user named them.
        what: String,
        /// rustls' reason.
        message: String,
    },
}

/// Installs ring as the process's rustls crypto provider; a no-op if one is installed.
pub fn install_crypto_provider() {
    // An `Err` only means a provider is already in place, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The provider every config of this workspace is built with (ring, explicitly, so a config
/// never depends on which process-wide default was installed first).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a file whole; the error names it.
fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every `CERTIFICATE` block of a PEM file, in order (leaf first for a chain); at least one.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let bad = |message: String| TlsError::BadPem {
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a valid PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(bad(
            "no PEM certificate (BEGIN CERTIFICATE) in the file".into()
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::BadPem {
        path: path.to_owned(),
        message: format!("no usable PEM private key (BEGIN PRIVATE KEY): {e}"),
    })
}

/// The trust roots in a CA file: every certificate in it.
pub fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::BadPem {
            path: path.to_owned(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// A client config that trusts only the certificates in `ca` and, with `identity` (a chain
/// and its key), presents a client certificate: what a peer needs for mutual TLS.
pub fn client_config(
    ca: &Path,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<rustls::ClientConfig, TlsError> {
    let roots = read_roots(ca)?;
    let rejected = |e: rustls::Error| TlsError::Rejected {
        what: ca.display().to_string(),
        message: e.to_string(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rejected)?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((chain, key)) => {
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::Rejected {
                    what: "client certificate and key".into(),
                    message: e.to_string(),
                })?
        }
        None => builder.with_no_client_auth(),
    };
    // The servers speak HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// If `error` (or what it wraps) is a certificate the client refused, rustls' reason.
///
/// hyper hands the handshake failure up as an `io::Error` around an `io::Error` around the
/// `rustls::Error`, and `io::Error::source()` skips what it wraps, so the chain is searched
/// by downcasting into each wrapped error too.
pub fn untrusted_certificate(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(rustls::Error::InvalidCertificate(reason)) = e.downcast_ref::<rustls::Error>() {
            return Some(format!("{reason:?}"));
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &tempfile::TempDir, name: &str, body: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = read_certs(Path::new("/nonexistent/ca.pem")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/nonexistent/ca.pem: cannot read"), "{text}");
    }

    #[test]
    fn a_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(&dir, "ca.pem", "hello, not a certificate\n");
        let text = read_roots(&path).unwrap_err().to_string();
        assert!(
            text.contains("ca.pem") && text.contains("no PEM certificate"),
            "{text}"
        );
        let text = read_key(&path).unwrap_err().to_string();
        assert!(
            text.contains("ca.pem") && text.contains("private key"),
            "{text}"
        );
    }

    #[test]
    fn a_broken_pem_block_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(
            &dir,
            "cert.pem",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        let text = read_certs(&path).unwrap_err().to_string();
        assert!(text.contains("cert.pem"), "{text}");
    }

    #[test]
    fn installing_the_provider_twice_is_harmless() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(CryptoProvider::get_default().is_some());
    }
}
