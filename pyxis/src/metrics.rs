//! Prometheus metrics: the recorder, Raft gauges, and the HTTP request middleware.
//!
//! Counters and histograms are recorded where things happen (`log_store` records
//! fsync latency, `node` counts proposals); this module installs the one global
//! recorder, mirrors openraft's metrics into gauges, and times every HTTP request.

use openraft::async_runtime::watch::WatchReceiver as _;
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::raft::Raft;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle (None if another
/// recorder was installed first, e.g. by an embedding test).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .ok()?;
            builder.install_recorder().ok()
        })
        .as_ref()
}

/// Mirrors openraft's metrics (term, indexes, role) into gauges until `shutdown`.
pub fn spawn_raft_gauges(raft: Raft, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut rx = raft.metrics();
        loop {
            {
                let m = rx.borrow_and_update();
                metrics::gauge!("pyxis_raft_term").set(m.current_term as f64);
                metrics::gauge!("pyxis_raft_last_log_index")
                    .set(m.last_log_index.unwrap_or(0) as f64);
                metrics::gauge!("pyxis_raft_commit_index")
                    .set(m.local_committed.map_or(0, |l| l.index) as f64);
                metrics::gauge!("pyxis_raft_applied_index")
                    .set(m.last_applied.map_or(0, |l| l.index) as f64);
                metrics::gauge!("pyxis_raft_snapshot_index")
                    .set(m.snapshot.map_or(0, |l| l.index) as f64);
                metrics::gauge!("pyxis_raft_is_leader").set(
                    if m.state == openraft::ServerState::Leader {
                        1.0
                    } else {
                        0.0
                    },
                );
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = rx.changed() => if changed.is_err() { return },
            }
        }
    });
}

/// Axum middleware: counts and times each request by route template and status.
pub async fn track_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("pyxis_http_requests_total", &labels).increment(1);
    metrics::histogram!("pyxis_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    resp
}
