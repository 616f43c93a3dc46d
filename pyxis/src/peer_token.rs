//! The peer token: a secret every member is given, sent on every peer call and checked
//! before openraft or the forwarding code sees the call.
//!
//! This module holds the secret, loads it and compares it in constant time. Reading the
//! flags is `cli::server`; the check on `/raft/*` is `http::raft_rpc::check_peer_token`; the
//! senders are `raft::network` (openraft RPCs) and `node` (forwarding). Without a token a
//! node accepts peer calls from anyone who can reach it, as before (the cluster id says
//! which cluster a call is for, not who sent it).

use std::path::Path;

use axum::http::HeaderValue;

/// The header that carries the token on every peer call.
pub const HEADER: &str = "x-pyxis-peer-token";

/// A token that cannot be used; the message names the flag or file.
#[derive(Debug, thiserror::Error)]
pub enum PeerTokenError {
    /// The token is empty (after trimming the file's trailing newline).
    #[error("{0}: the peer token is empty")]
    Empty(String),
    /// The token has a byte a header value cannot carry as is.
    #[error("{0}: the peer token must be printable ASCII without spaces (byte {1})")]
    NotPrintable(String, usize),
    /// The token file could not be read.
    #[error("--peer-token-file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The shared secret of a cluster's members. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct PeerToken {
    header: HeaderValue,
}

impl std::fmt::Debug for PeerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerToken(..)")
    }
}

impl PeerToken {
    /// A token from its text; `source` names where it came from, for errors.
    pub fn new(secret: &str, source: &str) -> Result<PeerToken, PeerTokenError> {
        if secret.is_empty() {
            return Err(PeerTokenError::Empty(source.to_owned()));
        }
        if let Some(i) = secret.bytes().position(|b| !b.is_ascii_graphic()) {
            return Err(PeerTokenError::NotPrintable(source.to_owned(), i));
        }
        let mut header = HeaderValue::from_str(secret)
            .map_err(|_| PeerTokenError::NotPrintable(source.to_owned(), 0))?;
        header.set_sensitive(true);
        Ok(PeerToken { header })
    }

    /// The token in `path`, without the trailing newline an editor or `echo` leaves.
    pub fn from_file(path: &Path) -> Result<PeerToken, PeerTokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| PeerTokenError::Read {
            path: path.display().to_string(),
            source,
        })?;
        PeerToken::new(
            text.trim_end_matches(['\n', '\r']),
            &format!("--peer-token-file {}", path.display()),
        )
    }

    /// The header value to send (marked sensitive, so it is not logged).
    pub fn header_value(&self) -> HeaderValue {
        self.header.clone()
    }

    /// Whether `presented` is this token. The time taken depends on the token's length
    /// only, not on where the first differing byte is.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let ours = self.header.as_bytes();
        let mut diff = u8::from(ours.len() != presented.len());
        for (i, a) in ours.iter().enumerate() {
            diff |= a ^ presented.get(i).copied().unwrap_or(0);
        }
        std::hint::black_box(diff) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_same_bytes() {
        let t = PeerToken::new("s3cret-token", "--peer-token").unwrap();
        assert!(t.matches(b"s3cret-token"));
        assert!(!t.matches(b"s3cret-tokeN"));
        assert!(!t.matches(b"s3cret-toke"));
        assert!(!t.matches(b"s3cret-token!"));
        assert!(!t.matches(b""));
        assert_eq!(format!("{t:?}"), "PeerToken(..)");
    }

    #[test]
    fn bad_tokens_name_their_source() {
        let e = PeerToken::new("", "--peer-token").unwrap_err().to_string();
        assert_eq!(e, "--peer-token: the peer token is empty");
        let e = PeerToken::new("a b", "--peer-token")
            .unwrap_err()
            .to_string();
        assert!(e.contains("printable ASCII") && e.contains("byte 1"), "{e}");
    }

    #[test]
    fn a_token_file_loses_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abc123\n").unwrap();
        assert!(PeerToken::from_file(&path).unwrap().matches(b"abc123"));
        std::fs::write(&path, "\n").unwrap();
        let e = PeerToken::from_file(&path).unwrap_err().to_string();
        assert!(
            e.starts_with("--peer-token-file ") && e.ends_with("empty"),
            "{e}"
        );
        let e = PeerToken::from_file(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
