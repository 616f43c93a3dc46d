//! A recorded history of puts and reads on a few keys, and a checker for it (Jepsen-style).
//!
//! Clients note each operation's invocation and completion time on one monotonic clock and
//! its outcome: a put is acknowledged with a revision, failed (the server promised that
//! nothing was applied) or unknown (a timeout, a reset); a read returns a value with its mod
//! revision and the store revision it was served at. Put values are unique, so a value names
//! the one put that wrote it. [`check`] (in `history/check.rs`) judges the history; driving
//! a cluster and injecting faults is the test's business.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyxis_client::api::Revision;
use tokio::time::Instant;

mod check;
#[cfg(test)]
mod tests;

pub use check::{Report, Stats, Violation, ViolationKind, check};

/// One completed operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Position in the history, assigned by [`Recorder::record`].
    pub id: usize,
    /// The client that issued it, for reports.
    pub client: String,
    /// The key it touched.
    pub key: String,
    /// When the request was about to be sent.
    pub invoked: Duration,
    /// When its outcome was known (reply read, or error returned).
    pub completed: Duration,
    /// What was asked and what came back.
    pub call: Call,
}

/// The request of an [`Op`] with its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// A put of a value no other put writes.
    Put {
        /// The unique value.
        value: String,
        /// How it ended.
        outcome: PutOutcome,
    },
    /// A linearizable read of the key.
    Read(ReadOutcome),
}

/// How a put ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// Acknowledged with the revision it created.
    Acked(Revision),
    /// Refused with the promise that nothing was applied (connect error, 503 `no_leader`).
    Failed(String),
    /// May or may not have been applied (timeout, reset, `unknown_outcome`).
    Unknown(String),
}

/// How a read ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The key holds `value`, last changed at `mod_rev`; the read was served at `revision`.
    Value {
        /// The value read.
        value: String,
        /// The key's mod revision.
        mod_rev: Revision,
        /// The store revision the read was served at.
        revision: Revision,
    },
    /// The key does not exist (404).
    Missing,
    /// No answer; a failed read tells nothing and the checker skips it.
    Failed(String),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{} {} [{:.6}s..{:.6}s] ",
            self.id,
            self.client,
            self.invoked.as_secs_f64(),
            self.completed.as_secs_f64()
        )?;
        match &self.call {
            Call::Put { value, outcome } => {
                write!(f, "put {}={value} -> ", self.key)?;
                match outcome {
                    PutOutcome::Acked(r) => write!(f, "acked rev {r}"),
                    PutOutcome::Failed(e) => write!(f, "failed ({e})"),
                    PutOutcome::Unknown(e) => write!(f, "unknown ({e})"),
                }
            }
            Call::Read(outcome) => {
                write!(f, "read {} -> ", self.key)?;
                match outcome {
                    ReadOutcome::Value {
                        value,
                        mod_rev,
                        revision,
                    } => write!(f, "{value} mod rev {mod_rev} (served at {revision})"),
                    ReadOutcome::Missing => write!(f, "not found"),
                    ReadOutcome::Failed(e) => write!(f, "failed ({e})"),
                }
            }
        }
    }
}

/// Collects operations from many client tasks; cheap to clone (clones share the history).
#[derive(Debug, Clone)]
pub struct Recorder {
    start: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
    acked: Arc<AtomicUsize>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty history whose clock starts now.
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            ops: Arc::default(),
            acked: Arc::default(),
        }
    }

    /// The history clock: time since [`Recorder::new`]. Take it just before sending a
    /// request (invocation) and just after its outcome is known (completion).
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Adds a completed operation (its `id` is overwritten with its position).
    pub fn record(&self, mut op: Op) {
        if matches!(
            op.call,
            Call::Put {
                outcome: PutOutcome::Acked(_),
                ..
            }
        ) {
            self.acked.fetch_add(1, Ordering::Relaxed);
        }
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        op.id = ops.len();
        ops.push(op);
    }

    /// How many puts were acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// A copy of everything recorded so far, in recording order.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
