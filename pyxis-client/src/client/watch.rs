//! Watches that survive node failures: resume on another node with no gap and no duplicate.
//!
//! A [`Watch`] reads the newline-delimited stream of `GET /v1/watch/...`. When the
//! connection breaks (the node died, a proxy closed it) it reconnects to the next
//! endpoint and asks again from the revision of the last event it delivered. Events of
//! one revision (a transaction) always arrive in the same order, so on resume it skips
//! exactly as many events of that revision as it already delivered. Progress lines move
//! the resume point forward while nothing changes. A start older than the kept history
//! ends the watch with [`Error::Compacted`]: the caller re-lists and watches again.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt as _};

use super::Client;
use crate::api::{Revision, WatchMessage};
use crate::error::{Error, Result};
use crate::url::{kv_path, prefix_path};

/// How long a broken watch waits before reconnecting (doubling up to a second).
const RECONNECT_BACKOFF: Duration = Duration::from_millis(50);

type ByteStream = std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

impl Client {
    /// Watches `key` (or everything under it with `prefix`) from revision `from_rev`
    /// (inclusive); `None` starts with the next change.
    pub fn watch(&self, key: &str, prefix: bool, from_rev: Option<Revision>) -> Result<Watch> {
        let path = if prefix {
            prefix_path(key)?
        } else {
            kv_path(key)?
        };
        let path = path.replacen("/v1/kv", "/v1/watch", 1);
        Ok(Watch {
            client: self.clone(),
            path,
            prefix,
            next: from_rev,
            delivered_in_rev: 0,
            skip: 0,
            endpoint: self.inner.endpoints.current(),
            body: None,
            buf: BytesMut::new(),
        })
    }
}

/// A resumable change stream; call [`Watch::next`] in a loop.
pub struct Watch {
    client: Client,
    path: String,
    prefix: bool,
    /// Revision to resume from (that of the last delivered event, or after a progress).
    next: Option<Revision>,
    /// Events of revision `next` already delivered.
    delivered_in_rev: usize,
    /// Events of revision `next` still to skip after a reconnect.
    skip: usize,
    endpoint: usize,
    body: Option<ByteStream>,
    buf: BytesMut,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("path", &self.path)
            .field("prefix", &self.prefix)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Watch {
    /// The next event or progress message. Reconnects across endpoints by itself; fails
    /// with [`Error::Compacted`] when the resume point is gone from the server's history,
    /// or with the last error once no endpoint answered within the client's retry budget.
    pub async fn next(&mut self) -> Result<WatchMessage> {
        let mut backoff = RECONNECT_BACKOFF;
        let mut failing_since: Option<tokio::time::Instant> = None;
        loop {
            if let Some(msg) = self.next_buffered()? {
                return Ok(msg);
            }
            let chunk = match self.body.as_mut() {
                Some(b) => b.next().await,
                None => None,
            };
            match chunk {
                Some(Ok(bytes)) => {
                    self.buf.extend_from_slice(&bytes);
                    failing_since = None;
                    backoff = RECONNECT_BACKOFF;
                }
                // Closed or broken: connect again, resuming where we are.
                _ => {
                    self.body = None;
                    self.buf.clear();
                    match self.connect().await {
                        Ok(()) => {}
                        Err(e @ Error::Compacted { .. }) => return Err(e),
                        Err(e) if !e.is_retryable() => return Err(e),
                        Err(e) => {
                            let since =
                                *failing_since.get_or_insert_with(tokio::time::Instant::now);
                            if since.elapsed() >= self.client.inner.options.retry.budget {
                                return Err(e);
                            }
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(1));
                        }
                    }
                }
            }
        }
    }

    /// Parses complete lines already received, applying the resume bookkeeping.
    fn next_buffered(&mut self) -> Result<Option<WatchMessage>> {
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let line = self.buf.split_to(nl + 1);
            let msg: WatchMessage = serde_json::from_slice(&line[..nl])
                .map_err(|e| Error::Decode(format!("watch line: {e}")))?;
            let rev = match &msg {
                WatchMessage::Put { mod_rev, .. } | WatchMessage::Delete { mod_rev, .. } => {
                    *mod_rev
                }
                WatchMessage::Progress { revision } => {
                    // Nothing up to `revision` is left to deliver.
                    if self.next.is_none_or(|n| *revision >= n) {
                        self.next = Some(revision + 1);
                        self.delivered_in_rev = 0;
                        self.skip = 0;
                    }
                    return Ok(Some(msg));
                }
                WatchMessage::Compacted { compact_revision } => {
                    return Err(Error::Compacted {
                        revision: *compact_revision,
                    });
                }
            };
            if Some(rev) == self.next {
                if self.skip > 0 {
                    // Delivered before the reconnect.
                    self.skip -= 1;
                    continue;
                }
                self.delivered_in_rev += 1;
            } else {
                self.next = Some(rev);
                self.delivered_in_rev = 1;
                self.skip = 0;
            }
            return Ok(Some(msg));
        }
        Ok(None)
    }

    /// Opens the stream on the current endpoint (moving to the next one on failure).
    async fn connect(&mut self) -> Result<()> {
        let endpoints = self.client.inner.endpoints.list();
        let base = &endpoints[self.endpoint % endpoints.len()];
        let mut url = format!("{base}{}", self.path);
        let mut sep = '?';
        if self.prefix {
            url.push_str("?prefix=true");
            sep = '&';
        }
        if let Some(from) = self.next {
            url.push_str(&format!("{sep}from_rev={from}"));
        }
        let result = self
            .client
            .inner
            .http
            .get(&url)
            .timeout(Duration::from_secs(24 * 3600))
            .send()
            .await;
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                self.endpoint += 1;
                return Err(Error::Transport(format!("watch {base}: {e}")));
            }
        };
        let status = resp.status().as_u16();
        if status != 200 {
            let body = resp.bytes().await.unwrap_or_default();
            let err = Error::from_response(status, &body);
            if err.is_retryable() {
                self.endpoint += 1;
            }
            return Err(err);
        }
        // Events of the resume revision that were already delivered come again: skip them.
        self.skip = self.delivered_in_rev;
        self.body = Some(Box::pin(resp.bytes_stream()));
        Ok(())
    }
}
