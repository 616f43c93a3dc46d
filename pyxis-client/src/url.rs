//! Building request URLs: endpoint normalisation and key-to-path encoding.
//!
//! The HTTP path after `/v1/kv` *is* the key, so `/ns/x` becomes `/v1/kv/ns/x`. Each
//! segment is percent-encoded on its own and the `/` between segments is kept. This module
//! does no I/O; sending and retrying live in `client.rs` and `retry.rs`.

use crate::error::{Error, Result};

/// Turns `host:port` or `http://host:port/` into the base `http://host:port` (no trailing `/`).
pub(crate) fn normalize_endpoint(endpoint: &str) -> Result<String> {
    let e = endpoint.trim().trim_end_matches('/');
    if e.is_empty() {
        return Err(Error::InvalidArgument("endpoint: must not be empty".into()));
    }
    if e.contains("://") {
        Ok(e.to_owned())
    } else {
        Ok(format!("http://{e}"))
    }
}

/// The path of a single key under `/v1/kv`, e.g. `/ns/a b` -> `/v1/kv/ns/a%20b`.
///
/// Refuses, before anything is sent, keys without a leading `/` and keys with a `.` or
/// `..` segment: URL parsers collapse those (even percent-encoded), so the server would
/// see a different key than the one asked for.
pub(crate) fn kv_path(key: &str) -> Result<String> {
    check_key(key, "key")?;
    Ok(format!("/v1/kv{}", encode_path(key)))
}

/// Like [`kv_path`] for a prefix, which may also be the bare `/` (the whole key space).
pub(crate) fn prefix_path(prefix: &str) -> Result<String> {
    if prefix == "/" {
        return Ok("/v1/kv/".into());
    }
    check_key(prefix, "prefix")?;
    Ok(format!("/v1/kv{}", encode_path(prefix)))
}

/// A path built from `/`-joined segments, each percent-encoded (`/v1/services/web`).
pub(crate) fn segments_path(segments: &[&str]) -> Result<String> {
    let mut out = String::new();
    for s in segments {
        if s.is_empty() || *s == "." || *s == ".." {
            return Err(Error::InvalidArgument(format!(
                "path segment {s:?}: must be a non-empty name other than '.' or '..'"
            )));
        }
        out.push('/');
        encode_segment(s, &mut out);
    }
    Ok(out)
}

/// Local checks a key must pass before it can be put into a URL; the server does the rest.
fn check_key(key: &str, what: &str) -> Result<()> {
    if !key.starts_with('/') {
        return Err(Error::InvalidArgument(format!(
            "{what} {key:?}: must start with '/'"
        )));
    }
    if key.split('/').any(|s| s == "." || s == "..") {
        return Err(Error::InvalidArgument(format!(
            "{what} {key:?}: a '.' or '..' segment cannot be sent in a URL path"
        )));
    }
    Ok(())
}

/// Percent-encodes each `/`-separated segment, keeping the separators.
fn encode_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for (i, segment) in key.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        encode_segment(segment, &mut out);
    }
    out
}

/// Percent-encodes every byte that is not an RFC 3986 unreserved character.
fn encode_segment(segment: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in segment.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_a_scheme_and_lose_the_trailing_slash() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:7070").unwrap(),
            "http://127.0.0.1:7070"
        );
        assert_eq!(normalize_endpoint(" http://h:1/ ").unwrap(), "http://h:1");
        assert!(normalize_endpoint("  ").is_err());
    }

    #[test]
    fn plain_keys_map_to_the_path_unchanged() {
        assert_eq!(kv_path("/ns/x").unwrap(), "/v1/kv/ns/x");
        assert_eq!(
            kv_path("/ns/instances/web/n1-0").unwrap(),
            "/v1/kv/ns/instances/web/n1-0"
        );
    }

    #[test]
    fn reserved_characters_are_encoded_per_segment() {
        assert_eq!(kv_path("/a b/c?d").unwrap(), "/v1/kv/a%20b/c%3Fd");
        assert_eq!(kv_path("/x#y%z+").unwrap(), "/v1/kv/x%23y%25z%2B");
        assert_eq!(kv_path("/é").unwrap(), "/v1/kv/%C3%A9");
        // Empty segments survive: `/a//b` is a different key from `/a/b`.
        assert_eq!(kv_path("/a//b").unwrap(), "/v1/kv/a//b");
        assert_eq!(kv_path("/a/.hidden").unwrap(), "/v1/kv/a/.hidden");
    }

    #[test]
    fn bad_keys_are_refused_locally() {
        assert!(matches!(kv_path("x"), Err(Error::InvalidArgument(_))));
        assert!(kv_path("").is_err());
        assert!(kv_path("/a/../b").is_err());
        assert!(kv_path("/a/.").is_err());
    }

    #[test]
    fn prefix_may_be_the_root() {
        assert_eq!(prefix_path("/").unwrap(), "/v1/kv/");
        assert_eq!(prefix_path("/ns/").unwrap(), "/v1/kv/ns/");
        assert!(prefix_path("ns").is_err());
    }
}
