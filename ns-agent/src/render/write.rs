//! Installing a rendered file: temp file in the destination's directory, fsync, atomic rename,
//! directory fsync; and putting the previous content back the same way.
//!
//! A reader of `dest` sees either the old file or the new one, never a mix or an empty file.
//! The previous content is kept in memory in [`Installed`] until the check and the reload
//! have passed. These are blocking calls: callers run them off the runtime's thread.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::spec::DEFAULT_MODE;

/// A file that was replaced, with what it replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The file.
    pub dest: PathBuf,
    /// Its content and mode before, or `None` if it did not exist.
    pub previous: Option<(Vec<u8>, u32)>,
}

/// The current content of `dest`, `None` if it does not exist.
pub fn current(dest: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(dest) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces `dest` with `bytes` atomically, with `mode` (else the previous file's, else 0644).
pub fn install(dest: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<Installed> {
    let previous = match fs::read(dest) {
        Ok(b) => {
            let m = fs::metadata(dest)?.permissions().mode() & 0o7777;
            Some((b, m))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mode = mode
        .or(previous.as_ref().map(|(_, m)| *m))
        .unwrap_or(DEFAULT_MODE);
    replace(dest, bytes, mode)?;
    Ok(Installed {
        dest: dest.to_owned(),
        previous,
    })
}

/// Puts back what [`install`] replaced: the previous content, or no file at all.
pub fn restore(installed: &Installed) -> io::Result<()> {
    match &installed.previous {
        Some((bytes, mode)) => replace(&installed.dest, bytes, *mode),
        None => match fs::remove_file(&installed.dest) {
            Ok(()) => sync_dir(&installed.dest),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        },
    }
}

/// Temp file beside `dest`, written, fsynced, renamed over `dest`; then the directory fsynced
/// so that the rename itself survives a crash.
fn replace(dest: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = parent(dest);
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.ns-agent-{}-{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dest)
}

fn parent(dest: &Path) -> &Path {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn sync_dir(dest: &Path) -> io::Result<()> {
    File::open(parent(dest))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_and_restore() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("up.conf");
        let first = install(&dest, b"one", None).unwrap();
        assert_eq!(first.previous, None);
        assert_eq!(fs::read(&dest).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let second = install(&dest, b"two", Some(0o640)).unwrap();
        assert_eq!(second.previous, Some((b"one".to_vec(), 0o644)));
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o640
        );
        restore(&second).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o644
        );
        restore(&first).unwrap();
        assert!(!dest.exists());
        // No temp file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(current(&dest).unwrap(), None);
    }

    #[test]
    fn a_missing_directory_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("nope/up.conf");
        assert!(install(&dest, b"x", None).is_err());
    }
}
