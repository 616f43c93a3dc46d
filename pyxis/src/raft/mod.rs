//! Raft plumbing: openraft's type configuration and the storage and network it runs on.
//!
//! Modules:
//! - `backup`: the whole state streamed as a snapshot file, for `GET /v1/snapshot`.
//! - `log_store`: the durable Raft log and vote, with group commit.
//! - `wal`: the append-only segment files under the log store.
//! - `state_machine`: applies committed commands to the in-memory key space.
//! - `snapshot`: the snapshot file format and its atomic write.
//! - `transfer`: snapshot data as an open file, streamed to a follower and received to disk.
//! - `trash`: big files removed in the background, cut down first so a disk mounted with
//!   `discard` does not stall the log's syncs.
//! - `network`: Raft RPC to peers over HTTP with a postcard body.
//!
//! Every openraft type the rest of the crate sees is re-exported from here, so an
//! openraft upgrade touches this module and its children only.

pub mod backup;
pub mod codec;
pub mod log_store;
pub mod network;
pub mod snapshot;
pub mod state_machine;
pub mod transfer;
pub mod trash;
pub mod wal;

use crate::store::command::{Command, CommandResult};

openraft::declare_raft_types!(
    /// openraft type configuration of a pyxis node.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = NodeAddr,
);

/// A pyxis Raft node handle.
pub type Raft = openraft::Raft<TypeConfig, state_machine::StateMachine>;

/// The data of one snapshot: its file on disk, never its bytes in memory.
pub use transfer::SnapshotData;

/// A member's address record, as kept in the membership.
pub type NodeAddr = openraft::impls::BasicNode;

/// A Raft log entry of this configuration (not to be confused with `store::entry::Entry`).
pub type LogEntry = <TypeConfig as openraft::RaftTypeConfig>::Entry;

/// A log id of this configuration.
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;

/// A vote of this configuration.
pub type Vote = openraft::alias::VoteOf<TypeConfig>;

/// Snapshot metadata of this configuration.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;

/// A snapshot (metadata and data) of this configuration.
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;

/// Membership as stored with its log id.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;

/// A membership configuration (voters and nodes) of this configuration.
pub type Membership = openraft::Membership<u64, NodeAddr>;

/// A membership change request.
pub type ChangeMembers = openraft::ChangeMembers<u64, NodeAddr>;

/// A failed client write or membership change, as the Raft API reports it.
pub type WriteError = RaftError<TypeConfig, ClientWriteError>;

/// Why a client write (or membership change) was refused.
pub type ClientWriteError = openraft::errors::ClientWriteError<TypeConfig>;

/// Why a membership change was refused.
pub type ChangeMembershipError = openraft::alias::ChangeMembershipErrorOf<TypeConfig>;

/// A membership change refused because another is under way.
pub type InProgress = openraft::alias::InProgressOf<TypeConfig>;

/// A failed linearizable read, as the Raft API reports it.
pub type ReadError = RaftError<TypeConfig, LinearizableReadError>;

/// Why a linearizable read was refused.
pub type LinearizableReadError = openraft::errors::LinearizableReadError<TypeConfig>;

/// Node role, configuration knobs and the outer error of every Raft API call.
pub use openraft::errors::RaftError;
pub use openraft::{Config, ReadPolicy, ServerState, SnapshotPolicy};

/// Reading the latest value of openraft's metrics and status channels (`borrow_watched`).
pub use openraft::async_runtime::watch::WatchReceiver;

/// Elapsed time of openraft's instants (`last_quorum_acked`).
pub use openraft::Instant;

/// The log id of `index` written in `term` by the leader `node`.
pub fn log_id(term: u64, node: u64, index: u64) -> LogId {
    use openraft::vote::RaftLeaderIdExt as _;
    LogId::new(
        <TypeConfig as openraft::RaftTypeConfig>::LeaderId::new_committed(term, node),
        index,
    )
}
