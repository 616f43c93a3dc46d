//! Peer routes under `/raft/`: openraft's RPCs plus write forwarding and read index.
//!
//! Bodies are `raft::codec` encoded. Replies are `Result<T, String>` (or
//! `Result<T, ForwardError>` for forwarding) so a remote failure is data, not an
//! HTTP error; undecodable input gets a 400. The sending side is `raft::network`
//! (openraft RPCs) and `node` (forwarding).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use openraft::Snapshot;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::node::{ForwardError, Node};
use crate::raft::{Command, SnapshotData, SnapshotMeta, Vote, codec};

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
        Ok(req) => reply(
            &node
                .raft
                .append_entries(req)
                .await
                .map_err(|e| e.to_string()),
        ),
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
        Ok(c) => c,
        Err(r) => return *r,
    };
    let res: Result<_, ForwardError> = node.write_as_leader(cmd).await;
    reply(&res)
}

/// `POST /raft/read-index`: the index a follower must apply before a linearizable read.
pub async fn read_index(State(node): State<Arc<Node>>) -> Response {
    reply(&node.read_index_as_leader().await)
}
