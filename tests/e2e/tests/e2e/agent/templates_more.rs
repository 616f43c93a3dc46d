//! Config templates beyond nginx's happy path (issue 10): HAProxy with `haproxy -c` as the
//! check (add, remove, critical); a burst of 100 changes (at most one render and reload per
//! `wait.max` window, final file equal to a fresh `render --once`); a store outage (files and
//! nginx unchanged; a restarted agent renders nothing before a full listing).

use harness::nginx::tally;
use harness::{Backend, Haproxy};

use super::templates::{
    Edge, Host, servers, template_status, templates_dir, wait_traffic, write_web,
};
use super::*;

/// Acceptance 2: HAProxy follows an added, a removed and a critical instance.
#[tokio::test]
async fn haproxy_follows_add_remove_and_critical() -> anyhow::Result<()> {
    let rig = Rig::new().await?;
    let (b1, b2, b3) = (
        Backend::start("b1").await?,
        Backend::start("b2").await?,
        Backend::start("b3").await?,
    );
    let hdir = rig.path().join("haproxy");
    std::fs::create_dir_all(&hdir)?;
    let backend = hdir.join("web.cfg");
    let sd = rig.services();
    std::fs::copy(
        templates_dir().join("haproxy-backend.cfg.tera"),
        sd.join("web-backend.cfg.tera"),
    )?;
    // HAProxy's base config has to exist for the first check: write it before starting.
    let pid = hdir.join("haproxy.pid");
    write_script(
        &sd.join("reload.sh"),
        &format!(
            "pid=$(cat {p} 2>/dev/null)\n[ -n \"$pid\" ] && kill -0 \"$pid\" 2>/dev/null || exit 0\nkill -USR2 \"$pid\"",
            p = pid.display()
        ),
    )?;
    let check = format!(
        "{} -c -q -f {d}/haproxy.cfg -f {b}",
        harness::nginx::system_tool("haproxy")?.display(),
        d = hdir.display(),
        b = backend.display()
    );
    std::fs::write(
        sd.join("lb.toml"),
        format!(
            "name = \"lb\"\nport = 8080\n[health]\ninterval = \"1s\"\ntimeout = \"900ms\"\n\
             [scripts]\nhealth = \"exit 0\"\nreload = \"./reload.sh\"\n\
             [[templates]]\nsource = \"web-backend.cfg.tera\"\ndest = \"{}\"\ncheck = \"{check}\"\n\
             wait = {{ min = \"50ms\", max = \"500ms\" }}\n",
            backend.display()
        ),
    )?;
    let port = Haproxy::configure(&hdir, "web")?;
    write_web(rig.path(), &b1, "v1")?;
    let _agent = rig.agent("", &[]).await?;
    let h2 = Host::web(&rig, "host-2", &b2, "v1").await?;
    let count = |t: &str| {
        t.lines()
            .filter(|l| l.trim_start().starts_with("server "))
            .count()
    };
    let wait_backend = async |what: &str, n: usize| {
        eventually(SOON, async || {
            let t = std::fs::read_to_string(&backend).unwrap_or_default();
            ensure!(count(&t) == n, "backend not yet {what}:\n{t}");
            Ok(t)
        })
        .await
    };
    wait_backend("two servers", 2).await?;
    let mut haproxy = Haproxy::start(&hdir, &backend, port).await?;
    wait_traffic(&haproxy.url(), &["b1", "b2"], &[]).await?;

    let mut h3 = Host::web(&rig, "host-3", &b3, "v1").await?;
    wait_backend("three servers", 3).await?;
    wait_traffic(&haproxy.url(), &["b1", "b2", "b3"], &[]).await?;

    // Removed: the description file goes, the instance is deregistered and dropped.
    std::fs::remove_file(h3.dir.path().join("services.d/web.toml"))?;
    wait_backend("two servers again", 2).await?;
    wait_traffic(&haproxy.url(), &["b1", "b2"], &["b3"]).await?;
    h3.agent.kill9()?;

    std::fs::write(h2.dir.path().join("critical"), "")?;
    wait_backend("one server", 1).await?;
    wait_traffic(&haproxy.url(), &["b1"], &["b2"]).await?;
    assert!(haproxy.is_running(), "{}", haproxy.log_tail(20));
    Ok(())
}

/// Acceptance 3: 100 changes within about a second give at most one render and one reload
/// per `wait.max` window, and the final file equals a fresh render of the final state.
#[tokio::test]
async fn a_burst_renders_once_per_window_and_ends_on_the_final_state() -> anyhow::Result<()> {
    let rig = Rig::new().await?;
    let out = rig.path().join("burst.txt");
    let source = rig.path().join("burst.tera");
    std::fs::write(
        &source,
        "{% for k in keys(prefix='/config/burst/') %}{{ k.key }}={{ k.value }}\n{% endfor %}",
    )?;
    write_script(
        &rig.path().join("count-reload.sh"),
        &format!("date +%s%N >> {}/reload-times", rig.path().display()),
    )?;
    let max = Duration::from_millis(1000);
    let config = rig.config(&format!(
        "[[templates]]\nsource = \"burst.tera\"\ndest = \"{}\"\ncommand = \"./count-reload.sh\"\n\
         wait = {{ min = \"200ms\", max = \"1s\" }}\n",
        out.display()
    ));
    let agent = Agent::start(rig.path(), &config, &[]).await?;
    // The first render (no keys yet) is one reload.
    let reload_times = rig.path().join("reload-times");
    eventually(SOON, async || {
        ensure!(lines(&reload_times).len() == 1, "first reload not seen yet");
        Ok(())
    })
    .await?;
    let started = Instant::now();
    // 100 writes from 4 writers at once, so they fit in about a second on a loaded machine.
    let store = rig.store();
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (api, store) = (rig.api.clone(), store.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let n = w * 25 + i;
                api.put(&store, &format!("/config/burst/k{n:03}"), format!("v{n}"))
                    .await?
                    .ok()?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let burst = started.elapsed();
    let text = eventually(SOON, async || {
        let t = std::fs::read_to_string(&out)?;
        ensure!(
            t.lines().count() == 100,
            "{} lines so far",
            t.lines().count()
        );
        Ok(t)
    })
    .await?;
    // The file goes in before its reload runs: wait until the status shows the burst's
    // last write rendered (set once the reload passed) and every install had its reload.
    // The store's own revision can be later: the agent's status record is written too.
    let last = rig
        .api
        .range_ok(&store, "/config/burst/")
        .await?
        .entries
        .iter()
        .map(|e| e.mod_rev)
        .max()
        .unwrap_or(0);
    let settled = eventually(SOON, async || {
        let st = template_status(&agent, &out).await?;
        ensure!(st["last_error"].is_null(), "{st}");
        ensure!(
            st["revision"].as_u64() >= Some(last),
            "not at revision {last}: {st}"
        );
        let installs = st["installs"].as_u64().unwrap_or(0) as usize;
        ensure!(
            installs == lines(&reload_times).len(),
            "reloads pending: {st}"
        );
        ensure!(
            std::fs::read_to_string(&out)? == text,
            "changed again: {st}"
        );
        Ok(st)
    })
    .await?;
    let reloads = lines(&reload_times).len() - 1;
    let windows = (burst.as_millis() / max.as_millis()) as usize + 1;
    assert!(
        (1..=windows + 1).contains(&reloads),
        "{reloads} reloads for a burst of {burst:?} (wait.max {max:?}); {settled}"
    );
    // A fresh render of the final state is the same file.
    let fresh = run_cmd(
        &bin("ns-agent"),
        &[
            "--config",
            &rig.path().join("agent.toml").display().to_string(),
            "render",
            "--once",
            &source.display().to_string(),
        ],
        SOON,
    )
    .await?;
    let fresh = fresh.success()?;
    assert_eq!(fresh.stdout, text);
    Ok(())
}

/// Acceptance 4: with the whole store down the files stay and nginx serves; an agent
/// restarted during the outage renders nothing until it has listed the store.
#[tokio::test]
async fn a_store_outage_changes_no_file_and_a_restart_waits_for_a_listing() -> anyhow::Result<()> {
    let mut rig = Rig::new().await?;
    let b1 = Backend::start("b1").await?;
    let edge = Edge::write(&rig)?;
    write_web(rig.path(), &b1, "v1")?;
    let mut agent = rig.agent("", &[]).await?;
    let good = edge
        .wait_upstream("one server", |t| servers(t) == 1)
        .await?;
    let nginx = edge.nginx().await?;
    wait_traffic(&nginx.url(), &["b1"], &[]).await?;

    rig.cluster.kill9(1)?;
    eventually(SOON, async || {
        let st = agent.status().await?;
        ensure!(
            st["mirror"]["synced"] == false && st["store"]["connected"] == false,
            "the agent has not noticed the outage: {st}"
        );
        Ok(())
    })
    .await?;
    assert_eq!(std::fs::read_to_string(&edge.upstream)?, good);
    let t = tally(&nginx.url(), 10).await;
    assert_eq!(t.get("b1"), Some(&10), "{t:?}");

    // Restart during the outage, with the file gone: the new agent's mirror fails its
    // listing, and nothing is rendered from the empty view it has.
    std::fs::remove_file(&edge.upstream)?;
    agent.restart().await?;
    let st = eventually(SOON, async || {
        let st = agent.status().await?;
        ensure!(
            st["mirror"]["last_error"].is_string(),
            "no listing attempt failed yet: {}",
            st["mirror"]
        );
        Ok(st)
    })
    .await?;
    assert_eq!(st["mirror"]["listings"], 0, "{st}");
    let t = template_status(&agent, &edge.upstream).await?;
    assert!(t["last_render"].is_null(), "{t}");
    assert!(!edge.upstream.exists(), "rendered without a listing");
    assert_eq!(tally(&nginx.url(), 5).await.get("b1"), Some(&5));

    // The store is back: a full listing, then the file.
    rig.cluster.restart(1).await?;
    edge.wait_upstream("one server after the outage", |t| servers(t) == 1)
        .await?;
    wait_traffic(&nginx.url(), &["b1"], &[]).await?;
    Ok(())
}
