//! The agent's local DNS (DNSd): the zone answered from the agent's mirror, every other name
//! forwarded to the upstreams, for the clients `dns_allow` admits.
//!
//! [`start`] binds UDP and TCP on `dns` (no server when `dns` is absent), keeps an
//! `ArcSwap<Zone>` rebuilt from each snapshot the mirror publishes, and runs the socket loops
//! on threads of their own (`server`). A query goes through `handler`: ACL (`acl`), then the
//! gateway's packet path (`ns_core::zone::packet::Responder`) with the agent's datacenter as
//! the client's and the host's own (advertised) address as its source, so every process on
//! the host gets the gray group the gateway would give the host itself; names outside the
//! zone go to `forward` and its `cache`, their replies encoded by `reply`. While the store is unreachable the last zone keeps answering; `stats` says how
//! stale it is in `/v1/agent/status` and `/metrics`. The names, records and rcodes are
//! `ns_core::zone`'s, shared with the gateway; nothing here knows about templates or the API.

pub mod acl;
pub mod cache;
pub mod forward;
pub mod handler;
pub mod reply;
pub mod server;
pub mod stats;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::Name;
use ipnet::IpNet;
use ns_core::routing::{ClientCtx, client_key_of_ip};
use ns_core::{DcName, Mirror, Zone, ZoneConfig};
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use acl::Acl;
use forward::Forwarder;
use handler::Handler;
use stats::{DnsView, Stats};

/// Most instances in one answer (the gateway's cap).
pub const MAX_ANSWERS: usize = 64;

/// Why the local DNS could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The address could not be bound.
    #[error("dns: cannot listen on {addr}: {source}")]
    Bind {
        /// The `dns` address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server's runtime or thread could not be made.
    #[error("dns: cannot start the server thread: {0}")]
    Thread(std::io::Error),
}

/// What the local DNS runs with, taken from [`AgentConfig`].
#[derive(Debug, Clone)]
pub struct DnsSettings {
    /// UDP and TCP address.
    pub listen: SocketAddr,
    /// Forwarding targets.
    pub upstreams: Vec<SocketAddr>,
    /// Clients allowed.
    pub allow: Vec<IpNet>,
    /// The zone's apex, fully qualified and lowercase.
    pub zone: Name,
    /// Zone TTL in seconds.
    pub ttl: u32,
    /// The host's own (advertised) address: the zone's answers are computed for a client
    /// there, as the gateway would answer the host.
    pub host: IpAddr,
}

impl DnsSettings {
    /// The settings of `config`, or `None` when it asks for no DNS server.
    pub fn of(config: &AgentConfig) -> Option<DnsSettings> {
        let listen = config.dns?;
        // The config was checked on load, so the zone parses; the fallback never applies.
        let zone = parse_zone(&config.dns_zone).unwrap_or_else(|_| Name::root());
        Some(DnsSettings {
            listen,
            upstreams: config.upstreams.clone(),
            allow: config.dns_allow.clone(),
            zone,
            ttl: u32::try_from(config.dns_ttl.as_secs()).unwrap_or(u32::MAX),
            host: config.advertise,
        })
    }
}

/// The running local DNS.
#[derive(Debug)]
pub struct Dnsd {
    addr: SocketAddr,
    stats: Arc<Stats>,
    stop: CancellationToken,
}

impl Dnsd {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `dns` object of the status report.
    pub fn view(&self, mirror: &Mirror) -> DnsView {
        self.stats.view(self.addr.to_string(), &mirror.status())
    }
}

impl Drop for Dnsd {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The client every query of this agent is answered for: its datacenter, and the key the
/// gateway gives a client at the host's own address.
pub fn client_of(datacenter: &DcName, host: IpAddr) -> ClientCtx {
    ClientCtx {
        dc: Some(datacenter.clone()),
        key: client_key_of_ip(host),
    }
}

/// Starts the local DNS; call inside the agent's runtime (the zone follows the mirror there).
/// `client` must be [`client_of`] the agent's datacenter and `settings.host`.
/// It stops when `shutdown` is cancelled or the returned [`Dnsd`] is dropped.
pub fn start(
    settings: DnsSettings,
    mirror: &Arc<Mirror>,
    client: ClientCtx,
    shutdown: &CancellationToken,
) -> Result<Dnsd, DnsError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let listeners = server::bind(settings.listen, cores).map_err(|source| DnsError::Bind {
        addr: settings.listen,
        source,
    })?;
    let addr = listeners.local_addr();
    let zone_config = ZoneConfig {
        origin: settings.zone.clone(),
        ttl: settings.ttl,
        max_answers: MAX_ANSWERS,
    };
    let zone = Arc::new(ArcSwap::from_pointee(Zone::new(
        zone_config.clone(),
        mirror.snapshot(),
    )));
    let stop = shutdown.child_token();
    tokio::spawn(follow_mirror(
        Arc::clone(mirror),
        Arc::clone(&zone),
        zone_config,
        stop.clone(),
    ));
    let stats = Arc::new(Stats::default());
    let acl = Acl::new(&settings.allow);
    let handler_stats = Arc::clone(&stats);
    let (upstreams, host) = (&settings.upstreams, settings.host);
    let make_handler = move || match Forwarder::new(upstreams, forward::CACHE_ENTRIES) {
        Ok(f) => Some(Handler::new(zone, client, host, acl, f, handler_stats)),
        Err(e) => {
            tracing::error!(error = %e, "dns: the forwarder could not be built; local dns off");
            None
        }
    };
    server::spawn(listeners, cores.min(2), make_handler, stop.clone()).map_err(DnsError::Thread)?;
    tracing::info!(zone = %settings.zone, upstreams = ?settings.upstreams, "listening dns-udp={addr}");
    tracing::info!("listening dns-tcp={addr}");
    Ok(Dnsd { addr, stats, stop })
}

/// Rebuilds the zone from every snapshot the mirror publishes.
async fn follow_mirror(
    mirror: Arc<Mirror>,
    zone: Arc<ArcSwap<Zone>>,
    config: ZoneConfig,
    stop: CancellationToken,
) {
    let mut snapshots = mirror.subscribe();
    loop {
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return;
                }
                let snap = Arc::clone(&snapshots.borrow_and_update());
                zone.store(Arc::new(Zone::new(config.clone(), snap)));
            }
            () = stop.cancelled() => return,
        }
    }
}

/// A zone name: DNS labels, made fully qualified and lowercase.
pub fn parse_zone(s: &str) -> Result<Name, String> {
    if s.trim_end_matches('.').is_empty() {
        return Err("must name a zone such as \"ns.corp\", not the root".into());
    }
    let mut name = Name::from_ascii(s.trim_end_matches('.'))
        .map_err(|e| format!("{s:?} is not a DNS name: {e}"))?
        .to_lowercase();
    if name.is_root() {
        return Err("must not be the root".into());
    }
    name.set_fqdn(true);
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_are_checked_and_normalised() {
        assert_eq!(parse_zone("NS.Corp.").unwrap().to_string(), "ns.corp.");
        assert!(parse_zone("").is_err());
        assert!(parse_zone("a..b").unwrap_err().contains("not a DNS name"));
    }

    #[test]
    fn every_process_of_a_host_is_one_client() {
        let dc = DcName::parse("dc1").unwrap();
        let host: IpAddr = "10.0.0.7".parse().unwrap();
        let c = client_of(&dc, host);
        assert_eq!(c.dc, Some(dc));
        assert_eq!(
            c.key,
            client_key_of_ip(host),
            "the gateway's key for the host"
        );
    }

    #[test]
    fn loopback_clients_are_the_host_others_themselves() {
        let host: IpAddr = "10.0.0.7".parse().unwrap();
        for local in ["127.0.0.1", "127.0.0.53", "::1"] {
            let peer: IpAddr = local.parse().unwrap();
            assert_eq!(handler::source_of(peer, host), host, "{local}");
        }
        let container: IpAddr = "172.17.0.2".parse().unwrap();
        assert_eq!(handler::source_of(container, host), container);
    }
}
