//! [`Proxy`]: a TCP relay on loopback in front of one server, whose link a test can cut.
//!
//! A client given the proxy's address reaches the server while the link is up.
//! [`Proxy::cut`] closes every relayed connection and makes new ones close as soon as they
//! are accepted, so that client sees transport errors as if the server were gone, while the
//! server keeps running for everyone else; [`Proxy::restore`] lets connections through
//! again. While the link is up and the server is down, a connection closes at once too.
//! [`Proxy::lose_replies`] makes it swallow the reply to chosen requests (the server did
//! the work, the client never hears of it) and close that connection: the lost-reply
//! fault that retries must survive. Dropping the proxy closes everything.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Which replies to swallow: those to requests whose first bytes start with `prefix`.
#[derive(Debug, Default)]
struct LoseReplies {
    prefix: Vec<u8>,
    /// How many more replies to swallow.
    left: usize,
    /// How many were swallowed so far.
    lost: usize,
}

impl LoseReplies {
    /// Whether the reply to a request starting with `head` is to be swallowed (counts it).
    fn take(&mut self, head: &[u8]) -> bool {
        if self.left > 0 && head.starts_with(&self.prefix) {
            self.left -= 1;
            self.lost += 1;
            return true;
        }
        false
    }
}

/// A cuttable TCP relay from a loopback port to `target`.
#[derive(Debug)]
pub struct Proxy {
    addr: String,
    /// True while the link is up; every relayed connection follows it.
    up: watch::Sender<bool>,
    lose: Arc<Mutex<LoseReplies>>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts relaying from a fresh `127.0.0.1` port to `target` (`host:port`), link up.
    /// The port stays bound until the proxy is dropped, so it survives cuts.
    pub async fn start(target: &str) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let (up, _) = watch::channel(true);
        let lose = Arc::new(Mutex::new(LoseReplies::default()));
        let task = tokio::spawn(accept_loop(
            listener,
            target.to_owned(),
            up.clone(),
            lose.clone(),
        ));
        Ok(Proxy {
            addr,
            up,
            lose,
            task,
        })
    }

    /// Swallows the replies to the next `n` requests whose bytes start with `prefix` (e.g.
    /// `b"POST /raft/write"`): each request reaches the server, its reply is dropped and the
    /// connection closed, as when a reply is lost on the way back.
    pub fn lose_replies(&self, prefix: &[u8], n: usize) {
        let mut lose = self.lose.lock().unwrap_or_else(|p| p.into_inner());
        lose.prefix = prefix.to_vec();
        lose.left = n;
    }

    /// How many replies were swallowed so far.
    pub fn replies_lost(&self) -> usize {
        self.lose.lock().unwrap_or_else(|p| p.into_inner()).lost
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

async fn accept_loop(
    listener: TcpListener,
    target: String,
    up: watch::Sender<bool>,
    lose: Arc<Mutex<LoseReplies>>,
) {
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
        let lose = lose.clone();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(&target).await else {
                return;
            };
            relay(&mut inbound, &mut outbound, &mut link, &lose).await;
        });
    }
}

/// Relays both ways until either side closes, the link is cut, or a reply is swallowed.
async fn relay(
    inbound: &mut TcpStream,
    outbound: &mut TcpStream,
    link: &mut watch::Receiver<bool>,
    lose: &Mutex<LoseReplies>,
) {
    let (mut in_r, mut in_w) = inbound.split();
    let (mut out_r, mut out_w) = outbound.split();
    let (mut up_buf, mut down_buf) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    // Set once a request whose reply is to be lost went through on this connection.
    let mut swallow = false;
    loop {
        tokio::select! {
            // A cut (or the proxy dropped) wins: once it is made, no byte is relayed.
            biased;
            () = async { drop(link.wait_for(|up| !*up).await) } => return,
            n = in_r.read(&mut up_buf) => {
                let n = match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if lose.lock().unwrap_or_else(|p| p.into_inner()).take(&up_buf[..n]) {
                    swallow = true;
                }
                if out_w.write_all(&up_buf[..n]).await.is_err() {
                    return;
                }
            }
            n = out_r.read(&mut down_buf) => {
                let n = match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if swallow {
                    // The server answered; the client never hears of it.
                    return;
                }
                if in_w.write_all(&down_buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
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

    #[tokio::test]
    async fn a_lost_reply_reaches_the_server_but_not_the_client() {
        let p = Proxy::start(&echo().await).await.unwrap();
        p.lose_replies(b"pi", 1);
        let mut a = TcpStream::connect(p.addr()).await.unwrap();
        assert_eq!(round_trip(&mut a).await, None);
        assert_eq!(p.replies_lost(), 1);
        // Only the chosen number of replies is lost.
        let mut b = TcpStream::connect(p.addr()).await.unwrap();
        assert_eq!(round_trip(&mut b).await, Some(*b"ping"));
    }
}
