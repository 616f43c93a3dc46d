//! [`Cluster`]: a set of `pyxis server` processes on loopback, each with its own data dir.
//!
//! A cluster of N nodes reserves N ports, starts every node with the same `--peers` list and
//! waits until every node answers `/livez` and all agree on a leader. Single nodes use
//! `--listen 127.0.0.1:0` and learn their address from the `listening http=ADDR` line.
//! Faults: [`Cluster::kill9`] and [`Cluster::restart`], [`Cluster::pause`] and
//! [`Cluster::resume`] (SIGSTOP/SIGCONT), and [`Cluster::heal`] to undo them all.
//! The cluster owns a temporary directory with the data dirs and the logs; dropping it kills
//! every node (and dumps their logs if the test is panicking, see [`crate::Proc`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use pyxis_client::api::{ClusterInfo, NodeId};
use tempfile::TempDir;
use tokio::time::Instant;

use crate::{Api, Proc, Proxy, bin, eventually, reserve_ports};

/// How long a node may take to start serving on a loaded CI machine (debug build).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long to wait for all live members to agree on a leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// Adding a member returns only once the learner caught up and was promoted.
const ADD_MEMBER_TIMEOUT: Duration = Duration::from_secs(120);

/// One node's process and the arguments it was started with.
#[derive(Debug)]
struct Node {
    /// `host:port` serving both the API and Raft RPC.
    addr: String,
    /// Arguments for `pyxis`, reused verbatim by [`Cluster::restart`].
    args: Vec<String>,
    proc: Proc,
    /// False after [`Cluster::kill9`] until [`Cluster::restart`].
    running: bool,
    /// True after [`Cluster::pause`] until [`Cluster::resume`] (or a kill).
    paused: bool,
    /// False for a `--join` node not yet added, and after [`Cluster::remove_member`].
    member: bool,
}

/// A running pyxis cluster owned by one test.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    api: Api,
    nodes: BTreeMap<NodeId, Node>,
    /// Extra `pyxis server` arguments given to every node, joiners included.
    extra: Vec<String>,
    /// The CA file when the nodes run TLS ([`Cluster::start_tls`]): URLs are then https.
    ca: Option<PathBuf>,
    // Declared last so the processes are killed before their directories are removed.
    dir: TempDir,
}

impl Cluster {
    /// Starts `n` voters (ids 1..=n) from one `--peers` list and waits for a leader.
    pub async fn start(n: u64) -> anyhow::Result<Cluster> {
        Cluster::start_with(n, &[]).await
    }

    /// Like [`Cluster::start`], with `extra` appended to every node's `pyxis server` arguments.
    pub async fn start_with(n: u64, extra: &[&str]) -> anyhow::Result<Cluster> {
        let addrs = loopback_addrs(n);
        Cluster::launch(&addrs, &addrs, extra).await
    }

    /// Starts `n` voters with TLS on the API and between them, from `certs`, with
    /// `extra` appended to every node's arguments; the peers are given as `https://` URLs,
    /// and [`Cluster::url`] and [`Cluster::api`] speak https trusting the test CA.
    pub async fn start_tls(
        n: u64,
        certs: &crate::Certs,
        extra: &[&str],
    ) -> anyhow::Result<Cluster> {
        let addrs = loopback_addrs(n);
        let mut args = certs.server_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Cluster::launch_on(&addrs, &addrs, &args, Some(certs.ca().to_owned())).await
    }

    /// Starts `n` voters whose peer traffic goes through a [`Proxy`] per node: each node
    /// listens on its own port and is known to the others (`--peers`, `--advertise`) by its
    /// proxy's address, so a test can cut a node's peer links or lose its replies while
    /// talking to the node directly.
    pub async fn start_behind_proxies(
        n: u64,
    ) -> anyhow::Result<(Cluster, BTreeMap<NodeId, Proxy>)> {
        let addrs = loopback_addrs(n);
        let mut proxies = BTreeMap::new();
        for (id, addr) in &addrs {
            proxies.insert(*id, Proxy::start(addr).await?);
        }
        let peer_addrs: Vec<(NodeId, String)> = proxies
            .iter()
            .map(|(id, p)| (*id, p.addr().to_owned()))
            .collect();
        let cluster = Cluster::launch(&addrs, &peer_addrs, &[]).await?;
        Ok((cluster, proxies))
    }

    /// Starts one node per `(id, listen address)`, known to its peers by `peer_addrs`, and
    /// waits until every node is healthy and they agree on a leader.
    async fn launch(
        addrs: &[(NodeId, String)],
        peer_addrs: &[(NodeId, String)],
        extra: &[&str],
    ) -> anyhow::Result<Cluster> {
        Cluster::launch_on(addrs, peer_addrs, extra, None).await
    }

    /// [`Cluster::launch`], over TLS when `ca` is given.
    async fn launch_on(
        addrs: &[(NodeId, String)],
        peer_addrs: &[(NodeId, String)],
        extra: &[&str],
        ca: Option<PathBuf>,
    ) -> anyhow::Result<Cluster> {
        let n = addrs.len();
        let mut cluster = Cluster::empty(extra)?;
        if let Some(ca) = ca {
            cluster.api = Api::with_options(Duration::from_secs(15), Some(&ca));
            cluster.ca = Some(ca);
        }
        let peers = cluster.peers_arg(peer_addrs);
        for ((id, addr), (_, peer_addr)) in addrs.iter().zip(peer_addrs) {
            let mut args = cluster.server_args(*id, addr);
            args.extend(["--peers".into(), peers.clone()]);
            if peer_addr != addr {
                args.extend(["--advertise".into(), peer_addr.clone()]);
            }
            args.extend(cluster.extra.iter().cloned());
            cluster.spawn_node(*id, addr.clone(), args, true)?;
        }
        let mut ready = Ok(());
        for (id, _) in addrs {
            ready = cluster.wait_ready(*id).await;
            if ready.is_err() {
                break;
            }
        }
        if ready.is_ok() {
            ready = cluster.leader().await.map(drop);
        }
        // The cluster is dropped without a panic on this path, so put the logs in the error.
        ready.with_context(|| format!("starting a {n}-node cluster\n{}", cluster.log_tails(80)))?;
        Ok(cluster)
    }

    /// Starts one node (id 1) on `127.0.0.1:0`, reads its address from the
    /// `listening http=ADDR` line and waits until it leads itself.
    pub async fn single(extra: &[&str]) -> anyhow::Result<Cluster> {
        let mut cluster = Cluster::empty(extra)?;
        let mut args = cluster.server_args(1, "127.0.0.1:0");
        args.extend(cluster.extra.iter().cloned());
        let log_dir = cluster.dir.path().join("logs");
        let mut proc = Proc::spawn_in("n1", &cluster.bin, &args, &log_dir)?;
        let line = proc.wait_for_line("listening http=", START_TIMEOUT).await?;
        let addr =
            parse_listening(&line).with_context(|| format!("parse the announce line {line:?}"))?;
        // A restart must come back on the same address, so pin the port learnt from the line.
        for a in args.iter_mut() {
            if a == "127.0.0.1:0" {
                *a = addr.clone();
            }
        }
        cluster.nodes.insert(
            1,
            Node {
                addr,
                args,
                proc,
                running: true,
                paused: false,
                member: true,
            },
        );
        let mut ready = cluster.wait_ready(1).await;
        if ready.is_ok() {
            ready = cluster.leader().await.map(drop);
        }
        ready.with_context(|| format!("starting a single node\n{}", cluster.log_tails(80)))?;
        Ok(cluster)
    }

    fn empty(extra: &[&str]) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("pyxis-e2e-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("logs"))?;
        Ok(Cluster {
            bin: bin("pyxis"),
            api: Api::new(),
            nodes: BTreeMap::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            ca: None,
            dir,
        })
    }

    fn server_args(&self, id: NodeId, listen: &str) -> Vec<String> {
        vec![
            "server".into(),
            "--id".into(),
            id.to_string(),
            "--listen".into(),
            listen.into(),
            "--data-dir".into(),
            self.data_dir(id).display().to_string(),
        ]
    }

    fn spawn_node(
        &mut self,
        id: NodeId,
        addr: String,
        args: Vec<String>,
        member: bool,
    ) -> anyhow::Result<()> {
        let log_dir = self.dir.path().join("logs");
        let proc = Proc::spawn_in(&format!("n{id}"), &self.bin, &args, &log_dir)?;
        self.nodes.insert(
            id,
            Node {
                addr,
                args,
                proc,
                running: true,
                paused: false,
                member,
            },
        );
        Ok(())
    }

    /// The `pyxis` binary the nodes run.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The HTTP client tests should use.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// The cluster's temporary directory (data dirs and logs live below it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Data directory of node `id`.
    pub fn data_dir(&self, id: NodeId) -> PathBuf {
        self.dir.path().join(format!("n{id}"))
    }

    /// `host:port` of node `id`.
    pub fn addr(&self, id: NodeId) -> &str {
        &self.node(id).addr
    }

    /// Base URL (`http://host:port`, or `https://` with TLS) of node `id`.
    pub fn url(&self, id: NodeId) -> String {
        format!("{}://{}", self.scheme(), self.addr(id))
    }

    /// `https` for a cluster started with [`Cluster::start_tls`], else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.ca.is_some() { "https" } else { "http" }
    }

    /// The CA file of a TLS cluster (for `--ca` and `ca = ...`).
    pub fn ca(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// A client for this cluster's nodes whose requests give up after `timeout`.
    fn client(&self, timeout: Duration) -> Api {
        Api::with_options(timeout, self.ca.as_deref())
    }

    /// `1=URL,2=URL,..` for `--peers`: bare `host:port` without TLS, `https://` with it.
    fn peers_arg(&self, addrs: &[(NodeId, String)]) -> String {
        match self.ca {
            None => peers_arg(addrs),
            Some(_) => addrs
                .iter()
                .map(|(id, addr)| format!("{id}=https://{addr}"))
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// Every node ever started, running or not.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// Members whose process is running and not paused, so they can answer.
    pub fn live_ids(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.running && !n.paused && n.member)
            .map(|(id, _)| *id)
            .collect()
    }

    /// `host:port` of every running member, comma separated (the CLI's `--endpoints`).
    pub fn endpoints(&self) -> String {
        self.live_ids()
            .iter()
            .map(|id| self.addr(*id).to_owned())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The process of node `id` (for its pid or logs).
    pub fn proc(&self, id: NodeId) -> &Proc {
        &self.node(id).proc
    }

    fn node(&self, id: NodeId) -> &Node {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    fn node_mut(&mut self, id: NodeId) -> anyhow::Result<&mut Node> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| anyhow!("no node {id} in this cluster"))
    }

    /// The leader every running member agrees on, waiting up to 60 s for an election.
    pub async fn leader(&self) -> anyhow::Result<NodeId> {
        self.leader_within(LEADER_TIMEOUT).await
    }

    /// Like [`Cluster::leader`] with a custom deadline.
    pub async fn leader_within(&self, deadline: Duration) -> anyhow::Result<NodeId> {
        let quick = self.client(Duration::from_secs(2));
        let live = self.live_ids();
        if live.is_empty() {
            bail!("no running members to ask for a leader");
        }
        eventually(deadline, async || {
            let mut views = Vec::new();
            for id in &live {
                let view = quick.cluster(&self.url(*id)).await.map(|c| c.leader);
                views.push((*id, view));
            }
            let first = match &views[0].1 {
                Ok(Some(l)) => *l,
                _ => bail!("no agreed leader yet: {views:?}"),
            };
            let agreed = views
                .iter()
                .all(|(_, v)| matches!(v, Ok(Some(l)) if *l == first));
            if !agreed || !live.contains(&first) {
                bail!("no agreed live leader yet: {views:?}");
            }
            Ok(first)
        })
        .await
        .context("waiting for the live members to agree on a leader")
    }

    /// Running members other than `leader`.
    pub fn followers(&self, leader: NodeId) -> Vec<NodeId> {
        self.live_ids()
            .into_iter()
            .filter(|id| *id != leader)
            .collect()
    }

    /// Kills node `id` with SIGKILL; its data dir and log stay for [`Cluster::restart`].
    pub fn kill9(&mut self, id: NodeId) -> anyhow::Result<()> {
        let node = self.node_mut(id)?;
        node.proc.kill9()?;
        node.running = false;
        node.paused = false;
        Ok(())
    }

    /// Freezes node `id` with SIGSTOP (see [`Proc::pause`]); it stops counting as live until
    /// [`Cluster::resume`], so [`Cluster::leader`] asks only the others.
    pub fn pause(&mut self, id: NodeId) -> anyhow::Result<()> {
        let node = self.node_mut(id)?;
        if !node.running {
            bail!("node {id} is not running, so it cannot be paused");
        }
        node.proc.pause()?;
        node.paused = true;
        Ok(())
    }

    /// Lets node `id`, frozen by [`Cluster::pause`], run again (SIGCONT).
    pub fn resume(&mut self, id: NodeId) -> anyhow::Result<()> {
        let node = self.node_mut(id)?;
        node.proc.resume()?;
        node.paused = false;
        Ok(())
    }

    /// Members that are frozen by [`Cluster::pause`].
    pub fn paused_ids(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.paused && n.member)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Members whose process was killed and not restarted.
    pub fn down_ids(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| !n.running && n.member)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Undoes every fault: resumes the paused members, restarts the killed ones (all at
    /// once, see [`Cluster::restart_many`]) and waits for an agreed leader.
    pub async fn heal(&mut self) -> anyhow::Result<NodeId> {
        for id in self.paused_ids() {
            self.resume(id)?;
        }
        let down = self.down_ids();
        self.restart_many(&down).await?;
        self.leader().await
    }

    /// Starts node `id` again with the same arguments and data dir, and waits for `/livez`.
    pub async fn restart(&mut self, id: NodeId) -> anyhow::Result<()> {
        self.respawn(id)?;
        self.wait_ready(id).await
    }

    /// Starts node `id` again with the same arguments, expecting it to refuse to start:
    /// returns its exit status and what it wrote to stderr; fails if it is still running
    /// after `timeout`.
    pub async fn restart_expecting_exit(
        &mut self,
        id: NodeId,
        timeout: Duration,
    ) -> anyhow::Result<(std::process::ExitStatus, String)> {
        self.respawn(id)?;
        let node = self.node_mut(id)?;
        let status = node.proc.wait_exit(timeout).await?;
        node.running = false;
        Ok((status, node.proc.stderr_of_this_run()))
    }

    /// Restarts several nodes at once: all are spawned before any is waited for, so nodes
    /// that need a quorum to report healthy are not waited on alone.
    pub async fn restart_many(&mut self, ids: &[NodeId]) -> anyhow::Result<()> {
        for id in ids {
            self.respawn(*id)?;
        }
        for id in ids {
            self.wait_ready(*id).await?;
        }
        Ok(())
    }

    fn respawn(&mut self, id: NodeId) -> anyhow::Result<()> {
        let log_dir = self.dir.path().join("logs");
        let bin = self.bin.clone();
        let node = self.node_mut(id)?;
        if node.running {
            node.proc.kill9()?;
        }
        node.proc = Proc::spawn_in(&format!("n{id}"), &bin, &node.args, &log_dir)?;
        node.running = true;
        node.paused = false;
        Ok(())
    }

    /// Waits until node `id` answers `GET /livez` with 200; fails at once if it exits.
    pub async fn wait_ready(&mut self, id: NodeId) -> anyhow::Result<()> {
        let url = self.url(id);
        let quick = self.client(Duration::from_secs(2));
        let node = self.node_mut(id)?;
        wait_healthy_with(&mut node.proc, &url, &quick).await
    }

    /// The last `n` log lines of every node, for errors that happen outside a panic.
    pub fn log_tails(&self, n: usize) -> String {
        self.nodes
            .values()
            .map(|node| node.proc.log_tail(n))
            .collect()
    }

    /// Starts node `id` empty with `--join` on a new port and waits for `/livez`; it is not
    /// a member until [`Cluster::add_member`] adds it.
    pub async fn spawn_joiner(&mut self, id: NodeId) -> anyhow::Result<()> {
        if self.nodes.contains_key(&id) {
            bail!("node {id} already exists");
        }
        let addr = format!("127.0.0.1:{}", reserve_ports(1)[0]);
        let mut peers: Vec<(NodeId, String)> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.member)
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        peers.push((id, addr.clone()));
        let mut args = self.server_args(id, &addr);
        args.extend(["--peers".into(), self.peers_arg(&peers), "--join".into()]);
        args.extend(self.extra.iter().cloned());
        self.spawn_node(id, addr, args, false)?;
        self.wait_ready(id).await
    }

    /// Starts node `id` again on its own address with an empty data dir and `--join` (the
    /// recovery of a member that lost its data, once it was removed); waits for `/livez`.
    /// It counts as a member again after [`Cluster::add_member`].
    pub async fn rejoin_empty(&mut self, id: NodeId) -> anyhow::Result<()> {
        let data_dir = self.data_dir(id);
        let node = self.node_mut(id)?;
        if node.running {
            node.proc.kill9()?;
            node.running = false;
        }
        std::fs::remove_dir_all(&data_dir).or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        if !node.args.iter().any(|a| a == "--join") {
            node.args.push("--join".into());
        }
        node.member = false;
        self.respawn(id)?;
        self.wait_ready(id).await
    }

    /// `POST /v1/cluster/members` for node `id` to the current leader; returns the new
    /// membership once the learner is caught up and promoted.
    pub async fn add_member(&mut self, id: NodeId) -> anyhow::Result<ClusterInfo> {
        let leader = self.leader().await?;
        let addr = self.addr(id).to_owned();
        let slow = self.client(ADD_MEMBER_TIMEOUT);
        let reply = slow
            .add_member(&self.url(leader), id, &addr)
            .await?
            .ok()
            .with_context(|| format!("add node {id} ({addr}) via leader {leader}"))?;
        let info: ClusterInfo = reply.json()?;
        self.node_mut(id)?.member = true;
        Ok(info)
    }

    /// [`Cluster::spawn_joiner`] then [`Cluster::add_member`].
    pub async fn add_node(&mut self, id: NodeId) -> anyhow::Result<ClusterInfo> {
        self.spawn_joiner(id).await?;
        self.add_member(id).await
    }

    /// `DELETE /v1/cluster/members/{id}` via `via`; on success node `id` stops counting as a
    /// member (its process keeps running until [`Cluster::kill9`]).
    pub async fn remove_member(&mut self, via: NodeId, id: NodeId) -> anyhow::Result<ClusterInfo> {
        let slow = self.client(ADD_MEMBER_TIMEOUT);
        let reply = slow
            .remove_member(&self.url(via), id)
            .await?
            .ok()
            .with_context(|| format!("remove node {id} via node {via}"))?;
        let info: ClusterInfo = reply.json()?;
        self.node_mut(id)?.member = false;
        Ok(info)
    }
}

/// Waits until `url/livez` answers 200 (the node serves and its Raft runs), failing at once
/// (with the log tail) if `proc` exits. `/livez`, not `/healthz`: a node restarted without a
/// quorum, or one waiting to be added, is live but has no leader, so it is not healthy yet.
pub async fn wait_healthy(proc: &mut Proc, url: &str) -> anyhow::Result<()> {
    wait_healthy_with(proc, url, &Api::with_timeout(Duration::from_secs(2))).await
}

/// [`wait_healthy`] asking through `quick` (a client that trusts a TLS cluster's CA).
async fn wait_healthy_with(proc: &mut Proc, url: &str, quick: &Api) -> anyhow::Result<()> {
    let health = format!("{url}/livez");
    let end = Instant::now() + START_TIMEOUT;
    loop {
        let last = match quick.get_path(url, "/livez").await {
            Ok(r) if r.status == 200 => return Ok(()),
            Ok(r) => format!("HTTP {}: {}", r.status, r.text()),
            Err(e) => format!("{e:#}"),
        };
        if !proc.is_running() {
            bail!(
                "{} exited before {health} answered\n{}",
                proc.name(),
                proc.log_tail(60)
            );
        }
        if Instant::now() > end {
            bail!(
                "{health} not healthy within {START_TIMEOUT:?}: {last}\n{}",
                proc.log_tail(60)
            );
        }
        // Polling is the readiness mechanism for nodes on fixed ports.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `1=host:port,2=host:port,..` for `--peers`.
/// `n` ids from 1 with a free loopback `host:port` each.
fn loopback_addrs(n: u64) -> Vec<(NodeId, String)> {
    (1..=n)
        .zip(reserve_ports(n as usize))
        .map(|(id, port)| (id, format!("127.0.0.1:{port}")))
        .collect()
}

fn peers_arg(addrs: &[(NodeId, String)]) -> String {
    addrs
        .iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The address in a `listening http=127.0.0.1:PORT` line (tracing may add fields after it).
fn parse_listening(line: &str) -> Option<String> {
    let rest = &line[line.find("listening http=")? + "listening http=".len()..];
    let addr: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != ',')
        .collect();
    (!addr.is_empty()).then_some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_line_parses() {
        assert_eq!(
            parse_listening("listening http=127.0.0.1:4321").as_deref(),
            Some("127.0.0.1:4321")
        );
        assert_eq!(
            parse_listening("2026 INFO pyxis: listening http=127.0.0.1:80 id=1").as_deref(),
            Some("127.0.0.1:80")
        );
        assert_eq!(parse_listening("listening dns=1"), None);
    }

    #[test]
    fn peers_are_comma_separated() {
        assert_eq!(
            peers_arg(&[(1, "a:1".into()), (2, "b:2".into())]),
            "1=a:1,2=b:2"
        );
    }
}
