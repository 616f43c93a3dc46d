//! ACL tokens on a real 3-node cluster: every endpoint refuses a call without the role it
//! needs (401/403 with a JSON error, nothing written), each role's happy path, `register`
//! tokens bound to their own node's instances and leases, a revoke seen by every node
//! within 1 s, bootstrap once, and the CLI printing only the secret on stdout.

use std::time::{Duration, Instant};

use harness::acl::Authed;
use harness::{Cluster, Reply, eventually, run_cmd};
use pyxis_client::api::{AclStatus, AuditList, ErrorBody, ErrorCode, LeaseGrantResponse, Role};
use reqwest::Method;
use serde_json::{Value, json};

/// Deadline for the cluster to settle on a change.
const SETTLE: Duration = Duration::from_secs(10);

/// A CLI command should finish quickly; this bound is for a loaded CI machine.
const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// A valid instance of node `node`.
fn instance(node: &str) -> String {
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
fn refused(r: &Reply, status: u16, code: ErrorCode, what: &str) -> ErrorBody {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    let body: ErrorBody = r
        .json()
        .unwrap_or_else(|e| panic!("{what}: not a JSON error: {e}: {}", r.text()));
    assert_eq!(body.error, code, "{what}: {}", r.text());
    assert!(!body.message.is_empty(), "{what}: empty message");
    body
}

/// Everything a refused call could have changed, read with the admin token: every key
/// with its revisions, the tokens, the leases' count through the audit history length.
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

/// Each role's happy path, a register token's own instance and lease, and the audit
/// history naming who changed what.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_does_what_it_may() {
    let c = Cluster::start(3).await.unwrap();
    let a = Authed::new();
    let url = |id| c.url(id);
    let admin = a.bootstrap(&url(1)).await.unwrap();
    let (read, _) = a
        .create(&url(2), &admin, Role::Read, None, "reader")
        .await
        .unwrap();
    let (reg1, _) = a
        .create(&url(2), &admin, Role::Register, Some("n1"), "agent n1")
        .await
        .unwrap();
    let (reg2, _) = a
        .create(&url(2), &admin, Role::Register, Some("n2"), "agent n2")
        .await
        .unwrap();
    let (op, op_accessor) = a
        .create(&url(2), &admin, Role::Operator, None, "alice")
        .await
        .unwrap();
    let ok = async |m: Method, id: u64, path: &str, token: &str, body: Option<&str>| -> Reply {
        let r = a
            .call(m.clone(), &url(id), path, Some(token), body)
            .await
            .unwrap();
        assert!(
            r.is_success(),
            "{m} {path} on node {id}: {} {}",
            r.status,
            r.text()
        );
        r
    };
    // admin: raw kv, a writing txn, members.
    ok(Method::PUT, 3, "/v1/kv/raw/a", &admin, Some("1")).await;
    ok(
        Method::POST,
        2,
        "/v1/txn",
        &admin,
        Some(&json!({"success": [{"op": "put", "key": "/raw/b", "value": "2"}]}).to_string()),
    )
    .await;
    ok(Method::GET, 3, "/v1/acl/tokens", &admin, None).await;
    // operator: services, traffic, datacenters; not raw kv.
    ok(
        Method::PUT,
        3,
        "/v1/services/web",
        &op,
        Some(&json!({"owner": "a"}).to_string()),
    )
    .await;
    ok(
        Method::PUT,
        2,
        "/v1/traffic/web",
        &op,
        Some(&json!({"prefer_same_dc": true}).to_string()),
    )
    .await;
    ok(
        Method::PUT,
        1,
        "/v1/datacenters/dc1",
        &op,
        Some(&json!({"subnets": ["10.0.0.0/16"]}).to_string()),
    )
    .await;
    ok(Method::GET, 2, "/v1/audit", &op, None).await;
    let r = a
        .call(Method::PUT, &url(1), "/v1/kv/raw/a", Some(&op), Some("x"))
        .await
        .unwrap();
    refused(&r, 403, ErrorCode::Forbidden, "operator raw kv");
    // register: its own lease and instance, from a follower too.
    let lease: LeaseGrantResponse = ok(
        Method::POST,
        2,
        "/v1/lease",
        &reg1,
        Some(r#"{"ttl_ms":60000}"#),
    )
    .await
    .json()
    .unwrap();
    let lid = lease.id;
    ok(
        Method::PUT,
        3,
        &format!("/v1/services/web/instances/n1-web?lease={lid}"),
        &reg1,
        Some(&instance("n1")),
    )
    .await;
    ok(
        Method::POST,
        1,
        &format!("/v1/lease/{lid}/keepalive"),
        &reg1,
        None,
    )
    .await;
    ok(
        Method::POST,
        3,
        &format!("/v1/lease/{lid}/keepalive"),
        &reg1,
        None,
    )
    .await;
    // ... not as another node, nor on another node's lease.
    let r = a
        .call(
            Method::PUT,
            &url(1),
            "/v1/services/web/instances/n1-other",
            Some(&reg1),
            Some(&instance("n2")),
        )
        .await
        .unwrap();
    refused(
        &r,
        403,
        ErrorCode::Forbidden,
        "register n1 writing an n2 instance",
    );
    let lease2: LeaseGrantResponse = ok(
        Method::POST,
        1,
        "/v1/lease",
        &reg2,
        Some(r#"{"ttl_ms":60000}"#),
    )
    .await
    .json()
    .unwrap();
    let r = a
        .call(
            Method::PUT,
            &url(1),
            &format!("/v1/services/web/instances/n1-x?lease={}", lease2.id),
            Some(&reg1),
            Some(&instance("n1")),
        )
        .await
        .unwrap();
    refused(&r, 403, ErrorCode::Forbidden, "register n1 on n2's lease");
    // read: GETs and read-only txns.
    let got = ok(
        Method::GET,
        2,
        "/v1/services/web/instances/n1-web",
        &read,
        None,
    )
    .await;
    assert!(got.text().contains("\"node\":\"n1\""), "{}", got.text());
    ok(
        Method::POST,
        3,
        "/v1/txn",
        &read,
        Some(&json!({"success": [{"op": "get", "key": "/raw/a"}]}).to_string()),
    )
    .await;
    let me: Value = ok(Method::GET, 1, "/v1/acl/token/self", &reg1, None)
        .await
        .json()
        .unwrap();
    assert_eq!(me["role"], "register");
    assert_eq!(me["node"], "n1");
    // register: deletes its own instance and revokes its own lease.
    ok(
        Method::DELETE,
        2,
        "/v1/services/web/instances/n1-web",
        &reg1,
        None,
    )
    .await;
    ok(Method::DELETE, 1, &format!("/v1/lease/{lid}"), &reg1, None).await;
    // The audit history, the same on every node, names the operator and the before/after.
    for id in c.ids() {
        let audit = eventually(SETTLE, async || {
            let list: AuditList = ok(Method::GET, id, "/v1/audit", &admin, None)
                .await
                .json()?;
            anyhow::ensure!(
                list.entries
                    .iter()
                    .any(|e| e.what.contains("/v1/datacenters/dc1")),
                "no datacenter change yet"
            );
            Ok(list)
        })
        .await
        .unwrap();
        let e = audit
            .entries
            .iter()
            .find(|e| e.what == "PUT /v1/traffic/web")
            .unwrap_or_else(|| panic!("node {id}: no traffic change in {audit:?}"));
        assert_eq!(e.actor.accessor.as_deref(), Some(op_accessor.as_str()));
        assert_eq!(e.actor.description, "alice");
        assert_eq!(e.changes[0].key, "/ns/traffic/web");
        assert_eq!(e.changes[0].before, None);
        assert!(
            e.changes[0]
                .after
                .as_deref()
                .is_some_and(|v| v.contains("prefer_same_dc"))
        );
        // register changes are not operator or admin changes: not audited.
        assert!(
            !audit
                .entries
                .iter()
                .any(|e| e.what.contains("instances/n1-web")),
            "node {id}: a register change was audited"
        );
        let revisions: Vec<u64> = audit.entries.iter().map(|e| e.revision).collect();
        assert!(
            revisions.windows(2).all(|w| w[0] <= w[1]),
            "newest last: {revisions:?}"
        );
    }
    let last: AuditList = ok(Method::GET, 1, "/v1/audit?limit=1", &admin, None)
        .await
        .json()
        .unwrap();
    assert_eq!(last.entries.len(), 1);
    let r = a
        .call(
            Method::GET,
            &url(1),
            "/v1/audit?limit=0",
            Some(&admin),
            None,
        )
        .await
        .unwrap();
    let e = refused(&r, 400, ErrorCode::BadRequest, "limit=0");
    assert!(e.message.contains("limit"), "{}", e.message);
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
    a.call(
        Method::DELETE,
        &c.url(via),
        &format!("/v1/acl/tokens/{accessor}"),
        Some(&admin),
        None,
    )
    .await
    .unwrap()
    .ok()
    .unwrap();
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
    a.call(
        Method::DELETE,
        &c.url(2),
        &format!("/v1/acl/tokens/{other}"),
        Some(&admin),
        None,
    )
    .await
    .unwrap()
    .ok()
    .unwrap();
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

/// `pyxis acl bootstrap` and `token create` print the secret alone on stdout; a second
/// bootstrap fails with a clear error; `pyxis status` says ACLs are on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_prints_only_the_secret() {
    let c = Cluster::single(&[]).await.unwrap();
    let ep = c.endpoints();
    let pyxis = c.bin();
    let a = Authed::new();
    let out = run_cmd(pyxis, ["acl", "bootstrap", "--endpoints", &ep], CMD_TIMEOUT)
        .await
        .unwrap()
        .success()
        .unwrap();
    let admin = out.stdout.trim_end().to_owned();
    assert_eq!(
        out.stdout,
        format!("{admin}\n"),
        "stdout is the secret alone"
    );
    assert!(
        admin.starts_with("pyx_") && !admin.contains(' '),
        "{admin:?}"
    );
    assert!(
        out.stderr.contains("role=admin"),
        "details on stderr: {}",
        out.stderr
    );
    let again = run_cmd(pyxis, ["acl", "bootstrap", "--endpoints", &ep], CMD_TIMEOUT)
        .await
        .unwrap();
    assert!(!again.status.success());
    assert!(
        again.stderr.contains("already bootstrapped"),
        "{}",
        again.stderr
    );
    assert!(again.stdout.is_empty(), "{}", again.stdout);

    let out = run_cmd(
        pyxis,
        [
            "acl",
            "token",
            "create",
            "--role",
            "register",
            "--node",
            "n1",
            "--description",
            "agent n1",
            "--endpoints",
            &ep,
            "--token",
            &admin,
        ],
        CMD_TIMEOUT,
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let reg = out.stdout.trim_end().to_owned();
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    let me: Value = a
        .call(
            Method::GET,
            &c.url(1),
            "/v1/acl/token/self",
            Some(&reg),
            None,
        )
        .await
        .unwrap()
        .ok()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(me["role"], "register");
    assert_eq!(me["description"], "agent n1");

    // A register token without a node is refused with the field named, and nothing printed.
    let bad = run_cmd(
        pyxis,
        [
            "acl",
            "token",
            "create",
            "--role",
            "register",
            "--endpoints",
            &ep,
            "--token",
            &admin,
        ],
        CMD_TIMEOUT,
    )
    .await
    .unwrap();
    assert!(!bad.status.success());
    assert!(bad.stderr.contains("node"), "{}", bad.stderr);
    assert!(bad.stdout.is_empty());
    // Without the token, the CLI gets the server's 401.
    let anon = run_cmd(
        pyxis,
        ["kv", "put", "/a", "1", "--endpoints", &ep],
        CMD_TIMEOUT,
    )
    .await
    .unwrap();
    assert!(!anon.status.success());
    assert!(anon.stderr.contains("unauthorized"), "{}", anon.stderr);

    // `PYXIS_TOKEN` is the CLI's token when no `--token` is given; the audit history shows
    // the bootstrap and the token created, with who created it.
    let audit = run_cmd_env(
        pyxis,
        ["acl", "audit", "--limit", "5", "--endpoints", &ep],
        &[("PYXIS_TOKEN", admin.as_str())],
    )
    .await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr),
    );
    assert!(audit.status.success(), "{stderr}");
    assert!(
        stdout.contains("what=POST /v1/acl/bootstrap")
            && stdout.contains("who=bootstrap token")
            && stdout.contains("role=register node=n1"),
        "{stdout}"
    );

    let list = run_cmd(
        pyxis,
        [
            "acl",
            "token",
            "list",
            "--endpoints",
            &ep,
            "--token",
            &admin,
        ],
        CMD_TIMEOUT,
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    assert!(
        list.stdout.contains("agent n1") && list.stdout.contains("register"),
        "{}",
        list.stdout
    );
    assert!(!list.stdout.contains(&reg), "a secret was listed");
    let status = run_cmd(
        pyxis,
        ["status", "--endpoints", &ep, "--token", &admin],
        CMD_TIMEOUT,
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    assert!(status.stdout.contains("acl: enabled"), "{}", status.stdout);
    run_cmd(
        pyxis,
        [
            "acl",
            "token",
            "revoke",
            &reg,
            "--endpoints",
            &ep,
            "--token",
            &admin,
        ],
        CMD_TIMEOUT,
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let r = a
        .call(
            Method::GET,
            &c.url(1),
            "/v1/acl/token/self",
            Some(&reg),
            None,
        )
        .await
        .unwrap();
    refused(&r, 401, ErrorCode::Unauthorized, "revoked by the CLI");
}

/// `dns-gateway --token` reads the store with a read token once ACLs are on, and `dig`
/// gets the registered instance: the token travels on the mirror's list and watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_follows_the_store_with_a_read_token() {
    let c = Cluster::single(&[]).await.unwrap();
    let a = Authed::new();
    let base = c.url(1);
    let admin = a.bootstrap(&base).await.unwrap();
    let (read, _) = a
        .create(&base, &admin, Role::Read, None, "gateway")
        .await
        .unwrap();
    let dc = json!({"subnets": ["127.0.0.0/8"]}).to_string();
    a.call(
        Method::PUT,
        &base,
        "/v1/datacenters/dc1",
        Some(&admin),
        Some(&dc),
    )
    .await
    .unwrap()
    .ok()
    .unwrap();
    let gw = harness::Gateway::start(&c.endpoints(), &c.dir().join("logs"), &["--token", &read])
        .await
        .unwrap();
    // Registered after the gateway listed the store, so it arrives through the watch.
    let body = instance("n1").replace("10.0.0.1", "10.0.0.7");
    a.call(
        Method::PUT,
        &base,
        "/v1/services/web/instances/n1-web",
        Some(&admin),
        Some(&body),
    )
    .await
    .unwrap()
    .ok()
    .unwrap();
    eventually(SETTLE, async || {
        let answer = harness::dig(gw.dns(), "web.ns.corp", "A", &[]).await?;
        anyhow::ensure!(answer.rdata("A") == ["10.0.0.7"], "{answer:?}");
        Ok(())
    })
    .await
    .unwrap();
}

/// Runs the CLI with extra environment variables (the harness's `run_cmd` passes none).
async fn run_cmd_env(
    bin: &std::path::Path,
    args: impl IntoIterator<Item = &str>,
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(args).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(CMD_TIMEOUT, cmd.output())
        .await
        .expect("the CLI finished in time")
        .expect("the CLI ran")
}
