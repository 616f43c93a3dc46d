//! The web console at `/ui` in a real headless Chromium (WebDriver), against a real store
//! and `dns-gateway`: a registered service and its instances appear (and follow live
//! changes without a reload); a gray split shifted from 100/0 to 90/10 in the page reaches
//! the API and `dig` answers within 1 s; an instance drained from the page is drained in
//! the API, and draining the last healthy one asks first; a forced datacenter shift with an
//! expiry reaches `dig`; an expired policy (`expires_at: 0` too) is shown as not in force and
//! a drain over it starts from the defaults; a bad weight shows the server's
//! own message; another client's change between the page's read and its write is a
//! conflict showing the current value, not an overwrite. The agents page is in
//! `console_agents`.
//!
//! With `PYXIS_SCREENSHOTS=DIR` set, the tests save PNGs of the pages they reach into DIR
//! (that is how `docs/console-*.png` are made).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use harness::{Browser, dig_batch, eventually};
use serde_json::{Value, json};

use crate::gateway::{LONG, Setup, inst};

/// How soon after the click a change must show in the API and in the gateway's answers.
const PROPAGATION: Duration = Duration::from_secs(1);

/// A one-node store with a gateway (datacenters dc1 and dc2), and a browser.
pub(crate) struct Console {
    pub(crate) s: Setup,
    pub(crate) browser: Browser,
}

impl Console {
    pub(crate) async fn start() -> Console {
        let s = Setup::start(1).await;
        let browser = Browser::start().await.unwrap();
        Console { s, browser }
    }

    /// The node's base URL.
    pub(crate) fn url(&self) -> String {
        self.s.cluster.url(self.s.cluster.live_ids()[0])
    }

    /// Opens the console at `route` (`#/services`, `#/service/web`, ...).
    pub(crate) async fn open(&self, route: &str) {
        self.browser
            .goto(&format!("{}/ui/{route}", self.url()))
            .await
            .unwrap();
    }

    /// Waits for `css` on the page; on failure the message has the page's text and log.
    pub(crate) async fn wait(&self, css: &str) {
        if let Err(e) = self.browser.wait(css, LONG).await {
            self.fail(e).await;
        }
    }

    /// Waits until the text of `css` satisfies `ok`.
    pub(crate) async fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        match self.browser.wait_text(css, LONG, ok).await {
            Ok(t) => t,
            Err(e) => self.fail(e).await,
        }
    }

    async fn fail(&self, e: anyhow::Error) -> ! {
        fail(&self.browser, e).await
    }

    /// The stored traffic policy of `name` (`null` when none).
    pub(crate) async fn policy(&self, name: &str) -> Value {
        let r = self
            .s
            .cluster
            .api()
            .get_path(&self.url(), &format!("/v1/traffic/{name}"))
            .await
            .unwrap();
        if r.status == 404 {
            return Value::Null;
        }
        r.json().unwrap()
    }

    /// Types `weight` into the weight field of each version group, once the form is shown.
    pub(crate) async fn weights(&self, weights: &[(&str, &str)]) {
        for (version, weight) in weights {
            let field = format!(".group-weight[data-version='{version}']");
            self.wait(&field).await;
            self.browser.fill(&field, weight).await.unwrap();
        }
    }

    /// Saves a screenshot as `NAME.png` when `PYXIS_SCREENSHOTS` names a directory.
    pub(crate) async fn shot(&self, name: &str) {
        let Some(dir) = std::env::var_os("PYXIS_SCREENSHOTS") else {
            return;
        };
        let path = PathBuf::from(dir).join(format!("{name}.png"));
        self.browser.screenshot(&path).await.unwrap();
    }
}

/// Panics with `e`, what the page shows and the browser's console messages.
pub(crate) async fn fail(browser: &Browser, e: anyhow::Error) -> ! {
    let page = browser
        .execute("return document.body.innerText", vec![])
        .await
        .unwrap_or_default();
    let log = browser.console_log().await.unwrap_or_default();
    panic!(
        "{e:#}\npage text:\n{}\nbrowser console:\n{}",
        page.as_str().unwrap_or_default(),
        log.join("\n")
    );
}

/// An instance body with a version.
fn versioned(addr: &str, dc: &str, version: &str) -> Value {
    let mut body = inst(addr, dc, "passing");
    body["version"] = json!(version);
    body
}

/// The groups of a policy as `[(version, weight)]`.
fn groups(policy: &Value) -> Vec<(String, u64)> {
    policy["groups"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|g| {
                    (
                        g["version"].as_str().unwrap_or_default().to_owned(),
                        g["weight"].as_u64().unwrap_or(u64::MAX),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A gray service: v1 on g1, g2 and v2 on g3 (all dc1), split 100/0.
async fn gray(c: &Console) {
    for (id, addr, version) in [
        ("g1", "10.5.0.1", "v1"),
        ("g2", "10.5.0.2", "v1"),
        ("g3", "10.5.0.3", "v2"),
    ] {
        c.s.instance("gray", id, versioned(addr, "dc1", version))
            .await;
    }
    c.s.put(
        "/v1/traffic/gray",
        json!({"groups": [{"version": "v1", "weight": 100}, {"version": "v2", "weight": 0}]}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_lists_services_and_their_instances_live() {
    let c = Console::start().await;
    c.s.put("/v1/services/web", json!({"owner": "team-web"}))
        .await;
    c.s.instance("web", "w1", versioned("10.0.1.5", "dc1", "v1"))
        .await;
    c.s.instance("web", "w2", {
        let mut b = versioned("10.0.2.5", "dc2", "v2");
        b["status"] = json!("critical");
        b
    })
    .await;
    c.s.instance("api", "a1", versioned("10.0.1.7", "dc1", "v3"))
        .await;

    c.open("#/services").await;
    c.wait_text("tr[data-service='web'] td.total", |t| t == "1/2")
        .await;
    let dc1 = c
        .browser
        .text("tr[data-service='web'] .chip[data-dc='dc1'][data-version='v1']")
        .await
        .unwrap();
    assert_eq!(dc1, "v1 1/1");
    let dc2 = c
        .browser
        .text("tr[data-service='web'] .chip[data-dc='dc2'][data-version='v2']")
        .await
        .unwrap();
    assert_eq!(dc2, "v2 0/1");
    c.shot("console-services").await;

    // The search box keeps matching rows only.
    c.browser.fill("#search", "ap").await.unwrap();
    c.wait("tr[data-service='api']").await;
    assert!(
        c.browser
            .find_all("tr[data-service='web']")
            .await
            .unwrap()
            .is_empty(),
        "web still listed for the search 'ap'"
    );
    c.browser.fill("#search", "").await.unwrap();
    c.wait("tr[data-service='web']").await;

    // A registration through the API shows without a reload (the watch stream).
    c.s.instance("web", "w3", versioned("10.0.1.6", "dc1", "v1"))
        .await;
    c.wait_text("tr[data-service='web'] td.total", |t| t == "2/3")
        .await;

    // One service's page: each instance with its fields.
    c.browser.click("tr[data-service='web'] a").await.unwrap();
    c.wait("#instance-table tr[data-id='w1']").await;
    let row = c
        .browser
        .text("#instance-table tr[data-id='w1']")
        .await
        .unwrap();
    for want in [
        "w1", "10.0.1.5", "8080", "dc1", "v1", "100", "passing", "host-1",
    ] {
        assert!(row.contains(want), "row {row:?} lacks {want:?}");
    }
    let w2 = c
        .browser
        .text("#instance-table tr[data-id='w2']")
        .await
        .unwrap();
    assert!(w2.contains("critical"), "{w2:?}");
    c.wait_text("#instance-count", |t| t == "2 healthy of 3")
        .await;
    c.shot("console-service").await;

    // Datacenters with their subnets and instance counts; the cluster's Raft facts.
    c.open("#/datacenters").await;
    let dc1 = c
        .wait_text("#dc-table tr[data-dc='dc1']", |t| t.contains("127.0.0.0/8"))
        .await;
    assert!(dc1.contains("3/3"), "{dc1:?}");
    c.wait_text("#dc-table tr[data-dc='dc2']", |t| {
        t.contains("10.2.0.0/16") && t.contains("0/1")
    })
    .await;
    c.shot("console-datacenters").await;
    c.open("#/cluster").await;
    c.wait_text("#cluster-facts dd[data-fact='Leader']", |t| t == "node 1")
        .await;
    let status = c.s.cluster.api().status(&c.url()).await.unwrap();
    let revision: u64 = c
        .wait_text("#cluster-facts dd[data-fact='Revision']", |t| !t.is_empty())
        .await
        .parse()
        .unwrap();
    assert!(
        revision >= status.revision,
        "page {revision}, API {}",
        status.revision
    );
    c.wait("#member-table tr[data-member='1']").await;
    c.shot("console-cluster").await;

    // Every nav link leads to a page that renders without a script error.
    for link in ["services", "datacenters", "cluster", "agents", "audit"] {
        c.browser
            .click(&format!("#nav a[data-page='{link}']"))
            .await
            .unwrap();
        c.wait(&format!("#nav a.active[data-page='{link}']")).await;
        c.wait_text("#main h1", |t| !t.is_empty()).await;
    }
    let errors: Vec<String> = c
        .browser
        .console_log()
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.contains("Uncaught") || l.contains("SyntaxError"))
        .collect();
    assert!(errors.is_empty(), "script errors: {errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_gray_split_reaches_the_api_and_dns_within_1s() {
    let c = Console::start().await;
    gray(&c).await;
    let subnets: Vec<String> = (0..100u32)
        .map(|i| {
            format!(
                "gray.ns.corp A +subnet=10.{}.{}.0/24",
                100 + i / 250,
                i % 250
            )
        })
        .collect();
    // 100/0: no subnet gets the canary (the gateway has the policy once g3 is never answered
    // while every answer is non-empty).
    eventually(LONG, async || {
        let answers = dig_batch(c.s.gw.dns(), &subnets).await?;
        let canary = answers
            .iter()
            .filter(|a| a.rdata("A") == ["10.5.0.3"])
            .count();
        let empty = answers.iter().filter(|a| a.rdata("A").is_empty()).count();
        anyhow::ensure!(canary == 0 && empty == 0, "canary {canary}, empty {empty}");
        Ok(())
    })
    .await
    .unwrap();

    c.open("#/service/gray").await;
    c.weights(&[("v1", "90"), ("v2", "10")]).await;
    let clicked = Instant::now();
    c.browser.click("#groups-apply").await.unwrap();

    let api = eventually(LONG, async || {
        let p = c.policy("gray").await;
        anyhow::ensure!(
            groups(&p) == [("v1".to_owned(), 90), ("v2".to_owned(), 10)],
            "{p}"
        );
        Ok(clicked.elapsed())
    })
    .await
    .unwrap();
    let dns = eventually(LONG, async || {
        let answers = dig_batch(c.s.gw.dns(), &subnets).await?;
        let canary = answers
            .iter()
            .filter(|a| a.rdata("A") == ["10.5.0.3"])
            .count();
        anyhow::ensure!(canary > 0, "no subnet answered with the v2 instance yet");
        Ok((clicked.elapsed(), canary))
    })
    .await
    .unwrap();
    eprintln!(
        "90/10 in the API {api:?} and in dig {:?} after the click ({} of 100 subnets on v2)",
        dns.0, dns.1
    );
    assert!(api < PROPAGATION, "API showed the split after {api:?}");
    assert!(
        dns.0 < PROPAGATION,
        "dig showed the split after {:?}",
        dns.0
    );
    c.wait_text("#groups-msg", |t| t.starts_with("Applied at revision"))
        .await;
    c.wait_text("#share-v2", |t| t == "10 %").await;
    c.shot("console-traffic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_drains_and_asks_before_the_last_healthy_instance() {
    let c = Console::start().await;
    c.s.instance("pay", "p1", versioned("10.8.0.1", "dc1", "v1"))
        .await;
    c.s.instance("pay", "p2", versioned("10.8.0.2", "dc1", "v1"))
        .await;
    // An expired policy no longer applies: a drain starts from the defaults instead of
    // inheriting an expiry that would make it apply never.
    c.s.put(
        "/v1/traffic/pay",
        json!({"shifts": [{"from_dc": "dc1", "to_dc": "dc2", "percent": 50}], "expires_at": 1}),
    )
    .await;
    c.open("#/service/pay").await;
    c.wait_text("#policy-expiry", |t| t.contains("no longer applies"))
        .await;
    c.browser.click("#drain-p1").await.unwrap();
    eventually(LONG, async || {
        let p = c.policy("pay").await;
        anyhow::ensure!(p["overrides"]["p1"]["drain"] == true, "{p}");
        anyhow::ensure!(
            p.get("expires_at").is_none() && p["shifts"] == json!([]),
            "{p}"
        );
        Ok(())
    })
    .await
    .unwrap();
    c.wait_text("#drain-p1", |t| t == "Undrain").await;
    c.wait_text("#instance-table tr[data-id='p1']", |t| {
        t.contains("drained")
    })
    .await;

    // p2 is dc1's last usable instance: the page asks, and cancelling writes nothing.
    c.browser.click("#drain-p2").await.unwrap();
    let ask = c
        .wait_text("#confirm", |t| t.contains("clients in dc1"))
        .await;
    assert!(ask.contains("no healthy instance"), "{ask:?}");
    c.shot("console-confirm").await;
    let before = c.policy("pay").await;
    c.browser.click("#confirm-cancel").await.unwrap();
    c.wait_text("#drain-msg", |t| t.contains("nothing was written"))
        .await;
    assert_eq!(c.policy("pay").await, before);

    // Undrain from the page: the override goes.
    c.browser.click("#drain-p1").await.unwrap();
    eventually(LONG, async || {
        let p = c.policy("pay").await;
        anyhow::ensure!(p["overrides"].get("p1").is_none(), "{p}");
        Ok(())
    })
    .await
    .unwrap();
    c.wait_text("#drain-p1", |t| t == "Drain").await;
}

/// `expires_at: 0` is an expiry long past, as routing reads it: the page shows the policy as
/// expired, its drain as not in force, and a drain from the page starts from the defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_treats_an_expiry_at_0_as_expired() {
    let c = Console::start().await;
    c.s.instance("pay", "p1", versioned("10.8.0.1", "dc1", "v1"))
        .await;
    c.s.instance("pay", "p2", versioned("10.8.0.2", "dc1", "v1"))
        .await;
    c.s.put(
        "/v1/traffic/pay",
        json!({"overrides": {"p2": {"drain": true}}, "expires_at": 0}),
    )
    .await;
    c.open("#/service/pay").await;
    c.wait_text("#policy-expiry", |t| t.contains("no longer applies"))
        .await;
    c.wait_text("#drain-p2", |t| t == "Drain").await;
    c.browser.click("#drain-p1").await.unwrap();
    eventually(LONG, async || {
        let p = c.policy("pay").await;
        anyhow::ensure!(p["overrides"] == json!({"p1": {"drain": true}}), "{p}");
        anyhow::ensure!(p.get("expires_at").is_none(), "{p}");
        Ok(())
    })
    .await
    .unwrap();
    c.wait_text("#drain-p1", |t| t == "Undrain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_the_servers_message_for_a_bad_weight() {
    let c = Console::start().await;
    gray(&c).await;
    let stored = c.policy("gray").await;
    c.open("#/service/gray").await;
    c.weights(&[("v2", "1001")]).await;
    c.browser.click("#groups-apply").await.unwrap();
    let shown = c
        .wait_text("#groups-msg .server-message", |t| !t.is_empty())
        .await;

    // The same body sent by hand gets the same words from the server.
    let mut body = stored.clone();
    body["groups"][1]["weight"] = json!(1001);
    let r =
        c.s.cluster
            .api()
            .put_json(&c.url(), "/v1/traffic/gray", &body)
            .await
            .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    let message = r.error_body().unwrap().message;
    assert_eq!(shown, message);
    assert!(message.starts_with("groups[1].weight"), "{message}");
    assert_eq!(
        c.policy("gray").await,
        stored,
        "a refused change wrote something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_a_conflict_instead_of_overwriting() {
    let c = Console::start().await;
    gray(&c).await;
    c.open("#/service/gray").await;
    c.weights(&[("v1", "90"), ("v2", "10")]).await;

    // Another operator writes between the page's read and its write.
    let theirs =
        json!({"groups": [{"version": "v1", "weight": 50}, {"version": "v2", "weight": 50}]});
    c.s.put("/v1/traffic/gray", theirs).await;
    // The page hears of it (live) and keeps the operator's edits, saying they are stale.
    c.wait_text("#groups-stale", |t| t.contains("Changed meanwhile"))
        .await;
    c.browser.click("#groups-apply").await.unwrap();
    let shown = c.wait_text("#conflict", |t| t.contains("Conflict")).await;
    assert!(shown.contains("prev_rev"), "{shown:?}");
    let current = c.browser.text("#conflict-current").await.unwrap();
    let current: Value = serde_json::from_str(&current).unwrap();
    assert_eq!(
        groups(&current),
        [("v1".to_owned(), 50), ("v2".to_owned(), 50)]
    );
    assert_eq!(
        groups(&c.policy("gray").await),
        [("v1".to_owned(), 50), ("v2".to_owned(), 50)],
        "the console overwrote the other client's change"
    );
    c.shot("console-conflict").await;

    // Discarding the edits shows the stored weights in the form.
    c.browser.click("#conflict-reload").await.unwrap();
    eventually(LONG, async || {
        let v = c
            .browser
            .execute(
                "return document.querySelector(\".group-weight[data-version='v1']\").value",
                vec![],
            )
            .await?;
        anyhow::ensure!(v == "50", "v1 weight input reads {v}");
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_forces_a_datacenter_shift_with_an_expiry() {
    let c = Console::start().await;
    c.s.instance("shop", "s1", versioned("10.9.1.1", "dc1", "v1"))
        .await;
    c.s.instance("shop", "s2", versioned("10.9.2.1", "dc2", "v1"))
        .await;
    // dig asks from 127.0.0.1, placed in dc1.
    c.s.wait_rdata("shop.ns.corp", "A", &[], &["10.9.1.1"])
        .await;
    c.open("#/service/shop").await;
    c.wait("#shift-apply").await;
    c.browser.fill("#shift-percent", "100").await.unwrap();
    c.browser.fill("#shift-minutes", "2").await.unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    c.browser.click("#shift-apply").await.unwrap();
    let p = eventually(LONG, async || {
        let p = c.policy("shop").await;
        anyhow::ensure!(
            p["shifts"] == json!([{"from_dc": "dc1", "to_dc": "dc2", "percent": 100}]),
            "{p}"
        );
        Ok(p)
    })
    .await
    .unwrap();
    let expires = p["expires_at"].as_u64().unwrap();
    assert!(
        (before + 110_000..=before + 130_000).contains(&expires),
        "expires_at {expires}, {} ms after the click",
        expires.saturating_sub(before)
    );
    c.s.wait_rdata("shop.ns.corp", "A", &[], &["10.9.2.1"])
        .await;
    c.wait_text("#shift-list", |t| {
        t.contains("100 % of dc1's clients to dc2")
    })
    .await;

    // Draining s2, the one instance dc1's clients are shifted to, asks first.
    c.browser.click("#drain-s2").await.unwrap();
    let ask = c
        .wait_text("#confirm", |t| t.contains("clients in dc1"))
        .await;
    assert!(ask.contains("in dc2, where they are shifted"), "{ask:?}");
    c.browser.click("#confirm-apply").await.unwrap();
    eventually(LONG, async || {
        let p = c.policy("shop").await;
        anyhow::ensure!(p["overrides"]["s2"]["drain"] == true, "{p}");
        Ok(())
    })
    .await
    .unwrap();

    // Removing the shift from the page.
    c.browser
        .click("#shift-list li[data-shift='dc1-dc2'] button")
        .await
        .unwrap();
    eventually(LONG, async || {
        let p = c.policy("shop").await;
        anyhow::ensure!(p["shifts"] == json!([]), "{p}");
        Ok(())
    })
    .await
    .unwrap();
}
