//! `pyxis server`: its flags, their translation into a [`ServerConfig`], and the run loop
//! that binds the listener and stops on SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::config::{Limits, ServerConfig, parse_peers};
use crate::peer_token::PeerToken;

/// Flags of `pyxis server`; with none, a single-node store on 127.0.0.1:7070.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// This node's id, unique in the cluster.
    #[arg(long, default_value_t = 1)]
    pub id: u64,
    /// Address for the HTTP API and Raft RPC (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Address peers use to reach this node, if not the listen address.
    #[arg(long)]
    pub advertise: Option<String>,
    /// Initial members `1=HOST:PORT,2=HOST:PORT,...`, this node included; same on every node
    /// (with TLS, `1=https://HOST:PORT` is accepted too).
    #[arg(long, default_value = "")]
    pub peers: String,
    /// Start empty and wait to be added with `pyxis members add` (`--peers` is then not used
    /// to bootstrap, as with etcd's `--initial-cluster-state existing`).
    #[arg(long)]
    pub join: bool,
    /// Where the Raft log and snapshots live [default: ./pyxis-data/node-ID].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Build a snapshot and compact the log after this many entries (or after half as many
    /// entries as there are keys, if that is more: snapshot work scales with the state), or
    /// once the log since the last one weighs as much as the state (at least 64 MiB).
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_threshold: u64,
    /// Recent change events kept for watches; a watch from an older revision gets 410.
    #[arg(long, default_value_t = 100_000)]
    pub watch_history: usize,
    /// Bytes of keys and values the watch history may hold (default 64 MiB); beyond it the
    /// oldest events go too, and a watch from before them gets 410.
    #[arg(long, default_value_t = crate::store::watch::DEFAULT_HISTORY_BYTES)]
    pub watch_history_bytes: u64,
    /// Most client connections open at once (bounded by the open-file limit too); one more is
    /// answered 503 and closed.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Milliseconds a client has to send a request's headers, and to start the next request on
    /// a kept-alive connection, before the connection is closed.
    #[arg(long, default_value_t = 10_000)]
    pub http_header_timeout_ms: u64,
    /// Longest pause, in milliseconds, between two chunks of a request body (400 beyond).
    #[arg(long, default_value_t = 30_000)]
    pub http_body_timeout_ms: u64,
    /// Leader heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_ms: u64,
    /// Minimum election timeout in milliseconds (the maximum is twice it).
    #[arg(long, default_value_t = 500)]
    pub election_timeout_ms: u64,
    /// Token mixed into the id a new cluster derives from --peers; give a re-created
    /// cluster on the same addresses a new one, so old members cannot talk to it.
    #[arg(long, default_value = "")]
    pub cluster_token: String,
    /// Most compares, and most ops in each branch, of one transaction (etcd's --max-txn-ops).
    #[arg(long, default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Most bytes of entries one reply may hold (a prefix listing, a transaction's gets);
    /// a request whose reply would be larger gets 413 (use ?limit=N on listings).
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub max_response_bytes: u64,
    /// File holding the peer token, a secret shared by every member: peer calls (`/raft/*`)
    /// without it are refused (401/403). Without a token anyone who reaches the port can make
    /// peer calls; set one in production. It wins over --peer-token and PYXIS_PEER_TOKEN.
    #[arg(long, value_name = "PATH")]
    pub peer_token_file: Option<PathBuf>,
    /// The peer token itself (prefer --peer-token-file or the environment: arguments are
    /// visible to other users of the host).
    #[arg(long, env = "PYXIS_PEER_TOKEN", hide_env_values = true)]
    pub peer_token: Option<String>,
    /// This node's TLS certificate chain (PEM): the API and peer calls are then https only,
    /// plaintext connections are refused. Needs --tls-key and --tls-ca.
    #[arg(long, value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
    /// The CA (PEM) that signs every member's certificate: peers' certificates are verified
    /// against it, and `/raft/*` calls must present one (mutual TLS); clients may present one.
    #[arg(long, value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,
}

impl ServerArgs {
    /// The node configuration these flags describe; errors name the flag.
    pub fn into_config(self) -> anyhow::Result<ServerConfig> {
        anyhow::ensure!(
            self.snapshot_threshold > 0,
            "--snapshot-threshold: must be at least 1"
        );
        anyhow::ensure!(
            self.heartbeat_ms > 0 && self.election_timeout_ms > 2 * self.heartbeat_ms,
            "--election-timeout-ms: must be more than twice --heartbeat-ms"
        );
        anyhow::ensure!(self.max_txn_ops > 0, "--max-txn-ops: must be at least 1");
        anyhow::ensure!(
            self.max_response_bytes > 0,
            "--max-response-bytes: must be at least 1"
        );
        let tls = crate::tls::files_from_flags(
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.tls_ca.as_deref(),
        )
        .map_err(anyhow::Error::msg)?
        .map(|files| crate::tls::NodeTls::load(&files))
        .transpose()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let peers = parse_peers(&self.peers, scheme)?;
        let peer_token = match (&self.peer_token_file, &self.peer_token) {
            (Some(path), _) => Some(PeerToken::from_file(path)?),
            (None, Some(t)) => Some(PeerToken::new(t, "--peer-token")?),
            (None, None) => None,
        };
        Ok(ServerConfig {
            id: self.id,
            listen: self.listen,
            advertise: self.advertise,
            peers,
            join: self.join,
            data_dir: self
                .data_dir
                .unwrap_or_else(|| PathBuf::from(format!("pyxis-data/node-{}", self.id))),
            snapshot_threshold: self.snapshot_threshold,
            conn_limits: crate::http::serve::ConnLimits {
                max_connections: self.max_connections,
                header_timeout: std::time::Duration::from_millis(self.http_header_timeout_ms),
                body_timeout: std::time::Duration::from_millis(self.http_body_timeout_ms),
            },
            watch_history: self.watch_history,
            watch_history_bytes: self.watch_history_bytes,
            heartbeat_ms: self.heartbeat_ms,
            election_timeout_ms: self.election_timeout_ms,
            cluster_token: self.cluster_token,
            limits: Limits {
                max_txn_ops: self.max_txn_ops,
                max_response_bytes: self.max_response_bytes,
            },
            peer_token,
            tls,
        })
    }
}

/// Runs `pyxis server` until SIGINT or SIGTERM.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let _ = crate::metrics::handle();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {}: {e}", config.listen))?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        on_signal.cancel();
    });
    crate::node::start_node(config, listener, shutdown).await
}

/// Resolves on SIGINT or SIGTERM (a stop from a terminal or a service manager).
async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
