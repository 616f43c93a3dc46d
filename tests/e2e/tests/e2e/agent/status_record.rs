//! The agent's status record (`/ns/agents/NODE`) as `GET /v1/agents` and `pyxis agents` show
//! it: it appears with the services' states, follows a health change, is written at most once
//! per `status_interval` while idle, goes stale while the agent is frozen and vanishes with its
//! lease, and is deleted on SIGTERM.

use super::*;

/// The agent's node in every rig.
const NODE: &str = "host-1";

/// `GET /v1/agents` on the rig's store.
async fn agents(rig: &Rig) -> anyhow::Result<Vec<Value>> {
    let v: Value = rig.api.get_json(&rig.store(), "/v1/agents").await?;
    v["agents"]
        .as_array()
        .cloned()
        .with_context(|| format!("no agents list in {v}"))
}

/// The record of [`NODE`], if listed.
async fn record(rig: &Rig) -> anyhow::Result<Option<Value>> {
    Ok(agents(rig).await?.into_iter().find(|a| a["node"] == NODE))
}

/// The entry of service `name` in `record`.
fn service<'a>(record: &'a Value, name: &str) -> Option<&'a Value> {
    record["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

/// A service `pay` whose health follows the file `mode` (`pass` or `fail`).
fn pay(rig: &Rig) -> anyhow::Result<PathBuf> {
    let mode = rig.path().join("mode");
    std::fs::write(&mode, "pass")?;
    let body = format!(
        "[ \"$(cat {})\" = fail ] && {{ echo failing-now; exit 2; }}\necho fine; exit 0",
        mode.display()
    );
    scripts(rig, "pay", &body)?;
    std::fs::write(
        rig.services().join("pay.toml"),
        service_toml("pay", 9000, 100, FAST),
    )?;
    Ok(mode)
}

/// Waits until the record shows `pay` in `state` with a last check that exited `exit`.
async fn wait_pay(rig: &Rig, state: &str, exit: i64) -> anyhow::Result<Value> {
    eventually(SOON, async || {
        let r = record(rig).await?.context("no record yet")?;
        let s = service(&r, "pay").context("no pay in the record")?;
        ensure!(s["state"] == state, "pay is {}: {r}", s["state"]);
        ensure!(s["last_check"]["exit"] == exit, "last check: {r}");
        Ok(r)
    })
    .await
}

/// The record appears with the agent's fields and its service's state, shows a health change,
/// is printed by `pyxis agents`, and is gone once SIGTERM ended the agent.
#[tokio::test]
async fn the_record_follows_health_and_goes_with_sigterm() -> anyhow::Result<()> {
    let rig = Rig::new().await?;
    let mode = pay(&rig)?;
    let start = Instant::now();
    let mut agent = rig.agent("status_interval = \"1s\"\n", &[]).await?;
    let r = wait_pay(&rig, "passing", 0).await?;
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "record after {:?}",
        start.elapsed()
    );
    assert_eq!(r["datacenter"], "dc1", "{r}");
    assert!(r["version"].as_str().is_some_and(|v| !v.is_empty()), "{r}");
    assert!(
        r["started_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{r}"
    );
    assert!(r["published_at"].as_str().is_some(), "{r}");
    assert!(r["mirror_revision"].as_u64().is_some_and(|v| v > 0), "{r}");
    assert!(r["staleness_ms"].as_u64().is_some(), "{r}");
    assert_eq!(r["store_connected"], true, "{r}");
    assert!(r["last_contact_ms"].as_u64().is_some(), "{r}");
    let pay = service(&r, "pay").context("pay")?;
    assert_eq!(pay["instance_id"], "host-1-pay", "{r}");
    assert_eq!(
        pay["last_check"]["output"].as_str().map(str::trim),
        Some("fine"),
        "{r}"
    );

    std::fs::write(&mode, "fail")?;
    let r = wait_pay(&rig, "critical", 2).await?;
    let pay = service(&r, "pay").context("pay")?;
    assert_eq!(
        pay["last_check"]["output"].as_str().map(str::trim),
        Some("failing-now"),
        "{r}"
    );

    let pyxis = rig.cluster.bin();
    let ep = rig.cluster.endpoints();
    let out = run_cmd(pyxis, ["agents", "--endpoints", &ep], SOON)
        .await?
        .success()?;
    let header = out.stdout.lines().next().unwrap_or_default();
    for column in [
        "NODE",
        "DC",
        "LAST CONTACT",
        "REVISION",
        "STALENESS",
        "SERVICES",
    ] {
        assert!(header.contains(column), "{}", out.stdout);
    }
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with(NODE))
        .with_context(|| format!("no row for {NODE}:\n{}", out.stdout))?;
    assert!(
        row.contains("dc1") && row.ends_with("1 critical"),
        "{}",
        out.stdout
    );
    let out = run_cmd(pyxis, ["agents", "--json", "--endpoints", &ep], SOON)
        .await?
        .success()?;
    let json: Value = serde_json::from_str(&out.stdout).context("--json output")?;
    assert_eq!(json["agents"][0]["node"], NODE, "{json}");

    agent.signal("TERM")?;
    agent.wait_exit(SOON).await?;
    let left = agents(&rig).await?;
    assert!(left.is_empty(), "record left after SIGTERM: {left:?}");
    Ok(())
}

/// An idle agent (checks running, results unchanged) writes its record at most once per
/// `status_interval`, however many other store writes its mirror follows.
#[tokio::test]
async fn an_idle_agent_writes_at_most_once_per_interval() -> anyhow::Result<()> {
    let rig = Rig::new().await?;
    pay(&rig)?;
    let _agent = rig.agent("status_interval = \"2s\"\n", &[]).await?;
    wait_pay(&rig, "passing", 0).await?;
    let key = "/ns/agents/host-1";
    let version = async || -> anyhow::Result<u64> {
        let reply = rig.api.get(&rig.store(), key).await?.ok()?;
        reply
            .header_u64(pyxis_client::api::HEADER_VERSION)
            .context("no version header")
    };
    let checks = rig.path().join("pay.checks");
    let (before, checks_before) = (version().await?, lines(&checks).len());
    let window = Duration::from_secs(10);
    let end = Instant::now() + window;
    let mut writes = 0;
    while Instant::now() < end {
        // Writes outside /ns/ and to the naming model: the mirror follows both.
        rig.api
            .put_ok(&rig.store(), &format!("/elsewhere/{writes}"), "x")
            .await?;
        rig.api
            .put_json(
                &rig.store(),
                "/v1/services/other",
                &serde_json::json!({ "description": format!("edit {writes}") }),
            )
            .await?
            .ok()?;
        writes += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (after, checks_after) = (version().await?, lines(&checks).len());
    assert!(
        checks_after >= checks_before + 10,
        "checks ran meanwhile: {checks_before} -> {checks_after}"
    );
    let rewrites = after - before;
    assert!(writes >= 10, "only {writes} store writes");
    assert!(
        rewrites <= 5,
        "{rewrites} record writes in {window:?} with a 2s interval"
    );
    // Nothing but times and revisions changed: at most one incidental write (a store probe
    // that failed once under load flips store_connected), not one per interval.
    assert!(rewrites <= 2, "{rewrites} record writes while idle");
    Ok(())
}

/// A frozen agent's last contact grows in `GET /v1/agents` until its lease expires and the
/// record vanishes; bad parameters get a 400 naming them.
#[tokio::test]
async fn a_stopped_agent_goes_stale_then_vanishes() -> anyhow::Result<()> {
    let rig = Rig::new().await?;
    pay(&rig)?;
    let config = rig
        .config("status_interval = \"1s\"\n")
        .replace("lease_ttl = \"2s\"", "lease_ttl = \"6s\"");
    let mut agent = Agent::start(rig.path(), &config, &[]).await?;
    wait_pay(&rig, "passing", 0).await?;
    let contact = async || -> anyhow::Result<u64> {
        let r = record(&rig).await?.context("record gone")?;
        r["last_contact_ms"].as_u64().context("no last_contact_ms")
    };
    // Kept alive every third of the TTL.
    assert!(contact().await? < 4000);

    agent.proc().pause()?;
    let frozen = Instant::now();
    let first = eventually(SOON, async || {
        let ms = contact().await?;
        ensure!(ms >= 2500, "last contact {ms}ms");
        Ok(ms)
    })
    .await?;
    let second = eventually(SOON, async || {
        let ms = contact().await?;
        ensure!(ms >= first + 500, "last contact {ms}ms, before {first}ms");
        Ok(ms)
    })
    .await?;
    assert!(second < 6000, "still listed at {second}ms past a 6s TTL");
    eventually(SOON, async || {
        ensure!(record(&rig).await?.is_none(), "record still listed");
        Ok(())
    })
    .await?;
    assert!(
        frozen.elapsed() >= Duration::from_secs(3),
        "vanished after {:?}",
        frozen.elapsed()
    );

    for (query, field) in [("?node=a%20b", "node:"), ("?nodes=x", "nodes:")] {
        let reply = rig
            .api
            .get_path(&rig.store(), &format!("/v1/agents{query}"))
            .await?;
        assert_eq!(reply.status, 400, "{query}: {}", reply.text());
        let body = reply.error_body()?;
        assert!(body.message.starts_with(field), "{query}: {}", body.message);
    }
    agent.proc().resume()?;
    Ok(())
}

/// `PUT /v1/agents/NODE` refuses a record without a lease or naming another node, and
/// `pyxis agents` fails with a clear message when no store answers.
#[tokio::test]
async fn bad_records_and_an_unreachable_store_are_refused() -> anyhow::Result<()> {
    let rig = Rig::new().await?;
    let record = serde_json::json!({
        "node": "host-9", "datacenter": "dc1", "version": "0.0.0",
        "started_at": "2026-12-03T11:00:00Z", "published_at": "2026-12-03T11:00:01Z",
        "mirror_revision": 1, "staleness_ms": 0, "store_connected": true, "services": []
    });
    for (path, field) in [
        ("/v1/agents/host-9", "lease:"),
        ("/v1/agents/host-8?lease=1", "node:"),
    ] {
        let reply = rig.api.put_json(&rig.store(), path, &record).await?;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text());
        let message = reply.error_body()?.message;
        assert!(message.starts_with(field), "{path}: {message}");
    }
    let mut bad = record.clone();
    bad["services"] = serde_json::json!([{"name": "web", "instance_id": null,
        "state": "asleep", "last_check": null}]);
    let reply = rig
        .api
        .put_json(&rig.store(), "/v1/agents/host-9?lease=1", &bad)
        .await?;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(
        reply
            .error_body()?
            .message
            .starts_with("services[0].state:")
    );
    assert!(agents(&rig).await?.is_empty(), "nothing was written");

    let dead = harness::reserve_ports(1);
    let out = run_cmd(
        rig.cluster.bin(),
        ["agents", "--endpoints", &format!("127.0.0.1:{}", dead[0])],
        SOON,
    )
    .await?;
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("list agents"), "{}", out.stderr);
    Ok(())
}
