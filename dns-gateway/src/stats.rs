//! Query counters without contention: each DNS worker owns one [`WorkerStats`] (atomics on
//! its own cache lines, written only by that worker), and a scrape of `/metrics` sums them
//! into the Prometheus text of `dns_queries_total{qtype,rcode}`,
//! `dns_query_duration_seconds` (histogram) and `dns_fail_open_total`.
//!
//! The global `metrics` recorder is kept for the mirror's gauges (`metrics.rs`); going
//! through it per query costs a registry lookup and shared writes on every answer.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use ns_core::zone::packet::Outcome;

/// `qtype` label values; the last one takes every other type.
const QTYPES: [&str; 11] = [
    "A", "AAAA", "SRV", "TXT", "SOA", "NS", "ANY", "PTR", "MX", "CNAME", "other",
];
/// `rcode` label values; the last one takes every other rcode.
const RCODES: [&str; 7] = [
    "NOERROR", "NXDOMAIN", "REFUSED", "FORMERR", "NOTIMP", "SERVFAIL", "OTHER",
];
/// Upper bounds of the latency buckets, in seconds: answers take microseconds, the upper
/// buckets catch a stalled worker.
const BUCKETS: [f64; 12] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.1,
    1.0,
];

/// One worker's counters. Aligned so two workers never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerStats {
    queries: [[AtomicU64; RCODES.len()]; QTYPES.len()],
    /// Per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
    fail_open: AtomicU64,
}

/// The index of a query type's label.
pub fn qtype_index(t: Option<RecordType>) -> usize {
    let label = match t {
        Some(RecordType::A) => "A",
        Some(RecordType::AAAA) => "AAAA",
        Some(RecordType::SRV) => "SRV",
        Some(RecordType::TXT) => "TXT",
        Some(RecordType::SOA) => "SOA",
        Some(RecordType::NS) => "NS",
        Some(RecordType::ANY) => "ANY",
        Some(RecordType::PTR) => "PTR",
        Some(RecordType::MX) => "MX",
        Some(RecordType::CNAME) => "CNAME",
        _ => "other",
    };
    QTYPES
        .iter()
        .position(|l| *l == label)
        .unwrap_or(QTYPES.len() - 1)
}

/// The index of an rcode's label.
pub fn rcode_index(r: ResponseCode) -> usize {
    match r {
        ResponseCode::NoError => 0,
        ResponseCode::NXDomain => 1,
        ResponseCode::Refused => 2,
        ResponseCode::FormErr => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::ServFail => 5,
        _ => 6,
    }
}

impl WorkerStats {
    /// Counts one reply sent and the time spent on it.
    pub fn record(&self, qtype: usize, rcode: usize, elapsed: Duration) {
        let q = qtype.min(QTYPES.len() - 1);
        let r = rcode.min(RCODES.len() - 1);
        self.queries[q][r].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let b = BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(BUCKETS.len());
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Counts what the responder did with one packet (a dropped packet is not a query).
    pub fn outcome(&self, outcome: Outcome, elapsed: Duration) {
        let other = QTYPES.len() - 1;
        let (q, r) = match outcome {
            Outcome::Answered {
                rcode,
                qtype,
                fail_open,
            } => {
                if fail_open {
                    self.fail_open();
                }
                (qtype_index(Some(qtype)), rcode_index(rcode))
            }
            Outcome::Outside { qtype } => {
                (qtype_index(Some(qtype)), rcode_index(ResponseCode::Refused))
            }
            Outcome::Malformed { replied: true } => (other, rcode_index(ResponseCode::FormErr)),
            Outcome::Malformed { replied: false } => return,
            Outcome::NotImplemented => (other, rcode_index(ResponseCode::NotImp)),
        };
        self.record(q, r, elapsed);
    }

    /// Counts one answer where routing failed open.
    pub fn fail_open(&self) {
        self.fail_open.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every worker's counters, for the scrape.
#[derive(Debug, Default)]
pub struct Stats {
    workers: Mutex<Vec<Arc<WorkerStats>>>,
}

impl Stats {
    /// New counters for one more worker.
    pub fn worker(&self) -> Arc<WorkerStats> {
        let w = Arc::new(WorkerStats::default());
        self.lock().push(Arc::clone(&w));
        w
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<WorkerStats>>> {
        // The vector is only pushed to and read, so a panic elsewhere cannot leave it torn.
        self.workers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends the summed counters to `out` in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let workers = self.lock();
        let sum = |f: &dyn Fn(&WorkerStats) -> &AtomicU64| -> u64 {
            workers.iter().map(|w| f(w).load(Ordering::Relaxed)).sum()
        };
        out.push_str("# TYPE dns_queries_total counter\n");
        for (q, qtype) in QTYPES.iter().enumerate() {
            for (r, rcode) in RCODES.iter().enumerate() {
                let n = sum(&|w| &w.queries[q][r]);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "dns_queries_total{{qtype=\"{qtype}\",rcode=\"{rcode}\"}} {n}"
                    );
                }
            }
        }
        out.push_str("# TYPE dns_fail_open_total counter\n");
        let _ = writeln!(out, "dns_fail_open_total {}", sum(&|w| &w.fail_open));
        out.push_str("# TYPE dns_query_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += sum(&|w| &w.buckets[i]);
            let _ = writeln!(
                out,
                "dns_query_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += sum(&|w| &w.buckets[BUCKETS.len()]);
        let _ = writeln!(
            out,
            "dns_query_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let secs = sum(&|w| &w.sum_ns) as f64 / 1e9;
        let _ = writeln!(out, "dns_query_duration_seconds_sum {secs}");
        let _ = writeln!(out, "dns_query_duration_seconds_count {cumulative}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_summed_on_render() {
        let stats = Stats::default();
        let (a, b) = (stats.worker(), stats.worker());
        let a_nx = (
            qtype_index(Some(RecordType::A)),
            rcode_index(ResponseCode::NXDomain),
        );
        a.record(a_nx.0, a_nx.1, Duration::from_micros(3));
        b.record(a_nx.0, a_nx.1, Duration::from_secs(5));
        b.fail_open();
        let mut text = String::new();
        stats.render(&mut text);
        assert!(
            text.contains("dns_queries_total{qtype=\"A\",rcode=\"NXDOMAIN\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("dns_fail_open_total 1\n"));
        assert!(
            text.contains("dns_query_duration_seconds_bucket{le=\"0.00001\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("dns_query_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("dns_query_duration_seconds_count 2\n"));
        assert_eq!(qtype_index(Some(RecordType::CAA)), QTYPES.len() - 1);
    }
}
