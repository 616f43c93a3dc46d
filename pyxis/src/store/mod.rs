//! The key space and its rules, independent of Raft.
//!
//! - `command`: the commands carried in the log and their results.
//! - `value`: one stored key's value and revisions, and its wire form.
//! - `kv`: the ordered map with revisions, and applying commands to it.
//!
//! Dependencies run one way: `value` <- `command` <- `kv` <- `read`; `kv` applies commands
//! and re-exports nothing, so each type has one path.
//! - `acl`: the replicated tokens, lease owners and audit history (`crate::acl` decides).
//! - `lease`: which leases exist and which keys they hold.
//! - `read`: reads bounded by a reply budget, and read-only transactions.
//! - `session`: the request ids already applied, so that a repeated write applies once.
//! - `validate`: the rules a command meets before it is proposed, from a client or a peer.
//! - `watch`: change events and the bounded history watches read.

pub mod acl;
pub mod command;
pub mod kv;
pub mod lease;
pub mod read;
pub mod session;
pub mod validate;
pub mod value;
pub mod watch;
