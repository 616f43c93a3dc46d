//! The durable Raft log and vote, kept in a write-ahead log (`wal`) with group commit.
//!
//! One writer thread owns the WAL. `append` hands entries to it and returns at once;
//! the thread drains every request queued meanwhile, writes them as one batch (one
//! `fdatasync`), and only then fires the flush callbacks. So under
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
use tokio::sync::oneshot;

use super::codec;
use super::wal::{Record, Wal};
use super::{Entry, LogId, TypeConfig, Vote};

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
    /// Write the vote; `done` fires once it is durable.
    Vote {
        value: Vec<u8>,
        done: oneshot::Sender<io::Result<()>>,
    },
    /// Write the committed id, lazily (nobody waits for it).
    Committed(Vec<u8>),
}

/// The Raft log storage handed to openraft.
pub struct LogStore {
    mem: Arc<RwLock<MemLog>>,
    writer: mpsc::Sender<WriteOp>,
    /// Joined on drop, so the WAL is closed (and queued writes flushed) when the store is gone.
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
    /// Opens (or creates) the log in `dir`, loads it into memory and starts the writer thread.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let started = Instant::now();
        let (wal, replayed) = Wal::open(dir)?;
        let mut mem = MemLog::default();
        let (count, first, last) = (
            replayed.entries.len(),
            replayed.entries.keys().next().copied(),
            replayed.entries.keys().next_back().copied(),
        );
        for (index, bytes) in replayed.entries {
            mem.entries.insert(index, codec::decode(&bytes)?);
        }
        // Startup time grows with the log kept since the last snapshot: say what it cost.
        tracing::info!(
            entries = count,
            first,
            last,
            millis = started.elapsed().as_millis() as u64,
            "raft log loaded"
        );
        if let Some(v) = replayed.vote {
            mem.vote = Some(codec::decode(&v)?);
        }
        if let Some(c) = replayed.committed {
            mem.committed = codec::decode(&c)?;
        }
        if let Some(p) = replayed.purged {
            mem.last_purged = codec::decode(&p)?;
        }
        let mem = Arc::new(RwLock::new(mem));
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer_loop(wal, rx))?;
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

    async fn save_vote_durably(&self, value: Vec<u8>) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(WriteOp::Vote { value, done: tx })?;
        rx.await
            .map_err(|_| io::Error::other("raft log writer stopped"))?
    }
}

fn writer_loop(mut wal: Wal, rx: mpsc::Receiver<WriteOp>) {
    // The committed id is written lazily: it rides along with the next commit that has
    // other work, or goes alone after a quiet spell. Giving it a commit (an fsync) of its
    // own would double the fsyncs per write, and a committed id that lags on disk only
    // means more re-apply after a restart.
    let mut lazy: Option<WriteOp> = None;
    loop {
        // `due` is set when the lazy write is taken because its wait is over (or the store
        // is closing): it must then be written even if nothing else came along.
        let (first, due) = match lazy.take() {
            None => match rx.recv() {
                Ok(op) => (op, false),
                Err(_) => return,
            },
            Some(pending) => match rx.recv_timeout(LAZY_META_DELAY) {
                Ok(op) => {
                    lazy = Some(pending);
                    (op, false)
                }
                Err(_) => (pending, true),
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if !due && batch.iter().all(is_lazy) {
            // Keep only the newest: later committed ids supersede earlier ones.
            lazy = batch.pop();
            continue;
        }
        if let Some(op) = lazy.take() {
            batch.insert(0, op);
        }
        let started = Instant::now();
        let result = commit_batch(&mut wal, batch.iter_mut());
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
                WriteOp::Vote { done, .. } => {
                    let _ = done.send(res);
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
    matches!(op, WriteOp::Committed(_))
}

/// Writes one batch to the WAL with one fsync. Payloads are moved out of the ops (they
/// are not needed after the write); the ops stay for their callbacks.
fn commit_batch<'a>(wal: &mut Wal, batch: impl Iterator<Item = &'a mut WriteOp>) -> io::Result<()> {
    let mut records = Vec::new();
    for op in batch {
        match op {
            WriteOp::Append { rows, .. } => {
                records.extend(
                    std::mem::take(rows)
                        .into_iter()
                        .map(|(index, bytes)| Record::Entry { index, bytes }),
                );
            }
            WriteOp::TruncateFrom(from) => records.push(Record::TruncateFrom(*from)),
            WriteOp::Purge { upto, record } => records.push(Record::Purge {
                upto: *upto,
                state: std::mem::take(record),
            }),
            WriteOp::Vote { value, .. } => records.push(Record::Vote(std::mem::take(value))),
            WriteOp::Committed(c) => records.push(Record::Committed(std::mem::take(c))),
        }
    }
    wal.append(&records)
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
        self.get_log_reader().await.try_get_log_entries(range).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.get_log_reader().await.read_vote().await
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
        self.save_vote_durably(codec::encode(vote)?).await?;
        write_mem(&self.mem).vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not awaited, and written lazily by the writer thread: a committed id that lags on
        // disk only means more re-apply work after a restart, never a wrong state, since it
        // is never written ahead of the entries it names (same FIFO, same or later commit).
        self.send(WriteOp::Committed(codec::encode(&committed)?))?;
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
        let purged = {
            let mut mem = write_mem(&self.mem);
            let keep = mem.entries.split_off(&(log_id.index + 1));
            mem.last_purged = Some(log_id);
            std::mem::replace(&mut mem.entries, keep)
        };
        // Freeing tens of thousands of entries takes milliseconds: not on Raft's path.
        if purged.len() > 1024 {
            std::thread::spawn(move || drop(purged));
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
    let (mut wal, _) = Wal::open(dir)?;
    let id = codec::encode(&Some(log_id))?;
    wal.append(&[
        Record::Purge {
            upto: log_id.index,
            state: id.clone(),
        },
        Record::Committed(id),
        Record::Vote(codec::encode(&vote)?),
    ])
}

/// Whether `dir` already holds a Raft log.
pub fn exists(dir: &Path) -> bool {
    super::wal::exists(dir)
}

#[cfg(test)]
mod tests;
