use futures::TryStreamExt as _;
use openraft::storage::RaftStateMachine as _;
use serde::ser::{Serialize, SerializeSeq as _, Serializer};

use super::*;
use crate::raft::state_machine::StateMachine;
use crate::raft::{StoredMembership, log_id};

const MIB: usize = 1024 * 1024;

fn meta_at(index: u64) -> SnapshotMeta {
    SnapshotMeta {
        last_log_id: Some(log_id(2, 1, index)),
        last_membership: StoredMembership::default(),
    }
}

/// A large state encoded a slice at a time, so that writing it holds `chunk` only once.
struct Repeated<'a> {
    chunk: &'a [u8],
    times: usize,
}

impl Serialize for Repeated<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.times))?;
        for _ in 0..self.times {
            seq.serialize_element(&Chunk(self.chunk))?;
        }
        seq.end()
    }
}

/// A slice serialized as bytes (one length, then the bytes), not as a sequence of numbers.
struct Chunk<'a>(&'a [u8]);

impl Serialize for Chunk<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Peak resident memory of this process since the last [`reset_peak`], in bytes.
fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Resets the peak (`VmHWM`) to the current resident size (Linux `clear_refs` value 5).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

/// A state machine whose snapshot file holds `mib` MiB of state, written without ever
/// holding that much in memory.
fn machine_with_snapshot(dir: &std::path::Path, mib: usize) -> StateMachine {
    let snaps = SnapshotDir::new(dir).unwrap();
    let chunk = vec![7u8; MIB];
    let state = Repeated {
        chunk: &chunk,
        times: mib,
    };
    snaps.save_state(&meta_at(9), &state).unwrap();
    StateMachine::new(snaps, 10)
}

/// Sending a 96 MiB snapshot to a follower (`get_current_snapshot`, then the body stream)
/// costs a few chunks of memory, not the snapshot's size; before, the whole file was read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_a_large_snapshot_costs_little_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = machine_with_snapshot(dir.path(), 96);
    let file_len = std::fs::metadata(crate::raft::snapshot::file_in(dir.path()))
        .unwrap()
        .len();
    reset_peak();
    let before = rss();
    let snap = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(snap.meta, meta_at(9));
    let sent = body(snap.snapshot)
        .unwrap()
        .try_fold(0u64, |n, chunk| async move {
            assert!(chunk.len() <= CHUNK);
            Ok(n + chunk.len() as u64)
        })
        .await
        .unwrap();
    assert_eq!(sent, file_len);
    let grew = peak_rss().saturating_sub(before);
    assert!(
        grew < 16 * MIB,
        "sending a {file_len}-byte snapshot raised the peak RSS by {grew} bytes"
    );
}

/// What a leader streams, a follower receives whole: same metadata, same bytes.
#[tokio::test]
async fn a_received_snapshot_is_the_file_sent() {
    let from = tempfile::tempdir().unwrap();
    let to = tempfile::tempdir().unwrap();
    let mut sm = machine_with_snapshot(from.path(), 3);
    let snap = sm.get_current_snapshot().await.unwrap().unwrap();
    let dir = SnapshotDir::new(to.path()).unwrap();
    let (meta, data) = receive(&dir, body(snap.snapshot).unwrap()).await.unwrap();
    assert_eq!(meta, meta_at(9));
    let sent = std::fs::read(crate::raft::snapshot::file_in(from.path())).unwrap();
    assert_eq!(data.read_all().unwrap(), sent);
    // The temp file had no name: nothing is left in the follower's dir.
    assert_eq!(std::fs::read_dir(to.path()).unwrap().count(), 0);
}

/// A body cut short or damaged on the way is refused before openraft sees it.
#[tokio::test]
async fn a_damaged_or_short_snapshot_is_refused() {
    let from = tempfile::tempdir().unwrap();
    let to = tempfile::tempdir().unwrap();
    machine_with_snapshot(from.path(), 1);
    let sent = std::fs::read(crate::raft::snapshot::file_in(from.path())).unwrap();
    let dir = SnapshotDir::new(to.path()).unwrap();
    let stream = |b: Vec<u8>| futures::stream::iter([Ok::<_, io::Error>(Bytes::from(b))]);

    let short = sent[..sent.len() - 100].to_vec();
    let e = receive(&dir, stream(short)).await.unwrap_err();
    assert!(matches!(e, ReceiveError::Invalid(_)), "{e}");

    let mut flipped = sent.clone();
    flipped[sent.len() / 2] ^= 1;
    let e = receive(&dir, stream(flipped)).await.unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");

    let broken = futures::stream::iter([
        Ok(Bytes::from(sent[..1000].to_vec())),
        Err("connection reset"),
    ]);
    let e = receive(&dir, broken).await.unwrap_err();
    assert_eq!(e.to_string(), "reading the body: connection reset");
}

/// The vote survives its trip through the header; garbage names what is wrong.
#[test]
fn the_vote_header_round_trips() {
    let vote = Vote::new_committed(3, 2);
    let header = encode_vote(&vote).unwrap();
    assert!(header.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(decode_vote(&header).unwrap(), vote);
    assert_eq!(decode_vote("abc").unwrap_err(), "odd number of hex digits");
    assert_eq!(decode_vote("zz").unwrap_err(), "not hex");
}
