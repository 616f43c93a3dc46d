//! Config templates with a real nginx (issue 10): agents on several "hosts" register tiny HTTP
//! backends as `web`; the edge host's agent renders nginx's upstream from the mirror with
//! `templates/nginx-upstream.conf.tera`, checks it with `nginx -t` and reloads nginx.
//! Requests through nginx show which backends it uses. HAProxy, bursts and outages are in
//! `templates_more`.

use harness::nginx::{self, tally};
use harness::{Backend, Nginx};

use super::*;

/// The repository's `templates/` directory.
pub(super) fn templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates")
}

/// One more agent ("host") against the rig's store, in its own directory.
pub(super) struct Host {
    pub(super) dir: tempfile::TempDir,
    pub(super) agent: Agent,
}

impl Host {
    /// Starts an agent named `node` whose services directory holds `web` on `backend` (as
    /// `version`, critical while the file `dir/critical` exists).
    pub(super) async fn web(
        rig: &Rig,
        node: &str,
        backend: &Backend,
        version: &str,
    ) -> anyhow::Result<Host> {
        let dir = tempfile::Builder::new()
            .prefix("ns-agent-host-")
            .tempdir()?;
        write_web(dir.path(), backend, version)?;
        let agent = Agent::start(dir.path(), &node_config(rig, node, ""), &[]).await?;
        Ok(Host { dir, agent })
    }
}

/// The rig's agent config for another node.
pub(super) fn node_config(rig: &Rig, node: &str, extra: &str) -> String {
    rig.config(extra)
        .replace("node = \"host-1\"", &format!("node = \"{node}\""))
}

/// `dir/services.d/web.toml` for `backend`: health fails (critical) while `dir/critical`
/// exists; one check decides, so tests move fast.
pub(super) fn write_web(dir: &Path, backend: &Backend, version: &str) -> anyhow::Result<()> {
    let sd = dir.join("services.d");
    std::fs::create_dir_all(&sd)?;
    write_script(
        &sd.join("web-health.sh"),
        &format!("[ -f {}/critical ] && exit 2\nexit 0", dir.display()),
    )?;
    std::fs::write(
        sd.join("web.toml"),
        format!(
            "name = \"web\"\nport = {}\nversion = \"{version}\"\n[health]\n\
             interval = \"100ms\"\ntimeout = \"90ms\"\nfail_after = 1\npass_after = 1\n\
             [scripts]\nhealth = \"./web-health.sh\"\n",
            backend.port()
        ),
    )?;
    Ok(())
}

/// The edge host: nginx's prefix under `rig/nginx`, and `edge.toml` whose template renders
/// `rig/nginx/upstream.conf` (checked with `nginx -t`, reloaded with SIGHUP unless the file
/// `rig/fail-reload` exists).
pub(super) struct Edge {
    pub(super) prefix: PathBuf,
    pub(super) upstream: PathBuf,
    pub(super) port: u16,
}

impl Edge {
    pub(super) fn write(rig: &Rig) -> anyhow::Result<Edge> {
        let prefix = rig.path().join("nginx");
        let upstream = prefix.join("upstream.conf");
        let port = Nginx::configure(&prefix, &upstream, "web")?;
        let sd = rig.services();
        std::fs::copy(
            templates_dir().join("nginx-upstream.conf.tera"),
            sd.join("upstream.conf.tera"),
        )?;
        write_script(
            &sd.join("reload.sh"),
            &format!(
                "echo reload >> {d}/reloads\n\
                 [ -f {d}/fail-reload ] && {{ echo 'reload refused by the test' >&2; exit 1; }}\n\
                 pid=$(cat {p}/nginx.pid 2>/dev/null)\n\
                 # Before nginx runs (the first render) there is nothing to reload.\n\
                 [ -n \"$pid\" ] && kill -0 \"$pid\" 2>/dev/null || exit 0\nkill -HUP \"$pid\"",
                d = rig.path().display(),
                p = prefix.display()
            ),
        )?;
        std::fs::write(
            sd.join("edge.toml"),
            format!(
                "name = \"edge\"\nport = {port}\n[health]\ninterval = \"1s\"\ntimeout = \"900ms\"\n\
                 [scripts]\nhealth = \"exit 0\"\nreload = \"./reload.sh\"\n\
                 [[templates]]\nsource = \"upstream.conf.tera\"\ndest = \"{}\"\ncheck = \"{}\"\n\
                 wait = {{ min = \"50ms\", max = \"500ms\" }}\nmode = \"0644\"\n",
                upstream.display(),
                nginx::check_command(&prefix)?
            ),
        )?;
        Ok(Edge {
            prefix,
            upstream,
            port,
        })
    }

    /// The upstream file once `pred` holds for it.
    pub(super) async fn wait_upstream(
        &self,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        eventually(SOON, async || {
            let text = std::fs::read_to_string(&self.upstream).unwrap_or_default();
            ensure!(pred(&text), "upstream file not yet {what}:\n{text}");
            Ok(text)
        })
        .await
    }

    pub(super) async fn nginx(&self) -> anyhow::Result<Nginx> {
        Nginx::start(&self.prefix, self.port).await
    }
}

/// How many `server` lines for 127.0.0.1 the upstream has.
pub(super) fn servers(text: &str) -> usize {
    text.lines()
        .filter(|l| l.trim_start().starts_with("server 127.0.0.1:") && !l.contains(" down;"))
        .count()
}

/// Waits until requests through `url` reach every backend in `want` and none in `not`.
pub(super) async fn wait_traffic(url: &str, want: &[&str], not: &[&str]) -> anyhow::Result<()> {
    eventually(SOON, async || {
        let t = tally(url, 12 * want.len().max(1)).await;
        for w in want {
            ensure!(t.contains_key(*w), "{w} not reached: {t:?}");
        }
        for n in not {
            ensure!(!t.contains_key(*n), "{n} still reached: {t:?}");
        }
        ensure!(
            t.keys().all(|k| want.contains(&k.as_str())),
            "unexpected answers: {t:?}"
        );
        Ok(())
    })
    .await
}

/// The status entry of the template rendering `dest`.
pub(super) async fn template_status(agent: &Agent, dest: &Path) -> anyhow::Result<Value> {
    let st = agent.status().await?;
    st["templates"]
        .as_array()
        .and_then(|l| l.iter().find(|t| t["dest"] == dest.display().to_string()))
        .cloned()
        .with_context(|| format!("no template {} in {st}", dest.display()))
}

/// Acceptance 1a-c: a third instance is reached once registered; a critical one stops
/// receiving; a 90/10 gray split becomes nginx weights, and nginx's traffic follows them.
#[tokio::test]
async fn nginx_follows_instances_health_and_gray_weights() -> anyhow::Result<()> {
    let rig = Rig::new().await?;
    let (b1, b2, b3) = (
        Backend::start("b1").await?,
        Backend::start("b2").await?,
        Backend::start("b3").await?,
    );
    let edge = Edge::write(&rig)?;
    write_web(rig.path(), &b1, "v1")?;
    let edge_agent = rig.agent("", &[]).await?;
    let h2 = Host::web(&rig, "host-2", &b2, "v2").await?;
    edge.wait_upstream("two servers", |t| servers(t) == 2)
        .await?;
    let nginx = edge.nginx().await?;
    wait_traffic(&nginx.url(), &["b1", "b2"], &[]).await?;

    // A third instance: re-rendered, reloaded, reached.
    let h3 = Host::web(&rig, "host-3", &b3, "v1").await?;
    edge.wait_upstream("three servers", |t| servers(t) == 3)
        .await?;
    wait_traffic(&nginx.url(), &["b1", "b2", "b3"], &[]).await?;

    // Critical: out of the upstream, and no request reaches it.
    std::fs::write(h2.dir.path().join("critical"), "")?;
    let text = edge
        .wait_upstream("without b2", |t| {
            servers(t) == 2 && !t.contains(&format!(":{} ", b2.port()))
        })
        .await?;
    assert!(
        !text.contains(&format!("127.0.0.1:{}", b2.port())),
        "{text}"
    );
    wait_traffic(&nginx.url(), &["b1", "b3"], &["b2"]).await?;

    // Passing again, then a 90/10 split between v1 (b1, b3) and v2 (b2).
    std::fs::remove_file(h2.dir.path().join("critical"))?;
    edge.wait_upstream("three servers again", |t| servers(t) == 3)
        .await?;
    rig.api
        .put_json(
            &rig.store(),
            "/v1/traffic/web",
            &serde_json::json!({
                "groups": [{"version": "v1", "weight": 90}, {"version": "v2", "weight": 10}]
            }),
        )
        .await?
        .ok()?;
    let text = edge
        .wait_upstream("weighted 45/45/10", |t| {
            t.contains(&format!("127.0.0.1:{} weight=45;", b1.port()))
                && t.contains(&format!("127.0.0.1:{} weight=10;", b2.port()))
                && t.contains(&format!("127.0.0.1:{} weight=45;", b3.port()))
        })
        .await?;
    // nginx's weighted round robin is exact per worker once the new config is in: b2 gets
    // about 10 of 100 (a few requests may still meet an old worker).
    eventually(SOON, async || {
        let t = tally(&nginx.url(), 100).await;
        let b2n = t.get("b2").copied().unwrap_or(0);
        ensure!(
            (5..=15).contains(&b2n),
            "b2 got {b2n} of 100: {t:?}\n{text}"
        );
        ensure!(!t.contains_key("error"), "{t:?}");
        Ok(())
    })
    .await?;
    let st = template_status(&edge_agent, &edge.upstream).await?;
    assert!(st["last_error"].is_null(), "{st}");
    assert!(st["revision"].as_u64().is_some_and(|r| r > 0), "{st}");
    assert!(st["last_render"].is_string(), "{st}");
    drop(h3);
    Ok(())
}

/// Acceptance 1d-f: a template syntax error, a failing `check` and a failing reload each
/// leave nginx's running config in place, and nginx keeps serving.
#[tokio::test]
async fn broken_template_failing_check_and_reload_keep_nginx_serving() -> anyhow::Result<()> {
    let rig = Rig::new().await?;
    let alerts = WebhookSink::start().await?;
    let b1 = Backend::start("b1").await?;
    let edge = Edge::write(&rig)?;
    write_web(rig.path(), &b1, "v1")?;
    let mut agent = rig
        .agent(&format!("[alert]\nwebhook = \"{}\"\n", alerts.url()), &[])
        .await?;
    let good = edge
        .wait_upstream("one server", |t| servers(t) == 1)
        .await?;
    let nginx = edge.nginx().await?;
    wait_traffic(&nginx.url(), &["b1"], &[]).await?;
    let source = rig.services().join("upstream.conf.tera");
    let original = std::fs::read_to_string(&source)?;

    // A syntax error on line 3, column 4: reported with its place, the file stays.
    replace_file(
        &source,
        "# broken\nupstream web {\n   {{ route(name='web' }}\n}\n",
    )?;
    let st = eventually(SOON, async || {
        let st = template_status(&agent, &edge.upstream).await?;
        ensure!(st["last_error"]["stage"] == "render", "{st}");
        Ok(st)
    })
    .await?;
    let e = &st["last_error"];
    assert_eq!(e["line"], 3, "{st}");
    assert!(e["column"].as_u64().is_some_and(|c| c >= 1), "{st}");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("upstream.conf.tera:3:")),
        "{st}"
    );
    assert!(
        agent.proc().logs().contains("upstream.conf.tera:3:"),
        "the log names the place"
    );
    assert_eq!(std::fs::read_to_string(&edge.upstream)?, good);
    wait_traffic(&nginx.url(), &["b1"], &[]).await?;

    // A template that renders a config nginx refuses: `check` fails, the old file is back.
    replace_file(
        &source,
        "upstream web {\n    server 127.0.0.1:1 weight=lots;\n}\n",
    )?;
    let st = eventually(SOON, async || {
        let st = template_status(&agent, &edge.upstream).await?;
        ensure!(st["last_error"]["stage"] == "check", "{st}");
        Ok(st)
    })
    .await?;
    assert!(
        st["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("weight")),
        "{st}"
    );
    assert_eq!(std::fs::read_to_string(&edge.upstream)?, good);
    wait_traffic(&nginx.url(), &["b1"], &[]).await?;

    // A good change whose reload fails: restored, reloaded again, alerted; nginx serves.
    let reloads_before = lines(&rig.path().join("reloads")).len();
    std::fs::write(rig.path().join("fail-reload"), "")?;
    replace_file(&source, &format!("# changed\n{original}"))?;
    let st = eventually(SOON, async || {
        let st = template_status(&agent, &edge.upstream).await?;
        ensure!(st["last_error"]["stage"] == "reload", "{st}");
        Ok(st)
    })
    .await?;
    assert!(
        st["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("reload refused by the test") && m.contains("restored")),
        "{st}"
    );
    assert_eq!(std::fs::read_to_string(&edge.upstream)?, good);
    // The failed reload, then the reload after restoring.
    assert_eq!(lines(&rig.path().join("reloads")).len(), reloads_before + 2);
    let alert = eventually(SOON, async || {
        let bodies = alerts.bodies();
        let b = bodies.iter().find(|b| b.contains("reload_failed")).cloned();
        b.context("no reload alert yet")
    })
    .await?;
    let alert: Value = serde_json::from_str(&alert)?;
    assert_eq!(alert["service"], "edge");
    assert_eq!(alert["templates"][0], edge.upstream.display().to_string());
    wait_traffic(&nginx.url(), &["b1"], &[]).await?;

    // Reloads work again: the changed template goes in.
    std::fs::remove_file(rig.path().join("fail-reload"))?;
    replace_file(&source, &format!("# changed again\n{original}"))?;
    edge.wait_upstream("changed", |t| t.starts_with("# changed again"))
        .await?;
    eventually(SOON, async || {
        let st = template_status(&agent, &edge.upstream).await?;
        ensure!(st["last_error"].is_null(), "{st}");
        Ok(())
    })
    .await?;
    wait_traffic(&nginx.url(), &["b1"], &[]).await?;
    Ok(())
}
