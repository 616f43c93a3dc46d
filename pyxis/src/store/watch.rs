//! Change events and the bounded history that watches are served from.
//!
//! Applying a command yields one event per key it changed, all at the command's
//! revision. The state machine appends them to a [`History`] that keeps the most recent
//! events in memory; a watcher reads what follows its cursor, so it can never miss or
//! reorder an event while the history still holds its position, and gets a clear
//! "compacted" answer when it does not. The history is not replicated or snapshotted:
//! a snapshot install starts it at the snapshot's revision, and a restart, which installs
//! the last snapshot and re-applies the log after it, holds the events of that log.

use std::collections::VecDeque;

use bytes::Bytes;
use pyxis_client::api::Revision;
use serde::{Deserialize, Serialize};

use super::command::LeaseId;

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

/// The most recent events, oldest first.
#[derive(Debug)]
pub struct History {
    events: VecDeque<Event>,
    /// Events with revision <= this are not kept.
    compacted: Revision,
    /// How many events to keep at least (whole revisions are dropped together).
    capacity: usize,
}

impl History {
    /// An empty history starting after `revision`, keeping about `capacity` events.
    pub fn new(revision: Revision, capacity: usize) -> Self {
        History {
            events: VecDeque::new(),
            compacted: revision,
            capacity: capacity.max(1),
        }
    }

    /// Forgets everything and starts after `revision` (after a snapshot install).
    pub fn reset(&mut self, revision: Revision) {
        self.events.clear();
        self.compacted = revision;
    }

    /// The newest revision no longer kept.
    pub fn compact_revision(&self) -> Revision {
        self.compacted
    }

    /// Appends events (in revision order) and drops the oldest whole revisions beyond capacity.
    pub fn extend(&mut self, events: impl IntoIterator<Item = Event>) {
        self.events.extend(events);
        while self.events.len() > self.capacity {
            let Some(oldest) = self.events.front().map(|e| e.mod_rev) else {
                break;
            };
            while self.events.front().is_some_and(|e| e.mod_rev == oldest) {
                self.events.pop_front();
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
    fn limit_never_splits_a_revision() {
        let mut h = History::new(0, 100);
        h.extend([ev(1, "/a"), ev(1, "/b"), ev(1, "/c"), ev(2, "/d")]);
        let got = h.since(1, |_| true, 1).unwrap();
        assert_eq!(got.len(), 3);
    }
}
