//! [`Catalog`]: the naming model held in memory, as routing reads it.
//!
//! A catalog is plain data: every service with its definition, traffic policy and instances,
//! and every datacenter. The mirror ([`crate::mirror`]) builds one from `/ns/` and hands out
//! immutable snapshots of it; tests build one by hand. The maps are persistent (`imbl`):
//! a copy costs O(1) and a change O(log n), so the mirror can publish a fresh snapshot for
//! every batch of changes without copying a fleet's worth of instances each time. This module does no routing
//! ([`crate::routing`]) and no parsing of store values ([`crate::schema`], [`crate::keys`]).

use imbl::OrdMap;

use crate::name::{DcName, InstanceId, ServiceName};
use crate::schema::{Datacenter, Instance, ServiceDef, TrafficPolicy};

/// Everything under `/ns/`, typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Services by name. A service appears as soon as any of its keys exists: an instance may
    /// be registered before its definition is written.
    pub services: OrdMap<ServiceName, ServiceEntry>,
    /// Datacenters by name, from `/ns/datacenters/`.
    pub datacenters: OrdMap<DcName, Datacenter>,
}

/// The keys of one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceEntry {
    /// `/ns/services/NAME`, if written.
    pub def: Option<ServiceDef>,
    /// `/ns/traffic/NAME`, if written (it may have expired: see [`TrafficPolicy::is_active`]).
    pub traffic: Option<TrafficPolicy>,
    /// `/ns/instances/NAME/ID`, by id.
    pub instances: OrdMap<InstanceId, Instance>,
}

impl Catalog {
    /// The entry of `name`, if any of its keys exists.
    pub fn service(&self, name: &ServiceName) -> Option<&ServiceEntry> {
        self.services.get(name)
    }

    /// The entry of `name`, created empty if absent.
    pub fn service_mut(&mut self, name: &ServiceName) -> &mut ServiceEntry {
        self.services.entry(name.clone()).or_default()
    }

    /// Remove `name`'s entry once it has neither definition, policy nor instances, so that a
    /// catalog never holds services that no key mentions.
    pub fn prune(&mut self, name: &ServiceName) {
        if self.services.get(name).is_some_and(ServiceEntry::is_empty) {
            self.services.remove(name);
        }
    }
}

impl ServiceEntry {
    /// Whether no key of this service exists.
    pub fn is_empty(&self) -> bool {
        self.def.is_none() && self.traffic.is_none() && self.instances.is_empty()
    }
}
