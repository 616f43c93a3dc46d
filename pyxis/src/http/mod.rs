//! The HTTP surface of a node: one router for clients, operators and peers.
//!
//! - `api_v1`: key-value and transaction routes for clients.
//! - `acl`: tokens, ACL status and the audit history; `auth`: the token check on `/v1/`.
//! - `admin`: cluster, status, backup, health and metrics routes.
//! - `lease`: lease grant, keep-alive, inspection and revoke.
//! - `watch`: change streams and blocking reads.
//! - `naming`: typed, validated `/v1/services`, `/v1/traffic` and `/v1/datacenters` routes.
//! - `raft_rpc`: peer RPC and request forwarding under `/raft/`, with the peer token check
//!   and per-route body limits.
//! - `serve`: the accept loop with connection limits and timeouts; `throttle`: log rate limits.
//! - `ui`: the web console's embedded static files at `/ui`.
//! - `error`: the JSON error type; `params`: key and query parsing; `request_id`: a write's id.

pub mod acl;
pub mod admin;
pub mod api_v1;
pub mod auth;
pub mod error;
pub mod lease;
pub mod naming;
pub mod params;
pub mod raft_rpc;
pub mod request_id;
pub mod serve;
pub mod throttle;
pub mod ui;
pub mod watch;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::node::Node;

/// All routes of a node, with request metrics.
pub fn router(node: Arc<Node>) -> Router {
    let kv = get(api_v1::get).put(api_v1::put).delete(api_v1::delete);
    let limit = raft_rpc::BodyLimits::new(node.limits.max_txn_ops);
    let small = || DefaultBodyLimit::max(limit.small);
    let raft = Router::new()
        .route(
            "/raft/append",
            post(raft_rpc::append).layer(DefaultBodyLimit::max(limit.append)),
        )
        .route("/raft/vote", post(raft_rpc::vote).layer(small()))
        .route("/raft/pre-vote", post(raft_rpc::pre_vote).layer(small()))
        // A whole snapshot is as large as the state, which no setting bounds.
        .route(
            "/raft/snapshot",
            post(raft_rpc::snapshot).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/raft/write",
            post(raft_rpc::write).layer(DefaultBodyLimit::max(limit.write)),
        )
        .route(
            "/raft/read-index",
            post(raft_rpc::read_index).layer(small()),
        )
        // Layers run last-added first: the token is checked before the cluster id, so that
        // an unknown caller cannot make a `--join` node adopt its id.
        .route_layer(axum::middleware::from_fn_with_state(
            node.clone(),
            raft_rpc::check_cluster,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            node.clone(),
            raft_rpc::check_peer_token,
        ));
    Router::new()
        .route("/v1/kv", kv.clone())
        .route("/v1/kv/", kv.clone())
        .route("/v1/kv/{*key}", kv)
        .route("/v1/txn", post(api_v1::txn))
        .route("/v1/watch", get(watch::watch))
        .route("/v1/watch/", get(watch::watch))
        .route("/v1/watch/{*key}", get(watch::watch))
        .route("/v1/lease", post(lease::grant))
        .route("/v1/lease/{id}", get(lease::show).delete(lease::revoke))
        .route("/v1/lease/{id}/keepalive", post(lease::keep_alive))
        .route("/v1/services", get(naming::services::list))
        .route(
            "/v1/services/{name}",
            get(naming::services::get)
                .put(naming::services::put)
                .delete(naming::services::delete),
        )
        .route(
            "/v1/services/{name}/instances",
            get(naming::services::list_instances),
        )
        .route(
            "/v1/services/{name}/instances/{id}",
            get(naming::services::get_instance)
                .put(naming::services::put_instance)
                .delete(naming::services::delete_instance),
        )
        .route(
            "/v1/traffic/{name}",
            get(naming::policy::get_traffic)
                .put(naming::policy::put_traffic)
                .delete(naming::policy::delete_traffic),
        )
        .route("/v1/datacenters", get(naming::policy::list_datacenters))
        .route(
            "/v1/datacenters/{dc}",
            get(naming::policy::get_datacenter)
                .put(naming::policy::put_datacenter)
                .delete(naming::policy::delete_datacenter),
        )
        .route("/v1/agents", get(naming::agents::list))
        .route("/v1/agents/{node}", axum::routing::put(naming::agents::put))
        .route("/v1/cluster", get(admin::cluster))
        .route("/v1/cluster/members", post(admin::add_member))
        .route(
            "/v1/cluster/members/{id}",
            axum::routing::delete(admin::remove_member),
        )
        .route("/v1/status", get(admin::status))
        .route("/v1/snapshot", get(admin::snapshot))
        .route("/v1/acl/status", get(acl::status))
        .route("/v1/acl/bootstrap", post(acl::bootstrap))
        .route("/v1/acl/tokens", get(acl::list).post(acl::create))
        .route("/v1/acl/tokens/{which}", axum::routing::delete(acl::revoke))
        .route("/v1/acl/token/self", get(acl::token_self))
        .route("/v1/audit", get(acl::audit))
        .route("/healthz", get(admin::healthz))
        .route("/livez", get(admin::livez))
        .route("/metrics", get(admin::metrics))
        .merge(ui::routes())
        .merge(raft)
        // Innermost: a removed node answers 503 before the token is looked at.
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            auth::check,
        ))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            admin::refuse_if_removed,
        ))
        .layer(axum::middleware::from_fn(crate::metrics::track_http))
        .with_state(node)
}
