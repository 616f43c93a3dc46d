//! One stored key's value and bookkeeping, and its wire form.
//!
//! Shared by the key space (`kv`, which stores values) and the command results
//! (`command`, whose transaction reads return them); it imports neither.

use bytes::Bytes;
use pyxis_client::api::{KeyValue, Revision};
use serde::{Deserialize, Serialize};

/// Identifier of a lease.
pub type LeaseId = u64;

/// One stored key's value and bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredValue {
    /// The raw value.
    pub value: Bytes,
    /// Revision that created the key.
    pub create_rev: Revision,
    /// Revision of the last change.
    pub mod_rev: Revision,
    /// Puts since creation.
    pub version: u64,
    /// Lease holding the key, if any.
    pub lease: Option<LeaseId>,
}

/// Builds the wire form of a stored entry.
pub fn to_key_value(key: String, e: &StoredValue) -> KeyValue {
    KeyValue {
        key,
        value: e.value.clone(),
        create_rev: e.create_rev,
        mod_rev: e.mod_rev,
        version: e.version,
        lease: e.lease,
    }
}
