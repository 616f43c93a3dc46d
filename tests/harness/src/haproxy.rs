//! [`Haproxy`]: a real HAProxy in master-worker mode on an ephemeral loopback port, reading a
//! base config (global, defaults, one frontend) and a rendered backend file, both in a test
//! directory.
//!
//! Reloads are SIGUSR2 to the master (pid in `DIR/haproxy.pid`); [`Haproxy::check_command`]
//! is the matching `haproxy -c`. Dropping it stops the master and its workers (SIGTERM).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;

use crate::nginx::system_tool;
use crate::{Proc, eventually, reserve_ports};

/// A running HAProxy owned by a test.
#[derive(Debug)]
pub struct Haproxy {
    proc: Proc,
    dir: PathBuf,
    port: u16,
}

impl Haproxy {
    /// Writes `DIR/haproxy.cfg` (a frontend on a free port sending to `backend`) without
    /// starting HAProxy, so a template's `haproxy -c` can run before the first render.
    /// Returns the port.
    pub fn configure(dir: &Path, backend: &str) -> anyhow::Result<u16> {
        std::fs::create_dir_all(dir)?;
        let port = reserve_ports(1)[0];
        std::fs::write(
            dir.join("haproxy.cfg"),
            format!(
                "global\n    pidfile {d}/haproxy.pid\ndefaults\n    mode http\n    timeout connect 1s\n\
                 \x20   timeout client 5s\n    timeout server 5s\n    retries 0\n\
                 frontend fe\n    bind 127.0.0.1:{port}\n    default_backend {backend}\n",
                d = dir.display()
            ),
        )?;
        Ok(port)
    }

    /// Starts HAProxy with `DIR/haproxy.cfg` and `backend_file`; waits until it accepts
    /// connections on `port`.
    pub async fn start(dir: &Path, backend_file: &Path, port: u16) -> anyhow::Result<Haproxy> {
        let bin = system_tool("haproxy")?;
        let args = [
            "-W".to_owned(),
            "-db".to_owned(),
            "-f".to_owned(),
            dir.join("haproxy.cfg").display().to_string(),
            "-f".to_owned(),
            backend_file.display().to_string(),
            "-p".to_owned(),
            dir.join("haproxy.pid").display().to_string(),
        ];
        let proc = Proc::spawn_in("haproxy", &bin, &args, dir)?;
        let mut h = Haproxy {
            proc,
            dir: dir.to_owned(),
            port,
        };
        let addr = format!("127.0.0.1:{port}");
        let waited = eventually(Duration::from_secs(30), async || {
            if !h.proc.is_running() {
                bail!("haproxy exited");
            }
            tokio::net::TcpStream::connect(&addr).await?;
            Ok(())
        })
        .await;
        if let Err(e) = waited {
            bail!("{e:#}\n{}", h.proc.log_tail(30));
        }
        Ok(h)
    }

    /// The URL HAProxy serves on.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The master's pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("haproxy.pid")
    }

    /// `haproxy -c` of the base config with `backend_file`, for a template's `check`.
    pub fn check_command(&self, backend_file: &Path) -> anyhow::Result<String> {
        Ok(format!(
            "{} -c -q -f {}/haproxy.cfg -f {}",
            system_tool("haproxy")?.display(),
            self.dir.display(),
            backend_file.display()
        ))
    }

    /// Whether the master still runs.
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// Its output so far.
    pub fn log_tail(&self, n: usize) -> String {
        self.proc.log_tail(n)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.proc.pid())
            && self.proc.is_running()
        {
            // SAFETY: kill(2) on our own unreaped child; the master stops its workers.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let end = std::time::Instant::now() + Duration::from_secs(5);
            while self.proc.is_running() && std::time::Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
