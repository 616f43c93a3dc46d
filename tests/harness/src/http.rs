//! HTTP helpers for the pyxis `/v1/` API, built on reqwest.
//!
//! Every call returns a [`Reply`] with the status, headers and raw body, so tests can assert
//! on error codes as easily as on success. The typed `*_ok` helpers fail on any non-2xx and
//! decode the body into the wire types of `pyxis_client::api`. Nothing here retries: wrap a
//! call in [`crate::eventually`] when a failure is expected to be transient.

use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use pyxis_client::api::{
    ClusterInfo, DeleteResponse, ErrorBody, HEADER_MOD_REVISION, HEADER_REVISION, NodeId,
    NodeStatus, PutResponse, RangeResponse, Revision,
};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;

/// Per-request timeout unless [`Api::with_timeout`] says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// One HTTP reply, fully read.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Bytes,
}

impl Reply {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Decodes the body as JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "decode {} body as {}: {}",
                self.status,
                std::any::type_name::<T>(),
                self.text()
            )
        })
    }

    /// Decodes an error reply's `{"error", "message"}` body.
    pub fn error_body(&self) -> anyhow::Result<ErrorBody> {
        self.json()
    }

    /// A header parsed as an integer, if present.
    pub fn header_u64(&self, name: &str) -> Option<u64> {
        self.headers.get(name)?.to_str().ok()?.parse().ok()
    }

    /// `X-Pyxis-Revision`: the store revision the read was served at.
    pub fn revision(&self) -> Option<Revision> {
        self.header_u64(HEADER_REVISION)
    }

    /// `X-Pyxis-Mod-Revision`: the key's last modification revision.
    pub fn mod_revision(&self) -> Option<Revision> {
        self.header_u64(HEADER_MOD_REVISION)
    }

    /// Returns `self` if the status is 2xx, else an error with status and body.
    pub fn ok(self) -> anyhow::Result<Reply> {
        if !self.is_success() {
            bail!("HTTP {}: {}", self.status, self.text());
        }
        Ok(self)
    }
}

/// A reqwest client aimed at pyxis nodes; cheap to clone and share between tasks.
#[derive(Debug, Clone)]
pub struct Api {
    client: reqwest::Client,
}

impl Default for Api {
    fn default() -> Self {
        Api::with_timeout(DEFAULT_TIMEOUT)
    }
}

impl Api {
    /// A client with the default 15 s per-request timeout.
    pub fn new() -> Api {
        Api::default()
    }

    /// A client whose requests give up after `timeout`.
    pub fn with_timeout(timeout: Duration) -> Api {
        Api::with_options(timeout, None)
    }

    /// A client whose requests give up after `timeout` and which, with `ca`, trusts only
    /// that CA file for `https://` URLs (a cluster started with TLS).
    pub fn with_options(timeout: Duration, ca: Option<&std::path::Path>) -> Api {
        pyxis_client::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            .no_proxy();
        if let Some(ca) = ca {
            let config = pyxis_client::tls::client_config(ca, None).expect("a usable CA file");
            builder = builder.tls_backend_preconfigured(config);
        }
        Api {
            client: builder.build().expect("build reqwest client"),
        }
    }

    /// Sends `method url` with an optional body and reads the whole reply.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        body: Option<Bytes>,
        content_type: Option<&str>,
    ) -> anyhow::Result<Reply> {
        self.request_as(method, url, body, content_type, None).await
    }

    /// [`Api::request`] with `Authorization: Bearer TOKEN` when `token` is given.
    pub async fn request_as(
        &self,
        method: Method,
        url: &str,
        body: Option<Bytes>,
        content_type: Option<&str>,
        token: Option<&str>,
    ) -> anyhow::Result<Reply> {
        let mut req = self.client.request(method.clone(), url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .with_context(|| format!("read body of {method} {url}"))?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// `GET base+path` (path includes the query string, if any).
    pub async fn get_path(&self, base: &str, path: &str) -> anyhow::Result<Reply> {
        self.request(Method::GET, &format!("{base}{path}"), None, None)
            .await
    }

    /// `GET base+path`, which must succeed, decoded from JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, base: &str, path: &str) -> anyhow::Result<T> {
        self.get_path(base, path).await?.ok()?.json()
    }

    /// `PUT /v1/kv/{key}` with a raw body.
    pub async fn put(
        &self,
        base: &str,
        key: &str,
        value: impl Into<Bytes>,
    ) -> anyhow::Result<Reply> {
        let url = format!("{base}{}", kv_path(key));
        self.request(Method::PUT, &url, Some(value.into()), None)
            .await
    }

    /// `PUT /v1/kv/{key}?prev_rev=N`: compare-and-set on the key's mod revision.
    pub async fn put_cas(
        &self,
        base: &str,
        key: &str,
        value: impl Into<Bytes>,
        prev_rev: Revision,
    ) -> anyhow::Result<Reply> {
        let url = format!("{base}{}?prev_rev={prev_rev}", kv_path(key));
        self.request(Method::PUT, &url, Some(value.into()), None)
            .await
    }

    /// A put that must succeed; returns the revision it created.
    pub async fn put_ok(
        &self,
        base: &str,
        key: &str,
        value: impl Into<Bytes>,
    ) -> anyhow::Result<Revision> {
        let reply = self.put(base, key, value).await?.ok()?;
        Ok(reply.json::<PutResponse>()?.revision)
    }

    /// Linearizable `GET /v1/kv/{key}`.
    pub async fn get(&self, base: &str, key: &str) -> anyhow::Result<Reply> {
        self.get_path(base, &kv_path(key)).await
    }

    /// `GET /v1/kv/{key}?consistency=serializable`: served from the node's local state.
    pub async fn get_serializable(&self, base: &str, key: &str) -> anyhow::Result<Reply> {
        self.get_path(base, &format!("{}?consistency=serializable", kv_path(key)))
            .await
    }

    /// Linearizable prefix listing `GET /v1/kv/{prefix}?prefix=true`.
    pub async fn range(&self, base: &str, prefix: &str) -> anyhow::Result<Reply> {
        self.get_path(base, &format!("{}?prefix=true", kv_path(prefix)))
            .await
    }

    /// Serializable prefix listing.
    pub async fn range_serializable(&self, base: &str, prefix: &str) -> anyhow::Result<Reply> {
        self.get_path(
            base,
            &format!("{}?prefix=true&consistency=serializable", kv_path(prefix)),
        )
        .await
    }

    /// A linearizable listing that must succeed.
    pub async fn range_ok(&self, base: &str, prefix: &str) -> anyhow::Result<RangeResponse> {
        self.range(base, prefix).await?.ok()?.json()
    }

    /// A serializable listing that must succeed.
    pub async fn range_serializable_ok(
        &self,
        base: &str,
        prefix: &str,
    ) -> anyhow::Result<RangeResponse> {
        self.range_serializable(base, prefix).await?.ok()?.json()
    }

    /// `DELETE /v1/kv/{key}`.
    pub async fn delete(&self, base: &str, key: &str) -> anyhow::Result<Reply> {
        let url = format!("{base}{}", kv_path(key));
        self.request(Method::DELETE, &url, None, None).await
    }

    /// `DELETE /v1/kv/{prefix}?prefix=true`.
    pub async fn delete_prefix(&self, base: &str, prefix: &str) -> anyhow::Result<Reply> {
        let url = format!("{base}{}?prefix=true", kv_path(prefix));
        self.request(Method::DELETE, &url, None, None).await
    }

    /// A delete that must succeed.
    pub async fn delete_ok(&self, base: &str, key: &str) -> anyhow::Result<DeleteResponse> {
        self.delete(base, key).await?.ok()?.json()
    }

    /// `POST /v1/txn` with a JSON body (any JSON, so tests can send malformed requests).
    pub async fn txn(&self, base: &str, body: &serde_json::Value) -> anyhow::Result<Reply> {
        self.post_json(base, "/v1/txn", body).await
    }

    /// `POST base+path` with a JSON body.
    pub async fn post_json(
        &self,
        base: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<Reply> {
        self.send_json(Method::POST, base, path, body).await
    }

    /// `PUT base+path` with a JSON body (the typed `/v1/services|traffic|...` writes).
    pub async fn put_json(
        &self,
        base: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<Reply> {
        self.send_json(Method::PUT, base, path, body).await
    }

    async fn send_json(
        &self,
        method: Method,
        base: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<Reply> {
        let url = format!("{base}{path}");
        let body = Bytes::from(serde_json::to_vec(body)?);
        self.request(method, &url, Some(body), Some("application/json"))
            .await
    }

    /// `GET /v1/cluster`, which must succeed.
    pub async fn cluster(&self, base: &str) -> anyhow::Result<ClusterInfo> {
        self.get_path(base, "/v1/cluster").await?.ok()?.json()
    }

    /// `GET /v1/status`, which must succeed.
    pub async fn status(&self, base: &str) -> anyhow::Result<NodeStatus> {
        self.get_path(base, "/v1/status").await?.ok()?.json()
    }

    /// `POST /v1/cluster/members {"id", "addr"}`.
    pub async fn add_member(&self, base: &str, id: NodeId, addr: &str) -> anyhow::Result<Reply> {
        self.post_json(
            base,
            "/v1/cluster/members",
            &serde_json::json!({ "id": id, "addr": addr }),
        )
        .await
    }

    /// `DELETE /v1/cluster/members/{id}`.
    pub async fn remove_member(&self, base: &str, id: NodeId) -> anyhow::Result<Reply> {
        let url = format!("{base}/v1/cluster/members/{id}");
        self.request(Method::DELETE, &url, None, None).await
    }
}

/// The URL path of `key`: `/ns/x` becomes `/v1/kv/ns/x`.
///
/// Bytes outside the unreserved set and `/` are percent-encoded, so any valid key round-trips.
/// Tests that need a deliberately broken path build it by hand.
pub fn kv_path(key: &str) -> String {
    let mut path = String::from("/v1/kv/");
    for &b in key.strip_prefix('/').unwrap_or(key).as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            path.push(char::from(b));
        } else {
            path.push_str(&format!("%{b:02X}"));
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::kv_path;

    #[test]
    fn keys_map_to_paths() {
        assert_eq!(kv_path("/ns/x"), "/v1/kv/ns/x");
        assert_eq!(kv_path("/"), "/v1/kv/");
        assert_eq!(kv_path("/a b"), "/v1/kv/a%20b");
        assert_eq!(kv_path("/é"), "/v1/kv/%C3%A9");
    }
}
