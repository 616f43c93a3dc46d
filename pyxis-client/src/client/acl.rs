//! ACL and audit calls: bootstrap, token create / list / revoke, the caller's own token,
//! whether ACLs are on, and the audit history.
//!
//! The token these calls are sent with is the client's (`ClientOptions::token`); the
//! secrets they answer are shown once and never stored by the server.

use reqwest::Method;

use super::Client;
use crate::api::{
    AclStatus, AuditList, BootstrapRequest, TokenCreateRequest, TokenCreated, TokenInfo, TokenList,
    TokenRevoked,
};
use crate::error::Result;
use crate::retry::Kind;
use crate::secret::new_secret;
use crate::url::segments_path;

impl Client {
    /// Whether the cluster's ACLs are on (answered without a token).
    pub async fn acl_status(&self) -> Result<AclStatus> {
        self.send_json(self.call(Method::GET, "/v1/acl/status".into(), Kind::Read))
            .await
    }

    /// Turns ACLs on and returns the first admin token; a 409 `compare_failed` once on.
    ///
    /// The secret is made here and sent, so the retries of this call (same request id)
    /// all name one token: a reply lost after the bootstrap applied is answered the token
    /// it made, never a secret the store does not hold.
    pub async fn acl_bootstrap(&self) -> Result<TokenCreated> {
        let body = BootstrapRequest {
            secret: Some(new_secret()),
        };
        let call = self.json_call(Method::POST, "/v1/acl/bootstrap".into(), &body)?;
        self.send_json(call).await
    }

    /// Creates a token (admin only). Without `request.secret` one is made here and sent,
    /// so the retries of this call name one token.
    pub async fn acl_token_create(&self, request: &TokenCreateRequest) -> Result<TokenCreated> {
        let mut request = request.clone();
        request.secret.get_or_insert_with(new_secret);
        let call = self.json_call(Method::POST, "/v1/acl/tokens".into(), &request)?;
        self.send_json(call).await
    }

    /// Every token, without secrets (admin only).
    pub async fn acl_tokens(&self) -> Result<TokenList> {
        self.send_json(self.call(Method::GET, "/v1/acl/tokens".into(), Kind::Read))
            .await
    }

    /// Revokes the token with this secret or accessor (admin only).
    pub async fn acl_token_revoke(&self, secret_or_accessor: &str) -> Result<TokenRevoked> {
        let path = segments_path(&["v1", "acl", "tokens", secret_or_accessor])?;
        self.send_json(self.once_call(Method::DELETE, path)).await
    }

    /// The token this client sends: role, node, accessor, description.
    pub async fn acl_token_self(&self) -> Result<TokenInfo> {
        self.send_json(self.call(Method::GET, "/v1/acl/token/self".into(), Kind::Read))
            .await
    }

    /// The newest `limit` audit entries (all kept when `None`), newest last.
    pub async fn audit(&self, limit: Option<u64>) -> Result<AuditList> {
        let path = match limit {
            Some(n) => format!("/v1/audit?limit={n}"),
            None => "/v1/audit".into(),
        };
        self.send_json(self.call(Method::GET, path, Kind::Read))
            .await
    }
}
