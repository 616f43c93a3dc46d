//! Applying ACL and audited commands: the audit entry's before and after, what is not
//! recorded, lease owners, and the older snapshot layout without ACLs.

use super::*;
use crate::store::acl::{TokenRecord, anonymous};
use pyxis_client::api::Role;

fn audited(cmd: Command) -> Command {
    Command::Audited {
        actor: anonymous(),
        time_ms: 7,
        what: "PUT /v1/kv/a".into(),
        cmd: Box::new(cmd),
    }
}

fn put(key: &str, value: &str, prev_rev: Option<u64>) -> Command {
    Command::Put {
        key: key.into(),
        value: Bytes::from(value.to_owned()),
        prev_rev,
        lease: None,
    }
}

fn token(hash_digit: char, role: Role) -> TokenRecord {
    TokenRecord {
        accessor: hash_digit.to_string().repeat(16),
        hash: hash_digit.to_string().repeat(64),
        role,
        node: None,
        description: "ops".into(),
        created_at_ms: 1,
    }
}

/// An audited put records the value before and after at the put's revision; a failed
/// compare-and-set changes nothing and records nothing.
#[test]
fn audited_put_records_before_and_after() {
    let mut s = KvState::default();
    s.apply(put("/a", "old", None), &mut Vec::new());
    let r = s.apply(audited(put("/a", "new", None)), &mut Vec::new());
    assert_eq!(r, CommandResult::Put { revision: 2 });
    let e = s.acl().last_audit().cloned().expect("an entry");
    assert_eq!((e.revision, e.time_ms, e.more), (2, 7, 0));
    assert_eq!(e.changes.len(), 1);
    assert_eq!(e.changes[0].key, "/a");
    assert_eq!(e.changes[0].before.as_deref(), Some("old"));
    assert_eq!(e.changes[0].after.as_deref(), Some("new"));
    let r = s.apply(audited(put("/a", "x", Some(1))), &mut Vec::new());
    assert!(matches!(r, CommandResult::PutConflict { .. }));
    assert_eq!(s.acl().recorded(), 1, "a failed compare was recorded");
}

/// A delete of many keys records the first ones and counts the rest.
#[test]
fn audited_prefix_delete_is_cut() {
    let mut s = KvState::default();
    for i in 0..20 {
        s.apply(put(&format!("/p/{i:02}"), "v", None), &mut Vec::new());
    }
    let del = Command::Delete {
        key: "/p/".into(),
        prefix: true,
    };
    s.apply(audited(del), &mut Vec::new());
    let e = s.acl().last_audit().cloned().expect("an entry");
    assert_eq!(e.changes.len(), AUDIT_CHANGES_PER_ENTRY);
    assert_eq!(e.more, 20 - e.changes.len() as u64);
    assert!(
        e.changes
            .iter()
            .all(|c| c.before.is_some() && c.after.is_none())
    );
}

/// Bootstrap applies once, token changes are audited without their hash, and a lease
/// granted for a node keeps its owner until it is revoked.
#[test]
fn acl_commands_apply_deterministically() {
    let mut s = KvState::default();
    let r = s.apply(
        audited(Command::AclBootstrap {
            token: token('a', Role::Admin),
        }),
        &mut Vec::new(),
    );
    assert_eq!(r, CommandResult::AclBootstrapped);
    let e = s.acl().last_audit().cloned().expect("an entry");
    assert_eq!(e.changes[0].key, format!("acl/tokens/{}", "a".repeat(16)));
    assert!(
        !format!("{e:?}").contains(&"a".repeat(64)),
        "the hash was audited"
    );
    let again = Command::AclBootstrap {
        token: token('b', Role::Admin),
    };
    assert_eq!(
        s.apply(again, &mut Vec::new()),
        CommandResult::AclAlreadyBootstrapped
    );
    let create = Command::AclTokenCreate {
        token: token('c', Role::Read),
    };
    assert_eq!(
        s.apply(create, &mut Vec::new()),
        CommandResult::AclTokenCreated
    );
    let revoke = Command::AclTokenRevoke {
        accessor: "c".repeat(16),
    };
    assert_eq!(
        s.apply(revoke.clone(), &mut Vec::new()),
        CommandResult::AclTokenRevoked
    );
    assert_eq!(
        s.apply(revoke, &mut Vec::new()),
        CommandResult::AclTokenNotFound
    );

    let grant = Command::LeaseGrantOwned {
        ttl_ms: 1000,
        owner: "n1".into(),
    };
    let CommandResult::LeaseGranted { id, .. } = s.apply(grant, &mut Vec::new()) else {
        panic!("no lease granted");
    };
    assert_eq!(s.acl().lease_owner(id), Some("n1"));
    s.apply(Command::LeaseRevoke { id }, &mut Vec::new());
    assert_eq!(s.acl().lease_owner(id), None);
}

/// A state encoded before ACLs existed (no `acl` field) loads with ACLs off.
#[test]
fn state_without_acl_decodes() {
    #[derive(Serialize)]
    struct Old {
        map: imbl::OrdMap<String, StoredValue>,
        revision: Revision,
        leases: LeaseTable,
        sessions: Sessions,
        started: imbl::OrdSet<u64>,
    }
    let mut s = KvState::default();
    s.apply(put("/a", "1", None), &mut Vec::new());
    let old = Old {
        map: s.map.clone(),
        revision: s.revision,
        leases: s.leases.clone(),
        sessions: s.sessions.clone(),
        started: s.started.clone(),
    };
    let bytes = crate::raft::codec::encode(&old).expect("encode");
    let back = crate::raft::state_machine::decode_state(&bytes).expect("decode");
    assert_eq!(
        back.get("/a").map(|e| e.value.clone()),
        Some(Bytes::from("1"))
    );
    assert!(!back.acl().enabled());
    assert_eq!(back.revision(), 1);
}

/// An anonymous change proposed by a node that had not applied the bootstrap is refused
/// when it applies after it; a token's change is not.
#[test]
fn anonymous_changes_are_refused_once_acls_are_on() {
    let mut s = KvState::default();
    s.apply(
        Command::AclBootstrap {
            token: token('a', Role::Admin),
        },
        &mut Vec::new(),
    );
    let mut events = Vec::new();
    let r = s.apply(audited(put("/a", "x", None)), &mut events);
    assert_eq!(r, CommandResult::AclRequired);
    assert!(events.is_empty() && s.get("/a").is_none() && s.revision() == 0);
    let as_admin = Command::Audited {
        actor: AuditActor {
            accessor: Some("a".repeat(16)),
            description: "ops".into(),
            role: Some(Role::Admin),
        },
        time_ms: 1,
        what: "PUT /v1/kv/a".into(),
        cmd: Box::new(put("/a", "x", None)),
    };
    assert_eq!(
        s.apply(as_admin, &mut Vec::new()),
        CommandResult::Put { revision: 1 }
    );
}

/// A note records one change outside the key space when audited, and nothing alone.
#[test]
fn audit_notes_record_membership_changes() {
    let mut s = KvState::default();
    let note = || Command::AuditNote {
        key: "members/4".into(),
        before: None,
        after: Some("addr=127.0.0.1:1".into()),
    };
    assert_eq!(s.apply(note(), &mut Vec::new()), CommandResult::None);
    assert_eq!(s.acl().recorded(), 0);
    s.apply(audited(note()), &mut Vec::new());
    let e = s.acl().last_audit().cloned().expect("an entry");
    assert_eq!(e.changes[0].key, "members/4");
    assert_eq!(e.changes[0].after.as_deref(), Some("addr=127.0.0.1:1"));
    assert_eq!(s.revision(), 0, "a note is not a key-space change");
}
