//! A background writer that streams puts while a test injects faults.
//!
//! It writes `PREFIX000000`, `PREFIX000001`, .. each with a unique value, rotating over the
//! given nodes, and records every put the cluster acknowledged. Acknowledged writes must
//! survive any fault; a failed put is only recorded (its outcome is unknown). With
//! `check_reads`, every acknowledged put is read back linearizably through the next node.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::{Api, eventually};
use pyxis_client::api::{PutResponse, RangeResponse, Revision};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One acknowledged put.
#[derive(Debug, Clone)]
pub(crate) struct Ack {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) revision: Revision,
}

/// Everything the writer saw.
#[derive(Debug, Default)]
struct Log {
    acked: Vec<Ack>,
    /// Failed requests, as `"+1.234s node: error"`.
    errors: Vec<String>,
}

/// Handle of the running writer task.
pub(crate) struct Writer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Log>>,
    task: JoinHandle<()>,
}

impl Writer {
    /// Starts writing keys under `prefix` to `targets` (base URLs) in turn.
    pub(crate) fn start(api: Api, targets: Vec<String>, prefix: &str, check_reads: bool) -> Writer {
        assert!(!targets.is_empty(), "writer needs at least one target");
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Log::default()));
        let prefix = prefix.to_owned();
        let task = tokio::spawn({
            let stop = stop.clone();
            let log = log.clone();
            async move {
                let started = Instant::now();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("{prefix}{i:06}");
                    let value = format!("value-{i}");
                    let target = &targets[i % targets.len()];
                    i += 1;
                    let result = async {
                        let reply = api.put(target, &key, value.clone()).await?.ok()?;
                        let revision = reply.json::<PutResponse>()?.revision;
                        anyhow::Ok(revision)
                    }
                    .await;
                    let err = match result {
                        Ok(revision) => {
                            log.lock().unwrap().acked.push(Ack {
                                key: key.clone(),
                                value: value.clone(),
                                revision,
                            });
                            if !check_reads {
                                continue;
                            }
                            let reader = &targets[i % targets.len()];
                            match read_back(&api, reader, &key, &value, revision).await {
                                Ok(()) => continue,
                                Err(e) => format!("read {key} via {reader}: {e:#}"),
                            }
                        }
                        Err(e) => format!("put {key} via {target}: {e:#}"),
                    };
                    let at = started.elapsed().as_secs_f64();
                    log.lock().unwrap().errors.push(format!("+{at:.3}s {err}"));
                    // Back off a little so a refused connection does not become a busy loop.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        Writer { stop, log, task }
    }

    /// How many puts were acknowledged so far.
    pub(crate) fn acked_count(&self) -> usize {
        self.log.lock().unwrap().acked.len()
    }

    /// Waits until at least `n` puts were acknowledged in total.
    pub(crate) async fn wait_acked(&self, n: usize, deadline: Duration) -> anyhow::Result<()> {
        eventually(deadline, async || {
            let log = self.log.lock().unwrap();
            anyhow::ensure!(
                log.acked.len() >= n,
                "{} of {n} puts acknowledged; last errors: {:?}",
                log.acked.len(),
                &log.errors[log.errors.len().saturating_sub(3)..]
            );
            Ok(())
        })
        .await
    }

    /// Stops the writer and returns the acknowledged puts and the errors seen.
    pub(crate) async fn stop(self) -> (Vec<Ack>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("writer task panicked");
        let log = std::mem::take(&mut *self.log.lock().unwrap());
        (log.acked, log.errors)
    }
}

/// Reads `key` linearizably via `base` and checks value and mod revision.
async fn read_back(
    api: &Api,
    base: &str,
    key: &str,
    value: &str,
    revision: Revision,
) -> anyhow::Result<()> {
    let reply = api.get(base, key).await?.ok()?;
    anyhow::ensure!(
        reply.body == value.as_bytes(),
        "read {:?}, wrote {value:?}",
        reply.text()
    );
    anyhow::ensure!(
        reply.mod_revision() == Some(revision),
        "mod revision header {:?}, put returned {revision}",
        reply.mod_revision()
    );
    Ok(())
}

/// Fails unless every acknowledged put is in `listing` with its value.
pub(crate) fn check_acked_present(listing: &RangeResponse, acked: &[Ack]) -> anyhow::Result<()> {
    let have: BTreeMap<&str, &[u8]> = listing
        .entries
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_ref()))
        .collect();
    let bad: Vec<String> = acked
        .iter()
        .filter(|a| have.get(a.key.as_str()) != Some(&a.value.as_bytes()))
        .map(|a| {
            format!(
                "{} (acked at rev {}) -> {:?}",
                a.key,
                a.revision,
                have.get(a.key.as_str())
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            )
        })
        .collect();
    anyhow::ensure!(
        bad.is_empty(),
        "{} of {} acknowledged writes missing or wrong at revision {}, e.g. {:?}",
        bad.len(),
        acked.len(),
        listing.revision,
        &bad[..bad.len().min(10)]
    );
    Ok(())
}
