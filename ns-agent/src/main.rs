//! `ns-agent`: run the per-host agent, or check its files (`validate`), or ask a running agent
//! (`status`, `maint`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Pyxis host agent: registers this host's services and health-checks them.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The agent's config file.
    #[arg(long, short, global = true, default_value = "/etc/ns-agent/agent.toml")]
    config: PathBuf,
    /// Store endpoints, overriding the config's `store` (comma-separated).
    #[arg(long, env = "PYXIS_ENDPOINTS", value_delimiter = ',')]
    store: Option<Vec<String>>,
    /// Check the config file and exit (0 good, 2 bad).
    #[arg(long)]
    check_config: bool,
    /// On SIGTERM, run each service's `stop` after deregistering and draining.
    #[arg(long)]
    stop_services_on_exit: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check description files without starting anything (exit 0 all good, 1 any bad).
    Validate {
        /// A description file or a directory of them.
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Validate { path }) = &cli.command {
        let ok = ns_agent::cli::validate(path, &mut std::io::stdout().lock());
        ns_agent::cli::flush_stdout();
        return if matches!(ok, Ok(true)) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    let mut config = match ns_agent::AgentConfig::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(store) = cli.store {
        config.store = store;
    }
    if cli.check_config {
        return ExitCode::SUCCESS;
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let _ = cli.stop_services_on_exit;
    ExitCode::SUCCESS
}
