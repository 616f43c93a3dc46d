//! The typed naming endpoints (`/v1/services`, `/v1/traffic`, `/v1/datacenters`) on a single
//! node: every validation rule answers 400 (404 for an unknown lease) with the field at fault
//! at the start of the message, and leaves `/ns/` and the store revision exactly as they were;
//! plus the happy path of registering, listing with filters, policies and deletes, and the
//! typed datacenter listing.
//!
//! The rules themselves are unit-tested in `ns-core`; these tests show that the HTTP layer
//! applies each family of them before writing anything.

use bytes::Bytes;
use harness::{Api, Cluster, Reply};
use pyxis_client::api::{DeleteResponse, ErrorCode, LeaseGrantResponse, PutResponse};
use reqwest::Method;
use serde_json::{Value, json};

/// One request that must be refused.
struct Case {
    /// What the case shows, for assertion messages.
    what: &'static str,
    method: Method,
    /// Path and query.
    path: String,
    /// Raw body (`None` for none).
    body: Option<String>,
    /// Expected status: 400, 404 for an unknown lease, 409 for a failed `prev_rev`.
    status: u16,
    /// The field the message must start with (`port` matches `port: ...`).
    field: &'static str,
}

fn case(
    what: &'static str,
    method: Method,
    path: impl Into<String>,
    body: Option<Value>,
    field: &'static str,
) -> Case {
    Case {
        what,
        method,
        path: path.into(),
        body: body.map(|b| b.to_string()),
        status: 400,
        field,
    }
}

/// A valid instance body, for cases that break one field of it.
fn instance(dc: &str, status: &str, node: &str) -> Value {
    json!({
        "address": "10.0.0.1",
        "port": 8080,
        "datacenter": dc,
        "version": "v1",
        "weight": 100,
        "tags": ["http"],
        "meta": {"zone": "a"},
        "status": status,
        "node": node,
    })
}

/// `instance` with `field` replaced (or removed, for `Value::Null` on `node`).
fn instance_with(field: &str, value: Value) -> Value {
    let mut body = instance("dc1", "passing", "host1");
    body[field] = value;
    body
}

async fn send(api: &Api, url: &str, method: Method, path: &str, body: Option<String>) -> Reply {
    api.request(
        method.clone(),
        &format!("{url}{path}"),
        body.map(Bytes::from),
        Some("application/json"),
    )
    .await
    .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
}

/// A started single node with one of everything under `/ns/`, so that "nothing written" is
/// checked against a non-empty key space.
async fn seeded() -> (Cluster, String) {
    let c = Cluster::single(&[]).await.unwrap();
    let api = c.api();
    let url = c.url(1);
    let ok = async |method: Method, path: &str, body: Value| {
        send(api, &url, method, path, Some(body.to_string()))
            .await
            .ok()
            .unwrap_or_else(|e| panic!("seed {path}: {e:#}"));
    };
    ok(Method::PUT, "/v1/services/web", json!({"owner": "team-a"})).await;
    ok(
        Method::PUT,
        "/v1/services/web/instances/web-1",
        instance("dc1", "passing", "host1"),
    )
    .await;
    ok(
        Method::PUT,
        "/v1/traffic/web",
        json!({"prefer_same_dc": true}),
    )
    .await;
    ok(
        Method::PUT,
        "/v1/datacenters/dc1",
        json!({"subnets": ["10.0.0.0/16"]}),
    )
    .await;
    (c, url)
}

/// Sends every case and checks the status, the JSON error code, that the message names the
/// field, and that neither the `/ns/` listing nor the store revision moved.
async fn check_rejected(c: &Cluster, url: &str, cases: Vec<Case>) {
    let api = c.api();
    let before = api.range_ok(url, "/ns/").await.unwrap();
    let rev_before = api.status(url).await.unwrap().revision;
    assert!(before.entries.len() >= 4, "{before:?}");
    for case in cases {
        let what = case.what;
        let reply = send(api, url, case.method, &case.path, case.body).await;
        assert_eq!(
            reply.status,
            case.status,
            "{what}: status {} body {}",
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
            "{what}: content-type {content_type:?}, body {}",
            reply.text()
        );
        let body = reply
            .error_body()
            .unwrap_or_else(|e| panic!("{what}: not an error body: {e:#}"));
        let code = match case.status {
            404 => ErrorCode::NotFound,
            409 => ErrorCode::CompareFailed,
            _ => ErrorCode::BadRequest,
        };
        assert_eq!(body.error, code, "{what}: {body:?}");
        assert!(
            body.message.starts_with(&format!("{}:", case.field)),
            "{what}: message {:?} does not start with the field {:?}",
            body.message,
            case.field
        );
        let after = api.range_ok(url, "/ns/").await.unwrap();
        assert_eq!(after, before, "{what}: /ns/ changed");
        let rev_after = api.status(url).await.unwrap().revision;
        assert_eq!(rev_after, rev_before, "{what}: revision moved");
    }
}

/// Instance bodies: port, weight, address, status, datacenter, unknown and missing fields,
/// malformed JSON, tags, meta and node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_instances_are_refused() {
    let (c, url) = seeded().await;
    let put = |what, body: Value, field| {
        case(
            what,
            Method::PUT,
            "/v1/services/web/instances/web-2",
            Some(body),
            field,
        )
    };
    let mut cases = vec![
        put("port 0", instance_with("port", json!(0)), "port"),
        put("port 70000", instance_with("port", json!(70000)), "port"),
        put("port -1", instance_with("port", json!(-1)), "port"),
        put("port as text", instance_with("port", json!("80")), "port"),
        put(
            "weight 1001",
            instance_with("weight", json!(1001)),
            "weight",
        ),
        put(
            "address not an IP",
            instance_with("address", json!("10.0.0.300")),
            "address",
        ),
        put(
            "address a host name",
            instance_with("address", json!("web.example")),
            "address",
        ),
        put(
            "unspecified address",
            instance_with("address", json!("0.0.0.0")),
            "address",
        ),
        put(
            "multicast address",
            instance_with("address", json!("ff02::1")),
            "address",
        ),
        put(
            "bad status",
            instance_with("status", json!("sick")),
            "status",
        ),
        put(
            "bad datacenter name",
            instance_with("datacenter", json!("DC_1")),
            "datacenter",
        ),
        put(
            "version with a space",
            instance_with("version", json!("v 1")),
            "version",
        ),
        put("empty tag", instance_with("tags", json!([""])), "tags[0]"),
        put(
            "bad meta key",
            instance_with("meta", json!({"a b": "c"})),
            "meta",
        ),
        put("bad node", instance_with("node", json!("host/1")), "node"),
        put(
            "unknown field",
            instance_with("colour", json!("blue")),
            "colour",
        ),
    ];
    let mut missing = instance("dc1", "passing", "host1");
    missing.as_object_mut().unwrap().remove("node");
    cases.push(put("missing node", missing, "node"));
    cases.push(Case {
        what: "not JSON",
        method: Method::PUT,
        path: "/v1/services/web/instances/web-2".into(),
        body: Some("this is not json".into()),
        status: 400,
        field: "body",
    });
    cases.push(put("array body", json!([1, 2]), "body"));
    check_rejected(&c, &url, cases).await;
}

/// Names in the path, query parameters and leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_params_and_leases_are_refused() {
    let (c, url) = seeded().await;
    let body = || Some(instance("dc1", "passing", "host1"));
    let mut cases = vec![
        case(
            "uppercase service name",
            Method::PUT,
            "/v1/services/Web",
            Some(json!({})),
            "name",
        ),
        case(
            "underscore in service name",
            Method::PUT,
            "/v1/services/we_b/instances/web-2",
            body(),
            "name",
        ),
        case(
            "empty label in service name",
            Method::PUT,
            "/v1/traffic/web..x",
            Some(json!({})),
            "name",
        ),
        case(
            "slash in service name",
            Method::DELETE,
            "/v1/services/a%2Fb",
            None,
            "name",
        ),
        case(
            "bad name on a read",
            Method::GET,
            "/v1/services/-web/instances",
            None,
            "name",
        ),
        case(
            "instance id with '$'",
            Method::PUT,
            "/v1/services/web/instances/web%242",
            body(),
            "id",
        ),
        case(
            "instance id starting with '.'",
            Method::DELETE,
            "/v1/services/web/instances/.hidden",
            None,
            "id",
        ),
        case(
            "datacenter name with a dot",
            Method::PUT,
            "/v1/datacenters/dc1.east",
            Some(json!({})),
            "dc",
        ),
        case(
            "dc filter not a DC name",
            Method::GET,
            "/v1/services/web/instances?dc=Dc1",
            None,
            "dc",
        ),
        case(
            "healthy not a bool",
            Method::GET,
            "/v1/services/web/instances?healthy=maybe",
            None,
            "healthy",
        ),
        case(
            "bad consistency",
            Method::GET,
            "/v1/services?consistency=eventual",
            None,
            "consistency",
        ),
        case(
            "unknown query parameter",
            Method::PUT,
            "/v1/services/web?force=1",
            Some(json!({})),
            "force",
        ),
        case(
            "non-numeric lease",
            Method::PUT,
            "/v1/services/web/instances/web-2?lease=abc",
            body(),
            "lease",
        ),
        case(
            "negative lease",
            Method::PUT,
            "/v1/services/web/instances/web-2?lease=-1",
            body(),
            "lease",
        ),
        case(
            "lease on a traffic policy",
            Method::PUT,
            "/v1/traffic/web?lease=1",
            Some(json!({})),
            "lease",
        ),
        case(
            "non-numeric prev_rev",
            Method::PUT,
            "/v1/traffic/web?prev_rev=latest",
            Some(json!({})),
            "prev_rev",
        ),
    ];
    // Compare-and-set on the typed writes: the seeded values exist, at revisions above 1.
    for (what, path, body) in [
        (
            "prev_rev=0 on an existing service",
            "/v1/services/web?prev_rev=0",
            Some(json!({})),
        ),
        (
            "stale prev_rev on a policy",
            "/v1/traffic/web?prev_rev=1",
            Some(json!({})),
        ),
        (
            "stale prev_rev on a datacenter",
            "/v1/datacenters/dc1?prev_rev=1",
            Some(json!({})),
        ),
        (
            "stale prev_rev on an instance",
            "/v1/services/web/instances/web-1?prev_rev=1",
            body(),
        ),
    ] {
        let mut conflict = case(what, Method::PUT, path, body, "prev_rev");
        conflict.status = 409;
        cases.push(conflict);
    }
    let mut unknown = case(
        "unknown lease",
        Method::PUT,
        "/v1/services/web/instances/web-2?lease=987654321",
        body(),
        "lease",
    );
    unknown.status = 404;
    cases.push(unknown);
    check_rejected(&c, &url, cases).await;
}

/// Service definitions, traffic policies and datacenters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_definitions_policies_and_datacenters_are_refused() {
    let (c, url) = seeded().await;
    let svc =
        |what, body: Value, field| case(what, Method::PUT, "/v1/services/web", Some(body), field);
    let traffic =
        |what, body: Value, field| case(what, Method::PUT, "/v1/traffic/web", Some(body), field);
    let dc = |what, body: Value, field| {
        case(what, Method::PUT, "/v1/datacenters/dc2", Some(body), field)
    };
    let cases = vec![
        svc("ttl over a day", json!({"ttl_secs": 86401}), "ttl_secs"),
        svc("owner too long", json!({"owner": "o".repeat(129)}), "owner"),
        svc("unknown service field", json!({"team": "a"}), "team"),
        svc("service body a string", json!("web"), "body"),
        traffic(
            "group weights sum to 0",
            json!({"groups": [{"version": "v1", "weight": 0}, {"version": "v2", "weight": 0}]}),
            "groups",
        ),
        traffic(
            "group weight 1001",
            json!({"groups": [{"version": "v1", "weight": 1001}]}),
            "groups[0].weight",
        ),
        traffic(
            "duplicate group version",
            json!({"groups": [{"version": "v1", "weight": 1}, {"version": "v1", "weight": 2}]}),
            "groups[1].version",
        ),
        traffic(
            "empty group version",
            json!({"groups": [{"version": "", "weight": 1}]}),
            "groups[0].version",
        ),
        traffic(
            "shift percent 101",
            json!({"shifts": [{"from_dc": "dc1", "to_dc": "dc2", "percent": 101}]}),
            "shifts[0].percent",
        ),
        traffic(
            "shifts out of one DC over 100",
            json!({"shifts": [
                {"from_dc": "dc1", "to_dc": "dc2", "percent": 60},
                {"from_dc": "dc1", "to_dc": "dc3", "percent": 50},
            ]}),
            "shifts[1].percent",
        ),
        traffic(
            "shift to its own DC",
            json!({"shifts": [{"from_dc": "dc1", "to_dc": "dc1", "percent": 10}]}),
            "shifts[0].to_dc",
        ),
        traffic(
            "shift from a bad DC name",
            json!({"shifts": [{"from_dc": "DC1", "to_dc": "dc2", "percent": 10}]}),
            "shifts[0].from_dc",
        ),
        traffic(
            "override weight 2000",
            json!({"overrides": {"web-1": {"weight": 2000}}}),
            "overrides.web-1.weight",
        ),
        traffic(
            "expires_at not a number",
            json!({"expires_at": "tomorrow"}),
            "expires_at",
        ),
        traffic("unknown policy field", json!({"canary": true}), "canary"),
        dc(
            "bad CIDR",
            json!({"subnets": ["10.0.0.0/33"]}),
            "subnets[0]",
        ),
        dc(
            "CIDR not a network address",
            json!({"subnets": ["10.0.0.0/16", "10.1.2.3/16"]}),
            "subnets[1]",
        ),
        dc(
            "subnet listed twice",
            json!({"subnets": ["10.0.0.0/16", "10.0.0.0/16"]}),
            "subnets[1]",
        ),
        dc(
            "fallback not a DC name",
            json!({"fallback": ["dc_1"]}),
            "fallback[0]",
        ),
        dc("unknown datacenter field", json!({"cidrs": []}), "cidrs"),
    ];
    check_rejected(&c, &url, cases).await;
}

/// Register, list with filters, read back canonical values, policies and datacenters, then
/// delete an instance and a whole service (in one revision).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_list_and_delete() {
    let c = Cluster::single(&[]).await.unwrap();
    let api = c.api();
    let url = c.url(1);
    let call = async |method: Method, path: &str, body: Option<Value>| -> Reply {
        send(api, &url, method, path, body.map(|b| b.to_string())).await
    };
    let ok = async |method: Method, path: &str, body: Option<Value>| -> Reply {
        call(method, path, body)
            .await
            .ok()
            .unwrap_or_else(|e| panic!("{path}: {e:#}"))
    };

    let lease: LeaseGrantResponse = api
        .post_json(&url, "/v1/lease", &json!({"ttl_ms": 60_000}))
        .await
        .unwrap()
        .ok()
        .unwrap()
        .json()
        .unwrap();
    ok(
        Method::PUT,
        "/v1/services/web",
        Some(json!({"owner": "team-a"})),
    )
    .await;
    // Minimal body: the defaults (weight 100, status passing, empty version) are filled in.
    let put: PutResponse = ok(
        Method::PUT,
        &format!("/v1/services/web/instances/web-1?lease={}", lease.id),
        Some(json!({"address": "10.0.0.1", "port": 8080, "datacenter": "dc1", "node": "h1"})),
    )
    .await
    .json()
    .unwrap();
    assert!(put.revision > 0);
    ok(
        Method::PUT,
        "/v1/services/web/instances/web-2",
        Some(instance("dc2", "warning", "h2")),
    )
    .await;
    ok(
        Method::PUT,
        "/v1/services/web/instances/web-3",
        Some(instance("dc1", "critical", "h3")),
    )
    .await;
    // An instance of a service without a definition is accepted; no definition is created.
    ok(
        Method::PUT,
        "/v1/services/api.search/instances/a-1",
        Some(instance("dc1", "passing", "h1")),
    )
    .await;

    // The stored value is the canonical JSON of the validated instance.
    let raw: Value = api
        .get(&url, "/ns/instances/web/web-1")
        .await
        .unwrap()
        .ok()
        .unwrap()
        .json()
        .unwrap();
    let canonical = json!({
        "address": "10.0.0.1", "port": 8080, "datacenter": "dc1", "version": "", "weight": 100,
        "tags": [], "meta": {}, "status": "passing", "node": "h1",
    });
    assert_eq!(raw, canonical);
    let one: Value = ok(Method::GET, "/v1/services/web/instances/web-1", None)
        .await
        .json()
        .unwrap();
    assert_eq!(one, canonical);
    assert!(
        api.get(&url, "/ns/services/api.search")
            .await
            .unwrap()
            .status
            == 404
    );

    let services: Value = ok(Method::GET, "/v1/services", None).await.json().unwrap();
    assert_eq!(
        services,
        json!([
            {"name": "api.search", "def": null, "traffic": false, "instances": 1, "healthy": 1},
            {"name": "web", "def": {"owner": "team-a", "description": "", "meta": {},
                "ttl_secs": 30, "prefer_same_dc": true},
             "traffic": false, "instances": 3, "healthy": 2},
        ])
    );
    let ids = async |query: &str| -> Vec<String> {
        let rows: Vec<Value> = ok(
            Method::GET,
            &format!("/v1/services/web/instances{query}"),
            None,
        )
        .await
        .json()
        .unwrap();
        rows.iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids("").await, ["web-1", "web-2", "web-3"]);
    assert_eq!(ids("?dc=dc1").await, ["web-1", "web-3"]);
    assert_eq!(ids("?healthy=true").await, ["web-1", "web-2"]);
    assert_eq!(ids("?dc=dc1&healthy=true").await, ["web-1"]);
    assert_eq!(ids("?dc=dc9").await, Vec::<String>::new());
    assert_eq!(
        ids("?healthy=false&consistency=serializable").await,
        ["web-1", "web-2", "web-3"]
    );
    let rows: Vec<Value> = ok(Method::GET, "/v1/services/web/instances?dc=dc1", None)
        .await
        .json()
        .unwrap();
    assert_eq!(rows[0]["lease"], json!(lease.id));
    assert_eq!(rows[0]["weight"], json!(100));
    assert_eq!(rows[1]["lease"], Value::Null);
    let none: Vec<Value> = ok(Method::GET, "/v1/services/nope/instances", None)
        .await
        .json()
        .unwrap();
    assert!(none.is_empty());

    // Traffic policy and datacenter round trips, defaults filled in.
    let policy = json!({
        "groups": [{"version": "v1", "weight": 90}, {"version": "v2", "weight": 10}],
        "shifts": [{"from_dc": "dc1", "to_dc": "dc2", "percent": 25}],
        "overrides": {"web-3": {"drain": true}},
        "expires_at": 4_102_444_800_000u64,
    });
    ok(Method::PUT, "/v1/traffic/web", Some(policy)).await;
    let got: Value = ok(Method::GET, "/v1/traffic/web", None)
        .await
        .json()
        .unwrap();
    assert_eq!(got["prefer_same_dc"], json!(true));
    assert_eq!(got["groups"][1], json!({"version": "v2", "weight": 10}));
    assert_eq!(got["overrides"]["web-3"], json!({"drain": true}));
    assert_eq!(got["expires_at"], json!(4_102_444_800_000u64));
    // A write conditioned on the revision just read goes through.
    let rev = ok(Method::GET, "/v1/traffic/web", None)
        .await
        .mod_revision()
        .expect("X-Pyxis-Mod-Revision");
    let put: PutResponse = ok(
        Method::PUT,
        &format!("/v1/traffic/web?prev_rev={rev}"),
        Some(json!({"prefer_same_dc": false})),
    )
    .await
    .json()
    .unwrap();
    assert!(put.revision > rev);
    ok(
        Method::PUT,
        "/v1/datacenters/dc1",
        Some(json!({"subnets": ["10.0.0.0/16", "fd00::/8"], "fallback": ["dc2"]})),
    )
    .await;
    let reply = ok(Method::GET, "/v1/datacenters/dc1", None).await;
    assert!(reply.revision().is_some() && reply.mod_revision().is_some());
    let got: Value = reply.json().unwrap();
    assert_eq!(
        got,
        json!({"subnets": ["10.0.0.0/16", "fd00::/8"], "fallback": ["dc2"]})
    );
    assert_eq!(
        call(Method::GET, "/v1/datacenters/dc9", None).await.status,
        404
    );

    // Deleting an instance; then the whole service: definition, policy and the two remaining
    // instances go in one revision.
    let del: DeleteResponse = ok(Method::DELETE, "/v1/services/web/instances/web-1", None)
        .await
        .json()
        .unwrap();
    assert_eq!(del.deleted, 1);
    assert_eq!(ids("").await, ["web-2", "web-3"]);
    let rev_before = api.status(&url).await.unwrap().revision;
    let del: DeleteResponse = ok(Method::DELETE, "/v1/services/web", None)
        .await
        .json()
        .unwrap();
    assert_eq!(del.deleted, 4);
    assert_eq!(del.revision, rev_before + 1);
    for path in ["/v1/services/web", "/v1/traffic/web"] {
        let reply = call(Method::GET, path, None).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.text());
        assert_eq!(reply.error_body().unwrap().error, ErrorCode::NotFound);
    }
    assert!(ids("").await.is_empty());
    let services: Value = ok(Method::GET, "/v1/services", None).await.json().unwrap();
    assert_eq!(services.as_array().unwrap().len(), 1, "{services}");
    assert_eq!(
        api.range_ok(&url, "/ns/instances/web/")
            .await
            .unwrap()
            .entries
            .len(),
        0
    );
}

/// `GET /v1/datacenters` lists, by name, every datacenter a stored value or an instance names,
/// with the stored value read through the schema (`null` when unreadable), its mod revision
/// and instance counts, like `GET /v1/services`; keys outside the layout are not rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datacenters_are_listed_typed() {
    let c = Cluster::single(&[]).await.unwrap();
    let api = c.api();
    let url = c.url(1);
    let ok = async |method: Method, path: &str, body: Option<Value>| -> Reply {
        send(api, &url, method, path, body.map(|b| b.to_string()))
            .await
            .ok()
            .unwrap_or_else(|e| panic!("{path}: {e:#}"))
    };
    let empty: Value = ok(Method::GET, "/v1/datacenters", None)
        .await
        .json()
        .unwrap();
    assert_eq!(empty, json!([]));

    let dc1: PutResponse = ok(
        Method::PUT,
        "/v1/datacenters/dc1",
        Some(json!({"subnets": ["10.1.0.0/16"], "fallback": ["dc2"]})),
    )
    .await
    .json()
    .unwrap();
    let dc2: PutResponse = ok(Method::PUT, "/v1/datacenters/dc2", Some(json!({})))
        .await
        .json()
        .unwrap();
    for (path, dc, status) in [
        ("/v1/services/web/instances/w1", "dc1", "passing"),
        ("/v1/services/web/instances/w2", "dc1", "critical"),
        ("/v1/services/pay/instances/p1", "dc1", "warning"),
        ("/v1/services/pay/instances/p2", "dc3", "passing"),
    ] {
        ok(Method::PUT, path, Some(instance(dc, status, "h1"))).await;
    }
    // Raw writes the typed routes would refuse: an unreadable value is a row without `def`,
    // a key outside the layout is no row at all.
    let bad = api
        .put_ok(&url, "/ns/datacenters/dc4", "not json")
        .await
        .unwrap();
    api.put_ok(&url, "/ns/datacenters/Not_A_Dc", "{}")
        .await
        .unwrap();

    let reply = ok(Method::GET, "/v1/datacenters", None).await;
    assert_eq!(reply.revision(), Some(bad + 1));
    let rows: Value = reply.json().unwrap();
    assert_eq!(
        rows,
        json!([
            {"name": "dc1", "def": {"subnets": ["10.1.0.0/16"], "fallback": ["dc2"]},
             "mod_rev": dc1.revision, "instances": 3, "healthy": 2},
            {"name": "dc2", "def": {"subnets": [], "fallback": []},
             "mod_rev": dc2.revision, "instances": 0, "healthy": 0},
            {"name": "dc3", "def": null, "mod_rev": null, "instances": 1, "healthy": 1},
            {"name": "dc4", "def": null, "mod_rev": bad, "instances": 0, "healthy": 0},
        ])
    );
    let serializable: Value = ok(
        Method::GET,
        "/v1/datacenters?consistency=serializable",
        None,
    )
    .await
    .json()
    .unwrap();
    assert_eq!(serializable, rows);
    let refused = send(api, &url, Method::GET, "/v1/datacenters?dc=dc1", None).await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused.error_body().unwrap().message.starts_with("dc"),
        "{}",
        refused.text()
    );
}
