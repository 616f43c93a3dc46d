//! Sockets and threads of the local DNS: binds UDP (one `SO_REUSEPORT` socket per core) and
//! TCP on one address, and runs the loops that feed the [`Handler`].
//!
//! Each UDP socket has a blocking OS thread of its own with its own `Responder` (the fast
//! path's cache is per worker, so a zone answer takes no lock): receive, answer, send, with
//! no task and no allocation per query. Names outside the zone cannot wait on that thread:
//! they are copied into a task on the `dnsd` tokio runtime, which awaits the forwarder and
//! sends the reply from the same socket; at most [`MAX_FORWARDS`] wait at once, beyond which
//! a query is dropped (the client retries) rather than queue without bound. TCP runs on that
//! runtime too: one task per connection, each with a small responder of its own.
//!
//! The rest of the agent runs on one thread (it waits on scripts and the store), so a burst
//! of queries neither waits behind a health check nor delays one. The two sides share only
//! the zone (`ArcSwap`), rebuilt on the agent's runtime from each mirror publish, and the
//! counters. The loops hold no answer logic (`handler`, `ns_core::zone::packet`).

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener as StdTcpListener, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::Duration;

use ns_core::zone::packet::{Limits, Responder};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::handler::{Handler, Step};

/// A TCP connection that sends no query for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(5);
/// TCP connections served at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 256;
/// Forwarded UDP queries waiting for an upstream at once.
pub const MAX_FORWARDS: usize = 1024;
/// A TCP connection's responder cache: a client asks few names on one connection.
const CONNECTION_CACHE: Limits = Limits {
    entries: 64,
    bytes: 1 << 20,
};
/// How often a blocked UDP receive wakes to check for shutdown.
const STOP_POLL: Duration = Duration::from_millis(200);
/// The largest datagram read (EDNS sizes beyond are not used by clients).
const RECV_BUFFER: usize = 65_535;
/// Receive buffer of each UDP socket, so bursts are queued rather than dropped.
const UDP_RECV_BUFFER: usize = 4 << 20;
/// Attempts to find a port free for both UDP and TCP when the port asked for is 0.
const BIND_ATTEMPTS: usize = 20;

/// The DNS sockets, bound.
#[derive(Debug)]
pub struct Listeners {
    udp: Vec<StdUdpSocket>,
    tcp: StdTcpListener,
    addr: SocketAddr,
}

impl Listeners {
    /// The address both listen on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Binds `sockets` UDP sockets and a TCP listener on `addr`; with port 0, on one port free
/// for both.
pub fn bind(addr: SocketAddr, sockets: usize) -> std::io::Result<Listeners> {
    let mut last = None;
    for _ in 0..BIND_ATTEMPTS {
        match bind_once(addr, sockets.max(1)) {
            Ok(l) => return Ok(l),
            Err(e) if addr.port() == 0 && e.kind() == ErrorKind::AddrInUse => {
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no port free for both UDP and TCP")))
}

fn bind_once(addr: SocketAddr, sockets: usize) -> std::io::Result<Listeners> {
    let first = udp_socket(addr)?;
    let bound = first.local_addr()?;
    let mut udp = vec![first];
    for _ in 1..sockets {
        udp.push(udp_socket(bound)?);
    }
    let tcp = Socket::new(
        Domain::for_address(bound),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    tcp.set_reuse_address(true)?;
    // Accepted by tokio.
    tcp.set_nonblocking(true)?;
    tcp.bind(&bound.into())?;
    tcp.listen(1024)?;
    Ok(Listeners {
        udp,
        tcp: tcp.into(),
        addr: bound,
    })
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<StdUdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    // A smaller buffer than asked for is fine; the kernel caps it at rmem_max.
    let _ = s.set_recv_buffer_size(UDP_RECV_BUFFER);
    // Read by a blocking thread, which wakes now and then to see whether to stop.
    s.set_read_timeout(Some(STOP_POLL))?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Runs the DNS server on `listeners` until `shutdown`: one thread per UDP socket, and a
/// runtime of `threads` worker threads (in a thread of its own) for TCP and forwarding.
/// `make_handler` runs inside that runtime (the forwarder's resolver must be built there).
pub fn spawn(
    listeners: Listeners,
    threads: usize,
    make_handler: impl FnOnce() -> Option<Handler>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("dnsd")
        .enable_all()
        .build()?;
    let handler = {
        let _entered = runtime.enter();
        match make_handler() {
            Some(h) => Arc::new(h),
            None => return Ok(()),
        }
    };
    let tcp = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listeners.tcp)?
    };
    let forwards = Arc::new(Semaphore::new(MAX_FORWARDS));
    for (i, socket) in listeners.udp.into_iter().enumerate() {
        let worker = UdpWorker {
            socket: Arc::new(socket),
            handler: Arc::clone(&handler),
            runtime: runtime.handle().clone(),
            forwards: Arc::clone(&forwards),
            stop: shutdown.clone(),
        };
        std::thread::Builder::new()
            .name(format!("dnsd-udp-{i}"))
            .spawn(move || worker.run())?;
    }
    std::thread::Builder::new()
        .name("dnsd-main".into())
        .spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    () = accept(tcp, handler) => {}
                    () = shutdown.cancelled() => {}
                }
            });
        })?;
    Ok(())
}

/// One UDP socket's loop.
struct UdpWorker {
    socket: Arc<StdUdpSocket>,
    handler: Arc<Handler>,
    runtime: Handle,
    forwards: Arc<Semaphore>,
    stop: CancellationToken,
}

impl UdpWorker {
    fn run(self) {
        let mut responder = Responder::new();
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut out = Vec::with_capacity(4096);
        while !self.stop.is_cancelled() {
            let (len, peer) = match self.socket.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue;
                }
                Err(e) => {
                    // Per-datagram errors (an ICMP error queued on the socket) end nothing.
                    tracing::debug!(error = %e, "dns: udp receive failed");
                    continue;
                }
            };
            let packet = &buf[..len];
            match self
                .handler
                .answer(&mut responder, packet, peer.ip(), false, &mut out)
            {
                Step::Reply => {
                    if let Err(e) = self.socket.send_to(&out, peer) {
                        tracing::debug!(error = %e, %peer, "dns: reply not sent");
                    }
                }
                Step::Drop => {}
                Step::Forward => self.forward(packet.to_vec(), peer),
            }
        }
    }

    /// Answers `packet` from the upstreams in a task, so this loop goes on meanwhile.
    fn forward(&self, packet: Vec<u8>, peer: SocketAddr) {
        let Ok(permit) = Arc::clone(&self.forwards).try_acquire_owned() else {
            tracing::debug!(%peer, "dns: too many queries being forwarded; dropped");
            return;
        };
        let (socket, handler) = (Arc::clone(&self.socket), Arc::clone(&self.handler));
        self.runtime.spawn(async move {
            if let Some(reply) = handler.forward(&packet, false).await
                && let Err(e) = socket.send_to(&reply, peer)
            {
                tracing::debug!(error = %e, %peer, "dns: reply not sent");
            }
            drop(permit);
        });
    }
}

/// Accepts TCP connections, each served by a task, at most [`MAX_CONNECTIONS`] at once.
async fn accept(listener: tokio::net::TcpListener, handler: Arc<Handler>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: wait rather than spin.
                tracing::debug!(error = %e, "dns: tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            connection(stream, peer, &handler).await;
            drop(permit);
        });
    }
}

/// Answers the queries of one connection until it closes, idles or sends garbage.
async fn connection(mut stream: TcpStream, peer: SocketAddr, handler: &Handler) {
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
        let step = handler.answer(&mut responder, &buf, peer.ip(), true, &mut out);
        let reply = match step {
            Step::Reply => std::mem::take(&mut out),
            // Nothing to answer (a response, or no header): the stream cannot be trusted.
            Step::Drop => return,
            Step::Forward => match handler.forward(&buf, true).await {
                Some(r) => r,
                None => return,
            },
        };
        let Ok(n) = u16::try_from(reply.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(2 + reply.len());
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&reply);
        out = reply;
        if !matches!(
            timeout(TCP_IDLE, stream.write_all(&framed)).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
}
