//! ACL routes: `/v1/acl/bootstrap`, `/v1/acl/tokens[/{secret_or_accessor}]`,
//! `/v1/acl/status`, `/v1/acl/token/self`, and the audit history at `/v1/audit`.
//!
//! Secrets are made by the caller (or here when it sends none), shown in the reply and
//! proposed only as their sha256 (`store::acl`). Who may call each route is the route table's (`acl::required`, checked
//! by `http::auth` before these handlers run).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::Uri;
use pyxis_client::api::{
    AclStatus, AuditList, BootstrapRequest, ErrorCode, Role, TokenCreateRequest, TokenCreated,
    TokenInfo, TokenList, TokenRevoked,
};
use pyxis_client::secret::secret_shape_error;

use super::api_v1::{parse_json, read_body};
use super::error::ApiError;
use super::params::Params;
use super::request_id::WriteId;
use crate::acl::{hash_secret, new_accessor, new_secret, now_ms};
use crate::node::Node;
use crate::store::acl::{AUDIT_CAPACITY, TokenRecord};
use crate::store::command::{Command, CommandResult};
use crate::store::validate::{MAX_DESCRIPTION_BYTES, check_node};

/// Largest bootstrap or token-create body: a role, a node name, a description of at most
/// `MAX_DESCRIPTION_BYTES` and a secret fit many times over.
const MAX_TOKEN_BODY_BYTES: usize = 16 * 1024;

/// `GET /v1/acl/status`: `{"enabled": bool}`, open to every caller.
pub async fn status(State(node): State<Arc<Node>>) -> Json<AclStatus> {
    Json(AclStatus {
        enabled: node.view.with_acl(|acl| acl.enabled()),
    })
}

/// `POST /v1/acl/bootstrap` with an optional [`BootstrapRequest`]: turns ACLs on and
/// answers the first admin token; 409 once on, unless the body's secret is the one the
/// bootstrap was made with (a repeat after a lost reply).
pub async fn bootstrap(
    State(node): State<Arc<Node>>,
    WriteId(rid): WriteId,
    body: Body,
) -> Result<Json<TokenCreated>, ApiError> {
    // Open to anyone, so read no more than a token body can be.
    let body = read_body(body, MAX_TOKEN_BODY_BYTES, "bootstrap body").await?;
    let req: BootstrapRequest = if body.iter().all(u8::is_ascii_whitespace) {
        BootstrapRequest::default()
    } else {
        parse_json(&body, "bootstrap body")?
    };
    let secret = chosen_secret(req.secret)?;
    let hash = hash_secret(&secret);
    // Checked here for a quick answer; the state machine checks again, so two bootstraps
    // racing through different nodes still make one token.
    if !node.view.with_acl(|acl| acl.enabled()) {
        let token = new_record(&hash, Role::Admin, None, "bootstrap token".into());
        match node.write(rid, Command::AclBootstrap { token }).await? {
            CommandResult::AclBootstrapped | CommandResult::AclAlreadyBootstrapped => {}
            other => {
                return Err(ApiError::internal(format!(
                    "unexpected result for acl bootstrap: {other:?}"
                )));
            }
        }
    }
    // The stored record, not the one proposed: a repeat of a request id answers the first
    // apply, whose accessor the first attempt made; and a repeat once ACLs are on finds the
    // token its secret made. Any other secret meets a bootstrap already done.
    match stored(&node, &hash).await? {
        Some(t) if t.role == Role::Admin => Ok(created(secret, &t)),
        _ => Err(already_bootstrapped()),
    }
}

fn already_bootstrapped() -> ApiError {
    ApiError::conflict(
        "acl bootstrap: ACLs are already bootstrapped; create more tokens with an admin token (pyxis acl token create)",
    )
}

/// `POST /v1/acl/tokens` with a [`TokenCreateRequest`]: a new token and its secret. A
/// repeat with the same secret, role, node and description answers the token it made.
pub async fn create(
    State(node): State<Arc<Node>>,
    WriteId(rid): WriteId,
    body: Body,
) -> Result<Json<TokenCreated>, ApiError> {
    let body = read_body(body, MAX_TOKEN_BODY_BYTES, "token body").await?;
    let req: TokenCreateRequest = parse_json(&body, "token body")?;
    match (&req.node, req.role) {
        (None, Role::Register) => {
            return Err(ApiError::bad_request(
                "node: a register token must be bound to a node",
            ));
        }
        (Some(_), role) if role != Role::Register => {
            return Err(ApiError::bad_request(format!(
                "node: only a register token is bound to a node, not a {role} token"
            )));
        }
        (Some(n), _) => check_node("node", n)?,
        (None, _) => {}
    }
    if req.description.len() > MAX_DESCRIPTION_BYTES
        || req.description.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(format!(
            "description: must be at most {MAX_DESCRIPTION_BYTES} bytes without control characters"
        )));
    }
    let secret = chosen_secret(req.secret)?;
    if !node.view.with_acl(|acl| acl.enabled()) {
        // A bootstrap a moment ago through another node may not be applied here yet.
        node.linearize().await?;
        if !node.view.with_acl(|acl| acl.enabled()) {
            return Err(not_bootstrapped());
        }
    }
    let hash = hash_secret(&secret);
    let token = new_record(&hash, req.role, req.node, req.description);
    let same = |t: &TokenRecord| {
        (t.role, &t.node, &t.description) == (token.role, &token.node, &token.description)
    };
    let result = node
        .write(
            rid,
            Command::AclTokenCreate {
                token: token.clone(),
            },
        )
        .await?;
    match result {
        // Either way the answer is the stored record: a repeat of a request id answers the
        // first apply, and a repeat with a new id finds the secret taken by its own token.
        CommandResult::AclTokenCreated | CommandResult::AclTokenRefused => {
            match stored(&node, &hash).await? {
                Some(t) if same(&t) => Ok(created(secret, &t)),
                Some(_) => Err(ApiError::conflict(
                    "secret: another token already has this secret; send a new one",
                )),
                None if result == CommandResult::AclTokenRefused
                    && !node.view.with_acl(|acl| acl.enabled()) =>
                {
                    Err(not_bootstrapped())
                }
                None => Err(ApiError::internal(
                    "acl token create: the token was not stored (its accessor collided); retry",
                )),
            }
        }
        other => Err(ApiError::internal(format!(
            "unexpected result for acl token create: {other:?}"
        ))),
    }
}

/// The caller's secret if it sent one (checked for shape), else a new one.
fn chosen_secret(sent: Option<String>) -> Result<String, ApiError> {
    match sent {
        None => Ok(new_secret()),
        Some(s) => match secret_shape_error(&s) {
            None => Ok(s),
            Some(why) => Err(ApiError::bad_request(format!("secret: {why}"))),
        },
    }
}

/// The token whose secret hashes to `hash`, as applied once everything acknowledged
/// before this call is (a write through a follower may not be applied there yet).
async fn stored(node: &Node, hash: &str) -> Result<Option<TokenRecord>, ApiError> {
    node.linearize().await?;
    Ok(node.view.with_acl(|acl| acl.by_hash(hash).cloned()))
}

fn created(secret: String, t: &TokenRecord) -> Json<TokenCreated> {
    Json(TokenCreated {
        secret,
        token: info(t),
    })
}

fn not_bootstrapped() -> ApiError {
    ApiError::conflict("acl token create: ACLs are off; run `pyxis acl bootstrap` first")
}

/// `GET /v1/acl/tokens`: every token, without secrets, by accessor; linearizable, as
/// every read of the store is by default.
pub async fn list(State(node): State<Arc<Node>>) -> Result<Json<TokenList>, ApiError> {
    node.linearize().await?;
    let mut tokens: Vec<TokenInfo> = node
        .view
        .with_kv(|kv| kv.acl().tokens().map(info).collect());
    tokens.sort_by(|a, b| a.accessor.cmp(&b.accessor));
    Ok(Json(TokenList { tokens }))
}

/// `DELETE /v1/acl/tokens/{secret_or_accessor}`: removes a token; 404 if none matches.
pub async fn revoke(
    State(node): State<Arc<Node>>,
    WriteId(rid): WriteId,
    Path(which): Path<String>,
) -> Result<Json<TokenRevoked>, ApiError> {
    let find = || {
        node.view.with_kv(|kv| {
            let acl = kv.acl();
            acl.by_accessor(&which)
                .or_else(|| acl.by_hash(&hash_secret(&which)))
                .map(|t| t.accessor.clone())
        })
    };
    let mut accessor = find();
    if accessor.is_none() {
        // A token created a moment ago through another node may not be applied here yet.
        node.linearize().await?;
        accessor = find();
    }
    let accessor = accessor
        .ok_or_else(|| ApiError::not_found("token: no token has this secret or accessor"))?;
    let cmd = Command::AclTokenRevoke {
        accessor: accessor.clone(),
    };
    match node.write(rid, cmd).await? {
        CommandResult::AclTokenRevoked => Ok(Json(TokenRevoked { accessor })),
        CommandResult::AclTokenNotFound => Err(ApiError::not_found(format!(
            "token: {accessor} was revoked already"
        ))),
        other => Err(ApiError::internal(format!(
            "unexpected result for acl token revoke: {other:?}"
        ))),
    }
}

/// `GET /v1/acl/token/self`: the caller's own token (role, node, accessor, description).
pub async fn token_self() -> Result<Json<TokenInfo>, ApiError> {
    match crate::acl::caller().and_then(|c| c.token.clone()) {
        Some(t) => Ok(Json(info(&t))),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            "token: ACLs are off, so no token identifies this caller",
        )),
    }
}

/// `GET /v1/audit[?limit=N]`: the newest audit entries (default and most 1000), newest last.
pub async fn audit(State(node): State<Arc<Node>>, uri: Uri) -> Result<Json<AuditList>, ApiError> {
    let params = Params::parse(uri.query())?;
    params.only(&["limit"])?;
    let limit = match params.u64("limit")? {
        None => AUDIT_CAPACITY,
        Some(n) if (1..=AUDIT_CAPACITY as u64).contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "limit: must be 1..={AUDIT_CAPACITY}, got {n}"
            )));
        }
    };
    // Linearizable, as every read of the store is by default: a change just acknowledged
    // through another node is in the history.
    node.linearize().await?;
    let entries = node
        .view
        .with_kv(|kv| kv.acl().audit(limit).cloned().collect());
    Ok(Json(AuditList { entries }))
}

/// The record the store keeps of a new token whose secret hashes to `hash`.
fn new_record(hash: &str, role: Role, node: Option<String>, description: String) -> TokenRecord {
    TokenRecord {
        accessor: new_accessor(),
        hash: hash.to_owned(),
        role,
        node,
        description,
        created_at_ms: now_ms(),
    }
}

/// A token as shown: everything but the hash.
fn info(t: &TokenRecord) -> TokenInfo {
    TokenInfo {
        accessor: t.accessor.clone(),
        role: t.role,
        node: t.node.clone(),
        description: t.description.clone(),
        created_at_ms: t.created_at_ms,
    }
}
