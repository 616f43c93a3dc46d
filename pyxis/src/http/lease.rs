//! Lease routes: grant, keep alive, inspect and revoke.
//!
//! Grant and revoke are Raft writes (any node, forwarded to the leader). Keep-alive and
//! inspection touch the leader's in-memory deadlines (`lease_timer`), so a follower
//! proxies them to the leader. Binding keys to a lease is `PUT /v1/kv/{key}?lease=ID`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use pyxis_client::api::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseInfo, LeaseKeepAliveResponse, LeaseRevokeResponse,
};

use super::admin::proxy_to_leader;
use super::api_v1::parse_json;
use super::error::ApiError;
use super::request_id::WriteId;
use crate::node::Node;
use crate::store::command::{Command, CommandResult};

pub use crate::store::validate::{MAX_TTL_MS, MIN_TTL_MS};

/// `POST /v1/lease` with `{"ttl_ms": N}`.
pub async fn grant(
    State(node): State<Arc<Node>>,
    WriteId(rid): WriteId,
    body: Bytes,
) -> Result<Json<LeaseGrantResponse>, ApiError> {
    let req: LeaseGrantRequest = parse_json(&body, "lease body")?;
    if !(MIN_TTL_MS..=MAX_TTL_MS).contains(&req.ttl_ms) {
        return Err(ApiError::bad_request(format!(
            "ttl_ms: must be {MIN_TTL_MS}..={MAX_TTL_MS}, got {}",
            req.ttl_ms
        )));
    }
    // A register token's lease is owned by its node, so that only that node may keep it
    // alive, revoke it or put keys on it.
    let cmd = match crate::acl::caller().and_then(|c| c.register_node().map(str::to_owned)) {
        Some(owner) => Command::LeaseGrantOwned {
            ttl_ms: req.ttl_ms,
            owner,
        },
        None => Command::LeaseGrant { ttl_ms: req.ttl_ms },
    };
    match node.write(rid, cmd).await? {
        CommandResult::LeaseGranted { id, ttl_ms } => Ok(Json(LeaseGrantResponse { id, ttl_ms })),
        other => Err(ApiError::internal(format!(
            "unexpected result for lease grant: {other:?}"
        ))),
    }
}

/// `POST /v1/lease/{id}/keepalive`.
pub async fn keep_alive(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    own_lease(&node, id).await?;
    if !node.is_leader() {
        return proxy_to_leader(
            &node,
            Method::POST,
            &format!("/v1/lease/{id}/keepalive"),
            Vec::new(),
        )
        .await;
    }
    let ttl_ms = lease_ttl(&node, id)?;
    let ttl_ms = node.leases.keep_alive(id, ttl_ms);
    Ok(Json(LeaseKeepAliveResponse { ttl_ms }).into_response())
}

/// For a `register` caller: lease `id` must be its node's (granted with its token); 403
/// otherwise. Every other caller passes. Read after a linearizable barrier, so a lease
/// granted a moment ago through another node is known here.
async fn own_lease(node: &Node, id: u64) -> Result<(), ApiError> {
    if crate::acl::caller().is_none_or(|c| c.register_node().is_none()) {
        return Ok(());
    }
    node.linearize().await?;
    let owner = node.view.with_kv(|kv| {
        // A lease that is gone answers 404 as for anyone: an agent learns its lease is lost
        // and grants a new one, instead of retrying a 403 until its TTL has passed.
        kv.leases()
            .contains(id)
            .then(|| kv.acl().lease_owner(id).map(str::to_owned))
    });
    match owner {
        Some(owner) => super::auth::require_node("lease", [owner.as_deref()]),
        None => Ok(()),
    }
}

/// `GET /v1/lease/{id}`.
pub async fn show(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    if !node.is_leader() {
        return proxy_to_leader(&node, Method::GET, &format!("/v1/lease/{id}"), Vec::new()).await;
    }
    // The key list is built within the reply limit, like every listing.
    let limit = node.limits.max_response_bytes;
    let (ttl_ms, keys) = node
        .view
        .with_kv(|kv| {
            kv.leases().get(id).map(|l| {
                let mut used = 0u64;
                let keys: Option<Vec<String>> = l
                    .keys
                    .iter()
                    .map(|k| {
                        used += k.len() as u64 + KEY_OVERHEAD_BYTES;
                        (used <= limit).then(|| k.clone())
                    })
                    .collect();
                (l.ttl_ms, keys)
            })
        })
        .ok_or_else(|| ApiError::lease_not_found(id))?;
    let keys = keys.ok_or_else(|| {
        ApiError::too_large(format!(
            "response: the keys of lease {id} hold more than {limit} bytes, the limit \
             (--max-response-bytes)"
        ))
    })?;
    let remaining_ms = node.leases.remaining_ms(id, ttl_ms);
    Ok(Json(LeaseInfo {
        id,
        ttl_ms,
        remaining_ms,
        keys,
    })
    .into_response())
}

/// Bytes a key of a lease's key list counts for on top of its own: its JSON quotes and comma.
const KEY_OVERHEAD_BYTES: u64 = 4;

/// `DELETE /v1/lease/{id}`: ends the lease and deletes its keys in one revision.
pub async fn revoke(
    State(node): State<Arc<Node>>,
    WriteId(rid): WriteId,
    Path(id): Path<String>,
) -> Result<Json<LeaseRevokeResponse>, ApiError> {
    let id = parse_id(&id)?;
    own_lease(&node, id).await?;
    match node.write(rid, Command::LeaseRevoke { id }).await? {
        CommandResult::LeaseRevoked { revision, deleted } => {
            Ok(Json(LeaseRevokeResponse { revision, deleted }))
        }
        CommandResult::LeaseNotFound { id } => Err(ApiError::lease_not_found(id)),
        other => Err(ApiError::internal(format!(
            "unexpected result for lease revoke: {other:?}"
        ))),
    }
}

fn parse_id(id: &str) -> Result<u64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad_request(format!("id: expected a lease id, got {id:?}")))
}

fn lease_ttl(node: &Node, id: u64) -> Result<u64, ApiError> {
    node.view
        .with_kv(|kv| kv.leases().get(id).map(|l| l.ttl_ms))
        .ok_or_else(|| ApiError::lease_not_found(id))
}
