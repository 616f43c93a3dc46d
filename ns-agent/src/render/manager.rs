//! Keeps one `render::group` task per declared group: the templates of each running service,
//! and each template of `agent.toml`.
//!
//! The directory loop publishes the services' groups after every rescan; a group whose
//! definition changed (a block edited, a template source edited) is stopped and started again,
//! a group no longer declared is stopped (its files stay as they are). Two groups naming the
//! same `dest` would overwrite each other: the second is refused, with the error on its status.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::group::{self, GroupDef};
use crate::lifecycle::Context;
use crate::status::{TemplateError, TemplateStatus};

struct Running {
    def: GroupDef,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Runs the groups of `fixed` (from `agent.toml`) and those `services` publishes, until
/// `shutdown`.
pub async fn run(
    ctx: Arc<Context>,
    fixed: Vec<GroupDef>,
    mut services: watch::Receiver<Vec<GroupDef>>,
    shutdown: CancellationToken,
) {
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    loop {
        let mut wanted = fixed.clone();
        wanted.extend(services.borrow_and_update().iter().cloned());
        apply(&ctx, &mut running, wanted).await;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = services.changed() => if r.is_err() { break },
        }
    }
    for (_, r) in running {
        r.stop.cancel();
        let _ = r.task.await;
    }
}

/// A stable key for a group: its service, or the one destination of an `agent.toml` template.
fn key(def: &GroupDef) -> String {
    match &def.service {
        Some(s) => format!("service:{s}"),
        None => format!(
            "agent:{}",
            def.templates
                .first()
                .map(|t| t.dest.display().to_string())
                .unwrap_or_default()
        ),
    }
}

async fn apply(ctx: &Arc<Context>, running: &mut BTreeMap<String, Running>, wanted: Vec<GroupDef>) {
    let mut next: BTreeMap<String, GroupDef> = BTreeMap::new();
    let mut claimed: BTreeMap<PathBuf, String> = BTreeMap::new();
    for def in wanted {
        let k = key(&def);
        let clash = def
            .templates
            .iter()
            .find_map(|t| claimed.get(&t.dest).map(|other| (t, other.clone())));
        if let Some((t, other)) = clash {
            let message = format!(
                "dest {} is already rendered by {other}; this template is not run",
                t.dest.display()
            );
            tracing::error!(group = k, "{message}");
            ctx.board.update_template(
                &t.dest,
                || TemplateStatus {
                    service: def.service.as_ref().map(|s| s.to_string()),
                    source: t.source.clone(),
                    dest: t.dest.clone(),
                    last_render: None,
                    revision: None,
                    installs: 0,
                    last_error: None,
                },
                |s| {
                    s.last_error = Some(TemplateError {
                        stage: "config".into(),
                        message: message.clone(),
                        file: None,
                        line: None,
                        column: None,
                    });
                },
            );
            continue;
        }
        for t in &def.templates {
            claimed.insert(t.dest.clone(), k.clone());
        }
        next.insert(k, def);
    }
    let stale: Vec<String> = running
        .iter()
        .filter(|(k, r)| next.get(*k) != Some(&r.def))
        .map(|(k, _)| k.clone())
        .collect();
    for k in stale {
        if let Some(r) = running.remove(&k) {
            tracing::info!(
                group = k,
                "templates changed or removed; stopping their renders"
            );
            r.stop.cancel();
            let _ = r.task.await;
        }
    }
    ctx.board.retain_templates(|d| claimed.contains_key(d));
    for (k, def) in next {
        if running.contains_key(&k) {
            continue;
        }
        tracing::info!(
            group = k,
            templates = def.templates.len(),
            "starting template renders"
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(group::run(def.clone(), ctx.clone(), stop.clone()));
        running.insert(k, Running { def, stop, task });
    }
}
