//! The routing policy: which instances of a service to answer a client with, in which order.
//!
//! [`select`] is a pure function of the catalog, the service, the client and [`Params`] (time,
//! seed, answer cap): no I/O, no clock, no thread RNG, so the gateway and the agent's DNS give the
//! same answer for the same input, and tests pin it with a seed. Steps, in order:
//! 1. Policy: the service's traffic policy unless it has expired at `now_ms`; otherwise the
//!    service definition's `prefer_same_dc` and nothing else.
//! 2. Target datacenter: the client's own, unless a forced shift out of it moves this client
//!    (decided by a hash of the client key, so the same clients move every time). Shifts act
//!    once: a client moved to B is not moved again by B's shifts. With `prefer_same_dc` off,
//!    only shifted clients have a target.
//! 3. Version group: chosen by weight from a hash of the client key (its position in [0, 1) is
//!    fixed, the groups split [0, 1) in listed order by weight), so a client keeps its group while
//!    the weights hold, and a weight change moves only the clients near a boundary. The hash is
//!    salted with the service name: being in one service's canary says nothing about another's.
//! 4. Candidates: instances the query's [`Filter`] admits (datacenter of the `NAME.DC` form,
//!    tag, address family) that are not critical (warning is routable) and not drained, with
//!    their effective weight (override, else their own). Of these, the group's instances in the
//!    target datacenter; if none, in the first datacenter with some, in the order: the target's
//!    `fallback` list, then the rest by name. If the group has none anywhere, the same walk over
//!    every version. Without a target, candidates from all datacenters are used together.
//!    Fail-open: when the service's `fail_open_percent` is set and fewer than that share of
//!    the admitted, non-drained instances are routable, critical instances count as routable
//!    too ([`Selection::fail_open`]), so a broken check on most hosts spreads the load over
//!    the whole fleet instead of funnelling it into the survivors.
//! 5. Order: weighted random choice without replacement (seeded); weight-0 instances come after
//!    all others, shuffled. Then the answer is cut to `max_answers`.
//!
//! This module does not place clients in datacenters (that is the gateway's placement, from
//! `/ns/datacenters/` subnets) and does not build DNS records (`zone`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::catalog::{Catalog, ServiceEntry};
use crate::name::{DcName, InstanceId, ServiceName};
use crate::schema::{Instance, Override, Shift, TrafficPolicy, VersionGroup};

pub mod weights;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCtx {
    /// The client's datacenter, if placement found one.
    pub dc: Option<DcName>,
    /// A stable key for the client (a hash of its address or subnet, see [`client_key`]): the
    /// same key gets the same version group and the same shift decision.
    pub key: u64,
}

/// The per-query inputs that are not data: the time, the seed and the answer cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Now, as Unix milliseconds, for policy expiry.
    pub now_ms: u64,
    /// Seed of the weighted ordering; the caller draws it (or pins it in tests).
    pub seed: u64,
    /// Most instances to return.
    pub max_answers: usize,
}

/// Which instances a query may use at all, whatever the policy: the record type and the name
/// form of a DNS question narrow the candidates before any routing step runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter<'f> {
    /// Only this datacenter's instances (the `NAME.DC` form): it is the target, no shift moves
    /// the client and no other datacenter stands in for it.
    pub dc: Option<&'f DcName>,
    /// Only instances carrying this tag (the `_TAG._tcp.NAME` SRV form).
    pub tag: Option<&'f str>,
    /// Only IPv4 (`Some(true)`, A queries) or only IPv6 (`Some(false)`, AAAA) addresses.
    pub ipv4: Option<bool>,
}

impl Filter<'_> {
    fn admits(&self, i: &Instance) -> bool {
        self.dc.is_none_or(|dc| &i.datacenter == dc)
            && self.tag.is_none_or(|t| i.tags.iter().any(|x| x == t))
            && self.ipv4.is_none_or(|v4| i.address.is_ipv4() == v4)
    }
}

/// Where the traffic policy in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    /// The service has no traffic policy; its definition's defaults apply.
    Default,
    /// The service's traffic policy applies.
    Traffic,
    /// The service's traffic policy has expired; its definition's defaults apply.
    Expired,
}

/// The answer of [`select`], with how it was reached (for debugging and status pages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection<'a> {
    /// The chosen instances, best first, at most `max_answers`.
    pub instances: Vec<Selected<'a>>,
    /// Which policy applied.
    pub policy: PolicySource,
    /// The datacenter the client was routed to after shifts; `None` when no datacenter is
    /// preferred (client without one, or `prefer_same_dc` off and not shifted).
    pub target_dc: Option<DcName>,
    /// Whether a forced shift moved this client.
    pub shifted: bool,
    /// The version group picked for this client, if the policy has groups.
    pub group: Option<&'a str>,
    /// The datacenter the answer comes from; `None` when taken from all of them or empty.
    pub dc: Option<DcName>,
    /// The target datacenter had no candidate, so another one answered.
    pub dc_fallback: bool,
    /// The picked group had no candidate anywhere, so every version was considered.
    pub group_fallback: bool,
    /// Fewer of the service's usable instances were routable than its `fail_open_percent`,
    /// so critical instances were answered too (callers count this for `/metrics`).
    pub fail_open: bool,
}

/// One chosen instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected<'a> {
    /// Its id.
    pub id: &'a InstanceId,
    /// The instance as stored.
    pub instance: &'a Instance,
    /// Its effective weight (an override's, else its own), e.g. for SRV answers.
    pub weight: u16,
}

/// A stable client key from raw bytes (an address, a subnet). Stable across processes,
/// platforms and releases, so gateways agree on a client's group.
pub fn client_key(bytes: &[u8]) -> u64 {
    mix(fnv1a(bytes))
}

/// [`client_key`] of an address's octets.
pub fn client_key_of_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => client_key(&v4.octets()),
        IpAddr::V6(v6) => client_key(&v6.octets()),
    }
}

/// Choose the instances of `service` to answer `client` with; see the module doc for the steps.
/// An unknown service, or one without routable instances, gives an empty selection.
pub fn select<'a>(
    catalog: &'a Catalog,
    service: &ServiceName,
    client: &ClientCtx,
    params: &Params,
) -> Selection<'a> {
    select_filtered(catalog, service, client, params, &Filter::default())
}

/// [`select`] over the instances `filter` admits only (the zone's record types and name forms).
pub fn select_filtered<'a>(
    catalog: &'a Catalog,
    service: &ServiceName,
    client: &ClientCtx,
    params: &Params,
    filter: &Filter<'_>,
) -> Selection<'a> {
    let mut out = Selection {
        instances: Vec::new(),
        policy: PolicySource::Default,
        target_dc: None,
        shifted: false,
        group: None,
        dc: None,
        dc_fallback: false,
        group_fallback: false,
        fail_open: false,
    };
    let Some(entry) = catalog.service(service) else {
        return out;
    };
    let d = decide(entry, service, client, params.now_ms, filter.dc);
    (out.policy, out.target_dc, out.shifted, out.group) =
        (d.policy, d.target_dc, d.shifted, d.group);
    let policy = active_policy(entry, params.now_ms, &mut out.policy);

    let overrides = policy.map(|p| &p.overrides);
    let fail_open_percent = entry.def.as_ref().and_then(|d| d.fail_open_percent);
    let routable;
    (routable, out.fail_open) = routable_with(entry, overrides, filter, fail_open_percent);
    let in_group: Vec<Selected<'a>> = match out.group {
        Some(v) => routable
            .iter()
            .filter(|s| s.instance.version == v)
            .copied()
            .collect(),
        None => routable.clone(),
    };
    let target = out.target_dc.as_ref();
    let (mut chosen, dc) = match by_dc(in_group, target, catalog) {
        (c, dc) if !c.is_empty() => (c, dc),
        _ if out.group.is_some() => {
            out.group_fallback = true;
            by_dc(routable, target, catalog)
        }
        empty => empty,
    };
    out.dc_fallback = target.is_some() && dc.as_ref() != target && !chosen.is_empty();
    out.dc = dc;
    weighted_order(&mut chosen, params.seed, params.max_answers);
    out.instances = chosen;
    out
}

/// Steps 1 to 3 for one client: everything of [`select_filtered`] that depends on the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    /// Which policy applied.
    pub policy: PolicySource,
    /// The datacenter the client is routed to after shifts (the `NAME.DC` form's if given).
    pub target_dc: Option<DcName>,
    /// Whether a forced shift moved this client.
    pub shifted: bool,
    /// The client's version group, if the policy has groups.
    pub group: Option<&'a str>,
}

/// The client-dependent steps (policy, target datacenter, version group) of
/// [`select_filtered`] for `entry`, the catalog entry of `service`: two clients with the same
/// decision get the same selection for the same seed, which is what answer caches key on.
pub fn decide<'a>(
    entry: &'a ServiceEntry,
    service: &ServiceName,
    client: &ClientCtx,
    now_ms: u64,
    filter_dc: Option<&DcName>,
) -> Decision<'a> {
    let mut source = PolicySource::Default;
    let policy = active_policy(entry, now_ms, &mut source);
    let prefer_same_dc = match (policy, &entry.def) {
        (Some(p), _) => p.prefer_same_dc,
        (None, Some(def)) => def.prefer_same_dc,
        (None, None) => true,
    };
    let shifts = policy.map_or(&[][..], |p| &p.shifts);
    let (target_dc, shifted) = match filter_dc {
        Some(dc) => (Some(dc.clone()), false),
        None => target_dc(shifts, client, service, prefer_same_dc),
    };
    let groups = policy.map_or(&[][..], |p| &p.groups);
    let group = pick_group(groups, client.key, service).map(|g| g.version.as_str());
    Decision {
        policy: source,
        target_dc,
        shifted,
        group,
    }
}

/// Step 1: the traffic policy in force at `now_ms`, recording where it came from.
fn active_policy<'a>(
    entry: &'a ServiceEntry,
    now_ms: u64,
    source: &mut PolicySource,
) -> Option<&'a TrafficPolicy> {
    match &entry.traffic {
        Some(p) if p.is_active(now_ms) => {
            *source = PolicySource::Traffic;
            Some(p)
        }
        Some(_) => {
            *source = PolicySource::Expired;
            None
        }
        None => None,
    }
}

/// Step 2: the target datacenter after forced shifts, and whether a shift moved the client.
fn target_dc(
    shifts: &[Shift],
    client: &ClientCtx,
    service: &ServiceName,
    prefer_same_dc: bool,
) -> (Option<DcName>, bool) {
    let Some(home) = &client.dc else {
        return (None, false);
    };
    // Basis points, so that whole percentages split exactly.
    let point = scale(salted(client.key, "shift", service), 10_000);
    let mut upto = 0;
    for s in shifts.iter().filter(|s| &s.from_dc == home) {
        upto += u64::from(s.percent) * 100;
        if point < upto {
            return (Some(s.to_dc.clone()), true);
        }
    }
    (prefer_same_dc.then(|| home.clone()), false)
}

/// Step 3: the client's version group; `None` without groups (or, unvalidated, zero weights).
fn pick_group<'p>(
    groups: &'p [VersionGroup],
    key: u64,
    service: &ServiceName,
) -> Option<&'p VersionGroup> {
    let total: u64 = groups.iter().map(|g| u64::from(g.weight)).sum();
    if total == 0 {
        return None;
    }
    let point = scale(salted(key, "group", service), total);
    let mut upto = 0;
    groups.iter().find(|g| {
        upto += u64::from(g.weight);
        point < upto
    })
}

/// Step 4a: the routable instances the filter admits, in id order, with their effective
/// weight; and whether the service failed open. It fails open when fewer than
/// `fail_open_percent` of the admitted, non-drained instances are routable: then all of
/// those are routable, critical or not.
fn routable_with<'a>(
    entry: &'a ServiceEntry,
    overrides: Option<&BTreeMap<InstanceId, Override>>,
    filter: &Filter<'_>,
    fail_open_percent: Option<u8>,
) -> (Vec<Selected<'a>>, bool) {
    let usable: Vec<Selected<'a>> = entry
        .instances
        .iter()
        .filter_map(|(id, instance)| {
            let over = overrides.and_then(|o| o.get(id));
            let drained = over.is_some_and(|o| o.drain);
            (!drained && filter.admits(instance)).then(|| Selected {
                id,
                instance,
                weight: instance.weight_with(over),
            })
        })
        .collect();
    let healthy = usable
        .iter()
        .filter(|s| s.instance.status.is_routable())
        .count();
    let fail_open = fail_open_percent
        .is_some_and(|p| !usable.is_empty() && healthy * 100 < usable.len() * usize::from(p));
    if fail_open {
        return (usable, true);
    }
    let routable = usable
        .into_iter()
        .filter(|s| s.instance.status.is_routable())
        .collect();
    (routable, false)
}

/// Step 4b: the candidates of the first datacenter that has any, walking from `target`. Without
/// a target, all of them.
fn by_dc<'a>(
    candidates: Vec<Selected<'a>>,
    target: Option<&DcName>,
    catalog: &Catalog,
) -> (Vec<Selected<'a>>, Option<DcName>) {
    let Some(target) = target else {
        return (candidates, None);
    };
    let listed = catalog
        .datacenters
        .get(target)
        .map_or(&[][..], |d| &d.fallback);
    let has = |dc: &DcName| candidates.iter().any(|c| &c.instance.datacenter == dc);
    // The target, its fallback list, then the smallest datacenter name that has a candidate.
    let dc = std::iter::once(target)
        .chain(listed)
        .find(|dc| has(dc))
        .or_else(|| candidates.iter().map(|c| &c.instance.datacenter).min())
        .cloned();
    match dc {
        Some(dc) => {
            let here = candidates
                .into_iter()
                .filter(|c| c.instance.datacenter == dc)
                .collect();
            (here, Some(dc))
        }
        None => (Vec::new(), None),
    }
}

/// Step 5: reorder `items` by weighted random choice without replacement, weight-0 items last
/// in random order, keeping at most `take`.
fn weighted_order(items: &mut Vec<Selected<'_>>, seed: u64, take: usize) {
    let mut rng = SplitMix64(seed);
    let (mut weighted, mut standby): (Vec<_>, Vec<_>) = items.drain(..).partition(|s| s.weight > 0);
    let mut total: u64 = weighted.iter().map(|s| u64::from(s.weight)).sum();
    while !weighted.is_empty() && items.len() < take {
        let mut point = scale(rng.next_u64(), total);
        let i = weighted
            .iter()
            .position(|s| {
                let w = u64::from(s.weight);
                if point < w {
                    true
                } else {
                    point -= w;
                    false
                }
            })
            // Unreachable (point < total = the sum of the weights), but a query never panics.
            .unwrap_or(weighted.len() - 1);
        let s = weighted.remove(i);
        total -= u64::from(s.weight);
        items.push(s);
    }
    while !standby.is_empty() && items.len() < take {
        let i = scale(rng.next_u64(), standby.len() as u64) as usize;
        items.push(standby.swap_remove(i));
    }
}

/// `h` mapped onto `0..n` without modulo bias worth the name (the high bits of `h * n`).
fn scale(h: u64, n: u64) -> u64 {
    ((u128::from(h) * u128::from(n)) >> 64) as u64
}

/// A hash of the client key for one decision (`what`) about one service, so that group and shift
/// decisions are independent of each other and across services.
fn salted(key: u64, what: &str, service: &ServiceName) -> u64 {
    let salt = fnv1a_from(fnv1a(what.as_bytes()), service.as_str().as_bytes());
    mix(mix(key) ^ salt)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_from(FNV_OFFSET, bytes)
}

fn fnv1a_from(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The splitmix64 finalizer: a bijection that spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// splitmix64: small, seedable and specified, so an order is the same on every platform.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }
}

#[cfg(test)]
mod filter_tests;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
