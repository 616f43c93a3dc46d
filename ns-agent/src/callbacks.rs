//! Callbacks: `url`s the agent POSTs a name's [`View`] to, at registration and on every change.
//!
//! [`Callbacks`] holds at most [`MAX_CALLBACKS`] of them, in memory only: the agent's
//! registrations are on a lease and vanish with it too, so a restarted agent starts with none
//! and clients register again (as they do after any agent restart). Each callback has one
//! task: it delivers the current view, then sleeps on the [`Book`]'s changes until its name's
//! index moves past the one delivered. A failed POST (no connection, timeout, non-2xx) is
//! retried with exponential backoff ([`FIRST_RETRY`] doubling up to [`MAX_RETRY`]), always with
//! the newest view; after [`MAX_FAILURES`] consecutive failures the callback is dropped: logged,
//! its task ended, and kept in the list with state `dropped` until deleted. Deliveries carry
//! the view's `index`, so a receiver can ignore a repeat (a POST whose reply was lost is sent
//! again). Validation and the HTTP routes are `http_api::callbacks`'.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ns_core::ServiceName;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::resolve::{Book, View};

/// Most callbacks registered at once (dropped ones included, until deleted).
pub const MAX_CALLBACKS: usize = 256;
/// Consecutive failed deliveries after which a callback is dropped.
pub const MAX_FAILURES: u32 = 5;
/// Wait before the first retry; doubles after each further failure.
pub const FIRST_RETRY: Duration = Duration::from_millis(200);
/// Longest wait between two retries.
pub const MAX_RETRY: Duration = Duration::from_secs(10);
/// Time one POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a callback still delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackState {
    /// Delivering (or retrying).
    Active,
    /// Given up after too many consecutive failures.
    Dropped,
}

/// One callback as `GET /v1/callbacks` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallbackInfo {
    /// Its id.
    pub id: String,
    /// The service followed.
    pub name: String,
    /// Where the views go.
    pub url: String,
    /// Active or dropped.
    pub state: CallbackState,
    /// The index of the last view the receiver acknowledged (2xx); `null` before the first.
    pub delivered_index: Option<u64>,
    /// How many deliveries succeeded.
    pub deliveries: u64,
    /// Consecutive failed attempts since the last success.
    pub failures: u32,
    /// The last failure, kept until the next success.
    pub last_error: Option<String>,
}

/// Why a callback was not registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// [`MAX_CALLBACKS`] are registered already.
    #[error("callbacks: at most {MAX_CALLBACKS} may be registered; delete some first")]
    Full,
}

/// The registered callbacks.
#[derive(Debug)]
pub struct Callbacks {
    book: Arc<Book>,
    http: reqwest::Client,
    entries: Mutex<BTreeMap<String, Entry>>,
    stop: CancellationToken,
}

#[derive(Debug)]
struct Entry {
    info: CallbackInfo,
    service: ServiceName,
    /// Ends this callback's task (on delete or agent shutdown).
    stop: CancellationToken,
}

impl Callbacks {
    /// A registry delivering views of `book` with `http`; its tasks end with `stop`.
    pub fn new(book: Arc<Book>, http: reqwest::Client, stop: CancellationToken) -> Callbacks {
        Callbacks {
            book,
            http,
            entries: Mutex::new(BTreeMap::new()),
            stop,
        }
    }

    /// Registers a callback of `name` to `url` (both already checked) and starts delivering.
    pub fn register(
        self: &Arc<Self>,
        name: ServiceName,
        url: String,
    ) -> Result<CallbackInfo, RegisterError> {
        let mut entries = self.lock();
        if entries.len() >= MAX_CALLBACKS {
            return Err(RegisterError::Full);
        }
        let id = loop {
            let id = format!("{:016x}", rand::random::<u64>());
            if !entries.contains_key(&id) {
                break id;
            }
        };
        let info = CallbackInfo {
            id: id.clone(),
            name: name.to_string(),
            url,
            state: CallbackState::Active,
            delivered_index: None,
            deliveries: 0,
            failures: 0,
            last_error: None,
        };
        let stop = self.stop.child_token();
        entries.insert(
            id.clone(),
            Entry {
                info: info.clone(),
                service: name.clone(),
                stop: stop.clone(),
            },
        );
        drop(entries);
        self.book.follow(&name);
        tokio::spawn(Arc::clone(self).deliver(id, name, info.url.clone(), stop));
        Ok(info)
    }

    /// Every callback, by id.
    pub fn list(&self) -> Vec<CallbackInfo> {
        self.lock().values().map(|e| e.info.clone()).collect()
    }

    /// Removes callback `id`; false if there is none.
    pub fn remove(&self, id: &str) -> bool {
        let Some(entry) = self.lock().remove(id) else {
            return false;
        };
        entry.stop.cancel();
        if entry.info.state == CallbackState::Active {
            self.book.unfollow(&entry.service);
        }
        true
    }

    /// One callback's task: deliver, then wait for a change, until dropped or stopped.
    async fn deliver(
        self: Arc<Self>,
        id: String,
        name: ServiceName,
        url: String,
        stop: CancellationToken,
    ) {
        let mut changes = self.book.changes();
        let mut delivered: Option<u64> = None;
        let mut failures = 0u32;
        loop {
            let current = self.book.get(&name);
            let index = current.as_ref().map_or(0, |v| v.index);
            if delivered.is_none_or(|d| index > d) {
                match self.post(&url, &name, current).await {
                    Ok(()) => {
                        failures = 0;
                        delivered = Some(index);
                        self.update(&id, |i| {
                            i.delivered_index = Some(index);
                            i.deliveries += 1;
                            i.failures = 0;
                            i.last_error = None;
                        });
                    }
                    Err(e) => {
                        failures += 1;
                        self.update(&id, |i| {
                            i.failures = failures;
                            i.last_error = Some(e.clone());
                        });
                        if failures >= MAX_FAILURES {
                            tracing::warn!(callback = %id, service = %name, error = %e, failures, "callback dropped after repeated failures");
                            // A callback deleted meanwhile has already stopped following.
                            if self.mark_dropped(&id) {
                                self.book.unfollow(&name);
                            }
                            return;
                        }
                        let wait = FIRST_RETRY
                            .saturating_mul(1 << (failures - 1).min(16))
                            .min(MAX_RETRY);
                        tracing::debug!(callback = %id, error = %e, ?wait, "callback delivery failed; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(wait) => continue,
                            () = stop.cancelled() => return,
                        }
                    }
                }
            }
            tokio::select! {
                r = changes.changed() => {
                    if r.is_err() {
                        return;
                    }
                }
                () = stop.cancelled() => return,
            }
        }
    }

    /// POSTs `view` to `url`; a service that does not exist (yet) is sent as an empty list.
    async fn post(&self, url: &str, name: &ServiceName, view: Option<View>) -> Result<(), String> {
        let view = view.unwrap_or_else(|| View {
            name: name.to_string(),
            index: 0,
            fail_open: false,
            datacenter: None,
            group: None,
            shifted: false,
            instances: Vec::new(),
        });
        let body = serde_json::to_vec(&view).map_err(|e| format!("encoding the view: {e}"))?;
        let reply = self
            .http
            .post(url)
            .timeout(POST_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        if reply.status().is_success() {
            Ok(())
        } else {
            Err(format!("POST {url}: HTTP {}", reply.status()))
        }
    }

    /// Marks `id` dropped; false if it is gone or was dropped already.
    fn mark_dropped(&self, id: &str) -> bool {
        match self.lock().get_mut(id) {
            Some(e) if e.info.state == CallbackState::Active => {
                e.info.state = CallbackState::Dropped;
                true
            }
            _ => false,
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut CallbackInfo)) {
        if let Some(e) = self.lock().get_mut(id) {
            f(&mut e.info);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
