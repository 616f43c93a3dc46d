//! Peer routes under `/raft/`: openraft's RPCs plus write forwarding and read index.
//!
//! Bodies are `raft::codec` encoded. Replies are `Result<T, String>` (or
//! `Result<T, ForwardError>` for forwarding) so a remote failure is data, not an
//! HTTP error; undecodable input gets a 400. A call from another cluster gets a 409
//! before any of that ([`check_cluster`]). The sending side is `raft::network`
//! (openraft RPCs) and `node` (forwarding).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use openraft::Snapshot;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cluster_id::{self, Verdict};
use crate::node::{ForwardError, Node};
use crate::raft::{Command, SnapshotData, SnapshotMeta, Vote, codec};

/// Seconds between two warnings about refused calls: a stray leader calls many times a second.
const REFUSAL_WARN_EVERY_SECS: u64 = 10;

/// Admits a peer call only from this node's cluster; a node with no id yet (started with
/// `--join`) adopts the caller's, durably, before serving the call.
pub async fn check_cluster(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let theirs = req
        .headers()
        .get(cluster_id::HEADER)
        .map(|v| v.to_str().unwrap_or("(not text)").to_owned());
    let refusal = match node.cluster.judge(theirs.as_deref()) {
        Verdict::Accept => return next.run(req).await,
        Verdict::Adopt(id) => {
            let cluster = node.cluster.clone();
            match tokio::task::spawn_blocking(move || cluster.adopt(id)).await {
                Ok(Ok(new)) => {
                    if new {
                        tracing::info!(cluster_id = %id, "took the cluster id of the first peer that called");
                    }
                    return next.run(req).await;
                }
                Ok(Err(e)) => format!("{}: {e}", cluster_id::HEADER),
                Err(e) => {
                    return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
                }
            }
        }
        Verdict::Reject(msg) => msg,
    };
    metrics::counter!("pyxis_peer_calls_refused_total").increment(1);
    warn_refusal(req.uri().path(), &refusal);
    (StatusCode::CONFLICT, refusal).into_response()
}

/// Logs a refused peer call, at most once per [`REFUSAL_WARN_EVERY_SECS`].
fn warn_refusal(path: &str, why: &str) {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + REFUSAL_WARN_EVERY_SECS
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(path, "refused a peer call from another cluster: {why}");
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    codec::decode(body).map_err(|e| {
        Box::new((StatusCode::BAD_REQUEST, format!("raft rpc body: {e}")).into_response())
    })
}

fn reply<T: Serialize>(value: &T) -> Response {
    match codec::encode(value) {
        Ok(bytes) => ([("content-type", "application/octet-stream")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `POST /raft/append`.
pub async fn append(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    match decode(&body) {
        Ok(req) => {
            let res = node.raft.append_entries(req).await;
            if res.is_ok() {
                node.leader_contact.heard();
            }
            reply(&res.map_err(|e| e.to_string()))
        }
        Err(r) => *r,
    }
}

/// `POST /raft/vote`.
pub async fn vote(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    match decode(&body) {
        Ok(req) => reply(&node.raft.vote(req).await.map_err(|e| e.to_string())),
        Err(r) => *r,
    }
}

/// `POST /raft/pre-vote`.
pub async fn pre_vote(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    match decode(&body) {
        Ok(req) => reply(&node.raft.pre_vote(req).await.map_err(|e| e.to_string())),
        Err(r) => *r,
    }
}

/// `POST /raft/snapshot`: a whole snapshot from the leader.
pub async fn snapshot(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let (vote, meta, data): (Vote, SnapshotMeta, Vec<u8>) = match decode(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let snap = Snapshot {
        meta,
        snapshot: SnapshotData::new(data),
    };
    reply(
        &node
            .raft
            .install_full_snapshot(vote, snap)
            .await
            .map_err(|e| e.to_string()),
    )
}

/// `POST /raft/write`: a write forwarded by a follower.
pub async fn write(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let cmd: Command = match decode(&body) {
        Ok(c @ Command::Request { .. }) => c,
        // Every forwarded write carries its request id, so that the sender may repeat it.
        Ok(_) => {
            return (
                StatusCode::BAD_REQUEST,
                "raft rpc body: a forwarded write must carry a request id",
            )
                .into_response();
        }
        Err(r) => return *r,
    };
    let res: Result<_, ForwardError> = node.write_as_leader(cmd).await;
    reply(&res)
}

/// `POST /raft/read-index`: the index a follower must apply before a linearizable read.
pub async fn read_index(State(node): State<Arc<Node>>) -> Response {
    reply(&node.read_index_as_leader().await)
}
