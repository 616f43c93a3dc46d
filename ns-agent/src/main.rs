//! `ns-agent`: run the per-host agent, check description files (`validate`), ask a running
//! agent (`status`, `maint`), or try a template (`render --once`). Exit codes: 0 ok, 1 failure, 2 bad config. The CLI's types and
//! the one-shot commands live in `ns_agent::cli`.

use std::process::ExitCode;

use clap::Parser as _;
use ns_agent::cli::Cli;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any reqwest client is built: reqwest's rustls has no provider of its own.
    pyxis_client::tls::install_crypto_provider();
    // hickory's resolver logs at info per forwarded query; at that level logging costs more than answering.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,hickory_net=warn,hickory_resolver=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let config = ns_agent::AgentConfig::load(&cli.config);
    // One thread: the agent waits on scripts and the store, it does not compute. A single
    // thread also spares every fork the cross-CPU TLB work of a multi-threaded parent.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e.into(), 1),
    };
    if let Some(cmd) = cli.command {
        // validate needs no config; status and maint take the API address from it.
        let http = cli
            .http
            .or_else(|| config.as_ref().ok().map(|c| c.http.to_string()));
        let http = http.unwrap_or_else(|| "127.0.0.1:8500".into());
        let env = ns_agent::cli::RenderEnv {
            config: config.ok(),
            store: cli.store.clone(),
            token: cli.token.clone(),
        };
        let ok = runtime.block_on(ns_agent::cli::oneshot(cmd, &http, env));
        return if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    let mut config = match config {
        Ok(c) => c,
        Err(e) => return fail(&e.into(), 2),
    };
    if let Some(store) = cli.store.clone() {
        config.store = store;
    }
    if let Some(token) = cli.token.clone() {
        config.token = Some(token);
    }
    if cli.check_config {
        return ExitCode::SUCCESS;
    }
    let options = ns_agent::RunOptions {
        config_path: Some(cli.config),
        store_override: cli.store,
        stop_services_on_exit: cli.stop_services_on_exit,
    };
    let r = runtime.block_on(async {
        let shutdown = ns_agent::shutdown_on_signals()?;
        ns_agent::run(config, options, shutdown).await
    });
    r.map_or_else(|e| fail(&e, 1), |()| ExitCode::SUCCESS)
}

fn fail(e: &anyhow::Error, code: u8) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::from(code)
}
