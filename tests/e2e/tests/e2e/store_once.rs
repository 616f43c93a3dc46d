//! Exactly-once writes: a write whose reply is lost, then sent again (by the forwarding node
//! or by the client, with the same request id), is applied once, and the repeat answers the
//! first result.
//!
//! The lost reply is made by a TCP relay that lets the request through and swallows the
//! reply (`harness::Proxy::lose_replies`). The long randomized check under kill -9 and
//! SIGSTOP is the history test.

use std::time::Duration;

use harness::{Cluster, Proxy};
use pyxis_client::api::{ErrorBody, ErrorCode, HEADER_VERSION, PutResponse};
use pyxis_client::request_id::HEADER_REQUEST_ID;
use pyxis_client::{Client, ClientOptions};

/// A plain HTTP client for requests that carry a chosen request id.
fn raw() -> reqwest::Client {
    // reqwest links rustls without a provider of its own (see `pyxis_client::tls`).
    pyxis_client::tls::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// `PUT base/v1/kv/{key}` with `value` as request `id`.
async fn put_as(
    base: &str,
    key: &str,
    value: &'static str,
    id: &str,
) -> reqwest::Result<reqwest::Response> {
    raw()
        .put(format!("{base}/v1/kv{key}"))
        .header(HEADER_REQUEST_ID, id)
        .body(value)
        .send()
        .await
}

/// The key's value and version (linearizable read on `base`).
async fn value_and_version(c: &Cluster, base: &str, key: &str) -> (String, u64) {
    let reply = c.api().get(base, key).await.unwrap().ok().unwrap();
    let version = reply.header_u64(HEADER_VERSION).unwrap();
    (reply.text(), version)
}

/// The leader's reply to a write a follower forwarded is lost: the follower sends it again
/// and the store applies it once (before request ids it was proposed and applied twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_write_whose_reply_is_lost_applies_once() {
    let (c, proxies) = Cluster::start_behind_proxies(3).await.unwrap();
    let leader = c.leader().await.unwrap();
    let follower = c.followers(leader)[0];
    let base = c.url(follower);
    let before = c.api().put_ok(&base, "/once/other", "x").await.unwrap();

    proxies[&leader].lose_replies(b"POST /raft/write", 1);
    let reply = c
        .api()
        .put(&base, "/once/k", "v")
        .await
        .unwrap()
        .ok()
        .unwrap();
    let revision = reply.json::<PutResponse>().unwrap().revision;
    assert_eq!(proxies[&leader].replies_lost(), 1, "no reply was lost");

    // One apply: version 1, one revision used by the put, the next write right after it.
    assert_eq!(revision, before + 1);
    assert_eq!(
        value_and_version(&c, &base, "/once/k").await,
        ("v".into(), 1)
    );
    let next = c.api().put_ok(&base, "/once/after", "y").await.unwrap();
    assert_eq!(next, revision + 1, "the lost-reply write was applied twice");
}

/// A client sends a put, its reply is lost on the way back, a later write changes the key,
/// and then the client sends the put again with the same request id: the repeat answers the
/// first revision and does not overwrite the later write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_retry_after_a_lost_reply_applies_once() {
    let c = Cluster::single(&[]).await.unwrap();
    let base = c.url(1);
    let relay = Proxy::start(c.addr(1)).await.unwrap();
    relay.lose_replies(b"PUT /v1/kv/once/k", 1);
    let id = "5eed-1";
    let lost = put_as(&format!("http://{}", relay.addr()), "/once/k", "first", id).await;
    assert!(lost.is_err(), "the reply should have been lost: {lost:?}");
    assert_eq!(relay.replies_lost(), 1);

    let later = c.api().put_ok(&base, "/once/k", "later").await.unwrap();
    let again = put_as(&base, "/once/k", "first", id).await.unwrap();
    assert_eq!(again.status(), 200);
    let first: PutResponse = again.json().await.unwrap();
    assert_eq!(
        first.revision,
        later - 1,
        "the repeat must answer the first apply"
    );
    assert_eq!(
        value_and_version(&c, &base, "/once/k").await,
        ("later".into(), 2)
    );
}

/// `pyxis_client::Client` repeats a write whose reply was lost with the same request id, so
/// the caller gets its revision and the key is written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_library_retries_a_lost_reply_safely() {
    let c = Cluster::single(&[]).await.unwrap();
    let relay = Proxy::start(c.addr(1)).await.unwrap();
    let client = Client::with_options(
        vec![relay.addr().to_owned()],
        ClientOptions::default().retry_budget(Duration::from_secs(20)),
    )
    .unwrap();
    relay.lose_replies(b"PUT /v1/kv/once/lib", 2);
    let revision = client.put("/once/lib", "v").await.unwrap().revision;
    assert_eq!(relay.replies_lost(), 2);
    let got = client.get("/once/lib").await.unwrap().unwrap();
    assert_eq!((got.version, got.mod_rev), (1, revision));
}

/// A repeated lease grant names the same lease; a malformed id is a 400 naming the header,
/// with nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_of_other_writes_and_bad_ids() {
    let c = Cluster::single(&[]).await.unwrap();
    let base = c.url(1);
    let grant = || async {
        raw()
            .post(format!("{base}/v1/lease"))
            .header(HEADER_REQUEST_ID, "ab-7")
            .body(r#"{"ttl_ms": 60000}"#)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let (a, b) = (grant().await, grant().await);
    assert_eq!(a["id"], b["id"], "{a} {b}");
    let leases = c.api().get_path(&base, "/v1/lease/2").await.unwrap();
    assert_eq!(leases.status, 404, "a second lease was granted");

    for bad in ["nope", "0-1", "1-0", "1-2-3", ""] {
        let reply = put_as(&base, "/once/bad", "x", bad).await.unwrap();
        assert_eq!(reply.status(), 400, "{bad:?}");
        let body: ErrorBody = reply.json().await.unwrap();
        assert_eq!(body.error, ErrorCode::BadRequest);
        assert!(body.message.contains(HEADER_REQUEST_ID), "{}", body.message);
    }
    assert_eq!(c.api().get(&base, "/once/bad").await.unwrap().status, 404);
}
