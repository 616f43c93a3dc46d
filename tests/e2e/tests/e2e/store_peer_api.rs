//! The peer API (`/raft/*`) is not open to whoever reaches the port: with a peer token, a
//! call without it is refused before openraft sees it (even with the cluster id `/v1/status`
//! hands out); a forwarded command the public API would refuse is refused; small routes
//! have small body limits; and a cluster with a token forms, forwards and fails over.
//!
//! `/raft/write` bodies are built here by hand: the codec is postcard after a format byte 1,
//! and the `Command` variants keep their order for ever (logs must decode), so the few
//! bytes below stay valid. Each test first shows a well-formed body being accepted, so a
//! stale encoding could not make a refusal pass for the wrong reason.

use std::time::Duration;

use harness::{Cluster, eventually};

/// The peer token the tests' clusters share.
const TOKEN: &str = "e2e-peer-token-0123456789abcdef";

/// Headers of a peer call.
const CLUSTER_HEADER: &str = "x-pyxis-cluster-id";
const TOKEN_HEADER: &str = "x-pyxis-peer-token";
const FROM_HEADER: &str = "x-pyxis-from";

/// Variant numbers of the server's `Command` and `Op` enums, in declaration order.
const CMD_PUT: u8 = 0;
const CMD_TXN: u8 = 2;
const CMD_REQUEST: u8 = 5;
const CMD_MEMBER_STARTED: u8 = 6;
const OP_PUT: u8 = 0;

/// The 4 MiB value limit of the API.
const MAX_VALUE_BYTES: usize = 4 * 1024 * 1024;

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// `Command::Put { key, value, prev_rev: None, lease: None }`.
fn put_cmd(key: &str, value: &[u8]) -> Vec<u8> {
    let mut out = vec![CMD_PUT];
    bytes(&mut out, key.as_bytes());
    bytes(&mut out, value);
    out.extend([0, 0]);
    out
}

/// `Command::Txn` with no compares, `n` puts of `/peer/txn/{i}` and no failure ops.
fn txn_puts(n: usize) -> Vec<u8> {
    let mut out = vec![CMD_TXN];
    varint(&mut out, 0);
    varint(&mut out, n as u64);
    for i in 0..n {
        out.push(OP_PUT);
        bytes(&mut out, format!("/peer/txn/{i}").as_bytes());
        bytes(&mut out, b"v");
        out.push(0);
    }
    varint(&mut out, 0);
    out
}

/// `Command::MemberStarted { id }`.
fn member_started(id: u64) -> Vec<u8> {
    let mut out = vec![CMD_MEMBER_STARTED];
    varint(&mut out, id);
    out
}

/// `Command::Request { id: session-seq, cmd }`, encoded with the format byte.
fn request(session: u64, seq: u64, cmd: &[u8]) -> Vec<u8> {
    let mut out = vec![1, CMD_REQUEST];
    varint(&mut out, session);
    varint(&mut out, seq);
    out.extend_from_slice(cmd);
    out
}

fn raw() -> reqwest::Client {
    // reqwest links rustls without a provider of its own (see `pyxis_client::tls`).
    pyxis_client::tls::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// What a peer call sends: the cluster id, and a token if `token` is given.
struct Creds<'a> {
    cluster_id: &'a str,
    token: Option<&'a str>,
}

async fn peer_call(base: &str, rpc: &str, creds: &Creds<'_>, body: Vec<u8>) -> (u16, String) {
    let mut req = raw()
        .post(format!("{base}/raft/{rpc}"))
        .header(CLUSTER_HEADER, creds.cluster_id)
        .header(FROM_HEADER, "1")
        .body(body);
    if let Some(t) = creds.token {
        req = req.header(TOKEN_HEADER, t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = String::from_utf8_lossy(&resp.bytes().await.unwrap()).into_owned();
    (status, text)
}

async fn cluster_id(c: &Cluster, base: &str) -> String {
    c.api()
        .status(base)
        .await
        .unwrap()
        .cluster_id
        .expect("a running node has a cluster id")
}

/// The store's revision as `/v1/kv/?prefix` reports it, and whether `/peer/` holds anything.
async fn revision_and_peer_keys(c: &Cluster, base: &str) -> (u64, usize) {
    let listing = c.api().range_ok(base, "/peer/").await.unwrap();
    (listing.revision, listing.entries.len())
}

/// With a peer token, `/raft/write`, `/raft/append` and `/raft/vote` without it (401) or with
/// another one (403) are refused though they carry the right cluster id, and nothing is
/// written; the same write with the token applies. Before the token, the write applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_calls_without_the_token_are_refused_and_write_nothing() {
    let c = Cluster::single(&["--peer-token", TOKEN]).await.unwrap();
    let base = c.url(1);
    let id = cluster_id(&c, &base).await;
    let before = revision_and_peer_keys(&c, &base).await;
    let write = request(7, 1, &put_cmd("/peer/intruder", b"x"));

    for (token, status) in [(None, 401), (Some("not-the-token"), 403)] {
        let creds = Creds {
            cluster_id: &id,
            token,
        };
        for (rpc, body) in [
            ("write", write.clone()),
            ("append", vec![1, 0, 0]),
            ("vote", vec![1, 0, 0]),
            ("read-index", Vec::new()),
        ] {
            let (got, text) = peer_call(&base, rpc, &creds, body).await;
            assert_eq!(got, status, "/raft/{rpc} with token {token:?}: {text}");
            assert!(text.contains(TOKEN_HEADER), "{text}");
        }
    }
    assert_eq!(revision_and_peer_keys(&c, &base).await, before);
    assert_eq!(
        c.api().get(&base, "/peer/intruder").await.unwrap().status,
        404
    );

    // The same body with the token is a valid forwarded write.
    let creds = Creds {
        cluster_id: &id,
        token: Some(TOKEN),
    };
    let (got, text) = peer_call(&base, "write", &creds, write).await;
    assert_eq!(got, 200, "{text}");
    let value = c
        .api()
        .get(&base, "/peer/intruder")
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(value.text(), "x");
}

/// A forwarded write the public API would refuse (bad key, value over 4 MiB, more txn ops
/// than --max-txn-ops, a nested request, another member's `MemberStarted`) is refused with
/// 400 even with the right token and cluster id, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_forwarded_commands_are_refused_and_write_nothing() {
    let c = Cluster::single(&["--peer-token", TOKEN, "--max-txn-ops", "16"])
        .await
        .unwrap();
    let base = c.url(1);
    let id = cluster_id(&c, &base).await;
    let creds = Creds {
        cluster_id: &id,
        token: Some(TOKEN),
    };
    // Well-formed ones at the limits pass, so the encodings below are right.
    let (got, text) = peer_call(&base, "write", &creds, request(9, 1, &txn_puts(16))).await;
    assert_eq!(got, 200, "{text}");
    let big = vec![b'v'; MAX_VALUE_BYTES];
    let (got, text) = peer_call(
        &base,
        "write",
        &creds,
        request(9, 2, &put_cmd("/peer/big", &big)),
    )
    .await;
    assert_eq!(got, 200, "{text}");
    let before = revision_and_peer_keys(&c, &base).await;
    assert_eq!(before.1, 17);

    let too_big = vec![b'v'; MAX_VALUE_BYTES + 1];
    let nested = request(9, 7, &put_cmd("/peer/nested", b"x"));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a key without '/'",
            put_cmd("peer/nokey", b"x"),
            "key: must start with '/'",
        ),
        (
            "a control character",
            put_cmd("/peer/a\u{7}b", b"x"),
            "control character",
        ),
        (
            "a value over 4 MiB",
            put_cmd("/peer/huge", &too_big),
            "over the limit",
        ),
        ("17 txn ops", txn_puts(17), "(--max-txn-ops)"),
        ("a nested request", nested[1..].to_vec(), "another request"),
        (
            "another member's start",
            member_started(2),
            "announces only itself",
        ),
    ];
    for (seq, (what, cmd, says)) in (10..).zip(cases) {
        let (got, text) = peer_call(&base, "write", &creds, request(9, seq, &cmd)).await;
        assert_eq!(got, 400, "{what}: {text}");
        assert!(text.contains(says), "{what}: {text}");
    }
    // A command without a request id was refused before and still is.
    let mut bare = vec![1];
    bare.extend(put_cmd("/peer/bare", b"x"));
    let (got, text) = peer_call(&base, "write", &creds, bare).await;
    assert_eq!(got, 400, "{text}");
    assert_eq!(revision_and_peer_keys(&c, &base).await, before);
}

/// `/raft/vote`, `/raft/pre-vote` and `/raft/read-index` take small bodies only: a 256 KiB
/// one is refused with 413 (the raft routes had no body limit at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_to_a_small_peer_route_is_refused() {
    let c = Cluster::single(&["--peer-token", TOKEN]).await.unwrap();
    let base = c.url(1);
    let id = cluster_id(&c, &base).await;
    let creds = Creds {
        cluster_id: &id,
        token: Some(TOKEN),
    };
    for rpc in ["vote", "pre-vote", "read-index"] {
        let (got, text) = peer_call(&base, rpc, &creds, vec![1; 256 * 1024]).await;
        assert_eq!(got, 413, "/raft/{rpc}: {text}");
    }
    // The node still leads and serves.
    c.api().put_ok(&base, "/peer/after", "ok").await.unwrap();
}

/// A 3-node cluster whose members share a token (from a file) forms, forwards writes from
/// followers, recovers from a kill -9 of its leader, and grows by a `--join` node given the
/// same token (which adopts the cluster id only from a caller with the token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_a_peer_token_forwards_and_fails_over() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{TOKEN}\n")).unwrap();
    let path = file.path().display().to_string();
    let mut c = Cluster::start_with(3, &["--peer-token-file", &path])
        .await
        .unwrap();
    let leader = c.leader().await.unwrap();
    for (i, f) in c.followers(leader).into_iter().enumerate() {
        c.api()
            .put_ok(&c.url(f), &format!("/peer/before/{i}"), "v")
            .await
            .unwrap();
    }

    c.kill9(leader).unwrap();
    let new = c.leader().await.unwrap();
    assert_ne!(new, leader);
    let follower = c.followers(new)[0];
    eventually(Duration::from_secs(30), async || {
        c.api().put_ok(&c.url(follower), "/peer/after", "v").await
    })
    .await
    .unwrap();

    c.restart(leader).await.unwrap();
    c.add_node(4).await.unwrap();
    for id in [leader, 4] {
        eventually(Duration::from_secs(30), async || {
            let got = c.api().range_ok(&c.url(id), "/peer/").await?;
            anyhow::ensure!(got.entries.len() == 3, "{} keys so far", got.entries.len());
            Ok(())
        })
        .await
        .unwrap();
    }
    c.api()
        .put_ok(&c.url(4), "/peer/from-4", "v")
        .await
        .unwrap();
}
