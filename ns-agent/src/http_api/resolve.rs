//! `GET /v1/resolve/NAME[?wait_rev=N&timeout=30s]`: the policy-applied list of a name for this
//! agent ([`crate::resolve::View`]), with its index in the body and in `X-Pyxis-Index`.
//!
//! With `wait_rev`, the reply waits (Consul's blocking query) until the view's index is past
//! `N`, that is until its content changed after the view the client holds, or until `timeout`
//! (default 5 minutes, at most 10; more is cut to 10), then answers the current view either
//! way. Errors name the parameter: 400 for a bad name, `wait_rev` or `timeout` or an unknown
//! parameter, 404 for a service that does not exist, 503 before the mirror listed the store.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ns_core::ServiceName;

use super::{Api, error};
use crate::resolve::View;
use crate::toml_span::parse_duration;

/// The response header carrying the view's index.
pub const INDEX_HEADER: &str = "x-pyxis-index";
/// Wait of a blocking query that gives no `timeout`.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Longest wait of a blocking query.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// `GET /v1/resolve/{name}`.
pub(super) async fn resolve(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(k) = q.keys().find(|k| *k != "wait_rev" && *k != "timeout") {
        return bad(&format!(
            "{k}: unknown parameter; expected wait_rev and timeout"
        ));
    }
    let service = match ServiceName::parse(&name) {
        Ok(s) => s,
        Err(e) => return bad(&format!("name: {e}")),
    };
    let wait_rev = match q.get("wait_rev").map(|v| v.parse::<u64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return bad(&format!(
                "wait_rev: {:?} is not a revision (a whole number)",
                q.get("wait_rev").map_or("", String::as_str)
            ));
        }
    };
    let timeout = match q.get("timeout").map(|v| parse_duration(v)) {
        None => DEFAULT_WAIT,
        Some(Ok(d)) => d.min(MAX_WAIT),
        Some(Err(e)) => return bad(&format!("timeout: {e}")),
    };
    let book = &api.book;
    if !book.ready() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the agent's mirror has not listed the store yet",
        );
    }
    // Subscribed before the first look, so a change in between still wakes the wait.
    let mut changes = book.changes();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let Some(view) = book.get(&service) else {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("name: no service {name:?}"),
            );
        };
        if wait_rev.is_none_or(|n| view.index > n) {
            return reply(view);
        }
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    return reply(view);
                }
            }
            () = tokio::time::sleep_until(deadline) => return reply(view),
        }
    }
}

/// `GET /v1/resolve/` without a name.
pub(super) async fn missing_name() -> Response {
    bad("name: required (GET /v1/resolve/NAME)")
}

fn reply(view: View) -> Response {
    let index = view.index.to_string();
    ([(INDEX_HEADER, index)], Json(view)).into_response()
}

fn bad(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_argument", message)
}
