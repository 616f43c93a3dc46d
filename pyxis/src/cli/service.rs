//! `pyxis service ls|show`: the registered services and their instances.
//!
//! Reads go through the typed `/v1/services` endpoints, which validate what they return
//! against the naming schema; values are shown as the server sends them.

use anyhow::Context as _;
use clap::Subcommand;
use pyxis_client::Client;
use serde_json::Value;

use super::{print, table};

/// `pyxis service ...`
#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// List every service with its instance counts.
    Ls,
    /// Show a service's definition, traffic policy and instances.
    Show {
        /// The service name (`web`, `search.hotel`).
        name: String,
        /// Only instances in this datacenter.
        #[arg(long)]
        dc: Option<String>,
        /// Only instances that receive traffic (passing or warning).
        #[arg(long)]
        healthy: bool,
    },
}

/// Runs one `service` subcommand.
pub(crate) async fn run(client: &Client, cmd: ServiceCmd) -> anyhow::Result<()> {
    match cmd {
        ServiceCmd::Ls => {
            let list = client.services().await.context("list services")?;
            let rows: Vec<Vec<String>> = list
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|s| {
                    vec![
                        text(&s["name"]),
                        text(&s["instances"]),
                        text(&s["healthy"]),
                        if s["traffic"].as_bool() == Some(true) {
                            "yes"
                        } else {
                            "-"
                        }
                        .to_owned(),
                        text(&s["def"]["owner"]),
                    ]
                })
                .collect();
            print(table(
                &["NAME", "INSTANCES", "HEALTHY", "TRAFFIC", "OWNER"],
                &rows,
            ))
        }
        ServiceCmd::Show { name, dc, healthy } => {
            let def = client
                .service(&name)
                .await
                .with_context(|| format!("service {name}"))?;
            let traffic = client
                .traffic(&name)
                .await
                .with_context(|| format!("traffic {name}"))?;
            let instances = client
                .instances(&name, dc.as_deref(), healthy)
                .await
                .with_context(|| format!("instances of {name}"))?;
            let mut out = format!("service {name}\n");
            out.push_str(&format!("definition: {}\n", one_line(def.as_ref())));
            out.push_str(&format!("traffic:    {}\n", one_line(traffic.as_ref())));
            let rows: Vec<Vec<String>> = instances
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|i| {
                    vec![
                        text(&i["id"]),
                        format!("{}:{}", text(&i["address"]), text(&i["port"])),
                        text(&i["datacenter"]),
                        text(&i["version"]),
                        text(&i["weight"]),
                        text(&i["status"]),
                        text(&i["node"]),
                    ]
                })
                .collect();
            out.push_str(&table(
                &["ID", "ADDRESS", "DC", "VERSION", "WEIGHT", "STATUS", "NODE"],
                &rows,
            ));
            print(out)
        }
    }
}

/// A JSON scalar as plain text (`-` for null or missing).
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn one_line(v: Option<&Value>) -> String {
    v.map_or_else(|| "(none)".to_owned(), Value::to_string)
}
