//! The agent's local DNS against a real store, asked with the real `dig`: the zone's record
//! types and rcodes as the gateway gives them, answered for the agent's own datacenter first,
//! `NAME.DC`, a 40-instance answer truncated over UDP and whole over TCP, REFUSED outside the
//! zone without upstreams, the host's gray group the same as the gateway gives the host (and
//! each client subnet's, by ECS),
//! `dns_allow`, answers from last known data with the whole store killed, and 10,000 malformed
//! packets.
//! Forwarding to upstreams is in `agent::dns_forward`.

use std::time::Duration;

use harness::{Agent, Cluster, DigAnswer, Gateway, dig, eventually};
use serde_json::{Value, json};

use crate::gateway::{LONG, inst};

/// A store with datacenters `dc1` (127.0.0.0/8, where the gateway would place `dig`) and
/// `dc2`, and an agent in `dc2` running a local DNS.
pub(crate) struct DnsRig {
    pub(crate) cluster: Cluster,
    pub(crate) agent: Agent,
    _dir: tempfile::TempDir,
}

impl DnsRig {
    /// Starts `nodes` store nodes and an agent in `dc2` whose config ends with `extra`.
    pub(crate) async fn start(nodes: u64, extra: &str) -> DnsRig {
        let cluster = if nodes == 1 {
            Cluster::single(&[]).await.unwrap()
        } else {
            Cluster::start(nodes).await.unwrap()
        };
        let dir = tempfile::Builder::new()
            .prefix("ns-agent-dns-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("services.d")).unwrap();
        let store: Vec<String> = cluster
            .endpoints()
            .split(',')
            .map(|e| format!("{e:?}"))
            .collect();
        let config = format!(
            "node = \"host-1\"\ndatacenter = \"dc2\"\nstore = [{}]\nhttp = \"127.0.0.1:0\"\n\
             dns = \"127.0.0.1:0\"\n{extra}\n",
            store.join(", ")
        );
        let agent = Agent::start(dir.path(), &config, &[]).await.unwrap();
        let rig = DnsRig {
            cluster,
            agent,
            _dir: dir,
        };
        rig.put("/v1/datacenters/dc1", json!({"subnets": ["127.0.0.0/8"]}))
            .await;
        rig.put("/v1/datacenters/dc2", json!({"subnets": ["10.2.0.0/16"]}))
            .await;
        rig
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

    /// `dig` at the agent.
    pub(crate) async fn dig(&self, name: &str, rtype: &str, args: &[&str]) -> DigAnswer {
        dig(self.agent.dns().unwrap(), name, rtype, args)
            .await
            .unwrap()
    }

    /// Waits until `name` `rtype` answers exactly `want` (sorted rdata) at the agent.
    pub(crate) async fn wait_rdata(&self, name: &str, rtype: &str, want: &[&str]) {
        let dns = self.agent.dns().unwrap();
        eventually(LONG, async || {
            let a = dig(dns, name, rtype, &[]).await?;
            anyhow::ensure!(a.rdata(rtype) == want, "{name} {rtype}: {a:?}");
            Ok(())
        })
        .await
        .unwrap();
    }

    /// The `dns` object of the agent's status.
    pub(crate) async fn dns_status(&self) -> Value {
        self.agent.status().await.unwrap()["dns"].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_dns_answers_the_zone_for_its_own_datacenter() {
    let s = DnsRig::start(3, "").await;
    s.put(
        "/v1/services/web",
        json!({"ttl_secs": 30, "owner": "team-a"}),
    )
    .await;
    s.put(
        "/v1/services/web/instances/w1",
        inst("10.0.1.5", "dc1", "passing"),
    )
    .await;
    s.put(
        "/v1/services/web/instances/w2",
        inst("10.0.2.5", "dc2", "passing"),
    )
    .await;
    s.put(
        "/v1/services/web/instances/w2v6",
        inst("fd00::25", "dc2", "warning"),
    )
    .await;
    for id in ["d1", "d2"] {
        s.put(
            &format!("/v1/services/down/instances/{id}"),
            inst("10.0.2.20", "dc2", "critical"),
        )
        .await;
    }
    for i in 1..=40 {
        s.put(
            &format!("/v1/services/big/instances/b{i}"),
            inst(&format!("10.4.0.{i}"), "dc2", "passing"),
        )
        .await;
    }
    // The last write is visible: everything before it is too.
    let dns = s.agent.dns().unwrap();
    eventually(LONG, async || {
        let a = dig(dns, "big.ns.corp", "A", &["+tcp"]).await?;
        anyhow::ensure!(a.rdata("A").len() == 40, "{a:?}");
        Ok(())
    })
    .await
    .unwrap();
    s.wait_rdata("web.ns.corp", "AAAA", &["fd00::25"]).await;

    // A: the agent's datacenter (dc2) first, although the gateway would place 127.0.0.1 in
    // dc1; authoritative, the service TTL, the OPT echoed with the clamped size.
    let a = s.dig("web.ns.corp", "A", &[]).await;
    assert_eq!(a.status, "NOERROR");
    assert!(a.has_flag("aa"), "{a:?}");
    assert_eq!(a.answer, ["web.ns.corp. 30 IN A 10.0.2.5"]);
    assert!(a.edns && a.udp == Some(1232), "{a:?}");
    assert!(!a.has_flag("ra"), "no upstreams, no recursion: {a:?}");
    // The same over TCP.
    let a = s.dig("web.ns.corp", "A", &["+tcp"]).await;
    assert_eq!(a.rdata("A"), ["10.0.2.5"]);
    // NAME.DC: that datacenter only, wherever the agent is.
    let a = s.dig("web.dc1.ns.corp", "A", &[]).await;
    assert_eq!(a.rdata("A"), ["10.0.1.5"]);
    // SRV: priority 1 in the agent's datacenter, the target's address in additional.
    let a = s.dig("web.ns.corp", "SRV", &[]).await;
    assert_eq!(a.status, "NOERROR");
    let srv = a.rdata("SRV");
    assert_eq!(srv.len(), 2, "{a:?}");
    assert!(
        srv.iter()
            .all(|r| r.starts_with("1 ") && r.contains(" 8080 ")),
        "{a:?}"
    );
    let extra = a.additional.join("\n");
    assert!(
        extra.contains("10.0.2.5") && extra.contains("fd00::25"),
        "{a:?}"
    );
    let a = s.dig("_http._tcp.web.ns.corp", "SRV", &[]).await;
    assert_eq!(a.rdata("SRV").len(), 2, "{a:?}");
    // TXT: the definition and the instances.
    let a = s.dig("web.ns.corp", "TXT", &[]).await;
    assert!(a.answer.iter().any(|r| r.contains("owner=team-a")), "{a:?}");
    // SOA and NS at the apex.
    let a = s.dig("ns.corp", "SOA", &[]).await;
    assert_eq!(a.rdata("SOA").len(), 1, "{a:?}");
    let a = s.dig("ns.corp", "NS", &[]).await;
    assert_eq!(a.rdata("NS").len(), 1, "{a:?}");
    // NXDOMAIN and NODATA carry the SOA; all-critical is NODATA, never NXDOMAIN.
    for (name, rtype, status) in [
        ("nope.ns.corp", "A", "NXDOMAIN"),
        ("web.ns.corp", "MX", "NOERROR"),
        ("down.ns.corp", "A", "NOERROR"),
    ] {
        let a = s.dig(name, rtype, &[]).await;
        assert_eq!(a.status, status, "{name} {rtype}: {a:?}");
        assert!(a.answer.is_empty(), "{name} {rtype}: {a:?}");
        assert!(a.has_flag("aa"), "{a:?}");
        assert!(
            a.authority.len() == 1 && a.authority[0].contains(" SOA "),
            "{name} {rtype}: {a:?}"
        );
    }
    // 40 instances: truncated over UDP (TC), whole over TCP, as at the gateway.
    let a = s.dig("big.ns.corp", "A", &["+noedns", "+ignore"]).await;
    assert!(a.has_flag("tc") && a.rdata("A").len() < 40, "{a:?}");
    let a = s.dig("big.ns.corp", "SRV", &["+ignore"]).await;
    assert!(
        a.has_flag("tc"),
        "40 SRV with targets exceed 1232 bytes: {a:?}"
    );
    let a = s.dig("big.ns.corp", "SRV", &["+tcp"]).await;
    assert!(!a.has_flag("tc"), "{a:?}");
    assert_eq!(a.rdata("SRV").len(), 40);
    assert_eq!(a.additional.len(), 40);
    // Outside the zone, without upstreams: REFUSED.
    let a = s.dig("example.org", "A", &[]).await;
    assert_eq!(a.status, "REFUSED", "{a:?}");
    assert!(!a.has_flag("aa"), "{a:?}");

    let dns = s.dns_status().await;
    assert_eq!(dns["listen"], s.agent.dns().unwrap().to_string(), "{dns}");
    assert!(dns["queries"].as_u64() >= Some(17), "{dns}");
    assert!(dns["refused"].as_u64() >= Some(1), "{dns}");
    assert_eq!(dns["forwarded"], 0, "{dns}");
    assert!(dns["mirror_revision"].as_u64() > Some(0), "{dns}");
    let m = s.agent.metrics().await.unwrap();
    assert!(
        m.contains("dns_queries_total{qtype=\"A\",rcode=\"NXDOMAIN\"}"),
        "{m}"
    );
}

/// A one-node store with an agent and a gateway, and `count` services `PREFIXi`, each split
/// 50/50 between a v1 instance `10.NET.i.1` and a v2 instance `10.NET.i.2`, all in dc1.
async fn gray_rig(prefix: &str, count: usize, net: u8) -> (DnsRig, Gateway, Vec<String>) {
    let s = DnsRig::start(1, "").await;
    let gw = Gateway::start(
        &s.cluster.endpoints(),
        &s.cluster.dir().join("gw-logs"),
        &[],
    )
    .await
    .unwrap();
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        for (id, version, host) in [("a", "v1", 1), ("b", "v2", 2)] {
            let mut body = inst(&format!("10.{net}.{i}.{host}"), "dc1", "passing");
            body["version"] = json!(version);
            s.put(&format!("/v1/services/{name}/instances/{id}"), body)
                .await;
        }
        s.put(
            &format!("/v1/traffic/{name}"),
            json!({"groups": [{"version": "v1", "weight": 50}, {"version": "v2", "weight": 50}]}),
        )
        .await;
    }
    (s, gw, names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_dns_gives_the_host_the_gray_group_the_gateway_gives_it() {
    // 16 services split 50/50 between v1 and v2 (the group hash is salted by the service
    // name, so the host lands in v1 for some and v2 for others), every instance in dc1.
    let (s, gw, names) = gray_rig("gray", 16, 6).await;
    let agent = s.agent.dns().unwrap();
    // In force once every answer is one group's single instance, at both servers.
    let answers = eventually(LONG, async || {
        let mut out = Vec::new();
        for name in &names {
            let q = format!("{name}.ns.corp");
            let at_agent = dig(agent, &q, "A", &[]).await?.rdata("A");
            let at_gateway = dig(gw.dns(), &q, "A", &[]).await?.rdata("A");
            anyhow::ensure!(
                at_agent.len() == 1 && at_gateway.len() == 1,
                "{q}: {at_agent:?} {at_gateway:?}"
            );
            out.push((at_agent, at_gateway));
        }
        Ok(out)
    })
    .await
    .unwrap();
    for ((at_agent, at_gateway), name) in answers.iter().zip(&names) {
        assert_eq!(
            at_agent, at_gateway,
            "{name}: the agent and the gateway disagree"
        );
    }
    let v2 = answers.iter().filter(|(a, _)| a[0].ends_with(".2")).count();
    assert!(v2 > 0 && v2 < names.len(), "both groups occur: {answers:?}");
}

/// A query carrying an EDNS Client Subnet is keyed by that subnet at the agent as at the
/// gateway: each client subnet gets the gateway's gray group, and different subnets get
/// different groups (the host's own key is not forced on them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_dns_gives_each_client_subnet_the_gray_group_the_gateway_gives_it() {
    let (s, gw, names) = gray_rig("sub", 4, 7).await;
    let subnets: Vec<String> = (0..8).map(|i| format!("+subnet=10.9.{i}.0/24")).collect();
    let agent = s.agent.dns().unwrap();
    let answers = eventually(LONG, async || {
        let mut out = Vec::new();
        for name in &names {
            let q = format!("{name}.ns.corp");
            for subnet in &subnets {
                let at_agent = dig(agent, &q, "A", &[subnet]).await?.rdata("A");
                let at_gateway = dig(gw.dns(), &q, "A", &[subnet]).await?.rdata("A");
                anyhow::ensure!(
                    at_agent.len() == 1 && at_gateway.len() == 1,
                    "{q} {subnet}: {at_agent:?} {at_gateway:?}"
                );
                out.push((format!("{q} {subnet}"), at_agent, at_gateway));
            }
        }
        Ok(out)
    })
    .await
    .unwrap();
    for (query, at_agent, at_gateway) in &answers {
        assert_eq!(
            at_agent, at_gateway,
            "{query}: the agent and the gateway disagree"
        );
    }
    for name in &names {
        let groups: std::collections::BTreeSet<&String> = answers
            .iter()
            .filter(|(q, ..)| q.starts_with(&format!("{name}.")))
            .map(|(_, a, _)| &a[0])
            .collect();
        assert_eq!(
            groups.len(),
            2,
            "{name}: one group for every subnet: {answers:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_dns_answers_only_clients_in_dns_allow() {
    let s = DnsRig::start(1, "dns_allow = [\"127.0.0.2/32\"]").await;
    s.put(
        "/v1/services/web/instances/w2",
        inst("10.0.2.5", "dc2", "passing"),
    )
    .await;
    let dns = s.agent.dns().unwrap();
    eventually(LONG, async || {
        let a = dig(dns, "web.ns.corp", "A", &["-b", "127.0.0.2"]).await?;
        anyhow::ensure!(a.rdata("A") == ["10.0.2.5"], "{a:?}");
        Ok(())
    })
    .await
    .unwrap();
    let a = s.dig("web.ns.corp", "A", &["-b", "127.0.0.1"]).await;
    assert_eq!(a.status, "REFUSED", "{a:?}");
    assert!(a.answer.is_empty(), "{a:?}");
    let a = s
        .dig("web.ns.corp", "A", &["-b", "127.0.0.1", "+tcp"])
        .await;
    assert_eq!(a.status, "REFUSED", "over TCP too: {a:?}");
    let status = s.dns_status().await;
    assert_eq!(status["refused_acl"], 2, "{status}");
    let counted = s.agent.metric("dns_refused_acl_total").await.unwrap();
    assert_eq!(counted, Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_dns_answers_from_last_data_with_the_store_down() {
    let mut s = DnsRig::start(3, "").await;
    s.put(
        "/v1/services/web/instances/w2",
        inst("10.0.2.5", "dc2", "passing"),
    )
    .await;
    s.wait_rdata("web.ns.corp", "A", &["10.0.2.5"]).await;
    for id in s.cluster.ids() {
        s.cluster.kill9(id).unwrap();
    }
    // Still answering, and saying how long since the store last answered: more than the
    // watch's 5 s progress interval means the store is gone, not quiet.
    let dns = s.agent.dns().unwrap();
    eventually(LONG, async || {
        let a = dig(dns, "web.ns.corp", "A", &[]).await?;
        anyhow::ensure!(a.rdata("A") == ["10.0.2.5"], "{a:?}");
        let status = s.agent.status().await?;
        let stale = status["dns"]["staleness_seconds"].as_f64();
        anyhow::ensure!(stale.is_some_and(|v| v > 8.0), "{status}");
        let metric = s.agent.metric("dns_mirror_staleness_seconds").await?;
        anyhow::ensure!(metric.is_some_and(|v| v > 8.0), "metric {metric:?}");
        Ok(())
    })
    .await
    .unwrap();
    // Staleness keeps growing while the store stays away.
    let first = s.dns_status().await["staleness_seconds"].as_f64().unwrap();
    eventually(LONG, async || {
        let now = s.dns_status().await["staleness_seconds"].as_f64();
        anyhow::ensure!(now.is_some_and(|v| v > first + 1.0), "{now:?} vs {first}");
        Ok(())
    })
    .await
    .unwrap();
    assert!(s.agent.proc().is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_dns_survives_malformed_packets() {
    let mut s = DnsRig::start(1, "").await;
    s.put(
        "/v1/services/web/instances/w2",
        inst("10.0.2.5", "dc2", "passing"),
    )
    .await;
    s.wait_rdata("web.ns.corp", "A", &["10.0.2.5"]).await;
    let dns = s.agent.dns().unwrap();
    let (_, formerr) = crate::gateway_faults::flood(dns, 21).await;
    assert!(
        formerr > 0,
        "malformed questions with a good header get FORMERR"
    );
    let a = dig(dns, "web.ns.corp", "A", &["+time=2"]).await.unwrap();
    assert_eq!(a.rdata("A"), ["10.0.2.5"]);
    let a = dig(dns, "web.ns.corp", "A", &["+tcp", "+time=2"])
        .await
        .unwrap();
    assert_eq!(a.rdata("A"), ["10.0.2.5"]);
    // The rest of the agent is unharmed too.
    let status = tokio::time::timeout(Duration::from_secs(10), s.agent.status())
        .await
        .unwrap()
        .unwrap();
    assert!(status["dns"]["queries"].as_u64() > Some(0), "{status}");
    let running = s.agent.proc().is_running();
    assert!(running, "{}", s.agent.proc().log_tail(40));
}
