//! Admission after `pass_after` passes, flap-damped health with alerts, hung checks
//! (acceptance 1, 2, 4).

use super::*;

/// Acceptance 1: no registration before `pass_after` passes; `start` ran once.
#[tokio::test]
async fn registers_only_after_pass_after_passes() -> anyhow::Result<()> {
    let rig = Rig::new().await?;
    // The first two checks fail, then all pass: the earliest registration is after check 5.
    let checks = rig.path().join("web.checks");
    scripts(
        &rig,
        "web",
        &format!(
            "n=$(wc -l < {}); [ \"$n\" -gt 2 ] || exit 2; exit 0",
            checks.display()
        ),
    )?;
    let health = "interval = \"200ms\"\ntimeout = \"150ms\"\nfail_after = 3\npass_after = 3";
    std::fs::write(
        rig.services().join("web.toml"),
        service_toml("web", 8080, 100, health),
    )?;
    let agent = rig.agent("", &[]).await?;
    let inst = eventually(SOON, async || {
        let list = rig.instances("web", false).await?;
        ensure!(list.len() == 1, "not registered yet");
        // Read the count right when the instance is first seen.
        Ok((list[0].clone(), lines(&checks).len()))
    })
    .await?;
    assert!(inst.1 >= 5, "registered after only {} checks", inst.1);
    let i = &inst.0;
    assert_eq!(i["id"], "host-1-web");
    assert_eq!(i["status"], "passing");
    assert_eq!(i["node"], "host-1");
    assert_eq!(i["datacenter"], "dc1");
    assert_eq!(i["address"], "127.0.0.1");
    assert_eq!(i["port"], 8080);
    assert!(i["lease"].as_u64().is_some(), "{i}");
    let s = agent.service("web").await?;
    assert_eq!(s["state"], "passing", "{s}");
    assert_eq!(s["instance_id"], "host-1-web");
    assert_eq!(s["last_check"]["exit"], 0, "{s}");
    let events = lines(&rig.path().join("web.events"));
    assert_eq!(
        events,
        ["start 8080 web host-1 dc1"],
        "start runs once, with the env"
    );
    Ok(())
}

/// Acceptance 2: `fail_after` failures take it out of healthy listings in time and alert
/// (command and webhook); recovery re-admits it and alerts; a single failure changes nothing.
#[tokio::test]
async fn failing_health_goes_critical_alerts_and_recovers() -> anyhow::Result<()> {
    let rig = Rig::new().await?;
    let mode = rig.path().join("mode");
    std::fs::write(&mode, "pass")?;
    // `blip` fails exactly once, then passes again.
    let body = format!(
        "m=$(cat {m})\ncase $m in\n  fail) echo failing-now; exit 2;;\n  \
         blip) echo pass > {m}; echo blip; exit 2;;\nesac\necho fine; exit 0",
        m = mode.display()
    );
    scripts(&rig, "pay", &body)?;
    std::fs::write(
        rig.services().join("pay.toml"),
        service_toml("pay", 9000, 100, FAST),
    )?;
    let sink = WebhookSink::start().await?;
    let alerts = rig.path().join("alerts.jsonl");
    let extra = format!(
        "[alert]\ncommand = \"cat >> {}; echo >> {}\"\nwebhook = \"{}\"\n",
        alerts.display(),
        alerts.display(),
        sink.url()
    );
    let agent = rig.agent(&extra, &[]).await?;
    rig.wait_one("pay", true).await?;

    // One blip: the failure is seen, and nothing else happens.
    std::fs::write(&mode, "blip")?;
    eventually(SOON, async || {
        let s = agent.service("pay").await?;
        let out = s["last_check"]["output"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        ensure!(
            std::fs::read_to_string(&mode)? == "pass\n",
            "blip not run yet"
        );
        ensure!(out == "fine", "no pass after the blip yet: {s}");
        Ok(())
    })
    .await?;
    assert_eq!(
        rig.instances("pay", true).await?.len(),
        1,
        "a blip must not remove it"
    );
    assert_eq!(agent.service("pay").await?["state"], "passing");
    assert!(lines(&alerts).is_empty(), "a blip must not alert");
    assert!(sink.bodies().is_empty());

    // Real failure: out of the healthy listing within interval x fail_after + 1 s.
    let t0 = Instant::now();
    std::fs::write(&mode, "fail")?;
    rig.wait_none("pay", true, SOON).await?;
    let took = t0.elapsed();
    assert!(
        took <= Duration::from_millis(200 * 3 + 1000),
        "removal took {took:?}"
    );
    let listed = rig.wait_one("pay", false).await?;
    assert_eq!(listed["status"], "critical");
    let check_alert = |a: &Value, from: &str, to: &str| {
        assert_eq!(a["service"], "pay", "{a}");
        assert_eq!(a["instance"], "host-1-pay", "{a}");
        assert_eq!(a["node"], "host-1", "{a}");
        assert_eq!(a["from"], from, "{a}");
        assert_eq!(a["to"], to, "{a}");
        assert!(a["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{a}");
        assert!(a["output"].is_string(), "{a}");
    };
    let (cmd, hook) = eventually(SOON, async || {
        let cmd = lines(&alerts);
        let hook = sink.bodies();
        ensure!(
            !cmd.is_empty() && !hook.is_empty(),
            "alerts: {cmd:?} {hook:?}"
        );
        Ok((cmd, hook))
    })
    .await?;
    let a: Value = serde_json::from_str(&cmd[0])?;
    check_alert(&a, "passing", "critical");
    assert_eq!(a["output"], "failing-now");
    check_alert(&serde_json::from_str(&hook[0])?, "passing", "critical");
    let s = agent.service("pay").await?;
    assert_eq!(s["state"], "critical", "{s}");
    assert!(s["failures"].as_u64().unwrap_or(0) >= 3, "{s}");

    // Recovery: passing again after pass_after passes, with a second alert.
    std::fs::write(&mode, "pass")?;
    let back = rig.wait_one("pay", true).await?;
    assert_eq!(back["status"], "passing");
    assert_eq!(back["id"], "host-1-pay");
    let (cmd, hook) = eventually(SOON, async || {
        let cmd = lines(&alerts);
        let hook = sink.bodies();
        ensure!(
            cmd.len() >= 2 && hook.len() >= 2,
            "alerts: {cmd:?} {hook:?}"
        );
        Ok((cmd, hook))
    })
    .await?;
    check_alert(&serde_json::from_str(&cmd[1])?, "critical", "passing");
    check_alert(&serde_json::from_str(&hook[1])?, "critical", "passing");
    assert_eq!(cmd.len(), 2, "{cmd:?}");
    Ok(())
}

/// Acceptance 4: a hung health check that forked a hung child is killed at `timeout`, the
/// whole group, and counts as a failure.
#[tokio::test]
async fn a_hung_check_and_its_child_are_killed_at_the_timeout() -> anyhow::Result<()> {
    let rig = Rig::new().await?;
    let hang = rig.path().join("hang");
    let child = rig.path().join("hung-child");
    scripts(
        &rig,
        "slow",
        &format!(
            "if [ -e {h} ]; then sleep 300 & echo $! > {c}; echo hanging; sleep 300; fi\nexit 0",
            h = hang.display(),
            c = child.display()
        ),
    )?;
    let health = "interval = \"400ms\"\ntimeout = \"300ms\"\nfail_after = 2\npass_after = 1";
    std::fs::write(
        rig.services().join("slow.toml"),
        service_toml("slow", 7100, 100, health),
    )?;
    let agent = rig.agent("", &[]).await?;
    rig.wait_one("slow", true).await?;
    std::fs::write(&hang, "")?;
    rig.wait_none("slow", true, SOON).await?;
    let s = agent.service("slow").await?;
    assert_eq!(s["state"], "critical", "{s}");
    assert!(s["failures"].as_u64().unwrap_or(0) >= 2, "{s}");
    let last = &s["last_check"];
    assert!(last["exit"].is_null(), "{s}");
    assert!(
        last["output"]
            .as_str()
            .is_some_and(|o| o.contains("hanging") && o.contains("timeout")),
        "{s}"
    );
    let ms = last["duration_ms"].as_u64().unwrap_or(0);
    assert!((300..2000).contains(&ms), "killed after {ms} ms");
    // The child was in the script's process group: it is gone too.
    let pidfile = child.with_extension("pid");
    std::fs::rename(&child, &pidfile)?;
    eventually(SOON, async || {
        ensure!(!pid_alive(&pidfile), "the hung child still runs");
        Ok(())
    })
    .await?;
    Ok(())
}
