//! `pyxis lease grant|keepalive|revoke|show`: leases from the command line.
//!
//! `keepalive` renews until interrupted (or once with `--once`), as an agent would; the
//! renewal logic itself is `pyxis_client::KeepAlive`.

use anyhow::Context as _;
use clap::Subcommand;
use pyxis_client::Client;

use super::print;

/// `pyxis lease ...`
#[derive(Debug, Subcommand)]
pub enum LeaseCmd {
    /// Grant a lease of TTL milliseconds and print its id.
    Grant {
        /// Time to live in milliseconds (500 to 86400000).
        ttl_ms: u64,
    },
    /// Keep lease ID alive until interrupted; exit 1 when it is lost.
    Keepalive {
        /// The lease.
        id: u64,
        /// Renew once and print the remaining TTL.
        #[arg(long)]
        once: bool,
    },
    /// End lease ID and delete every key bound to it.
    #[command(visible_alias = "rm")]
    Revoke {
        /// The lease.
        id: u64,
    },
    /// Print lease ID's TTL, remaining time and keys.
    Show {
        /// The lease.
        id: u64,
    },
}

/// Runs one `lease` subcommand.
pub(crate) async fn run(client: &Client, cmd: LeaseCmd) -> anyhow::Result<()> {
    match cmd {
        LeaseCmd::Grant { ttl_ms } => {
            let l = client.lease_grant(ttl_ms).await.context("lease grant")?;
            print(format!("lease {} ttl_ms {}\n", l.id, l.ttl_ms))
        }
        LeaseCmd::Keepalive { id, once: true } => {
            let r = client
                .lease_keepalive(id)
                .await
                .with_context(|| format!("lease keepalive {id}"))?;
            print(format!("lease {id} ttl_ms {}\n", r.ttl_ms))
        }
        LeaseCmd::Keepalive { id, once: false } => {
            let info = client
                .lease_info(id)
                .await
                .with_context(|| format!("lease {id}"))?;
            let mut keeper = client.keep_alive(id, info.ttl_ms);
            print(format!(
                "keeping lease {id} alive (ttl {} ms); Ctrl-C to stop\n",
                info.ttl_ms
            ))?;
            let lost = keeper.lost().await;
            anyhow::bail!("lease {id} lost: {lost:?}")
        }
        LeaseCmd::Revoke { id } => {
            let r = client
                .lease_revoke(id)
                .await
                .with_context(|| format!("lease revoke {id}"))?;
            print(format!(
                "revoked lease {id}: deleted {} revision {}\n",
                r.deleted, r.revision
            ))
        }
        LeaseCmd::Show { id } => {
            let l = client
                .lease_info(id)
                .await
                .with_context(|| format!("lease {id}"))?;
            let mut out = format!(
                "lease {} ttl_ms {} remaining_ms {}\n",
                l.id, l.ttl_ms, l.remaining_ms
            );
            for k in &l.keys {
                out.push_str(&format!("  {k}\n"));
            }
            print(out)
        }
    }
}
