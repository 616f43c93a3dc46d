//! Client placement: which datacenter a DNS client is in, from its EDNS Client Subnet or its
//! source address, against the subnets of `/ns/datacenters/*`.
//!
//! [`place`] is pure: the caller passes the datacenters of a snapshot and the addresses it saw.
//! The most specific datacenter subnet that holds the client's whole network wins; a client in
//! no subnet has no datacenter (routing then uses every datacenter alike). The result also
//! says for which prefix of the client's address the placement holds ([`Placement::scope`]),
//! which the ECS answer echoes so that caching resolvers share it only with clients placed
//! alike. This module does not pick instances ([`crate::routing`]) nor build records
//! ([`crate::zone`]); the agent does not place at all (its clients are in its own datacenter).

use std::net::IpAddr;

use imbl::OrdMap;
use ipnet::IpNet;

use crate::name::DcName;
use crate::routing::{ClientCtx, client_key, client_key_of_ip};
use crate::schema::Datacenter;

/// Where a client was placed, and for how much of the address space around it that holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The datacenter and the client key routing reads.
    pub client: ClientCtx,
    /// The prefix length for which this placement is the same: the matched subnet's, at least
    /// that of any more specific datacenter subnet inside the client's network, 0 when no
    /// subnet is involved. An answer that also depends on the client key must widen this to
    /// the client's own prefix ([`Placement::source_prefix`]).
    pub scope: u8,
    /// The prefix the client key was taken from: the ECS source prefix, or the full address.
    pub source_prefix: u8,
}

/// Places a client: `ecs` is the EDNS Client Subnet (address and source prefix) if the query
/// carried one, else `source` (the packet's sender) is the client. The client key hashes the
/// network the placement used (ECS address cut to its prefix, and the prefix), so every
/// address of one ECS subnet gets the same version group.
pub fn place(
    datacenters: &OrdMap<DcName, Datacenter>,
    source: IpAddr,
    ecs: Option<(IpAddr, u8)>,
) -> Placement {
    let (net, key) = match ecs.and_then(|(addr, prefix)| IpNet::new(addr, prefix).ok()) {
        Some(net) => {
            let net = net.trunc();
            let mut bytes = [0u8; 17];
            let n = match net.network() {
                IpAddr::V4(v4) => {
                    bytes[..4].copy_from_slice(&v4.octets());
                    4
                }
                IpAddr::V6(v6) => {
                    bytes[..16].copy_from_slice(&v6.octets());
                    16
                }
            };
            bytes[n] = net.prefix_len();
            (net, client_key(&bytes[..=n]))
        }
        None => (IpNet::from(source), client_key_of_ip(source)),
    };
    let mut best: Option<(&DcName, u8)> = None;
    let mut inner = 0u8;
    for (name, dc) in datacenters {
        for subnet in &dc.subnets {
            if subnet.prefix_len() <= net.prefix_len() && subnet.contains(&net.network()) {
                if best.is_none_or(|(_, p)| subnet.prefix_len() > p) {
                    best = Some((name, subnet.prefix_len()));
                }
            } else if net.contains(subnet) {
                // A more specific datacenter inside the client's network: the answer for this
                // network does not hold for that part of it.
                inner = inner.max(subnet.prefix_len());
            }
        }
    }
    Placement {
        client: ClientCtx {
            dc: best.map(|(name, _)| name.clone()),
            key,
        },
        scope: best.map_or(0, |(_, p)| p).max(inner),
        source_prefix: net.prefix_len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dcs(rows: &[(&str, &[&str])]) -> OrdMap<DcName, Datacenter> {
        rows.iter()
            .map(|(name, nets)| {
                let dc = Datacenter {
                    subnets: nets.iter().map(|n| n.parse().unwrap()).collect(),
                    fallback: Vec::new(),
                };
                (DcName::parse(name).unwrap(), dc)
            })
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn source_address_or_ecs_against_subnets() {
        let d = dcs(&[
            ("dc1", &["10.1.0.0/16"]),
            ("dc2", &["10.2.0.0/16", "10.1.7.0/24"]),
        ]);
        let p = place(&d, ip("10.1.2.3"), None);
        assert_eq!(p.client.dc.as_ref().map(DcName::as_str), Some("dc1"));
        assert_eq!((p.scope, p.source_prefix), (16, 32));
        // The more specific subnet wins.
        let p = place(&d, ip("10.1.7.9"), None);
        assert_eq!(p.client.dc.as_ref().map(DcName::as_str), Some("dc2"));
        assert_eq!(p.scope, 24);
        // ECS overrides the source (a resolver in dc1 asking for a dc2 client).
        let p = place(&d, ip("10.1.2.3"), Some((ip("10.2.9.0"), 24)));
        assert_eq!(p.client.dc.as_ref().map(DcName::as_str), Some("dc2"));
        assert_eq!((p.scope, p.source_prefix), (16, 24));
        // An ECS /8 is wider than any subnet: no datacenter, and the answer holds for /24
        // at most, the longest subnet inside it.
        let p = place(&d, ip("10.1.2.3"), Some((ip("10.0.0.0"), 8)));
        assert_eq!(p.client.dc, None);
        assert_eq!(p.scope, 24);
        // Outside every subnet.
        let p = place(&d, ip("192.0.2.1"), None);
        assert_eq!((p.client.dc, p.scope), (None, 0));
    }

    #[test]
    fn ecs_key_is_the_subnet_not_the_address() {
        let d = dcs(&[]);
        let a = place(&d, ip("127.0.0.1"), Some((ip("10.9.8.1"), 24)));
        let b = place(&d, ip("127.0.0.2"), Some((ip("10.9.8.200"), 24)));
        let c = place(&d, ip("127.0.0.1"), Some((ip("10.9.9.1"), 24)));
        assert_eq!(a.client.key, b.client.key);
        assert_ne!(a.client.key, c.client.key);
        // A bad prefix (33 for IPv4) falls back to the source address.
        let e = place(&d, ip("127.0.0.1"), Some((ip("10.9.8.1"), 33)));
        assert_eq!(e.client.key, client_key_of_ip(ip("127.0.0.1")));
        let v6 = place(&d, ip("::1"), Some((ip("fd00:1:2::"), 48)));
        assert_eq!(v6.source_prefix, 48);
    }
}
