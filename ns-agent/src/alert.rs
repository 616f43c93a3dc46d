//! Alerts on health transitions: the JSON payload, the alert command and the webhook.
//!
//! An alert fires when an instance goes critical (out of traffic) or passes again. The payload
//! `{"service","instance","node","from","to","output","at"}` goes to the configured command
//! (run by `/bin/sh -c`, payload on stdin) and is POSTed to the webhook; both are optional and
//! neither blocks the lifecycle that raised it. Deciding when is `lifecycle`'s (with
//! `health::Tracker`).

use std::path::PathBuf;
use std::time::Duration;

use ns_core::Health;
use serde::Serialize;

use crate::config::AlertConfig;
use crate::service_file::Script;
use crate::supervisor::{self, RunOptions};

/// How long the alert command and the webhook may take.
const ALERT_TIMEOUT: Duration = Duration::from_secs(10);

/// The alert payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// The service name.
    pub service: String,
    /// The instance id.
    pub instance: String,
    /// The node it runs on.
    pub node: String,
    /// The status before.
    pub from: Health,
    /// The status after.
    pub to: Health,
    /// Output of the deciding health check.
    pub output: String,
    /// When it was decided, RFC 3339 UTC.
    pub at: String,
}

/// The payload of a template alert (a reload that failed and was rolled back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateAlert {
    /// What happened: `reload_failed`.
    pub kind: String,
    /// The service whose templates they are; `null` for `agent.toml`'s.
    pub service: Option<String>,
    /// The node.
    pub node: String,
    /// The destinations that were put back.
    pub templates: Vec<String>,
    /// Output of the failed reload.
    pub output: String,
    /// When, RFC 3339 UTC.
    pub at: String,
}

/// Sends `alert` to the command and the webhook of `config`, in the background.
pub fn fire(alert: Alert, config: &AlertConfig, http: &reqwest::Client) {
    tracing::warn!(
        service = %alert.service,
        instance = %alert.instance,
        from = ?alert.from,
        to = ?alert.to,
        "health alert"
    );
    send(&alert, config, http);
}

/// Sends a template alert like [`fire`] sends a health alert.
pub fn fire_template(alert: TemplateAlert, config: &AlertConfig, http: &reqwest::Client) {
    tracing::warn!(
        kind = %alert.kind,
        service = ?alert.service,
        templates = ?alert.templates,
        "template alert"
    );
    send(&alert, config, http);
}

fn send(alert: &impl Serialize, config: &AlertConfig, http: &reqwest::Client) {
    metrics::counter!("ns_agent_alerts_total").increment(1);
    let body = match serde_json::to_vec(alert) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the alert");
            return;
        }
    };
    if let Some(command) = config.command.clone() {
        let body = body.clone();
        tokio::spawn(async move {
            let o = supervisor::run(
                &Script::Shell(command.clone()),
                &PathBuf::from("/"),
                &[],
                ALERT_TIMEOUT,
                RunOptions {
                    stdin: Some(body),
                    reap_group: true,
                },
            )
            .await;
            if !o.success() {
                tracing::warn!(command, exit = ?o.exit, output = %o.output, "alert command failed");
            }
        });
    }
    if let Some(url) = config.webhook.clone() {
        let http = http.clone();
        tokio::spawn(async move {
            let sent = http
                .post(&url)
                .header("content-type", "application/json")
                .timeout(ALERT_TIMEOUT)
                .body(body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!(url, status = %r.status(), "alert webhook refused"),
                Err(e) => tracing::warn!(url, error = %e, "alert webhook failed"),
            }
        });
    }
}
