//! Operator routes: cluster membership, node status, backups, health and metrics.
//!
//! Membership changes run on the leader; a follower proxies the request there as is.
//! Key-value routes are in `api_v1`, peer RPC in `raft_rpc`.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use pyxis_client::api::{AddMemberRequest, ErrorCode, HEADER_REVISION, Health, NodeStatus};

use super::error::ApiError;
use super::params::Params;
use crate::node::Node;

/// How long a follower waits for the leader's cluster view before answering with its own.
const LEADER_VIEW_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /v1/cluster[?consistency=serializable]`: the leader's view (only the leader knows
/// how far each member has applied), asked for by a follower; a follower that cannot reach
/// the leader, or is asked for `serializable`, answers with its own view, where `applied`
/// is null for the other members.
pub async fn cluster(
    State(node): State<Arc<Node>>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let params = Params::parse(uri.query())?;
    params.only(&["consistency"])?;
    let serializable = params.serializable()?;
    // The leader as known now: waiting out an election would only delay the local answer.
    if let Some((id, addr)) = node.leader().filter(|_| !serializable)
        && id != node.id
    {
        let path = "/v1/cluster?consistency=serializable";
        let reply = forward(
            &node,
            &addr,
            Method::GET,
            path,
            Vec::new(),
            LEADER_VIEW_TIMEOUT,
        );
        match reply.await {
            Ok(resp) if resp.status().is_success() => return Ok(resp),
            Ok(resp) => tracing::debug!(status = %resp.status(), "no cluster view from the leader"),
            Err(e) => tracing::debug!(error = ?e, "no cluster view from the leader"),
        }
    }
    Ok(Json(node.cluster_info()).into_response())
}

/// `GET /v1/status`.
pub async fn status(State(node): State<Arc<Node>>) -> Json<NodeStatus> {
    Json(node.status())
}

/// `POST /v1/cluster/members` with `{"id", "addr"}`.
pub async fn add_member(
    State(node): State<Arc<Node>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: AddMemberRequest = super::api_v1::parse_json(&body, "member body")?;
    if req
        .addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .is_none()
    {
        return Err(ApiError::bad_request(format!(
            "addr: {:?} is not HOST:PORT",
            req.addr
        )));
    }
    if !node.is_leader() {
        return proxy_to_leader(&node, Method::POST, "/v1/cluster/members", body.to_vec()).await;
    }
    let info = node.add_member(req.id, &req.addr).await?;
    audit_membership(&node, req.id, None, Some(format!("addr={}", req.addr))).await;
    Ok(Json(info).into_response())
}

/// Records a membership change in the audit history (it is not a key-space command, so
/// `Node::write` has nothing else to stamp). The change is done whatever happens here: a
/// failure to record it is logged, not answered.
async fn audit_membership(node: &Node, id: u64, before: Option<String>, after: Option<String>) {
    if crate::acl::caller().is_none() {
        return;
    }
    let note = crate::store::command::Command::AuditNote {
        key: format!("members/{id}"),
        before,
        after,
    };
    if let Err(e) = node.write(node.ids.next_id(), note).await {
        tracing::warn!(target: "audit", member = id, error = %e, "membership change not recorded in the audit history");
    }
}

/// `DELETE /v1/cluster/members/{id}`.
pub async fn remove_member(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("id: expected a node id, got {id:?}")))?;
    if !node.is_leader() {
        return proxy_to_leader(
            &node,
            Method::DELETE,
            &format!("/v1/cluster/members/{id}"),
            Vec::new(),
        )
        .await;
    }
    let info = node.remove_member(id).await?;
    audit_membership(&node, id, Some("member".into()), None).await;
    Ok(Json(info).into_response())
}

/// `GET /v1/snapshot`: a consistent backup of the whole store (linearizable point).
pub async fn snapshot(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    node.linearize().await?;
    let (revision, chunks) = crate::raft::backup::stream(&node.view);
    let body = futures::stream::unfold(chunks, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    resp.headers_mut()
        .insert(HEADER_REVISION, HeaderValue::from(revision));
    Ok(resp)
}

/// `GET /healthz[?lag=N]`: 200 when this node can serve; 503 when Raft has stopped, no
/// leader is known, or the node has applied more than `N` (default
/// [`DEFAULT_MAX_LAG`](crate::health::DEFAULT_MAX_LAG)) entries fewer than the leader's
/// commit index. Both bodies are a [`Health`]; the 503 one carries `error` and `message` too.
/// Read from local metrics only, so polling it costs no RPC.
pub async fn healthz(
    State(node): State<Arc<Node>>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let params = Params::parse(uri.query())?;
    params.only(&["lag"])?;
    let max_lag = params.u64("lag")?.unwrap_or(crate::health::DEFAULT_MAX_LAG);
    let health = crate::health::judge(node.position(), max_lag);
    if health.healthy {
        return Ok(Json(health).into_response());
    }
    let (code, message) = match health.reason.as_deref() {
        Some("no_leader") => (
            ErrorCode::NoLeader,
            format!(
                "no_leader: no leader known, or none heard from (on the leader: no quorum \
                 acknowledged it) within {}ms",
                node.leader_contact.limit().as_millis()
            ),
        ),
        Some("removed") => (ErrorCode::Unavailable, removed_message(node.id)),
        Some("behind") => (
            ErrorCode::Unavailable,
            format!(
                "behind: applied index {} is {} entries behind the leader's commit index {} \
                 (more than lag={max_lag})",
                health.applied_index, health.lag, health.commit_index
            ),
        ),
        _ => (
            ErrorCode::Unavailable,
            "raft has stopped; see the server log".to_owned(),
        ),
    };
    #[derive(serde::Serialize)]
    struct Unhealthy {
        error: ErrorCode,
        message: String,
        #[serde(flatten)]
        health: Health,
    }
    let body = Unhealthy {
        error: code,
        message,
        health,
    };
    Ok((axum::http::StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response())
}

/// What a removed node answers: it is no member, and says where to go instead.
fn removed_message(id: u64) -> String {
    format!(
        "removed: this node (id {id}) was removed from the cluster and serves no requests; \
         use another member, or add it back (`pyxis members add {id} HOST:PORT`)"
    )
}

/// Middleware: a node removed from the cluster refuses client routes (`/v1/...` but
/// `/v1/status`) with 503, since its data and its idea of the leader are stale. Peer RPC,
/// `/healthz`, `/livez` and `/metrics` pass: they say what happened, or let it be added back.
pub async fn refuse_if_removed(
    State(node): State<Arc<Node>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    if path.starts_with("/v1/") && path != "/v1/status" && node.removed() {
        return ApiError::unavailable(removed_message(node.id)).into_response();
    }
    next.run(req).await
}

/// `GET /livez`: 200 while Raft runs, 503 once it has stopped; says nothing about a leader or
/// lag (`/healthz` does), so a starting node or one waiting to be added is live.
pub async fn livez(State(node): State<Arc<Node>>) -> Response {
    if node.position().running {
        "ok\n".into_response()
    } else {
        ApiError::unavailable("raft has stopped; see the server log").into_response()
    }
}

/// `GET /metrics` in the Prometheus text format.
pub async fn metrics() -> Response {
    match crate::metrics::handle() {
        Some(h) => ([("content-type", "text/plain; version=0.0.4")], h.render()).into_response(),
        None => ApiError::unavailable("metrics recorder not installed").into_response(),
    }
}

/// How long a request proxied to the leader may take (a member add waits for catch-up).
const PROXY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Sends the request to the leader (waiting for one to be elected) and answers with its reply.
pub(crate) async fn proxy_to_leader(
    node: &Node,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> Result<Response, ApiError> {
    let (_, addr) = node.wait_leader().await?;
    forward(node, &addr, method, path, body, PROXY_TIMEOUT).await
}

/// Sends the request to the node at `addr` and answers with its reply, status and body as is.
async fn forward(
    node: &Node,
    addr: &str,
    method: Method,
    path: &str,
    body: Vec<u8>,
    timeout: std::time::Duration,
) -> Result<Response, ApiError> {
    let mut req = node
        .http
        .request(method, node.peers.url(addr, path))
        .header("content-type", "application/json");
    // The leader checks the caller's token again against its own state.
    if let Some(bearer) = crate::acl::caller().and_then(|c| c.bearer.clone()) {
        req = req.header(axum::http::header::AUTHORIZATION, bearer);
    }
    let resp = req
        .body(body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| ApiError::unavailable(format!("forwarding to leader {addr}: {e}")))?;
    let status =
        axum::http::StatusCode::from_u16(resp.status().as_u16()).map_err(ApiError::internal)?;
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ApiError::unavailable(format!("reading leader {addr} reply: {e}")))?;
    Ok((status, [("content-type", "application/json")], bytes).into_response())
}
