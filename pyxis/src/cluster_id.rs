//! The cluster id: a number every peer RPC carries, so a node only takes part in the
//! cluster it was made for.
//!
//! Addresses get reused: a dead member of cluster A may come back, wiped, as a member of a
//! new cluster B on the same host and port. A's leader would then keep sending it entries and
//! votes, and openraft, which knows nothing of clusters, would let A's log overwrite B's.
//! With an id on every `/raft/*` call, B's node refuses A's calls (409) instead.
//!
//! Where the id comes from:
//! - The nodes of a new cluster derive the same id, without talking, from the initial
//!   members (`--peers`) and `--cluster-token`, as etcd does from `--initial-cluster` and
//!   `--initial-cluster-token`. Re-creating a cluster on the same addresses needs a new token.
//! - A node started with `--join` (or a data dir written before ids existed) has none: it
//!   adopts the id of the first peer that calls it. It is empty then, so it has nothing to lose.
//! - A restored backup starts a new cluster, with a fresh id.
//!
//! The id is kept in `DATA_DIR/cluster_id` as 16 hex digits, written durably before use.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use crate::raft::snapshot::write_atomically;

/// The request header that carries the sender's cluster id.
pub const HEADER: &str = "x-pyxis-cluster-id";

/// The file in the data dir that holds the id.
const FILE_NAME: &str = "cluster_id";

/// A cluster's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClusterId(u64);

impl ClusterId {
    /// The id every node of a new cluster with these initial `members` and `token` derives.
    pub fn derive(members: &BTreeMap<u64, String>, token: &str) -> ClusterId {
        let mut h = Fnv::new();
        h.write(b"pyxis-cluster\0");
        h.write(token.as_bytes());
        for (id, addr) in members {
            h.write(b"\0");
            h.write(&id.to_le_bytes());
            h.write(addr.as_bytes());
        }
        ClusterId(h.finish())
    }

    /// A new id no other cluster has, for a cluster started from a backup.
    pub fn fresh(seed: &str) -> ClusterId {
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut h = Fnv::new();
        h.write(b"pyxis-restored\0");
        h.write(seed.as_bytes());
        h.write(&nanos.to_le_bytes());
        h.write(&std::process::id().to_le_bytes());
        h.write(&CALLS.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        ClusterId(h.finish())
    }

    /// Parses the 16-hex-digit form `Display` writes.
    pub fn parse(s: &str) -> Result<ClusterId, String> {
        let s = s.trim();
        if s.len() != 16 {
            return Err(format!("{s:?} is not 16 hex digits"));
        }
        u64::from_str_radix(s, 16)
            .map(ClusterId)
            .map_err(|_| format!("{s:?} is not 16 hex digits"))
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms, unlike `std`'s hashers.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// What a node knows of its cluster id: set once, from the data dir, the bootstrap or the
/// first peer that calls.
#[derive(Debug)]
pub struct ClusterIdentity {
    path: PathBuf,
    id: RwLock<Option<ClusterId>>,
    /// Serializes writers of the file (adoption can race between two incoming calls).
    write: Mutex<()>,
}

/// How a node answers a peer call carrying (or not) a cluster id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Same cluster (or neither side has an id yet).
    Accept,
    /// This node has no id yet and should adopt the caller's.
    Adopt(ClusterId),
    /// Another cluster, or a malformed header; the message says which.
    Reject(String),
}

impl ClusterIdentity {
    /// The identity stored in `data_dir`, or an unknown one if there is none yet.
    pub fn load(data_dir: &Path) -> io::Result<ClusterIdentity> {
        let path = data_dir.join(FILE_NAME);
        let id = match std::fs::read_to_string(&path) {
            Ok(text) => Some(ClusterId::parse(&text).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        Ok(ClusterIdentity {
            path,
            id: RwLock::new(id),
            write: Mutex::new(()),
        })
    }

    /// The id, once known.
    pub fn get(&self) -> Option<ClusterId> {
        *self.id.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `id` this node's, replacing any other: only for a node that is creating its
    /// cluster (bootstrap from `--peers`, restore) and has not served yet.
    pub fn bootstrap(&self, id: ClusterId) -> io::Result<()> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        if self.get() != Some(id) {
            self.store(id)?;
        }
        Ok(())
    }

    /// Writes `id` to the file, durably, then to memory.
    fn store(&self, id: ClusterId) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        write_atomically(&self.path, format!("{id}\n").as_bytes())?;
        *self.id.write().unwrap_or_else(|p| p.into_inner()) = Some(id);
        Ok(())
    }

    /// Stores `id` durably and makes it this node's; true if it was new, false if it already
    /// was. A node with another id keeps its own and gets an error.
    pub fn adopt(&self, id: ClusterId) -> io::Result<bool> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        match self.get() {
            Some(ours) if ours == id => return Ok(false),
            Some(ours) => {
                return Err(io::Error::other(format!(
                    "this node belongs to cluster {ours}, not {id}"
                )));
            }
            None => {}
        }
        self.store(id).map(|()| true)
    }

    /// What to do with a peer call whose header holds `theirs`.
    pub fn judge(&self, theirs: Option<&str>) -> Verdict {
        let theirs = match theirs.map(ClusterId::parse) {
            Some(Ok(id)) => Some(id),
            Some(Err(e)) => return Verdict::Reject(format!("{HEADER}: {e}")),
            None => None,
        };
        match (self.get(), theirs) {
            (Some(ours), Some(t)) if ours == t => Verdict::Accept,
            (Some(ours), Some(t)) => Verdict::Reject(format!(
                "{HEADER}: this node belongs to cluster {ours}, the caller to cluster {t}"
            )),
            (Some(ours), None) => Verdict::Reject(format!(
                "{HEADER}: missing; this node belongs to cluster {ours}"
            )),
            (None, Some(t)) => Verdict::Adopt(t),
            (None, None) => Verdict::Accept,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(u64, &str)]) -> BTreeMap<u64, String> {
        list.iter().map(|(i, a)| (*i, (*a).to_owned())).collect()
    }

    #[test]
    fn derivation_depends_on_members_and_token_only() {
        let a = members(&[(1, "h:1"), (2, "h:2"), (3, "h:3")]);
        let same = members(&[(3, "h:3"), (1, "h:1"), (2, "h:2")]);
        assert_eq!(ClusterId::derive(&a, ""), ClusterId::derive(&same, ""));
        assert_ne!(ClusterId::derive(&a, ""), ClusterId::derive(&a, "t2"));
        let moved = members(&[(1, "h:1"), (2, "h:2"), (3, "h:4")]);
        assert_ne!(ClusterId::derive(&a, ""), ClusterId::derive(&moved, ""));
        // Ids and addresses cannot be shifted into each other.
        let x = members(&[(1, "2h")]);
        let y = members(&[(12, "h")]);
        assert_ne!(ClusterId::derive(&x, ""), ClusterId::derive(&y, ""));
    }

    #[test]
    fn display_and_parse_round_trip() {
        let id = ClusterId::derive(&members(&[(1, "127.0.0.1:7070")]), "");
        assert_eq!(ClusterId::parse(&id.to_string()), Ok(id));
        assert_eq!(ClusterId::parse(&format!(" {id}\n")), Ok(id));
        assert!(ClusterId::parse("xyz").is_err());
        assert!(ClusterId::parse("0123456789abcdefg").is_err());
    }

    #[test]
    fn judging_peer_calls() {
        let dir = tempfile::tempdir().unwrap();
        let ident = ClusterIdentity::load(dir.path()).unwrap();
        let a = ClusterId::derive(&members(&[(1, "a")]), "");
        let b = ClusterId::derive(&members(&[(1, "b")]), "");
        assert_eq!(ident.judge(None), Verdict::Accept);
        assert_eq!(ident.judge(Some(&a.to_string())), Verdict::Adopt(a));
        assert!(matches!(ident.judge(Some("nope")), Verdict::Reject(m) if m.contains(HEADER)));

        assert!(ident.adopt(a).unwrap());
        assert!(!ident.adopt(a).unwrap());
        assert_eq!(ident.judge(Some(&a.to_string())), Verdict::Accept);
        assert!(
            matches!(ident.judge(Some(&b.to_string())), Verdict::Reject(m) if m.contains(&b.to_string()))
        );
        assert!(matches!(ident.judge(None), Verdict::Reject(m) if m.contains("missing")));
        assert!(ident.adopt(b).is_err(), "a known id is never replaced");

        // It survives a restart.
        let again = ClusterIdentity::load(dir.path()).unwrap();
        assert_eq!(again.get(), Some(a));
        // Only creating a cluster replaces an id.
        again.bootstrap(b).unwrap();
        assert_eq!(ClusterIdentity::load(dir.path()).unwrap().get(), Some(b));
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "garbage").unwrap();
        let err = ClusterIdentity::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains(FILE_NAME), "{err}");
    }

    #[test]
    fn fresh_ids_differ() {
        assert_ne!(ClusterId::fresh("x"), ClusterId::fresh("x"));
    }
}
