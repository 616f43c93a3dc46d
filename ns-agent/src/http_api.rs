//! The agent's local HTTP API: status, metrics, maintenance mode, name resolution and
//! callbacks.
//!
//! `GET /v1/agent/status` serves the status board with the store contact (and the local DNS);
//! `GET /metrics` the Prometheus text; `PUT /v1/agent/maintenance/NAME?enable=true|false&
//! reason=TEXT` takes a service out of traffic or back, through the directory loop (which owns
//! the lifecycles). `GET /v1/resolve/NAME` (blocking with `wait_rev`) is `resolve`'s, the
//! `/v1/callbacks` routes `callbacks`'. Errors are JSON `{"error": CODE, "message"}` as in the
//! store's API.

mod callbacks;
mod resolve;

pub use resolve::{DEFAULT_WAIT, INDEX_HEADER, MAX_WAIT};

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::directory::{Control, MaintenanceError};
use crate::lifecycle::Context;
use crate::status::Report;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct Api {
    /// The agent's shared context (board, registrar).
    pub ctx: Arc<Context>,
    /// Requests to the directory loop.
    pub control: mpsc::Sender<Control>,
    /// The followed names and their views.
    pub book: Arc<crate::resolve::Book>,
    /// The registered callbacks.
    pub callbacks: Arc<crate::callbacks::Callbacks>,
    /// The local DNS, when configured.
    pub dns: Option<Arc<crate::dnsd::Dnsd>>,
}

/// The router of the local API.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/v1/agent/status", get(status))
        .route("/v1/agent/maintenance/{name}", put(maintenance))
        .route("/v1/resolve/{name}", get(resolve::resolve))
        .route("/v1/resolve/", get(resolve::missing_name))
        .route("/v1/resolve", get(resolve::missing_name))
        .route(
            "/v1/callbacks",
            post(callbacks::create).get(callbacks::list),
        )
        .route(
            "/v1/callbacks/{id}",
            get(callbacks::show).delete(callbacks::delete),
        )
        .route("/metrics", get(metrics_text))
        .with_state(api)
}

/// The status report as of now.
pub fn report(ctx: &Context, dns: Option<&crate::dnsd::Dnsd>) -> Report {
    Report {
        dns: dns.map(|d| d.view(&ctx.mirror)),
        node: ctx.node.clone(),
        datacenter: ctx.datacenter.to_string(),
        store: ctx.registrar.contact().into(),
        services: ctx.board.services(),
        mirror: Some(mirror_view(&ctx.mirror.status())),
        templates: ctx.board.templates(),
    }
}

fn mirror_view(m: &ns_core::MirrorStatus) -> crate::status::MirrorView {
    crate::status::MirrorView {
        synced: m.synced,
        revision: m.revision,
        listings: m.listings,
        staleness_ms: m
            .since_contact
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        last_error: m.last_error.clone(),
    }
}

async fn status(State(api): State<Api>) -> Json<Report> {
    Json(report(&api.ctx, api.dns.as_deref()))
}

async fn metrics_text(State(api): State<Api>) -> Response {
    // The mirror gauges are set when scraped, so they are as fresh as the scrape.
    if let Some(dns) = &api.dns {
        dns.view(&api.ctx.mirror);
    }
    match crate::metrics::handle() {
        Some(h) => ([("content-type", "text/plain; version=0.0.4")], h.render()).into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no metrics recorder",
        ),
    }
}

async fn maintenance(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(k) = q.keys().find(|k| *k != "enable" && *k != "reason") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            &format!("{k}: unknown parameter; expected enable and reason"),
        );
    }
    let enable = match q.get("enable").map(String::as_str) {
        Some("true") => true,
        Some("false") => false,
        Some(v) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_argument",
                &format!("enable: {v:?} must be true or false"),
            );
        }
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_argument",
                "enable: required (true or false)",
            );
        }
    };
    let reason = enable.then(|| q.get("reason").cloned().unwrap_or_default());
    let (tx, rx) = oneshot::channel();
    let sent = api
        .control
        .send(Control::Maintenance {
            name: name.clone(),
            reason: reason.clone(),
            reply: tx,
        })
        .await;
    let answer = match sent {
        Ok(()) => rx.await.ok(),
        Err(_) => None,
    };
    match answer {
        Some(Ok(())) => {
            Json(json!({ "name": name, "maintenance": enable, "reason": reason })).into_response()
        }
        Some(Err(e @ MaintenanceError::Unknown(_))) => {
            error(StatusCode::NOT_FOUND, "not_found", &e.to_string())
        }
        Some(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        ),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the agent is shutting down",
        ),
    }
}

/// A JSON error reply `{"error": code, "message": message}`.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": code, "message": message }))).into_response()
}
