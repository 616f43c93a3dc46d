//! Raft plumbing: openraft's type configuration and the storage and network it runs on.
//!
//! Modules:
//! - `backup`: the whole state streamed as a snapshot file, for `GET /v1/snapshot`.
//! - `log_store`: the durable Raft log and vote, with group commit.
//! - `wal`: the append-only segment files under the log store.
//! - `state_machine`: applies committed commands to the in-memory key space.
//! - `snapshot`: the snapshot file format and its atomic write.
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
pub mod wal;

use std::io::Cursor;

pub use crate::store::kv::{Command, CommandResult};

openraft::declare_raft_types!(
    /// openraft type configuration of a pyxis node.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::impls::BasicNode,
);

/// A pyxis Raft node handle.
pub type Raft = openraft::Raft<TypeConfig, state_machine::StateMachine>;

/// Bytes of one snapshot, held in memory (the whole state fits in memory by design).
pub type SnapshotData = Cursor<Vec<u8>>;

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

/// Membership as stored with its log id.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
