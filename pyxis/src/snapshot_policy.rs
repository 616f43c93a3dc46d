//! When a node builds a snapshot. Either of two rules makes one due:
//! - entries: the log since the last snapshot holds `--snapshot-threshold` entries, or as many
//!   entries as half the live keys if that is more;
//! - bytes: the commands applied since the last snapshot weigh as much as the state's keys and
//!   values, or 64 MiB if that is more.
//!
//! A snapshot writes the whole state. With a fixed interval, the snapshot work per write
//! grows with the state: a store of a million keys rewrites all of them every 100,000 writes.
//! Scaling the interval with the state keeps that work constant per write (as an LSM tree
//! sizes its compactions), at the price of a log, kept in memory and replayed at restart,
//! of up to about half the state's entries. The byte rule bounds that log's memory when
//! values are large, where a count of entries says little (100,000 puts of 4 MiB would be
//! 400 GB). openraft's own policy counts entries only, so it is off
//! (`SnapshotPolicy::Never`) and this task triggers builds instead.
//!
//! After a snapshot the byte rule asked for, this task also purges the whole log it covers:
//! openraft otherwise keeps up to 1,000 entries behind a snapshot for followers that lag a
//! little, which is cheap for small values and gigabytes for large ones. A follower that
//! lags then gets the snapshot instead. openraft postpones a purge while a replication
//! stream still covers the entries, including a stream to a member that is down, but the
//! first failed append to that member that openraft reports clears its stream and runs the
//! purge; the member, now behind the purged log, is sent snapshots, which hold no entries,
//! so later purges do not wait for it. A member that is down thus delays one purge by a few
//! failed calls and never stops purging (`store_purge` in the e2e tests). A trigger of our
//! own would not help: `purge_log` goes through the same check.
//!
//! A build that fails (too many open files, a full disk) does not stop Raft (`state_machine`
//! reports it as a warning and in `pyxis_snapshot_build_failures_total`); this task triggers
//! again later, waiting twice as long after each trigger that produced no snapshot.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::raft::WatchReceiver as _;

/// How long a trigger that has not produced a snapshot yet is left alone: openraft ignores
/// triggers while a build runs, and a large build takes a while.
const RETRIGGER_AFTER: Duration = Duration::from_secs(10);

/// The longest wait between triggers that keep producing no snapshot (failing builds).
const RETRIGGER_MAX: Duration = Duration::from_secs(320);

/// How often the task looks again with nothing applied.
const RECHECK_EVERY: Duration = Duration::from_secs(1);

/// Log bytes since the last snapshot that always make one due.
const MIN_LOG_BYTES: u64 = 64 * 1024 * 1024;

/// Where a node stands, as far as snapshots go.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Log index applied.
    pub applied: u64,
    /// Log index of the last snapshot (0 if none).
    pub snapshot: u64,
    /// Live keys.
    pub keys: u64,
    /// Bytes of keys and values held.
    pub state_bytes: u64,
    /// About how many bytes of commands were applied since the last snapshot.
    pub log_bytes: u64,
}

/// Which rule made a snapshot due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Enough entries since the last snapshot.
    Entries,
    /// Enough bytes since the last snapshot.
    Bytes,
}

/// Members whose builds are kept apart: a third of the interval between each.
pub const SLOTS: u64 = 3;

/// Whether a snapshot is due, and by which rule, with `threshold` from `--snapshot-threshold`
/// and this member's `slot` (its id modulo [`SLOTS`]).
///
/// The entries rule builds where the applied index crosses `k * limit + slot * limit / 3`:
/// members in different slots build a third of the interval apart, so that a build's disk
/// and CPU load (and the frees after it) stall at most one member of three at a time and
/// the other two still make a quorum. A build is never more than `limit` entries after the
/// last snapshot (the old bound on the log), nor less than half of it (right after a
/// snapshot received from the leader, which lands at the leader's index).
pub fn due(p: &Progress, threshold: u64, slot: u64) -> Option<Rule> {
    let limit = threshold.max(p.keys / 2).max(1);
    let since = p.applied.saturating_sub(p.snapshot);
    let phase = (slot % SLOTS) * (limit / SLOTS);
    // The boundary at or before `index`, counted from the slot's phase.
    let boundary = |index: u64| index.saturating_add(limit - phase) / limit;
    if p.log_bytes >= MIN_LOG_BYTES.max(p.state_bytes) {
        Some(Rule::Bytes)
    } else if since >= limit || (since >= limit / 2 && boundary(p.applied) > boundary(p.snapshot)) {
        Some(Rule::Entries)
    } else {
        None
    }
}

/// Watches the applied index and triggers a snapshot whenever [`due`] says so.
pub fn spawn(node: Arc<Node>, threshold: u64, slot: u64, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut applied = node.view.subscribe();
        // The snapshot index at the last trigger, and when it was sent.
        let mut triggered: Option<(u64, Instant)> = None;
        // How long the last trigger is given before another; doubles while triggers fail.
        let mut wait = RETRIGGER_AFTER;
        // Set when the byte rule triggered: the snapshot index to get past before purging.
        let mut purge_after: Option<u64> = None;
        // The purge last asked for, and when: asked again until openraft has done it.
        let mut purge_asked: Option<(u64, Instant)> = None;
        // A build ends without anything being applied: look again now and then, so the purge
        // after it does not wait for the next write.
        let mut tick = tokio::time::interval(RECHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = applied.changed() => if changed.is_err() { return },
                _ = tick.tick() => {}
            }
            let index = applied.borrow_and_update().index;
            let snapshot = node.view.snapshot_index().unwrap_or(0);
            if let Some(before) = purge_after {
                match purge_step(&node, before, purge_asked) {
                    PurgeStep::Wait => {}
                    PurgeStep::Done => {
                        purge_after = None;
                        purge_asked = None;
                    }
                    PurgeStep::Ask(upto) => {
                        if let Err(e) = node.raft.trigger().purge_log(upto).await {
                            tracing::warn!(error = %e, "could not purge the log; raft has stopped");
                            return;
                        }
                        purge_asked = Some((upto, Instant::now()));
                    }
                }
            }
            if triggered.is_some_and(|(at, when)| at == snapshot && when.elapsed() < wait) {
                continue;
            }
            let (keys, state_bytes, log_bytes) = node.view.sizes();
            let progress = Progress {
                applied: index,
                snapshot,
                keys,
                state_bytes,
                log_bytes,
            };
            let Some(rule) = due(&progress, threshold, slot) else {
                continue;
            };
            tracing::debug!(?progress, ?rule, "snapshot due");
            if rule == Rule::Bytes && purge_after.is_none() {
                purge_after = Some(snapshot);
            }
            wait = match triggered {
                // The last trigger produced no snapshot: its build failed (or is slow).
                Some((at, _)) if at == snapshot => (wait * 2).min(RETRIGGER_MAX),
                _ => RETRIGGER_AFTER,
            };
            if let Err(e) = node.raft.trigger().snapshot().await {
                tracing::warn!(error = %e, "could not trigger a snapshot; raft has stopped");
                return;
            }
            triggered = Some((snapshot, Instant::now()));
        }
    });
}

/// What the purge after a byte-rule snapshot needs next.
#[derive(Debug, PartialEq, Eq)]
enum PurgeStep {
    /// openraft has no snapshot past the one before the trigger yet, or was just asked.
    Wait,
    /// Ask openraft to purge up to this index.
    Ask(u64),
    /// The log is purged up to openraft's snapshot.
    Done,
}

/// The next purge step, from openraft's own snapshot and purged indices. Ours
/// (`snapshot_index`) is set when the build writes its file, before openraft's engine
/// learns of it, and openraft cuts a purge down to the snapshot it knows: asked from ours,
/// a purge could stop at the previous snapshot and leave a whole interval of large values in
/// memory. So the purge is asked from openraft's index and again, once a second, until its
/// purged index gets there (a purge openraft postpones for a replication stream also lands).
fn purge_step(node: &Node, before: u64, asked: Option<(u64, Instant)>) -> PurgeStep {
    let (engine_snapshot, purged) = {
        let m = node.raft.metrics();
        let m = m.borrow_watched();
        (
            m.snapshot.map_or(0, |l| l.index),
            m.purged.map_or(0, |l| l.index),
        )
    };
    next_purge(before, engine_snapshot, purged, asked)
}

/// [`purge_step`] on plain indices.
fn next_purge(
    before: u64,
    engine_snapshot: u64,
    purged: u64,
    asked: Option<(u64, Instant)>,
) -> PurgeStep {
    if engine_snapshot <= before {
        PurgeStep::Wait
    } else if purged >= engine_snapshot {
        PurgeStep::Done
    } else if asked
        .is_some_and(|(at, when)| at == engine_snapshot && when.elapsed() < RECHECK_EVERY)
    {
        PurgeStep::Wait
    } else {
        PurgeStep::Ask(engine_snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(applied: u64, snapshot: u64, keys: u64) -> Progress {
        Progress {
            applied,
            snapshot,
            keys,
            ..Progress::default()
        }
    }

    fn due0(p: &Progress, threshold: u64) -> Option<Rule> {
        due(p, threshold, 0)
    }

    /// The indices a member in `slot` builds at while applying `0..=until` one entry at a time.
    fn builds(slot: u64, threshold: u64, until: u64) -> Vec<u64> {
        let mut snapshot = 0;
        let mut out = Vec::new();
        for applied in 1..=until {
            if due(&at(applied, snapshot, 0), threshold, slot).is_some() {
                out.push(applied);
                snapshot = applied;
            }
        }
        out
    }

    #[test]
    fn members_in_different_slots_build_a_third_of_the_interval_apart() {
        let all: Vec<Vec<u64>> = (0..SLOTS).map(|s| builds(s, 300, 3_000)).collect();
        assert_eq!(all[0], (1..=10).map(|k| k * 300).collect::<Vec<_>>());
        assert_eq!(all[1][..3], [150, 400, 700]);
        assert_eq!(all[2][..3], [200, 500, 800]);
        for slot in &all {
            // The log never holds more than the threshold, nor is rebuilt after less than half.
            let mut last = 0;
            for &b in slot {
                assert!((150..=300).contains(&(b - last)), "{slot:?}");
                last = b;
            }
        }
    }

    #[test]
    fn a_snapshot_received_at_the_leaders_index_keeps_the_slot() {
        // A member of slot 1 installs the leader's snapshot at 300. The slot's next boundary,
        // 400, comes too soon after it: the build waits for half the interval, to 450, and
        // the one after is back on the slot's boundary, 700.
        assert_eq!(None, due(&at(400, 300, 0), 300, 1));
        assert_eq!(None, due(&at(449, 300, 0), 300, 1));
        assert_eq!(Some(Rule::Entries), due(&at(450, 300, 0), 300, 1));
        assert_eq!(None, due(&at(699, 450, 0), 300, 1));
        assert_eq!(Some(Rule::Entries), due(&at(700, 450, 0), 300, 1));
    }

    #[test]
    fn the_threshold_holds_for_a_small_state_and_half_the_keys_for_a_large_one() {
        assert_eq!(None, due0(&at(99, 0, 10), 100));
        assert_eq!(Some(Rule::Entries), due0(&at(100, 0, 10), 100));
        assert_eq!(Some(Rule::Entries), due0(&at(1_100, 1_000, 10), 100));
        assert_eq!(None, due0(&at(1_099, 1_000, 10), 100));
        // A million keys: every 500,000 entries, not every 100,000.
        assert_eq!(None, due0(&at(400_000, 0, 1_000_000), 100_000));
        assert_eq!(
            Some(Rule::Entries),
            due0(&at(500_000, 0, 1_000_000), 100_000)
        );
        // A snapshot newer than the applied index (just installed) is never due.
        assert_eq!(None, due0(&at(5, 10, 0), 1));
    }

    #[test]
    fn a_log_as_heavy_as_the_state_is_due_whatever_its_entry_count() {
        const MIB: u64 = 1024 * 1024;
        let big = |log_bytes, state_bytes| Progress {
            log_bytes,
            state_bytes,
            ..at(1_000, 0, 100)
        };
        // Large values: 1,000 entries are far below the threshold, but the bytes are not.
        assert_eq!(None, due0(&big(63 * MIB, 10 * MIB), 100_000));
        assert_eq!(Some(Rule::Bytes), due0(&big(64 * MIB, 10 * MIB), 100_000));
        assert_eq!(None, due0(&big(900 * MIB, 1_000 * MIB), 100_000));
        assert_eq!(
            Some(Rule::Bytes),
            due0(&big(1_000 * MIB, 1_000 * MIB), 100_000)
        );
    }

    #[test]
    fn the_purge_follows_openrafts_snapshot_until_it_is_done() {
        // Our snapshot index moved past 194, openraft's has not: nothing to ask yet.
        assert_eq!(PurgeStep::Wait, next_purge(194, 194, 130, None));
        // openraft knows the snapshot at 258 and purged to 194 only: ask up to 258.
        assert_eq!(PurgeStep::Ask(258), next_purge(194, 258, 194, None));
        // Just asked: leave it a moment, then ask again if it still has not landed.
        let now = Instant::now();
        assert_eq!(PurgeStep::Wait, next_purge(194, 258, 194, Some((258, now))));
        let old = now.checked_sub(RECHECK_EVERY).unwrap_or(now);
        assert_eq!(
            PurgeStep::Ask(258),
            next_purge(194, 258, 194, Some((258, old)))
        );
        // A newer snapshot is asked for at once.
        assert_eq!(
            PurgeStep::Ask(300),
            next_purge(194, 300, 194, Some((258, now)))
        );
        assert_eq!(PurgeStep::Done, next_purge(194, 258, 258, Some((258, now))));
    }
}
