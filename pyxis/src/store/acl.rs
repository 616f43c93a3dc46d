//! The replicated ACL state: whether ACLs are on, the tokens (hashed), which node owns
//! each lease, and the bounded audit history.
//!
//! Plain data mutated by `store::kv` when an ACL command or an audited command applies, so
//! every node holds the same tokens and history and checks a caller against its own
//! applied state. Secrets never reach this module: the HTTP layer (`crate::acl`) makes and
//! hashes them. What a role may do is `crate::acl`'s table, not this module's.

use imbl::{OrdMap, Vector};
use pyxis_client::api::{AuditActor, AuditEntry, Role};
use serde::{Deserialize, Serialize};

use super::value::LeaseId;

/// Audit entries kept; the oldest goes when a new one would exceed this.
pub const AUDIT_CAPACITY: usize = 1000;

/// Key changes kept per audit entry; the rest are only counted (`more`).
pub const AUDIT_CHANGES_PER_ENTRY: usize = 16;

/// Bytes of a before or after value kept in an audit entry.
pub const AUDIT_VALUE_BYTES: usize = 512;

/// One token as replicated: the sha256 of its secret, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public id, safe to show and log (hex).
    pub accessor: String,
    /// Hex sha256 of the secret.
    pub hash: String,
    /// What it may do.
    pub role: Role,
    /// The node a `register` token is bound to.
    pub node: Option<String>,
    /// Free text naming the holder (shown in the audit history).
    pub description: String,
    /// Creation time, unix milliseconds, from the proposing node's clock.
    pub created_at_ms: u64,
}

/// The actor of a change made while ACLs are off.
pub fn anonymous() -> AuditActor {
    AuditActor {
        accessor: None,
        description: "anonymous".into(),
        role: None,
    }
}

/// The replicated ACL state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclState {
    /// Whether `acl bootstrap` has applied: from then on every `/v1` call needs a token.
    enabled: bool,
    /// Tokens by secret hash.
    tokens: OrdMap<String, TokenRecord>,
    /// The node that granted each lease through a `register` token.
    lease_owners: OrdMap<LeaseId, String>,
    /// The audit history, oldest first, at most [`AUDIT_CAPACITY`].
    audit: Vector<AuditEntry>,
    /// Audit entries ever recorded (so a caller can tell that an apply added one).
    recorded: u64,
}

impl AclState {
    /// Whether ACLs are on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The token whose secret hashes to `hash`.
    pub fn by_hash(&self, hash: &str) -> Option<&TokenRecord> {
        self.tokens.get(hash)
    }

    /// The token with public id `accessor`.
    pub fn by_accessor(&self, accessor: &str) -> Option<&TokenRecord> {
        self.tokens.values().find(|t| t.accessor == accessor)
    }

    /// Every token, in hash order (which says nothing about the secret's value).
    pub fn tokens(&self) -> impl Iterator<Item = &TokenRecord> + '_ {
        self.tokens.values()
    }

    /// The node that owns lease `id`, if one granted it through a `register` token.
    pub fn lease_owner(&self, id: LeaseId) -> Option<&str> {
        self.lease_owners.get(&id).map(String::as_str)
    }

    /// The newest `limit` audit entries, oldest first.
    pub fn audit(&self, limit: usize) -> impl Iterator<Item = &AuditEntry> + '_ {
        let skip = self.audit.len().saturating_sub(limit);
        self.audit.iter().skip(skip)
    }

    /// Turns ACLs on with the first token; `false` (and nothing changed) if already on.
    pub(super) fn bootstrap(&mut self, token: TokenRecord) -> bool {
        if self.enabled {
            return false;
        }
        self.enabled = true;
        self.tokens.insert(token.hash.clone(), token);
        true
    }

    /// Adds a token; `false` (nothing changed) while ACLs are off or if the hash or the
    /// accessor is taken (random 256/64-bit values: only a replayed command collides).
    pub(super) fn create(&mut self, token: TokenRecord) -> bool {
        if !self.enabled
            || self.tokens.contains_key(&token.hash)
            || self.by_accessor(&token.accessor).is_some()
        {
            return false;
        }
        self.tokens.insert(token.hash.clone(), token);
        true
    }

    /// Removes the token with `accessor`, returning it.
    pub(super) fn revoke(&mut self, accessor: &str) -> Option<TokenRecord> {
        let hash = self.by_accessor(accessor)?.hash.clone();
        self.tokens.remove(&hash)
    }

    /// Records the owner of a lease just granted.
    pub(super) fn own_lease(&mut self, id: LeaseId, node: String) {
        self.lease_owners.insert(id, node);
    }

    /// Forgets the owner of a lease that ended.
    pub(super) fn forget_lease(&mut self, id: LeaseId) {
        self.lease_owners.remove(&id);
    }

    /// Audit entries ever recorded, including those the history no longer holds.
    pub fn recorded(&self) -> u64 {
        self.recorded
    }

    /// The newest audit entry.
    pub fn last_audit(&self) -> Option<&AuditEntry> {
        self.audit.last()
    }

    /// Appends an audit entry, dropping the oldest past [`AUDIT_CAPACITY`].
    pub(super) fn record(&mut self, entry: AuditEntry) {
        self.recorded += 1;
        self.audit.push_back(entry);
        while self.audit.len() > AUDIT_CAPACITY {
            self.audit.pop_front();
        }
    }
}

/// A value as an audit entry shows it: UTF-8 (lossy), cut to [`AUDIT_VALUE_BYTES`] on a
/// character boundary, with `…` when cut.
pub fn audit_value(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(AUDIT_VALUE_BYTES)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if bytes.len() > AUDIT_VALUE_BYTES {
        // A multi-byte character cut in two shows as U+FFFD; drop it.
        if s.ends_with('\u{FFFD}') {
            s.pop();
        }
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(hash: &str, accessor: &str) -> TokenRecord {
        TokenRecord {
            accessor: accessor.into(),
            hash: hash.into(),
            role: Role::Admin,
            node: None,
            description: "t".into(),
            created_at_ms: 1,
        }
    }

    /// Bootstrap turns ACLs on once; a second one changes nothing.
    #[test]
    fn bootstrap_applies_once() {
        let mut acl = AclState::default();
        assert!(!acl.enabled());
        assert!(acl.bootstrap(token("h1", "a1")));
        assert!(acl.enabled());
        assert!(!acl.bootstrap(token("h2", "a2")));
        assert!(acl.by_hash("h2").is_none());
        assert_eq!(acl.tokens().count(), 1);
    }

    /// Tokens are found by hash and accessor, and go on revoke; none is made while off.
    #[test]
    fn create_lookup_revoke() {
        let mut acl = AclState::default();
        assert!(!acl.create(token("h1", "a1")), "created while ACLs are off");
        acl.bootstrap(token("h0", "a0"));
        assert!(acl.create(token("h1", "a1")));
        assert!(!acl.create(token("h1", "a9")), "duplicate hash");
        assert!(!acl.create(token("h9", "a1")), "duplicate accessor");
        assert_eq!(acl.by_hash("h1").map(|t| t.accessor.as_str()), Some("a1"));
        assert_eq!(acl.by_accessor("a1").map(|t| t.hash.as_str()), Some("h1"));
        assert!(acl.revoke("a1").is_some());
        assert!(acl.by_hash("h1").is_none());
        assert!(acl.revoke("a1").is_none());
    }

    /// The history keeps the newest entries up to its capacity and pages from the end.
    #[test]
    fn audit_is_bounded_and_newest_last() {
        let mut acl = AclState::default();
        for i in 0..(AUDIT_CAPACITY as u64 + 5) {
            acl.record(AuditEntry {
                revision: i,
                time_ms: i,
                actor: anonymous(),
                what: "PUT /v1/kv/a".into(),
                changes: vec![],
                more: 0,
            });
        }
        assert_eq!(acl.audit(usize::MAX).count(), AUDIT_CAPACITY);
        let last: Vec<u64> = acl.audit(2).map(|e| e.revision).collect();
        assert_eq!(
            last,
            vec![AUDIT_CAPACITY as u64 + 3, AUDIT_CAPACITY as u64 + 4]
        );
        assert_eq!(acl.audit(usize::MAX).next().map(|e| e.revision), Some(5));
    }

    /// Long values are cut, and a character cut in half is dropped rather than mangled.
    #[test]
    fn audit_values_are_cut() {
        assert_eq!(audit_value(b"abc"), "abc");
        let long = "é".repeat(AUDIT_VALUE_BYTES);
        let cut = audit_value(long.as_bytes());
        assert!(cut.ends_with('…'));
        assert!(!cut.contains('\u{FFFD}'));
        assert!(cut.len() <= AUDIT_VALUE_BYTES + '…'.len_utf8());
    }
}
