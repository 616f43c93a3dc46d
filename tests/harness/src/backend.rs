//! [`Backend`]: a tiny HTTP server on an ephemeral loopback port that answers every request
//! with its own name, for proxy tests (which backend did nginx pick?).
//!
//! One response per connection (`connection: close`), so every request through a proxy is
//! balanced on its own. It runs until the test's runtime ends or the `Backend` is dropped.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::task::JoinHandle;

/// A running backend.
#[derive(Debug)]
pub struct Backend {
    name: String,
    port: u16,
    task: JoinHandle<()>,
}

impl Backend {
    /// Starts backend `name` on `127.0.0.1:0`.
    pub async fn start(name: &str) -> anyhow::Result<Backend> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let body = format!("{name}\n");
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    // Read the request head; the body (if any) is ignored.
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65_536 {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(reply.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Ok(Backend {
            name: name.to_owned(),
            port,
            task,
        })
    }

    /// Its name, which is also its response body (plus a newline).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}
