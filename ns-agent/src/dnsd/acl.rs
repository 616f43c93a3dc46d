//! [`Acl`]: which clients the local DNS answers (`dns_allow`).
//!
//! A client is allowed when its source address lies in one of the listed networks; an IPv4
//! client reaching an IPv6 socket (`::ffff:127.0.0.1`) is judged by its IPv4 address. The
//! default list is loopback only, so an agent bound to a public address does not become an
//! open resolver. What a refused client gets (REFUSED, counted) is `handler`'s.

use std::net::IpAddr;

use ipnet::IpNet;

/// The networks allowed to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    nets: Vec<IpNet>,
}

impl Acl {
    /// An ACL allowing exactly `nets`.
    pub fn new(nets: &[IpNet]) -> Acl {
        Acl {
            nets: nets.iter().map(IpNet::trunc).collect(),
        }
    }

    /// Whether `client` may ask.
    pub fn allows(&self, client: IpAddr) -> bool {
        let client = client.to_canonical();
        self.nets.iter().any(|n| n.contains(&client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_listed_networks_are_allowed() {
        let acl = Acl::new(&[
            "127.0.0.2/32".parse().unwrap(),
            "10.1.0.0/16".parse().unwrap(),
        ]);
        assert!(acl.allows(ip("127.0.0.2")));
        assert!(!acl.allows(ip("127.0.0.1")));
        assert!(acl.allows(ip("10.1.200.3")));
        assert!(!acl.allows(ip("10.2.0.1")));
        assert!(acl.allows(ip("::ffff:127.0.0.2")), "v4-mapped judged as v4");
        assert!(!acl.allows(ip("::1")));
    }

    #[test]
    fn the_default_is_loopback_only() {
        let config = crate::AgentConfig::default();
        let acl = Acl::new(&config.dns_allow);
        assert!(acl.allows(ip("127.0.0.1")) && acl.allows(ip("127.3.4.5")));
        assert!(acl.allows(ip("::1")));
        assert!(!acl.allows(ip("10.0.0.1")) && !acl.allows(ip("fd00::1")));
    }

    #[test]
    fn host_bits_of_a_network_do_not_matter() {
        let acl = Acl::new(&["192.168.7.9/24".parse().unwrap()]);
        assert!(acl.allows(ip("192.168.7.200")));
    }
}
