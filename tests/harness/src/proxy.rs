//! [`Proxy`]: a TCP relay on loopback in front of one server, whose link a test can cut.
//!
//! A client given the proxy's address reaches the server while the link is up.
//! [`Proxy::cut`] closes every relayed connection and makes new ones close as soon as they
//! are accepted, so that client sees transport errors as if the server were gone, while the
//! server keeps running for everyone else; [`Proxy::restore`] lets connections through
//! again. While the link is up and the server is down, a connection closes at once too.
//! Dropping the proxy closes everything.

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A cuttable TCP relay from a loopback port to `target`.
#[derive(Debug)]
pub struct Proxy {
    addr: String,
    /// True while the link is up; every relayed connection follows it.
    up: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts relaying from a fresh `127.0.0.1` port to `target` (`host:port`), link up.
    /// The port stays bound until the proxy is dropped, so it survives cuts.
    pub async fn start(target: &str) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let (up, _) = watch::channel(true);
        let task = tokio::spawn(accept_loop(listener, target.to_owned(), up.clone()));
        Ok(Proxy { addr, up, task })
    }

    /// `host:port` clients should use instead of the target's.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Closes every relayed connection now and every new one until [`Proxy::restore`].
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Relays new connections again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The accept loop holds the other sender; once both are gone every relay ends.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: String, up: watch::Sender<bool>) {
    loop {
        let mut inbound = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                // Out of file descriptors and the like: don't spin.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        // Subscribed before the check, so a cut after it is still seen by the relay.
        let mut link = up.subscribe();
        if !*link.borrow_and_update() {
            continue;
        }
        let target = target.clone();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(&target).await else {
                return;
            };
            tokio::select! {
                // A cut (or the proxy dropped) wins: once it is made, no byte is relayed.
                biased;
                _ = link.wait_for(|up| !*up) => {}
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// An echo server on loopback; returns its address.
    async fn echo() -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    /// Sends `ping` and reads the echo; `None` if the connection closes first.
    async fn round_trip(s: &mut TcpStream) -> Option<[u8; 4]> {
        s.write_all(b"ping").await.ok()?;
        let mut buf = [0; 4];
        s.read_exact(&mut buf).await.ok()?;
        Some(buf)
    }

    #[tokio::test]
    async fn relays_until_cut_and_again_after_restore() {
        let p = Proxy::start(&echo().await).await.unwrap();
        let mut a = TcpStream::connect(p.addr()).await.unwrap();
        assert_eq!(round_trip(&mut a).await, Some(*b"ping"));

        p.cut();
        // The open connection is closed, and a new one is closed once accepted.
        assert_eq!(round_trip(&mut a).await, None);
        let mut b = TcpStream::connect(p.addr()).await.unwrap();
        assert_eq!(round_trip(&mut b).await, None);

        p.restore();
        let mut c = TcpStream::connect(p.addr()).await.unwrap();
        assert_eq!(round_trip(&mut c).await, Some(*b"ping"));
    }
}
