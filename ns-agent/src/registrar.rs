//! The agent's registrations in the store: its lease, and the instances bound to it.
//!
//! Lifecycles say what should be registered ([`Registrar::set`], [`Registrar::remove`]); one
//! task makes the store match. It grants the lease, keeps it alive with `pyxis-client`'s
//! keep-alive task, and writes every difference between the wanted and the confirmed
//! registrations through the store's typed endpoint (`PUT /v1/services/NAME/instances/ID
//! ?lease=L`). A single writer means a deregistration can never be overtaken by an older put.
//! When the lease is lost (store unreachable for a TTL, or expired) the task grants a new one
//! and writes everything again with the current health; ids are stable, so nothing is
//! duplicated. What to register is decided by `lifecycle`; the instance value by `ns-core`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ns_core::{Instance, InstanceId, ServiceName};
use pyxis_client::api::ErrorCode;
use pyxis_client::{Client, Error, KeepAlive};
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One registration's identity: service and instance id.
pub type RegKey = (ServiceName, InstanceId);

/// How often the store is asked for its revision while nothing else happens.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// First and largest wait before retrying after a failed store call.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The agent's contact with the store, as the status API reports it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Contact {
    /// Whether the last store call succeeded.
    pub connected: bool,
    /// The store revision last seen.
    pub revision: u64,
    /// Milliseconds since the last successful store call (`null` if none ever succeeded).
    pub staleness_ms: Option<u64>,
    /// The agent's current lease, if it holds one.
    pub lease: Option<u64>,
    /// The last store error, while not connected.
    pub last_error: Option<String>,
    #[serde(skip)]
    last_ok: Option<Instant>,
}

/// Handle to the registration task; cheap to clone.
#[derive(Debug, Clone)]
pub struct Registrar {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    wanted: Mutex<BTreeMap<RegKey, Instance>>,
    wake: Notify,
    /// Keys confirmed in the store under the current lease.
    confirmed: watch::Sender<Vec<RegKey>>,
    contact: Mutex<Contact>,
}

impl Registrar {
    /// Starts the registration task; it runs until `shutdown`, then revokes the lease (which
    /// deletes every instance bound to it) and ends.
    pub fn start(
        client: Client,
        lease_ttl: Duration,
        shutdown: CancellationToken,
    ) -> (Registrar, tokio::task::JoinHandle<()>) {
        let shared = Arc::new(Shared {
            wanted: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            confirmed: watch::channel(Vec::new()).0,
            contact: Mutex::new(Contact::default()),
        });
        let task = tokio::spawn(sync_loop(shared.clone(), client, lease_ttl, shutdown));
        (Registrar { shared }, task)
    }

    /// Wants `instance` registered (or re-registered in place) under `key`; returns at once.
    pub fn set(&self, key: RegKey, instance: Instance) {
        lock(&self.shared.wanted).insert(key, instance);
        self.shared.wake.notify_one();
    }

    /// Wants `key` deregistered and waits until the store confirms it, the store is
    /// unreachable, or `wait` passes. Returns whether the store confirmed it.
    pub async fn remove(&self, key: &RegKey, wait: Duration) -> bool {
        lock(&self.shared.wanted).remove(key);
        self.shared.wake.notify_one();
        let mut rx = self.shared.confirmed.subscribe();
        let gone = rx.wait_for(|keys| !keys.contains(key));
        matches!(tokio::time::timeout(wait, gone).await, Ok(Ok(_)))
    }

    /// Whether `key` is confirmed registered under the current lease.
    pub fn is_registered(&self, key: &RegKey) -> bool {
        self.shared.confirmed.borrow().contains(key)
    }

    /// The store contact, with staleness computed now.
    pub fn contact(&self) -> Contact {
        let mut c = lock(&self.shared.contact).clone();
        c.staleness_ms = c
            .last_ok
            .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX));
        c
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn ok(&self, revision: Option<u64>, lease: Option<u64>) {
        let mut c = lock(&self.contact);
        if !c.connected {
            tracing::info!("store reachable");
        }
        c.connected = true;
        c.last_ok = Some(Instant::now());
        c.last_error = None;
        if let Some(r) = revision {
            c.revision = c.revision.max(r);
        }
        c.lease = lease;
        metrics::gauge!("ns_agent_store_connected").set(1.0);
    }

    fn failed(&self, what: &str, e: &Error) {
        let mut c = lock(&self.contact);
        if c.connected || c.last_error.is_none() {
            tracing::warn!(error = %e, "store call failed: {what}");
        }
        c.connected = false;
        c.last_error = Some(format!("{what}: {e}"));
        metrics::gauge!("ns_agent_store_connected").set(0.0);
    }

    fn publish(&self, confirmed: &BTreeMap<RegKey, Instance>) {
        let keys: Vec<RegKey> = confirmed.keys().cloned().collect();
        self.confirmed.send_replace(keys);
    }
}

/// The one writer: keeps the lease and makes the store hold exactly the wanted instances.
async fn sync_loop(
    shared: Arc<Shared>,
    client: Client,
    ttl: Duration,
    shutdown: CancellationToken,
) {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let mut lease: Option<KeepAlive> = None;
    let mut confirmed: BTreeMap<RegKey, Instance> = BTreeMap::new();
    let mut backoff = BACKOFF_MIN;
    while !shutdown.is_cancelled() {
        if lease.as_ref().is_some_and(KeepAlive::is_lost) {
            tracing::warn!("lease lost; registering everything again on a new lease");
            lease = None;
            confirmed.clear();
            shared.publish(&confirmed);
        }
        let lease_id = match &lease {
            Some(k) => k.id(),
            None => match client.lease_grant(ttl_ms).await {
                Ok(g) => {
                    tracing::info!(lease = g.id, ttl_ms, "lease granted");
                    shared.ok(None, Some(g.id));
                    lease = Some(client.keep_alive(g.id, ttl_ms));
                    g.id
                }
                Err(e) => {
                    shared.failed("granting the lease", &e);
                    pause(&shutdown, &mut backoff).await;
                    continue;
                }
            },
        };
        match write_differences(&shared, &client, lease_id, &mut confirmed).await {
            Ok(()) => backoff = BACKOFF_MIN,
            Err(lost) => {
                if lost {
                    lease = None;
                    confirmed.clear();
                    shared.publish(&confirmed);
                }
                pause(&shutdown, &mut backoff).await;
                continue;
            }
        }
        let probe = tokio::time::sleep(PROBE_EVERY);
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = shutdown.cancelled() => {}
            _ = probe => match client.status().await {
                Ok(s) => shared.ok(Some(s.revision), Some(lease_id)),
                Err(e) => shared.failed("status probe", &e),
            },
        }
    }
    if let Some(k) = lease {
        let id = k.id();
        drop(k);
        match tokio::time::timeout(Duration::from_secs(3), client.lease_revoke(id)).await {
            Ok(Ok(_)) => tracing::info!(lease = id, "lease revoked; every instance deregistered"),
            Ok(Err(e)) => {
                tracing::warn!(lease = id, error = %e, "revoking the lease failed; instances expire with it")
            }
            Err(_) => tracing::warn!(
                lease = id,
                "revoking the lease timed out; instances expire with it"
            ),
        }
    }
    confirmed.clear();
    shared.publish(&confirmed);
}

/// Deletes what is no longer wanted, then puts what changed. `Err(true)`: the lease is gone;
/// `Err(false)`: the store failed otherwise.
async fn write_differences(
    shared: &Shared,
    client: &Client,
    lease: u64,
    confirmed: &mut BTreeMap<RegKey, Instance>,
) -> Result<(), bool> {
    let wanted = lock(&shared.wanted).clone();
    let stale: Vec<RegKey> = confirmed
        .keys()
        .filter(|k| !wanted.contains_key(*k))
        .cloned()
        .collect();
    for key in stale {
        match client.delete_instance(key.0.as_str(), key.1.as_str()).await {
            Ok(r) => {
                metrics::counter!("ns_agent_registrations_total", "op" => "delete", "result" => "ok")
                    .increment(1);
                tracing::info!(service = %key.0, instance = %key.1, "deregistered");
                confirmed.remove(&key);
                shared.publish(confirmed);
                shared.ok(Some(r.revision), Some(lease));
            }
            Err(e) => {
                metrics::counter!("ns_agent_registrations_total", "op" => "delete", "result" => "error")
                    .increment(1);
                shared.failed("deregistering", &e);
                return Err(false);
            }
        }
    }
    for (key, instance) in wanted {
        if confirmed.get(&key) == Some(&instance) {
            continue;
        }
        let body = match serde_json::to_value(&instance) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(service = %key.0, error = %e, "cannot encode the instance");
                continue;
            }
        };
        match client
            .put_instance(key.0.as_str(), key.1.as_str(), &body, Some(lease))
            .await
        {
            Ok(r) => {
                metrics::counter!("ns_agent_registrations_total", "op" => "put", "result" => "ok")
                    .increment(1);
                tracing::info!(service = %key.0, instance = %key.1, status = ?instance.status, "registered");
                confirmed.insert(key, instance);
                shared.publish(confirmed);
                shared.ok(Some(r.revision), Some(lease));
            }
            Err(e) => {
                metrics::counter!("ns_agent_registrations_total", "op" => "put", "result" => "error")
                    .increment(1);
                let lost = matches!(
                    &e,
                    Error::Api {
                        code: ErrorCode::NotFound,
                        ..
                    }
                );
                shared.failed("registering", &e);
                return Err(lost);
            }
        }
    }
    Ok(())
}

/// Waits `backoff` (or until shutdown) and doubles it up to the cap.
async fn pause(shutdown: &CancellationToken, backoff: &mut Duration) {
    tokio::select! {
        _ = tokio::time::sleep(*backoff) => {}
        _ = shutdown.cancelled() => {}
    }
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
}
