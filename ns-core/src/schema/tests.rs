//! One test per validation rule, each showing the field the error names.

use serde_json::{Value, json};

use super::*;

fn instance() -> Value {
    json!({
        "address": "10.0.1.5", "port": 8080, "datacenter": "dc1", "version": "v1",
        "weight": 100, "tags": ["http"], "meta": {"team": "hotel"}, "status": "passing",
        "node": "host7"
    })
}

fn policy() -> Value {
    json!({
        "prefer_same_dc": true,
        "groups": [{"version": "v1", "weight": 90}, {"version": "v2", "weight": 10}],
        "shifts": [{"from_dc": "dc1", "to_dc": "dc2", "percent": 20}],
        "overrides": {"host7-web": {"drain": true}, "host8-web": {"weight": 5}},
        "expires_at": 1_700_000_000_000u64
    })
}

/// The error `from_json` gives for `v`, as displayed.
fn err<T>(from_json: fn(&[u8]) -> Result<T, ValidationError>, v: Value) -> String {
    match from_json(v.to_string().as_bytes()) {
        Ok(_) => panic!("accepted {v}"),
        Err(e) => e.to_string(),
    }
}

fn inst_err(field: &str, value: Value) -> String {
    let mut v = instance();
    v[field] = value;
    err(Instance::from_json, v)
}

fn policy_err(edit: impl FnOnce(&mut Value)) -> String {
    let mut v = policy();
    edit(&mut v);
    err(TrafficPolicy::from_json, v)
}

#[test]
fn valid_values_round_trip() {
    let i = Instance::from_json(instance().to_string().as_bytes()).unwrap();
    assert_eq!(i.port, 8080);
    assert_eq!(Instance::from_json(&serde_json::to_vec(&i).unwrap()), Ok(i));
    let p = TrafficPolicy::from_json(policy().to_string().as_bytes()).unwrap();
    assert_eq!(p.overrides.len(), 2);
    assert_eq!(
        TrafficPolicy::from_json(&serde_json::to_vec(&p).unwrap()),
        Ok(p)
    );
    let d =
        Datacenter::from_json(br#"{"subnets": ["10.1.0.0/16", "fd00::/8"], "fallback": ["dc2"]}"#)
            .unwrap();
    assert_eq!(
        Datacenter::from_json(&serde_json::to_vec(&d).unwrap()),
        Ok(d)
    );
}

#[test]
fn defaults_fill_optional_fields() {
    let i =
        Instance::from_json(br#"{"address": "::1", "port": 53, "datacenter": "dc1", "node": "h"}"#)
            .unwrap();
    assert_eq!(
        (i.weight, i.status, i.version.as_str()),
        (100, Health::Passing, "")
    );
    assert_eq!(ServiceDef::from_json(b"{}"), Ok(ServiceDef::default()));
    assert_eq!(
        TrafficPolicy::from_json(b"{}"),
        Ok(TrafficPolicy::default())
    );
    assert_eq!(Datacenter::from_json(b"{}"), Ok(Datacenter::default()));
}

#[test]
fn body_must_be_a_json_object() {
    assert_eq!(
        err(Instance::from_json, json!(["10.0.1.5", 8080])),
        "body: must be a JSON object"
    );
    let e = Instance::from_json(b"{not json").unwrap_err();
    assert_eq!(e.field, "body");
}

#[test]
fn unknown_and_missing_fields_are_named() {
    let mut v = instance();
    v["prot"] = json!(1);
    assert!(err(Instance::from_json, v).starts_with("prot: unknown field `prot`"));
    let mut v = instance();
    v.as_object_mut().unwrap().remove("port");
    assert_eq!(err(Instance::from_json, v), "port: missing field `port`");
    assert!(
        policy_err(|p| p["groups"][1]["wieght"] = json!(1))
            .starts_with("groups[1].wieght: unknown field `wieght`")
    );
}

#[test]
fn instance_address_must_be_an_ip() {
    assert_eq!(
        inst_err("address", json!("web.local")),
        "address: \"web.local\" is not an IPv4 or IPv6 address"
    );
    assert_eq!(
        inst_err("address", json!("0.0.0.0")),
        "address: must not be unspecified (0.0.0.0 or ::)"
    );
    assert_eq!(
        inst_err("address", json!("ff02::1")),
        "address: must not be a multicast address"
    );
}

#[test]
fn instance_port_is_1_to_65535() {
    for bad in [json!(0), json!(65536), json!(-1)] {
        assert_eq!(inst_err("port", bad), "port: must be 1..=65535");
    }
    assert!(inst_err("port", json!("80")).starts_with("port: invalid type"));
}

#[test]
fn instance_datacenter_is_a_dns_label() {
    assert_eq!(
        inst_err("datacenter", json!("DC1")),
        "datacenter: must be lowercase"
    );
}

#[test]
fn instance_version_charset() {
    assert_eq!(
        inst_err("version", json!("v 1")),
        "version: has ' '; only letters, digits, '.', '_', '+' and '-' are allowed"
    );
}

#[test]
fn instance_weight_is_0_to_1000() {
    assert_eq!(inst_err("weight", json!(1001)), "weight: must be 0..=1000");
}

#[test]
fn instance_tags() {
    assert_eq!(
        inst_err("tags", json!(["ok", ""])),
        "tags[1]: must be 1..=128 characters long"
    );
    assert_eq!(
        inst_err("tags", json!(["a b"])),
        "tags[0]: must not contain whitespace or control characters"
    );
    let many: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    assert_eq!(
        inst_err("tags", json!(many)),
        "tags: at most 64 tags allowed"
    );
}

#[test]
fn instance_meta() {
    assert!(inst_err("meta", json!({"bad key": "x"})).starts_with("meta: key \"bad key\" must be"));
    assert_eq!(
        inst_err("meta", json!({"k": "x".repeat(1025)})),
        "meta.k: must be at most 1024 characters long"
    );
}

#[test]
fn instance_status_is_one_of_three() {
    assert!(inst_err("status", json!("sick")).starts_with("status: unknown variant `sick`"));
}

#[test]
fn instance_node() {
    assert!(inst_err("node", json!("")).starts_with("node: must be 1..=253 characters"));
    assert!(inst_err("node", json!("a/b")).starts_with("node: must be 1..=253 characters"));
}

#[test]
fn validate_checks_values_built_in_code() {
    let mut i = Instance::from_json(instance().to_string().as_bytes()).unwrap();
    i.port = 0;
    assert_eq!(
        i.validate().unwrap_err().to_string(),
        "port: must be 1..=65535"
    );
    i.port = 80;
    i.weight = 2000;
    let e = i.validate().unwrap_err().within("instances[2]");
    assert_eq!(e.to_string(), "instances[2].weight: must be 0..=1000");
}

#[test]
fn service_def_rules() {
    let e = |v: Value| err(ServiceDef::from_json, v);
    assert_eq!(e(json!({"ttl_secs": 86401})), "ttl_secs: must be 0..=86400");
    assert_eq!(
        e(json!({"owner": "x".repeat(129)})),
        "owner: must be at most 128 characters long"
    );
    assert_eq!(
        e(json!({"description": "x".repeat(1025)})),
        "description: must be at most 1024 characters long"
    );
    assert!(e(json!({"meta": {"": "x"}})).starts_with("meta: key \"\" must be"));
    for bad in [json!(0), json!(101), json!(-1), json!("50")] {
        assert!(
            e(json!({ "fail_open_percent": bad })).starts_with("fail_open_percent: "),
            "{bad}"
        );
    }
    let on = ServiceDef::from_json(br#"{"fail_open_percent": 50}"#).unwrap();
    assert_eq!(on.fail_open_percent, Some(50));
    assert_eq!(
        ServiceDef::from_json(b"{}").unwrap().fail_open_percent,
        None
    );
    let def = ServiceDef {
        fail_open_percent: Some(0),
        ..ServiceDef::default()
    };
    assert_eq!(
        def.validate().unwrap_err().to_string(),
        "fail_open_percent: must be 1..=100"
    );
}

#[test]
fn group_weight_is_0_to_1000() {
    let e = policy_err(|p| p["groups"][1]["weight"] = json!(1001));
    assert_eq!(e, "groups[1].weight: must be 0..=1000");
}

#[test]
fn group_weights_sum_above_0() {
    let e = policy_err(|p| {
        p["groups"] = json!([{"version": "v1", "weight": 0}, {"version": "v2", "weight": 0}])
    });
    assert_eq!(e, "groups: weights must sum to more than 0");
}

#[test]
fn group_versions_are_distinct_and_nonempty() {
    let e = policy_err(|p| p["groups"][1]["version"] = json!("v1"));
    assert_eq!(
        e,
        "groups[1].version: version \"v1\" is already in another group"
    );
    let e = policy_err(|p| p["groups"][0]["version"] = json!(""));
    assert_eq!(e, "groups[0].version: must not be empty");
}

#[test]
fn shift_dcs_are_dns_labels_and_differ() {
    let e = policy_err(|p| p["shifts"][0]["from_dc"] = json!("-dc"));
    assert_eq!(e, "shifts[0].from_dc: must not start or end with '-'");
    let e = policy_err(|p| p["shifts"][0]["to_dc"] = json!("dc1"));
    assert_eq!(e, "shifts[0].to_dc: must differ from from_dc");
}

#[test]
fn shift_percent_is_0_to_100_and_sums_to_at_most_100() {
    let e = policy_err(|p| p["shifts"][0]["percent"] = json!(101));
    assert_eq!(e, "shifts[0].percent: must be 0..=100");
    let e = policy_err(|p| {
        p["shifts"] = json!([
            {"from_dc": "dc1", "to_dc": "dc2", "percent": 60},
            {"from_dc": "dc1", "to_dc": "dc3", "percent": 50},
        ])
    });
    assert_eq!(
        e,
        "shifts[1].percent: shifts out of dc1 add up to 110, more than 100"
    );
}

#[test]
fn shift_pairs_are_distinct() {
    let e = policy_err(|p| {
        p["shifts"] = json!([
            {"from_dc": "dc1", "to_dc": "dc2", "percent": 10},
            {"from_dc": "dc1", "to_dc": "dc2", "percent": 10},
        ])
    });
    assert_eq!(e, "shifts[1]: another shift already moves dc1 to dc2");
}

#[test]
fn override_ids_and_weights() {
    let e = policy_err(|p| p["overrides"] = json!({"a/b": {"drain": true}}));
    assert!(e.starts_with("overrides"), "{e}");
    assert!(e.contains("has '/'"), "{e}");
    let e = policy_err(|p| p["overrides"]["host8-web"]["weight"] = json!(1001));
    assert_eq!(e, "overrides.host8-web.weight: must be 0..=1000");
}

#[test]
fn expires_at_is_unix_ms() {
    let e = policy_err(|p| p["expires_at"] = json!(-5));
    assert!(e.starts_with("expires_at: invalid value"), "{e}");
}

#[test]
fn subnets_are_cidr_networks_without_duplicates() {
    let e = |v: Value| err(Datacenter::from_json, v);
    assert_eq!(
        e(json!({"subnets": ["10.0.0.0/8", "10.1/16"]})),
        "subnets[1]: \"10.1/16\" is not a CIDR network such as 10.1.0.0/16"
    );
    assert_eq!(
        e(json!({"subnets": ["10.1.2.3/16"]})),
        "subnets[0]: must be a network address: 10.1.0.0/16 rather than 10.1.2.3/16"
    );
    assert_eq!(
        e(json!({"subnets": ["fd00::/8", "fd00::/8"]})),
        "subnets[1]: fd00::/8 is listed twice"
    );
}

#[test]
fn fallback_lists_dns_labels_once() {
    let e = |v: Value| err(Datacenter::from_json, v);
    assert_eq!(
        e(json!({"fallback": ["dc2", "dc2"]})),
        "fallback[1]: dc2 is listed twice"
    );
    assert_eq!(
        e(json!({"fallback": ["dc_2"]})),
        "fallback[0]: has '_'; only a-z, 0-9 and '-' are allowed"
    );
}

#[test]
fn policy_expiry() {
    let p = TrafficPolicy {
        expires_at: Some(1000),
        ..TrafficPolicy::default()
    };
    assert!(p.is_active(999));
    assert!(!p.is_active(1000));
    assert!(TrafficPolicy::default().is_active(u64::MAX));
}
