//! Table tests in CoreDNS's `test.Case` shape: a question, a client, the expected rcode and
//! sections written as zone text, behind one `check` helper.

use std::collections::BTreeMap;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};

use super::{Answer, NameKind, QueryParams, Zone, ZoneConfig};
use crate::catalog::Catalog;
use crate::mirror::Snapshot;
use crate::name::{DcName, InstanceId, ServiceName};
use crate::routing::ClientCtx;
use crate::schema::{
    Datacenter, Health, Instance, Override, ServiceDef, Shift, TrafficPolicy, VersionGroup,
};

use RecordType::{A, AAAA, ANY, MX, NS, SOA, SRV, TXT};

const NOW: u64 = 1_000_000;

struct Case {
    qname: &'static str,
    qtype: RecordType,
    dc: Option<&'static str>,
    rcode: ResponseCode,
    answers: Vec<String>,
    authority: Vec<String>,
    additionals: Vec<String>,
}

fn case(qname: &'static str, qtype: RecordType, dc: Option<&'static str>) -> Case {
    Case {
        qname,
        qtype,
        dc,
        rcode: ResponseCode::NoError,
        answers: Vec::new(),
        authority: Vec::new(),
        additionals: Vec::new(),
    }
}

impl Case {
    fn answers(mut self, rows: &[&str]) -> Case {
        self.answers = rows.iter().map(|s| s.to_string()).collect();
        self
    }
    fn additionals(mut self, rows: &[&str]) -> Case {
        self.additionals = rows.iter().map(|s| s.to_string()).collect();
        self
    }
    /// NODATA or NXDOMAIN: no answer, the SOA in authority.
    fn negative(mut self, rcode: ResponseCode) -> Case {
        self.rcode = rcode;
        self.authority = vec![SOA_TEXT.to_string()];
        self
    }
}

const SOA_TEXT: &str = "ns.corp. 5 IN SOA ns.corp. hostmaster.ns.corp. 42 3600 600 86400 5";

fn text(records: &[hickory_proto::rr::Record]) -> Vec<String> {
    let mut v: Vec<String> = records.iter().map(|r| r.to_string()).collect();
    v.sort();
    v
}

fn ask(zone: &Zone, qname: &str, qtype: RecordType, dc: Option<&str>, key: u64) -> Answer {
    let client = ClientCtx {
        dc: dc.map(|d| DcName::parse(d).unwrap()),
        key,
    };
    let params = QueryParams {
        now_ms: NOW,
        seed: 9,
    };
    zone.answer(&Name::from_ascii(qname).unwrap(), qtype, &client, params)
}

fn check(zone: &Zone, c: Case) {
    let got = ask(zone, c.qname, c.qtype, c.dc, 1);
    let what = format!("{} {} from {:?}", c.qname, c.qtype, c.dc);
    assert_eq!(got.rcode, c.rcode, "{what}: rcode");
    let mut want = c.answers.clone();
    want.sort();
    assert_eq!(text(&got.answers), want, "{what}: answers");
    assert_eq!(text(&got.authority), c.authority, "{what}: authority");
    let mut want = c.additionals.clone();
    want.sort();
    assert_eq!(text(&got.additionals), want, "{what}: additionals");
    assert_eq!(
        got.authoritative,
        c.rcode != ResponseCode::Refused,
        "{what}: AA"
    );
}

pub(super) fn inst(addr: &str, dc: &str, status: Health) -> Instance {
    Instance {
        address: addr.parse().unwrap(),
        port: 8080,
        datacenter: DcName::parse(dc).unwrap(),
        version: "v1".into(),
        weight: 100,
        tags: vec!["http".into()],
        meta: BTreeMap::from([("rack".to_string(), "r1".to_string())]),
        status,
        node: "host".into(),
    }
}

pub(super) fn svc(s: &str) -> ServiceName {
    ServiceName::parse(s).unwrap()
}

/// `web` in dc1 (10.0.1.5, fd00::5) and dc2 (10.0.2.5, one critical), `search.hotel` in dc1,
/// `idle` with a definition and only critical instances, `spare` with a policy only.
pub(super) fn catalog() -> Catalog {
    let mut c = Catalog::default();
    let web = c.service_mut(&svc("web"));
    web.def = Some(ServiceDef {
        ttl_secs: 30,
        owner: "team-a".into(),
        ..ServiceDef::default()
    });
    let ids = |s: &str| InstanceId::parse(s).unwrap();
    web.instances
        .insert(ids("w1"), inst("10.0.1.5", "dc1", Health::Passing));
    web.instances
        .insert(ids("w1v6"), inst("fd00::5", "dc1", Health::Passing));
    web.instances
        .insert(ids("w2"), inst("10.0.2.5", "dc2", Health::Warning));
    web.instances
        .insert(ids("w3"), inst("10.0.2.6", "dc2", Health::Critical));
    c.service_mut(&svc("search.hotel"))
        .instances
        .insert(ids("s1"), inst("10.0.1.9", "dc1", Health::Passing));
    let idle = c.service_mut(&svc("idle"));
    idle.def = Some(ServiceDef::default());
    idle.instances
        .insert(ids("i1"), inst("10.0.1.7", "dc1", Health::Critical));
    c.service_mut(&svc("spare")).traffic = Some(TrafficPolicy::default());
    for (name, net) in [("dc1", "10.0.1.0/24"), ("dc2", "10.0.2.0/24")] {
        c.datacenters.insert(
            DcName::parse(name).unwrap(),
            Datacenter {
                subnets: vec![net.parse().unwrap()],
                fallback: Vec::new(),
            },
        );
    }
    c
}

pub(super) fn zone_of(catalog: Catalog) -> Zone {
    let snap = Snapshot {
        catalog,
        revision: 42,
        ..Snapshot::default()
    };
    let config = ZoneConfig {
        origin: Name::from_ascii("NS.corp.").unwrap(),
        ttl: 5,
        max_answers: 64,
    };
    Zone::new(config, Arc::new(snap))
}

#[test]
fn record_types_and_rcodes() {
    use ResponseCode::{NXDomain, NoError};
    let z = zone_of(catalog());
    let cases = [
        case("web.ns.corp.", A, Some("dc1")).answers(&["web.ns.corp. 30 IN A 10.0.1.5"]),
        case("WEB.Ns.Corp.", A, Some("dc1")).answers(&["WEB.Ns.Corp. 30 IN A 10.0.1.5"]),
        case("web.ns.corp.", AAAA, Some("dc1")).answers(&["web.ns.corp. 30 IN AAAA fd00::5"]),
        // Same datacenter first; warning is routable, critical is not.
        case("web.ns.corp.", A, Some("dc2")).answers(&["web.ns.corp. 30 IN A 10.0.2.5"]),
        // No AAAA in dc2: the first datacenter with one answers.
        case("web.ns.corp.", AAAA, Some("dc2")).answers(&["web.ns.corp. 30 IN AAAA fd00::5"]),
        // NAME.DC: that datacenter only, wherever the client is.
        case("web.dc2.ns.corp.", A, Some("dc1")).answers(&["web.dc2.ns.corp. 30 IN A 10.0.2.5"]),
        case("web.dc2.ns.corp.", AAAA, Some("dc1")).negative(NoError),
        case("search.hotel.ns.corp.", A, None).answers(&["search.hotel.ns.corp. 5 IN A 10.0.1.9"]),
        case("search.hotel.dc1.ns.corp.", A, None)
            .answers(&["search.hotel.dc1.ns.corp. 5 IN A 10.0.1.9"]),
        // `hotel` exists only as a parent of `search.hotel`: NODATA, not NXDOMAIN.
        case("hotel.ns.corp.", A, None).negative(NoError),
        case("nope.ns.corp.", A, None).negative(NXDomain),
        case("web.dc9.ns.corp.", A, None).negative(NXDomain),
        case("web_x.ns.corp.", A, None).negative(NXDomain),
        // Known, nothing usable: NODATA with the SOA (Consul's trap is NXDOMAIN here).
        case("idle.ns.corp.", A, None).negative(NoError),
        case("spare.ns.corp.", A, None).negative(NoError),
        case("web.ns.corp.", MX, None).negative(NoError),
        case("web.ns.corp.", SOA, None).negative(NoError),
        case("ns.corp.", SOA, None).answers(&[SOA_TEXT]),
        case("ns.corp.", NS, None).answers(&["ns.corp. 5 IN NS ns.corp."]),
        case("ns.corp.", A, None).negative(NoError),
        case("example.com.", A, None).rcode_refused(),
        case("corp.", SOA, None).rcode_refused(),
        case("web.ns.corp.", SRV, Some("dc1"))
            .answers(&[
                "web.ns.corp. 30 IN SRV 1 100 8080 0a000105.addr.ns.corp.",
                "web.ns.corp. 30 IN SRV 1 100 8080 fd000000000000000000000000000005.addr.ns.corp.",
            ])
            .additionals(&[
                "0a000105.addr.ns.corp. 30 IN A 10.0.1.5",
                "fd000000000000000000000000000005.addr.ns.corp. 30 IN AAAA fd00::5",
            ]),
        case("_http._tcp.web.dc2.ns.corp.", SRV, Some("dc1"))
            .answers(&["_http._tcp.web.dc2.ns.corp. 30 IN SRV 1 100 8080 0a000205.addr.ns.corp."])
            .additionals(&["0a000205.addr.ns.corp. 30 IN A 10.0.2.5"]),
        case("_grpc._tcp.web.ns.corp.", SRV, Some("dc1")).negative(NoError),
        case("_http._tcp.web.ns.corp.", A, Some("dc1")).negative(NoError),
        case("_http._tcp.nope.ns.corp.", SRV, None).negative(NXDomain),
        case("0a000105.addr.ns.corp.", A, None)
            .answers(&["0a000105.addr.ns.corp. 5 IN A 10.0.1.5"]),
        case("0a000105.addr.ns.corp.", AAAA, None).negative(NoError),
        case("zz000105.addr.ns.corp.", A, None).negative(NXDomain),
        // hickory's text form runs the character-strings together.
        case("web.ns.corp.", TXT, Some("dc1")).answers(&[
            "web.ns.corp. 30 IN TXT owner=team-adescription=",
            "web.ns.corp. 30 IN TXT id=w1version=v1dc=dc1weight=100addr=10.0.1.5:8080meta.rack=r1",
            "web.ns.corp. 30 IN TXT id=w1v6version=v1dc=dc1weight=100addr=fd00::5:8080meta.rack=r1",
        ]),
        case("web.ns.corp.", ANY, Some("dc1")).answers(&[
            "web.ns.corp. 30 IN A 10.0.1.5",
            "web.ns.corp. 30 IN AAAA fd00::5",
        ]),
    ];
    for c in cases {
        check(&z, c);
    }
}

impl Case {
    fn rcode_refused(mut self) -> Case {
        self.rcode = ResponseCode::Refused;
        self
    }
}

#[test]
fn kinds_and_srv_priority_on_fallback() {
    let mut c = catalog();
    // dc2's only usable instance drained: its clients fall back to dc1 at priority 2.
    let mut p = TrafficPolicy::default();
    p.overrides.insert(
        InstanceId::parse("w2").unwrap(),
        Override {
            drain: true,
            weight: None,
        },
    );
    c.service_mut(&svc("web")).traffic = Some(p);
    let z = zone_of(c);
    let a = ask(&z, "web.ns.corp.", SRV, Some("dc2"), 1);
    assert_eq!(a.kind, NameKind::Service);
    assert!(
        a.answers
            .iter()
            .all(|r| r.to_string().contains(" SRV 2 100 "))
    );
    assert_eq!(ask(&z, "ns.corp.", A, None, 1).kind, NameKind::Apex);
    assert_eq!(ask(&z, "x.y.", A, None, 1).kind, NameKind::Outside);
    assert_eq!(ask(&z, "hotel.ns.corp.", A, None, 1).kind, NameKind::Parent);
    assert!(!a.per_client);
}

#[test]
fn all_critical_fails_open_only_with_a_threshold() {
    let mut c = catalog();
    let idle = c.service_mut(&svc("idle"));
    for (id, ip) in [("i2", "10.0.1.8"), ("i3", "10.0.1.10"), ("i4", "10.0.1.11")] {
        let status = if id == "i4" {
            Health::Passing
        } else {
            Health::Critical
        };
        idle.instances
            .insert(InstanceId::parse(id).unwrap(), inst(ip, "dc1", status));
    }
    let a = ask(&zone_of(c.clone()), "idle.ns.corp.", A, Some("dc1"), 1);
    assert_eq!(a.answers.len(), 1);
    assert!(!a.fail_open);
    c.service_mut(&svc("idle")).def = Some(ServiceDef {
        fail_open_percent: Some(50),
        ..ServiceDef::default()
    });
    let a = ask(&zone_of(c), "idle.ns.corp.", A, Some("dc1"), 1);
    assert_eq!(a.answers.len(), 4);
    assert!(a.fail_open);
}

#[test]
fn gray_groups_split_by_client_key_and_stick() {
    let mut c = catalog();
    let web = c.service_mut(&svc("web"));
    let mut canary = inst("10.0.1.6", "dc1", Health::Passing);
    canary.version = "v2".into();
    web.instances
        .insert(InstanceId::parse("w9").unwrap(), canary);
    web.traffic = Some(TrafficPolicy {
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
        ..TrafficPolicy::default()
    });
    let z = zone_of(c);
    let canary_of = |key| {
        let a = ask(&z, "web.ns.corp.", A, Some("dc1"), key);
        assert!(a.per_client);
        a.answers[0].to_string().ends_with("10.0.1.6")
    };
    let n = (0..2000u64).filter(|k| canary_of(*k * 7919)).count();
    assert!((160..=240).contains(&n), "{n} of 2000 in the 10 % group");
    for k in 0..50u64 {
        assert_eq!(canary_of(k), canary_of(k), "key {k} changed group");
    }
}

#[test]
fn forced_shift_applies_until_expiry() {
    let mut c = catalog();
    c.service_mut(&svc("web")).traffic = Some(TrafficPolicy {
        shifts: vec![Shift {
            from_dc: DcName::parse("dc1").unwrap(),
            to_dc: DcName::parse("dc2").unwrap(),
            percent: 100,
        }],
        expires_at: Some(NOW + 1),
        ..TrafficPolicy::default()
    });
    let z = zone_of(c.clone());
    let a = ask(&z, "web.ns.corp.", A, Some("dc1"), 1);
    assert_eq!(text(&a.answers), ["web.ns.corp. 30 IN A 10.0.2.5"]);
    if let Some(p) = c.service_mut(&svc("web")).traffic.as_mut() {
        p.expires_at = Some(NOW);
    }
    let a = ask(&zone_of(c), "web.ns.corp.", A, Some("dc1"), 1);
    assert_eq!(text(&a.answers), ["web.ns.corp. 30 IN A 10.0.1.5"]);
    assert!(!a.per_client);
}

#[test]
fn the_answer_is_capped() {
    let mut c = catalog();
    let web = c.service_mut(&svc("web"));
    for i in 0..100u8 {
        web.instances.insert(
            InstanceId::parse(&format!("n{i}")).unwrap(),
            inst(&format!("10.0.3.{i}"), "dc3", Health::Passing),
        );
    }
    c.datacenters
        .insert(DcName::parse("dc3").unwrap(), Datacenter::default());
    let z = zone_of(c);
    assert_eq!(ask(&z, "web.dc3.ns.corp.", A, None, 1).answers.len(), 64);
    // A label no service can have (a byte outside [a-z0-9_-]) is NXDOMAIN at once.
    let odd = Name::from_labels([&b"w*b"[..], b"ns", b"corp"]).unwrap();
    let client = ClientCtx { dc: None, key: 1 };
    let params = QueryParams {
        now_ms: NOW,
        seed: 1,
    };
    assert_eq!(
        z.answer(&odd, A, &client, params).rcode,
        ResponseCode::NXDomain
    );
}

mod props {
    use proptest::prelude::*;

    use super::*;

    fn label() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("web".to_string()),
            Just("dc1".to_string()),
            Just("dc2".to_string()),
            Just("hotel".to_string()),
            Just("search".to_string()),
            Just("_http".to_string()),
            Just("_tcp".to_string()),
            Just("addr".to_string()),
            Just("0a000105".to_string()),
            "[a-z0-9_][a-z0-9_-]{0,10}[a-z0-9_]",
        ]
    }

    proptest! {
        /// Every in-zone answer is authoritative, every empty one carries the SOA, answers
        /// are never NXDOMAIN, and the answer for one key and seed is always the same.
        #[test]
        fn answers_are_consistent(
            labels in prop::collection::vec(label(), 0..5),
            qtype in prop::sample::select(vec![A, AAAA, SRV, TXT, MX, NS, SOA, ANY]),
            dc in prop::option::of(prop::sample::select(vec!["dc1", "dc2", "dc9"])),
            key in any::<u64>(),
        ) {
            let z = zone_of(catalog());
            let mut qname = labels.join(".");
            if !qname.is_empty() {
                qname.push('.');
            }
            qname.push_str("ns.corp.");
            let a = ask(&z, &qname, qtype, dc, key);
            prop_assert!(a.authoritative);
            prop_assert_ne!(a.rcode, ResponseCode::Refused);
            if a.answers.is_empty() {
                prop_assert_eq!(text(&a.authority), vec![SOA_TEXT.to_string()]);
            } else {
                prop_assert_eq!(a.rcode, ResponseCode::NoError);
                prop_assert!(a.authority.is_empty());
            }
            prop_assert_eq!(&ask(&z, &qname, qtype, dc, key), &a);
        }
    }
}
