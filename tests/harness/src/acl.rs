//! ACL helpers for end-to-end tests: HTTP calls that carry a bearer token, bootstrap, and
//! token creation.
//!
//! Plain HTTP against a node's API, as a client that knows only the wire contract would
//! make them; the ACL rules themselves are the server's.

use bytes::Bytes;
use pyxis_client::api::{Role, TokenCreated};
use reqwest::Method;

use crate::http::{Api, Reply};

/// A client for calls with (or without) `Authorization: Bearer`.
#[derive(Debug, Clone, Default)]
pub struct Authed {
    api: Api,
}

impl Authed {
    /// A client with the harness' default 15 s per-request timeout.
    pub fn new() -> Authed {
        Authed::default()
    }

    /// Sends `method base+path` with `token` (if any) and a JSON `body`, and reads the whole
    /// reply.
    pub async fn call(
        &self,
        method: Method,
        base: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> anyhow::Result<Reply> {
        let body = body.map(|b| Bytes::from(b.to_owned()));
        let content_type = body.as_ref().map(|_| "application/json");
        self.api
            .request_as(method, &format!("{base}{path}"), body, content_type, token)
            .await
    }

    /// `POST /v1/acl/bootstrap` on `base`: the first admin token's secret.
    pub async fn bootstrap(&self, base: &str) -> anyhow::Result<String> {
        let r = self
            .call(Method::POST, base, "/v1/acl/bootstrap", None, None)
            .await?
            .ok()?;
        Ok(r.json::<TokenCreated>()?.secret)
    }

    /// Revokes the token `which` (secret or accessor) with `admin`; an error unless 2xx.
    pub async fn revoke(&self, base: &str, admin: &str, which: &str) -> anyhow::Result<()> {
        self.call(
            Method::DELETE,
            base,
            &format!("/v1/acl/tokens/{which}"),
            Some(admin),
            None,
        )
        .await?
        .ok()
        .map(drop)
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
