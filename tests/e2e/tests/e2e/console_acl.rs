//! The web console at `/ui` with ACLs on, in a real headless Chromium against a real
//! one-node store: the token dialog comes before any data; a well-formed but unknown token
//! gets the server's 401 message in the dialog and still no data; a `read` token sees the
//! services, but a drain from the page shows the server's 403 naming the role it needs and
//! writes nothing; an `operator` token's drain is applied and the audit page names its
//! description; revoking the token in use makes the open page ask again within a few
//! seconds (the live stream ends and its reconnect gets 401). The token is kept in
//! `sessionStorage` only. The console with ACLs off is `console`.

use std::time::{Duration, Instant};

use harness::acl::Authed;
use harness::{Browser, Cluster, Reply};
use pyxis_client::api::{AuditList, ErrorCode, Role};
use reqwest::Method;
use serde_json::{Value, json};

use crate::acl::{instance, refused};
use crate::console::fail;
use crate::gateway::LONG;

/// A token of the right shape (`pyx_` and 64 hex digits) that the store never issued.
const UNKNOWN: &str = "pyx_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// How soon after the revoke's reply the open page must ask for a token again.
const ASK_AGAIN: Duration = Duration::from_secs(5);

/// A one-node store with ACLs bootstrapped, its admin token, and a browser.
struct AclConsole {
    cluster: Cluster,
    browser: Browser,
    a: Authed,
    admin: String,
}

impl AclConsole {
    fn url(&self) -> String {
        self.cluster.url(1)
    }

    /// `method path` on the node with `token` (the admin's when `None`).
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let token = token.unwrap_or(&self.admin);
        self.a
            .call(method, &self.url(), path, Some(token), body)
            .await
            .unwrap()
    }

    /// Every key with its revisions, read with the admin token (the listing's own read
    /// revision left out): what a refused change must leave as it was.
    async fn keys(&self) -> Value {
        let mut v: Value = self
            .call(Method::GET, "/v1/kv/?prefix=true", None, None)
            .await
            .ok()
            .unwrap()
            .json()
            .unwrap();
        v.as_object_mut().map(|o| o.remove("revision"));
        v
    }

    /// The stored traffic policy of `web` (`null` when none), read with the admin token.
    async fn policy(&self) -> Value {
        let r = self.call(Method::GET, "/v1/traffic/web", None, None).await;
        if r.status == 404 {
            return Value::Null;
        }
        r.ok().unwrap().json().unwrap()
    }

    /// The audit history, read with the admin token.
    async fn audit(&self) -> AuditList {
        self.call(Method::GET, "/v1/audit", None, None)
            .await
            .ok()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Waits up to `deadline` for `css`; on failure the message has the page's text and log.
    async fn wait_for(&self, css: &str, deadline: Duration) {
        if let Err(e) = self.browser.wait(css, deadline).await {
            fail(&self.browser, e).await;
        }
    }

    async fn wait(&self, css: &str) {
        self.wait_for(css, LONG).await;
    }

    /// Waits until the text of `css` satisfies `ok`.
    async fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        match self.browser.wait_text(css, LONG, ok).await {
            Ok(t) => t,
            Err(e) => fail(&self.browser, e).await,
        }
    }

    /// Whether the token dialog is open now.
    async fn asking(&self) -> bool {
        self.browser
            .execute(
                "return document.getElementById('token-dialog').open",
                vec![],
            )
            .await
            .unwrap()
            == json!(true)
    }

    /// Types `secret` into the open token dialog and submits it.
    async fn enter_token(&self, secret: &str) {
        self.wait("#token-dialog[open] #token-input").await;
        self.browser.fill("#token-input", secret).await.unwrap();
        self.browser.click("#token-save").await.unwrap();
    }

    /// The rows of services the page shows (none while it has no data).
    async fn service_rows(&self) -> usize {
        self.browser
            .find_all("tr[data-service]")
            .await
            .unwrap()
            .len()
    }

    /// Where the page keeps anything: its sessionStorage token, every localStorage entry
    /// and its cookies.
    async fn storage(&self) -> Value {
        self.browser
            .execute(
                "return {session: sessionStorage.getItem('pyxis.token'), \
                 local: Object.keys(localStorage).map((k) => [k, localStorage.getItem(k)]), \
                 cookie: document.cookie}",
                vec![],
            )
            .await
            .unwrap()
    }
}

/// The part of a 401/403 message after its `METHOD PATH: ` (the same for every request).
fn reason(message: &str) -> &str {
    message.split_once(": ").map_or(message, |(_, why)| why)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_with_acls_asks_for_a_token_and_shows_refusals() {
    let started = Instant::now();
    let (cluster, browser) = tokio::join!(Cluster::start(1), Browser::start());
    let (cluster, browser) = (cluster.unwrap(), browser.unwrap());
    let a = Authed::new();
    let admin = a.bootstrap(&cluster.url(1)).await.unwrap();
    let c = AclConsole {
        cluster,
        browser,
        a,
        admin,
    };
    let (read, _) =
        c.a.create(&c.url(), &c.admin, Role::Read, None, "console reader")
            .await
            .unwrap();
    let (op, op_accessor) =
        c.a.create(&c.url(), &c.admin, Role::Operator, None, "console operator")
            .await
            .unwrap();
    for id in ["w1", "w2"] {
        c.call(
            Method::PUT,
            &format!("/v1/services/web/instances/{id}"),
            None,
            Some(&instance("host-1")),
        )
        .await
        .ok()
        .unwrap();
    }

    // 1. The dialog comes first, with nothing loaded behind it.
    c.browser
        .goto(&format!("{}/ui/#/services", c.url()))
        .await
        .unwrap();
    c.wait("#token-dialog[open]").await;
    assert_eq!(c.browser.text("#main").await.unwrap(), "Loading…");
    assert_eq!(c.service_rows().await, 0);
    // An unknown token: the dialog asks again with the server's own words, still no data.
    let r = c
        .call(Method::GET, "/v1/services", Some(UNKNOWN), None)
        .await;
    let unknown = refused(&r, 401, ErrorCode::Unauthorized, "unknown token").message;
    c.enter_token(UNKNOWN).await;
    let shown = c.wait_text("#token-error", |t| !t.is_empty()).await;
    assert!(
        shown.starts_with("The token was refused: GET /v1/") && shown.ends_with(reason(&unknown)),
        "dialog says {shown:?}; the server says {unknown:?}"
    );
    assert!(c.asking().await, "the dialog closed after an unknown token");
    // The page's frame may be drawn now; its reads wait for a token that works.
    let main = c.browser.text("#main").await.unwrap();
    assert!(!main.contains("web"), "data behind the dialog: {main:?}");
    assert_eq!(c.service_rows().await, 0);
    // The read token: the services page with the registered service.
    c.enter_token(&read).await;
    c.wait_text("tr[data-service='web'] td.total", |t| t == "2/2")
        .await;
    assert!(!c.asking().await, "the dialog is still open");
    c.wait_text("#who", |t| t == "read · console reader").await;

    // 2. A read token may look, not drain: the server's 403 naming the role, nothing written.
    let before = c.keys().await;
    c.browser.click("tr[data-service='web'] a").await.unwrap();
    c.wait("#drain-w1").await;
    c.browser.click("#drain-w1").await.unwrap();
    let shown = c
        .wait_text("#drain-msg .server-message", |t| !t.is_empty())
        .await;
    // The page writes with compare-and-set on "no policy yet" (prev_rev 0); the same call
    // by hand gets the same words.
    let r = c
        .call(
            Method::PUT,
            "/v1/traffic/web?prev_rev=0",
            Some(&read),
            Some("{}"),
        )
        .await;
    let forbidden = refused(&r, 403, ErrorCode::Forbidden, "read token drain").message;
    assert_eq!(shown, forbidden);
    assert!(
        shown.contains("needs the operator or admin role") && shown.ends_with("has read"),
        "{shown:?}"
    );
    assert!(
        c.browser
            .text("#drain-msg")
            .await
            .unwrap()
            .starts_with("Refused (403)")
    );
    assert_eq!(c.keys().await, before, "a refused drain changed a key");
    assert_eq!(
        c.policy().await,
        Value::Null,
        "a refused drain stored a policy"
    );
    assert_eq!(c.browser.text("#drain-w1").await.unwrap(), "Drain");

    // 3. An operator token may. A new tab starts with an empty sessionStorage: clearing it
    // and reloading is that tab.
    c.browser
        .execute("sessionStorage.clear()", vec![])
        .await
        .unwrap();
    c.browser.refresh().await.unwrap();
    c.enter_token(&op).await;
    c.wait("#drain-w1").await;
    c.browser.click("#drain-w1").await.unwrap();
    c.wait_text("#drain-msg", |t| t.starts_with("Applied"))
        .await;
    let p = c.policy().await;
    assert_eq!(p["overrides"]["w1"]["drain"], json!(true), "{p}");
    c.wait_text("#drain-w1", |t| t == "Undrain").await;
    let audit = c.audit().await;
    let entry = audit
        .entries
        .iter()
        .find(|e| e.what.starts_with("PUT /v1/traffic/web"))
        .unwrap_or_else(|| panic!("no audit entry for the drain: {audit:?}"));
    assert_eq!(entry.actor.description, "console operator");
    assert_eq!(entry.actor.accessor.as_deref(), Some(op_accessor.as_str()));
    assert!(
        !audit
            .entries
            .iter()
            .any(|e| e.actor.description == "console reader"),
        "the refused drain is in the audit history: {audit:?}"
    );
    c.browser.click("#nav a[data-page='audit']").await.unwrap();
    let row = c
        .wait_text(
            &format!("#audit-table tr[data-revision='{}']", entry.revision),
            |t| !t.is_empty(),
        )
        .await;
    assert!(
        row.contains("console operator") && row.contains(&op_accessor),
        "{row:?}"
    );

    // 4. Revoking the token in use: the open page asks again. The services page reads only
    // on live events, so the 401 comes from the stream's reconnect.
    c.browser
        .click("#nav a[data-page='services']")
        .await
        .unwrap();
    c.wait("tr[data-service='web']").await;
    c.wait("#live[data-state='live']").await;
    let kept = c.storage().await;
    assert_eq!(
        kept,
        json!({"session": op, "local": [], "cookie": ""}),
        "the token is kept elsewhere than sessionStorage"
    );
    c.call(
        Method::DELETE,
        &format!("/v1/acl/tokens/{op_accessor}"),
        None,
        None,
    )
    .await
    .ok()
    .unwrap();
    let revoked = Instant::now();
    c.wait_for("#token-dialog[open]", ASK_AGAIN).await;
    let asked = revoked.elapsed();
    let shown = c.wait_text("#token-error", |t| !t.is_empty()).await;
    assert!(
        shown.starts_with("The token was refused: GET /v1/watch/ns/")
            && shown.ends_with(reason(&unknown)),
        "{shown:?}"
    );
    assert_eq!(
        c.browser.text("#live").await.unwrap(),
        "reconnecting",
        "the stream did not end"
    );
    assert!(asked < ASK_AGAIN, "asked {asked:?} after the revoke");
    // Another token resumes the stream.
    c.enter_token(&read).await;
    c.wait("#live[data-state='live']").await;
    assert!(!c.asking().await, "the dialog is still open");
    assert_eq!(c.storage().await["session"], json!(read));
    eprintln!(
        "asked again {asked:?} after the revoke; the whole test took {:?}",
        started.elapsed()
    );
}
