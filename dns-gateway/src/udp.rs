//! The UDP workers: one OS thread per `SO_REUSEPORT` socket (the kernel spreads clients over
//! them), each a blocking loop of batched receives and sends (`mmsg`) around its own
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

use crate::mmsg::Batch;
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
    let mut batch = Batch::new(RECV_BUFFER);
    let mut seed: u64 = rand::random();
    while !stop.load(Ordering::Relaxed) {
        match batch.recv(socket) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => {
                // Per-datagram errors (an ICMP error queued on the socket) end nothing.
                tracing::debug!(error = %e, "udp receive failed");
                continue;
            }
        }
        let current = zone.load();
        let now = now_ms();
        // One clock read per query: each query's time runs from the previous one's end.
        let mut started = Instant::now();
        for i in 0..batch.len() {
            let mut out = std::mem::take(&mut batch.replies[i]);
            out.clear();
            let (packet, src) = batch.datagram(i);
            let Some(src) = src else {
                batch.replies[i] = out;
                continue;
            };
            seed = seed.wrapping_add(SEED_STEP);
            let req = Request {
                packet,
                src: src.ip(),
                tcp: false,
                dc: None,
                params: QueryParams { now_ms: now, seed },
            };
            let outcome = responder.respond(&current, &req, &mut out);
            batch.replies[i] = out;
            let done = Instant::now();
            stats.outcome(outcome, done.duration_since(started));
            started = done;
        }
        drop(current);
        batch.send(socket);
    }
}

/// Unix time in milliseconds (policy expiry); a clock before 1970 reads as 0.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
