//! The few file-system calls the WAL and the atomic file writer make, behind a trait.
//!
//! [`OsFs`] is the real file system, a thin forward to `std::fs` (monomorphized, so it costs
//! nothing). The trait exists so tests can swap in a simulated file system that keeps what
//! was synced apart from what was not and crashes at any step (`wal::sim`, test builds only).
//! Only the durability rules matter here: file data is durable after `sync_data`, a created,
//! renamed or removed name only after `sync_dir` of its directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// An open file the WAL writes to.
pub trait FsFile: Write + Send {
    /// Makes the file's data (and its size) durable, like `fdatasync`.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts (or extends with zeros) the file to `len` bytes; durable after `sync_data`.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// The file-system calls the WAL needs.
pub trait Fs: Send + 'static {
    /// Open files of this file system.
    type File: FsFile;
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the entries in `dir` (empty if it does not exist).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// The whole content of `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Creates `path`, empty (truncated if it exists), for writing.
    fn create(&self, path: &Path) -> io::Result<Self::File>;
    /// Opens an existing `path` for appending.
    fn open_append(&self, path: &Path) -> io::Result<Self::File>;
    /// Renames `from` over `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Removes the big file `path` without stalling other syncs: its name goes at once,
    /// its blocks later (`raft::trash` on the real file system).
    fn discard(&self, path: &Path) -> io::Result<()> {
        self.remove(path)
    }
    /// Finishes removals in `dir` that a crash interrupted.
    fn discard_leftovers(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    /// Makes the entries of `dir` (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFs;

impl FsFile for File {
    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

impl Fs for OsFs {
    type File = File;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for ent in rd {
            if let Some(name) = ent?.file_name().to_str() {
                out.push(name.to_owned());
            }
        }
        Ok(out)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn create(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }

    fn open_append(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().append(true).open(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn discard(&self, path: &Path) -> io::Result<()> {
        crate::raft::trash::discard(path)
    }

    fn discard_leftovers(&self, dir: &Path) -> io::Result<()> {
        crate::raft::trash::discard_leftovers(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}
