//! When a node builds a snapshot: once the log since the last one holds
//! `--snapshot-threshold` entries, or as many entries as half the live keys if that is more.
//!
//! A snapshot writes the whole state. With a fixed interval, the snapshot work per write
//! grows with the state: a store of a million keys rewrites all of them every 100,000 writes.
//! Scaling the interval with the state keeps that work constant per write (as an LSM tree
//! sizes its compactions), at the price of a log, kept in memory and replayed at restart,
//! of up to about half the state. openraft's own policy counts entries only, so it is off
//! (`SnapshotPolicy::Never`) and this task triggers builds instead.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::node::Node;

/// How long a trigger that has not produced a snapshot yet is left alone: openraft ignores
/// triggers while a build runs, and a large build takes a while.
const RETRIGGER_AFTER: Duration = Duration::from_secs(10);

/// Whether a snapshot is due with `applied` entries applied, the last snapshot at
/// `snapshot`, `keys` live keys and the configured `threshold`.
pub fn due(applied: u64, snapshot: u64, keys: u64, threshold: u64) -> bool {
    applied.saturating_sub(snapshot) >= threshold.max(keys / 2)
}

/// Watches the applied index and triggers a snapshot whenever [`due`] says so.
pub fn spawn(node: Arc<Node>, threshold: u64, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut applied = node.view.subscribe();
        // The snapshot index at the last trigger, and when it was sent.
        let mut triggered: Option<(u64, Instant)> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = applied.changed() => if changed.is_err() { return },
            }
            let index = applied.borrow_and_update().index;
            let snapshot = node.view.snapshot_index().unwrap_or(0);
            if triggered
                .is_some_and(|(at, when)| at == snapshot && when.elapsed() < RETRIGGER_AFTER)
            {
                continue;
            }
            let keys = node.view.with_kv(|kv| kv.len() as u64);
            if !due(index, snapshot, keys, threshold) {
                continue;
            }
            tracing::debug!(index, snapshot, keys, "snapshot due");
            if let Err(e) = node.raft.trigger().snapshot().await {
                tracing::warn!(error = %e, "could not trigger a snapshot; raft has stopped");
                return;
            }
            triggered = Some((snapshot, Instant::now()));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_holds_for_a_small_state_and_half_the_keys_for_a_large_one() {
        assert!(!due(99, 0, 10, 100));
        assert!(due(100, 0, 10, 100));
        assert!(due(1_100, 1_000, 10, 100));
        assert!(!due(1_099, 1_000, 10, 100));
        // A million keys: every 500,000 entries, not every 100,000.
        assert!(!due(400_000, 0, 1_000_000, 100_000));
        assert!(due(500_000, 0, 1_000_000, 100_000));
        // A snapshot newer than the applied index (just installed) is never due.
        assert!(!due(5, 10, 0, 1));
    }
}
