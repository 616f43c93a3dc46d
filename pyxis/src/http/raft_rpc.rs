//! Peer routes under `/raft/`: openraft's RPCs plus write forwarding and read index.
//!
//! Bodies are `raft::codec` encoded. Replies are `Result<T, String>` (or
//! `Result<T, ForwardError>` for forwarding) so a remote failure is data, not an
//! HTTP error; undecodable input, or a forwarded command the public API would refuse, gets
//! a 400. Before any of that a call without the peer token gets 401/403
//! ([`check_peer_token`]) and a call from another cluster 409 ([`check_cluster`]); body
//! limits per route are in [`BodyLimits`]. The sending side is `raft::network` (openraft
//! RPCs) and `node` (forwarding).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::throttle::Throttle;
use crate::cluster_id::{self, Verdict};
use crate::node::{ForwardError, MAX_PAYLOAD_ENTRIES, Node};
use crate::peer_token;
use crate::raft::{Snapshot, Vote, codec, transfer};
use crate::store::command::Command;
use crate::store::validate::MAX_COMMAND_BYTES;

/// Seconds between two warnings about refused calls: a stray leader calls many times a second.
const REFUSAL_WARN_EVERY_SECS: u64 = 10;

/// The header in which a forwarding node names itself (its node id), so that the leader can
/// tell whether a `MemberStarted` it is sent is the sender's own.
pub const FROM_HEADER: &str = "x-pyxis-from";

/// Body limit of the routes whose bodies are a few fields: votes, read index.
const SMALL_BODY_BYTES: usize = 64 * 1024;

/// Encoding bytes of a command beyond its keys and values: the request id and tags, plus
/// [`OP_OVERHEAD_BYTES`] per compare and op.
const COMMAND_OVERHEAD_BYTES: usize = 64 * 1024;

/// Encoding bytes of one compare or op beyond its key and value (tags, lengths, a lease).
const OP_OVERHEAD_BYTES: usize = 64;

/// Encoding bytes of one log entry beyond its command (log id, entry kind).
const ENTRY_OVERHEAD_BYTES: usize = 1024;

/// The body limit of each `/raft/*` route, from what a correct peer can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// `/raft/vote`, `/raft/pre-vote`, `/raft/read-index`.
    pub small: usize,
    /// `/raft/write`: one command of the largest size the API accepts.
    pub write: usize,
    /// `/raft/append`: a batch of [`MAX_PAYLOAD_ENTRIES`] such commands.
    pub append: usize,
}

impl BodyLimits {
    /// The limits for a node whose transactions hold at most `max_txn_ops` compares and ops
    /// per branch (`--max-txn-ops`). A snapshot has no limit: it is as large as the state.
    pub fn new(max_txn_ops: usize) -> BodyLimits {
        let write = MAX_COMMAND_BYTES
            + COMMAND_OVERHEAD_BYTES
            + max_txn_ops.saturating_mul(3 * OP_OVERHEAD_BYTES);
        let entries = usize::try_from(MAX_PAYLOAD_ENTRIES).unwrap_or(usize::MAX);
        BodyLimits {
            small: SMALL_BODY_BYTES,
            write,
            append: entries.saturating_mul(write + ENTRY_OVERHEAD_BYTES),
        }
    }
}

/// Admits a peer call only with this node's peer token, if it has one: 401 without the
/// header, 403 with another token. It runs first, so an unknown caller cannot even make a
/// `--join` node adopt its cluster id.
pub async fn check_peer_token(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let Some(token) = &node.peer_token else {
        return next.run(req).await;
    };
    let (status, why) = match req.headers().get(peer_token::HEADER) {
        Some(v) if token.matches(v.as_bytes()) => return next.run(req).await,
        Some(_) => (
            StatusCode::FORBIDDEN,
            format!("{}: not this cluster's peer token", peer_token::HEADER),
        ),
        None => (
            StatusCode::UNAUTHORIZED,
            format!(
                "{}: missing; this node requires the peer token (--peer-token-file)",
                peer_token::HEADER
            ),
        ),
    };
    metrics::counter!("pyxis_peer_calls_unauthorized_total").increment(1);
    warn_refusal(req.uri().path(), &why);
    (status, why).into_response()
}

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
    static EVERY: Throttle = Throttle::every(REFUSAL_WARN_EVERY_SECS);
    if EVERY.due() {
        tracing::warn!(path, "refused a peer call: {why}");
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

/// `POST /raft/snapshot`: a whole snapshot from the leader, its file as the body (streamed
/// to a temp file, never held in memory) and its vote in [`transfer::VOTE_HEADER`].
pub async fn snapshot(State(node): State<Arc<Node>>, headers: HeaderMap, body: Body) -> Response {
    let vote: Vote = match headers
        .get(transfer::VOTE_HEADER)
        .ok_or_else(|| "missing".to_owned())
        .and_then(|v| v.to_str().map_err(|e| e.to_string()))
        .and_then(transfer::decode_vote)
    {
        Ok(v) => v,
        Err(why) => {
            let msg = format!("raft rpc header {}: {why}", transfer::VOTE_HEADER);
            return (StatusCode::BAD_REQUEST, msg).into_response();
        }
    };
    let (meta, data) =
        match transfer::receive(node.view.snapshot_dir(), body.into_data_stream()).await {
            Ok(received) => received,
            Err(e @ transfer::ReceiveError::Disk(_)) => {
                tracing::warn!(error = %e, "could not take a snapshot from the leader");
                let msg = format!("raft rpc body: snapshot: {e}");
                return (StatusCode::INTERNAL_SERVER_ERROR, msg).into_response();
            }
            Err(e) => {
                let msg = format!("raft rpc body: snapshot: {e}");
                return (StatusCode::BAD_REQUEST, msg).into_response();
            }
        };
    let snap = Snapshot {
        meta,
        snapshot: data,
    };
    reply(
        &node
            .raft
            .install_full_snapshot(vote, snap)
            .await
            .map_err(|e| e.to_string()),
    )
}

/// `POST /raft/write`: a write forwarded by a follower, checked as the public API checks
/// its own before anything is proposed.
pub async fn write(State(node): State<Arc<Node>>, headers: HeaderMap, body: Bytes) -> Response {
    let cmd: Command = match decode(&body) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if let Err(why) = admit_forwarded(&node, &headers, &cmd) {
        return (StatusCode::BAD_REQUEST, format!("raft rpc body: {why}")).into_response();
    }
    let res: Result<_, ForwardError> = node.write_as_leader(cmd).await;
    reply(&res)
}

/// Whether a forwarded `cmd` may be proposed: a request with its id (so that the sender
/// may repeat it) whose command passes [`Command::validate`]; a `MemberStarted` only for the
/// sender itself ([`FROM_HEADER`]) and a current member.
fn admit_forwarded(node: &Node, headers: &HeaderMap, cmd: &Command) -> Result<(), String> {
    let Command::Request { cmd: inner, .. } = cmd else {
        return Err("a forwarded write must carry a request id".into());
    };
    cmd.validate(node.limits.max_txn_ops)
        .map_err(|e| e.to_string())?;
    if let Command::MemberStarted { id } = **inner {
        let from = headers
            .get(FROM_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if from != Some(id) {
            return Err(format!(
                "member started: a member announces only itself; {FROM_HEADER} is {from:?}, the command names {id}"
            ));
        }
        if !node.is_member(id) {
            return Err(format!("member started: node {id} is not a member"));
        }
    }
    Ok(())
}

/// `POST /raft/read-index`: the index a follower must apply before a linearizable read.
/// The body is empty; reading it makes the route's body limit apply.
pub async fn read_index(State(node): State<Arc<Node>>, _body: Bytes) -> Response {
    reply(&node.read_index_as_leader().await)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use pyxis_client::RequestId;
    use pyxis_client::api::CompareOp;

    use super::*;
    use crate::store::command::{Compare, CompareTarget, Op};

    /// The largest command `Command::validate` lets through fits `/raft/write`'s limit:
    /// every compare and op at the bound, their keys and values filling the byte budget.
    #[test]
    fn the_write_limit_holds_the_largest_valid_command() {
        let max_ops = 128;
        let limits = BodyLimits::new(max_ops);
        let per = MAX_COMMAND_BYTES / (3 * max_ops);
        let key = |i: usize| format!("/{i:0>9}");
        let fill = |i: usize| Bytes::from(vec![b'v'; per - key(i).len()]);
        let puts = |base: usize| -> Vec<Op> {
            (base..base + max_ops)
                .map(|i| Op::Put {
                    key: key(i),
                    value: fill(i),
                    lease: Some(u64::MAX),
                })
                .collect()
        };
        let cmd = Command::Request {
            id: RequestId {
                session: u64::MAX,
                seq: u64::MAX,
            },
            cmd: Box::new(Command::Txn {
                compare: (0..max_ops)
                    .map(|i| Compare {
                        key: key(i),
                        op: CompareOp::Eq,
                        target: CompareTarget::Value(fill(i)),
                    })
                    .collect(),
                success: puts(max_ops),
                failure: puts(2 * max_ops),
            }),
        };
        assert_eq!(cmd.validate(max_ops), Ok(()));
        let encoded = codec::encode(&cmd).unwrap().len();
        assert!(
            encoded <= limits.write,
            "{encoded} > {} bytes",
            limits.write
        );
        assert!(limits.append >= 256 * limits.write);
        assert!(limits.small < limits.write);
    }
}
