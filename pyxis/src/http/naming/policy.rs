//! Traffic policies (`/v1/traffic/{name}`) and datacenters (`/v1/datacenters/{dc}`).
//!
//! Both are operator-written values: validated by `ns_core::schema`, stored whole (a PUT
//! replaces the previous value) and never bound to a lease. A traffic policy may be written
//! before its service has a definition or instances. Rules spanning several values (an
//! override naming a live instance, subnets overlapping across datacenters) are not checked
//! here; routing tolerates them. Services and instances are in `services`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::Response;
use ns_core::{Datacenter, DcName, ServiceName, TrafficPolicy, keys};
use pyxis_client::api::{DeleteResponse, PutResponse};

use super::super::error::ApiError;
use super::super::params::Params;
use super::super::request_id::WriteId;
use super::{
    WriteParams, consistent_read, delete_keys, get_one, invalid, name, path_params, put_value,
};
use crate::node::Node;

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
