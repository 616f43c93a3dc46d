//! Crash simulation: a workload of appends, rotations, truncations and purges on the
//! simulated file system, crashed at every step, every crash image reopened and checked.

use std::collections::BTreeMap;

use super::sim::{Names, SimFs, Tear};
use super::*;

/// Small segments, so the workload rotates often.
const SEGMENT: u64 = 700;

fn dir() -> PathBuf {
    PathBuf::from("/sim/raft")
}

fn entry(index: u64, mark: u8) -> Record {
    // Sizes that cross sector boundaries and fill segments quickly.
    let len = [10, 200, 700][(index % 3) as usize];
    Record::Entry {
        index,
        bytes: vec![mark; len],
    }
}

/// The batches the workload appends, in order.
fn workload() -> Vec<Vec<Record>> {
    let mut out = vec![vec![Record::Vote(b"term1".to_vec())]];
    for i in 1..=12 {
        out.push(vec![entry(i, 1)]);
    }
    out.push(vec![
        entry(13, 1),
        entry(14, 1),
        Record::Committed(b"c10".to_vec()),
    ]);
    // A new leader overwrites the uncommitted tail.
    out.push(vec![Record::Vote(b"term2".to_vec())]);
    out.push(vec![Record::TruncateFrom(11), entry(11, 2), entry(12, 2)]);
    out.push(vec![Record::Purge {
        upto: 9,
        state: b"p9".to_vec(),
    }]);
    for i in 13..=20 {
        out.push(vec![entry(i, 2)]);
    }
    out.push(vec![
        Record::Committed(b"c18".to_vec()),
        Record::Vote(b"term3".to_vec()),
    ]);
    out.push(vec![Record::Purge {
        upto: 18,
        state: b"p18".to_vec(),
    }]);
    out.push(vec![entry(21, 3), entry(22, 3)]);
    out
}

/// An independent model of what replaying `batches` must give.
fn model<'a>(batches: impl IntoIterator<Item = &'a Record>) -> Replayed {
    let mut m = Replayed::default();
    for r in batches {
        match r.clone() {
            Record::Entry { index, bytes } => {
                m.entries.insert(index, bytes);
            }
            Record::TruncateFrom(from) => m.entries.retain(|i, _| *i < from),
            Record::Purge { upto, state } => {
                m.entries.retain(|i, _| *i > upto);
                m.purged = Some(state);
            }
            Record::Vote(v) => m.vote = Some(v),
            Record::Committed(c) => m.committed = Some(c),
        }
    }
    m
}

/// Runs the workload on `fs` until a call fails; returns how many batches were acknowledged
/// (their `append` returned Ok).
fn run(fs: &SimFs, batches: &[Vec<Record>]) -> usize {
    let Ok((mut wal, _)) = Wal::open_in(fs.clone(), &dir(), SEGMENT) else {
        return 0;
    };
    let mut acked = 0;
    for b in batches {
        if wal.append(b).is_err() {
            break;
        }
        acked += 1;
        if fs.failed() {
            break;
        }
    }
    acked
}

const TEARS: &[Tear] = &[
    Tear::Lost,
    Tear::Kept,
    Tear::Prefix(1),
    Tear::Prefix(7),
    Tear::Prefix(12),
    Tear::Prefix(13),
    Tear::Prefix(100),
    Tear::Prefix(513),
    Tear::ZerosFrom(0),
    Tear::ZerosFrom(20),
    Tear::ZerosFrom(600),
];

/// Whether `got` is the acknowledged state plus a prefix of the batch in flight.
fn acceptable(got: &Replayed, batches: &[Vec<Record>], acked: usize) -> bool {
    let done: Vec<&Record> = batches[..acked].iter().flatten().collect();
    let inflight = batches.get(acked).map_or(&[][..], |b| &b[..]);
    (0..=inflight.len()).any(|k| *got == model(done.iter().copied().chain(&inflight[..k])))
}

/// After recovery the log must keep working: a new vote, entries past a rotation, a purge of
/// everything before, then a clean reopen that still has the vote.
fn continue_after(fs: SimFs, got: &Replayed) {
    let last = got.entries.keys().next_back().copied().unwrap_or(0);
    let (mut wal, _) = Wal::open_in(fs.clone(), &dir(), SEGMENT).unwrap();
    wal.append(&[Record::Vote(b"after".to_vec())]).unwrap();
    for i in last + 1..=last + 6 {
        wal.append(&[entry(i, 9)]).unwrap();
    }
    wal.append(&[Record::Purge {
        upto: last + 5,
        state: b"pafter".to_vec(),
    }])
    .unwrap();
    drop(wal);
    let strict = fs.crash_image(Names::Durable, Tear::Lost);
    let (_, r) = Wal::open_in(strict, &dir(), SEGMENT).unwrap();
    assert_eq!(r.vote.as_deref(), Some(&b"after"[..]));
    assert_eq!(r.purged.as_deref(), Some(&b"pafter"[..]));
    assert_eq!(
        r.entries.keys().copied().collect::<Vec<_>>(),
        vec![last + 6]
    );
}

/// Opens a crash image; also crashes that recovery (cutting a torn tail, removing a temp
/// file) at each of its steps and opens again. Returns what the first full open replayed.
fn recover(image: &SimFs) -> Replayed {
    let probe = image.crash_image(Names::Live, Tear::Kept);
    let (_, got) = Wal::open_in(probe.clone(), &dir(), SEGMENT).unwrap();
    for step in 1..=probe.steps() {
        let fs = image.crash_image(Names::Live, Tear::Kept);
        fs.crash_at(step);
        let _ = Wal::open_in(fs.clone(), &dir(), SEGMENT);
        for names in [Names::Durable, Names::Live] {
            let again = fs.crash_image(names, Tear::Lost);
            let (_, r) = Wal::open_in(again, &dir(), SEGMENT).unwrap();
            assert_eq!(r, got, "recovery crashed at its step {step}");
        }
    }
    got
}

#[test]
fn every_crash_point_keeps_every_acknowledged_record() {
    let batches = workload();
    let clean = SimFs::default();
    assert_eq!(run(&clean, &batches), batches.len());
    let total = clean.steps();
    let expected = model(batches.iter().flatten());
    let (_, r) = Wal::open_in(
        clean.crash_image(Names::Durable, Tear::Lost),
        &dir(),
        SEGMENT,
    )
    .unwrap();
    assert_eq!(r, expected);
    let rotations = segment_paths(&clean, &dir()).unwrap().len();
    assert!(total > 100, "{total} steps");
    let mut images = 0;
    for step in 1..=total + 1 {
        let fs = SimFs::default();
        fs.crash_at(step);
        let acked = run(&fs, &batches);
        for names in [Names::Durable, Names::Live] {
            for tear in TEARS {
                let image = fs.crash_image(names, *tear);
                let got = recover(&image);
                assert!(
                    acceptable(&got, &batches, acked),
                    "crash at step {step}/{total} ({names:?}, {tear:?}): {acked} batches \
                     acknowledged, replay gave entries {:?} vote {:?}",
                    got.entries.keys().collect::<Vec<_>>(),
                    got.vote.as_deref().map(String::from_utf8_lossy),
                );
                continue_after(image, &got);
                images += 1;
            }
        }
    }
    assert!(images > 1000, "{images} images, {rotations} segments");
}

#[test]
fn acknowledged_state_is_exactly_what_a_strict_crash_keeps() {
    // Lost unsynced data and undurable names: what was acknowledged is all there is.
    let batches = workload();
    let probe = SimFs::default();
    run(&probe, &batches);
    let mut seen = BTreeMap::new();
    for step in 1..=probe.steps() + 1 {
        let fs = SimFs::default();
        fs.crash_at(step);
        let acked = run(&fs, &batches);
        let (_, got) =
            Wal::open_in(fs.crash_image(Names::Durable, Tear::Lost), &dir(), SEGMENT).unwrap();
        let want = model(batches[..acked].iter().flatten());
        assert_eq!(
            got, want,
            "crash at step {step}, {acked} batches acknowledged"
        );
        seen.insert(acked, step);
    }
    assert_eq!(seen.len(), batches.len() + 1, "{seen:?}");
}
