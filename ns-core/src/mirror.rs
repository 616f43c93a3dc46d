//! [`Mirror`]: an in-memory copy of `/ns/`, kept current by one watch stream.
//!
//! One task lists `/ns/` linearizably at revision R, then watches from R+1 and applies every
//! change to a working [`Snapshot`], publishing an immutable copy after each batch of events.
//! Readers take [`Mirror::snapshot`] (an `Arc` clone, no store round-trip) or wait on
//! [`Mirror::subscribe`]. A watch that falls behind the kept history re-lists; a store that
//! cannot be reached leaves the last snapshot in place while [`Mirror::status`] reports how
//! stale it is. Turning keys and values into the catalog is pure ([`Snapshot::from_listing`],
//! [`Snapshot::apply`]); routing over a snapshot is [`crate::routing`].
//!
//! This is the only I/O of `ns-core`, and the only place it reads the clock (for staleness).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use imbl::OrdMap;
use pyxis_client::api::{RangeResponse, Revision, WatchMessage, decode_value};
use pyxis_client::{Client, ClientOptions, Error, Watch};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::catalog::Catalog;
use crate::keys::{self, Key};
use crate::schema::{Datacenter, Instance, ServiceDef, TrafficPolicy};

/// Why a key under `/ns/` that fits no part of the layout is skipped.
pub const OUTSIDE_LAYOUT: &str = "key outside the /ns/ layout";

/// The naming model at one store revision, as readers see it. Immutable once published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every valid key under `/ns/`, typed.
    pub catalog: Catalog,
    /// The store revision this catalog reflects exactly (0 before the first listing).
    pub revision: Revision,
    /// Keys under `/ns/` that were skipped, with the reason: a key outside the layout or a
    /// value that fails validation. Such a key is absent from [`Snapshot::catalog`], as if it
    /// did not exist, so a bad write never brings down the mirror nor leaves an older value in force.
    pub invalid: OrdMap<String, String>,
}

/// Tuning of a [`Mirror`]; [`MirrorOptions::default`] suits agents and gateways.
#[derive(Debug, Clone)]
pub struct MirrorOptions {
    /// Longest time one batch of events is gathered before a snapshot is published. A batch
    /// ends earlier as soon as no further event is already received.
    pub max_batch_delay: Duration,
    /// Most events applied before a snapshot is published.
    pub max_batch_events: usize,
    /// First wait after a failed listing or a watch that gave up; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest wait between two attempts while the store cannot be reached.
    pub max_backoff: Duration,
}

impl Default for MirrorOptions {
    fn default() -> Self {
        MirrorOptions {
            max_batch_delay: Duration::from_millis(50),
            max_batch_events: 1000,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// How current a mirror is, for status pages and staleness reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorStatus {
    /// The store revision the mirror is known to be current up to: that of the published
    /// snapshot, or later when the store has since reported no change (watch progress).
    pub revision: Revision,
    /// Whether a listing has succeeded and the last exchange with the store succeeded. A watch
    /// that is reconnecting stays synced until it gives up; `since_contact` shows the gap.
    pub synced: bool,
    /// Time since the store last answered (a listing, an event or a progress line, which a
    /// quiet watch receives every few seconds); `None` before the first answer.
    pub since_contact: Option<Duration>,
    /// The last error talking to the store, kept until the next success.
    pub last_error: Option<String>,
    /// Number of keys skipped in the published snapshot (see [`Snapshot::invalid`]).
    pub invalid_keys: usize,
    /// How many times `/ns/` was listed (1 after start; more after compactions or long outages).
    pub listings: u64,
}

/// The live mirror of `/ns/`. Dropping it stops its task.
#[derive(Debug)]
pub struct Mirror {
    shared: Arc<Shared>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    task: JoinHandle<()>,
}

impl Mirror {
    /// Starts the mirror's task on the current tokio runtime. Until the first listing
    /// succeeds, readers see an empty snapshot at revision 0 and `synced` is false.
    pub fn start(client: Client, opts: MirrorOptions) -> Mirror {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let shared = Arc::new(Shared {
            snapshots: tx,
            progress: Mutex::new(Progress::default()),
        });
        let task = tokio::spawn(run(client, opts, Arc::clone(&shared)));
        Mirror {
            shared,
            snapshots: rx,
            task,
        }
    }

    /// Starts a mirror of the store at `endpoints` (`host:port` or URLs) with the defaults
    /// every reader of the naming model uses: short attempts (3 s per request, 0.5 s to
    /// connect, 1 s of retries), because the mirror retries by itself and its staleness must
    /// show quickly, and [`MirrorOptions::default`]. Call inside a tokio runtime.
    pub fn for_endpoints(endpoints: Vec<String>) -> Result<Mirror, Error> {
        let options = ClientOptions::default()
            .request_timeout(Duration::from_secs(3))
            .connect_timeout(Duration::from_millis(500))
            .retry_budget(Duration::from_secs(1));
        let client = Client::with_options(endpoints, options)?;
        Ok(Mirror::start(client, MirrorOptions::default()))
    }

    /// The latest published snapshot (an `Arc` clone).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshots.borrow())
    }

    /// A receiver that is notified each time the catalog changes (never for progress alone).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshots.clone()
    }

    /// How current the mirror is.
    pub fn status(&self) -> MirrorStatus {
        let p = self.shared.lock();
        MirrorStatus {
            revision: p.revision,
            synced: p.synced,
            since_contact: p.last_contact.map(|t| now().saturating_duration_since(t)),
            last_error: p.last_error.clone(),
            invalid_keys: self.snapshots.borrow().invalid.len(),
            listings: p.listings,
        }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Snapshot {
    /// The snapshot of a listing of `/ns/` (keys outside `/ns/` and agents' status records
    /// under `/ns/agents/` are ignored).
    pub fn from_listing(listing: &RangeResponse) -> Snapshot {
        let mut snap = Snapshot {
            revision: listing.revision,
            ..Snapshot::default()
        };
        for kv in &listing.entries {
            if is_catalog_key(&kv.key) {
                // A bad key is recorded in `invalid`; the listing goes on.
                let _ = snap.put(&kv.key, &kv.value);
            }
        }
        snap
    }

    /// Applies one watch message: a put or delete changes the catalog (agent status records
    /// change nothing but the revision), and every message
    /// moves [`Snapshot::revision`] forward. Returns whether the catalog or `invalid` changed,
    /// or the reason a put was skipped. A `Compacted` message changes nothing (the caller
    /// re-lists).
    pub fn apply(&mut self, msg: &WatchMessage) -> Result<bool, String> {
        match msg {
            WatchMessage::Put {
                key,
                value,
                value_b64,
                mod_rev,
                ..
            } => {
                self.revision = self.revision.max(*mod_rev);
                if !is_catalog_key(key) {
                    return Ok(false);
                }
                let bytes = match decode_value(value.clone(), value_b64.clone()) {
                    Ok(b) => b,
                    Err(e) => {
                        self.reject(key, Key::parse(key).as_ref(), e.clone());
                        return Err(e);
                    }
                };
                self.put(key, &bytes)
            }
            WatchMessage::Delete { key, mod_rev } => {
                self.revision = self.revision.max(*mod_rev);
                let was_invalid = self.invalid.remove(key).is_some();
                let removed = Key::parse(key).is_some_and(|k| self.remove(&k));
                Ok(was_invalid || removed)
            }
            WatchMessage::Progress { revision } => {
                self.revision = self.revision.max(*revision);
                Ok(false)
            }
            WatchMessage::Compacted { .. } => Ok(false),
        }
    }

    /// Sets `key` to `value`; whether that changed the catalog or `invalid` (a rewrite of
    /// the same value does not). On a bad key or value, removes whatever the key held before
    /// and records it in `invalid`.
    fn put(&mut self, key: &str, value: &[u8]) -> Result<bool, String> {
        let Some(k) = Key::parse(key) else {
            self.reject(key, None, OUTSIDE_LAYOUT.to_owned());
            return Err(OUTSIDE_LAYOUT.to_owned());
        };
        let c = &mut self.catalog;
        let result = match &k {
            Key::Service(n) => {
                ServiceDef::from_json(value).map(|d| set(&mut c.service_mut(n).def, d))
            }
            Key::Instance(n, id) => Instance::from_json(value)
                .map(|i| c.service_mut(n).instances.insert(id.clone(), i.clone()) != Some(i)),
            Key::Traffic(n) => {
                TrafficPolicy::from_json(value).map(|t| set(&mut c.service_mut(n).traffic, t))
            }
            Key::Datacenter(dc) => Datacenter::from_json(value)
                .map(|d| c.datacenters.insert(dc.clone(), d.clone()) != Some(d)),
        };
        match result {
            Ok(changed) => Ok(self.invalid.remove(key).is_some() || changed),
            Err(e) => {
                let e = e.to_string();
                self.reject(key, Some(&k), e.clone());
                Err(e)
            }
        }
    }

    fn reject(&mut self, key: &str, parsed: Option<&Key>, reason: String) {
        // A skipped key is a change of `invalid` even when it held nothing valid before.
        if let Some(k) = parsed {
            self.remove(k);
        }
        self.invalid.insert(key.to_owned(), reason);
    }

    /// Removes `key` from the catalog; whether it was there.
    fn remove(&mut self, key: &Key) -> bool {
        let c = &mut self.catalog;
        let removed = match key {
            Key::Datacenter(dc) => return c.datacenters.remove(dc).is_some(),
            Key::Service(n) => c.services.get_mut(n).and_then(|e| e.def.take()).is_some(),
            Key::Traffic(n) => c
                .services
                .get_mut(n)
                .and_then(|e| e.traffic.take())
                .is_some(),
            Key::Instance(n, id) => c
                .services
                .get_mut(n)
                .and_then(|e| e.instances.remove(id))
                .is_some(),
        };
        if let Some(n) = key.service() {
            c.prune(n);
        }
        removed
    }
}

/// Whether `key` belongs to the naming catalog: under `/ns/`, but not an agent's status record
/// (`/ns/agents/`), which agents rewrite on their own schedule and routing never reads. Skipping
/// those keys keeps one agent's status write from publishing a snapshot in every other mirror.
fn is_catalog_key(key: &str) -> bool {
    key.starts_with(keys::ROOT) && !key.starts_with(keys::AGENTS)
}

/// Sets `slot` to `value`; whether it held something else before.
fn set<T: PartialEq>(slot: &mut Option<T>, value: T) -> bool {
    let changed = slot.as_ref() != Some(&value);
    *slot = Some(value);
    changed
}

/// State shared by the task and the readers.
#[derive(Debug)]
struct Shared {
    snapshots: watch::Sender<Arc<Snapshot>>,
    progress: Mutex<Progress>,
}

#[derive(Debug, Default)]
struct Progress {
    revision: Revision,
    synced: bool,
    last_contact: Option<Instant>,
    last_error: Option<String>,
    listings: u64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        // The lock guards plain fields that are each written in one step: a panic elsewhere
        // cannot leave them half-updated.
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The store answered; the mirror is current up to `revision`.
    fn contact(&self, revision: Revision) {
        let mut p = self.lock();
        p.revision = p.revision.max(revision);
        p.synced = true;
        p.last_contact = Some(now());
        p.last_error = None;
    }

    fn failed(&self, e: &Error) {
        let mut p = self.lock();
        p.synced = false;
        p.last_error = Some(e.to_string());
    }

    /// Publishes a copy of `work` (O(1): persistent maps).
    fn publish(&self, work: &Snapshot) {
        self.snapshots.send_replace(Arc::new(work.clone()));
    }

    /// Publishes a copy of `work` if its content differs from the published snapshot (after
    /// a listing, which may or may not have changed anything; O(n) to compare).
    fn publish_if_different(&self, work: &Snapshot) {
        self.snapshots.send_if_modified(|cur| {
            let changed = cur.catalog != work.catalog || cur.invalid != work.invalid;
            if changed {
                *cur = Arc::new(work.clone());
            }
            changed
        });
    }
}

/// The mirror's task: list, watch, apply; re-list on compaction; back off while unreachable.
async fn run(client: Client, opts: MirrorOptions, shared: Arc<Shared>) {
    let mut backoff = opts.min_backoff;
    // The working copy; `None` when the next step is a listing.
    let mut work: Option<Snapshot> = None;
    loop {
        let mut snap = match work.take() {
            Some(s) => s,
            None => match client.range(keys::ROOT).await {
                Ok(listing) => {
                    let snap = Snapshot::from_listing(&listing);
                    for (key, reason) in &snap.invalid {
                        tracing::warn!(key, reason, "mirror: skipped invalid key");
                    }
                    shared.lock().listings += 1;
                    // Publish before reporting contact, so a reader who saw `status()` at
                    // revision R never then gets a snapshot missing changes up to R.
                    shared.publish_if_different(&snap);
                    shared.contact(snap.revision);
                    backoff = opts.min_backoff;
                    tracing::debug!(revision = snap.revision, "mirror: listed /ns/");
                    snap
                }
                Err(e) => {
                    tracing::warn!(error = %e, "mirror: listing /ns/ failed; serving the last snapshot");
                    shared.failed(&e);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(opts.max_backoff);
                    continue;
                }
            },
        };
        // The watch starts right after the working copy, so that no change is missed or
        // applied twice.
        let err = match client.watch(keys::ROOT, true, Some(snap.revision + 1)) {
            Ok(mut w) => follow(&mut w, &mut snap, &opts, &shared, &mut backoff).await,
            Err(e) => e,
        };
        shared.failed(&err);
        if let Error::Compacted { revision } = err {
            // The history we need is gone: list again, at once.
            tracing::info!(compacted = revision, "mirror: watch compacted; re-listing");
            continue;
        }
        // The watch gave up after its own retries over every endpoint. Keep the working copy
        // and resume the watch where it stopped; a compacted answer then leads to a listing.
        tracing::warn!(error = %err, "mirror: watch failed; serving the last snapshot");
        work = Some(snap);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(opts.max_backoff);
    }
}

/// Applies the watch's messages to `snap` in batches until the watch fails.
async fn follow(
    watch: &mut Watch,
    snap: &mut Snapshot,
    opts: &MirrorOptions,
    shared: &Shared,
    backoff: &mut Duration,
) -> Error {
    loop {
        let first = match watch.next().await {
            Ok(m) => m,
            Err(e) => return e,
        };
        *backoff = opts.min_backoff;
        let started = now();
        let mut end = None;
        let mut changed = apply_logged(snap, &first);
        let mut n = 1;
        // Take what has already arrived without waiting, so one publish covers a burst.
        while n < opts.max_batch_events && now().duration_since(started) < opts.max_batch_delay {
            match watch.next().now_or_never() {
                Some(Ok(m)) => changed |= apply_logged(snap, &m),
                Some(Err(e)) => {
                    end = Some(e);
                    break;
                }
                None => break,
            }
            n += 1;
        }
        if changed {
            shared.publish(snap);
        }
        shared.contact(snap.revision);
        if let Some(e) = end {
            return e;
        }
    }
}

/// Applies one watch message, logging a skipped key; whether the snapshot changed.
fn apply_logged(snap: &mut Snapshot, msg: &WatchMessage) -> bool {
    match snap.apply(msg) {
        Ok(changed) => changed,
        Err(reason) => {
            if let WatchMessage::Put { key, .. } = msg {
                tracing::warn!(key, reason, "mirror: skipped invalid key");
            }
            // The key was recorded in `invalid` and whatever it held is gone.
            true
        }
    }
}

/// The mirror's clock, read only for staleness reports.
#[allow(
    clippy::disallowed_methods,
    reason = "the mirror is ns-core's one I/O component; its staleness report needs the clock, routing never reads it"
)]
fn now() -> Instant {
    Instant::now()
}

#[cfg(test)]
mod tests;
