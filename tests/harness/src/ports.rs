//! Reserving loopback ports for servers whose addresses must be known before they start.
//!
//! A cluster's `--peers` list names every node's address up front, so `--listen 127.0.0.1:0`
//! cannot be used there. Single servers should prefer port 0 and read the announced address
//! (see [`crate::Proc::wait_for_line`]).

use std::net::TcpListener;

/// Returns `n` distinct free TCP ports on 127.0.0.1.
///
/// All listeners are bound at once (so the ports differ) and then released for the servers
/// to bind. Another process could in theory grab one in between; the kernel hands out
/// ephemeral ports in a spread-out order, which makes that rare enough for tests.
pub fn reserve_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local_addr").port())
        .collect()
}
