//! The write-ahead log file format under the Raft log store: append-only segments.
//!
//! Every change to the log (an entry, a truncation, a purge, a vote, a committed id) is one
//! framed record appended to the active segment; a batch is one `write` and one `fdatasync`.
//! Opening replays all segments in order; only a torn tail of the last segment (see
//! `format::judge_tail`) is cut off, damage anywhere else fails the open naming file and
//! offset. A new segment is written with a head (vote, committed id, purge point) under a temp
//! name, synced and renamed into place, so a purge can delete whole old segments. Threads and
//! the in-memory log are `log_store`'s; files are reached through [`fs::Fs`] so tests can
//! crash them at any step.

mod format;
pub mod fs;
#[cfg(test)]
pub(crate) mod sim;

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use self::format::{Frame, Layout, MAGIC, Tail};
use self::fs::{Fs, FsFile, OsFs};

pub use self::format::MAX_BODY;

/// A segment is closed and a new one started once it grows past this size.
pub(crate) const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Suffix of a segment being created; such files never count and are removed on open.
const TEMP_SUFFIX: &str = ".wal.tmp";

/// What an operator does about a log that cannot be trusted; part of every such error.
pub const RECOVERY: &str = "recovery: remove this member from the cluster on a healthy member \
     (`pyxis members remove ID`), move this data dir away, start the node with `--join` on an \
     empty data dir and add it back as a new member (`pyxis members add ID ADDR`); a single-node \
     store is restored from a backup (`pyxis snapshot restore`)";

/// One change to the log, as written to disk. Payloads are opaque bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The encoded entry at `index`.
    Entry {
        /// Log index.
        index: u64,
        /// Encoded entry.
        bytes: Vec<u8>,
    },
    /// Drop every entry with index >= the value.
    TruncateFrom(u64),
    /// Drop every entry with index <= `upto`; `state` is the encoded purge point.
    Purge {
        /// Last purged index.
        upto: u64,
        /// Encoded last purged log id.
        state: Vec<u8>,
    },
    /// The encoded vote.
    Vote(Vec<u8>),
    /// The encoded committed log id.
    Committed(Vec<u8>),
}

/// What replaying the segments produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Live entries by index.
    pub entries: BTreeMap<u64, Vec<u8>>,
    /// Last vote written.
    pub vote: Option<Vec<u8>>,
    /// Last committed id written.
    pub committed: Option<Vec<u8>>,
    /// Last purge point written.
    pub purged: Option<Vec<u8>>,
}

impl Replayed {
    /// Whether the log holds nothing at all: no entry, vote, committed id or purge point.
    pub fn is_blank(&self) -> bool {
        *self == Replayed::default()
    }

    fn apply(&mut self, record: Record, purged_upto: &mut Option<u64>) {
        match record {
            Record::Entry { index, bytes } => {
                self.entries.insert(index, bytes);
            }
            Record::TruncateFrom(from) => drop(self.entries.split_off(&from)),
            Record::Purge { upto, state } => {
                self.entries = self.entries.split_off(&(upto + 1));
                self.purged = Some(state);
                *purged_upto = Some(upto);
            }
            Record::Vote(v) => self.vote = Some(v),
            Record::Committed(c) => self.committed = Some(c),
        }
    }
}

/// One segment file and the highest entry index it holds.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    max_index: Option<u64>,
    layout: Layout,
}

/// An open write-ahead log on the file system `F`.
pub struct Wal<F: Fs = OsFs> {
    fs: F,
    dir: PathBuf,
    /// Closed segments, oldest first; the active one is last and open in `file`.
    segments: Vec<Segment>,
    file: F::File,
    size: u64,
    segment_bytes: u64,
    next_seq: u64,
    vote: Option<Vec<u8>>,
    committed: Option<Vec<u8>>,
    purged: Option<(u64, Vec<u8>)>,
}

/// Whether `dir` already holds a log.
pub fn exists(dir: &Path) -> bool {
    segment_paths(&OsFs, dir).is_ok_and(|s| !s.is_empty())
}

impl Wal<OsFs> {
    /// Opens the log in `dir` (created if missing) and replays it.
    pub fn open(dir: &Path) -> io::Result<(Wal, Replayed)> {
        Self::open_with(dir, SEGMENT_BYTES)
    }

    /// [`Wal::open`] with a chosen segment size (small ones in tests exercise rotation).
    pub fn open_with(dir: &Path, segment_bytes: u64) -> io::Result<(Wal, Replayed)> {
        Wal::open_in(OsFs, dir, segment_bytes)
    }
}

impl<F: Fs> Wal<F> {
    /// Opens the log in `dir` on the file system `fs` and replays it.
    pub fn open_in(fs: F, dir: &Path, segment_bytes: u64) -> io::Result<(Wal<F>, Replayed)> {
        fs.create_dir_all(dir)?;
        for name in fs.list(dir)? {
            if name.ends_with(TEMP_SUFFIX) {
                // A segment whose creation a crash interrupted: it never counted.
                fs.remove(&dir.join(name))?;
            }
        }
        fs.discard_leftovers(dir)?;
        let mut paths = segment_paths(&fs, dir)?;
        let mut last_data = match paths.last() {
            Some((_, p)) => fs.read(p)?,
            None => Vec::new(),
        };
        if last_data.is_empty() && paths.len() >= 2 {
            let (_, prev) = &paths[paths.len() - 2];
            let prev_data = fs.read(prev)?;
            if Layout::of(&prev_data).0 == Layout::Legacy {
                // Versions before segment heads were renamed into place created the file
                // first and wrote its head after: a crash in between left it empty.
                let (_, empty) = paths.remove(paths.len() - 1);
                tracing::warn!(path = %empty.display(), "removing an empty wal segment left by an interrupted rotation");
                fs.remove(&empty)?;
                fs.sync_dir(dir)?;
                last_data = prev_data;
            }
        }
        let mut replayed = Replayed::default();
        let mut purged_upto = None;
        let mut segments = Vec::new();
        let mut last_len = 0;
        let count = paths.len();
        for (i, (_, path)) in paths.iter().enumerate() {
            let last = i + 1 == count;
            let data = if last {
                std::mem::take(&mut last_data)
            } else {
                fs.read(path)?
            };
            let (layout, max_index, valid) =
                replay_segment(path, &data, last, &mut replayed, &mut purged_upto)?;
            if valid < data.len() {
                tracing::warn!(
                    path = %path.display(),
                    offset = valid,
                    dropped = data.len() - valid,
                    "cutting a torn record off the end of the wal"
                );
                let mut f = fs.open_append(path)?;
                f.set_len(valid as u64)?;
                f.sync_data()?;
            }
            last_len = valid as u64;
            segments.push(Segment {
                path: path.clone(),
                max_index,
                layout,
            });
        }
        let next_seq = paths.last().map_or(0, |(seq, _)| seq + 1);
        let purged = purged_upto.zip(replayed.purged.clone());
        let (file, size) = match segments.last() {
            Some(active) if active.layout == Layout::V2 => {
                (fs.open_append(&active.path)?, last_len)
            }
            // A new log, or a legacy last segment: never append frames of another layout to
            // it, start a new segment instead.
            _ => {
                let head = head_records(&replayed.vote, &replayed.committed, &purged);
                let (file, path, size) = create_segment(&fs, dir, next_seq, &head)?;
                if count == 0 {
                    // A new log: its directory's own entry must be durable too.
                    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
                    fs.sync_dir(parent.unwrap_or(Path::new(".")))?;
                }
                segments.push(Segment {
                    path,
                    max_index: None,
                    layout: Layout::V2,
                });
                (file, size)
            }
        };
        let next_seq = next_seq + u64::from(segments.len() > count);
        let wal = Wal {
            fs,
            dir: dir.to_owned(),
            segments,
            file,
            size,
            segment_bytes,
            next_seq,
            vote: replayed.vote.clone(),
            committed: replayed.committed.clone(),
            purged,
        };
        Ok((wal, replayed))
    }

    /// Appends `records` and makes them durable (one write, one `fdatasync`). A record
    /// larger than [`MAX_BODY`] fails the whole call before anything is written.
    pub fn append(&mut self, records: &[Record]) -> io::Result<()> {
        let mut buf = Vec::new();
        for r in records {
            format::encode(r, &mut buf).map_err(|len| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "a wal record of {len} bytes is over the limit of {MAX_BODY} bytes; nothing was written"
                    ),
                )
            })?;
        }
        if self.size >= self.segment_bytes {
            self.rotate()?;
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.size += buf.len() as u64;
        let mut purge_upto = None;
        for r in records {
            match r {
                Record::Entry { index, .. } => {
                    let active = self.active();
                    active.max_index = active.max_index.max(Some(*index));
                }
                Record::Vote(v) => self.vote = Some(v.clone()),
                Record::Committed(c) => self.committed = Some(c.clone()),
                Record::Purge { upto, state } => {
                    self.purged = Some((*upto, state.clone()));
                    purge_upto = Some(*upto);
                }
                Record::TruncateFrom(_) => {}
            }
        }
        if let Some(upto) = purge_upto {
            self.remove_purged_segments(upto);
        }
        Ok(())
    }

    fn active(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// Starts a new segment whose head restates the vote, committed id and purge point.
    fn rotate(&mut self) -> io::Result<()> {
        let head = head_records(&self.vote, &self.committed, &self.purged);
        let (file, path, size) = create_segment(&self.fs, &self.dir, self.next_seq, &head)?;
        self.next_seq += 1;
        self.file = file;
        self.size = size;
        self.segments.push(Segment {
            path,
            max_index: None,
            layout: Layout::V2,
        });
        Ok(())
    }

    /// Deletes the oldest closed segments whose entries are all purged. Only a prefix is
    /// removed, and the purge record is durable first, so a removal a crash undoes (the
    /// directory is not synced) replays to the same state.
    fn remove_purged_segments(&mut self, upto: u64) {
        while self.segments.len() > 1 && self.segments[0].max_index.is_none_or(|m| m <= upto) {
            let seg = self.segments.remove(0);
            // In the background: this runs on the log's writer thread, and an unlink of a
            // whole segment can stall the disk's syncs for tens of milliseconds.
            if let Err(e) = self.fs.discard(&seg.path) {
                tracing::warn!(path = %seg.path.display(), error = %e, "could not remove a purged wal segment");
            }
        }
    }
}

/// The records every new segment starts with, restating the log's state.
fn head_records(
    vote: &Option<Vec<u8>>,
    committed: &Option<Vec<u8>>,
    purged: &Option<(u64, Vec<u8>)>,
) -> Vec<Record> {
    let mut head = Vec::new();
    if let Some(v) = vote {
        head.push(Record::Vote(v.clone()));
    }
    if let Some(c) = committed {
        head.push(Record::Committed(c.clone()));
    }
    if let Some((upto, state)) = purged {
        head.push(Record::Purge {
            upto: *upto,
            state: state.clone(),
        });
    }
    head
}

fn segment_paths<F: Fs>(fs: &F, dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out: Vec<(u64, PathBuf)> = fs
        .list(dir)?
        .into_iter()
        .filter_map(|name| {
            let seq = name.strip_suffix(".wal")?.parse::<u64>().ok()?;
            Some((seq, dir.join(name)))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Creates segment `seq` holding `head`: written and synced under a temp name, then renamed
/// into place and the directory synced, so a segment never exists without its head.
fn create_segment<F: Fs>(
    fs: &F,
    dir: &Path,
    seq: u64,
    head: &[Record],
) -> io::Result<(F::File, PathBuf, u64)> {
    let path = dir.join(format!("{seq:020}.wal"));
    let tmp = dir.join(format!("{seq:020}{TEMP_SUFFIX}"));
    let mut buf = MAGIC.to_vec();
    for r in head {
        format::encode(r, &mut buf)
            .map_err(|len| io::Error::other(format!("a wal head record of {len} bytes")))?;
    }
    let mut file = fs.create(&tmp)?;
    file.write_all(&buf)?;
    file.sync_data()?;
    fs.rename(&tmp, &path)?;
    fs.sync_dir(dir)?;
    Ok((file, path, buf.len() as u64))
}

/// Replays one segment into `out`: its layout, highest entry index and the length of its
/// valid part (shorter than `data` only for a torn tail of the last segment).
fn replay_segment(
    path: &Path,
    data: &[u8],
    last: bool,
    out: &mut Replayed,
    purged_upto: &mut Option<u64>,
) -> io::Result<(Layout, Option<u64>, usize)> {
    let damaged = |offset: usize, why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: damaged wal record at byte offset {offset} ({why}); not a torn tail left by \
                 a crash, so this log cannot be trusted and the node will not start; {RECOVERY}",
                path.display()
            ),
        )
    };
    if data.is_empty() {
        return Err(damaged(0, "the segment is empty, without its head"));
    }
    let (layout, mut pos) = Layout::of(data);
    if layout == Layout::Legacy && MAGIC.starts_with(data) {
        return Err(damaged(0, "the segment header is cut short"));
    }
    let mut max_index = None;
    while pos < data.len() {
        match format::parse(&data[pos..], layout) {
            Frame::Record(record, used) => {
                pos += used;
                if let Record::Entry { index, .. } = &record {
                    max_index = max_index.max(Some(*index));
                }
                out.apply(record, purged_upto);
            }
            Frame::Incomplete | Frame::Bad(_) if last => {
                match format::judge_tail(data, pos, layout) {
                    Tail::Torn => break,
                    Tail::Damaged(why) => return Err(damaged(pos, &why)),
                }
            }
            Frame::Incomplete => return Err(damaged(pos, "a closed segment ends mid-record")),
            Frame::Bad(why) => return Err(damaged(pos, why)),
        }
    }
    Ok((layout, max_index, pos))
}

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod tests;
