//! What a name resolves to for this agent, as JSON ([`View`]), and since when ([`Book`]): the
//! data behind `GET /v1/resolve/NAME`, its blocking form and the callbacks.
//!
//! [`view`] is pure: `ns_core::routing::select` over a snapshot, for the agent's client
//! context (the one its DNS answers for), without an answer cap and sorted by instance id, so
//! that two views of the same data are equal and "changed" means the content changed, never
//! the random order of a DNS answer. The DNS answer is this list, ordered by weighted random
//! choice and cut to 64.
//!
//! [`Book`] remembers, for every name asked for (and every callback's name), the last view and
//! its `index`: the mirror revision at which it last changed. It is brought up to date on every
//! snapshot the mirror publishes and once a second (a traffic policy that expires changes
//! answers without a new revision; such a change bumps the index by one). Waiters and callback
//! tasks sleep on [`Book::changes`]. The first time a name is asked for, its index is the
//! mirror's revision then. Names nobody asked for in 10 minutes are forgotten.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ns_core::mirror::Snapshot;
use ns_core::routing::{ClientCtx, Params, select};
use ns_core::{Mirror, ServiceName};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::dnsd::handler::now_ms;

/// Names followed at most; past it, the name asked for least recently is forgotten.
pub const MAX_TRACKED: usize = 10_000;
/// A name nobody asked for (and no callback follows) this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// How often views are re-evaluated without a new snapshot (policy expiry).
const TICK: Duration = Duration::from_secs(1);

/// The policy-applied list of one name, for this agent's client context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct View {
    /// The service name.
    pub name: String,
    /// The mirror revision at which this content last changed.
    pub index: u64,
    /// Routing failed open: critical instances are in the list because too few passed.
    pub fail_open: bool,
    /// The datacenter the instances come from; `null` when from all or none.
    pub datacenter: Option<String>,
    /// The version group picked for this agent, if the policy has groups.
    pub group: Option<String>,
    /// Whether a forced shift moved this agent's clients to another datacenter.
    pub shifted: bool,
    /// The selected instances, sorted by id.
    pub instances: Vec<ViewInstance>,
}

/// One selected instance in a [`View`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViewInstance {
    /// Its instance id.
    pub id: String,
    /// Its address.
    pub address: String,
    /// Its port.
    pub port: u16,
    /// Its datacenter.
    pub datacenter: String,
    /// Its version.
    pub version: String,
    /// Its effective weight (an override's, else its own).
    pub weight: u16,
    /// Its health status.
    pub status: String,
    /// Its tags.
    pub tags: Vec<String>,
}

/// The view of `name` in `snap` for `client` at `now_ms`, with index 0 (the [`Book`] sets
/// it); `None` when the service does not exist.
pub fn view(snap: &Snapshot, name: &ServiceName, client: &ClientCtx, now_ms: u64) -> Option<View> {
    snap.catalog.service(name)?;
    let params = Params {
        now_ms,
        seed: 0,
        max_answers: usize::MAX,
    };
    let sel = select(&snap.catalog, name, client, &params);
    let mut instances: Vec<ViewInstance> = sel
        .instances
        .iter()
        .map(|s| ViewInstance {
            id: s.id.to_string(),
            address: s.instance.address.to_string(),
            port: s.instance.port,
            datacenter: s.instance.datacenter.to_string(),
            version: s.instance.version.clone(),
            weight: s.weight,
            status: serde_json::to_value(s.instance.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            tags: s.instance.tags.clone(),
        })
        .collect();
    instances.sort_by(|a, b| a.id.cmp(&b.id));
    Some(View {
        name: name.to_string(),
        index: 0,
        fail_open: sel.fail_open,
        datacenter: sel.dc.map(|d| d.to_string()),
        group: sel.group.map(str::to_owned),
        shifted: sel.shifted,
        instances,
    })
}

/// One followed name.
#[derive(Debug)]
struct Tracked {
    view: Option<View>,
    asked: Instant,
    /// Callbacks following it (never forgotten while any).
    followers: usize,
}

/// The followed names, their last views and indexes.
#[derive(Debug)]
pub struct Book {
    mirror: Arc<Mirror>,
    client: ClientCtx,
    names: Mutex<HashMap<ServiceName, Tracked>>,
    changes: watch::Sender<u64>,
}

impl Book {
    /// A book over `mirror` for `client`; [`Book::run`] keeps it current.
    pub fn new(mirror: Arc<Mirror>, client: ClientCtx) -> Book {
        Book {
            mirror,
            client,
            names: Mutex::new(HashMap::new()),
            changes: watch::channel(0).0,
        }
    }

    /// Whether the mirror has listed the store (before that, every name looks unknown).
    pub fn ready(&self) -> bool {
        self.mirror.status().listings > 0
    }

    /// The current view of `name` (following it from now on); `None` if it does not exist.
    pub fn get(&self, name: &ServiceName) -> Option<View> {
        let mut names = self.lock();
        if let Some(t) = names.get_mut(name) {
            t.asked = Instant::now();
            return t.view.clone();
        }
        let snap = self.mirror.snapshot();
        let mut v = view(&snap, name, &self.client, now_ms());
        if let Some(v) = &mut v {
            v.index = self.mirror.status().revision.max(snap.revision);
        }
        if names.len() >= MAX_TRACKED
            && let Some(oldest) = names
                .iter()
                .filter(|(_, t)| t.followers == 0)
                .min_by_key(|(_, t)| t.asked)
                .map(|(k, _)| k.clone())
        {
            names.remove(&oldest);
        }
        names.insert(
            name.clone(),
            Tracked {
                view: v.clone(),
                asked: Instant::now(),
                followers: 0,
            },
        );
        v
    }

    /// Follows `name` for a callback until [`Book::unfollow`].
    pub fn follow(&self, name: &ServiceName) {
        self.get(name);
        if let Some(t) = self.lock().get_mut(name) {
            t.followers += 1;
        }
    }

    /// Stops following `name` for one callback.
    pub fn unfollow(&self, name: &ServiceName) {
        if let Some(t) = self.lock().get_mut(name) {
            t.followers = t.followers.saturating_sub(1);
        }
    }

    /// A receiver woken whenever some followed view changed.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Re-evaluates every followed name against the current snapshot and time; wakes the
    /// waiters if any view changed.
    pub fn refresh(&self) {
        let snap = self.mirror.snapshot();
        let revision = snap.revision;
        let now = now_ms();
        let mut changed = false;
        let mut names = self.lock();
        names.retain(|_, t| t.followers > 0 || t.asked.elapsed() < FORGET_AFTER);
        for (name, t) in names.iter_mut() {
            let mut new = view(&snap, name, &self.client, now);
            let old_index = t.view.as_ref().map_or(0, |v| v.index);
            let same = match (&t.view, &mut new) {
                (Some(old), Some(new)) => {
                    new.index = old.index;
                    old == new
                }
                (None, None) => true,
                _ => false,
            };
            if !same {
                if let Some(new) = &mut new {
                    new.index = revision.max(old_index + 1);
                }
                t.view = new;
                changed = true;
            }
        }
        drop(names);
        if changed {
            self.changes.send_modify(|g| *g += 1);
        }
    }

    /// Keeps the book current until `stop`: on every published snapshot and every second.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut snapshots = self.mirror.subscribe();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = snapshots.changed() => {
                    if r.is_err() {
                        return;
                    }
                    snapshots.borrow_and_update();
                }
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            self.refresh();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ServiceName, Tracked>> {
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
