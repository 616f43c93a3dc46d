//! `pyxis`: run a store node (`pyxis server`) or operate a cluster (`pyxis kv|members|status|snapshot|acl`).

use clap::{Parser, Subcommand};
use pyxis::cli::{ClientCommand, EndpointsArg, server::ServerArgs};
use tracing_subscriber::EnvFilter;

/// Pyxis replicated store: server and operator CLI.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    endpoints: EndpointsArg,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process, so the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run one store node.
    Server(ServerArgs),
    /// Make test TLS certificates.
    #[command(subcommand)]
    Tls(pyxis::cli::tls::TlsCmd),
    #[command(flatten)]
    Client(ClientCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Before any TLS config or reqwest client is built (see `pyxis_client::tls`).
    pyxis_client::tls::install_crypto_provider();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    // Before the runtime's threads start.
    pyxis::heap::return_large_blocks();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e.into()),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => pyxis::cli::server::run(args).await,
            Command::Tls(cmd) => pyxis::cli::tls::run(cmd),
            Command::Client(cmd) => pyxis::cli::run(cmd, cli.endpoints).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> std::process::ExitCode {
    eprintln!("error: {e:#}");
    std::process::ExitCode::FAILURE
}
