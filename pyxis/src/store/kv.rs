//! The key space: an ordered map of keys to values with etcd-style revisions.
//!
//! This is the pure data structure the Raft state machine mutates: applying a
//! [`Command`] is deterministic and touches nothing but this map and its lease table
//! (no clock, no I/O, no randomness), so every node that applies the same log ends in
//! the same state. Raft plumbing (log ids, membership, snapshots on disk) lives in
//! `raft::state_machine`; the event history watches read lives in `watch`.

use std::ops::Bound;

use bytes::Bytes;
use pyxis_client::api::{CompareOp, Revision};

use pyxis_client::api::{AuditActor, AuditChange, AuditEntry};

use super::acl::{AUDIT_CHANGES_PER_ENTRY, AclState, audit_value};
use super::command::{Command, CommandResult, Compare, CompareTarget, Op, TxnResult};
use super::lease::LeaseTable;
use super::session::{Seen, Sessions};
use super::value::{LeaseId, StoredValue};
use super::watch::{Event, EventKind};
use serde::{Deserialize, Serialize};

/// The whole key space at one revision, with its leases.
///
/// The maps are persistent (structurally shared): cloning is O(1), so a snapshot or a
/// backup copies the state without holding up `apply` for a time that grows with the
/// number of keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "KvStateRepr")]
pub struct KvState {
    map: imbl::OrdMap<String, StoredValue>,
    revision: Revision,
    leases: LeaseTable,
    /// Request ids applied, so that a repeated request is applied once.
    sessions: Sessions,
    /// Members that have started with data (see [`Command::MemberStarted`]).
    started: imbl::OrdSet<u64>,
    /// Tokens, lease owners and the audit history.
    acl: AclState,
    /// Bytes of keys and values held; derived, so not stored (recounted on decode).
    #[serde(skip)]
    bytes: u64,
}

/// What a [`KvState`] is stored as: everything but the derived byte count.
#[derive(Deserialize)]
struct KvStateRepr {
    map: imbl::OrdMap<String, StoredValue>,
    revision: Revision,
    leases: LeaseTable,
    sessions: Sessions,
    started: imbl::OrdSet<u64>,
    acl: AclState,
}

impl From<KvStateRepr> for KvState {
    fn from(r: KvStateRepr) -> Self {
        let bytes = r.map.iter().map(|(k, e)| entry_bytes(k, e)).sum();
        KvState {
            map: r.map,
            revision: r.revision,
            leases: r.leases,
            sessions: r.sessions,
            started: r.started,
            acl: r.acl,
            bytes,
        }
    }
}

/// A [`KvState`] as builds before request ids stored it (no sessions, no started members):
/// snapshots and backups of that layout still load, with no request remembered.
#[derive(Deserialize)]
pub struct KvStateWithoutSessions {
    map: imbl::OrdMap<String, StoredValue>,
    revision: Revision,
    leases: LeaseTable,
}

impl From<KvStateWithoutSessions> for KvState {
    fn from(r: KvStateWithoutSessions) -> Self {
        KvStateRepr {
            map: r.map,
            revision: r.revision,
            leases: r.leases,
            sessions: Sessions::default(),
            started: imbl::OrdSet::new(),
            acl: AclState::default(),
        }
        .into()
    }
}

/// A [`KvState`] as builds before ACLs stored it: snapshots and backups of that layout
/// still load, with ACLs off.
#[derive(Deserialize)]
pub struct KvStateWithoutAcl {
    map: imbl::OrdMap<String, StoredValue>,
    revision: Revision,
    leases: LeaseTable,
    sessions: Sessions,
    started: imbl::OrdSet<u64>,
}

impl From<KvStateWithoutAcl> for KvState {
    fn from(r: KvStateWithoutAcl) -> Self {
        KvStateRepr {
            map: r.map,
            revision: r.revision,
            leases: r.leases,
            sessions: r.sessions,
            started: r.started,
            acl: AclState::default(),
        }
        .into()
    }
}

/// Bytes a key and its value count for in [`KvState::bytes`].
fn entry_bytes(key: &str, e: &StoredValue) -> u64 {
    (key.len() + e.value.len()) as u64
}

impl KvState {
    /// The current global revision (0 before the first change).
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The lease table.
    pub fn leases(&self) -> &LeaseTable {
        &self.leases
    }

    /// The request ids applied and remembered.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Members that have started with data, in id order.
    pub fn started_members(&self) -> impl Iterator<Item = u64> + '_ {
        self.started.iter().copied()
    }

    /// The ACL state: tokens, lease owners, audit history.
    pub fn acl(&self) -> &AclState {
        &self.acl
    }

    /// One key's entry.
    pub fn get(&self, key: &str) -> Option<&StoredValue> {
        self.map.get(key)
    }

    /// Every key starting with `prefix`, in key order.
    pub fn range<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a StoredValue)> + 'a {
        self.map
            .range::<_, str>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// Applies one command, appending one event per changed key to `events`, and
    /// returns its result. Deterministic: the same state and command always give the
    /// same new state, events and result.
    pub fn apply(&mut self, cmd: Command, events: &mut Vec<Event>) -> CommandResult {
        match cmd {
            Command::Put {
                key,
                value,
                prev_rev,
                lease,
            } => {
                if let Some(id) = lease
                    && !self.leases.contains(id)
                {
                    return CommandResult::LeaseNotFound { id };
                }
                let current = self.map.get(&key).map_or(0, |e| e.mod_rev);
                if let Some(expected) = prev_rev
                    && expected != current
                {
                    return CommandResult::PutConflict { mod_rev: current };
                }
                self.revision += 1;
                self.put_at(key, value, lease, self.revision, events);
                CommandResult::Put {
                    revision: self.revision,
                }
            }
            Command::Delete { key, prefix } => {
                let doomed = self.matching_keys(&key, prefix);
                if !doomed.is_empty() {
                    self.revision += 1;
                    self.delete_at(&doomed, self.revision, events);
                }
                CommandResult::Delete {
                    revision: self.revision,
                    deleted: doomed.len() as u64,
                }
            }
            Command::Txn {
                compare,
                success,
                failure,
            } => self.txn(compare, success, failure, events),
            Command::LeaseGrant { ttl_ms } => CommandResult::LeaseGranted {
                id: self.leases.grant(ttl_ms),
                ttl_ms,
            },
            Command::Request { id, cmd } => match self.sessions.check(id) {
                Seen::Applied(first) => first,
                Seen::Forgotten => CommandResult::OutcomeUnknown,
                // Only the outermost command carries an id; a nested one is refused whole.
                Seen::New if matches!(*cmd, Command::Request { .. }) => {
                    CommandResult::OutcomeUnknown
                }
                Seen::New => {
                    let result = self.apply(*cmd, events);
                    self.sessions.record(id, &result);
                    result
                }
            },
            Command::MemberStarted { id } => {
                self.started.insert(id);
                CommandResult::None
            }
            Command::LeaseGrantOwned { ttl_ms, owner } => {
                let id = self.leases.grant(ttl_ms);
                self.acl.own_lease(id, owner);
                CommandResult::LeaseGranted { id, ttl_ms }
            }
            Command::AclBootstrap { token } => {
                if self.acl.bootstrap(token) {
                    CommandResult::AclBootstrapped
                } else {
                    CommandResult::AclAlreadyBootstrapped
                }
            }
            Command::AclTokenCreate { token } => {
                if self.acl.create(token) {
                    CommandResult::AclTokenCreated
                } else {
                    CommandResult::AclTokenRefused
                }
            }
            Command::AclTokenRevoke { accessor } => match self.acl.revoke(&accessor) {
                Some(_) => CommandResult::AclTokenRevoked,
                None => CommandResult::AclTokenNotFound,
            },
            Command::Audited {
                actor,
                time_ms,
                what,
                cmd,
            } => self.audited(actor, time_ms, what, *cmd, events),
            Command::Anonymous { cmd } => {
                if self.acl.enabled() {
                    CommandResult::AclRequired
                } else {
                    self.apply(*cmd, events)
                }
            }
            // Only an `Audited` wrapper gives a note meaning.
            Command::AuditNote { .. } => CommandResult::None,
            Command::LeaseRevoke { id } => match self.leases.revoke(id) {
                None => CommandResult::LeaseNotFound { id },
                Some(keys) => {
                    self.acl.forget_lease(id);
                    let doomed: Vec<String> = keys.into_iter().collect();
                    if !doomed.is_empty() {
                        self.revision += 1;
                        self.delete_at(&doomed, self.revision, events);
                    }
                    CommandResult::LeaseRevoked {
                        revision: self.revision,
                        deleted: doomed.len() as u64,
                    }
                }
            },
        }
    }

    /// Applies `cmd` and records what it changed, with who and when, in the audit history.
    /// A command that changed nothing (a failed compare, a refused token) is not recorded,
    /// and an anonymous one is refused once ACLs are on.
    fn audited(
        &mut self,
        actor: AuditActor,
        time_ms: u64,
        what: String,
        cmd: Command,
        events: &mut Vec<Event>,
    ) -> CommandResult {
        // The proposing node thought ACLs were off, but they are on now: a caller without
        // a token must not slip in through a node that lags behind the bootstrap.
        if actor.role.is_none()
            && self.acl.enabled()
            && !matches!(cmd, Command::AclBootstrap { .. })
        {
            return CommandResult::AclRequired;
        }
        let before = Before::of(&cmd, &self.map);
        // Only an ACL command changes the tokens; a copy held across any other apply would
        // make the audit history copy its newest chunk on every write.
        let tokens_before = matches!(
            cmd,
            Command::AclBootstrap { .. }
                | Command::AclTokenCreate { .. }
                | Command::AclTokenRevoke { .. }
        )
        .then(|| self.acl.clone());
        let first = events.len();
        let revoked_lease = match &cmd {
            Command::LeaseRevoke { id } => Some(*id),
            _ => None,
        };
        let note = match &cmd {
            Command::AuditNote { key, before, after } => Some(AuditChange {
                key: key.clone(),
                before: before.clone(),
                after: after.clone(),
            }),
            _ => None,
        };
        let result = self.apply(cmd, events);
        let mut changes = Vec::new();
        let mut changed = 0u64;
        for e in &events[first..] {
            changed += 1;
            if changes.len() < AUDIT_CHANGES_PER_ENTRY {
                changes.push(AuditChange {
                    key: e.key.clone(),
                    before: before.value_of(&e.key),
                    after: match e.kind {
                        EventKind::Put => Some(audit_value(&e.value)),
                        EventKind::Delete => None,
                    },
                });
            }
        }
        let extra = match &result {
            CommandResult::AclBootstrapped
            | CommandResult::AclTokenCreated
            | CommandResult::AclTokenRevoked => tokens_before
                .as_ref()
                .and_then(|b| acl_change(b, &self.acl)),
            CommandResult::LeaseGranted { id, ttl_ms } => Some(AuditChange {
                key: format!("leases/{id}"),
                before: None,
                after: Some(format!("ttl_ms={ttl_ms}")),
            }),
            CommandResult::LeaseRevoked { .. } => revoked_lease.map(|id| AuditChange {
                key: format!("leases/{id}"),
                before: Some("granted".into()),
                after: None,
            }),
            _ => note,
        };
        if let Some(c) = extra {
            changed += 1;
            changes.push(c);
        }
        if changed > 0 {
            self.acl.record(AuditEntry {
                revision: self.revision,
                time_ms,
                actor,
                what,
                more: changed.saturating_sub(changes.len() as u64),
                changes,
            });
        }
        result
    }

    fn txn(
        &mut self,
        compare: Vec<Compare>,
        success: Vec<Op>,
        failure: Vec<Op>,
        events: &mut Vec<Event>,
    ) -> CommandResult {
        let succeeded = compare.iter().all(|c| self.holds(c));
        let ops = if succeeded { success } else { failure };
        // A put on a missing lease fails the whole transaction before anything changes.
        for op in &ops {
            if let Op::Put {
                lease: Some(id), ..
            } = op
                && !self.leases.contains(*id)
            {
                return CommandResult::LeaseNotFound { id: *id };
            }
        }
        let writes = ops.iter().any(|op| match op {
            Op::Put { .. } => true,
            Op::Delete { key, prefix } => !self.matching_keys(key, *prefix).is_empty(),
            Op::Get { .. } => false,
        });
        // One transaction is one revision, however many keys it touches.
        let rev = if writes {
            self.revision + 1
        } else {
            self.revision
        };
        let mut results = Vec::with_capacity(ops.len());
        // The gets' results are bounded here, on every node alike: a transaction accepted
        // into the log must never build an unbounded result when it is applied or replayed.
        let mut budget = super::read::Budget::new(super::read::APPLY_RESULT_LIMIT);
        for op in ops {
            results.push(match op {
                Op::Put { key, value, lease } => {
                    self.put_at(key, value, lease, rev, events);
                    TxnResult::Put
                }
                Op::Delete { key, prefix } => {
                    let doomed = self.matching_keys(&key, prefix);
                    self.delete_at(&doomed, rev, events);
                    TxnResult::Delete(doomed.len() as u64)
                }
                Op::Get { key, prefix } => self.txn_get(&key, prefix, &mut budget),
            });
        }
        self.revision = rev;
        CommandResult::Txn {
            succeeded,
            revision: rev,
            results,
        }
    }

    fn put_at(
        &mut self,
        key: String,
        value: Bytes,
        lease: Option<LeaseId>,
        rev: Revision,
        events: &mut Vec<Event>,
    ) {
        let old_lease = self.map.get(&key).and_then(|e| e.lease);
        if old_lease != lease {
            if let Some(old) = old_lease {
                self.leases.detach(old, &key);
            }
            if let Some(new) = lease {
                self.leases.attach(new, &key);
            }
        }
        events.push(Event {
            kind: EventKind::Put,
            key: key.clone(),
            value: value.clone(),
            mod_rev: rev,
            lease,
        });
        match self.map.get_mut(&key) {
            Some(e) => {
                self.bytes = self.bytes - e.value.len() as u64 + value.len() as u64;
                e.value = value;
                e.mod_rev = rev;
                e.version += 1;
                e.lease = lease;
            }
            None => {
                self.bytes += (key.len() + value.len()) as u64;
                self.map.insert(
                    key,
                    StoredValue {
                        value,
                        create_rev: rev,
                        mod_rev: rev,
                        version: 1,
                        lease,
                    },
                );
            }
        }
    }

    fn delete_at(&mut self, keys: &[String], rev: Revision, events: &mut Vec<Event>) {
        for k in keys {
            if let Some(e) = self.map.remove(k) {
                self.bytes -= entry_bytes(k, &e);
                if let Some(l) = e.lease {
                    self.leases.detach(l, k);
                }
                events.push(Event {
                    kind: EventKind::Delete,
                    key: k.clone(),
                    value: Bytes::new(),
                    mod_rev: rev,
                    lease: None,
                });
            }
        }
    }

    fn matching_keys(&self, key: &str, prefix: bool) -> Vec<String> {
        if prefix {
            self.range(key).map(|(k, _)| k.clone()).collect()
        } else if self.map.contains_key(key) {
            vec![key.to_owned()]
        } else {
            Vec::new()
        }
    }

    pub(super) fn holds(&self, c: &Compare) -> bool {
        let e = self.map.get(&c.key);
        let ord = match &c.target {
            CompareTarget::Value(v) => match e {
                // A missing key has no value: only `ne` can hold.
                None => return c.op == CompareOp::Ne,
                Some(e) => e.value.as_ref().cmp(v.as_ref()),
            },
            CompareTarget::ModRev(r) => e.map_or(0, |e| e.mod_rev).cmp(r),
            CompareTarget::Version(v) => e.map_or(0, |e| e.version).cmp(v),
            CompareTarget::Exists(x) => e.is_some().cmp(x),
        };
        match c.op {
            CompareOp::Eq => ord.is_eq(),
            CompareOp::Ne => ord.is_ne(),
            CompareOp::Lt => ord.is_lt(),
            CompareOp::Gt => ord.is_gt(),
        }
    }
}

/// The values an audited command's keys held before it applied.
enum Before {
    /// A single-key put or delete, the hot path: its one value, looked up directly.
    Key(String, Option<String>),
    /// A command that may touch many keys (a transaction, a prefix delete, a lease
    /// revoke): a copy of the map, O(1) to take, though the apply then copies each node
    /// it changes instead of changing it in place.
    Map(imbl::OrdMap<String, StoredValue>),
}

impl Before {
    fn of(cmd: &Command, map: &imbl::OrdMap<String, StoredValue>) -> Before {
        match cmd {
            Command::Put { key, .. } | Command::Delete { key, prefix: false } => {
                Before::Key(key.clone(), map.get(key).map(|v| audit_value(&v.value)))
            }
            _ => Before::Map(map.clone()),
        }
    }

    /// What `key` held, cut for the audit history.
    fn value_of(&self, key: &str) -> Option<String> {
        match self {
            Before::Key(k, v) => v.clone().filter(|_| k == key),
            Before::Map(m) => m.get(key).map(|v| audit_value(&v.value)),
        }
    }
}

/// The token that appeared or went between two ACL states, as an audit change on the
/// pseudo key `acl/tokens/ACCESSOR` (role, node and description; never the hash).
fn acl_change(before: &AclState, after: &AclState) -> Option<AuditChange> {
    let show = |t: &super::acl::TokenRecord| {
        format!(
            "role={} node={} description={:?}",
            t.role,
            t.node.as_deref().unwrap_or("-"),
            t.description
        )
    };
    let added = after
        .tokens()
        .find(|t| before.by_hash(&t.hash).is_none())
        .map(|t| (t, None, Some(show(t))));
    let removed = || {
        before
            .tokens()
            .find(|t| after.by_hash(&t.hash).is_none())
            .map(|t| (t, Some(show(t)), None))
    };
    let (t, before, after) = added.or_else(removed)?;
    Some(AuditChange {
        key: format!("acl/tokens/{}", t.accessor),
        before,
        after,
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod audit_tests;
