//! Operating the agent: SIGHUP, maintenance, metrics, a bad config, the examples and the
//! systemd unit.

use super::*;

/// SIGHUP re-reads the config: a bad one is refused and the agent runs on; a good one's alert
/// command applies to the next alert.
#[tokio::test]
async fn sighup_rereads_the_config() -> anyhow::Result<()> {
    let rig = Rig::new().await?;
    let mode = rig.path().join("mode");
    std::fs::write(&mode, "pass")?;
    scripts(
        &rig,
        "hup",
        &format!("[ \"$(cat {})\" = pass ] || exit 2", mode.display()),
    )?;
    std::fs::write(
        rig.services().join("hup.toml"),
        service_toml("hup", 7901, 100, FAST),
    )?;
    let agent = rig.agent("", &[]).await?;
    rig.wait_one("hup", true).await?;
    let config = agent.dir().join("agent.toml");
    std::fs::write(&config, rig.config("bogus = 1\n"))?;
    agent.signal("HUP")?;
    let alerts = rig.path().join("alerts.jsonl");
    let good = rig.config(&format!(
        "[alert]\ncommand = \"cat >> {}\"\n",
        alerts.display()
    ));
    let mut agent = agent;
    agent
        .proc()
        .wait_for_line("config reload refused", SOON)
        .await?;
    assert!(agent.proc().is_running());
    std::fs::write(&config, good)?;
    agent.signal("HUP")?;
    agent.proc().wait_for_line("config re-read", SOON).await?;
    std::fs::write(&mode, "fail")?;
    let a = eventually(SOON, async || {
        let text = std::fs::read_to_string(&alerts)?;
        ensure!(!text.is_empty(), "no alert yet");
        Ok(text)
    })
    .await?;
    let a: Value = serde_json::from_str(&a)?;
    assert_eq!(
        (a["from"].as_str(), a["to"].as_str()),
        (Some("passing"), Some("critical"))
    );
    Ok(())
}

/// Maintenance takes a service out of traffic without stopping it, survives an agent restart,
/// and ends with `maint off`; the CLI and the HTTP API agree.
#[tokio::test]
async fn maintenance_survives_a_restart() -> anyhow::Result<()> {
    let rig = Rig::new().await?;
    scripts(&rig, "db", "exit 0")?;
    std::fs::write(
        rig.services().join("db.toml"),
        service_toml("db", 7701, 100, FAST),
    )?;
    let mut agent = rig.agent("", &[]).await?;
    rig.wait_one("db", true).await?;
    let http = agent.url().trim_start_matches("http://").to_owned();
    let ns = bin("ns-agent");
    run_cmd(
        &ns,
        [
            "--http",
            &http,
            "maint",
            "db",
            "on",
            "--reason",
            "disk swap",
        ],
        SOON,
    )
    .await?
    .success()?;
    rig.wait_none("db", true, SOON).await?;
    let i = rig.wait_one("db", false).await?;
    assert_eq!(i["status"], "critical");
    assert_eq!(i["meta"]["maintenance_reason"], "disk swap");
    let s = agent.service("db").await?;
    assert_eq!(s["state"], "maintenance", "{s}");
    let table = run_cmd(&ns, ["--http", &http, "status"], SOON)
        .await?
        .success()?;
    assert!(
        table.stdout.contains("db") && table.stdout.contains("maintenance"),
        "{}",
        table.stdout
    );
    let unknown = run_cmd(&ns, ["--http", &http, "maint", "nope", "on"], SOON).await?;
    assert_eq!(unknown.status.code(), Some(1));

    agent.restart().await?;
    let s = eventually(SOON, async || {
        let s = agent.service("db").await?;
        ensure!(s["state"] == "maintenance", "{s}");
        Ok(s)
    })
    .await?;
    assert_eq!(s["maintenance_reason"], "disk swap");
    let i = rig.wait_one("db", false).await?;
    assert_eq!(
        i["status"], "critical",
        "still out of traffic after the restart"
    );

    let reply = rig
        .api
        .request(
            reqwest::Method::PUT,
            &format!("{}/v1/agent/maintenance/db?enable=false", agent.url()),
            None,
            None,
        )
        .await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let back = rig.wait_one("db", true).await?;
    assert!(back["meta"].get("maintenance_reason").is_none(), "{back}");
    let bad = rig
        .api
        .request(
            reqwest::Method::PUT,
            &format!("{}/v1/agent/maintenance/db?enable=maybe", agent.url()),
            None,
            None,
        )
        .await?;
    assert_eq!(bad.status, 400);
    assert!(pid_alive(&rig.path().join("db.pid")));
    Ok(())
}

/// The agent's metrics name checks by result, transitions, registrations and store contact.
#[tokio::test]
async fn metrics_are_exported() -> anyhow::Result<()> {
    let rig = Rig::new().await?;
    scripts(&rig, "m", "exit 0")?;
    std::fs::write(
        rig.services().join("m.toml"),
        service_toml("m", 7801, 100, FAST),
    )?;
    let agent = rig.agent("", &[]).await?;
    rig.wait_one("m", true).await?;
    let text = rig
        .api
        .get_path(agent.url(), "/metrics")
        .await?
        .ok()?
        .text();
    for needle in [
        "ns_agent_checks_total{result=\"passing\"}",
        "ns_agent_check_duration_seconds_bucket",
        "ns_agent_registrations_total{op=\"put\",result=\"ok\"}",
        "ns_agent_store_connected 1",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    Ok(())
}

/// A bad agent config exits with code 2 and names the file, line and field.
#[tokio::test]
async fn a_bad_config_exits_2_naming_file_line_and_field() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "node = \"h\"\ndatacenter = \"dc1\"\nlease_ttl = 10\n",
    )?;
    let out = run_cmd(&bin("ns-agent"), [Path::new("--config"), &path], SOON).await?;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let want = format!("{}:3: lease_ttl:", path.display());
    assert!(out.stderr.contains(&want), "{}", out.stderr);
    Ok(())
}

/// The shipped example config and service validate, and the systemd unit passes
/// `systemd-analyze verify` where that tool exists.
#[tokio::test]
async fn the_examples_and_the_systemd_unit_check_out() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ns-agent");
    let ns = bin("ns-agent");
    let example = root.join("examples/agent.toml");
    let cfg = run_cmd(
        &ns,
        [Path::new("--config"), &example, Path::new("--check-config")],
        SOON,
    )
    .await?;
    assert_eq!(cfg.status.code(), Some(0), "{cfg:?}");
    let v = run_cmd(
        &ns,
        [Path::new("validate"), &root.join("examples/services.d")],
        SOON,
    )
    .await?;
    assert_eq!(v.status.code(), Some(0), "{v:?}");
    let unit = std::fs::read_to_string(root.join("ns-agent.service")).context("read the unit")?;
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        return Ok(());
    }
    // verify checks that ExecStart exists: point it at the binary just built.
    let dir = tempfile::tempdir()?;
    let copy = dir.path().join("ns-agent.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/ns-agent", &ns.display().to_string()),
    )?;
    let out = run_cmd(analyze, [Path::new("verify"), &copy], SOON).await?;
    let complaints: Vec<&str> = out
        .stderr
        .lines()
        .chain(out.stdout.lines())
        .filter(|l| l.contains("ns-agent.service"))
        .collect();
    if !out.status.success() || !complaints.is_empty() {
        bail!(
            "systemd-analyze verify: {}\n{}\n{}",
            out.status,
            out.stdout,
            out.stderr
        );
    }
    Ok(())
}
