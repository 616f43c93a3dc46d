//! Traffic policies (`/v1/traffic/{name}`) and datacenters (`/v1/datacenters[/{dc}]`).
//!
//! Both are operator-written values: validated by `ns_core::schema`, stored whole (a PUT
//! replaces the previous value) and never bound to a lease. A traffic policy may be written
//! before its service has a definition or instances. Rules spanning several values (an
//! override naming a live instance, subnets overlapping across datacenters) are not checked
//! here; routing tolerates them. Services and instances are in `services`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::Response;
use ns_core::{Datacenter, DcName, Instance, Key, ServiceName, TrafficPolicy, keys};
use pyxis_client::api::{DeleteResponse, PutResponse, Revision};
use serde::Serialize;

use super::super::error::ApiError;
use super::super::params::Params;
use super::super::request_id::WriteId;
use super::services::decode_logged;
use super::{
    WriteParams, consistent_read, delete_keys, get_one, invalid, listing, name, path_params,
    put_value, within,
};
use crate::node::Node;
use crate::store::read::Budget;

/// One row of `GET /v1/datacenters`, shaped like `GET /v1/services`' rows.
#[derive(Debug, Serialize)]
pub struct DatacenterRow {
    /// The datacenter's name.
    pub name: DcName,
    /// Its stored [`Datacenter`], `null` if none is stored (or the stored one is unreadable).
    pub def: Option<Datacenter>,
    /// The mod revision of the stored value (the `prev_rev` of an edit), `null` if none.
    pub mod_rev: Option<Revision>,
    /// How many instances, of any service, are registered in it.
    pub instances: u64,
    /// How many of them routing may answer with (passing or warning).
    pub healthy: u64,
}

/// `PUT /v1/traffic/{name}[?prev_rev=N]` with a [`TrafficPolicy`] body.
pub async fn put_traffic(
    State(node): State<Arc<Node>>,
    WriteId(rid): WriteId,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
    body: Bytes,
) -> Result<Json<PutResponse>, ApiError> {
    let svc = name("name", &path_params(path)?, ServiceName::parse)?;
    let write = WriteParams::parse(&uri, false)?;
    let policy = TrafficPolicy::from_json(&body).map_err(invalid)?;
    super::check_reserved_label(&node, &svc)?;
    put_value(&node, rid, keys::traffic(&svc), &policy, write).await
}

/// `GET /v1/traffic/{name}`: the stored [`TrafficPolicy`], expired or not; 404 if none.
pub async fn get_traffic(
    State(node): State<Arc<Node>>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let svc = name("name", &path_params(path)?, ServiceName::parse)?;
    consistent_read(&node, &uri).await?;
    get_one(
        &node,
        &keys::traffic(&svc),
        "name",
        "traffic policy",
        TrafficPolicy::from_json,
    )
}

/// `DELETE /v1/traffic/{name}`: the service's defaults apply again.
pub async fn delete_traffic(
    State(node): State<Arc<Node>>,
    WriteId(rid): WriteId,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<Json<DeleteResponse>, ApiError> {
    let svc = name("name", &path_params(path)?, ServiceName::parse)?;
    Params::parse(uri.query())?.only(&[])?;
    delete_keys(&node, rid, vec![(keys::traffic(&svc), false)]).await
}

/// `PUT /v1/datacenters/{dc}[?prev_rev=N]` with a [`Datacenter`] body.
pub async fn put_datacenter(
    State(node): State<Arc<Node>>,
    WriteId(rid): WriteId,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
    body: Bytes,
) -> Result<Json<PutResponse>, ApiError> {
    let dc = name("dc", &path_params(path)?, DcName::parse)?;
    let write = WriteParams::parse(&uri, false)?;
    let value = Datacenter::from_json(&body).map_err(invalid)?;
    super::check_dc_not_reserved(&node, &dc)?;
    put_value(&node, rid, keys::datacenter(&dc), &value, write).await
}

/// `GET /v1/datacenters`: every datacenter a stored value or a registered instance names, by
/// name, with its instance counts.
pub async fn list_datacenters(
    State(node): State<Arc<Node>>,
    uri: Uri,
) -> Result<Response, ApiError> {
    consistent_read(&node, &uri).await?;
    // Each stored datacenter and each new row is charged, so the reply stays within the limit.
    let mut budget = Budget::new(node.limits.max_response_bytes);
    let (revision, rows) = node.view.with_kv(|kv| {
        let mut rows: BTreeMap<DcName, DatacenterRow> = BTreeMap::new();
        'scan: for prefix in [keys::DATACENTERS, keys::INSTANCES] {
            for (key, entry) in kv.range(prefix) {
                // Keys outside the layout (written through `/v1/kv`) are not datacenters.
                match Key::parse(key) {
                    Some(Key::Datacenter(dc)) => {
                        if !budget.spend_entry(key, entry) {
                            break 'scan;
                        }
                        let r = new_row(&mut rows, &dc);
                        r.def = decode_logged(key, &entry.value, Datacenter::from_json);
                        r.mod_rev = Some(entry.mod_rev);
                    }
                    Some(Key::Instance(..)) => {
                        let Some(i) = decode_logged(key, &entry.value, Instance::from_json) else {
                            continue;
                        };
                        if !rows.contains_key(&i.datacenter)
                            && !budget.spend_row(i.datacenter.as_str().len())
                        {
                            break 'scan;
                        }
                        let r = new_row(&mut rows, &i.datacenter);
                        r.instances += 1;
                        if i.status.is_routable() {
                            r.healthy += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
        (kv.revision(), rows.into_values().collect::<Vec<_>>())
    });
    within(&budget, "the datacenters")?;
    Ok(listing(revision, rows))
}

/// The row of `dc`, made empty if it is not there yet.
fn new_row<'a>(
    rows: &'a mut BTreeMap<DcName, DatacenterRow>,
    dc: &DcName,
) -> &'a mut DatacenterRow {
    rows.entry(dc.clone()).or_insert_with(|| DatacenterRow {
        name: dc.clone(),
        def: None,
        mod_rev: None,
        instances: 0,
        healthy: 0,
    })
}

/// `GET /v1/datacenters/{dc}`: the stored [`Datacenter`]; 404 if none.
pub async fn get_datacenter(
    State(node): State<Arc<Node>>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let dc = name("dc", &path_params(path)?, DcName::parse)?;
    consistent_read(&node, &uri).await?;
    get_one(
        &node,
        &keys::datacenter(&dc),
        "dc",
        "datacenter",
        Datacenter::from_json,
    )
}

/// `DELETE /v1/datacenters/{dc}`.
pub async fn delete_datacenter(
    State(node): State<Arc<Node>>,
    WriteId(rid): WriteId,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<Json<DeleteResponse>, ApiError> {
    let dc = name("dc", &path_params(path)?, DcName::parse)?;
    Params::parse(uri.query())?.only(&[])?;
    delete_keys(&node, rid, vec![(keys::datacenter(&dc), false)]).await
}
