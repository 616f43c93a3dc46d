//! What the local DNS counts: totals for `/v1/agent/status` ([`Stats`], [`DnsView`]) and the
//! Prometheus series of `/metrics`.
//!
//! Series (named as the gateway's, so one dashboard reads both): `dns_queries_total{qtype,
//! rcode}`, `dns_forwarded_total{rcode}`, `dns_cache_hits_total`, `dns_refused_acl_total`,
//! `dns_fail_open_total`, and, set when scraped, `dns_mirror_revision` and
//! `dns_mirror_staleness_seconds`. Recording is lock-free (atomics and the `metrics` crate);
//! the per-query series' handles are looked up once per label pair and kept, since a
//! registry lookup per answer costs as much as a cached answer itself.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde::{Deserialize, Serialize};

/// Totals since start, shared by the DNS tasks and the status API.
#[derive(Debug, Default)]
pub struct Stats {
    queries: AtomicU64,
    forwarded: AtomicU64,
    cache_hits: AtomicU64,
    refused: AtomicU64,
    refused_acl: AtomicU64,
    /// `dns_queries_total` by qtype and rcode label index, registered on first use (so the
    /// recorder is installed by then, and no empty series is shown).
    by_label: [[OnceLock<metrics::Counter>; RCODES.len()]; QTYPES.len()],
}

/// `qtype` label values; the last one takes every other type.
const QTYPES: [&str; 11] = [
    "A", "AAAA", "SRV", "TXT", "SOA", "NS", "ANY", "PTR", "MX", "CNAME", "other",
];
/// `rcode` label values; the last one takes every other rcode.
const RCODES: [&str; 7] = [
    "NOERROR", "NXDOMAIN", "REFUSED", "FORMERR", "NOTIMP", "SERVFAIL", "OTHER",
];

/// The `dns` object of `GET /v1/agent/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsView {
    /// The address the DNS server listens on (UDP and TCP).
    pub listen: String,
    /// The store revision the answers are current up to.
    pub mirror_revision: u64,
    /// Seconds since the store last answered the mirror; `null` before it ever did.
    pub staleness_seconds: Option<f64>,
    /// Queries answered.
    pub queries: u64,
    /// Queries for names outside the zone, sent on to the upstreams or answered from the cache.
    pub forwarded: u64,
    /// Forwarded queries answered from the cache.
    pub cache_hits: u64,
    /// Queries answered REFUSED (client outside `dns_allow`, or no upstream for the name).
    pub refused: u64,
    /// Of those, queries from clients outside `dns_allow`.
    pub refused_acl: u64,
}

impl Stats {
    /// Counts one answered query.
    pub fn query(&self, qtype: RecordType, rcode: ResponseCode) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        if rcode == ResponseCode::Refused {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        let (qi, ri) = (qtype_index(qtype), rcode_index(rcode));
        let (q, r) = (QTYPES[qi], RCODES[ri]);
        self.by_label[qi][ri]
            .get_or_init(|| metrics::counter!("dns_queries_total", "qtype" => q, "rcode" => r))
            .increment(1);
    }

    /// Counts one forwarded query and whether the cache answered it.
    pub fn forwarded(&self, rcode: ResponseCode, cached: bool) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("dns_forwarded_total", "rcode" => rcode_label(rcode)).increment(1);
        if cached {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("dns_cache_hits_total").increment(1);
        }
    }

    /// Counts one query refused because its client is outside `dns_allow`.
    pub fn refused_acl(&self) {
        self.refused_acl.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("dns_refused_acl_total").increment(1);
    }

    /// Counts one zone answer where routing failed open.
    pub fn fail_open(&self) {
        metrics::counter!("dns_fail_open_total").increment(1);
    }

    /// The status view, with the mirror's state as of now; also sets the mirror gauges.
    pub fn view(&self, listen: String, mirror: &ns_core::MirrorStatus) -> DnsView {
        let staleness = mirror.since_contact.map(|d| d.as_secs_f64());
        metrics::gauge!("dns_mirror_revision").set(mirror.revision as f64);
        // Never contacted: as stale as can be said, so alerts fire.
        metrics::gauge!("dns_mirror_staleness_seconds").set(staleness.unwrap_or(f64::INFINITY));
        DnsView {
            listen,
            mirror_revision: mirror.revision,
            staleness_seconds: staleness,
            queries: self.queries.load(Ordering::Relaxed),
            forwarded: self.forwarded.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            refused_acl: self.refused_acl.load(Ordering::Relaxed),
        }
    }
}

/// A bounded label for a query type (no label per unknown type number).
pub fn qtype_label(t: RecordType) -> &'static str {
    QTYPES[qtype_index(t)]
}

/// A bounded label for an rcode.
pub fn rcode_label(rcode: ResponseCode) -> &'static str {
    RCODES[rcode_index(rcode)]
}

/// The index of `t`'s label in [`QTYPES`].
fn qtype_index(t: RecordType) -> usize {
    match t {
        RecordType::A => 0,
        RecordType::AAAA => 1,
        RecordType::SRV => 2,
        RecordType::TXT => 3,
        RecordType::SOA => 4,
        RecordType::NS => 5,
        RecordType::ANY => 6,
        RecordType::PTR => 7,
        RecordType::MX => 8,
        RecordType::CNAME => 9,
        _ => QTYPES.len() - 1,
    }
}

/// The index of `rcode`'s label in [`RCODES`].
fn rcode_index(rcode: ResponseCode) -> usize {
    match rcode {
        ResponseCode::NoError => 0,
        ResponseCode::NXDomain => 1,
        ResponseCode::Refused => 2,
        ResponseCode::FormErr => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::ServFail => 5,
        _ => RCODES.len() - 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up() {
        let s = Stats::default();
        s.query(RecordType::A, ResponseCode::NoError);
        s.query(RecordType::A, ResponseCode::Refused);
        s.refused_acl();
        s.forwarded(ResponseCode::NoError, false);
        s.forwarded(ResponseCode::NoError, true);
        let v = s.view(
            "127.0.0.1:8600".into(),
            &ns_core::MirrorStatus {
                revision: 7,
                synced: true,
                since_contact: None,
                last_error: None,
                invalid_keys: 0,
                listings: 1,
            },
        );
        assert_eq!((v.queries, v.refused, v.refused_acl), (2, 1, 1));
        assert_eq!((v.forwarded, v.cache_hits), (2, 1));
        assert_eq!((v.mirror_revision, v.staleness_seconds), (7, None));
        assert_eq!(qtype_label(RecordType::CAA), "other");
        assert_eq!(qtype_label(RecordType::CNAME), "CNAME");
        assert_eq!(rcode_label(ResponseCode::ServFail), "SERVFAIL");
        assert_eq!(rcode_label(ResponseCode::BADCOOKIE), "OTHER");
    }
}
