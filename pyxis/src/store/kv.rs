//! The key space: an ordered map of keys to values with etcd-style revisions.
//!
//! This is the pure data structure the Raft state machine mutates: applying a
//! [`Command`] is deterministic and touches nothing but this map (no clock, no I/O,
//! no randomness), so every node that applies the same log ends in the same state.
//! Raft plumbing (log ids, membership, snapshots on disk) lives in `raft::state_machine`.

use std::ops::Bound;

use bytes::Bytes;
use pyxis_client::api::{CompareOp, KeyValue, Revision, TxnOpResult};
use serde::{Deserialize, Serialize};

/// One stored key's value and bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The raw value.
    pub value: Bytes,
    /// Revision that created the key.
    pub create_rev: Revision,
    /// Revision of the last change.
    pub mod_rev: Revision,
    /// Puts since creation.
    pub version: u64,
}

/// What a transaction compare looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// The value's bytes (a missing key never equals any value).
    Value(Bytes),
    /// The mod revision (0 for a missing key).
    ModRev(Revision),
    /// The version (0 for a missing key).
    Version(u64),
    /// Whether the key exists.
    Exists(bool),
}

/// One validated transaction condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    /// The key compared.
    pub key: String,
    /// The operator.
    pub op: CompareOp,
    /// What is compared.
    pub target: CompareTarget,
}

/// One validated transaction operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Write a value.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
    },
    /// Delete a key or a subtree.
    Delete {
        /// The key or prefix.
        key: String,
        /// Whether `key` is a prefix.
        prefix: bool,
    },
    /// Read a key or a subtree.
    Get {
        /// The key or prefix.
        key: String,
        /// Whether `key` is a prefix.
        prefix: bool,
    },
}

/// A change to the key space, as carried in the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Put one key, optionally only if its mod revision equals `prev_rev` (0 = absent).
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
        /// Compare-and-set condition on the mod revision.
        prev_rev: Option<Revision>,
    },
    /// Delete one key or every key under a prefix.
    Delete {
        /// The key or prefix.
        key: String,
        /// Whether `key` is a prefix.
        prefix: bool,
    },
    /// Compare, then run one branch atomically at one revision.
    Txn {
        /// Conditions.
        compare: Vec<Compare>,
        /// Ops if all conditions hold.
        success: Vec<Op>,
        /// Ops otherwise.
        failure: Vec<Op>,
    },
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values can be megabytes: log their size, never their bytes.
        match self {
            Command::Put {
                key,
                value,
                prev_rev,
            } => {
                write!(f, "put {key} ({} bytes)", value.len())?;
                match prev_rev {
                    Some(r) => write!(f, " if mod_rev={r}"),
                    None => Ok(()),
                }
            }
            Command::Delete { key, prefix } => {
                write!(f, "delete {key}{}", if *prefix { "*" } else { "" })
            }
            Command::Txn {
                compare,
                success,
                failure,
            } => write!(
                f,
                "txn ({} compares, {}/{} ops)",
                compare.len(),
                success.len(),
                failure.len()
            ),
        }
    }
}

/// The outcome of applying one [`Command`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CommandResult {
    /// Entries without a command (blank, membership) answer nothing.
    #[default]
    None,
    /// A put was applied at `revision`.
    Put {
        /// The new global revision.
        revision: Revision,
    },
    /// A compare-and-set put did not hold; nothing was written.
    PutConflict {
        /// The key's current mod revision (0 if absent).
        mod_rev: Revision,
    },
    /// A delete removed `deleted` keys.
    Delete {
        /// Revision after the delete.
        revision: Revision,
        /// How many keys went.
        deleted: u64,
    },
    /// A transaction ran one branch.
    Txn {
        /// Whether the success branch ran.
        succeeded: bool,
        /// Revision after the transaction.
        revision: Revision,
        /// One result per op of the branch.
        results: Vec<TxnResult>,
    },
}

/// Result of one transaction op (owned by the state machine; converted to the wire type at the edge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnResult {
    /// A put was applied.
    Put,
    /// A delete removed keys.
    Delete(u64),
    /// A read returned entries.
    Get(Vec<(String, Entry)>),
}

impl From<TxnResult> for TxnOpResult {
    fn from(r: TxnResult) -> Self {
        match r {
            TxnResult::Put => TxnOpResult::Put {},
            TxnResult::Delete(deleted) => TxnOpResult::Delete { deleted },
            TxnResult::Get(entries) => TxnOpResult::Get {
                entries: entries
                    .into_iter()
                    .map(|(k, e)| to_key_value(k, &e))
                    .collect(),
            },
        }
    }
}

/// Builds the wire form of a stored entry.
pub fn to_key_value(key: String, e: &Entry) -> KeyValue {
    KeyValue {
        key,
        value: e.value.clone(),
        create_rev: e.create_rev,
        mod_rev: e.mod_rev,
        version: e.version,
    }
}

/// The whole key space at one revision.
///
/// The map is persistent (structurally shared): cloning it is O(1), so a snapshot or a
/// backup copies the state without holding up `apply` for a time that grows with the
/// number of keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvState {
    map: imbl::OrdMap<String, Entry>,
    revision: Revision,
}

impl KvState {
    /// The current global revision (0 before the first change).
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// One key's entry.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.map.get(key)
    }

    /// Every key starting with `prefix`, in key order.
    pub fn range<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Entry)> + 'a {
        self.map
            .range::<_, str>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// Applies one command; returns its result. Deterministic: the same state and
    /// command always give the same new state and result.
    pub fn apply(&mut self, cmd: Command) -> CommandResult {
        match cmd {
            Command::Put {
                key,
                value,
                prev_rev,
            } => {
                let current = self.map.get(&key).map_or(0, |e| e.mod_rev);
                if let Some(expected) = prev_rev
                    && expected != current
                {
                    return CommandResult::PutConflict { mod_rev: current };
                }
                self.revision += 1;
                self.put_at(key, value, self.revision);
                CommandResult::Put {
                    revision: self.revision,
                }
            }
            Command::Delete { key, prefix } => {
                let doomed = self.matching_keys(&key, prefix);
                if !doomed.is_empty() {
                    self.revision += 1;
                    for k in &doomed {
                        self.map.remove(k);
                    }
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
            } => {
                let succeeded = compare.iter().all(|c| self.holds(c));
                let ops = if succeeded { success } else { failure };
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
                for op in ops {
                    results.push(match op {
                        Op::Put { key, value } => {
                            self.put_at(key, value, rev);
                            TxnResult::Put
                        }
                        Op::Delete { key, prefix } => {
                            let doomed = self.matching_keys(&key, prefix);
                            for k in &doomed {
                                self.map.remove(k);
                            }
                            TxnResult::Delete(doomed.len() as u64)
                        }
                        Op::Get { key, prefix } => TxnResult::Get(self.read(&key, prefix)),
                    });
                }
                self.revision = rev;
                CommandResult::Txn {
                    succeeded,
                    revision: rev,
                    results,
                }
            }
        }
    }

    /// Reads one key or a subtree as owned entries.
    pub fn read(&self, key: &str, prefix: bool) -> Vec<(String, Entry)> {
        if prefix {
            self.range(key)
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect()
        } else {
            self.map
                .get(key)
                .map(|e| vec![(key.to_owned(), e.clone())])
                .unwrap_or_default()
        }
    }

    fn put_at(&mut self, key: String, value: Bytes, rev: Revision) {
        match self.map.get_mut(&key) {
            Some(e) => {
                e.value = value;
                e.mod_rev = rev;
                e.version += 1;
            }
            None => {
                self.map.insert(
                    key,
                    Entry {
                        value,
                        create_rev: rev,
                        mod_rev: rev,
                        version: 1,
                    },
                );
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

    fn holds(&self, c: &Compare) -> bool {
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

#[cfg(test)]
mod tests;
