//! The typed naming endpoints (`/v1/services`, `/v1/traffic`, `/v1/agents`) as seen by
//! operators' tools and agents.
//!
//! Values are passed through as JSON: their types and validation live in `ns-core`, which
//! depends on this crate (not the other way round), and the server validates every write.

use reqwest::Method;
use serde_json::Value;

use super::{Client, decode_json, header_u64};
use crate::api::{DeleteResponse, HEADER_MOD_REVISION, PutResponse, Revision};
use crate::error::Result;
use crate::retry::Kind;
use crate::url::segments_path;

impl Client {
    /// `GET /v1/services`: every service with its definition and instance counts.
    pub async fn services(&self) -> Result<Value> {
        self.send_json(self.call(Method::GET, "/v1/services".into(), Kind::Read))
            .await
    }

    /// The instances of `service`, optionally only in `dc` and only routable ones.
    pub async fn instances(&self, service: &str, dc: Option<&str>, healthy: bool) -> Result<Value> {
        let mut path = segments_path(&["v1", "services", service, "instances"])?;
        let mut query = Vec::new();
        if let Some(dc) = dc {
            query.push(format!(
                "dc={}",
                segments_path(&[dc])?.trim_start_matches('/')
            ));
        }
        if healthy {
            query.push("healthy=true".to_owned());
        }
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        self.send_json(self.call(Method::GET, path, Kind::Read))
            .await
    }

    /// A service definition; `None` if the service has none.
    pub async fn service(&self, service: &str) -> Result<Option<Value>> {
        let path = segments_path(&["v1", "services", service])?;
        self.read_optional(path)
            .await?
            .map(|r| decode_json(&r))
            .transpose()
    }

    /// A service's traffic policy; `None` if it has none.
    pub async fn traffic(&self, service: &str) -> Result<Option<Value>> {
        let path = segments_path(&["v1", "traffic", service])?;
        self.read_optional(path)
            .await?
            .map(|r| decode_json(&r))
            .transpose()
    }

    /// A service's traffic policy with its mod revision, for a later
    /// [`put_traffic_if`](Client::put_traffic_if); `None` if it has none.
    pub async fn traffic_versioned(&self, service: &str) -> Result<Option<(Value, Revision)>> {
        let path = segments_path(&["v1", "traffic", service])?;
        let Some(reply) = self.read_optional(path).await? else {
            return Ok(None);
        };
        let mod_rev = header_u64(&reply.headers, HEADER_MOD_REVISION)?;
        Ok(Some((decode_json(&reply)?, mod_rev)))
    }

    /// Replaces a service's traffic policy (validated by the server).
    pub async fn put_traffic(&self, service: &str, policy: &Value) -> Result<PutResponse> {
        let path = segments_path(&["v1", "traffic", service])?;
        self.send_json(self.json_call(Method::PUT, path, policy)?)
            .await
    }

    /// Replaces a service's traffic policy only if its mod revision is still `prev_rev`
    /// (0: only if it has none). A mismatch is `Error::Api` with code
    /// [`CompareFailed`](crate::api::ErrorCode::CompareFailed): read again and retry.
    pub async fn put_traffic_if(
        &self,
        service: &str,
        policy: &Value,
        prev_rev: Revision,
    ) -> Result<PutResponse> {
        let path = format!(
            "{}?prev_rev={prev_rev}",
            segments_path(&["v1", "traffic", service])?
        );
        self.send_json(self.json_call(Method::PUT, path, policy)?)
            .await
    }

    /// `PUT /v1/services/{service}/instances/{id}[?lease=ID]`: registers (or replaces) one
    /// instance, validated by the server, optionally bound to `lease`. An unknown or expired
    /// lease is `Error::Api` with code `NotFound`.
    pub async fn put_instance(
        &self,
        service: &str,
        id: &str,
        instance: &Value,
        lease: Option<u64>,
    ) -> Result<PutResponse> {
        let mut path = segments_path(&["v1", "services", service, "instances", id])?;
        if let Some(lease) = lease {
            path = format!("{path}?lease={lease}");
        }
        self.send_json(self.json_call(Method::PUT, path, instance)?)
            .await
    }

    /// `DELETE /v1/services/{service}/instances/{id}`: deregisters one instance; `deleted` is
    /// 0 if it was not registered.
    pub async fn delete_instance(&self, service: &str, id: &str) -> Result<DeleteResponse> {
        let path = segments_path(&["v1", "services", service, "instances", id])?;
        self.send_json(self.call(Method::DELETE, path, Kind::Write))
            .await
    }

    /// `GET /v1/agents[?node=NODE]`: every agent's status record (or `node`'s alone) with its
    /// `last_contact_ms`, as `{"agents": [...]}` sorted by node.
    pub async fn agents(&self, node: Option<&str>) -> Result<Value> {
        let mut path = "/v1/agents".to_owned();
        if let Some(node) = node {
            path = format!(
                "{path}?node={}",
                segments_path(&[node])?.trim_start_matches('/')
            );
        }
        self.send_json(self.call(Method::GET, path, Kind::Read))
            .await
    }

    /// `PUT /v1/agents/{node}?lease=ID`: writes an agent's status record (validated by the
    /// server) bound to the agent's lease. An unknown or expired lease is `Error::Api` with
    /// code `NotFound`.
    pub async fn put_agent(&self, node: &str, record: &Value, lease: u64) -> Result<PutResponse> {
        let path = format!("{}?lease={lease}", segments_path(&["v1", "agents", node])?);
        self.send_json(self.json_call(Method::PUT, path, record)?)
            .await
    }
}
