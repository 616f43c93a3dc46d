//! Sockets and tasks: binds the DNS listeners (one `SO_REUSEPORT` UDP socket per worker and
//! one TCP listener on the same port) and the HTTP one, starts the mirror, rebuilds the
//! [`Zone`] each time the mirror publishes, and runs the UDP worker threads (`udp`) and the
//! TCP task (`tcp`) until shutdown.
//!
//! The query path never reaches the store: the handler reads the zone from an `ArcSwap`, and
//! only the mirror's one watch talks to pyxis. While the store is unreachable the last zone
//! keeps answering and `/metrics` shows the staleness.

use std::net::{SocketAddr, TcpListener as StdTcpListener, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use ns_core::{Mirror, Zone, ZoneConfig};
use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::stats::Stats;
use crate::{metrics, tcp, udp};
/// Receive buffer of each UDP socket, so bursts are queued rather than dropped.
const UDP_RECV_BUFFER: usize = 4 << 20;
/// Attempts to find a port free for both UDP and TCP when the port asked for is 0.
const BIND_ATTEMPTS: usize = 20;

/// The DNS sockets, bound.
#[derive(Debug)]
pub struct DnsListeners {
    /// UDP sockets sharing one port (`SO_REUSEPORT`), one per worker.
    pub udp: Vec<StdUdpSocket>,
    /// The TCP listener on the same port.
    pub tcp: StdTcpListener,
}

impl DnsListeners {
    /// The address both listen on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Binds `sockets` UDP sockets and a TCP listener on `addr`; with port 0, on one port that is
/// free for both.
pub fn bind_dns(addr: SocketAddr, sockets: usize) -> anyhow::Result<DnsListeners> {
    let mut last = None;
    for _ in 0..BIND_ATTEMPTS {
        match bind_once(addr, sockets.max(1)) {
            Ok(l) => return Ok(l),
            Err(e) if addr.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse => {
                last = Some(e);
            }
            Err(e) => return Err(e).with_context(|| format!("listen on {addr}")),
        }
    }
    Err(anyhow::anyhow!(
        "listen on {addr}: no port free for both UDP and TCP in {BIND_ATTEMPTS} attempts: {last:?}"
    ))
}

fn bind_once(addr: SocketAddr, sockets: usize) -> std::io::Result<DnsListeners> {
    let first = udp_socket(addr)?;
    let bound = first.local_addr()?;
    let mut udp = vec![first];
    for _ in 1..sockets {
        udp.push(udp_socket(bound)?);
    }
    let tcp = Socket::new(
        Domain::for_address(bound),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    tcp.set_reuse_address(true)?;
    tcp.set_nonblocking(true)?;
    tcp.bind(&bound.into())?;
    tcp.listen(1024)?;
    Ok(DnsListeners {
        udp,
        tcp: tcp.into(),
    })
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<StdUdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    // A smaller buffer than asked for is fine; the kernel caps it at rmem_max.
    let _ = s.set_recv_buffer_size(UDP_RECV_BUFFER);
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Runs the gateway on bound listeners until `shutdown` is cancelled.
pub async fn serve(
    config: Config,
    dns: DnsListeners,
    http: Option<StdTcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let _ = metrics::handle();
    let mirror = Arc::new(
        Mirror::for_store(
            config.store.clone(),
            config.ca.as_deref(),
            config.token.as_deref(),
        )
        .context("--store")?,
    );
    let zone_config = ZoneConfig {
        origin: config.zone.clone(),
        ttl: config.ttl,
        max_answers: config.max_answers,
    };
    let zone = Arc::new(ArcSwap::from_pointee(Zone::new(
        zone_config.clone(),
        mirror.snapshot(),
    )));
    tokio::spawn(follow_mirror(
        Arc::clone(&mirror),
        Arc::clone(&zone),
        zone_config,
        shutdown.clone(),
    ));

    let addr = dns.local_addr()?;
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let workers = udp::spawn(dns.udp, &zone, || stats.worker(), &stop).context("udp workers")?;
    let tcp_listener = tokio::net::TcpListener::from_std(dns.tcp)?;
    let tcp = tokio::spawn(tcp::serve(
        tcp_listener,
        Arc::clone(&zone),
        stats.worker(),
        shutdown.clone(),
    ));
    tracing::info!(zone = %config.zone, threads = workers.len(), "listening dns-udp={addr}");
    tracing::info!("listening dns-tcp={addr}");
    if let Some(http) = http {
        let listener = tokio::net::TcpListener::from_std(http)?;
        tracing::info!("listening http={}", listener.local_addr()?);
        let (m, s, stop) = (Arc::clone(&mirror), Arc::clone(&stats), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(listener, m, s, stop).await {
                tracing::error!(error = %e, "http listener failed");
            }
        });
    }
    shutdown.cancelled().await;
    tracing::info!("shutting down");
    stop.store(true, Ordering::Relaxed);
    let _ = tcp.await;
    // Workers notice the flag within their read timeout.
    tokio::task::spawn_blocking(move || {
        for w in workers {
            let _ = w.join();
        }
    })
    .await
    .context("udp workers")?;
    Ok(())
}

/// Rebuilds the zone from every snapshot the mirror publishes.
/// The mirror of the store, with `Mirror::for_endpoints`'s client settings plus the
/// ACL token when one is configured.
async fn follow_mirror(
    mirror: Arc<Mirror>,
    zone: Arc<ArcSwap<Zone>>,
    config: ZoneConfig,
    shutdown: CancellationToken,
) {
    let mut snapshots = mirror.subscribe();
    loop {
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return;
                }
                let snap = Arc::clone(&snapshots.borrow_and_update());
                tracing::debug!(revision = snap.revision, "zone rebuilt");
                zone.store(Arc::new(Zone::new(config.clone(), snap)));
            }
            () = shutdown.cancelled() => return,
        }
    }
}
