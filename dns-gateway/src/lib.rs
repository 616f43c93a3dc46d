//! `dns-gateway`: authoritative DNS for the pyxis zone (default `ns.corp`), any number of
//! stateless replicas, each answering from its own live mirror of the store.
//!
//! Modules:
//! - [`config`]: the command line and the [`Config`] it becomes.
//! - [`server`]: sockets (`SO_REUSEPORT` UDP, TCP, HTTP), the mirror and the zone rebuilds.
//! - [`udp`]: one blocking worker thread per UDP socket around `ns_core::zone::packet`.
//! - [`mmsg`]: batched datagram I/O (`recvmmsg` / `sendmmsg`), the crate's only unsafe code.
//! - [`tcp`]: DNS over TCP, one task per connection, same pure path.
//! - [`stats`]: per-worker query counters, summed when `/metrics` is scraped.
//! - [`metrics`]: the Prometheus recorder, `/metrics` and `/healthz`.
//!
//! What a name means, which records and which rcode answer it, is `ns_core::zone`'s, so the
//! agent's local DNS gives the same answers; this crate adds only the wire and the process.

pub mod config;
pub mod metrics;
pub mod mmsg;
pub mod server;
pub mod stats;
pub mod tcp;
pub mod udp;

use std::net::TcpListener;

use anyhow::Context as _;
pub use config::Config;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A token cancelled on SIGTERM or SIGINT.
pub fn shutdown_on_signals() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let t = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
        t.cancel();
    });
    Ok(token)
}

/// Binds the listeners `config` names and runs the gateway until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let dns = server::bind_dns(config.listen, config.threads)?;
    let http = match config.http {
        Some(addr) => {
            let l =
                TcpListener::bind(addr).with_context(|| format!("listen on {addr} (--http)"))?;
            l.set_nonblocking(true)?;
            Some(l)
        }
        None => None,
    };
    server::serve(config, dns, http, shutdown).await
}
