//! [`Agent`]: one `ns-agent` process on loopback, with its config and services directory in a
//! test-owned directory; and [`WebhookSink`], a tiny HTTP server that records alert POSTs.
//!
//! The agent is started with `http = "127.0.0.1:0"` (or whatever the test's config says) and
//! its API address is learnt from its `listening http=ADDR` line, as for `pyxis`; with `dns`
//! in its config, the local DNS address from its `listening dns-udp=ADDR` line. Writing the
//! services and scripts is the test's business ([`write_script`] makes one executable).
//!
//! A `dns` address with port 0 in the config is replaced, before the agent starts, by a port
//! reserved below the ephemeral range, as for the gateway: `dig` sends each query from an
//! ephemeral UDP port, and when that port happened to be the server's own, dig's connected
//! socket received its own query instead of the reply.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{Api, Proc, bin};

/// How long an agent may take to start serving on a loaded machine (debug build).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `ns-agent` owned by a test.
#[derive(Debug)]
pub struct Agent {
    proc: Proc,
    args: Vec<String>,
    dir: PathBuf,
    url: String,
    dns: Option<SocketAddr>,
    api: Api,
}

impl Agent {
    /// Writes `config` to `dir/agent.toml` and starts `ns-agent --config dir/agent.toml
    /// extra..`, waiting for its API to answer.
    pub async fn start(dir: &Path, config: &str, extra: &[&str]) -> anyhow::Result<Agent> {
        let path = dir.join("agent.toml");
        let config = reserve_dns_port(config);
        std::fs::write(&path, &config).with_context(|| format!("write {}", path.display()))?;
        std::fs::create_dir_all(dir.join("logs"))?;
        let mut args = vec!["--config".to_owned(), path.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let proc = Proc::spawn_in("agent", &bin("ns-agent"), &args, &dir.join("logs"))?;
        let mut agent = Agent {
            proc,
            args,
            dir: dir.to_owned(),
            url: String::new(),
            dns: None,
            api: Api::with_timeout(Duration::from_secs(5)),
        };
        agent.wait_listening().await?;
        Ok(agent)
    }

    async fn wait_listening(&mut self) -> anyhow::Result<()> {
        let line = self
            .proc
            .wait_for_line("listening http=", START_TIMEOUT)
            .await?;
        let rest = &line[line.find("listening http=").unwrap_or(0) + "listening http=".len()..];
        let addr: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"' && *c != ',' && *c != '\u{1b}')
            .collect();
        if addr.is_empty() {
            bail!("no address in {line:?}");
        }
        self.url = format!("http://{addr}");
        // The DNS listener is bound before the HTTP one, so its line is already there if any.
        self.dns = match self
            .proc
            .wait_for_line("listening dns-udp=", Duration::ZERO)
            .await
        {
            Ok(line) => {
                let at = line.find("listening dns-udp=").unwrap_or(0) + "listening dns-udp=".len();
                let addr: String = line[at..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '"' && *c != ',' && *c != '\u{1b}')
                    .collect();
                Some(
                    addr.parse()
                        .with_context(|| format!("dns address in {line:?}"))?,
                )
            }
            Err(_) => None,
        };
        Ok(())
    }

    /// The local DNS address (UDP and TCP); an error if the agent runs none.
    pub fn dns(&self) -> anyhow::Result<SocketAddr> {
        self.dns.with_context(|| {
            format!(
                "the agent announced no dns listener\n{}",
                self.proc.log_tail(20)
            )
        })
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self.api.get_path(&self.url, "/metrics").await?.ok()?.text())
    }

    /// One sample of `/metrics`: the value of the line starting with `series` (name and
    /// labels exactly as rendered), if present.
    pub async fn metric(&self, series: &str) -> anyhow::Result<Option<f64>> {
        let text = self.metrics().await?;
        Ok(text.lines().find_map(|l| {
            let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
            rest.trim().parse().ok()
        }))
    }

    /// The agent's API base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The directory holding `agent.toml` (and whatever the test put next to it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The agent process.
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// `GET /v1/agent/status` as JSON.
    pub async fn status(&self) -> anyhow::Result<serde_json::Value> {
        self.api.get_json(&self.url, "/v1/agent/status").await
    }

    /// The status entry of service `name`; an error if it has none.
    pub async fn service(&self, name: &str) -> anyhow::Result<serde_json::Value> {
        let status = self.status().await?;
        let list = status["services"].as_array().cloned().unwrap_or_default();
        list.into_iter()
            .find(|s| s["name"] == name)
            .with_context(|| format!("no service {name} in the status: {status}"))
    }

    /// Sends `signal` (`TERM`, `HUP`, ..) to the agent with `kill -SIGNAL PID`.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.proc.pid().to_string())
            .status()
            .context("run kill")?;
        if !status.success() {
            bail!("kill -{signal} {} failed: {status}", self.proc.pid());
        }
        Ok(())
    }

    /// Waits until the agent process has exited.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let end = tokio::time::Instant::now() + timeout;
        while self.proc.is_running() {
            if tokio::time::Instant::now() > end {
                bail!(
                    "agent still running after {timeout:?}\n{}",
                    self.proc.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Kills the agent with SIGKILL (its services keep running: they are in their own
    /// process groups).
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        self.proc.kill9()
    }

    /// Starts the agent again with the same arguments (its API address may change).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.proc.is_running() {
            self.proc.kill9()?;
        }
        self.proc = Proc::spawn_in(
            "agent",
            &bin("ns-agent"),
            &self.args,
            &self.dir.join("logs"),
        )?;
        self.wait_listening().await
    }
}

/// `config` with a `dns = "HOST:0"` line's port replaced by a reserved one (the port stays
/// the same across restarts, which reread the written config).
fn reserve_dns_port(config: &str) -> String {
    let mut out = String::with_capacity(config.len());
    for line in config.split_inclusive('\n') {
        let value = line
            .trim_start()
            .strip_prefix("dns")
            .map(str::trim_start)
            .and_then(|rest| rest.strip_prefix('='))
            .map(str::trim);
        match value.and_then(|v| v.strip_prefix('"')?.strip_suffix(":0\"")) {
            Some(host) => {
                let port = crate::ports::reserve_ports(1)[0];
                let end = if line.ends_with('\n') { "\n" } else { "" };
                out.push_str(&format!("dns = \"{host}:{port}\"{end}"));
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Writes an executable `#!/bin/sh` script at `path`.
pub fn write_script(path: &Path, body: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, format!("#!/bin/sh\n{body}\n"))
        .with_context(|| format!("write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Replaces `path` the way editors save: write a temp file next to it, then rename it over.
pub fn replace_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.swp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// An HTTP server on loopback that answers 200 to every request and keeps the bodies.
#[derive(Debug, Clone)]
pub struct WebhookSink {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl WebhookSink {
    /// Starts the sink on an ephemeral port; it runs until the test's runtime ends.
    pub async fn start() -> anyhow::Result<WebhookSink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/alerts", listener.local_addr()?);
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let keep = bodies.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let keep = keep.clone();
                tokio::spawn(async move {
                    if let Some(body) = read_request(&mut sock).await {
                        keep.lock().unwrap_or_else(|p| p.into_inner()).push(body);
                    }
                    let _ = sock
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        Ok(WebhookSink { url, bodies })
    }

    /// The URL to configure as the webhook.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every body received so far.
    pub fn bodies(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Reads one request (headers, then `content-length` bytes of body); `None` on a bad one.
async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let end = (head_end + len).min(buf.len());
    Some(String::from_utf8_lossy(&buf[head_end..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dns_port_of_zero_is_replaced() {
        let config = "node = \"n1\"\ndns = \"127.0.0.1:0\"\ndns_allow = [\"127.0.0.1:0\"]\n";
        let out = reserve_dns_port(config);
        let dns = out.lines().nth(1).unwrap();
        let port: u16 = dns
            .strip_prefix("dns = \"127.0.0.1:")
            .and_then(|p| p.strip_suffix('"'))
            .unwrap()
            .parse()
            .unwrap();
        assert!(port > 0);
        assert!(out.starts_with("node = \"n1\"\n"));
        assert!(out.ends_with("dns_allow = [\"127.0.0.1:0\"]\n"), "{out}");
        let fixed = "dns = \"127.0.0.1:8600\"\n";
        assert_eq!(reserve_dns_port(fixed), fixed);
    }
}
