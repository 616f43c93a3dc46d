//! One running store node: Raft, the key space view, and the operations handlers call.
//!
//! `start_node` opens storage, starts openraft, bootstraps the cluster from `--peers`
//! when the data dir is new, and serves HTTP until `shutdown` fires. [`Node`] holds
//! what request handlers need: writes go through [`Node::write`] (forwarded to the
//! leader when this node is not it), linearizable reads first call [`Node::linearize`].
//! Membership changes are in `cluster`; routes are in `http`.

use openraft::async_runtime::watch::WatchReceiver as _;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::{Config, ReadPolicy, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cluster_id::{self, ClusterId, ClusterIdentity};
use crate::config::ServerConfig;
use crate::http::error::ApiError;
use crate::raft::log_store::LogStore;
use crate::raft::network::NetworkFactory;
use crate::raft::snapshot::SnapshotDir;
use crate::raft::state_machine::{StateMachine, StoreView};
use crate::raft::{Command, CommandResult, Node as RaftNode, Raft, codec};

/// How long a request waits for a leader to appear before answering 503.
const LEADER_WAIT: Duration = Duration::from_secs(3);

/// How long in-flight requests may run after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How long a follower waits for its state to reach a read index before answering 503.
const READ_WAIT: Duration = Duration::from_secs(5);

/// Why a request forwarded to the leader was not served there.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardError {
    /// The receiver is not the leader (any more); it names the leader it knows.
    NotLeader(Option<(u64, String)>),
    /// The request failed for good; the message says why.
    Failed(String),
}

/// The shared state of a running node.
pub struct Node {
    /// This node's id.
    pub id: u64,
    /// Address others reach this node at.
    pub addr: String,
    /// The Raft handle.
    pub raft: Raft,
    /// Read access to the applied key space.
    pub view: StoreView,
    /// Client for forwarding requests to the leader.
    pub(crate) http: reqwest::Client,
    /// Lease deadlines, kept while this node leads.
    pub leases: crate::lease_timer::LeaseTimers,
    /// The cluster this node belongs to, sent with and checked on every peer call.
    pub cluster: Arc<ClusterIdentity>,
    /// Bounds on one request (`--max-txn-ops`, `--max-response-bytes`).
    pub limits: crate::config::Limits,
    /// When a leader last reached this node, for `/healthz`.
    pub leader_contact: crate::health::LeaderContact,
}

impl Node {
    /// The leader this node knows of, with its address.
    pub fn leader(&self) -> Option<(u64, String)> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let id = m.current_leader?;
        let addr = m.membership_config.get_node(&id)?.addr.clone();
        Some((id, addr))
    }

    /// The current term if this node is the leader, else None.
    pub fn leader_term(&self) -> Option<u64> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        (m.state == ServerState::Leader).then_some(m.current_term)
    }

    /// Whether this node is the leader right now.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().state == ServerState::Leader
    }

    /// Waits (up to [`LEADER_WAIT`]) for some node to be leader; 503 `no_leader` otherwise.
    pub async fn wait_leader(&self) -> Result<(u64, String), ApiError> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            if let Some(l) = self.leader() {
                return Ok(l);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::no_leader());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Commits `cmd` through Raft (on the leader, forwarding if needed) and returns its result.
    pub async fn write(&self, cmd: Command) -> Result<CommandResult, ApiError> {
        metrics::counter!("pyxis_proposals_total").increment(1);
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            let outcome = match self.raft.client_write(cmd.clone()).await {
                Ok(resp) => return Ok(resp.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    match (f.leader_id, f.leader_node) {
                        (Some(id), Some(node)) if id != self.id => {
                            self.forward_write(&node.addr, &cmd).await
                        }
                        _ => Err(ForwardError::NotLeader(None)),
                    }
                }
                Err(RaftError::APIError(e)) => Err(ForwardError::Failed(e.to_string())),
                Err(RaftError::Fatal(e)) => {
                    return Err(ApiError::unavailable(format!("raft stopped: {e}")));
                }
            };
            match outcome {
                Ok(r) => return Ok(r),
                Err(ForwardError::Failed(m)) => return Err(ApiError::unavailable(m)),
                Err(ForwardError::NotLeader(_)) => {
                    // Leadership is moving: wait for the election, then try again.
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ApiError::no_leader());
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        }
    }

    /// Serves a forwarded write on this node, which believes it is the leader.
    pub async fn write_as_leader(&self, cmd: Command) -> Result<CommandResult, ForwardError> {
        match self.raft.client_write(cmd).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(
                ForwardError::NotLeader(f.leader_id.zip(f.leader_node.map(|n| n.addr))),
            ),
            Err(e) => Err(ForwardError::Failed(e.to_string())),
        }
    }

    async fn forward_write(
        &self,
        addr: &str,
        cmd: &Command,
    ) -> Result<CommandResult, ForwardError> {
        let body = codec::encode(cmd).map_err(|e| ForwardError::Failed(e.to_string()))?;
        self.call_leader(addr, "write", body).await
    }

    /// Sends a peer RPC to the leader at `addr` and decodes its `Result<T, ForwardError>`.
    /// A failed connection counts as a leadership change, so the caller retries.
    async fn call_leader<T: serde::de::DeserializeOwned>(
        &self,
        addr: &str,
        rpc: &str,
        body: Vec<u8>,
    ) -> Result<T, ForwardError> {
        let mut req = self
            .http
            .post(format!("http://{addr}/raft/{rpc}"))
            .body(body);
        if let Some(id) = self.cluster.get() {
            req = req.header(cluster_id::HEADER, id.to_string());
        }
        let resp = req
            .send()
            .await
            .map_err(|_| ForwardError::NotLeader(None))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|_| ForwardError::NotLeader(None))?;
        if !status.is_success() {
            return Err(ForwardError::Failed(format!(
                "leader {addr} refused the call (HTTP {status}): {}",
                String::from_utf8_lossy(&bytes)
            )));
        }
        codec::decode::<Result<T, ForwardError>>(&bytes)
            .map_err(|e| ForwardError::Failed(format!("bad reply from leader {addr}: {e}")))?
    }

    /// Makes the next local read linearizable: confirms the read index with the leader
    /// (itself or over RPC) and waits until this node has applied up to it.
    pub async fn linearize(&self) -> Result<(), ApiError> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            let attempt = if self.is_leader() {
                self.read_index_as_leader().await
            } else {
                match self.leader() {
                    Some((id, addr)) if id != self.id => self.remote_read_index(&addr).await,
                    _ => Err(ForwardError::NotLeader(None)),
                }
            };
            match attempt {
                Ok(index) => return self.wait_applied(index).await,
                Err(ForwardError::Failed(m)) => return Err(ApiError::unavailable(m)),
                Err(ForwardError::NotLeader(_)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ApiError::no_leader());
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        }
    }

    /// On the leader: the log index a linearizable read must observe.
    pub async fn read_index_as_leader(&self) -> Result<u64, ForwardError> {
        match self.raft.get_read_linearizer(ReadPolicy::ReadIndex).await {
            Ok(lin) => Ok(lin.read_log_id().index()),
            Err(RaftError::APIError(openraft::errors::LinearizableReadError::ForwardToLeader(
                f,
            ))) => Err(ForwardError::NotLeader(
                f.leader_id.zip(f.leader_node.map(|n| n.addr)),
            )),
            // Quorum lost: the leader cannot confirm it still leads; let the caller retry.
            Err(RaftError::APIError(_)) => Err(ForwardError::NotLeader(None)),
            Err(RaftError::Fatal(e)) => Err(ForwardError::Failed(e.to_string())),
        }
    }

    async fn remote_read_index(&self, addr: &str) -> Result<u64, ForwardError> {
        self.call_leader(addr, "read-index", Vec::new()).await
    }

    async fn wait_applied(&self, index: u64) -> Result<(), ApiError> {
        let mut rx = self.view.subscribe();
        let wait = rx.wait_for(|a| a.index >= index);
        match tokio::time::timeout(READ_WAIT, wait).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ApiError::unavailable(format!(
                "this node has not applied up to read index {index} in time"
            ))),
        }
    }
}

/// The openraft configuration derived from the node's settings.
fn raft_config(cfg: &ServerConfig) -> anyhow::Result<Config> {
    let c = Config {
        cluster_name: "pyxis".into(),
        heartbeat_interval: cfg.heartbeat_ms,
        election_timeout_min: cfg.election_timeout_ms,
        election_timeout_max: cfg.election_timeout_ms * 2,
        // `snapshot_policy` triggers builds, scaled with the state.
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: (cfg.snapshot_threshold / 10).min(1000),
        // Keep one append RPC bounded: values may be megabytes each.
        max_payload_entries: 256,
        // A whole snapshot travels in one request: allow time for a large one.
        install_snapshot_timeout: 60_000,
        enable_pre_vote: Some(true),
        // A restarted leader must win a new election. Restoring leadership from its saved
        // vote lets a leader whose unsynced log tail was lost (entries committed by the
        // followers' fsyncs alone) lead term T again with a shorter log, and the cluster then
        // serves stale data and can write a second, different entry under the same log id.
        enable_leader_restore: Some(false),
        ..Default::default()
    };
    Ok(c.validate()?)
}

/// Starts a node on `listener` and serves until `shutdown` is cancelled.
pub async fn start_node(
    cfg: ServerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    let addr = cfg.advertise.clone().unwrap_or_else(|| local.to_string());
    let log = LogStore::open(&cfg.data_dir.join("raft"))
        .with_context(|| format!("opening the raft log in {}", cfg.data_dir.display()))?;
    let snaps = SnapshotDir::new(cfg.data_dir.join("snapshots"))?;
    let sm = StateMachine::new(snaps, cfg.watch_history);
    let view = sm.view();
    let cluster =
        Arc::new(ClusterIdentity::load(&cfg.data_dir).context("reading this node's cluster id")?);
    let raft = Raft::new(
        cfg.id,
        Arc::new(raft_config(&cfg)?),
        NetworkFactory::new(cluster.clone())?,
        log,
        sm,
    )
    .await
    .context("starting raft")?;

    if !raft.is_initialized().await? && !cfg.join {
        let members: BTreeMap<u64, RaftNode> = if cfg.peers.is_empty() {
            BTreeMap::from([(cfg.id, RaftNode::new(&addr))])
        } else {
            anyhow::ensure!(
                cfg.peers.contains_key(&cfg.id),
                "--peers does not contain this node's id {}",
                cfg.id
            );
            cfg.peers
                .iter()
                .map(|(id, a)| (*id, RaftNode::new(a)))
                .collect()
        };
        // The id goes to disk before the node can take part in anything.
        let addrs = members
            .iter()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        cluster
            .bootstrap(ClusterId::derive(&addrs, &cfg.cluster_token))
            .context("writing this node's cluster id")?;
        // Every node of a new cluster initializes with the same members; openraft
        // accepts identical initializations, and one of them wins the first election.
        match raft.initialize(members).await {
            Ok(()) => tracing::info!("initialized a new cluster"),
            Err(e) => tracing::info!(error = %e, "cluster already initialized elsewhere"),
        }
    }

    let http = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(10))
        .build()?;
    let node = Arc::new(Node {
        id: cfg.id,
        addr,
        raft: raft.clone(),
        view,
        http,
        leases: Default::default(),
        cluster,
        limits: cfg.limits,
        // Twice the longest election timeout: a leader silent that long is gone.
        leader_contact: crate::health::LeaderContact::new(Duration::from_millis(
            4 * cfg.election_timeout_ms,
        )),
    });
    crate::lease_timer::spawn_expiry(node.clone(), shutdown.clone());
    crate::snapshot_policy::spawn(node.clone(), cfg.snapshot_threshold, shutdown.clone());
    crate::metrics::spawn_raft_gauges(raft.clone(), shutdown.clone());
    let app = crate::http::router(node.clone());
    tracing::info!(id = cfg.id, addr = %local, "serving");
    announce(local);
    let serve =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    // Peers keep their Raft connections open, so a graceful shutdown alone would wait
    // forever: give in-flight requests a moment, then stop regardless.
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let res = tokio::select! {
        res = serve => res,
        () = deadline => {
            tracing::info!("shutdown grace period over; closing remaining connections");
            Ok(())
        }
    };
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
    res?;
    Ok(())
}

/// Tells whoever started us (tests, scripts) where we listen; the format is a contract.
#[allow(clippy::print_stdout)]
fn announce(local: std::net::SocketAddr) {
    println!("listening http={local}");
}
