//! Leases against a real 3-node cluster: expiry after keep-alives stop, survival of a
//! leader kill while kept alive, and revoke deleting every bound key in one revision.

use std::time::Duration;

use harness::{Cluster, eventually};
use pyxis_client::api::{ErrorCode, WatchMessage};
use pyxis_client::{Client, Error};
use reqwest::Method;
use tokio::time::Instant;

fn client(c: &Cluster) -> Client {
    Client::new(c.endpoints().split(',').map(str::to_owned).collect()).unwrap()
}

async fn put_leased(c: &Cluster, node: u64, key: &str, lease: u64) {
    let url = format!("{}/v1/kv{key}?lease={lease}", c.url(node));
    let reply = c
        .api()
        .request(
            Method::PUT,
            &url,
            Some(bytes::Bytes::from_static(b"v")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// Whether `key` is in the committed state, read linearizably through `node`.
async fn exists(c: &Cluster, node: u64, key: &str) -> bool {
    let reply = c.api().get(&c.url(node), key).await.unwrap();
    assert!(
        matches!(reply.status, 200 | 404),
        "read through n{node}: {} {}",
        reply.status,
        reply.text()
    );
    reply.status == 200
}

/// Whether `key` is in `node`'s applied state (a serializable read, which may lag the
/// leader but needs no quorum, so it answers during an election).
async fn exists_locally(c: &Cluster, node: u64, key: &str) -> bool {
    c.api()
        .get_serializable(&c.url(node), key)
        .await
        .unwrap()
        .status
        == 200
}

/// A key on a 2 s lease goes 2-3 s after the last keep-alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_vanishes_two_to_three_seconds_after_keepalives_stop() {
    let c = Cluster::start(3).await.unwrap();
    let cl = client(&c);
    let lease = cl.lease_grant(2000).await.unwrap();
    assert_eq!(lease.ttl_ms, 2000);
    put_leased(&c, 2, "/lease/a", lease.id).await;
    // Kept alive for longer than the TTL: the key stays.
    let mut last_ack = Instant::now();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        cl.lease_keepalive(lease.id).await.unwrap();
        last_ack = Instant::now();
        assert!(
            exists(&c, 1, "/lease/a").await,
            "key expired while kept alive"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let gone_after = eventually(Duration::from_secs(10), async || {
        anyhow::ensure!(!exists(&c, 3, "/lease/a").await, "still there");
        Ok(last_ack.elapsed())
    })
    .await
    .unwrap();
    assert!(
        gone_after >= Duration::from_millis(2000) && gone_after <= Duration::from_millis(3000),
        "key vanished {gone_after:?} after the last keep-alive (want 2-3 s)"
    );
    let err = cl.lease_keepalive(lease.id).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
}

/// With keep-alives running, killing the leader expires nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_alive_lease_survives_a_leader_kill() {
    let mut c = Cluster::start(3).await.unwrap();
    let cl = client(&c);
    let lease = cl.lease_grant(2000).await.unwrap();
    let old = c.leader().await.unwrap();
    let survivor = c.followers(old)[0];
    put_leased(&c, survivor, "/lease/kept", lease.id).await;
    // The put is acknowledged once committed; the survivor may apply it a moment later.
    eventually(Duration::from_secs(5), async || {
        anyhow::ensure!(
            exists_locally(&c, survivor, "/lease/kept").await,
            "not applied"
        );
        Ok(())
    })
    .await
    .unwrap();
    let mut keeper = cl.keep_alive(lease.id, lease.ttl_ms);
    c.kill9(old).unwrap();
    let new = c.leader_within(Duration::from_secs(10)).await.unwrap();
    assert_ne!(new, old);
    // Watch the key for well over a TTL after the election.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        assert!(
            exists_locally(&c, survivor, "/lease/kept").await,
            "lease expired across the election"
        );
        assert!(!keeper.is_lost(), "keep-alive reported the lease lost");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Stopping the keep-alive now lets it expire on the new leader.
    drop(keeper);
    eventually(Duration::from_secs(10), async || {
        anyhow::ensure!(
            !exists_locally(&c, survivor, "/lease/kept").await,
            "still there"
        );
        Ok(())
    })
    .await
    .unwrap();
    keeper = cl.keep_alive(lease.id, lease.ttl_ms);
    assert_eq!(keeper.lost().await, pyxis_client::LeaseLost::Gone);
}

/// Revoke deletes every bound key at one revision, as the watch shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_deletes_every_bound_key_in_one_revision() {
    let c = Cluster::start(3).await.unwrap();
    let cl = client(&c);
    let lease = cl.lease_grant(60_000).await.unwrap();
    for k in ["/rv/a", "/rv/b", "/rv/c"] {
        put_leased(&c, 1, k, lease.id).await;
    }
    cl.put("/rv/free", "x").await.unwrap();
    let info = cl.lease_info(lease.id).await.unwrap();
    assert_eq!(info.keys, vec!["/rv/a", "/rv/b", "/rv/c"]);
    let start = cl.range("/rv/").await.unwrap().revision + 1;
    let mut watch = cl.watch("/rv/", true, Some(start)).unwrap();
    let revoked = cl.lease_revoke(lease.id).await.unwrap();
    assert_eq!(revoked.deleted, 3);
    let mut deletes = Vec::new();
    while deletes.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .unwrap()
            .unwrap()
        {
            WatchMessage::Delete { key, mod_rev } => deletes.push((key, mod_rev)),
            WatchMessage::Progress { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        deletes.iter().all(|(_, r)| *r == revoked.revision),
        "{deletes:?} vs {revoked:?}"
    );
    let left = cl.range("/rv/").await.unwrap();
    assert_eq!(left.entries.len(), 1);
    assert_eq!(left.revision, revoked.revision);
    match cl.lease_info(lease.id).await.unwrap_err() {
        Error::Api { status: 404, .. } => {}
        other => panic!("expected 404, got {other}"),
    }
}
