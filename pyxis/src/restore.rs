//! Disaster recovery: turning a backup file into the data dir of a new single node.
//!
//! A backup (`GET /v1/snapshot`, `pyxis snapshot save`) is a snapshot file holding the
//! key space. Restoring writes it as the node's snapshot at log index 1 of term 1, with
//! a one-member membership (this node), and marks the log purged and committed up to
//! it, so `pyxis server` on that dir starts as an initialized one-node cluster serving
//! the restored keys. More nodes can then join with `pyxis members add`. The new cluster
//! gets a fresh cluster id, so members of the backed-up cluster cannot talk to it.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use crate::cluster_id::{ClusterId, ClusterIdentity};
use crate::raft::snapshot::{SnapshotDir, SnapshotFile, decode_file};
use crate::raft::{Membership, NodeAddr, SnapshotMeta, StoredMembership, Vote, log_id, log_store};
use crate::store::kv::KvState;

/// What a restore produced.
#[derive(Debug, Clone, Copy)]
pub struct Restored {
    /// Number of keys restored.
    pub keys: usize,
    /// Store revision of the backup.
    pub revision: u64,
}

/// Errors of a restore; each names the file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The data dir already holds a node's state.
    #[error("{0}: already holds a raft log; restore into a new, empty data dir")]
    NotEmpty(String),
    // The cause is part of the message and deliberately not a `source`: `{:#}` would
    // print it a second time after the message.
    /// The backup could not be read or decoded.
    #[error("{path}: {cause}")]
    Backup {
        /// The backup file.
        path: String,
        /// What went wrong.
        cause: io::Error,
    },
    /// Writing the data dir failed.
    #[error("{path}: {cause}")]
    Write {
        /// The data dir.
        path: String,
        /// What went wrong.
        cause: io::Error,
    },
}

/// Restores `backup` into `data_dir` for node `id` reachable at `addr`.
pub fn restore(
    backup: &Path,
    data_dir: &Path,
    id: u64,
    addr: &str,
) -> Result<Restored, RestoreError> {
    let bad = |cause| RestoreError::Backup {
        path: backup.display().to_string(),
        cause,
    };
    let wr = |cause| RestoreError::Write {
        path: data_dir.display().to_string(),
        cause,
    };
    if log_store::exists(&data_dir.join("raft")) {
        return Err(RestoreError::NotEmpty(data_dir.display().to_string()));
    }
    let bytes = std::fs::read(backup).map_err(bad)?;
    let file = decode_file(bytes).map_err(bad)?;
    let kv: KvState =
        crate::raft::state_machine::decode_state(&file.data).map_err(|e| bad(e.into()))?;

    let at = log_id(1, id, 1);
    let membership = Membership::new(
        vec![BTreeSet::from([id])],
        BTreeMap::from([(id, NodeAddr::new(addr))]),
    )
    .map_err(|e| wr(io::Error::other(e)))?;
    let snap = SnapshotFile {
        meta: SnapshotMeta {
            last_log_id: Some(at),
            last_membership: StoredMembership::new(Some(at), membership),
        },
        data: file.data,
    };
    SnapshotDir::new(data_dir.join("snapshots"))
        .and_then(|d| d.save(&snap))
        .map_err(wr)?;
    ClusterIdentity::load(data_dir)
        .and_then(|c| c.bootstrap(ClusterId::fresh(&format!("{id}={addr}"))))
        .map_err(wr)?;
    // Last: the raft log marks the data dir as taken, so a failed restore can be retried.
    log_store::write_restored(&data_dir.join("raft"), at, Vote::new_committed(1, id))
        .map_err(wr)?;
    Ok(Restored {
        keys: kv.len(),
        revision: kv.revision(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_backup_is_named_with_its_cause_once() {
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("bad.snap");
        std::fs::write(&backup, b"not a backup").unwrap();
        let err = restore(&backup, &dir.path().join("data"), 1, "127.0.0.1:1").unwrap_err();
        let RestoreError::Backup { cause, .. } = &err else {
            panic!("not a backup error: {err}");
        };
        let cause = cause.to_string();
        // As `main` prints it: the message, then the chain of sources.
        let shown = format!("{:#}", anyhow::Error::from(err));
        assert_eq!(shown, format!("{}: {cause}", backup.display()));
    }
}
