//! A rate limit for log lines that a flood of bad input would repeat many times a second
//! (refused peer calls, failed accepts). What is logged is the caller's; this only says when.

use std::sync::atomic::{AtomicU64, Ordering};

/// Lets one caller through at most once every `secs` seconds; usable as a `static`.
#[derive(Debug)]
pub struct Throttle {
    secs: u64,
    /// Unix seconds of the last time one was let through.
    last: AtomicU64,
}

impl Throttle {
    /// A throttle letting one through every `secs` seconds, the first one at once.
    pub const fn every(secs: u64) -> Throttle {
        Throttle {
            secs,
            last: AtomicU64::new(0),
        }
    }

    /// Whether this caller may log now (at most one caller per period gets true).
    pub fn due(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last.load(Ordering::Relaxed);
        now >= last + self.secs
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_caller_per_period() {
        let t = Throttle::every(3600);
        assert!(t.due());
        assert!(!t.due());
    }
}
