use bytes::Bytes;
use pyxis_client::api::CompareOp;

use super::*;
use crate::store::command::{Compare, CompareTarget};

fn put(key: &str, value: Bytes) -> Command {
    Command::Put {
        key: key.into(),
        value,
        prev_rev: None,
        lease: None,
    }
}

fn state(keys: usize, value: &Bytes) -> KvState {
    let mut s = KvState::default();
    for i in 0..keys {
        s.apply(put(&format!("/p/{i:05}"), value.clone()), &mut Vec::new());
    }
    s
}

fn get(key: &str, prefix: bool) -> Op {
    Op::Get {
        key: key.into(),
        prefix,
    }
}

fn txn(compare: Vec<Compare>, success: Vec<Op>, failure: Vec<Op>) -> Command {
    Command::Txn {
        compare,
        success,
        failure,
    }
}

#[test]
fn a_bounded_read_stops_at_the_entry_limit_and_at_the_budget() {
    let s = state(10, &Bytes::from_static(b"0123456789"));
    let per_entry = reply_bytes("/p/00000", s.get("/p/00000").unwrap());

    let mut budget = Budget::new(u64::MAX);
    let r = s.read_bounded("/p/", true, Some(3), &mut budget);
    assert_eq!(
        (r.entries.len(), r.more, budget.exceeded()),
        (3, true, false)
    );
    assert_eq!(r.entries[0].0, "/p/00000");

    let r = s.read_bounded("/p/", true, Some(10), &mut Budget::new(u64::MAX));
    assert_eq!((r.entries.len(), r.more), (10, false));

    // Four entries fit, the fifth does not: it is not copied and the budget says why.
    let mut budget = Budget::new(per_entry * 4 + per_entry / 2);
    let r = s.read_bounded("/p/", true, None, &mut budget);
    assert_eq!(
        (r.entries.len(), r.more, budget.exceeded()),
        (4, true, true)
    );
    // Once over, nothing more fits, not even a small single key.
    let r = s.read_bounded("/p/00009", false, None, &mut budget);
    assert_eq!((r.entries.len(), r.more), (0, true));
}

#[test]
fn a_read_only_txn_answers_what_applying_it_would() {
    let mut s = state(5, &Bytes::from_static(b"v"));
    let holds = Compare {
        key: "/p/00001".into(),
        op: CompareOp::Eq,
        target: CompareTarget::Value(Bytes::from_static(b"v")),
    };
    let fails = Compare {
        target: CompareTarget::Exists(false),
        ..holds.clone()
    };
    for compare in [vec![holds], vec![fails]] {
        let cmd = txn(
            compare,
            vec![get("/p/", true), get("/p/00003", false)],
            vec![get("/none", false), get("/p/0000", true)],
        );
        assert!(is_read_only(&cmd));
        let read = s
            .txn_read(&cmd, &mut Budget::new(u64::MAX))
            .unwrap()
            .unwrap();
        let before = s.revision();
        let applied = s.apply(cmd, &mut Vec::new());
        assert_eq!(read, applied);
        assert_eq!(s.revision(), before, "a read-only txn changes nothing");
    }
}

#[test]
fn a_read_only_txn_over_the_budget_is_refused_whole() {
    let s = state(100, &Bytes::from(vec![b'x'; 1000]));
    let cmd = txn(vec![], vec![get("/p/", true); 5], vec![]);
    let limit = 3 * 100 * 1100;
    let Some(Err(budget)) = s.txn_read(&cmd, &mut Budget::new(limit)) else {
        panic!("five listings of 100 KB fit 330 KB")
    };
    assert_eq!(budget.limit(), limit);
}

#[test]
fn writes_are_not_served_as_reads() {
    let cmd = txn(
        vec![],
        vec![get("/a", false)],
        vec![Op::Delete {
            key: "/a".into(),
            prefix: false,
        }],
    );
    assert!(!is_read_only(&cmd));
    assert_eq!(
        KvState::default().txn_read(&cmd, &mut Budget::new(u64::MAX)),
        None
    );
    assert!(!is_read_only(&put("/a", Bytes::new())));
}

#[test]
fn the_gets_of_a_write_txn_are_checked_against_the_branch_that_runs() {
    let s = state(10, &Bytes::from(vec![b'x'; 1000]));
    let write = Op::Put {
        key: "/w".into(),
        value: Bytes::new(),
        lease: None,
    };
    let never = Compare {
        key: "/p/00000".into(),
        op: CompareOp::Eq,
        target: CompareTarget::Exists(false),
    };
    let big = txn(vec![], vec![write.clone(), get("/p/", true)], vec![]);
    assert!(!s.txn_gets_fit(&big, &mut Budget::new(5_000)));
    assert!(s.txn_gets_fit(&big, &mut Budget::new(20_000)));
    // The success branch does not run, so its get is not counted.
    let skipped = txn(vec![never], vec![get("/p/", true)], vec![write]);
    assert!(s.txn_gets_fit(&skipped, &mut Budget::new(1)));
}

/// A txn from the log whose gets hold more than the apply limit still applies its writes,
/// and every node cuts the gets at the same entry.
#[test]
fn applying_a_txn_bounds_its_gets_the_same_way_everywhere() {
    let four_mib = Bytes::from(vec![b'x'; 4 * 1024 * 1024]);
    // 20 keys of 4 MiB (one shared buffer) weigh 80 MiB, more than the 64 MiB limit.
    let base = state(20, &four_mib);
    let cmd = txn(
        vec![],
        vec![
            get("/p/", true),
            Op::Put {
                key: "/q".into(),
                value: Bytes::from_static(b"1"),
                lease: None,
            },
            get("/p/", true),
        ],
        vec![],
    );
    let mut results = Vec::new();
    for _ in 0..2 {
        let mut s = base.clone();
        let r = s.apply(cmd.clone(), &mut Vec::new());
        assert_eq!(s.get("/q").map(|e| e.value.clone()), Some("1".into()));
        results.push(r);
    }
    assert_eq!(results[0], results[1]);
    let CommandResult::Txn { results, .. } = &results[0] else {
        panic!("not a txn result: {:?}", results[0])
    };
    let TxnResult::GetPartial(first) = &results[0] else {
        panic!("the first get is not cut: {:?}", results[0])
    };
    let fit = APPLY_RESULT_LIMIT / reply_bytes("/p/00000", base.get("/p/00000").unwrap());
    assert_eq!(first.len() as u64, fit);
    assert_eq!(results[2], TxnResult::GetPartial(vec![]));
}
