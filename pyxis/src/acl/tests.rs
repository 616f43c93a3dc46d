use super::*;

use Role::{Admin, Operator, Read, Register};

/// One row of the route table: method, path, query, and whether each role passes
/// (read, register for node `n1`, operator, admin) before the handler's own checks.
fn row(method: Method, path: &str, query: Option<&str>, pass: [bool; 4]) {
    let need = required(&method, path, query);
    for (role, expected) in [Read, Register, Operator, Admin].into_iter().zip(pass) {
        let node = (role == Register).then_some("n1");
        assert_eq!(
            need.allows(role, node),
            expected,
            "{method} {path} {query:?} ({need:?}) for {role}"
        );
    }
}

/// The role table of the issue: read = GETs and watches; register = its own instances and
/// leases; operator = services, traffic, datacenters; admin = everything.
#[test]
fn role_table() {
    let all = [true; 4];
    let admin = [false, false, false, true];
    let operator = [false, false, true, true];
    row(Method::GET, "/v1/kv/a", None, all);
    row(Method::GET, "/v1/watch/ns/", Some("prefix=true"), all);
    row(Method::GET, "/v1/services/web/instances", None, all);
    row(Method::GET, "/v1/lease/7", None, all);
    row(Method::GET, "/v1/cluster", None, all);
    row(Method::GET, "/v1/datacenters", None, all);
    row(Method::PUT, "/v1/kv/a", None, admin);
    row(Method::DELETE, "/v1/kv/", Some("prefix=true"), admin);
    row(Method::PUT, "/v1/services/web", None, operator);
    row(Method::DELETE, "/v1/services/web", None, operator);
    row(Method::PUT, "/v1/traffic/web", None, operator);
    row(Method::PUT, "/v1/datacenters/dc1", None, operator);
    row(Method::GET, "/v1/audit", Some("limit=5"), operator);
    row(
        Method::PUT,
        "/v1/services/web/instances/i1",
        None,
        [false, true, true, true],
    );
    row(Method::POST, "/v1/lease", None, [false, true, false, true]);
    row(
        Method::POST,
        "/v1/lease/7/keepalive",
        None,
        [false, true, false, true],
    );
    row(
        Method::DELETE,
        "/v1/lease/7",
        None,
        [false, true, false, true],
    );
    row(Method::POST, "/v1/cluster/members", None, admin);
    row(Method::DELETE, "/v1/cluster/members/3", None, admin);
    row(Method::GET, "/v1/snapshot", None, admin);
    row(Method::GET, "/v1/acl/tokens", None, admin);
    row(Method::POST, "/v1/acl/tokens", None, admin);
    row(Method::DELETE, "/v1/acl/tokens/abc", None, admin);
    row(
        Method::PUT,
        "/v1/kv/ns/agents/n1",
        None,
        [false, true, true, true],
    );
    row(Method::PUT, "/v1/kv/ns/agents/n2", None, operator);
    row(
        Method::DELETE,
        "/v1/kv/ns/agents/n1",
        Some("prefix=true"),
        admin,
    );
    row(Method::POST, "/v1/something-new", None, admin);
}

/// Routes open with ACLs on, and the ones any token passes.
#[test]
fn open_routes() {
    assert_eq!(required(&Method::GET, "/v1/acl/status", None), Need::Open);
    assert_eq!(
        required(&Method::POST, "/v1/acl/bootstrap", None),
        Need::Open
    );
    assert_eq!(
        required(&Method::GET, "/v1/acl/token/self", None),
        Need::AnyToken
    );
    assert_eq!(required(&Method::GET, "/v1/status", None), Need::Open);
    assert_eq!(required(&Method::POST, "/v1/txn", None), Need::Txn);
}

/// Secrets are random, prefixed and hashed to 64 hex digits; the hash is stable and
/// differs between secrets.
#[test]
fn secrets_hash_and_differ() {
    let a = new_secret();
    let b = new_secret();
    assert_ne!(a, b);
    assert!(a.starts_with(SECRET_PREFIX));
    assert_eq!(a.len(), SECRET_PREFIX.len() + 64);
    let h = hash_secret(&a);
    assert_eq!(h.len(), 64);
    assert_eq!(h, hash_secret(&a));
    assert_ne!(h, hash_secret(&b));
    // The sha256 test vector: the hash is the standard one, not a home-made digest.
    assert_eq!(
        hash_secret("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(new_accessor().len(), 16);
}

/// Which callers are audited, and the actor each records.
#[test]
fn audited_callers() {
    let token = |role: Role| TokenRecord {
        accessor: "0123456789abcdef".into(),
        hash: hash_secret("x"),
        role,
        node: (role == Register).then(|| "n1".to_owned()),
        description: "ci".into(),
        created_at_ms: 0,
    };
    let off = Caller {
        token: None,
        what: "PUT /v1/traffic/web".into(),
        bearer: None,
        data_plane: false,
    };
    assert!(off.audited());
    assert!(!off.anonymous_data());
    assert_eq!(off.actor().description, "anonymous");
    // A data-plane write has no "who" while ACLs are off: not audited, but wrapped so that
    // it is refused if ACLs are on when it applies.
    let data = Caller {
        what: "PUT /v1/kv/a".into(),
        data_plane: true,
        ..off.clone()
    };
    assert!(!data.audited());
    assert!(data.anonymous_data());
    assert!(off.is_admin());
    for (role, audited) in [
        (Read, false),
        (Register, false),
        (Operator, true),
        (Admin, true),
    ] {
        let c = Caller {
            token: Some(token(role)),
            what: String::new(),
            bearer: None,
            data_plane: true,
        };
        assert_eq!(c.audited(), audited, "{role}");
        assert_eq!(c.actor().accessor.as_deref(), Some("0123456789abcdef"));
        assert_eq!(c.register_node(), (role == Register).then_some("n1"));
    }
}

/// A long request line is cut for the audit entry, never past a character boundary.
#[test]
fn what_is_cut() {
    let c = Caller {
        token: None,
        what: format!("PUT /v1/kv/{}", "é".repeat(MAX_WHAT_BYTES)),
        bearer: None,
        data_plane: true,
    };
    let what = c.what();
    assert!(what.len() <= MAX_WHAT_BYTES);
    assert!(what.starts_with("PUT /v1/kv/é"));
}

/// Keys, transactions, leases, instances and agents' records are data; the rest is
/// configuration.
#[test]
fn data_plane_paths() {
    for p in [
        "/v1/kv/a/b",
        "/v1/kv/",
        "/v1/txn",
        "/v1/lease",
        "/v1/lease/7/keepalive",
        "/v1/services/web/instances/w1",
        "/v1/agents/host-1",
    ] {
        assert!(is_data_plane(p), "{p}");
    }
    for p in [
        "/v1/services/web",
        "/v1/traffic/web",
        "/v1/datacenters/dc1",
        "/v1/cluster/members",
        "/v1/acl/tokens",
    ] {
        assert!(!is_data_plane(p), "{p}");
    }
}
