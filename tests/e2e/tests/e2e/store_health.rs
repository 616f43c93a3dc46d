//! `/healthz` and `/v1/cluster` tell the truth about a member: a stopped follower shows as
//! behind (its lag counted by the leader) until it catches up, and a node that knows no
//! leader answers 503 `no_leader` (while `/livez` still says the process serves).

use std::time::Duration;

use harness::{Cluster, eventually};
use pyxis_client::api::{ClusterInfo, ErrorCode, Health, NodeId};

/// Sends SIGSTOP or SIGCONT to `pid` (a paused process keeps its sockets but answers nothing).
fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

fn member(info: &ClusterInfo, id: NodeId) -> &pyxis_client::api::Member {
    info.members.iter().find(|m| m.id == id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_is_behind_or_leaderless_is_not_healthy() {
    let mut c = Cluster::start(3).await.unwrap();
    let leader = c.leader().await.unwrap();
    let followers = c.followers(leader);
    let (paused, other) = (followers[0], followers[1]);
    let api = c.api().clone();
    for id in c.ids() {
        let h: Health = api.get_json(&c.url(id), "/healthz").await.unwrap();
        assert!(h.healthy && h.reason.is_none(), "node {id}: {h:?}");
    }

    // 1,200 entries while one follower is paused: more than the default lag of 1,000.
    signal(c.proc(paused).pid(), "-STOP");
    let url = c.url(leader);
    let writes = (0..8).map(|w| {
        let (api, url) = (api.clone(), url.clone());
        async move {
            for i in 0..150 {
                api.put_ok(&url, &format!("/lag/{w}/{i}"), "x")
                    .await
                    .unwrap();
            }
        }
    });
    futures::future::join_all(writes).await;

    // The leader (and a follower, which asks it) sees the paused member at its real position.
    for via in [leader, other] {
        let info = api.cluster(&c.url(via)).await.unwrap();
        let p = member(&info, paused);
        assert!(p.behind, "via {via}: {info:?}");
        assert!(p.lag.unwrap() >= 1200, "via {via}: {info:?}");
        for id in [leader, other] {
            assert!(!member(&info, id).behind, "via {via}: {info:?}");
        }
    }
    for id in [leader, other] {
        let h = api.get_path(&c.url(id), "/healthz").await.unwrap();
        assert_eq!(h.status, 200, "node {id}: {}", h.text());
    }

    // Resumed, it catches up and says so; the leader's view agrees.
    signal(c.proc(paused).pid(), "-CONT");
    eventually(Duration::from_secs(60), async || {
        let h = api.get_path(&c.url(paused), "/healthz").await?;
        anyhow::ensure!(h.status == 200, "{}", h.text());
        let info = api.cluster(&c.url(leader)).await?;
        anyhow::ensure!(!member(&info, paused).behind, "{info:?}");
        Ok(())
    })
    .await
    .unwrap();

    // Alone, a node knows no leader: 503 no_leader with the reason, yet it is live.
    c.kill9(leader).unwrap();
    c.kill9(other).unwrap();
    let h = eventually(Duration::from_secs(60), async || {
        let h = api.get_path(&c.url(paused), "/healthz").await?;
        anyhow::ensure!(h.status == 503, "still {}: {}", h.status, h.text());
        Ok(h)
    })
    .await
    .unwrap();
    assert_eq!(
        h.error_body().unwrap().error,
        ErrorCode::NoLeader,
        "{}",
        h.text()
    );
    let health: Health = h.json().unwrap();
    assert_eq!(
        (health.healthy, health.reason.as_deref()),
        (false, Some("no_leader"))
    );
    let live = api.get_path(&c.url(paused), "/livez").await.unwrap();
    assert_eq!(live.status, 200, "{}", live.text());
    let bad = api
        .get_path(&c.url(paused), "/healthz?lag=x")
        .await
        .unwrap();
    assert_eq!(bad.status, 400, "{}", bad.text());
}
