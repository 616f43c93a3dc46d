//! `pyxis acl bootstrap | token create|list|revoke | audit | whoami`.
//!
//! `bootstrap` and `token create` print the secret alone on stdout and the details on
//! stderr, so that `TOKEN=$(pyxis acl token create --role read)` captures just the
//! secret. The server checks every rule; this module only parses and prints.

use anyhow::Context as _;
use clap::Subcommand;
use pyxis_client::Client;
use pyxis_client::api::{Role, TokenCreateRequest, TokenCreated, TokenInfo};

use super::{note, opt, print, table};

/// ACL subcommands.
#[derive(Debug, Subcommand)]
pub enum AclCmd {
    /// Turn ACLs on and print the first admin token (once per cluster).
    Bootstrap,
    /// Create, list or revoke tokens (admin token needed).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Show the audit history of operator and admin changes, newest last.
    Audit {
        /// Show only the newest N entries.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Show the token this CLI sends (role, node, accessor, description).
    Whoami,
}

/// Token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token and print its secret.
    Create {
        /// read, register, operator or admin.
        #[arg(long)]
        role: Role,
        /// The node a register token is bound to (required for register, refused otherwise).
        #[arg(long)]
        node: Option<String>,
        /// Who holds it; shown in the audit history.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List tokens (accessors, never secrets).
    List,
    /// Revoke a token by its secret or accessor.
    Revoke {
        /// The token's secret or accessor.
        #[arg(value_name = "TOKEN_OR_ACCESSOR")]
        which: String,
    },
}

/// Runs one ACL subcommand.
pub(crate) async fn run(client: &Client, cmd: AclCmd) -> anyhow::Result<()> {
    match cmd {
        AclCmd::Bootstrap => {
            let created = client.acl_bootstrap().await.context("acl bootstrap")?;
            created_token(&created)
        }
        AclCmd::Token(TokenCmd::Create {
            role,
            node,
            description,
        }) => {
            let request = TokenCreateRequest {
                role,
                node,
                description,
                secret: None,
            };
            let created = client
                .acl_token_create(&request)
                .await
                .context("acl token create")?;
            created_token(&created)
        }
        AclCmd::Token(TokenCmd::List) => {
            let list = client.acl_tokens().await.context("acl token list")?;
            let rows: Vec<Vec<String>> = list.tokens.iter().map(token_row).collect();
            print(table(
                &["ACCESSOR", "ROLE", "NODE", "CREATED_MS", "DESCRIPTION"],
                &rows,
            ))
        }
        AclCmd::Token(TokenCmd::Revoke { which }) => {
            let revoked = client
                .acl_token_revoke(&which)
                .await
                .context("acl token revoke")?;
            print(format!("revoked {}\n", revoked.accessor))
        }
        AclCmd::Audit { limit } => {
            let list = client.audit(limit).await.context("acl audit")?;
            let mut out = String::new();
            for e in &list.entries {
                let who = match &e.actor.accessor {
                    Some(a) => format!("{} ({a})", e.actor.description),
                    None => e.actor.description.clone(),
                };
                out.push_str(&format!(
                    "rev={} time_ms={} who={who} what={}\n",
                    e.revision, e.time_ms, e.what
                ));
                for c in &e.changes {
                    out.push_str(&format!(
                        "  {}: {} -> {}\n",
                        c.key,
                        opt(c.before.as_deref()),
                        opt(c.after.as_deref())
                    ));
                }
                if e.more > 0 {
                    out.push_str(&format!("  ... and {} more keys\n", e.more));
                }
            }
            print(out)
        }
        AclCmd::Whoami => {
            let me = client.acl_token_self().await.context("acl whoami")?;
            print(table(
                &["ACCESSOR", "ROLE", "NODE", "CREATED_MS", "DESCRIPTION"],
                &[token_row(&me)],
            ))
        }
    }
}

/// The secret alone on stdout (for `$(...)`), its details on stderr.
fn created_token(created: &TokenCreated) -> anyhow::Result<()> {
    let t = &created.token;
    let details = format!(
        "token accessor={} role={} node={} description={:?}\n",
        t.accessor,
        t.role,
        opt(t.node.as_deref()),
        t.description
    );
    note(details)?;
    print(format!("{}\n", created.secret))
}

fn token_row(t: &TokenInfo) -> Vec<String> {
    vec![
        t.accessor.clone(),
        t.role.to_string(),
        opt(t.node.as_deref()),
        t.created_at_ms.to_string(),
        t.description.clone(),
    ]
}
