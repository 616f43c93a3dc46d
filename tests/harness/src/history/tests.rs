//! The checker on small hand-written histories: a good one passes, each rule trips alone.

use std::time::Duration;

use super::ViolationKind::*;
use super::*;

fn ms(t: u64) -> Duration {
    Duration::from_millis(t)
}

fn op(key: &str, span: (u64, u64), call: Call) -> Op {
    Op {
        id: 0,
        client: "c0".into(),
        key: key.into(),
        invoked: ms(span.0),
        completed: ms(span.1),
        call,
    }
}

fn put(key: &str, value: &str, span: (u64, u64), outcome: PutOutcome) -> Op {
    let value = value.into();
    op(key, span, Call::Put { value, outcome })
}

fn acked(key: &str, value: &str, span: (u64, u64), rev: Revision) -> Op {
    put(key, value, span, PutOutcome::Acked(rev))
}

fn unknown(key: &str, value: &str, span: (u64, u64)) -> Op {
    put(key, value, span, PutOutcome::Unknown("timed out".into()))
}

fn read(key: &str, value: &str, mod_rev: Revision, served: Revision, span: (u64, u64)) -> Op {
    let value = value.into();
    op(
        key,
        span,
        Call::Read(ReadOutcome::Value {
            value,
            mod_rev,
            revision: served,
        }),
    )
}

/// Numbers the ops as the recorder would.
fn numbered(mut ops: Vec<Op>) -> Vec<Op> {
    for (i, op) in ops.iter_mut().enumerate() {
        op.id = i;
    }
    ops
}

/// The kinds found, one entry per violation, sorted.
fn kinds(history: Vec<Op>, finals: Vec<Op>) -> Vec<ViolationKind> {
    let report = check(&numbered(history), &finals);
    let mut k: Vec<_> = report.violations.iter().map(|v| v.kind).collect();
    k.sort();
    k
}

#[test]
fn a_good_history_has_no_violations() {
    let history = vec![
        acked("/a", "a1", (0, 10), 1),
        acked("/b", "b1", (5, 12), 2),
        read("/a", "a1", 1, 2, (20, 30)),
        // A read that overlaps a put may see it or not.
        acked("/a", "a2", (40, 60), 3),
        read("/a", "a1", 1, 2, (41, 50)),
        read("/a", "a2", 3, 3, (45, 55)),
        // An unknown put may be applied, once, and seen later; a failed one is never seen.
        unknown("/b", "b2", (70, 80)),
        put("/b", "b3", (70, 75), PutOutcome::Failed("no_leader".into())),
        read("/b", "b2", 4, 4, (90, 95)),
        read("/b", "b2", 4, 5, (96, 99)),
        acked("/a", "a3", (100, 110), 5),
        // A failed read is skipped.
        op(
            "/a",
            (111, 112),
            Call::Read(ReadOutcome::Failed("timeout".into())),
        ),
    ];
    let finals = vec![
        read("/a", "a3", 5, 5, (200, 201)),
        read("/b", "b2", 4, 5, (200, 202)),
    ];
    let report = check(&numbered(history), &finals);
    assert!(report.violations.is_empty(), "{}", report.summary(10));
    assert_eq!(report.stats.acked, 4);
    assert_eq!(report.stats.unknown, 1);
    assert_eq!(report.stats.unknown_seen, 1);
    assert_eq!(report.stats.failed, 1);
    assert_eq!(report.stats.reads, 7);
    assert_eq!(report.stats.reads_failed, 1);
}

#[test]
fn an_acked_put_applied_twice_is_caught() {
    // The case: a1's first apply (at 9957) lost its reply, the retry applied it again
    // at 9963 and that was acknowledged, overwriting a2 in between.
    let history = vec![
        acked("/a", "a1", (0, 50), 9963),
        acked("/a", "a2", (20, 30), 9960),
        read("/a", "a1", 9957, 9957, (12, 15)),
        read("/a", "a1", 9963, 9963, (60, 65)),
    ];
    let finals = vec![read("/a", "a1", 9963, 9963, (100, 101))];
    assert_eq!(kinds(history, finals), [RevisionMismatch, TwoRevisions]);
}

#[test]
fn an_unknown_put_seen_at_two_revisions_is_caught() {
    let history = vec![
        unknown("/a", "a1", (0, 10)),
        read("/a", "a1", 3, 3, (20, 21)),
        read("/a", "a1", 7, 7, (30, 31)),
    ];
    let finals = vec![read("/a", "a1", 7, 7, (100, 101))];
    assert_eq!(kinds(history, finals), [TwoRevisions]);
}

#[test]
fn a_failed_put_must_stay_invisible() {
    let failed = PutOutcome::Failed("connect: refused".into());
    let history = vec![
        put("/a", "a1", (0, 10), failed),
        read("/a", "a1", 1, 1, (20, 21)),
    ];
    let finals = vec![read("/a", "a1", 1, 1, (100, 101))];
    assert_eq!(kinds(history, finals), [FailedPutVisible, FailedPutVisible]);
}

#[test]
fn values_must_come_from_a_put_on_that_key_sent_before() {
    let history = vec![
        acked("/a", "a1", (50, 60), 1),
        read("/a", "a1", 1, 1, (10, 20)),
        // a1 was written to /a, not /b.
        read("/b", "a1", 2, 2, (70, 80)),
    ];
    let finals = vec![
        read("/a", "a1", 1, 3, (100, 101)),
        read("/b", "zz", 3, 3, (100, 101)),
    ];
    assert_eq!(
        kinds(history, finals),
        [UnknownValue, UnknownValue, ReadFromFuture]
    );
}

#[test]
fn one_revision_for_two_acked_puts_is_caught() {
    let history = vec![acked("/a", "a1", (0, 10), 4), acked("/b", "b1", (0, 10), 4)];
    let finals = vec![
        read("/a", "a1", 4, 4, (100, 101)),
        read("/b", "b1", 4, 4, (100, 101)),
    ];
    assert_eq!(kinds(history, finals), [RevisionReused]);
}

#[test]
fn a_read_sent_after_an_ack_must_reflect_it() {
    let history = vec![
        acked("/a", "a1", (0, 10), 1),
        acked("/a", "a2", (20, 30), 2),
        // Sent after a2 was acknowledged, returns a1: stale.
        read("/a", "a1", 1, 2, (31, 40)),
        acked("/b", "b1", (50, 60), 3),
        // Another key, but served at a store revision below b1's acknowledged revision.
        read("/a", "a2", 2, 2, (61, 70)),
    ];
    let finals = vec![
        read("/a", "a2", 2, 3, (100, 101)),
        read("/b", "b1", 3, 3, (100, 101)),
    ];
    assert_eq!(kinds(history, finals), [StaleRead, StaleRevision]);
}

#[test]
fn a_missing_key_after_an_ack_is_stale() {
    let mut gone = read("/a", "x", 0, 0, (20, 30));
    gone.call = Call::Read(ReadOutcome::Missing);
    let history = vec![acked("/a", "a1", (0, 10), 1), gone];
    let finals = vec![read("/a", "a1", 1, 1, (100, 101))];
    assert_eq!(kinds(history, finals), [StaleRead]);
}

#[test]
fn reads_must_not_go_back_in_time() {
    // Neither put was acknowledged, so only the reads order them.
    let history = vec![
        unknown("/a", "a1", (0, 100)),
        unknown("/a", "a2", (0, 100)),
        read("/a", "a2", 5, 5, (10, 20)),
        read("/a", "a1", 3, 4, (30, 40)),
        // Overlapping the first read: may come before it.
        read("/a", "a1", 3, 3, (15, 25)),
    ];
    let finals = vec![read("/a", "a2", 5, 5, (200, 201))];
    assert_eq!(kinds(history, finals), [ReadWentBack, RevisionWentBack]);
}

#[test]
fn a_final_value_older_than_an_ack_is_a_lost_write() {
    let history = vec![
        acked("/a", "a1", (0, 10), 1),
        acked("/a", "a2", (20, 30), 2),
    ];
    let finals = vec![read("/a", "a1", 1, 2, (100, 101))];
    assert_eq!(kinds(history, finals), [LostWrite]);
}

#[test]
fn finals_must_cover_every_key_and_follow_the_workload() {
    let history = vec![acked("/a", "a1", (0, 10), 1), acked("/b", "b1", (0, 50), 2)];
    let finals = vec![read("/a", "a1", 1, 2, (40, 41))];
    assert_eq!(kinds(history, finals), [Malformed, Malformed]);
}

#[test]
fn the_summary_counts_and_shows_details() {
    let history = vec![
        unknown("/a", "a1", (0, 10)),
        read("/a", "a1", 3, 3, (20, 21)),
    ];
    let finals = vec![read("/a", "a1", 4, 4, (100, 101))];
    let report = check(&numbered(history), &finals);
    let text = report.summary(5);
    assert!(text.starts_with("1 violations, TwoRevisions: 1"), "{text}");
    assert!(text.contains("put /a=a1"), "{text}");
    assert_eq!(report.count(TwoRevisions), 1);
}

#[test]
fn the_recorder_numbers_ops_and_counts_acks() {
    let rec = Recorder::new();
    rec.record(acked("/a", "a1", (0, 1), 1));
    rec.record(unknown("/a", "a2", (0, 1)));
    rec.record(acked("/a", "a3", (0, 1), 2));
    assert_eq!(rec.acked(), 2);
    let ids: Vec<usize> = rec.ops().iter().map(|op| op.id).collect();
    assert_eq!(ids, [0, 1, 2]);
}
