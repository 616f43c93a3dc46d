//! Snapshot data as an open file, and its trip from a leader to a follower.
//!
//! [`SnapshotData`] is what openraft passes between the state machine and the network: an
//! open snapshot file (the whole `raft::snapshot` layout, header and checksum included), so
//! a snapshot is never held in memory to be sent. The leader streams the file as the body
//! of `POST /raft/snapshot` in [`CHUNK`]-sized reads ([`body`]); the follower streams the
//! body into an unlinked temp file in its snapshot dir, checking magic and checksum as it
//! goes ([`receive`]), then hands that file to openraft. Decoding the state on install is
//! `state_machine`'s business; the file format is `snapshot`'s.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt as _};

use super::snapshot::{SnapshotDir, StreamCheck, read_meta};
use super::{SnapshotMeta, Vote, codec};

/// Bytes read from the file per body chunk: large enough to keep syscalls few, small
/// enough that a transfer costs a node almost no memory.
pub const CHUNK: usize = 256 * 1024;

/// The header of `/raft/snapshot` carrying the leader's vote (hex of its codec encoding):
/// the body is the snapshot file alone, so that it can be streamed as it is on disk.
pub const VOTE_HEADER: &str = "x-pyxis-snapshot-vote";

/// A snapshot's data: an open snapshot file, or nothing where openraft only needs the
/// metadata (a snapshot the state machine just built reports its meta; the file is opened
/// again by `get_current_snapshot` when a follower needs it).
#[derive(Debug, Default)]
pub struct SnapshotData {
    file: Option<File>,
}

/// Why a snapshot sent by a peer was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The body broke off before its end.
    #[error("reading the body: {0}")]
    Body(String),
    /// The bytes are not a whole, undamaged snapshot file.
    #[error("{0}")]
    Invalid(io::Error),
    /// The temp file could not be written.
    #[error("writing the temp file: {0}")]
    Disk(io::Error),
}

impl SnapshotData {
    /// The data of the snapshot file `file` (read from its start, whatever its position).
    pub fn from_file(file: File) -> Self {
        SnapshotData { file: Some(file) }
    }

    /// No data: openraft is told only the metadata.
    pub fn metadata_only() -> Self {
        SnapshotData::default()
    }

    /// The file, rewound to its start; an error for [`SnapshotData::metadata_only`].
    pub fn into_file(self) -> io::Result<File> {
        let mut file = self.file.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "snapshot data without a file")
        })?;
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }

    /// The whole file's bytes, for decoding the state it holds.
    pub fn read_all(self) -> io::Result<Vec<u8>> {
        let mut file = self.into_file()?;
        let mut bytes = Vec::with_capacity(file.metadata().map_or(0, |m| m.len() as usize));
        file.read_to_end(&mut bytes)?;
        // A received snapshot is an unlinked temp file: closing it would free all its
        // blocks in one journal commit, stalling the log's syncs behind the discard.
        super::trash::discard_unlinked(file);
        Ok(bytes)
    }
}

/// The body of `/raft/snapshot`: the file of `data`, read [`CHUNK`] bytes at a time.
pub fn body(data: SnapshotData) -> io::Result<impl Stream<Item = io::Result<Bytes>> + Send> {
    let file = tokio::fs::File::from_std(data.into_file()?);
    Ok(futures::stream::try_unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt as _;
        let mut buf = BytesMut::with_capacity(CHUNK);
        while buf.len() < CHUNK {
            if file.read_buf(&mut buf).await? == 0 {
                break;
            }
        }
        Ok((!buf.is_empty()).then(|| (buf.freeze(), file)))
    }))
}

/// Streams a snapshot `body` into a temp file of `dir` that has no name (so nothing is left
/// behind whatever happens), checking it whole; its metadata and data if it is a whole,
/// undamaged snapshot file.
pub async fn receive<E: std::fmt::Display>(
    dir: &SnapshotDir,
    body: impl Stream<Item = Result<Bytes, E>>,
) -> Result<(SnapshotMeta, SnapshotData), ReceiveError> {
    let file = dir.incoming_file().map_err(ReceiveError::Disk)?;
    let mut out = tokio::fs::File::from_std(file);
    let mut check = StreamCheck::default();
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ReceiveError::Body(e.to_string()))?;
        check.update(&chunk);
        tokio::io::AsyncWriteExt::write_all(&mut out, &chunk)
            .await
            .map_err(ReceiveError::Disk)?;
    }
    check.finish().map_err(ReceiveError::Invalid)?;
    // tokio runs writes in the background: flushing is what reports their errors. Not
    // synced: installing it writes the node's own snapshot file atomically.
    tokio::io::AsyncWriteExt::flush(&mut out)
        .await
        .map_err(ReceiveError::Disk)?;
    let mut file = out.into_std().await;
    file.seek(SeekFrom::Start(0)).map_err(ReceiveError::Disk)?;
    let (meta, file) = tokio::task::spawn_blocking(move || read_meta(&mut file).map(|m| (m, file)))
        .await
        .map_err(|e| ReceiveError::Disk(io::Error::other(e)))?
        .map_err(ReceiveError::Invalid)?;
    Ok((meta, SnapshotData::from_file(file)))
}

/// `vote` as the value of [`VOTE_HEADER`].
pub fn encode_vote(vote: &Vote) -> Result<String, codec::CodecError> {
    Ok(pyxis_client::secret::hex(&codec::encode(vote)?))
}

/// The vote in a [`VOTE_HEADER`] value.
pub fn decode_vote(value: &str) -> Result<Vote, String> {
    let hex = value.as_bytes();
    if !hex.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    let bytes = hex
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| "not hex".to_owned())
        })
        .collect::<Result<Vec<u8>, String>>()?;
    codec::decode(&bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
