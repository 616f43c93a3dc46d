//! The five routing properties of issue 4, as proptests with a fixed seed:
//! group shares converge to the weights, a client keeps its group while the weights hold,
//! drained or critical instances never appear, same-DC instances come first whenever one is
//! healthy, and forced shifts move the stated share.

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use super::tests::{catalog, client, dc, id, instance, web};
use super::*;
use crate::schema::{Health, Override, Shift, TrafficPolicy, VersionGroup};

const DCS: [&str; 3] = ["dc1", "dc2", "dc3"];
const VERSIONS: [&str; 3] = ["v1", "v2", "v3"];
/// Client keys per case for the share properties: one share's standard deviation is at most
/// 0.5%, so the tolerance below is five of them.
const CLIENTS: u64 = 10_000;
const TOLERANCE: f64 = 0.025;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x0050_5958_4953),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One generated instance: datacenter, version, health, weight, drained, override weight.
type Row = (usize, usize, Health, u16, bool, Option<u16>);

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![
        Just(Health::Passing),
        Just(Health::Warning),
        Just(Health::Critical)
    ]
}

fn rows() -> impl Strategy<Value = Vec<Row>> {
    let row = (
        0..3usize,
        0..3usize,
        health(),
        prop_oneof![Just(0u16), 0..=1000u16],
        prop::bool::weighted(0.2),
        prop::option::weighted(0.2, 0..=1000u16),
    );
    prop::collection::vec(row, 0..16)
}

/// Weights of the groups `v1`, `v2`, ...: none, or some with a positive sum.
fn group_weights() -> impl Strategy<Value = Vec<u16>> {
    prop::collection::vec(prop_oneof![Just(0u16), 0..=1000u16], 0..=3)
        .prop_filter("weights sum to more than 0", |w| {
            w.is_empty() || w.iter().any(|x| *x > 0)
        })
}

/// Up to three shifts between distinct datacenters; at most 50% each, so that at most two
/// out of one datacenter never add up to more than 100.
fn shifts() -> impl Strategy<Value = Vec<Shift>> {
    prop::collection::vec((0..3usize, 1..3usize, 0..=50u8), 0..=3).prop_map(|v| {
        let mut out: Vec<Shift> = Vec::new();
        for (from, off, percent) in v {
            let (from_dc, to_dc) = (dc(DCS[from]), dc(DCS[(from + off) % 3]));
            if !out.iter().any(|s| s.from_dc == from_dc && s.to_dc == to_dc) {
                out.push(Shift {
                    from_dc,
                    to_dc,
                    percent,
                });
            }
        }
        out
    })
}

fn build(rows: &[Row], weights: &[u16], shifts: Vec<Shift>, prefer_same_dc: bool) -> Catalog {
    let mut c = catalog(&[]);
    let mut policy = TrafficPolicy {
        prefer_same_dc,
        groups: weights
            .iter()
            .zip(VERSIONS)
            .map(|(w, v)| VersionGroup {
                version: v.into(),
                weight: *w,
            })
            .collect(),
        shifts,
        ..TrafficPolicy::default()
    };
    let entry = c.service_mut(&web());
    for (n, (d, v, h, w, drain, weight)) in rows.iter().enumerate() {
        let i = id(&format!("i{n}"));
        entry
            .instances
            .insert(i.clone(), instance(DCS[*d], VERSIONS[*v], *h, *w));
        if *drain || weight.is_some() {
            policy.overrides.insert(
                i,
                Override {
                    drain: *drain,
                    weight: *weight,
                },
            );
        }
    }
    policy.validate().expect("generated policies are valid");
    entry.traffic = Some(policy);
    c
}

fn client_dc() -> impl Strategy<Value = Option<&'static str>> {
    prop::option::weighted(0.8, prop::sample::select(&DCS[..]))
}

fn params(seed: u64, max_answers: usize) -> Params {
    Params {
        now_ms: 1_000,
        seed,
        max_answers,
    }
}

/// Whether routing may use instance `i` of `c` (not critical, not drained by the policy).
fn usable(c: &Catalog, i: &InstanceId) -> bool {
    let e = c.service(&web()).unwrap();
    let drained = e
        .traffic
        .as_ref()
        .and_then(|p| p.overrides.get(i))
        .is_some_and(|o| o.drain);
    e.instances[i].status.is_routable() && !drained
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn group_shares_converge_to_weights(weights in group_weights().prop_filter("groups", |w| w.len() >= 2)) {
        let rows: Vec<Row> = (0..weights.len()).map(|v| (0, v, Health::Passing, 100, false, None)).collect();
        let c = build(&rows, &weights, Vec::new(), true);
        let mut counts = [0u64; 3];
        for key in 0..CLIENTS {
            let s = select(&c, &web(), &client(Some("dc1"), key), &params(key, 5));
            let v = s.group.expect("groups are set");
            counts[VERSIONS.iter().position(|x| *x == v).unwrap()] += 1;
        }
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        for (w, n) in weights.iter().zip(counts) {
            let (want, got) = (f64::from(*w) / total as f64, n as f64 / CLIENTS as f64);
            prop_assert!((want - got).abs() <= TOLERANCE, "weights {weights:?}: share {got} for weight {w}");
        }
    }

    #[test]
    fn forced_shifts_move_the_stated_share(p1 in 0..=100u8, p2_frac in 0.0..=1.0f64) {
        let p2 = ((100 - p1) as f64 * p2_frac) as u8;
        let rows: Vec<Row> = (0..3).map(|d| (d, 0, Health::Passing, 100, false, None)).collect();
        let c = build(&rows, &[], vec![Shift { from_dc: dc("dc1"), to_dc: dc("dc2"), percent: p1 }, Shift { from_dc: dc("dc1"), to_dc: dc("dc3"), percent: p2 }], true);
        let mut counts = [0u64; 3];
        for key in 0..CLIENTS {
            let s = select(&c, &web(), &client(Some("dc1"), key), &params(key, 5));
            let at = s.dc.clone().expect("every dc has an instance");
            prop_assert!(s.instances.iter().all(|i| i.instance.datacenter == at));
            prop_assert_eq!(s.shifted, at.as_str() != "dc1");
            counts[DCS.iter().position(|d| *d == at.as_str()).unwrap()] += 1;
        }
        for (want, n) in [100 - p1 - p2, p1, p2].into_iter().zip(counts) {
            let (want, got) = (f64::from(want) / 100.0, n as f64 / CLIENTS as f64);
            prop_assert!((want - got).abs() <= TOLERANCE, "shifts {p1}%/{p2}%: share {got}, want {want}");
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn client_keeps_its_group_while_weights_hold(
        weights in group_weights(),
        (rows_a, rows_b) in (rows(), rows()),
        (shifts_a, shifts_b) in (shifts(), shifts()),
        key: u64,
        home in client_dc(),
        (seed_a, seed_b) in (any::<u64>(), any::<u64>()),
    ) {
        // Everything but the weights changes between the two looks: instances, health, drains,
        // shifts and the seed.
        let a = build(&rows_a, &weights, shifts_a, true);
        let b = build(&rows_b, &weights, shifts_b, false);
        let sa = select(&a, &web(), &client(home, key), &params(seed_a, 3));
        let sb = select(&b, &web(), &client(home, key), &params(seed_b, 3));
        prop_assert_eq!(sa.group, sb.group);
        prop_assert_eq!(sa.group.is_some(), !weights.is_empty());
        for s in [&sa, &sb] {
            if let (Some(v), false) = (s.group, s.group_fallback) {
                prop_assert!(s.instances.iter().all(|i| i.instance.version == v));
            }
        }
    }

    #[test]
    fn drained_or_critical_never_appear(
        rows in rows(),
        weights in group_weights(),
        shifts in shifts(),
        prefer in any::<bool>(),
        home in client_dc(),
        key: u64,
        seed: u64,
        max_answers in 0..20usize,
    ) {
        let c = build(&rows, &weights, shifts, prefer);
        let s = select(&c, &web(), &client(home, key), &params(seed, max_answers));
        for i in &s.instances {
            prop_assert!(usable(&c, i.id), "{} is critical or drained", i.id);
        }
        let any_usable = c.service(&web()).unwrap().instances.keys().any(|i| usable(&c, i));
        prop_assert_eq!(s.instances.is_empty(), !any_usable || max_answers == 0);
        prop_assert!(s.instances.len() <= max_answers);
    }

    #[test]
    fn same_dc_instances_come_first_whenever_one_is_healthy(
        rows in rows(),
        weights in group_weights(),
        home in prop::sample::select(&DCS[..]),
        key: u64,
        seed: u64,
    ) {
        let c = build(&rows, &weights, Vec::new(), true);
        let s = select(&c, &web(), &client(Some(home), key), &params(seed, 100));
        let entry = c.service(&web()).unwrap();
        let usable: Vec<&Instance> = entry.instances.iter().filter(|(i, _)| usable(&c, i)).map(|(_, x)| x).collect();
        // The pool routing draws from: the client's group if it has a usable instance anywhere,
        // else every version.
        let in_group: Vec<&Instance> = usable.iter().copied().filter(|x| s.group.is_none_or(|v| x.version == v)).collect();
        let pool = if in_group.is_empty() { usable } else { in_group };
        if pool.iter().any(|x| x.datacenter.as_str() == home) {
            prop_assert!(!s.instances.is_empty());
            prop_assert!(s.instances.iter().all(|i| i.instance.datacenter.as_str() == home));
            prop_assert!(!s.dc_fallback);
        }
    }
}
