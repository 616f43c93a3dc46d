//! Request parsing shared by the handlers: the key from the raw path, query parameters.
//!
//! The key is taken from the raw (still percent-encoded) URI path instead of axum's
//! `Path` extractor so that invalid UTF-8 or control characters get our own 400 that
//! names the key, not a generic rejection.

use std::collections::HashMap;

use pyxis_client::api::validate_key;

use super::error::ApiError;

/// Decodes `%XX` escapes into bytes; a stray `%` is kept as is.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h << 4) | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The key addressed by a `/v1/kv/...` path: everything after `/v1/kv`, decoded and validated.
/// With `prefix`, the bare root `/` (the whole key space) is allowed too.
pub fn key_from_path(path: &str, prefix: bool) -> Result<String, ApiError> {
    let raw = path.strip_prefix("/v1/kv").unwrap_or(path);
    let bytes = percent_decode(raw);
    let key = String::from_utf8(bytes).map_err(|e| {
        ApiError::invalid_key(format!(
            "key: not valid UTF-8 (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let key = if key.starts_with('/') {
        key
    } else {
        format!("/{key}")
    };
    if prefix && key == "/" {
        return Ok(key);
    }
    validate_key(&key).map_err(ApiError::invalid_key)?;
    Ok(key)
}

/// Parsed query parameters with typed getters whose errors name the parameter.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Parses a raw query string (`a=1&b`); a repeated parameter keeps its last value.
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut map = HashMap::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = String::from_utf8(percent_decode(&k.replace('+', " ")))
                .map_err(|_| ApiError::bad_request("query: parameter name is not UTF-8"))?;
            let v = String::from_utf8(percent_decode(&v.replace('+', " ")))
                .map_err(|_| ApiError::bad_request(format!("{k}: value is not UTF-8")))?;
            map.insert(k, v);
        }
        Ok(Params(map))
    }

    /// Rejects parameters outside `allowed`, naming the first unknown one.
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(ApiError::bad_request(format!(
                "{k}: unknown query parameter (allowed: {})",
                allowed.join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// A boolean flag: absent = false, `true`/`1`/empty = true, `false`/`0` = false.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.0.get(name).map(String::as_str) {
            None => Ok(false),
            Some("" | "true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(v) => Err(ApiError::bad_request(format!(
                "{name}: expected true or false, got {v:?}"
            ))),
        }
    }

    /// An optional non-negative integer.
    pub fn u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.0
            .get(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "{name}: expected a non-negative integer, got {v:?}"
                    ))
                })
            })
            .transpose()
    }

    /// An optional string value.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Whether `consistency=serializable` asks for this node's local view (the default,
    /// `linearizable`, goes through the leader).
    pub fn serializable(&self) -> Result<bool, ApiError> {
        match self.str("consistency") {
            None | Some("linearizable") => Ok(false),
            Some("serializable") => Ok(true),
            Some(v) => Err(ApiError::bad_request(format!(
                "consistency: expected linearizable or serializable, got {v:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_paths() {
        assert_eq!(key_from_path("/v1/kv/ns/x", false).unwrap(), "/ns/x");
        assert_eq!(key_from_path("/v1/kv/a%20b", false).unwrap(), "/a b");
        let empty = key_from_path("/v1/kv/", false).unwrap_err();
        assert!(
            empty.body.message.starts_with("key: / names no key"),
            "{}",
            empty.body.message
        );
        assert_eq!(key_from_path("/v1/kv/", true).unwrap(), "/");
        assert_eq!(key_from_path("/v1/kv", true).unwrap(), "/");
        assert!(
            key_from_path("/v1/kv/%FF", true)
                .unwrap_err()
                .body
                .message
                .contains("UTF-8")
        );
        assert!(
            key_from_path("/v1/kv/a%07b", false)
                .unwrap_err()
                .body
                .message
                .contains("control")
        );
    }

    #[test]
    fn params_name_the_bad_one() {
        let p = Params::parse(Some("prev_rev=abc&prefix")).unwrap();
        assert!(p.flag("prefix").unwrap());
        let e = p.u64("prev_rev").unwrap_err();
        assert!(
            e.body.message.starts_with("prev_rev:"),
            "{}",
            e.body.message
        );
        assert!(
            p.only(&["prefix"])
                .unwrap_err()
                .body
                .message
                .contains("prev_rev")
        );
    }

    #[test]
    fn percent_decoding_edges() {
        assert_eq!(percent_decode("%41%4a"), b"AJ");
        assert_eq!(percent_decode("100%"), b"100%");
        assert_eq!(percent_decode("%4"), b"%4");
        assert_eq!(percent_decode("%zz"), b"%zz");
    }
}
