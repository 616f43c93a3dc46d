//! Batched datagram I/O for the UDP workers: `recvmmsg` takes every datagram already queued
//! (up to [`BATCH`], blocking only for the first) and `sendmmsg` sends all their replies in
//! one call, so under load a worker pays two system calls per batch instead of two per query.
//!
//! The only unsafe code of the crate: the `libc` calls and the conversion of the kernel's
//! socket addresses. Buffers are owned by [`Batch`]; the kernel's headers are rebuilt before
//! every call, so no pointer outlives the buffers it points into.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd as _;

/// Datagrams taken per call.
pub const BATCH: usize = 32;

/// Receive buffers, source addresses and replies of one batch.
pub struct Batch {
    bufs: Vec<u8>,
    size: usize,
    lens: [usize; BATCH],
    addrs: [libc::sockaddr_storage; BATCH],
    addr_lens: [libc::socklen_t; BATCH],
    count: usize,
    /// The reply to each received datagram (empty: nothing to send).
    pub replies: Vec<Vec<u8>>,
}

impl Batch {
    /// Buffers for [`BATCH`] datagrams of at most `size` bytes each.
    pub fn new(size: usize) -> Batch {
        Batch {
            bufs: vec![0; BATCH * size],
            size,
            lens: [0; BATCH],
            // SAFETY: sockaddr_storage is plain data; all zeroes is a valid (unspecified) value.
            addrs: unsafe { std::mem::zeroed() },
            addr_lens: [0; BATCH],
            count: 0,
            replies: (0..BATCH).map(|_| Vec::with_capacity(size)).collect(),
        }
    }

    /// Datagrams held after the last [`Batch::recv`].
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the last receive got nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The `i`th datagram and its sender (`None` for an address family other than IP).
    pub fn datagram(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        let start = i * self.size;
        (
            &self.bufs[start..start + self.lens[i]],
            to_socket_addr(&self.addrs[i]),
        )
    }

    /// Waits for at least one datagram (up to the socket's read timeout) and takes every
    /// other one already queued, up to [`BATCH`].
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.count = 0;
        let mut iovecs: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: mmsghdr is plain data; all zeroes (null pointers, zero lengths) is valid.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..BATCH {
            iovecs[i].iov_base = self.bufs[i * self.size..].as_mut_ptr().cast();
            iovecs[i].iov_len = self.size;
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = (&raw mut self.addrs[i]).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &raw mut iovecs[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: every header points into buffers owned by `self` or this frame, sized as
        // declared, and they outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.count = n as usize;
        for (i, m) in msgs.iter().take(self.count).enumerate() {
            self.lens[i] = (m.msg_len as usize).min(self.size);
            self.addr_lens[i] = m.msg_hdr.msg_namelen;
        }
        Ok(self.count)
    }

    /// Sends every non-empty reply to the sender of its datagram. A reply the kernel refuses
    /// is skipped (UDP gives no delivery promise); the count sent is returned.
    pub fn send(&mut self, socket: &UdpSocket) -> usize {
        let mut iovecs: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: as in `recv`.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let mut k = 0;
        for i in 0..self.count {
            if self.replies[i].is_empty() {
                continue;
            }
            iovecs[k].iov_base = self.replies[i].as_mut_ptr().cast();
            iovecs[k].iov_len = self.replies[i].len();
            let h = &mut msgs[k].msg_hdr;
            h.msg_name = (&raw mut self.addrs[i]).cast();
            h.msg_namelen = self.addr_lens[i];
            h.msg_iov = &raw mut iovecs[k];
            h.msg_iovlen = 1;
            k += 1;
        }
        let mut sent = 0;
        while sent < k {
            // SAFETY: headers `sent..k` point into `self.replies` and `self.addrs`, unchanged
            // since they were built above.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    msgs[sent..].as_mut_ptr(),
                    (k - sent) as libc::c_uint,
                    0,
                )
            };
            if n <= 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::debug!(error = %e, "reply not sent");
                // The first of the rest failed: skip it, send the others.
                sent += 1;
            } else {
                sent += n as usize;
            }
        }
        k
    }
}

/// The IP address and port in a kernel socket address.
fn to_socket_addr(a: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(a.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large
            // and aligned enough for.
            let v4 = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let v6 = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_received_and_answered_to_each_sender() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let clients: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for (i, c) in clients.iter().enumerate() {
            c.send_to(&[i as u8; 5], server.local_addr().unwrap())
                .unwrap();
        }
        let mut batch = Batch::new(512);
        let mut got = 0;
        while got < clients.len() {
            got += batch.recv(&server).unwrap();
            for i in 0..batch.len() {
                let (data, from) = batch.datagram(i);
                let reply = data.iter().map(|b| b + 100).collect();
                assert!(
                    clients
                        .iter()
                        .any(|c| Some(c.local_addr().unwrap()) == from)
                );
                batch.replies[i] = reply;
            }
            assert_eq!(batch.send(&server), batch.len());
        }
        for (i, c) in clients.iter().enumerate() {
            let mut buf = [0u8; 16];
            c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let n = c.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i as u8 + 100; 5]);
        }
    }
}
