//! Faults: kill -9 of the leader, a restart of the whole cluster, a new member sent a large
//! snapshot, and a dead member's address reused by another cluster's node. A follower that
//! comes back after the log it missed was purged is in `store_purge`.
//!
//! Healthy-cluster behaviour is in `store_cluster`.

use std::collections::BTreeMap;
use std::time::Duration;

use harness::{Api, Cluster, eventually};
use pyxis_client::api::RangeResponse;
use tokio::time::Instant;

use crate::writer::{Writer, check_acked_present};

/// The election bound the store promises after a leader crash.
const ELECTION_BOUND: Duration = Duration::from_secs(3);

/// Generous deadline for catch-up on a loaded 2-core machine running debug builds.
const CATCH_UP: Duration = Duration::from_secs(120);

/// Killing the leader mid-stream: a new leader within 3 s, no acknowledged write lost,
/// writes continue, and the old leader catches up after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_keeps_acknowledged_writes() {
    let mut c = Cluster::start(3).await.unwrap();
    let api = c.api().clone();
    let old = c.leader().await.unwrap();
    let survivors = c.followers(old);
    let writer = Writer::start(
        api.clone(),
        survivors.iter().map(|id| c.url(*id)).collect(),
        "/failover/k",
        false,
    );
    writer
        .wait_acked(20, Duration::from_secs(60))
        .await
        .unwrap();

    let killed_at = Instant::now();
    c.kill9(old).unwrap();
    // Short request timeouts so a slow reply cannot hide how fast the election was.
    let quick = Api::with_timeout(Duration::from_millis(500));
    let (new, elapsed) = eventually(Duration::from_secs(30), async || {
        let mut views = Vec::new();
        for id in &survivors {
            let view = quick.cluster(&c.url(*id)).await.map(|i| i.leader);
            if let Ok(Some(l)) = view
                && l != old
            {
                return Ok((l, killed_at.elapsed()));
            }
            views.push((*id, view));
        }
        anyhow::bail!("no new leader yet: {views:?}")
    })
    .await
    .unwrap();
    assert!(
        elapsed < ELECTION_BOUND,
        "node reported new leader {new} {elapsed:?} after killing leader {old} (bound {ELECTION_BOUND:?})"
    );
    assert_ne!(new, old);
    let agreed = c.leader().await.unwrap();
    assert_ne!(agreed, old, "survivors agree on the killed node as leader");

    // Writes continue under the new leader.
    let n = writer.acked_count();
    writer
        .wait_acked(n + 20, Duration::from_secs(60))
        .await
        .unwrap();
    let (acked, errors) = writer.stop().await;
    eprintln!(
        "leader {old} killed; node {new} reported leader after {elapsed:?}; {} puts acked, {} failed",
        acked.len(),
        errors.len()
    );

    for id in &survivors {
        let listing = api.range_ok(&c.url(*id), "/failover/").await.unwrap();
        check_acked_present(&listing, &acked).unwrap();
    }

    // The old leader comes back as a follower and catches up from its own data dir.
    c.restart(old).await.unwrap();
    let last = acked.last().expect("some puts were acknowledged").clone();
    eventually(CATCH_UP, async || {
        let reply = api.get_serializable(&c.url(old), &last.key).await?.ok()?;
        anyhow::ensure!(
            reply.body == last.value.as_bytes(),
            "node {old} has {:?} for {}, want {:?}",
            reply.text(),
            last.key,
            last.value
        );
        Ok(())
    })
    .await
    .unwrap();
    let listing = api
        .range_serializable_ok(&c.url(old), "/failover/")
        .await
        .unwrap();
    check_acked_present(&listing, &acked).unwrap();
}

/// Killing every node and starting them all again keeps every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_restart_keeps_acknowledged_writes() {
    let mut c = Cluster::start(3).await.unwrap();
    let api = c.api().clone();
    let ids = c.ids();
    let mut expected = BTreeMap::new();
    // 40 keys, half of them overwritten, one deleted, sent round-robin to all nodes.
    for i in 0..60usize {
        let key = format!("/restart/k{:02}", i % 40);
        let value = format!("v{i}");
        let node = ids[i % ids.len()];
        api.put_ok(&c.url(node), &key, value.clone()).await.unwrap();
        expected.insert(key, value);
    }
    let deleted = api.delete_ok(&c.url(ids[0]), "/restart/k07").await.unwrap();
    assert_eq!(deleted.deleted, 1);
    expected.remove("/restart/k07");
    let leader = c.leader().await.unwrap();
    let before = api.range_ok(&c.url(leader), "/restart/").await.unwrap();

    for id in &ids {
        c.kill9(*id).unwrap();
    }
    c.restart_many(&ids).await.unwrap();
    let leader = c.leader().await.unwrap();

    let after = api.range_ok(&c.url(leader), "/restart/").await.unwrap();
    let got = values(&after);
    if got != expected {
        // Tell a lost write from a stale read: does the data show up a little later?
        let later = eventually(Duration::from_secs(10), async || {
            let listing = api.range_ok(&c.url(leader), "/restart/").await?;
            anyhow::ensure!(
                values(&listing) == expected,
                "still different at revision {}",
                listing.revision
            );
            Ok(listing.revision)
        })
        .await;
        let mut statuses = String::new();
        for id in &ids {
            statuses.push_str(&format!("\n  {:?}", api.status(&c.url(*id)).await));
        }
        panic!(
            "key space after restarting every node differs from the acknowledged writes\n\
             last write acknowledged at revision {}; first read (leader {leader}) at revision {}\n\
             missing or different: {:?}\nunexpected: {:?}\n\
             re-reading for 10 s: {later:?}\nnode statuses:{statuses}",
            deleted.revision,
            after.revision,
            diff(&expected, &got),
            diff(&got, &expected),
        );
    }
    assert_eq!(
        after.entries, before.entries,
        "revisions/versions changed across the restart"
    );
    assert!(after.revision >= before.revision);
    // Every node, not only the leader, serves the same data after the restart.
    for id in &ids {
        let listing = api.range_ok(&c.url(*id), "/restart/").await.unwrap();
        assert_eq!(listing.entries, before.entries, "node {id}");
    }
}

/// A memory figure of process `pid` from `/proc/PID/status` (`VmRSS`, `VmHWM`), in MiB.
pub(crate) fn proc_mib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb / 1024
}

/// A node added after 68 MiB of writes, whose log the leader has purged, gets them as a
/// snapshot the leader streams from its file: the leader's peak memory grows by less than
/// the snapshot while it sends it (it used to read the file whole and then encode a copy
/// of it: twice the snapshot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_snapshot_is_sent_without_the_leader_holding_it() {
    let mut c = Cluster::start(3).await.unwrap();
    let api = c.api().clone();
    let leader = c.leader().await.unwrap();
    // Seventeen 4 MiB values: the log outweighs the 64 MiB floor of the byte rule, so every
    // node snapshots and purges the log the snapshot covers.
    let url = c.url(leader);
    let value = vec![b's'; pyxis_client::api::MAX_VALUE_BYTES];
    for i in 0..17 {
        api.put_ok(&url, &format!("/bigsnap/{i:02}"), value.clone())
            .await
            .unwrap();
    }
    eventually(CATCH_UP, async || {
        let status = api.status(&url).await?;
        anyhow::ensure!(status.snapshot_index.unwrap_or(0) > 0, "{status:?}");
        Ok(())
    })
    .await
    .unwrap();
    let want = api.status(&url).await.unwrap();

    let pid = c.proc(leader).pid();
    // Reset the leader's peak (VmHWM) to its current size, then add a fourth node.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let before = proc_mib(pid, "VmRSS");
    c.add_node(4).await.unwrap();
    eventually(CATCH_UP, async || {
        let got = api.status(&c.url(4)).await?;
        anyhow::ensure!(
            got.keys == want.keys && got.revision >= want.revision,
            "node 4: {} keys at revision {}, want {} at {}",
            got.keys,
            got.revision,
            want.keys,
            want.revision
        );
        Ok(())
    })
    .await
    .unwrap();
    let grew = proc_mib(pid, "VmHWM").saturating_sub(before);
    // The new node started empty: what it holds came as the leader's snapshot.
    let logs = c.proc(4).logs();
    assert!(logs.contains("snapshot installed"), "{logs}");
    // Less than one copy of the snapshot (68 MiB): reading the file alone would exceed it.
    // What it does grow by (30-40 MiB here) is the append of the entry after the snapshot,
    // the new member's catch-up and the allocator, not the snapshot.
    assert!(
        grew < 64,
        "sending a 68 MiB snapshot raised the leader's peak memory by {grew} MiB"
    );
    let last = api
        .get_path(&c.url(4), "/v1/kv/bigsnap/16?consistency=serializable")
        .await
        .unwrap();
    assert_eq!(last.status, 200, "{}", last.text());
}

/// The `key -> value` map of a listing (values as lossy text).
fn values(listing: &RangeResponse) -> BTreeMap<String, String> {
    listing
        .entries
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect()
}

/// Entries of `a` that `b` lacks or holds with another value.
fn diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<(String, String)> {
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A dead member's address taken over by a node of another cluster: the old cluster's
/// leader keeps calling that address, and the stranger refuses every call (cluster id
/// mismatch, 409) instead of letting the old leader overwrite its log. Both clusters keep
/// serving their own keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_address_is_not_taken_over_by_the_old_cluster() {
    let mut c = Cluster::start(3).await.unwrap();
    let api = c.api().clone();
    let leader = c.leader().await.unwrap();
    api.put_ok(&c.url(leader), "/old/1", "a").await.unwrap();
    let gone = c.followers(leader)[0];
    let addr = c.addr(gone).to_owned();
    c.kill9(gone).unwrap();

    // A new single-node cluster on the dead member's address, with the same node id.
    let data = c.dir().join("stranger");
    let (data_arg, id_arg) = (data.display().to_string(), gone.to_string());
    let mut stranger = harness::Proc::spawn_in(
        "stranger",
        c.bin(),
        [
            "server",
            "--id",
            &id_arg,
            "--listen",
            &addr,
            "--data-dir",
            &data_arg,
        ],
        &c.dir().join("logs"),
    )
    .unwrap();
    let url = format!("http://{addr}");
    harness::wait_healthy(&mut stranger, &url).await.unwrap();
    eventually(CATCH_UP, async || api.put_ok(&url, "/new/1", "b").await)
        .await
        .unwrap();

    // The old leader calls the address (heartbeats, and entries for the writes below)
    // until the stranger has refused it several times.
    let refused = eventually(CATCH_UP, async || {
        api.put_ok(&c.url(leader), "/old/2", "c").await?;
        let text = api.get_path(&url, "/metrics").await?.ok()?.text();
        let n = text
            .lines()
            .find_map(|l| l.strip_prefix("pyxis_peer_calls_refused_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        anyhow::ensure!(n >= 3.0, "{n} refused calls so far");
        Ok(n)
    })
    .await
    .unwrap();

    let theirs = api.status(&url).await.unwrap();
    let ours = api.status(&c.url(leader)).await.unwrap();
    assert_eq!(
        theirs.state, "leader",
        "{theirs:?} after {refused} refusals"
    );
    assert_eq!(theirs.leader, Some(gone), "{theirs:?}");
    assert!(theirs.cluster_id.is_some() && ours.cluster_id.is_some());
    assert_ne!(theirs.cluster_id, ours.cluster_id);
    let keys = |r: RangeResponse| -> Vec<String> { r.entries.into_iter().map(|e| e.key).collect() };
    assert_eq!(keys(api.range_ok(&url, "/").await.unwrap()), ["/new/1"]);
    assert_eq!(
        keys(api.range_ok(&c.url(leader), "/").await.unwrap()),
        ["/old/1", "/old/2"]
    );
    for id in c.live_ids() {
        let s = api.status(&c.url(id)).await.unwrap();
        assert_eq!(s.cluster_id, ours.cluster_id, "node {id}: {s:?}");
    }
}

/// Large values trigger a snapshot by weight, long before the entry threshold: 17 puts of
/// 4 MiB to one key (68 MiB of log, 4 MiB of state) with `--snapshot-threshold 1000000`.
/// The log it covers is then purged from disk (and memory), not kept for laggards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heavy_log_is_snapshotted_before_the_entry_threshold() {
    let c = Cluster::single(&["--snapshot-threshold", "1000000"])
        .await
        .unwrap();
    let api = c.api();
    let url = c.url(1);
    let value = vec![b'v'; pyxis_client::api::MAX_VALUE_BYTES];
    for _ in 0..17 {
        api.put_ok(&url, "/heavy/one", value.clone()).await.unwrap();
    }
    eventually(CATCH_UP, async || {
        let status = api.status(&url).await?;
        anyhow::ensure!(
            status.snapshot_index.unwrap_or(0) > 0,
            "no snapshot yet: {status:?}"
        );
        Ok(())
    })
    .await
    .unwrap();
    // The first 64 MiB segment of the log goes once its entries are purged.
    let raft_dir = c.data_dir(1).join("raft");
    eventually(CATCH_UP, async || {
        let bytes: u64 = std::fs::read_dir(&raft_dir)?
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        anyhow::ensure!(bytes < 60 << 20, "raft log still holds {bytes} bytes");
        Ok(())
    })
    .await
    .unwrap();
}

/// A follower whose data dir was wiped, restarted with the same flags, refuses to start
/// (instead of serving an empty state as a healthy member) and says how to recover; the
/// recovery it names (remove, start empty with `--join`, add back) brings its data back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_member_refuses_to_start_until_removed_and_added_back() {
    let mut c = Cluster::start(3).await.unwrap();
    let api = c.api().clone();
    let leader = c.leader().await.unwrap();
    let victim = c.followers(leader)[0];
    for i in 0..20 {
        api.put_ok(&c.url(leader), &format!("/wiped/{i}"), "v")
            .await
            .unwrap();
    }
    // Every member records that it started with data once it has caught up.
    eventually(CATCH_UP, async || {
        let status = api.status(&c.url(leader)).await?;
        anyhow::ensure!(
            status.started_members.contains(&victim),
            "node {victim} not recorded as started yet: {:?}",
            status.started_members
        );
        Ok(())
    })
    .await
    .unwrap();

    c.kill9(victim).unwrap();
    std::fs::remove_dir_all(c.data_dir(victim)).unwrap();
    let refused = c.restart(victim).await;
    assert!(refused.is_err(), "a wiped member started as if new");
    let logs = c.proc(victim).logs();
    assert!(
        logs.contains("empty data dir") && logs.contains(&format!("pyxis members remove {victim}")),
        "{logs}"
    );
    // The cluster keeps working with two of three.
    api.put_ok(&c.url(leader), "/wiped/after", "v")
        .await
        .unwrap();

    c.remove_member(leader, victim).await.unwrap();
    c.rejoin_empty(victim).await.unwrap();
    c.add_member(victim).await.unwrap();
    eventually(CATCH_UP, async || {
        let r = api.range_serializable_ok(&c.url(victim), "/wiped/").await?;
        anyhow::ensure!(r.entries.len() == 21, "{} of 21 keys", r.entries.len());
        Ok(())
    })
    .await
    .unwrap();
}
