//! TLS (issue 11): a 3-node cluster with TLS on the API and between the nodes, from
//! certificates `pyxis tls gen` wrote; the CLI (`--ca`, `https://` endpoints) and an agent
//! (`ca = ...`) and the DNS gateway (`--ca`) talk to it; plaintext is refused; a client trusting another CA fails with a
//! clear error; a bad `--tls-cert` exits naming the file; a member added over https catches
//! up by snapshot.

use std::time::Duration;

use harness::{Agent, Certs, Cluster, Gateway, dig, eventually, run_cmd, write_script};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A CLI command should finish quickly; this bound is for a loaded CI machine.
const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// Generous bound for what should happen "soon" on a loaded machine.
const SOON: Duration = Duration::from_secs(30);

/// `https://` URLs of every live member, comma separated (`--endpoints`).
fn https_endpoints(c: &Cluster) -> String {
    c.live_ids()
        .iter()
        .map(|id| c.url(*id))
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs `pyxis ARGS --endpoints EP --ca CA` and returns its output (whatever the exit).
async fn cli(
    c: &Cluster,
    endpoints: &str,
    ca: &std::path::Path,
    args: &[&str],
) -> harness::CmdOutput {
    let ca = ca.display().to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--endpoints", endpoints, "--ca", &ca]);
    run_cmd(c.bin(), all, CMD_TIMEOUT).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_serves_the_cli_an_agent_and_the_gateway_over_https_only() {
    let certs = Certs::generate().await.unwrap();
    let c = Cluster::start_tls(3, &certs, &[]).await.unwrap();
    assert_eq!(c.scheme(), "https");
    let all = https_endpoints(&c);
    let leader = c.leader().await.unwrap();
    let follower = c.followers(leader)[0];

    // A write through a follower is forwarded to the leader over https; the read after it
    // is linearizable (the default), through another node.
    let out = cli(
        &c,
        &c.url(follower),
        certs.ca(),
        &["kv", "put", "/tls/a", "hello"],
    )
    .await;
    assert!(out.status.success(), "kv put over https: {}", out.stderr);
    let out = cli(&c, &c.url(leader), certs.ca(), &["kv", "get", "/tls/a"]).await;
    assert!(out.status.success(), "kv get over https: {}", out.stderr);
    assert_eq!(out.stdout.trim_end(), "hello");
    let out = cli(&c, &all, certs.ca(), &["members"]).await;
    assert!(out.status.success(), "members over https: {}", out.stderr);
    let voters = out.stdout.lines().filter(|l| l.contains(" yes ")).count();
    assert_eq!(voters, 3, "3 voters:\n{}", out.stdout);

    // An agent with `ca` registers a service through https; the CLI lists it.
    let dir = tempfile::Builder::new()
        .prefix("ns-agent-tls-")
        .tempdir()
        .unwrap();
    std::fs::create_dir_all(dir.path().join("services.d")).unwrap();
    write_script(&dir.path().join("web/health.sh"), "exit 0").unwrap();
    std::fs::write(
        dir.path().join("services.d/web.toml"),
        "name = \"web\"\nport = 8080\n[health]\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\
         pass_after = 1\n[scripts]\nhealth = \"../web/health.sh\"\n",
    )
    .unwrap();
    let config = format!(
        "node = \"host-1\"\ndatacenter = \"dc1\"\nadvertise = \"127.0.0.1\"\n\
         store = [\"{}\"]\nca = \"{}\"\nservices_dir = \"services.d\"\nhttp = \"127.0.0.1:0\"\n\
         lease_ttl = \"2s\"\n",
        c.url(follower),
        certs.ca().display()
    );
    let _agent = Agent::start(dir.path(), &config, &[]).await.unwrap();
    eventually(SOON, async || {
        let out = cli(&c, &all, certs.ca(), &["service", "show", "web"]).await;
        anyhow::ensure!(out.status.success(), "service show: {}", out.stderr);
        anyhow::ensure!(
            out.stdout.contains("host-1") && out.stdout.contains("8080"),
            "not registered yet:\n{}",
            out.stdout
        );
        Ok(())
    })
    .await
    .unwrap();

    // The DNS gateway mirrors the store over https (`--ca`) and answers for the service.
    let ca = certs.ca().display().to_string();
    let gw = Gateway::start(&c.url(leader), &c.dir().join("logs"), &["--ca", &ca])
        .await
        .unwrap();
    eventually(SOON, async || {
        let a = dig(gw.dns(), "web.ns.corp", "A", &[]).await?;
        anyhow::ensure!(
            a.rdata("A") == ["127.0.0.1"],
            "gateway answer: {:?}",
            a.answer
        );
        Ok(())
    })
    .await
    .unwrap();

    // Plaintext gets no answer: the handshake fails and the connection is closed (with a
    // TLS alert at most), never an HTTP reply.
    let mut tcp = tokio::net::TcpStream::connect(c.addr(leader))
        .await
        .unwrap();
    tcp.write_all(b"GET /v1/status HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(SOON, tcp.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "a plaintext connection was left open");
    assert!(
        !reply.starts_with(b"HTTP"),
        "plaintext got an HTTP answer: {:?}",
        String::from_utf8_lossy(&reply)
    );
    let plain = c
        .api()
        .get_path(&format!("http://{}", c.addr(leader)), "/v1/status")
        .await;
    assert!(plain.is_err(), "http:// to a TLS node answered: {plain:?}");

    // Peer calls need a client certificate from the cluster's CA; a client without one
    // is refused on /raft/*, while the public API serves it.
    let raft = c
        .api()
        .request(
            reqwest::Method::POST,
            &format!("{}/raft/vote", c.url(leader)),
            Some(bytes::Bytes::new()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        raft.status,
        403,
        "/raft/vote without a client certificate: {}",
        raft.text()
    );
    assert!(
        raft.text().contains("client certificate"),
        "{}",
        raft.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_with_another_ca_fails_with_a_clear_error() {
    let certs = Certs::generate().await.unwrap();
    let other = Certs::generate().await.unwrap();
    let c = Cluster::start_tls(1, &certs, &[]).await.unwrap();
    let url = c.url(1);

    let out = cli(&c, &url, other.ca(), &["kv", "get", "/tls/x"]).await;
    assert!(
        !out.status.success(),
        "a wrong CA was accepted: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("certificate is not trusted") && out.stderr.contains(&url),
        "the error should say the certificate is not trusted, naming {url}:\n{}",
        out.stderr
    );

    let client = pyxis_client::Client::with_options(
        vec![url.clone()],
        pyxis_client::ClientOptions::default().ca_file(other.ca()),
    )
    .unwrap();
    let err = client.get("/tls/x").await.unwrap_err();
    assert!(
        matches!(err, pyxis_client::Error::Tls(_)) && err.to_string().contains(&url),
        "{err}"
    );
    // The right CA works through the same library.
    let client = pyxis_client::Client::with_options(
        vec![url],
        pyxis_client::ClientOptions::default().ca_file(certs.ca()),
    )
    .unwrap();
    assert_eq!(client.get("/tls/x").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_bad_cert_path_exits_naming_the_file() {
    let certs = Certs::generate().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().display().to_string();
    let ca = certs.ca().display().to_string();
    let key = certs.key().display().to_string();
    let out = run_cmd(
        &harness::bin("pyxis"),
        [
            "server",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data_dir,
            "--tls-cert",
            "/nonexistent/node.pem",
            "--tls-key",
            &key,
            "--tls-ca",
            &ca,
        ],
        CMD_TIMEOUT,
    )
    .await
    .unwrap();
    assert!(!out.status.success(), "started with a missing certificate");
    assert!(
        out.stderr.contains("/nonexistent/node.pem"),
        "the error should name the file:\n{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_member_added_over_https_catches_up_by_snapshot() {
    let certs = Certs::generate().await.unwrap();
    let mut c = Cluster::start_tls(3, &certs, &["--snapshot-threshold", "20"])
        .await
        .unwrap();
    let leader = c.leader().await.unwrap();
    for i in 0..100 {
        c.api()
            .put(&c.url(leader), &format!("/tls/k{i}"), "v")
            .await
            .unwrap()
            .ok()
            .unwrap();
    }
    // Once the leader's log is purged, a new member can only catch up by a snapshot.
    eventually(SOON, async || {
        let text = c.api().get_path(&c.url(leader), "/metrics").await?.text();
        let purged = text
            .lines()
            .find(|l| l.starts_with("pyxis_raft_purged_index"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        anyhow::ensure!(purged > 0.0, "the leader's log is not purged yet");
        Ok(())
    })
    .await
    .unwrap();
    c.spawn_joiner(4).await.unwrap();
    let all = https_endpoints(&c);
    let joiner = c.url(4);
    let added = cli(&c, &all, certs.ca(), &["members", "add", "4", &joiner]).await;
    assert!(
        added.status.success(),
        "members add over https: {}",
        added.stderr
    );
    eventually(SOON, async || {
        let r = c
            .api()
            .get_path(&joiner, "/v1/kv/tls/k99?consistency=serializable")
            .await?;
        anyhow::ensure!(r.status == 200, "node 4 lacks /tls/k99: HTTP {}", r.status);
        Ok(())
    })
    .await
    .unwrap();
}
