//! The typed naming endpoints (`/v1/services`, `/v1/traffic`) as seen by operators' tools.
//!
//! Values are passed through as JSON: their types and validation live in `ns-core`, which
//! depends on this crate (not the other way round), and the server validates every write.

use reqwest::Method;
use serde_json::Value;

use super::Client;
use crate::api::{ErrorCode, PutResponse};
use crate::error::{Error, Result};
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
        not_found_as_none(
            self.send_json(self.call(Method::GET, path, Kind::Read))
                .await,
        )
    }

    /// A service's traffic policy; `None` if it has none.
    pub async fn traffic(&self, service: &str) -> Result<Option<Value>> {
        let path = segments_path(&["v1", "traffic", service])?;
        not_found_as_none(
            self.send_json(self.call(Method::GET, path, Kind::Read))
                .await,
        )
    }

    /// Replaces a service's traffic policy (validated by the server).
    pub async fn put_traffic(&self, service: &str, policy: &Value) -> Result<PutResponse> {
        let path = segments_path(&["v1", "traffic", service])?;
        let mut call = self.json_call(Method::PUT, path, policy)?;
        call.kind = Kind::Write;
        self.send_json(call).await
    }
}

fn not_found_as_none(r: Result<Value>) -> Result<Option<Value>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Error::Api {
            code: ErrorCode::NotFound,
            ..
        }) => Ok(None),
        Err(e) => Err(e),
    }
}
