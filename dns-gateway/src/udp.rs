//! The UDP workers: one OS thread per `SO_REUSEPORT` socket (the kernel spreads clients over
//! them), each a blocking `recv_from` / `send_to` loop around its own
//! [`ns_core::zone::packet::Responder`], so the hot path has no task switch, no lock and no
//! allocation on a cache hit. Workers read the current zone from the shared `ArcSwap` per
//! packet and count into their own [`WorkerStats`].
//!
//! Sockets are bound in `server`; TCP is `tcp`.

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use ns_core::zone::packet::{Request, Responder};
use ns_core::{QueryParams, Zone};

use crate::stats::WorkerStats;

/// How often an idle worker looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(200);
/// Largest datagram read (a query is far smaller; anything cut off is malformed anyway).
const RECV_BUFFER: usize = 4096;
/// splitmix64's increment: an odd step, so consecutive seeds cycle through every variant.
const SEED_STEP: u64 = 0x9e37_79b9_7f4a_7c15;

/// Starts one worker thread per socket; they stop once `stop` is set.
pub fn spawn(
    sockets: Vec<UdpSocket>,
    zone: &Arc<ArcSwap<Zone>>,
    stats: impl Fn() -> Arc<WorkerStats>,
    stop: &Arc<AtomicBool>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let mut handles = Vec::with_capacity(sockets.len());
    for (i, socket) in sockets.into_iter().enumerate() {
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(Some(STOP_POLL))?;
        let (zone, stats, stop) = (Arc::clone(zone), stats(), Arc::clone(stop));
        let handle = std::thread::Builder::new()
            .name(format!("dns-udp-{i}"))
            .spawn(move || worker(&socket, &zone, &stats, &stop))?;
        handles.push(handle);
    }
    Ok(handles)
}

fn worker(socket: &UdpSocket, zone: &ArcSwap<Zone>, stats: &WorkerStats, stop: &AtomicBool) {
    let mut responder = Responder::new();
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut out = Vec::with_capacity(RECV_BUFFER);
    let mut seed: u64 = rand::random();
    while !stop.load(Ordering::Relaxed) {
        let (n, src) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => {
                // Per-datagram errors (an ICMP error queued on the socket) end nothing.
                tracing::debug!(error = %e, "udp receive failed");
                continue;
            }
        };
        let started = Instant::now();
        seed = seed.wrapping_add(SEED_STEP);
        let current = zone.load();
        let req = Request {
            packet: &buf[..n],
            src: src.ip(),
            tcp: false,
            dc: None,
            params: QueryParams {
                now_ms: now_ms(),
                seed,
            },
        };
        let outcome = responder.respond(&current, &req, &mut out);
        drop(current);
        if !out.is_empty()
            && let Err(e) = socket.send_to(&out, src)
        {
            tracing::debug!(error = %e, %src, "reply not sent");
        }
        stats.outcome(outcome, started.elapsed());
    }
}

/// Unix time in milliseconds (policy expiry); a clock before 1970 reads as 0.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
