//! [`run`]: the agent process, wired together, and its signals.
//!
//! It starts the registrar (lease and store writes), the status record's publisher, the local
//! DNS (when configured), the resolve book and callbacks, the local HTTP API, and the directory
//! loop with its lifecycles. SIGTERM or SIGINT ends it: the publisher stops, then the lease is
//! revoked (every instance and the status record deleted in one write), then the process
//! exits, leaving the services running unless `--stop-services-on-exit` asked for `stop` after
//! the drain. SIGHUP re-reads the config file: drain, script timeout and alerts apply at once;
//! the other fields need a restart (logged).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use pyxis_client::Client;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::directory::{self, Control};
use crate::kv::ConfigKv;
use crate::lifecycle::{Command, Context, Settings};
use crate::maintenance::Maintenance;
use crate::registrar::Registrar;
use crate::render::{self, GroupDef};
use crate::service_file::Script;
use crate::status::Board;
use crate::{http_api, metrics};

/// How the agent was started, besides its config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The config file, re-read on SIGHUP (no reloads without it).
    pub config_path: Option<PathBuf>,
    /// Store endpoints given on the command line, which win over the file's on a reload too.
    pub store_override: Option<Vec<String>>,
    /// On exit, run every service's `stop` after deregistering and draining.
    pub stop_services_on_exit: bool,
}

/// A token cancelled on SIGTERM or SIGINT; call inside the runtime.
pub fn shutdown_on_signals() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let t = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
        t.cancel();
    });
    Ok(token)
}

/// Runs the agent until `shutdown` is cancelled.
pub async fn run(
    config: AgentConfig,
    options: RunOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Before any thread of the agent exists, so that all of them inherit the mask.
    crate::supervisor::block_child_signals();
    let _ = metrics::handle();
    let client = Client::with_options(config.store.clone(), config.store_options())
        .context("store endpoints")?;
    let datacenter = ns_core::DcName::parse(&config.datacenter)
        .map_err(|e| anyhow::anyhow!("datacenter: {e}"))?;
    // One mirror for everything in the agent that reads the naming model (templates, local
    // DNS, resolve and callbacks); nothing reads `/ns/` from the store per request.
    let mirror = Arc::new(ns_core::Mirror::start(
        client.clone(),
        ns_core::MirrorOptions::default(),
    ));
    let kv = Arc::new(ConfigKv::start(client.clone(), config.kv_prefix.clone()));
    let started_at = crate::status::rfc3339(std::time::SystemTime::now());
    let publisher_client = client.clone();
    let registrar_stop = CancellationToken::new();
    let (registrar, registrar_task) =
        Registrar::start(client, config.lease_ttl, registrar_stop.clone());
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("building the webhook client")?;
    let client = crate::dnsd::client_of(&datacenter, config.advertise);
    let ctx = Arc::new(Context {
        node: config.node.clone(),
        datacenter,
        advertise: config.advertise,
        registrar,
        board: Arc::new(Board::default()),
        maintenance: Arc::new(Maintenance::load(&config.state_path())),
        http,
        settings: RwLock::new(settings_of(&config)),
        mirror,
        kv,
    });
    // The same client context for the DNS answers and the resolve API, so both give one list.
    let services_stop = CancellationToken::new();
    let dns = match crate::dnsd::DnsSettings::of(&config) {
        Some(settings) => Some(Arc::new(crate::dnsd::start(
            settings,
            &ctx.mirror,
            client.clone(),
            &services_stop,
        )?)),
        None => None,
    };
    let book = Arc::new(crate::resolve::Book::new(ctx.mirror.clone(), client));
    tokio::spawn(book.clone().run(services_stop.clone()));
    let callbacks = Arc::new(crate::callbacks::Callbacks::new(
        book.clone(),
        ctx.http.clone(),
        services_stop.clone(),
    ));
    let listener = tokio::net::TcpListener::bind(config.http)
        .await
        .with_context(|| format!("http: cannot listen on {}", config.http))?;
    let addr = listener.local_addr().context("http: local address")?;
    tracing::info!(node = %config.node, "listening http={addr}");
    let (control_tx, control_rx) = mpsc::channel(16);
    let http_stop = CancellationToken::new();
    let router = http_api::router(http_api::Api {
        ctx: ctx.clone(),
        control: control_tx.clone(),
        book,
        callbacks,
        dns,
    });
    let server = tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(http_stop.clone().cancelled_owned())
            .into_future(),
    );
    if let Some(path) = options.config_path.clone() {
        tokio::spawn(reload_on_hangup(
            path,
            config.clone(),
            options.store_override.clone(),
            control_tx,
        ));
    }
    let identity = crate::publish::Identity {
        node: ns_core::NodeName::parse(&config.node).map_err(|e| anyhow::anyhow!("node: {e}"))?,
        started_at,
    };
    let publisher_stop = CancellationToken::new();
    let publisher = tokio::spawn(crate::publish::run(
        ctx.clone(),
        publisher_client,
        identity,
        config.status_interval,
        publisher_stop.clone(),
    ));
    let (groups_tx, groups_rx) = watch::channel(Vec::new());
    let fixed: Vec<GroupDef> = config
        .template_specs
        .iter()
        .map(|t| GroupDef {
            service: None,
            dir: config.base_dir.clone(),
            templates: vec![t.clone()],
            reload: t.command.clone().map(Script::Shell),
        })
        .collect();
    let render_stop = CancellationToken::new();
    let renders = tokio::spawn(render::manager::run(
        ctx.clone(),
        fixed,
        groups_rx,
        render_stop.clone(),
    ));
    let remaining = directory::run(
        ctx.clone(),
        config.services_path(),
        config.debounce,
        config.rescan_interval,
        control_rx,
        groups_tx,
        shutdown,
    )
    .await;
    render_stop.cancel();
    let _ = renders.await;

    tracing::info!("shutting down: deregistering every instance");
    // The status record goes with the lease; no write of it may land after the revoke.
    publisher_stop.cancel();
    let _ = publisher.await;
    registrar_stop.cancel();
    let _ = registrar_task.await;
    let settings = ctx.settings();
    let stop = options.stop_services_on_exit;
    if stop {
        tokio::time::sleep(settings.drain).await;
    }
    for tx in remaining.iter().filter_map(|(tx, _)| tx.as_ref()) {
        let _ = tx.send(Command::Exit { stop }).await;
    }
    // A lifecycle in the middle of a check or a script finishes it first; bound the wait.
    let bound = settings.script_timeout + settings.drain + Duration::from_secs(5);
    for (_, task) in remaining {
        let _ = tokio::time::timeout(bound, task).await;
    }
    http_stop.cancel();
    let _ = server.await;
    services_stop.cancel();
    tracing::info!(
        stopped_services = stop,
        "agent stopped{}",
        if stop { "" } else { "; services left running" }
    );
    Ok(())
}

fn settings_of(c: &AgentConfig) -> Settings {
    Settings {
        drain: c.drain,
        script_timeout: c.script_timeout,
        alert: c.alert.clone(),
        lease_ttl: c.lease_ttl,
    }
}

/// Re-reads the config on every SIGHUP and hands the live settings to the directory loop.
async fn reload_on_hangup(
    path: PathBuf,
    running: AgentConfig,
    store_override: Option<Vec<String>>,
    control: mpsc::Sender<Control>,
) {
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; config reloads disabled");
            return;
        }
    };
    while hup.recv().await.is_some() {
        let mut new = match AgentConfig::load(&path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("config reload refused, keeping the running config: {e}");
                continue;
            }
        };
        if let Some(s) = &store_override {
            new.store = s.clone();
        }
        let restart_only = [
            ("node", running.node != new.node),
            ("datacenter", running.datacenter != new.datacenter),
            ("advertise", running.advertise != new.advertise),
            ("store", running.store != new.store),
            (
                "services_dir",
                running.services_path() != new.services_path(),
            ),
            ("http", running.http != new.http),
            ("dns", running.dns != new.dns),
            ("upstreams", running.upstreams != new.upstreams),
            ("dns_allow", running.dns_allow != new.dns_allow),
            ("dns_zone", running.dns_zone != new.dns_zone),
            ("dns_ttl", running.dns_ttl != new.dns_ttl),
            ("lease_ttl", running.lease_ttl != new.lease_ttl),
            (
                "status_interval",
                running.status_interval != new.status_interval,
            ),
            ("state_file", running.state_path() != new.state_path()),
            ("debounce", running.debounce != new.debounce),
            (
                "rescan_interval",
                running.rescan_interval != new.rescan_interval,
            ),
        ];
        for (field, changed) in restart_only {
            if changed {
                tracing::warn!(
                    field,
                    "changed in the config file; takes effect after a restart"
                );
            }
        }
        tracing::info!(path = %path.display(), "config re-read");
        if control
            .send(Control::Reload(settings_of(&new)))
            .await
            .is_err()
        {
            return;
        }
    }
}
