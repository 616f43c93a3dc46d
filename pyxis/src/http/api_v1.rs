//! Client routes of the key-value API: `/v1/kv/...` and `/v1/txn`.
//!
//! Handlers validate everything before anything is proposed, so a rejected request
//! writes nothing. Writes go through `Node::write`; reads are served from this node's
//! applied state after `Node::linearize` unless `consistency=serializable`; a transaction
//! without put or delete is such a read. Every reply is built within `--max-response-bytes`
//! (`store::read` counts while it copies) and refused with 413 beyond it.
//! Cluster, status and backup routes are in `admin`.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use pyxis_client::api::{
    self, DeleteResponse, MAX_VALUE_BYTES, PutResponse, RangeResponse, TxnOp, TxnRequest,
    TxnResponse, validate_key,
};

use super::error::ApiError;
use super::params::{Params, key_from_path};
use super::request_id::WriteId;
use crate::node::Node;
use crate::store::command::{Command, CommandResult, Compare, CompareTarget, Op};
use crate::store::read::{Budget, is_read_only};
use crate::store::value::to_key_value;

/// How long a blocking read waits when no `timeout` is given.
const DEFAULT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The longest `timeout` a blocking read accepts.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Parses `30s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    match unit {
        "ms" => Some(std::time::Duration::from_millis(n)),
        "s" => Some(std::time::Duration::from_secs(n)),
        "m" => Some(std::time::Duration::from_secs(n.checked_mul(60)?)),
        "h" => Some(std::time::Duration::from_secs(n.checked_mul(3600)?)),
        _ => None,
    }
}

/// How long an oversized body is read (and dropped) to answer 413 cleanly.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a delete of every key is refused without `all=true`.
const DELETE_ALL_HINT: &str = "all: a delete of prefix / removes every key, /ns/ included; \
     send DELETE /v1/kv/?all=true to mean it";

/// Largest transaction body accepted: room for a few full-size values.
const MAX_TXN_BYTES: usize = crate::store::validate::MAX_COMMAND_BYTES;

/// `PUT /v1/kv/{key}[?prev_rev=N]`.
pub async fn put(
    State(node): State<Arc<Node>>,
    WriteId(id): WriteId,
    uri: Uri,
    body: Body,
) -> Result<Json<PutResponse>, ApiError> {
    let params = Params::parse(uri.query())?;
    params.only(&["prev_rev", "lease"])?;
    let prev_rev = params.u64("prev_rev")?;
    let lease = params.u64("lease")?;
    let key = key_from_path(uri.path(), false)?;
    // A register token reaches here only for its node's status record (`acl::required`);
    // the lease that record is put on must be its own too.
    if let Some(l) = lease
        && crate::acl::caller().is_some_and(|c| c.register_node().is_some())
    {
        node.linearize().await?;
        let owner = node
            .view
            .with_acl(|acl| acl.lease_owner(l).map(str::to_owned));
        super::auth::require_node("lease", [owner.as_deref()])?;
    }
    let value = read_body(body, MAX_VALUE_BYTES, "value").await?;
    let cmd = Command::Put {
        key: key.clone(),
        value,
        prev_rev,
        lease,
    };
    match node.write(id, cmd).await? {
        CommandResult::Put { revision } => Ok(Json(PutResponse { revision })),
        CommandResult::PutConflict { mod_rev } => {
            Err(ApiError::cas_failed(&key, prev_rev.unwrap_or(0), mod_rev))
        }
        CommandResult::LeaseNotFound { id } => Err(ApiError::lease_not_found(id)),
        other => Err(ApiError::internal(format!(
            "unexpected result for put: {other:?}"
        ))),
    }
}

/// `GET /v1/kv/{key}` (raw value) or `?prefix=true` (JSON listing).
pub async fn get(State(node): State<Arc<Node>>, uri: Uri) -> Result<Response, ApiError> {
    let params = Params::parse(uri.query())?;
    params.only(&["prefix", "consistency", "wait_rev", "timeout", "limit"])?;
    let prefix = params.flag("prefix")?;
    let limit = listing_limit(&params, prefix)?;
    let wait_rev = params.u64("wait_rev")?;
    let timeout = match params.str("timeout") {
        None => DEFAULT_WAIT,
        Some(t) => parse_duration(t)
            .filter(|d| *d <= MAX_WAIT)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "timeout: expected a duration like 30s, 500ms or 2m up to {}s, got {t:?}",
                    MAX_WAIT.as_secs()
                ))
            })?,
    };
    let serializable = params.serializable()?;
    let key = key_from_path(uri.path(), prefix)?;
    if let Some(after) = wait_rev {
        // Consul-style blocking read: return once something under the key changes after
        // `wait_rev`, or at the timeout with the current data.
        let filter = super::watch::KeyFilter::new(key.clone(), prefix);
        super::watch::wait_for_change(&node.view, &filter, after, timeout).await;
    }
    if !serializable {
        node.linearize().await?;
    }
    if prefix {
        return Ok(Json(list(&node, &key, limit)?).into_response());
    }
    let found = node
        .view
        .with_kv(|kv| (kv.revision(), kv.get(&key).cloned()));
    match found {
        (_, None) => Err(ApiError::not_found(format!("key: {key} not found"))),
        (revision, Some(e)) => {
            let mut resp = Response::new(Body::from(e.value));
            let h = resp.headers_mut();
            h.insert(
                "content-type",
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(api::HEADER_REVISION, HeaderValue::from(revision));
            h.insert(api::HEADER_MOD_REVISION, HeaderValue::from(e.mod_rev));
            h.insert(api::HEADER_CREATE_REVISION, HeaderValue::from(e.create_rev));
            h.insert(api::HEADER_VERSION, HeaderValue::from(e.version));
            Ok(resp)
        }
    }
}

/// `limit=N` of a prefix listing: at least 1, and only with `prefix`.
fn listing_limit(params: &Params, prefix: bool) -> Result<Option<usize>, ApiError> {
    match params.u64("limit")? {
        None => Ok(None),
        Some(_) if !prefix => Err(ApiError::bad_request(
            "limit: applies to prefix listings only (add prefix=true)",
        )),
        Some(0) => Err(ApiError::bad_request("limit: must be at least 1")),
        Some(n) => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
    }
}

/// The keys under `prefix` (at most `limit`), built only while they fit `--max-response-bytes`.
fn list(node: &Node, prefix: &str, limit: Option<usize>) -> Result<RangeResponse, ApiError> {
    let mut budget = Budget::new(node.limits.max_response_bytes);
    let (revision, read) = node.view.with_kv(|kv| {
        let read = kv.read_bounded(prefix, true, limit, &mut budget);
        (kv.revision(), read)
    });
    if budget.exceeded() {
        return Err(ApiError::too_large(format!(
            "response: the keys under {prefix} hold more than {} bytes, the limit \
             (--max-response-bytes); pass limit=N to list fewer",
            budget.limit()
        )));
    }
    Ok(RangeResponse {
        revision,
        entries: read
            .entries
            .into_iter()
            .map(|(k, e)| to_key_value(k, &e))
            .collect(),
        more: read.more,
    })
}

/// `DELETE /v1/kv/{key}[?prefix=true]`, or `DELETE /v1/kv/?all=true` for every key.
///
/// The whole key space (`/ns/` included) goes only with an explicit `all=true`: a prefix
/// delete of `/` is refused, as a txn delete of prefix `/` is.
pub async fn delete(
    State(node): State<Arc<Node>>,
    WriteId(id): WriteId,
    uri: Uri,
) -> Result<Json<DeleteResponse>, ApiError> {
    let params = Params::parse(uri.query())?;
    params.only(&["prefix", "all"])?;
    let all = params.flag("all")?;
    let prefix = params.flag("prefix")? || all;
    let key = key_from_path(uri.path(), prefix)?;
    match (all, key == "/") {
        (true, false) => {
            return Err(ApiError::bad_request(format!(
                "all: deletes every key and takes no key (DELETE /v1/kv/?all=true), got {key}"
            )));
        }
        (false, true) => return Err(ApiError::bad_request(DELETE_ALL_HINT)),
        _ => {}
    }
    match node.write(id, Command::Delete { key, prefix }).await? {
        CommandResult::Delete { revision, deleted } => {
            Ok(Json(DeleteResponse { revision, deleted }))
        }
        other => Err(ApiError::internal(format!(
            "unexpected result for delete: {other:?}"
        ))),
    }
}

/// `POST /v1/txn[?consistency=serializable]`.
///
/// A transaction without put or delete ops is a read: it is answered from this node's
/// applied state (after `Node::linearize` unless `serializable`) and never enters the log.
/// Every other one is proposed, once its gets were checked to fit `--max-response-bytes`.
pub async fn txn(
    State(node): State<Arc<Node>>,
    WriteId(id): WriteId,
    uri: Uri,
    body: Body,
) -> Result<Json<TxnResponse>, ApiError> {
    let params = Params::parse(uri.query())?;
    params.only(&["consistency"])?;
    let serializable = params.serializable()?;
    let bytes = read_body(body, MAX_TXN_BYTES, "txn body").await?;
    let req: TxnRequest = parse_json(&bytes, "txn body")?;
    check_txn_ops(&req, node.limits.max_txn_ops)?;
    let cmd = validate_txn(req)?;
    let mut budget = Budget::new(node.limits.max_response_bytes);
    let result = if is_read_only(&cmd) {
        if !serializable {
            node.linearize().await?;
        }
        node.view
            .with_kv(|kv| kv.txn_read(&cmd, &mut budget))
            .ok_or_else(|| ApiError::internal("a read-only txn was not evaluated as one"))?
            .map_err(|b| txn_too_large(b.limit()))?
    } else {
        // Refused before anything is proposed; a read-only txn needs only `read`.
        super::auth::require_admin("txn with put or delete ops")?;
        if serializable {
            return Err(ApiError::bad_request(
                "consistency: serializable applies to transactions without put or delete ops",
            ));
        }
        if !node.view.with_kv(|kv| kv.txn_gets_fit(&cmd, &mut budget)) {
            return Err(txn_too_large(budget.limit()));
        }
        node.write(id, cmd).await?
    };
    match result {
        CommandResult::Txn {
            succeeded,
            revision,
            results,
        } => Ok(Json(TxnResponse {
            succeeded,
            revision,
            results: results.into_iter().map(Into::into).collect(),
        })),
        other => Err(ApiError::internal(format!(
            "unexpected result for txn: {other:?}"
        ))),
    }
}

/// 413 for a transaction whose gets hold more than `limit` bytes.
fn txn_too_large(limit: u64) -> ApiError {
    ApiError::too_large(format!(
        "response: the gets of this txn hold more than {limit} bytes, the limit \
         (--max-response-bytes); read fewer or narrower prefixes per txn"
    ))
}

/// Refuses a transaction with more compares, or more ops in one branch, than `max`
/// (`--max-txn-ops`; like etcd, each branch is counted on its own).
pub fn check_txn_ops(req: &TxnRequest, max: usize) -> Result<(), ApiError> {
    let counts = [
        ("compare", req.compare.len()),
        ("success", req.success.len()),
        ("failure", req.failure.len()),
    ];
    match counts.into_iter().find(|(_, n)| *n > max) {
        Some((field, n)) => Err(ApiError::bad_request(format!(
            "{field}: {n} entries is over the limit of {max} per txn (--max-txn-ops)"
        ))),
        None => Ok(()),
    }
}

/// Checks every compare and op of a transaction, naming the first bad field.
pub fn validate_txn(req: TxnRequest) -> Result<Command, ApiError> {
    let compare = req
        .compare
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let field = format!("compare[{i}]");
            validate_key(&c.key).map_err(|m| ApiError::invalid_key(format!("{field}.{m}")))?;
            let mut targets = Vec::new();
            if let Some(v) = c.value {
                targets.push(CompareTarget::Value(Bytes::from(v)));
            }
            if let Some(b) = c.value_b64 {
                let v = api::decode_value(None, Some(b)).map_err(|m| ApiError::bad_request(format!("{field}.{m}")))?;
                targets.push(CompareTarget::Value(v));
            }
            if let Some(r) = c.mod_rev {
                targets.push(CompareTarget::ModRev(r));
            }
            if let Some(v) = c.version {
                targets.push(CompareTarget::Version(v));
            }
            if let Some(x) = c.exists {
                targets.push(CompareTarget::Exists(x));
            }
            if targets.len() != 1 {
                return Err(ApiError::bad_request(format!(
                    "{field}: give exactly one of value, value_b64, mod_rev, version, exists (got {})",
                    targets.len()
                )));
            }
            Ok(Compare {
                key: c.key,
                op: c.cmp,
                target: targets.remove(0),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Command::Txn {
        compare,
        success: validate_ops("success", req.success)?,
        failure: validate_ops("failure", req.failure)?,
    })
}

fn validate_ops(branch: &str, ops: Vec<TxnOp>) -> Result<Vec<Op>, ApiError> {
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| {
            let field = format!("{branch}[{i}]");
            let key_ok = |k: &str| {
                validate_key(k).map_err(|m| ApiError::invalid_key(format!("{field}.{m}")))
            };
            Ok(match op {
                TxnOp::Put {
                    key,
                    value,
                    value_b64,
                    lease,
                } => {
                    key_ok(&key)?;
                    if value.is_some() && value_b64.is_some() {
                        return Err(ApiError::bad_request(format!(
                            "{field}: give value or value_b64, not both"
                        )));
                    }
                    let value = api::decode_value(value, value_b64)
                        .map_err(|m| ApiError::bad_request(format!("{field}.{m}")))?;
                    if value.len() > MAX_VALUE_BYTES {
                        return Err(ApiError::too_large(format!(
                            "{field}.value: {} bytes is over the limit of {MAX_VALUE_BYTES}",
                            value.len()
                        )));
                    }
                    Op::Put { key, value, lease }
                }
                TxnOp::Delete { key, prefix } => {
                    if prefix && (key.is_empty() || key == "/") {
                        return Err(ApiError::bad_request(format!(
                            "{field}.key: a txn does not delete every key; {DELETE_ALL_HINT}"
                        )));
                    }
                    key_ok(&key)?;
                    Op::Delete { key, prefix }
                }
                TxnOp::Get { key, prefix } => {
                    key_ok(&key)?;
                    Op::Get { key, prefix }
                }
            })
        })
        .collect()
}

/// Reads a request body of at most `limit` bytes; 413 naming `what` beyond that.
///
/// An oversized body is still drained (for up to [`DRAIN_TIME`]) before answering, because
/// most HTTP clients report a reset connection, not our 413, when the server stops reading
/// while they still send. The 413 gives the exact size when the whole body was drained.
pub(super) async fn read_body(body: Body, limit: usize, what: &str) -> Result<Bytes, ApiError> {
    let mut body = body.into_data_stream();
    let mut buf = BytesMut::new();
    let mut seen = 0usize;
    let mut drain_until = None;
    loop {
        let next = futures::StreamExt::next(&mut body);
        let chunk = match drain_until {
            None => next.await,
            Some(end) => match tokio::time::timeout_at(end, next).await {
                Ok(chunk) => chunk,
                Err(_) => {
                    return Err(ApiError::too_large(format!(
                        "{what}: over the limit of {limit} bytes (at least {seen} bytes sent)"
                    )));
                }
            },
        };
        let Some(chunk) = chunk else { break };
        let chunk = match chunk {
            Ok(chunk) => chunk,
            // Already too large: that is the answer, whatever stopped the rest.
            Err(_) if drain_until.is_some() => {
                return Err(ApiError::too_large(format!(
                    "{what}: over the limit of {limit} bytes (at least {seen} bytes sent)"
                )));
            }
            Err(e) => {
                return Err(ApiError::bad_request(format!(
                    "{what}: reading the body failed: {e}"
                )));
            }
        };
        seen = seen.saturating_add(chunk.len());
        if seen <= limit {
            buf.extend_from_slice(&chunk);
        } else if drain_until.is_none() {
            buf = BytesMut::new();
            drain_until = Some(tokio::time::Instant::now() + DRAIN_TIME);
        }
    }
    if seen > limit {
        return Err(ApiError::too_large(format!(
            "{what}: {seen} bytes is over the limit of {limit} bytes"
        )));
    }
    Ok(buf.freeze())
}

/// Parses a JSON body; the error names the path of the bad field (`compare[0].key: ...`).
///
/// Every body is a JSON object: serde would take an array for a struct (`[]` as all
/// defaults), so anything else is refused first, naming what it is.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    if let Some(first) = bytes.iter().find(|b| !b.is_ascii_whitespace())
        && *first != b'{'
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes)
    {
        let kind = match v {
            serde_json::Value::Array(_) => "an array",
            serde_json::Value::String(_) => "a string",
            serde_json::Value::Number(_) => "a number",
            serde_json::Value::Bool(_) => "a boolean",
            serde_json::Value::Null => "null",
            serde_json::Value::Object(_) => "an object",
        };
        return Err(ApiError::bad_request(format!(
            "{what}: expected a JSON object, got {kind}"
        )));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("{what}: not valid JSON: {inner}"))
        } else if path == "." {
            ApiError::bad_request(format!("{what}: {inner}"))
        } else {
            ApiError::bad_request(format!("{what}: {path}: {inner}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_that_is_not_an_object_is_refused_naming_the_body() {
        for (body, kind) in [
            ("[]", "an array"),
            (" [1]", "an array"),
            ("null", "null"),
            ("3", "a number"),
        ] {
            let e = parse_json::<TxnRequest>(body.as_bytes(), "txn body").unwrap_err();
            assert_eq!(
                e.body.message,
                format!("txn body: expected a JSON object, got {kind}"),
                "{body}"
            );
        }
        assert!(parse_json::<TxnRequest>(b"{}", "txn body").is_ok());
        let e = parse_json::<TxnRequest>(b"[", "txn body").unwrap_err();
        assert!(
            e.body.message.contains("not valid JSON"),
            "{}",
            e.body.message
        );
    }

    #[test]
    fn a_txn_never_deletes_every_key() {
        for key in ["/", ""] {
            let req: TxnRequest = serde_json::from_value(serde_json::json!({
                "success": [{"op": "delete", "key": key, "prefix": true}]
            }))
            .unwrap();
            let e = validate_txn(req).unwrap_err();
            assert!(
                e.body
                    .message
                    .starts_with("success[0].key: a txn does not delete every key")
                    && e.body.message.contains("all=true"),
                "{}",
                e.body.message
            );
        }
    }

    #[tokio::test]
    async fn an_oversized_body_is_read_to_its_end_and_counted_exactly() {
        // 70 MiB: past any read-ahead bound, and still counted to the byte.
        let mib = Bytes::from(vec![0u8; 1 << 20]);
        let chunks: Vec<Result<Bytes, std::io::Error>> = (0..70).map(|_| Ok(mib.clone())).collect();
        let body = Body::from_stream(futures::stream::iter(chunks));
        let e = read_body(body, 2500, "value").await.unwrap_err();
        assert_eq!(
            e.body.message,
            format!("value: {} bytes is over the limit of 2500 bytes", 70 << 20)
        );
        // A body that breaks off once it is too large is still a 413, not a 400.
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from(vec![0u8; 3000])),
            Err(std::io::Error::other("connection closed")),
        ];
        let body = Body::from_stream(futures::stream::iter(chunks));
        let e = read_body(body, 2500, "value").await.unwrap_err();
        assert_eq!(
            e.body.message,
            "value: over the limit of 2500 bytes (at least 3000 bytes sent)"
        );
    }
}
