//! Agents' status records: `GET /v1/agents[?node=NODE]` and `PUT /v1/agents/{node}?lease=ID`.
//!
//! Each agent keeps one record at `/ns/agents/NODE` on its own lease (written by `ns-agent`'s
//! publisher, checked here by `ns_core::AgentRecord`), so the record vanishes with the agent.
//! The listing adds `last_contact_ms`, how long ago the agent's lease was last kept alive.
//! Keep-alives only move the leader's in-memory deadline (`lease_timer`, never replicated), so
//! a follower forwards the listing to the leader, which computes `ttl - remaining`. A new
//! leader starts every lease with a full TTL, so right after an election last contact counts
//! from the election until the agent's next keep-alive (at most a third of its TTL later).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{Method, Uri};
use axum::response::Response;
use ns_core::{AgentRecord, NodeName, keys};
use pyxis_client::api::PutResponse;
use serde::Serialize;

use super::super::admin::proxy_to_leader;
use super::super::error::ApiError;
use super::super::params::Params;
use super::super::request_id::WriteId;
use super::services::decode_logged;
use super::{WriteParams, invalid, listing, name, path_params, put_value, within};
use crate::node::Node;
use crate::store::read::Budget;

/// The reply of `GET /v1/agents`.
#[derive(Debug, Serialize)]
pub struct AgentsReply {
    /// One row per agent, sorted by node.
    pub agents: Vec<AgentRow>,
}

/// One agent: its record's fields plus its last contact.
#[derive(Debug, Serialize)]
pub struct AgentRow {
    /// The record as the agent last wrote it.
    #[serde(flatten)]
    pub record: AgentRecord,
    /// Milliseconds since the agent's lease was last kept alive, as the leader sees it; `null`
    /// for a record not bound to a lease (written through `/v1/kv`).
    pub last_contact_ms: Option<u64>,
}

/// `GET /v1/agents[?node=NODE]`: every agent's record (or `NODE`'s alone: a list of zero or
/// one) with `last_contact_ms`, answered by the leader.
pub async fn list(State(node): State<Arc<Node>>, uri: Uri) -> Result<Response, ApiError> {
    let params = Params::parse(uri.query())?;
    params.only(&["node"])?;
    let only = params
        .str("node")
        .map(|n| name("node", n, NodeName::parse))
        .transpose()?;
    if !node.is_leader() {
        let path = uri
            .path_and_query()
            .map_or("/v1/agents", |p| p.as_str())
            .to_owned();
        return proxy_to_leader(&node, Method::GET, &path, Vec::new()).await;
    }
    // The leader confirms it still leads, so the records and deadlines are current.
    node.linearize().await?;
    let mut budget = Budget::new(node.limits.max_response_bytes);
    let (revision, found) = node.view.with_kv(|kv| {
        let entries: Vec<_> = match &only {
            // A range over `/ns/agents/host7` would also return `host7b`.
            Some(n) => {
                let key = keys::agent(n);
                kv.get(&key).map(|e| (key, e)).into_iter().collect()
            }
            None => kv
                .range(keys::AGENTS)
                .map(|(k, e)| (k.clone(), e))
                .collect(),
        };
        let found: Vec<(AgentRecord, Option<(u64, u64)>)> = entries
            .into_iter()
            .take_while(|(key, entry)| budget.spend_entry(key, entry))
            .filter(|(key, _)| keys::agent_node(key).is_some())
            .filter_map(|(key, entry)| {
                let record = decode_logged(&key, &entry.value, AgentRecord::from_json)?;
                let lease = entry
                    .lease
                    .and_then(|id| Some((id, kv.leases().get(id)?.ttl_ms)));
                Some((record, lease))
            })
            .collect();
        (kv.revision(), found)
    });
    within(&budget, "the agents' records")?;
    // The deadlines are read outside the state's lock; keys come sorted, so rows are by node.
    let agents = found
        .into_iter()
        .map(|(record, lease)| AgentRow {
            record,
            last_contact_ms: lease
                .map(|(id, ttl_ms)| ttl_ms.saturating_sub(node.leases.remaining_ms(id, ttl_ms))),
        })
        .collect();
    Ok(listing(revision, AgentsReply { agents }))
}

/// `PUT /v1/agents/{node}?lease=ID` with an [`AgentRecord`] body naming the same node: the
/// agent's status record, bound to its lease (required, so the record dies with the agent).
pub async fn put(
    State(node): State<Arc<Node>>,
    WriteId(rid): WriteId,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
    body: Bytes,
) -> Result<Json<PutResponse>, ApiError> {
    let agent = name("node", &path_params(path)?, NodeName::parse)?;
    let write = WriteParams::parse(&uri, true)?;
    if write.lease.is_none() {
        return Err(ApiError::bad_request(
            "lease: required: an agent's record lives on the agent's lease",
        ));
    }
    let record = AgentRecord::from_json(&body).map_err(invalid)?;
    if record.node != agent {
        return Err(ApiError::bad_request(format!(
            "node: the record names {:?} but the path {:?}",
            record.node.as_str(),
            agent.as_str()
        )));
    }
    put_value(&node, rid, keys::agent(&agent), &record, write).await
}
