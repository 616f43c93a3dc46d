//! Removing big files (purged log segments, replaced snapshots) without stalling the
//! other syncs on the disk.
//!
//! On ext4 mounted with `discard`, as cloud VMs often are, the journal commit that frees a
//! file's blocks also discards them, and every `fdatasync` waiting on that commit (the Raft
//! log's, on every member sharing the disk) waits with it: unlinking a 64 MiB file held a
//! 300-byte log sync for 30-60 ms here, and each snapshot build unlinks the previous
//! snapshot and a purged segment on every member (BENCHMARKS.md, issue 8 point 1). A file
//! handed to [`discard`] is renamed out of the way at once and then, on a background
//! thread, cut from the end 1 MiB at a time before it is unlinked, so no commit carries
//! more than 1 MiB of discards. A file someone still reads (a snapshot being sent to a
//! follower, which holds a shared `flock` on it, see [`hold`]) is left until the reader
//! is done. Names ending in [`SUFFIX`] left by a crash are finished by [`discard_leftovers`].
//! A file with no name left (a snapshot received from the leader, written to an unlinked
//! temp file) is handed over open, through [`discard_unlinked`], and cut the same way
//! before its last descriptor closes.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

/// Suffix of a file waiting to be removed.
pub const SUFFIX: &str = ".trash";

/// Bytes cut per step.
const STEP: u64 = 1024 * 1024;

/// Pause between steps, so that the log's syncs get commits of their own in between.
const PAUSE: Duration = Duration::from_millis(20);

/// How long a file a reader still holds waits before the next look.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// Renames `path` to `path` + [`SUFFIX`] and hands it to the background remover. The name
/// is gone when this returns (as after `remove_file`; durable once the directory is synced).
pub fn discard(path: &Path) -> io::Result<()> {
    let mut name = path.as_os_str().to_owned();
    name.push(SUFFIX);
    let trashed = PathBuf::from(name);
    fs::rename(path, &trashed)?;
    queue(trashed);
    Ok(())
}

/// Hands every file in `dir` whose name ends in [`SUFFIX`] (a crash interrupted its
/// removal) to the background remover.
pub fn discard_leftovers(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(SUFFIX) {
            queue(entry.path());
        }
    }
    Ok(())
}

/// Takes a shared lock on `file` for as long as it stays open, so the remover leaves the
/// file whole while it is read; `false` if the remover is cutting it already (the caller
/// opened a name that was just replaced, and should open it again).
pub fn hold(file: &File) -> io::Result<bool> {
    match file.try_lock_shared() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Cuts down and closes `file` in the background if no name is left for it (an unlinked
/// temp file), so that its blocks are not freed all at once when it closes; a file that
/// still has a name is just closed.
pub fn discard_unlinked(file: File) {
    if file
        .metadata()
        .is_ok_and(|m| m.nlink() == 0 && m.len() > STEP)
    {
        queue(Doomed::Open(file));
    }
}

/// A file waiting to be removed.
enum Doomed {
    /// By name (renamed aside already).
    Named(PathBuf),
    /// Unlinked, still open: cut down, then closed.
    Open(File),
}

fn queue(doomed: impl Into<Doomed>) {
    let doomed = doomed.into();
    static REMOVER: OnceLock<Option<Sender<Doomed>>> = OnceLock::new();
    let sender = REMOVER.get_or_init(|| {
        let (tx, rx) = channel();
        std::thread::Builder::new()
            .name("pyxis-trash".into())
            .spawn(move || remove_all(rx))
            .ok()
            .map(|_| tx)
    });
    let undelivered = match sender {
        Some(tx) => tx.send(doomed).err().map(|e| e.0),
        None => Some(doomed),
    };
    if let Some(Doomed::Named(path)) = undelivered {
        // No thread: remove it here, at the cost the remover exists to avoid.
        if let Err(e) = fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a discarded file");
        }
    }
}

impl From<PathBuf> for Doomed {
    fn from(path: PathBuf) -> Self {
        Doomed::Named(path)
    }
}

fn remove_all(rx: Receiver<Doomed>) {
    let mut busy: Vec<PathBuf> = Vec::new();
    loop {
        let next = if busy.is_empty() {
            match rx.recv() {
                Ok(p) => p,
                Err(_) => return,
            }
        } else {
            match rx.recv_timeout(BUSY_RETRY) {
                Ok(p) => p,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let again = std::mem::take(&mut busy);
                    for p in again {
                        settle(p, &mut busy);
                    }
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
        };
        match next {
            Doomed::Named(path) => settle(path, &mut busy),
            Doomed::Open(file) => {
                if let Err(e) = shrink(&file) {
                    tracing::warn!(error = %e, "could not cut down a discarded unlinked file");
                }
            }
        }
    }
}

/// Removes `path`, or puts it on `busy` if a reader holds it.
fn settle(path: PathBuf, busy: &mut Vec<PathBuf>) {
    match shrink_and_remove(&path) {
        Ok(true) => {}
        Ok(false) => busy.push(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a discarded file");
        }
    }
}

/// Cuts `path` down in [`STEP`]s and unlinks it; `false` (nothing done) while a reader
/// holds it.
pub fn shrink_and_remove(path: &Path) -> io::Result<bool> {
    let file = OpenOptions::new().write(true).open(path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(false),
        Err(TryLockError::Error(e)) => return Err(e),
    }
    shrink(&file)?;
    fs::remove_file(path)?;
    Ok(true)
}

/// Cuts `file` to nothing from the end, [`STEP`] bytes at a time.
fn shrink(file: &File) -> io::Result<()> {
    let mut len = file.metadata()?.len();
    while len > 0 {
        len = len.saturating_sub(STEP);
        file.set_len(len)?;
        std::thread::sleep(PAUSE);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(dir: &Path, name: &str, bytes: usize) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, vec![1u8; bytes]).unwrap();
        p
    }

    #[test]
    fn a_discarded_file_loses_its_name_at_once_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = file_of(dir.path(), "00000001.wal", 3 * STEP as usize + 5);
        discard(&p).unwrap();
        assert!(!p.exists());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while fs::read_dir(dir.path()).unwrap().next().is_some() {
            assert!(std::time::Instant::now() < deadline, "not removed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_held_file_is_left_whole_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let p = file_of(dir.path(), "snapshot.bin.old.trash", 2 * STEP as usize);
        let reader = File::open(&p).unwrap();
        assert!(hold(&reader).unwrap());
        assert!(!shrink_and_remove(&p).unwrap(), "removed under a reader");
        assert_eq!(fs::metadata(&p).unwrap().len(), 2 * STEP);
        drop(reader);
        assert!(shrink_and_remove(&p).unwrap());
        assert!(!p.exists());
    }

    #[test]
    fn an_unlinked_file_is_cut_down_and_a_named_one_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = file_of(dir.path(), "incoming.tmp", 3 * STEP as usize);
        let file = OpenOptions::new().read(true).write(true).open(&p).unwrap();
        let watcher = File::open(&p).unwrap();
        fs::remove_file(&p).unwrap();
        discard_unlinked(file);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while watcher.metadata().unwrap().len() > 0 {
            assert!(std::time::Instant::now() < deadline, "not cut down");
            std::thread::sleep(Duration::from_millis(10));
        }

        let named = file_of(dir.path(), "snapshot.bin", 3 * STEP as usize);
        discard_unlinked(File::open(&named).unwrap());
        std::thread::sleep(PAUSE * 3);
        assert_eq!(
            fs::metadata(&named).unwrap().len(),
            3 * STEP,
            "a named file was cut"
        );
    }

    #[test]
    fn leftovers_are_finished_and_other_files_kept() {
        let dir = tempfile::tempdir().unwrap();
        let left = file_of(dir.path(), "00000003.wal.trash", 10);
        let kept = file_of(dir.path(), "00000004.wal", 10);
        discard_leftovers(dir.path()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while left.exists() {
            assert!(std::time::Instant::now() < deadline, "leftover not removed");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(kept.exists());
    }
}
