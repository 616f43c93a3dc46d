//! [`route_view`]: every routable instance of a service as one proxy in a datacenter should
//! weigh it, for config templates (nginx upstreams, HAProxy backends).
//!
//! [`super::select`] answers one client: it picks one version group and one datacenter. A proxy
//! serves many clients at once, so this view splits traffic the way the policy splits clients,
//! as shares of the proxy's traffic:
//! 1. Datacenters: the client datacenter keeps what its forced shifts leave it; each shift's
//!    `to_dc` gets its percentage. A datacenter without candidates hands its share on along the
//!    same walk as `select` (its `fallback` list, then the smallest name). With `prefer_same_dc`
//!    off and no shift, or without a client datacenter, every candidate is primary.
//! 2. Version groups within a datacenter: by group weight, over the groups present there; when
//!    none is present, every version by instance weight (the any-group fallback).
//! 3. Instances within a group: by effective weight (override, else their own).
//!
//! Drained and critical instances are left out. Routable instances outside every primary
//! datacenter are `backup`. A share is reported as a weight out of [`SCALE`], at least 1 for a
//! positive share, so proxies that refuse weight 0 get a usable number. No I/O, no clock: time
//! comes in as `now_ms`, like [`super::select`].

use std::collections::BTreeMap;

use crate::catalog::Catalog;
use crate::name::{DcName, InstanceId, ServiceName};
use crate::schema::Instance;

use super::{Filter, PolicySource, Selected, active_policy, routable_with};

/// The weights of a [`Routed`] primary instance add up to about this (rounding aside).
pub const SCALE: f64 = 100.0;

/// One routable instance as a proxy should configure it.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed<'a> {
    /// Its id.
    pub id: &'a InstanceId,
    /// The instance as stored.
    pub instance: &'a Instance,
    /// Its share of traffic out of [`SCALE`]: at least 1 when its share is positive, 0 for a
    /// weight-0 standby. Backups are weighed among the backups.
    pub weight: u32,
    /// Its exact share of traffic, 0..=1 (among the backups for a backup).
    pub share: f64,
    /// Outside every primary datacenter: only used when no primary answers.
    pub backup: bool,
}

/// The proxy's view of one service, instances in id order.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteView<'a> {
    /// Every routable instance, with its weight and backup flag.
    pub instances: Vec<Routed<'a>>,
    /// The datacenters taking traffic, with their shares (empty when all of them do).
    pub datacenters: BTreeMap<DcName, f64>,
}

/// The weighted view of `service` for a proxy in `client_dc`; see the module doc.
pub fn route_view<'a>(
    catalog: &'a Catalog,
    service: &ServiceName,
    client_dc: Option<&DcName>,
    now_ms: u64,
) -> RouteView<'a> {
    let mut view = RouteView {
        instances: Vec::new(),
        datacenters: BTreeMap::new(),
    };
    let Some(entry) = catalog.service(service) else {
        return view;
    };
    let mut source = PolicySource::Default;
    let policy = active_policy(entry, now_ms, &mut source);
    let prefer_same_dc = match (policy, &entry.def) {
        (Some(p), _) => p.prefer_same_dc,
        (None, Some(def)) => def.prefer_same_dc,
        (None, None) => true,
    };
    // The same fail-open rule as DNS answers, so a proxy and a resolver agree on the instances.
    let fail_open_percent = entry.def.as_ref().and_then(|d| d.fail_open_percent);
    let no_filter = Filter {
        dc: None,
        tag: None,
        ipv4: None,
    };
    let (candidates, _) = routable_with(
        entry,
        policy.map(|p| &p.overrides),
        &no_filter,
        fail_open_percent,
    );
    let groups = policy.map_or(&[][..], |p| &p.groups);

    // Step 1: the datacenters' shares, before fallback.
    let mut wanted: Vec<(DcName, f64)> = Vec::new();
    if let Some(home) = client_dc {
        let mut left = 1.0;
        for s in policy.map_or(&[][..], |p| &p.shifts) {
            if &s.from_dc == home {
                let part = f64::from(s.percent) / 100.0;
                left -= part;
                wanted.push((s.to_dc.clone(), part));
            }
        }
        if prefer_same_dc && left > 0.0 {
            wanted.push((home.clone(), left));
        }
    }
    for (dc, part) in wanted {
        if let Some(dc) = answering_dc(&candidates, &dc, catalog) {
            *view.datacenters.entry(dc).or_insert(0.0) += part;
        }
    }

    let (primary, backup): (Vec<Selected<'a>>, Vec<Selected<'a>>) = if view.datacenters.is_empty() {
        (candidates, Vec::new())
    } else {
        candidates
            .into_iter()
            .partition(|c| view.datacenters.contains_key(&c.instance.datacenter))
    };
    let mut shares: BTreeMap<&InstanceId, f64> = BTreeMap::new();
    if view.datacenters.is_empty() {
        split_groups(&primary, groups, 1.0, &mut shares);
    } else {
        let total: f64 = view.datacenters.values().sum();
        for (dc, part) in &view.datacenters {
            let here: Vec<Selected<'a>> = primary
                .iter()
                .filter(|c| &c.instance.datacenter == dc)
                .copied()
                .collect();
            split_groups(&here, groups, part / total, &mut shares);
        }
    }
    let mut backup_shares = BTreeMap::new();
    split_by_weight(&backup, 1.0, &mut backup_shares);

    let mut out: Vec<Routed<'a>> = primary
        .iter()
        .map(|c| routed(c, &shares, false))
        .chain(backup.iter().map(|c| routed(c, &backup_shares, true)))
        .collect();
    out.sort_by(|a, b| a.id.cmp(b.id));
    view.instances = out;
    view
}

/// The datacenter that answers for `dc`: itself if it has candidates, else the first of its
/// fallback list that has some, else the smallest name with some (as `select` walks).
fn answering_dc(candidates: &[Selected<'_>], dc: &DcName, catalog: &Catalog) -> Option<DcName> {
    let has = |d: &DcName| candidates.iter().any(|c| &c.instance.datacenter == d);
    let listed = catalog.datacenters.get(dc).map_or(&[][..], |d| &d.fallback);
    std::iter::once(dc)
        .chain(listed)
        .find(|d| has(d))
        .or_else(|| candidates.iter().map(|c| &c.instance.datacenter).min())
        .cloned()
}

/// Step 2: splits `part` of the traffic between the version groups present in `here`.
fn split_groups<'a>(
    here: &[Selected<'a>],
    groups: &[crate::schema::VersionGroup],
    part: f64,
    shares: &mut BTreeMap<&'a InstanceId, f64>,
) {
    let present: Vec<_> = groups
        .iter()
        .filter(|g| g.weight > 0 && here.iter().any(|c| c.instance.version == g.version))
        .collect();
    let total: f64 = present.iter().map(|g| f64::from(g.weight)).sum();
    if present.is_empty() || total <= 0.0 {
        split_by_weight(here, part, shares);
        return;
    }
    for g in present {
        let members: Vec<Selected<'a>> = here
            .iter()
            .filter(|c| c.instance.version == g.version)
            .copied()
            .collect();
        split_by_weight(&members, part * f64::from(g.weight) / total, shares);
    }
}

/// Step 3: splits `part` between `members` by effective weight. Weight-0 members get 0, unless
/// every member weighs 0: then they share it evenly (as `select` still answers with standbys).
fn split_by_weight<'a>(
    members: &[Selected<'a>],
    part: f64,
    shares: &mut BTreeMap<&'a InstanceId, f64>,
) {
    let total: f64 = members.iter().map(|c| f64::from(c.weight)).sum();
    for c in members {
        let share = if total > 0.0 {
            part * f64::from(c.weight) / total
        } else {
            part / members.len() as f64
        };
        shares.insert(c.id, share);
    }
}

fn routed<'a>(
    c: &Selected<'a>,
    shares: &BTreeMap<&'a InstanceId, f64>,
    backup: bool,
) -> Routed<'a> {
    let share = shares.get(c.id).copied().unwrap_or(0.0);
    let weight = if share > 0.0 {
        ((share * SCALE).round() as u32).max(1)
    } else {
        0
    };
    Routed {
        id: c.id,
        instance: c.instance,
        weight,
        share,
        backup,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{catalog, dc, id, web};
    use super::*;
    use crate::schema::{Datacenter, Health, Override, Shift, TrafficPolicy, VersionGroup};

    use Health::{Critical, Passing, Warning};

    fn policy() -> TrafficPolicy {
        TrafficPolicy {
            prefer_same_dc: true,
            groups: Vec::new(),
            shifts: Vec::new(),
            overrides: BTreeMap::new(),
            expires_at: None,
        }
    }

    /// (id, weight, backup) of the view for a proxy in `home`.
    fn view(c: &Catalog, home: Option<&str>) -> Vec<(String, u32, bool)> {
        let home = home.map(dc);
        route_view(c, &web(), home.as_ref(), 1_000)
            .instances
            .iter()
            .map(|r| (r.id.to_string(), r.weight, r.backup))
            .collect()
    }

    fn row(i: &str, w: u32, b: bool) -> (String, u32, bool) {
        (i.to_owned(), w, b)
    }

    #[test]
    fn critical_and_drained_are_left_out_and_other_dcs_are_backups() {
        let mut c = catalog(&[
            ("a", "dc1", "", Passing, 100),
            ("b", "dc1", "", Warning, 300),
            ("c", "dc1", "", Critical, 100),
            ("d", "dc1", "", Passing, 100),
            ("e", "dc2", "", Passing, 100),
        ]);
        let mut p = policy();
        p.overrides.insert(
            id("d"),
            Override {
                drain: true,
                weight: None,
            },
        );
        c.service_mut(&web()).traffic = Some(p);
        assert_eq!(
            view(&c, Some("dc1")),
            [
                row("a", 25, false),
                row("b", 75, false),
                row("e", 100, true)
            ]
        );
        // A proxy with no datacenter weighs everything together.
        assert_eq!(
            view(&c, None),
            [
                row("a", 20, false),
                row("b", 60, false),
                row("e", 20, false)
            ]
        );
    }

    #[test]
    fn gray_weights_split_between_versions() {
        let mut c = catalog(&[
            ("a", "dc1", "v1", Passing, 100),
            ("b", "dc1", "v1", Passing, 100),
            ("c", "dc1", "v2", Passing, 100),
        ]);
        let mut p = policy();
        p.groups = vec![
            VersionGroup {
                version: "v1".into(),
                weight: 90,
            },
            VersionGroup {
                version: "v2".into(),
                weight: 10,
            },
        ];
        c.service_mut(&web()).traffic = Some(p.clone());
        assert_eq!(
            view(&c, Some("dc1")),
            [
                row("a", 45, false),
                row("b", 45, false),
                row("c", 10, false)
            ]
        );
        // A group with no instance hands its share to the groups present.
        p.groups[1].version = "v3".into();
        c.service_mut(&web()).traffic = Some(p);
        assert_eq!(
            view(&c, Some("dc1")),
            [row("a", 50, false), row("b", 50, false), row("c", 0, false)]
        );
    }

    #[test]
    fn forced_shifts_move_shares_and_fallback_follows_the_list() {
        let mut c = catalog(&[
            ("a", "dc1", "", Passing, 100),
            ("b", "dc2", "", Passing, 100),
            ("x", "dc3", "", Passing, 100),
        ]);
        let mut p = policy();
        p.shifts = vec![Shift {
            from_dc: dc("dc1"),
            to_dc: dc("dc2"),
            percent: 30,
        }];
        c.service_mut(&web()).traffic = Some(p);
        assert_eq!(
            view(&c, Some("dc1")),
            [
                row("a", 70, false),
                row("b", 30, false),
                row("x", 100, true)
            ]
        );
        // dc4 has nothing: its fallback list names dc3.
        c.datacenters.insert(
            dc("dc4"),
            Datacenter {
                subnets: Vec::new(),
                fallback: vec![dc("dc3")],
            },
        );
        assert_eq!(
            view(&c, Some("dc4")),
            [row("a", 50, true), row("b", 50, true), row("x", 100, false)]
        );
    }

    #[test]
    fn overrides_and_standbys() {
        let mut c = catalog(&[("a", "dc1", "", Passing, 100), ("b", "dc1", "", Passing, 0)]);
        assert_eq!(
            view(&c, Some("dc1")),
            [row("a", 100, false), row("b", 0, false)]
        );
        let mut p = policy();
        p.overrides.insert(
            id("b"),
            Override {
                drain: false,
                weight: Some(300),
            },
        );
        c.service_mut(&web()).traffic = Some(p);
        assert_eq!(
            view(&c, Some("dc1")),
            [row("a", 25, false), row("b", 75, false)]
        );
        assert!(view(&Catalog::default(), Some("dc1")).is_empty());
    }
}
