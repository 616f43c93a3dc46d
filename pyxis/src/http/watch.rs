//! Change streams: `GET /v1/watch/{key}` and the blocking read behind `wait_rev`.
//!
//! Any node serves watches from its own applied state: a watcher keeps a cursor (the
//! next revision it needs) and reads the event history after it each time the state
//! machine applies more entries, so it cannot skip or reorder an event. While idle it
//! gets a progress line every few seconds. A start older than the kept history is a
//! 410 before the stream starts, and a `compacted` line (then the end) if the watcher
//! falls that far behind mid-stream. With ACLs on, a stream ends as soon as the node
//! applies the revoke of the token that opened it; the client's reconnect then gets the
//! 401. Events and the history live in `store::watch`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, Uri};
use axum::response::Response;
use pyxis_client::api::{ErrorCode, WatchMessage, encode_value};
use tokio::sync::watch;

use super::error::ApiError;
use super::params::{Params, key_from_path};
use crate::node::Node;
use crate::raft::state_machine::{Applied, StoreView};
use crate::store::watch::{Event, EventKind};

/// How often an idle stream says how far it has got.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Events read from the history per step of a stream.
const BATCH: usize = 1024;

/// Which keys a watch or blocking read follows.
#[derive(Debug, Clone)]
pub struct KeyFilter {
    key: String,
    prefix: bool,
}

impl KeyFilter {
    /// One key, or everything under it with `prefix`.
    pub fn new(key: String, prefix: bool) -> Self {
        KeyFilter { key, prefix }
    }

    /// Whether `k` is followed.
    pub fn matches(&self, k: &str) -> bool {
        if self.prefix {
            k.starts_with(&self.key)
        } else {
            k == self.key
        }
    }
}

/// `GET /v1/watch/{key}[?prefix=true][&from_rev=N]`: newline-delimited JSON events.
pub async fn watch(State(node): State<Arc<Node>>, uri: Uri) -> Result<Response, ApiError> {
    let params = Params::parse(uri.query())?;
    params.only(&["prefix", "from_rev"])?;
    let prefix = params.flag("prefix")?;
    let path = uri.path().strip_prefix("/v1/watch").unwrap_or(uri.path());
    let key = key_from_path(&format!("/v1/kv{path}"), prefix)?;
    let filter = KeyFilter::new(key, prefix);
    let view = node.view.clone();
    let reached = view.applied().revision;
    // Without from_rev, the watch starts after what this node has applied now.
    let from = match params.u64("from_rev")? {
        Some(0) => return Err(ApiError::bad_request("from_rev: revisions start at 1")),
        Some(r) => r,
        None => view.applied().revision + 1,
    };
    // Refuse a compacted start with a status code, before the stream begins.
    if let Err(c) = view.events_since(from, |_| false, 0) {
        let mut e = ApiError::new(
            ErrorCode::Compacted,
            format!(
                "from_rev: revision {from} is older than the kept history (compacted up to {}); re-list and watch from the listing's revision + 1",
                c.compact_revision
            ),
        );
        e.body.compact_revision = Some(c.compact_revision);
        return Err(e);
    }
    metrics::gauge!("pyxis_watchers").increment(1.0);
    let stream = WatchStream {
        token_hash: crate::acl::caller().and_then(|c| c.token.as_ref().map(|t| t.hash.clone())),
        // Never seen: the first wake-up looks the token up, so a revoke applied between the
        // auth check and here is not missed.
        tokens_removed: u64::MAX,
        rx: view.subscribe(),
        view,
        filter,
        cursor: from,
        // Tell the client where the stream starts, so that it can resume from there
        // even if it breaks before the first event.
        // A start beyond the store's revision is reported as the revision reached, not as
        // one the store has not got to.
        pending: VecDeque::from([line(&WatchMessage::Progress {
            revision: (from - 1).min(reached),
        })]),
        done: false,
        _gauge: WatcherGauge,
    };
    let body = Body::from_stream(futures::stream::unfold(stream, |mut s| async move {
        s.next_chunk().await.map(|b| (Ok::<_, Infallible>(b), s))
    }));
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(resp)
}

/// Decrements the watcher gauge when a stream ends, however it ends.
struct WatcherGauge;

impl Drop for WatcherGauge {
    fn drop(&mut self) {
        metrics::gauge!("pyxis_watchers").decrement(1.0);
    }
}

struct WatchStream {
    view: StoreView,
    rx: watch::Receiver<Applied>,
    filter: KeyFilter,
    /// The next revision this watcher needs.
    cursor: u64,
    /// The hash of the token the stream was opened with (ACLs on): it ends once revoked.
    token_hash: Option<String>,
    /// [`Applied::tokens_removed`] when the token was last found: looked up again only
    /// when that moves, not on every wake-up.
    tokens_removed: u64,
    pending: VecDeque<Bytes>,
    done: bool,
    _gauge: WatcherGauge,
}

impl WatchStream {
    /// The next chunk of the body: some lines, or None when the stream ends.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some(b);
            }
            if self.done {
                return None;
            }
            // Mark the current value seen before reading, so a change in between wakes us.
            let removed = self.rx.borrow_and_update().tokens_removed;
            if let Some(h) = &self.token_hash
                && removed != self.tokens_removed
            {
                if !self.view.with_acl(|acl| acl.by_hash(h).is_some()) {
                    tracing::info!("ending a watch: its token was revoked");
                    return None;
                }
                self.tokens_removed = removed;
            }
            let revision =
                match self
                    .view
                    .events_since(self.cursor, |k| self.filter.matches(k), BATCH)
                {
                    Err(c) => {
                        self.pending.push_back(line(&WatchMessage::Compacted {
                            compact_revision: c.compact_revision,
                        }));
                        self.done = true;
                        continue;
                    }
                    Ok((events, _)) if !events.is_empty() => {
                        let mut buf = Vec::new();
                        for e in &events {
                            buf.extend_from_slice(&line(&message(e)));
                        }
                        self.cursor = events.last().map_or(self.cursor, |e| e.mod_rev + 1);
                        return Some(Bytes::from(buf));
                    }
                    Ok((_, revision)) => revision,
                };
            // Everything up to `revision` has been looked at.
            self.cursor = self.cursor.max(revision + 1);
            match tokio::time::timeout(PROGRESS_EVERY, self.rx.changed()).await {
                Ok(Ok(())) => {}
                // The node is shutting down.
                Ok(Err(_)) => return None,
                Err(_) => return Some(line(&WatchMessage::Progress { revision })),
            }
        }
    }
}

fn message(e: &Event) -> WatchMessage {
    match e.kind {
        EventKind::Put => {
            let (value, value_b64) = encode_value(&e.value);
            WatchMessage::Put {
                key: e.key.clone(),
                value,
                value_b64,
                mod_rev: e.mod_rev,
                lease: e.lease,
            }
        }
        EventKind::Delete => WatchMessage::Delete {
            key: e.key.clone(),
            mod_rev: e.mod_rev,
        },
    }
}

fn line(m: &WatchMessage) -> Bytes {
    let mut v = serde_json::to_vec(m).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// Waits until a key under `filter` changes after revision `after`, or `timeout` passes.
/// Returns at once when `after` is already older than the kept history; an `after` beyond
/// the current revision (`u64::MAX` included) waits for a change after it, or the timeout.
pub async fn wait_for_change(view: &StoreView, filter: &KeyFilter, after: u64, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    let Some(from) = after.checked_add(1) else {
        // No revision comes after u64::MAX.
        tokio::time::sleep_until(deadline).await;
        return;
    };
    let mut rx = view.subscribe();
    loop {
        rx.borrow_and_update();
        match view.events_since(from, |k| filter.matches(k), 1) {
            Ok((events, _)) if events.is_empty() => {}
            _ => return,
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}
