//! The HTTP accept loop: connections with time limits, a bound on how many are open, and
//! load shed with a clear 503 instead of a listener that stops accepting.
//!
//! `axum::serve` holds an idle or trickling connection forever and, once the process is out
//! of file descriptors, logs `accept error` every second while every client hangs. Here:
//! request headers (and the wait for the next request on a kept-alive connection) must
//! arrive within `header_timeout`; a request body must keep arriving (`body_timeout`
//! between chunks); at most `max_connections` are open, and one more is answered 503
//! `unavailable` and closed. Watches and blocking reads are responses in progress, not idle
//! connections, so they stay open as designed (their own bound is in `http::watch`). The
//! process's soft file-descriptor limit is raised to its hard limit at start ([`raise_fd_limit`]).
//!
//! With TLS (`--tls-cert`), each connection's handshake runs in its own task, within
//! `header_timeout`, before HTTP starts; a plaintext request fails the handshake and the
//! connection is closed without an answer. Whether the client presented a certificate the
//! CA verified travels with each request ([`ClientCert`]); `/raft/*` without one gets 403.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::throttle::Throttle;
use tower::ServiceExt as _;

/// Limits on client connections; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Most connections open at once; one more gets 503 and is closed.
    pub max_connections: usize,
    /// Time allowed for a request's headers, and for the next request on an idle connection.
    pub header_timeout: Duration,
    /// Longest pause between two chunks of a request body.
    pub body_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// File descriptors kept free of client connections: the log, snapshots, peer calls.
const FD_RESERVE: u64 = 256;

/// The reply to a connection over the limit (the request is not read).
const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 96\r\n\r\n{\"error\":\"unavailable\",\"message\":\"too many open connections to this node; retry or try another\"}";

/// Raises the soft limit on open files to the hard limit (as Go and etcd do) and returns
/// the soft limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    Ok(lim.rlim_cur)
}

/// The connection bound in force: the configured one, within the file descriptors there are.
pub fn effective_max_connections(limits: &ConnLimits, fd_limit: u64) -> usize {
    let room = fd_limit.saturating_sub(FD_RESERVE).max(16);
    limits
        .max_connections
        .min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// Whether the connection a request came on presented a client certificate that the
/// node's CA verified (always false without TLS); a request extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCert(pub bool);

/// Serves `app` on `listener` within `limits` until `shutdown` fires and every connection
/// has closed (each is asked to close after its request in progress). With `tls`, every
/// connection must complete a TLS handshake first.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    max_connections: usize,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let mut app = app.layer(axum::middleware::from_fn_with_state(
        limits.body_timeout,
        body_deadline,
    ));
    if tls.is_some() {
        app = app.layer(axum::middleware::from_fn(require_peer_cert));
    }
    let open = Arc::new(Semaphore::new(max_connections));
    // HTTP/1.1 only, as `axum::serve` without its http2 feature: clients and peers use it.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => {
                let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
                let _ = open.acquire_many(all).await;
                return;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors and the like: say so now and then, and don't spin.
                    warn_accept(&e);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = open.clone().try_acquire_owned() else {
            metrics::counter!("pyxis_http_connections_shed_total").increment(1);
            tokio::spawn(refuse(stream));
            continue;
        };
        metrics::gauge!("pyxis_http_connections").increment(1.0);
        let builder = builder.clone();
        let app = app.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, false, &builder, app, &shutdown).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.header_timeout, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            let verified = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .is_some_and(|c| !c.is_empty());
                            serve_connection(stream, verified, &builder, app, &shutdown).await;
                        }
                        Ok(Err(e)) => handshake_failed("error", &e),
                        Err(_) => handshake_failed("timeout", &"no handshake in time"),
                    }
                }
            }
            metrics::gauge!("pyxis_http_connections").decrement(1.0);
            drop(permit);
        });
    }
}

/// Serves HTTP/1.1 on one accepted (and, with TLS, handshaken) connection until it closes,
/// or until `shutdown` asks it to close after its request in progress.
async fn serve_connection<S>(
    stream: S,
    client_cert: bool,
    builder: &http1::Builder,
    app: Router,
    shutdown: &CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service =
        TowerToHyperService::new(app.map_request(move |req: Request<hyper::body::Incoming>| {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ClientCert(client_cert));
            req
        }));
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Counts a failed TLS handshake (a plaintext client, an untrusted or silent one) and logs
/// it at debug level: a port scanner must not fill the log.
fn handshake_failed(outcome: &'static str, e: &dyn std::fmt::Display) {
    metrics::counter!("pyxis_tls_handshake_failures_total", "outcome" => outcome).increment(1);
    tracing::debug!(error = %e, "tls handshake failed");
}

/// Middleware (TLS only): a `/raft/*` call must come on a connection whose client
/// certificate the CA verified; peers always present theirs, clients need not.
async fn require_peer_cert(req: Request, next: Next) -> Response {
    let verified = req.extensions().get::<ClientCert>().is_some_and(|c| c.0);
    if verified || !req.uri().path().starts_with("/raft/") {
        return next.run(req).await;
    }
    metrics::counter!("pyxis_peer_calls_without_client_cert_total").increment(1);
    axum::response::IntoResponse::into_response((
        hyper::StatusCode::FORBIDDEN,
        "peer calls (/raft/*) need a client certificate signed by this cluster's --tls-ca",
    ))
}

/// Answers a connection over the limit with a 503 and closes it. What the client already
/// sent is read first (briefly, a few KiB at most): closing a socket with unread data makes
/// the kernel send a reset, which can destroy the 503 before the client reads it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
        let _ = stream.write_all(OVERLOADED).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Logs an accept failure, at most once every 10 seconds.
fn warn_accept(e: &io::Error) {
    static EVERY: Throttle = Throttle::every(10);
    if EVERY.due() {
        tracing::warn!(error = %e, "accepting a connection failed");
    }
}

/// Middleware: the request body fails (and the handler answers 400) if it pauses for longer
/// than `timeout` between chunks, so a trickled upload cannot hold a request forever.
async fn body_deadline(
    axum::extract::State(timeout): axum::extract::State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let chunks = body.into_data_stream();
    let timed = futures::stream::unfold(chunks, move |mut chunks| async move {
        match tokio::time::timeout(timeout, futures::StreamExt::next(&mut chunks)).await {
            Ok(Some(chunk)) => Some((chunk, chunks)),
            Ok(None) => None,
            Err(_) => Some((
                Err(axum::Error::new(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no body data for {} ms", timeout.as_millis()),
                ))),
                chunks,
            )),
        }
    });
    next.run(Request::from_parts(parts, Body::from_stream(timed)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_bound_leaves_descriptors_for_the_node_itself() {
        let limits = ConnLimits::default();
        assert_eq!(effective_max_connections(&limits, 1024), 768);
        assert_eq!(effective_max_connections(&limits, 1_048_576), 10_000);
        assert_eq!(effective_max_connections(&limits, 10), 16);
    }

    #[test]
    fn the_overload_reply_is_well_formed() {
        let text = std::str::from_utf8(OVERLOADED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "unavailable");
    }
}
