//! The host agent (`ns-agent`) against a real store, with real shell scripts: registration only
//! after `pass_after` passes, flap-damped health with alerts, deregistration before `stop`,
//! hung checks killed with their children, lease expiry after kill -9, store outages, bad
//! files, in-place changes and restarts, SIGTERM, maintenance across restarts; its local DNS
//! (`dns`, `dns_forward`), `/v1/resolve` (`resolve`) and callbacks (`callbacks`); its status
//! record in the store, `GET /v1/agents` and `pyxis agents` (`status_record`).
//!
//! Each test writes its services and scripts into its own temporary directory. Scripts record
//! what they did in files the test reads; a service "process" is a `sleep` whose pid is kept so
//! that the test can check it survives (and kill it at the end).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use harness::{
    Agent, Api, Cluster, WebhookSink, bin, eventually, replace_file, run_cmd, write_script,
};
use serde_json::Value;
use tokio::time::Instant;

/// Generous upper bound for anything that should happen "soon" on a loaded machine.
const SOON: Duration = Duration::from_secs(30);

/// A store, a directory for the agent and its services, and the agent (once started).
pub(super) struct Rig {
    cluster: Cluster,
    dir: tempfile::TempDir,
    api: Api,
}

impl Rig {
    async fn new() -> anyhow::Result<Rig> {
        let cluster = Cluster::single(&[]).await?;
        let dir = tempfile::Builder::new().prefix("ns-agent-e2e-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("services.d"))?;
        Ok(Rig {
            cluster,
            dir,
            api: Api::with_timeout(Duration::from_secs(5)),
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn services(&self) -> PathBuf {
        self.path().join("services.d")
    }

    fn store(&self) -> String {
        self.cluster.url(1)
    }

    /// The agent config: short TTL and drain, `extra` lines appended.
    fn config(&self, extra: &str) -> String {
        format!(
            "node = \"host-1\"\ndatacenter = \"dc1\"\nadvertise = \"127.0.0.1\"\n\
             store = [\"{}\"]\nservices_dir = \"services.d\"\nhttp = \"127.0.0.1:0\"\n\
             lease_ttl = \"2s\"\ndrain = \"300ms\"\nrescan_interval = \"1s\"\n{extra}",
            self.cluster.addr(1)
        )
    }

    async fn agent(&self, extra: &str, args: &[&str]) -> anyhow::Result<Agent> {
        Agent::start(self.path(), &self.config(extra), args).await
    }

    /// `GET /v1/services/NAME/instances[?healthy=true]`.
    async fn instances(&self, name: &str, healthy: bool) -> anyhow::Result<Vec<Value>> {
        let q = if healthy { "?healthy=true" } else { "" };
        let v: Value = self
            .api
            .get_json(&self.store(), &format!("/v1/services/{name}/instances{q}"))
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Waits until `name` has exactly one instance (healthy if asked) and returns it.
    async fn wait_one(&self, name: &str, healthy: bool) -> anyhow::Result<Value> {
        eventually(SOON, async || {
            let list = self.instances(name, healthy).await?;
            ensure!(list.len() == 1, "{name}: {list:?}");
            Ok(list[0].clone())
        })
        .await
    }

    async fn wait_none(&self, name: &str, healthy: bool, within: Duration) -> anyhow::Result<()> {
        eventually(within, async || {
            let list = self.instances(name, healthy).await?;
            ensure!(list.is_empty(), "{name} still listed: {list:?}");
            Ok(())
        })
        .await
    }
}

/// Kills the `sleep` processes the services' start scripts left behind.
impl Drop for Rig {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "pid")
                && let Ok(pid) = std::fs::read_to_string(&p)
            {
                let _ = std::process::Command::new("kill")
                    .args(["-9", pid.trim()])
                    .status();
            }
        }
    }
}

/// A service's scripts in `rig/NAME/`: `start` runs a `sleep` as the service (pid in
/// `NAME.pid`) and logs `start PORT` to `NAME.events`; `stop` kills it and logs `stop`;
/// `health` logs `check` to `NAME.checks` and then runs `health_body`.
fn scripts(rig: &Rig, name: &str, health_body: &str) -> anyhow::Result<()> {
    let d = rig.path();
    let sdir = d.join(name);
    write_script(
        &sdir.join("start.sh"),
        &format!(
            "echo \"start $NS_PORT $NS_SERVICE $NS_NODE $NS_DATACENTER\" >> {d}/{name}.events\n\
             sleep 600 >/dev/null 2>&1 &\necho $! > {d}/{name}.pid",
            d = d.display()
        ),
    )?;
    write_script(
        &sdir.join("stop.sh"),
        &format!(
            "kill $(cat {d}/{name}.pid) 2>/dev/null; echo stop >> {d}/{name}.events",
            d = d.display()
        ),
    )?;
    write_script(
        &sdir.join("health.sh"),
        &format!("echo check >> {}/{name}.checks\n{health_body}", d.display()),
    )?;
    Ok(())
}

/// A description file for `name` with the rig's scripts.
fn service_toml(name: &str, port: u16, weight: u16, health: &str) -> String {
    format!(
        "name = \"{name}\"\nport = {port}\nweight = {weight}\ntags = [\"e2e\"]\n\
         [health]\n{health}\n[scripts]\nstart = \"../{name}/start.sh\"\n\
         stop = \"../{name}/stop.sh\"\nhealth = \"../{name}/health.sh\"\n"
    )
}

const FAST: &str = "interval = \"200ms\"\ntimeout = \"150ms\"\nfail_after = 3\npass_after = 2";

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn pid_alive(path: &Path) -> bool {
    let Ok(pid) = std::fs::read_to_string(path) else {
        return false;
    };
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
    // A zombie no longer runs.
    stat.is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

mod callbacks;
mod changes;
mod dns;
mod dns_forward;
mod faults;
mod health;
mod ops;
mod resolve;
mod status_record;
mod templates;
mod templates_more;
