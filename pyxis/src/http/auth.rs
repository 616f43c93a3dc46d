//! The ACL check in front of every `/v1/` route: 401 without a valid token, 403 for a
//! role the route table (`acl::required`) refuses, before any handler runs, so a refused
//! call never proposes anything.
//!
//! The token is looked up by its sha256 in this node's applied state: no call to the
//! leader for a known token, and a revoke takes effect here as soon as this node applies
//! it. Only an unknown token costs one read-index round trip (`Node::linearize`) before
//! the 401, so that a token just created through another node works at once everywhere. The handler
//! runs inside `acl::scope`, so its own checks (a `register` token's node, a
//! transaction's writes: [`require_admin`], [`require_node`]) and `Node::write`'s audit
//! stamp see the caller. Routes outside `/v1/` (`/healthz`, `/livez`, `/metrics`, `/ui`,
//! and `/raft/*` with its peer token) are not checked here.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pyxis_client::api::ErrorCode;

use super::error::ApiError;
use crate::acl::{Caller, Need, hash_secret, required};
use crate::node::Node;

/// The middleware: authenticates and authorizes a `/v1/` call, then runs it as its caller.
pub async fn check(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !path.starts_with("/v1/") {
        return next.run(req).await;
    }
    let need = required(req.method(), path, req.uri().query());
    let what = format!("{} {}", req.method(), req.uri());
    let bearer = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let hash = bearer.as_deref().and_then(secret_of).map(hash_secret);
    let lookup = |node: &Node| {
        node.view.with_acl(|acl| {
            let token = hash.as_deref().and_then(|h| acl.by_hash(h).cloned());
            (acl.enabled(), token)
        })
    };
    let (mut enabled, mut token) = lookup(&node);
    if token.is_none() && hash.is_some() {
        // A token created (or a bootstrap made) a moment ago through another node may not
        // be applied here yet: catch up with the leader once before judging it. A known
        // token never waits; a revoked one is refused as soon as this node has applied the
        // revoke. Before bootstrap, a call that sends a token pays this read index.
        if node.linearize().await.is_ok() {
            (enabled, token) = lookup(&node);
        }
    }
    if enabled && need != Need::Open {
        let Some(t) = &token else {
            let (reason, message) = match &bearer {
                None => (
                    "missing",
                    format!(
                        "{what}: ACLs are on and this call carries no token (Authorization: Bearer TOKEN)"
                    ),
                ),
                Some(_) => (
                    "invalid",
                    format!(
                        "{what}: the bearer token is not valid (unknown, revoked or malformed)"
                    ),
                ),
            };
            return refuse(ErrorCode::Unauthorized, reason, message);
        };
        if !need.allows(t.role, t.node.as_deref()) {
            return refuse(
                ErrorCode::Forbidden,
                "forbidden",
                format!(
                    "{what}: needs the {} role; this token ({}) has {}",
                    need.describe(),
                    t.accessor,
                    t.role
                ),
            );
        }
    }
    let caller = Caller {
        // While ACLs are off a token is not needed, and is not what the audit records.
        token: if enabled { token } else { None },
        data_plane: crate::acl::is_data_plane(path),
        what,
        bearer,
    };
    crate::acl::scope(caller, next.run(req)).await
}

/// The secret of an `Authorization` header value (`Bearer SECRET`, scheme in any case).
fn secret_of(header: &str) -> Option<&str> {
    let (scheme, secret) = header.trim().split_once(' ')?;
    let secret = secret.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !secret.is_empty()).then_some(secret)
}

/// A 401 or 403 reply, counted by reason.
fn refuse(code: ErrorCode, reason: &'static str, message: String) -> Response {
    metrics::counter!("pyxis_auth_failures_total", "reason" => reason).increment(1);
    ApiError::new(code, message).into_response()
}

/// A handler's check that the caller may write like `admin` (ACLs off, or an admin
/// token); `what` names the operation for the 403.
pub fn require_admin(what: &str) -> Result<(), ApiError> {
    match crate::acl::caller() {
        Some(c) if !c.is_admin() => {
            metrics::counter!("pyxis_auth_failures_total", "reason" => "forbidden").increment(1);
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "{what}: needs the admin role; this token has {}",
                    c.role_name()
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// A handler's check that a `register` caller acts on its own node: `owners` are the nodes
/// the call touches (the instance in the body, the stored one, a lease's owner; `None`
/// for an owner that is not a node's, such as a lease granted without a register token).
/// Every other caller passes (the route table let it in).
pub fn require_node<'a>(
    field: &str,
    owners: impl IntoIterator<Item = Option<&'a str>>,
) -> Result<(), ApiError> {
    let Some(caller) = crate::acl::caller() else {
        return Ok(());
    };
    let Some(mine) = caller.register_node() else {
        return Ok(());
    };
    for owner in owners {
        if owner != Some(mine) {
            metrics::counter!("pyxis_auth_failures_total", "reason" => "forbidden").increment(1);
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "{field}: belongs to node {}, and this register token is bound to node {mine}",
                    owner.unwrap_or("(none)")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a non-empty `Bearer` value is a secret.
    #[test]
    fn bearer_header() {
        assert_eq!(secret_of("Bearer pyx_ab"), Some("pyx_ab"));
        assert_eq!(secret_of("bearer  pyx_ab "), Some("pyx_ab"));
        assert_eq!(secret_of("Basic dXNlcg=="), None);
        assert_eq!(secret_of("Bearer "), None);
        assert_eq!(secret_of("pyx_ab"), None);
    }
}
