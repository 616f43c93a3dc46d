//! The durable Raft log and vote, kept in a write-ahead log (`wal`) with group commit.
//!
//! One writer thread owns the WAL. `append` hands entries to it and returns at once;
//! the thread drains every request queued meanwhile, writes them as one batch (one
//! `fdatasync`), and only then fires the flush callbacks. So under
//! load many entries share one fsync, and no callback ever runs before its fsync.
//! A copy of the unpurged log is kept in memory so readers never wait for the disk.
//! A failed commit is never retried (a retried fsync can falsely succeed): the process exits
//! at once ([`fail_stop`]), before any callback of the failed batch runs.
//! The state machine and snapshots live in `state_machine` and `snapshot`.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use tokio::sync::oneshot;

use super::codec;
use super::snapshot;
use super::wal::fs::{Fs, OsFs};
use super::wal::{self, MAX_BODY, RECOVERY, Record, Wal};
use super::{LogEntry, LogId, TypeConfig, Vote};

/// Most requests committed in one transaction; bounds the latency of the first one.
const MAX_BATCH: usize = 4096;

/// How long a lazily written committed id may wait for other work before it is written alone.
const LAZY_META_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// Exit code of a node whose log could not be written (`EX_IOERR` of sysexits.h).
pub const EXIT_LOG_FAILED: i32 = 74;

/// Bytes a WAL entry record adds around the encoded entry (its kind and index).
const ENTRY_RECORD_OVERHEAD: usize = 9;

/// What happens when the log cannot be written: in a server, [`fail_stop`].
pub type FatalHook = Arc<dyn Fn(&io::Error) + Send + Sync>;

/// The in-memory view of the log, updated before the disk (readers see appends at once).
#[derive(Default)]
struct MemLog {
    entries: BTreeMap<u64, LogEntry>,
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
    on_fatal: FatalHook,
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
    /// Opens (or creates) the log in `dir` (`DATA_DIR/raft`), loads it into memory and starts
    /// the writer thread; a write failure later exits the process ([`fail_stop`]).
    ///
    /// Refuses a missing or blank log in a data dir that shows the node had state (see
    /// [`prior_state`]): starting blank would forget the vote and acknowledged entries.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let evidence = prior_state(dir);
        let refuse = |evidence: &Path| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: the raft log is missing or empty, but {} shows this node had state; \
                     refusing to start as a blank node, which could vote twice in a term or lose \
                     acknowledged writes; if `pyxis snapshot restore` into this data dir was \
                     interrupted, move the data dir away and restore again; otherwise {RECOVERY}",
                    dir.display(),
                    evidence.display()
                ),
            )
        };
        if let Some(e) = &evidence
            && !wal::exists(dir)
        {
            return Err(refuse(e));
        }
        let (wal, mem, blank) = load(OsFs, dir, wal::SEGMENT_BYTES)?;
        if let Some(e) = &evidence
            && blank
        {
            return Err(refuse(e));
        }
        Self::start(wal, mem, Arc::new(|e: &io::Error| fail_stop(e)))
    }

    /// Opens the log in `dir` on the file system `fs`, with `on_fatal` called on a write
    /// failure (tests inject faults and observe it).
    #[cfg(test)]
    pub(crate) fn open_in<F: Fs>(
        fs: F,
        dir: &Path,
        segment_bytes: u64,
        on_fatal: FatalHook,
    ) -> io::Result<Self> {
        let (wal, mem, _) = load(fs, dir, segment_bytes)?;
        Self::start(wal, mem, on_fatal)
    }

    fn start<F: Fs>(wal: Wal<F>, mem: MemLog, on_fatal: FatalHook) -> io::Result<Self> {
        let mem = Arc::new(RwLock::new(mem));
        let (tx, rx) = mpsc::channel();
        let hook = on_fatal.clone();
        let thread = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer_loop(wal, rx, hook))?;
        Ok(LogStore {
            mem,
            writer: tx,
            on_fatal,
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

/// Replays the log in `dir` into memory; also whether it is blank (holds nothing at all).
fn load<F: Fs>(fs: F, dir: &Path, segment_bytes: u64) -> io::Result<(Wal<F>, MemLog, bool)> {
    let started = Instant::now();
    let (wal, replayed) = Wal::open_in(fs, dir, segment_bytes)?;
    let blank = replayed.is_blank();
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
    Ok((wal, mem, blank))
}

/// A file beside the log dir `dir` that proves the node had state, if there is one.
///
/// The snapshot file (`DATA_DIR/snapshots/snapshot.bin`) is written only after entries were
/// applied, a leader's snapshot was installed (after a vote was saved) or a restore, which
/// writes it before the log; so with it, a blank log means a lost one. The cluster id file is
/// no such proof: a new node writes it before its first log write, so a crash in between
/// leaves a cluster id beside a blank log that is right to start from.
pub fn prior_state(dir: &Path) -> Option<PathBuf> {
    let file = snapshot::file_in(&dir.parent()?.join("snapshots"));
    file.exists().then_some(file)
}

/// Ends the process after a failed log write: logs why and exits with [`EXIT_LOG_FAILED`].
///
/// Retrying is unsafe (after a failed fsync the kernel may have dropped the dirty pages and
/// a second fsync can report success for data that is gone), and serving on with Raft
/// stopped helps nobody. Nothing of the failed batch was acknowledged: its callbacks never ran.
#[allow(clippy::print_stderr)]
pub fn fail_stop(e: &io::Error) -> ! {
    tracing::error!(error = %e, "the raft log could not be written; exiting");
    eprintln!(
        "error: the raft log could not be written: {e}; exiting with code {EXIT_LOG_FAILED} so \
         a supervisor restarts this node on its durable log (a failed fsync is never retried); \
         free the space or fix the disk first"
    );
    std::process::exit(EXIT_LOG_FAILED)
}

fn writer_loop<F: Fs>(mut wal: Wal<F>, rx: mpsc::Receiver<WriteOp>, on_fatal: FatalHook) {
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
            // In a server this does not return: nothing below runs, nothing is acknowledged.
            on_fatal(e);
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
fn commit_batch<'a, F: Fs>(
    wal: &mut Wal<F>,
    batch: impl Iterator<Item = &'a mut WriteOp>,
) -> io::Result<()> {
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
    ) -> Result<Vec<LogEntry>, io::Error> {
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
    ) -> Result<Vec<LogEntry>, io::Error> {
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
        I: IntoIterator<Item = LogEntry> + Send,
        I::IntoIter: Send,
    {
        let mut rows = Vec::new();
        let mut accepted = Vec::new();
        for entry in entries {
            let index = entry.index();
            let bytes = codec::encode(&entry)?;
            if bytes.len() + ENTRY_RECORD_OVERHEAD > MAX_BODY {
                // The API limits requests far below this: such an entry is a bug or a hostile
                // peer. The WAL reader would refuse it, so it is never written or acknowledged.
                let e = io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "raft log entry {index} encodes to {} bytes, over the wal record limit \
                         of {MAX_BODY} bytes; refusing to write it",
                        bytes.len()
                    ),
                );
                (self.on_fatal)(&e);
                return Err(e);
            }
            rows.push((index, bytes));
            accepted.push(entry);
        }
        {
            let mut mem = write_mem(&self.mem);
            for entry in accepted {
                mem.entries.insert(entry.index(), entry);
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
        // Freeing tens of thousands of entries takes milliseconds: not on Raft's path, and
        // not in one burst either, since the frees contend with the request threads for the
        // allocator's locks (every member purges at the same index).
        if purged.len() > FREE_BATCH {
            std::thread::spawn(move || free_slowly(purged));
        }
        self.send(WriteOp::Purge {
            upto: log_id.index,
            record: codec::encode(&Some(log_id))?,
        })
    }
}

/// Entries freed at a time by [`free_slowly`].
const FREE_BATCH: usize = 1024;

/// Drops `entries` [`FREE_BATCH`] at a time with a short pause in between.
fn free_slowly(entries: BTreeMap<u64, LogEntry>) {
    let mut it = entries.into_iter();
    while it.by_ref().take(FREE_BATCH).count() == FREE_BATCH {
        std::thread::sleep(std::time::Duration::from_millis(1));
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
    wal::exists(dir)
}

#[cfg(test)]
mod tests;
