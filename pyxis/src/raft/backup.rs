//! Backups (`GET /v1/snapshot`): the whole state in the snapshot file format, encoded on a
//! low-priority thread and handed out in chunks as the HTTP body asks for them.
//!
//! The copy of the state is O(1) (a persistent map); the encoding never holds more than a
//! few chunks, so backing up a large store costs a node neither memory nor a pause.

use std::io::{self, Write};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::snapshot::write_state;
use super::state_machine::{StoreView, lower_priority};

/// Bytes per chunk sent to the HTTP body.
const CHUNK: usize = 256 * 1024;
/// Chunks encoded ahead of the reader.
const AHEAD: usize = 8;

/// Starts encoding a consistent backup; returns the store revision it holds and the chunks.
/// A failure arrives as the last item; dropping the receiver stops the encoder.
pub fn stream(view: &StoreView) -> (u64, mpsc::Receiver<io::Result<Bytes>>) {
    let (meta, kv) = view.copy();
    let revision = kv.revision();
    let (tx, rx) = mpsc::channel(AHEAD);
    let encoder = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("backup-encoder".into())
        .spawn(move || {
            lower_priority();
            let mut out = Chunks {
                tx: &encoder,
                buf: Vec::with_capacity(CHUNK),
            };
            let done = write_state(&mut out, &meta, &kv).and_then(|()| out.send());
            if let Err(e) = done {
                // The receiver may be gone already: then nobody is waiting for the error.
                let _ = encoder.blocking_send(Err(e));
            }
        });
    if let Err(e) = spawned {
        let _ = tx.try_send(Err(e));
    }
    (revision, rx)
}

/// A writer that sends full chunks over the channel, waiting while the reader is behind.
struct Chunks<'a> {
    tx: &'a mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl Chunks<'_> {
    /// Sends what is buffered (nothing if empty).
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "backup reader went away"))
    }
}

impl Write for Chunks<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::snapshot::{SnapshotDir, decode_file};
    use crate::raft::state_machine::StateMachine;

    #[tokio::test]
    async fn the_chunks_make_a_snapshot_file_of_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::new(SnapshotDir::new(dir.path()).unwrap(), 10);
        let (revision, mut rx) = stream(&sm.view());
        assert_eq!(revision, 0);
        let mut bytes = Vec::new();
        while let Some(chunk) = rx.recv().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        let file = decode_file(bytes).unwrap();
        let kv: crate::store::kv::KvState = crate::raft::codec::decode(&file.data).unwrap();
        assert_eq!(kv.len(), 0);
    }

    #[tokio::test]
    async fn a_reader_that_goes_away_stops_the_encoder() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::new(SnapshotDir::new(dir.path()).unwrap(), 10);
        let (_, rx) = stream(&sm.view());
        drop(rx);
        // Nothing to assert but that this returns: the encoder's sends fail and it ends.
    }
}
