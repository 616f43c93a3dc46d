//! The client's error type and the mapping from HTTP error replies to it.
//!
//! Every failure a [`Client`](crate::Client) call can meet is one [`Error`]: a JSON error
//! reply from a node (`Api`, or `Compacted` for 410), a failure below HTTP (`Transport`),
//! a reply that does not parse (`Decode`), or an argument refused before anything was sent
//! (`InvalidArgument`). Deciding *whether* to retry lives in `retry.rs`; this module only
//! says whether an error is of a retryable kind.

use crate::api::{ErrorBody, ErrorCode, Revision};

/// Result alias used throughout the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a client call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A node answered with a JSON error body (or a bare error status, mapped to a code).
    #[error("{status} {}: {message}", code_name(*code))]
    Api {
        /// HTTP status of the reply.
        status: u16,
        /// Machine-readable code from the body.
        code: ErrorCode,
        /// Human-readable explanation from the body.
        message: String,
    },
    /// The request failed below HTTP: connection refused or reset, timeout, broken body.
    #[error("transport error: {0}")]
    Transport(String),
    /// A reply arrived but could not be understood (bad JSON, missing header).
    #[error("decode error: {0}")]
    Decode(String),
    /// The requested revision is older than the history the node keeps (410).
    #[error("revision compacted: the oldest available revision is {revision}")]
    Compacted {
        /// The oldest revision still available; re-list, then continue from there.
        revision: Revision,
    },
    /// The TLS handshake failed for good: the node's certificate is not trusted by the CA
    /// given, or the CA file could not be used. Not retried: another try meets the same
    /// certificate.
    #[error("tls error: {0}")]
    Tls(String),
    /// The call was refused locally before anything was sent (a key without a leading `/`,
    /// an empty endpoint list).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// Whether trying again (possibly on another node) may succeed.
    ///
    /// True for transport failures and for 503 `no_leader` / `unavailable` /
    /// `unknown_outcome`; false for every 4xx, for decode errors and for local argument
    /// errors. A transport failure after a write was sent (a timeout, a reset) may mean the
    /// write *was* applied: repeating it is safe only with the same
    /// [`RequestId`](crate::RequestId), which is what the client's own retries do.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport(_) => true,
            Error::Api { status, code, .. } => {
                *status == 503
                    && matches!(
                        code,
                        ErrorCode::NoLeader | ErrorCode::Unavailable | ErrorCode::UnknownOutcome
                    )
            }
            Error::Decode(_)
            | Error::Compacted { .. }
            | Error::InvalidArgument(_)
            | Error::Tls(_) => false,
        }
    }

    /// The wire error code, if this error came from a node's error reply.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api { code, .. } => Some(*code),
            Error::Compacted { .. } => Some(ErrorCode::Compacted),
            _ => None,
        }
    }

    /// Builds the error for a non-success reply from its status and raw body.
    ///
    /// A body that parses as [`ErrorBody`] gives the code and message. Anything else (a
    /// proxy's page, axum's plain-text 413 from the body limit) gets the code that belongs
    /// to the status and the body text as message, so callers can still match on the code.
    pub fn from_response(status: u16, body: &[u8]) -> Error {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(ErrorBody {
                error: ErrorCode::Compacted,
                compact_revision: Some(revision),
                ..
            }) => Error::Compacted { revision },
            Ok(b) => Error::Api {
                status,
                code: b.error,
                message: b.message,
            },
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                Error::Api {
                    status,
                    code: code_for_status(status),
                    message: if text.is_empty() {
                        format!("http status {status}")
                    } else {
                        text.to_owned()
                    },
                }
            }
        }
    }
}

/// The `snake_case` wire name of a code, as it appears in the JSON body.
pub fn code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadRequest => "bad_request",
        ErrorCode::InvalidKey => "invalid_key",
        ErrorCode::NotFound => "not_found",
        ErrorCode::CompareFailed => "compare_failed",
        ErrorCode::Compacted => "compacted",
        ErrorCode::ValueTooLarge => "value_too_large",
        ErrorCode::NoLeader => "no_leader",
        ErrorCode::Unavailable => "unavailable",
        ErrorCode::UnknownOutcome => "unknown_outcome",
        ErrorCode::Internal => "internal",
        ErrorCode::Unauthorized => "unauthorized",
        ErrorCode::Forbidden => "forbidden",
    }
}

/// The code a bare status most likely stands for, when the body is not an [`ErrorBody`].
fn code_for_status(status: u16) -> ErrorCode {
    match status {
        404 => ErrorCode::NotFound,
        409 => ErrorCode::CompareFailed,
        410 => ErrorCode::Compacted,
        413 => ErrorCode::ValueTooLarge,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        503 => ErrorCode::Unavailable,
        400..=499 => ErrorCode::BadRequest,
        _ => ErrorCode::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(b: &ErrorBody) -> Vec<u8> {
        serde_json::to_vec(b).unwrap()
    }

    #[test]
    fn json_error_body_maps_to_api_error() {
        let e = Error::from_response(
            409,
            &body(&ErrorBody {
                error: ErrorCode::CompareFailed,
                message: "mod revision is 7, expected 0".into(),
                compact_revision: None,
                mod_rev: Some(7),
            }),
        );
        assert!(matches!(
            e,
            Error::Api {
                status: 409,
                code: ErrorCode::CompareFailed,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "409 compare_failed: mod revision is 7, expected 0"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn gone_with_compact_revision_maps_to_compacted() {
        let e = Error::from_response(
            410,
            &body(&ErrorBody {
                error: ErrorCode::Compacted,
                message: "revision 3 is compacted".into(),
                compact_revision: Some(40),
                mod_rev: None,
            }),
        );
        assert!(matches!(e, Error::Compacted { revision: 40 }));
        assert_eq!(e.code(), Some(ErrorCode::Compacted));
    }

    #[test]
    fn gone_without_compact_revision_stays_api() {
        let e = Error::from_response(410, br#"{"error":"compacted","message":"old"}"#);
        assert!(matches!(
            e,
            Error::Api {
                code: ErrorCode::Compacted,
                ..
            }
        ));
    }

    #[test]
    fn bare_status_gets_the_matching_code() {
        let e = Error::from_response(413, b"length limit exceeded");
        assert_eq!(e.code(), Some(ErrorCode::ValueTooLarge));
        assert_eq!(e.to_string(), "413 value_too_large: length limit exceeded");
        let e = Error::from_response(502, b"");
        assert_eq!(e.to_string(), "502 internal: http status 502");
    }

    #[test]
    fn only_unavailability_is_retryable() {
        let no_leader = Error::from_response(503, br#"{"error":"no_leader","message":"x"}"#);
        assert!(no_leader.is_retryable());
        let unavailable = Error::from_response(503, br#"{"error":"unavailable","message":"x"}"#);
        assert!(unavailable.is_retryable());
        assert!(Error::Transport("connection refused".into()).is_retryable());
        // Another try meets the same untrusted certificate.
        assert!(
            !Error::Tls("https://h:1: the server's certificate is not trusted".into())
                .is_retryable()
        );
        for status in [400, 404, 409, 413, 500] {
            assert!(
                !Error::from_response(status, b"").is_retryable(),
                "{status}"
            );
        }
        assert!(!Error::Decode("x".into()).is_retryable());
    }

    #[test]
    fn code_names_match_the_wire() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::InvalidKey,
            ErrorCode::NotFound,
            ErrorCode::CompareFailed,
            ErrorCode::Compacted,
            ErrorCode::ValueTooLarge,
            ErrorCode::NoLeader,
            ErrorCode::Unavailable,
            ErrorCode::UnknownOutcome,
            ErrorCode::Internal,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
        ] {
            let wire = serde_json::to_value(code).unwrap();
            assert_eq!(wire, code_name(code), "{code:?}");
        }
    }
}
