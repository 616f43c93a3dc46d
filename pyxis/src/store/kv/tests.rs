use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::store::watch::EventKind;

fn put(key: &str, value: &str) -> Command {
    Command::Put {
        key: key.into(),
        value: Bytes::from(value.to_owned()),
        prev_rev: None,
        lease: None,
    }
}

#[test]
fn put_bumps_revision_and_version() {
    let mut s = KvState::default();
    assert_eq!(
        s.apply(put("/a", "1"), &mut Vec::new()),
        CommandResult::Put { revision: 1 }
    );
    assert_eq!(
        s.apply(put("/a", "2"), &mut Vec::new()),
        CommandResult::Put { revision: 2 }
    );
    let e = s.get("/a").unwrap();
    assert_eq!((e.create_rev, e.mod_rev, e.version), (1, 2, 2));
    assert_eq!(e.value, "2");
}

#[test]
fn cas_put_checks_mod_revision() {
    let mut s = KvState::default();
    let create = Command::Put {
        key: "/a".into(),
        value: Bytes::from_static(b"x"),
        prev_rev: Some(0),
        lease: None,
    };
    assert_eq!(
        s.apply(create.clone(), &mut Vec::new()),
        CommandResult::Put { revision: 1 }
    );
    // Creating again must fail: the key exists now.
    assert_eq!(
        s.apply(create, &mut Vec::new()),
        CommandResult::PutConflict { mod_rev: 1 }
    );
    assert_eq!(s.revision(), 1);
}

#[test]
fn delete_missing_key_keeps_revision() {
    let mut s = KvState::default();
    s.apply(put("/a", "1"), &mut Vec::new());
    let r = s.apply(
        Command::Delete {
            key: "/zz".into(),
            prefix: false,
        },
        &mut Vec::new(),
    );
    assert_eq!(
        r,
        CommandResult::Delete {
            revision: 1,
            deleted: 0
        }
    );
}

#[test]
fn prefix_delete_is_one_revision() {
    let mut s = KvState::default();
    s.apply(put("/a/1", "1"), &mut Vec::new());
    s.apply(put("/a/2", "2"), &mut Vec::new());
    s.apply(put("/b", "3"), &mut Vec::new());
    let r = s.apply(
        Command::Delete {
            key: "/a/".into(),
            prefix: true,
        },
        &mut Vec::new(),
    );
    assert_eq!(
        r,
        CommandResult::Delete {
            revision: 4,
            deleted: 2
        }
    );
    assert_eq!(s.len(), 1);
}

#[test]
fn txn_runs_one_branch_at_one_revision() {
    let mut s = KvState::default();
    s.apply(put("/lock", "me"), &mut Vec::new());
    let txn = Command::Txn {
        compare: vec![Compare {
            key: "/lock".into(),
            op: CompareOp::Eq,
            target: CompareTarget::Value(Bytes::from_static(b"me")),
        }],
        success: vec![
            Op::Put {
                key: "/x".into(),
                value: Bytes::from_static(b"1"),
                lease: None,
            },
            Op::Put {
                key: "/y".into(),
                value: Bytes::from_static(b"2"),
                lease: None,
            },
            Op::Get {
                key: "/x".into(),
                prefix: false,
            },
        ],
        failure: vec![],
    };
    let CommandResult::Txn {
        succeeded,
        revision,
        results,
    } = s.apply(txn, &mut Vec::new())
    else {
        panic!("not a txn result")
    };
    assert!(succeeded);
    assert_eq!(revision, 2);
    assert_eq!(s.get("/x").unwrap().mod_rev, 2);
    assert_eq!(s.get("/y").unwrap().mod_rev, 2);
    let TxnResult::Get(got) = &results[2] else {
        panic!("not a get")
    };
    assert_eq!(got[0].1.value, "1");
}

#[test]
fn compare_on_missing_key() {
    let s = KvState::default();
    let c = |target, op| Compare {
        key: "/none".into(),
        op,
        target,
    };
    assert!(s.holds(&c(CompareTarget::ModRev(0), CompareOp::Eq)));
    assert!(s.holds(&c(CompareTarget::Exists(false), CompareOp::Eq)));
    assert!(!s.holds(&c(CompareTarget::Value(Bytes::new()), CompareOp::Eq)));
    assert!(s.holds(&c(CompareTarget::Value(Bytes::new()), CompareOp::Ne)));
}

#[derive(Debug, Clone)]
enum ModelOp {
    Put(String, String),
    Del(String, bool),
}

fn model_op() -> impl Strategy<Value = ModelOp> {
    let key = prop::sample::select(vec!["/a", "/a/b", "/a/c", "/b", "/b/a"]);
    prop_oneof![
        (key.clone(), "[a-z]{0,3}").prop_map(|(k, v)| ModelOp::Put(k.to_owned(), v)),
        (key, any::<bool>()).prop_map(|(k, p)| ModelOp::Del(k.to_owned(), p)),
    ]
}

proptest! {
    /// Applying a random command sequence matches a plain map model, revisions only
    /// grow, and serialising then restoring the state changes nothing.
    #[test]
    fn matches_model_and_round_trips(ops in prop::collection::vec(model_op(), 0..60)) {
        let mut s = KvState::default();
        let mut model: BTreeMap<String, String> = BTreeMap::new();
        let mut last_rev = 0;
        for op in ops {
            match op {
                ModelOp::Put(k, v) => {
                    s.apply(put(&k, &v), &mut Vec::new());
                    model.insert(k, v);
                }
                ModelOp::Del(k, prefix) => {
                    s.apply(Command::Delete { key: k.clone(), prefix }, &mut Vec::new());
                    model.retain(|mk, _| if prefix { !mk.starts_with(&k) } else { mk != &k });
                }
            }
            prop_assert!(s.revision() >= last_rev);
            last_rev = s.revision();
        }
        let got: BTreeMap<String, String> = s
            .range("/")
            .map(|(k, e)| (k.clone(), String::from_utf8(e.value.to_vec()).unwrap()))
            .collect();
        let held: usize = model.iter().map(|(k, v)| k.len() + v.len()).sum();
        prop_assert_eq!(s.bytes(), held as u64);
        prop_assert_eq!(got, model);
        let bytes = postcard::to_allocvec(&s).unwrap();
        let back: KvState = postcard::from_bytes(&bytes).unwrap();
        prop_assert_eq!(back, s);
    }
}

#[test]
fn lease_revoke_deletes_its_keys_in_one_revision() {
    let mut s = KvState::default();
    let mut ev = Vec::new();
    let CommandResult::LeaseGranted { id, .. } =
        s.apply(Command::LeaseGrant { ttl_ms: 2000 }, &mut ev)
    else {
        panic!("no lease")
    };
    for k in ["/l/a", "/l/b"] {
        let r = s.apply(
            Command::Put {
                key: k.into(),
                value: Bytes::from_static(b"x"),
                prev_rev: None,
                lease: Some(id),
            },
            &mut ev,
        );
        assert!(matches!(r, CommandResult::Put { .. }), "{r:?}");
    }
    // Re-putting a key without the lease unbinds it.
    s.apply(put("/l/b", "y"), &mut ev);
    ev.clear();
    let r = s.apply(Command::LeaseRevoke { id }, &mut ev);
    assert_eq!(
        r,
        CommandResult::LeaseRevoked {
            revision: 4,
            deleted: 1
        }
    );
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].kind, ev[0].key.as_str(), ev[0].mod_rev),
        (EventKind::Delete, "/l/a", 4)
    );
    assert!(s.get("/l/b").is_some());
    assert!(s.leases().is_empty());
    assert_eq!(
        s.apply(Command::LeaseRevoke { id }, &mut ev),
        CommandResult::LeaseNotFound { id }
    );
}

#[test]
fn put_on_missing_lease_writes_nothing() {
    let mut s = KvState::default();
    let mut ev = Vec::new();
    let r = s.apply(
        Command::Put {
            key: "/x".into(),
            value: Bytes::new(),
            prev_rev: None,
            lease: Some(42),
        },
        &mut ev,
    );
    assert_eq!(r, CommandResult::LeaseNotFound { id: 42 });
    assert_eq!(s.revision(), 0);
    assert!(ev.is_empty());
}

fn request(seq: u64, cmd: Command) -> Command {
    Command::Request {
        id: pyxis_client::RequestId { session: 7, seq },
        cmd: Box::new(cmd),
    }
}

#[test]
fn a_repeated_request_answers_its_first_result_and_changes_nothing() {
    let mut s = KvState::default();
    let mut events = Vec::new();
    let first = s.apply(request(1, put("/a", "x")), &mut events);
    assert_eq!(first, CommandResult::Put { revision: 1 });
    s.apply(put("/a", "y"), &mut events);
    events.clear();
    // The late copy of request 1 (a retry after a lost reply) must not overwrite "y".
    let again = s.apply(request(1, put("/a", "x")), &mut events);
    assert_eq!(again, first);
    assert!(events.is_empty());
    assert_eq!(s.revision(), 2);
    let e = s.get("/a").unwrap();
    assert_eq!((e.value.as_ref(), e.version, e.mod_rev), (&b"y"[..], 2, 2));
    // Another id of the same session is a new request.
    assert_eq!(
        s.apply(request(2, put("/a", "x")), &mut events),
        CommandResult::Put { revision: 3 }
    );
}

#[test]
fn a_repeated_lease_grant_names_the_same_lease() {
    let mut s = KvState::default();
    let grant = || request(1, Command::LeaseGrant { ttl_ms: 5000 });
    let first = s.apply(grant(), &mut Vec::new());
    assert_eq!(s.apply(grant(), &mut Vec::new()), first);
    assert_eq!(s.leases().iter().count(), 1);
}

#[test]
fn a_nested_request_is_refused_whole() {
    let mut s = KvState::default();
    let nested = request(1, request(2, put("/a", "x")));
    assert_eq!(
        s.apply(nested, &mut Vec::new()),
        CommandResult::OutcomeUnknown
    );
    assert_eq!(s.revision(), 0);
}

#[test]
fn remembered_requests_survive_a_snapshot_round_trip() {
    let mut s = KvState::default();
    s.apply(request(1, put("/a", "x")), &mut Vec::new());
    let bytes = crate::raft::codec::encode(&s).unwrap();
    let mut back = crate::raft::state_machine::decode_state(&bytes).unwrap();
    assert_eq!(back, s);
    assert_eq!(
        back.apply(request(1, put("/a", "x")), &mut Vec::new()),
        CommandResult::Put { revision: 1 }
    );
    assert_eq!(back.revision(), 1);
}

#[test]
fn a_state_written_before_request_ids_still_loads() {
    // The layout of older snapshots and backups: the same fields without the sessions.
    #[derive(serde::Serialize)]
    struct Old<'a> {
        map: &'a imbl::OrdMap<String, StoredValue>,
        revision: Revision,
        leases: &'a LeaseTable,
    }
    let mut s = KvState::default();
    s.apply(put("/a", "x"), &mut Vec::new());
    s.apply(Command::LeaseGrant { ttl_ms: 9000 }, &mut Vec::new());
    let old = Old {
        map: &s.map,
        revision: s.revision,
        leases: &s.leases,
    };
    let bytes = crate::raft::codec::encode(&old).unwrap();
    let back = crate::raft::state_machine::decode_state(&bytes).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.bytes(), s.bytes());
}
