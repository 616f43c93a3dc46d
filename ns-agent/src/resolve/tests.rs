//! The view is the routing policy's list for the agent's client, sorted and complete.

use std::collections::BTreeMap;

use ns_core::schema::{Health, Instance, Override, TrafficPolicy};
use ns_core::{Catalog, DcName, InstanceId, ServiceName, Snapshot};

use super::*;

fn inst(addr: &str, dc: &str, status: Health, weight: u16) -> Instance {
    Instance {
        address: addr.parse().unwrap(),
        port: 8080,
        datacenter: DcName::parse(dc).unwrap(),
        version: "v1".into(),
        weight,
        tags: vec!["http".into()],
        meta: BTreeMap::new(),
        status,
        node: "host".into(),
    }
}

fn snapshot() -> Snapshot {
    let mut c = Catalog::default();
    let web = c.service_mut(&ServiceName::parse("web").unwrap());
    for (id, addr, dc, health) in [
        ("w3", "10.0.1.7", "dc1", Health::Passing),
        ("w1", "10.0.1.5", "dc1", Health::Warning),
        ("w2", "10.0.1.6", "dc1", Health::Critical),
        ("r1", "10.0.2.5", "dc2", Health::Passing),
    ] {
        web.instances
            .insert(InstanceId::parse(id).unwrap(), inst(addr, dc, health, 10));
    }
    let mut policy = TrafficPolicy {
        prefer_same_dc: true,
        ..TrafficPolicy::default()
    };
    policy.overrides.insert(
        InstanceId::parse("w3").unwrap(),
        Override {
            weight: Some(3),
            ..Override::default()
        },
    );
    web.traffic = Some(policy);
    Snapshot {
        catalog: c,
        revision: 9,
        ..Snapshot::default()
    }
}

fn client(dc: &str) -> ClientCtx {
    ClientCtx {
        dc: Some(DcName::parse(dc).unwrap()),
        key: 1,
    }
}

#[test]
fn the_view_is_the_routable_same_dc_list_sorted_by_id() {
    let snap = snapshot();
    let web = ServiceName::parse("web").unwrap();
    let v = view(&snap, &web, &client("dc1"), 0).unwrap();
    let ids: Vec<&str> = v.instances.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["w1", "w3"], "critical left out, same DC only, sorted");
    assert_eq!(v.instances[1].weight, 3, "the effective weight");
    assert_eq!(v.instances[0].status, "warning");
    assert_eq!(v.datacenter.as_deref(), Some("dc1"));
    assert!(!v.fail_open && !v.shifted);
    let far = view(&snap, &web, &client("dc2"), 0).unwrap();
    assert_eq!(far.instances.len(), 1);
    assert_eq!(far.instances[0].address, "10.0.2.5");
}

#[test]
fn the_view_is_deterministic_and_unknown_names_have_none() {
    let snap = snapshot();
    let web = ServiceName::parse("web").unwrap();
    let first = view(&snap, &web, &client("dc1"), 0);
    for _ in 0..20 {
        assert_eq!(view(&snap, &web, &client("dc1"), 0), first);
    }
    let nope = ServiceName::parse("nope").unwrap();
    assert_eq!(view(&snap, &nope, &client("dc1"), 0), None);
}
