//! The agent's one-shot commands: `validate`, `status` and `maint`.
//!
//! `validate` checks description files without starting anything; `status` and `maint` talk to
//! a running agent over its local HTTP API (`http_api`), so they need no store access. Running
//! the agent itself is [`crate::run`].

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::service_file;
use crate::status::Report;

/// Pyxis host agent: registers this host's services and health-checks them.
#[derive(Debug, Parser)]
#[command(name = "ns-agent", version, about)]
pub struct Cli {
    /// The agent's config file.
    #[arg(long, short, global = true, default_value = "/etc/ns-agent/agent.toml")]
    pub config: PathBuf,
    /// Store endpoints, overriding the config's `store` (comma-separated).
    #[arg(long, env = "PYXIS_ENDPOINTS", value_delimiter = ',')]
    pub store: Option<Vec<String>>,
    /// The store's ACL token, overriding the config's `token`.
    #[arg(long, global = true, env = "PYXIS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Check the config file and exit (0 good, 2 bad).
    #[arg(long)]
    pub check_config: bool,
    /// On SIGTERM, run each service's `stop` after deregistering and draining.
    #[arg(long)]
    pub stop_services_on_exit: bool,
    /// The running agent's API address for `status` and `maint` (default: the config's `http`).
    #[arg(long, global = true)]
    pub http: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check description files without starting anything (exit 0 all good, 1 any bad).
    Validate {
        /// A description file or a directory of them.
        path: PathBuf,
    },
    /// Show the running agent's services as a table.
    Status {
        /// Print the raw JSON of `GET /v1/agent/status`.
        #[arg(long)]
        json: bool,
    },
    /// Render a template once against the live store and print it (nothing is written).
    Render {
        /// Required: render once to stdout (the running agent renders continuously).
        #[arg(long)]
        once: bool,
        /// The Tera template.
        file: PathBuf,
        /// The datacenter `route()` routes for (default: the config's).
        #[arg(long)]
        dc: Option<String>,
    },
    /// Take a service out of traffic (`on`) or back in (`off`), without stopping it.
    Maint {
        /// The service.
        name: String,
        /// `on` or `off`.
        mode: Mode,
        /// Why (shown in status and in the instance's `meta.maintenance_reason`).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// What `render --once` takes besides its own arguments: the agent's config if it loads,
/// and the store endpoints given on the command line.
#[derive(Debug, Clone, Default)]
pub struct RenderEnv {
    /// The agent's config, if it could be read.
    pub config: Option<crate::AgentConfig>,
    /// `--store` / `PYXIS_ENDPOINTS`.
    pub store: Option<Vec<String>>,
    /// `--token` / `PYXIS_TOKEN`.
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Mode {
    /// Out of traffic.
    On,
    /// Back in traffic.
    Off,
}

/// `ns-agent status` or `ns-agent maint`: runs the one-shot command against the agent at
/// `http` and returns whether it succeeded (errors are printed to stderr).
pub async fn oneshot(cmd: Command, http: &str, env: RenderEnv) -> bool {
    let out = &mut std::io::stdout().lock();
    let r =
        match cmd {
            Command::Render { once, file, dc } => {
                render_once(once, &file, dc.as_deref(), env, out).await
            }
            Command::Status { json } => status(http, json, out).await,
            Command::Maint { name, mode, reason } => {
                maint(
                    http,
                    &name,
                    matches!(mode, Mode::On),
                    reason.as_deref(),
                    out,
                )
                .await
            }
            Command::Validate { path } => validate(&path, out)
                .map_err(anyhow::Error::from)
                .and_then(|ok| {
                    if ok {
                        Ok(())
                    } else {
                        anyhow::bail!("{}: invalid", path.display())
                    }
                }),
        };
    if let Err(e) = &r {
        eprintln!("error: {e:#}");
    }
    r.is_ok()
}

/// `ns-agent validate DIR|FILE`: writes every problem (file, line, field) to `out`; returns
/// whether every file is good.
pub fn validate(path: &Path, out: &mut impl std::io::Write) -> std::io::Result<bool> {
    let (good, errors) = service_file::validate_path(path);
    for e in &errors {
        writeln!(out, "{e}")?;
    }
    for s in &good {
        writeln!(out, "{}: ok ({})", s.path.display(), s.name)?;
    }
    if good.is_empty() && errors.is_empty() {
        writeln!(out, "{}: no description files (*.toml)", path.display())?;
    }
    Ok(errors.is_empty())
}

/// `ns-agent render --once FILE [--dc DC]`: the template rendered against the live store.
pub async fn render_once(
    once: bool,
    file: &Path,
    dc: Option<&str>,
    env: RenderEnv,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    if !once {
        anyhow::bail!("render needs --once (the running agent renders its templates itself)");
    }
    let c = env.config.as_ref();
    let who = crate::render::once::who(
        c.map(|c| c.node.as_str()),
        c.map(|c| c.datacenter.as_str()),
        dc,
        c.map_or("/config/", |c| c.kv_prefix.as_str()),
    )?;
    let store = env
        .store
        .or_else(|| c.map(|c| c.store.clone()))
        .unwrap_or_else(|| vec!["127.0.0.1:7070".into()]);
    let mut options = c.map_or_else(
        || crate::AgentConfig::default().store_options(),
        crate::AgentConfig::store_options,
    );
    if let Some(token) = env.token {
        options = options.token(token);
    }
    let text = crate::render::once::render_once(
        file,
        store,
        options,
        who,
        std::time::Duration::from_secs(10),
    )
    .await?;
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Flushes stdout, ignoring a closed pipe (`ns-agent status | head`).
pub fn flush_stdout() {
    let _ = std::io::stdout().flush();
}

/// `ns-agent status`: the running agent's `GET /v1/agent/status` as a table (or raw JSON).
pub async fn status(http: &str, json: bool, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let url = format!("http://{http}/v1/agent/status");
    let body = local_client()?
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?
        .error_for_status()?
        .text()
        .await?;
    if json {
        writeln!(out, "{body}")?;
        return Ok(());
    }
    let r: Report =
        serde_json::from_str(&body).map_err(|e| anyhow::anyhow!("{url}: unexpected reply: {e}"))?;
    let s = &r.store;
    writeln!(
        out,
        "node {} (datacenter {})  store: {}  revision {}  staleness {}  lease {}",
        r.node,
        r.datacenter,
        if s.connected {
            "connected"
        } else {
            "DISCONNECTED"
        },
        s.revision,
        s.staleness_ms.map_or("-".into(), |m| format!("{m}ms")),
        s.lease.map_or("-".into(), |l| l.to_string()),
    )?;
    if let Some(d) = &r.dns {
        writeln!(
            out,
            "dns {}  revision {}  staleness {}  queries {}  forwarded {} ({} from cache)  refused {} ({} by dns_allow)",
            d.listen,
            d.mirror_revision,
            d.staleness_seconds
                .map_or("-".into(), |v| format!("{v:.1}s")),
            d.queries,
            d.forwarded,
            d.cache_hits,
            d.refused,
            d.refused_acl,
        )?;
    }
    let rows: Vec<[String; 6]> = r
        .services
        .iter()
        .map(|v| {
            let last = v.last_check.as_ref().map_or("-".into(), |c| {
                format!(
                    "{} ({}ms)",
                    c.exit.map_or("killed".into(), |e| format!("exit {e}")),
                    c.duration_ms
                )
            });
            let note = match (&v.error, &v.maintenance_reason) {
                (Some(e), _) => format!(
                    "{}:{}: {}: {}",
                    e.file.display(),
                    e.line.map_or("-".into(), |l| l.to_string()),
                    e.field,
                    e.message
                ),
                (None, Some(m)) => format!("maintenance: {m}"),
                (None, None) => String::new(),
            };
            [
                v.name.clone(),
                v.instance_id.clone().unwrap_or_else(|| "-".into()),
                format!("{:?}", v.state).to_lowercase(),
                v.failures.to_string(),
                last,
                note,
            ]
        })
        .collect();
    let head = [
        "NAME",
        "INSTANCE",
        "STATE",
        "FAILURES",
        "LAST CHECK",
        "NOTE",
    ]
    .map(String::from);
    let mut widths = head.clone().map(|h| h.len());
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    for row in std::iter::once(&head).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

/// `ns-agent maint NAME on|off [--reason TEXT]` through the running agent's API.
pub async fn maint(
    http: &str,
    name: &str,
    enable: bool,
    reason: Option<&str>,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let mut url = format!(
        "http://{http}/v1/agent/maintenance/{}?enable={enable}",
        encode(name)
    );
    if let Some(r) = reason {
        url.push_str(&format!("&reason={}", encode(r)));
    }
    let resp = local_client()?
        .put(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let status = resp.status();
    let body = resp.text().await?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or(body);
        anyhow::bail!("{status}: {message}");
    }
    writeln!(
        out,
        "{name}: maintenance {}",
        if enable { "on" } else { "off" }
    )?;
    Ok(())
}

/// Percent-encodes everything but the unreserved characters of RFC 3986.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn local_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .build()?)
}
