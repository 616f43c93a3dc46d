//! `pyxis traffic show|set|shift|drain`: operators change a service's traffic policy.
//!
//! `shift` and `drain` read the current policy, change one part and write it back only if
//! nobody wrote it in between (compare-and-set on its mod revision; on a conflict they read
//! again), so two operators changing different parts at once both keep their change. Every
//! policy is edited as `ns-core`'s [`TrafficPolicy`] and checked by its validation before it
//! is sent (`set` refuses a bad file with the field named, as in `p.json: shifts[0].percent:
//! ...`); the server checks it again, so a bad change writes nothing.
//!
//! A stored policy whose `expires_at` has passed no longer applies (routing ignores all of
//! it, and the server still answers it as stored), so `shift` and `drain` start from the
//! defaults instead and say on stderr what was dropped: a change written over it with its
//! past expiry kept would never apply, and one given a new `--for` would bring its expired
//! shifts back. `show` says on stderr that the policy it prints has expired.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use ns_core::schema::{Shift, TrafficPolicy};
use ns_core::{DcName, InstanceId};
use pyxis_client::Client;
use pyxis_client::api::ErrorCode;
use serde_json::json;

use super::{note, print};

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
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
        percent: u8,
        /// Let the whole policy expire after this long (`30m`, `2h`): sets `expires_at`.
        #[arg(long = "for", value_parser = parse_for)]
        for_: Option<Duration>,
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
            Some(p) => {
                // A policy that does not parse is still printed: `show` is how one finds out.
                if let Ok(policy) = TrafficPolicy::from_json(&serde_json::to_vec(&p)?) {
                    let now = now_ms()?;
                    if !policy.is_active(now) {
                        note(format!(
                            "traffic {name}: this policy expired {} and no longer applies\n",
                            ago(&policy, now)
                        ))?;
                    }
                }
                print(format!("{}\n", serde_json::to_string_pretty(&p)?))
            }
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
            let policy = parse_policy(&text, &file.display().to_string())?;
            write(client, &name, &policy).await
        }
        TrafficCmd::Shift {
            name,
            from,
            to,
            percent,
            for_,
        } => {
            let from = DcName::parse(&from).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
            let to = DcName::parse(&to).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
            let expires_at = for_.map(expiry_in).transpose()?;
            edit(client, &name, |p| {
                set_shift(p, &from, &to, percent);
                if expires_at.is_some() {
                    p.expires_at = expires_at;
                }
            })
            .await
        }
        TrafficCmd::Drain { name, id, undo } => {
            let id = InstanceId::parse(&id).map_err(|e| anyhow::anyhow!("id: {e}"))?;
            edit(client, &name, |p| set_drain(p, &id, !undo)).await
        }
    }
}

/// How many times `edit` reads again after losing a race with another writer.
const EDIT_ATTEMPTS: u32 = 20;

/// Applies `change` to the current policy (the defaults if none) and writes it back only if
/// it is unchanged since the read, re-reading on each conflict. The policy is edited as
/// `ns-core`'s [`TrafficPolicy`], the one definition the server validates against.
async fn edit(
    client: &Client,
    name: &str,
    change: impl Fn(&mut TrafficPolicy),
) -> anyhow::Result<()> {
    for attempt in 1..=EDIT_ATTEMPTS {
        let (stored, rev) = client
            .traffic_versioned(name)
            .await
            .with_context(|| format!("traffic {name}"))?
            .unwrap_or_else(|| (json!({}), 0));
        let stored = TrafficPolicy::from_json(&serde_json::to_vec(&stored)?)
            .map_err(|e| anyhow::anyhow!("traffic {name}: the stored policy is not valid: {e}"))?;
        let (mut policy, dropped) = in_force(stored, now_ms()?);
        change(&mut policy);
        let value = serde_json::to_value(&policy)?;
        match client.put_traffic_if(name, &value, rev).await {
            Ok(r) => {
                // Said only for the attempt that was written: a retry may have read another
                // policy than the first attempt did.
                if let Some(dropped) = dropped {
                    note(format!("traffic {name}: {dropped}\n"))?;
                }
                return print(format!("revision {}\n", r.revision));
            }
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

/// A policy file's text as `ns-core`'s [`TrafficPolicy`], checked as the server checks it,
/// so a bad file is refused here with the field named (`FILE: shifts[0].percent: ...`).
fn parse_policy(text: &str, source: &str) -> anyhow::Result<TrafficPolicy> {
    TrafficPolicy::from_json(text.as_bytes()).map_err(|e| anyhow::anyhow!("{source}: {e}"))
}

async fn write(client: &Client, name: &str, policy: &TrafficPolicy) -> anyhow::Result<()> {
    let r = client
        .put_traffic(name, &serde_json::to_value(policy)?)
        .await
        .with_context(|| format!("set traffic {name}"))?;
    print(format!("revision {}\n", r.revision))
}

/// Sets (or with 0 removes) the shift FROM -> TO.
fn set_shift(policy: &mut TrafficPolicy, from: &DcName, to: &DcName, percent: u8) {
    policy
        .shifts
        .retain(|s| !(s.from_dc == *from && s.to_dc == *to));
    if percent > 0 {
        policy.shifts.push(Shift {
            from_dc: from.clone(),
            to_dc: to.clone(),
            percent,
        });
    }
}

/// Marks instance `id` drained (or not), keeping its other overrides.
fn set_drain(policy: &mut TrafficPolicy, id: &InstanceId, drain: bool) {
    policy.overrides.entry(id.clone()).or_default().drain = drain;
}

/// The policy an edit starts from at `now_ms`: `stored` while it applies, else the defaults,
/// with a sentence saying what of the expired policy was dropped. Routing ignores an
/// expired policy as a whole (overrides and groups too, `TrafficPolicy::is_active`), so the
/// defaults are what is in force; keeping any part would revive it with the edit.
fn in_force(stored: TrafficPolicy, now_ms: u64) -> (TrafficPolicy, Option<String>) {
    if stored.is_active(now_ms) {
        return (stored, None);
    }
    let count = |n: usize, one: &str, many: &str| match n {
        0 => None,
        1 => Some(format!("1 {one}")),
        n => Some(format!("{n} {many}")),
    };
    let parts: Vec<String> = [
        count(stored.shifts.len(), "shift", "shifts"),
        count(stored.groups.len(), "version group", "version groups"),
        count(
            stored.overrides.len(),
            "instance override",
            "instance overrides",
        ),
        (!stored.prefer_same_dc).then(|| "prefer_same_dc=false".to_owned()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let what = if parts.is_empty() {
        "nothing but its expiry".to_owned()
    } else {
        parts.join(", ")
    };
    let note = format!(
        "the stored policy expired {} and no longer applied; starting from the defaults \
         (dropped {what})",
        ago(&stored, now_ms)
    );
    (TrafficPolicy::default(), Some(note))
}

/// `12.3s ago (expires_at 1700000000000)`: how long ago `policy` expired, at `now_ms`.
fn ago(policy: &TrafficPolicy, now_ms: u64) -> String {
    let at = policy.expires_at.unwrap_or(0);
    let ms = now_ms.saturating_sub(at);
    format!("{:.1}s ago (expires_at {at})", ms as f64 / 1000.0)
}

/// Now, as Unix milliseconds (the unit of `expires_at`).
fn now_ms() -> anyhow::Result<u64> {
    expiry_in(Duration::ZERO)
}

/// Unix time in milliseconds `d` from now: the `expires_at` of `--for`.
fn expiry_in(d: Duration) -> anyhow::Result<u64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    u64::try_from((now + d).as_millis()).context("--for: too far in the future")
}

/// Parses `--for`: `30m`, `2h`, `90s`.
fn parse_for(s: &str) -> Result<Duration, String> {
    crate::http::api_v1::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("expected a duration like 90s, 30m or 2h, got {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> TrafficPolicy {
        TrafficPolicy::from_json(json.as_bytes()).unwrap()
    }

    fn dc(s: &str) -> DcName {
        DcName::parse(s).unwrap()
    }

    #[test]
    fn shift_replaces_the_same_pair_and_zero_removes() {
        let mut p = policy(r#"{"shifts": [{"from_dc": "a", "to_dc": "b", "percent": 10}]}"#);
        set_shift(&mut p, &dc("a"), &dc("b"), 30);
        assert_eq!(
            serde_json::to_value(&p.shifts).unwrap(),
            json!([{"from_dc": "a", "to_dc": "b", "percent": 30}])
        );
        set_shift(&mut p, &dc("a"), &dc("c"), 5);
        assert_eq!(p.shifts.len(), 2);
        set_shift(&mut p, &dc("a"), &dc("b"), 0);
        assert_eq!(
            serde_json::to_value(&p.shifts).unwrap(),
            json!([{"from_dc": "a", "to_dc": "c", "percent": 5}])
        );
        p.validate().unwrap();
    }

    #[test]
    fn drain_keeps_other_override_fields() {
        let mut p = policy(r#"{"overrides": {"i1": {"weight": 5}}}"#);
        let id = |s| InstanceId::parse(s).unwrap();
        set_drain(&mut p, &id("i1"), true);
        assert_eq!(
            serde_json::to_value(&p.overrides[&id("i1")]).unwrap(),
            json!({"weight": 5, "drain": true})
        );
        set_drain(&mut p, &id("i2"), true);
        set_drain(&mut p, &id("i1"), false);
        assert!(!p.overrides[&id("i1")].drain);
        assert!(p.overrides[&id("i2")].drain);
    }

    #[test]
    fn a_policy_file_is_checked_with_the_field_named() {
        let p = parse_policy(
            r#"{"shifts": [{"from_dc": "a", "to_dc": "b", "percent": 40}]}"#,
            "p.json",
        )
        .unwrap();
        assert_eq!(p.shifts[0].percent, 40);
        let e = parse_policy(
            r#"{"shifts": [{"from_dc": "a", "to_dc": "b", "percent": 140}]}"#,
            "p.json",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("p.json: shifts[0].percent"), "{e}");
        let e = parse_policy(r#"{"shift": []}"#, "p.json")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.json: ") && e.contains("shift"), "{e}");
        let e = parse_policy("{", "-").unwrap_err().to_string();
        assert!(e.starts_with("-: "), "{e}");
    }

    #[test]
    fn an_expired_policy_is_dropped_whole_and_said() {
        let stored = policy(
            r#"{"shifts": [{"from_dc": "a", "to_dc": "b", "percent": 50}],
                "overrides": {"i1": {"weight": 5}, "i2": {"drain": true}},
                "prefer_same_dc": false, "expires_at": 10000}"#,
        );
        // Until `expires_at` it applies, so an edit keeps all of it.
        let (p, note) = in_force(stored.clone(), 9_999);
        assert_eq!((p, note), (stored.clone(), None));
        // From `expires_at` on, nothing of it is in force.
        let (p, note) = in_force(stored, 12_500);
        assert_eq!(p, TrafficPolicy::default());
        assert_eq!(
            note.as_deref(),
            Some(
                "the stored policy expired 2.5s ago (expires_at 10000) and no longer applied; \
                 starting from the defaults (dropped 1 shift, 2 instance overrides, \
                 prefer_same_dc=false)"
            )
        );
        let (_, note) = in_force(policy(r#"{"expires_at": 1}"#), 1);
        assert!(
            note.is_some_and(|n| n.ends_with("(dropped nothing but its expiry)")),
            "an expiry alone is said too"
        );
        let (p, note) = in_force(policy("{}"), u64::MAX);
        assert_eq!((p, note), (TrafficPolicy::default(), None), "no expiry");
    }

    #[test]
    fn for_takes_minutes_and_hours_and_refuses_zero() {
        assert_eq!(parse_for("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_for("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_for("0s").is_err());
        assert!(parse_for("soon").is_err());
        let at = expiry_in(Duration::from_secs(60)).unwrap();
        let now = expiry_in(Duration::ZERO).unwrap();
        assert!((59_000..=61_000).contains(&(at - now)), "{at} {now}");
    }
}
