//! The gateway's Prometheus metrics and its HTTP endpoints, `/metrics` and `/healthz`.
//!
//! Recorded: `dns_queries_total{qtype,rcode}`, `dns_query_duration_seconds` (handler time,
//! histogram), `dns_fail_open_total` (answers where routing failed open), and, read from the
//! mirror when scraped, `dns_mirror_revision`, `dns_mirror_synced`,
//! `dns_mirror_staleness_seconds` (time since the store last answered) and
//! `dns_mirror_listings_total`. `/healthz` is 503 until the mirror's first full listing.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use ns_core::Mirror;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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

/// Counts one answered query and its handler time.
pub fn query(qtype: &'static str, rcode: ResponseCode, started: Instant) {
    let rcode = match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::ServFail => "SERVFAIL",
        _ => "OTHER",
    };
    metrics::counter!("dns_queries_total", "qtype" => qtype, "rcode" => rcode).increment(1);
    metrics::histogram!("dns_query_duration_seconds").record(started.elapsed().as_secs_f64());
}

/// Counts one answer where routing failed open.
pub fn fail_open() {
    metrics::counter!("dns_fail_open_total").increment(1);
}

/// A bounded label for a query type (no label per unknown type number).
pub fn qtype_label(t: RecordType) -> &'static str {
    match t {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::SRV => "SRV",
        RecordType::TXT => "TXT",
        RecordType::SOA => "SOA",
        RecordType::NS => "NS",
        RecordType::ANY => "ANY",
        RecordType::PTR => "PTR",
        RecordType::MX => "MX",
        RecordType::CNAME => "CNAME",
        _ => "other",
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    mirror: Arc<Mirror>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(healthz))
        .with_state(mirror);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn render(State(mirror): State<Arc<Mirror>>) -> Response {
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
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        h.render(),
    )
        .into_response()
}

async fn healthz(State(mirror): State<Arc<Mirror>>) -> Response {
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
