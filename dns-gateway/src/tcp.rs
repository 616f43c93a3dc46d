//! DNS over TCP (RFC 7766): one tokio task per connection, each query framed by its two-byte
//! length and answered whole (never truncated) by the same pure path as UDP, a
//! [`Responder`] per connection. A connection idle for [`TCP_IDLE`] is closed, and at most
//! [`MAX_CONNECTIONS`] are served at once (more are closed at accept).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ns_core::zone::packet::{Limits, Outcome, Request, Responder};
use ns_core::{QueryParams, Zone};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::stats::WorkerStats;
use crate::udp::now_ms;

/// A connection that sends no query (or stalls a reply) this long is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// A connection's cache: small, for the few names one client asks for.
const CONNECTION_CACHE: Limits = Limits {
    entries: 64,
    bytes: 256 << 10,
};

/// Accepts connections on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    zone: Arc<ArcSwap<Zone>>,
    stats: Arc<WorkerStats>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, "too many tcp connections");
            continue;
        };
        let (zone, stats, stop) = (Arc::clone(&zone), Arc::clone(&stats), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = connection(stream, peer, &zone, &stats) => {}
                () = stop.cancelled() => {}
            }
            drop(permit);
        });
    }
}

/// Answers the queries of one connection until it closes, idles or sends garbage.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    zone: &ArcSwap<Zone>,
    stats: &WorkerStats,
) {
    let mut responder = Responder::with_limits(CONNECTION_CACHE);
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    loop {
        let mut len = [0u8; 2];
        if !matches!(
            timeout(TCP_IDLE, stream.read_exact(&mut len)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        buf.resize(usize::from(u16::from_be_bytes(len)), 0);
        if !matches!(
            timeout(TCP_IDLE, stream.read_exact(&mut buf)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let started = Instant::now();
        let req = Request {
            packet: &buf,
            src: peer.ip(),
            tcp: true,
            dc: None,
            params: QueryParams {
                now_ms: now_ms(),
                seed: rand::random(),
            },
        };
        let outcome = responder.respond(&zone.load(), &req, &mut out);
        stats.outcome(outcome, started.elapsed());
        if out.is_empty() {
            // Nothing to answer (a response, or no header): the stream cannot be trusted.
            return;
        }
        let Ok(n) = u16::try_from(out.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(2 + out.len());
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&out);
        if !matches!(
            timeout(TCP_IDLE, stream.write_all(&framed)).await,
            Ok(Ok(()))
        ) {
            return;
        }
        if matches!(outcome, Outcome::Malformed { .. }) {
            return;
        }
    }
}
