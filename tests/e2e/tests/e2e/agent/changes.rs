//! Removal (deregister, drain, stop), bad files, in-place changes and restarts
//! (acceptance 3, 7, 8).

use super::*;

/// Acceptance 3: removing the file deregisters before `stop` runs, and `stop` waits `drain`.
#[tokio::test]
async fn removal_deregisters_then_drains_then_stops() -> anyhow::Result<()> {
    let rig = Rig::new().await?;
    scripts(&rig, "cart", "exit 0")?;
    // The stop script asks the store whether the instance is still registered.
    let probe = rig.path().join("cart.stop-probe");
    write_script(
        &rig.path().join("cart/stop.sh"),
        &format!(
            "date +%s%N > {p}.at\ncurl -s -o /dev/null -w '%{{http_code}}' \
             {store}/v1/services/cart/instances/host-1-cart > {p}\n\
             kill $(cat {d}/cart.pid)",
            p = probe.display(),
            store = rig.store(),
            d = rig.path().display()
        ),
    )?;
    std::fs::write(
        rig.services().join("cart.toml"),
        service_toml("cart", 7000, 100, FAST),
    )?;
    let config = rig
        .config("")
        .replace("drain = \"300ms\"", "drain = \"1500ms\"");
    let agent = Agent::start(rig.path(), &config, &[]).await?;
    rig.wait_one("cart", false).await?;
    let removed_at = now_ns();
    std::fs::remove_file(rig.services().join("cart.toml"))?;
    rig.wait_none("cart", false, SOON).await?;
    let code = eventually(SOON, async || {
        let code = std::fs::read_to_string(&probe)?;
        ensure!(!code.is_empty(), "stop has not run");
        Ok(code)
    })
    .await?;
    assert_eq!(
        code, "404",
        "stop ran while the instance was still registered"
    );
    let stop_at: u128 = std::fs::read_to_string(probe.with_extension("stop-probe.at"))?
        .trim()
        .parse()?;
    let waited = Duration::from_nanos((stop_at - removed_at) as u64);
    assert!(
        waited >= Duration::from_millis(1500),
        "stop ran {waited:?} after the removal"
    );
    // The stop script kills the service after writing its probe.
    eventually(SOON, async || {
        ensure!(
            !pid_alive(&rig.path().join("cart.pid")),
            "stop did not kill the service"
        );
        Ok(())
    })
    .await?;
    eventually(SOON, async || {
        let st = agent.status().await?;
        ensure!(
            st["services"].as_array().is_some_and(|s| s.is_empty()),
            "{st}"
        );
        Ok(())
    })
    .await?;
    Ok(())
}

/// Acceptance 7: a broken file next to a good one: the good one registers; the broken one is
/// reported with file, line and field by the status API and by `ns-agent validate`; a good
/// file that turns bad keeps its last good definition.
#[tokio::test]
async fn a_broken_file_is_reported_and_changes_nothing_else() -> anyhow::Result<()> {
    let rig = Rig::new().await?;
    scripts(&rig, "good", "exit 0")?;
    scripts(&rig, "bad", "exit 0")?;
    let good = rig.services().join("good.toml");
    std::fs::write(&good, service_toml("good", 7401, 100, FAST))?;
    // Line 3: an unknown field.
    let broken = service_toml("bad", 7402, 100, FAST).replace("weight = 100", "wieght = 100");
    std::fs::write(rig.services().join("bad.toml"), &broken)?;
    let mut agent = rig.agent("", &[]).await?;
    rig.wait_one("good", true).await?;
    assert!(rig.instances("bad", false).await?.is_empty());
    let bad = eventually(SOON, async || agent.service("bad").await).await?;
    assert_eq!(bad["state"], "error", "{bad}");
    let e = &bad["error"];
    assert!(
        e["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("services.d/bad.toml")),
        "{bad}"
    );
    assert_eq!(e["line"], 3, "{bad}");
    assert_eq!(e["field"], "wieght", "{bad}");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown field")),
        "{bad}"
    );

    let out = run_cmd(
        &bin("ns-agent"),
        [Path::new("validate"), &rig.services()],
        SOON,
    )
    .await?;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stdout.contains("bad.toml:3: wieght: unknown field"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("good.toml: ok"), "{}", out.stdout);
    let one = run_cmd(&bin("ns-agent"), [Path::new("validate"), &good], SOON).await?;
    assert_eq!(one.status.code(), Some(0), "{one:?}");

    // The good file turns bad (wrong type on line 2): it stays registered as it was.
    let before = rig.wait_one("good", true).await?;
    replace_file(
        &good,
        &service_toml("good", 7401, 100, FAST).replace("port = 7401", "port = \"x\""),
    )?;
    let s = eventually(SOON, async || {
        let s = agent.service("good").await?;
        ensure!(!s["error"].is_null(), "{s}");
        Ok(s)
    })
    .await?;
    assert_eq!(s["error"]["line"], 2, "{s}");
    assert_eq!(s["error"]["field"], "port", "{s}");
    assert_eq!(s["state"], "passing", "{s}");
    let after = rig.wait_one("good", true).await?;
    assert_eq!(
        after["mod_rev"], before["mod_rev"],
        "the last good definition stays"
    );
    assert!(agent.proc().is_running());
    assert_eq!(lines(&rig.path().join("good.events")).len(), 1);
    Ok(())
}

/// Acceptance 8: a changed weight re-registers in place (same id, `start` not re-run); a
/// changed port restarts the service (stop, start) and registers the new port.
#[tokio::test]
async fn a_weight_change_is_in_place_and_a_port_change_restarts() -> anyhow::Result<()> {
    let rig = Rig::new().await?;
    scripts(&rig, "web", "exit 0")?;
    let file = rig.services().join("web.toml");
    // No periodic rescan: every change below must arrive as a file event.
    let config = rig
        .config("")
        .replace("rescan_interval = \"1s\"", "rescan_interval = \"1h\"");
    let _agent = Agent::start(rig.path(), &config, &[]).await?;
    replace_file(&file, &service_toml("web", 7501, 100, FAST))?;
    let first = rig.wait_one("web", true).await?;
    assert_eq!(first["weight"], 100);

    replace_file(&file, &service_toml("web", 7501, 7, FAST))?;
    let changed = eventually(SOON, async || {
        let i = rig.wait_one("web", true).await?;
        ensure!(i["weight"] == 7, "{i}");
        Ok(i)
    })
    .await?;
    assert_eq!(changed["id"], first["id"]);
    assert_eq!(changed["lease"], first["lease"]);
    assert_eq!(
        lines(&rig.path().join("web.events")),
        ["start 7501 web host-1 dc1"]
    );

    replace_file(&file, &service_toml("web", 7502, 7, FAST))?;
    let moved = eventually(SOON, async || {
        let i = rig.wait_one("web", true).await?;
        ensure!(i["port"] == 7502, "{i}");
        Ok(i)
    })
    .await?;
    assert_eq!(moved["id"], first["id"]);
    assert_eq!(
        lines(&rig.path().join("web.events")),
        [
            "start 7501 web host-1 dc1",
            "stop",
            "start 7502 web host-1 dc1"
        ]
    );
    Ok(())
}
