use super::*;

fn entry(index: u64) -> Record {
    Record::Entry {
        index,
        bytes: format!("e{index}").into_bytes(),
    }
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
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&[entry(1), entry(2)]).unwrap();
    }
    let (_, path) = segment_paths(dir.path()).unwrap().pop().unwrap();
    let full = fs::read(&path).unwrap();
    // A crash in the middle of writing entry 3: half a frame at the end.
    let mut torn = Vec::new();
    encode(&entry(3), &mut torn);
    let mut data = full.clone();
    data.extend_from_slice(&torn[..torn.len() / 2]);
    fs::write(&path, &data).unwrap();
    {
        let (mut wal, r) = Wal::open(dir.path()).unwrap();
        assert_eq!(r.entries.len(), 2);
        assert_eq!(fs::metadata(&path).unwrap().len(), full.len() as u64);
        wal.append(&[entry(3)]).unwrap();
    }
    let (_, r) = Wal::open(dir.path()).unwrap();
    assert_eq!(r.entries.len(), 3);
}

#[test]
fn a_flipped_bit_is_caught_by_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&[entry(1), entry(2)]).unwrap();
    }
    let (_, path) = segment_paths(dir.path()).unwrap().pop().unwrap();
    let mut data = fs::read(&path).unwrap();
    let last = data.len() - 1;
    data[last] ^= 1;
    fs::write(&path, &data).unwrap();
    // In the last segment the damaged record is treated as torn and cut off.
    let (_, r) = Wal::open(dir.path()).unwrap();
    assert_eq!(r.entries.keys().copied().collect::<Vec<_>>(), vec![1]);
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
    let paths = segment_paths(dir.path()).unwrap();
    assert!(paths.len() > 2, "{paths:?}");
    let first = &paths[0].1;
    let mut data = fs::read(first).unwrap();
    data[HEADER + 2] ^= 0xff;
    fs::write(first, &data).unwrap();
    let err = Wal::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("closed segment"), "{err}");
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
        let before = segment_paths(dir.path()).unwrap().len();
        wal.append(&[Record::Purge {
            upto: 20,
            state: b"p20".to_vec(),
        }])
        .unwrap();
        let after = segment_paths(dir.path()).unwrap().len();
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
