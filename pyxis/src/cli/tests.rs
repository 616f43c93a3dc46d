//! Parsing and output formatting of the client subcommands; no cluster involved.

use super::kv::{listing, value_out};
use super::members::members_table;
use super::status::status_report;
use super::*;
use crate::raft::snapshot::write_atomically;
use bytes::Bytes;
use clap::{CommandFactory as _, Parser};
use pyxis_client::api::{ClusterInfo, KeyValue, Member, NodeStatus};

/// The wiring `main.rs` is expected to use, in miniature.
#[derive(Debug, Parser)]
struct TestCli {
    #[command(flatten)]
    endpoints: EndpointsArg,
    #[command(subcommand)]
    command: ClientCommand,
}

fn parse(args: &[&str]) -> TestCli {
    let argv = std::iter::once("pyxis").chain(args.iter().copied());
    TestCli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn command_definition_is_consistent() {
    TestCli::command().debug_assert();
}

#[test]
fn endpoints_split_on_commas_before_or_after_the_subcommand() {
    let cli = parse(&["--endpoints", "a:1,b:2", "status"]);
    assert_eq!(cli.endpoints.endpoints, ["a:1", "b:2"]);
    let cli = parse(&["kv", "get", "/x", "--endpoints=http://c:3"]);
    assert_eq!(cli.endpoints.endpoints, ["http://c:3"]);
}

#[test]
fn kv_subcommands_parse() {
    let cli = parse(&[
        "--endpoints",
        "h:1",
        "kv",
        "put",
        "/a",
        "-",
        "--prev-rev",
        "0",
    ]);
    assert!(matches!(
        cli.command,
        ClientCommand::Kv(KvCmd::Put { ref key, ref value, prev_rev: Some(0), lease: None })
            if key == "/a" && value == "-"
    ));
    // A value that looks like a flag is still a value.
    let cli = parse(&["--endpoints", "h:1", "kv", "put", "/n", "-5"]);
    assert!(
        matches!(cli.command, ClientCommand::Kv(KvCmd::Put { ref value, .. }) if value == "-5")
    );
    let cli = parse(&["--endpoints", "h:1", "kv", "del", "/p", "--prefix"]);
    assert!(matches!(
        cli.command,
        ClientCommand::Kv(KvCmd::Del { prefix: true, .. })
    ));
    let cli = parse(&["--endpoints", "h:1", "kv", "ls"]);
    assert!(
        matches!(cli.command, ClientCommand::Kv(KvCmd::Ls { ref prefix, json: false, .. }) if prefix == "/")
    );
    let cli = parse(&["--endpoints", "h:1", "kv", "get", "/a", "--serializable"]);
    assert!(matches!(
        cli.command,
        ClientCommand::Kv(KvCmd::Get {
            serializable: true,
            ..
        })
    ));
}

#[test]
fn members_and_snapshot_parse() {
    let cli = parse(&["--endpoints", "h:1", "members"]);
    assert!(matches!(
        cli.command,
        ClientCommand::Members { command: None }
    ));
    let cli = parse(&[
        "--endpoints",
        "h:1",
        "members",
        "add",
        "4",
        "127.0.0.1:7074",
    ]);
    assert!(matches!(
        cli.command,
        ClientCommand::Members { command: Some(MembersCmd::Add { id: 4, ref addr }) } if addr == "127.0.0.1:7074"
    ));
    let cli = parse(&["--endpoints", "h:1", "members", "remove", "4"]);
    assert!(matches!(
        cli.command,
        ClientCommand::Members {
            command: Some(MembersCmd::Remove { id: 4 })
        }
    ));
    let cli = parse(&["--endpoints", "h:1", "snapshot", "save", "/tmp/s"]);
    assert!(matches!(
        cli.command,
        ClientCommand::Snapshot(SnapshotCmd::Save { .. })
    ));
}

#[test]
fn tables_align_columns_and_trim_line_ends() {
    let t = table(
        &["ID", "ADDR", "X"],
        &[
            vec!["1".into(), "127.0.0.1:7070".into(), "".into()],
            vec!["22".into(), "h:1".into(), "*".into()],
        ],
    );
    assert_eq!(
        t,
        "ID  ADDR            X\n1   127.0.0.1:7070\n22  h:1             *\n"
    );
}

#[test]
fn listing_keeps_one_line_per_key() {
    let kv = |key: &str, value: &'static [u8]| KeyValue {
        key: key.into(),
        value: Bytes::from_static(value),
        create_rev: 1,
        mod_rev: 1,
        version: 1,
        lease: None,
    };
    let out = listing(&[
        kv("/a", b"plain value"),
        kv("/b", b"line1\nline2\ttab \\ end"),
        kv("/c", b"\xff\x00"),
        kv("/d", b""),
    ]);
    assert_eq!(
        out,
        "/a\tplain value\n/b\tline1\\nline2\\ttab \\\\ end\n/c\t<2 bytes, not utf-8; see --json>\n/d\t\n"
    );
}

#[test]
fn members_table_marks_the_leader() {
    let info = ClusterInfo {
        leader: Some(2),
        term: 7,
        members: vec![
            Member {
                id: 1,
                addr: "127.0.0.1:7071".into(),
                voter: true,
                applied: Some(40),
                lag: Some(1),
                behind: false,
            },
            Member {
                id: 2,
                addr: "127.0.0.1:7072".into(),
                voter: true,
                applied: Some(41),
                lag: Some(0),
                behind: false,
            },
            Member {
                id: 3,
                addr: "127.0.0.1:7073".into(),
                voter: false,
                applied: None,
                lag: Some(1500),
                behind: true,
            },
        ],
    };
    assert_eq!(
        members_table(&info),
        "ID  ADDR            VOTER  APPLIED  LAG          LEADER\n\
         1   127.0.0.1:7071  yes    40       1\n\
         2   127.0.0.1:7072  yes    41       0            *\n\
         3   127.0.0.1:7073  no     -        1500 behind\n\
         leader 2 term 7\n"
    );
}

fn status(id: u64, term: u64, leader: Option<u64>) -> NodeStatus {
    NodeStatus {
        id,
        cluster_id: Some("00000000000000aa".into()),
        state: if leader == Some(id) {
            "leader"
        } else {
            "follower"
        }
        .into(),
        leader,
        term,
        last_log_index: Some(10),
        committed_index: Some(10),
        applied_index: Some(9),
        snapshot_index: None,
        revision: 5,
        keys: 3,
        millis_since_quorum_ack: Some(0),
        started_members: vec![],
    }
}

#[test]
fn status_report_shows_unreachable_nodes_and_the_newest_leader() {
    let answers = vec![
        ("h:1".to_owned(), Ok(status(1, 3, Some(1)))),
        ("h:2".to_owned(), Err("transport error: refused".to_owned())),
        // A node still at an old term names an old leader; the newest term wins.
        ("h:3".to_owned(), Ok(status(3, 2, Some(3)))),
    ];
    let out = status_report(&answers);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ENDPOINT  ID  STATE"), "{out}");
    assert!(lines[1].starts_with("h:1       1   leader"), "{out}");
    assert!(
        lines[2].starts_with("h:2       -   unreachable  -"),
        "{out}"
    );
    assert_eq!(lines[4], "cluster: leader 1 term 3");
    assert_eq!(lines[5], "cluster id: 00000000000000aa");

    let none = status_report(&[("h:1".to_owned(), Ok(status(1, 4, None)))]);
    assert!(
        none.ends_with("cluster: no leader known, term 4\ncluster id: 00000000000000aa\n"),
        "{none}"
    );
    let mut stranger = status(2, 4, None);
    stranger.cluster_id = Some("00000000000000bb".into());
    let mixed = status_report(&[
        ("h:1".to_owned(), Ok(status(1, 4, None))),
        ("h:2".to_owned(), Ok(stranger)),
    ]);
    assert!(
        mixed.ends_with(
            "warning: the endpoints belong to different clusters: \
             h:1=00000000000000aa, h:2=00000000000000bb\n"
        ),
        "{mixed}"
    );
    let down = status_report(&[("h:1".to_owned(), Err("x".to_owned()))]);
    assert!(down.ends_with("cluster: no endpoint answered\n"), "{down}");
}

#[test]
fn snapshot_file_is_replaced_whole() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.bin");
    write_atomically(&file, b"first").unwrap();
    write_atomically(&file, b"second").unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), b"second");
    // No temp file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from("snap.bin")]);
    assert!(write_atomically(&dir.path().join("missing/snap.bin"), b"x").is_err());
}

#[test]
fn kv_get_ends_its_value_with_a_newline_unless_raw() {
    assert_eq!(value_out(b"hello", false), b"hello\n");
    assert_eq!(value_out(b"hello", true), b"hello");
    // Binary values keep their bytes either way.
    assert_eq!(value_out(&[0xff, 0x00], false), [0xff, 0x00, b'\n']);
    let cli = parse(&["--endpoints", "h:1", "kv", "get", "/a", "--raw"]);
    assert!(matches!(
        cli.command,
        ClientCommand::Kv(KvCmd::Get { raw: true, .. })
    ));
}

#[test]
fn kv_del_of_everything_needs_all_and_no_key() {
    let cli = parse(&["--endpoints", "h:1", "kv", "del", "--all"]);
    assert!(matches!(
        cli.command,
        ClientCommand::Kv(KvCmd::Del {
            key: None,
            all: true,
            ..
        })
    ));
    let argv = |args: &[&str]| {
        TestCli::try_parse_from(
            ["pyxis", "--endpoints", "h:1", "kv", "del"]
                .into_iter()
                .chain(args.iter().copied()),
        )
    };
    assert!(argv(&[]).is_err(), "del without KEY or --all");
    assert!(argv(&["/a", "--all"]).is_err(), "KEY with --all");
    assert!(argv(&["--all", "--prefix"]).is_err(), "--all with --prefix");
}
