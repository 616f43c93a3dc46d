//! Configuration of one store node, as parsed from `pyxis server` flags.
//!
//! Plain data with defaults in one `impl Default`; parsing the command line happens
//! in `main.rs`, never here, and nothing here reads the environment.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// This node's id (unique in the cluster, never reused).
    pub id: u64,
    /// Address to listen on for the API and Raft RPC.
    pub listen: SocketAddr,
    /// Address peers and forwarded requests reach this node at; defaults to `listen`.
    pub advertise: Option<String>,
    /// Initial members (id -> `host:port`), this node included. Empty with `join`.
    pub peers: BTreeMap<u64, String>,
    /// Start uninitialized and wait to be added by `POST /v1/cluster/members`.
    pub join: bool,
    /// Directory for the Raft log and snapshots.
    pub data_dir: PathBuf,
    /// Build a snapshot (and purge the log before it) after this many entries, or after half
    /// as many as there are live keys if that is more (`snapshot_policy`).
    pub snapshot_threshold: u64,
    /// Limits on client connections (count, header and body timeouts).
    pub conn_limits: crate::http::serve::ConnLimits,
    /// Recent change events kept in memory for watches; older starts get "compacted".
    pub watch_history: usize,
    /// Bytes of keys and values those events may hold at most (whole revisions are dropped).
    pub watch_history_bytes: u64,
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Lower bound of the randomized election timeout (upper bound is twice it).
    pub election_timeout_ms: u64,
    /// Mixed into the cluster id a new cluster derives from `peers` (etcd's
    /// `--initial-cluster-token`): re-creating a cluster on the same addresses takes a new one.
    pub cluster_token: String,
    /// Bounds on what one request may ask of the node.
    pub limits: Limits,
    /// The secret every peer call must carry; `None` admits peer calls from anyone.
    pub peer_token: Option<crate::peer_token::PeerToken>,
    /// TLS on the listener and to peers (`--tls-cert`, `--tls-key`, `--tls-ca`); `None` is
    /// plain HTTP.
    pub tls: Option<crate::tls::NodeTls>,
}

/// Bounds on one request (etcd's `--max-txn-ops` and its reply size limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most compares, and most ops in each branch, of one transaction (etcd counts the same way).
    pub max_txn_ops: usize,
    /// Most bytes of entries one reply may hold (a listing, a transaction's gets); beyond it
    /// the request is refused with 413 before more is built.
    pub max_response_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_txn_ops: 128,
            max_response_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            id: 1,
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            advertise: None,
            peers: BTreeMap::new(),
            join: false,
            data_dir: PathBuf::from("pyxis-data"),
            snapshot_threshold: 100_000,
            conn_limits: Default::default(),
            watch_history: 100_000,
            watch_history_bytes: crate::store::watch::DEFAULT_HISTORY_BYTES,
            heartbeat_ms: 100,
            election_timeout_ms: 500,
            cluster_token: String::new(),
            limits: Limits::default(),
            peer_token: None,
            tls: None,
        }
    }
}

/// A `--peers` list that could not be parsed; the message names the bad item.
#[derive(Debug, thiserror::Error)]
#[error("--peers: {0}")]
pub struct PeersError(String);

/// Parses `1=host:port,2=host:port`; an address may carry its scheme (`2=https://host:port`),
/// which must then be `scheme` (the one this node uses for its peers) and is not stored.
pub fn parse_peers(s: &str, scheme: &str) -> Result<BTreeMap<u64, String>, PeersError> {
    let mut out = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| PeersError(format!("'{item}' is not ID=HOST:PORT")))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| PeersError(format!("'{id}' in '{item}' is not a node id")))?;
        let addr = match addr.trim().split_once("://") {
            Some((given, rest)) if given == scheme => rest.trim_end_matches('/'),
            Some((given, _)) => {
                return Err(PeersError(format!(
                    "'{item}': peers are reached over {scheme} here, not {given} \
                     (--tls-cert decides)"
                )));
            }
            None => addr,
        };
        if !addr.contains(':') {
            return Err(PeersError(format!("'{addr}' in '{item}' has no port")));
        }
        if out.insert(id, addr.trim().to_owned()).is_some() {
            return Err(PeersError(format!("node id {id} appears twice")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_errors_name_the_item() {
        let p = parse_peers("1=127.0.0.1:1, 2=h:2", "http").unwrap();
        assert_eq!(p[&2], "h:2");
        let p = parse_peers("1=https://h:1,2=h:2", "https").unwrap();
        assert_eq!(p[&1], "h:1");
        let err = parse_peers("1=https://h:1", "http")
            .unwrap_err()
            .to_string();
        assert!(err.contains("over http here"), "{err}");
        assert!(
            parse_peers("x=h:1", "http")
                .unwrap_err()
                .to_string()
                .contains("'x'")
        );
        assert!(
            parse_peers("1=h", "http")
                .unwrap_err()
                .to_string()
                .contains("no port")
        );
        assert!(
            parse_peers("1=h:1,1=h:2", "http")
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }
}
