//! The agent's local DNS forwarding names outside its zone: the upstream is a second
//! `dns-gateway` serving zone `other.corp` on its own port, whose `/metrics` counts the
//! questions it gets. The agent answers `x.other.corp` from it, serves the repeat from its
//! cache (the upstream's count does not move, and the answer outlives the upstream within
//! its TTL), passes NXDOMAIN and NODATA on with the upstream's SOA, and says SERVFAIL when
//! no upstream answers.

use harness::{Gateway, dig, eventually};
use serde_json::json;

use super::dns::DnsRig;
use crate::gateway::{LONG, inst};

/// The upstream's count of `qtype` questions answered with `rcode`.
async fn upstream_count(gw: &Gateway, qtype: &str, rcode: &str) -> f64 {
    let series = format!("dns_queries_total{{qtype=\"{qtype}\",rcode=\"{rcode}\"}}");
    gw.metric(&series).await.unwrap().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_dns_forwards_other_names_and_serves_repeats_from_its_cache() {
    // The store first, then the upstream on it, then an agent pointed at the upstream.
    let store = harness::Cluster::single(&[]).await.unwrap();
    let mut upstream = Gateway::start(
        &store.endpoints(),
        &store.dir().join("upstream-logs"),
        &["--zone", "other.corp", "--ttl", "30s"],
    )
    .await
    .unwrap();
    let up = upstream.dns();
    let api = store.api();
    let url = store.url(store.live_ids()[0]);
    for (path, body) in [
        ("/v1/services/x", json!({"ttl_secs": 60})),
        (
            "/v1/services/x/instances/x1",
            inst("10.9.0.1", "dc1", "passing"),
        ),
    ] {
        let r = api.put_json(&url, path, &body).await.unwrap();
        assert!(r.is_success(), "{path}: {}", r.text());
    }
    eventually(LONG, async || {
        let a = dig(up, "x.other.corp", "A", &[]).await?;
        anyhow::ensure!(a.rdata("A") == ["10.9.0.1"], "{a:?}");
        Ok(())
    })
    .await
    .unwrap();

    let s = DnsRig::start(1, &format!("upstreams = [\"{up}\"]")).await;
    let a = s.dig("x.other.corp", "A", &[]).await;
    assert_eq!(a.status, "NOERROR", "{a:?}");
    assert_eq!(a.rdata("A"), ["10.9.0.1"]);
    assert!(
        !a.has_flag("aa") && a.has_flag("ra"),
        "a forwarded answer: {a:?}"
    );
    // The repeat comes from the agent's cache: the upstream is not asked again.
    let asked = upstream_count(&upstream, "A", "NOERROR").await;
    for _ in 0..3 {
        let a = s.dig("x.other.corp", "A", &[]).await;
        assert_eq!(a.rdata("A"), ["10.9.0.1"], "{a:?}");
        let ttl: u32 = a.answer[0].split(' ').nth(1).unwrap().parse().unwrap();
        assert!(ttl <= 60 && ttl > 30, "the TTL counts down from 60: {a:?}");
    }
    assert_eq!(upstream_count(&upstream, "A", "NOERROR").await, asked);
    let dns = s.dns_status().await;
    assert!(dns["cache_hits"].as_u64() >= Some(3), "{dns}");
    assert!(dns["forwarded"].as_u64() >= Some(4), "{dns}");
    let hits = s.agent.metric("dns_cache_hits_total").await.unwrap();
    assert!(hits >= Some(3.0), "{hits:?}");

    // NXDOMAIN and NODATA come through with the upstream's SOA.
    let a = s.dig("nope.other.corp", "A", &[]).await;
    assert_eq!(a.status, "NXDOMAIN", "{a:?}");
    assert!(
        a.authority.len() == 1 && a.authority[0].starts_with("other.corp. "),
        "the upstream's SOA: {a:?}"
    );
    assert!(a.authority[0].contains(" SOA "), "{a:?}");
    let a = s.dig("x.other.corp", "MX", &[]).await;
    assert_eq!(a.status, "NOERROR", "{a:?}");
    assert!(a.answer.is_empty(), "{a:?}");
    assert!(a.authority.iter().any(|r| r.contains(" SOA ")), "{a:?}");
    let nx = upstream_count(&upstream, "A", "NXDOMAIN").await;
    let a = s.dig("nope.other.corp", "A", &[]).await;
    assert_eq!(a.status, "NXDOMAIN", "{a:?}");
    assert_eq!(
        upstream_count(&upstream, "A", "NXDOMAIN").await,
        nx,
        "the negative answer is cached for the SOA's TTL"
    );
    // The zone's own names are still the agent's.
    s.put(
        "/v1/services/web/instances/w2",
        inst("10.0.2.5", "dc2", "passing"),
    )
    .await;
    s.wait_rdata("web.ns.corp", "A", &["10.0.2.5"]).await;

    // The upstream gone: the cached answer stands within its TTL; a new name is SERVFAIL.
    upstream.proc().kill9().unwrap();
    let a = s.dig("x.other.corp", "A", &[]).await;
    assert_eq!(a.rdata("A"), ["10.9.0.1"], "{a:?}");
    let a = s.dig("y.other.corp", "A", &["+time=8"]).await;
    assert_eq!(a.status, "SERVFAIL", "{a:?}");
    let m = s.agent.metrics().await.unwrap();
    assert!(m.contains("dns_forwarded_total{rcode=\"SERVFAIL\"}"), "{m}");
}
