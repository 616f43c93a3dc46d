//! Raft RPC to peers: HTTP POST to `/raft/*` on the peer's one address, codec bodies; over
//! https with the node's certificate as client certificate when TLS is on (`tls`).
//!
//! One `reqwest::Client` (keep-alive, no Nagle) serves every peer. Votes get openraft's
//! soft TTL as their timeout; an append gets time for its payload too ([`append_timeout`]),
//! since timing out a large batch only makes openraft send it all again. Every request
//! carries this node's cluster id and the peer token (if set) in headers; connect failures,
//! a peer of another cluster (409) and one refusing our token (401/403) map to
//! `Unreachable` so openraft backs off. A snapshot is streamed from its file
//! (`raft::transfer`), never read into memory to be sent.
//! The receiving side is `http::raft_rpc`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{NodeAddr, Snapshot, SnapshotData, TypeConfig, Vote, codec, transfer};
use crate::cluster_id::{self, ClusterIdentity};
use crate::peer_token::{self, PeerToken};
use crate::tls::PeerTransport;

/// Least time an append may take: a heartbeat-sized TTL (tens of ms) is shorter than one
/// scheduling hiccup of a busy machine, and a timed-out append is sent again whole.
const APPEND_MIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Bytes per second an append is given on top of [`APPEND_MIN_TIMEOUT`]: well below loopback
/// or LAN speed, so encoding, sending, decoding and fsyncing a batch of large values fit.
const APPEND_BYTES_PER_SEC: u64 = 20 * 1024 * 1024;

/// The timeout of an append RPC whose body is `body_bytes` long.
pub fn append_timeout(soft_ttl: Duration, body_bytes: usize) -> Duration {
    soft_ttl.max(APPEND_MIN_TIMEOUT)
        + Duration::from_millis(body_bytes as u64 * 1000 / APPEND_BYTES_PER_SEC)
}

/// A remote failure reported in an RPC reply body.
pub type RemoteResult<T> = Result<T, String>;

/// Builds one [`PeerClient`] per target for openraft.
#[derive(Clone)]
pub struct NetworkFactory {
    http: reqwest::Client,
    cluster: Arc<ClusterIdentity>,
    token: Option<PeerToken>,
    scheme: &'static str,
}

impl NetworkFactory {
    /// A factory sharing one HTTP client over `transport` (https with the node's certificate
    /// when TLS is on), sending `cluster`'s id and the peer token (if there is one) with
    /// every call.
    pub fn new(
        cluster: Arc<ClusterIdentity>,
        token: Option<PeerToken>,
        transport: &PeerTransport,
    ) -> Result<Self, reqwest::Error> {
        let http = transport
            .client_builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        Ok(NetworkFactory {
            http,
            cluster,
            token,
            scheme: transport.scheme(),
        })
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &NodeAddr) -> Self::Network {
        PeerClient {
            http: self.http.clone(),
            cluster: self.cluster.clone(),
            token: self.token.clone(),
            base: format!("{}://{}/raft", self.scheme, node.addr),
            target,
            appends: AppendMetrics::new(target),
        }
    }
}

/// Raft RPC client for one peer.
pub struct PeerClient {
    http: reqwest::Client,
    cluster: Arc<ClusterIdentity>,
    token: Option<PeerToken>,
    base: String,
    target: u64,
    appends: AppendMetrics,
}

/// Histograms of one peer's append RPCs, registered once so that recording costs no
/// label lookup or allocation per call.
struct AppendMetrics {
    seconds: metrics::Histogram,
    entries: metrics::Histogram,
    bytes: metrics::Histogram,
}

impl AppendMetrics {
    fn new(target: u64) -> Self {
        let peer = target.to_string();
        AppendMetrics {
            seconds: metrics::histogram!("pyxis_peer_append_seconds", "peer" => peer.clone()),
            entries: metrics::histogram!("pyxis_peer_append_entries", "peer" => peer.clone()),
            bytes: metrics::histogram!("pyxis_peer_append_bytes", "peer" => peer),
        }
    }
}

impl PeerClient {
    /// Sends `req` to `path`, with the timeout `timeout` gives for the encoded body's size.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        timeout: impl FnOnce(usize) -> Duration,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let body = codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let timeout = timeout(body.len());
        self.send(path, self.post(path).body(body), timeout).await
    }

    /// A POST to `path` with the headers every peer call carries.
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(format!("{}/{path}", self.base))
            .header("content-type", "application/octet-stream");
        if let Some(id) = self.cluster.get() {
            req = req.header(cluster_id::HEADER, id.to_string());
        }
        if let Some(t) = &self.token {
            req = req.header(peer_token::HEADER, t.header_value());
        }
        req
    }

    /// Sends `req` (to `path`) within `timeout` and decodes the peer's reply.
    async fn send<Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let url = format!("{}/{path}", self.base);
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                metrics::counter!("pyxis_peer_rpc_timeouts_total", "rpc" => path.to_owned())
                    .increment(1);
                tracing::debug!(
                    target = self.target,
                    rpc = path,
                    ?timeout,
                    "peer rpc timed out"
                );
            }
            if e.is_connect() {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        };
        let resp = req.timeout(timeout).send().await.map_err(failed)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(failed)?;
        if !status.is_success() {
            let msg = format!(
                "node {}: HTTP {status} from {url}: {}",
                self.target,
                String::from_utf8_lossy(&bytes)
            );
            // The address now belongs to another cluster's node, or the peer holds another
            // token: retrying soon won't help.
            if matches!(
                status,
                reqwest::StatusCode::CONFLICT
                    | reqwest::StatusCode::UNAUTHORIZED
                    | reqwest::StatusCode::FORBIDDEN
            ) {
                return Err(RPCError::Unreachable(Unreachable::from_string(msg)));
            }
            return Err(RPCError::Network(NetworkError::from_string(msg)));
        }
        let res: RemoteResult<Resp> =
            codec::decode(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        // The peer's Raft has stopped: treat it as unreachable so openraft backs off.
        res.map_err(|msg| RPCError::Unreachable(Unreachable::from_string(msg)))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let ttl = option.soft_ttl();
        let started = std::time::Instant::now();
        self.appends.entries.record(rpc.entries.len() as f64);
        let bytes = &self.appends.bytes;
        let res = self
            .call("append", &rpc, |n| {
                bytes.record(n as f64);
                append_timeout(ttl, n)
            })
            .await;
        // Failed calls too: a timeout is the tail this histogram is there to show.
        self.appends.seconds.record(started.elapsed().as_secs_f64());
        res
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call("vote", &rpc, |_| option.soft_ttl()).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call("pre-vote", &rpc, |_| option.soft_ttl()).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        // The body is the snapshot file as it streams off the disk; the vote rides in a
        // header and the receiver reads the metadata from the file's own head.
        let local = |e: &dyn std::error::Error| {
            StreamingError::from(RPCError::<TypeConfig>::Network(NetworkError::from_string(
                e.to_string(),
            )))
        };
        let vote = transfer::encode_vote(&vote).map_err(|e| local(&e))?;
        let body = transfer::body(snapshot.snapshot).map_err(|e| local(&e))?;
        let req = self
            .post("snapshot")
            .header(transfer::VOTE_HEADER, vote)
            .body(reqwest::Body::wrap_stream(body));
        tokio::pin!(cancel);
        tokio::select! {
            closed = &mut cancel => Err(StreamingError::Closed(closed)),
            res = self.send("snapshot", req, option.hard_ttl()) => Ok(res?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_append_gets_time_for_its_payload() {
        let ttl = Duration::from_millis(75);
        assert_eq!(append_timeout(ttl, 0), APPEND_MIN_TIMEOUT);
        // Six 4 MiB values: over a second more than an empty heartbeat.
        let six = append_timeout(ttl, 6 * 4 * 1024 * 1024);
        assert!(six >= Duration::from_millis(2200), "{six:?}");
        assert_eq!(
            append_timeout(Duration::from_secs(3), 0),
            Duration::from_secs(3)
        );
    }
}
