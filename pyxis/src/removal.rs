//! Whether this node was removed from the cluster, so that it says so and stops serving.
//!
//! openraft leaves a removed node running with its last view: it may still name a leader,
//! and one removed while down restarts with a membership that lists it. So [`spawn`] checks,
//! every [`CHECK_EVERY`]: the membership this node holds (once it no longer lists this node,
//! having listed it, it was removed), and, while no leader has reached it, the cluster view of a peer that
//! leads and is healthy. A removed node answers `/healthz` 503 `removed`, reports state
//! `removed` in `/v1/status`, and refuses client requests (`http::admin::refuse_if_removed`).
//! Adding it back clears the mark: the leader reaches it and its membership lists it again.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pyxis_client::api::{ClusterInfo, Health, NodeStatus};
use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::raft::ServerState;
use crate::raft::WatchReceiver as _;

/// How often a node checks whether it is still a member.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long a peer may take to answer one check.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);

impl Node {
    /// Whether this node was removed from the cluster (see the module doc).
    pub fn removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
    }

    /// Whether the membership this node holds lists it; `None` while it holds none.
    fn listed(&self) -> Option<bool> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let mut nodes = m.membership_config.nodes().peekable();
        nodes.peek()?;
        Some(m.membership_config.get_node(&self.id).is_some())
    }
}

/// Keeps `node.removed` up to date until `shutdown` fires.
pub fn spawn(node: Arc<Node>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        // A joiner replays memberships from before its own addition: not listed in them is
        // only a removal once it was listed.
        let mut was_listed = false;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
            let Some(removed) = check(&node, &mut was_listed).await else {
                continue;
            };
            let was = node.removed.swap(removed, Ordering::Relaxed);
            if removed && !was {
                tracing::warn!(
                    id = node.id,
                    "this node was removed from the cluster; it no longer serves clients"
                );
            }
        }
    });
}

/// One check: `Some(removed)` when it could tell, `None` when no leader answered.
async fn check(node: &Node, was_listed: &mut bool) -> Option<bool> {
    match node.listed() {
        Some(true) => *was_listed = true,
        Some(false) if *was_listed => return Some(true),
        _ => {}
    }
    let peers: Vec<String> = {
        let m = node.raft.metrics();
        let m = m.borrow_watched();
        if m.state == ServerState::Leader {
            return Some(false);
        }
        m.membership_config
            .nodes()
            .filter(|(id, _)| **id != node.id)
            .map(|(_, n)| n.addr.clone())
            .collect()
    };
    let limit = node.leader_contact.limit();
    if node.leader_contact.silence().is_some_and(|s| s <= limit) {
        // A leader reached this node recently: it is a member.
        return Some(false);
    }
    let asks = peers.iter().map(|addr| leader_view(node, addr));
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .next()
        .map(|view| view.members.iter().all(|m| m.id != node.id))
}

/// The membership as seen by the peer at `addr` if it leads this cluster and is healthy
/// (its quorum heard from recently, or it is the only voter); `None` otherwise: a deposed
/// or stale leader's view may be old.
async fn leader_view(node: &Node, addr: &str) -> Option<ClusterInfo> {
    let get = |path: &str| {
        node.http
            .get(node.peers.url(addr, path))
            .timeout(PEER_TIMEOUT)
            .send()
    };
    let status: NodeStatus = get("/v1/status").await.ok()?.json().await.ok()?;
    let ours = node.cluster.get().map(|c| c.to_string());
    if status.state != "leader" || status.cluster_id != ours || ours.is_none() {
        return None;
    }
    let health: Health = get("/healthz").await.ok()?.json().await.ok()?;
    if !health.healthy || health.leader != Some(status.id) {
        return None;
    }
    let view: ClusterInfo = get("/v1/cluster?consistency=serializable")
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    (view.leader == Some(status.id)).then_some(view)
}
