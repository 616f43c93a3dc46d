//! Prometheus metrics: the recorder, Raft gauges, and the HTTP request middleware.
//!
//! Counters and histograms are recorded where things happen (`log_store` records WAL
//! fsync latency and batch size, `network` each append RPC's duration, entries and bytes per
//! peer, `state_machine` apply and snapshot build times, `node` counts proposals); this
//! module installs the one global recorder with the histograms' buckets, mirrors openraft's
//! metrics into gauges, and times every HTTP request.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::raft::WatchReceiver as _;
use crate::raft::{Raft, ServerState};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Buckets of every `*_seconds` histogram: an fsync (tens of microseconds) to a snapshot
/// build of a large state (tens of seconds).
const SECONDS_BUCKETS: [f64; 18] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets of every `*_ops` and `*_entries` histogram (WAL batches, entries per append RPC
/// or apply call): powers of two up to the largest append (256 entries) and beyond.
const COUNT_BUCKETS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// Buckets of every `*_bytes` histogram (append RPC bodies): 1 KiB to 64 MiB, by fours.
const BYTES_BUCKETS: [f64; 9] = [
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// Installs the process-wide recorder once and returns its handle (None if another
/// recorder was installed first, e.g. by an embedding test).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Suffix("_ops".into()), &COUNT_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Suffix("_entries".into()), &COUNT_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Suffix("_bytes".into()), &BYTES_BUCKETS)
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
                // The log before this index is gone: how far a purge got, so that a log held
                // for a lagging member shows.
                metrics::gauge!("pyxis_raft_purged_index")
                    .set(m.purged.map_or(0, |l| l.index) as f64);
                metrics::gauge!("pyxis_raft_is_leader").set(if m.state == ServerState::Leader {
                    1.0
                } else {
                    0.0
                });
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
