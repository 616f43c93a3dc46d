//! Maintenance mode, kept across restarts in a small JSON state file next to the config.
//!
//! The file maps a service name to the operator's reason. It is written atomically (temp file,
//! fsync, rename, fsync of the directory), so a crash leaves the old or the new map, never half
//! of one. What maintenance does to a registration (critical, with the reason in `meta`) is
//! `lifecycle`'s.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The services in maintenance and why.
#[derive(Debug)]
pub struct Maintenance {
    path: PathBuf,
    reasons: Mutex<BTreeMap<String, String>>,
}

impl Maintenance {
    /// Reads the state file at `path`; a missing file is an empty map, an unreadable one is
    /// logged and treated as empty.
    pub fn load(path: &Path) -> Maintenance {
        let reasons = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "maintenance state file is unreadable; starting with none");
                BTreeMap::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the maintenance state file");
                BTreeMap::new()
            }
        };
        Maintenance {
            path: path.to_owned(),
            reasons: Mutex::new(reasons),
        }
    }

    /// The reason `name` is in maintenance, if it is.
    pub fn get(&self, name: &str) -> Option<String> {
        self.lock().get(name).cloned()
    }

    /// Puts `name` in maintenance (`Some(reason)`) or takes it out (`None`), and saves the map.
    pub fn set(&self, name: &str, reason: Option<String>) -> std::io::Result<()> {
        let mut map = self.lock();
        let before = map.clone();
        match reason {
            Some(r) => map.insert(name.to_owned(), r),
            None => map.remove(name),
        };
        if let Err(e) = write_atomically(&self.path, &map) {
            *map = before;
            return Err(e);
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.reasons.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn write_atomically(path: &Path, map: &BTreeMap<String, String>) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(map).map_err(std::io::Error::other)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let m = Maintenance::load(&path);
        assert_eq!(m.get("web"), None);
        m.set("web", Some("disk swap".into())).unwrap();
        m.set("db", Some(String::new())).unwrap();
        m.set("db", None).unwrap();
        let again = Maintenance::load(&path);
        assert_eq!(again.get("web").as_deref(), Some("disk swap"));
        assert_eq!(again.get("db"), None);
        std::fs::write(&path, "not json").unwrap();
        assert_eq!(Maintenance::load(&path).get("web"), None);
    }
}
