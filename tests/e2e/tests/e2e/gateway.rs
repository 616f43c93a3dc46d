//! `dns-gateway` against a 3-node store, asked with the real `dig`: every record type and
//! rcode of the zone, same-datacenter first by source address and by EDNS Client Subnet (with
//! its scope), `NAME.DC`, NODATA for a service without a usable instance, fail-open at a 50 %
//! threshold, a 40-instance answer that truncates over UDP and comes whole over TCP, and the
//! typed API refusing the names the reserved-label rule keeps apart; and the fast path's
//! own promises on one worker thread (`--threads 1`): the question's case kept, rotation of
//! cached answers, and a burst of random unknown names each answered NXDOMAIN with the SOA.
//! Policy changes are in `gateway_policy`, store outages and malformed packets in
//! `gateway_faults`.

use std::time::Duration;

use harness::{Cluster, DigAnswer, Gateway, dig, dig_batch, eventually};
use serde_json::{Value, json};

/// Generous bound for a loaded 2-core machine running debug builds.
pub(crate) const LONG: Duration = Duration::from_secs(60);

/// A 3-node store with datacenters `dc1` (127.0.0.0/8, where `dig` asks from) and `dc2`
/// (10.2.0.0/16, reached by ECS), and a gateway in front of it.
pub(crate) struct Setup {
    pub(crate) cluster: Cluster,
    pub(crate) gw: Gateway,
}

impl Setup {
    pub(crate) async fn start(nodes: u64) -> Setup {
        Setup::start_with(nodes, &[]).await
    }

    /// [`Setup::start`] with more gateway flags.
    pub(crate) async fn start_with(nodes: u64, gateway_flags: &[&str]) -> Setup {
        let cluster = if nodes == 1 {
            Cluster::single(&[]).await.unwrap()
        } else {
            Cluster::start(nodes).await.unwrap()
        };
        let s = Setup {
            gw: Gateway::start(
                &cluster.endpoints(),
                &cluster.dir().join("logs"),
                gateway_flags,
            )
            .await
            .unwrap(),
            cluster,
        };
        s.put("/v1/datacenters/dc1", json!({"subnets": ["127.0.0.0/8"]}))
            .await;
        s.put("/v1/datacenters/dc2", json!({"subnets": ["10.2.0.0/16"]}))
            .await;
        s
    }

    /// A typed `PUT` that must succeed.
    pub(crate) async fn put(&self, path: &str, body: Value) {
        let url = self.cluster.url(self.cluster.live_ids()[0]);
        let r = self
            .cluster
            .api()
            .put_json(&url, path, &body)
            .await
            .unwrap();
        assert!(r.is_success(), "PUT {path}: {} {}", r.status, r.text());
    }

    /// Registers instance `id` of `service`.
    pub(crate) async fn instance(&self, service: &str, id: &str, body: Value) {
        self.put(&format!("/v1/services/{service}/instances/{id}"), body)
            .await;
    }

    /// `dig` at the gateway.
    pub(crate) async fn dig(&self, name: &str, rtype: &str, args: &[&str]) -> DigAnswer {
        dig(self.gw.dns(), name, rtype, args).await.unwrap()
    }

    /// Waits until `name` `rtype` answers exactly `want` (sorted rdata).
    pub(crate) async fn wait_rdata(&self, name: &str, rtype: &str, args: &[&str], want: &[&str]) {
        eventually(LONG, async || {
            let a = dig(self.gw.dns(), name, rtype, args).await?;
            anyhow::ensure!(a.rdata(rtype) == want, "{name} {rtype}: {a:?}");
            Ok(())
        })
        .await
        .unwrap();
    }
}

/// An instance body.
pub(crate) fn inst(addr: &str, dc: &str, status: &str) -> Value {
    json!({
        "address": addr, "port": 8080, "datacenter": dc, "node": "host-1",
        "version": "v1", "tags": ["http"], "meta": {"rack": "r1"}, "status": status,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_answers_every_record_type_and_rcode() {
    let s = Setup::start(3).await;
    s.put(
        "/v1/services/web",
        json!({"ttl_secs": 30, "owner": "team-a"}),
    )
    .await;
    s.instance("web", "w1", inst("10.0.1.5", "dc1", "passing"))
        .await;
    s.instance("web", "w1v6", inst("fd00::5", "dc1", "passing"))
        .await;
    s.instance("web", "w2", inst("10.0.2.5", "dc2", "warning"))
        .await;
    s.instance("search.hotel", "s1", inst("10.0.1.9", "dc1", "passing"))
        .await;
    for id in ["d1", "d2"] {
        s.instance("down", id, inst("10.0.1.20", "dc1", "critical"))
            .await;
    }
    s.put("/v1/services/panic", json!({"fail_open_percent": 50}))
        .await;
    for (i, status) in ["critical", "critical", "critical", "passing"]
        .iter()
        .enumerate()
    {
        let addr = format!("10.0.9.{}", i + 1);
        s.instance("panic", &format!("p{i}"), inst(&addr, "dc1", status))
            .await;
    }
    for i in 1..=40 {
        let addr = format!("10.4.0.{i}");
        s.instance("big", &format!("b{i}"), inst(&addr, "dc1", "passing"))
            .await;
    }
    // The last write is visible: everything before it is too.
    eventually(LONG, async || {
        let a = dig(s.gw.dns(), "big.ns.corp", "A", &["+tcp"]).await?;
        anyhow::ensure!(a.rdata("A").len() == 40, "{a:?}");
        Ok(())
    })
    .await
    .unwrap();

    // A from dc1 (by source address): same datacenter first, authoritative, the service TTL.
    let a = s.dig("web.ns.corp", "A", &[]).await;
    assert_eq!(a.status, "NOERROR");
    assert!(a.has_flag("aa") && !a.has_flag("ra"), "{a:?}");
    assert_eq!(a.answer, ["web.ns.corp. 30 IN A 10.0.1.5"]);
    assert!(
        a.edns && a.udp == Some(1232),
        "OPT echoed, size clamped: {a:?}"
    );
    let a = s.dig("web.ns.corp", "A", &["+bufsize=800"]).await;
    assert_eq!(a.udp, Some(800));
    assert_eq!(
        s.dig("web.ns.corp", "AAAA", &[]).await.rdata("AAAA"),
        ["fd00::5"]
    );
    // ECS places the client in dc2; the scope is dc2's prefix (no per-client policy).
    let a = s.dig("web.ns.corp", "A", &["+subnet=10.2.5.0/24"]).await;
    assert_eq!(a.rdata("A"), ["10.0.2.5"]);
    assert_eq!(a.client_subnet.as_deref(), Some("10.2.5.0/24/16"));
    // An ECS outside every datacenter: no preference, scope 0.
    let a = s.dig("web.ns.corp", "A", &["+subnet=192.0.2.0/24"]).await;
    assert_eq!(a.rdata("A"), ["10.0.1.5", "10.0.2.5"]);
    assert_eq!(a.client_subnet.as_deref(), Some("192.0.2.0/24/0"));
    // NAME.DC: that datacenter only, wherever the client is.
    assert_eq!(
        s.dig("web.dc2.ns.corp", "A", &[]).await.rdata("A"),
        ["10.0.2.5"]
    );
    assert_eq!(
        s.dig("search.hotel.ns.corp", "A", &[]).await.rdata("A"),
        ["10.0.1.9"]
    );

    // SRV: priority, weight, port, targets with their addresses in the additional section.
    let a = s.dig("web.ns.corp", "SRV", &[]).await;
    assert_eq!(
        a.rdata("SRV"),
        [
            "1 100 8080 0a000105.addr.ns.corp.",
            "1 100 8080 fd000000000000000000000000000005.addr.ns.corp."
        ]
    );
    let mut extra = a.additional.clone();
    extra.sort();
    assert_eq!(
        extra,
        [
            "0a000105.addr.ns.corp. 30 IN A 10.0.1.5",
            "fd000000000000000000000000000005.addr.ns.corp. 30 IN AAAA fd00::5"
        ]
    );
    let a = s.dig("_http._tcp.web.dc2.ns.corp", "SRV", &[]).await;
    assert_eq!(a.rdata("SRV"), ["1 100 8080 0a000205.addr.ns.corp."]);
    assert_eq!(
        s.dig("0a000205.addr.ns.corp", "A", &[]).await.rdata("A"),
        ["10.0.2.5"]
    );

    // TXT: the definition's owner, each instance's id, version and metadata.
    let txt = s
        .dig("web.ns.corp", "TXT", &[])
        .await
        .rdata("TXT")
        .join(" ");
    for want in [
        "\"owner=team-a\"",
        "\"id=w1\"",
        "\"version=v1\"",
        "\"meta.rack=r1\"",
    ] {
        assert!(txt.contains(want), "{want} in {txt}");
    }

    // The apex.
    let a = s.dig("ns.corp", "SOA", &[]).await;
    assert_eq!(a.rdata("SOA").len(), 1, "{a:?}");
    assert!(a.rdata("SOA")[0].starts_with("ns.corp. hostmaster.ns.corp. "));
    assert_eq!(s.dig("ns.corp", "NS", &[]).await.rdata("NS"), ["ns.corp."]);

    // Negative answers carry the SOA; only an unknown name is NXDOMAIN.
    let negative = |a: &DigAnswer, status: &str| {
        assert_eq!(a.status, status, "{a:?}");
        assert!(a.answer.is_empty() && a.has_flag("aa"), "{a:?}");
        assert_eq!(a.authority.len(), 1, "{a:?}");
        assert!(a.authority[0].contains(" IN SOA "), "{a:?}");
    };
    negative(&s.dig("nope.ns.corp", "A", &[]).await, "NXDOMAIN");
    negative(&s.dig("web.dc9.ns.corp", "A", &[]).await, "NXDOMAIN");
    negative(&s.dig("web.ns.corp", "MX", &[]).await, "NOERROR");
    negative(&s.dig("hotel.ns.corp", "A", &[]).await, "NOERROR");
    // Every instance critical: NODATA, never NXDOMAIN.
    negative(&s.dig("down.ns.corp", "A", &[]).await, "NOERROR");

    // 3 of 4 critical with a 50 % threshold: all 4.
    let a = s.dig("panic.ns.corp", "A", &[]).await;
    assert_eq!(
        a.rdata("A"),
        ["10.0.9.1", "10.0.9.2", "10.0.9.3", "10.0.9.4"]
    );
    assert!(s.gw.metric("dns_fail_open_total").await.unwrap() >= Some(1.0));

    // Outside the zone: REFUSED, not authoritative.
    let a = s.dig("example.com", "A", &[]).await;
    assert_eq!(a.status, "REFUSED");
    assert!(!a.has_flag("aa"));

    // 40 instances: too big for 512 bytes of UDP (TC), whole over TCP.
    let a = s.dig("big.ns.corp", "A", &["+noedns", "+ignore"]).await;
    assert!(a.has_flag("tc"), "{a:?}");
    assert!(a.rdata("A").len() < 40);
    let a = s.dig("big.ns.corp", "SRV", &["+ignore"]).await;
    assert!(
        a.has_flag("tc"),
        "40 SRV with targets exceed 1232 bytes: {a:?}"
    );
    let a = s.dig("big.ns.corp", "SRV", &["+tcp"]).await;
    assert!(!a.has_flag("tc"));
    assert_eq!(a.rdata("SRV").len(), 40);
    assert_eq!(a.additional.len(), 40);

    // The reserved-label rule: `web.dc2` would read as `web` in dc2, and a datacenter named
    // `hotel` would make `search.hotel` ambiguous; both are refused, naming the field.
    let url = s.cluster.url(s.cluster.live_ids()[0]);
    let api = s.cluster.api();
    let r = api
        .put_json(
            &url,
            "/v1/services/web.dc2/instances/x",
            &inst("10.0.0.1", "dc1", "passing"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    let message = |r: &harness::Reply| {
        let body: Value = r.json().unwrap();
        body["message"].as_str().unwrap_or_default().to_owned()
    };
    assert!(
        message(&r).starts_with("name: ends in \"dc2\""),
        "{}",
        r.text()
    );
    let r = api
        .put_json(&url, "/v1/datacenters/hotel", &json!({"subnets": []}))
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("dc: is the last label of the service"),
        "{}",
        r.text()
    );

    let m = s.gw.metrics().await.unwrap();
    for series in [
        "dns_queries_total{qtype=\"A\",rcode=\"NXDOMAIN\"}",
        "dns_queries_total{qtype=\"A\",rcode=\"REFUSED\"}",
        "dns_queries_total{qtype=\"SRV\",rcode=\"NOERROR\"}",
        "dns_query_duration_seconds_bucket",
        "dns_mirror_revision",
        "dns_mirror_staleness_seconds",
    ] {
        assert!(m.contains(series), "{series} in /metrics:\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_fast_path_keeps_case_rotates_and_answers_random_names() {
    let s = Setup::start_with(1, &["--threads", "1"]).await;
    for (id, addr) in [("w1", "10.0.1.5"), ("w2", "10.0.1.6"), ("w3", "10.0.1.7")] {
        s.instance("web", id, inst(addr, "dc1", "passing")).await;
    }
    let all = ["10.0.1.5", "10.0.1.6", "10.0.1.7"];
    s.wait_rdata("web.ns.corp", "A", &[], &all).await;

    // The reply's names follow the question's case (resolvers that randomise it check).
    let a = s.dig("WeB.nS.CoRp", "A", &[]).await;
    assert!(
        a.answer.iter().all(|r| r.starts_with("WeB.nS.CoRp. ")),
        "{a:?}"
    );
    assert!(a.flags.iter().any(|f| f == "aa"), "{a:?}");

    // Cached answers still rotate: the first address is not always the same one.
    let queries = vec!["web.ns.corp A".to_string(); 30];
    let firsts: std::collections::HashSet<String> = dig_batch(s.gw.dns(), &queries)
        .await
        .unwrap()
        .iter()
        .map(|a| a.answer.first().cloned().unwrap_or_default())
        .collect();
    assert!(firsts.len() > 1, "no rotation: {firsts:?}");

    // Random unknown names (never cached) are NXDOMAIN with the SOA, and the hits still answer.
    let names: Vec<String> = (0..300u64)
        .map(|i| {
            format!(
                "nx{:09}.ns.corp A",
                i.wrapping_mul(0x9e37_79b9) % 1_000_000_000
            )
        })
        .collect();
    for a in dig_batch(s.gw.dns(), &names).await.unwrap() {
        assert_eq!(a.status, "NXDOMAIN", "{a:?}");
        assert!(a.authority.iter().any(|r| r.contains(" SOA ")), "{a:?}");
    }
    assert_eq!(s.dig("web.ns.corp", "A", &[]).await.rdata("A"), all);
    let nx =
        s.gw.metric("dns_queries_total{qtype=\"A\",rcode=\"NXDOMAIN\"}")
            .await
            .unwrap();
    assert!(nx >= Some(300.0), "{nx:?}");
}
