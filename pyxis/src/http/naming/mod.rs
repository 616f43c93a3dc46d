//! The typed naming endpoints: `/v1/services`, `/v1/traffic` and `/v1/datacenters`.
//!
//! Each handler checks the path names with `ns_core`'s newtypes, the query parameters, and the
//! body with the schema's `from_json`, all before anything is proposed: a rejected request
//! writes nothing and answers 400 `bad_request` whose message starts with the field at fault
//! (`port: must be 1..=65535`). What is stored is the canonical JSON of the validated value,
//! at the key `ns_core::keys` builds. The rules themselves live in `ns_core::{name, schema}`;
//! the raw key-value routes (which do not check `/ns/` values) are in `api_v1`.
//!
//! - `services`: service definitions, the service listing with instance counts, and instances.
//! - `policy`: traffic policies and datacenters.
//! - `agents`: agents' status records (`/v1/agents`), with their last contact.

pub mod agents;
pub mod policy;
pub mod services;

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use ns_core::{DcName, Key, NameError, ServiceName, ValidationError, keys};
use pyxis_client::api::{self, DeleteResponse, PutResponse, Revision};
use serde::Serialize;

use super::error::ApiError;
use super::params::Params;
use crate::node::Node;
use crate::store::command::{Command, CommandResult, Op, TxnResult};
use crate::store::read::Budget;
use pyxis_client::RequestId;

/// A 400 for a value the naming model rejected; the message reads `field: why`.
fn invalid(e: ValidationError) -> ApiError {
    ApiError::bad_request(e.to_string())
}

/// The path parameters, or a 400 when axum cannot decode them (for example invalid UTF-8).
fn path_params<T>(path: Result<axum::extract::Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|p| p.0)
        .map_err(|e| ApiError::bad_request(format!("path: {}", e.body_text())))
}

/// Parses one path segment as a validated name; the error names `field`.
fn name<T>(field: &str, raw: &str, parse: fn(&str) -> Result<T, NameError>) -> Result<T, ApiError> {
    parse(raw).map_err(|e| invalid(e.at(field)))
}

/// The reserved-label rule (`ns_core::name::check_dc_label`) against the applied data: a
/// dotted service name may not end in a datacenter's name, or `NAME.DC.ZONE` would be
/// ambiguous. 400 naming `name`. Checked against local state before proposing, like the
/// other rules; two concurrent writes may still both pass (documented in ARCHITECTURE.md).
fn check_reserved_label(node: &Node, svc: &ServiceName) -> Result<(), ApiError> {
    let is_dc = |label: &str| {
        DcName::parse(label).is_ok_and(|dc| {
            node.view
                .with_kv(|kv| kv.get(&keys::datacenter(&dc)).is_some())
        })
    };
    ns_core::name::check_dc_label(svc, is_dc).map_err(|e| invalid(e.at("name")))
}

/// The other side of [`check_reserved_label`]: a datacenter may not be named like the last
/// label of an existing service. 400 naming `dc`.
fn check_dc_not_reserved(node: &Node, dc: &DcName) -> Result<(), ApiError> {
    let names: Vec<ServiceName> = node.view.with_kv(|kv| {
        [keys::SERVICES, keys::TRAFFIC, keys::INSTANCES]
            .iter()
            .flat_map(|prefix| kv.range(prefix))
            .filter_map(|(key, _)| Key::parse(key)?.service().cloned())
            .collect()
    });
    ns_core::name::check_dc_name(dc, names.iter().map(ServiceName::as_str))
        .map_err(|e| invalid(e.at("dc")))
}

/// For a read whose only query parameter is `consistency`: refuses any other, then makes
/// the read linearizable unless it is `serializable`.
async fn consistent_read(node: &Node, uri: &Uri) -> Result<(), ApiError> {
    let params = Params::parse(uri.query())?;
    params.only(&["consistency"])?;
    read_barrier(node, &params).await
}

/// Reads `consistency` and, unless it is `serializable`, makes the read linearizable.
async fn read_barrier(node: &Node, params: &Params) -> Result<(), ApiError> {
    if params.serializable()? {
        Ok(())
    } else {
        Ok(node.linearize().await?)
    }
}

/// The query parameters every typed `PUT` takes: `prev_rev` (compare-and-set on the stored
/// value's mod revision, `0` = must not exist, as on `/v1/kv`) and, where `leased` allows
/// it, `lease`.
#[derive(Debug, Clone, Copy, Default)]
struct WriteParams {
    prev_rev: Option<u64>,
    lease: Option<u64>,
}

impl WriteParams {
    /// Reads the write parameters from `uri`, refusing any other (and `lease` unless `leased`).
    fn parse(uri: &Uri, leased: bool) -> Result<Self, ApiError> {
        let params = Params::parse(uri.query())?;
        params.only(if leased {
            &["prev_rev", "lease"]
        } else {
            &["prev_rev"]
        })?;
        Ok(WriteParams {
            prev_rev: params.u64("prev_rev")?,
            lease: params.u64("lease")?,
        })
    }
}

/// Stores the canonical JSON of an already validated value at `key`.
async fn put_value<T: Serialize>(
    node: &Node,
    id: RequestId,
    key: String,
    value: &T,
    write: WriteParams,
) -> Result<Json<PutResponse>, ApiError> {
    let value = serde_json::to_vec(value).map_err(ApiError::internal)?;
    let cmd = Command::Put {
        key: key.clone(),
        value: Bytes::from(value),
        prev_rev: write.prev_rev,
        lease: write.lease,
    };
    match node.write(id, cmd).await? {
        CommandResult::Put { revision } => Ok(Json(PutResponse { revision })),
        CommandResult::PutConflict { mod_rev } => Err(ApiError::cas_failed(
            &key,
            write.prev_rev.unwrap_or(0),
            mod_rev,
        )),
        CommandResult::LeaseNotFound { id } => Err(ApiError::lease_not_found(id)),
        other => Err(ApiError::internal(format!(
            "unexpected result for put: {other:?}"
        ))),
    }
}

/// Deletes every `(key, prefix)` in one transaction, so at one revision.
async fn delete_keys(
    node: &Node,
    id: RequestId,
    keys: Vec<(String, bool)>,
) -> Result<Json<DeleteResponse>, ApiError> {
    let success = keys
        .into_iter()
        .map(|(key, prefix)| Op::Delete { key, prefix })
        .collect();
    let cmd = Command::Txn {
        compare: Vec::new(),
        success,
        failure: Vec::new(),
    };
    match node.write(id, cmd).await? {
        CommandResult::Txn {
            revision, results, ..
        } => {
            let deleted = results
                .iter()
                .map(|r| match r {
                    TxnResult::Delete(n) => *n,
                    _ => 0,
                })
                .sum();
            Ok(Json(DeleteResponse { revision, deleted }))
        }
        other => Err(ApiError::internal(format!(
            "unexpected result for delete: {other:?}"
        ))),
    }
}

/// Answers one stored value, re-read through its schema, with the revision headers of
/// `GET /v1/kv`. 404 naming `field` when the key is absent.
fn get_one<T: Serialize>(
    node: &Arc<Node>,
    key: &str,
    field: &str,
    what: &str,
    decode: fn(&[u8]) -> Result<T, ValidationError>,
) -> Result<Response, ApiError> {
    let (revision, entry) = node
        .view
        .with_kv(|kv| (kv.revision(), kv.get(key).cloned()));
    let entry = entry
        .ok_or_else(|| ApiError::not_found(format!("{field}: no {what} is stored at {key}")))?;
    // Only these endpoints' validated writes and raw `/v1/kv` puts reach `/ns/`; a raw put
    // may have stored something the schema rejects, which is the store's fault, not the
    // caller's.
    let value = decode(&entry.value)
        .map_err(|e| ApiError::internal(format!("stored value at {key} is invalid: {e}")))?;
    let mut resp = Json(value).into_response();
    let h = resp.headers_mut();
    h.insert(api::HEADER_REVISION, HeaderValue::from(revision));
    h.insert(api::HEADER_MOD_REVISION, HeaderValue::from(entry.mod_rev));
    Ok(resp)
}

/// A JSON listing with the revision it was read at in `X-Pyxis-Revision`.
/// A 413 naming `what` if building a listing spent more than its `budget`.
fn within(budget: &Budget, what: &str) -> Result<(), ApiError> {
    if budget.exceeded() {
        return Err(ApiError::too_large(format!(
            "response: {what} hold more than {} bytes, the limit (--max-response-bytes)",
            budget.limit()
        )));
    }
    Ok(())
}

fn listing<T: Serialize>(revision: Revision, rows: T) -> Response {
    let mut resp = Json(rows).into_response();
    resp.headers_mut()
        .insert(api::HEADER_REVISION, HeaderValue::from(revision));
    resp
}
