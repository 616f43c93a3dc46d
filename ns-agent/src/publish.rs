//! The agent's status record in the store: `/ns/agents/NODE`, on the agent's own lease.
//!
//! One task looks at the status board, the mirror and the registrar's contact a few times a
//! second, builds an `ns_core::AgentRecord`, and writes it (`PUT /v1/agents/NODE?lease=L`) when
//! it differs from the last one written in something other than its volatile fields and
//! `status_interval` has passed since the last attempt. The volatile fields are `published_at`,
//! `mirror_revision`, `staleness_ms` and each check's `at` and `duration_ms`: the mirror follows
//! every store write and checks run all the time, so counting them would make every agent write
//! on every store write or every check; their current values go out with the next real change.
//! Liveness is not the record's job: the store reports how long ago the lease was kept alive.
//! A new lease (after the old one was lost) is a change, so the record follows the lease.
//!
//! Writes run one at a time in this task, so one is never in flight twice, and a failed one is
//! retried after the interval; lifecycles, checks and the local DNS never wait on it. On
//! shutdown the task ends before the registrar revokes the lease, which deletes the record
//! together with the instances. What the services' states are is `lifecycle`'s and `status`'s.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ns_core::{AgentCheck, AgentRecord, AgentService, InstanceId, NodeName, schema::output_tail};
use pyxis_client::Client;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::lifecycle::Context;
use crate::status::{LastCheck, ServiceStatus, rfc3339};

/// How often the task looks for a change (a change is written at most every interval).
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// The record's inputs that do not change while the agent runs.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The agent's node name.
    pub node: NodeName,
    /// When the agent started, RFC 3339.
    pub started_at: String,
}

/// Runs the publisher until `stop`; returns once no write is in flight.
pub async fn run(
    ctx: Arc<Context>,
    client: Client,
    identity: Identity,
    interval: Duration,
    stop: CancellationToken,
) {
    // The last record written, with its lease, normalized (see `unchanged`).
    let mut written: Option<(AgentRecord, u64)> = None;
    let mut last_attempt: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
        let Some(lease) = ctx.registrar.contact().lease else {
            continue;
        };
        let record = build(&ctx, &identity);
        let current = (normalized(&record), lease);
        if written.as_ref() == Some(&current) {
            continue;
        }
        if last_attempt.is_some_and(|t| t.elapsed() < interval) {
            continue;
        }
        last_attempt = Some(Instant::now());
        let body = match serde_json::to_value(&record) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the agent's status record");
                continue;
            }
        };
        match client.put_agent(identity.node.as_str(), &body, lease).await {
            Ok(r) => {
                metrics::counter!("ns_agent_status_writes_total", "result" => "ok").increment(1);
                tracing::debug!(revision = r.revision, lease, "status record written");
                written = Some(current);
            }
            Err(e) => {
                metrics::counter!("ns_agent_status_writes_total", "result" => "error").increment(1);
                // The registrar notices a lost lease and grants a new one; the next attempt
                // after the interval then writes on it.
                tracing::warn!(error = %e, lease, "writing the status record failed; retrying later");
            }
        }
    }
}

/// The record as of now.
fn build(ctx: &Context, identity: &Identity) -> AgentRecord {
    let mirror = ctx.mirror.status();
    let contact = ctx.registrar.contact();
    AgentRecord {
        node: identity.node.clone(),
        datacenter: ctx.datacenter.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: identity.started_at.clone(),
        published_at: rfc3339(SystemTime::now()),
        mirror_revision: mirror.revision,
        staleness_ms: mirror
            .since_contact
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        store_connected: mirror.synced && contact.connected,
        services: ctx
            .board
            .services()
            .iter()
            .take(ns_core::schema::MAX_SERVICES)
            .map(service)
            .collect(),
    }
}

fn service(s: &ServiceStatus) -> AgentService {
    AgentService {
        name: s.name.clone(),
        instance_id: s
            .instance_id
            .as_deref()
            .and_then(|id| InstanceId::parse(id).ok()),
        state: s.state,
        last_check: s.last_check.as_ref().map(check),
    }
}

fn check(c: &LastCheck) -> AgentCheck {
    AgentCheck {
        exit: c.exit,
        output: output_tail(&c.output).to_owned(),
        at: c.at.clone(),
        duration_ms: c.duration_ms,
    }
}

/// The record without its volatile fields, for the change test.
fn normalized(record: &AgentRecord) -> AgentRecord {
    let mut r = record.clone();
    r.published_at.clear();
    r.mirror_revision = 0;
    r.staleness_ms = None;
    for s in &mut r.services {
        if let Some(c) = &mut s.last_check {
            c.at.clear();
            c.duration_ms = 0;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use ns_core::{AgentServiceState, DcName};

    use super::*;

    fn record(state: AgentServiceState, at: &str, output: &str) -> AgentRecord {
        AgentRecord {
            node: NodeName::parse("h1").unwrap(),
            datacenter: DcName::parse("dc1").unwrap(),
            version: "0.0.0".into(),
            started_at: "2026-12-03T11:00:00.000Z".into(),
            published_at: at.into(),
            mirror_revision: at.len() as u64,
            staleness_ms: Some(at.len() as u64),
            store_connected: true,
            services: vec![AgentService {
                name: "web".into(),
                instance_id: None,
                state,
                last_check: Some(AgentCheck {
                    exit: Some(0),
                    output: output.into(),
                    at: at.into(),
                    duration_ms: at.len() as u64,
                }),
            }],
        }
    }

    #[test]
    fn only_real_changes_count() {
        let a = record(AgentServiceState::Passing, "2026-12-03T11:00:01Z", "ok");
        let later = record(AgentServiceState::Passing, "2026-12-03T11:00:02.5Z", "ok");
        assert_eq!(
            normalized(&a),
            normalized(&later),
            "times and revision only"
        );
        let critical = record(AgentServiceState::Critical, "2026-12-03T11:00:01Z", "ok");
        assert_ne!(normalized(&a), normalized(&critical));
        let other_output = record(AgentServiceState::Passing, "2026-12-03T11:00:01Z", "slow");
        assert_ne!(normalized(&a), normalized(&other_output));
    }

    #[test]
    fn long_check_output_is_cut_to_its_tail() {
        let c = LastCheck {
            exit: Some(2),
            output: format!("{}the reason", "x".repeat(4000)),
            at: "2026-12-03T11:00:01.000Z".into(),
            duration_ms: 5,
        };
        let out = check(&c);
        assert_eq!(out.output.len(), ns_core::schema::OUTPUT_LIMIT);
        assert!(out.output.ends_with("the reason"));
    }
}
