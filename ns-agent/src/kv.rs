//! [`ConfigKv`]: the agent's copy of the config keys under one prefix (`kv_prefix`, default
//! `/config/`), which the template functions `key()` and `keys()` read.
//!
//! Same shape as `ns_core::Mirror`, for plain keys: list the prefix at revision R, watch from
//! R+1, publish an immutable [`KvData`] after each batch; re-list when the watch is compacted;
//! keep the last copy while the store cannot be reached. Values are text (invalid UTF-8 is
//! replaced). The naming model under `/ns/` is the mirror's, not this.

use std::sync::Arc;
use std::time::Duration;

use imbl::OrdMap;
use pyxis_client::api::{WatchMessage, decode_value};
use pyxis_client::{Client, Error};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The config keys at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvData {
    /// Key (full path) to value.
    pub entries: OrdMap<String, String>,
    /// The store revision this copy reflects.
    pub revision: u64,
    /// Whether a listing has completed (false: nothing is known yet).
    pub listed: bool,
}

/// The live copy of the config keys; dropping it stops its task.
#[derive(Debug)]
pub struct ConfigKv {
    prefix: String,
    rx: watch::Receiver<Arc<KvData>>,
    task: Option<JoinHandle<()>>,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl ConfigKv {
    /// Starts following `prefix` (which ends with `/`) on the current runtime.
    pub fn start(client: Client, prefix: String) -> ConfigKv {
        let (tx, rx) = watch::channel(Arc::new(KvData::default()));
        let task = tokio::spawn(run(client, prefix.clone(), tx));
        ConfigKv {
            prefix,
            rx,
            task: Some(task),
        }
    }

    /// A fixed copy that never changes (tests, and `render --once` without keys).
    pub fn fixed(prefix: String, data: KvData) -> ConfigKv {
        let (_tx, rx) = watch::channel(Arc::new(data));
        ConfigKv {
            prefix,
            rx,
            task: None,
        }
    }

    /// The prefix followed.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The latest copy.
    pub fn data(&self) -> Arc<KvData> {
        Arc::clone(&self.rx.borrow())
    }

    /// A receiver notified on each change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<KvData>> {
        self.rx.clone()
    }
}

impl Drop for ConfigKv {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

async fn run(client: Client, prefix: String, tx: watch::Sender<Arc<KvData>>) {
    let mut backoff = MIN_BACKOFF;
    let mut work: Option<KvData> = None;
    loop {
        let mut data = match work.take() {
            Some(d) => d,
            None => match client.range(&prefix).await {
                Ok(listing) => {
                    let mut d = KvData {
                        revision: listing.revision,
                        listed: true,
                        ..KvData::default()
                    };
                    for kv in listing.entries {
                        d.entries
                            .insert(kv.key, String::from_utf8_lossy(&kv.value).into_owned());
                    }
                    tx.send_replace(Arc::new(d.clone()));
                    backoff = MIN_BACKOFF;
                    d
                }
                Err(e) => {
                    tracing::warn!(prefix, error = %e, "config keys: listing failed; keeping the last copy");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        let err = match client.watch(&prefix, true, Some(data.revision + 1)) {
            Ok(mut w) => loop {
                match w.next().await {
                    Ok(m) => {
                        backoff = MIN_BACKOFF;
                        if apply(&mut data, m) {
                            tx.send_replace(Arc::new(data.clone()));
                        }
                    }
                    Err(e) => break e,
                }
            },
            Err(e) => e,
        };
        if let Error::Compacted { .. } = err {
            continue;
        }
        tracing::warn!(prefix, error = %err, "config keys: watch failed; keeping the last copy");
        work = Some(data);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Applies one watch message; whether the entries changed.
fn apply(data: &mut KvData, msg: WatchMessage) -> bool {
    match msg {
        WatchMessage::Put {
            key,
            value,
            value_b64,
            mod_rev,
            ..
        } => {
            data.revision = data.revision.max(mod_rev);
            let text = match decode_value(value, value_b64) {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(e) => {
                    tracing::warn!(key, error = %e, "config keys: undecodable value skipped");
                    return false;
                }
            };
            data.entries.insert(key, text.clone()) != Some(text)
        }
        WatchMessage::Delete { key, mod_rev } => {
            data.revision = data.revision.max(mod_rev);
            data.entries.remove(&key).is_some()
        }
        WatchMessage::Progress { revision } => {
            data.revision = data.revision.max(revision);
            false
        }
        WatchMessage::Compacted { .. } => false,
    }
}
