//! Routing policy through `dns-gateway`, with the real `dig`, on a 3-node store: a 10 %/90 %
//! gray split measured over 2,000 client subnets (ECS) with every subnet keeping its group; a
//! forced shift that applies within 1 s of its PUT and ends at its expiry; a critical instance
//! gone from the answer within 1 s of being marked.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::{dig, dig_batch, eventually};
use serde_json::json;

use crate::gateway::{LONG, Setup, inst};

/// How soon after its acknowledgement a change must show in the gateway's answers.
const PROPAGATION: Duration = Duration::from_secs(1);

/// Polls `name A` until `done` holds for its sorted addresses; returns the time from `since`.
async fn time_until(
    s: &Setup,
    name: &str,
    since: Instant,
    done: impl Fn(&[String]) -> bool,
) -> Duration {
    eventually(LONG, async || {
        let a = dig(s.gw.dns(), name, "A", &[]).await?;
        anyhow::ensure!(done(&a.rdata("A")), "{name}: {:?}", a.rdata("A"));
        Ok(since.elapsed())
    })
    .await
    .unwrap()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_applies_gray_split_shift_and_health_quickly() {
    let s = Setup::start(3).await;

    // Gray: v1 90, v2 10, all in dc1; the clients are 2,000 ECS /24s outside every datacenter.
    for (id, addr, version) in [
        ("g1", "10.5.0.1", "v1"),
        ("g2", "10.5.0.2", "v1"),
        ("g3", "10.5.0.3", "v2"),
    ] {
        let mut body = inst(addr, "dc1", "passing");
        body["version"] = json!(version);
        s.instance("gray", id, body).await;
    }
    s.put(
        "/v1/traffic/gray",
        json!({"groups": [{"version": "v1", "weight": 90}, {"version": "v2", "weight": 10}]}),
    )
    .await;
    // The policy is in force once the answer depends on the subnet (ECS scope = its /24).
    eventually(LONG, async || {
        let a = dig(s.gw.dns(), "gray.ns.corp", "A", &["+subnet=10.99.0.0/24"]).await?;
        anyhow::ensure!(
            a.client_subnet.as_deref() == Some("10.99.0.0/24/24"),
            "{a:?}"
        );
        Ok(())
    })
    .await
    .unwrap();
    let subnets: Vec<String> = (0..2000u32)
        .map(|i| format!("10.{}.{}.0/24", 100 + i / 250, i % 250))
        .collect();
    let queries: Vec<String> = subnets
        .iter()
        .chain(subnets.iter())
        .map(|net| format!("gray.ns.corp A +subnet={net}"))
        .collect();
    let answers = dig_batch(s.gw.dns(), &queries).await.unwrap();
    let canary: Vec<bool> = answers
        .iter()
        .map(|a| {
            let ips = a.rdata("A");
            assert!(!ips.is_empty(), "{a:?}");
            ips == ["10.5.0.3"]
        })
        .collect();
    let (first, second) = canary.split_at(subnets.len());
    let share = first.iter().filter(|c| **c).count() as f64 / subnets.len() as f64;
    assert!((0.08..=0.12).contains(&share), "v2 share {share}");
    let moved = first.iter().zip(second).filter(|(a, b)| a != b).count();
    assert_eq!(moved, 0, "subnets that changed group between two asks");
    // The answer depends on the subnet, so the ECS scope is the client's own /24.
    assert_eq!(
        answers[0].client_subnet.as_deref(),
        Some("10.100.0.0/24/24")
    );

    // Forced shift: all of dc1 to dc2 for a few seconds.
    s.instance("shift", "a", inst("10.6.1.1", "dc1", "passing"))
        .await;
    s.instance("shift", "b", inst("10.6.2.1", "dc2", "passing"))
        .await;
    s.wait_rdata("shift.ns.corp", "A", &[], &["10.6.1.1"]).await;
    let expires_at = unix_ms() + 4_000;
    let put = Instant::now();
    s.put(
        "/v1/traffic/shift",
        json!({"shifts": [{"from_dc": "dc1", "to_dc": "dc2", "percent": 100}], "expires_at": expires_at}),
    )
    .await;
    let acked = Instant::now();
    let applied = time_until(&s, "shift.ns.corp", put, |ips| ips == ["10.6.2.1"]).await;
    eprintln!(
        "shift applied {applied:?} after the PUT (ack after {:?})",
        acked - put
    );
    assert!(
        applied < PROPAGATION + (acked - put),
        "shift applied after {applied:?}"
    );
    let back = time_until(&s, "shift.ns.corp", put, |ips| ips == ["10.6.1.1"]).await;
    let back_at = unix_ms();
    assert!(
        back_at >= expires_at,
        "the shift ended {} ms early",
        expires_at - back_at
    );
    assert!(
        back_at <= expires_at + PROPAGATION.as_millis() as u64,
        "the shift outlived its expiry by {} ms ({back:?} after the PUT)",
        back_at - expires_at
    );

    // Health: a critical instance leaves the answer.
    s.instance("crit", "c1", inst("10.7.0.1", "dc1", "passing"))
        .await;
    s.instance("crit", "c2", inst("10.7.0.2", "dc1", "passing"))
        .await;
    s.wait_rdata("crit.ns.corp", "A", &[], &["10.7.0.1", "10.7.0.2"])
        .await;
    let put = Instant::now();
    s.instance("crit", "c1", inst("10.7.0.1", "dc1", "critical"))
        .await;
    let acked = put.elapsed();
    let gone = time_until(&s, "crit.ns.corp", put, |ips| ips == ["10.7.0.2"]).await;
    eprintln!("critical instance gone {gone:?} after the PUT (ack after {acked:?})");
    assert!(
        gone < PROPAGATION + acked,
        "critical instance still answered after {gone:?}"
    );
}
