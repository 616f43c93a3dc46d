//! Client tests against a scripted fake node on a loopback port (axum, no real server).

use super::*;
use crate::api::{ErrorCode, KeyValue};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::sync::Mutex;

/// A reply the fake node gives, in order, one per request.
#[derive(Clone)]
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    delay: Duration,
}

fn reply(status: u16, body: impl Into<Vec<u8>>) -> Canned {
    Canned {
        status,
        headers: Vec::new(),
        body: body.into(),
        delay: Duration::ZERO,
    }
}

fn json_reply(status: u16, v: &impl serde::Serialize) -> Canned {
    reply(status, serde_json::to_vec(v).unwrap())
}

fn error_reply(status: u16, code: &str, message: &str) -> Canned {
    reply(
        status,
        format!(r#"{{"error":"{code}","message":"{message}"}}"#),
    )
}

/// A request the fake node received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    content_type: Option<String>,
    request_id: Option<String>,
    body: Vec<u8>,
}

#[derive(Default)]
struct Fake {
    replies: Mutex<VecDeque<Canned>>,
    seen: Mutex<Vec<Seen>>,
}

impl Fake {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle(
    axum::extract::State(fake): axum::extract::State<Arc<Fake>>,
    req: axum::extract::Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    fake.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        content_type: parts
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned()),
        request_id: parts
            .headers
            .get(HEADER_REQUEST_ID)
            .map(|v| v.to_str().unwrap().to_owned()),
        body: body.to_vec(),
    });
    let next = fake.replies.lock().unwrap().pop_front();
    let Some(c) = next else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "script exhausted").into_response();
    };
    tokio::time::sleep(c.delay).await;
    let mut resp = (StatusCode::from_u16(c.status).unwrap(), c.body).into_response();
    for (name, value) in c.headers {
        resp.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).unwrap(),
        );
    }
    resp
}

/// Starts a fake node that answers with `replies` in order; returns its `host:port`.
async fn fake_node(replies: Vec<Canned>) -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake {
        replies: Mutex::new(replies.into()),
        seen: Mutex::default(),
    });
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, fake)
}

/// A loopback address nothing listens on (bound, then released).
async fn dead_endpoint() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().to_string()
}

fn client(endpoints: &[&str]) -> Client {
    Client::with_options(
        endpoints.iter().map(|e| e.to_string()).collect(),
        ClientOptions::default()
            .request_timeout(Duration::from_millis(500))
            .retry_budget(Duration::from_secs(3)),
    )
    .unwrap()
}

#[tokio::test]
async fn get_reads_value_and_revision_headers() {
    let mut ok = reply(200, "v1");
    ok.headers = vec![
        (HEADER_REVISION, "9".into()),
        (HEADER_MOD_REVISION, "7".into()),
        (HEADER_CREATE_REVISION, "3".into()),
        (HEADER_VERSION, "2".into()),
    ];
    let (addr, fake) = fake_node(vec![ok, error_reply(404, "not_found", "key /b")]).await;
    let c = client(&[&addr]);
    let got = c.get("/ns/a b").await.unwrap().unwrap();
    assert_eq!(
        got,
        GetResult {
            value: Bytes::from_static(b"v1"),
            revision: 9,
            mod_rev: 7,
            create_rev: 3,
            version: 2,
        }
    );
    assert_eq!(c.get_serializable("/b").await.unwrap(), None);
    let seen = fake.seen();
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].uri, "/v1/kv/ns/a%20b");
    assert_eq!(seen[1].uri, "/v1/kv/b?consistency=serializable");
}

#[tokio::test]
async fn get_without_revision_headers_is_a_decode_error() {
    let (addr, _) = fake_node(vec![reply(200, "v")]).await;
    let err = client(&[&addr]).get("/a").await.unwrap_err();
    assert!(matches!(err, Error::Decode(_)), "{err}");
}

#[tokio::test]
async fn put_sends_raw_bytes_and_put_if_maps_conflicts() {
    let (addr, fake) = fake_node(vec![
        json_reply(200, &PutResponse { revision: 4 }),
        error_reply(409, "compare_failed", "mod revision is 4, expected 0"),
    ])
    .await;
    let c = client(&[&addr]);
    assert_eq!(c.put("/a", &b"\xff\x00"[..]).await.unwrap().revision, 4);
    let err = c.put_if("/a", "x", 0).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::CompareFailed));
    assert_eq!(
        err.to_string(),
        "409 compare_failed: mod revision is 4, expected 0"
    );
    let seen = fake.seen();
    assert_eq!(
        (seen[0].method.as_str(), seen[0].uri.as_str()),
        ("PUT", "/v1/kv/a")
    );
    assert_eq!(seen[0].body, b"\xff\x00");
    assert_eq!(
        seen[0].content_type.as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(seen[1].uri, "/v1/kv/a?prev_rev=0");
    // A conflict is final: it was not sent twice.
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn range_delete_txn_and_members_use_the_documented_routes() {
    let range = RangeResponse {
        revision: 5,
        entries: vec![KeyValue {
            key: "/p/a".into(),
            value: Bytes::from_static(b"1"),
            create_rev: 2,
            mod_rev: 5,
            version: 3,
            lease: None,
        }],
        more: false,
    };
    let del = DeleteResponse {
        revision: 6,
        deleted: 2,
    };
    let txn = TxnResponse {
        succeeded: true,
        revision: 7,
        results: vec![],
    };
    let info = ClusterInfo {
        leader: Some(1),
        term: 2,
        members: vec![],
    };
    let (addr, fake) = fake_node(vec![
        json_reply(200, &range),
        json_reply(200, &range),
        json_reply(200, &del),
        json_reply(200, &del),
        json_reply(200, &txn),
        json_reply(200, &info),
        json_reply(200, &info),
        json_reply(200, &info),
    ])
    .await;
    let c = client(&[&addr]);
    assert_eq!(c.range("/p/").await.unwrap(), range);
    c.range_with("/", ReadConsistency::Serializable)
        .await
        .unwrap();
    assert_eq!(c.delete("/p/a").await.unwrap(), del);
    c.delete_prefix("/p").await.unwrap();
    assert_eq!(c.txn(TxnRequest::default()).await.unwrap(), txn);
    assert_eq!(c.cluster().await.unwrap(), info);
    c.add_member(4, "127.0.0.1:7074").await.unwrap();
    c.remove_member(4).await.unwrap();
    let routes: Vec<String> = fake
        .seen()
        .iter()
        .map(|s| format!("{} {}", s.method, s.uri))
        .collect();
    assert_eq!(
        routes,
        [
            "GET /v1/kv/p/?prefix=true",
            "GET /v1/kv/?prefix=true&consistency=serializable",
            "DELETE /v1/kv/p/a",
            "DELETE /v1/kv/p?prefix=true",
            "POST /v1/txn",
            "GET /v1/cluster",
            "POST /v1/cluster/members",
            "DELETE /v1/cluster/members/4",
        ]
    );
    let add: AddMemberRequest = serde_json::from_slice(&fake.seen()[6].body).unwrap();
    assert_eq!(add.id, 4);
    assert_eq!(add.addr, "127.0.0.1:7074");
}

#[tokio::test]
async fn compacted_reply_maps_to_compacted_error() {
    let (addr, _) = fake_node(vec![reply(
        410,
        r#"{"error":"compacted","message":"old","compact_revision":12}"#,
    )])
    .await;
    let err = client(&[&addr]).range("/a").await.unwrap_err();
    assert!(matches!(err, Error::Compacted { revision: 12 }), "{err}");
}

#[tokio::test]
async fn rotates_past_a_dead_endpoint() {
    let dead = dead_endpoint().await;
    let (addr, fake) = fake_node(vec![
        json_reply(200, &PutResponse { revision: 1 }),
        json_reply(200, &PutResponse { revision: 2 }),
    ])
    .await;
    let c = client(&[&dead, &format!("http://{addr}/")]);
    // A connect error proves the write was not received, so even a put moves on.
    assert_eq!(c.put("/a", "1").await.unwrap().revision, 1);
    assert_eq!(c.put("/a", "2").await.unwrap().revision, 2);
    assert_eq!(fake.seen().len(), 2);
}

#[tokio::test]
async fn retries_a_write_on_no_leader() {
    let (addr, fake) = fake_node(vec![
        error_reply(503, "no_leader", "election in progress"),
        error_reply(503, "no_leader", "election in progress"),
        json_reply(200, &PutResponse { revision: 3 }),
    ])
    .await;
    let c = client(&[&addr]);
    assert_eq!(c.put("/a", "1").await.unwrap().revision, 3);
    assert_eq!(fake.seen().len(), 3);
}

#[tokio::test]
async fn a_write_that_timed_out_is_sent_again_with_the_same_request_id() {
    let mut slow = json_reply(200, &PutResponse { revision: 1 });
    slow.delay = Duration::from_secs(2);
    let (addr, fake) = fake_node(vec![slow, json_reply(200, &PutResponse { revision: 1 })]).await;
    let c = client(&[&addr]);
    assert_eq!(c.put("/a", "1").await.unwrap().revision, 1);
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    let id = seen[0]
        .request_id
        .clone()
        .expect("a write carries a request id");
    assert!(id.parse::<RequestId>().is_ok(), "{id}");
    assert_eq!(seen[1].request_id.as_deref(), Some(id.as_str()));
    // The next write is another request.
    c.put("/a", "2").await.unwrap_err();
    let third = fake.seen()[2].request_id.clone().unwrap();
    assert_ne!(third, id);
}

#[tokio::test]
async fn a_write_answered_unknown_outcome_is_sent_again_with_its_id() {
    let (addr, fake) = fake_node(vec![
        error_reply(503, "unknown_outcome", "no reply from the leader"),
        json_reply(200, &PutResponse { revision: 4 }),
    ])
    .await;
    let c = client(&[&addr]);
    assert_eq!(c.put("/a", "1").await.unwrap().revision, 4);
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].request_id, seen[1].request_id);
}

#[tokio::test]
async fn a_membership_change_that_timed_out_is_not_sent_again() {
    let mut slow = json_reply(200, &PutResponse { revision: 1 });
    slow.delay = Duration::from_secs(2);
    let (addr, fake) = fake_node(vec![slow.clone(), slow]).await;
    let c = client(&[&addr]);
    let err = c.add_member(4, "127.0.0.1:1").await.unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(fake.seen().len(), 1);
    assert_eq!(fake.seen()[0].request_id, None);
}

#[tokio::test]
async fn a_read_that_timed_out_is_retried() {
    let info = ClusterInfo {
        leader: None,
        term: 1,
        members: vec![],
    };
    let mut slow = json_reply(200, &info);
    slow.delay = Duration::from_secs(2);
    let (addr, fake) = fake_node(vec![slow, json_reply(200, &info)]).await;
    assert_eq!(client(&[&addr]).cluster().await.unwrap(), info);
    assert_eq!(fake.seen().len(), 2);
}

#[tokio::test]
async fn snapshot_returns_bytes_and_revision() {
    let mut snap = reply(200, &b"\x00snap"[..]);
    snap.headers = vec![(HEADER_REVISION, "41".into())];
    // Slower than the request timeout, but the snapshot has its own, longer one.
    snap.delay = Duration::from_millis(700);
    let (addr, fake) = fake_node(vec![snap]).await;
    let (bytes, revision) = client(&[&addr]).snapshot().await.unwrap();
    assert_eq!((&bytes[..], revision), (&b"\x00snap"[..], 41));
    assert_eq!(fake.seen()[0].uri, "/v1/snapshot");
}

#[tokio::test]
async fn status_of_asks_one_node_once_and_names_it_on_failure() {
    let dead = dead_endpoint().await;
    let c = client(&["127.0.0.1:1"]);
    let err = c.status_of(&dead).await.unwrap_err();
    let text = err.to_string();
    assert_eq!(
        text,
        format!("transport error: http://{dead}: connect: Connection refused (os error 111)")
    );
    assert!(!text.contains("gave up"), "{text}");
}

#[test]
fn empty_endpoint_list_is_refused() {
    assert!(matches!(
        Client::new(vec![]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(Client::new(vec![" ".into()]).is_err());
}
