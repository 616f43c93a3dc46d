//! The write-ahead log file format under the Raft log store: append-only segments.
//!
//! Every change to the log (an entry, a truncation, a purge, a vote, a committed id)
//! is one framed record appended to the active segment; a batch of records is written
//! with one `write` and made durable with one `fdatasync`. Opening replays all segments
//! in order. A torn record at the end of the last segment (a crash mid-write) is cut
//! off; damage anywhere else stops the open, since skipping it could lose acknowledged
//! entries. Each new segment starts with the current vote, committed id and purge
//! point, so a purge can delete whole old segments. Threading and the in-memory copy
//! of the log are the job of `log_store`; this module only reads and writes files.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

/// A segment is closed and a new one started once it grows past this size.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Frame header: body length (u32 LE) and CRC-32 of the body (u32 LE).
const HEADER: usize = 8;

/// Largest record body accepted when reading (a 4 MiB value plus its encoding).
const MAX_BODY: usize = 64 * 1024 * 1024;

const KIND_ENTRY: u8 = 1;
const KIND_TRUNCATE: u8 = 2;
const KIND_PURGE: u8 = 3;
const KIND_VOTE: u8 = 4;
const KIND_COMMITTED: u8 = 5;

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
#[derive(Debug, Default, PartialEq, Eq)]
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

/// One segment file and the highest entry index it holds.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    max_index: Option<u64>,
}

/// An open write-ahead log.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    /// Closed segments, oldest first; the active one is last and open in `file`.
    segments: Vec<Segment>,
    file: File,
    size: u64,
    segment_bytes: u64,
    next_seq: u64,
    vote: Option<Vec<u8>>,
    committed: Option<Vec<u8>>,
    purged: Option<(u64, Vec<u8>)>,
}

/// Whether `dir` already holds a log.
pub fn exists(dir: &Path) -> bool {
    segment_paths(dir).is_ok_and(|s| !s.is_empty())
}

impl Wal {
    /// Opens the log in `dir` (created if missing) and replays it.
    pub fn open(dir: &Path) -> io::Result<(Wal, Replayed)> {
        Self::open_with(dir, SEGMENT_BYTES)
    }

    /// [`Wal::open`] with a chosen segment size (small ones in tests exercise rotation).
    pub fn open_with(dir: &Path, segment_bytes: u64) -> io::Result<(Wal, Replayed)> {
        fs::create_dir_all(dir)?;
        let paths = segment_paths(dir)?;
        let mut replayed = Replayed::default();
        let mut purged_upto = None;
        let mut segments = Vec::new();
        for (i, (_, path)) in paths.iter().enumerate() {
            let last = i + 1 == paths.len();
            let max_index = replay_segment(path, last, &mut replayed, &mut purged_upto)?;
            segments.push(Segment {
                path: path.clone(),
                max_index,
            });
        }
        let next_seq = paths.last().map_or(0, |(seq, _)| seq + 1);
        let mut wal = match segments.pop() {
            Some(active) => {
                let file = OpenOptions::new().append(true).open(&active.path)?;
                let size = file.metadata()?.len();
                segments.push(active);
                Wal {
                    dir: dir.to_owned(),
                    segments,
                    file,
                    size,
                    segment_bytes,
                    next_seq,
                    vote: None,
                    committed: None,
                    purged: None,
                }
            }
            None => {
                let (file, path) = create_segment(dir, 0)?;
                Wal {
                    dir: dir.to_owned(),
                    segments: vec![Segment {
                        path,
                        max_index: None,
                    }],
                    file,
                    size: 0,
                    segment_bytes,
                    next_seq: 1,
                    vote: None,
                    committed: None,
                    purged: None,
                }
            }
        };
        wal.vote = replayed.vote.clone();
        wal.committed = replayed.committed.clone();
        wal.purged = purged_upto.zip(replayed.purged.clone());
        Ok((wal, replayed))
    }

    /// Appends `records` and makes them durable (one write, one `fdatasync`).
    pub fn append(&mut self, records: &[Record]) -> io::Result<()> {
        if self.size >= self.segment_bytes {
            self.rotate()?;
        }
        let mut buf = Vec::new();
        let mut purge_upto = None;
        for r in records {
            encode(r, &mut buf);
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
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.size += buf.len() as u64;
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
        let (mut file, path) = create_segment(&self.dir, self.next_seq)?;
        self.next_seq += 1;
        let mut head = Vec::new();
        if let Some(v) = &self.vote {
            encode(&Record::Vote(v.clone()), &mut head);
        }
        if let Some(c) = &self.committed {
            encode(&Record::Committed(c.clone()), &mut head);
        }
        if let Some((upto, state)) = &self.purged {
            encode(
                &Record::Purge {
                    upto: *upto,
                    state: state.clone(),
                },
                &mut head,
            );
        }
        file.write_all(&head)?;
        file.sync_data()?;
        self.file = file;
        self.size = head.len() as u64;
        self.segments.push(Segment {
            path,
            max_index: None,
        });
        Ok(())
    }

    /// Deletes the oldest closed segments whose entries are all purged. Only a prefix is
    /// removed, so replaying what is left gives the same state.
    fn remove_purged_segments(&mut self, upto: u64) {
        while self.segments.len() > 1 && self.segments[0].max_index.is_none_or(|m| m <= upto) {
            let seg = self.segments.remove(0);
            if let Err(e) = fs::remove_file(&seg.path) {
                // Harmless: replay of a leftover purged segment yields the same state.
                tracing::warn!(path = %seg.path.display(), error = %e, "could not remove a purged wal segment");
            }
        }
    }
}

fn segment_paths(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for ent in rd {
        let path = ent?.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

fn create_segment(dir: &Path, seq: u64) -> io::Result<(File, PathBuf)> {
    let path = dir.join(format!("{seq:020}.wal"));
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)?;
    // The new name must be durable before anything written into it counts.
    File::open(dir)?.sync_all()?;
    Ok((file, path))
}

fn encode(r: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER]);
    match r {
        Record::Entry { index, bytes } => {
            out.push(KIND_ENTRY);
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(bytes);
        }
        Record::TruncateFrom(from) => {
            out.push(KIND_TRUNCATE);
            out.extend_from_slice(&from.to_le_bytes());
        }
        Record::Purge { upto, state } => {
            out.push(KIND_PURGE);
            out.extend_from_slice(&upto.to_le_bytes());
            out.extend_from_slice(state);
        }
        Record::Vote(v) => {
            out.push(KIND_VOTE);
            out.extend_from_slice(v);
        }
        Record::Committed(c) => {
            out.push(KIND_COMMITTED);
            out.extend_from_slice(c);
        }
    }
    let body = &out[start + HEADER..];
    let len = body.len() as u32;
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

fn decode(body: &[u8]) -> Option<Record> {
    let (&kind, rest) = body.split_first()?;
    let u64_then = |b: &[u8]| -> Option<(u64, Vec<u8>)> {
        let (n, tail) = b.split_at_checked(8)?;
        Some((u64::from_le_bytes(n.try_into().ok()?), tail.to_vec()))
    };
    Some(match kind {
        KIND_ENTRY => {
            let (index, bytes) = u64_then(rest)?;
            Record::Entry { index, bytes }
        }
        KIND_TRUNCATE => Record::TruncateFrom(u64_then(rest)?.0),
        KIND_PURGE => {
            let (upto, state) = u64_then(rest)?;
            Record::Purge { upto, state }
        }
        KIND_VOTE => Record::Vote(rest.to_vec()),
        KIND_COMMITTED => Record::Committed(rest.to_vec()),
        _ => return None,
    })
}

/// Replays one segment into `out`; returns the highest entry index it holds. In the last
/// segment a damaged tail is cut off; elsewhere it is an error.
fn replay_segment(
    path: &Path,
    last: bool,
    out: &mut Replayed,
    purged_upto: &mut Option<u64>,
) -> io::Result<Option<u64>> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut pos = 0usize;
    let mut max_index = None;
    while pos < data.len() {
        match next_record(&data[pos..]) {
            Some((record, used)) => {
                pos += used;
                match record {
                    Record::Entry { index, bytes } => {
                        max_index = max_index.max(Some(index));
                        out.entries.insert(index, bytes);
                    }
                    Record::TruncateFrom(from) => drop(out.entries.split_off(&from)),
                    Record::Purge { upto, state } => {
                        out.entries = out.entries.split_off(&(upto + 1));
                        out.purged = Some(state);
                        *purged_upto = Some(upto);
                    }
                    Record::Vote(v) => out.vote = Some(v),
                    Record::Committed(c) => out.committed = Some(c),
                }
            }
            None if last => {
                tracing::warn!(
                    path = %path.display(),
                    offset = pos,
                    dropped = data.len() - pos,
                    "cutting a torn record off the end of the wal"
                );
                let f = OpenOptions::new().write(true).open(path)?;
                f.set_len(pos as u64)?;
                f.sync_all()?;
                break;
            }
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: damaged wal record at offset {pos} in a closed segment",
                        path.display()
                    ),
                ));
            }
        }
    }
    Ok(max_index)
}

/// Parses one frame at the start of `data`: the record and the bytes it used, or None
/// if the frame is incomplete or fails its checksum.
fn next_record(data: &[u8]) -> Option<(Record, usize)> {
    let header = data.get(..HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    if len == 0 || len > MAX_BODY {
        return None;
    }
    let body = data.get(HEADER..HEADER + len)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    Some((decode(body)?, HEADER + len))
}

#[cfg(test)]
mod tests;
