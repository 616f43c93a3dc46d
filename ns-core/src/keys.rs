//! The key layout of the naming schema in the store, both ways: typed names -> key text
//! ([`Key`]'s `Display` and the builder functions) and key text -> typed names ([`Key::parse`]).
//!
//! ```text
//! /ns/services/NAME          ServiceDef
//! /ns/instances/NAME/ID      Instance
//! /ns/traffic/NAME           TrafficPolicy
//! /ns/datacenters/DC         Datacenter
//! /ns/agents/NODE            AgentRecord (not part of the catalog, see below)
//! ```
//! Names never contain `/` (see [`crate::name`]), so every key splits one way only. Prefixes end in
//! `/`, so that listing `web`'s instances never returns `web.api`'s. This module does not read the
//! values (that is [`crate::schema`]) nor talk to the store.
//!
//! Agent status records live under `/ns/agents/` but are not naming data: [`Key`] covers the
//! catalog only, and [`agent_node`] recognises an agent key, so the mirror can skip those keys
//! without counting them as invalid.

use std::fmt;

use crate::name::{DcName, InstanceId, NodeName, ServiceName};

/// The prefix of every naming key; one watch on it sees the whole naming model.
pub const ROOT: &str = "/ns/";
/// The prefix of service definitions.
pub const SERVICES: &str = "/ns/services/";
/// The prefix of all instances of all services.
pub const INSTANCES: &str = "/ns/instances/";
/// The prefix of traffic policies.
pub const TRAFFIC: &str = "/ns/traffic/";
/// The prefix of datacenters.
pub const DATACENTERS: &str = "/ns/datacenters/";

/// The prefix of agent status records (one per agent, on its lease).
pub const AGENTS: &str = "/ns/agents/";

/// One key of the naming schema, with its names parsed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// `/ns/services/NAME`: the service's definition.
    Service(ServiceName),
    /// `/ns/instances/NAME/ID`: one instance of the service.
    Instance(ServiceName, InstanceId),
    /// `/ns/traffic/NAME`: the service's traffic policy.
    Traffic(ServiceName),
    /// `/ns/datacenters/DC`: a datacenter's subnets.
    Datacenter(DcName),
}

impl Key {
    /// Parse a store key. `None` for anything outside the layout: another prefix, a missing or
    /// extra segment, or a name that breaks its rules.
    pub fn parse(key: &str) -> Option<Key> {
        if let Some(name) = key.strip_prefix(SERVICES) {
            ServiceName::parse(name).ok().map(Key::Service)
        } else if let Some(rest) = key.strip_prefix(INSTANCES) {
            let (name, id) = rest.split_once('/')?;
            Some(Key::Instance(
                ServiceName::parse(name).ok()?,
                InstanceId::parse(id).ok()?,
            ))
        } else if let Some(name) = key.strip_prefix(TRAFFIC) {
            ServiceName::parse(name).ok().map(Key::Traffic)
        } else if let Some(dc) = key.strip_prefix(DATACENTERS) {
            DcName::parse(dc).ok().map(Key::Datacenter)
        } else {
            None
        }
    }

    /// The service this key belongs to, if any.
    pub fn service(&self) -> Option<&ServiceName> {
        match self {
            Key::Service(n) | Key::Instance(n, _) | Key::Traffic(n) => Some(n),
            Key::Datacenter(_) => None,
        }
    }
}

/// Writes the store key.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Service(n) => write!(f, "{SERVICES}{n}"),
            Key::Instance(n, id) => write!(f, "{INSTANCES}{n}/{id}"),
            Key::Traffic(n) => write!(f, "{TRAFFIC}{n}"),
            Key::Datacenter(dc) => write!(f, "{DATACENTERS}{dc}"),
        }
    }
}

/// `/ns/services/NAME`.
pub fn service(name: &ServiceName) -> String {
    Key::Service(name.clone()).to_string()
}

/// `/ns/instances/NAME/ID`.
pub fn instance(name: &ServiceName, id: &InstanceId) -> String {
    Key::Instance(name.clone(), id.clone()).to_string()
}

/// `/ns/instances/NAME/`: the prefix of every instance of one service.
pub fn instances_of(name: &ServiceName) -> String {
    format!("{INSTANCES}{name}/")
}

/// `/ns/traffic/NAME`.
pub fn traffic(name: &ServiceName) -> String {
    Key::Traffic(name.clone()).to_string()
}

/// `/ns/datacenters/DC`.
pub fn datacenter(dc: &DcName) -> String {
    Key::Datacenter(dc.clone()).to_string()
}

/// `/ns/agents/NODE`: the status record of the agent on `node`.
pub fn agent(node: &NodeName) -> String {
    format!("{AGENTS}{node}")
}

/// The node of an agent status key (`/ns/agents/NODE`), or `None` for any other key,
/// including an agent key whose node name breaks its rules.
pub fn agent_node(key: &str) -> Option<NodeName> {
    NodeName::parse(key.strip_prefix(AGENTS)?).ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn svc(s: &str) -> ServiceName {
        ServiceName::parse(s).unwrap()
    }

    #[test]
    fn builders_follow_the_layout() {
        let web = svc("search.web");
        let id = InstanceId::parse("host7-8080").unwrap();
        assert_eq!(service(&web), "/ns/services/search.web");
        assert_eq!(instance(&web, &id), "/ns/instances/search.web/host7-8080");
        assert_eq!(instances_of(&web), "/ns/instances/search.web/");
        assert_eq!(traffic(&web), "/ns/traffic/search.web");
        assert_eq!(
            datacenter(&DcName::parse("dc1").unwrap()),
            "/ns/datacenters/dc1"
        );
        let node = NodeName::parse("host-7.dc1").unwrap();
        assert_eq!(agent(&node), "/ns/agents/host-7.dc1");
    }

    #[test]
    fn agent_keys_are_not_catalog_keys() {
        let node = NodeName::parse("host7").unwrap();
        assert_eq!(Key::parse("/ns/agents/host7"), None);
        assert_eq!(agent_node("/ns/agents/host7"), Some(node));
        for bad in [
            "/ns/agents/",
            "/ns/agents/a/b",
            "/ns/agents/a b",
            "/ns/services/web",
        ] {
            assert_eq!(agent_node(bad), None, "{bad}");
        }
    }

    #[test]
    fn parse_rejects_keys_outside_the_layout() {
        for bad in [
            "/ns/services/",
            "/ns/services/Web",
            "/ns/services/web/x",
            "/ns/instances/web",
            "/ns/instances/web/",
            "/ns/instances/web/a/b",
            "/ns/traffic/",
            "/ns/datacenters/dc1.x",
            "/ns/other/web",
            "/kv/web",
            "ns/services/web",
        ] {
            assert_eq!(Key::parse(bad), None, "{bad}");
        }
        assert_eq!(
            Key::parse("/ns/instances/web/h1").and_then(|k| k.service().cloned()),
            Some(svc("web"))
        );
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
    }

    fn service_name() -> impl Strategy<Value = ServiceName> {
        prop::collection::vec(label(), 1..4).prop_map(|l| svc(&l.join(".")))
    }

    fn key() -> impl Strategy<Value = Key> {
        let id = "[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,20}".prop_map(|s| InstanceId::parse(&s).unwrap());
        let dc = label().prop_map(|s| DcName::parse(&s).unwrap());
        prop_oneof![
            service_name().prop_map(Key::Service),
            (service_name(), id).prop_map(|(n, i)| Key::Instance(n, i)),
            service_name().prop_map(Key::Traffic),
            dc.prop_map(Key::Datacenter),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn key_round_trips(k in key()) {
            let text = k.to_string();
            prop_assert!(text.starts_with(ROOT));
            prop_assert_eq!(Key::parse(&text), Some(k));
        }

        #[test]
        fn agent_key_round_trips(s in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,39}") {
            let node = NodeName::parse(&s).unwrap();
            prop_assert_eq!(agent_node(&agent(&node)), Some(node));
        }

        #[test]
        fn parse_never_panics_and_prints_back(s in "/ns/[a-z]{0,12}/[a-zA-Z0-9./_-]{0,20}") {
            if let Some(k) = Key::parse(&s) {
                prop_assert_eq!(k.to_string(), s);
            }
        }
    }
}
