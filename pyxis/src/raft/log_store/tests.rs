use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};

use std::time::Duration;

use super::*;
use crate::raft::snapshot::SnapshotDir;
use crate::raft::state_machine::StateMachine;
use crate::raft::wal::Wal;

struct Builder;

fn io_err(e: io::Error) -> StorageError<TypeConfig> {
    StorageError::from_io_error(openraft::ErrorSubject::Store, openraft::ErrorVerb::Read, e)
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().map_err(io_err)?;
        let log = LogStore::open(&dir.path().join("log")).map_err(io_err)?;
        let snaps = SnapshotDir::new(dir.path().join("snap")).map_err(io_err)?;
        Ok((dir, log, StateMachine::new(snaps, 1000)))
    }
}

/// openraft's storage conformance suite over the WAL-backed log and the in-memory state machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    Suite::test_all(Builder).await.unwrap();
}

/// Appended entries and the vote survive closing and reopening the store.
#[tokio::test]
async fn reopen_keeps_log_and_vote() {
    use openraft::testing::log_id;
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = LogStore::open(dir.path()).unwrap();
        let entries = (1..=3).map(|i| Entry::new_blank(log_id::<TypeConfig>(1, 1, i)));
        store.append(entries, IOFlushed::noop()).await.unwrap();
        store.save_vote(&Vote::new(2, 1)).await.unwrap();
        store.purge(log_id::<TypeConfig>(1, 1, 1)).await.unwrap();
        // A durable vote write flushes everything queued before it.
        store.save_vote(&Vote::new(3, 1)).await.unwrap();
        // Nothing follows the committed id: dropping the store must still write it.
        store
            .save_committed(Some(log_id::<TypeConfig>(1, 1, 3)))
            .await
            .unwrap();
    }
    let mut store = LogStore::open(dir.path()).unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!(
        state.last_purged_log_id,
        Some(log_id::<TypeConfig>(1, 1, 1))
    );
    assert_eq!(state.last_log_id, Some(log_id::<TypeConfig>(1, 1, 3)));
    assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
    let got = store.try_get_log_entries(0..10).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        store.read_committed().await.unwrap(),
        Some(log_id::<TypeConfig>(1, 1, 3))
    );
}

/// A lone committed id reaches the disk after a short quiet spell, without spinning.
#[tokio::test]
async fn lone_committed_id_is_written_after_a_pause() {
    use openraft::testing::log_id;
    let dir = tempfile::tempdir().unwrap();
    let mut store = LogStore::open(dir.path()).unwrap();
    store
        .save_committed(Some(log_id::<TypeConfig>(2, 1, 7)))
        .await
        .unwrap();
    let on_disk = || Wal::open(dir.path()).map(|(_, r)| r.committed);
    // The writer holds the file open, but the WAL reads through its own handle.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if on_disk().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "committed id never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
