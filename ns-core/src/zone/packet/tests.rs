//! The fast path against the slow path: for random queries and clients, the reply decodes
//! (with hickory) to the same header, question, sections (up to rotation order) and OPT, and
//! truncation happens exactly where the slow path truncates.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use proptest::prelude::*;

use super::{Limits, Outcome, Request, Responder, encode};
use crate::catalog::Catalog;
use crate::name::{DcName, InstanceId};
use crate::schema::{Health, Shift, TrafficPolicy, VersionGroup};
use crate::zone::QueryParams;
use crate::zone::tests::{catalog, inst, svc, zone_of};

const NOW: u64 = 1_000_000;

/// The zone tests' catalog plus a gray service (90/10 with a shift until `NOW + 1000`) and a
/// service of 40 instances (its A answer needs TCP).
fn fixture() -> Catalog {
    let mut c = catalog();
    let gray = c.service_mut(&svc("gray"));
    for (i, (dc, version)) in [("dc1", "v1"), ("dc1", "v2"), ("dc2", "v1"), ("dc2", "v2")]
        .into_iter()
        .enumerate()
    {
        let mut x = inst(
            &format!("10.0.{}.{}", 1 + i / 2, 20 + i),
            dc,
            Health::Passing,
        );
        x.version = version.into();
        gray.instances
            .insert(InstanceId::parse(&format!("g{i}")).unwrap(), x);
    }
    gray.traffic = Some(TrafficPolicy {
        groups: vec![
            VersionGroup {
                version: "v1".into(),
                weight: 90,
            },
            VersionGroup {
                version: "v2".into(),
                weight: 10,
            },
        ],
        shifts: vec![Shift {
            from_dc: DcName::parse("dc1").unwrap(),
            to_dc: DcName::parse("dc2").unwrap(),
            percent: 30,
        }],
        expires_at: Some(NOW + 1000),
        ..TrafficPolicy::default()
    });
    let big = c.service_mut(&svc("big"));
    for i in 0..40 {
        big.instances.insert(
            InstanceId::parse(&format!("b{i}")).unwrap(),
            inst(&format!("10.0.1.{}", 100 + i), "dc1", Health::Passing),
        );
    }
    c
}

/// One query on the wire.
#[derive(Debug, Clone)]
struct Q {
    name: String,
    qtype: RecordType,
    id: u16,
    rd: bool,
    cd: bool,
    edns: Option<(u16, Option<(IpAddr, u8)>)>,
}

fn wire(q: &Q) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = q.id;
    m.metadata.recursion_desired = q.rd;
    m.metadata.checking_disabled = q.cd;
    m.add_query(Query::query(Name::from_ascii(&q.name).unwrap(), q.qtype));
    if let Some((size, ecs)) = q.edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        if let Some((addr, prefix)) = ecs {
            e.options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::new(addr, prefix, 0)));
        }
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

/// A reply as comparable text: header, question, sorted sections, OPT.
fn decoded(bytes: &[u8]) -> (String, Vec<Vec<String>>, String) {
    let m = Message::from_vec(bytes).unwrap();
    let header = format!("{:?} {:?}", m.metadata, m.queries);
    let rows = |rs: &[hickory_proto::rr::Record]| {
        let mut v: Vec<String> = rs.iter().map(|r| r.to_string().to_lowercase()).collect();
        v.sort();
        v
    };
    let sections = vec![rows(&m.answers), rows(&m.authorities), rows(&m.additionals)];
    let opt = m.edns.as_ref().map_or("none".to_string(), |e| {
        format!("{} {:?}", e.max_payload(), e.option(EdnsCode::Subnet))
    });
    (header, sections, opt)
}

fn request<'a>(packet: &'a [u8], src: IpAddr, tcp: bool, seed: u64) -> Request<'a> {
    Request {
        packet,
        src,
        tcp,
        dc: None,
        params: QueryParams { now_ms: NOW, seed },
    }
}

/// Asks the fast responder and the slow path, and checks they agree.
fn same(responder: &mut Responder, q: &Q, src: IpAddr, tcp: bool, seed: u64) -> Outcome {
    let zone = zone_of(fixture());
    let packet = wire(q);
    let (mut fast, mut slow) = (Vec::new(), Vec::new());
    // Twice: the first fills the cache, the second is a hit with another seed.
    responder.respond(&zone, &request(&packet, src, tcp, seed), &mut fast);
    let outcome = responder.respond(&zone, &request(&packet, src, tcp, seed + 1), &mut fast);
    let expected = encode::slow(&zone, &request(&packet, src, tcp, seed + 1), &mut slow);
    assert_eq!(outcome, expected, "{q:?}");
    assert_eq!(decoded(&fast), decoded(&slow), "{q:?}");
    outcome
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn hits_match_the_slow_path_and_rotate() {
    let mut r = Responder::new();
    let q = Q {
        name: "WeB.Ns.Corp.".into(),
        qtype: RecordType::A,
        id: 77,
        rd: true,
        cd: false,
        edns: Some((4096, Some((ip("10.0.2.0"), 24)))),
    };
    let o = same(&mut r, &q, ip("127.0.0.1"), false, 3);
    assert!(matches!(
        o,
        Outcome::Answered {
            rcode: ResponseCode::NoError,
            ..
        }
    ));
    assert_eq!(r.cached(), 1);
    // A name under the zone but unknown, a name outside, the apex.
    for (name, qtype) in [
        ("nope.ns.corp.", RecordType::A),
        ("example.com.", RecordType::A),
        ("ns.corp.", RecordType::SOA),
        ("idle.ns.corp.", RecordType::A),
    ] {
        same(
            &mut r,
            &Q {
                name: name.into(),
                qtype,
                ..q.clone()
            },
            ip("10.0.1.1"),
            false,
            5,
        );
    }
    // Cached orders still rotate (over TCP, so the 40 addresses fit).
    let zone = zone_of(fixture());
    let packet = wire(&Q {
        name: "big.ns.corp.".into(),
        edns: None,
        ..q
    });
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for seed in 0..64 {
        r.respond(
            &zone,
            &request(&packet, ip("10.0.1.9"), true, seed),
            &mut out,
        );
        seen.insert(out.clone());
    }
    assert_eq!(seen.len(), super::VARIANTS, "one order per variant");
}

#[test]
fn large_answers_truncate_over_udp_and_come_whole_over_tcp() {
    let mut r = Responder::new();
    let q = Q {
        name: "big.ns.corp.".into(),
        qtype: RecordType::A,
        id: 1,
        rd: false,
        cd: true,
        edns: None,
    };
    same(&mut r, &q, ip("10.0.1.1"), false, 1);
    let zone = zone_of(fixture());
    let packet = wire(&q);
    let mut out = Vec::new();
    r.respond(&zone, &request(&packet, ip("10.0.1.1"), false, 1), &mut out);
    let m = Message::from_vec(&out).unwrap();
    assert!(m.metadata.truncation && out.len() <= 512);
    same(&mut r, &q, ip("10.0.1.1"), true, 1);
    r.respond(&zone, &request(&packet, ip("10.0.1.1"), true, 1), &mut out);
    let m = Message::from_vec(&out).unwrap();
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 40);
}

#[test]
fn malformed_and_unusual_packets() {
    let zone = zone_of(fixture());
    let mut r = Responder::new();
    let mut out = Vec::new();
    let mut ask = |p: &[u8]| r.respond(&zone, &request(p, ip("10.0.1.1"), false, 1), &mut out);
    assert_eq!(ask(&[1, 2, 3]), Outcome::Malformed { replied: false });
    // A header with one question and nothing after it.
    let mut short = vec![0xab, 0xcd, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    assert_eq!(ask(&short), Outcome::Malformed { replied: true });
    // A response is never answered.
    short[2] |= 0x80;
    assert_eq!(ask(&short), Outcome::Malformed { replied: false });
    // A compression loop in the question.
    let looped = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
    assert_eq!(ask(&looped), Outcome::Malformed { replied: true });
    // NOTIFY (opcode 4).
    let mut notify = wire(&Q {
        name: "web.ns.corp.".into(),
        qtype: RecordType::SOA,
        id: 9,
        rd: false,
        cd: false,
        edns: None,
    });
    notify[2] |= 4 << 3;
    assert_eq!(ask(&notify), Outcome::NotImplemented);
}

#[test]
fn the_cache_is_bounded_and_follows_the_zone() {
    let mut r = Responder::with_limits(Limits {
        entries: 3,
        bytes: 1 << 20,
    });
    let mut out = Vec::new();
    let zone = zone_of(fixture());
    for i in 0..10 {
        // Unknown names are answered without an entry; `.addr.` names take one each.
        let p = wire(&Q {
            name: format!("n{i}.ns.corp."),
            qtype: RecordType::A,
            id: 1,
            rd: false,
            cd: false,
            edns: None,
        });
        let o = r.respond(&zone, &request(&p, ip("10.0.1.1"), false, 1), &mut out);
        assert!(matches!(
            o,
            Outcome::Answered {
                rcode: ResponseCode::NXDomain,
                ..
            }
        ));
        let p = wire(&Q {
            name: format!("{:08x}.addr.ns.corp.", 0x0a00_0000 + i),
            qtype: RecordType::A,
            id: 1,
            rd: false,
            cd: false,
            edns: None,
        });
        r.respond(&zone, &request(&p, ip("10.0.1.1"), false, 1), &mut out);
        assert!(r.cached() <= 3);
    }
    // A new zone (same data) starts a new cache.
    let other = zone_of(fixture());
    let p = wire(&Q {
        name: "web.ns.corp.".into(),
        qtype: RecordType::A,
        id: 1,
        rd: false,
        cd: false,
        edns: None,
    });
    r.respond(&other, &request(&p, ip("10.0.1.1"), false, 1), &mut out);
    assert_eq!(r.cached(), 1);
}

fn name() -> impl Strategy<Value = String> {
    let label = prop_oneof![
        Just("web".to_string()),
        Just("WEB".to_string()),
        Just("gray".to_string()),
        Just("Gray".to_string()),
        Just("big".to_string()),
        Just("dc1".to_string()),
        Just("dc2".to_string()),
        Just("search".to_string()),
        Just("hotel".to_string()),
        Just("_http".to_string()),
        Just("_tcp".to_string()),
        Just("addr".to_string()),
        Just("0a000105".to_string()),
        Just("idle".to_string()),
        Just("zz".to_string()),
        "[a-z0-9][a-z0-9-]{0,7}",
    ];
    (prop::collection::vec(label, 0..4), any::<bool>()).prop_map(|(labels, inside)| {
        let mut s = labels.join(".");
        if !s.is_empty() {
            s.push('.');
        }
        s.push_str(if inside { "ns.CORP." } else { "example.com." });
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    /// Same reply as the slow path for random names, types, flags, EDNS, ECS and clients.
    #[test]
    fn fast_equals_slow(
        name in name(),
        qtype in prop::sample::select(vec![
            RecordType::A, RecordType::AAAA, RecordType::SRV, RecordType::TXT,
            RecordType::MX, RecordType::NS, RecordType::SOA, RecordType::ANY,
            RecordType::CAA, RecordType::PTR,
        ]),
        id in any::<u16>(),
        rd in any::<bool>(),
        cd in any::<bool>(),
        edns in prop::option::of((0u16..5000, prop::option::of((0u8..4, 0u8..=32)))),
        src in prop::sample::select(vec!["10.0.1.7", "10.0.2.7", "192.0.2.1", "fd00::9"]),
        tcp in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let edns = edns.map(|(size, ecs)| {
            let ecs = ecs.map(|(net, prefix)| {
                let addr: IpAddr = ["10.0.1.0", "10.0.2.0", "10.9.0.0", "192.0.2.0"]
                    [usize::from(net)].parse().unwrap();
                (addr, prefix)
            });
            (size, ecs)
        });
        let q = Q { name, qtype, id, rd, cd, edns };
        let mut r = Responder::new();
        same(&mut r, &q, src.parse().unwrap(), tcp, seed);
    }
}
