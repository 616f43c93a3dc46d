//! The agent's callbacks: a receiver (a tiny HTTP server the test runs) gets the list at
//! registration and again after a change, with a growing index; a URL nobody listens on is
//! retried, then dropped and shown as dropped; DELETE removes (404 for an unknown id); bad
//! bodies are 400s naming the field.

use std::time::Duration;

use harness::{Api, WebhookSink, eventually, reserve_ports};
use serde_json::{Value, json};

use super::dns::DnsRig;
use crate::gateway::{LONG, inst};

/// Every body the sink received, as JSON.
fn received(sink: &WebhookSink) -> Vec<Value> {
    sink.bodies()
        .iter()
        .filter_map(|b| serde_json::from_str(b).ok())
        .collect()
}

/// The `message` of an error reply (empty if there is none).
fn message(r: &harness::Reply) -> String {
    let body: Value = r.json().unwrap_or(Value::Null);
    body["message"].as_str().unwrap_or("").to_owned()
}

/// The callback `id` in `GET /v1/callbacks`.
async fn listed(api: &Api, base: &str, id: &str) -> anyhow::Result<Value> {
    let all: Value = api.get_json(base, "/v1/callbacks").await?;
    all["callbacks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == id).cloned())
        .ok_or_else(|| anyhow::anyhow!("no callback {id} in {all}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_deliver_changes_retry_and_drop() {
    let s = DnsRig::start(1, "").await;
    let api = Api::with_timeout(Duration::from_secs(10));
    let base = s.agent.url().to_owned();
    s.put(
        "/v1/services/web/instances/w1",
        inst("10.0.2.5", "dc2", "passing"),
    )
    .await;
    let sink = WebhookSink::start().await.unwrap();
    let r = api
        .post_json(
            &base,
            "/v1/callbacks",
            &json!({"name": "web", "url": sink.url()}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let created: Value = r.json().unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["state"], "active");

    // Delivered at registration (once the mirror has the instance).
    let first = eventually(LONG, async || {
        let got = received(&sink);
        let last = got.last().cloned().unwrap_or(Value::Null);
        anyhow::ensure!(last["instances"][0]["id"] == "w1", "{got:?}");
        Ok(last)
    })
    .await
    .unwrap();
    assert_eq!(first["name"], "web");
    let i1 = first["index"].as_u64().unwrap();
    // And again after a change, with a larger index.
    s.put(
        "/v1/services/web/instances/w2",
        inst("10.0.2.6", "dc2", "passing"),
    )
    .await;
    let second = eventually(LONG, async || {
        let got = received(&sink);
        let last = got.last().cloned().unwrap_or(Value::Null);
        anyhow::ensure!(
            last["instances"].as_array().map(Vec::len) == Some(2),
            "{got:?}"
        );
        Ok(last)
    })
    .await
    .unwrap();
    assert!(second["index"].as_u64() > Some(i1), "{second}");
    let shown = eventually(LONG, async || {
        let c = listed(&api, &base, &id).await?;
        anyhow::ensure!(c["delivered_index"] == second["index"], "{c}");
        Ok(c)
    })
    .await
    .unwrap();
    assert_eq!(shown["state"], "active");
    assert_eq!(shown["url"], sink.url());
    assert_eq!(shown["failures"], 0);

    // Nobody listens there: retried with backoff, then dropped, and shown as dropped.
    let port = reserve_ports(1)[0];
    let dead = format!("http://127.0.0.1:{port}/hook");
    let r = api
        .post_json(&base, "/v1/callbacks", &json!({"name": "web", "url": dead}))
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let dead_id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dropped = eventually(LONG, async || {
        let c = listed(&api, &base, &dead_id).await?;
        anyhow::ensure!(c["state"] == "dropped", "{c}");
        Ok(c)
    })
    .await
    .unwrap();
    assert_eq!(dropped["failures"], 5, "{dropped}");
    assert!(
        dropped["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&dead)),
        "{dropped}"
    );
    assert!(dropped["delivered_index"].is_null(), "{dropped}");

    // DELETE removes; a second DELETE and an unknown id are 404.
    for cb in [&id, &dead_id] {
        let r = api
            .request(
                reqwest::Method::DELETE,
                &format!("{base}/v1/callbacks/{cb}"),
                None,
                None,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = api
        .request(
            reqwest::Method::DELETE,
            &format!("{base}/v1/callbacks/{id}"),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(message(&r).starts_with("id:"), "{}", r.text());
    let all: Value = api.get_json(&base, "/v1/callbacks").await.unwrap();
    assert_eq!(all["callbacks"], json!([]), "{all}");
    // A deleted callback gets nothing more.
    let before = sink.bodies().len();
    s.put(
        "/v1/services/web/instances/w3",
        inst("10.0.2.7", "dc2", "passing"),
    )
    .await;
    eventually(LONG, async || {
        let r = api.get_path(&base, "/v1/resolve/web").await?;
        let v: Value = r.json()?;
        anyhow::ensure!(v["instances"].as_array().map(Vec::len) == Some(3), "{v}");
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(sink.bodies().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_refuse_bad_bodies_naming_the_field() {
    let s = DnsRig::start(1, "").await;
    let api = Api::with_timeout(Duration::from_secs(10));
    let base = s.agent.url().to_owned();
    for (body, field) in [
        (json!({"name": "web"}), "body:"),
        (
            json!({"name": "web", "url": "http://h/", "extra": 1}),
            "body:",
        ),
        (
            json!({"name": "Not A Name", "url": "http://127.0.0.1:1/"}),
            "name:",
        ),
        (json!({"name": "web", "url": "https://127.0.0.1/x"}), "url:"),
        (json!({"name": "web", "url": "http://"}), "url:"),
        (json!(["web"]), "body:"),
    ] {
        let r = api.post_json(&base, "/v1/callbacks", &body).await.unwrap();
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(message(&r).starts_with(field), "{body}: {}", r.text());
    }
    let r = api
        .request(
            reqwest::Method::POST,
            &format!("{base}/v1/callbacks"),
            Some(bytes::Bytes::from_static(b"{not json")),
            Some("application/json"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    let r = api.get_path(&base, "/v1/callbacks/nope").await.unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
}
