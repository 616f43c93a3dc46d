//! Bounded reads of the key space: listings and the gets of transactions, counted while
//! they are built so that one reply never holds more than its byte budget.
//!
//! Pure functions of the state: the limit comes from the caller. HTTP handlers pass
//! `--max-response-bytes` and answer 413 once a read goes over it; `KvState::apply` passes
//! [`APPLY_RESULT_LIMIT`] to the gets of a transaction from the log, so every node cuts the
//! same result at the same entry. Writes are in `kv`.

use super::command::{Command, CommandResult, Op, TxnResult};
use super::kv::KvState;
use super::value::StoredValue;

/// Bytes an entry counts for on top of its key and value: about its JSON around them.
pub const ENTRY_OVERHEAD_BYTES: u64 = 96;

/// The most bytes of entries the gets of one transaction applied from the log return; a get
/// past it answers what fit, marked partial. A constant, not a flag: apply reads no config.
pub const APPLY_RESULT_LIMIT: u64 = 64 * 1024 * 1024;

/// What one entry weighs in a reply (an estimate of its JSON size; base64 or escapes can add
/// a little, never a factor that grows with the data).
pub fn reply_bytes(key: &str, e: &StoredValue) -> u64 {
    (key.len() + e.value.len()) as u64 + ENTRY_OVERHEAD_BYTES
}

/// A byte budget for one reply, spent entry by entry as the reply is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    limit: u64,
    used: u64,
    exceeded: bool,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Budget {
            limit,
            used: 0,
            exceeded: false,
        }
    }

    /// The limit it was made with.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether some entry did not fit; once it is, nothing more fits (so a cut is one place).
    pub fn exceeded(&self) -> bool {
        self.exceeded
    }

    /// Spends what `key` and its entry weigh in a reply if it fits; false otherwise.
    pub fn spend_entry(&mut self, key: &str, e: &StoredValue) -> bool {
        self.spend(reply_bytes(key, e))
    }

    /// Spends what a summary row naming `name_bytes` bytes weighs if it fits; false otherwise.
    pub fn spend_row(&mut self, name_bytes: usize) -> bool {
        self.spend(name_bytes as u64 + ENTRY_OVERHEAD_BYTES)
    }

    /// Spends `n` bytes if they fit; false (spending nothing) otherwise.
    fn spend(&mut self, n: u64) -> bool {
        if self.exceeded || self.used.saturating_add(n) > self.limit {
            self.exceeded = true;
            return false;
        }
        self.used += n;
        true
    }
}

/// The entries of one bounded read, and whether some were left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Read {
    /// The entries read, in key order.
    pub entries: Vec<(String, StoredValue)>,
    /// Whether entries under the key were left out (by the entry limit or the budget).
    pub more: bool,
}

/// Whether a transaction only reads: no put or delete in either branch, so it can be served
/// from the applied state instead of the log.
pub fn is_read_only(cmd: &Command) -> bool {
    match cmd {
        Command::Txn {
            success, failure, ..
        } => success
            .iter()
            .chain(failure)
            .all(|op| matches!(op, Op::Get { .. })),
        _ => false,
    }
}

impl KvState {
    /// Reads one key or a subtree: at most `max_entries` entries, and only while they fit
    /// `budget` (see [`Budget::exceeded`] for which stopped it). Never copies past the budget.
    pub fn read_bounded(
        &self,
        key: &str,
        prefix: bool,
        max_entries: Option<usize>,
        budget: &mut Budget,
    ) -> Read {
        let mut read = Read::default();
        if !prefix {
            if let Some(e) = self.get(key) {
                if budget.spend(reply_bytes(key, e)) {
                    read.entries.push((key.to_owned(), e.clone()));
                } else {
                    read.more = true;
                }
            }
            return read;
        }
        for (k, e) in self.range(key) {
            if max_entries.is_some_and(|max| read.entries.len() >= max)
                || !budget.spend(reply_bytes(k, e))
            {
                read.more = true;
                break;
            }
            read.entries.push((k.clone(), e.clone()));
        }
        read
    }

    /// The result of one get op of a transaction from the log: partial once `budget` is spent.
    pub(super) fn txn_get(&self, key: &str, prefix: bool, budget: &mut Budget) -> TxnResult {
        let read = self.read_bounded(key, prefix, None, budget);
        if read.more {
            TxnResult::GetPartial(read.entries)
        } else {
            TxnResult::Get(read.entries)
        }
    }

    /// Evaluates a read-only transaction as applying it would: the compares, then the gets of
    /// the branch they pick, at the current revision. `None` if it writes (it must go through
    /// the log); `Err` with the budget once the gets do not fit it, building nothing more.
    pub fn txn_read(
        &self,
        cmd: &Command,
        budget: &mut Budget,
    ) -> Option<Result<CommandResult, Budget>> {
        if !is_read_only(cmd) {
            return None;
        }
        let (succeeded, ops) = self.chosen_branch(cmd)?;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let Op::Get { key, prefix } = op else {
                return None;
            };
            let read = self.read_bounded(key, *prefix, None, budget);
            if budget.exceeded() {
                return Some(Err(*budget));
            }
            results.push(TxnResult::Get(read.entries));
        }
        Some(Ok(CommandResult::Txn {
            succeeded,
            revision: self.revision(),
            results,
        }))
    }

    /// For a transaction: whether its compares hold on the current state, and the ops of the
    /// branch that picks; `None` for any other command.
    fn chosen_branch<'c>(&self, cmd: &'c Command) -> Option<(bool, &'c [Op])> {
        let Command::Txn {
            compare,
            success,
            failure,
        } = cmd
        else {
            return None;
        };
        let succeeded = compare.iter().all(|c| self.holds(c));
        Some((succeeded, if succeeded { success } else { failure }))
    }

    /// Whether the gets of the branch a write transaction would run fit `budget` on the
    /// current state, counting without copying. A check before proposing: the applied result
    /// can still differ (other writes come first, or the txn's own puts add entries).
    pub fn txn_gets_fit(&self, cmd: &Command, budget: &mut Budget) -> bool {
        let Some((_, ops)) = self.chosen_branch(cmd) else {
            return true;
        };
        for op in ops {
            if let Op::Get { key, prefix } = op {
                let fits = if *prefix {
                    self.range(key)
                        .all(|(k, e)| budget.spend(reply_bytes(k, e)))
                } else {
                    self.get(key)
                        .is_none_or(|e| budget.spend(reply_bytes(key, e)))
                };
                if !fits {
                    return false;
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests;
