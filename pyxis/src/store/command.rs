//! The commands carried in the Raft log and what applying each one answers.
//!
//! Plain data: `store::kv` applies them, `http` builds them from validated requests.
//! It imports only `store::entry`, never `store::kv`.
//! New variants go at the end of each enum so that logs and snapshots written by an
//! older build still decode.

use bytes::Bytes;
use pyxis_client::RequestId;
use pyxis_client::api::{CompareOp, Revision, TxnOpResult};
use serde::{Deserialize, Serialize};

use pyxis_client::api::AuditActor;

use super::acl::TokenRecord;
use super::value::{LeaseId, StoredValue, to_key_value};

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
    /// Write a value, bound to a lease if given.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
        /// Lease the key is bound to.
        lease: Option<LeaseId>,
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
        /// Lease the key is bound to (it goes when the lease goes).
        lease: Option<LeaseId>,
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
    /// Create a lease; its id comes from a counter in the state, so every node agrees.
    LeaseGrant {
        /// Time to live the owner must keep alive within.
        ttl_ms: u64,
    },
    /// End a lease and delete every key bound to it, in one revision. The leader
    /// proposes this when a lease expires, or a client asks for it.
    LeaseRevoke {
        /// The lease.
        id: LeaseId,
    },
    /// A client's command with the id that makes it apply once: a repeat of `id` answers
    /// the first result and changes nothing (`store::session`). Never nested.
    Request {
        /// The request's id, the same across every retry.
        id: RequestId,
        /// The command itself.
        cmd: Box<Command>,
    },
    /// Member `id` has started with data: from now on, that member coming back with an
    /// empty data dir has lost its data and must not rejoin as if new (`member_started`).
    MemberStarted {
        /// The member's node id.
        id: u64,
    },
    /// Turns ACLs on with the first (admin) token; refused once they are on.
    AclBootstrap {
        /// The first token (hashed).
        token: TokenRecord,
    },
    /// Adds a token; refused while ACLs are off.
    AclTokenCreate {
        /// The token (hashed).
        token: TokenRecord,
    },
    /// Removes the token with this accessor.
    AclTokenRevoke {
        /// The token's public id.
        accessor: String,
    },
    /// Creates a lease owned by a `register` token's node, so that only that node may keep
    /// it alive or revoke it.
    LeaseGrantOwned {
        /// Time to live.
        ttl_ms: u64,
        /// The owning node.
        owner: String,
    },
    /// A change made through the API with who made it: `cmd` applies as if alone, and
    /// what it changed is appended to the audit history. The actor and time are in the
    /// command so that every node records the same entry.
    Audited {
        /// Who.
        actor: AuditActor,
        /// When it was proposed, unix milliseconds.
        time_ms: u64,
        /// Method and path.
        what: String,
        /// The change itself (never a `Request` or another `Audited`).
        cmd: Box<Command>,
    },
    /// A change made outside the key space (a membership change), for the audit history:
    /// inside `Audited` it records this one change; alone it does nothing.
    AuditNote {
        /// What changed (`members/ID`).
        key: String,
        /// Before, if anything.
        before: Option<String>,
        /// After, if anything.
        after: Option<String>,
    },
    /// A data-plane write (a key, a transaction, a lease, an instance) made while ACLs were
    /// off on the proposing node: not recorded in the audit history, and refused (nothing
    /// written) if ACLs are on by the time it applies, as an anonymous `Audited` is.
    Anonymous {
        /// The change itself (never a `Request`, `Audited` or another `Anonymous`).
        cmd: Box<Command>,
    },
}

/// Bytes counted for a command's or op's fields other than keys and values.
const FIXED_BYTES: u64 = 32;

impl Command {
    /// About how many bytes this command weighs in the log: its keys and values, plus a small
    /// constant for the rest. It paces snapshots; it is not an exact account.
    pub fn approx_bytes(&self) -> u64 {
        let op = |o: &Op| -> u64 {
            FIXED_BYTES
                + match o {
                    Op::Put { key, value, .. } => (key.len() + value.len()) as u64,
                    Op::Delete { key, .. } | Op::Get { key, .. } => key.len() as u64,
                }
        };
        match self {
            Command::Put { key, value, .. } => FIXED_BYTES + (key.len() + value.len()) as u64,
            Command::Delete { key, .. } => FIXED_BYTES + key.len() as u64,
            Command::Txn {
                compare,
                success,
                failure,
            } => {
                compare
                    .iter()
                    .map(|c| FIXED_BYTES + c.key.len() as u64)
                    .sum::<u64>()
                    + success.iter().chain(failure).map(op).sum::<u64>()
            }
            Command::LeaseGrant { .. }
            | Command::LeaseRevoke { .. }
            | Command::MemberStarted { .. }
            | Command::AclTokenRevoke { .. } => FIXED_BYTES,
            Command::AclBootstrap { token } | Command::AclTokenCreate { token } => {
                FIXED_BYTES + (token.hash.len() + token.description.len()) as u64
            }
            Command::LeaseGrantOwned { owner, .. } => FIXED_BYTES + owner.len() as u64,
            Command::AuditNote { key, before, after } => {
                FIXED_BYTES
                    + (key.len()
                        + before.as_ref().map_or(0, String::len)
                        + after.as_ref().map_or(0, String::len)) as u64
            }
            Command::Request { cmd, .. } => FIXED_BYTES + cmd.approx_bytes(),
            Command::Audited { what, cmd, .. } => {
                FIXED_BYTES + what.len() as u64 + cmd.approx_bytes()
            }
            Command::Anonymous { cmd } => cmd.approx_bytes(),
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values can be megabytes: log their size, never their bytes.
        match self {
            Command::Put {
                key,
                value,
                prev_rev,
                lease,
            } => {
                write!(f, "put {key} ({} bytes)", value.len())?;
                if let Some(l) = lease {
                    write!(f, " lease={l}")?;
                }
                match prev_rev {
                    Some(r) => write!(f, " if mod_rev={r}"),
                    None => Ok(()),
                }
            }
            Command::LeaseGrant { ttl_ms } => write!(f, "lease grant ttl={ttl_ms}ms"),
            Command::LeaseRevoke { id } => write!(f, "lease revoke {id}"),
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
            Command::Request { id, cmd } => write!(f, "{cmd} [request {id}]"),
            Command::MemberStarted { id } => write!(f, "member {id} started"),
            // Never the hash: the log line says which token, not how to find its secret.
            Command::AclBootstrap { token } => write!(f, "acl bootstrap {}", token.accessor),
            Command::AclTokenCreate { token } => {
                write!(f, "acl token create {} role={}", token.accessor, token.role)
            }
            Command::AclTokenRevoke { accessor } => write!(f, "acl token revoke {accessor}"),
            Command::LeaseGrantOwned { ttl_ms, owner } => {
                write!(f, "lease grant ttl={ttl_ms}ms owner={owner}")
            }
            Command::AuditNote { key, .. } => write!(f, "audit note {key}"),
            Command::Audited { actor, cmd, .. } => {
                write!(
                    f,
                    "{cmd} by {}",
                    actor.accessor.as_deref().unwrap_or("anonymous")
                )
            }
            Command::Anonymous { cmd } => write!(f, "{cmd} (acls off)"),
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
    /// A write named a lease that does not exist; nothing was written.
    LeaseNotFound {
        /// The missing lease.
        id: LeaseId,
    },
    /// A lease was created.
    LeaseGranted {
        /// Its id.
        id: LeaseId,
        /// Its time to live.
        ttl_ms: u64,
    },
    /// A lease ended and its keys were deleted.
    LeaseRevoked {
        /// Revision after the deletes (unchanged if the lease had no keys).
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
    /// The request's id is one the store has forgotten (or whose result was too large to
    /// keep): it may have been applied before, so it was not applied now.
    OutcomeUnknown,
    /// `AclBootstrap` applied: ACLs are on.
    AclBootstrapped,
    /// `AclBootstrap` found ACLs on already; nothing changed.
    AclAlreadyBootstrapped,
    /// A token was added.
    AclTokenCreated,
    /// `AclTokenCreate` found ACLs off (or the token's ids taken); nothing changed.
    AclTokenRefused,
    /// A token was removed.
    AclTokenRevoked,
    /// No token has that accessor; nothing changed.
    AclTokenNotFound,
    /// An anonymous change (proposed by a node that had not applied the bootstrap yet)
    /// reached the log after ACLs were turned on; nothing changed.
    AclRequired,
}

/// Result of one transaction op (owned by the state machine; converted to the wire type at the edge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnResult {
    /// A put was applied.
    Put,
    /// A delete removed keys.
    Delete(u64),
    /// A read returned entries.
    Get(Vec<(String, StoredValue)>),
    /// A read returned the entries that fit the result limit; more matched.
    GetPartial(Vec<(String, StoredValue)>),
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
                more: false,
            },
            TxnResult::GetPartial(entries) => TxnOpResult::Get {
                entries: entries
                    .into_iter()
                    .map(|(k, e)| to_key_value(k, &e))
                    .collect(),
                more: true,
            },
        }
    }
}
