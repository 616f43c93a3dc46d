//! `POST /v1/callbacks`, `GET /v1/callbacks`, `GET|DELETE /v1/callbacks/ID`: the routes over
//! [`crate::callbacks::Callbacks`], and the checks of what a client registers.
//!
//! The body is `{"name": SERVICE, "url": "http://HOST[:PORT]/PATH"}` and nothing else; a bad
//! body, name or url is a 400 naming the field. A service that does not exist yet may be
//! followed: its callback receives an empty list until it appears. 201 answers the new
//! callback (with its `id`); 409 when the registry is full; 404 for an unknown id.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ns_core::ServiceName;
use serde::Deserialize;
use serde_json::json;

use super::{Api, error};

/// The body of `POST /v1/callbacks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCallback {
    name: String,
    url: String,
}

/// `POST /v1/callbacks`.
pub(super) async fn create(State(api): State<Api>, body: Bytes) -> Response {
    let new: NewCallback = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return bad(&format!(
                "body: {e}; expected {{\"name\": SERVICE, \"url\": \"http://...\"}}"
            ));
        }
    };
    let name = match ServiceName::parse(&new.name) {
        Ok(n) => n,
        Err(e) => return bad(&format!("name: {e}")),
    };
    if let Err(m) = check_url(&new.url) {
        return bad(&format!("url: {m}"));
    }
    match api.callbacks.register(name, new.url) {
        Ok(info) => (StatusCode::CREATED, Json(info)).into_response(),
        Err(e) => error(StatusCode::CONFLICT, "too_many", &e.to_string()),
    }
}

/// `GET /v1/callbacks`.
pub(super) async fn list(State(api): State<Api>) -> Response {
    Json(json!({ "callbacks": api.callbacks.list() })).into_response()
}

/// `GET /v1/callbacks/{id}`.
pub(super) async fn show(State(api): State<Api>, Path(id): Path<String>) -> Response {
    match api.callbacks.list().into_iter().find(|c| c.id == id) {
        Some(c) => Json(c).into_response(),
        None => not_found(&id),
    }
}

/// `DELETE /v1/callbacks/{id}`.
pub(super) async fn delete(State(api): State<Api>, Path(id): Path<String>) -> Response {
    if api.callbacks.remove(&id) {
        Json(json!({ "id": id, "deleted": true })).into_response()
    } else {
        not_found(&id)
    }
}

/// A URL the agent may POST to: `http://` with a host, at most 2,048 bytes. No TLS: the
/// receivers are local processes, as for alert webhooks.
fn check_url(url: &str) -> Result<(), String> {
    if url.len() > 2048 {
        return Err("longer than 2048 bytes".into());
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!("{url:?} must be an http:// URL"));
    };
    // The URL standard reads `http:///x` as host `x`; a missing host is a mistake here.
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} has no host"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials".into());
    }
    Ok(())
}

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("id: no callback {id:?}"),
    )
}

fn bad(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_argument", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_with_a_host() {
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("http://localhost/x?y=1").is_ok());
        for bad in [
            "https://127.0.0.1/x",
            "ftp://h/x",
            "http://",
            "http:///path",
            "127.0.0.1:9000",
            "http://user:pw@host/x",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert!(check_url(&format!("http://h/{}", "a".repeat(3000))).is_err());
    }

    #[test]
    fn the_body_has_exactly_name_and_url() {
        let ok: Result<NewCallback, _> =
            serde_json::from_str(r#"{"name":"web","url":"http://h/"}"#);
        assert!(ok.is_ok());
        let extra = serde_json::from_str::<NewCallback>(r#"{"name":"web","url":"u","x":1}"#)
            .unwrap_err()
            .to_string();
        assert!(extra.contains("unknown field `x`"), "{extra}");
        let missing = serde_json::from_str::<NewCallback>(r#"{"name":"web"}"#)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("missing field `url`"), "{missing}");
    }
}
