//! ACL helpers for end-to-end tests: HTTP calls that carry a bearer token, bootstrap, and
//! token creation.
//!
//! Plain HTTP against a node's API, as a client that knows only the wire contract would
//! make them; the ACL rules themselves are the server's.

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use pyxis_client::api::{Role, TokenCreated};
use reqwest::Method;

use crate::http::Reply;

/// A reqwest client for calls with (or without) `Authorization: Bearer`.
#[derive(Debug, Clone)]
pub struct Authed {
    client: reqwest::Client,
}

impl Default for Authed {
    fn default() -> Self {
        Authed::new()
    }
}

impl Authed {
    /// A client with a 15 s per-request timeout.
    pub fn new() -> Authed {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(2))
            .no_proxy()
            .build()
            .expect("build reqwest client");
        Authed { client }
    }

    /// Sends `method base+path` with `token` (if any) and a JSON or text `body`, and reads
    /// the whole reply.
    pub async fn call(
        &self,
        method: Method,
        base: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> anyhow::Result<Reply> {
        let url = format!("{base}{path}");
        let mut req = self.client.request(method.clone(), &url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_owned());
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body: Bytes = resp
            .bytes()
            .await
            .with_context(|| format!("read body of {method} {url}"))?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// `POST /v1/acl/bootstrap` on `base`: the first admin token's secret.
    pub async fn bootstrap(&self, base: &str) -> anyhow::Result<String> {
        let r = self
            .call(Method::POST, base, "/v1/acl/bootstrap", None, None)
            .await?
            .ok()?;
        Ok(r.json::<TokenCreated>()?.secret)
    }

    /// Creates a token with `admin`: its secret and accessor.
    pub async fn create(
        &self,
        base: &str,
        admin: &str,
        role: Role,
        node: Option<&str>,
        description: &str,
    ) -> anyhow::Result<(String, String)> {
        let body = serde_json::json!({"role": role, "node": node, "description": description});
        let r = self
            .call(
                Method::POST,
                base,
                "/v1/acl/tokens",
                Some(admin),
                Some(&body.to_string()),
            )
            .await?
            .ok()?;
        let created: TokenCreated = r.json()?;
        Ok((created.secret, created.token.accessor))
    }
}
