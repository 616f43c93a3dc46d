//! [`Forwarder`]: names outside the zone, asked of the configured upstreams through
//! hickory-resolver and kept in the agent's [`Cache`].
//!
//! The resolver's own cache is off (capacity 0) so that every answer goes through [`Cache`],
//! which counts its hits and keeps negative answers with the upstream's SOA. The resolver
//! still merges identical questions in flight and tries the upstreams in turn. Outcomes: the
//! upstream's records (NOERROR), NXDOMAIN or NODATA with the upstream's SOA in authority,
//! SERVFAIL when no upstream answered (timeout, refusal, garbage), REFUSED when no upstream is
//! configured. The zone's own names never come here (`handler` answers them from the mirror).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError, NoRecords};

use super::cache::{Cache, Forwarded};

/// Answers kept by the forwarder's cache.
pub const CACHE_ENTRIES: usize = 10_000;
/// Time one upstream gets to answer one attempt.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Forwards questions to the upstreams, through the cache.
#[derive(Debug)]
pub struct Forwarder {
    resolver: Option<TokioResolver>,
    cache: Cache,
}

impl Forwarder {
    /// A forwarder to `upstreams` (none: every question is refused). Call inside the tokio
    /// runtime that will run the lookups.
    pub fn new(upstreams: &[SocketAddr], cache_entries: usize) -> Result<Forwarder, NetError> {
        let resolver = if upstreams.is_empty() {
            None
        } else {
            let servers = upstreams
                .iter()
                .map(|u| {
                    let mut s = NameServerConfig::udp_and_tcp(u.ip());
                    for c in &mut s.connections {
                        c.port = u.port();
                    }
                    s
                })
                .collect();
            let config = ResolverConfig::from_name_servers(servers);
            let mut opts = ResolverOpts::default();
            opts.cache_size = 0;
            opts.timeout = UPSTREAM_TIMEOUT;
            opts.attempts = 1;
            opts.ndots = 0;
            opts.use_hosts_file = ResolveHosts::Never;
            opts.preserve_intermediates = true;
            opts.try_tcp_on_error = true;
            let builder =
                TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
                    .with_options(opts);
            Some(builder.build()?)
        };
        Ok(Forwarder {
            resolver,
            cache: Cache::new(cache_entries),
        })
    }

    /// Whether any upstream is configured (the replies' RA flag).
    pub fn enabled(&self) -> bool {
        self.resolver.is_some()
    }

    /// The answer to `name` `qtype`: from the cache while valid, else from the upstreams.
    pub async fn resolve(&self, name: &Name, qtype: RecordType) -> Forwarded {
        let Some(resolver) = &self.resolver else {
            return Forwarded::empty(ResponseCode::Refused);
        };
        if let Some(hit) = self.cache.get(name, qtype, Instant::now()) {
            return hit;
        }
        let mut fqdn = name.clone();
        fqdn.set_fqdn(true);
        let answer = match resolver.lookup(fqdn, qtype).await {
            Ok(lookup) => Forwarded {
                answers: lookup.answers().to_vec(),
                authority: lookup.authorities().to_vec(),
                additionals: lookup.additionals().to_vec(),
                ..Forwarded::empty(ResponseCode::NoError)
            },
            Err(NetError::Dns(DnsError::NoRecordsFound(no))) => negative(no),
            Err(e) => {
                tracing::debug!(name = %name, qtype = %qtype, error = %e, "no upstream answered");
                Forwarded::empty(ResponseCode::ServFail)
            }
        };
        self.cache.put(name, qtype, &answer, Instant::now());
        answer
    }
}

/// NXDOMAIN or NODATA as the upstream said it, its SOA in authority for negative caching.
/// Any other rcode the resolver reports as "no records" (REFUSED, SERVFAIL upstream) is a
/// failure to resolve: SERVFAIL.
fn negative(no: NoRecords) -> Forwarded {
    let rcode = match no.response_code {
        ResponseCode::NXDomain => ResponseCode::NXDomain,
        ResponseCode::NoError => ResponseCode::NoError,
        _ => ResponseCode::ServFail,
    };
    let mut out = Forwarded::empty(rcode);
    if rcode != ResponseCode::ServFail
        && let Some(soa) = no.soa
    {
        out.authority.push(soa.into_record_of_rdata());
    }
    out
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use hickory_proto::op::Query;

    use super::*;

    #[test]
    fn negative_answers_keep_their_kind() {
        let q = Query::query(Name::from_str("x.other.corp.").unwrap(), RecordType::A);
        for (upstream, ours) in [
            (ResponseCode::NXDomain, ResponseCode::NXDomain),
            (ResponseCode::NoError, ResponseCode::NoError),
            (ResponseCode::Refused, ResponseCode::ServFail),
            (ResponseCode::ServFail, ResponseCode::ServFail),
        ] {
            assert_eq!(negative(NoRecords::new(q.clone(), upstream)).rcode, ours);
        }
    }

    #[tokio::test]
    async fn without_upstreams_everything_is_refused() {
        let f = Forwarder::new(&[], 8).unwrap();
        assert!(!f.enabled());
        let a = f
            .resolve(&Name::from_str("example.org.").unwrap(), RecordType::A)
            .await;
        assert_eq!(a.rcode, ResponseCode::Refused);
    }
}
