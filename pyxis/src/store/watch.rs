//! Change events and the bounded history that watches are served from.
//!
//! Applying a command yields one event per key it changed, all at the command's
//! revision. The state machine appends them to a [`History`] that keeps the most recent
//! events in memory, bounded by count and by bytes ([`HistoryLimits`]: values can be
//! megabytes each); a watcher reads what follows its cursor, so it can never miss or
//! reorder an event while the history still holds its position, and gets a clear
//! "compacted" answer when it does not. The history is not replicated or snapshotted:
//! a snapshot install starts it at the snapshot's revision, and a restart, which installs
//! the last snapshot and re-applies the log after it, holds the events of that log.

use std::collections::VecDeque;

use bytes::Bytes;
use pyxis_client::api::Revision;
use serde::{Deserialize, Serialize};

use super::value::LeaseId;

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// Created or changed.
    Put,
    /// Deleted.
    Delete,
}

/// One change to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key.
    pub key: String,
    /// The new value (empty for a delete).
    pub value: Bytes,
    /// The revision of the change.
    pub mod_rev: Revision,
    /// The lease the key is bound to after a put.
    pub lease: Option<LeaseId>,
}

/// The requested start is older than what the history keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Every revision up to this one is gone from the history.
    pub compact_revision: Revision,
}

/// How much history to keep: the oldest whole revisions go once either bound is passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Most events kept.
    pub events: usize,
    /// Most bytes of keys and values kept (about; see [`event_bytes`]).
    pub bytes: u64,
}

/// The default byte bound of the history.
pub const DEFAULT_HISTORY_BYTES: u64 = 64 * 1024 * 1024;

impl From<usize> for HistoryLimits {
    /// `events` events, and the default byte bound.
    fn from(events: usize) -> Self {
        HistoryLimits {
            events,
            bytes: DEFAULT_HISTORY_BYTES,
        }
    }
}

/// Bytes an event counts for: its key and value (a value is shared with the key space only
/// until the key changes again, so old events hold their values alone) plus a fixed cost.
pub fn event_bytes(e: &Event) -> u64 {
    64 + (e.key.len() + e.value.len()) as u64
}

/// The most recent events, oldest first.
#[derive(Debug)]
pub struct History {
    events: VecDeque<Event>,
    /// Events with revision <= this are not kept.
    compacted: Revision,
    limits: HistoryLimits,
    /// [`event_bytes`] of every event kept.
    bytes: u64,
}

impl History {
    /// An empty history starting after `revision`, keeping events within `limits`.
    pub fn new(revision: Revision, limits: impl Into<HistoryLimits>) -> Self {
        let mut limits = limits.into();
        limits.events = limits.events.max(1);
        History {
            events: VecDeque::new(),
            compacted: revision,
            limits,
            bytes: 0,
        }
    }

    /// Forgets everything and starts after `revision` (after a snapshot install).
    pub fn reset(&mut self, revision: Revision) {
        self.events.clear();
        self.bytes = 0;
        self.compacted = revision;
    }

    /// Bytes of the events kept.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The newest revision no longer kept.
    pub fn compact_revision(&self) -> Revision {
        self.compacted
    }

    /// Appends events (in revision order) and drops the oldest whole revisions beyond the
    /// limits (the newest revision stays, even when it alone is over them).
    pub fn extend(&mut self, events: impl IntoIterator<Item = Event>) {
        for e in events {
            self.bytes += event_bytes(&e);
            self.events.push_back(e);
        }
        while self.events.len() > self.limits.events || self.bytes > self.limits.bytes {
            let Some(oldest) = self.events.front().map(|e| e.mod_rev) else {
                break;
            };
            if self.events.back().is_some_and(|e| e.mod_rev == oldest) {
                break;
            }
            while self.events.front().is_some_and(|e| e.mod_rev == oldest) {
                if let Some(e) = self.events.pop_front() {
                    self.bytes -= event_bytes(&e);
                }
            }
            self.compacted = oldest;
        }
    }

    /// Events with revision >= `from` whose key matches, at most about `limit` of them
    /// (never splitting a revision). `Err` if revision `from` is no longer kept.
    pub fn since(
        &self,
        from: Revision,
        matches: impl Fn(&str) -> bool,
        limit: usize,
    ) -> Result<Vec<Event>, Compacted> {
        if from <= self.compacted {
            return Err(Compacted {
                compact_revision: self.compacted,
            });
        }
        let start = self.events.partition_point(|e| e.mod_rev < from);
        let mut out = Vec::new();
        let mut last_rev = 0;
        for e in self.events.range(start..) {
            if out.len() >= limit && e.mod_rev != last_rev {
                break;
            }
            last_rev = e.mod_rev;
            if matches(&e.key) {
                out.push(e.clone());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(rev: Revision, key: &str) -> Event {
        Event {
            kind: EventKind::Put,
            key: key.into(),
            value: Bytes::new(),
            mod_rev: rev,
            lease: None,
        }
    }

    #[test]
    fn since_filters_and_respects_compaction() {
        let mut h = History::new(0, 3);
        h.extend([ev(1, "/a"), ev(2, "/b"), ev(2, "/a/x"), ev(3, "/a")]);
        // Capacity 3: revision 1 was dropped as a whole.
        assert_eq!(h.compact_revision(), 1);
        assert_eq!(
            h.since(1, |_| true, 10),
            Err(Compacted {
                compact_revision: 1
            })
        );
        let got = h.since(2, |k| k.starts_with("/a"), 10).unwrap();
        assert_eq!(
            got.iter().map(|e| e.mod_rev).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert!(h.since(4, |_| true, 10).unwrap().is_empty());
    }

    #[test]
    fn the_history_is_bounded_by_bytes() {
        let big = |rev| Event {
            value: Bytes::from(vec![0u8; 1024 * 1024]),
            ..ev(rev, "/big")
        };
        let mut h = History::new(
            0,
            HistoryLimits {
                events: 100_000,
                bytes: 8 * 1024 * 1024,
            },
        );
        for rev in 1..=300 {
            h.extend([big(rev)]);
        }
        assert!(h.bytes() <= 8 * 1024 * 1024, "{}", h.bytes());
        // What was dropped answers "compacted", as with the count bound.
        let compacted = h.compact_revision();
        assert!(compacted >= 290, "{compacted}");
        assert!(h.since(compacted, |_| true, 10).is_err());
        assert_eq!(h.since(300, |_| true, 10).unwrap().len(), 1);
        // One revision larger than the bound is kept whole until the next one arrives.
        let mut tiny = History::new(
            0,
            HistoryLimits {
                events: 10,
                bytes: 1,
            },
        );
        tiny.extend([big(1), big(1)]);
        assert_eq!(tiny.since(1, |_| true, 10).unwrap().len(), 2);
        tiny.extend([big(2)]);
        assert_eq!(tiny.compact_revision(), 1);
    }

    #[test]
    fn limit_never_splits_a_revision() {
        let mut h = History::new(0, 100);
        h.extend([ev(1, "/a"), ev(1, "/b"), ev(1, "/c"), ev(2, "/d")]);
        let got = h.since(1, |_| true, 1).unwrap();
        assert_eq!(got.len(), 3);
    }
}
