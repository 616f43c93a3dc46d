//! Builders of the zone's records (SOA, NS, A/AAAA, SRV with its target, TXT) and the `.addr.`
//! name spelling. What to answer is decided in `zone`; this file only spells records.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::ZoneConfig;
use crate::routing::Selected;
use crate::schema::ServiceDef;

/// Longest character-string of a TXT record (RFC 1035 3.3).
const TXT_STRING_MAX: usize = 255;

/// The apex SOA. The primary is the apex itself (gateways are interchangeable replicas, none
/// is the primary); the serial is the snapshot's revision (mod 2^32), so it moves with the data.
pub(super) fn soa(config: &ZoneConfig, serial: u32) -> Record {
    let origin = config.origin.clone();
    let rname = origin
        .prepend_label("hostmaster")
        .unwrap_or_else(|_| origin.clone());
    // Refresh, retry and expire matter only to secondaries, which this zone does not have.
    let soa = SOA::new(origin.clone(), rname, serial, 3600, 600, 86_400, config.ttl);
    Record::from_rdata(origin, config.ttl, RData::SOA(soa))
}

/// The apex NS: the apex itself, which every gateway answers for.
pub(super) fn ns(config: &ZoneConfig) -> Record {
    let origin = config.origin.clone();
    Record::from_rdata(origin.clone(), config.ttl, RData::NS(NS(origin)))
}

/// The record type holding `ip`.
pub(super) fn address_type(ip: IpAddr) -> RecordType {
    match ip {
        IpAddr::V4(_) => RecordType::A,
        IpAddr::V6(_) => RecordType::AAAA,
    }
}

/// An A or AAAA record for `ip`, if `qtype` asks for that family (or ANY).
pub(super) fn address(owner: Name, ttl: u32, ip: IpAddr, qtype: RecordType) -> Option<Record> {
    let rdata = match (ip, qtype) {
        (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => RData::A(A(v4)),
        (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(v6)),
        _ => return None,
    };
    Some(Record::from_rdata(owner, ttl, rdata))
}

/// The SRV record of one instance and, when its target name can be built, the target's
/// address for the additional section.
pub(super) fn srv(
    config: &ZoneConfig,
    owner: Name,
    ttl: u32,
    priority: u16,
    s: &Selected<'_>,
) -> (Record, Option<Record>) {
    let ip = s.instance.address;
    let target = addr_name(config, ip);
    let glue = target
        .as_ref()
        .and_then(|t| address(t.clone(), ttl, ip, address_type(ip)));
    let target = target.unwrap_or_else(|| config.origin.clone());
    let srv = SRV::new(priority, s.weight, s.instance.port, target);
    (Record::from_rdata(owner, ttl, RData::SRV(srv)), glue)
}

/// `HEX.addr.ORIGIN` for `ip`: 8 hex digits for IPv4, 32 for IPv6.
fn addr_name(config: &ZoneConfig, ip: IpAddr) -> Option<Name> {
    let mut hex = String::with_capacity(32);
    let octets: &[u8] = match &ip {
        IpAddr::V4(v4) => &v4.octets(),
        IpAddr::V6(v6) => &v6.octets(),
    };
    for b in octets {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{b:02x}");
    }
    config
        .origin
        .prepend_label("addr")
        .and_then(|n| n.prepend_label(hex.as_str()))
        .ok()
}

/// The address a `.addr.` label spells, if it spells one.
pub(super) fn parse_hex_addr(label: &[u8]) -> Option<IpAddr> {
    fn digits<const N: usize>(label: &[u8]) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        for (i, pair) in label.chunks_exact(2).enumerate() {
            let s = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(s, 16).ok()?;
        }
        Some(out)
    }
    match label.len() {
        8 => digits::<4>(label).map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        32 => digits::<16>(label).map(|o| IpAddr::V6(Ipv6Addr::from(o))),
        _ => None,
    }
}

/// The service's own TXT: owner, description and metadata as `key=value` strings.
pub(super) fn txt_service(owner: Name, ttl: u32, def: &ServiceDef) -> Record {
    let mut strings = vec![
        clip(format!("owner={}", def.owner)),
        clip(format!("description={}", def.description)),
    ];
    strings.extend(def.meta.iter().map(|(k, v)| clip(format!("meta.{k}={v}"))));
    Record::from_rdata(owner, ttl, RData::TXT(TXT::new(strings)))
}

/// One instance's TXT: id, version, datacenter, weight and metadata.
pub(super) fn txt_instance(owner: Name, ttl: u32, s: &Selected<'_>) -> Record {
    let i = s.instance;
    let mut strings = vec![
        clip(format!("id={}", s.id)),
        clip(format!("version={}", i.version)),
        format!("dc={}", i.datacenter),
        format!("weight={}", s.weight),
        format!("addr={}:{}", i.address, i.port),
    ];
    strings.extend(i.meta.iter().map(|(k, v)| clip(format!("meta.{k}={v}"))));
    Record::from_rdata(owner, ttl, RData::TXT(TXT::new(strings)))
}

/// Cuts a string to a TXT character-string's 255 bytes, at a character boundary.
fn clip(mut s: String) -> String {
    if s.len() > TXT_STRING_MAX {
        let mut end = TXT_STRING_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_addresses_round_trip() {
        let cfg = ZoneConfig {
            origin: Name::from_ascii("ns.corp.").unwrap(),
            ttl: 5,
            max_answers: 8,
        };
        for ip in ["10.0.1.5", "fd00::1:2"] {
            let ip: IpAddr = ip.parse().unwrap();
            let name = addr_name(&cfg, ip).unwrap();
            let first = name.iter().next().unwrap();
            assert_eq!(parse_hex_addr(first), Some(ip));
        }
        assert_eq!(parse_hex_addr(b"0a00010"), None);
        assert_eq!(parse_hex_addr(b"0a00010g"), None);
    }

    #[test]
    fn txt_strings_are_clipped_at_a_char_boundary() {
        let s = clip("é".repeat(200));
        assert!(s.len() <= TXT_STRING_MAX && s.len() == 254);
    }
}
