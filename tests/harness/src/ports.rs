//! Reserving loopback ports for servers whose addresses must be known before they start.
//!
//! A cluster's `--peers` list names every node's address up front, so `--listen 127.0.0.1:0`
//! cannot be used there. Single servers should prefer port 0 and read the announced address
//! (see [`crate::Proc::wait_for_line`]).
//!
//! Binding port 0 and releasing it is not enough when tests run in parallel: a test that
//! kills a node and restarts it on the same port leaves that port free in between, and the
//! kernel may hand it to the next test that binds port 0 (or use it as the local port of an
//! outgoing connection). So ports are drawn from below the kernel's ephemeral range and each
//! one is claimed for the lifetime of the test process with a file named after the port in
//! a shared directory. Claims of processes that no longer exist are reclaimed.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Ports used when the ephemeral range can't be read (Linux's default range starts at 32768).
const FALLBACK_RANGE: (u16, u16) = (20000, 32000);

/// How many candidate ports to try before giving up.
const MAX_TRIES: usize = 20_000;

/// Returns `n` distinct ports on 127.0.0.1 that are free now and claimed by this process.
///
/// The ports stay claimed until the process exits, so no other test using this harness gets
/// them even while a node is down between a kill and a restart.
pub fn reserve_ports(n: usize) -> Vec<u16> {
    static LOCK: Mutex<()> = Mutex::new(());
    static SWEEP: Once = Once::new();
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = claims_dir();
    std::fs::create_dir_all(&dir).expect("create the port claims directory");
    SWEEP.call_once(|| sweep_stale_claims(&dir));

    let (lo, hi) = candidate_range();
    let mut rng = seed();
    let mut ports = Vec::with_capacity(n);
    for _ in 0..MAX_TRIES {
        if ports.len() == n {
            return ports;
        }
        let port = lo + (next(&mut rng) % u64::from(hi - lo)) as u16;
        if ports.contains(&port) || !claim(&dir, port) {
            continue;
        }
        // Claimed, but something outside the harness may hold it; then the claim just stays.
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    assert_eq!(ports.len(), n, "no {n} free ports in {lo}..{hi}");
    ports
}

/// The shared directory of claim files (one per claimed port, holding the owner's pid).
fn claims_dir() -> PathBuf {
    std::env::temp_dir().join("pyxis-harness-ports")
}

/// Ports below the kernel's ephemeral range, which outgoing connections never use.
fn candidate_range() -> (u16, u16) {
    let text =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut nums = text
        .split_whitespace()
        .filter_map(|s| s.parse::<u16>().ok());
    match (nums.next(), nums.next()) {
        (Some(lo), Some(_)) if lo > 12_000 => (lo - 11_000, lo),
        (Some(_), Some(hi)) if hi < 54_000 => (hi + 1, hi + 11_000),
        _ => FALLBACK_RANGE,
    }
}

/// Claims `port` for this process; false if another live process holds it.
fn claim(dir: &Path, port: u16) -> bool {
    let path = dir.join(port.to_string());
    for _ in 0..2 {
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                let _ = write!(f, "{}", std::process::id());
                return true;
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                if !is_stale(&path) {
                    return false;
                }
                let _ = std::fs::remove_file(&path);
            }
            Err(_) => return false,
        }
    }
    false
}

/// Whether a claim file belongs to a process that is gone.
fn is_stale(path: &Path) -> bool {
    let owner = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    if Path::new("/proc/self").exists() {
        return match owner {
            Some(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
            // A claim being written right now has no pid yet; leave it alone unless old.
            None => older_than(path, Duration::from_secs(60)),
        };
    }
    // Without procfs, fall back to age: no test runs for a day.
    older_than(path, Duration::from_secs(24 * 3600))
}

fn older_than(path: &Path, age: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|e| e > age)
}

/// Removes claim files of dead processes, so the directory does not grow without bound.
fn sweep_stale_claims(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if is_stale(&path) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// A per-process seed, so parallel test processes start at different candidates.
fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (nanos ^ (u64::from(std::process::id()) << 32)) | 1
}

/// xorshift64: good enough to spread port choices, no dependency needed.
fn next(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_claimed() {
        let ports = reserve_ports(5);
        assert_eq!(ports.len(), 5);
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 5, "{ports:?}");
        let dir = claims_dir();
        for port in &ports {
            let owner = std::fs::read_to_string(dir.join(port.to_string())).unwrap();
            assert_eq!(owner, std::process::id().to_string());
            // A second claim of the same port by this process is refused.
            assert!(!claim(&dir, *port));
        }
        // A later reservation never hands out a port this process already holds.
        let more = reserve_ports(5);
        assert!(
            more.iter().all(|p| !ports.contains(p)),
            "{ports:?} {more:?}"
        );
    }
}
