//! `pyxis agents [--node NODE] [--json]`: every agent's status record and last contact.
//!
//! Reads `GET /v1/agents` (answered by the leader, which knows when each agent's lease was
//! last kept alive) and prints one row per agent, sorted by node as the server sends them;
//! `--json` prints the server's answer as is. The records themselves are `ns_core::AgentRecord`,
//! written by each agent's publisher.

use std::collections::BTreeMap;

use anyhow::Context as _;
use clap::Args;
use pyxis_client::Client;
use serde_json::Value;

use super::service::text;
use super::{print, table};

/// `pyxis agents`
#[derive(Debug, Args)]
pub struct AgentsArgs {
    /// Only this agent's node.
    #[arg(long)]
    pub node: Option<String>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `pyxis agents`.
pub(crate) async fn run(client: &Client, args: AgentsArgs) -> anyhow::Result<()> {
    let reply = client
        .agents(args.node.as_deref())
        .await
        .context("list agents")?;
    if args.json {
        return print(format!("{reply:#}\n"));
    }
    print(render(&reply))
}

/// The table of a `GET /v1/agents` answer.
fn render(reply: &Value) -> String {
    let rows: Vec<Vec<String>> = reply["agents"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|a| {
            vec![
                text(&a["node"]),
                text(&a["datacenter"]),
                millis(&a["last_contact_ms"], " ago"),
                text(&a["mirror_revision"]),
                millis(&a["staleness_ms"], ""),
                services(&a["services"]),
            ]
        })
        .collect();
    table(
        &[
            "NODE",
            "DC",
            "LAST CONTACT",
            "REVISION",
            "STALENESS",
            "SERVICES",
        ],
        &rows,
    )
}

/// `1.2s ago` for a count of milliseconds; `-` when absent.
fn millis(v: &Value, suffix: &str) -> String {
    match v.as_u64() {
        Some(ms) if ms < 1000 => format!("{ms}ms{suffix}"),
        Some(ms) => format!("{:.1}s{suffix}", ms as f64 / 1000.0),
        None => "-".to_owned(),
    }
}

/// `2 passing, 1 critical`: the services counted by state, states by name; `-` for none.
fn services(v: &Value) -> String {
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for s in v.as_array().map(Vec::as_slice).unwrap_or_default() {
        *by_state.entry(text(&s["state"])).or_default() += 1;
    }
    if by_state.is_empty() {
        return "-".to_owned();
    }
    by_state
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_table_counts_services_by_state() {
        let reply = json!({"agents": [
            {"node": "h1", "datacenter": "dc1", "last_contact_ms": 1250, "mirror_revision": 42,
             "staleness_ms": 80, "services": [
                {"name": "web", "state": "passing"}, {"name": "db", "state": "critical"},
                {"name": "api", "state": "passing"}]},
            {"node": "h2", "datacenter": "dc2", "last_contact_ms": null, "mirror_revision": 7,
             "staleness_ms": null, "services": []}
        ]});
        let out = render(&reply);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("NODE  DC   LAST CONTACT"), "{out}");
        assert!(
            lines[1].contains("1.2s ago") && lines[1].ends_with("1 critical, 2 passing"),
            "{out}"
        );
        assert!(
            lines[2].starts_with("h2") && lines[2].ends_with('-'),
            "{out}"
        );
    }
}
