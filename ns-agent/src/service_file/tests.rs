use std::os::unix::fs::PermissionsExt as _;

use super::*;

const GOOD: &str = r#"name = "hotel"
port = 8080
address = "10.0.0.5"
version = "v1"
weight = 100
tags = ["http"]
meta = { owner = "team-a" }
[health]
interval = "2s"
timeout = "1s"
fail_after = 3
pass_after = 2
[scripts]
start = "./start.sh"
stop = "./stop.sh"
health = "./health.sh"
reload = "./reload.sh"
"#;

/// A directory with the four scripts, executable.
fn dir_with_scripts() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for s in ["start.sh", "stop.sh", "health.sh", "reload.sh"] {
        let p = dir.path().join(s);
        std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

fn parse_in(dir: &Path, text: &str) -> Result<ServiceSpec, ServiceFileError> {
    parse(text, &dir.join("hotel.toml"))
}

#[test]
fn the_issue_example_parses() {
    let dir = dir_with_scripts();
    let s = parse_in(dir.path(), GOOD).unwrap();
    assert_eq!(s.name.to_string(), "hotel");
    assert_eq!(s.port, 8080);
    assert_eq!(s.health.interval, Duration::from_secs(2));
    assert_eq!(s.health.pass_after, 2);
    assert_eq!(
        s.scripts.start,
        Some(Script::Path(dir.path().join("./start.sh")))
    );
    assert_eq!(s.instance_id("host-1").unwrap().to_string(), "host-1-hotel");
    let dc = DcName::parse("dc1").unwrap();
    let i = s.instance(
        "host-1",
        &dc,
        "127.0.0.1".parse().unwrap(),
        Health::Passing,
        &[],
    );
    assert_eq!(i.address.to_string(), "10.0.0.5");
    assert_eq!(i.meta.get("owner").map(String::as_str), Some("team-a"));
}

#[test]
fn shell_commands_and_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let s = parse_in(
        dir.path(),
        "name = \"a.b\"\nport = 1\nid = \"custom-1\"\n[scripts]\nhealth = \"curl -fs http://127.0.0.1:1/\"\n",
    )
    .unwrap();
    assert_eq!(
        s.scripts.health,
        Script::Shell("curl -fs http://127.0.0.1:1/".into())
    );
    assert_eq!(s.scripts.start, None);
    assert_eq!(s.health.fail_after, 3);
    assert_eq!(s.weight, 100);
    assert_eq!(s.instance_id("h").unwrap().to_string(), "custom-1");
}

#[test]
fn errors_name_line_and_field() {
    let dir = dir_with_scripts();
    let cases: Vec<(String, Option<usize>, &str)> = vec![
        (GOOD.replace("port = 8080", "port = \"x\""), Some(2), "port"),
        (GOOD.replace("port = 8080", "port = 70000"), Some(2), "port"),
        (GOOD.replace("port = 8080", "port = 0"), Some(2), "port"),
        (
            GOOD.replace("weight = 100", "weight = 5000"),
            Some(5),
            "weight",
        ),
        (
            GOOD.replace("weight = 100", "wieght = 5"),
            Some(5),
            "wieght",
        ),
        (
            GOOD.replace("name = \"hotel\"", "name = \"Ho tel\""),
            Some(1),
            "name",
        ),
        (
            GOOD.replace("timeout = \"1s\"", "timeout = \"1\""),
            Some(10),
            "health.timeout",
        ),
        (
            GOOD.replace("timeout = \"1s\"", "timeout = \"5s\""),
            Some(10),
            "health.timeout",
        ),
        (
            GOOD.replace("fail_after = 3", "fail_after = 0"),
            Some(11),
            "health.fail_after",
        ),
        (
            GOOD.replace("\"./start.sh\"", "\"./missing.sh\""),
            Some(14),
            "scripts.start",
        ),
        (
            GOOD.replace("tags = [\"http\"]", "tags = [\"a b\"]"),
            Some(6),
            "tags[0]",
        ),
        (
            GOOD.replace("address = \"10.0.0.5\"", "address = \"0.0.0.0\""),
            Some(3),
            "address",
        ),
        (GOOD.replace("[scripts]", "[scripts\n"), Some(13), ""),
        (
            GOOD.replace("health = \"./health.sh\"\n", ""),
            Some(13),
            "scripts.health",
        ),
    ];
    for (text, line, field) in cases {
        let e = parse_in(dir.path(), &text).unwrap_err();
        assert_eq!(e.line, line, "{e}\n{text}");
        if !field.is_empty() {
            assert_eq!(e.field, field, "{e}");
        }
        assert!(e.to_string().contains("hotel.toml"), "{e}");
    }
}

#[test]
fn a_non_executable_script_is_refused() {
    let dir = dir_with_scripts();
    let p = dir.path().join("health.sh");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = parse_in(dir.path(), GOOD).unwrap_err();
    assert_eq!((e.field.as_str(), e.line), ("scripts.health", Some(16)));
    assert!(e.message.contains("not executable"), "{e}");
}

#[test]
fn a_directory_loads_good_files_and_reports_bad_ones() {
    let dir = dir_with_scripts();
    let d = dir.path();
    std::fs::write(d.join("a.toml"), GOOD).unwrap();
    std::fs::write(d.join("b.toml"), GOOD.replace("port = 8080", "port = -1")).unwrap();
    std::fs::write(d.join("c.toml"), GOOD).unwrap();
    std::fs::write(d.join(".hidden.toml"), "garbage").unwrap();
    std::fs::write(d.join("notes.txt"), "garbage").unwrap();
    let (good, bad) = load_dir(d, &BTreeMap::new());
    assert_eq!(good.len(), 1);
    assert_eq!(good[0].path, d.join("a.toml"));
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert_eq!(bad[0].file, d.join("b.toml"));
    assert_eq!(bad[0].service.as_deref(), Some("hotel"));
    assert_eq!(bad[1].file, d.join("c.toml"));
    assert_eq!(bad[1].field, "name");
    assert!(bad[1].message.contains("already defined in"), "{}", bad[1]);

    // The file already running keeps the name.
    let keep = BTreeMap::from([(good[0].name.clone(), d.join("c.toml"))]);
    let (good, bad) = load_dir(d, &keep);
    assert_eq!(good[0].path, d.join("c.toml"));
    assert!(bad.iter().any(|e| e.file == d.join("a.toml")));
}

#[test]
fn restart_fields() {
    let dir = dir_with_scripts();
    let a = parse_in(dir.path(), GOOD).unwrap();
    let weight = parse_in(dir.path(), &GOOD.replace("weight = 100", "weight = 5")).unwrap();
    let port = parse_in(dir.path(), &GOOD.replace("port = 8080", "port = 8081")).unwrap();
    assert!(!a.needs_restart(&weight));
    assert!(a.needs_restart(&port));
}
