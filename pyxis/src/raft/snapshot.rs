//! The snapshot file: the whole key space at one log id, written atomically.
//!
//! Layout (v3): magic `PYXSNAP3`, the codec-encoded [`SnapshotMeta`] behind its length (u32
//! LE), the codec-encoded state, then a CRC-32 (LE) of everything before it. The state is
//! encoded straight into the file as it is written, never into one big buffer first: on a
//! small machine, building and then freeing copies of a state of hundreds of megabytes
//! stalls the Raft threads (page faults, TLB shootdowns) and lengthens write tails.
//! Files of the older v2 layout (`PYXSNAP2`, codec-encoded [`SnapshotFile`]) still load.
//!
//! The file is written to a temp name, synced every few megabytes, renamed over
//! `snapshot.bin` and the directory fsynced, so a crash leaves either the old or the new
//! snapshot, never a torn one. What a snapshot holds is decided by `state_machine`; this
//! module only stores it with its metadata.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SnapshotMeta;
use super::codec;
use super::wal::fs::{Fs, FsFile, OsFs};

mod pipe;

const MAGIC: &[u8; 8] = b"PYXSNAP3";
const MAGIC_V2: &[u8; 8] = b"PYXSNAP2";

/// Bytes written between two syncs of a file being written atomically.
const SYNC_EVERY: usize = 1024 * 1024;
/// Most bytes per second a snapshot build writes. Every `fdatasync` on the device (the
/// Raft log's, on every member sharing it) waits behind the data written before it; at this
/// rate, in 1 MiB synced steps, a build adds a few milliseconds to a log sync instead of
/// tens (BENCHMARKS.md, "snapshot builds"). A 64 MiB state takes 2 s to write.
pub const BUILD_WRITE_BYTES_PER_SEC: u64 = 32 * 1024 * 1024;
/// Buffer between the encoder's many small writes and the file.
const WRITE_BUFFER: usize = 1024 * 1024;
const FILE_NAME: &str = "snapshot.bin";
/// A second name of the current snapshot while a new one replaces it (`SnapshotDir::replace`).
const OLD_NAME: &str = "snapshot.bin.old";
/// Largest metadata a snapshot file may claim: a membership of a few nodes is far smaller.
const MAX_META_BYTES: usize = 16 * 1024 * 1024;

/// A snapshot in memory: openraft's metadata and the encoded state.
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
        // A replaced snapshot whose removal a crash interrupted.
        super::trash::discard_leftovers(&dir)?;
        let snapshots = SnapshotDir { dir };
        snapshots.discard_old();
        Ok(snapshots)
    }

    /// Hands a leftover second name of a replaced snapshot to `raft::trash`. A failure
    /// only costs the stall `replace` avoids (its link then fails and it replaces as before).
    fn discard_old(&self) {
        let old = self.dir.join(OLD_NAME);
        if old.exists()
            && let Err(e) = super::trash::discard(&old)
        {
            tracing::warn!(path = %old.display(), error = %e, "could not remove a replaced snapshot");
        }
    }

    /// Runs `write` (which replaces the file at the path it is given) with the current
    /// file kept under a second name meanwhile, then hands that name to `raft::trash`: the
    /// rename over the current file would otherwise free all its blocks in one journal
    /// commit, which stalls the log's syncs on a disk mounted with `discard`.
    fn replace<R>(&self, write: impl FnOnce(&Path) -> io::Result<R>) -> io::Result<R> {
        let path = self.dir.join(FILE_NAME);
        let old = self.dir.join(OLD_NAME);
        self.discard_old();
        let linked = match fs::hard_link(&path, &old) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => {
                // No hard links here: replace as before, at the cost this avoids.
                tracing::debug!(error = %e, "could not link the current snapshot aside");
                false
            }
        };
        let result = write(&path);
        if linked {
            let done = match &result {
                Ok(_) => super::trash::discard(&old),
                // The current file is still `path`: only the extra name goes.
                Err(_) => fs::remove_file(&old),
            };
            if let Err(e) = done {
                tracing::warn!(path = %old.display(), error = %e, "could not remove the replaced snapshot");
            }
        }
        result
    }

    /// Replaces the current snapshot with `state` at `meta`, durably, encoding it as it goes;
    /// returns the file's size.
    /// The encoding runs on a low-priority thread and the file system calls on this one
    /// (`pipe`), at most [`BUILD_WRITE_BYTES_PER_SEC`]; an encoding that fails part-way
    /// leaves the current snapshot in place.
    pub fn save_state<T: Serialize + Sync + ?Sized>(
        &self,
        meta: &SnapshotMeta,
        state: &T,
    ) -> io::Result<u64> {
        self.replace(|path| {
            pipe::encode_while_writing(state, |chunks| {
                write_atomically_in(&OsFs, path, Some(BUILD_WRITE_BYTES_PER_SEC), |w| {
                    write_file(w, meta, |w| chunks.copy_to(w))
                })
            })
        })
    }

    /// Replaces the current snapshot with `snap` (already encoded), durably.
    pub fn save(&self, snap: &SnapshotFile) -> io::Result<()> {
        self.replace(|path| {
            write_atomically_with(path, |w| {
                write_file(w, &snap.meta, |w| w.write_all(&snap.data))
            })
        })
        .map(drop)
    }

    /// Opens the current snapshot file, if there is one, reading only its metadata: its
    /// data stays on disk until someone reads the file (a follower being sent it).
    pub fn open_current(&self) -> io::Result<Option<(SnapshotMeta, File)>> {
        let path = self.dir.join(FILE_NAME);
        let mut tries = 0;
        let mut file = loop {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            // Kept whole while this handle lives, though a newer snapshot replaces it.
            tries += 1;
            if super::trash::hold(&file)? || tries >= 3 {
                break file;
            }
            // Opened just as it was replaced, and already being cut: the name is the new one.
        };
        let meta = read_meta(&mut file)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Some((meta, file)))
    }

    /// A new read-write file in this dir for a snapshot a peer sends; its name is removed
    /// at once, so the file vanishes with its last handle, whatever happens to the transfer.
    pub fn incoming_file(&self) -> io::Result<File> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self
            .dir
            .join(format!("incoming.{}.{n}.tmp", std::process::id()));
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        fs::remove_file(&path)?;
        Ok(file)
    }

    /// Loads the current snapshot whole, if there is one: for tests only, since a node
    /// reads it through [`SnapshotDir::open_current`] and never holds it in memory.
    #[cfg(test)]
    pub(crate) fn load(&self) -> io::Result<Option<SnapshotFile>> {
        let path = self.dir.join(FILE_NAME);
        match fs::read(&path) {
            Ok(bytes) => decode_file(bytes)
                .map(Some)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The path of the snapshot file in the snapshot dir `dir`.
pub fn file_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Writes a whole snapshot file of `state` at `meta` to `out` (backups stream it).
pub fn write_state<W: Write, T: Serialize + ?Sized>(
    out: &mut W,
    meta: &SnapshotMeta,
    state: &T,
) -> io::Result<()> {
    write_file(out, meta, |w| {
        codec::encode_to(w, state).map_err(io::Error::from)
    })
}

/// Writes the v3 layout to `out`: magic, meta, the body `body` writes, checksum.
fn write_file<W: Write>(
    out: &mut W,
    meta: &SnapshotMeta,
    body: impl FnOnce(&mut Checksummed<&mut W>) -> io::Result<()>,
) -> io::Result<()> {
    let meta = codec::encode(meta)?;
    let meta_len = u32::try_from(meta.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "snapshot metadata too large"))?;
    let mut w = Checksummed::new(out);
    w.write_all(MAGIC)?;
    w.write_all(&meta_len.to_le_bytes())?;
    w.write_all(&meta)?;
    body(&mut w)?;
    let sum = w.hasher.clone().finalize();
    w.inner.write_all(&sum.to_le_bytes())
}

/// Reads the metadata at the start of a snapshot file from `r` (positioned at its start),
/// leaving the data unread; the checksum is checked by whoever reads the data.
pub fn read_meta<R: Read>(r: &mut R) -> io::Result<SnapshotMeta> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_owned());
    let mut magic = [0u8; MAGIC.len()];
    r.read_exact(&mut magic)
        .map_err(|_| bad("not a pyxis snapshot (too short)"))?;
    if &magic == MAGIC_V2 {
        // The old layout encodes meta and data as one value: decoding it needs it whole.
        let mut bytes = magic.to_vec();
        r.read_to_end(&mut bytes)?;
        return decode_file(bytes).map(|f| f.meta);
    }
    if &magic != MAGIC {
        return Err(bad("not a pyxis snapshot (bad magic)"));
    }
    let mut len = [0u8; 4];
    r.read_exact(&mut len)
        .map_err(|_| bad("truncated metadata"))?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_META_BYTES {
        return Err(bad("snapshot metadata too large"));
    }
    let mut meta = vec![0u8; len];
    r.read_exact(&mut meta)
        .map_err(|_| bad("truncated metadata"))?;
    Ok(codec::decode(&meta)?)
}

/// Decodes bytes written by [`write_state`] (a backup) or a node's snapshot file (v3 or v2),
/// checking magic and checksum.
pub fn decode_file(mut bytes: Vec<u8>) -> io::Result<SnapshotFile> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_owned());
    let mut check = StreamCheck::default();
    check.update(&bytes);
    check.finish()?;
    let body_len = bytes.len() - 4;
    if &bytes[..MAGIC.len()] == MAGIC_V2 {
        return Ok(codec::decode(&bytes[MAGIC.len()..body_len])?);
    }
    let at = MAGIC.len();
    let mut len = [0u8; 4];
    len.copy_from_slice(
        bytes
            .get(at..at + 4)
            .ok_or_else(|| bad("truncated metadata"))?,
    );
    let data_at = at + 4 + u32::from_le_bytes(len) as usize;
    let meta = codec::decode(
        bytes
            .get(at + 4..data_at)
            .filter(|_| data_at <= body_len)
            .ok_or_else(|| bad("truncated metadata"))?,
    )?;
    // Reuse the buffer for the data instead of copying out of it.
    bytes.truncate(body_len);
    bytes.drain(..data_at);
    Ok(SnapshotFile { meta, data: bytes })
}

/// Checks a snapshot file as it streams by (magic and checksum), without holding it.
#[derive(Debug, Default)]
pub struct StreamCheck {
    hasher: crc32fast::Hasher,
    head: Vec<u8>,
    /// The last bytes seen, not yet hashed: the final 4 are the checksum itself.
    pending: Vec<u8>,
    len: u64,
}

impl StreamCheck {
    /// Takes the next bytes of the file.
    pub fn update(&mut self, chunk: &[u8]) {
        self.len += chunk.len() as u64;
        if self.head.len() < MAGIC.len() {
            let take = (MAGIC.len() - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        if chunk.len() >= 4 {
            self.hasher.update(&self.pending);
            let (body, last) = chunk.split_at(chunk.len() - 4);
            self.hasher.update(body);
            self.pending.clear();
            self.pending.extend_from_slice(last);
        } else {
            self.pending.extend_from_slice(chunk);
            let extra = self.pending.len().saturating_sub(4);
            self.hasher.update(&self.pending[..extra]);
            self.pending.drain(..extra);
        }
    }

    /// Whether what was seen is a whole, undamaged snapshot file; its length if so.
    pub fn finish(self) -> io::Result<u64> {
        let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_owned());
        if self.head != MAGIC && self.head != MAGIC_V2 {
            return Err(bad("not a pyxis snapshot (bad magic)"));
        }
        let mut want = [0u8; 4];
        if self.len < (MAGIC.len() + 4) as u64 {
            return Err(bad("not a pyxis snapshot (too short)"));
        }
        want.copy_from_slice(&self.pending);
        if self.hasher.finalize() != u32::from_le_bytes(want) {
            return Err(bad("snapshot checksum mismatch (incomplete or damaged)"));
        }
        Ok(self.len)
    }
}

/// Replaces `path` with `data` so that readers see the old file or the whole new one.
pub fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomically_with(path, |w| w.write_all(data)).map(drop)
}

/// Replaces `path` with what `fill` writes, so that readers see the old file or the whole
/// new one; returns the new file's size.
pub fn write_atomically_with(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<Paced>) -> io::Result<()>,
) -> io::Result<u64> {
    write_atomically_in(&OsFs, path, None, fill)
}

/// [`write_atomically_with`] on the file system `fs` (a simulated one in crash tests),
/// writing at most `rate` bytes per second when given.
pub(crate) fn write_atomically_in<F: Fs>(
    fs: &F,
    path: &Path,
    rate: Option<u64>,
    fill: impl FnOnce(&mut BufWriter<Paced<F::File>>) -> io::Result<()>,
) -> io::Result<u64> {
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
        // Truncating, not `create_new`: a temp file a crash left behind (a reused pid after
        // a reboot) must not make every later write fail.
        let file = fs.create(&tmp)?;
        let mut w = BufWriter::with_capacity(
            WRITE_BUFFER,
            Paced {
                file,
                unsynced: 0,
                written: 0,
                rate,
                started: std::time::Instant::now(),
            },
        );
        fill(&mut w)?;
        let mut paced = w.into_inner().map_err(io::IntoInnerError::into_error)?;
        paced.file.sync_data()?;
        fs.rename(&tmp, path)?;
        // The rename is durable only once the directory entry is.
        fs.sync_dir(dir)?;
        Ok(paced.written)
    })();
    if written.is_err() {
        let _ = fs.remove(&tmp);
    }
    written
}

/// A file that syncs its data every [`SYNC_EVERY`] bytes written, and with a rate, waits
/// after a sync until the bytes written fit that rate.
///
/// One big write-then-fsync would pile up dirty pages that the Raft log's next
/// `fdatasync` has to wait behind (ext4 ordered mode), stalling writes.
pub struct Paced<F = File> {
    file: F,
    unsynced: usize,
    written: u64,
    /// Most bytes per second, if paced.
    rate: Option<u64>,
    started: std::time::Instant,
}

impl<F: FsFile> Write for Paced<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.unsynced += n;
        self.written += n as u64;
        if self.unsynced >= SYNC_EVERY {
            self.file.sync_data()?;
            self.unsynced = 0;
            if let Some(rate) = self.rate.filter(|r| *r > 0) {
                let due = std::time::Duration::from_secs_f64(self.written as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A writer that keeps the CRC-32 of everything written through it.
struct Checksummed<W> {
    inner: W,
    hasher: crc32fast::Hasher,
}

impl<W: Write> Checksummed<W> {
    fn new(inner: W) -> Self {
        Checksummed {
            inner,
            hasher: crc32fast::Hasher::new(),
        }
    }
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A paced write waits until its bytes fit the rate (a lower bound, so not timing-flaky)
    /// and still writes everything.
    #[test]
    fn a_paced_write_keeps_to_its_rate() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 2 * SYNC_EVERY];
        let rate = 4 * SYNC_EVERY as u64; // 2 syncs due at 0.25 s and 0.5 s
        let started = std::time::Instant::now();
        let path = dir.path().join("paced");
        let n = write_atomically_in(&OsFs, &path, Some(rate), |w| w.write_all(&data)).unwrap();
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(450),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(n, data.len() as u64);
        assert_eq!(fs::read(&path).unwrap(), data);
    }

    fn encode_state_file<T: Serialize + ?Sized>(
        meta: &SnapshotMeta,
        state: &T,
    ) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        write_state(&mut out, meta, state)?;
        Ok(out)
    }

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
        let mut bytes = encode_state_file(&SnapshotMeta::default(), "hello").unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        let err = decode_file(bytes).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        assert!(decode_file(b"garbage!".to_vec()).is_err());
        assert!(decode_file(b"PYXSNAP3\0\0\0\0\0\0\0\0".to_vec()).is_err());
    }

    #[test]
    fn streamed_state_loads_as_its_encoding() {
        let dir = tempfile::tempdir().unwrap();
        let s = SnapshotDir::new(dir.path()).unwrap();
        // Bigger than the write buffer and the sync step, so both paths run.
        let state: Vec<u64> = (0..2_000_000).collect();
        let size = s.save_state(&SnapshotMeta::default(), &state).unwrap();
        assert_eq!(
            size,
            fs::metadata(dir.path().join(FILE_NAME)).unwrap().len()
        );
        let back = s.load().unwrap().unwrap();
        assert_eq!(back.data, codec::encode(&state).unwrap());
        let in_memory = encode_state_file(&SnapshotMeta::default(), &state).unwrap();
        assert_eq!(fs::read(dir.path().join(FILE_NAME)).unwrap(), in_memory);
    }

    #[test]
    fn stream_check_accepts_whole_files_in_any_chunking_and_nothing_else() {
        let state: Vec<u64> = (0..1000).collect();
        let bytes = encode_state_file(&SnapshotMeta::default(), &state).unwrap();
        for size in [1, 3, 4, 5, 64, bytes.len()] {
            let mut check = StreamCheck::default();
            bytes.chunks(size).for_each(|c| check.update(c));
            assert_eq!(
                check.finish().unwrap(),
                bytes.len() as u64,
                "chunks of {size}"
            );
        }
        let mut cut = StreamCheck::default();
        cut.update(&bytes[..bytes.len() - 1]);
        assert!(cut.finish().is_err());
        let mut damaged = bytes.clone();
        damaged[20] ^= 1;
        let mut check = StreamCheck::default();
        check.update(&damaged);
        assert!(check.finish().is_err());
        assert!(StreamCheck::default().finish().is_err());
    }

    /// Crashes an atomic replace at every step (the snapshot file and the cluster-id file are
    /// both written this way): a reader after the crash finds the old content or the whole
    /// new one, and the new one once the call returned.
    #[test]
    fn a_crash_at_any_step_of_an_atomic_write_leaves_old_or_new() {
        use crate::raft::wal::sim::{Names, SimFs, Tear};
        let path = Path::new("/sim/data/snapshot.bin");
        let old = vec![1u8; 3000];
        // Larger than the write buffer and the sync step, so pacing syncs run too.
        let big = vec![2u8; SYNC_EVERY + WRITE_BUFFER + 10];
        for new in [b"0123456789abcdef\n".to_vec(), big] {
            let mut step = 1;
            loop {
                let fs = SimFs::default();
                write_atomically_in(&fs, path, None, |w| w.write_all(&old)).unwrap();
                let base = fs.steps();
                fs.crash_at(base + step);
                let res = write_atomically_in(&fs, path, None, |w| w.write_all(&new));
                for names in [Names::Durable, Names::Live] {
                    for tear in [Tear::Lost, Tear::Kept, Tear::Prefix(5), Tear::ZerosFrom(0)] {
                        let got = fs.crash_image(names, tear).content(path);
                        let got = got.as_deref();
                        if res.is_ok() {
                            assert_eq!(got, Some(&new[..]), "step {step} {names:?} {tear:?}");
                        } else {
                            assert!(
                                got == Some(&old[..]) || got == Some(&new[..]),
                                "step {step} {names:?} {tear:?}: {} bytes",
                                got.map_or(0, <[u8]>::len)
                            );
                        }
                    }
                }
                if res.is_ok() {
                    break;
                }
                step += 1;
            }
            assert!(step > 3, "{step} steps");
        }
    }

    #[test]
    fn version_2_files_still_load() {
        let old = SnapshotFile {
            meta: SnapshotMeta::default(),
            data: b"old".to_vec(),
        };
        let mut bytes = MAGIC_V2.to_vec();
        bytes.extend_from_slice(&codec::encode(&old).unwrap());
        let sum = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&sum.to_le_bytes());
        assert_eq!(decode_file(bytes).unwrap().data, b"old");
    }
}
