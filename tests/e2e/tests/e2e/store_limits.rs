//! One request cannot exhaust a node: read-only transactions are served as reads (no log
//! entry), transactions are capped by `--max-txn-ops`, and no reply is built past
//! `--max-response-bytes` (a huge read is a 413 that costs the nodes no memory and nothing
//! in the log, so a restart has nothing to replay).

use std::time::Duration;

use harness::{Cluster, Reply, eventually};
use pyxis_client::api::{
    ErrorCode, LeaseGrantResponse, NodeStatus, RangeResponse, TxnOpResult, TxnResponse,
};
use serde_json::{Value, json};

/// Keys loaded for the memory test, and the size of each value.
const KEYS: usize = 20_000;
const VALUE_BYTES: usize = 1024;

/// Puts `KEYS` keys of `VALUE_BYTES` under `/big/` through `url`, 100 per transaction.
async fn load(c: &Cluster, url: &str) {
    let value = "v".repeat(VALUE_BYTES);
    let batches: Vec<Value> = (0..KEYS / 100)
        .map(|b| {
            let ops: Vec<Value> = (0..100)
                .map(|i| json!({"op": "put", "key": format!("/big/{:06}", b * 100 + i), "value": value}))
                .collect();
            json!({"success": ops})
        })
        .collect();
    for chunk in batches.chunks(4) {
        let replies =
            futures::future::join_all(chunk.iter().map(|body| c.api().txn(url, body))).await;
        for r in replies {
            r.unwrap().ok().unwrap();
        }
    }
}

/// `(applied_index, revision)` of every node, once all of them agree.
async fn settled_positions(c: &Cluster) -> Vec<(u64, u64)> {
    eventually(Duration::from_secs(60), async || {
        let mut seen = Vec::new();
        for id in c.ids() {
            let s: NodeStatus = c.api().status(&c.url(id)).await?;
            seen.push((s.applied_index.unwrap_or(0), s.revision));
        }
        anyhow::ensure!(
            seen.windows(2).all(|w| w[0] == w[1]),
            "not settled: {seen:?}"
        );
        Ok(seen)
    })
    .await
    .unwrap()
}

/// A `VmRSS`/`VmHWM` line of `/proc/PID/status`, in bytes.
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad line {line:?}"));
    kib * 1024
}

fn expect_error(reply: &Reply, status: u16, code: ErrorCode, words: &[&str]) {
    assert_eq!(reply.status, status, "{}", reply.text());
    let body = reply.error_body().unwrap();
    assert_eq!(body.error, code, "{body:?}");
    for w in words {
        assert!(body.message.contains(w), "{w:?} not in {:?}", body.message);
    }
}

/// The crash loop, scaled down: a read-only txn of 128 prefix gets over 20k keys of
/// 1 KiB would build about 2.8 GB on every node. Now it is a 413 naming the limit; every
/// node's peak RSS stays within a bound far below that; no node's applied index or revision
/// moves (nothing entered the log); a restart of all nodes comes up with every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_read_is_refused_without_memory_or_log() {
    let mut c = Cluster::start(3).await.unwrap();
    let leader = c.leader().await.unwrap();
    let follower = c.followers(leader)[0];
    load(&c, &c.url(leader)).await;
    let before = settled_positions(&c).await;
    let peak_before: Vec<u64> = c
        .ids()
        .iter()
        .map(|id| proc_kib(c.proc(*id).pid(), "VmHWM:"))
        .collect();

    let gets: Vec<Value> = (0..128)
        .map(|_| json!({"op": "get", "key": "/big/", "prefix": true}))
        .collect();
    let huge = json!({"compare": [{"key": "/big/000000", "exists": true}], "success": gets});
    for id in [follower, leader] {
        let reply = c.api().txn(&c.url(id), &huge).await.unwrap();
        expect_error(
            &reply,
            413,
            ErrorCode::ValueTooLarge,
            &["response", "--max-response-bytes"],
        );
    }
    // The shape (1,000 gets) is refused by the op cap before anything is read.
    let thousand: Vec<Value> = (0..1000)
        .map(|_| json!({"op": "get", "key": "/big/", "prefix": true}))
        .collect();
    let reply = c
        .api()
        .txn(&c.url(follower), &json!({"success": thousand}))
        .await
        .unwrap();
    expect_error(
        &reply,
        400,
        ErrorCode::BadRequest,
        &["success", "1000", "128", "--max-txn-ops"],
    );

    // The refused reads built at most about the 64 MiB reply limit, not gigabytes.
    for (i, id) in c.ids().iter().enumerate() {
        let peak = proc_kib(c.proc(*id).pid(), "VmHWM:");
        let grew = peak.saturating_sub(peak_before[i]);
        eprintln!(
            "node {id}: peak RSS {} MiB, {} MiB more than before the reads",
            peak >> 20,
            grew >> 20
        );
        assert!(
            grew < 256 << 20,
            "node {id}: peak RSS grew by {} MiB (from {} MiB)",
            grew >> 20,
            peak_before[i] >> 20
        );
    }
    assert_eq!(
        settled_positions(&c).await,
        before,
        "something entered the log"
    );

    // A listing under the limit is whole; `limit` cuts it and says so.
    let all: RangeResponse = c.api().range_ok(&c.url(follower), "/big/").await.unwrap();
    assert_eq!((all.entries.len(), all.more), (KEYS, false));
    let some: RangeResponse = c
        .api()
        .get_json(&c.url(follower), "/v1/kv/big/?prefix=true&limit=10")
        .await
        .unwrap();
    assert_eq!((some.entries.len(), some.more), (10, true));
    assert_eq!(some.entries[9].key, "/big/000009");

    // Nothing in the log to replay: a restart of every node comes up with every key.
    for id in c.ids() {
        c.kill9(id).unwrap();
    }
    c.restart_many(&c.ids()).await.unwrap();
    c.leader().await.unwrap();
    for id in c.ids() {
        eventually(Duration::from_secs(60), async || {
            let s = c.api().status(&c.url(id)).await?;
            anyhow::ensure!(s.keys == KEYS as u64, "node {id}: {s:?}");
            let h = c.api().get_path(&c.url(id), "/healthz").await?;
            anyhow::ensure!(h.status == 200, "node {id}: {}", h.text());
            Ok(())
        })
        .await
        .unwrap();
    }
}

/// A txn of compares and gets is answered from the applied state: the same result a logged
/// txn gave (current revision, the branch the compares pick), linearizable on a follower
/// (it sees a put acknowledged just before), and no node's applied index moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_txn_takes_no_log_entry() {
    let c = Cluster::start(3).await.unwrap();
    let leader = c.leader().await.unwrap();
    let follower = c.followers(leader)[0];
    let api = c.api();
    api.put_ok(&c.url(leader), "/ro/a", "1").await.unwrap();
    api.put_ok(&c.url(leader), "/ro/b", "2").await.unwrap();
    // Acknowledged by the leader, then read through the follower at once.
    let rev = api.put_ok(&c.url(leader), "/ro/c", "3").await.unwrap();
    let before = settled_positions(&c).await;

    let read = |cmp: Value| {
        json!({
            "compare": [cmp],
            "success": [{"op": "get", "key": "/ro/", "prefix": true}, {"op": "get", "key": "/ro/c"}],
            "failure": [{"op": "get", "key": "/ro/a"}],
        })
    };
    for (url, path) in [
        (c.url(follower), "/v1/txn"),
        (c.url(leader), "/v1/txn"),
        (c.url(follower), "/v1/txn?consistency=serializable"),
    ] {
        let body = read(json!({"key": "/ro/a", "value": "1"}));
        let reply = api
            .post_json(&url, path, &body)
            .await
            .unwrap()
            .ok()
            .unwrap();
        let t: TxnResponse = reply.json().unwrap();
        assert!(t.succeeded, "{t:?}");
        assert_eq!(t.revision, rev, "{t:?}");
        let TxnOpResult::Get { entries, more } = &t.results[0] else {
            panic!("{t:?}")
        };
        let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!((keys, *more), (vec!["/ro/a", "/ro/b", "/ro/c"], false));
        let TxnOpResult::Get { entries, .. } = &t.results[1] else {
            panic!("{t:?}")
        };
        assert_eq!(
            (entries[0].value.as_ref(), entries[0].mod_rev),
            (&b"3"[..], rev)
        );
    }
    // A compare that fails runs the failure branch, still without a log entry.
    let t: TxnResponse = api
        .txn(
            &c.url(follower),
            &read(json!({"key": "/ro/a", "mod_rev": 999})),
        )
        .await
        .unwrap()
        .ok()
        .unwrap()
        .json()
        .unwrap();
    assert!(!t.succeeded);
    assert_eq!(t.results.len(), 1, "{t:?}");
    assert_eq!(
        settled_positions(&c).await,
        before,
        "a read entered the log"
    );

    // `serializable` is for reads only.
    let write = json!({"success": [{"op": "put", "key": "/ro/d", "value": "4"}]});
    let reply = api
        .post_json(&c.url(follower), "/v1/txn?consistency=serializable", &write)
        .await
        .unwrap();
    expect_error(&reply, 400, ErrorCode::BadRequest, &["consistency"]);
}

/// `--max-txn-ops` counts the compares and each branch on its own, and its 400 names the
/// field and the limit; write txns (with gets) still commit, and one whose gets would go
/// over `--max-response-bytes` is refused with 413 before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_caps_name_the_limit_and_writes_still_work() {
    let c = Cluster::single(&["--max-txn-ops", "4", "--max-response-bytes", "20000"])
        .await
        .unwrap();
    let api = c.api();
    let url = c.url(1);
    let put = |k: &str| json!({"op": "put", "key": k, "value": "x"});
    let get = |k: &str| json!({"op": "get", "key": k, "prefix": true});

    let five: Vec<Value> = (0..5).map(|i| put(&format!("/cap/{i}"))).collect();
    let reply = api.txn(&url, &json!({"success": five})).await.unwrap();
    expect_error(
        &reply,
        400,
        ErrorCode::BadRequest,
        &["success", "5", "4", "--max-txn-ops"],
    );
    let cmps: Vec<Value> = (0..5)
        .map(|i| json!({"key": format!("/cap/{i}"), "exists": false}))
        .collect();
    let reply = api.txn(&url, &json!({"compare": cmps})).await.unwrap();
    expect_error(
        &reply,
        400,
        ErrorCode::BadRequest,
        &["compare", "--max-txn-ops"],
    );
    let revision_before = api.status(&url).await.unwrap().revision;

    // Four ops in each branch is within the cap; the writes commit with their gets.
    let four: Vec<Value> = (0..3)
        .map(|i| put(&format!("/cap/{i}")))
        .chain([get("/cap/")])
        .collect();
    let failure: Vec<Value> = (0..4).map(|i| get(&format!("/cap/{i}"))).collect();
    let t: TxnResponse = api
        .txn(&url, &json!({"success": four, "failure": failure}))
        .await
        .unwrap()
        .ok()
        .unwrap()
        .json()
        .unwrap();
    assert!(t.succeeded);
    assert_eq!(t.revision, revision_before + 1);
    let TxnOpResult::Get { entries, more } = &t.results[3] else {
        panic!("{t:?}")
    };
    assert_eq!(
        (entries.len(), *more),
        (3, false),
        "the get sees the txn's own puts"
    );

    // 30 values of 1 KiB weigh more than 20,000 bytes: a write txn reading them all is refused.
    let big = "b".repeat(1024);
    for batch in 0..10 {
        let ops: Vec<Value> = (0..3)
            .map(|i| json!({"op": "put", "key": format!("/fat/{}", batch * 3 + i), "value": big}))
            .collect();
        api.txn(&url, &json!({"success": ops}))
            .await
            .unwrap()
            .ok()
            .unwrap();
    }
    let revision = api.status(&url).await.unwrap().revision;
    let reply = api
        .txn(&url, &json!({"success": [put("/cap/late"), get("/fat/")]}))
        .await
        .unwrap();
    expect_error(
        &reply,
        413,
        ErrorCode::ValueTooLarge,
        &["--max-response-bytes", "20000"],
    );
    let reply = api.range(&url, "/fat/").await.unwrap();
    expect_error(&reply, 413, ErrorCode::ValueTooLarge, &["/fat/", "limit=N"]);
    assert_eq!(
        api.status(&url).await.unwrap().revision,
        revision,
        "the refused txn wrote"
    );
    assert_eq!(api.get(&url, "/cap/late").await.unwrap().status, 404);

    // The typed instance listing is bounded too: 100 instances of about 300 bytes each.
    let instance = json!({"address": "10.0.0.1", "port": 8080, "datacenter": "dc1",
        "version": "v1", "weight": 100, "tags": ["http"], "meta": {"zone": "a"},
        "status": "passing", "node": "n1"});
    for i in 0..100 {
        let path = format!("/v1/services/web/instances/web-{i}");
        api.put_json(&url, &path, &instance)
            .await
            .unwrap()
            .ok()
            .unwrap();
    }
    let reply = api
        .get_path(&url, "/v1/services/web/instances")
        .await
        .unwrap();
    expect_error(
        &reply,
        413,
        ErrorCode::ValueTooLarge,
        &["instances of web", "--max-response-bytes"],
    );

    // And the service summary: 25 definitions of about 1 KiB each.
    let services = api.get_path(&url, "/v1/services").await.unwrap();
    assert_eq!(services.status, 200, "{}", services.text());
    for i in 0..25 {
        let def = json!({"owner": "team", "description": "d".repeat(1000)});
        api.put_json(&url, &format!("/v1/services/svc-{i}"), &def)
            .await
            .unwrap()
            .ok()
            .unwrap();
    }
    let reply = api.get_path(&url, "/v1/services").await.unwrap();
    expect_error(
        &reply,
        413,
        ErrorCode::ValueTooLarge,
        &["services", "--max-response-bytes"],
    );

    // So is a lease's key list: 100 keys of about 210 bytes.
    let lease: LeaseGrantResponse = api
        .post_json(&url, "/v1/lease", &json!({"ttl_ms": 600_000}))
        .await
        .unwrap()
        .ok()
        .unwrap()
        .json()
        .unwrap();
    let long = "k".repeat(200);
    for i in 0..100 {
        let path = format!("{url}/v1/kv/lk/{i:03}{long}?lease={}", lease.id);
        let body = bytes::Bytes::from_static(b"x");
        let reply = api
            .request(reqwest::Method::PUT, &path, Some(body), None)
            .await
            .unwrap();
        reply.ok().unwrap();
    }
    let reply = api
        .get_path(&url, &format!("/v1/lease/{}", lease.id))
        .await
        .unwrap();
    expect_error(
        &reply,
        413,
        ErrorCode::ValueTooLarge,
        &["keys of lease", "--max-response-bytes"],
    );
}
