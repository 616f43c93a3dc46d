//! The host agent (`ns-agent`) against a real store, with real shell scripts: registration only
//! after `pass_after` passes, flap-damped health with alerts, deregistration before `stop`,
//! hung checks killed with their children, lease expiry after kill -9, store outages, bad
//! files, in-place changes and restarts, SIGTERM, maintenance across restarts.
//!
//! Each test writes its services and scripts into its own temporary directory. Scripts record
//! what they did in files the test reads; a service "process" is a `sleep` whose pid is kept so
//! that the test can check it survives (and kill it at the end).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use harness::{
    Agent, Api, Cluster, WebhookSink, bin, eventually, replace_file, run_cmd, write_script,
};
use serde_json::Value;
use tokio::time::Instant;

/// Generous upper bound for anything that should happen "soon" on a loaded machine.
const SOON: Duration = Duration::from_secs(30);

/// A store, a directory for the agent and its services, and the agent (once started).
struct Rig {
    cluster: Cluster,
    dir: tempfile::TempDir,
    api: Api,
}

impl Rig {
    async fn new() -> anyhow::Result<Rig> {
        let cluster = Cluster::single(&[]).await?;
        let dir = tempfile::Builder::new().prefix("ns-agent-e2e-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("services.d"))?;
        Ok(Rig {
            cluster,
            dir,
            api: Api::with_timeout(Duration::from_secs(5)),
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn services(&self) -> PathBuf {
        self.path().join("services.d")
    }

    fn store(&self) -> String {
        self.cluster.url(1)
    }

    /// The agent config: short TTL and drain, `extra` lines appended.
    fn config(&self, extra: &str) -> String {
        format!(
            "node = \"host-1\"\ndatacenter = \"dc1\"\nadvertise = \"127.0.0.1\"\n\
             store = [\"{}\"]\nservices_dir = \"services.d\"\nhttp = \"127.0.0.1:0\"\n\
             lease_ttl = \"2s\"\ndrain = \"300ms\"\nrescan_interval = \"1s\"\n{extra}",
            self.cluster.addr(1)
        )
    }

    async fn agent(&self, extra: &str, args: &[&str]) -> anyhow::Result<Agent> {
        Agent::start(self.path(), &self.config(extra), args).await
    }

    /// `GET /v1/services/NAME/instances[?healthy=true]`.
    async fn instances(&self, name: &str, healthy: bool) -> anyhow::Result<Vec<Value>> {
        let q = if healthy { "?healthy=true" } else { "" };
        let v: Value = self
            .api
            .get_json(&self.store(), &format!("/v1/services/{name}/instances{q}"))
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Waits until `name` has exactly one instance (healthy if asked) and returns it.
    async fn wait_one(&self, name: &str, healthy: bool) -> anyhow::Result<Value> {
        eventually(SOON, async || {
            let list = self.instances(name, healthy).await?;
            ensure!(list.len() == 1, "{name}: {list:?}");
            Ok(list[0].clone())
        })
        .await
    }

    async fn wait_none(&self, name: &str, healthy: bool, within: Duration) -> anyhow::Result<()> {
        eventually(within, async || {
            let list = self.instances(name, healthy).await?;
            ensure!(list.is_empty(), "{name} still listed: {list:?}");
            Ok(())
        })
        .await
    }
}

/// Kills the `sleep` processes the services' start scripts left behind.
impl Drop for Rig {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "pid")
                && let Ok(pid) = std::fs::read_to_string(&p)
            {
                let _ = std::process::Command::new("kill")
                    .args(["-9", pid.trim()])
                    .status();
            }
        }
    }
}

/// A service's scripts in `rig/NAME/`: `start` runs a `sleep` as the service (pid in
/// `NAME.pid`) and logs `start PORT` to `NAME.events`; `stop` kills it and logs `stop`;
/// `health` logs `check` to `NAME.checks` and then runs `health_body`.
fn scripts(rig: &Rig, name: &str, health_body: &str) -> anyhow::Result<()> {
    let d = rig.path();
    let sdir = d.join(name);
    write_script(
        &sdir.join("start.sh"),
        &format!(
            "echo \"start $NS_PORT $NS_SERVICE $NS_NODE $NS_DATACENTER\" >> {d}/{name}.events\n\
             sleep 600 >/dev/null 2>&1 &\necho $! > {d}/{name}.pid",
            d = d.display()
        ),
    )?;
    write_script(
        &sdir.join("stop.sh"),
        &format!(
            "kill $(cat {d}/{name}.pid) 2>/dev/null; echo stop >> {d}/{name}.events",
            d = d.display()
        ),
    )?;
    write_script(
        &sdir.join("health.sh"),
        &format!("echo check >> {}/{name}.checks\n{health_body}", d.display()),
    )?;
    Ok(())
}

/// A description file for `name` with the rig's scripts.
fn service_toml(name: &str, port: u16, weight: u16, health: &str) -> String {
    format!(
        "name = \"{name}\"\nport = {port}\nweight = {weight}\ntags = [\"e2e\"]\n\
         [health]\n{health}\n[scripts]\nstart = \"../{name}/start.sh\"\n\
         stop = \"../{name}/stop.sh\"\nhealth = \"../{name}/health.sh\"\n"
    )
}

const FAST: &str = "interval = \"200ms\"\ntimeout = \"150ms\"\nfail_after = 3\npass_after = 2";

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn pid_alive(path: &Path) -> bool {
    let Ok(pid) = std::fs::read_to_string(path) else {
        return false;
    };
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
    // A zombie no longer runs.
    stat.is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

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
    assert!(!pid_alive(&rig.path().join("cart.pid")));
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
    assert!(!pid_alive(&rig.path().join("keep.pid")));
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
