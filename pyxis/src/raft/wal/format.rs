//! Record framing on disk, and telling a torn tail from damage.
//!
//! A segment of the current layout starts with [`MAGIC`]; each record is a frame of body
//! length (u32 LE), CRC-32 of the body (u32 LE), CRC-32 of those 8 bytes (u32 LE), then the
//! body. Segments written before the layout had a version have no magic and frames without
//! the header checksum; they are still read (never written). The header checksum is what
//! lets a frame whose length runs past the end be called torn: with it, a flipped length bit
//! is damage, not a record cut short.

use super::Record;

/// First bytes of a segment of the current layout. As a legacy frame length they would read
/// as 0x5758_5950, far over [`MAX_BODY`], so a legacy segment can never start with them.
pub(super) const MAGIC: &[u8; 8] = b"PYXWAL02";

/// Largest record body written or read (a 4 MiB value plus its encoding fits many times).
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// The unit a disk writes atomically: a crash loses whole sectors of an unsynced write.
const SECTOR: usize = 512;

/// Most bytes of legacy bodies checksummed while looking for a valid record behind damage.
const LEGACY_SCAN_BUDGET: usize = 256 * 1024 * 1024;

const KIND_ENTRY: u8 = 1;
const KIND_TRUNCATE: u8 = 2;
const KIND_PURGE: u8 = 3;
const KIND_VOTE: u8 = 4;
const KIND_COMMITTED: u8 = 5;

/// The frame layout of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// No magic; frames of length and body CRC only.
    Legacy,
    /// [`MAGIC`], then frames with a header checksum.
    V2,
}

impl Layout {
    /// The layout of a segment starting with `data`, and where its first frame starts.
    pub(super) fn of(data: &[u8]) -> (Layout, usize) {
        if data.starts_with(MAGIC) {
            (Layout::V2, MAGIC.len())
        } else {
            (Layout::Legacy, 0)
        }
    }

    fn header(self) -> usize {
        match self {
            Layout::Legacy => 8,
            Layout::V2 => 12,
        }
    }
}

/// What is at some offset of a segment.
#[derive(Debug)]
pub(super) enum Frame {
    /// A whole, valid record and the bytes it used.
    Record(Record, usize),
    /// The data ends inside the frame (its header, if complete, is valid).
    Incomplete,
    /// Not a valid frame; the reason.
    Bad(&'static str),
}

/// Whether the bytes from a failing frame to the end of the last segment can be left by a
/// crash during the last write, or are damage.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Tail {
    /// A write cut short: safe to cut off.
    Torn,
    /// Anything else; the reason.
    Damaged(String),
}

/// Appends `r` as one frame of the current layout; fails, writing nothing, if its body is
/// larger than the reader accepts.
pub(super) fn encode(r: &Record, out: &mut Vec<u8>) -> Result<(), usize> {
    let start = out.len();
    out.extend_from_slice(&[0u8; 12]);
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
    let len = out.len() - start - 12;
    if len > MAX_BODY {
        out.truncate(start);
        return Err(len);
    }
    let crc = crc32fast::hash(&out[start + 12..]);
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    let head = crc32fast::hash(&out[start..start + 8]);
    out[start + 8..start + 12].copy_from_slice(&head.to_le_bytes());
    Ok(())
}

/// Parses the frame at the start of `data`.
pub(super) fn parse(data: &[u8], layout: Layout) -> Frame {
    let Some(len) = body_len(data, layout) else {
        return if data.len() < layout.header() {
            Frame::Incomplete
        } else {
            Frame::Bad("bad record header")
        };
    };
    let h = layout.header();
    let Some(body) = data.get(h..h + len) else {
        return Frame::Incomplete;
    };
    if crc32fast::hash(body) != u32_at(data, 4) {
        return Frame::Bad("record checksum mismatch");
    }
    match decode(body) {
        Some(r) => Frame::Record(r, h + len),
        None => Frame::Bad("unknown record kind"),
    }
}

/// The body length a frame header at the start of `data` announces, if the header is whole
/// and plausible (checksum right in the current layout, length possible in both).
fn body_len(data: &[u8], layout: Layout) -> Option<usize> {
    let header = data.get(..layout.header())?;
    if layout == Layout::V2 && crc32fast::hash(&header[..8]) != u32_at(header, 8) {
        return None;
    }
    let len = u32_at(header, 0) as usize;
    (1..=MAX_BODY).contains(&len).then_some(len)
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&data[at..at + 4]);
    u32::from_le_bytes(b)
}

/// Judges the failing frame at `pos` of the last segment `data`.
///
/// A crash during the last write can leave any prefix of it, and, where the file size
/// reached the disk before the data, whole zeroed sectors in it. Everything after that
/// write's start is then either cut off or garbage with no valid frame in it. So the tail is
/// torn if no valid frame follows `pos` and the failing frame is incomplete at the end of the
/// file or holds a zeroed sector; anything else (a flipped bit, garbage before good records)
/// is damage.
pub(super) fn judge_tail(data: &[u8], pos: usize, layout: Layout) -> Tail {
    if let Some(at) = valid_frame_after(data, pos, layout) {
        return Tail::Damaged(match at {
            Some(at) => format!("a valid record follows at byte offset {at}"),
            None => "too much data follows it to rule out a valid record".to_owned(),
        });
    }
    match parse(&data[pos..], layout) {
        Frame::Incomplete => Tail::Torn,
        Frame::Record(..) => Tail::Damaged("a valid record was reported as failing".to_owned()),
        Frame::Bad(why) => {
            let extent =
                body_len(&data[pos..], layout).map_or(layout.header(), |len| layout.header() + len);
            let end = (pos + extent).min(data.len());
            if has_zeroed_sector(data, pos, end) {
                Tail::Torn
            } else {
                Tail::Damaged(why.to_owned())
            }
        }
    }
}

/// Whether an aligned sector overlapping `pos..end` is all zeros from `pos` to the file end.
fn has_zeroed_sector(data: &[u8], pos: usize, end: usize) -> bool {
    let mut s = pos / SECTOR * SECTOR;
    while s < end {
        let (a, b) = (s.max(pos), (s + SECTOR).min(data.len()));
        if a < b && data[a..b].iter().all(|&x| x == 0) {
            return true;
        }
        s += SECTOR;
    }
    false
}

/// The offset of the first valid frame after `pos`: `Some(Some(at))` if found, `Some(None)`
/// if the legacy scan ran out of budget (treated as found), `None` if there is none.
fn valid_frame_after(data: &[u8], pos: usize, layout: Layout) -> Option<Option<usize>> {
    let mut budget = LEGACY_SCAN_BUDGET;
    for at in pos + 1..data.len() {
        let rest = &data[at..];
        let Some(len) = body_len(rest, layout) else {
            continue;
        };
        if rest.len() < layout.header() + len {
            continue;
        }
        if layout == Layout::Legacy {
            // Without a header checksum, each plausible length costs a body checksum.
            if budget < len {
                return Some(None);
            }
            budget -= len;
        }
        if let Frame::Record(..) = parse(rest, layout) {
            return Some(Some(at));
        }
    }
    None
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

/// Appends `r` as a frame of the legacy layout, to test that old segments still open.
#[cfg(test)]
pub(super) fn encode_legacy(r: &Record, out: &mut Vec<u8>) {
    let mut v2 = Vec::new();
    encode(r, &mut v2).unwrap();
    out.extend_from_slice(&v2[..8]);
    out.extend_from_slice(&v2[12..]);
}
