//! Telling a new member from one that lost its data (etcd's "member has already been
//! bootstrapped").
//!
//! A node started with `--peers` and an empty data dir cannot tell by itself whether it is a
//! member of a new cluster or an old member whose disk was wiped. Started as new, a wiped
//! member forgets its votes and its log, and answers reads from an empty state. So every
//! member, once it has caught up with data of its own, commits `MemberStarted { id }`
//! ([`spawn`]), and a node that finds its data dir empty first asks its peers
//! ([`refuse_if_wiped`]): if one of them knows it as started, it refuses to start and says
//! how to recover. Damaged or partly missing logs are the log store's job (`raft::wal`).

use std::sync::Arc;
use std::time::Duration;

use pyxis_client::api::NodeStatus;
use tokio_util::sync::CancellationToken;

use crate::cluster_id::ClusterId;
use crate::node::Node;
use crate::store::command::Command;

/// How long a starting node waits for each peer's status.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a member that has not announced itself yet tries again.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(500);

/// Fails if any peer (other than `id`) of cluster `cluster` knows node `id` as a member that
/// started with data; peers that do not answer, or belong to another cluster, are skipped.
pub async fn refuse_if_wiped(
    id: u64,
    peers: &[(u64, String)],
    cluster: ClusterId,
    transport: &crate::tls::PeerTransport,
) -> anyhow::Result<()> {
    let http = transport.client_builder().timeout(PROBE_TIMEOUT).build()?;
    let asks = peers
        .iter()
        .filter(|(peer, _)| *peer != id)
        .map(|(peer, addr)| {
            let http = http.clone();
            async move {
                let status = http
                    .get(transport.url(addr, "/v1/status"))
                    .send()
                    .await
                    .ok()?
                    .json::<NodeStatus>()
                    .await
                    .ok()?;
                Some((*peer, addr.clone(), status))
            }
        });
    let ours = cluster.to_string();
    for (peer, addr, status) in futures::future::join_all(asks).await.into_iter().flatten() {
        if status.cluster_id.as_deref() == Some(ours.as_str())
            && status.started_members.contains(&id)
        {
            anyhow::bail!(
                "this node (id {id}) has an empty data dir, but peer {peer} at {addr} knows it as a member that already had data: its data dir was lost or wiped. \
                 Starting it empty as the same member could lose acknowledged writes or vote twice in one term, so it will not start. \
                 To recover, remove it from the cluster (`pyxis members remove {id}`), start it again empty with `--join`, \
                 then add it back (`pyxis members add {id} HOST:PORT`); it then catches up from the leader"
            );
        }
    }
    Ok(())
}

/// Commits `MemberStarted` for this node once it is a member and has caught up, unless the
/// state already says so; runs until that is done or `shutdown` fires.
pub fn spawn(node: Arc<Node>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(ANNOUNCE_EVERY) => {}
            }
            match announce(&node).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "member start not recorded yet; will retry")
                }
            }
        }
    });
}

/// One try: true once the state records this node as started.
async fn announce(node: &Node) -> Result<bool, crate::node::NodeError> {
    let recorded = |node: &Node| {
        node.view
            .with_kv(|kv| kv.started_members().any(|m| m == node.id))
    };
    if recorded(node) {
        return Ok(true);
    }
    let member = {
        let m = node.raft.metrics();
        let m = crate::raft::WatchReceiver::borrow_watched(&m);
        m.membership_config.get_node(&node.id).is_some()
    };
    if !member {
        return Ok(false);
    }
    // Caught up to the leader's commit index: what this node now holds is data of its own.
    node.linearize().await?;
    if recorded(node) {
        return Ok(true);
    }
    node.write(node.ids.next_id(), Command::MemberStarted { id: node.id })
        .await?;
    tracing::info!(id = node.id, "recorded this member as started with data");
    Ok(true)
}
