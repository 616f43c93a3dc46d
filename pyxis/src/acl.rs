//! Who may call what: token secrets and their hashes, the route table per role, and the
//! caller of the request being served.
//!
//! The middleware (`http::auth`) authenticates a call against the node's own applied
//! state (`store::acl`, replicated like any key, so no call goes to the leader) and
//! answers 401/403 before a handler runs; a handler then checks what only the body or the
//! stored data tells (a `register` token's node, a transaction's writes) through
//! [`caller`], and `Node::write` stamps the caller on an audited change. The replicated
//! token table and audit history live in `store::acl`.

use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::Method;
use pyxis_client::api::{AuditActor, Role};
use pyxis_client::secret::hex;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use crate::store::acl::{TokenRecord, anonymous};

/// Most bytes of method and path an audit entry keeps.
pub const MAX_WHAT_BYTES: usize = 1024;

pub use pyxis_client::secret::{SECRET_PREFIX, new_secret};

/// What a route needs, before the handler looks at the body or the stored data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Nothing, even with ACLs on (`/v1/acl/status`, `/v1/acl/bootstrap`, `/v1/status`).
    Open,
    /// Any valid token (`/v1/acl/token/self`).
    AnyToken,
    /// `read` or more: GETs and watches.
    Read,
    /// `operator` or `admin`: services, traffic policies, datacenters, the audit history.
    Operator,
    /// An instance write: `operator`, `admin`, or `register` for its own node (the handler
    /// checks the node in the body and in the stored instance).
    Instance,
    /// A lease grant, keep-alive or revoke: `admin`, or `register` for its own leases (the
    /// handler checks the owner).
    Lease,
    /// A write of node `NODE`'s agent status record: `admin`, `operator` or that node's
    /// `register` token.
    AgentStatus(String),
    /// A transaction: `read` when it only compares and reads, `admin` when it writes (the
    /// handler checks).
    Txn,
    /// `admin` only.
    Admin,
}

impl Need {
    /// Whether `role` passes this need before the handler's own checks; `node` is a
    /// `register` token's node.
    pub fn allows(&self, role: Role, node: Option<&str>) -> bool {
        use Role::{Admin, Operator, Read, Register};
        match self {
            Need::Open | Need::AnyToken | Need::Read | Need::Txn => true,
            Need::Operator => matches!(role, Operator | Admin),
            Need::Instance => matches!(role, Register | Operator | Admin),
            Need::Lease => matches!(role, Register | Admin),
            Need::AgentStatus(n) => match role {
                Operator | Admin => true,
                Register => node == Some(n.as_str()),
                Read => false,
            },
            Need::Admin => role == Admin,
        }
    }

    /// The roles this need accepts, for a 403's message.
    pub fn describe(&self) -> &'static str {
        match self {
            Need::Open | Need::AnyToken | Need::Read | Need::Txn => "read",
            Need::Operator => "operator or admin",
            Need::Instance => "operator, admin, or register for the instance's node",
            Need::Lease => "admin, or register for the lease's node",
            Need::AgentStatus(_) => "operator, admin, or register for that node",
            Need::Admin => "admin",
        }
    }
}

/// What `method` on `path` (under `/v1/`, with its `query`) needs. A route missing here
/// needs `admin`, so a new route is closed until it is added (deny by default).
pub fn required(method: &Method, path: &str, query: Option<&str>) -> Need {
    let rest = path.strip_prefix("/v1").unwrap_or(path);
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let read = *method == Method::GET || *method == Method::HEAD;
    match (segs.as_slice(), read) {
        (["acl", "status"], true) => Need::Open,
        // A node's own role, term and indexes, like `/healthz`: no data, and the leader
        // probes a newcomer's `/v1/status` before adding it, without a client token.
        (["status"], true) => Need::Open,
        (["acl", "bootstrap"], false) => Need::Open,
        (["acl", "token", "self"], true) => Need::AnyToken,
        (["acl", ..], _) => Need::Admin,
        (["snapshot", ..], _) => Need::Admin,
        (["audit", ..], true) => Need::Operator,
        (["txn"], false) => Need::Txn,
        (["services", _, "instances", _], false) => Need::Instance,
        (["services", ..] | ["traffic", ..] | ["datacenters", ..], false) => Need::Operator,
        (["lease", ..], false) => Need::Lease,
        // The agent's status record, raw or typed: `/ns/agents/NODE`.
        // A prefix delete there would reach other nodes' records (`node1` is a prefix of
        // `node10`), so only a single key is the node's own.
        (["kv", "ns", "agents", node] | ["agents", node], false)
            if !query.is_some_and(|q| q.contains("prefix")) =>
        {
            Need::AgentStatus((*node).to_owned())
        }
        (_, true) => Need::Read,
        (_, false) => Need::Admin,
    }
}

/// Whether a write to `path` changes data rather than configuration: a key, a transaction,
/// a lease, an instance or an agent's status record. While ACLs are off such writes have no
/// "who" and are not audited ([`Caller::audited`]).
pub fn is_data_plane(path: &str) -> bool {
    // On every request: split without collecting.
    let rest = path.strip_prefix("/v1").unwrap_or(path);
    let mut segs = rest.split('/').filter(|s| !s.is_empty());
    let segs = (
        segs.next(),
        segs.next(),
        segs.next(),
        segs.next(),
        segs.next(),
    );
    matches!(
        segs,
        (Some("kv" | "lease"), ..)
            | (Some("txn"), None, ..)
            | (Some("services"), Some(_), Some("instances"), Some(_), None)
            | (Some("agents"), Some(_), None, ..)
    )
}

/// A new accessor: 16 hex digits (64 random bits).
pub fn new_accessor() -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    hex(&bytes)
}

/// The hex sha256 of a secret: what the store keeps and looks a bearer token up by.
pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// The caller of the request being served.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token; `None` while ACLs are off (anyone may do anything).
    pub token: Option<TokenRecord>,
    /// What the request is, for the audit history: `PUT /v1/traffic/web`.
    pub what: String,
    /// The `Authorization` header as sent, for a call this node proxies to the leader.
    pub bearer: Option<String>,
    /// Whether the call writes data (`/v1/kv`, `/v1/txn`, `/v1/lease`, an instance, an
    /// agent's status record) rather than configuration.
    pub data_plane: bool,
}

impl Caller {
    /// Whether this caller's changes go to the audit history: those of `operator` and
    /// `admin` tokens, and while ACLs are off, every change but data-plane writes, which
    /// have no "who" then and would cost every write (see [`Caller::anonymous_data`]).
    pub fn audited(&self) -> bool {
        match &self.token {
            None => !self.data_plane,
            Some(t) => matches!(t.role, Role::Operator | Role::Admin),
        }
    }

    /// Whether this caller's change is a data-plane write made while ACLs are off: it is
    /// proposed as `Command::Anonymous`, refused if ACLs are on when it applies.
    pub fn anonymous_data(&self) -> bool {
        self.token.is_none() && self.data_plane
    }

    /// What the request is, cut to [`MAX_WHAT_BYTES`] on a character boundary, so that a
    /// long path never makes the audited command fail validation.
    pub fn what(&self) -> String {
        let mut end = self.what.len().min(MAX_WHAT_BYTES);
        while !self.what.is_char_boundary(end) {
            end -= 1;
        }
        self.what[..end].to_owned()
    }

    /// The actor recorded in the audit history.
    pub fn actor(&self) -> AuditActor {
        match &self.token {
            None => anonymous(),
            Some(t) => AuditActor {
                accessor: Some(t.accessor.clone()),
                description: t.description.clone(),
                role: Some(t.role),
            },
        }
    }

    /// The node a `register` token is bound to; `None` for every other caller.
    pub fn register_node(&self) -> Option<&str> {
        match &self.token {
            Some(t) if t.role == Role::Register => t.node.as_deref(),
            _ => None,
        }
    }

    /// Whether the caller may write whatever a role table entry allows (ACLs off, or an
    /// `admin` token).
    pub fn is_admin(&self) -> bool {
        self.token.as_ref().is_none_or(|t| t.role == Role::Admin)
    }

    /// The caller's role name for messages (`anonymous` while ACLs are off).
    pub fn role_name(&self) -> &'static str {
        self.token.as_ref().map_or("anonymous", |t| t.role.as_str())
    }
}

tokio::task_local! {
    /// The caller of the request this task serves, set by `http::auth` around the handler.
    /// A task-local rather than a handler argument so that `Node::write` can stamp the
    /// audit actor on every change without each handler passing it along.
    static CALLER: Arc<Caller>;
}

/// Runs `f` with `caller` as the request's caller.
pub async fn scope<F: Future>(caller: Caller, f: F) -> F::Output {
    // Shared, not moved: the task-local swaps its value in and out on every poll, and a
    // handler asks for its caller several times.
    CALLER.scope(Arc::new(caller), f).await
}

/// The caller of the request this task serves; `None` outside a request (lease expiry,
/// member announcements, peer RPC).
pub fn caller() -> Option<Arc<Caller>> {
    CALLER.try_with(Arc::clone).ok()
}

/// Unix milliseconds now, for token creation and audit times (taken by the proposing
/// node, never by the state machine).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
