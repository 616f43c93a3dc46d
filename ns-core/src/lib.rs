//! The naming model of pyxis, shared by the store's typed endpoints, the agent and the DNS
//! gateway: one definition of every name and value, their validation, their place in the
//! store, and the routing policy.
//!
//! Modules:
//! - [`name`]: validated names, [`ServiceName`], [`DcName`], [`InstanceId`] and [`NodeName`].
//! - [`schema`]: the stored values, [`ServiceDef`], [`Instance`], [`TrafficPolicy`] and
//!   [`Datacenter`], with their JSON form and `validate`; and [`AgentRecord`], an agent's
//!   status record.
//! - [`error`]: [`ValidationError`], which names the field at fault.
//! - [`keys`]: the `/ns/` key layout, [`Key`] and its builders and parser.
//! - [`catalog`]: [`Catalog`], the naming model in memory as routing reads it.
//! - [`mirror`]: [`Mirror`], the live copy of `/ns/` kept by one watch stream, handing out
//!   immutable [`Snapshot`]s and reporting its staleness ([`MirrorStatus`]).
//! - [`routing`]: [`routing::select`], the pure routing policy (datacenter preference, forced
//!   shifts, gray version groups, weighted order).
//!
//! - [`placement`]: [`placement::place`], a DNS client's datacenter from its EDNS Client
//!   Subnet or source address against the datacenters' subnets.
//! - [`zone`]: [`Zone`], the zone's answers (records and rcodes) for a snapshot, a question and
//!   a client, shared by the gateway and the agent's local DNS; [`zone::packet`] turns query
//!   packets into reply packets (hand-parsed fast path with a cache, hickory slow path).
//!
//! Apart from the mirror, this crate does no I/O, reads no clock and draws no randomness: time
//! and seeds are passed in.

pub mod catalog;
pub mod error;
pub mod keys;
pub mod mirror;
pub mod name;
pub mod placement;
pub mod routing;
pub mod schema;
pub mod zone;

pub use catalog::{Catalog, ServiceEntry};
pub use error::{NameError, ValidationError};
pub use keys::Key;
pub use mirror::{Mirror, MirrorOptions, MirrorStatus, Snapshot};
pub use name::{DcName, InstanceId, NodeName, ServiceName};
pub use placement::{Placement, place};
pub use routing::{ClientCtx, Filter, Params, Selection};
pub use schema::{
    AgentCheck, AgentRecord, AgentService, AgentServiceState, Datacenter, Health, Instance,
    Override, ServiceDef, Shift, TrafficPolicy, VersionGroup,
};
pub use zone::{Answer, NameKind, QueryParams, Zone, ZoneConfig};
