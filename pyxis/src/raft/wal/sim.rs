//! A simulated file system for crash tests (test builds only).
//!
//! It keeps, for every file, the bytes written and the bytes synced, and, for every name,
//! whether a directory sync made it durable. Every mutating call is one numbered step; from
//! a chosen step on, calls fail (a crash, or an injected error such as ENOSPC). A crash
//! image is then what a machine could find after power loss: only synced data and durable
//! names (or, in the other extreme, every name), with the last unsynced write dropped, kept,
//! cut at some byte, or turned into zeroed sectors.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::fs::{Fs, FsFile};

/// The errno a simulated crash fails calls with (EIO).
const CRASH_ERRNO: i32 = 5;

const SECTOR: usize = 512;

/// Which directory entries survive a crash.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Names {
    /// Only those a directory sync made durable.
    Durable,
    /// All of them (the file system committed its journal just before the crash).
    Live,
}

/// What survives of data written but not synced when the crash came.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tear {
    /// Nothing of it.
    Lost,
    /// All of it.
    Kept,
    /// Its first n bytes.
    Prefix(usize),
    /// All its length, but zeros from about n bytes in (from a sector boundary) on: the size
    /// reached the disk, the data of those sectors did not.
    ZerosFrom(usize),
}

#[derive(Debug, Clone, Default)]
struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    inodes: Vec<Inode>,
    live: BTreeMap<PathBuf, usize>,
    durable: BTreeMap<PathBuf, usize>,
    steps: u64,
    /// From this step on every mutating call fails with this errno.
    fail_from: Option<(u64, i32)>,
}

impl State {
    fn step(&mut self) -> io::Result<()> {
        self.steps += 1;
        match self.fail_from {
            Some((at, errno)) if self.steps >= at => Err(io::Error::from_raw_os_error(errno)),
            _ => Ok(()),
        }
    }
}

/// The simulated file system; clones share one state.
#[derive(Debug, Clone, Default)]
pub(crate) struct SimFs {
    st: Arc<Mutex<State>>,
}

/// An open simulated file.
#[derive(Debug)]
pub(crate) struct SimFile {
    st: Arc<Mutex<State>>,
    ino: usize,
}

impl SimFs {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mutating calls made so far.
    pub(crate) fn steps(&self) -> u64 {
        self.lock().steps
    }

    /// Crashes at mutating call number `step` (1-based): it and every later one fail.
    pub(crate) fn crash_at(&self, step: u64) {
        self.fail_from(step, CRASH_ERRNO);
    }

    /// Fails mutating call number `step` and every later one with `errno`.
    pub(crate) fn fail_from(&self, step: u64, errno: i32) {
        self.lock().fail_from = Some((step, errno));
    }

    /// Whether calls fail now.
    pub(crate) fn failed(&self) -> bool {
        let st = self.lock();
        st.fail_from.is_some_and(|(at, _)| st.steps >= at)
    }

    /// What a restarted machine finds: a new file system holding the surviving names and data.
    pub(crate) fn crash_image(&self, names: Names, tear: Tear) -> SimFs {
        let st = self.lock();
        let map = match names {
            Names::Durable => &st.durable,
            Names::Live => &st.live,
        };
        let mut out = State::default();
        for (path, &ino) in map {
            let node = &st.inodes[ino];
            let data = survivor(node, tear);
            out.inodes.push(Inode {
                synced: data.clone(),
                data,
            });
            let id = out.inodes.len() - 1;
            out.live.insert(path.clone(), id);
            out.durable.insert(path.clone(), id);
        }
        SimFs {
            st: Arc::new(Mutex::new(out)),
        }
    }

    /// A file's current content (what a reader sees now), if it exists.
    pub(crate) fn content(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.lock();
        st.live.get(path).map(|&i| st.inodes[i].data.clone())
    }
}

fn survivor(node: &Inode, tear: Tear) -> Vec<u8> {
    let (data, synced) = (&node.data, &node.synced);
    if data.len() <= synced.len() || !data.starts_with(synced) {
        // Not an append (a cut or a rewrite): it either reached the disk or it did not.
        return match tear {
            Tear::Kept => data.clone(),
            _ => synced.clone(),
        };
    }
    match tear {
        Tear::Lost => synced.clone(),
        Tear::Kept => data.clone(),
        Tear::Prefix(n) => data[..(synced.len() + n).min(data.len())].to_vec(),
        Tear::ZerosFrom(n) => {
            let from = ((synced.len() + n) / SECTOR * SECTOR).max(synced.len());
            let mut out = data.clone();
            if from < out.len() {
                out[from..].fill(0);
            }
            out
        }
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl Fs for SimFs {
    type File = SimFile;

    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.lock();
        Ok(st
            .live
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.content(path).ok_or_else(|| not_found(path))
    }

    fn create(&self, path: &Path) -> io::Result<SimFile> {
        let mut st = self.lock();
        st.step()?;
        let ino = match st.live.get(path) {
            Some(&ino) => {
                st.inodes[ino].data.clear();
                ino
            }
            None => {
                st.inodes.push(Inode::default());
                let ino = st.inodes.len() - 1;
                st.live.insert(path.to_owned(), ino);
                ino
            }
        };
        Ok(SimFile {
            st: self.st.clone(),
            ino,
        })
    }

    fn open_append(&self, path: &Path) -> io::Result<SimFile> {
        let st = self.lock();
        let ino = *st.live.get(path).ok_or_else(|| not_found(path))?;
        Ok(SimFile {
            st: self.st.clone(),
            ino,
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.step()?;
        let ino = st.live.remove(from).ok_or_else(|| not_found(from))?;
        st.live.insert(to.to_owned(), ino);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.step()?;
        st.live
            .remove(path)
            .map(drop)
            .ok_or_else(|| not_found(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.step()?;
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        st.durable.retain(|p, _| !in_dir(p));
        let live: Vec<_> = st
            .live
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        st.durable.extend(live);
        Ok(())
    }
}

impl SimFile {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Write for SimFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut st = self.lock();
        st.step()?;
        st.inodes[self.ino].data.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl FsFile for SimFile {
    fn sync_data(&mut self) -> io::Result<()> {
        let mut st = self.lock();
        st.step()?;
        let node = &mut st.inodes[self.ino];
        node.synced = node.data.clone();
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut st = self.lock();
        st.step()?;
        st.inodes[self.ino].data.resize(len as usize, 0);
        Ok(())
    }
}
