//! Hostile clients: idle, trickling and slow connections are closed after their time limit,
//! and connections over the node's bound get a clear 503 while the node stays reachable.

use std::time::Duration;

use harness::{Cluster, eventually};
use pyxis_client::api::{ErrorBody, ErrorCode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or `within` passes); what it sent, if it
/// closed in time.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> Option<String> {
    let (closed, got) = read_for(s, within).await;
    closed.then_some(got)
}

/// Reads for at most `within`: whether the server closed the connection, and what it sent.
async fn read_for(s: &mut TcpStream, within: Duration) -> (bool, String) {
    let mut got = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    (closed.is_ok(), String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_trickling_and_slow_connections_are_closed() {
    let c = Cluster::single(&[
        "--http-header-timeout-ms",
        "500",
        "--http-body-timeout-ms",
        "500",
    ])
    .await
    .unwrap();
    let addr = c.addr(1);
    let limit = Duration::from_secs(10);

    // Connected, nothing sent.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert!(
        read_until_closed(&mut idle, limit).await.is_some(),
        "idle connection kept open"
    );

    // Half a request line, then nothing.
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    trickle
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x")
        .await
        .unwrap();
    assert!(
        read_until_closed(&mut trickle, limit).await.is_some(),
        "trickled header kept open"
    );

    // Headers promise 100 bytes of body; 10 arrive.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        b"PUT /v1/kv/conn/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let reply = read_until_closed(&mut slow, limit).await;
    let reply = reply.expect("slow upload kept open");
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert_eq!(
        c.api().get(&c.url(1), "/conn/slow").await.unwrap().status,
        404,
        "a cut-off body was written"
    );

    // A kept-alive connection that goes quiet after a request is closed too.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let reply = read_until_closed(&mut kept, limit)
        .await
        .expect("kept-alive connection kept open");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    // And the node still serves. A fresh client: a pooled connection of the shared one may be
    // closed by the node's 500 ms idle limit just as it is reused, a race of every HTTP client
    // with a server that closes idle connections, which is not what this checks.
    harness::Api::new()
        .put_ok(&c.url(1), "/conn/ok", "v")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_bound_get_503_and_the_node_stays_reachable() {
    let c = Cluster::single(&[
        "--max-connections",
        "20",
        "--http-header-timeout-ms",
        "60000",
    ])
    .await
    .unwrap();
    let addr = c.addr(1);
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // Every connection counts once the node has accepted it; one more is answered at once.
    let refused = eventually(Duration::from_secs(30), async || {
        let mut extra = TcpStream::connect(addr).await?;
        extra
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let (closed, reply) = read_for(&mut extra, Duration::from_secs(3)).await;
        anyhow::ensure!(
            reply.starts_with("HTTP/1.1 503") && reply.contains("too many open connections"),
            "not refused yet (closed: {closed}): {reply:?}"
        );
        Ok(reply)
    })
    .await
    .unwrap();
    let body: ErrorBody = serde_json::from_str(refused.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body.error, ErrorCode::Unavailable);

    held.truncate(10);
    eventually(Duration::from_secs(10), async || {
        c.api()
            .put_ok(&c.url(1), "/conn/after", "v")
            .await
            .map(drop)
    })
    .await
    .unwrap();
}
