//! The stored values of the naming schema: [`ServiceDef`], [`Instance`], [`TrafficPolicy`] and
//! [`Datacenter`], with their JSON form and their validation; and the agents' status record,
//! [`AgentRecord`] (in `agent`).
//!
//! This is the only definition of these values: the HTTP API, the mirror, the agent and the
//! templates all use it. JSON field names are snake_case and unknown fields are rejected.
//! `from_json` reads and validates in one step and names the field at fault; `validate` checks
//! a value built in code. Rules that need more than one value (an override naming a live
//! instance, subnets overlapping across datacenters) are not checked here: they are not errors
//! of one write. Store keys live in [`crate::keys`], routing in [`crate::routing`].

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{ValidationError, from_json};
use crate::name::{DcName, InstanceId};

/// Message for a port outside 1..=65535.
pub const PORT_RANGE: &str = "must be 1..=65535";
/// Message for a weight outside 0..=1000.
pub const WEIGHT_RANGE: &str = "must be 0..=1000";
/// Message for a percentage outside 0..=100.
pub const PERCENT_RANGE: &str = "must be 0..=100";
/// Message for a fail-open threshold outside 1..=100.
pub const FAIL_OPEN_RANGE: &str = "must be 1..=100";
/// Largest instance, group and override weight.
pub const MAX_WEIGHT: u16 = 1000;
/// Largest DNS TTL a service may ask for, in seconds (one day).
pub const MAX_TTL_SECS: u32 = 86_400;

/// A service definition, stored at `/ns/services/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    /// Who runs the service (team or person); free text, at most 128 characters.
    #[serde(default)]
    pub owner: String,
    /// What the service is; free text, at most 1024 characters.
    #[serde(default)]
    pub description: String,
    /// Free-form metadata; see [`Instance::meta`] for the rules.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// TTL of DNS answers for this service, in seconds, 0..=86400; 30 when absent.
    #[serde(default = "default_ttl")]
    pub ttl_secs: u32,
    /// Default for [`TrafficPolicy::prefer_same_dc`] while no traffic policy is in force.
    #[serde(default = "yes")]
    pub prefer_same_dc: bool,
    /// Fail open (Envoy's panic threshold, Nacos' protect threshold): when fewer than this
    /// percentage of the service's non-drained instances are routable, routing answers from
    /// every non-drained instance, critical ones included, rather than funnel all traffic into
    /// the few survivors. 1..=100; absent (the default) means never.
    #[serde(
        default,
        deserialize_with = "de::opt_percent",
        skip_serializing_if = "Option::is_none"
    )]
    pub fail_open_percent: Option<u8>,
}

/// One running instance of a service, stored at `/ns/instances/NAME/ID` on the agent's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    /// Where it listens; neither unspecified (`0.0.0.0`, `::`) nor multicast.
    #[serde(deserialize_with = "de::address")]
    pub address: IpAddr,
    /// Its port, 1..=65535.
    #[serde(deserialize_with = "de::port")]
    pub port: u16,
    /// The datacenter it runs in.
    pub datacenter: DcName,
    /// Its version, matched against [`VersionGroup::version`]; up to 64 characters of
    /// `[A-Za-z0-9._+-]`. Empty (the default) means unversioned: such an instance is only
    /// answered when no version group is set, or as the any-group fallback.
    #[serde(default)]
    pub version: String,
    /// Its share of traffic relative to the others, 0..=1000 (100 when absent). Weight 0 is a
    /// standby: answered only after every instance with a positive weight.
    #[serde(default = "default_weight", deserialize_with = "de::weight")]
    pub weight: u16,
    /// Tags: at most 64, each 1..=128 characters without whitespace or control characters.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Metadata: at most 64 entries, keys 1..=128 characters of `[A-Za-z0-9._-]`, values at
    /// most 1024 characters.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// Health as last seen by its agent; `passing` when absent.
    #[serde(default)]
    pub status: Health,
    /// The node (host) that registered it: 1..=253 characters of `[A-Za-z0-9._-]`.
    pub node: String,
}

/// An instance's health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Its checks pass.
    #[default]
    Passing,
    /// Its checks report a problem that does not stop it serving. Routed like `Passing`
    /// (Consul's DNS default); drain it to take it out.
    Warning,
    /// Its checks fail: never routed.
    Critical,
}

impl Health {
    /// Whether routing may answer with an instance in this state (passing or warning).
    pub fn is_routable(self) -> bool {
        self != Health::Critical
    }
}

/// The traffic policy of one service, stored at `/ns/traffic/NAME`.
///
/// A policy whose [`expires_at`](Self::expires_at) has passed is ignored as a whole, overrides
/// included; the service's defaults apply again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficPolicy {
    /// Answer from the client's own datacenter while it has a usable instance (default true).
    /// When false, the client's datacenter is not preferred; forced shifts still apply.
    #[serde(default = "yes")]
    pub prefer_same_dc: bool,
    /// Version groups and their weights (gray release). Empty: no version split. Otherwise the
    /// versions are distinct and the weights sum to more than 0.
    #[serde(default)]
    pub groups: Vec<VersionGroup>,
    /// Forced shifts of clients from one datacenter to another. For each `from_dc` the
    /// percentages add up to at most 100.
    #[serde(default)]
    pub shifts: Vec<Shift>,
    /// Per-instance overrides: drain, or another weight.
    #[serde(default)]
    pub overrides: BTreeMap<InstanceId, Override>,
    /// Unix time in milliseconds from which this policy no longer applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// One version group of a [`TrafficPolicy`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionGroup {
    /// The [`Instance::version`] this group holds; 1..=64 characters of `[A-Za-z0-9._+-]`.
    pub version: String,
    /// The group's share of clients, 0..=1000, relative to the other groups.
    #[serde(deserialize_with = "de::weight")]
    pub weight: u16,
}

/// A forced shift: `percent` of the clients placed in `from_dc` are sent to `to_dc` instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shift {
    /// The datacenter whose clients move.
    pub from_dc: DcName,
    /// Where they go; not `from_dc`.
    pub to_dc: DcName,
    /// The share of `from_dc`'s clients that move, 0..=100.
    #[serde(deserialize_with = "de::percent")]
    pub percent: u8,
}

/// An operator's override of one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Take the instance out of every answer.
    #[serde(default)]
    pub drain: bool,
    /// Replace [`Instance::weight`], 0..=1000.
    #[serde(
        default,
        deserialize_with = "de::opt_weight",
        skip_serializing_if = "Option::is_none"
    )]
    pub weight: Option<u16>,
}

/// A datacenter, stored at `/ns/datacenters/DC`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datacenter {
    /// The client subnets placed in this datacenter, as network addresses (`10.1.0.0/16`, not
    /// `10.1.2.3/16`), without duplicates.
    #[serde(default, deserialize_with = "de::subnets")]
    pub subnets: Vec<IpNet>,
    /// Where this datacenter's clients go, in order, when it has no usable instance; the
    /// datacenters not listed follow by name. Without duplicates.
    #[serde(default)]
    pub fallback: Vec<DcName>,
}

impl Default for ServiceDef {
    fn default() -> Self {
        ServiceDef {
            owner: String::new(),
            description: String::new(),
            meta: BTreeMap::new(),
            ttl_secs: default_ttl(),
            prefer_same_dc: true,
            fail_open_percent: None,
        }
    }
}

impl Default for TrafficPolicy {
    fn default() -> Self {
        TrafficPolicy {
            prefer_same_dc: true,
            groups: Vec::new(),
            shifts: Vec::new(),
            overrides: BTreeMap::new(),
            expires_at: None,
        }
    }
}

impl ServiceDef {
    /// Read and validate a service definition from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        from_json(bytes, Self::validate)
    }

    /// Check every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_text("owner", &self.owner, 128)?;
        check_text("description", &self.description, 1024)?;
        check_meta(&self.meta)?;
        if self.ttl_secs > MAX_TTL_SECS {
            return Err(ValidationError::new("ttl_secs", "must be 0..=86400"));
        }
        if self
            .fail_open_percent
            .is_some_and(|p| !(1..=100).contains(&p))
        {
            return Err(ValidationError::new("fail_open_percent", FAIL_OPEN_RANGE));
        }
        Ok(())
    }
}

impl Instance {
    /// Read and validate an instance from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        from_json(bytes, Self::validate)
    }

    /// Check every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let Err(m) = check_address(self.address) {
            return Err(ValidationError::new("address", m));
        }
        if self.port == 0 {
            return Err(ValidationError::new("port", PORT_RANGE));
        }
        check_version("version", &self.version, true)?;
        if self.weight > MAX_WEIGHT {
            return Err(ValidationError::new("weight", WEIGHT_RANGE));
        }
        if self.tags.len() > 64 {
            return Err(ValidationError::new("tags", "at most 64 tags allowed"));
        }
        for (i, tag) in self.tags.iter().enumerate() {
            if tag.is_empty() || tag.len() > 128 {
                return Err(ValidationError::new(
                    format!("tags[{i}]"),
                    "must be 1..=128 characters long",
                ));
            }
            if tag.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ValidationError::new(
                    format!("tags[{i}]"),
                    "must not contain whitespace or control characters",
                ));
            }
        }
        check_meta(&self.meta)?;
        let node_ok = (1..=253).contains(&self.node.len())
            && self
                .node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !node_ok {
            return Err(ValidationError::new(
                "node",
                "must be 1..=253 characters of letters, digits, '.', '_' and '-'",
            ));
        }
        Ok(())
    }

    /// The weight routing uses: the override's weight if it sets one, else this instance's own.
    pub fn weight_with(&self, over: Option<&Override>) -> u16 {
        over.and_then(|o| o.weight).unwrap_or(self.weight)
    }
}

impl TrafficPolicy {
    /// Read and validate a traffic policy from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        from_json(bytes, Self::validate)
    }

    /// Check every field, and the rules between groups and between shifts.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut versions = HashSet::new();
        for (i, g) in self.groups.iter().enumerate() {
            check_version(&format!("groups[{i}].version"), &g.version, false)?;
            if !versions.insert(g.version.as_str()) {
                return Err(ValidationError::new(
                    format!("groups[{i}].version"),
                    format!("version {:?} is already in another group", g.version),
                ));
            }
            if g.weight > MAX_WEIGHT {
                return Err(ValidationError::new(
                    format!("groups[{i}].weight"),
                    WEIGHT_RANGE,
                ));
            }
        }
        if !self.groups.is_empty() && self.groups.iter().all(|g| g.weight == 0) {
            return Err(ValidationError::new(
                "groups",
                "weights must sum to more than 0",
            ));
        }
        let mut pairs = HashSet::new();
        let mut out_of: BTreeMap<&DcName, u32> = BTreeMap::new();
        for (i, s) in self.shifts.iter().enumerate() {
            if s.from_dc == s.to_dc {
                return Err(ValidationError::new(
                    format!("shifts[{i}].to_dc"),
                    "must differ from from_dc",
                ));
            }
            if !pairs.insert((&s.from_dc, &s.to_dc)) {
                return Err(ValidationError::new(
                    format!("shifts[{i}]"),
                    format!("another shift already moves {} to {}", s.from_dc, s.to_dc),
                ));
            }
            if s.percent > 100 {
                return Err(ValidationError::new(
                    format!("shifts[{i}].percent"),
                    PERCENT_RANGE,
                ));
            }
            let total = out_of.entry(&s.from_dc).or_default();
            *total += u32::from(s.percent);
            if *total > 100 {
                return Err(ValidationError::new(
                    format!("shifts[{i}].percent"),
                    format!(
                        "shifts out of {} add up to {total}, more than 100",
                        s.from_dc
                    ),
                ));
            }
        }
        for (id, o) in &self.overrides {
            if o.weight.is_some_and(|w| w > MAX_WEIGHT) {
                return Err(ValidationError::new(
                    format!("overrides.{id}.weight"),
                    WEIGHT_RANGE,
                ));
            }
        }
        Ok(())
    }

    /// Whether the policy still applies at `now_ms` (Unix milliseconds, passed in by the caller).
    pub fn is_active(&self, now_ms: u64) -> bool {
        self.expires_at.is_none_or(|t| now_ms < t)
    }
}

impl Datacenter {
    /// Read and validate a datacenter from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        from_json(bytes, Self::validate)
    }

    /// Check every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        for (i, net) in self.subnets.iter().enumerate() {
            if net.trunc() != *net {
                return Err(ValidationError::new(
                    format!("subnets[{i}]"),
                    format!(
                        "must be a network address: {} rather than {net}",
                        net.trunc()
                    ),
                ));
            }
            if self.subnets[..i].contains(net) {
                return Err(ValidationError::new(
                    format!("subnets[{i}]"),
                    format!("{net} is listed twice"),
                ));
            }
        }
        for (i, dc) in self.fallback.iter().enumerate() {
            if self.fallback[..i].contains(dc) {
                return Err(ValidationError::new(
                    format!("fallback[{i}]"),
                    format!("{dc} is listed twice"),
                ));
            }
        }
        Ok(())
    }
}

fn default_ttl() -> u32 {
    30
}

fn default_weight() -> u16 {
    100
}

fn yes() -> bool {
    true
}

fn check_address(addr: IpAddr) -> Result<(), &'static str> {
    if addr.is_unspecified() {
        Err("must not be unspecified (0.0.0.0 or ::)")
    } else if addr.is_multicast() {
        Err("must not be a multicast address")
    } else {
        Ok(())
    }
}

/// A version: up to 64 characters of `[A-Za-z0-9._+-]`; empty only where `may_be_empty`.
fn check_version(field: &str, v: &str, may_be_empty: bool) -> Result<(), ValidationError> {
    if v.is_empty() && !may_be_empty {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if v.len() > 64 {
        return Err(ValidationError::new(
            field,
            "must be at most 64 characters long",
        ));
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-')))
    {
        return Err(ValidationError::new(
            field,
            format!("has {c:?}; only letters, digits, '.', '_', '+' and '-' are allowed"),
        ));
    }
    Ok(())
}

fn check_text(field: &str, s: &str, max: usize) -> Result<(), ValidationError> {
    if s.chars().count() > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters long"),
        ));
    }
    Ok(())
}

fn check_meta(meta: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    if meta.len() > 64 {
        return Err(ValidationError::new("meta", "at most 64 entries allowed"));
    }
    for (k, v) in meta {
        let key_ok = (1..=128).contains(&k.len())
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !key_ok {
            return Err(ValidationError::new(
                "meta",
                format!(
                    "key {k:?} must be 1..=128 characters of letters, digits, '.', '_' and '-'"
                ),
            ));
        }
        check_text(&format!("meta.{k}"), v, 1024)?;
    }
    Ok(())
}

mod agent;
mod de;

pub use agent::{
    AgentCheck, AgentRecord, AgentService, AgentServiceState, MAX_SERVICES, OUTPUT_LIMIT,
    output_tail,
};

#[cfg(test)]
mod tests;
