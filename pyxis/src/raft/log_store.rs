//! The durable Raft log and vote, kept in `raft.redb` with group commit.
//!
//! One writer thread owns the redb write side. `append` hands entries to it and
//! returns at once; the thread drains every request queued meanwhile, commits them
//! in one transaction (one fsync), and only then fires the flush callbacks. So under
//! load many entries share one fsync, and no callback ever runs before its fsync.
//! A copy of the unpurged log is kept in memory so readers never wait for the disk.
//! A failed commit is never retried (a retried fsync can falsely succeed): the
//! callbacks get the error, openraft stops, and the writer thread exits.
//! The state machine and snapshots live in `state_machine` and `snapshot`.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::codec;
use super::{Entry, LogId, TypeConfig, Vote};

const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";

/// Most requests committed in one transaction; bounds the latency of the first one.
const MAX_BATCH: usize = 4096;

/// How long a lazily written committed id may wait for other work before it is written alone.
const LAZY_META_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// The in-memory view of the log, updated before the disk (readers see appends at once).
#[derive(Default)]
struct MemLog {
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

/// One request to the writer thread.
enum WriteOp {
    Append {
        rows: Vec<(u64, Vec<u8>)>,
        done: IOFlushed<TypeConfig>,
    },
    /// Delete every entry with index >= `from`.
    TruncateFrom(u64),
    /// Delete every entry with index <= `upto` and record the purge point.
    Purge { upto: u64, record: Vec<u8> },
    /// Write one meta key; `done` (if any) fires after the commit.
    Meta {
        key: &'static str,
        value: Vec<u8>,
        done: Option<oneshot::Sender<io::Result<()>>>,
    },
}

/// The Raft log storage handed to openraft.
pub struct LogStore {
    mem: Arc<RwLock<MemLog>>,
    writer: mpsc::Sender<WriteOp>,
    /// Joined on drop, so the redb file is closed when the store is gone.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LogStore {
    fn drop(&mut self) {
        // Replacing the sender disconnects the writer, which commits what is queued and exits.
        let (dead, _) = mpsc::channel();
        self.writer = dead;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A cheap, cloneable reader of the log used by replication tasks.
#[derive(Clone)]
pub struct LogReader {
    mem: Arc<RwLock<MemLog>>,
}

impl LogStore {
    /// Opens (or creates) `DIR/raft.redb`, loads the log into memory and starts the writer thread.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let db = Database::create(dir.join("raft.redb")).map_err(io::Error::other)?;
        // Create the tables up front so that readers never see them missing.
        let txn = db.begin_write().map_err(io::Error::other)?;
        txn.open_table(LOG).map_err(io::Error::other)?;
        txn.open_table(META).map_err(io::Error::other)?;
        txn.commit().map_err(io::Error::other)?;
        let mem = load(&db)?;
        let mem = Arc::new(RwLock::new(mem));
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer_loop(db, rx))?;
        Ok(LogStore {
            mem,
            writer: tx,
            thread: Some(thread),
        })
    }

    fn send(&self, op: WriteOp) -> io::Result<()> {
        self.writer
            .send(op)
            .map_err(|_| io::Error::other("raft log writer stopped after a storage error"))
    }

    async fn write_meta_durably(&self, key: &'static str, value: Vec<u8>) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(WriteOp::Meta {
            key,
            value,
            done: Some(tx),
        })?;
        rx.await
            .map_err(|_| io::Error::other("raft log writer stopped"))?
    }
}

fn load(db: &Database) -> io::Result<MemLog> {
    let txn = db.begin_read().map_err(io::Error::other)?;
    let log = txn.open_table(LOG).map_err(io::Error::other)?;
    let meta = txn.open_table(META).map_err(io::Error::other)?;
    let mut mem = MemLog::default();
    for row in log.iter().map_err(io::Error::other)? {
        let (k, v) = row.map_err(io::Error::other)?;
        let entry: Entry = codec::decode(v.value())?;
        mem.entries.insert(k.value(), entry);
    }
    let get = |key: &str| -> io::Result<Option<Vec<u8>>> {
        Ok(meta
            .get(key)
            .map_err(io::Error::other)?
            .map(|v| v.value().to_vec()))
    };
    if let Some(v) = get(KEY_VOTE)? {
        mem.vote = Some(codec::decode(&v)?);
    }
    if let Some(v) = get(KEY_COMMITTED)? {
        mem.committed = codec::decode(&v)?;
    }
    if let Some(v) = get(KEY_PURGED)? {
        mem.last_purged = codec::decode(&v)?;
    }
    Ok(mem)
}

fn writer_loop(db: Database, rx: mpsc::Receiver<WriteOp>) {
    // The committed id is written lazily: it rides along with the next commit that has
    // other work, or goes alone after a quiet spell. Giving it a commit (an fsync) of its
    // own would double the fsyncs per write, and a committed id that lags on disk only
    // means more re-apply after a restart.
    let mut lazy: Option<WriteOp> = None;
    loop {
        let first = match lazy {
            None => match rx.recv() {
                Ok(op) => op,
                Err(_) => return,
            },
            Some(_) => match rx.recv_timeout(LAZY_META_DELAY) {
                Ok(op) => op,
                Err(mpsc::RecvTimeoutError::Timeout) => match lazy.take() {
                    Some(op) => op,
                    None => continue,
                },
                Err(mpsc::RecvTimeoutError::Disconnected) => match lazy.take() {
                    // Write the last committed id before the store closes.
                    Some(op) => op,
                    None => return,
                },
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if batch.iter().all(is_lazy) {
            // Keep only the newest: later committed ids supersede earlier ones.
            lazy = batch.pop();
            continue;
        }
        if let Some(op) = lazy.take() {
            batch.insert(0, op);
        }
        let started = Instant::now();
        let result = commit_batch(&db, &batch);
        metrics::histogram!("pyxis_raft_log_fsync_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("pyxis_raft_log_batch_ops").record(batch.len() as f64);
        let failed = result.is_err();
        if let Err(e) = &result {
            tracing::error!(error = %e, "raft log commit failed; stopping the log writer");
        }
        for op in batch {
            let res = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::other(e.to_string())),
            };
            match op {
                WriteOp::Append { done, .. } => done.io_completed(res),
                WriteOp::Meta { done: Some(d), .. } => {
                    let _ = d.send(res);
                }
                _ => {}
            }
        }
        if failed {
            return;
        }
    }
}

/// A write nobody waits for and that may be delayed (the committed id).
fn is_lazy(op: &WriteOp) -> bool {
    matches!(op, WriteOp::Meta { done: None, .. })
}

fn commit_batch(db: &Database, batch: &[WriteOp]) -> io::Result<()> {
    let txn = db.begin_write().map_err(io::Error::other)?;
    {
        let mut log = txn.open_table(LOG).map_err(io::Error::other)?;
        let mut meta = txn.open_table(META).map_err(io::Error::other)?;
        for op in batch {
            match op {
                WriteOp::Append { rows, .. } => {
                    for (index, bytes) in rows {
                        log.insert(*index, bytes.as_slice())
                            .map_err(io::Error::other)?;
                    }
                }
                WriteOp::TruncateFrom(from) => {
                    log.retain_in(*from.., |_, _| false)
                        .map_err(io::Error::other)?;
                }
                WriteOp::Purge { upto, record } => {
                    log.retain_in(..=*upto, |_, _| false)
                        .map_err(io::Error::other)?;
                    meta.insert(KEY_PURGED, record.as_slice())
                        .map_err(io::Error::other)?;
                }
                WriteOp::Meta { key, value, .. } => {
                    meta.insert(*key, value.as_slice())
                        .map_err(io::Error::other)?;
                }
            }
        }
    }
    // Durability::Immediate is redb's default: commit returns after the fsync.
    txn.commit().map_err(io::Error::other)
}

fn read_mem(mem: &RwLock<MemLog>) -> std::sync::RwLockReadGuard<'_, MemLog> {
    // A panic while holding the lock cannot leave MemLog half-updated in a way that
    // matters (each update is one map operation), so a poisoned lock is still usable.
    mem.read().unwrap_or_else(|p| p.into_inner())
}

fn write_mem(mem: &RwLock<MemLog>) -> std::sync::RwLockWriteGuard<'_, MemLog> {
    mem.write().unwrap_or_else(|p| p.into_inner())
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let mem = read_mem(&self.mem);
        Ok(mem.entries.range(range).map(|(_, e)| e.clone()).collect())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(read_mem(&self.mem).vote)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let mem = read_mem(&self.mem);
        Ok(mem.entries.range(range).map(|(_, e)| e.clone()).collect())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(read_mem(&self.mem).vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let mem = read_mem(&self.mem);
        let last = mem
            .entries
            .last_key_value()
            .map(|(_, e)| e.log_id())
            .or(mem.last_purged);
        Ok(LogState {
            last_purged_log_id: mem.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            mem: self.mem.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.write_meta_durably(KEY_VOTE, codec::encode(vote)?)
            .await?;
        write_mem(&self.mem).vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not awaited, and written lazily by the writer thread: a committed id that lags on
        // disk only means more re-apply work after a restart, never a wrong state, since it
        // is never written ahead of the entries it names (same FIFO, same or later commit).
        self.send(WriteOp::Meta {
            key: KEY_COMMITTED,
            value: codec::encode(&committed)?,
            done: None,
        })?;
        write_mem(&self.mem).committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(read_mem(&self.mem).committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut rows = Vec::new();
        {
            let mut mem = write_mem(&self.mem);
            for entry in entries {
                let index = entry.index();
                rows.push((index, codec::encode(&entry)?));
                mem.entries.insert(index, entry);
            }
        }
        self.send(WriteOp::Append {
            rows,
            done: callback,
        })
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        write_mem(&self.mem).entries.split_off(&from);
        self.send(WriteOp::TruncateFrom(from))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        {
            let mut mem = write_mem(&self.mem);
            let keep = mem.entries.split_off(&(log_id.index + 1));
            mem.entries = keep;
            mem.last_purged = Some(log_id);
        }
        self.send(WriteOp::Purge {
            upto: log_id.index,
            record: codec::encode(&Some(log_id))?,
        })
    }
}

/// Writes the initial state of a restored data dir: the purge point and committed id
/// at `log_id` and a committed `vote`, with no entries. Used by `pyxis snapshot restore` only.
pub fn write_restored(dir: &Path, log_id: LogId, vote: Vote) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let db = Database::create(dir.join("raft.redb")).map_err(io::Error::other)?;
    let txn = db.begin_write().map_err(io::Error::other)?;
    {
        txn.open_table(LOG).map_err(io::Error::other)?;
        let mut meta = txn.open_table(META).map_err(io::Error::other)?;
        let id = codec::encode(&Some(log_id))?;
        meta.insert(KEY_PURGED, id.as_slice())
            .map_err(io::Error::other)?;
        meta.insert(KEY_COMMITTED, id.as_slice())
            .map_err(io::Error::other)?;
        meta.insert(KEY_VOTE, codec::encode(&vote)?.as_slice())
            .map_err(io::Error::other)?;
    }
    txn.commit().map_err(io::Error::other)
}

#[cfg(test)]
mod tests;
