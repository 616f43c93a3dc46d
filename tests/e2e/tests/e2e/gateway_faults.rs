//! `dns-gateway` under faults: with the whole 3-node store killed it keeps answering from the
//! last known data and reports its staleness; 10,000 malformed packets (random bytes,
//! truncated headers, bad label lengths, compression loops, huge counts, over UDP and TCP)
//! neither crash nor stall it, and a valid query is answered right after.

use harness::{dig, eventually};
use rand::{Rng as _, SeedableRng as _};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpStream, UdpSocket};

use crate::gateway::{LONG, Setup, inst};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_answers_from_last_data_with_the_store_down() {
    let mut s = Setup::start(3).await;
    s.instance("web", "w1", inst("10.0.1.5", "dc1", "passing"))
        .await;
    s.wait_rdata("web.ns.corp", "A", &[], &["10.0.1.5"]).await;
    for id in s.cluster.ids() {
        s.cluster.kill9(id).unwrap();
    }
    // Still answering, and saying how long since the store last answered: more than the
    // watch's 5 s progress interval means the store is gone, not quiet.
    eventually(LONG, async || {
        let a = dig(s.gw.dns(), "web.ns.corp", "A", &[]).await?;
        anyhow::ensure!(a.rdata("A") == ["10.0.1.5"], "{a:?}");
        let stale = s.gw.metric("dns_mirror_staleness_seconds").await?;
        anyhow::ensure!(stale.is_some_and(|v| v > 8.0), "staleness {stale:?}");
        Ok(())
    })
    .await
    .unwrap();
    let health = harness::Api::new()
        .get_path(s.gw.http(), "/healthz")
        .await
        .unwrap();
    assert_eq!(
        health.status,
        200,
        "listed once, so serving: {}",
        health.text()
    );
    let body: serde_json::Value = health.json().unwrap();
    assert!(body["since_contact_ms"].as_u64() > Some(8_000), "{body}");
    assert!(s.gw.proc().is_running());
}

/// One malformed DNS message of kind `i % 6`.
pub(crate) fn malformed(i: usize, rng: &mut rand::rngs::StdRng) -> Vec<u8> {
    let id = (i as u16).to_be_bytes();
    let header = |qd: u16, an: u16, ns: u16, ar: u16| {
        let mut h = vec![id[0], id[1], 0x01, 0x00];
        for c in [qd, an, ns, ar] {
            h.extend_from_slice(&c.to_be_bytes());
        }
        h
    };
    match i % 6 {
        // Random bytes of any length.
        0 => {
            let n = rng.random_range(0..600);
            (0..n).map(|_| rng.random()).collect()
        }
        // A truncated header.
        1 => {
            let n = rng.random_range(1..12);
            (0..n).map(|_| rng.random()).collect()
        }
        // A label length running past the end, or over 63.
        2 => {
            let mut m = header(1, 0, 0, 0);
            m.extend_from_slice(&[rng.random_range(40..=255u8), b'w', b'e', b'b', 0]);
            m.extend_from_slice(&[0, 1, 0, 1]);
            m
        }
        // A compression pointer to itself, or two pointing at each other.
        3 => {
            let mut m = header(1, 0, 0, 0);
            if i % 12 == 3 {
                m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
            } else {
                m.extend_from_slice(&[0xc0, 14, 0xc0, 12, 0, 1, 0, 1]);
            }
            m
        }
        // Huge counts over a short body.
        4 => {
            let mut m = header(u16::MAX, u16::MAX, u16::MAX, u16::MAX);
            m.extend_from_slice(&[3, b'w', b'e', b'b', 0, 0, 1, 0, 1]);
            m
        }
        // A valid question followed by garbage records.
        _ => {
            let mut m = header(1, 0, 0, 3);
            m.extend_from_slice(&[
                3, b'w', b'e', b'b', 2, b'n', b's', 4, b'c', b'o', b'r', b'p', 0,
            ]);
            m.extend_from_slice(&[0, 1, 0, 1]);
            let n = rng.random_range(1..60);
            m.extend((0..n).map(|_| rng.random::<u8>()));
            m
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_survives_malformed_packets() {
    let mut s = Setup::start(1).await;
    s.instance("web", "w1", inst("10.0.1.5", "dc1", "passing"))
        .await;
    s.wait_rdata("web.ns.corp", "A", &[], &["10.0.1.5"]).await;
    let dns = s.gw.dns();
    let (replies, formerr) = flood(dns, 12).await;
    eprintln!("{replies} UDP replies, {formerr} FORMERR");
    assert!(
        formerr > 0,
        "malformed questions with a good header get FORMERR"
    );
    // A valid query is answered right after, over UDP and TCP.
    let a = dig(dns, "web.ns.corp", "A", &["+time=2"]).await.unwrap();
    assert_eq!(a.rdata("A"), ["10.0.1.5"]);
    let a = dig(dns, "web.ns.corp", "A", &["+tcp", "+time=2"])
        .await
        .unwrap();
    assert_eq!(a.rdata("A"), ["10.0.1.5"]);
    let running = s.gw.proc().is_running();
    assert!(running, "{}", s.gw.proc().log_tail(40));
}

/// Sends 9,000 malformed packets over UDP and 1,000 over TCP (50 per connection, some with a
/// length prefix that never completes) to `dns`; returns the UDP replies seen and how many were
/// FORMERR. Shared by the gateway's and the agent's malformed-packet tests.
pub(crate) async fn flood(dns: std::net::SocketAddr, seed: u64) -> (usize, usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(dns).await.unwrap();
    let mut replies = 0usize;
    let mut formerr = 0usize;
    let mut buf = [0u8; 2048];
    for i in 0..9_000 {
        sock.send(&malformed(i, &mut rng)).await.unwrap();
        // Drain what has come back so far, so the socket buffer never fills.
        while let Ok(n) = sock.try_recv(&mut buf) {
            replies += 1;
            if n >= 4 && buf[3] & 0x0f == 1 {
                formerr += 1;
            }
        }
        if i % 500 == 499 {
            // Let the server breathe; nothing is asserted on timing.
            tokio::task::yield_now().await;
        }
    }
    // 1,000 more over TCP, each framed with its length, 50 per connection.
    for c in 0..20 {
        let Ok(mut tcp) = TcpStream::connect(dns).await else {
            panic!("TCP connect {c} refused");
        };
        for i in 0..50 {
            let m = malformed(c * 50 + i, &mut rng);
            // A wrong length prefix now and then: the frame never completes.
            let len = if i % 7 == 0 { u16::MAX } else { m.len() as u16 };
            if tcp.write_all(&len.to_be_bytes()).await.is_err() || tcp.write_all(&m).await.is_err()
            {
                break; // the server may close a connection it cannot parse
            }
        }
    }
    (replies, formerr)
}
