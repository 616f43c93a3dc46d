//! The lease table of the key space: which leases exist and which keys each one holds.
//!
//! Only membership is replicated here. When a lease expires is decided by the leader's
//! timers (`lease_timer`), which propose `LeaseRevoke` through Raft; the state machine
//! never reads a clock, so every node applies the same revocations at the same revision.

use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};

use super::value::LeaseId;

/// One lease as replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Time to live granted.
    pub ttl_ms: u64,
    /// Keys bound to it.
    pub keys: OrdSet<String>,
}

/// Every live lease, with the counter that names the next one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTable {
    leases: OrdMap<LeaseId, Lease>,
    last_id: LeaseId,
}

impl LeaseTable {
    /// Creates a lease and returns its id (1, 2, ... in log order, never reused).
    pub fn grant(&mut self, ttl_ms: u64) -> LeaseId {
        self.last_id += 1;
        self.leases.insert(
            self.last_id,
            Lease {
                ttl_ms,
                keys: OrdSet::new(),
            },
        );
        self.last_id
    }

    /// Removes a lease, returning the keys it held.
    pub fn revoke(&mut self, id: LeaseId) -> Option<OrdSet<String>> {
        self.leases.remove(&id).map(|l| l.keys)
    }

    /// One lease.
    pub fn get(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Whether a lease exists.
    pub fn contains(&self, id: LeaseId) -> bool {
        self.leases.contains_key(&id)
    }

    /// Every lease id with its TTL.
    pub fn iter(&self) -> impl Iterator<Item = (LeaseId, u64)> + '_ {
        self.leases.iter().map(|(id, l)| (*id, l.ttl_ms))
    }

    /// Number of live leases.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether no lease is live.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Records that `key` is now held by `id` (the lease must exist).
    pub fn attach(&mut self, id: LeaseId, key: &str) {
        if let Some(l) = self.leases.get_mut(&id) {
            l.keys.insert(key.to_owned());
        }
    }

    /// Records that `key` is no longer held by `id`.
    pub fn detach(&mut self, id: LeaseId, key: &str) {
        if let Some(l) = self.leases.get_mut(&id) {
            l.keys.remove(key);
        }
    }
}
