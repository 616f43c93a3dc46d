//! The operator CLI's client subcommands: `pyxis kv`, `lease`, `service`, `traffic`, `agents`,
//! `members`, `status`, `snapshot` and `acl` (and the offline `pyxis tls gen`, module `tls`).
//!
//! Each subcommand is a clap derive type plus an async `run` that talks to a running
//! cluster through [`pyxis_client::Client`] and prints plain text to stdout. Parsing the
//! top-level command line, logging and the exit code live in `main.rs`. The flags of
//! `pyxis server` (module `server`) and the offline `snapshot restore` belong to the
//! server side.
//!
//! Wiring in `main.rs` (flatten both, so `--endpoints` works before or after the subcommand):
//!
//! ```text
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     endpoints: pyxis::cli::EndpointsArg,
//!     #[command(subcommand)]
//!     command: Command,
//! }
//! #[derive(Subcommand)]
//! enum Command {
//!     Server(ServerArgs),
//!     #[command(flatten)]
//!     Client(pyxis::cli::ClientCommand),
//! }
//! // Command::Client(cmd) => pyxis::cli::run(cmd, cli.endpoints).await,
//! ```
//!
//! [`run`] returns errors with context naming the operation and key (`put /a: 409
//! compare_failed: ...`); `main` should print them as `error: {err:#}` and exit with 1.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use pyxis_client::{Client, ClientOptions};

mod acl;
mod agents;
mod kv;
mod lease;
mod members;
pub mod server;
mod service;
mod snapshot;
mod status;
pub mod tls;
mod traffic;

pub use acl::AclCmd;
pub use agents::AgentsArgs;
pub use kv::KvCmd;
pub use lease::LeaseCmd;
pub use members::MembersCmd;
pub use service::ServiceCmd;
pub use snapshot::SnapshotCmd;
pub use traffic::TrafficCmd;

/// The global `--endpoints` option of the client subcommands.
#[derive(Debug, Clone, Args)]
pub struct EndpointsArg {
    /// Store nodes to talk to: comma-separated `host:port`, `http://host:port` or
    /// `https://host:port` (a node started with `--tls-cert`; see `--ca`).
    #[arg(
        long,
        global = true,
        env = "PYXIS_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7070"
    )]
    pub endpoints: Vec<String>,
    /// PEM file of the CA that signed the nodes' certificates, for `https://` endpoints
    /// (`pyxis tls gen` writes `ca.pem`); without it the system's roots are trusted.
    #[arg(long, global = true, env = "PYXIS_CA", value_name = "PATH")]
    pub ca: Option<std::path::PathBuf>,
    /// ACL token sent as `Authorization: Bearer` (needed once ACLs are bootstrapped).
    #[arg(long, global = true, env = "PYXIS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// The subcommands that talk to a running cluster over HTTP.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Read and write keys.
    #[command(subcommand)]
    Kv(KvCmd),
    /// List the cluster's members, or add or remove one.
    Members {
        /// What to do; without one, the members are listed.
        #[command(subcommand)]
        command: Option<MembersCmd>,
    },
    /// Grant, keep alive, inspect or revoke leases.
    #[command(subcommand)]
    Lease(LeaseCmd),
    /// List services, or show one with its instances.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Show or change a service's traffic policy (gray weights, shifts, drains).
    #[command(subcommand)]
    Traffic(TrafficCmd),
    /// Show every endpoint's own status, and the leader and term they report.
    Status,
    /// List every agent: node, datacenter, last contact, mirror revision, services' states.
    Agents(AgentsArgs),
    /// Save a snapshot of the store to a file.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// Bootstrap ACLs, manage tokens, read the audit history.
    #[command(subcommand)]
    Acl(AclCmd),
}

/// Runs one client subcommand against `target` (`--endpoints`, `--ca`, `--token`).
pub async fn run(cmd: ClientCommand, target: EndpointsArg) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Kv(cmd) => kv::run(&connect(&target)?, cmd).await,
        ClientCommand::Members { command } => members::run(&connect(&target)?, command).await,
        ClientCommand::Lease(cmd) => lease::run(&connect(&target)?, cmd).await,
        ClientCommand::Service(cmd) => service::run(&connect(&target)?, cmd).await,
        ClientCommand::Traffic(cmd) => traffic::run(&connect(&target)?, cmd).await,
        ClientCommand::Status => status::run(&connect(&target)?, &target.endpoints).await,
        ClientCommand::Agents(args) => agents::run(&connect(&target)?, args).await,
        ClientCommand::Snapshot(cmd) => snapshot::run(cmd, &target).await,
        ClientCommand::Acl(cmd) => acl::run(&connect(&target)?, cmd).await,
    }
}

/// Builds the client; nothing is sent until the first call.
///
/// A person is waiting on the other end, so a call gives up after 5 s of retrying (the
/// library default is 10 s): enough to ride out an election, short enough to learn quickly
/// that every endpoint is down.
fn connect(target: &EndpointsArg) -> anyhow::Result<Client> {
    let mut options = ClientOptions::default().retry_budget(Duration::from_secs(5));
    if let Some(ca) = &target.ca {
        options = options.ca_file(ca);
    }
    if let Some(t) = &target.token {
        options = options.token(t.clone());
    }
    Client::with_options(target.endpoints.clone(), options).map_err(|e| match e {
        pyxis_client::Error::Tls(m) => anyhow::anyhow!("--ca: {m}"),
        other => anyhow::Error::new(other).context("--endpoints"),
    })
}

/// Writes `text` to stdout in one piece.
///
/// `writeln!` on a locked handle rather than `println!`, which panics when the reader has
/// gone away: a closed pipe (`pyxis kv ls / | head -1`) ends the output quietly instead.
fn print(text: impl AsRef<[u8]>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_ref()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

/// Writes a remark for the operator to stderr, keeping stdout for the result alone (so
/// `$(pyxis ...)` captures only the result).
fn note(text: impl AsRef<[u8]>) -> anyhow::Result<()> {
    std::io::stderr()
        .lock()
        .write_all(text.as_ref())
        .context("writing to stderr")
}

/// Lays out rows under a header in left-aligned columns two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(&widths) {
            line.push_str(&format!("{cell:<w$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Shows an optional number, `-` when absent.
fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests;
