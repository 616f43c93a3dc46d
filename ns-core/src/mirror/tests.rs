//! The pure half of the mirror: listings and watch messages turned into a catalog, with no
//! network. The property test checks the invariant the mirror rests on: applying the watch
//! events to a listing gives the same snapshot as listing again.

use std::collections::BTreeMap;

use proptest::prelude::*;
use pyxis_client::api::{KeyValue, RangeResponse, WatchMessage, encode_value};

use super::*;
use crate::name::{InstanceId, ServiceName};

const WEB_1: &str = r#"{"address":"10.0.1.5","port":8080,"datacenter":"dc1","node":"h1"}"#;
const WEB_2: &str = r#"{"address":"10.0.2.5","port":8080,"datacenter":"dc2","node":"h2"}"#;

fn svc(s: &str) -> ServiceName {
    ServiceName::parse(s).unwrap()
}

fn id(s: &str) -> InstanceId {
    InstanceId::parse(s).unwrap()
}

fn listing(revision: Revision, kvs: &[(&str, &str)]) -> RangeResponse {
    RangeResponse {
        revision,
        entries: kvs
            .iter()
            .map(|(k, v)| KeyValue {
                key: (*k).to_owned(),
                value: v.as_bytes().to_vec().into(),
                create_rev: 1,
                mod_rev: 1,
                version: 1,
                lease: None,
            })
            .collect(),
        more: false,
    }
}

fn put(key: &str, value: &[u8], mod_rev: Revision) -> WatchMessage {
    let (value, value_b64) = encode_value(value);
    WatchMessage::Put {
        key: key.to_owned(),
        value,
        value_b64,
        mod_rev,
        lease: None,
    }
}

fn delete(key: &str, mod_rev: Revision) -> WatchMessage {
    WatchMessage::Delete {
        key: key.to_owned(),
        mod_rev,
    }
}

#[test]
fn listing_builds_the_catalog_and_skips_bad_keys() {
    let snap = Snapshot::from_listing(&listing(
        7,
        &[
            ("/ns/datacenters/dc1", r#"{"subnets":["10.0.1.0/24"]}"#),
            ("/ns/instances/web/h1", WEB_1),
            ("/ns/instances/web/h2", r#"{"address":"10.0.2.5"}"#),
            ("/ns/instances/Web/h3", WEB_1),
            ("/ns/other/x", "{}"),
            ("/ns/services/web", r#"{"owner":"team-a"}"#),
            ("/ns/traffic/web", "not json"),
        ],
    ));
    assert_eq!(snap.revision, 7);
    let web = snap.catalog.service(&svc("web")).unwrap();
    assert_eq!(web.def.as_ref().unwrap().owner, "team-a");
    assert_eq!(web.traffic, None);
    assert_eq!(web.instances.keys().collect::<Vec<_>>(), [&id("h1")]);
    assert_eq!(snap.catalog.datacenters.len(), 1);
    assert_eq!(
        snap.invalid.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "/ns/instances/Web/h3",
            "/ns/instances/web/h2",
            "/ns/other/x",
            "/ns/traffic/web"
        ]
    );
    // The reason names the field at fault.
    assert!(
        snap.invalid["/ns/instances/web/h2"].contains("port"),
        "{:?}",
        snap.invalid
    );
    assert_eq!(snap.invalid["/ns/other/x"], OUTSIDE_LAYOUT);
}

#[test]
fn events_change_the_catalog_and_move_the_revision() {
    let mut snap = Snapshot::from_listing(&listing(3, &[("/ns/instances/web/h1", WEB_1)]));
    assert_eq!(
        snap.apply(&put("/ns/instances/web/h2", WEB_2.as_bytes(), 4)),
        Ok(true)
    );
    assert_eq!(snap.catalog.services[&svc("web")].instances.len(), 2);
    assert_eq!(snap.revision, 4);

    assert_eq!(
        snap.apply(&WatchMessage::Progress { revision: 9 }),
        Ok(false)
    );
    assert_eq!(snap.revision, 9);

    assert_eq!(snap.apply(&delete("/ns/instances/web/h1", 10)), Ok(true));
    assert_eq!(snap.apply(&delete("/ns/instances/web/h2", 11)), Ok(true));
    // The last key of a service gone: so is the service.
    assert!(snap.catalog.services.is_empty());
    assert_eq!(snap.revision, 11);
    // Deleting what is not there changes nothing.
    assert_eq!(snap.apply(&delete("/ns/instances/web/h2", 12)), Ok(false));
}

#[test]
fn a_bad_value_replaces_the_good_one_and_a_good_one_clears_it() {
    let mut snap = Snapshot::from_listing(&listing(1, &[("/ns/instances/web/h1", WEB_1)]));
    let err = snap
        .apply(&put("/ns/instances/web/h1", br#"{"port":0}"#, 2))
        .unwrap_err();
    assert!(!err.is_empty());
    // As a fresh listing would: the key holds a bad value, so no instance.
    assert!(snap.catalog.services.is_empty());
    assert!(snap.invalid.contains_key("/ns/instances/web/h1"));

    assert_eq!(
        snap.apply(&put("/ns/instances/web/h1", WEB_1.as_bytes(), 3)),
        Ok(true)
    );
    assert!(snap.invalid.is_empty());
    assert_eq!(snap.catalog.services[&svc("web")].instances.len(), 1);

    // A value that is not UTF-8 arrives as base64 and fails JSON parsing, never the mirror.
    assert!(
        snap.apply(&put("/ns/services/web", &[0xff, 0xfe], 4))
            .is_err()
    );
    assert!(snap.invalid.contains_key("/ns/services/web"));
    assert_eq!(snap.apply(&delete("/ns/services/web", 5)), Ok(true));
    assert!(snap.invalid.is_empty());
}

#[test]
fn keys_outside_ns_are_ignored() {
    let mut snap = Snapshot::default();
    assert_eq!(snap.apply(&put("/kv/x", b"1", 2)), Ok(false));
    assert_eq!(
        snap,
        Snapshot {
            revision: 2,
            ..Snapshot::default()
        }
    );
}

#[test]
fn agent_status_records_are_not_catalog_changes() {
    let mut snap = Snapshot::default();
    // Neither a record nor garbage under /ns/agents/ is a change or an invalid key.
    assert_eq!(snap.apply(&put("/ns/agents/host7", b"{}", 3)), Ok(false));
    assert_eq!(snap.apply(&put("/ns/agents/a/b", b"junk", 4)), Ok(false));
    assert_eq!(snap.apply(&delete("/ns/agents/host7", 5)), Ok(false));
    assert_eq!(
        snap,
        Snapshot {
            revision: 5,
            ..Snapshot::default()
        }
    );
    let listed = Snapshot::from_listing(&listing(6, &[("/ns/agents/host7", "{}")]));
    assert!(listed.invalid.is_empty() && listed.catalog == Catalog::default());
}

/// Keys the property test writes to: every kind, a few names, and one outside the layout.
const KEYS: &[&str] = &[
    "/ns/services/web",
    "/ns/services/api.web",
    "/ns/instances/web/h1",
    "/ns/instances/web/h2",
    "/ns/instances/api.web/h1",
    "/ns/traffic/web",
    "/ns/datacenters/dc1",
    "/ns/bogus/web",
];

/// A valid value for `key` (variant `n`), or a bad one.
fn value(key: &str, n: u8, bad: bool) -> Vec<u8> {
    if bad {
        return br#"{"nope":1}"#.to_vec();
    }
    let v = if key.starts_with(keys::INSTANCES) {
        format!(r#"{{"address":"10.0.0.{n}","port":80,"datacenter":"dc1","node":"h"}}"#)
    } else if key.starts_with(keys::SERVICES) {
        format!(r#"{{"owner":"team-{n}"}}"#)
    } else if key.starts_with(keys::TRAFFIC) {
        format!(r#"{{"prefer_same_dc":{}}}"#, n.is_multiple_of(2))
    } else {
        format!(r#"{{"subnets":["10.{n}.0.0/16"]}}"#)
    };
    v.into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Listing at R then applying the events after R equals a listing of the final state.
    #[test]
    fn watch_events_agree_with_a_fresh_listing(
        initial in prop::collection::vec((0..KEYS.len(), any::<u8>(), prop::bool::weighted(0.2)), 0..8),
        ops in prop::collection::vec(
            (0..KEYS.len(), prop::option::weighted(0.7, (any::<u8>(), prop::bool::weighted(0.2)))),
            0..40,
        ),
    ) {
        let mut store: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (k, n, bad) in initial {
            store.insert(KEYS[k].to_owned(), value(KEYS[k], n, bad));
        }
        let as_listing = |store: &BTreeMap<String, Vec<u8>>, revision| RangeResponse {
            revision,
            entries: store
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: v.clone().into(),
                    create_rev: 1,
                    mod_rev: 1,
                    version: 1,
                    lease: None,
                })
                .collect(),
            more: false,
        };
        let mut rev = 10;
        let mut snap = Snapshot::from_listing(&as_listing(&store, rev));
        for (k, op) in ops {
            rev += 1;
            let key = KEYS[k];
            let msg = match op {
                Some((n, bad)) => {
                    let v = value(key, n, bad);
                    store.insert(key.to_owned(), v.clone());
                    put(key, &v, rev)
                }
                None => {
                    store.remove(key);
                    delete(key, rev)
                }
            };
            let _ = snap.apply(&msg);
        }
        prop_assert_eq!(snap, Snapshot::from_listing(&as_listing(&store, rev)));
    }
}

/// A rewrite of the value a key already holds is not a change (the mirror publishes nothing
/// for it); a different value, a delete and a bad value are.
#[test]
fn only_real_changes_count() {
    let mut snap = Snapshot::from_listing(&listing(
        3,
        &[
            ("/ns/instances/web/h1", WEB_1),
            ("/ns/services/web", r#"{"owner":"team-a"}"#),
            ("/ns/datacenters/dc1", r#"{"subnets":["10.0.1.0/24"]}"#),
        ],
    ));
    let same = [
        put("/ns/instances/web/h1", WEB_1.as_bytes(), 4),
        put("/ns/services/web", br#"{"owner":"team-a"}"#, 5),
        put("/ns/datacenters/dc1", br#"{"subnets":["10.0.1.0/24"]}"#, 6),
        delete("/ns/instances/web/h9", 7),
    ];
    for msg in &same {
        assert_eq!(snap.apply(msg), Ok(false), "{msg:?}");
    }
    assert_eq!(snap.revision, 7, "the revision moves even without a change");
    assert_eq!(
        snap.apply(&put("/ns/instances/web/h1", WEB_2.as_bytes(), 8)),
        Ok(true)
    );
    assert_eq!(snap.apply(&put("/ns/traffic/web", b"{}", 9)), Ok(true));
    assert!(
        snap.apply(&put("/ns/services/web", b"not json", 10))
            .is_err()
    );
    assert_eq!(
        snap.apply(&put("/ns/services/web", br#"{"owner":"team-a"}"#, 11)),
        Ok(true),
        "a good value replacing a bad one is a change (it leaves `invalid`)"
    );
    assert_eq!(snap.apply(&delete("/ns/instances/web/h1", 12)), Ok(true));
}
