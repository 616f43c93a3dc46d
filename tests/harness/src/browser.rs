//! [`Browser`]: a real headless Chromium driven over W3C WebDriver by `chromedriver`.
//!
//! `chromedriver --port=PORT` runs in its own process group with its output in a temporary
//! directory; the session's Chromium gets a fresh profile directory and flags that keep it
//! off the network (no background requests, updates, sync or QUIC: this machine's network
//! is closed, and without them Chromium floods it with refused connections). The WebDriver
//! JSON protocol is spoken with the harness' reqwest; only the calls the console tests need
//! are here (navigate, reload, find, click, type, read text, run a script, screenshot, the browser
//! log). Dropping the `Browser` ends the session and kills the whole group, Chromium
//! included. Assertions belong in the tests.

use std::fs::File;
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::eventually;

/// Where Debian's packages put the driver and the browser.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &[&str] = &["/usr/lib/chromium/chromium", "/usr/bin/chromium"];

/// How long the driver and the first session may take on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Launches of Chromium tried before a session's start counts as failed.
const SESSION_ATTEMPTS: u32 = 2;

/// The W3C key under which an element reference travels.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One headless Chromium session, ended (with its driver) on drop.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    http: reqwest::Client,
    logs: TempDir,
    _profile: TempDir,
}

/// A reference to an element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts `chromedriver` on a free loopback port and opens a headless session with a
    /// 1400x1000 window.
    pub async fn start() -> anyhow::Result<Browser> {
        if !Path::new(CHROMEDRIVER).exists() {
            bail!(
                "{CHROMEDRIVER} not found: apt-get install chromium chromium-driver (scripts/test.sh does)"
            );
        }
        let chromium = CHROMIUM
            .iter()
            .find(|p| Path::new(p).exists())
            .context("chromium not found: apt-get install chromium")?;
        let port = crate::ports::reserve_ports(1)[0];
        let logs = tempfile::Builder::new()
            .prefix("pyxis-browser-")
            .tempdir()?;
        let profile = tempfile::Builder::new().prefix("pyxis-chrome-").tempdir()?;
        let out = File::create(logs.path().join("chromedriver.log"))?;
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg("--enable-chrome-logs")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            // Its own group, so that drop can kill Chromium's processes with the driver.
            .process_group(0)
            .spawn()
            .context("start chromedriver")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let mut b = Browser {
            driver,
            port,
            session: String::new(),
            http,
            logs,
            _profile: profile,
        };
        eventually(START_TIMEOUT, async || {
            let r = b.http.get(b.url("/status")).send().await?;
            let v: Value = r.json().await?;
            anyhow::ensure!(v["value"]["ready"] == true, "driver not ready: {v}");
            Ok(())
        })
        .await
        .with_context(|| b.driver_log())?;
        // Under a full parallel test run, a Chromium now and then exits while starting
        // ("session not created: Chrome instance exited"), before any page of ours loads.
        // One more launch with a fresh profile; the first failure and the driver's log (which
        // carries Chromium's own output, `--enable-chrome-logs`) stay on stderr to read.
        let mut attempt = 0;
        let v = loop {
            attempt += 1;
            match b.new_session(chromium).await {
                Ok(v) => break v,
                Err(e)
                    if attempt < SESSION_ATTEMPTS
                        && format!("{e:#}").contains("session not created") =>
                {
                    eprintln!(
                        "browser: launch {attempt} failed, trying again: {e:#}\n{}",
                        b.driver_log()
                    );
                    b._profile = tempfile::Builder::new().prefix("pyxis-chrome-").tempdir()?;
                }
                Err(e) => return Err(e).with_context(|| b.driver_log()),
            }
        };
        b.session = v["sessionId"]
            .as_str()
            .context("no sessionId in the new session's answer")?
            .to_owned();
        Ok(b)
    }

    /// Asks the driver for a session: a Chromium with this browser's profile and flags.
    async fn new_session(&self, chromium: &str) -> anyhow::Result<Value> {
        let profile_arg = format!("--user-data-dir={}", self._profile.path().display());
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1400,1000", profile_arg,
                ],
            },
        }}});
        self.send(reqwest::Method::POST, "/session", Some(caps))
            .await
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// One WebDriver call; the answer's `value`, or its error as an error.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(method.clone(), self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("webdriver {method} {path}"))?;
        let status = resp.status();
        let v: Value = resp
            .json()
            .await
            .with_context(|| format!("webdriver {method} {path}: answer is not JSON"))?;
        if !status.is_success() {
            bail!(
                "webdriver {method} {path}: {status} {}: {}",
                v["value"]["error"],
                v["value"]["message"]
            );
        }
        Ok(v["value"].clone())
    }

    /// A call on this session: `path` is relative to `/session/ID`.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let path = format!("/session/{}{path}", self.session);
        let body = (method != reqwest::Method::GET).then_some(body);
        self.send(method, &path, body).await
    }

    /// Opens `url` and waits for its load event.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call(reqwest::Method::POST, "/url", json!({"url": url}))
            .await?;
        Ok(())
    }

    /// Reloads the current page (as the browser's reload button) and waits for its load
    /// event; a navigation to the same URL would only move to its `#fragment`.
    pub async fn refresh(&self) -> anyhow::Result<()> {
        self.call(reqwest::Method::POST, "/refresh", json!({}))
            .await?;
        Ok(())
    }

    /// The first element matching the CSS selector `css` now (an error if there is none).
    pub async fn find(&self, css: &str) -> anyhow::Result<Element> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await?;
        Ok(Element(
            v[ELEMENT_KEY]
                .as_str()
                .with_context(|| format!("{css}: no element reference in {v}"))?
                .to_owned(),
        ))
    }

    /// Every element matching `css` now (maybe none).
    pub async fn find_all(&self, css: &str) -> anyhow::Result<Vec<Element>> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/elements",
                json!({"using": "css selector", "value": css}),
            )
            .await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str().map(|s| Element(s.to_owned())))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Waits up to `deadline` for an element matching `css`.
    pub async fn wait(&self, css: &str, deadline: Duration) -> anyhow::Result<Element> {
        eventually(deadline, async || self.find(css).await)
            .await
            .with_context(|| format!("waiting for {css}"))
    }

    /// The rendered text of `el`.
    pub async fn text_of(&self, el: &Element) -> anyhow::Result<String> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{}/text", el.0),
                Value::Null,
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        let el = self.find(css).await?;
        self.text_of(&el).await
    }

    /// Waits up to `deadline` until the text of `css` satisfies `ok`; returns it.
    pub async fn wait_text(
        &self,
        css: &str,
        deadline: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        eventually(deadline, async || {
            let t = self.text(css).await?;
            anyhow::ensure!(ok(&t), "{css} reads {t:?}");
            Ok(t)
        })
        .await
    }

    /// Clicks the first element matching `css`. A page that redraws (a live update) between
    /// the find and the click leaves a stale reference; the element is then found again.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let el = self.find(css).await?;
            match self
                .call(
                    reqwest::Method::POST,
                    &format!("/element/{}/click", el.0),
                    json!({}),
                )
                .await
            {
                Err(e) if attempt < 5 && e.to_string().contains("stale element reference") => {}
                other => return other.map(|_| ()),
            }
        }
    }

    /// Replaces the value of the input matching `css` with `text`, as typed keys (so the
    /// page's input listeners run); found again if a redraw made the reference stale.
    pub async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.fill_once(css, text).await {
                Err(e) if attempt < 5 && e.to_string().contains("stale element reference") => {}
                other => return other,
            }
        }
    }

    async fn fill_once(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let el = self.find(css).await?;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{}/clear", el.0),
            json!({}),
        )
        .await?;
        // WebDriver's clear fires no `input` event, which a user emptying the field would.
        self.execute(
            "arguments[0].dispatchEvent(new Event('input', {bubbles: true}))",
            vec![json!({ELEMENT_KEY: el.0})],
        )
        .await?;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{}/value", el.0),
            json!({"text": text}),
        )
        .await?;
        Ok(())
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page; its result.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Saves a PNG of the whole page to `path`: the window is made as tall as the page
    /// (up to 4000 px) for the capture, then set back.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let rect = self
            .call(reqwest::Method::GET, "/window/rect", Value::Null)
            .await?;
        let height = self
            .execute("return document.documentElement.scrollHeight", vec![])
            .await?
            .as_u64()
            .unwrap_or(1000)
            .clamp(600, 4000);
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            json!({"width": rect["width"], "height": height + 100}),
        )
        .await?;
        self.execute("window.scrollTo(0, 0)", vec![]).await?;
        let shot = self
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            json!({"width": rect["width"], "height": rect["height"]}),
        )
        .await?;
        let v = shot?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().context("screenshot: no data")?)
            .context("screenshot: not base64")?;
        std::fs::write(path, png).with_context(|| format!("write {}", path.display()))
    }

    /// The browser's console messages since the last call (JavaScript errors included).
    pub async fn console_log(&self) -> anyhow::Result<Vec<String>> {
        let v = self
            .call(reqwest::Method::POST, "/se/log", json!({"type": "browser"}))
            .await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| format!("{} {}", e["level"], e["message"]))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The driver's own log (for failure messages).
    pub fn driver_log(&self) -> String {
        let path: PathBuf = self.logs.path().join("chromedriver.log");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // End the session so the driver quits Chromium cleanly; a blocking HTTP/1.1 request
        // by hand, since drop cannot await. Whatever it answers, the group is killed next.
        if !self.session.is_empty()
            && let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port))
        {
            use std::io::{Read as _, Write as _};
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let req = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                self.session
            );
            if s.write_all(req.as_bytes()).is_ok() {
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
            }
        }
        // SAFETY: killpg with the group id of a child this struct spawned as group leader.
        unsafe {
            libc::killpg(self.driver.id() as libc::pid_t, libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}
