//! TLS for one node: its server config (`--tls-cert`, `--tls-key`, `--tls-ca`) and how it
//! reaches its peers (https with the CA and its own certificate as client certificate).
//!
//! The files are read once, at start; every error names the file (or the flag pair when a
//! key does not match its certificate). The handshake itself runs in `http::serve`, and a
//! `/raft/*` call without a verified client certificate is refused there.
//!
//! Clients may present a certificate but need not (`allow_unauthenticated`): the public API
//! is for clients, whose authority is their token (etcd's `--client-cert-auth` is a separate
//! switch too); peers must, since a peer call can rewrite the log.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pyxis_client::tls::{TlsError, client_config, provider, read_certs, read_key, read_roots};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

/// The three TLS files of `pyxis server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's certificate chain (PEM, leaf first): `--tls-cert`.
    pub cert: PathBuf,
    /// Its private key (PEM): `--tls-key`.
    pub key: PathBuf,
    /// The CA that signs every member's certificate (PEM): `--tls-ca`.
    pub ca: PathBuf,
}

/// A node's loaded TLS: the acceptor for its listener and the client side for its peers.
#[derive(Clone)]
pub struct NodeTls {
    files: TlsFiles,
    acceptor: TlsAcceptor,
    peers: PeerTransport,
}

impl fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl NodeTls {
    /// Reads and checks the files: each must parse, and the key must match the certificate.
    pub fn load(files: &TlsFiles) -> Result<NodeTls, TlsError> {
        pyxis_client::tls::install_crypto_provider();
        let chain = read_certs(&files.cert)?;
        let key = read_key(&files.key)?;
        let roots = Arc::new(read_roots(&files.ca)?);
        let pair = || {
            format!(
                "--tls-cert {} and --tls-key {}",
                files.cert.display(),
                files.key.display()
            )
        };
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Rejected {
                what: format!("--tls-ca {}", files.ca.display()),
                message: e.to_string(),
            })?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| rejected(pair(), &e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| rejected(pair(), &e))?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = client_config(&files.ca, Some((chain, key)))?;
        Ok(NodeTls {
            files: files.clone(),
            acceptor: TlsAcceptor::from(Arc::new(server)),
            peers: PeerTransport {
                tls: Some(Arc::new(client)),
            },
        })
    }

    /// The acceptor `http::serve` runs each connection's handshake through.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// How this node calls its peers.
    pub fn peers(&self) -> PeerTransport {
        self.peers.clone()
    }

    /// The files this was loaded from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

fn rejected(what: String, e: &rustls::Error) -> TlsError {
    TlsError::Rejected {
        what,
        message: match e {
            rustls::Error::InconsistentKeys(_) => {
                "the private key does not belong to the certificate".to_owned()
            }
            other => other.to_string(),
        },
    }
}

/// How a node reaches its peers (Raft RPC, forwarding, membership probes): plain http, or
/// https trusting only `--tls-ca` and presenting the node's own certificate.
#[derive(Clone, Default)]
pub struct PeerTransport {
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for PeerTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme())
    }
}

impl PeerTransport {
    /// Plain http to every peer (no TLS configured).
    pub fn plain() -> PeerTransport {
        PeerTransport::default()
    }

    /// `https` with TLS on, `http` without.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The URL of `path` (starting with `/`) on the peer at `host:port`.
    pub fn url(&self, addr: &str, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme())
    }

    /// A reqwest builder that speaks this transport (and no proxy).
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        pyxis_client::tls::install_crypto_provider();
        let builder = reqwest::Client::builder().no_proxy();
        match &self.tls {
            Some(config) => builder
                .tls_backend_preconfigured(rustls::ClientConfig::clone(config))
                .https_only(true),
            None => builder,
        }
    }

    /// A member address as stored (`host:port`) from what an operator gave: `host:port`, or
    /// a URL whose scheme must be this transport's. The error says what is wrong with it.
    pub fn bare_addr<'a>(&self, addr: &'a str) -> Result<&'a str, String> {
        let addr = addr.trim().trim_end_matches('/');
        let Some((scheme, rest)) = addr.split_once("://") else {
            return Ok(addr);
        };
        if scheme != self.scheme() {
            return Err(format!(
                "'{addr}': this cluster's members are reached over {} (TLS is {} on this node)",
                self.scheme(),
                if self.tls.is_some() { "on" } else { "off" }
            ));
        }
        if rest.is_empty() || rest.contains('/') {
            return Err(format!("'{addr}' is not SCHEME://HOST:PORT"));
        }
        Ok(rest)
    }
}

/// The TLS files named by the three server flags: all three or none.
pub fn files_from_flags(
    cert: Option<&Path>,
    key: Option<&Path>,
    ca: Option<&Path>,
) -> Result<Option<TlsFiles>, String> {
    match (cert, key, ca) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            ca: ca.to_owned(),
        })),
        _ => Err(
            "--tls-cert, --tls-key and --tls-ca go together: give all three \
                  (members verify each other's certificates with the CA)"
                .to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests;
