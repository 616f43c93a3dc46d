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
    assert_gone_soon(&pidfile).await;
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
/// Asserts that the process whose pid `pidfile` holds is gone (or only a zombie) within 5 s:
/// a child killed with its group needs a moment for the kernel to deliver the signal.
async fn assert_gone_soon(pidfile: &Path) {
    let pid: i32 = std::fs::read_to_string(pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    while alive(pid) && !is_zombie(pid) && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive(pid) || is_zombie(pid), "child {pid} still runs");
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

#[tokio::test]
async fn no_agent_fd_leaks_into_the_script() {
    let dir = tempfile::tempdir().unwrap();
    // Any fd the agent opens (this file, the run's memfd) must be close-on-exec. (The test
    // runner's own inheritable fds, a jobserver pipe, may show up: they are not the agent's.)
    let _held = File::open(dir.path()).unwrap();
    let o = quick(&sh("ls -l /proc/self/fd/"), dir.path(), 5000).await;
    assert!(o.success(), "{o:?}");
    let listed: Vec<&str> = o.output.lines().filter(|l| l.contains(" -> ")).collect();
    assert!(listed.iter().any(|l| l.contains(" 1 -> ")), "{}", o.output);
    let dir_name = dir.path().display().to_string();
    for l in &listed {
        // fds 1 and 2 are the run's output file itself.
        let fd = l
            .split(" -> ")
            .next()
            .and_then(|f| f.split_whitespace().last());
        if matches!(fd, Some("1" | "2")) {
            continue;
        }
        assert!(!l.contains("ns-agent-output"), "output fd leaked: {l}");
        assert!(!l.ends_with(&dir_name), "agent file leaked: {l}");
    }
}

#[tokio::test]
async fn the_script_gets_default_signals_its_own_group_and_the_agent_environment() {
    let dir = tempfile::tempdir().unwrap();
    // Rust ignores SIGPIPE in the agent; a script must see it at its default, no signal
    // blocked, and lead its own group.
    let o = quick(
        &sh("grep -E '^Sig(Ign|Blk)' /proc/self/status; ps -o pid=,pgid= -p $$; echo \"path=$PATH\""),
        dir.path(),
        5000,
    )
    .await;
    assert!(o.success(), "{o:?}");
    let mask = |name: &str| {
        let line = o.output.lines().find(|l| l.starts_with(name)).unwrap_or("");
        u64::from_str_radix(line.trim_start_matches(name).trim(), 16).unwrap_or(u64::MAX)
    };
    // Signals 1-31 at their default; glibc's spawn leaves its two internal real-time signals
    // (32, 33) ignored, as std's posix_spawn path does.
    assert_eq!(mask("SigIgn:") & 0x7fff_ffff, 0, "{}", o.output);
    assert_eq!(mask("SigBlk:"), 0, "{}", o.output);
    let ids: Vec<&str> = o
        .output
        .lines()
        .find(|l| !l.starts_with("Sig") && !l.starts_with("path="))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(ids.len(), 2, "{}", o.output);
    assert_eq!(ids[0], ids[1], "not its own group leader: {}", o.output);
    let path = std::env::var("PATH").unwrap_or_default();
    assert!(o.output.contains(&format!("path={path}")), "{}", o.output);
}

#[tokio::test]
async fn a_prepared_script_runs_again_with_fresh_output_and_leaves_no_zombie() {
    let dir = tempfile::tempdir().unwrap();
    let p = prepare(
        &sh("echo run-$NS_SERVICE; echo $$"),
        dir.path(),
        &[
            ("NS_SERVICE", "web".into()),
            ("PATH", "/usr/bin:/bin".into()),
        ],
    );
    let opts = RunOptions {
        reap_group: true,
        ..RunOptions::default()
    };
    let mut pids = Vec::new();
    for _ in 0..3 {
        let o = run_prepared(&p, Duration::from_secs(5), opts.clone()).await;
        assert!(o.success(), "{o:?}");
        let mut lines = o.output.lines();
        assert_eq!(lines.next(), Some("run-web"), "{}", o.output);
        pids.push(lines.next().unwrap().parse::<i32>().unwrap());
        assert_eq!(
            lines.next(),
            None,
            "output of an earlier run kept: {}",
            o.output
        );
    }
    for pid in pids {
        assert!(!alive(pid), "{pid} not reaped");
    }
}

#[tokio::test]
async fn a_nul_byte_in_a_command_is_reported_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let o = quick(&sh("echo a\0b"), dir.path(), 5000).await;
    assert_eq!(o.exit, None);
    assert!(o.output.contains("NUL"), "{}", o.output);
}

#[tokio::test]
async fn a_script_that_cannot_be_executed_is_an_error_not_an_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("not-executable.sh");
    std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = quick(&Script::Path(p), dir.path(), 5000).await;
    assert_eq!(o.exit, None, "{o:?}");
    assert!(o.output.contains("cannot start"), "{}", o.output);
    assert!(o.output.contains("ermission denied"), "{}", o.output);
    let o = quick(&Script::Path(dir.path().join("gone.sh")), dir.path(), 5000).await;
    assert!(o.output.contains("No such file"), "{}", o.output);
    // A directory that is gone is the child's chdir failing, reported the same way.
    let gone = dir.path().join("gone-dir");
    let o = quick(&sh("true"), &gone, 5000).await;
    assert_eq!(o.exit, None, "{o:?}");
    assert!(o.output.contains("cannot start"), "{}", o.output);
    // A script's own exit 127 is an exit code, not a failure to start.
    let o = quick(&sh("echo ran; exit 127"), dir.path(), 5000).await;
    assert_eq!((o.exit, o.output.as_str()), (Some(127), "ran"), "{o:?}");
}

#[tokio::test]
async fn stdin_is_dev_null_and_no_pidfd_or_null_fd_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let o = quick(
        &sh("readlink /proc/self/fd/0; ls -l /proc/self/fd/ | grep -c -e pidfd -e anon_inode; cat"),
        dir.path(),
        5000,
    )
    .await;
    assert!(o.success() || o.exit == Some(1), "{o:?}");
    let lines: Vec<&str> = o.output.lines().collect();
    assert_eq!(lines, ["/dev/null", "0"], "{}", o.output);
}

#[test]
fn spawns_from_many_threads_at_once_each_get_their_own_result() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let path = dir.path().to_path_buf();
    rt.block_on(async move {
        let mut runs = Vec::new();
        for i in 0..64 {
            let path = path.clone();
            runs.push(tokio::spawn(async move {
                let env = [("NS_PORT", i.to_string())];
                let o = run(
                    &sh("echo $NS_PORT; exit $((NS_PORT % 3))"),
                    &path,
                    &env,
                    Duration::from_secs(10),
                    RunOptions {
                        reap_group: true,
                        ..RunOptions::default()
                    },
                )
                .await;
                (i, o)
            }));
        }
        for r in runs {
            let (i, o) = r.await.unwrap();
            assert_eq!(o.exit, Some(i % 3), "{o:?}");
            assert_eq!(o.output, i.to_string());
        }
    });
}

#[tokio::test]
async fn a_check_whose_child_escapes_to_the_background_is_killed_with_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("bg.pid");
    // The leader exits at once, leaving a hung child in its group: the group is killed then.
    let o = quick(
        &sh(&format!("sleep 300 & echo $! > {}", pidfile.display())),
        dir.path(),
        5000,
    )
    .await;
    assert!(o.success(), "{o:?}");
    assert_gone_soon(&pidfile).await;
}
