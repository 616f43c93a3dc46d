//! One render group's task: the templates of one service (reloaded together by its
//! `scripts.reload`), or one template of `agent.toml` (reloaded by its `command`).
//!
//! The pipeline, per template: wait until the mirror and the config keys completed a listing
//! (never render from nothing); render at once, then whenever a change touches what the last
//! render read (`render::deps`), after the debounce (`render::debounce`). A render that fails
//! keeps the old file and reports `file:line:column`. An output byte-identical to the file on
//! disk is skipped. Otherwise it is installed atomically (`render::write`) and `check` runs with
//! it in place; a failed check puts the previous file back. After the batch, the reload runs
//! once for all changed templates; a failed reload puts every previous file back, reloads
//! again and raises the alert. One template's failure never stops the others. During an
//! outage the mirror keeps its last snapshot, so nothing changes on disk.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ns_core::ServiceName;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::debounce::Debounce;
use super::deps::{Deps, Inputs};
use super::engine::{Compiled, RenderError};
use super::functions::Who;
use super::spec::TemplateSpec;
use super::write::{self, Installed};
use crate::alert;
use crate::lifecycle::Context;
use crate::service_file::Script;
use crate::status::{TemplateError, TemplateStatus, rfc3339};
use crate::supervisor::{self, RunOptions};

/// What a group renders and how it reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDef {
    /// The service whose file declares the templates; `None` for `agent.toml`'s.
    pub service: Option<ServiceName>,
    /// The directory `check` and the reload run in.
    pub dir: PathBuf,
    /// The templates.
    pub templates: Vec<TemplateSpec>,
    /// The reload run after a batch that changed files.
    pub reload: Option<Script>,
}

/// How often readiness is polled before the first listing (the mirror notifies only changes).
const READY_POLL: Duration = Duration::from_millis(50);

/// Runs the group until `stop`.
pub async fn run(def: GroupDef, ctx: Arc<Context>, stop: CancellationToken) {
    let mut g = Group::new(def, ctx);
    tokio::select! {
        _ = stop.cancelled() => {}
        () = g.run() => {}
    }
}

struct Slot {
    spec: TemplateSpec,
    compiled: Result<Compiled, RenderError>,
    /// What the last render read; `None` before the first one.
    deps: Option<Deps>,
    debounce: Debounce,
}

/// A render whose file is in place, waiting for the batch's reload.
struct Pending {
    slot: usize,
    installed: Option<Installed>,
    revision: u64,
}

struct Group {
    def: GroupDef,
    ctx: Arc<Context>,
    who: Who,
    slots: Vec<Slot>,
    inputs: Inputs,
}

impl Group {
    fn new(def: GroupDef, ctx: Arc<Context>) -> Group {
        let who = Who {
            node: ctx.node.clone(),
            datacenter: ctx.datacenter.clone(),
            kv_prefix: ctx.kv.prefix().to_owned(),
        };
        let slots = def
            .templates
            .iter()
            .map(|spec| Slot {
                compiled: Compiled::load(&spec.source),
                deps: None,
                debounce: Debounce::new(spec.wait_min, spec.wait_max),
                spec: spec.clone(),
            })
            .collect();
        let g = Group {
            def,
            ctx,
            who,
            slots,
            inputs: Inputs::default(),
        };
        for i in 0..g.slots.len() {
            g.show(i, |_| {});
            if let Err(e) = &g.slots[i].compiled {
                let e = e.clone();
                tracing::error!(dest = %g.slots[i].spec.dest.display(), "template error: {e}");
                g.show(i, |s| s.last_error = Some(render_error(&e)));
            }
        }
        g
    }

    async fn run(&mut self) {
        let mut snaps = self.ctx.mirror.subscribe();
        let mut keys = self.ctx.kv.subscribe();
        while !self.ready() {
            tokio::time::sleep(READY_POLL).await;
        }
        snaps.mark_unchanged();
        keys.mark_unchanged();
        self.inputs = self.current();
        let now = Instant::now();
        for s in &mut self.slots {
            s.debounce.now(now);
        }
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                r = snaps.changed() => if r.is_err() { return },
                r = keys.changed() => if r.is_err() { return },
                () = sleep_until(deadline) => {}
            }
            self.observe();
            if self.slots.iter().any(|s| s.debounce.due(Instant::now())) {
                self.batch().await;
            }
        }
    }

    /// Whether both copies completed a listing. On the agent's one-thread runtime the mirror
    /// publishes its first snapshot in the same step that counts the listing.
    fn ready(&self) -> bool {
        self.ctx.mirror.status().listings > 0 && self.ctx.kv.data().listed
    }

    fn current(&self) -> Inputs {
        Inputs {
            snap: self.ctx.mirror.snapshot(),
            kv: self.ctx.kv.data(),
        }
    }

    /// Takes the latest inputs and schedules every template the change touches.
    fn observe(&mut self) {
        let new = self.current();
        let now = Instant::now();
        let now_ms = unix_ms();
        for s in &mut self.slots {
            let idle = s.debounce.deadline().is_none();
            let touched = match &s.deps {
                Some(d) => {
                    d.touched(&self.inputs, &new)
                        || (idle && d.expires_at.is_some_and(|e| e <= now_ms))
                }
                // Never rendered (it failed before reading anything): any change may fix it.
                None => s.compiled.is_ok(),
            };
            if touched {
                s.debounce.touch(now);
            }
        }
        self.inputs = new;
    }

    /// The earliest render due, or policy expiry to re-render at.
    fn next_deadline(&self) -> Option<Instant> {
        let now_ms = unix_ms();
        self.slots
            .iter()
            .filter_map(|s| {
                s.debounce.deadline().or_else(|| {
                    let e = s.deps.as_ref()?.expires_at?;
                    Some(Instant::now() + Duration::from_millis(e.saturating_sub(now_ms)))
                })
            })
            .min()
    }

    /// Renders every due template, then reloads once if any file changed.
    async fn batch(&mut self) {
        let now = Instant::now();
        let inputs = self.inputs.clone();
        let now_ms = unix_ms();
        let mut pending: Vec<Pending> = Vec::new();
        for i in 0..self.slots.len() {
            if !self.slots[i].debounce.due(now) {
                continue;
            }
            self.slots[i].debounce.clear();
            if let Some(p) = self.render_one(i, &inputs, now_ms).await {
                pending.push(p);
            }
        }
        let installed: Vec<&Pending> = pending.iter().filter(|p| p.installed.is_some()).collect();
        if !installed.is_empty() && !self.reload(&installed).await {
            return;
        }
        let at = rfc3339(SystemTime::now());
        for p in pending {
            let fresh = p.installed.is_some();
            self.show(p.slot, |s| {
                s.last_render = Some(at.clone());
                s.revision = Some(p.revision);
                s.last_error = None;
                if fresh {
                    s.installs += 1;
                }
            });
        }
    }

    /// Renders, compares, installs and checks one template. `Some` when its output is on disk
    /// (`installed` set when it replaced the file), `None` when it failed and the old file stays.
    async fn render_one(&mut self, i: usize, inputs: &Inputs, now_ms: u64) -> Option<Pending> {
        let started = std::time::Instant::now();
        let slot = &mut self.slots[i];
        let compiled = slot.compiled.as_ref().ok()?;
        let (rendered, deps) = compiled.render(inputs, &self.who, now_ms);
        metrics::histogram!("ns_agent_template_render_seconds")
            .record(started.elapsed().as_secs_f64());
        let text = match rendered {
            Ok(text) => {
                slot.deps = Some(deps);
                text
            }
            Err(e) => {
                let mut all = slot.deps.take().unwrap_or_default();
                all.union(deps);
                slot.deps = Some(all);
                tracing::error!(dest = %slot.spec.dest.display(), "template render failed, keeping the old file: {e}");
                self.fail(i, "render_error", render_error(&e));
                return None;
            }
        };
        let spec = slot.spec.clone();
        let dest = spec.dest.clone();
        let bytes = text.into_bytes();
        let revision = inputs.revision();
        let wanted = bytes.clone();
        let on_disk = blocking(move || write::current(&dest)).await;
        if let Ok(Some(cur)) = &on_disk
            && *cur == wanted
        {
            metrics::counter!("ns_agent_template_renders_total", "result" => "unchanged")
                .increment(1);
            return Some(Pending {
                slot: i,
                installed: None,
                revision,
            });
        }
        let dest = spec.dest.clone();
        let mode = spec.mode;
        let installed = match blocking(move || write::install(&dest, &bytes, mode)).await {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(dest = %spec.dest.display(), error = %e, "cannot write the rendered file");
                self.fail(
                    i,
                    "write_error",
                    plain("write", format!("{}: {e}", spec.dest.display())),
                );
                return None;
            }
        };
        if let Some(check) = &spec.check {
            let o = self.script(&Script::Shell(check.clone()), &spec, &[]).await;
            if !o.success() {
                let restored = restore(&installed).await;
                let message = format!(
                    "check `{check}` failed (exit {:?}): {}; {}",
                    o.exit,
                    o.output.trim(),
                    restored
                );
                tracing::error!(dest = %spec.dest.display(), "{message}");
                self.fail(i, "check_failed", plain("check", message));
                return None;
            }
        }
        metrics::counter!("ns_agent_template_renders_total", "result" => "installed").increment(1);
        tracing::info!(dest = %spec.dest.display(), revision, "template rendered");
        Some(Pending {
            slot: i,
            installed: Some(installed),
            revision,
        })
    }

    /// Runs the reload for the changed files; on failure restores them all, reloads again
    /// and alerts. Whether the new files stay.
    async fn reload(&mut self, changed: &[&Pending]) -> bool {
        let Some(script) = self.def.reload.clone() else {
            return true;
        };
        let dests: Vec<String> = changed
            .iter()
            .map(|p| self.slots[p.slot].spec.dest.display().to_string())
            .collect();
        let spec = self.slots[changed[0].slot].spec.clone();
        let env = [("NS_TEMPLATES", dests.join(" "))];
        let o = self.script(&script, &spec, &env).await;
        if o.success() {
            metrics::counter!("ns_agent_template_reloads_total", "result" => "ok").increment(1);
            return true;
        }
        metrics::counter!("ns_agent_template_reloads_total", "result" => "failed").increment(1);
        let mut notes = Vec::new();
        for p in changed.iter().rev() {
            if let Some(inst) = &p.installed {
                notes.push(restore(inst).await);
            }
        }
        let again = self.script(&script, &spec, &env).await;
        let message = format!(
            "reload failed (exit {:?}): {}; previous files put back ({}); reload again: {}",
            o.exit,
            o.output.trim(),
            notes.join(", "),
            if again.success() {
                "ok".to_owned()
            } else {
                format!("failed (exit {:?}): {}", again.exit, again.output.trim())
            }
        );
        tracing::error!(service = ?self.def.service.as_ref().map(|s| s.as_str()), "{message}");
        for p in changed {
            self.fail(p.slot, "reload_failed", plain("reload", message.clone()));
        }
        let settings = self.ctx.settings();
        alert::fire_template(
            alert::TemplateAlert {
                kind: "reload_failed".into(),
                service: self.def.service.as_ref().map(|s| s.to_string()),
                node: self.ctx.node.clone(),
                templates: dests,
                output: o.output.clone(),
                at: rfc3339(SystemTime::now()),
            },
            &settings.alert,
            &self.ctx.http,
        );
        false
    }

    async fn script(
        &self,
        script: &Script,
        spec: &TemplateSpec,
        extra: &[(&'static str, String)],
    ) -> supervisor::Outcome {
        let mut env = vec![
            ("NS_TEMPLATE_SOURCE", spec.source.display().to_string()),
            ("NS_TEMPLATE_DEST", spec.dest.display().to_string()),
            ("NS_NODE", self.ctx.node.clone()),
            ("NS_DATACENTER", self.ctx.datacenter.to_string()),
        ];
        if let Some(s) = &self.def.service {
            env.push(("NS_SERVICE", s.to_string()));
        }
        env.extend(extra.iter().cloned());
        let timeout = self.ctx.settings().script_timeout;
        supervisor::run(
            script,
            &self.def.dir,
            &env,
            timeout,
            RunOptions {
                stdin: None,
                reap_group: true,
            },
        )
        .await
    }

    fn fail(&self, i: usize, metric: &'static str, e: TemplateError) {
        metrics::counter!("ns_agent_template_renders_total", "result" => metric).increment(1);
        self.show(i, |s| s.last_error = Some(e));
    }

    fn show(&self, i: usize, f: impl FnOnce(&mut TemplateStatus)) {
        let spec = &self.slots[i].spec;
        let service = self.def.service.as_ref().map(|s| s.to_string());
        self.ctx.board.update_template(
            &spec.dest,
            || TemplateStatus {
                service,
                source: spec.source.clone(),
                dest: spec.dest.clone(),
                last_render: None,
                revision: None,
                installs: 0,
                last_error: None,
            },
            f,
        );
    }
}

fn render_error(e: &RenderError) -> TemplateError {
    TemplateError {
        stage: "render".into(),
        message: e.to_string(),
        file: Some(e.file.clone()),
        line: e.line,
        column: e.column,
    }
}

fn plain(stage: &str, message: String) -> TemplateError {
    TemplateError {
        stage: stage.into(),
        message,
        file: None,
        line: None,
        column: None,
    }
}

/// Puts the previous file back; a note for the log saying how that went.
async fn restore(installed: &Installed) -> String {
    let i = installed.clone();
    match blocking(move || write::restore(&i)).await {
        Ok(()) => format!("{} restored", installed.dest.display()),
        Err(e) => {
            tracing::error!(dest = %installed.dest.display(), error = %e, "cannot put the previous file back");
            format!("{} NOT restored: {e}", installed.dest.display())
        }
    }
}

/// Runs blocking file work off the runtime's thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Now as Unix milliseconds, for traffic policy expiry.
pub(crate) fn unix_ms() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
