//! Log purging with a member down (by the entry rule and by the byte rule of
//! `snapshot_policy`): the leader's log stays bounded while a follower is dead
//! or frozen, and the follower, back, catches up by installing the leader's snapshot.
//!
//! openraft counts every entry after a member's last matched one as still being sent to
//! it, and does not purge entries that are being sent, until a failed send to that member
//! is reported; these tests show that a member that is down does not hold the leader's log
//! (and memory) that way for more than a few failed calls.

use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use harness::{Api, Cluster, eventually};
use pyxis_client::api::NodeId;

use crate::store_faults::proc_mib;

/// Generous deadline for catch-up on a loaded 2-core machine running debug builds.
const CATCH_UP: Duration = Duration::from_secs(120);

/// The value of the unlabelled gauge `name` on node `url`'s `/metrics` page.
async fn gauge(api: &Api, url: &str, name: &str) -> anyhow::Result<f64> {
    let page = api.get_path(url, "/metrics").await?.ok()?.text();
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no gauge {name} on {url}/metrics"))
}

/// Waits until node `id` reports a snapshot and a log purged past `at_least`.
async fn wait_purged(c: &Cluster, id: NodeId, at_least: u64) {
    let api = c.api();
    let url = c.url(id);
    eventually(CATCH_UP, async || {
        let status = api.status(&url).await?;
        let purged = gauge(api, &url, "pyxis_raft_purged_index").await? as u64;
        anyhow::ensure!(
            purged >= at_least,
            "node {id} purged its log up to {purged}, want {at_least} or more: {status:?}"
        );
        Ok(())
    })
    .await
    .unwrap();
}

/// The returning node `id` holds exactly `want` under `/snap/`-like `prefix`, and got it
/// through a snapshot install (its own log says so).
async fn wait_caught_up_by_snapshot(c: &Cluster, id: NodeId, prefix: &str, leader: NodeId) {
    let api = c.api();
    let want = api.range_ok(&c.url(leader), prefix).await.unwrap();
    eventually(CATCH_UP, async || {
        let got = api.range_serializable_ok(&c.url(id), prefix).await?;
        anyhow::ensure!(
            got.entries == want.entries,
            "node {id} has {} of {} keys (revision {} vs {})",
            got.entries.len(),
            want.entries.len(),
            got.revision,
            want.revision
        );
        Ok(())
    })
    .await
    .unwrap();
    let logs = c.proc(id).logs();
    assert!(
        logs.contains("snapshot installed"),
        "node {id} caught up without installing a snapshot:\n{}",
        c.log_tails(40)
    );
}

/// A follower killed while 500 keys are written (snapshots every 50 entries) does not stop
/// the leader purging, and after a restart it installs the leader's snapshot and holds
/// every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_catches_up_from_snapshot() {
    let mut c = Cluster::start_with(3, &["--snapshot-threshold", "50"])
        .await
        .unwrap();
    let api = c.api().clone();
    let leader = c.leader().await.unwrap();
    let lagging: NodeId = c.followers(leader)[0];
    c.kill9(lagging).unwrap();

    let url = c.url(leader);
    futures::stream::iter(0..500usize)
        .map(|i| {
            let (api, url) = (&api, &url);
            async move {
                api.put_ok(url, &format!("/snap/k{i:04}"), format!("value-{i}"))
                    .await
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    assert_eq!(
        api.range_ok(&url, "/snap/").await.unwrap().entries.len(),
        500
    );

    // Far past the few entries the down node had (snapshots land at varying indexes: a
    // trigger during a build is ignored), so it cannot catch up by appends. Restarting it as
    // soon as a snapshot exists (as this test used to) races the purge, which waits for a
    // failed append to the down node, and it then catches up by appends instead.
    wait_purged(&c, leader, 100).await;
    c.restart(lagging).await.unwrap();
    wait_caught_up_by_snapshot(&c, lagging, "/snap/", leader).await;
}

/// A frozen follower (SIGSTOP) while 120 MiB of 512 KiB values overwrite 8 keys, with
/// snapshots every 20 entries: the leader purges its log behind each snapshot, so its memory
/// stays near its 4 MiB state instead of holding the whole log for the frozen member; thawed,
/// the follower installs a snapshot and serves the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_member_does_not_hold_the_leaders_log() {
    // A 1 MiB watch history: the history's own byte bound (64 MiB by default) is not what
    // this measures.
    let flags = [
        "--snapshot-threshold",
        "20",
        "--watch-history-bytes",
        "1048576",
    ];
    let mut c = Cluster::start_with(3, &flags).await.unwrap();
    let api = c.api().clone();
    let leader = c.leader().await.unwrap();
    let frozen: NodeId = c.followers(leader)[0];
    let url = c.url(leader);
    let pid = c.proc(leader).pid();
    let value = vec![b'p'; 512 * 1024];
    // Warm up: the state and the leader's buffers reach their working size first.
    for i in 0..8 {
        api.put_ok(&url, &format!("/purge/k{i}"), value.clone())
            .await
            .unwrap();
    }
    c.pause(frozen).unwrap();
    let before = proc_mib(pid, "VmRSS");
    for i in 0..240 {
        api.put_ok(&url, &format!("/purge/k{}", i % 8), value.clone())
            .await
            .unwrap();
    }
    wait_purged(&c, leader, 200).await;
    let grew = proc_mib(pid, "VmRSS").saturating_sub(before);
    // Holding the log for the frozen member would be the 120 MiB written; what it does grow
    // by (15-40 MiB here) is buffers and the allocator.
    assert!(
        grew < 64,
        "the leader's memory grew by {grew} MiB while a member was frozen"
    );

    c.resume(frozen).unwrap();
    wait_caught_up_by_snapshot(&c, frozen, "/purge/", leader).await;
}

/// The byte rule's own purge (the whole log behind a snapshot it asked for) with a member
/// killed: 24 puts of 4 MiB to 4 keys (96 MiB, snapshots by weight), then the leader's log
/// is purged past everything the dead member had, and back, that member installs the
/// snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_member_does_not_stop_the_byte_rule_purge() {
    let mut c = Cluster::start_with(3, &["--watch-history-bytes", "1048576"])
        .await
        .unwrap();
    let api = c.api().clone();
    let leader = c.leader().await.unwrap();
    let dead: NodeId = c.followers(leader)[0];
    c.kill9(dead).unwrap();
    let url = c.url(leader);
    let value = vec![b'b'; pyxis_client::api::MAX_VALUE_BYTES];
    for i in 0..24 {
        api.put_ok(&url, &format!("/heavy/k{}", i % 4), value.clone())
            .await
            .unwrap();
    }
    // The dead member had a handful of entries; the byte rule snapshots every 16 puts.
    wait_purged(&c, leader, 12).await;
    c.restart(dead).await.unwrap();
    wait_caught_up_by_snapshot(&c, dead, "/heavy/", leader).await;
}
