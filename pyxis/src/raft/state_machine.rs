//! The Raft state machine: committed commands applied to the in-memory key space.
//!
//! The state lives only in memory; durability comes from the Raft log plus the last
//! snapshot file (openraft's "transient state machine": on restart it installs the
//! snapshot and re-applies the log up to the saved committed id). Applying never
//! parses `/ns/` values, reads the clock or draws random numbers: the key-space rules
//! are in `store::kv`. Readers (HTTP handlers) share the state through [`StoreView`].

use std::io;
use std::sync::{Arc, Mutex, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use tokio::sync::watch;

use super::snapshot::{SnapshotDir, decode_file};
use super::{LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig, codec};
use crate::store::command::CommandResult;
use crate::store::kv::{KvState, KvStateWithoutAcl, KvStateWithoutSessions};
use crate::store::watch::{Compacted, Event, History, HistoryLimits};

/// How far the state machine has applied: the log index and the store revision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Last applied log index (0 before anything).
    pub index: u64,
    /// Store revision after it.
    pub revision: u64,
    /// Changes that may have removed tokens (revokes, installed snapshots) applied since
    /// this process started: a long request holding a token looks again only when it moves.
    pub tokens_removed: u64,
}

struct State {
    kv: KvState,
    history: History,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// [`Command::approx_bytes`](crate::store::command::Command::approx_bytes) of every command
    /// applied since this process started.
    applied_bytes: u64,
    /// `applied_bytes` as of the current snapshot, so the difference is the log it does not cover.
    snapshot_bytes_mark: u64,
    /// [`Applied::tokens_removed`]; local, not replicated.
    tokens_removed: u64,
}

struct Shared {
    state: RwLock<State>,
    applied: watch::Sender<Applied>,
    snapshots: SnapshotDir,
    /// Metadata of the snapshot file on disk; its data is read from the file when needed,
    /// never kept in memory.
    current: Mutex<Option<SnapshotMeta>>,
    /// Held while a snapshot file is written and `current` set: openraft may install a
    /// leader's snapshot while building its own, and the older must never replace the newer.
    saving: Mutex<()>,
}

/// The state machine handed to openraft; clones share one state.
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

/// Read access to the applied state, for request handlers.
#[derive(Clone)]
pub struct StoreView {
    shared: Arc<Shared>,
}

impl StateMachine {
    /// An empty state machine keeping its snapshot in `snapshots` and recent events for
    /// watches within `history`.
    pub fn new(snapshots: SnapshotDir, history: impl Into<HistoryLimits>) -> Self {
        let (applied, _) = watch::channel(Applied::default());
        StateMachine {
            shared: Arc::new(Shared {
                state: RwLock::new(State {
                    kv: KvState::default(),
                    history: History::new(0, history),
                    last_applied: None,
                    membership: StoredMembership::default(),
                    applied_bytes: 0,
                    snapshot_bytes_mark: 0,
                    tokens_removed: 0,
                }),
                applied,
                snapshots,
                current: Mutex::new(None),
                saving: Mutex::new(()),
            }),
        }
    }

    /// A read handle on the same state.
    pub fn view(&self) -> StoreView {
        StoreView {
            shared: self.shared.clone(),
        }
    }
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // Updates are single map operations; a poisoned lock holds consistent data.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<SnapshotMeta>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a snapshot at `meta` with `write` and makes it current, unless one at least as
    /// new is current already; the meta of the snapshot current afterwards, and the bytes
    /// written (`None` if it was skipped). Blocking: call it off the async threads.
    fn save_snapshot(
        &self,
        meta: &SnapshotMeta,
        write: impl FnOnce(&SnapshotDir) -> io::Result<u64>,
    ) -> io::Result<(SnapshotMeta, Option<u64>)> {
        let _one_at_a_time = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(newer) = self
            .current()
            .as_ref()
            .filter(|c| c.last_log_id >= meta.last_log_id)
        {
            return Ok((newer.clone(), None));
        }
        let bytes = write(&self.snapshots)?;
        *self.current() = Some(meta.clone());
        Ok((meta.clone(), Some(bytes)))
    }

    /// The applied state and its snapshot metadata, copied in O(1) under the read lock, with
    /// the applied-bytes count it covers.
    fn copy_state(&self) -> (SnapshotMeta, KvState, u64) {
        let st = self.read();
        (
            SnapshotMeta {
                last_log_id: st.last_applied,
                last_membership: st.membership.clone(),
            },
            st.kv.clone(),
            st.applied_bytes,
        )
    }

    fn publish_applied(&self) {
        let st = self.read();
        let now = Applied {
            index: st.last_applied.map_or(0, |id| id.index),
            revision: st.kv.revision(),
            tokens_removed: st.tokens_removed,
        };
        drop(st);
        self.applied.send_replace(now);
    }
}

impl StoreView {
    /// Runs `f` on a consistent copy of the current key space, outside the state lock: the
    /// copy is O(1) (persistent maps), so a long listing never holds up `apply`.
    pub fn with_kv<T>(&self, f: impl FnOnce(&KvState) -> T) -> T {
        let kv = self.shared.read().kv.clone();
        f(&kv)
    }

    /// Runs `f` on the ACL state under the read lock, without copying the key space: the
    /// check in front of every request uses it, and a copy taken per request would make
    /// the next apply copy every map node it changes instead of changing it in place. `f`
    /// must be quick (a lookup).
    pub fn with_acl<T>(&self, f: impl FnOnce(&crate::store::acl::AclState) -> T) -> T {
        f(self.shared.read().kv.acl())
    }

    /// Events with revision >= `from` whose key matches (about `limit` at most, whole
    /// revisions only), and the store revision they were read at; `Err` if `from` is
    /// older than the kept history.
    pub fn events_since(
        &self,
        from: u64,
        matches: impl Fn(&str) -> bool,
        limit: usize,
    ) -> Result<(Vec<Event>, u64), Compacted> {
        let st = self.shared.read();
        let events = st.history.since(from, matches, limit)?;
        Ok((events, st.kv.revision()))
    }

    /// The current applied position.
    pub fn applied(&self) -> Applied {
        *self.shared.applied.borrow()
    }

    /// A receiver that changes whenever more entries are applied.
    pub fn subscribe(&self) -> watch::Receiver<Applied> {
        self.shared.applied.subscribe()
    }

    /// Where this node keeps its snapshot file (and receives a leader's).
    pub fn snapshot_dir(&self) -> &SnapshotDir {
        &self.shared.snapshots
    }

    /// Log index of the current snapshot, if any.
    pub fn snapshot_index(&self) -> Option<u64> {
        self.shared
            .current()
            .as_ref()
            .and_then(|m| m.last_log_id.map(|id| id.index))
    }

    /// A consistent copy of the whole state with its snapshot metadata, in O(1).
    pub fn copy(&self) -> (SnapshotMeta, KvState) {
        let (meta, kv, _) = self.shared.copy_state();
        (meta, kv)
    }

    /// What pacing snapshots needs, read under one lock: live keys, bytes of keys and values
    /// held, and about how many bytes of commands were applied since the current snapshot
    /// (the log it does not cover).
    pub fn sizes(&self) -> (u64, u64, u64) {
        let st = self.shared.read();
        (
            st.kv.len() as u64,
            st.kv.bytes(),
            st.applied_bytes - st.snapshot_bytes_mark,
        )
    }
}

/// Decodes a snapshot's state, in the current layout, the one before ACLs or the one
/// before request ids.
pub fn decode_state(data: &[u8]) -> Result<KvState, codec::CodecError> {
    // postcard reads fields in order: an older layout is the newer one cut before its last
    // fields, so it fails to decode as the newer one and is then read as what it is.
    codec::decode::<KvState>(data).or_else(|new| {
        codec::decode::<KvStateWithoutAcl>(data)
            .map(KvState::from)
            .or_else(|_| codec::decode::<KvStateWithoutSessions>(data).map(KvState::from))
            .map_err(|_| new)
    })
}

/// Writes one audit entry to the node log (target `audit`), outside the state lock; every
/// node logs each entry when it applies it.
fn log_audit(e: &pyxis_client::api::AuditEntry) {
    let changes = serde_json::to_string(&e.changes).unwrap_or_default();
    tracing::info!(
        target: "audit",
        revision = e.revision,
        time_ms = e.time_ms,
        accessor = e.actor.accessor.as_deref().unwrap_or("-"),
        who = %e.actor.description,
        what = %e.what,
        more = e.more,
        %changes,
        "change"
    );
}

/// Runs `work` on a thread of its own and awaits its result.
///
/// Building a snapshot encodes and writes the whole state: on a small machine that
/// competes with request handling, and the requests must win. The thread keeps normal
/// priority because it does the file system calls; the encoding it drives runs at low
/// priority on a thread of its own (`snapshot::pipe` says why).
async fn background<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("snapshot-builder".into())
        .spawn(move || {
            let _ = tx.send(work());
        })?;
    rx.await
        .map_err(|_| io::Error::other("snapshot builder thread died"))?
}

/// Gives the calling thread the lowest scheduling priority (nice 19); best effort.
pub(crate) fn lower_priority() {
    // SAFETY: setpriority only reads its integer arguments; on Linux, PRIO_PROCESS with a
    // thread id changes that one thread.
    let rc = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19)
    };
    if rc != 0 {
        tracing::debug!("could not lower the snapshot builder's priority");
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        // Copy under the lock (O(1): a persistent map), encode and write outside it so apply
        // is not held up.
        let (meta, kv, covered_bytes) = self.shared.copy_state();
        let shared = self.shared.clone();
        let started = std::time::Instant::now();
        let built =
            background(move || shared.save_snapshot(&meta, |dir| dir.save_state(&meta, &kv))).await;
        let (meta, written) = match built {
            Ok(done) => done,
            Err(e) => {
                // openraft takes an error here for a fatal storage error and stops Raft. A
                // failed build (EMFILE, ENOSPC on the temp file, which the writer removed)
                // loses nothing, since the log still covers it: keep serving, report the
                // current snapshot as built (openraft ignores one that is not newer) and let
                // `snapshot_policy` trigger again later.
                tracing::warn!(error = %e, "building a snapshot failed; keeping the current one, will retry");
                metrics::counter!("pyxis_snapshot_build_failures_total").increment(1);
                return Ok(Snapshot {
                    meta: self.shared.current().clone().unwrap_or_default(),
                    snapshot: SnapshotData::metadata_only(),
                });
            }
        };
        let index = meta.last_log_id.map_or(0, |id| id.index);
        match written {
            Some(bytes) => {
                tracing::info!(index, bytes, "snapshot built");
                metrics::counter!("pyxis_snapshots_built_total").increment(1);
                metrics::histogram!("pyxis_snapshot_build_seconds")
                    .record(started.elapsed().as_secs_f64());
            }
            None => tracing::info!(index, "a newer snapshot was installed meanwhile; kept it"),
        }
        {
            let mut st = self.shared.write();
            st.snapshot_bytes_mark = st.snapshot_bytes_mark.max(covered_bytes);
        }
        // openraft keeps only the metadata of a snapshot it asked to build (`sm::worker`); when
        // it needs the data (a lagging follower), it calls `get_current_snapshot`, which reads
        // the file. So the data is not handed back here, which would hold it in memory again.
        Ok(Snapshot {
            meta,
            snapshot: SnapshotData::metadata_only(),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let st = self.shared.read();
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let started = std::time::Instant::now();
        let mut n = 0u64;
        let mut events = Vec::new();
        let mut audited = None;
        // Copying and encoding an entry for a log line nobody reads costs every write.
        let audit_logged = tracing::enabled!(target: "audit", tracing::Level::INFO);
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            let result = {
                let mut st = self.shared.write();
                st.last_applied = Some(log_id);
                match entry.payload {
                    EntryPayload::Blank => CommandResult::None,
                    EntryPayload::Normal(cmd) => {
                        st.applied_bytes += cmd.approx_bytes();
                        let recorded = st.kv.acl().recorded();
                        let r = st.kv.apply(cmd, &mut events);
                        st.history.extend(events.drain(..));
                        if r == CommandResult::AclTokenRevoked {
                            st.tokens_removed += 1;
                        }
                        if audit_logged && st.kv.acl().recorded() != recorded {
                            audited = st.kv.acl().last_audit().cloned();
                        }
                        r
                    }
                    EntryPayload::Membership(m) => {
                        st.membership = StoredMembership::new(Some(log_id), m);
                        CommandResult::None
                    }
                }
            };
            if let Some(e) = audited.take() {
                log_audit(&e);
            }
            n += 1;
            if let Some(r) = responder {
                r.send(result);
            }
        }
        metrics::counter!("pyxis_raft_applied_entries_total").increment(n);
        metrics::histogram!("pyxis_raft_apply_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("pyxis_raft_apply_entries").record(n as f64);
        self.shared.publish_applied();
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        // The state is about to be in memory anyway; its encoding is, only while decoding.
        let file = tokio::task::spawn_blocking(move || snapshot.read_all().and_then(decode_file))
            .await
            .map_err(io::Error::other)??;
        if &file.meta != meta {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the snapshot file holds other metadata than openraft installs",
            ));
        }
        let kv = decode_state(&file.data)?;
        // Persist first: once installed, the log before it may be purged. A restart installs
        // the file it just opened (`get_current_snapshot`); that one is on disk already.
        let on_disk = self.shared.current().as_ref() == Some(meta);
        if !on_disk {
            let shared = self.shared.clone();
            tokio::task::spawn_blocking(move || {
                shared.save_snapshot(&file.meta, |dir| dir.save(&file).map(|()| 0))
            })
            .await
            .map_err(io::Error::other)??;
        }
        {
            let mut st = self.shared.write();
            // Events before the snapshot are unknown here: watchers behind it get "compacted".
            st.history.reset(kv.revision());
            st.kv = kv;
            st.last_applied = meta.last_log_id;
            st.membership = meta.last_membership.clone();
            st.snapshot_bytes_mark = st.applied_bytes;
            // The snapshot's tokens replace this node's: any of them may be gone.
            st.tokens_removed += 1;
        }
        self.shared.publish_applied();
        tracing::info!(
            index = meta.last_log_id.map_or(0, |id| id.index),
            "snapshot installed"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        // The file is the snapshot; this runs at startup and when a follower needs it. Only
        // its metadata is read here: a follower is sent the file as it streams off the disk.
        let shared = self.shared.clone();
        let opened = tokio::task::spawn_blocking(move || shared.snapshots.open_current())
            .await
            .map_err(io::Error::other)??;
        Ok(opened.map(|(meta, file)| {
            let mut current = self.shared.current();
            // A build may have finished since the read; never step back to an older file.
            if current
                .as_ref()
                .is_none_or(|c| c.last_log_id < meta.last_log_id)
            {
                *current = Some(meta.clone());
            }
            Snapshot {
                meta,
                snapshot: SnapshotData::from_file(file),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::log_id;

    use super::*;

    fn meta_at(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(log_id::<TypeConfig>(1, 1, index)),
            last_membership: StoredMembership::default(),
        }
    }

    #[test]
    fn a_reader_does_not_hold_the_state_lock_while_it_reads() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::new(SnapshotDir::new(dir.path()).unwrap(), 10);
        // A long listing runs inside `with_kv`; apply must be able to take the lock meanwhile.
        sm.view().with_kv(|_| {
            assert!(sm.shared.state.try_write().is_ok(), "the read lock is held");
        });
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::new(SnapshotDir::new(dir.path()).unwrap(), 10);
        let shared = &sm.shared;
        let (at, written) = shared
            .save_snapshot(&meta_at(10), |d| d.save_state(&meta_at(10), "ten"))
            .unwrap();
        assert_eq!(
            (at.last_log_id, written.is_some()),
            (meta_at(10).last_log_id, true)
        );
        // A build of index 5 that finishes later is dropped; the file keeps index 10.
        let (at, written) = shared
            .save_snapshot(&meta_at(5), |d| d.save_state(&meta_at(5), "five"))
            .unwrap();
        assert_eq!((at.last_log_id, written), (meta_at(10).last_log_id, None));
        let on_disk = shared.snapshots.load().unwrap().unwrap();
        assert_eq!(on_disk.meta.last_log_id, meta_at(10).last_log_id);
        assert_eq!(codec::decode::<String>(&on_disk.data).unwrap(), "ten");
    }
}
