//! Sockets and threads of the local DNS: binds UDP (several `SO_REUSEPORT` sockets) and TCP on
//! one address, and runs hickory's `Server` with the [`AgentHandler`] on a runtime of its own.
//!
//! The rest of the agent runs on one thread (it waits on scripts and the store); the DNS
//! server gets a multi-threaded runtime on its own OS threads, so a burst of queries neither
//! waits behind a health check nor delays one. The two sides share only the zone (`ArcSwap`),
//! rebuilt on the agent's runtime from each snapshot the mirror publishes, and the counters.
//! Answer logic stays in `handler` and `ns_core::zone`, so the socket loop can be replaced
//! (for a faster shared fast path) without touching it.

use std::net::{SocketAddr, TcpListener as StdTcpListener, UdpSocket as StdUdpSocket};
use std::time::Duration;

use hickory_server::Server;
use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;

use super::handler::AgentHandler;

/// A TCP connection that sends no query for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(5);
/// Per-connection buffer of replies waiting to be written.
const TCP_REPLY_BUFFER: usize = 64;
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
            Err(e) if addr.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse => {
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
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Runs the DNS server on `listeners` on a new runtime of `threads` worker threads, in a
/// thread of its own, until `shutdown`. `make_handler` runs inside that runtime (the
/// forwarder's resolver must be built there).
pub fn spawn(
    listeners: Listeners,
    threads: usize,
    make_handler: impl FnOnce() -> Option<AgentHandler> + Send + 'static,
    shutdown: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("dnsd")
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("dnsd-main".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Some(handler) = make_handler() else {
                    return;
                };
                if let Err(e) = serve(listeners, handler, shutdown).await {
                    tracing::error!(error = %e, "local dns stopped");
                }
            });
        })
}

async fn serve(
    listeners: Listeners,
    handler: AgentHandler,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut server = Server::new(handler);
    for s in listeners.udp {
        server.register_socket(tokio::net::UdpSocket::from_std(s)?);
    }
    server.register_listener(
        tokio::net::TcpListener::from_std(listeners.tcp)?,
        TCP_IDLE,
        TCP_REPLY_BUFFER,
    );
    tokio::select! {
        r = server.block_until_done() => r.map_err(std::io::Error::other),
        () = shutdown.cancelled() => {
            server.shutdown_gracefully().await.map_err(std::io::Error::other)
        }
    }
}
