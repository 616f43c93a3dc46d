//! Encoding a snapshot on a low-priority thread while the caller's thread writes it.
//!
//! Encoding the whole state is CPU work that must not compete with requests, so it runs at
//! nice 19. Writing must not run there: ext4's `write` and `fdatasync` open journal handles,
//! and a journal commit waits for every open handle to close. A nice-19 thread preempted
//! while it holds one, on a core that requests keep busy, can wait hundreds of milliseconds
//! for its next slice, and every other `fdatasync` on the file system, the Raft log's
//! included, can wait with it. So the encoder hands chunks over a small bounded channel and
//! the caller, at normal priority, does all the file system calls. (This alone did not
//! remove the put-latency spikes seen while snapshots are built; see BENCHMARKS.md.)

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use serde::Serialize;

use crate::raft::codec;
use crate::raft::state_machine::lower_priority;

/// Bytes the encoder hands over at a time.
const CHUNK: usize = 1024 * 1024;

/// Chunks waiting for the writer: bounds the memory the pipe holds to a few megabytes.
const IN_FLIGHT: usize = 2;

/// What travels from the encoder to the writer.
enum Piece {
    Data(Vec<u8>),
    /// The encoding is complete; without it, a closed channel means it failed.
    End,
}

/// Encodes `state` with the codec on a low-priority thread and lets `write` consume the
/// bytes on the calling thread, through the reader it is given. `write` sees an error (and
/// must not commit what it wrote) if the encoding fails part-way; the encoder's own error
/// is returned then.
pub(crate) fn encode_while_writing<T, R>(
    state: &T,
    write: impl FnOnce(&mut Chunks) -> io::Result<R>,
) -> io::Result<R>
where
    T: Serialize + Sync + ?Sized,
{
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel(IN_FLIGHT);
        let encoder = std::thread::Builder::new()
            .name("snapshot-encoder".into())
            .spawn_scoped(scope, move || {
                lower_priority();
                let mut out = ChunkSender {
                    tx,
                    buf: Vec::with_capacity(CHUNK),
                };
                codec::encode_to(&mut out, state).map_err(io::Error::from)?;
                out.finish()
            })?;
        let written = write(&mut Chunks { rx, done: false });
        let encoded = encoder
            .join()
            .map_err(|_| io::Error::other("the snapshot encoder panicked"))?;
        match (written, encoded) {
            (Ok(r), Ok(())) => Ok(r),
            // The writer stopped because the encoder did: the encoder's error says why.
            (Err(_), Err(e)) if e.kind() != io::ErrorKind::BrokenPipe => Err(e),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
        }
    })
}

/// The encoder's side: buffers the codec's small writes into chunks.
struct ChunkSender {
    tx: SyncSender<Piece>,
    buf: Vec<u8>,
}

impl ChunkSender {
    fn send(&mut self, piece: Piece) -> io::Result<()> {
        self.tx
            .send(piece)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the snapshot writer stopped"))
    }

    fn send_buf(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.send(Piece::Data(chunk))
    }

    fn finish(mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send_buf()?;
        }
        self.send(Piece::End)
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The writer's side: the encoded bytes, chunk by chunk.
pub(crate) struct Chunks {
    rx: Receiver<Piece>,
    done: bool,
}

impl Chunks {
    /// Copies every encoded byte to `out`; an error if the encoding did not complete.
    pub(crate) fn copy_to(&mut self, out: &mut impl Write) -> io::Result<()> {
        while !self.done {
            match self.rx.recv() {
                Ok(Piece::Data(chunk)) => out.write_all(&chunk)?,
                Ok(Piece::End) => self.done = true,
                Err(_) => {
                    return Err(io::Error::other(
                        "the snapshot encoding stopped before the end",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serializer;
    use serde::ser::SerializeSeq;

    /// A state that fails to encode after `good` elements.
    struct FailsAfter {
        good: u64,
    }

    impl Serialize for FailsAfter {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(self.good as usize + 1))?;
            for i in 0..self.good {
                seq.serialize_element(&i)?;
            }
            Err(serde::ser::Error::custom("state went bad"))
        }
    }

    #[test]
    fn the_writer_gets_exactly_the_encoding() {
        let state: Vec<u64> = (0..1_000_000).collect();
        let mut out = Vec::new();
        encode_while_writing(&state, |chunks| chunks.copy_to(&mut out)).unwrap();
        assert_eq!(out, codec::encode(&state).unwrap());
    }

    #[test]
    fn a_failed_encoding_fails_the_writer_and_names_the_cause() {
        let state = FailsAfter { good: 2_000_000 };
        let mut writer_saw_error = false;
        let mut received = Vec::new();
        let err = encode_while_writing(&state, |chunks| {
            let r = chunks.copy_to(&mut received);
            writer_saw_error = r.is_err();
            r
        })
        .unwrap_err();
        assert!(
            writer_saw_error,
            "the writer must not see a complete stream"
        );
        assert!(
            received.len() >= CHUNK,
            "the failure came part-way, after whole chunks"
        );
        // postcard reports a custom serde error without its text; what matters is that the
        // encoder's error comes back, not the writer's "stopped before the end".
        assert!(err.to_string().contains("Serialization Error"), "{err}");
    }

    #[test]
    fn a_failed_write_stops_the_encoder() {
        let state: Vec<u64> = (0..5_000_000).collect();
        let err = encode_while_writing(&state, |_chunks| -> io::Result<()> {
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
    }
}
