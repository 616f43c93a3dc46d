//! Errors and states that tell the truth: deleting every key takes `all=true`, a removed member
//! says so and stops serving, oversized bodies get a clean 413 with their real size, a watch or a
//! blocking read never claims or skips a revision at the edges, a body that is not an object is a
//! 400, `members add` refuses a server that only mimics `/v1/status`, a membership change racing
//! another is a plain 409, `pyxis kv get` ends its line.

use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::{Api, Cluster, eventually, run_cmd};
use pyxis_client::api::{DeleteResponse, ErrorBody, ErrorCode, NodeId, NodeStatus};
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const WAIT: Duration = Duration::from_secs(30);
const CMD_TIMEOUT: Duration = Duration::from_secs(20);

fn error_of(reply: &harness::Reply) -> ErrorBody {
    reply
        .error_body()
        .unwrap_or_else(|e| panic!("HTTP {} {:?}: {e}", reply.status, reply.text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_every_key_takes_all_true() {
    let c = Cluster::single(&[]).await.unwrap();
    let (api, url) = (c.api(), c.url(1));
    api.put_ok(&url, "/a", "1").await.unwrap();
    api.put_ok(&url, "/ns/services/x", "{}").await.unwrap();
    let delete = async |path: &str| {
        api.request(Method::DELETE, &format!("{url}{path}"), None, None)
            .await
            .unwrap()
    };

    for path in ["/v1/kv/?prefix=true", "/v1/kv?prefix=true"] {
        let reply = delete(path).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text());
        let e = error_of(&reply);
        assert!(
            e.message.starts_with("all:") && e.message.contains("?all=true"),
            "{path}: {}",
            e.message
        );
    }
    let reply = api
        .txn(
            &url,
            &json!({"success": [{"op": "delete", "key": "/", "prefix": true}]}),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(
        error_of(&reply).message.contains("all=true"),
        "{}",
        reply.text()
    );
    let reply = delete("/v1/kv/a?all=true").await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(error_of(&reply).message.starts_with("all:"));
    assert_eq!(
        api.range_ok(&url, "/").await.unwrap().entries.len(),
        2,
        "a refused delete removed keys"
    );

    // `pyxis kv get` ends its line; `--raw` gives the bytes alone.
    let ep = c.endpoints();
    let get = async |args: &[&str]| {
        let mut argv = vec!["kv", "get"];
        argv.extend_from_slice(args);
        argv.extend(["--endpoints", &ep]);
        run_cmd(c.bin(), argv, CMD_TIMEOUT)
            .await
            .unwrap()
            .success()
            .unwrap()
            .stdout
    };
    assert_eq!(get(&["/a"]).await, "1\n");
    assert_eq!(get(&["/a", "--raw"]).await, "1");

    let out = run_cmd(
        c.bin(),
        ["kv", "del", "--all", "--endpoints", &ep],
        CMD_TIMEOUT,
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    assert!(out.stdout.starts_with("deleted 2 "), "{}", out.stdout);
    api.put_ok(&url, "/b", "2").await.unwrap();
    let reply = delete("/v1/kv/?all=true").await.ok().unwrap();
    assert_eq!(reply.json::<DeleteResponse>().unwrap().deleted, 1);
    assert!(api.range_ok(&url, "/").await.unwrap().entries.is_empty());
}

/// Polls until node `id` reports itself removed: status, health and a client write.
async fn expect_removed(api: &Api, url: &str, id: NodeId) {
    eventually(WAIT, async || {
        let status: NodeStatus = api.status(url).await?;
        anyhow::ensure!(status.state == "removed", "state {}", status.state);
        let health = api.get_path(url, "/healthz").await?;
        anyhow::ensure!(health.status == 503, "healthz {}", health.text());
        let body: serde_json::Value = health.json()?;
        anyhow::ensure!(body["reason"] == "removed", "healthz {body}");
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("node {id} never said it was removed: {e:#}"));
    for reply in [
        api.put(url, "/after-removal", "x").await.unwrap(),
        api.get(url, "/after-removal").await.unwrap(),
    ] {
        assert_eq!(reply.status, 503, "node {id}: {}", reply.text());
        let e = error_of(&reply);
        assert_eq!(e.error, ErrorCode::Unavailable);
        assert!(
            e.message.contains("removed from the cluster"),
            "{}",
            e.message
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_says_so_and_stops_serving() {
    let mut c = Cluster::start(3).await.unwrap();
    let leader = c.leader().await.unwrap();
    let followers = c.followers(leader);
    let (down, up) = (followers[0], followers[1]);
    let api = c.api().clone();
    api.put_ok(&c.url(leader), "/before", "x").await.unwrap();

    // Removed while down, then restarted with its old membership.
    c.kill9(down).unwrap();
    c.remove_member(leader, down).await.unwrap();
    c.restart(down).await.unwrap();
    expect_removed(&api, &c.url(down), down).await;

    // Removed while running.
    c.remove_member(leader, up).await.unwrap();
    expect_removed(&api, &c.url(up), up).await;

    // The remaining member serves, and no write went in through the removed ones.
    let url = c.url(leader);
    assert_eq!(api.get(&url, "/before").await.unwrap().text(), "x");
    assert_eq!(api.get(&url, "/after-removal").await.unwrap().status, 404);
    let health = api.get_path(&url, "/healthz").await.unwrap();
    assert_eq!(health.status, 200, "{}", health.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_a_clean_413_with_their_size() {
    let c = Cluster::single(&[]).await.unwrap();
    let (api, url) = (Api::with_timeout(Duration::from_secs(120)), c.url(1));
    // Past the 64 MiB the server used to read before it stopped (and reset the connection).
    let size = 70usize << 20;
    let big = Bytes::from(vec![b' '; size]);
    for (method, path, what) in [
        (Method::POST, "/v1/txn", "txn body"),
        (Method::PUT, "/v1/kv/big", "value"),
    ] {
        let reply = api
            .request(method, &format!("{url}{path}"), Some(big.clone()), None)
            .await
            .unwrap_or_else(|e| panic!("{path}: no reply: {e:#}"));
        assert_eq!(reply.status, 413, "{path}: {}", reply.text());
        let e = error_of(&reply);
        assert!(
            e.message
                .starts_with(&format!("{what}: {size} bytes is over the limit of ")),
            "{path}: {}",
            e.message
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_and_blocking_reads_are_truthful_at_the_edges() {
    let c = Cluster::single(&[]).await.unwrap();
    let (api, url) = (c.api(), c.url(1));
    let rev = api.put_ok(&url, "/w", "1").await.unwrap();

    // A watch from a revision far ahead starts with progress at the revision reached.
    pyxis_client::tls::install_crypto_provider();
    let resp = reqwest::Client::new()
        .get(format!("{url}/v1/watch/w?from_rev={}", rev + 1000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut resp = resp;
    let mut first = Vec::new();
    while !first.contains(&b'\n') {
        let chunk = tokio::time::timeout(WAIT, resp.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        first.extend_from_slice(&chunk);
    }
    let line: serde_json::Value =
        serde_json::from_slice(first.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(line["type"], "progress", "{line}");
    assert_eq!(
        line["revision"], rev,
        "progress claims a revision not reached"
    );

    // A wait beyond the current revision, up to u64::MAX, waits for the timeout.
    for wait_rev in [u64::MAX - 1, u64::MAX] {
        let start = Instant::now();
        let reply = api
            .get_path(&url, &format!("/v1/kv/w?wait_rev={wait_rev}&timeout=1s"))
            .await
            .unwrap();
        let took = start.elapsed();
        assert_eq!(reply.status, 200, "wait_rev={wait_rev}: {}", reply.text());
        assert!(
            took >= Duration::from_millis(900),
            "wait_rev={wait_rev} returned after {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_an_object_is_a_400() {
    let c = Cluster::single(&[]).await.unwrap();
    let url = c.url(1);
    for body in ["[]", "null", "\"x\""] {
        let reply = c
            .api()
            .request(
                Method::POST,
                &format!("{url}/v1/txn"),
                Some(Bytes::from(body)),
                Some("application/json"),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        let e = error_of(&reply);
        assert!(
            e.message.starts_with("txn body: expected a JSON object"),
            "{body}: {}",
            e.message
        );
    }
}

/// A server that answers `/v1/status` as an empty node `id` would and holds every other
/// request without an answer.
async fn status_only_server(id: NodeId) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let status = json!({
        "id": id, "cluster_id": null, "state": "learner", "leader": null, "term": 0,
        "last_log_index": null, "committed_index": null, "applied_index": null,
        "snapshot_index": null, "revision": 0, "keys": 0, "millis_since_quorum_ack": null,
        "started_members": []
    })
    .to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let status = status.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                if buf[..n].starts_with(b"GET /v1/status ") {
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{status}",
                        status.len()
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                } else {
                    // Hold the connection, answering nothing, as a wedged process would.
                    tokio::time::sleep(Duration::from_secs(300)).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_add_refuses_a_server_that_only_answers_status() {
    let c = Cluster::start(1).await.unwrap();
    let leader = c.leader().await.unwrap();
    let fake = status_only_server(4).await;
    let start = Instant::now();
    let reply = Api::with_timeout(Duration::from_secs(120))
        .add_member(&c.url(leader), 4, &fake)
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(reply.status, 400, "{}", reply.text());
    let e = error_of(&reply);
    assert!(
        e.message.starts_with("addr:") && e.message.contains("peer API"),
        "{}",
        e.message
    );
    assert!(took < Duration::from_secs(15), "members add took {took:?}");
    let info = c.api().cluster(&c.url(leader)).await.unwrap();
    assert!(
        info.members.iter().all(|m| m.id != 4),
        "the fake node stayed a member: {info:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_change_racing_another_is_a_plain_409() {
    let mut c = Cluster::start(3).await.unwrap();
    let leader = c.leader().await.unwrap();
    let followers = c.followers(leader);
    let url = c.url(leader);
    // Without its followers the leader cannot commit a change, so one stays in progress.
    for f in &followers {
        c.pause(*f).unwrap();
    }
    let first = {
        let (url, id) = (url.clone(), followers[0]);
        tokio::spawn(async move {
            Api::with_timeout(Duration::from_secs(60))
                .remove_member(&url, id)
                .await
        })
    };
    let api = Api::with_timeout(Duration::from_secs(10));
    let e = eventually(WAIT, async || {
        let reply = api.remove_member(&url, followers[1]).await?;
        anyhow::ensure!(
            reply.status == 409,
            "HTTP {}: {}",
            reply.status,
            reply.text()
        );
        reply.error_body()
    })
    .await
    .unwrap();
    assert_eq!(e.error, ErrorCode::CompareFailed);
    assert_eq!(
        e.message,
        "membership: another membership change is in progress; retry once it is done"
    );
    for f in &followers {
        c.resume(*f).unwrap();
    }
    let _ = first.await;
}
