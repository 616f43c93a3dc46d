//! The snapshot file: the whole key space at one log id, written atomically.
//!
//! Layout: magic `PYXSNAP2`, then the codec-encoded [`SnapshotFile`], then a CRC-32
//! of everything before it. The file is written to a temp name,
//! fsynced, renamed over `snapshot.bin` and the directory fsynced, so a crash leaves
//! either the old or the new snapshot, never a torn one. What a snapshot holds is
//! decided by `state_machine`; this module only stores bytes with their metadata.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SnapshotMeta;
use super::codec;

const MAGIC: &[u8; 8] = b"PYXSNAP2";

/// Bytes written between two syncs of a file being written atomically.
const SYNC_EVERY: usize = 4 * 1024 * 1024;
const FILE_NAME: &str = "snapshot.bin";

/// What a snapshot file holds: openraft's metadata and the encoded state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// Log id and membership the snapshot covers.
    pub meta: SnapshotMeta,
    /// The encoded state machine data.
    pub data: Vec<u8>,
}

/// Where a node keeps its current snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    /// Snapshots in `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(SnapshotDir { dir })
    }

    /// Replaces the current snapshot with `snap`, durably.
    pub fn save(&self, snap: &SnapshotFile) -> io::Result<()> {
        let bytes = encode_file(snap)?;
        write_atomically(&self.dir.join(FILE_NAME), &bytes)
    }

    /// Loads the current snapshot, if there is one.
    pub fn load(&self) -> io::Result<Option<SnapshotFile>> {
        let path = self.dir.join(FILE_NAME);
        match fs::read(&path) {
            Ok(bytes) => decode_file(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Encodes a snapshot file with its magic and checksum.
pub fn encode_file(snap: &SnapshotFile) -> io::Result<Vec<u8>> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&codec::encode(snap)?);
    let sum = crc32fast::hash(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    Ok(out)
}

/// Decodes bytes written by [`encode_file`], checking magic and checksum.
pub fn decode_file(bytes: &[u8]) -> io::Result<SnapshotFile> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_owned());
    if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad("not a pyxis snapshot (bad magic)"));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 4);
    let mut want = [0u8; 4];
    want.copy_from_slice(sum);
    if crc32fast::hash(body) != u32::from_le_bytes(want) {
        return Err(bad("snapshot checksum mismatch (file is damaged)"));
    }
    Ok(codec::decode(&body[MAGIC.len()..])?)
}

/// Replaces `path` with `data` so that readers see the old file or the whole new one.
pub fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        // Flush as we go: one big write-then-fsync would pile up dirty pages that the
        // Raft log's next fdatasync has to wait behind (ext4 ordered mode), stalling writes.
        for chunk in data.chunks(SYNC_EVERY) {
            f.write_all(chunk)?;
            f.sync_data()?;
        }
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename is durable only once the directory entry is.
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SnapshotFile {
        SnapshotFile {
            meta: SnapshotMeta::default(),
            data: b"hello".to_vec(),
        }
    }

    #[test]
    fn save_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let s = SnapshotDir::new(dir.path()).unwrap();
        assert!(s.load().unwrap().is_none());
        s.save(&sample()).unwrap();
        let back = s.load().unwrap().unwrap();
        assert_eq!(back.data, b"hello");
    }

    #[test]
    fn damage_is_detected() {
        let mut bytes = encode_file(&sample()).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        let err = decode_file(&bytes).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        assert!(decode_file(b"garbage!").is_err());
    }
}
