//! `dns-gateway`: authoritative DNS for the pyxis zone. Parses the flags, sets up logging and
//! calls [`dns_gateway::run`]; everything else lives in the library.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use dns_gateway::config::{Cli, Config};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any reqwest client is built: reqwest's rustls has no provider of its own.
    pyxis_client::tls::install_crypto_provider();
    // Nothing logs per query at info, so info costs nothing on the query path.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = Config::from(cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e.into()),
    };
    let r = runtime.block_on(async {
        let shutdown = dns_gateway::shutdown_on_signals()?;
        dns_gateway::run(config, shutdown).await
    });
    r.map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS)
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::from(1)
}
