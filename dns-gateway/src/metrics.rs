//! The gateway's Prometheus metrics and its HTTP endpoints, `/metrics` and `/healthz`.
//!
//! Served: `dns_queries_total{qtype,rcode}`, `dns_query_duration_seconds` (handler time,
//! histogram) and `dns_fail_open_total` (answers where routing failed open), summed from the
//! workers' counters (`stats`) at each scrape, and, read from the mirror when scraped, `dns_mirror_revision`, `dns_mirror_synced`,
//! `dns_mirror_staleness_seconds` (time since the store last answered) and
//! `dns_mirror_listings_total`. `/healthz` is 503 until the mirror's first full listing.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use ns_core::Mirror;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::stats::Stats;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle (`None` if another recorder
/// was installed first).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            // Answers take microseconds; the upper buckets catch a stalled runtime.
            let buckets = [
                0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
                0.01, 0.1, 1.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .ok()?;
            builder.install_recorder().ok()
        })
        .as_ref()
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    mirror: Arc<Mirror>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(healthz))
        .with_state((mirror, stats));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn render(State((mirror, stats)): State<(Arc<Mirror>, Arc<Stats>)>) -> Response {
    let status = mirror.status();
    metrics::gauge!("dns_mirror_revision").set(status.revision as f64);
    metrics::gauge!("dns_mirror_synced").set(if status.synced { 1.0 } else { 0.0 });
    metrics::gauge!("dns_mirror_listings_total").set(status.listings as f64);
    // Never contacted: as stale as can be said, so alerts fire.
    let stale = status
        .since_contact
        .map_or(f64::INFINITY, |d| d.as_secs_f64());
    metrics::gauge!("dns_mirror_staleness_seconds").set(stale);
    let Some(h) = handle() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no metrics recorder").into_response();
    };
    let mut text = h.render();
    stats.render(&mut text);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn healthz(State((mirror, _)): State<(Arc<Mirror>, Arc<Stats>)>) -> Response {
    let s = mirror.status();
    let body = status_json(&s);
    let code = if s.listings == 0 {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The mirror's status as JSON.
fn status_json(s: &ns_core::MirrorStatus) -> String {
    serde_json::json!({
        "revision": s.revision,
        "synced": s.synced,
        "listings": s.listings,
        "since_contact_ms": s.since_contact.map(|d| d.as_millis() as u64),
        "last_error": s.last_error,
        "invalid_keys": s.invalid_keys,
    })
    .to_string()
}
