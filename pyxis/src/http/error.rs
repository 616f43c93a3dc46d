//! The one error type of the HTTP API and its JSON body.
//!
//! Every handler returns `Result<_, ApiError>`; the status and the
//! `{"error": CODE, "message": ...}` body follow from the [`ErrorCode`]. Messages name
//! the field or parameter at fault. Server-side causes of 5xx are logged, not sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pyxis_client::api::{ErrorBody, ErrorCode, Revision};

use crate::cluster::MembershipError;
use crate::node::NodeError;
use crate::store::validate::InvalidCommand;

/// An error answered to an API client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The wire body.
    pub body: ErrorBody,
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::NoLeader => ApiError::no_leader(),
            NodeError::Unavailable(m) => ApiError::unavailable(m),
            NodeError::UnknownOutcome(m) => ApiError::unknown_outcome(m),
            NodeError::Invalid(e) => e.into(),
            NodeError::Unauthorized(m) => ApiError::new(ErrorCode::Unauthorized, m),
        }
    }
}

impl From<MembershipError> for ApiError {
    fn from(e: MembershipError) -> Self {
        match e {
            MembershipError::Invalid(m) => ApiError::bad_request(m),
            MembershipError::Conflict(m) => ApiError::conflict(m),
            MembershipError::NotMember(m) => ApiError::not_found(m),
            MembershipError::Node(e) => e.into(),
            MembershipError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl From<InvalidCommand> for ApiError {
    fn from(e: InvalidCommand) -> Self {
        match e {
            InvalidCommand::Key(m) => ApiError::invalid_key(m),
            InvalidCommand::TooLarge(m) => ApiError::too_large(m),
            InvalidCommand::Invalid(m) => ApiError::bad_request(m),
        }
    }
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            body: ErrorBody {
                error: code,
                message: message.into(),
                compact_revision: None,
                mod_rev: None,
            },
        }
    }

    /// 400 for a malformed field or parameter.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// 400 for a key that breaks the key-space rules.
    pub fn invalid_key(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidKey, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// 404 for a write or lease call naming a lease that does not exist (or expired).
    pub fn lease_not_found(id: u64) -> Self {
        Self::not_found(format!("lease: {id} does not exist or has expired"))
    }

    /// 409 for a failed precondition.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::CompareFailed, message)
    }

    /// 409 for a compare-and-set put that did not hold, carrying the current mod revision.
    pub fn cas_failed(key: &str, expected: Revision, actual: Revision) -> Self {
        let mut e = Self::conflict(format!(
            "prev_rev: {key} has mod revision {actual}, expected {expected}"
        ));
        e.body.mod_rev = Some(actual);
        e
    }

    /// 413 for an oversized value.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValueTooLarge, message)
    }

    /// 503 while no leader is known.
    pub fn no_leader() -> Self {
        Self::new(
            ErrorCode::NoLeader,
            "no leader: an election is in progress or a quorum is unreachable; retry",
        )
    }

    /// 503 when a write may or may not have been applied; the same request id tells.
    pub fn unknown_outcome(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnknownOutcome, message)
    }

    /// 503 when this node cannot serve (storage failure, shutdown, timeout).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// 500; the cause is logged here and not sent to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(ErrorCode::Internal, "internal error; see the server log")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.body.error.status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(code = ?self.body.error, message = %self.body.message, "request failed");
        }
        (status, Json(self.body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each refusal of a membership change keeps its message and gets its own status.
    #[test]
    fn membership_errors_map_to_their_statuses() {
        let cases = [
            (MembershipError::Invalid("addr: x".into()), 400),
            (MembershipError::Conflict("id: y".into()), 409),
            (MembershipError::NotMember("id: z".into()), 404),
            (MembershipError::Node(NodeError::NoLeader), 503),
            (
                MembershipError::Node(NodeError::UnknownOutcome("maybe".into())),
                503,
            ),
            (MembershipError::Internal("bug".into()), 500),
        ];
        for (e, status) in cases {
            let message = e.to_string();
            let api = ApiError::from(e);
            assert_eq!(api.body.error.status(), status, "{message}");
            if status != 500 {
                assert_eq!(api.body.message, message);
            }
        }
    }
}
