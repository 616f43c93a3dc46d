//! Leases: grant, keep alive, inspect, revoke, and a keep-alive task for owners.
//!
//! [`KeepAlive`] is what a registering agent holds: it renews the lease at a third of
//! its TTL, retries quickly across endpoints when a renewal fails, and reports the
//! lease lost (through [`KeepAlive::lost`]) once the server says it is gone or no
//! renewal has succeeded for a whole TTL. It never re-grants on its own: the owner
//! decides what to re-register.

use std::time::Duration;

use reqwest::Method;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Client;
use crate::api::{
    ErrorCode, LeaseGrantRequest, LeaseGrantResponse, LeaseInfo, LeaseKeepAliveResponse,
    LeaseRevokeResponse,
};
use crate::error::{Error, Result};
use crate::retry::Kind;

impl Client {
    /// Grants a lease of `ttl_ms` milliseconds.
    pub async fn lease_grant(&self, ttl_ms: u64) -> Result<LeaseGrantResponse> {
        let call = self.json_call(
            Method::POST,
            "/v1/lease".into(),
            &LeaseGrantRequest { ttl_ms },
        )?;
        self.send_json(call).await
    }

    /// Renews a lease once; returns the milliseconds it now has left.
    pub async fn lease_keepalive(&self, id: u64) -> Result<LeaseKeepAliveResponse> {
        // Renewing twice is harmless, so it is retried like a read.
        let call = self.call(
            Method::POST,
            format!("/v1/lease/{id}/keepalive"),
            Kind::Read,
        );
        self.send_json(call).await
    }

    /// The lease's TTL, remaining time and bound keys.
    pub async fn lease_info(&self, id: u64) -> Result<LeaseInfo> {
        self.send_json(self.call(Method::GET, format!("/v1/lease/{id}"), Kind::Read))
            .await
    }

    /// Ends a lease and deletes its keys.
    pub async fn lease_revoke(&self, id: u64) -> Result<LeaseRevokeResponse> {
        self.send_json(self.once_call(Method::DELETE, format!("/v1/lease/{id}")))
            .await
    }

    /// Starts renewing lease `id` (granted with `ttl_ms`) in the background.
    pub fn keep_alive(&self, id: u64, ttl_ms: u64) -> KeepAlive {
        let (tx, rx) = watch::channel(None);
        let client = self.clone();
        let task = tokio::spawn(async move {
            let reason = renew_until_lost(&client, id, ttl_ms).await;
            let _ = tx.send(Some(reason));
        });
        KeepAlive { id, lost: rx, task }
    }
}

/// Why a kept-alive lease was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseLost {
    /// The server no longer knows the lease (it expired or was revoked).
    Gone,
    /// No renewal succeeded for a whole TTL; the last error says why.
    Unreachable(String),
}

/// A running keep-alive task; dropping it stops the renewals (the lease then expires).
#[derive(Debug)]
pub struct KeepAlive {
    id: u64,
    lost: watch::Receiver<Option<LeaseLost>>,
    task: JoinHandle<()>,
}

impl KeepAlive {
    /// The lease being renewed.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Resolves when the lease is lost, with the reason.
    pub async fn lost(&mut self) -> LeaseLost {
        match self.lost.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or(LeaseLost::Gone),
            Err(_) => LeaseLost::Unreachable("keep-alive task ended".into()),
        }
    }

    /// Whether the lease has been lost already.
    pub fn is_lost(&self) -> bool {
        self.lost.borrow().is_some()
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn renew_until_lost(client: &Client, id: u64, ttl_ms: u64) -> LeaseLost {
    let ttl = Duration::from_millis(ttl_ms);
    let period = ttl / 3;
    let mut last_ok = tokio::time::Instant::now();
    loop {
        match client.lease_keepalive(id).await {
            Ok(_) => {
                last_ok = tokio::time::Instant::now();
                tokio::time::sleep(period).await;
            }
            Err(Error::Api {
                code: ErrorCode::NotFound,
                ..
            }) => return LeaseLost::Gone,
            Err(e) => {
                if last_ok.elapsed() >= ttl {
                    return LeaseLost::Unreachable(e.to_string());
                }
                // The client already rotated endpoints; try again soon, within the TTL.
                tokio::time::sleep(period / 4).await;
            }
        }
    }
}
