//! The key space and its rules, independent of Raft.
//!
//! - `kv`: the ordered map with revisions, and the commands that change it.

pub mod kv;
