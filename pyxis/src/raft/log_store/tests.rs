use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};

use std::time::Duration;

use super::*;
use crate::raft::snapshot::{SnapshotDir, SnapshotFile};
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
        let entries = (1..=3).map(|i| LogEntry::new_blank(log_id::<TypeConfig>(1, 1, i)));
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

/// A data dir with a snapshot file: the node had state.
fn data_dir_with_snapshot() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    let snaps = SnapshotDir::new(data.path().join("snapshots")).unwrap();
    snaps
        .save(&SnapshotFile {
            meta: Default::default(),
            data: Vec::new(),
        })
        .unwrap();
    data
}

/// A lost or blanked log beside a snapshot is refused, and nothing is created; a new data
/// dir starts blank.
#[tokio::test]
async fn a_blank_log_beside_prior_state_is_refused() {
    let data = data_dir_with_snapshot();
    let raft = data.path().join("raft");
    let msg = |r: io::Result<LogStore>| r.map(drop).unwrap_err().to_string();
    let m = msg(LogStore::open(&raft));
    assert!(
        m.contains("missing or empty") && m.contains("snapshot.bin"),
        "{m}"
    );
    assert!(m.contains("pyxis members remove"), "{m}");
    assert!(!wal::exists(&raft));
    // A log that holds nothing at all (its segment only has a head) is no better.
    drop(Wal::open(&raft).unwrap());
    assert!(msg(LogStore::open(&raft)).contains("missing or empty"));

    let fresh = tempfile::tempdir().unwrap();
    let mut store = LogStore::open(&fresh.path().join("raft")).unwrap();
    assert_eq!(store.read_vote().await.unwrap(), None);
}

/// A log write that fails (ENOSPC here) calls the fatal hook (in a server: exit), and the
/// write it failed is never acknowledged nor on disk.
#[tokio::test]
async fn a_failed_log_write_is_fatal_and_never_acknowledged() {
    use std::sync::Mutex;

    use crate::raft::wal::sim::{Names, SimFs, Tear};

    const ENOSPC: i32 = 28;
    let fs = SimFs::default();
    let dir = PathBuf::from("/sim/raft");
    let seen: Arc<Mutex<Vec<io::Error>>> = Arc::default();
    let hook: FatalHook = {
        let seen = seen.clone();
        Arc::new(move |e: &io::Error| {
            seen.lock()
                .unwrap()
                .push(io::Error::new(e.kind(), e.to_string()))
        })
    };
    let mut store = LogStore::open_in(fs.clone(), &dir, 1 << 20, hook).unwrap();
    store.save_vote(&Vote::new(1, 1)).await.unwrap();
    fs.fail_from(fs.steps() + 1, ENOSPC);
    let err = store.save_vote(&Vote::new(2, 1)).await.unwrap_err();
    assert!(err.to_string().contains("No space left"), "{err}");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].kind(), io::ErrorKind::StorageFull);
    }
    // The writer is gone: later writes fail instead of hanging.
    assert!(store.save_vote(&Vote::new(3, 1)).await.is_err());
    drop(store);
    let (_, r) = Wal::open_in(fs.crash_image(Names::Live, Tear::Kept), &dir, 1 << 20).unwrap();
    assert_eq!(r.vote, Some(codec::encode(&Vote::new(1, 1)).unwrap()));
    assert!(r.entries.is_empty());
}

/// An entry the WAL reader would refuse is rejected before anything is queued.
#[tokio::test]
async fn an_entry_over_the_record_limit_is_refused() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use std::collections::{BTreeMap, BTreeSet};

    use crate::raft::wal::sim::SimFs;

    let calls = Arc::new(AtomicUsize::new(0));
    let hook: FatalHook = {
        let calls = calls.clone();
        Arc::new(move |_: &io::Error| {
            calls.fetch_add(1, Ordering::SeqCst);
        })
    };
    let dir = PathBuf::from("/sim/raft");
    let mut store = LogStore::open_in(SimFs::default(), &dir, 1 << 20, hook).unwrap();
    // A node address as large as the limit: any payload would do.
    let node = crate::raft::NodeAddr::new("x".repeat(MAX_BODY));
    let members =
        openraft::Membership::new(vec![BTreeSet::from([1])], BTreeMap::from([(1, node)])).unwrap();
    let mut entry = LogEntry::new_blank(openraft::testing::log_id::<TypeConfig>(1, 1, 1));
    entry.payload = openraft::EntryPayload::Membership(members);
    let err = store.append([entry], IOFlushed::noop()).await.unwrap_err();
    assert!(
        err.to_string().contains("over the wal record limit"),
        "{err}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(store.try_get_log_entries(0..10).await.unwrap().is_empty());
}
