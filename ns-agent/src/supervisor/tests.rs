use std::os::unix::fs::PermissionsExt as _;

use super::*;

fn sh(s: &str) -> Script {
    Script::Shell(s.into())
}

async fn quick(script: &Script, dir: &Path, timeout_ms: u64) -> Outcome {
    run(
        script,
        dir,
        &[("NS_SERVICE", "web".into()), ("NS_PORT", "8080".into())],
        Duration::from_millis(timeout_ms),
        RunOptions {
            reap_group: true,
            ..RunOptions::default()
        },
    )
    .await
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[tokio::test]
async fn exit_codes_env_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let o = quick(
        &sh("echo \"$NS_SERVICE:$NS_PORT\"; echo oops >&2; exit 1"),
        dir.path(),
        5000,
    )
    .await;
    assert_eq!(o.exit, Some(1));
    assert!(!o.timed_out);
    assert!(o.output.contains("web:8080"), "{}", o.output);
    assert!(o.output.contains("oops"), "{}", o.output);
    let o = quick(&sh("pwd"), dir.path(), 5000).await;
    assert!(o.success());
    assert!(
        o.output
            .ends_with(dir.path().file_name().unwrap().to_str().unwrap()),
        "{}",
        o.output
    );
}

#[tokio::test]
async fn a_path_script_runs_directly_and_a_missing_one_reports() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("check.sh");
    std::fs::write(&p, "#!/bin/sh\necho from-file\nexit 3\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = quick(&Script::Path(p), dir.path(), 5000).await;
    assert_eq!((o.exit, o.output.as_str()), (Some(3), "from-file"));
    let o = quick(&Script::Path(dir.path().join("gone.sh")), dir.path(), 5000).await;
    assert_eq!(o.exit, None);
    assert!(o.output.contains("cannot start"), "{}", o.output);
}

#[tokio::test]
async fn output_keeps_the_last_4k() {
    let dir = tempfile::tempdir().unwrap();
    let o = quick(
        &sh("i=0; while [ $i -lt 2000 ]; do echo line$i; i=$((i+1)); done"),
        dir.path(),
        10_000,
    )
    .await;
    assert!(o.output.len() <= OUTPUT_LIMIT);
    assert!(
        o.output.ends_with("line1999"),
        "{}",
        &o.output[o.output.len() - 20..]
    );
    assert!(!o.output.contains("line10\n"));
}

#[tokio::test]
async fn a_hung_script_and_its_hung_child_are_killed_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let script = sh(&format!(
        "sleep 300 & echo $! > {}; echo started; wait",
        pidfile.display()
    ));
    let started = Instant::now();
    let o = quick(&script, dir.path(), 300).await;
    assert!(o.timed_out);
    assert_eq!(o.exit, None);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(o.output.contains("started"), "{}", o.output);
    assert!(o.output.contains("timeout"), "{}", o.output);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The child is killed with the group; give the kernel a moment to deliver it.
    let end = Instant::now() + Duration::from_secs(5);
    while alive(pid) && !is_zombie(pid) && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive(pid) || is_zombie(pid), "child {pid} still runs");
}

#[tokio::test]
async fn start_leaves_its_background_server_running() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("server.pid");
    let script = sh(&format!("sleep 300 & echo $! > {}", pidfile.display()));
    let o = run(
        &script,
        dir.path(),
        &[],
        Duration::from_secs(5),
        RunOptions::default(),
    )
    .await;
    assert!(o.success(), "{o:?}");
    assert!(o.duration < Duration::from_secs(2), "{o:?}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    // SAFETY: plain signal to the test's own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

#[tokio::test]
async fn stdin_is_passed() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &sh("cat"),
        dir.path(),
        &[],
        Duration::from_secs(5),
        RunOptions {
            stdin: Some(b"{\"a\":1}".to_vec()),
            reap_group: true,
        },
    )
    .await;
    assert_eq!(o.output, "{\"a\":1}");
}

/// A killed child reparented to a non-reaping init may linger as a zombie; it no longer runs.
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}
