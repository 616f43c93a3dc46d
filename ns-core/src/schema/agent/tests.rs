//! The record's rules, each showing the field its error names, and a JSON round trip.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn record() -> Value {
    json!({
        "node": "host7", "datacenter": "dc1", "version": "0.0.0",
        "started_at": "2026-12-03T11:00:00.000Z", "published_at": "2026-12-03T11:00:05.123Z",
        "mirror_revision": 42, "staleness_ms": 120, "store_connected": true,
        "services": [{
            "name": "web", "instance_id": "host7-web", "state": "passing",
            "last_check": {"exit": 0, "output": "ok\n", "at": "2026-12-03T11:00:04Z", "duration_ms": 3}
        }]
    })
}

fn err(edit: impl FnOnce(&mut Value)) -> String {
    let mut v = record();
    edit(&mut v);
    match AgentRecord::from_json(v.to_string().as_bytes()) {
        Ok(_) => panic!("accepted {v}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_good_record_reads_back() {
    let r = AgentRecord::from_json(record().to_string().as_bytes()).unwrap();
    assert_eq!(r.node.as_str(), "host7");
    assert_eq!(r.services[0].state, AgentServiceState::Passing);
    assert_eq!(serde_json::to_value(&r).unwrap(), record());
}

#[test]
fn every_rule_names_its_field() {
    assert!(err(|v| v["node"] = json!("a/b")).starts_with("node: "));
    assert!(err(|v| v["datacenter"] = json!("DC 1")).starts_with("datacenter: "));
    assert!(err(|v| v["version"] = json!("")).starts_with("version: "));
    assert!(err(|v| v["started_at"] = json!("yesterday")).starts_with("started_at: "));
    assert!(
        err(|v| v["published_at"] = json!("2026-13-01T00:00:00Z")).starts_with("published_at: ")
    );
    assert!(err(|v| v["mirror_revision"] = json!(-1)).starts_with("mirror_revision: "));
    assert!(err(|v| v["extra"] = json!(1)).contains("extra"));
    assert!(err(|v| v["services"][0]["name"] = json!("")).starts_with("services[0].name: "));
    assert!(
        err(|v| v["services"][0]["state"] = json!("asleep")).starts_with("services[0].state: ")
    );
    assert!(
        err(|v| v["services"][0]["instance_id"] = json!("a b"))
            .starts_with("services[0].instance_id: ")
    );
    assert_eq!(
        err(|v| v["services"][0]["last_check"]["output"] = json!("x".repeat(513))),
        "services[0].last_check.output: must be at most 512 bytes long"
    );
    assert!(
        err(|v| v["services"][0]["last_check"]["at"] = json!("2026-12-03 11:00:00"))
            .starts_with("services[0].last_check.at: ")
    );
    let many: Vec<Value> = (0..=MAX_SERVICES)
        .map(|i| json!({"name": format!("s{i}"), "instance_id": null, "state": "error", "last_check": null}))
        .collect();
    assert_eq!(
        err(|v| v["services"] = json!(many)),
        "services: at most 1024 services allowed"
    );
}

#[test]
fn timestamps_follow_rfc3339() {
    for ok in [
        "2026-12-03T11:00:00Z",
        "2026-12-03T11:00:00.5Z",
        "2026-12-03T11:00:00.123456789+01:00",
        "2026-12-03t11:00:00-05:30",
    ] {
        assert!(is_rfc3339(ok.as_bytes()), "{ok}");
    }
    for bad in [
        "",
        "2026-12-03",
        "2026-12-03T11:00:00",
        "2026-12-03T24:00:00Z",
        "2026-12-03T11:00:00.Z",
        "2026-12-03T11:00:00Zjunk",
        "2026-12-03T11:00:00+0100",
        "2026-00-03T11:00:00Z",
    ] {
        assert!(!is_rfc3339(bad.as_bytes()), "{bad}");
    }
}

#[test]
fn output_tail_keeps_the_end_at_a_char_boundary() {
    assert_eq!(output_tail("short"), "short");
    let long = format!("{}é{}", "a".repeat(600), "b".repeat(511));
    let tail = output_tail(&long);
    assert!(tail.len() <= OUTPUT_LIMIT);
    assert!(tail.ends_with(&"b".repeat(511)));
}

fn check() -> impl Strategy<Value = AgentCheck> {
    (
        proptest::option::of(any::<i32>()),
        "[ -~]{0,64}",
        0u64..100_000,
    )
        .prop_map(|(exit, output, duration_ms)| AgentCheck {
            exit,
            output,
            at: "2026-12-03T11:00:04.000Z".into(),
            duration_ms,
        })
}

fn state() -> impl Strategy<Value = AgentServiceState> {
    prop_oneof![
        Just(AgentServiceState::Starting),
        Just(AgentServiceState::Passing),
        Just(AgentServiceState::Warning),
        Just(AgentServiceState::Critical),
        Just(AgentServiceState::Maintenance),
        Just(AgentServiceState::Stopping),
        Just(AgentServiceState::Error),
    ]
}

fn service() -> impl Strategy<Value = AgentService> {
    (
        "[a-z][a-z0-9.-]{0,20}",
        proptest::option::of("[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,20}"),
        state(),
        proptest::option::of(check()),
    )
        .prop_map(|(name, id, state, last_check)| AgentService {
            name,
            instance_id: id.map(|i| InstanceId::parse(&i).unwrap()),
            state,
            last_check,
        })
}

fn any_record() -> impl Strategy<Value = AgentRecord> {
    (
        "[A-Za-z0-9_-][A-Za-z0-9._-]{0,30}",
        "[a-z][a-z0-9]{0,8}",
        any::<u64>(),
        proptest::option::of(any::<u64>()),
        any::<bool>(),
        prop::collection::vec(service(), 0..5),
    )
        .prop_map(
            |(node, dc, mirror_revision, staleness_ms, store_connected, services)| AgentRecord {
                node: NodeName::parse(&node).unwrap(),
                datacenter: DcName::parse(&dc).unwrap(),
                version: "0.0.0".into(),
                started_at: "2026-12-03T11:00:00.000Z".into(),
                published_at: "2026-12-03T11:00:05.000+02:00".into(),
                mirror_revision,
                staleness_ms,
                store_connected,
                services,
            },
        )
}

proptest! {
    #[test]
    fn records_round_trip_through_json(r in any_record()) {
        let bytes = serde_json::to_vec(&r).unwrap();
        prop_assert_eq!(AgentRecord::from_json(&bytes), Ok(r));
    }
}
