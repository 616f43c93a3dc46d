//! Service definitions and instances: `/v1/services[/{name}[/instances[/{id}]]]`.
//!
//! A service exists as soon as any of its keys does (definition, traffic policy or an
//! instance), as in `ns_core::Catalog`: registering an instance does not need, and does not
//! create, a definition. Deleting a service deletes its definition, its traffic policy and
//! all its instances in one revision. Traffic policies and datacenters are in `policy`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::Response;
use ns_core::{DcName, Instance, InstanceId, Key, ServiceDef, ServiceName, keys};
use pyxis_client::api::{DeleteResponse, PutResponse, Revision};
use serde::Serialize;

use super::super::error::ApiError;
use super::super::params::Params;
use super::super::request_id::WriteId;
use super::{
    WriteParams, consistent_read, delete_keys, get_one, invalid, listing, name, path_params,
    put_value, read_barrier, within,
};
use crate::node::Node;
use crate::store::read::Budget;

/// One row of `GET /v1/services`.
#[derive(Debug, Serialize)]
pub struct ServiceRow {
    /// The service's name.
    pub name: ServiceName,
    /// Its definition, `null` if none is stored (or the stored one is unreadable).
    pub def: Option<ServiceDef>,
    /// Whether a traffic policy is stored for it.
    pub traffic: bool,
    /// How many instances are registered.
    pub instances: u64,
    /// How many of them routing may answer with (passing or warning).
    pub healthy: u64,
}

/// One row of `GET /v1/services/{name}/instances`: the instance's fields plus its id, the
/// lease holding it and its mod revision.
#[derive(Debug, Serialize)]
pub struct InstanceRow {
    /// The instance id (last key segment).
    pub id: InstanceId,
    /// The lease the registration is bound to, if any.
    pub lease: Option<u64>,
    /// The revision of its last change.
    pub mod_rev: Revision,
    /// The registered instance.
    #[serde(flatten)]
    pub instance: Instance,
}

/// `PUT /v1/services/{name}[?prev_rev=N]` with a [`ServiceDef`] body.
pub async fn put(
    State(node): State<Arc<Node>>,
    WriteId(rid): WriteId,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
    body: Bytes,
) -> Result<Json<PutResponse>, ApiError> {
    let svc = name("name", &path_params(path)?, ServiceName::parse)?;
    let write = WriteParams::parse(&uri, false)?;
    let def = ServiceDef::from_json(&body).map_err(invalid)?;
    super::check_reserved_label(&node, &svc)?;
    put_value(&node, rid, keys::service(&svc), &def, write).await
}

/// `GET /v1/services/{name}`: the stored [`ServiceDef`]; 404 if the service has none.
pub async fn get(
    State(node): State<Arc<Node>>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let svc = name("name", &path_params(path)?, ServiceName::parse)?;
    consistent_read(&node, &uri).await?;
    get_one(
        &node,
        &keys::service(&svc),
        "name",
        "service definition",
        ServiceDef::from_json,
    )
}

/// `DELETE /v1/services/{name}`: the definition, the traffic policy and every instance, in
/// one revision.
pub async fn delete(
    State(node): State<Arc<Node>>,
    WriteId(rid): WriteId,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<Json<DeleteResponse>, ApiError> {
    let svc = name("name", &path_params(path)?, ServiceName::parse)?;
    Params::parse(uri.query())?.only(&[])?;
    delete_keys(
        &node,
        rid,
        vec![
            (keys::service(&svc), false),
            (keys::traffic(&svc), false),
            (keys::instances_of(&svc), true),
        ],
    )
    .await
}

/// `GET /v1/services`: every service any key mentions, by name, with instance counts.
pub async fn list(State(node): State<Arc<Node>>, uri: Uri) -> Result<Response, ApiError> {
    consistent_read(&node, &uri).await?;
    // Each row and each definition is charged, so the rows built stay within the reply limit.
    let mut budget = Budget::new(node.limits.max_response_bytes);
    let (revision, rows) = node.view.with_kv(|kv| {
        let mut rows: BTreeMap<ServiceName, ServiceRow> = BTreeMap::new();
        'scan: for prefix in [keys::SERVICES, keys::TRAFFIC, keys::INSTANCES] {
            for (key, entry) in kv.range(prefix) {
                // Keys outside the layout (written through `/v1/kv`) are not services.
                let Some(parsed) = Key::parse(key) else {
                    continue;
                };
                let Some(svc) = parsed.service() else {
                    continue;
                };
                let charged = match parsed {
                    Key::Service(_) => budget.spend_entry(key, entry),
                    _ if !rows.contains_key(svc) => budget.spend_row(svc.as_str().len()),
                    _ => true,
                };
                if !charged {
                    break 'scan;
                }
                let r = rows.entry(svc.clone()).or_insert_with(|| ServiceRow {
                    name: svc.clone(),
                    def: None,
                    traffic: false,
                    instances: 0,
                    healthy: 0,
                });
                match parsed {
                    Key::Service(_) => {
                        r.def = decode_logged(key, &entry.value, ServiceDef::from_json)
                    }
                    Key::Traffic(_) => r.traffic = true,
                    Key::Instance(..) => {
                        r.instances += 1;
                        if decode_logged(key, &entry.value, Instance::from_json)
                            .is_some_and(|i| i.status.is_routable())
                        {
                            r.healthy += 1;
                        }
                    }
                    Key::Datacenter(_) => {}
                }
            }
        }
        (kv.revision(), rows.into_values().collect::<Vec<_>>())
    });
    within(&budget, "the services")?;
    Ok(listing(revision, rows))
}

/// `PUT /v1/services/{name}/instances/{id}[?lease=ID][&prev_rev=N]` with an [`Instance`] body.
pub async fn put_instance(
    State(node): State<Arc<Node>>,
    WriteId(rid): WriteId,
    path: Result<Path<(String, String)>, PathRejection>,
    uri: Uri,
    body: Bytes,
) -> Result<Json<PutResponse>, ApiError> {
    let (raw_name, raw_id) = path_params(path)?;
    let svc = name("name", &raw_name, ServiceName::parse)?;
    let id = name("id", &raw_id, InstanceId::parse)?;
    let write = WriteParams::parse(&uri, true)?;
    let instance = Instance::from_json(&body).map_err(invalid)?;
    super::check_reserved_label(&node, &svc)?;
    let key = keys::instance(&svc, &id);
    own_instance(&node, &key, Some(&instance.node), write.lease).await?;
    // The lease's existence is checked by the state machine when the put applies, so a lease
    // that expires between here and there still writes nothing (404 `lease`).
    put_value(&node, rid, key, &instance, write).await
}

/// `GET /v1/services/{name}/instances/{id}`: the stored [`Instance`].
pub async fn get_instance(
    State(node): State<Arc<Node>>,
    path: Result<Path<(String, String)>, PathRejection>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (raw_name, raw_id) = path_params(path)?;
    let svc = name("name", &raw_name, ServiceName::parse)?;
    let id = name("id", &raw_id, InstanceId::parse)?;
    consistent_read(&node, &uri).await?;
    get_one(
        &node,
        &keys::instance(&svc, &id),
        "id",
        "instance",
        Instance::from_json,
    )
}

/// `DELETE /v1/services/{name}/instances/{id}`.
pub async fn delete_instance(
    State(node): State<Arc<Node>>,
    WriteId(rid): WriteId,
    path: Result<Path<(String, String)>, PathRejection>,
    uri: Uri,
) -> Result<Json<DeleteResponse>, ApiError> {
    let (raw_name, raw_id) = path_params(path)?;
    let svc = name("name", &raw_name, ServiceName::parse)?;
    let id = name("id", &raw_id, InstanceId::parse)?;
    Params::parse(uri.query())?.only(&[])?;
    let key = keys::instance(&svc, &id);
    own_instance(&node, &key, None, None).await?;
    delete_keys(&node, rid, vec![(key, false)]).await
}

/// For a `register` caller: the instance in the body (`node`), the one stored under `key`
/// and the lease it is put on must all be its own node's; 403 otherwise, before anything
/// is proposed. Every other caller passes (the route table let it in).
///
/// The stored instance and the lease owner are read after a linearizable barrier, so a
/// lease granted a moment ago through another node is seen; a change to the stored instance
/// still in flight is not, which only matters if another node's token writes the same key
/// at the same moment.
async fn own_instance(
    node: &Node,
    key: &str,
    body_node: Option<&str>,
    lease: Option<u64>,
) -> Result<(), ApiError> {
    if crate::acl::caller().is_none_or(|c| c.register_node().is_none()) {
        return Ok(());
    }
    node.linearize().await?;
    let (stored, lease_owner) = node.view.with_kv(|kv| {
        let stored = kv.get(key).map(|e| {
            // An unreadable stored value has no node: it is not the caller's to change.
            Instance::from_json(&e.value).map(|i| i.node).ok()
        });
        let owner = lease.map(|l| kv.acl().lease_owner(l).map(str::to_owned));
        (stored, owner)
    });
    if let Some(n) = body_node {
        super::super::auth::require_node("node", [Some(n)])?;
    }
    if let Some(stored) = &stored {
        super::super::auth::require_node("stored instance", [stored.as_deref()])?;
    }
    if let Some(owner) = &lease_owner {
        super::super::auth::require_node("lease", [owner.as_deref()])?;
    }
    Ok(())
}

/// `GET /v1/services/{name}/instances[?dc=DC][&healthy=true]`: the service's instances by id;
/// `dc` keeps one datacenter's, `healthy=true` the routable ones (passing or warning). An
/// unknown service has no instances: `[]`, not 404.
pub async fn list_instances(
    State(node): State<Arc<Node>>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let svc = name("name", &path_params(path)?, ServiceName::parse)?;
    let params = Params::parse(uri.query())?;
    params.only(&["dc", "healthy", "consistency"])?;
    let dc = params
        .str("dc")
        .map(|d| name("dc", d, DcName::parse))
        .transpose()?;
    let healthy = params.flag("healthy")?;
    read_barrier(&node, &params).await?;
    let prefix = keys::instances_of(&svc);
    // Every instance scanned is charged, so the rows built stay within the reply limit.
    let mut budget = Budget::new(node.limits.max_response_bytes);
    let (revision, rows) = node.view.with_kv(|kv| {
        let rows: Vec<InstanceRow> = kv
            .range(&prefix)
            .take_while(|(key, entry)| budget.spend_entry(key, entry))
            .filter_map(|(key, entry)| {
                let Some(Key::Instance(_, id)) = Key::parse(key) else {
                    return None;
                };
                let instance = decode_logged(key, &entry.value, Instance::from_json)?;
                Some(InstanceRow {
                    id,
                    lease: entry.lease,
                    mod_rev: entry.mod_rev,
                    instance,
                })
            })
            .filter(|r| dc.as_ref().is_none_or(|d| r.instance.datacenter == *d))
            .filter(|r| !healthy || r.instance.status.is_routable())
            .collect();
        (kv.revision(), rows)
    });
    within(&budget, &format!("the instances of {svc}"))?;
    Ok(listing(revision, rows))
}

/// Decodes a stored value, logging (not failing) when it breaks the schema: one bad value
/// written through `/v1/kv` must not hide every other service from a listing.
pub(super) fn decode_logged<T>(
    key: &str,
    bytes: &[u8],
    decode: fn(&[u8]) -> Result<T, ns_core::ValidationError>,
) -> Option<T> {
    decode(bytes)
        .map_err(|e| tracing::warn!(%key, error = %e, "stored naming value is invalid; skipped"))
        .ok()
}
