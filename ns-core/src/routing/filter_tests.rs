//! Table tests of the query filter (`select_filtered`) and of fail-open.

use super::tests::{catalog, client, dc, id, web};
use super::*;
use crate::schema::{Health, ServiceDef, Shift, TrafficPolicy};

use Health::{Critical, Passing, Warning};

const PARAMS: Params = Params {
    now_ms: 1_000,
    seed: 7,
    max_answers: 100,
};

fn ids(s: &Selection<'_>) -> Vec<String> {
    let mut v: Vec<String> = s.instances.iter().map(|i| i.id.to_string()).collect();
    v.sort();
    v
}

fn with_threshold(c: &mut Catalog, percent: Option<u8>) {
    c.service_mut(&web()).def = Some(ServiceDef {
        fail_open_percent: percent,
        ..ServiceDef::default()
    });
}

#[test]
fn three_of_four_critical_fail_open_at_half() {
    let rows = [
        ("a", "dc1", "", Critical, 100),
        ("b", "dc1", "", Critical, 100),
        ("c", "dc1", "", Critical, 100),
        ("d", "dc1", "", Passing, 100),
    ];
    let mut c = catalog(&rows);
    let me = client(Some("dc1"), 1);
    // Off by default: only the survivor answers.
    let s = select(&c, &web(), &me, &PARAMS);
    assert_eq!(ids(&s), ["d"]);
    assert!(!s.fail_open);
    with_threshold(&mut c, Some(50));
    let s = select(&c, &web(), &me, &PARAMS);
    assert_eq!(ids(&s), ["a", "b", "c", "d"]);
    assert!(s.fail_open);
    // 25 % healthy is not below 25 %.
    with_threshold(&mut c, Some(25));
    let s = select(&c, &web(), &me, &PARAMS);
    assert_eq!(ids(&s), ["d"]);
    assert!(!s.fail_open);
}

#[test]
fn fail_open_keeps_drained_out_and_counts_warning_as_healthy() {
    let rows = [
        ("a", "dc1", "", Critical, 100),
        ("b", "dc1", "", Warning, 100),
        ("c", "dc1", "", Critical, 100),
    ];
    let mut c = catalog(&rows);
    with_threshold(&mut c, Some(50));
    let me = client(Some("dc1"), 1);
    // 1 of 3 routable (33 %) < 50 %: all three.
    assert_eq!(ids(&select(&c, &web(), &me, &PARAMS)), ["a", "b", "c"]);
    // Draining `c` leaves 1 of 2 (50 %): not below, so `b` alone.
    let mut p = TrafficPolicy::default();
    p.overrides.insert(
        id("c"),
        Override {
            drain: true,
            weight: None,
        },
    );
    c.service_mut(&web()).traffic = Some(p);
    let s = select(&c, &web(), &me, &PARAMS);
    assert_eq!(ids(&s), ["b"]);
    assert!(!s.fail_open);
}

#[test]
fn all_critical_without_threshold_is_empty() {
    let c = catalog(&[("a", "dc1", "", Critical, 100)]);
    let s = select(&c, &web(), &client(Some("dc1"), 1), &PARAMS);
    assert!(s.instances.is_empty());
    assert!(!s.fail_open);
}

#[test]
fn dc_filter_pins_the_datacenter_without_shift_or_fallback() {
    let rows = [
        ("a", "dc1", "", Passing, 100),
        ("b", "dc2", "", Passing, 100),
        ("c", "dc2", "", Critical, 100),
    ];
    let mut c = catalog(&rows);
    c.service_mut(&web()).traffic = Some(TrafficPolicy {
        shifts: vec![Shift {
            from_dc: dc("dc2"),
            to_dc: dc("dc1"),
            percent: 100,
        }],
        ..TrafficPolicy::default()
    });
    let dc2 = dc("dc2");
    let only_dc2 = Filter {
        dc: Some(&dc2),
        ..Filter::default()
    };
    // A dc1 client asking for web.dc2 gets dc2's instance, despite the shift out of dc2.
    let s = select_filtered(&c, &web(), &client(Some("dc1"), 1), &PARAMS, &only_dc2);
    assert_eq!(ids(&s), ["b"]);
    assert!(!s.shifted && !s.dc_fallback);
    // With dc2's only instance critical, nothing: no other datacenter stands in.
    c.service_mut(&web()).instances.get_mut("b").unwrap().status = Critical;
    let s = select_filtered(&c, &web(), &client(None, 1), &PARAMS, &only_dc2);
    assert!(s.instances.is_empty());
}

#[test]
fn family_and_tag_filters() {
    let mut c = catalog(&[
        ("v4", "dc1", "", Passing, 100),
        ("v6", "dc1", "", Passing, 100),
    ]);
    let e = c.service_mut(&web());
    e.instances.get_mut("v6").unwrap().address = "fd00::1".parse().unwrap();
    e.instances.get_mut("v6").unwrap().tags = vec!["grpc".into()];
    let me = client(Some("dc1"), 1);
    let f = |ipv4, tag| Filter {
        dc: None,
        tag,
        ipv4,
    };
    let sel = |flt: Filter<'_>| ids(&select_filtered(&c, &web(), &me, &PARAMS, &flt));
    assert_eq!(sel(f(Some(true), None)), ["v4"]);
    assert_eq!(sel(f(Some(false), None)), ["v6"]);
    assert_eq!(sel(f(None, Some("grpc"))), ["v6"]);
    assert!(sel(f(Some(true), Some("grpc"))).is_empty());
    assert_eq!(sel(f(None, None)), ["v4", "v6"]);
}
