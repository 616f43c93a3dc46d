//! ACL roles on real processes: each role's happy path with the audit history naming who
//! changed what, `register` tokens bound to their own node's instances and leases, the CLI
//! printing only the secret on stdout, and `dns-gateway --token`. Refusals are in `acl`.

use harness::acl::Authed;
use harness::{Cluster, Reply, eventually, run_cmd};
use pyxis_client::api::{AuditList, ErrorCode, LeaseGrantResponse, Role};
use reqwest::Method;
use serde_json::{Value, json};

use super::acl::{CMD_TIMEOUT, SETTLE, instance, refused};

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
    // Its node's agent status record, raw, on its own lease; not another node's record,
    // not on another node's lease, not as a prefix delete.
    ok(
        Method::PUT,
        2,
        &format!("/v1/kv/ns/agents/n1?lease={lid}"),
        &reg1,
        Some(r#"{"state":"ok"}"#),
    )
    .await;
    for (path, what) in [
        ("/v1/kv/ns/agents/n2".to_owned(), "another node's record"),
        (
            format!("/v1/kv/ns/agents/n1?lease={}", lease2.id),
            "its record on n2's lease",
        ),
        (
            "/v1/kv/ns/agents/n1?prefix=true".to_owned(),
            "a prefix delete",
        ),
    ] {
        let method = if what == "a prefix delete" {
            Method::DELETE
        } else {
            Method::PUT
        };
        let r = a
            .call(method, &url(3), &path, Some(&reg1), Some("{}"))
            .await
            .unwrap();
        refused(
            &r,
            403,
            ErrorCode::Forbidden,
            &format!("register n1: {what}"),
        );
    }
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
