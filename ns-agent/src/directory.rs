//! The services directory: watch it, rescan it, and keep one lifecycle per good definition.
//!
//! Any debounced file event, and a periodic full rescan as a safety net (inotify can overflow
//! or miss an editor's rename), re-reads the whole directory and diffs it against the running
//! lifecycles: new names start, vanished files are removed, changed definitions are sent as
//! updates. A bad file changes nothing: its service keeps its last good definition and the
//! error is shown on it. What a lifecycle does with a change is `lifecycle`'s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use ns_core::ServiceName;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::lifecycle::{self, Command, Context, Settings};
use crate::render::GroupDef;
use crate::service_file::{self, ServiceFileError, ServiceSpec};

/// A request to the directory loop from the HTTP API or a signal.
#[derive(Debug)]
pub enum Control {
    /// Put a service in maintenance (`Some(reason)`) or take it out (`None`).
    Maintenance {
        /// The service.
        name: String,
        /// The reason, or `None` to end maintenance.
        reason: Option<String>,
        /// `Err(message)` if the service is unknown or the state file cannot be written.
        reply: oneshot::Sender<Result<(), MaintenanceError>>,
    },
    /// New settings from a re-read config file; also rescans.
    Reload(Settings),
}

/// Why a maintenance request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaintenanceError {
    /// No description file defines the service.
    #[error("service {0}: not defined on this agent")]
    Unknown(String),
    /// The state file could not be written.
    #[error("saving the maintenance state: {0}")]
    Save(String),
}

/// A running lifecycle.
struct Running {
    spec: ServiceSpec,
    tx: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

/// The lifecycles still running when the directory loop ends, for the agent's shutdown: those
/// with a sender take an `Exit`; those without are already draining after a removal.
pub type Remaining = Vec<(Option<mpsc::Sender<Command>>, JoinHandle<()>)>;

/// Watches `dir` and runs the lifecycles until `shutdown`; returns those still running.
pub async fn run(
    ctx: Arc<Context>,
    dir: PathBuf,
    debounce: Duration,
    rescan_every: Duration,
    mut control: mpsc::Receiver<Control>,
    groups: watch::Sender<Vec<GroupDef>>,
    shutdown: CancellationToken,
) -> Remaining {
    let (events_tx, mut events) = mpsc::channel::<()>(1);
    let mut watcher = watch(&dir, debounce, events_tx.clone());
    let mut services = Services {
        ctx,
        dir,
        running: BTreeMap::new(),
        stopping: BTreeMap::new(),
        reported: Vec::new(),
        groups,
    };
    services.rescan().await;
    let mut tick = tokio::time::interval(rescan_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(()) = events.recv() => services.rescan().await,
            _ = tick.tick() => {
                if watcher.is_none() {
                    watcher = watch(&services.dir, debounce, events_tx.clone());
                }
                services.rescan().await;
            }
            Some(c) = control.recv() => match c {
                Control::Maintenance { name, reason, reply } => {
                    let _ = reply.send(services.maintenance(&name, reason).await);
                }
                Control::Reload(settings) => {
                    *services.ctx.settings.write().unwrap_or_else(|p| p.into_inner()) = settings;
                    services.rescan().await;
                }
            },
        }
    }
    drop(watcher);
    let mut out: Remaining = services
        .running
        .into_values()
        .map(|r| (Some(r.tx), r.task))
        .collect();
    // Lifecycles already draining finish on their own; the shutdown waits for them too.
    out.extend(services.stopping.into_values().map(|t| (None, t)));
    out
}

/// Starts watching `dir` (not recursively); `None` (logged) if it cannot be watched yet.
fn watch(
    dir: &Path,
    debounce: Duration,
    tx: mpsc::Sender<()>,
) -> Option<Debouncer<notify::RecommendedWatcher, RecommendedCache>> {
    let handler = move |res: DebounceEventResult| {
        // Opening a file is an event too, and the rescan opens every file: only changes (or
        // errors, such as a queue overflow) call for another rescan.
        let changed = match &res {
            Ok(events) => events
                .iter()
                .any(|e| !matches!(e.kind, notify::EventKind::Access(_))),
            Err(_) => true,
        };
        if changed {
            // A full channel already holds a pending rescan.
            let _ = tx.try_send(());
        }
    };
    let mut debouncer = match new_debouncer(debounce, None, handler) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the file watcher; relying on periodic rescans");
            return None;
        }
    };
    if let Err(e) = debouncer.watch(dir, RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the services directory; relying on periodic rescans");
        return None;
    }
    Some(debouncer)
}

struct Services {
    ctx: Arc<Context>,
    dir: PathBuf,
    running: BTreeMap<ServiceName, Running>,
    /// Lifecycles draining after a removal, so that a re-added name waits for their `stop`.
    stopping: BTreeMap<ServiceName, JoinHandle<()>>,
    /// The file errors of the last scan, as logged.
    reported: Vec<String>,
    /// The running services' template groups, for `render::manager`.
    groups: watch::Sender<Vec<GroupDef>>,
}

impl Services {
    async fn rescan(&mut self) {
        self.stopping.retain(|_, t| !t.is_finished());
        let keep: BTreeMap<ServiceName, PathBuf> = self
            .running
            .iter()
            .map(|(n, r)| (n.clone(), r.spec.path.clone()))
            .collect();
        let dir = self.dir.clone();
        let (specs, mut errors) =
            match tokio::task::spawn_blocking(move || service_file::load_dir(&dir, &keep)).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "scanning the services directory panicked");
                    return;
                }
            };
        let mut good: BTreeMap<ServiceName, (ServiceSpec, ns_core::InstanceId)> = BTreeMap::new();
        for spec in specs {
            match spec.instance_id(&self.ctx.node) {
                Ok(id) => {
                    good.insert(spec.name.clone(), (spec, id));
                }
                Err(e) => errors.push(e),
            }
        }
        // Each problem is logged once, when it appears, not on every rescan.
        let now: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for e in now.iter().filter(|e| !self.reported.contains(e)) {
            tracing::warn!("bad service file: {e}");
        }
        self.reported = now;
        let bad_files: Vec<&Path> = errors.iter().map(|e| e.file.as_path()).collect();
        let names: Vec<ServiceName> = self.running.keys().cloned().collect();
        for name in names {
            let Some(r) = self.running.get_mut(&name) else {
                continue;
            };
            match good.remove(&name) {
                Some((spec, _)) if spec.path == r.spec.path => {
                    if spec != r.spec {
                        let lifecycle = r.spec.differs_for_lifecycle(&spec);
                        r.spec = spec.clone();
                        if lifecycle {
                            let _ = r.tx.send(Command::Update(Box::new(spec))).await;
                        }
                    }
                }
                other => {
                    if other.is_none() && bad_files.contains(&r.spec.path.as_path()) {
                        // The file turned bad: the last good definition keeps running.
                        continue;
                    }
                    if let Some(back) = other {
                        good.insert(name.clone(), back);
                    }
                    if let Some(r) = self.running.remove(&name) {
                        tracing::info!(service = %name, file = %r.spec.path.display(), "description removed; deregistering");
                        let _ = r.tx.send(Command::Remove).await;
                        self.stopping.insert(name, r.task);
                    }
                }
            }
        }
        for (name, (spec, id)) in good {
            tracing::info!(service = %name, instance = %id, file = %spec.path.display(), "new service; starting");
            let before = self.stopping.remove(&name);
            let (tx, task) = lifecycle::spawn(self.ctx.clone(), spec.clone(), id, before);
            self.running.insert(name, Running { spec, tx, task });
        }
        let annotated: Vec<(Option<String>, ServiceFileError)> = errors
            .into_iter()
            .map(|e| {
                let owner = self
                    .running
                    .iter()
                    .find(|(_, r)| r.spec.path == e.file)
                    .map(|(n, _)| n.to_string());
                (owner, e)
            })
            .collect();
        self.ctx.board.set_file_errors(&annotated);
        let groups: Vec<GroupDef> = self
            .running
            .values()
            .filter(|r| !r.spec.templates.is_empty())
            .map(|r| GroupDef {
                service: Some(r.spec.name.clone()),
                dir: r.spec.dir().to_owned(),
                templates: r.spec.templates.clone(),
                reload: r.spec.scripts.reload.clone(),
            })
            .collect();
        self.groups.send_if_modified(|g| {
            let changed = *g != groups;
            if changed {
                *g = groups;
            }
            changed
        });
    }

    async fn maintenance(
        &mut self,
        name: &str,
        reason: Option<String>,
    ) -> Result<(), MaintenanceError> {
        let running = self.running.iter().find(|(n, _)| n.as_str() == name);
        let Some((_, r)) = running else {
            return Err(MaintenanceError::Unknown(name.to_owned()));
        };
        let tx = r.tx.clone();
        self.ctx
            .maintenance
            .set(name, reason)
            .map_err(|e| MaintenanceError::Save(e.to_string()))?;
        let _ = tx.send(Command::Maintenance).await;
        Ok(())
    }
}
