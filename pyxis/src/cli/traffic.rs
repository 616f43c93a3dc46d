//! `pyxis traffic show|set|shift|drain`: operators change a service's traffic policy.
//!
//! `shift` and `drain` read the current policy, change one part and write it back only if
//! nobody wrote it in between (compare-and-set on its mod revision; on a conflict they read
//! again), so two operators changing different parts at once both keep their change. The
//! server validates the result (a shift over 100% out of a datacenter, an unknown field)
//! and refuses it with the field named, so a bad change writes nothing.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use pyxis_client::Client;
use pyxis_client::api::ErrorCode;
use serde_json::{Value, json};

use super::print;

/// `pyxis traffic ...`
#[derive(Debug, Subcommand)]
pub enum TrafficCmd {
    /// Print a service's traffic policy as JSON.
    Show {
        /// The service.
        name: String,
    },
    /// Replace a service's traffic policy with the JSON in FILE (`-`: standard input).
    Set {
        /// The service.
        name: String,
        /// The policy JSON file.
        file: PathBuf,
    },
    /// Move PERCENT of FROM's clients to TO (0 removes the shift).
    Shift {
        /// The service.
        name: String,
        /// Datacenter the clients are in.
        #[arg(long)]
        from: String,
        /// Datacenter they are sent to.
        #[arg(long)]
        to: String,
        /// Share of FROM's clients, 0 to 100.
        #[arg(long)]
        percent: u8,
    },
    /// Take instance ID out of traffic (or put it back with --undo).
    Drain {
        /// The service.
        name: String,
        /// The instance id.
        id: String,
        /// Stop draining.
        #[arg(long)]
        undo: bool,
    },
}

/// Runs one `traffic` subcommand.
pub(crate) async fn run(client: &Client, cmd: TrafficCmd) -> anyhow::Result<()> {
    match cmd {
        TrafficCmd::Show { name } => match client
            .traffic(&name)
            .await
            .with_context(|| format!("traffic {name}"))?
        {
            Some(p) => print(format!("{}\n", serde_json::to_string_pretty(&p)?)),
            None => print(format!("service {name} has no traffic policy\n")),
        },
        TrafficCmd::Set { name, file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
                    .context("reading the policy from stdin")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let policy: Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not valid JSON", file.display()))?;
            write(client, &name, &policy).await
        }
        TrafficCmd::Shift {
            name,
            from,
            to,
            percent,
        } => edit(client, &name, |p| set_shift(p, &from, &to, percent)).await,
        TrafficCmd::Drain { name, id, undo } => {
            edit(client, &name, |p| set_drain(p, &id, !undo)).await
        }
    }
}

/// How many times `edit` reads again after losing a race with another writer.
const EDIT_ATTEMPTS: u32 = 20;

/// Applies `change` to the current policy (`{}` if none) and writes it back only if it is
/// unchanged since the read, re-reading on each conflict.
async fn edit(client: &Client, name: &str, change: impl Fn(&mut Value)) -> anyhow::Result<()> {
    for attempt in 1..=EDIT_ATTEMPTS {
        let (mut policy, rev) = client
            .traffic_versioned(name)
            .await
            .with_context(|| format!("traffic {name}"))?
            .unwrap_or_else(|| (json!({}), 0));
        change(&mut policy);
        match client.put_traffic_if(name, &policy, rev).await {
            Ok(r) => return print(format!("revision {}\n", r.revision)),
            Err(e) if e.code() == Some(ErrorCode::CompareFailed) => {
                tracing::debug!(attempt, "traffic {name} changed since it was read; again");
                // A short, growing pause keeps a burst of colliding operators from spinning.
                tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
            }
            Err(e) => return Err(e).with_context(|| format!("set traffic {name}")),
        }
    }
    anyhow::bail!(
        "traffic {name}: the policy changed under each of {EDIT_ATTEMPTS} attempts; try again"
    )
}

async fn write(client: &Client, name: &str, policy: &Value) -> anyhow::Result<()> {
    let r = client
        .put_traffic(name, policy)
        .await
        .with_context(|| format!("set traffic {name}"))?;
    print(format!("revision {}\n", r.revision))
}

/// Sets (or with 0 removes) the shift FROM -> TO in a policy document.
fn set_shift(policy: &mut Value, from: &str, to: &str, percent: u8) {
    let shifts = policy
        .as_object_mut()
        .map(|o| o.entry("shifts").or_insert_with(|| json!([])));
    let Some(Value::Array(shifts)) = shifts else {
        return;
    };
    shifts.retain(|s| !(s["from_dc"] == from && s["to_dc"] == to));
    if percent > 0 {
        shifts.push(json!({"from_dc": from, "to_dc": to, "percent": percent}));
    }
}

/// Marks instance `id` drained (or not) in a policy document, keeping its other overrides.
fn set_drain(policy: &mut Value, id: &str, drain: bool) {
    let overrides = policy
        .as_object_mut()
        .map(|o| o.entry("overrides").or_insert_with(|| json!({})));
    let Some(Value::Object(overrides)) = overrides else {
        return;
    };
    let entry = overrides.entry(id.to_owned()).or_insert_with(|| json!({}));
    if let Value::Object(o) = entry {
        o.insert("drain".into(), Value::Bool(drain));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_replaces_the_same_pair_and_zero_removes() {
        let mut p = json!({"shifts": [{"from_dc": "a", "to_dc": "b", "percent": 10}]});
        set_shift(&mut p, "a", "b", 30);
        assert_eq!(
            p["shifts"],
            json!([{"from_dc": "a", "to_dc": "b", "percent": 30}])
        );
        set_shift(&mut p, "a", "c", 5);
        assert_eq!(p["shifts"].as_array().unwrap().len(), 2);
        set_shift(&mut p, "a", "b", 0);
        assert_eq!(
            p["shifts"],
            json!([{"from_dc": "a", "to_dc": "c", "percent": 5}])
        );
    }

    #[test]
    fn drain_keeps_other_override_fields() {
        let mut p = json!({"overrides": {"i1": {"weight": 5}}});
        set_drain(&mut p, "i1", true);
        assert_eq!(p["overrides"]["i1"], json!({"weight": 5, "drain": true}));
        set_drain(&mut p, "i2", true);
        set_drain(&mut p, "i1", false);
        assert_eq!(p["overrides"]["i1"]["drain"], json!(false));
        assert_eq!(p["overrides"]["i2"]["drain"], json!(true));
    }
}
