//! `pyxis members [add ID ADDR | remove ID]`: the cluster's membership as a table.
//!
//! Listing goes through any node; changes are forwarded to the leader by the server, which
//! runs the Raft membership change. Only the HTTP calls are here, not the change itself.

use anyhow::Context as _;
use clap::Subcommand;
use pyxis_client::Client;
use pyxis_client::api::{ClusterInfo, NodeId};

use super::{opt, print, table};

/// `pyxis members ...`
#[derive(Debug, Subcommand)]
pub enum MembersCmd {
    /// Add node ID, serving at ADDR, to the cluster; print the new membership.
    Add {
        /// The new node's id.
        id: NodeId,
        /// Its `host:port` (API and Raft RPC).
        addr: String,
    },
    /// Remove node ID from the cluster; print the new membership.
    #[command(visible_alias = "rm")]
    Remove {
        /// The id of the node to remove.
        id: NodeId,
    },
}

/// Lists the members, or runs the change and lists the membership after it.
pub(crate) async fn run(client: &Client, cmd: Option<MembersCmd>) -> anyhow::Result<()> {
    let info = match cmd {
        None => client.cluster().await.context("list members")?,
        Some(MembersCmd::Add { id, addr }) => client
            .add_member(id, addr.clone())
            .await
            .with_context(|| format!("add member {id} at {addr}"))?,
        Some(MembersCmd::Remove { id }) => client
            .remove_member(id)
            .await
            .with_context(|| format!("remove member {id}"))?,
    };
    print(members_table(&info))
}

/// One row per member (its lag marked when it is behind), the leader marked with `*`, then
/// the leader and term.
pub(super) fn members_table(info: &ClusterInfo) -> String {
    let rows: Vec<Vec<String>> = info
        .members
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.addr.clone(),
                if m.voter { "yes" } else { "no" }.to_owned(),
                opt(m.applied),
                match m.lag {
                    Some(lag) if m.behind => format!("{lag} behind"),
                    lag => opt(lag),
                },
                if info.leader == Some(m.id) { "*" } else { "" }.to_owned(),
            ]
        })
        .collect();
    let mut out = table(&["ID", "ADDR", "VOTER", "APPLIED", "LAG", "LEADER"], &rows);
    match info.leader {
        Some(id) => out.push_str(&format!("leader {id} term {}\n", info.term)),
        None => out.push_str(&format!("no leader known, term {}\n", info.term)),
    }
    out
}
