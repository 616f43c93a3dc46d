//! One running store node: Raft, the key space view, and the operations handlers call.
//!
//! `start_node` opens storage, starts openraft, bootstraps the cluster from `--peers`
//! when the data dir is new, and serves HTTP until `shutdown` fires. [`Node`] holds
//! what request handlers need: writes go through [`Node::write`] (forwarded to the
//! leader when this node is not it), linearizable reads first call [`Node::linearize`].
//! Membership changes are in `cluster`; routes are in `http`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pyxis_client::{IdSource, RequestId};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster_id::{self, ClusterId, ClusterIdentity};
use crate::config::ServerConfig;
use crate::peer_token::{self, PeerToken};
use crate::raft::WatchReceiver as _;
use crate::raft::log_store::LogStore;
use crate::raft::network::NetworkFactory;
use crate::raft::snapshot::SnapshotDir;
use crate::raft::state_machine::{StateMachine, StoreView};
use crate::raft::{
    ClientWriteError, Config, LinearizableReadError, NodeAddr, Raft, RaftError, ReadPolicy,
    ServerState, SnapshotPolicy, codec,
};
use crate::store::command::{Command, CommandResult};
use crate::store::validate::InvalidCommand;
use crate::store::watch::HistoryLimits;

/// Most entries in one append RPC: values may be megabytes each. `/raft/append`'s body
/// limit is sized for this many of the largest entries.
pub const MAX_PAYLOAD_ENTRIES: u64 = 256;

/// How long a request waits for a leader to appear before answering 503.
const LEADER_WAIT: Duration = Duration::from_secs(3);

/// How long a write may take, retries included, before the caller hears 503. Below the
/// client's default request timeout (5 s), so that clients get an answer, not a timeout.
const WRITE_WAIT: Duration = Duration::from_secs(4);

/// Longest wait for one forwarded write: a leader that stopped answering (paused,
/// partitioned) is given up after this and the write sent again, with the same id.
const FORWARD_ATTEMPT: Duration = Duration::from_secs(2);

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
    /// The request may or may not have been applied (no reply, leadership lost after the
    /// append); sending it again with the same request id is safe.
    Ambiguous(String),
}

/// Why a node could not serve a write or a linearizable read; `http::error` maps each to
/// its status (503, 400 for an invalid command, 401 for a write that needs a token).
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    /// No leader is known within the wait (an election, or no quorum).
    #[error("no leader: an election is in progress or a quorum is unreachable; retry")]
    NoLeader,
    /// The node cannot serve (Raft stopped, a peer refused, a read index not reached).
    #[error("{0}")]
    Unavailable(String),
    /// A write may or may not have been applied; the same request id tells.
    #[error("{0}")]
    UnknownOutcome(String),
    /// The command breaks the rules every proposal must meet.
    #[error(transparent)]
    Invalid(#[from] InvalidCommand),
    /// An anonymous write met ACLs turned on when it applied; nothing was written.
    #[error("{0}")]
    Unauthorized(String),
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
    /// How peers are reached (http, or https with the node's certificate): `tls`.
    pub peers: crate::tls::PeerTransport,
    /// Lease deadlines, kept while this node leads.
    pub leases: crate::lease_timer::LeaseTimers,
    /// The cluster this node belongs to, sent with and checked on every peer call.
    pub cluster: Arc<ClusterIdentity>,
    /// Request ids for writes that arrive without one (plain `curl`, the lease timer).
    pub ids: IdSource,
    /// Bounds on one request (`--max-txn-ops`, `--max-response-bytes`).
    pub limits: crate::config::Limits,
    /// When a leader last reached this node, for `/healthz`.
    pub leader_contact: crate::health::LeaderContact,
    /// The secret sent with, and required on, every peer call (`--peer-token-file`).
    pub peer_token: Option<PeerToken>,
    /// Set once a leader's view shows this node removed (`removal`; see `Node::removed`).
    pub removed: std::sync::atomic::AtomicBool,
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

    /// Whether node `id` is a voter or learner of the membership this node knows.
    pub fn is_member(&self, id: u64) -> bool {
        self.raft
            .metrics()
            .borrow_watched()
            .membership_config
            .get_node(&id)
            .is_some()
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
    pub async fn wait_leader(&self) -> Result<(u64, String), NodeError> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            if let Some(l) = self.leader() {
                return Ok(l);
            }
            if Instant::now() >= deadline {
                return Err(NodeError::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Commits `cmd` as request `id` through Raft (on the leader, forwarding if needed) and
    /// returns its result.
    ///
    /// Every attempt proposes the same id, so retrying after a lost reply, a leader change
    /// or a timeout is safe: the state machine applies the first copy that commits and
    /// answers later copies with its result. When no attempt could be confirmed in
    /// [`WRITE_WAIT`], the answer is `unknown_outcome` if one may have been applied (the
    /// client learns the outcome by sending the same id again), else `no_leader`.
    ///
    /// A change made for a caller that is audited (`acl::Caller::audited`) carries the
    /// caller and the time in the command, so that every node records it the same way.
    pub async fn write(&self, id: RequestId, cmd: Command) -> Result<CommandResult, NodeError> {
        let cmd = match crate::acl::caller() {
            Some(caller) if caller.audited() => Command::Audited {
                actor: caller.actor(),
                time_ms: crate::acl::now_ms(),
                what: caller.what(),
                cmd: Box::new(cmd),
            },
            Some(caller) if caller.anonymous_data() => Command::Anonymous { cmd: Box::new(cmd) },
            _ => cmd,
        };
        let request = Command::Request {
            id,
            cmd: Box::new(cmd),
        };
        // The handlers checked their input already; this is the gate `/raft/write` shares,
        // so that what either side proposes meets the same rules.
        request.validate(self.limits.max_txn_ops)?;
        metrics::counter!("pyxis_proposals_total").increment(1);
        let deadline = Instant::now() + WRITE_WAIT;
        let mut maybe_applied = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = if self.is_leader() {
                self.propose(request.clone(), left).await
            } else {
                match self.leader() {
                    Some((leader, addr)) if leader != self.id => {
                        self.forward_write(&addr, &request, left.min(FORWARD_ATTEMPT))
                            .await
                    }
                    _ => Err(ForwardError::NotLeader(None)),
                }
            };
            match outcome {
                Ok(CommandResult::OutcomeUnknown) => {
                    return Err(NodeError::UnknownOutcome(format!(
                        "request {id} is older than the requests this store remembers (or its result was too large to keep): it may have been applied before, so it was not applied again"
                    )));
                }
                Ok(CommandResult::AclRequired) => {
                    return Err(NodeError::Unauthorized(format!(
                        "request {id}: ACLs were turned on while it was in flight, and it carries no token; send it again with one"
                    )));
                }
                Ok(r) => return Ok(r),
                Err(ForwardError::Failed(m)) => return Err(NodeError::Unavailable(m)),
                Err(ForwardError::Ambiguous(why)) => {
                    maybe_applied = true;
                    tracing::debug!(request = %id, why, "write outcome unknown; sending it again");
                }
                Err(ForwardError::NotLeader(_)) => {}
            }
            if Instant::now() >= deadline {
                metrics::counter!("pyxis_write_gave_up_total").increment(1);
                return Err(if maybe_applied {
                    NodeError::UnknownOutcome(format!(
                        "request {id}: no reply from the leader in {}s; it may or may not have been applied: send it again with the same x-pyxis-request-id to learn its outcome",
                        WRITE_WAIT.as_secs()
                    ))
                } else {
                    NodeError::NoLeader
                });
            }
            // Leadership is moving: give the election a moment, then try again.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Proposes `request` on this node, which believes it leads, waiting at most `wait`.
    async fn propose(
        &self,
        request: Command,
        wait: Duration,
    ) -> Result<CommandResult, ForwardError> {
        match tokio::time::timeout(wait, self.raft.client_write(request)).await {
            Ok(Ok(resp)) => Ok(resp.data),
            // openraft answers this at once when it does not lead, but also when it lost
            // leadership after appending the entry, which the next leader may commit.
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => Err(
                ForwardError::Ambiguous("leadership was lost while the write was pending".into()),
            ),
            Ok(Err(RaftError::APIError(e))) => Err(ForwardError::Failed(e.to_string())),
            Ok(Err(RaftError::Fatal(e))) => Err(ForwardError::Failed(format!("raft stopped: {e}"))),
            Err(_) => Err(ForwardError::Ambiguous(format!(
                "not committed within {} ms",
                wait.as_millis()
            ))),
        }
    }

    /// Serves a forwarded write on this node, which believes it is the leader.
    pub async fn write_as_leader(&self, request: Command) -> Result<CommandResult, ForwardError> {
        if !self.is_leader() {
            // Certainly not proposed here: the sender may try the leader we know at once.
            return Err(ForwardError::NotLeader(self.leader()));
        }
        self.propose(request, WRITE_WAIT).await
    }

    async fn forward_write(
        &self,
        addr: &str,
        request: &Command,
        wait: Duration,
    ) -> Result<CommandResult, ForwardError> {
        let body = codec::encode(request).map_err(|e| ForwardError::Failed(e.to_string()))?;
        self.call_leader(addr, "write", body, wait).await
    }

    /// Sends a peer RPC to the leader at `addr` and decodes its `Result<T, ForwardError>`.
    /// A refused connection means the call never arrived (`NotLeader`, retry elsewhere);
    /// any failure after it was sent may hide a call that was served (`Ambiguous`).
    async fn call_leader<T: serde::de::DeserializeOwned>(
        &self,
        addr: &str,
        rpc: &str,
        body: Vec<u8>,
        wait: Duration,
    ) -> Result<T, ForwardError> {
        let mut req = self
            .http
            .post(self.peers.url(addr, &format!("/raft/{rpc}")))
            .timeout(wait)
            .header(crate::http::raft_rpc::FROM_HEADER, self.id)
            .body(body);
        if let Some(id) = self.cluster.get() {
            req = req.header(cluster_id::HEADER, id.to_string());
        }
        if let Some(t) = &self.peer_token {
            req = req.header(peer_token::HEADER, t.header_value());
        }
        let lost = |e: reqwest::Error| {
            if e.is_connect() {
                ForwardError::NotLeader(None)
            } else {
                ForwardError::Ambiguous(format!("leader {addr}: {e}"))
            }
        };
        let resp = req.send().await.map_err(lost)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(lost)?;
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
    pub async fn linearize(&self) -> Result<(), NodeError> {
        let deadline = Instant::now() + LEADER_WAIT;
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
                Err(ForwardError::Failed(m)) => return Err(NodeError::Unavailable(m)),
                Err(ForwardError::NotLeader(_) | ForwardError::Ambiguous(_)) => {
                    if Instant::now() >= deadline {
                        return Err(NodeError::NoLeader);
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
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => Err(
                ForwardError::NotLeader(f.leader_id.zip(f.leader_node.map(|n| n.addr))),
            ),
            // Quorum lost: the leader cannot confirm it still leads; let the caller retry.
            Err(RaftError::APIError(_)) => Err(ForwardError::NotLeader(None)),
            Err(RaftError::Fatal(e)) => Err(ForwardError::Failed(e.to_string())),
        }
    }

    async fn remote_read_index(&self, addr: &str) -> Result<u64, ForwardError> {
        self.call_leader(addr, "read-index", Vec::new(), LEADER_WAIT)
            .await
    }

    async fn wait_applied(&self, index: u64) -> Result<(), NodeError> {
        let mut rx = self.view.subscribe();
        let wait = rx.wait_for(|a| a.index >= index);
        match tokio::time::timeout(READ_WAIT, wait).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(NodeError::Unavailable(format!(
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
        max_payload_entries: MAX_PAYLOAD_ENTRIES,
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
    let history = HistoryLimits {
        events: cfg.watch_history,
        bytes: cfg.watch_history_bytes,
    };
    let sm = StateMachine::new(snaps, history);
    let view = sm.view();
    let cluster =
        Arc::new(ClusterIdentity::load(&cfg.data_dir).context("reading this node's cluster id")?);
    let transport = cfg
        .tls
        .as_ref()
        .map_or_else(crate::tls::PeerTransport::plain, |t| t.peers());
    let raft = Raft::new(
        cfg.id,
        Arc::new(raft_config(&cfg)?),
        NetworkFactory::new(cluster.clone(), cfg.peer_token.clone(), &transport)?,
        log,
        sm,
    )
    .await
    .context("starting raft")?;

    if !raft.is_initialized().await? && !cfg.join {
        let members: BTreeMap<u64, NodeAddr> = if cfg.peers.is_empty() {
            BTreeMap::from([(cfg.id, NodeAddr::new(&addr))])
        } else {
            anyhow::ensure!(
                cfg.peers.contains_key(&cfg.id),
                "--peers does not contain this node's id {}",
                cfg.id
            );
            cfg.peers
                .iter()
                .map(|(id, a)| (*id, NodeAddr::new(a)))
                .collect()
        };
        let addrs: BTreeMap<u64, String> = members
            .iter()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        let id = ClusterId::derive(&addrs, &cfg.cluster_token);
        // An empty data dir is a new member only if no peer knows this one as started.
        let peers: Vec<(u64, String)> = addrs.clone().into_iter().collect();
        crate::member_started::refuse_if_wiped(cfg.id, &peers, id, &transport).await?;
        // The id goes to disk before the node can take part in anything.
        cluster
            .bootstrap(id)
            .context("writing this node's cluster id")?;
        // Every node of a new cluster initializes with the same members; openraft
        // accepts identical initializations, and one of them wins the first election.
        match raft.initialize(members).await {
            Ok(()) => tracing::info!("initialized a new cluster"),
            Err(e) => tracing::info!(error = %e, "cluster already initialized elsewhere"),
        }
    }

    let http = transport
        .client_builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(10))
        .build()?;
    if cfg.peer_token.is_none() {
        tracing::warn!(
            "no peer token (--peer-token-file): anyone who can reach this port can make peer calls"
        );
    }
    let node = Arc::new(Node {
        id: cfg.id,
        addr,
        raft: raft.clone(),
        view,
        http,
        peers: transport,
        leases: Default::default(),
        cluster,
        ids: IdSource::new(),
        limits: cfg.limits,
        // Twice the longest election timeout: a leader silent that long is gone.
        leader_contact: crate::health::LeaderContact::new(Duration::from_millis(
            4 * cfg.election_timeout_ms,
        )),
        peer_token: cfg.peer_token.clone(),
        removed: Default::default(),
    });
    crate::lease_timer::spawn_expiry(node.clone(), shutdown.clone());
    crate::snapshot_policy::spawn(
        node.clone(),
        cfg.snapshot_threshold,
        cfg.id % crate::snapshot_policy::SLOTS,
        shutdown.clone(),
    );
    crate::member_started::spawn(node.clone(), shutdown.clone());
    crate::removal::spawn(node.clone(), shutdown.clone());
    crate::metrics::spawn_raft_gauges(raft.clone(), shutdown.clone());
    let app = crate::http::router(node.clone());
    let fd_limit = crate::http::serve::raise_fd_limit().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not read the open-file limit");
        1024
    });
    let max_connections = crate::http::serve::effective_max_connections(&cfg.conn_limits, fd_limit);
    tracing::info!(id = cfg.id, addr = %local, fd_limit, max_connections, "serving");
    announce(local);
    let serve = crate::http::serve::serve(
        listener,
        app,
        cfg.conn_limits,
        max_connections,
        cfg.tls.as_ref().map(crate::tls::NodeTls::acceptor),
        shutdown.clone(),
    );
    // Peers keep their Raft connections open, so a graceful shutdown alone would wait
    // forever: give in-flight requests a moment, then stop regardless.
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = serve => {}
        () = deadline => {
            tracing::info!("shutdown grace period over; closing remaining connections");
        }
    }
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
    Ok(())
}

/// Tells whoever started us (tests, scripts) where we listen; the format is a contract.
#[allow(clippy::print_stdout)]
fn announce(local: std::net::SocketAddr) {
    println!("listening http={local}");
}
