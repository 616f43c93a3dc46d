//! Request validation: bad keys, values, parameters and bodies get a 4xx JSON error that
//! names the problem, and leave the key space exactly as it was. Also the value size limit
//! and the compare-and-set / transaction happy paths on a single node.

use bytes::Bytes;
use harness::{Cluster, Reply};
use pyxis_client::api::{ErrorCode, MAX_KEY_BYTES, MAX_VALUE_BYTES, TxnResponse};
use reqwest::Method;
use serde_json::json;

/// Every bad request is refused with the right status, code and message, and afterwards the
/// listing of `/` (entries and revision) and the node's revision are unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_changes_nothing() {
    let c = Cluster::single(&[]).await.unwrap();
    let api = c.api();
    let url = c.url(1);
    api.put_ok(&url, "/input/a", "1").await.unwrap();
    api.put_ok(&url, "/input/b", "2").await.unwrap();
    let before = api.range_ok(&url, "/").await.unwrap();
    let status_before = api.status(&url).await.unwrap();
    assert!(before.entries.len() >= 2, "{before:?}");

    let put_raw = async |path: &str, body: Bytes| {
        api.request(Method::PUT, &format!("{url}{path}"), Some(body), None)
            .await
            .unwrap()
    };
    let small = || Bytes::from_static(b"x");

    let reply = put_raw("/v1/kv/", small()).await;
    expect_error(
        &reply,
        400,
        ErrorCode::InvalidKey,
        &["key: / names no key"],
        "the root as a key",
    );

    let reply = put_raw("/v1/kv/%FF", small()).await;
    expect_error(
        &reply,
        400,
        ErrorCode::InvalidKey,
        &["utf"],
        "non-UTF-8 key",
    );

    let reply = put_raw("/v1/kv/a%07b", small()).await;
    expect_error(
        &reply,
        400,
        ErrorCode::InvalidKey,
        &["control"],
        "control char in key",
    );

    let long_key = format!("/v1/kv/{}", "k".repeat(MAX_KEY_BYTES));
    let reply = put_raw(&long_key, small()).await;
    expect_error(
        &reply,
        400,
        ErrorCode::InvalidKey,
        &["key"],
        "key over the limit",
    );

    let too_big = Bytes::from(vec![b'v'; MAX_VALUE_BYTES + 1]);
    let reply = put_raw("/v1/kv/input/big", too_big).await;
    expect_error(
        &reply,
        413,
        ErrorCode::ValueTooLarge,
        &["value"],
        "value of 4 MiB + 1",
    );

    let reply = put_raw("/v1/kv/input/a?prev_rev=abc", small()).await;
    expect_error(
        &reply,
        400,
        ErrorCode::BadRequest,
        &["prev_rev"],
        "prev_rev=abc",
    );

    let reply = api.txn(&url, &json!({ "compare": 5 })).await.unwrap();
    expect_error(
        &reply,
        400,
        ErrorCode::BadRequest,
        &["compare"],
        "txn compare: 5",
    );

    let reply = api
        .request(
            Method::POST,
            &format!("{url}/v1/txn"),
            Some(Bytes::from_static(b"this is not json {")),
            Some("application/json"),
        )
        .await
        .unwrap();
    expect_error(
        &reply,
        400,
        ErrorCode::BadRequest,
        &["json"],
        "non-JSON txn body",
    );

    let reply = api.remove_member(&url, 99).await.unwrap();
    expect_error(
        &reply,
        404,
        ErrorCode::NotFound,
        &["99"],
        "unknown member id",
    );

    let after = api.range_ok(&url, "/").await.unwrap();
    assert_eq!(after, before, "key space changed by rejected requests");
    let status_after = api.status(&url).await.unwrap();
    assert_eq!(
        status_after.revision, status_before.revision,
        "revision changed by rejected requests"
    );
}

/// A value of exactly 4 MiB is accepted, read back intact, and can be deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn largest_value_is_accepted() {
    let c = Cluster::single(&[]).await.unwrap();
    let api = c.api();
    let url = c.url(1);
    let value: Vec<u8> = (0..MAX_VALUE_BYTES).map(|i| (i % 251) as u8).collect();
    let revision = api.put_ok(&url, "/input/max", value.clone()).await.unwrap();
    let reply = api.get(&url, "/input/max").await.unwrap().ok().unwrap();
    assert_eq!(reply.body.len(), MAX_VALUE_BYTES);
    assert!(reply.body == value, "4 MiB value came back different");
    assert_eq!(reply.mod_revision(), Some(revision));
    let deleted = api.delete_ok(&url, "/input/max").await.unwrap();
    assert_eq!(deleted.deleted, 1);
    let gone = api.get(&url, "/input/max").await.unwrap();
    expect_error(&gone, 404, ErrorCode::NotFound, &[], "deleted key");
}

/// `prev_rev` compare-and-set and a transaction with compares behave like etcd's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_and_txn() {
    let c = Cluster::single(&[]).await.unwrap();
    let api = c.api();
    let url = c.url(1);

    // prev_rev=0 means "must not exist".
    let created = api
        .put_cas(&url, "/cas/k", "one", 0)
        .await
        .unwrap()
        .ok()
        .unwrap();
    let rev1 = created
        .json::<pyxis_client::api::PutResponse>()
        .unwrap()
        .revision;
    let again = api.put_cas(&url, "/cas/k", "dup", 0).await.unwrap();
    expect_error(
        &again,
        409,
        ErrorCode::CompareFailed,
        &[],
        "create over existing key",
    );
    let stale = api
        .put_cas(&url, "/cas/k", "two", rev1 + 100)
        .await
        .unwrap();
    expect_error(&stale, 409, ErrorCode::CompareFailed, &[], "stale prev_rev");
    let ok = api.put_cas(&url, "/cas/k", "two", rev1).await.unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
    let current = api.get(&url, "/cas/k").await.unwrap().ok().unwrap();
    assert_eq!(current.text(), "two");

    let txn = json!({
        "compare": [{ "key": "/cas/k", "cmp": "eq", "value": "two" }],
        "success": [
            { "op": "put", "key": "/cas/t", "value": "from-success" },
            { "op": "get", "key": "/cas/", "prefix": true }
        ],
        "failure": [{ "op": "put", "key": "/cas/t", "value": "from-failure" }]
    });
    let reply = api.txn(&url, &txn).await.unwrap().ok().unwrap();
    let resp: TxnResponse = reply.json().unwrap();
    assert!(resp.succeeded, "{resp:?}");
    assert_eq!(resp.results.len(), 2, "{resp:?}");
    let t = api.get(&url, "/cas/t").await.unwrap().ok().unwrap();
    assert_eq!(t.text(), "from-success");

    let txn = json!({
        "compare": [{ "key": "/cas/k", "cmp": "eq", "value": "nope" }],
        "success": [{ "op": "delete", "key": "/cas/", "prefix": true }],
        "failure": [{ "op": "put", "key": "/cas/t", "value": "from-failure" }]
    });
    let resp: TxnResponse = api
        .txn(&url, &txn)
        .await
        .unwrap()
        .ok()
        .unwrap()
        .json()
        .unwrap();
    assert!(!resp.succeeded, "{resp:?}");
    let t = api.get(&url, "/cas/t").await.unwrap().ok().unwrap();
    assert_eq!(t.text(), "from-failure");
}

/// Asserts `reply` is a JSON error with this status and code, whose message mentions every
/// one of `needles` (case-insensitively).
fn expect_error(reply: &Reply, status: u16, code: ErrorCode, needles: &[&str], what: &str) {
    assert_eq!(
        reply.status,
        status,
        "{what}: status {} body {:?}",
        reply.status,
        reply.text()
    );
    let content_type = reply
        .headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        content_type.starts_with("application/json"),
        "{what}: content-type {content_type:?}, body {:?}",
        reply.text()
    );
    let body = reply
        .error_body()
        .unwrap_or_else(|e| panic!("{what}: not an error body: {e:#}"));
    assert_eq!(body.error, code, "{what}: {body:?}");
    assert!(!body.message.is_empty(), "{what}: empty message");
    let message = body.message.to_lowercase();
    for needle in needles {
        assert!(
            message.contains(&needle.to_lowercase()),
            "{what}: message {:?} does not mention {needle:?}",
            body.message
        );
    }
}
