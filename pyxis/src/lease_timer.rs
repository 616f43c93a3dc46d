//! Lease expiry, decided on the leader and carried out through Raft.
//!
//! Keep-alives are not replicated: they only move the leader's in-memory deadline, so
//! ten thousand hosts keeping leases alive cost the cluster no log writes. When a
//! deadline passes, the leader proposes `LeaseRevoke`, and every node deletes the
//! lease's keys when it applies that entry. A node that becomes leader (any new term)
//! starts every lease with a full TTL, so an election never expires a lease whose
//! owner kept it alive with the old leader. Followers never expire anything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::store::command::{Command, CommandResult};
use crate::store::value::LeaseId;

/// How often the leader looks for expired leases.
const TICK: Duration = Duration::from_millis(50);

/// How long to wait before proposing a revoke again when one did not commit.
const RETRY_REVOKE: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Deadlines {
    /// The term these deadlines belong to; a new term starts them afresh.
    term: Option<u64>,
    /// When each lease expires unless kept alive.
    at: HashMap<LeaseId, Instant>,
    /// Leases whose revoke was proposed, and when.
    revoking: HashMap<LeaseId, Instant>,
}

/// The leader's lease deadlines.
#[derive(Default)]
pub struct LeaseTimers {
    inner: Mutex<Deadlines>,
}

impl LeaseTimers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Deadlines> {
        // The map is updated one entry at a time; a poisoned lock still holds usable data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pushes the deadline of `id` to a full TTL from now; returns the TTL in ms.
    pub fn keep_alive(&self, id: LeaseId, ttl_ms: u64) -> u64 {
        self.lock()
            .at
            .insert(id, Instant::now() + Duration::from_millis(ttl_ms));
        ttl_ms
    }

    /// Milliseconds left for `id` (a full TTL if the leader has not timed it yet).
    pub fn remaining_ms(&self, id: LeaseId, ttl_ms: u64) -> u64 {
        match self.lock().at.get(&id) {
            Some(at) => at.saturating_duration_since(Instant::now()).as_millis() as u64,
            None => ttl_ms,
        }
    }

    /// One pass: sync with the replicated lease table and return the leases that expired.
    #[cfg(test)]
    fn expired(&self, term: u64, leases: &[(LeaseId, u64)], now: Instant) -> Vec<LeaseId> {
        self.sync(term, leases, now);
        self.due(now)
    }

    /// Aligns the deadlines with the replicated lease table: new leases get a full TTL,
    /// revoked ones are forgotten, and a new term restarts every lease.
    fn sync(&self, term: u64, leases: &[(LeaseId, u64)], now: Instant) {
        let mut d = self.lock();
        if d.term != Some(term) {
            // New leadership: every lease gets a fresh grace period.
            d.term = Some(term);
            d.at.clear();
            d.revoking.clear();
        }
        let live: HashMap<LeaseId, u64> = leases.iter().copied().collect();
        d.at.retain(|id, _| live.contains_key(id));
        d.revoking.retain(|id, _| live.contains_key(id));
        for (id, ttl_ms) in leases {
            d.at.entry(*id)
                .or_insert_with(|| now + Duration::from_millis(*ttl_ms));
        }
    }

    /// The leases whose deadline has passed and whose revoke is not already under way.
    fn due(&self, now: Instant) -> Vec<LeaseId> {
        let mut guard = self.lock();
        let d = &mut *guard;
        let mut out = Vec::new();
        for (id, at) in &d.at {
            let retry_due = d
                .revoking
                .get(id)
                .is_none_or(|t| now.duration_since(*t) >= RETRY_REVOKE);
            if *at <= now && retry_due {
                out.push(*id);
            }
        }
        for id in &out {
            d.revoking.insert(*id, now);
        }
        out
    }

    /// Forgets everything (this node is not the leader).
    fn clear(&self) {
        let mut d = self.lock();
        d.term = None;
        d.at.clear();
        d.revoking.clear();
    }
}

/// Runs the leader's expiry loop until `shutdown`.
pub fn spawn_expiry(node: Arc<Node>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The lease table only changes when entries are applied: re-read it then (or when
        // the term changes), not on every tick, so an idle leader with many leases only
        // compares deadlines.
        let mut synced: Option<(u64, u64)> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Some(term) = node.leader_term() else {
                node.leases.clear();
                synced = None;
                continue;
            };
            let now = Instant::now();
            let at = (term, node.view.applied().index);
            if synced != Some(at) {
                let leases: Vec<(LeaseId, u64)> =
                    node.view.with_kv(|kv| kv.leases().iter().collect());
                node.leases.sync(term, &leases, now);
                metrics::gauge!("pyxis_leases").set(leases.len() as f64);
                synced = Some(at);
            }
            for id in node.leases.due(now) {
                let node = node.clone();
                tokio::spawn(async move {
                    match node
                        .write(node.ids.next_id(), Command::LeaseRevoke { id })
                        .await
                    {
                        Ok(CommandResult::LeaseRevoked { deleted, .. }) => {
                            tracing::info!(lease = id, deleted, "lease expired");
                            metrics::counter!("pyxis_leases_expired_total").increment(1);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(lease = id, error = %e, "lease revoke failed; will retry")
                        }
                    }
                });
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn leases_expire_after_ttl_and_keepalive_extends() {
        let t = LeaseTimers::default();
        let start = Instant::now();
        assert!(t.expired(1, &[(7, 1000)], start).is_empty());
        assert!(
            t.expired(1, &[(7, 1000)], start + Duration::from_millis(999))
                .is_empty()
        );
        tokio::time::advance(Duration::from_millis(900)).await;
        t.keep_alive(7, 1000);
        let later = Instant::now() + Duration::from_millis(999);
        assert!(t.expired(1, &[(7, 1000)], later).is_empty());
        let expired_at = Instant::now() + Duration::from_millis(1000);
        assert_eq!(t.expired(1, &[(7, 1000)], expired_at), vec![7]);
        // Proposed once; not again until the retry delay.
        assert!(t.expired(1, &[(7, 1000)], expired_at).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_term_gives_a_fresh_grace_period() {
        let t = LeaseTimers::default();
        let now = Instant::now();
        t.expired(1, &[(7, 1000)], now);
        // Way past the deadline, but in a new term: the clock restarts.
        let far = now + Duration::from_secs(10);
        assert!(t.expired(2, &[(7, 1000)], far).is_empty());
        assert_eq!(
            t.expired(2, &[(7, 1000)], far + Duration::from_millis(1000)),
            vec![7]
        );
    }
}
