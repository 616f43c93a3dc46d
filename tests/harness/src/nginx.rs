//! [`Nginx`]: a real nginx on an ephemeral loopback port, with its own prefix and config in a
//! test directory (no system config is read or touched), proxying `/` to one upstream whose
//! definition a template renders.
//!
//! The main config includes the rendered upstream file; the test's agent writes that file and
//! reloads nginx with SIGHUP to the master (its pid is in `PREFIX/nginx.pid`, which the
//! reload script reads). [`check_command`] is the matching `nginx -t`. Dropping it
//! stops nginx with SIGTERM to the master, which stops the workers too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::{Proc, eventually, reserve_ports};

/// A running nginx owned by a test.
#[derive(Debug)]
pub struct Nginx {
    proc: Proc,
    prefix: PathBuf,
    port: u16,
}

/// `nginx -t` of the config under `prefix`, for a template's `check`.
pub fn check_command(prefix: &Path) -> anyhow::Result<String> {
    Ok(format!(
        "{} -t -q -p {p} -c {p}/nginx.conf -e {p}/check-error.log",
        system_tool("nginx")?.display(),
        p = prefix.display()
    ))
}

/// Where a system tool is: on `PATH`, or in the sbin directories root's `PATH` has.
pub fn system_tool(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{name} is not installed (scripts/test.sh installs it: apt-get install -y {name})")
}

impl Nginx {
    /// The main config for `prefix`, listening on `port`, including `upstream_file` and
    /// proxying to `upstream`.
    pub fn config(prefix: &Path, port: u16, upstream_file: &Path, upstream: &str) -> String {
        format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\npid {p}/nginx.pid;\n\
             error_log {p}/error.log notice;\nevents {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {p}/tmp/body;\n\
             proxy_temp_path {p}/tmp/proxy;\n  fastcgi_temp_path {p}/tmp/fastcgi;\n\
             uwsgi_temp_path {p}/tmp/uwsgi;\n  scgi_temp_path {p}/tmp/scgi;\n\
             include {u};\n  server {{\n    listen 127.0.0.1:{port};\n\
             location / {{ proxy_pass http://{upstream}; proxy_next_upstream error timeout; }}\n  }}\n}}\n",
            p = prefix.display(),
            u = upstream_file.display(),
        )
    }

    /// Writes the config under `prefix` (created) for a free port, without starting nginx:
    /// the agent's `check` can run `nginx -t` on it before the first render. Returns the port.
    pub fn configure(prefix: &Path, upstream_file: &Path, upstream: &str) -> anyhow::Result<u16> {
        std::fs::create_dir_all(prefix.join("tmp"))?;
        let port = reserve_ports(1)[0];
        std::fs::write(
            prefix.join("nginx.conf"),
            Nginx::config(prefix, port, upstream_file, upstream),
        )?;
        Ok(port)
    }

    /// Starts nginx with the config [`Nginx::configure`] wrote; waits until it accepts
    /// connections on `port`.
    pub async fn start(prefix: &Path, port: u16) -> anyhow::Result<Nginx> {
        let bin = system_tool("nginx")?;
        let args = [
            "-p".to_owned(),
            prefix.display().to_string(),
            "-c".to_owned(),
            prefix.join("nginx.conf").display().to_string(),
            "-e".to_owned(),
            prefix.join("error.log").display().to_string(),
        ];
        let proc = Proc::spawn_in("nginx", &bin, &args, prefix)?;
        let mut n = Nginx {
            proc,
            prefix: prefix.to_owned(),
            port,
        };
        let addr = format!("127.0.0.1:{port}");
        let waited = eventually(Duration::from_secs(30), async || {
            if !n.proc.is_running() {
                bail!("nginx exited");
            }
            tokio::net::TcpStream::connect(&addr).await?;
            Ok(())
        })
        .await;
        if let Err(e) = waited {
            let log = std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default();
            bail!("{e:#}\nerror.log:\n{log}\n{}", n.proc.log_tail(20));
        }
        Ok(n)
    }

    /// The URL nginx serves on.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Its prefix directory.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The file the master's pid is in.
    pub fn pid_file(&self) -> PathBuf {
        self.prefix.join("nginx.pid")
    }

    /// Its error log.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("error.log")).unwrap_or_default()
    }

    /// Whether the master still runs.
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.proc.pid())
            && self.proc.is_running()
        {
            // SAFETY: kill(2) on our own unreaped child; SIGTERM makes the master stop its
            // workers before exiting (a SIGKILL would leave them serving).
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let end = std::time::Instant::now() + Duration::from_secs(5);
            while self.proc.is_running() && std::time::Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Sends `count` requests to `url`, one connection each, and returns how many times each
/// response body (a backend's name) came back; failed requests count under `"error"`.
pub async fn tally(url: &str, count: usize) -> std::collections::BTreeMap<String, usize> {
    pyxis_client::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .context("http client");
    let mut out = std::collections::BTreeMap::new();
    let Ok(client) = client else {
        out.insert("error".into(), count);
        return out;
    };
    for _ in 0..count {
        let body = match client.get(url).send().await {
            Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
            Ok(r) => format!("status {}", r.status().as_u16()),
            Err(_) => "error".into(),
        };
        *out.entry(body.trim().to_owned()).or_insert(0) += 1;
    }
    out
}
