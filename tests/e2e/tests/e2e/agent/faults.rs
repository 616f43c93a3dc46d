//! kill -9 of the agent, a store outage, SIGTERM (acceptance 5, 6, 9).

use super::*;

/// Acceptance 5: kill -9 of the agent: instances vanish within `lease_ttl + 1 s`; a restart
/// registers each once, with the same ids.
#[tokio::test]
async fn kill9_expires_the_instances_and_a_restart_registers_each_once() -> anyhow::Result<()> {
    let rig = Rig::new().await?;
    for (name, port) in [("a", 7201), ("b", 7202)] {
        scripts(&rig, name, "exit 0")?;
        std::fs::write(
            rig.services().join(format!("{name}.toml")),
            service_toml(name, port, 100, FAST),
        )?;
    }
    let mut agent = rig.agent("", &[]).await?;
    let a = rig.wait_one("a", true).await?;
    let b = rig.wait_one("b", true).await?;
    let t0 = Instant::now();
    agent.kill9()?;
    rig.wait_none("a", false, SOON).await?;
    rig.wait_none("b", false, SOON).await?;
    let took = t0.elapsed();
    assert!(
        took <= Duration::from_millis(2000 + 1000),
        "instances vanished after {took:?}"
    );
    assert!(
        pid_alive(&rig.path().join("a.pid")),
        "the service must survive the agent"
    );

    agent.restart().await?;
    let a2 = rig.wait_one("a", true).await?;
    let b2 = rig.wait_one("b", true).await?;
    assert_eq!(a2["id"], a["id"]);
    assert_eq!(b2["id"], b["id"]);
    assert_ne!(
        a2["lease"], a["lease"],
        "registered on the new agent's lease"
    );
    // Watch a while: still exactly one each.
    for _ in 0..10 {
        assert_eq!(rig.instances("a", false).await?.len(), 1);
        assert_eq!(rig.instances("b", false).await?.len(), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Acceptance 6: the store is down for 10 s: services stay up, checks continue, and once the
/// store is back the instances are there with their current health, once each.
#[tokio::test]
async fn a_store_outage_keeps_checks_running_and_reregisters_with_current_health()
-> anyhow::Result<()> {
    let mut rig = Rig::new().await?;
    let mode = rig.path().join("mode");
    std::fs::write(&mode, "pass")?;
    scripts(&rig, "up", "exit 0")?;
    scripts(
        &rig,
        "down",
        &format!("[ \"$(cat {})\" = pass ] || exit 2", mode.display()),
    )?;
    std::fs::write(
        rig.services().join("up.toml"),
        service_toml("up", 7301, 100, FAST),
    )?;
    std::fs::write(
        rig.services().join("down.toml"),
        service_toml("down", 7302, 100, FAST),
    )?;
    let agent = rig.agent("", &[]).await?;
    rig.wait_one("up", true).await?;
    rig.wait_one("down", true).await?;

    let t0 = Instant::now();
    rig.cluster.kill9(1)?;
    std::fs::write(&mode, "fail")?;
    let checks_before = lines(&rig.path().join("up.checks")).len();
    eventually(SOON, async || {
        let st = agent.status().await?;
        ensure!(st["store"]["connected"] == false, "{}", st["store"]);
        let down = agent.service("down").await?;
        ensure!(down["state"] == "critical", "{down}");
        Ok(())
    })
    .await?;
    // The outage lasts 10 s, as the scenario says; the agent is observed meanwhile.
    while t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let st = agent.status().await?;
    assert!(
        st["store"]["staleness_ms"].as_u64().unwrap_or(0) >= 5000,
        "{}",
        st["store"]
    );
    assert!(
        lines(&rig.path().join("up.checks")).len() > checks_before + 10,
        "checks stopped"
    );
    assert!(pid_alive(&rig.path().join("up.pid")));
    assert!(pid_alive(&rig.path().join("down.pid")));

    rig.cluster.restart(1).await?;
    let up = rig.wait_one("up", true).await?;
    assert_eq!(up["status"], "passing");
    let down = eventually(SOON, async || {
        let list = rig.instances("down", false).await?;
        ensure!(
            list.len() == 1 && list[0]["status"] == "critical",
            "{list:?}"
        );
        Ok(list[0].clone())
    })
    .await?;
    assert_eq!(down["id"], "host-1-down");
    // Nothing stale comes back later (an old lease expiring must not take the new keys).
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(4) {
        assert_eq!(rig.instances("up", false).await?.len(), 1);
        assert_eq!(rig.instances("down", false).await?.len(), 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eventually(SOON, async || {
        let st = agent.status().await?;
        ensure!(st["store"]["connected"] == true, "{}", st["store"]);
        Ok(())
    })
    .await?;
    Ok(())
}

/// Acceptance 9: SIGTERM deregisters every instance, then exits, leaving the service running;
/// with `--stop-services-on-exit` the service is stopped after the drain.
#[tokio::test]
async fn sigterm_deregisters_and_leaves_the_service_running() -> anyhow::Result<()> {
    let rig = Rig::new().await?;
    scripts(&rig, "keep", "exit 0")?;
    std::fs::write(
        rig.services().join("keep.toml"),
        service_toml("keep", 7601, 100, FAST),
    )?;
    let mut agent = rig.agent("", &[]).await?;
    rig.wait_one("keep", true).await?;
    agent.signal("TERM")?;
    agent.wait_exit(SOON).await?;
    // Deregistration happens before the exit, not by lease expiry later.
    assert!(rig.instances("keep", false).await?.is_empty());
    assert!(
        pid_alive(&rig.path().join("keep.pid")),
        "the service must keep running"
    );
    assert_eq!(
        lines(&rig.path().join("keep.events")),
        ["start 7601 keep host-1 dc1"]
    );

    let mut agent = rig.agent("", &["--stop-services-on-exit"]).await?;
    rig.wait_one("keep", true).await?;
    agent.signal("TERM")?;
    agent.wait_exit(SOON).await?;
    assert!(rig.instances("keep", false).await?.is_empty());
    let events = lines(&rig.path().join("keep.events"));
    assert_eq!(
        events.last().map(String::as_str),
        Some("stop"),
        "{events:?}"
    );
    // The signal from the stop script takes a moment to end the process.
    eventually(SOON, async || {
        ensure!(
            !pid_alive(&rig.path().join("keep.pid")),
            "stop did not stop it"
        );
        Ok(())
    })
    .await?;
    Ok(())
}
