//! Client sessions: the request ids already applied, with their results.
//!
//! A write that travels with a [`RequestId`] is applied once: the first copy to reach the
//! state machine is applied and its result remembered; any later copy (a client retry
//! after a lost reply, a forwarding retry, an entry a deposed leader appended and the next
//! leader committed) answers that result and changes nothing (the Raft dissertation's
//! client sessions, §6.3). Memory is bounded: the oldest results are forgotten first, in
//! apply order, and the highest forgotten sequence number of each session is kept, so a
//! late copy of a forgotten request is answered "outcome unknown" instead of being applied
//! again. Everything here is a function of the applied log alone, so every node forgets
//! the same ids at the same index. The ids themselves come from `pyxis_client::request_id`.

use imbl::{OrdMap, Vector};
use pyxis_client::RequestId;
use serde::{Deserialize, Serialize};

use super::command::{CommandResult, TxnResult};

/// Most request results remembered at once.
pub const MAX_REMEMBERED: usize = 100_000;

/// Most bytes of remembered results (about; see [`result_bytes`]).
pub const MAX_REMEMBERED_BYTES: u64 = 64 * 1024 * 1024;

/// Most sessions whose forgotten floor is kept.
pub const MAX_FLOORS: usize = 100_000;

/// A result larger than this is not kept: a repeat of it answers "outcome unknown".
const MAX_KEPT_RESULT_BYTES: u64 = 4 * 1024 * 1024;

/// What a request id is known as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Applied before, with this result.
    Applied(CommandResult),
    /// Possibly applied before, but forgotten: its outcome cannot be told.
    Forgotten,
    /// Never applied: apply it now.
    New,
}

/// The table of applied request ids; cloning is O(1) (persistent maps), as for the key space.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sessions {
    /// Remembered results by request id.
    results: OrdMap<RequestId, CommandResult>,
    /// Remembered ids, oldest applied first.
    order: Vector<RequestId>,
    /// Bytes of `results`, as [`result_bytes`] counts them.
    bytes: u64,
    /// Per session, the highest sequence number forgotten.
    floors: OrdMap<u64, u64>,
    /// Sessions in `floors`, in the order they were first given a floor.
    floor_order: Vector<u64>,
}

impl Sessions {
    /// What `id` is known as.
    pub fn check(&self, id: RequestId) -> Seen {
        if let Some(r) = self.results.get(&id) {
            return Seen::Applied(r.clone());
        }
        match self.floors.get(&id.session) {
            Some(&floor) if id.seq <= floor => Seen::Forgotten,
            _ => Seen::New,
        }
    }

    /// Remembers that `id` was applied with `result`, forgetting the oldest beyond the bounds.
    pub fn record(&mut self, id: RequestId, result: &CommandResult) {
        let size = result_bytes(result);
        let kept = if size > MAX_KEPT_RESULT_BYTES {
            CommandResult::OutcomeUnknown
        } else {
            result.clone()
        };
        self.bytes += result_bytes(&kept);
        self.results.insert(id, kept);
        self.order.push_back(id);
        while self.order.len() > MAX_REMEMBERED || self.bytes > MAX_REMEMBERED_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(r) = self.results.remove(&old) {
                self.bytes -= result_bytes(&r);
            }
            self.raise_floor(old);
        }
    }

    /// Marks every sequence number of `id`'s session up to `id.seq` as forgotten.
    fn raise_floor(&mut self, id: RequestId) {
        match self.floors.get_mut(&id.session) {
            Some(floor) => *floor = (*floor).max(id.seq),
            None => {
                self.floors.insert(id.session, id.seq);
                self.floor_order.push_back(id.session);
                while self.floor_order.len() > MAX_FLOORS {
                    if let Some(s) = self.floor_order.pop_front() {
                        self.floors.remove(&s);
                    }
                }
            }
        }
    }

    /// How many results are remembered.
    pub fn len(&self) -> usize {
        self.results.len()
    }

    /// Whether no result is remembered.
    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }
}

/// Bytes a result counts for: a fixed cost plus the keys and values a transaction read.
pub fn result_bytes(r: &CommandResult) -> u64 {
    const FIXED: u64 = 48;
    match r {
        CommandResult::Txn { results, .. } => {
            FIXED
                + results
                    .iter()
                    .map(|t| match t {
                        TxnResult::Get(entries) | TxnResult::GetPartial(entries) => entries
                            .iter()
                            .map(|(k, e)| FIXED + (k.len() + e.value.len()) as u64)
                            .sum(),
                        TxnResult::Put | TxnResult::Delete(_) => 8,
                    })
                    .sum::<u64>()
        }
        _ => FIXED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(session: u64, seq: u64) -> RequestId {
        RequestId { session, seq }
    }

    fn put(revision: u64) -> CommandResult {
        CommandResult::Put { revision }
    }

    #[test]
    fn a_recorded_id_answers_its_first_result() {
        let mut s = Sessions::default();
        assert_eq!(s.check(id(1, 1)), Seen::New);
        s.record(id(1, 1), &put(7));
        assert_eq!(s.check(id(1, 1)), Seen::Applied(put(7)));
        assert_eq!(s.check(id(1, 2)), Seen::New);
        assert_eq!(s.check(id(2, 1)), Seen::New);
    }

    #[test]
    fn the_oldest_are_forgotten_first_and_then_answer_unknown() {
        let mut s = Sessions::default();
        for seq in 1..=(MAX_REMEMBERED as u64 + 10) {
            s.record(id(9, seq), &put(seq));
        }
        assert_eq!(s.len(), MAX_REMEMBERED);
        assert_eq!(s.check(id(9, 10)), Seen::Forgotten);
        assert_eq!(s.check(id(9, 11)), Seen::Applied(put(11)));
        // Another session is not affected by session 9's floor.
        assert_eq!(s.check(id(8, 1)), Seen::New);
    }

    #[test]
    fn a_huge_result_is_not_kept_but_its_id_is() {
        let mut s = Sessions::default();
        let big = CommandResult::Txn {
            succeeded: true,
            revision: 3,
            results: vec![TxnResult::Get(vec![(
                "/k".into(),
                crate::store::value::StoredValue {
                    value: vec![0u8; 5 * 1024 * 1024].into(),
                    create_rev: 1,
                    mod_rev: 1,
                    version: 1,
                    lease: None,
                },
            )])],
        };
        s.record(id(1, 1), &big);
        assert_eq!(
            s.check(id(1, 1)),
            Seen::Applied(CommandResult::OutcomeUnknown)
        );
        assert!(s.bytes < 1024);
    }

    #[test]
    fn results_are_bounded_by_bytes_too() {
        let mut s = Sessions::default();
        let entry = crate::store::value::StoredValue {
            value: vec![0u8; 1024 * 1024].into(),
            create_rev: 1,
            mod_rev: 1,
            version: 1,
            lease: None,
        };
        let txn = CommandResult::Txn {
            succeeded: true,
            revision: 1,
            results: vec![TxnResult::Get(vec![("/k".into(), entry)])],
        };
        for seq in 1..=100 {
            s.record(id(1, seq), &txn);
        }
        assert!(s.bytes <= MAX_REMEMBERED_BYTES);
        assert!(s.len() < 100);
        assert_eq!(s.check(id(1, 1)), Seen::Forgotten);
    }

    #[test]
    fn floors_are_bounded_per_session_count() {
        let mut s = Sessions::default();
        // One remembered result per session, so that each new one forgets another session.
        for session in 1..=(MAX_REMEMBERED + MAX_FLOORS + 5) as u64 {
            s.record(id(session, 1), &put(session));
        }
        assert!(s.floors.len() <= MAX_FLOORS);
        assert_eq!(s.floors.len(), s.floor_order.len());
    }
}
