//! The web console: static assets under `/ui`, embedded in the binary.
//!
//! The console is a small single-page application (hand-written HTML, CSS and JavaScript in
//! `pyxis/ui/`, no framework and no build step) compiled into the binary with
//! `include_bytes!`, so every node serves the same console and nothing is fetched from
//! another host at run time. It reads and writes only through the public `/v1/...` routes
//! (with the caller's token), so this module serves files and nothing else: no API, no
//! state, no templating. Every answer carries `cache-control: no-cache` (a node upgrade
//! must not leave an old console running against a new API) and a content security policy
//! that allows this origin only.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file of the console.
struct Asset {
    /// The file name under `/ui/`.
    name: &'static str,
    /// Its `content-type`.
    content_type: &'static str,
    /// Its bytes.
    body: &'static [u8],
}

/// The `content-type` of the scripts.
const JS: &str = "text/javascript; charset=utf-8";

/// An [`Asset`] for `pyxis/ui/NAME`, embedded at compile time.
macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../../ui/", $name)),
        }
    };
}

/// Every file of the console; `index.html` is also the answer to `/ui` and `/ui/`.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("api.js", JS),
    asset!("view.js", JS),
    asset!("app.js", JS),
    asset!("services.js", JS),
    asset!("service.js", JS),
    asset!("policy.js", JS),
    asset!("cluster.js", JS),
    asset!("agents.js", JS),
    asset!("audit.js", JS),
];

/// The policy sent with every asset: scripts, styles, images and API calls from this
/// origin only, so the console cannot load (or leak to) anything on another host.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The console's routes: `/ui`, `/ui/` and `/ui/{file}`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/{file}", get(file))
}

/// `GET /ui` and `GET /ui/`: the console's page.
async fn index() -> Response {
    serve("index.html")
}

/// `GET /ui/{file}`: one asset, or 404.
async fn file(Path(name): Path<String>) -> Response {
    serve(&name)
}

/// The asset called `name` with its headers, or a plain 404 naming it.
fn serve(name: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CACHE_CONTROL, "no-cache")],
            format!("no console file named {name:?}\n"),
        )
            .into_response();
    };
    let mut resp = asset.body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    async fn get_path(path: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let resp = routes::<()>()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("router answers");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, headers, body.to_vec())
    }

    #[tokio::test]
    async fn ui_index_is_served_at_every_entry_path() {
        for path in ["/ui", "/ui/", "/ui/index.html"] {
            let (status, headers, body) = get_path(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
            assert!(
                headers[header::CONTENT_SECURITY_POLICY]
                    .to_str()
                    .expect("ascii")
                    .starts_with("default-src 'self'")
            );
            let text = String::from_utf8(body).expect("utf-8");
            assert!(
                text.contains("<script type=\"module\" src=\"/ui/app.js\">"),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn ui_assets_have_their_content_types() {
        for (path, ct) in [
            ("/ui/console.css", "text/css; charset=utf-8"),
            ("/ui/app.js", "text/javascript; charset=utf-8"),
            ("/ui/api.js", "text/javascript; charset=utf-8"),
        ] {
            let (status, headers, body) = get_path(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], ct, "{path}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{path}");
            assert!(!body.is_empty(), "{path}");
        }
    }

    #[tokio::test]
    async fn ui_unknown_files_are_404() {
        for path in ["/ui/nope.js", "/ui/..%2Fsecret", "/ui/INDEX.HTML"] {
            let (status, headers, body) = get_path(path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
            assert!(String::from_utf8_lossy(&body).starts_with("no console file named"));
        }
    }

    /// Nothing in the console points at another host: every script, style and call is
    /// relative to the node that served it.
    #[test]
    fn ui_assets_name_no_other_host() {
        for a in ASSETS {
            let text = std::str::from_utf8(a.body).expect("assets are UTF-8");
            for scheme in ["http://", "https://", "//cdn", "ws://", "wss://"] {
                assert!(
                    !text.contains(scheme),
                    "{} contains {scheme:?}: the console must load nothing from another host",
                    a.name
                );
            }
        }
    }

    /// Every module a script imports is an embedded asset, so no import 404s at run time.
    #[test]
    fn ui_imports_are_all_embedded() {
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(a.body).expect("assets are UTF-8");
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let Some(start) = line.find("\"/ui/") else {
                    panic!("{}: import not from /ui/: {line}", a.name);
                };
                let rest = &line[start + 5..];
                let name = &rest[..rest.find('"').expect("closing quote")];
                assert!(
                    ASSETS.iter().any(|b| b.name == name),
                    "{} imports {name}, which is not embedded",
                    a.name
                );
            }
        }
    }
}
