//! [`Gateway`]: one `dns-gateway` process on loopback, started against a store, with its DNS
//! and HTTP addresses learnt from its `listening dns-udp=ADDR` and `listening http=ADDR` lines.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::{Api, Proc, bin};

/// How long a gateway may take to start serving on a loaded machine (debug build).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `dns-gateway` owned by a test.
#[derive(Debug)]
pub struct Gateway {
    proc: Proc,
    dns: SocketAddr,
    http: String,
    api: Api,
}

impl Gateway {
    /// Starts `dns-gateway --store STORE --listen 127.0.0.1:PORT --http 127.0.0.1:0 extra..`,
    /// logging into `log_dir`, and waits until its mirror has listed the store (`/healthz` 200).
    ///
    /// The DNS port is reserved below the ephemeral range rather than port 0: `dig` sends
    /// each query from an ephemeral UDP port, and when that port happened to be the
    /// gateway's own, dig's connected socket received its own query (seen as a reply with
    /// the query's flags, about once in 4,000 queries).
    pub async fn start(store: &str, log_dir: &Path, extra: &[&str]) -> anyhow::Result<Gateway> {
        let listen = format!("127.0.0.1:{}", crate::ports::reserve_ports(1)[0]);
        let mut args = vec![
            "--store",
            store,
            "--listen",
            listen.as_str(),
            "--http",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        std::fs::create_dir_all(log_dir)?;
        let mut proc = Proc::spawn_in("gateway", &bin("dns-gateway"), &args, log_dir)?;
        let dns = announced(&mut proc, "listening dns-udp=").await?;
        let http = announced(&mut proc, "listening http=").await?;
        let gw = Gateway {
            proc,
            dns: dns
                .parse()
                .with_context(|| format!("dns address {dns:?}"))?,
            http: format!("http://{http}"),
            api: Api::with_timeout(Duration::from_secs(5)),
        };
        crate::eventually(START_TIMEOUT, async || {
            let r = gw.api.get_path(&gw.http, "/healthz").await?;
            anyhow::ensure!(r.status == 200, "healthz {}: {}", r.status, r.text());
            Ok(())
        })
        .await
        .with_context(|| gw.proc.log_tail(40))?;
        Ok(gw)
    }

    /// The DNS address (UDP and TCP).
    pub fn dns(&self) -> SocketAddr {
        self.dns
    }

    /// The HTTP base URL (`http://127.0.0.1:PORT`).
    pub fn http(&self) -> &str {
        &self.http
    }

    /// The process (to check it is alive, or read its log).
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .api
            .get_path(&self.http, "/metrics")
            .await?
            .ok()?
            .text())
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
}

/// The address after `prefix` in the first log line that has it.
async fn announced(proc: &mut Proc, prefix: &str) -> anyhow::Result<String> {
    let line = proc.wait_for_line(prefix, START_TIMEOUT).await?;
    let at = line.find(prefix).map_or(0, |i| i + prefix.len());
    let addr: String = line[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != ',' && *c != '\u{1b}')
        .collect();
    if addr.is_empty() {
        bail!("no address in {line:?}");
    }
    Ok(addr)
}
