//! The agent's `GET /v1/resolve/NAME`: the policy-applied list follows a registration and a
//! critical mark, `wait_rev` blocks until the list changes and wakes within 1 s of it, times
//! out with the same index when only other data changed, and bad input is a 400 or 404
//! naming the field. Callbacks are in `agent::callbacks`.

use std::time::Duration;

use harness::{Api, Reply, eventually};
use serde_json::Value;
use tokio::time::Instant;

use super::dns::DnsRig;
use crate::gateway::{LONG, inst};

/// `GET /v1/resolve/...` on the agent, with a client that waits long enough for blocking calls.
async fn get(rig: &DnsRig, path_and_query: &str) -> Reply {
    Api::with_timeout(Duration::from_secs(90))
        .get_path(rig.agent.url(), &format!("/v1/resolve/{path_and_query}"))
        .await
        .unwrap()
}

/// Starts a blocking `GET /v1/resolve/{query}` in the background; the task yields the reply
/// and when it arrived.
fn spawn_get(rig: &DnsRig, query: String) -> tokio::task::JoinHandle<(Reply, Instant)> {
    let base = rig.agent.url().to_owned();
    tokio::spawn(async move {
        let r = Api::with_timeout(Duration::from_secs(90))
            .get_path(&base, &format!("/v1/resolve/{query}"))
            .await
            .unwrap();
        (r, Instant::now())
    })
}

/// The ids of a view's instances, in order.
fn ids(view: &Value) -> Vec<String> {
    view["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| i["id"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A 200 view whose `X-Pyxis-Index` header matches its `index`.
fn view_of(r: &Reply) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = r.json().unwrap();
    assert_eq!(
        r.header_u64("x-pyxis-index"),
        v["index"].as_u64(),
        "header and body agree: {v}"
    );
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_follows_changes_and_blocks_until_one() {
    let s = DnsRig::start(1, "").await;
    s.put(
        "/v1/services/web/instances/w1",
        inst("10.0.2.5", "dc2", "passing"),
    )
    .await;
    s.put(
        "/v1/services/web/instances/r1",
        inst("10.0.1.5", "dc1", "passing"),
    )
    .await;
    let first = eventually(LONG, async || {
        let v = view_of(&get(&s, "web").await);
        anyhow::ensure!(ids(&v) == ["w1"], "same datacenter only: {v}");
        Ok(v)
    })
    .await
    .unwrap();
    assert_eq!(first["name"], "web");
    assert_eq!(first["fail_open"], false);
    assert_eq!(first["datacenter"], "dc2");
    assert_eq!(first["instances"][0]["address"], "10.0.2.5");
    assert_eq!(first["instances"][0]["port"], 8080);
    let i1 = first["index"].as_u64().unwrap();
    // Asking again without a change gives the same answer, index included.
    assert_eq!(view_of(&get(&s, "web").await), first);

    // A blocking call wakes on a registration, within 1 s of its acknowledgement.
    let waiter = spawn_get(&s, format!("web?wait_rev={i1}&timeout=30s"));
    // Not an answer: the call must still be waiting while nothing changed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiter.is_finished(),
        "wait_rev={i1} returned without a change"
    );
    s.put(
        "/v1/services/web/instances/w2",
        inst("10.0.2.6", "dc2", "passing"),
    )
    .await;
    let acked = Instant::now();
    let (r, woke) = waiter.await.unwrap();
    let v = view_of(&r);
    assert_eq!(ids(&v), ["w1", "w2"], "sorted by id: {v}");
    let i2 = v["index"].as_u64().unwrap();
    assert!(i2 > i1, "{i2} > {i1}");
    let late = woke.saturating_duration_since(acked);
    assert!(
        late < Duration::from_secs(1),
        "woke {late:?} after the change"
    );

    // A critical mark takes the instance out, and wakes the next waiter.
    let waiter = spawn_get(&s, format!("web?wait_rev={i2}&timeout=30s"));
    s.put(
        "/v1/services/web/instances/w1",
        inst("10.0.2.5", "dc2", "critical"),
    )
    .await;
    let v = view_of(&waiter.await.unwrap().0);
    assert_eq!(ids(&v), ["w2"], "{v}");
    let i3 = v["index"].as_u64().unwrap();
    assert!(i3 > i2);

    // Only other data changes: the wait runs to its timeout and answers the same index.
    let started = Instant::now();
    let waiter = spawn_get(&s, format!("web?wait_rev={i3}&timeout=2s"));
    s.put(
        "/v1/services/api/instances/a1",
        inst("10.0.2.9", "dc2", "passing"),
    )
    .await;
    // A rewrite of web's remote instance changes nothing this agent is answered.
    s.put(
        "/v1/services/web/instances/r1",
        inst("10.0.1.5", "dc1", "warning"),
    )
    .await;
    let v = view_of(&waiter.await.unwrap().0);
    let waited = started.elapsed();
    assert_eq!(v["index"].as_u64(), Some(i3), "{v}");
    assert_eq!(ids(&v), ["w2"]);
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_refuses_bad_input_naming_the_field() {
    let s = DnsRig::start(1, "").await;
    s.put(
        "/v1/services/web/instances/w1",
        inst("10.0.2.5", "dc2", "passing"),
    )
    .await;
    eventually(LONG, async || {
        let r = get(&s, "web").await;
        anyhow::ensure!(r.status == 200, "{}", r.text());
        Ok(())
    })
    .await
    .unwrap();
    for (path, status, field) in [
        ("web?wait_rev=x", 400, "wait_rev:"),
        ("web?wait_rev=-1", 400, "wait_rev:"),
        ("web?wait_rev=1&timeout=soon", 400, "timeout:"),
        ("web?timeout=5", 400, "timeout:"),
        ("web?wait=1", 400, "wait:"),
        ("Web_Bad", 400, "name:"),
        ("a..b", 400, "name:"),
        ("nope", 404, "name:"),
        ("", 400, "name:"),
    ] {
        let r = get(&s, path).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
        let body: Value = r.json().unwrap();
        assert!(body["error"].is_string(), "{path}: {body}");
        let message = body["message"].as_str().unwrap_or("");
        assert!(message.starts_with(field), "{path}: {body}");
    }
    // A timeout past the cap is cut, not refused; a current index answers at once.
    let index = view_of(&get(&s, "web").await)["index"].as_u64().unwrap();
    let started = Instant::now();
    let r = get(&s, &format!("web?wait_rev={}&timeout=99999h", index - 1)).await;
    assert_eq!(view_of(&r)["index"].as_u64(), Some(index));
    assert!(started.elapsed() < Duration::from_secs(5));
}
