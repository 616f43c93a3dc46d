use std::fs;

use super::format::{encode, encode_legacy};
use super::*;

fn entry(index: u64) -> Record {
    Record::Entry {
        index,
        bytes: format!("e{index}").into_bytes(),
    }
}

fn only_segment(dir: &Path) -> PathBuf {
    let mut paths = segment_paths(&OsFs, dir).unwrap();
    assert_eq!(paths.len(), 1, "{paths:?}");
    paths.pop().unwrap().1
}

fn frame(r: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    encode(r, &mut out).unwrap();
    out
}

/// A log of entries 1..=n in one segment, closed.
fn log_of(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        for i in 1..=n {
            wal.append(&[entry(i)]).unwrap();
        }
    }
    let path = only_segment(dir.path());
    (dir, path)
}

#[test]
fn replay_gives_back_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, r) = Wal::open(dir.path()).unwrap();
        assert_eq!(r, Replayed::default());
        wal.append(&[entry(1), entry(2), entry(3), Record::Vote(b"v1".to_vec())])
            .unwrap();
        wal.append(&[
            Record::TruncateFrom(3),
            entry(3),
            Record::Committed(b"c2".to_vec()),
        ])
        .unwrap();
        wal.append(&[Record::Purge {
            upto: 1,
            state: b"p1".to_vec(),
        }])
        .unwrap();
    }
    let (_, r) = Wal::open(dir.path()).unwrap();
    assert_eq!(r.entries.keys().copied().collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(r.entries[&3], b"e3");
    assert_eq!(r.vote.as_deref(), Some(&b"v1"[..]));
    assert_eq!(r.committed.as_deref(), Some(&b"c2"[..]));
    assert_eq!(r.purged.as_deref(), Some(&b"p1"[..]));
    assert!(exists(dir.path()));
}

#[test]
fn torn_tail_is_cut_and_writing_goes_on() {
    let (dir, path) = log_of(2);
    let full = fs::read(&path).unwrap();
    // A crash in the middle of writing entry 3: half a frame at the end.
    let torn = frame(&entry(3));
    for cut in [1, 5, 11, 12, torn.len() / 2, torn.len() - 1] {
        let mut data = full.clone();
        data.extend_from_slice(&torn[..cut]);
        fs::write(&path, &data).unwrap();
        let (_, r) = Wal::open(dir.path()).unwrap();
        assert_eq!(r.entries.len(), 2, "cut at {cut}");
        assert_eq!(fs::metadata(&path).unwrap().len(), full.len() as u64);
    }
    {
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&[entry(3)]).unwrap();
    }
    let (_, r) = Wal::open(dir.path()).unwrap();
    assert_eq!(r.entries.len(), 3);
}

#[test]
fn a_zeroed_tail_is_torn() {
    let (dir, path) = log_of(3);
    let full = fs::read(&path).unwrap();
    // The size reached the disk, the data did not: zeros where the next batch should be.
    let mut data = full.clone();
    data.extend_from_slice(&[0; 3000]);
    fs::write(&path, &data).unwrap();
    let (_, r) = Wal::open(dir.path()).unwrap();
    assert_eq!(r.entries.len(), 3);
    assert_eq!(fs::read(&path).unwrap(), full);
    // A whole frame whose last sector is zeros (its start made it, its end did not).
    let mut big = Vec::new();
    encode(
        &Record::Entry {
            index: 4,
            bytes: vec![7; 2000],
        },
        &mut big,
    )
    .unwrap();
    let mut data = full.clone();
    data.extend_from_slice(&big);
    let from = (full.len() + 1024) / 512 * 512;
    data[from..].fill(0);
    fs::write(&path, &data).unwrap();
    let (_, r) = Wal::open(dir.path()).unwrap();
    assert_eq!(r.entries.len(), 3);
}

#[test]
fn a_flipped_bit_anywhere_stops_the_open_naming_file_and_offset() {
    let (dir, path) = log_of(20);
    let pristine = fs::read(&path).unwrap();
    // Every byte of every frame is covered, the last frame's included.
    for at in (MAGIC.len()..pristine.len())
        .step_by(7)
        .chain([pristine.len() - 1])
    {
        let mut data = pristine.clone();
        data[at] ^= 0x10;
        fs::write(&path, &data).unwrap();
        let err = Wal::open(dir.path()).map(drop).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("byte offset"), "{msg}");
        assert!(msg.contains("pyxis members remove"), "{msg}");
        // Nothing was cut.
        assert_eq!(fs::read(&path).unwrap(), data, "flip at {at}");
    }
}

#[test]
fn a_flipped_length_in_the_last_frame_is_not_a_torn_tail() {
    let (dir, path) = log_of(5);
    let mut data = fs::read(&path).unwrap();
    let last = frame(&entry(5)).len();
    let at = data.len() - last;
    // The length now runs past the end of the file, as a torn write's would.
    data[at + 2] ^= 0x01;
    fs::write(&path, &data).unwrap();
    let err = Wal::open(dir.path()).map(drop).unwrap_err();
    assert!(err.to_string().contains(&format!("offset {at}")), "{err}");
}

#[test]
fn an_empty_segment_is_damage_not_a_blank_log() {
    let (dir, path) = log_of(5);
    fs::write(&path, b"").unwrap();
    let err = Wal::open(dir.path()).map(drop).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    fs::write(&path, &MAGIC[..3]).unwrap();
    assert!(Wal::open(dir.path()).is_err());
}

#[test]
fn damage_in_a_closed_segment_stops_the_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open_with(dir.path(), 64).unwrap();
        for i in 1..=10 {
            wal.append(&[entry(i)]).unwrap();
        }
    }
    let paths = segment_paths(&OsFs, dir.path()).unwrap();
    assert!(paths.len() > 2, "{paths:?}");
    let first = &paths[0].1;
    let mut data = fs::read(first).unwrap();
    data[MAGIC.len() + 14] ^= 0xff;
    fs::write(first, &data).unwrap();
    let err = Wal::open(dir.path()).map(drop).unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
    assert!(
        err.to_string().contains("00000000000000000000.wal"),
        "{err}"
    );
}

#[test]
fn rotation_and_purge_delete_old_segments_and_keep_state() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open_with(dir.path(), 100).unwrap();
        wal.append(&[Record::Vote(b"v".to_vec())]).unwrap();
        for i in 1..=30 {
            wal.append(&[entry(i)]).unwrap();
        }
        let before = segment_paths(&OsFs, dir.path()).unwrap().len();
        wal.append(&[Record::Purge {
            upto: 20,
            state: b"p20".to_vec(),
        }])
        .unwrap();
        let after = segment_paths(&OsFs, dir.path()).unwrap().len();
        assert!(after < before, "{before} -> {after}");
    }
    let (_, r) = Wal::open_with(dir.path(), 100).unwrap();
    assert_eq!(
        r.entries.keys().copied().collect::<Vec<_>>(),
        (21..=30).collect::<Vec<_>>()
    );
    // The vote was written only in the first, now deleted, segment: a segment head kept it.
    assert_eq!(r.vote.as_deref(), Some(&b"v"[..]));
    assert_eq!(r.purged.as_deref(), Some(&b"p20"[..]));
}

#[test]
fn a_record_the_reader_would_refuse_is_never_written() {
    let (dir, path) = log_of(1);
    let before = fs::read(&path).unwrap();
    let (mut wal, _) = Wal::open(dir.path()).unwrap();
    let huge = Record::Entry {
        index: 2,
        bytes: vec![0; MAX_BODY],
    };
    let err = wal.append(&[entry(2), huge]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("over the limit"), "{err}");
    drop(wal);
    assert_eq!(fs::read(&path).unwrap(), before);
    let (_, r) = Wal::open(dir.path()).unwrap();
    assert_eq!(r.entries.len(), 1);
}

/// Segments written before the layout had a version (no magic, no header checksum).
fn write_legacy(path: &Path, records: &[Record]) {
    let mut data = Vec::new();
    for r in records {
        encode_legacy(r, &mut data);
    }
    fs::write(path, data).unwrap();
}

#[test]
fn legacy_segments_still_open_and_new_writes_go_to_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let seg0 = dir.path().join(format!("{:020}.wal", 0));
    write_legacy(&seg0, &[Record::Vote(b"v".to_vec()), entry(1), entry(2)]);
    {
        let (mut wal, r) = Wal::open(dir.path()).unwrap();
        assert_eq!(r.entries.len(), 2);
        assert_eq!(r.vote.as_deref(), Some(&b"v"[..]));
        wal.append(&[entry(3)]).unwrap();
    }
    let paths = segment_paths(&OsFs, dir.path()).unwrap();
    assert_eq!(paths.len(), 2);
    assert!(fs::read(&paths[1].1).unwrap().starts_with(MAGIC));
    let (_, r) = Wal::open(dir.path()).unwrap();
    assert_eq!(r.entries.len(), 3);
    // A legacy tail torn by a crash of the old version is still cut.
    let mut data = fs::read(&seg0).unwrap();
    fs::remove_file(&paths[1].1).unwrap();
    let mut torn = Vec::new();
    encode_legacy(&entry(3), &mut torn);
    data.extend_from_slice(&torn[..torn.len() - 2]);
    fs::write(&seg0, &data).unwrap();
    let (_, r) = Wal::open(dir.path()).unwrap();
    assert_eq!(r.entries.len(), 2);
}

/// Older versions created a segment, then wrote its head: a crash in between left an empty
/// last segment, appends went into it without a head, and a purge then deleted the only
/// vote record (vote = None after reopening: a node that can vote twice in a term).
#[test]
fn a_crash_before_a_new_segment_head_is_durable_never_loses_the_vote() {
    let dir = tempfile::tempdir().unwrap();
    let seg = |n: u64| dir.path().join(format!("{n:020}.wal"));
    write_legacy(&seg(0), &[Record::Vote(b"v".to_vec()), entry(1), entry(2)]);
    write_legacy(&seg(1), &[Record::Vote(b"v".to_vec()), entry(3)]);
    fs::write(seg(2), b"").unwrap();
    {
        let (mut wal, r) = Wal::open_with(dir.path(), 100).unwrap();
        assert_eq!(r.entries.len(), 3);
        for i in 4..=12 {
            wal.append(&[entry(i)]).unwrap();
        }
        wal.append(&[Record::Purge {
            upto: 12,
            state: b"p12".to_vec(),
        }])
        .unwrap();
    }
    assert!(!seg(0).exists() && !seg(1).exists());
    let (_, r) = Wal::open_with(dir.path(), 100).unwrap();
    assert_eq!(r.vote.as_deref(), Some(&b"v"[..]));
}
