//! ACL tokens on a real 3-node cluster: every endpoint refuses a call without the role it
//! needs (401/403 with a JSON error, nothing written on any node), and a revoke is seen by
//! every node within 1 s. Each role's happy path, the CLI and the gateway are `acl_roles`.

use std::time::{Duration, Instant};

use harness::acl::Authed;
use harness::{Cluster, Reply, eventually};
use pyxis_client::api::{AclStatus, ErrorBody, ErrorCode, LeaseGrantResponse, Role};
use reqwest::Method;
use serde_json::{Value, json};

/// Deadline for the cluster to settle on a change.
pub(crate) const SETTLE: Duration = Duration::from_secs(10);

/// A CLI command should finish quickly; this bound is for a loaded CI machine.
pub(crate) const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// A valid instance of node `node`.
pub(crate) fn instance(node: &str) -> String {
    json!({
        "address": "10.0.0.1",
        "port": 8080,
        "datacenter": "dc1",
        "version": "v1",
        "weight": 100,
        "status": "passing",
        "node": node,
    })
    .to_string()
}

/// The error body of a refusal, checked for its status and code.
pub(crate) fn refused(r: &Reply, status: u16, code: ErrorCode, what: &str) -> ErrorBody {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    let body: ErrorBody = r
        .json()
        .unwrap_or_else(|e| panic!("{what}: not a JSON error: {e}: {}", r.text()));
    assert_eq!(body.error, code, "{what}: {}", r.text());
    assert!(!body.message.is_empty(), "{what}: empty message");
    body
}

/// Everything a refused call could have changed, read with the admin token: every key
/// with its revisions, the tokens and the audit history.
async fn state(a: &Authed, base: &str, admin: &str) -> Value {
    let get = async |path: &str| -> Value {
        a.call(Method::GET, base, path, Some(admin), None)
            .await
            .unwrap()
            .ok()
            .unwrap()
            .json()
            .unwrap()
    };
    let mut keys = get("/v1/kv/?prefix=true").await;
    // The listing's own read revision is not state.
    keys.as_object_mut().map(|o| o.remove("revision"));
    json!({
        "keys": keys,
        "tokens": get("/v1/acl/tokens").await,
        "audit": get("/v1/audit").await,
    })
}

/// One refusal case: a call and the tokens it must be refused for.
struct Case {
    method: Method,
    path: String,
    body: Option<String>,
    /// Refused for a read token (403).
    read: bool,
    /// Refused for the other node's register token (403).
    other_node: bool,
}

fn case(method: Method, path: &str, body: Option<String>, read: bool, other_node: bool) -> Case {
    Case {
        method,
        path: path.into(),
        body,
        read,
        other_node,
    }
}

/// Every endpoint, with no token, a bad token, a read token and a register token of
/// another node: 401 or 403 with a JSON error, and nothing written on any node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_refuses_without_its_role() {
    let c = Cluster::start(3).await.unwrap();
    let a = Authed::new();
    let url = |id| c.url(id);
    // Data written while ACLs are off, so the refusals have something to change.
    let seed = [
        (Method::PUT, "/v1/kv/acl/raw", "v0".to_owned()),
        (
            Method::PUT,
            "/v1/services/web",
            json!({"owner": "a"}).to_string(),
        ),
        (
            Method::PUT,
            "/v1/services/web/instances/n1-web",
            instance("n1"),
        ),
        (
            Method::PUT,
            "/v1/datacenters/dc1",
            json!({"subnets": ["10.0.0.0/16"]}).to_string(),
        ),
    ];
    for (m, p, b) in seed {
        a.call(m, &url(1), p, None, Some(&b))
            .await
            .unwrap()
            .ok()
            .unwrap();
    }
    let admin = a.bootstrap(&url(2)).await.unwrap();
    let (read, _) = a
        .create(&url(1), &admin, Role::Read, None, "reader")
        .await
        .unwrap();
    let (reg1, _) = a
        .create(&url(1), &admin, Role::Register, Some("n1"), "agent n1")
        .await
        .unwrap();
    let (reg2, _) = a
        .create(&url(1), &admin, Role::Register, Some("n2"), "agent n2")
        .await
        .unwrap();
    let lease: LeaseGrantResponse = a
        .call(
            Method::POST,
            &url(1),
            "/v1/lease",
            Some(&reg1),
            Some(r#"{"ttl_ms":60000}"#),
        )
        .await
        .unwrap()
        .ok()
        .unwrap()
        .json()
        .unwrap();
    let lid = lease.id;
    let (victim, victim_accessor) = a
        .create(&url(1), &admin, Role::Read, None, "victim")
        .await
        .unwrap();

    let txn_put = json!({"success": [{"op": "put", "key": "/acl/raw", "value": "x"}]}).to_string();
    let cases = vec![
        case(Method::GET, "/v1/kv/acl/raw", None, false, false),
        case(Method::GET, "/v1/kv/?prefix=true", None, false, false),
        case(Method::GET, "/v1/services", None, false, false),
        case(
            Method::GET,
            "/v1/services/web/instances",
            None,
            false,
            false,
        ),
        case(
            Method::GET,
            "/v1/watch/acl/?prefix=true&from_rev=1",
            None,
            false,
            false,
        ),
        case(Method::GET, "/v1/cluster", None, false, false),
        case(Method::GET, &format!("/v1/lease/{lid}"), None, false, false),
        case(Method::PUT, "/v1/kv/acl/raw", Some("v1".into()), true, true),
        case(Method::DELETE, "/v1/kv/acl/raw", None, true, true),
        case(
            Method::DELETE,
            "/v1/kv/?prefix=true&all=true",
            None,
            true,
            true,
        ),
        case(Method::POST, "/v1/txn", Some(txn_put), true, true),
        case(
            Method::PUT,
            "/v1/services/web",
            Some(json!({"owner": "b"}).to_string()),
            true,
            true,
        ),
        case(Method::DELETE, "/v1/services/web", None, true, true),
        case(
            Method::PUT,
            "/v1/traffic/web",
            Some(json!({"prefer_same_dc": true}).to_string()),
            true,
            true,
        ),
        case(Method::DELETE, "/v1/traffic/web", None, true, true),
        case(
            Method::PUT,
            "/v1/datacenters/dc2",
            Some(json!({"subnets": ["10.1.0.0/16"]}).to_string()),
            true,
            true,
        ),
        case(Method::DELETE, "/v1/datacenters/dc1", None, true, true),
        // Another node's token may not touch n1's instance: not by its body, not by the stored one.
        case(
            Method::PUT,
            "/v1/services/web/instances/n1-web",
            Some(instance("n1")),
            true,
            true,
        ),
        case(
            Method::PUT,
            "/v1/services/web/instances/n1-web",
            Some(instance("n2")),
            true,
            true,
        ),
        case(
            Method::DELETE,
            "/v1/services/web/instances/n1-web",
            None,
            true,
            true,
        ),
        case(
            Method::POST,
            &format!("/v1/lease/{lid}/keepalive"),
            None,
            true,
            true,
        ),
        case(
            Method::DELETE,
            &format!("/v1/lease/{lid}"),
            None,
            true,
            true,
        ),
        case(
            Method::POST,
            "/v1/lease",
            Some(r#"{"ttl_ms":60000}"#.into()),
            true,
            false,
        ),
        case(
            Method::POST,
            "/v1/cluster/members",
            Some(json!({"id": 9, "addr": "127.0.0.1:1"}).to_string()),
            true,
            true,
        ),
        case(Method::DELETE, "/v1/cluster/members/3", None, true, true),
        case(
            Method::POST,
            "/v1/acl/tokens",
            Some(json!({"role": "admin"}).to_string()),
            true,
            true,
        ),
        case(Method::GET, "/v1/acl/tokens", None, true, true),
        case(
            Method::DELETE,
            &format!("/v1/acl/tokens/{victim_accessor}"),
            None,
            true,
            true,
        ),
        case(Method::GET, "/v1/snapshot", None, true, true),
        case(Method::GET, "/v1/audit", None, true, true),
        case(Method::GET, "/v1/acl/token/self", None, false, false),
    ];
    let before = state(&a, &url(1), &admin).await;
    for id in c.ids() {
        let base = url(id);
        for k in &cases {
            let what = format!("{} {} on node {id}", k.method, k.path);
            let send = async |token: Option<&str>| {
                a.call(k.method.clone(), &base, &k.path, token, k.body.as_deref())
                    .await
                    .unwrap()
            };
            let r = send(None).await;
            let e = refused(
                &r,
                401,
                ErrorCode::Unauthorized,
                &format!("{what}, no token"),
            );
            assert!(e.message.contains("token"), "{what}: {}", e.message);
            refused(
                &send(Some(
                    "pyx_0000000000000000000000000000000000000000000000000000000000000000",
                ))
                .await,
                401,
                ErrorCode::Unauthorized,
                &format!("{what}, bad token"),
            );
            refused(
                &send(Some("not even a token")).await,
                401,
                ErrorCode::Unauthorized,
                &what,
            );
            if k.read {
                let e = refused(
                    &send(Some(&read)).await,
                    403,
                    ErrorCode::Forbidden,
                    &format!("{what}, read token"),
                );
                assert!(
                    e.message.contains("role") || e.message.contains("node"),
                    "{what}: {}",
                    e.message
                );
            }
            if k.other_node {
                refused(
                    &send(Some(&reg2)).await,
                    403,
                    ErrorCode::Forbidden,
                    &format!("{what}, register n2"),
                );
            }
        }
    }
    // Nothing was written by any refused call, on any node (each answers from its own state).
    for id in c.ids() {
        let after = eventually(SETTLE, async || {
            let s = state(&a, &url(id), &admin).await;
            anyhow::ensure!(s == before, "node {id} state differs");
            Ok(s)
        })
        .await;
        assert!(
            after.is_ok(),
            "node {id}: a refused call changed state:\nbefore {before:#}\nafter {:#}",
            state(&a, &url(id), &admin).await
        );
    }
    // The open routes stay open.
    for path in [
        "/healthz",
        "/livez",
        "/metrics",
        "/v1/acl/status",
        "/v1/status",
    ] {
        let r = a
            .call(Method::GET, &url(3), path, None, None)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    let status: AclStatus = a
        .call(Method::GET, &url(3), "/v1/acl/status", None, None)
        .await
        .unwrap()
        .json()
        .unwrap();
    assert!(status.enabled);
    // Auth failures are counted by reason.
    let metrics = a
        .call(Method::GET, &url(1), "/metrics", None, None)
        .await
        .unwrap()
        .text();
    for reason in ["missing", "invalid", "forbidden"] {
        assert!(
            metrics.contains(&format!("pyxis_auth_failures_total{{reason=\"{reason}\"}}")),
            "no {reason} failures counted in /metrics"
        );
    }
    // The victim token still works: its revoke was refused.
    a.call(Method::GET, &url(2), "/v1/kv/acl/raw", Some(&victim), None)
        .await
        .unwrap()
        .ok()
        .unwrap();
    // A second bootstrap is refused, whoever asks.
    for token in [None, Some(admin.as_str())] {
        let r = a
            .call(Method::POST, &url(3), "/v1/acl/bootstrap", token, None)
            .await
            .unwrap();
        let e = refused(&r, 409, ErrorCode::CompareFailed, "second bootstrap");
        assert!(e.message.contains("already bootstrapped"), "{}", e.message);
    }
}

/// A revoked token stops working on every node within 1 s of the revoke's reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_stops_on_every_node_within_a_second() {
    let c = Cluster::start(3).await.unwrap();
    let a = Authed::new();
    // Asked before bootstrap: the harness asks `/v1/cluster` without a token. The revoke is
    // sent to a follower, so it is forwarded to the leader.
    let leader = c.leader().await.unwrap();
    let via = c.followers(leader)[0];
    let admin = a.bootstrap(&c.url(1)).await.unwrap();
    let (secret, accessor) = a
        .create(&c.url(1), &admin, Role::Read, None, "leaving")
        .await
        .unwrap();
    for id in c.ids() {
        eventually(SETTLE, async || {
            a.call(Method::GET, &c.url(id), "/v1/services", Some(&secret), None)
                .await?
                .ok()
        })
        .await
        .unwrap();
    }
    a.revoke(&c.url(via), &admin, &accessor).await.unwrap();
    let revoked = Instant::now();
    for id in c.ids() {
        eventually(Duration::from_secs(1), async || {
            let r = a
                .call(Method::GET, &c.url(id), "/v1/services", Some(&secret), None)
                .await?;
            anyhow::ensure!(r.status == 401, "node {id} still accepts it: {}", r.status);
            Ok(())
        })
        .await
        .unwrap_or_else(|e| panic!("node {id} after {:?}: {e:#}", revoked.elapsed()));
    }
    assert!(
        revoked.elapsed() < Duration::from_secs(1),
        "took {:?}",
        revoked.elapsed()
    );
    // Revoking it again is a 404 naming the token, and revoke by secret works too.
    let r = a
        .call(
            Method::DELETE,
            &c.url(1),
            &format!("/v1/acl/tokens/{accessor}"),
            Some(&admin),
            None,
        )
        .await
        .unwrap();
    refused(&r, 404, ErrorCode::NotFound, "second revoke");
    let (other, _) = a
        .create(&c.url(1), &admin, Role::Read, None, "by secret")
        .await
        .unwrap();
    a.revoke(&c.url(2), &admin, &other).await.unwrap();
    eventually(SETTLE, async || {
        let r = a
            .call(Method::GET, &c.url(2), "/v1/services", Some(&other), None)
            .await?;
        anyhow::ensure!(r.status == 401, "still accepted");
        Ok(())
    })
    .await
    .unwrap();
}

/// A watch opened with a token ends once the token is revoked, on every node: the stream
/// closes and the client's reconnect is refused with 401, within 1 s of the revoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_watch_ends_when_its_token_is_revoked() {
    let c = Cluster::start(3).await.unwrap();
    let a = Authed::new();
    let admin = a.bootstrap(&c.url(1)).await.unwrap();
    let (secret, accessor) = a
        .create(&c.url(1), &admin, Role::Read, None, "watcher")
        .await
        .unwrap();
    let mut watches = Vec::new();
    for id in c.ids() {
        let client = pyxis_client::Client::with_options(
            vec![c.addr(id).to_owned()],
            pyxis_client::ClientOptions::default().token(&secret),
        )
        .unwrap();
        let mut w = eventually(SETTLE, async || {
            let mut w = client.watch("/ns/", true, None)?;
            // The first line (the start's progress) proves the stream is open.
            w.next().await?;
            Ok(w)
        })
        .await
        .unwrap();
        // Still open while the token is valid: a write is delivered.
        a.call(
            Method::PUT,
            &c.url(1),
            &format!("/v1/kv/ns/probe/{id}"),
            Some(&admin),
            Some("x"),
        )
        .await
        .unwrap()
        .ok()
        .unwrap();
        let got = tokio::time::timeout(SETTLE, async {
            loop {
                if let pyxis_client::api::WatchMessage::Put { key, .. } = w.next().await? {
                    return Ok::<_, pyxis_client::Error>(key);
                }
            }
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(got, format!("/ns/probe/{id}"));
        watches.push((id, w));
    }
    a.revoke(&c.url(2), &admin, &accessor).await.unwrap();
    let revoked = Instant::now();
    for (id, mut w) in watches {
        let end = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                if let Err(e) = w.next().await {
                    return e;
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "node {id}: the watch still runs {:?} after the revoke",
                revoked.elapsed()
            )
        });
        assert!(
            matches!(
                &end,
                pyxis_client::Error::Api {
                    code: ErrorCode::Unauthorized,
                    ..
                }
            ),
            "node {id}: {end:?}"
        );
    }
}
