//! One service's life, in its own task: start, admit, check, re-register, drain and stop.
//!
//! A new service runs `start`, then `health` every `interval` until it passes `pass_after`
//! times; only then is it registered, so no traffic reaches a process that is not ready. Every
//! check result goes through `health::Tracker`: `fail_after` failures register it critical and
//! raise an alert, `pass_after` passes re-admit it. A removal deregisters first, waits `drain`,
//! then runs `stop`, never the other order. A changed file re-registers in place, or restarts
//! the service when its port, address, id or start/stop scripts changed. Tasks are independent:
//! one hung script never delays another service. Which files exist is `directory`'s business.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ns_core::{DcName, Health, InstanceId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::alert::{self, Alert};
use crate::config::AlertConfig;
use crate::health::{Tracker, classify};
use crate::maintenance::Maintenance;
use crate::registrar::{RegKey, Registrar};
use crate::service_file::{Script, ServiceSpec};
use crate::status::{Board, LastCheck, State, rfc3339};
use crate::supervisor::{self, Outcome, RunOptions};

/// The meta key carrying an operator's maintenance reason.
pub const MAINTENANCE_META: &str = "maintenance_reason";

/// What every lifecycle shares: who this agent is, and where registrations and status go.
#[derive(Debug)]
pub struct Context {
    /// This host's node name.
    pub node: String,
    /// This host's datacenter.
    pub datacenter: DcName,
    /// Address for services whose file gives none.
    pub advertise: IpAddr,
    /// The store writer.
    pub registrar: Registrar,
    /// The status board.
    pub board: Arc<Board>,
    /// Maintenance mode per service.
    pub maintenance: Arc<Maintenance>,
    /// HTTP client for alert webhooks.
    pub http: reqwest::Client,
    /// Settings a SIGHUP may change.
    pub settings: RwLock<Settings>,
    /// The agent's one mirror of `/ns/`, shared by templates (and local DNS).
    pub mirror: Arc<ns_core::Mirror>,
    /// The config keys templates read.
    pub kv: Arc<crate::kv::ConfigKv>,
}

/// The agent settings that apply without a restart.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Wait between deregistration and `stop`.
    pub drain: Duration,
    /// Time limit of `start`, `stop` and `reload`.
    pub script_timeout: Duration,
    /// Where alerts go.
    pub alert: AlertConfig,
    /// The lease TTL: how long a deregistration is waited for at most.
    pub lease_ttl: Duration,
}

impl Context {
    /// A copy of the current settings.
    pub fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What the directory tells a running lifecycle.
#[derive(Debug)]
pub enum Command {
    /// The file changed: apply the difference.
    Update(Box<ServiceSpec>),
    /// The file is gone: deregister, drain, stop, end.
    Remove,
    /// The maintenance state changed: register again with it.
    Maintenance,
    /// The agent exits (its lease is already revoked): run `stop` if asked, then end.
    Exit {
        /// Run the `stop` script.
        stop: bool,
    },
}

/// Starts the lifecycle of `spec` as instance `id`; it first waits for `before` (the previous
/// lifecycle of the same name, still draining) to end.
pub fn spawn(
    ctx: Arc<Context>,
    spec: ServiceSpec,
    id: InstanceId,
    before: Option<JoinHandle<()>>,
) -> (mpsc::Sender<Command>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(16);
    let task = tokio::spawn(async move {
        if let Some(b) = before {
            let _ = b.await;
        }
        Lifecycle {
            ctx,
            key: (spec.name.clone(), id),
            spec,
            tracker: Tracker::new(1, 1),
            admitted: false,
            health_program: None,
        }
        .run(rx)
        .await;
    });
    (tx, task)
}

struct Lifecycle {
    ctx: Arc<Context>,
    spec: ServiceSpec,
    key: RegKey,
    tracker: Tracker,
    admitted: bool,
    /// The health script ready to spawn, built on the first check after each change of
    /// `spec` (argv and environment are not rebuilt for every check).
    health_program: Option<supervisor::Prepared>,
}

impl Lifecycle {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let name = self.spec.name.to_string();
        'life: loop {
            self.admitted = false;
            self.tracker = Tracker::new(self.spec.health.fail_after, self.spec.health.pass_after);
            let id = self.key.1.to_string();
            self.ctx.board.update(&name, |s| {
                s.instance_id = Some(id);
                s.state = State::Starting;
                s.failures = 0;
            });
            if let Some(start) = self.spec.scripts.start.clone() {
                self.script("start", &start).await;
            }
            let mut ticker = tokio::time::interval(self.spec.health.interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => self.check().await,
                    cmd = rx.recv() => match cmd {
                        None => return,
                        Some(Command::Exit { stop }) => {
                            if stop && let Some(s) = self.spec.scripts.stop.clone() {
                                self.script("stop", &s).await;
                            }
                            return;
                        }
                        Some(Command::Remove) => {
                            self.stop_sequence().await;
                            self.ctx.board.remove(&name);
                            return;
                        }
                        Some(Command::Update(new)) => {
                            let new = *new;
                            if self.spec.needs_restart(&new) {
                                tracing::info!(service = %name, "port, address, id or start/stop changed; restarting");
                                self.stop_sequence().await;
                                self.key = (new.name.clone(), self.instance_id_of(&new));
                                self.spec = new;
                                self.health_program = None;
                                continue 'life;
                            }
                            let retime = new.health.interval != self.spec.health.interval;
                            self.tracker.set_thresholds(new.health.fail_after, new.health.pass_after);
                            self.spec = new;
                                self.health_program = None;
                            if retime {
                                ticker = tokio::time::interval(self.spec.health.interval);
                                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                            }
                            tracing::info!(service = %name, "description changed; registering again in place");
                            self.register();
                        }
                        Some(Command::Maintenance) => {
                            self.register();
                            self.show_state();
                        }
                    },
                }
            }
        }
    }

    /// One health check, and whatever it decides.
    async fn check(&mut self) {
        let timeout = self.spec.health.timeout;
        let program = match self.health_program.take() {
            Some(p) => p,
            None => supervisor::prepare(&self.spec.scripts.health, self.spec.dir(), &self.env()),
        };
        let o = supervisor::run_prepared(
            &program,
            timeout,
            RunOptions {
                stdin: None,
                reap_group: true,
            },
        )
        .await;
        self.health_program = Some(program);
        let result = classify(&o);
        metrics::counter!("ns_agent_checks_total", "result" => health_name(result)).increment(1);
        metrics::histogram!("ns_agent_check_duration_seconds").record(o.duration.as_secs_f64());
        let transition = self.tracker.observe(result);
        if !self.admitted {
            if self.tracker.status().is_routable() {
                self.admitted = true;
                tracing::info!(service = %self.key.0, passes = self.spec.health.pass_after, "ready; registering");
                self.register();
            }
        } else if let Some(t) = transition {
            metrics::counter!(
                "ns_agent_state_transitions_total",
                "from" => health_name(t.from),
                "to" => health_name(t.to)
            )
            .increment(1);
            self.register();
            if t.crosses_critical() {
                self.alert(t.from, t.to, &o);
            }
        }
        let failures = self.tracker.failures();
        let last = LastCheck::of(&o);
        self.ctx.board.update(self.key.0.as_str(), |s| {
            s.last_check = Some(last);
            s.failures = failures;
        });
        self.show_state();
    }

    /// Registers the instance with its current status (critical while in maintenance).
    fn register(&self) {
        if !self.admitted {
            return;
        }
        let reason = self.ctx.maintenance.get(self.key.0.as_str());
        let (status, meta) = match &reason {
            Some(r) => {
                let text = if r.is_empty() {
                    "maintenance"
                } else {
                    r.as_str()
                };
                let text: String = text.chars().take(1024).collect();
                (Health::Critical, vec![(MAINTENANCE_META, text)])
            }
            None => (self.tracker.status(), Vec::new()),
        };
        let meta: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let instance = self.spec.instance(
            &self.ctx.node,
            &self.ctx.datacenter,
            self.ctx.advertise,
            status,
            &meta,
        );
        self.ctx.registrar.set(self.key.clone(), instance);
    }

    fn show_state(&self) {
        let reason = self.ctx.maintenance.get(self.key.0.as_str());
        let state = if !self.admitted {
            State::Starting
        } else if reason.is_some() {
            State::Maintenance
        } else {
            match self.tracker.status() {
                Health::Passing => State::Passing,
                Health::Warning => State::Warning,
                Health::Critical => State::Critical,
            }
        };
        self.ctx.board.update(self.key.0.as_str(), |s| {
            s.state = state;
            s.maintenance_reason = reason;
        });
    }

    /// Deregister, wait for the store to confirm, drain, then stop.
    async fn stop_sequence(&mut self) {
        let settings = self.ctx.settings();
        self.ctx
            .board
            .update(self.key.0.as_str(), |s| s.state = State::Stopping);
        // Without a confirmation the instance still leaves the store: the lease expires
        // within its TTL once the agent cannot reach the store to renew it.
        let wait = settings.lease_ttl + Duration::from_secs(1);
        if !self.ctx.registrar.remove(&self.key, wait).await {
            tracing::warn!(service = %self.key.0, "deregistration not confirmed by the store; stopping anyway after the drain");
        }
        self.admitted = false;
        tokio::time::sleep(settings.drain).await;
        if let Some(stop) = self.spec.scripts.stop.clone() {
            self.script("stop", &stop).await;
        }
    }

    /// Runs `start` or `stop` with the agent's script timeout; a failure is logged and shown.
    async fn script(&self, which: &str, script: &Script) -> Outcome {
        let timeout = self.ctx.settings().script_timeout;
        let o = supervisor::run(
            script,
            self.spec.dir(),
            &self.env(),
            timeout,
            RunOptions::default(),
        )
        .await;
        let failed = (!o.success()).then(|| {
            tracing::warn!(service = %self.key.0, script = which, exit = ?o.exit, output = %o.output, "script failed");
            format!("{which}: exit {:?}: {}", o.exit, o.output)
        });
        self.ctx
            .board
            .update(self.key.0.as_str(), |s| s.script_error = failed);
        o
    }

    fn alert(&self, from: Health, to: Health, o: &Outcome) {
        let settings = self.ctx.settings();
        let a = Alert {
            service: self.key.0.to_string(),
            instance: self.key.1.to_string(),
            node: self.ctx.node.clone(),
            from,
            to,
            output: o.output.clone(),
            at: rfc3339(std::time::SystemTime::now()),
        };
        alert::fire(a, &settings.alert, &self.ctx.http);
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let s = &self.spec;
        vec![
            ("NS_SERVICE", s.name.to_string()),
            ("NS_INSTANCE_ID", self.key.1.to_string()),
            ("NS_PORT", s.port.to_string()),
            (
                "NS_ADDRESS",
                s.address.unwrap_or(self.ctx.advertise).to_string(),
            ),
            ("NS_VERSION", s.version.clone()),
            ("NS_NODE", self.ctx.node.clone()),
            ("NS_DATACENTER", self.ctx.datacenter.to_string()),
        ]
    }

    /// The id of a new definition; the directory checked it already, so the old one is only
    /// kept if that check is somehow bypassed.
    fn instance_id_of(&self, spec: &ServiceSpec) -> InstanceId {
        spec.instance_id(&self.ctx.node)
            .unwrap_or_else(|_| self.key.1.clone())
    }
}

/// A health status as metrics label it.
pub fn health_name(h: Health) -> &'static str {
    match h {
        Health::Passing => "passing",
        Health::Warning => "warning",
        Health::Critical => "critical",
    }
}
