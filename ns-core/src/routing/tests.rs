//! Table tests, one group per step of `select`, behind one `check` helper.

use super::*;
use crate::schema::{Datacenter, Health, Override, ServiceDef, Shift, TrafficPolicy, VersionGroup};

use Health::{Critical, Passing, Warning};

pub(super) fn web() -> ServiceName {
    ServiceName::parse("web").unwrap()
}

pub(super) fn dc(s: &str) -> DcName {
    DcName::parse(s).unwrap()
}

pub(super) fn id(s: &str) -> InstanceId {
    InstanceId::parse(s).unwrap()
}

pub(super) fn instance(dc_name: &str, version: &str, status: Health, weight: u16) -> Instance {
    Instance {
        address: "10.0.0.1".parse().unwrap(),
        port: 80,
        datacenter: dc(dc_name),
        version: version.into(),
        weight,
        tags: Vec::new(),
        meta: BTreeMap::new(),
        status,
        node: "host".into(),
    }
}

/// A catalog with one service, `web`, and these instances: (id, dc, version, health, weight).
pub(super) fn catalog(rows: &[(&str, &str, &str, Health, u16)]) -> Catalog {
    let mut c = Catalog::default();
    let entry = c.service_mut(&web());
    for (i, d, v, h, w) in rows {
        entry.instances.insert(id(i), instance(d, v, *h, *w));
    }
    c
}

pub(super) fn client(dc_name: Option<&str>, key: u64) -> ClientCtx {
    ClientCtx {
        dc: dc_name.map(dc),
        key,
    }
}

const PARAMS: Params = Params {
    now_ms: 1_000,
    seed: 7,
    max_answers: 100,
};

fn set_policy(c: &mut Catalog, p: TrafficPolicy) {
    c.service_mut(&web()).traffic = Some(p);
}

fn with_groups(g: &[(&str, u16)]) -> TrafficPolicy {
    let groups = g
        .iter()
        .map(|(v, w)| VersionGroup {
            version: (*v).into(),
            weight: *w,
        })
        .collect();
    TrafficPolicy {
        groups,
        ..TrafficPolicy::default()
    }
}

fn with_shifts(prefer_same_dc: bool, shifts: &[(&str, &str, u8)]) -> TrafficPolicy {
    let shifts = shifts
        .iter()
        .map(|(from, to, percent)| Shift {
            from_dc: dc(from),
            to_dc: dc(to),
            percent: *percent,
        })
        .collect();
    TrafficPolicy {
        prefer_same_dc,
        shifts,
        ..TrafficPolicy::default()
    }
}

fn with_override(p: &mut TrafficPolicy, i: &str, drain: bool, weight: Option<u16>) {
    p.overrides.insert(id(i), Override { drain, weight });
}

/// What a case expects: these ids (sorted) from this datacenter, and the flags set by the
/// builder methods; every flag not set is expected false.
#[derive(Default)]
struct Want<'w> {
    ids: &'w [&'w str],
    dc: Option<&'w str>,
    group: Option<&'w str>,
    shifted: bool,
    dc_fallback: bool,
    group_fallback: bool,
}

fn want<'w>(ids: &'w [&'w str], dc: Option<&'w str>) -> Want<'w> {
    Want {
        ids,
        dc,
        ..Want::default()
    }
}

impl<'w> Want<'w> {
    fn group(self, v: &'w str) -> Self {
        Want {
            group: Some(v),
            ..self
        }
    }
    fn shifted(self) -> Self {
        Want {
            shifted: true,
            ..self
        }
    }
    fn dc_fallback(self) -> Self {
        Want {
            dc_fallback: true,
            ..self
        }
    }
    fn group_fallback(self) -> Self {
        Want {
            group_fallback: true,
            ..self
        }
    }
}

fn check(case: &str, c: &Catalog, who: &ClientCtx, want: Want<'_>) {
    let s = select(c, &web(), who, &PARAMS);
    let mut ids: Vec<&str> = s.instances.iter().map(|i| i.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, want.ids, "{case}: ids");
    assert_eq!(s.dc.as_ref().map(DcName::as_str), want.dc, "{case}: dc");
    assert_eq!(s.group, want.group, "{case}: group");
    assert_eq!(s.shifted, want.shifted, "{case}: shifted");
    assert_eq!(s.dc_fallback, want.dc_fallback, "{case}: dc_fallback");
    let group_fallback = s.group_fallback;
    assert_eq!(
        group_fallback, want.group_fallback,
        "{case}: group_fallback"
    );
}

/// One routable instance per datacenter: a in dc1, b in dc2, c in dc3.
fn three_dcs() -> Catalog {
    catalog(&[
        ("a", "dc1", "v1", Passing, 100),
        ("b", "dc2", "v1", Passing, 100),
        ("c", "dc3", "v1", Passing, 100),
    ])
}

#[test]
fn unknown_service_is_empty() {
    let c = three_dcs();
    let nope = ServiceName::parse("nope").unwrap();
    let s = select(&c, &nope, &client(None, 1), &PARAMS);
    assert!(s.instances.is_empty());
    assert_eq!(s.policy, PolicySource::Default);
}

#[test]
fn health_and_drain() {
    let mut c = catalog(&[
        ("a", "dc1", "", Passing, 100),
        ("b", "dc1", "", Warning, 100),
        ("c", "dc1", "", Critical, 100),
        ("d", "dc1", "", Passing, 100),
        ("e", "dc1", "", Passing, 100),
    ]);
    let mut p = TrafficPolicy::default();
    with_override(&mut p, "d", true, None);
    with_override(&mut p, "e", false, Some(0));
    set_policy(&mut c, p);
    let dc1 = client(Some("dc1"), 1);
    check(
        "critical, drained out",
        &c,
        &dc1,
        want(&["a", "b", "e"], Some("dc1")),
    );
    for seed in 0..50 {
        let s = select(&c, &web(), &dc1, &Params { seed, ..PARAMS });
        let last = s.instances.last().unwrap();
        assert_eq!(
            (last.id.as_str(), last.weight),
            ("e", 0),
            "weight 0 is a standby"
        );
    }
}

#[test]
fn datacenter_preference_and_fallback_order() {
    let mut c = three_dcs();
    let (dc1, dc9) = (client(Some("dc1"), 1), client(Some("dc9"), 1));
    check("own dc first", &c, &dc1, want(&["a"], Some("dc1")));
    check(
        "no client dc",
        &c,
        &client(None, 1),
        want(&["a", "b", "c"], None),
    );

    c.service_mut(&web())
        .instances
        .get_mut(&id("a"))
        .unwrap()
        .status = Critical;
    check("by name", &c, &dc1, want(&["b"], Some("dc2")).dc_fallback());
    check(
        "unknown dc: by name",
        &c,
        &dc9,
        want(&["b"], Some("dc2")).dc_fallback(),
    );
    let list = Datacenter {
        subnets: Vec::new(),
        fallback: vec![dc("dc9"), dc("dc3")],
    };
    c.datacenters.insert(dc("dc1"), list);
    check(
        "list, then names",
        &c,
        &dc1,
        want(&["c"], Some("dc3")).dc_fallback(),
    );
}

#[test]
fn same_dc_preference_can_be_off() {
    let mut c = three_dcs();
    let dc1 = client(Some("dc1"), 1);
    let off = ServiceDef {
        prefer_same_dc: false,
        ..ServiceDef::default()
    };
    c.service_mut(&web()).def = Some(off);
    check(
        "service default off",
        &c,
        &dc1,
        want(&["a", "b", "c"], None),
    );
    set_policy(&mut c, TrafficPolicy::default());
    check(
        "policy beats service default",
        &c,
        &dc1,
        want(&["a"], Some("dc1")),
    );
    set_policy(&mut c, with_shifts(false, &[]));
    check("policy off", &c, &dc1, want(&["a", "b", "c"], None));
}

#[test]
fn forced_shifts() {
    let mut c = three_dcs();
    let at = |d| client(Some(d), 42);
    set_policy(&mut c, with_shifts(true, &[("dc1", "dc2", 100)]));
    check(
        "100% moves all",
        &c,
        &at("dc1"),
        want(&["b"], Some("dc2")).shifted(),
    );
    check("other dcs stay", &c, &at("dc3"), want(&["c"], Some("dc3")));
    check("shifts act once", &c, &at("dc2"), want(&["b"], Some("dc2")));

    set_policy(&mut c, with_shifts(true, &[("dc1", "dc2", 0)]));
    check("0% moves nobody", &c, &at("dc1"), want(&["a"], Some("dc1")));

    set_policy(&mut c, with_shifts(false, &[("dc1", "dc3", 100)]));
    check(
        "without same-dc",
        &c,
        &at("dc1"),
        want(&["c"], Some("dc3")).shifted(),
    );

    set_policy(&mut c, with_shifts(true, &[("dc1", "dc4", 100)]));
    let w = want(&["a"], Some("dc1")).shifted().dc_fallback();
    check("empty destination: by name", &c, &at("dc1"), w);

    set_policy(&mut c, with_shifts(true, &[("dc1", "dc2", 50)]));
    let shifted = |k, seed| {
        let s = select(
            &c,
            &web(),
            &client(Some("dc1"), k),
            &Params { seed, ..PARAMS },
        );
        s.shifted
    };
    let moved = (0..1000).filter(|k| shifted(*k, 1)).count();
    assert!((430..=570).contains(&moved), "50% moved {moved} of 1000");
    assert!(
        (0..100).all(|k| shifted(k, 1) == shifted(k, 2)),
        "seed-free"
    );
}

#[test]
fn version_groups() {
    let mut c = catalog(&[
        ("a1", "dc1", "v1", Passing, 100),
        ("a2", "dc1", "v2", Passing, 100),
        ("b2", "dc2", "v2", Passing, 100),
        ("b3", "dc2", "v3", Passing, 100),
    ]);
    let dc1 = client(Some("dc1"), 1);
    check(
        "no groups: all versions",
        &c,
        &dc1,
        want(&["a1", "a2"], Some("dc1")),
    );

    set_policy(&mut c, with_groups(&[("v1", 0), ("v2", 5)]));
    let w = want(&["a2"], Some("dc1")).group("v2");
    check("weight 0 group never picked", &c, &dc1, w);

    set_policy(&mut c, with_groups(&[("v3", 1)]));
    let w = want(&["b3"], Some("dc2")).group("v3").dc_fallback();
    check("group before datacenter", &c, &dc1, w);

    set_policy(&mut c, with_groups(&[("v9", 1)]));
    let w = want(&["a1", "a2"], Some("dc1"))
        .group("v9")
        .group_fallback();
    check("empty group: any group", &c, &dc1, w);
}

#[test]
fn expired_policy_is_ignored() {
    let mut c = three_dcs();
    let mut p = TrafficPolicy {
        expires_at: Some(1_000),
        ..TrafficPolicy::default()
    };
    with_override(&mut p, "a", true, None);
    set_policy(&mut c, p);
    let dc1 = client(Some("dc1"), 1);
    let s = select(
        &c,
        &web(),
        &dc1,
        &Params {
            now_ms: 999,
            ..PARAMS
        },
    );
    assert_eq!(s.policy, PolicySource::Traffic);
    assert_eq!(s.instances[0].id.as_str(), "b", "a drained before expiry");
    check("gone at expires_at", &c, &dc1, want(&["a"], Some("dc1")));
    let s = select(&c, &web(), &dc1, &PARAMS);
    assert_eq!(s.policy, PolicySource::Expired);
}

#[test]
fn weighted_order_and_cap() {
    let c = catalog(&[
        ("a", "dc1", "", Passing, 100),
        ("b", "dc1", "", Passing, 300),
        ("z", "dc1", "", Passing, 0),
    ]);
    let who = client(Some("dc1"), 1);
    let order = |seed, max_answers| -> Vec<String> {
        let p = Params {
            seed,
            max_answers,
            ..PARAMS
        };
        let s = select(&c, &web(), &who, &p);
        s.instances.iter().map(|i| i.id.to_string()).collect()
    };
    assert_eq!(order(5, 10), order(5, 10), "same seed, same order");
    let mut b_first = 0;
    for seed in 0..20_000 {
        let o = order(seed, 10);
        assert_eq!(o.last().map(String::as_str), Some("z"), "weight 0 last");
        b_first += usize::from(o[0] == "b");
    }
    // b has 300 of 400 weight: first in 75% of answers (sd ~0.3%).
    assert!((14_600..=15_400).contains(&b_first), "b first {b_first}");
    assert_eq!(order(5, 2).len(), 2);
    assert!(order(5, 0).is_empty());
}

#[test]
fn client_keys_are_stable() {
    // Pinned: gateways of different builds must agree on a client's key.
    assert_eq!(client_key(b""), mix(0xcbf2_9ce4_8422_2325));
    assert_eq!(
        client_key_of_ip("10.0.0.1".parse().unwrap()),
        client_key(&[10, 0, 0, 1])
    );
    assert_ne!(client_key(&[10, 0, 0, 1]), client_key(&[10, 0, 0, 2]));
}
