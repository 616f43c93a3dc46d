//! The EDNS side of an answer, shared by every server of the zone: the client subnet a query
//! carries, and the OPT record of the reply (UDP size, ECS echo with its scope).
//!
//! hickory-proto types only, no sockets: the gateway's handler and the agent's local DNS call
//! these around [`super::Zone::answer`]. Framing, truncation and TCP are the server's (hickory
//! encodes with the reply's `max_payload` on UDP and sets TC when the records do not fit).

use std::net::IpAddr;

use hickory_proto::op::Edns;
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};

use crate::placement::Placement;

/// Smallest UDP payload a reply may use (RFC 1035's 512).
pub const MIN_UDP_PAYLOAD: u16 = 512;
/// Largest UDP payload a reply uses whatever the client offers: larger datagrams risk IP
/// fragmentation (the DNS flag day 2020 figure).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// The client subnet of a query (address and source prefix), if its OPT carries one.
pub fn client_subnet(edns: Option<&Edns>) -> Option<(IpAddr, u8)> {
    match edns?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some((s.addr(), s.source_prefix())),
        _ => None,
    }
}

/// The OPT of the reply: present exactly when the query had one (RFC 6891 6.1.1), with the
/// client's UDP size clamped to `MIN_UDP_PAYLOAD..=MAX_UDP_PAYLOAD`, and the client subnet
/// echoed with its scope: the placement's, widened to the client's own prefix when the answer
/// depends on the client key (`per_client`), so a caching resolver never hands one subnet's
/// gray group to another.
pub fn reply_edns(query: Option<&Edns>, placement: &Placement, per_client: bool) -> Option<Edns> {
    let query = query?;
    let mut edns = Edns::new();
    edns.set_max_payload(query.max_payload().clamp(MIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD));
    if let Some((addr, source)) = client_subnet(Some(query)) {
        let mut scope = placement.scope;
        if per_client {
            scope = scope.max(placement.source_prefix);
        }
        edns.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(addr, source, scope)));
    }
    Some(edns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::ClientCtx;

    fn placement(scope: u8, source_prefix: u8) -> Placement {
        Placement {
            client: ClientCtx { dc: None, key: 0 },
            scope,
            source_prefix,
        }
    }

    #[test]
    fn opt_only_when_asked_and_size_clamped() {
        let p = placement(0, 32);
        assert!(reply_edns(None, &p, false).is_none());
        for (asked, got) in [(0, 512), (4096, 1232), (1000, 1000)] {
            let mut q = Edns::new();
            q.set_max_payload(asked);
            assert_eq!(reply_edns(Some(&q), &p, false).unwrap().max_payload(), got);
        }
    }

    #[test]
    fn ecs_is_echoed_with_scope() {
        let mut q = Edns::new();
        let addr: IpAddr = "10.2.9.0".parse().unwrap();
        q.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(addr, 24, 0)));
        assert_eq!(client_subnet(Some(&q)), Some((addr, 24)));
        let scope = |per_client| match reply_edns(Some(&q), &placement(16, 24), per_client)
            .unwrap()
            .option(EdnsCode::Subnet)
        {
            Some(EdnsOption::Subnet(s)) => (s.source_prefix(), s.scope_prefix()),
            other => panic!("{other:?}"),
        };
        assert_eq!(scope(false), (24, 16));
        assert_eq!(scope(true), (24, 24));
    }
}
