//! Whether a node can serve: the judgement behind `GET /healthz` and the `behind` mark of
//! `GET /v1/cluster`.
//!
//! A pure function of a [`Position`], which `Node::position` (in `cluster`) reads from this
//! node's Raft metrics, so a health check costs no RPC: a follower knows the leader's commit
//! index from the leader's heartbeats (openraft's `cluster_committed`), and the leader knows
//! each member's matched index from its replication progress. The handler is `http::admin`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pyxis_client::api::Health;

/// Entries a member may trail the leader's commit index by and still count as healthy
/// (`/healthz?lag=N` overrides it).
pub const DEFAULT_MAX_LAG: u64 = 1000;

/// When a follower last heard from a leader (an append or a heartbeat reached it).
///
/// openraft keeps a follower's `current_leader` after the leader is gone when no election can
/// start (pre-vote needs a quorum), so the leader id alone does not say one is reachable.
#[derive(Debug)]
pub struct LeaderContact {
    start: Instant,
    /// Milliseconds after `start` of the last contact; `u64::MAX` before the first.
    last_ms: AtomicU64,
    /// The longest silence after which no leader counts as known.
    limit: Duration,
}

impl LeaderContact {
    /// No contact yet; a silence longer than `limit` means no leader.
    pub fn new(limit: Duration) -> Self {
        LeaderContact {
            start: Instant::now(),
            last_ms: AtomicU64::new(u64::MAX),
            limit,
        }
    }

    /// Records that a leader's append or heartbeat was served just now.
    pub fn heard(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the last contact; `None` before the first.
    pub fn silence(&self) -> Option<Duration> {
        match self.last_ms.load(Ordering::Relaxed) {
            u64::MAX => None,
            ms => Some(
                self.start
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms)),
            ),
        }
    }

    /// The longest silence still counted as contact.
    pub fn limit(&self) -> Duration {
        self.limit
    }
}

/// Where a node stands, as its own Raft metrics say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Raft runs (it has not stopped on a fatal error or a shutdown).
    pub running: bool,
    /// This node was removed from the cluster (`removal`).
    pub removed: bool,
    /// The leader this node knows of, if it was heard from recently (on the leader: if a
    /// quorum acknowledged it recently); `None` otherwise.
    pub leader: Option<u64>,
    /// Last log index applied here.
    pub applied: u64,
    /// The leader's commit index as last heard (this node's own on the leader).
    pub commit: u64,
}

/// Judges `p` against `max_lag`: the first failed condition names the reason.
pub fn judge(p: Position, max_lag: u64) -> Health {
    let lag = p.commit.saturating_sub(p.applied);
    let reason = if !p.running {
        Some("stopped")
    } else if p.removed {
        Some("removed")
    } else if p.leader.is_none() {
        Some("no_leader")
    } else if lag > max_lag {
        Some("behind")
    } else {
        None
    };
    Health {
        healthy: reason.is_none(),
        reason: reason.map(str::to_owned),
        leader: p.leader,
        applied_index: p.applied,
        commit_index: p.commit,
        lag,
        max_lag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(leader: Option<u64>, applied: u64, commit: u64) -> Position {
        Position {
            running: true,
            removed: false,
            leader,
            applied,
            commit,
        }
    }

    #[test]
    fn a_caught_up_member_is_healthy() {
        let h = judge(at(Some(1), 500, 500), DEFAULT_MAX_LAG);
        assert!(h.healthy, "{h:?}");
        assert_eq!((h.reason, h.lag), (None, 0));
        // Trailing by the threshold exactly is still fine; one more is not.
        assert!(judge(at(Some(1), 400, 500), 100).healthy);
        let h = judge(at(Some(1), 399, 500), 100);
        assert_eq!(
            (h.healthy, h.reason.as_deref(), h.lag),
            (false, Some("behind"), 101)
        );
    }

    #[test]
    fn a_blank_member_of_a_busy_cluster_is_behind() {
        let h = judge(at(Some(2), 0, 20_000), DEFAULT_MAX_LAG);
        assert_eq!(h.reason.as_deref(), Some("behind"));
        assert_eq!(h.lag, 20_000);
    }

    #[test]
    fn contact_is_unknown_until_a_leader_is_heard() {
        let c = LeaderContact::new(Duration::from_secs(2));
        assert_eq!(c.silence(), None);
        c.heard();
        assert!(c.silence().is_some_and(|s| s <= c.limit()));
    }

    #[test]
    fn no_leader_and_stopped_come_first() {
        assert_eq!(
            judge(at(None, 10, 10), DEFAULT_MAX_LAG).reason.as_deref(),
            Some("no_leader")
        );
        let stopped = Position {
            running: false,
            ..at(Some(1), 0, 9_999)
        };
        assert_eq!(
            judge(stopped, DEFAULT_MAX_LAG).reason.as_deref(),
            Some("stopped")
        );
    }

    #[test]
    fn a_removed_member_is_unhealthy_whatever_it_believes() {
        let removed = Position {
            removed: true,
            ..at(Some(1), 10, 10)
        };
        let h = judge(removed, DEFAULT_MAX_LAG);
        assert_eq!((h.healthy, h.reason.as_deref()), (false, Some("removed")));
    }
}
