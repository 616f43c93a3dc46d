//! The Prometheus recorder behind `GET /metrics`.
//!
//! Counters and histograms are recorded where things happen: checks by result and their
//! duration and state transitions in `lifecycle`, registrations and store contact in
//! `registrar`, alerts in `alert`. This module only installs the one global recorder.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle (`None` if another recorder
/// was installed first).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .ok()?;
            builder.install_recorder().ok()
        })
        .as_ref()
}
