//! Wire types of the pyxis HTTP API, shared by the server and the client.
//!
//! Everything here is plain serde data: no I/O, no openraft, no axum. The server's
//! handlers and the client's methods both use these types, so the JSON contract has
//! exactly one definition. Raw values travel as bytes; in JSON listings a value that is
//! valid UTF-8 is sent as `value`, anything else as base64 in `value_b64`.

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The global revision counter: every change to the key space bumps it by one.
pub type Revision = u64;

/// Identifier of a Raft node (and of a cluster member).
pub type NodeId = u64;

/// The largest value a key may hold (4 MiB); a larger body is refused with 413.
pub const MAX_VALUE_BYTES: usize = 4 * 1024 * 1024;

/// The longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 4096;

/// HTTP header carrying the store revision at which a read was served.
pub const HEADER_REVISION: &str = "x-pyxis-revision";

/// HTTP header carrying the mod revision of the key a raw `GET` returned.
pub const HEADER_MOD_REVISION: &str = "x-pyxis-mod-revision";

/// HTTP header carrying the create revision of the key a raw `GET` returned.
pub const HEADER_CREATE_REVISION: &str = "x-pyxis-create-revision";

/// HTTP header carrying the version (number of puts since creation) of the key a raw `GET` returned.
pub const HEADER_VERSION: &str = "x-pyxis-version";

/// One key with its value and revisions, as listed by prefix reads and transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key, always starting with `/`.
    pub key: String,
    /// The raw value.
    pub value: Bytes,
    /// Revision at which the key was created (reset when it is deleted and created again).
    pub create_rev: Revision,
    /// Revision of the last change to the key.
    pub mod_rev: Revision,
    /// Number of puts since the key was created (1 after the first put).
    pub version: u64,
    /// Lease the key is bound to, if any.
    pub lease: Option<u64>,
}

/// JSON shape of [`KeyValue`]: the value goes into `value` when it is UTF-8, else `value_b64`.
#[derive(Serialize, Deserialize)]
struct KeyValueJson {
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value_b64: Option<String>,
    create_rev: Revision,
    mod_rev: Revision,
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease: Option<u64>,
}

impl Serialize for KeyValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (value, value_b64) = encode_value(&self.value);
        KeyValueJson {
            key: self.key.clone(),
            value,
            value_b64,
            create_rev: self.create_rev,
            mod_rev: self.mod_rev,
            version: self.version,
            lease: self.lease,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for KeyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let j = KeyValueJson::deserialize(d)?;
        let value = decode_value(j.value, j.value_b64).map_err(serde::de::Error::custom)?;
        Ok(KeyValue {
            key: j.key,
            value,
            create_rev: j.create_rev,
            mod_rev: j.mod_rev,
            version: j.version,
            lease: j.lease,
        })
    }
}

/// Splits a value into its JSON form: `(Some(text), None)` for UTF-8, `(None, Some(base64))` otherwise.
pub fn encode_value(value: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(value) {
        Ok(s) => (Some(s.to_owned()), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(value)),
        ),
    }
}

/// Joins the JSON form of a value back into bytes; `value_b64` wins when both are present.
pub fn decode_value(value: Option<String>, value_b64: Option<String>) -> Result<Bytes, String> {
    match (value, value_b64) {
        (_, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b.as_bytes())
            .map(Bytes::from)
            .map_err(|e| format!("value_b64: invalid base64: {e}")),
        (Some(v), None) => Ok(Bytes::from(v)),
        (None, None) => Ok(Bytes::new()),
    }
}

/// Reply to `PUT /v1/kv/{key}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResponse {
    /// The global revision the put created.
    pub revision: Revision,
}

/// Reply to `DELETE /v1/kv/{key}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteResponse {
    /// The global revision after the delete (unchanged when nothing was deleted).
    pub revision: Revision,
    /// How many keys were deleted.
    pub deleted: u64,
}

/// Reply to `GET /v1/kv/{prefix}?prefix=true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    /// Store revision at which the listing was taken.
    pub revision: Revision,
    /// The keys under the prefix, in key order.
    pub entries: Vec<KeyValue>,
    /// Whether more keys are under the prefix than `?limit=N` let through.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
}

/// Comparison operator of a transaction compare; `eq` when omitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CompareOp {
    /// Equal.
    #[default]
    Eq,
    /// Not equal.
    Ne,
    /// Less than.
    Lt,
    /// Greater than.
    Gt,
}

/// One condition of a transaction: exactly one of `value`, `value_b64`, `mod_rev`,
/// `version` or `exists` must be given.
///
/// A missing key has mod revision 0 and version 0 and no value, so `{"key": k,
/// "mod_rev": 0}` means "k does not exist", as in etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    /// The key compared.
    pub key: String,
    /// How to compare; `eq` by default.
    #[serde(default)]
    pub cmp: CompareOp,
    /// Compare the value as UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Compare the value as base64-encoded bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_b64: Option<String>,
    /// Compare the key's mod revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mod_rev: Option<Revision>,
    /// Compare the key's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Compare the key's existence (only `eq` and `ne` make sense).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

/// One operation of a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum TxnOp {
    /// Write a key; the value is given as UTF-8 `value` or base64 `value_b64`.
    Put {
        /// The key written.
        key: String,
        /// The value as UTF-8 text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        /// The value as base64 bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value_b64: Option<String>,
        /// Lease to bind the key to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease: Option<u64>,
    },
    /// Delete a key, or every key under it with `prefix`.
    Delete {
        /// The key (or prefix) deleted.
        key: String,
        /// Delete the whole subtree.
        #[serde(default)]
        prefix: bool,
    },
    /// Read a key, or every key under it with `prefix`, at the transaction's revision.
    Get {
        /// The key (or prefix) read.
        key: String,
        /// Read the whole subtree.
        #[serde(default)]
        prefix: bool,
    },
}

/// Body of `POST /v1/txn`: if every compare holds, `success` runs, else `failure`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TxnRequest {
    /// Conditions, all of which must hold for `success` to run.
    #[serde(default)]
    pub compare: Vec<Compare>,
    /// Operations run when every compare holds.
    #[serde(default)]
    pub success: Vec<TxnOp>,
    /// Operations run otherwise.
    #[serde(default)]
    pub failure: Vec<TxnOp>,
}

/// The result of one transaction operation, in the order of the branch that ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum TxnOpResult {
    /// A put was applied.
    Put {},
    /// A delete removed `deleted` keys.
    Delete {
        /// How many keys it removed.
        deleted: u64,
    },
    /// A read returned these entries.
    Get {
        /// The keys read, in key order.
        entries: Vec<KeyValue>,
        /// Whether more keys matched than the server's reply limit let through (only a get
        /// inside a writing transaction is cut this way; a read is refused with 413 instead).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
    },
}

/// Reply to `POST /v1/txn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// Whether every compare held (so `success` ran).
    pub succeeded: bool,
    /// Store revision after the transaction (bumped once if it wrote anything).
    pub revision: Revision,
    /// One result per operation of the branch that ran.
    pub results: Vec<TxnOpResult>,
}

/// One member of the cluster as `GET /v1/cluster` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Node id.
    pub id: NodeId,
    /// HTTP address (`host:port`) the node serves both the API and Raft RPC on.
    pub addr: String,
    /// Whether the node votes (false for a learner still catching up).
    pub voter: bool,
    /// Last log index the node is known to have applied or replicated (leader's view).
    pub applied: Option<u64>,
    /// How many committed entries the node is missing (leader's view: its commit index minus
    /// the node's matched index); `None` where this view cannot tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
    /// Whether `lag` is over the threshold `/healthz` uses by default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub behind: bool,
}

/// Reply to `GET /v1/cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// Id of the current leader, if one is known.
    pub leader: Option<NodeId>,
    /// Current Raft term.
    pub term: u64,
    /// Voters and learners.
    pub members: Vec<Member>,
}

/// Reply to `GET /healthz`: 200 when healthy; 503 when not, with `error` and `message` too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Whether the node serves: Raft runs, a leader is known and the node is not behind.
    pub healthy: bool,
    /// Why not: `stopped`, `removed` (from the cluster), `no_leader` or `behind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Leader this node knows of.
    pub leader: Option<NodeId>,
    /// Last log index this node applied.
    pub applied_index: u64,
    /// The leader's commit index as this node last heard it (its own on the leader).
    pub commit_index: u64,
    /// `commit_index - applied_index`.
    pub lag: u64,
    /// The most `lag` allowed (`?lag=N`).
    pub max_lag: u64,
}

/// Body of `POST /v1/cluster/members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    /// Id of the new node; must not be a member already.
    pub id: NodeId,
    /// Its `host:port`.
    pub addr: String,
}

/// Reply to member changes: the membership after the change.
pub type MembershipResponse = ClusterInfo;

/// Reply to `GET /v1/status`: one node's own view, for `pyxis status` and operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// This node's id.
    pub id: NodeId,
    /// The id of the cluster this node belongs to (16 hex digits); `None` for a node
    /// started with `--join` that no member has contacted yet.
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// Its role: `leader`, `follower`, `candidate`, `learner` or `shutdown`; `removed` once it
    /// was removed from the cluster (it then serves no client requests).
    pub state: String,
    /// Leader this node knows of.
    pub leader: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Last log index in this node's log.
    pub last_log_index: Option<u64>,
    /// Last log index known committed.
    pub committed_index: Option<u64>,
    /// Last log index applied to the state machine.
    pub applied_index: Option<u64>,
    /// Last log index covered by the current snapshot.
    pub snapshot_index: Option<u64>,
    /// Store revision of the applied state.
    pub revision: Revision,
    /// Number of keys held.
    pub keys: u64,
    /// Milliseconds since the leader was last heard from (0 on the leader itself).
    pub millis_since_quorum_ack: Option<u64>,
    /// Members known to have started with data: one of them found with an empty data dir
    /// lost its data, and refuses to start until it is removed and added back.
    #[serde(default)]
    pub started_members: Vec<NodeId>,
}

/// Body of `POST /v1/lease`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseGrantRequest {
    /// Time to live in milliseconds; keep-alives must arrive within it.
    pub ttl_ms: u64,
}

/// Reply to `POST /v1/lease`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrantResponse {
    /// The new lease's id (use it as `?lease=ID`).
    pub id: u64,
    /// Its time to live in milliseconds.
    pub ttl_ms: u64,
}

/// Reply to `POST /v1/lease/{id}/keepalive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseKeepAliveResponse {
    /// Milliseconds left before the lease expires unless kept alive again.
    pub ttl_ms: u64,
}

/// Reply to `GET /v1/lease/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// The lease id.
    pub id: u64,
    /// Its granted time to live in milliseconds.
    pub ttl_ms: u64,
    /// Milliseconds left, as the leader sees it.
    pub remaining_ms: u64,
    /// Keys bound to it, in key order.
    pub keys: Vec<String>,
}

/// Reply to `DELETE /v1/lease/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRevokeResponse {
    /// Store revision after its keys were deleted.
    pub revision: Revision,
    /// How many keys went with it.
    pub deleted: u64,
}

/// One line of a `GET /v1/watch/...` stream (newline-delimited JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WatchMessage {
    /// A key was created or changed.
    Put {
        /// The key.
        key: String,
        /// The new value as UTF-8 text, when it is valid UTF-8.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        /// The new value as base64, when it is not UTF-8.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value_b64: Option<String>,
        /// Revision of the change.
        mod_rev: Revision,
        /// Lease the key is bound to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease: Option<u64>,
    },
    /// A key was deleted.
    Delete {
        /// The key.
        key: String,
        /// Revision of the delete.
        mod_rev: Revision,
    },
    /// Nothing matched up to `revision`; a client may resume from `revision + 1`.
    Progress {
        /// The store revision covered.
        revision: Revision,
    },
    /// The stream fell behind the kept history and ends; re-list, then watch again.
    Compacted {
        /// Every revision up to this one is gone from the history.
        compact_revision: Revision,
    },
}

/// Machine-readable error codes of the `{"error": CODE, "message": ...}` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed request (a field, parameter or body is wrong): 400.
    BadRequest,
    /// The key is empty, too long, not UTF-8 or holds control characters: 400.
    InvalidKey,
    /// The key or member does not exist: 404.
    NotFound,
    /// A compare-and-set or member precondition failed: 409.
    CompareFailed,
    /// The requested revision is older than the kept history: 410.
    Compacted,
    /// A value, a request body or a reply is over its limit (the message names it): 413.
    ValueTooLarge,
    /// No leader is known (election in progress or no quorum): 503.
    NoLeader,
    /// The node is shutting down or its storage failed: 503.
    Unavailable,
    /// A write may or may not have been applied (its reply was lost, or its id is older than
    /// the store remembers): 503. Sending it again with the same request id is safe and
    /// answers its outcome.
    UnknownOutcome,
    /// An unexpected server error: 500.
    Internal,
    /// ACLs are on and the call carried no valid token: 401.
    Unauthorized,
    /// The token's role may not make this call: 403 (the message names the role needed).
    Forbidden,
}

impl ErrorCode {
    /// The HTTP status this code travels with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::InvalidKey => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::CompareFailed => 409,
            ErrorCode::Compacted => 410,
            ErrorCode::ValueTooLarge => 413,
            ErrorCode::NoLeader | ErrorCode::Unavailable | ErrorCode::UnknownOutcome => 503,
            ErrorCode::Internal => 500,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
        }
    }
}

/// The JSON body of every error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code.
    pub error: ErrorCode,
    /// Human-readable explanation naming the field or parameter at fault.
    pub message: String,
    /// For `compacted`: the oldest revision still available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compact_revision: Option<Revision>,
    /// For `compare_failed` on a put: the key's current mod revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mod_rev: Option<Revision>,
}

/// Checks a key against the key-space rules; the error message names what is wrong.
///
/// A key is non-empty after its leading `/`, at most [`MAX_KEY_BYTES`] long and has
/// no control characters. UTF-8 is guaranteed by `&str`; the server checks the raw
/// path bytes before it gets here.
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("key: must not be empty".into());
    }
    if key == "/" {
        return Err(
            "key: / names no key (it is the root of the key space); give a key such as /app/config"
                .into(),
        );
    }
    if !key.starts_with('/') {
        return Err("key: must start with '/'".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "key: {} bytes is longer than the limit of {MAX_KEY_BYTES}",
            key.len()
        ));
    }
    if let Some((i, c)) = key.char_indices().find(|(_, c)| c.is_control()) {
        return Err(format!(
            "key: control character U+{:04X} at byte {i}",
            c as u32
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn utf8_value_goes_to_value_field() {
        let kv = KeyValue {
            key: "/a".into(),
            value: Bytes::from_static(b"hi"),
            create_rev: 1,
            mod_rev: 2,
            version: 1,
            lease: None,
        };
        let j = serde_json::to_value(&kv).unwrap();
        assert_eq!(j["value"], "hi");
        assert!(j.get("value_b64").is_none());
    }

    #[test]
    fn binary_value_goes_to_value_b64() {
        let kv = KeyValue {
            key: "/a".into(),
            value: Bytes::from_static(&[0xff, 0x00]),
            create_rev: 1,
            mod_rev: 1,
            version: 1,
            lease: None,
        };
        let j = serde_json::to_value(&kv).unwrap();
        assert_eq!(j["value_b64"], "/wA=");
        assert!(j.get("value").is_none());
    }

    #[test]
    fn key_rules_name_the_problem() {
        assert!(validate_key("/ns/x").is_ok());
        let root = validate_key("/").unwrap_err();
        assert!(root.starts_with("key: / names no key"), "{root}");
        assert!(validate_key("").unwrap_err().contains("empty"));
        assert!(validate_key("/a\u{7}b").unwrap_err().contains("control"));
        assert!(
            validate_key(&format!("/{}", "a".repeat(MAX_KEY_BYTES)))
                .unwrap_err()
                .contains("longer")
        );
    }

    #[test]
    fn txn_ops_have_tagged_json() {
        let op: TxnOp =
            serde_json::from_str(r#"{"op":"delete","key":"/a","prefix":true}"#).unwrap();
        assert_eq!(
            op,
            TxnOp::Delete {
                key: "/a".into(),
                prefix: true
            }
        );
        assert!(serde_json::from_str::<TxnOp>(r#"{"op":"frob","key":"/a"}"#).is_err());
    }

    proptest! {
        #[test]
        fn key_value_json_round_trips(key in "/[a-z/]{1,20}", value in proptest::collection::vec(any::<u8>(), 0..64),
                                      c in 0u64..1000, m in 0u64..1000, v in 0u64..1000) {
            let kv = KeyValue { key, value: Bytes::from(value), create_rev: c, mod_rev: m, version: v, lease: None };
            let text = serde_json::to_string(&kv).unwrap();
            let back: KeyValue = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(back, kv);
        }
    }
}

// ACL routes (`/v1/acl/...`, `/v1/audit`): what a token may do, and the audit history.

/// What a token may do (`read`, `register`, `operator`, `admin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every GET and watch.
    Read,
    /// Read, plus the instances and leases of its own node only.
    Register,
    /// Read, plus services, traffic policies, datacenters and drains.
    Operator,
    /// Everything, including raw `/v1/kv` writes, tokens, members and snapshots.
    Admin,
}

impl Role {
    /// The role's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Register => "register",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Role::Read),
            "register" => Ok(Role::Register),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "role: must be read, register, operator or admin, got {other:?}"
            )),
        }
    }
}

/// `GET /v1/acl/status`: whether ACLs are on (open to every caller).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclStatus {
    /// Whether `acl bootstrap` has run: every other `/v1` call then needs a token.
    pub enabled: bool,
}

/// Body of `POST /v1/acl/bootstrap` (optional: an empty body lets the server make the secret).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapRequest {
    /// The first admin token's secret, made by the caller (`pyxis_client::secret`) so a
    /// repeat after a lost reply is answered the same token rather than a 409.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// Body of `POST /v1/acl/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCreateRequest {
    /// The role.
    pub role: Role,
    /// The node a `register` token is bound to (required for it, refused for others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Free text naming the holder, shown in the audit history.
    #[serde(default)]
    pub description: String,
    /// The secret, made by the caller so a repeat names the same token (the server makes
    /// one when absent). A repeat with the same role, node and description is answered
    /// the token it made; a secret another token holds is a 409.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A token without its secret (`GET /v1/acl/tokens`, `GET /v1/acl/token/self`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Public id: safe to show and log, and accepted by revoke.
    pub accessor: String,
    /// The role.
    pub role: Role,
    /// The node a `register` token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Free text naming the holder.
    pub description: String,
    /// Creation time, unix milliseconds.
    pub created_at_ms: u64,
}

/// Reply of `POST /v1/acl/bootstrap` and `POST /v1/acl/tokens`: the only time the secret
/// is shown (the store keeps its sha256 only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// The bearer secret (`Authorization: Bearer SECRET`).
    pub secret: String,
    /// The token's details.
    #[serde(flatten)]
    pub token: TokenInfo,
}

/// Reply of `GET /v1/acl/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenList {
    /// Every token, by accessor.
    pub tokens: Vec<TokenInfo>,
}

/// Reply of `DELETE /v1/acl/tokens/{secret_or_accessor}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevoked {
    /// The accessor of the token that went.
    pub accessor: String,
}

/// Who made an audited change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditActor {
    /// The token's accessor; `null` for a change made while ACLs were off.
    pub accessor: Option<String>,
    /// The token's description (`anonymous` while ACLs were off).
    pub description: String,
    /// The token's role; `null` while ACLs were off.
    pub role: Option<Role>,
}

/// One key's value before and after an audited change (`null` = absent; cut to 512 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditChange {
    /// The key (`acl/tokens/ACCESSOR` for a token, `leases/ID` for a lease).
    pub key: String,
    /// Its value before.
    pub before: Option<String>,
    /// Its value after.
    pub after: Option<String>,
}

/// One entry of `GET /v1/audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The store revision after the change.
    pub revision: Revision,
    /// When it was proposed, unix milliseconds.
    pub time_ms: u64,
    /// Who.
    pub actor: AuditActor,
    /// What: method and path.
    pub what: String,
    /// The keys changed (at most 16).
    pub changes: Vec<AuditChange>,
    /// How many more keys changed than `changes` lists.
    pub more: u64,
}

/// Reply of `GET /v1/audit[?limit=N]`: the newest entries, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditList {
    /// The entries, newest last.
    pub entries: Vec<AuditEntry>,
}
