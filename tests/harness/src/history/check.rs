//! The checks run over a recorded history (see the parent module for the model).
//!
//! Each check is a pass over the operations sorted by time, so 100k operations check in well
//! under a second. Real-time order is strict: A precedes B only if A completed before B was
//! invoked; overlapping operations may take effect in either order. The checks are sound
//! for a store with one global revision counter, not a general linearizability search.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use pyxis_client::api::Revision;

use super::{Call, Op, PutOutcome, ReadOutcome};

/// What kind of rule a [`Violation`] broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// The history itself is unusable: two puts of one value, a final read that failed,
    /// overlaps the workload or is missing for a key.
    Malformed,
    /// A read returned a value no put wrote to that key.
    UnknownValue,
    /// A read completed before the put of its value was even sent.
    ReadFromFuture,
    /// A read saw the value of a put that was refused as not applied.
    FailedPutVisible,
    /// A read of an acknowledged put's value has another mod revision than the ack said,
    /// or a mod revision above the revision the read was served at.
    RevisionMismatch,
    /// One value was seen with two mod revisions: its put was applied twice.
    TwoRevisions,
    /// One revision was given to two different writes.
    RevisionReused,
    /// A read missed a put on its key that was acknowledged before the read was sent.
    StaleRead,
    /// A read was served at a store revision below a put acknowledged before it was sent.
    StaleRevision,
    /// A read returned an older mod revision than a read of the same key that finished first.
    ReadWentBack,
    /// A read was served at a lower store revision than a read that finished first.
    RevisionWentBack,
    /// After healing, a key's value is older than a put acknowledged on it.
    LostWrite,
}

/// One broken rule, with the operations involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which rule.
    pub kind: ViolationKind,
    /// The operations and values involved, for a human.
    pub detail: String,
}

/// Counts of what the history holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Puts issued.
    pub puts: usize,
    /// Puts acknowledged with a revision.
    pub acked: usize,
    /// Puts refused as not applied.
    pub failed: usize,
    /// Puts whose outcome is unknown.
    pub unknown: usize,
    /// Unknown puts whose value some read saw (so they were applied).
    pub unknown_seen: usize,
    /// Reads that returned a value or not-found (final reads included).
    pub reads: usize,
    /// Reads that failed and were skipped.
    pub reads_failed: usize,
}

/// The checker's verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// What the history held.
    pub stats: Stats,
    /// Every broken rule; empty for a good history.
    pub violations: Vec<Violation>,
}

impl Report {
    /// How many violations are of `kind`.
    pub fn count(&self, kind: ViolationKind) -> usize {
        self.violations.iter().filter(|v| v.kind == kind).count()
    }

    /// Counts per kind, then up to `per_kind` details of each kind.
    pub fn summary(&self, per_kind: usize) -> String {
        let mut by_kind: BTreeMap<ViolationKind, Vec<&Violation>> = BTreeMap::new();
        for v in &self.violations {
            by_kind.entry(v.kind).or_default().push(v);
        }
        let mut out = format!("{} violations", self.violations.len());
        for (kind, vs) in &by_kind {
            out.push_str(&format!(", {kind:?}: {}", vs.len()));
        }
        for (kind, vs) in &by_kind {
            for v in vs.iter().take(per_kind) {
                out.push_str(&format!("\n{kind:?}: {}", v.detail));
            }
        }
        out
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "puts={} acked={} failed={} unknown={} unknown_seen={} reads={} reads_failed={}",
            self.puts,
            self.acked,
            self.failed,
            self.unknown,
            self.unknown_seen,
            self.reads,
            self.reads_failed
        )
    }
}

/// A read that returned something, flattened for the checks.
struct Read<'a> {
    op: &'a Op,
    /// None for not-found.
    value: Option<&'a str>,
    /// 0 for not-found: older than every write.
    mod_rev: Revision,
    /// Absent for not-found (a 404 carries no revision).
    served: Option<Revision>,
    /// A read taken after the workload stopped and every fault healed.
    is_final: bool,
}

/// Checks `history` and the `finals` (one read per key after healing, invoked after every
/// history operation completed) against the rules of [`ViolationKind`].
pub fn check(history: &[Op], finals: &[Op]) -> Report {
    let mut report = Report::default();
    let mut out = |kind: ViolationKind, detail: String| {
        report.violations.push(Violation { kind, detail });
    };
    let mut stats = Stats::default();

    // Puts by their unique value, and acknowledged ones in completion order.
    let mut puts: HashMap<&str, &Op> = HashMap::new();
    let mut acks: Vec<(&Op, Revision)> = Vec::new();
    for op in history {
        let Call::Put { value, outcome } = &op.call else {
            continue;
        };
        stats.puts += 1;
        match outcome {
            PutOutcome::Acked(r) => {
                stats.acked += 1;
                acks.push((op, *r));
            }
            PutOutcome::Failed(_) => stats.failed += 1,
            PutOutcome::Unknown(_) => stats.unknown += 1,
        }
        if let Some(first) = puts.insert(value, op) {
            out(
                ViolationKind::Malformed,
                format!("two puts of one value: {first} and {op}"),
            );
        }
    }
    acks.sort_by_key(|(op, _)| op.completed);

    let mut reads = Vec::new();
    for (ops, is_final) in [(history, false), (finals, true)] {
        for op in ops {
            let Call::Read(outcome) = &op.call else {
                if is_final {
                    out(
                        ViolationKind::Malformed,
                        format!("final op is no read: {op}"),
                    );
                }
                continue;
            };
            let read = match outcome {
                ReadOutcome::Value {
                    value,
                    mod_rev,
                    revision,
                } => Read {
                    op,
                    value: Some(value),
                    mod_rev: *mod_rev,
                    served: Some(*revision),
                    is_final,
                },
                ReadOutcome::Missing => Read {
                    op,
                    value: None,
                    mod_rev: 0,
                    served: None,
                    is_final,
                },
                ReadOutcome::Failed(_) if is_final => {
                    out(ViolationKind::Malformed, format!("final read failed: {op}"));
                    continue;
                }
                ReadOutcome::Failed(_) => {
                    stats.reads_failed += 1;
                    continue;
                }
            };
            stats.reads += 1;
            reads.push(read);
        }
    }
    check_finals(history, finals, &mut out);
    stats.unknown_seen = check_values(&puts, &reads, &mut out);
    check_revisions_unique(&acks, &reads, &mut out);
    check_not_stale(&acks, &reads, &mut out);
    check_monotonic(&reads, &mut out);
    report.stats = stats;
    report
}

/// Every key of the history has a final read, and every final read starts after the end.
fn check_finals(history: &[Op], finals: &[Op], out: &mut impl FnMut(ViolationKind, String)) {
    let end = history
        .iter()
        .map(|op| op.completed)
        .max()
        .unwrap_or_default();
    let keys: BTreeSet<&str> = history.iter().map(|op| op.key.as_str()).collect();
    let finals_keys: BTreeSet<&str> = finals.iter().map(|op| op.key.as_str()).collect();
    for key in keys.difference(&finals_keys) {
        out(ViolationKind::Malformed, format!("no final read of {key}"));
    }
    for op in finals.iter().filter(|op| op.invoked <= end) {
        out(
            ViolationKind::Malformed,
            format!(
                "final read sent before the workload ended at {:.6}s: {op}",
                end.as_secs_f64()
            ),
        );
    }
}

/// Rule 1: a value read is the one its put wrote, at the acknowledged revision, applied once.
/// Returns how many unknown puts were seen applied.
fn check_values(
    puts: &HashMap<&str, &Op>,
    reads: &[Read<'_>],
    out: &mut impl FnMut(ViolationKind, String),
) -> usize {
    // Per value, the first read seen at each mod revision.
    let mut seen: BTreeMap<&str, BTreeMap<Revision, &Op>> = BTreeMap::new();
    let mut unknown_seen = BTreeSet::new();
    for r in reads {
        let Some(value) = r.value else { continue };
        let Some(&put) = puts.get(value).filter(|p| p.key == r.op.key) else {
            out(
                ViolationKind::UnknownValue,
                format!("no put wrote {value} to {}: {}", r.op.key, r.op),
            );
            continue;
        };
        if r.op.completed < put.invoked {
            out(
                ViolationKind::ReadFromFuture,
                format!("{} returned the value of the later {put}", r.op),
            );
        }
        if let Call::Put { outcome, .. } = &put.call {
            match outcome {
                PutOutcome::Acked(rev) if *rev != r.mod_rev => out(
                    ViolationKind::RevisionMismatch,
                    format!("{} but its {put}", r.op),
                ),
                PutOutcome::Acked(_) => {}
                PutOutcome::Failed(_) => out(
                    ViolationKind::FailedPutVisible,
                    format!("{} saw the value of {put}", r.op),
                ),
                PutOutcome::Unknown(_) => {
                    unknown_seen.insert(value);
                }
            }
        }
        if let Some(served) = r.served.filter(|s| r.mod_rev > *s) {
            out(
                ViolationKind::RevisionMismatch,
                format!("{}: mod rev above the served revision {served}", r.op),
            );
        }
        seen.entry(value)
            .or_default()
            .entry(r.mod_rev)
            .or_insert(r.op);
    }
    for (value, revs) in seen.iter().filter(|(_, revs)| revs.len() > 1) {
        let reads: Vec<String> = revs.values().map(|op| op.to_string()).collect();
        out(
            ViolationKind::TwoRevisions,
            format!(
                "{value} seen at mod revs {:?}; put {}; first reads: {}",
                revs.keys().collect::<Vec<_>>(),
                puts[value],
                reads.join("; ")
            ),
        );
    }
    unknown_seen.len()
}

/// Rule 4b: one revision belongs to one write, over acks and reads of all keys.
fn check_revisions_unique(
    acks: &[(&Op, Revision)],
    reads: &[Read<'_>],
    out: &mut impl FnMut(ViolationKind, String),
) {
    let mut owner: HashMap<Revision, (&str, &str, &Op)> = HashMap::new();
    let mut reported = BTreeSet::new();
    let acked = acks.iter().filter_map(|(op, rev)| match &op.call {
        Call::Put { value, .. } => Some((*op, value.as_str(), *rev)),
        Call::Read(_) => None,
    });
    let read = reads
        .iter()
        .filter_map(|r| Some((r.op, r.value?, r.mod_rev)));
    for (op, value, rev) in acked.chain(read) {
        let (key, v, first) = *owner.entry(rev).or_insert((&op.key, value, op));
        if (key, v) != (op.key.as_str(), value) && reported.insert(rev) {
            out(
                ViolationKind::RevisionReused,
                format!(
                    "revision {rev} is {key}={v} per {first} and {}={value} per {op}",
                    op.key
                ),
            );
        }
    }
}

/// Rules 2 and 4a: a read sent after a put was acknowledged reflects it (its key's mod
/// revision and the store revision are at least the put's revision).
fn check_not_stale(
    acks: &[(&Op, Revision)],
    reads: &[Read<'_>],
    out: &mut impl FnMut(ViolationKind, String),
) {
    let mut by_invocation: Vec<&Read<'_>> = reads.iter().collect();
    by_invocation.sort_by_key(|r| r.op.invoked);
    let mut per_key: HashMap<&str, (Revision, &Op)> = HashMap::new();
    let mut global: Option<(Revision, &Op)> = None;
    let mut next = 0;
    for r in by_invocation {
        while let Some(&(op, rev)) = acks.get(next).filter(|(op, _)| op.completed < r.op.invoked) {
            let best = per_key.entry(&op.key).or_insert((rev, op));
            if rev > best.0 {
                *best = (rev, op);
            }
            if global.is_none_or(|(g, _)| rev > g) {
                global = Some((rev, op));
            }
            next += 1;
        }
        if let Some(&(rev, put)) = per_key.get(r.op.key.as_str())
            && r.mod_rev < rev
        {
            let kind = if r.is_final {
                ViolationKind::LostWrite
            } else {
                ViolationKind::StaleRead
            };
            out(kind, format!("{} after {put}", r.op));
        }
        if let (Some(served), Some((rev, put))) = (r.served, global)
            && served < rev
        {
            out(
                ViolationKind::StaleRevision,
                format!("{} after {put}", r.op),
            );
        }
    }
}

/// Rule 3: reads never go back in time, per key (mod revision) and store-wide (revision).
fn check_monotonic(reads: &[Read<'_>], out: &mut impl FnMut(ViolationKind, String)) {
    let mut by_completion: Vec<&Read<'_>> = reads.iter().collect();
    by_completion.sort_by_key(|r| r.op.completed);
    let mut by_invocation: Vec<&Read<'_>> = reads.iter().collect();
    by_invocation.sort_by_key(|r| r.op.invoked);
    let mut per_key: HashMap<&str, (Revision, &Op)> = HashMap::new();
    let mut global: Option<(Revision, &Op)> = None;
    let mut next = 0;
    for r in by_invocation {
        while let Some(done) = by_completion
            .get(next)
            .filter(|d| d.op.completed < r.op.invoked)
        {
            let best = per_key
                .entry(&done.op.key)
                .or_insert((done.mod_rev, done.op));
            if done.mod_rev > best.0 {
                *best = (done.mod_rev, done.op);
            }
            if let Some(s) = done.served
                && global.is_none_or(|(g, _)| s > g)
            {
                global = Some((s, done.op));
            }
            next += 1;
        }
        if let Some(&(rev, earlier)) = per_key.get(r.op.key.as_str())
            && r.mod_rev < rev
        {
            out(
                ViolationKind::ReadWentBack,
                format!("{} after {earlier}", r.op),
            );
        }
        if let (Some(served), Some((rev, earlier))) = (r.served, global)
            && served < rev
        {
            out(
                ViolationKind::RevisionWentBack,
                format!("{} after {earlier}", r.op),
            );
        }
    }
}
