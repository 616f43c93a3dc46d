//! The agent's own configuration (`agent.toml`): its fields, defaults and checks.
//!
//! Loading reads the file, parses it with unknown fields refused, and checks every field; an
//! error names the file, the line and the field. Paths in the file are relative to it. Flags
//! that override the file (`--store`, `PYXIS_ENDPOINTS`) are applied by `main`, not here: this
//! library never reads the environment. Service description files are `service_file`'s.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use ns_core::DcName;
use serde::Deserialize;

use crate::render::spec::{Holder, TemplateFile, TemplateSpec};
use crate::toml_span::{
    de_duration, field_of_error, line_of_array_field, line_of_field, line_of_offset,
};

/// The agent's configuration, as `agent.toml` gives it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// This host's name, a DNS label; registered as every instance's `node`. Required.
    pub node: String,
    /// This host's datacenter, a DNS label. Required.
    pub datacenter: String,
    /// Address registered for services whose file gives none.
    pub advertise: IpAddr,
    /// Store endpoints (`host:port`); `PYXIS_ENDPOINTS` or `--store` override them.
    pub store: Vec<String>,
    /// Directory of service description files (`*.toml`), relative to the config file.
    pub services_dir: PathBuf,
    /// Address of the local HTTP API (`127.0.0.1:0` picks a free port).
    pub http: SocketAddr,
    /// TTL of the agent's lease: a dead agent's instances vanish within it.
    #[serde(deserialize_with = "de_duration")]
    pub lease_ttl: Duration,
    /// Wait between deregistering an instance and running its `stop` script.
    #[serde(deserialize_with = "de_duration")]
    pub drain: Duration,
    /// Time limit of the `start`, `stop` and `reload` scripts (health has its own `timeout`).
    #[serde(deserialize_with = "de_duration")]
    pub script_timeout: Duration,
    /// Full rescan of `services_dir` this often, in case a file event was missed.
    #[serde(deserialize_with = "de_duration")]
    pub rescan_interval: Duration,
    /// Shortest time between two writes of the agent's status record (`/ns/agents/NODE`),
    /// which is written only when something in it other than its times, mirror revision and
    /// staleness changed.
    #[serde(deserialize_with = "de_duration")]
    pub status_interval: Duration,
    /// Quiet time after a file event before the directory is rescanned.
    #[serde(deserialize_with = "de_duration")]
    pub debounce: Duration,
    /// File keeping maintenance mode across restarts, relative to the config file.
    pub state_file: PathBuf,
    /// Where alerts about health transitions and failed template reloads go.
    pub alert: AlertConfig,
    /// Config keys under this prefix are followed for the templates' `key()` and `keys()`.
    pub kv_prefix: String,
    /// Templates that belong to no service; each reloads with its own `command`.
    pub templates: Vec<TemplateFile>,
    /// `templates`, checked, with absolute paths (filled by [`AgentConfig::parse`]).
    #[serde(skip)]
    pub template_specs: Vec<TemplateSpec>,
    /// Directory of the config file; paths above are relative to it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Address of the local DNS server, UDP and TCP on the same port (`127.0.0.1:8600`); no
    /// DNS server when absent.
    pub dns: Option<SocketAddr>,
    /// Resolvers (`IP:PORT`) names outside the zone are forwarded to; none: such names are
    /// refused.
    pub upstreams: Vec<SocketAddr>,
    /// Networks whose clients the local DNS answers; others get REFUSED.
    pub dns_allow: Vec<IpNet>,
    /// The zone the local DNS answers from the mirror, as the gateway's `--zone`.
    pub dns_zone: String,
    /// TTL of the zone's SOA, NS and negative answers and of services without a definition,
    /// as the gateway's `--ttl`.
    #[serde(deserialize_with = "de_duration")]
    pub dns_ttl: Duration,
}

/// Alert targets; both optional, both get the same JSON payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    /// Command run by `/bin/sh -c` with the payload on stdin.
    pub command: Option<String>,
    /// URL (`http://`) the payload is POSTed to.
    pub webhook: Option<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            node: String::new(),
            datacenter: String::new(),
            advertise: IpAddr::V4(Ipv4Addr::LOCALHOST),
            store: vec!["127.0.0.1:7070".into()],
            services_dir: PathBuf::from("services.d"),
            http: SocketAddr::from((Ipv4Addr::LOCALHOST, 8500)),
            lease_ttl: Duration::from_secs(10),
            drain: Duration::from_secs(5),
            script_timeout: Duration::from_secs(30),
            rescan_interval: Duration::from_secs(30),
            status_interval: Duration::from_secs(5),
            debounce: Duration::from_millis(250),
            state_file: PathBuf::from("ns-agent.state.json"),
            alert: AlertConfig::default(),
            kv_prefix: "/config/".into(),
            templates: Vec::new(),
            template_specs: Vec::new(),
            base_dir: PathBuf::from("."),
            dns: None,
            upstreams: Vec::new(),
            dns_allow: vec![
                IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)),
                IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
            ],
            dns_zone: "ns.corp".into(),
            dns_ttl: Duration::from_secs(5),
        }
    }
}

/// Why a config file was refused: `file:line: field: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", crate::toml_span::located(path, *line, field, message))]
pub struct ConfigError {
    /// The config file.
    pub path: PathBuf,
    /// The line at fault, when known.
    pub line: Option<usize>,
    /// The field at fault (`lease_ttl`, `alert.webhook`); empty for a file that cannot be read.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl AgentConfig {
    /// Reads and checks the config file at `path`.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            line: None,
            field: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        // Scripts run in their own directories, so every path must be absolute by then.
        let parent = path.parent().unwrap_or(Path::new("."));
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        let base = std::path::absolute(parent).unwrap_or_else(|_| parent.to_owned());
        AgentConfig::parse(&text, path, &base)
    }

    /// Parses and checks config `text` (read from `path`, paths relative to `base_dir`).
    pub fn parse(text: &str, path: &Path, base_dir: &Path) -> Result<AgentConfig, ConfigError> {
        let mut config: AgentConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start);
            ConfigError {
                path: path.to_owned(),
                line: offset.map(|o| line_of_offset(text, o)),
                field: field_of_error(text, offset, e.message()),
                message: e.message().trim().to_owned(),
            }
        })?;
        config.base_dir = if base_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base_dir.to_owned()
        };
        config.check().map_err(|(field, message)| ConfigError {
            path: path.to_owned(),
            line: line_of_field(text, field),
            field: field.to_owned(),
            message,
        })?;
        let mut specs = Vec::with_capacity(config.templates.len());
        for (i, t) in config.templates.iter().enumerate() {
            let spec = t
                .check(&config.base_dir, Holder::Agent)
                .map_err(|(key, message)| ConfigError {
                    path: path.to_owned(),
                    line: line_of_array_field(text, "templates", i, key),
                    field: format!("templates[{i}].{key}"),
                    message,
                })?;
            specs.push(spec);
        }
        config.template_specs = specs;
        Ok(config)
    }

    /// The services directory, resolved against the config file's directory.
    pub fn services_path(&self) -> PathBuf {
        self.base_dir.join(&self.services_dir)
    }

    /// The maintenance state file, resolved against the config file's directory.
    pub fn state_path(&self) -> PathBuf {
        self.base_dir.join(&self.state_file)
    }

    /// Checks the fields serde cannot: names, lists, ranges.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.node.is_empty() {
            return Err(("node", "is required".into()));
        }
        if let Err(m) = check_label(&self.node) {
            return Err(("node", m));
        }
        if self.datacenter.is_empty() {
            return Err(("datacenter", "is required".into()));
        }
        if let Err(e) = DcName::parse(&self.datacenter) {
            return Err(("datacenter", e.to_string()));
        }
        if self.advertise.is_unspecified() || self.advertise.is_multicast() {
            return Err((
                "advertise",
                "must be a unicast address, not 0.0.0.0, :: or multicast".into(),
            ));
        }
        if self.store.is_empty() || self.store.iter().any(|s| s.trim().is_empty()) {
            return Err(("store", "needs at least one non-empty endpoint".into()));
        }
        if self.lease_ttl < Duration::from_millis(500) {
            return Err(("lease_ttl", "must be at least 500ms".into()));
        }
        if self.rescan_interval < Duration::from_millis(100) {
            return Err(("rescan_interval", "must be at least 100ms".into()));
        }
        if self.status_interval < Duration::from_millis(500) {
            return Err(("status_interval", "must be at least 500ms".into()));
        }
        if !self.kv_prefix.starts_with('/') || !self.kv_prefix.ends_with('/') {
            return Err((
                "kv_prefix",
                "must start and end with '/' (\"/config/\")".into(),
            ));
        }
        if self.script_timeout.is_zero() {
            return Err(("script_timeout", "must be more than 0".into()));
        }
        if let Some(url) = &self.alert.webhook
            && !url.starts_with("http://")
        {
            return Err((
                "alert.webhook",
                "must be an http:// URL (no TLS in the agent)".into(),
            ));
        }
        if self
            .alert
            .command
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            return Err(("alert.command", "must not be empty".into()));
        }
        self.check_dns()
    }

    /// Checks the local DNS fields.
    fn check_dns(&self) -> Result<(), (&'static str, String)> {
        if let Err(m) = crate::dnsd::parse_zone(&self.dns_zone) {
            return Err(("dns_zone", m));
        }
        if self.dns_ttl.as_secs() == 0 || self.dns_ttl.as_secs() > u64::from(u32::MAX) {
            return Err(("dns_ttl", "must be 1s or more (whole seconds)".into()));
        }
        if let Some(a) = self.dns
            && self.http.port() != 0
            && a.port() != 0
            && a == self.http
        {
            return Err(("dns", format!("{a} is also the http address")));
        }
        if let Some(u) = self
            .upstreams
            .iter()
            .find(|u| u.port() == 0 || u.ip().is_unspecified())
        {
            return Err((
                "upstreams",
                format!("{u}: needs a unicast address and a port other than 0"),
            ));
        }
        if let Some(a) = self.dns
            && a.port() != 0
            && let Some(u) = self.upstreams.iter().find(|u| **u == a)
        {
            return Err((
                "upstreams",
                format!("{u} is this agent's own dns address: a forwarding loop"),
            ));
        }
        if self.dns.is_some() && self.dns_allow.is_empty() {
            return Err((
                "dns_allow",
                "must list at least one network (\"127.0.0.1/32\"), or no client could ask".into(),
            ));
        }
        Ok(())
    }
}

/// A DNS label: 1..=63 characters of `[a-z0-9-]`, not starting or ending with `-`.
pub(crate) fn check_label(s: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a DNS label (1..=63 of a-z, 0-9 and '-', not at either end)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(text, Path::new("/etc/agent.toml"), Path::new("/etc"))
    }

    #[test]
    fn the_issue_example_parses() {
        let c = parse(
            r#"
node = "host-1"
datacenter = "dc1"
advertise = "127.0.0.1"
store = ["127.0.0.1:7070"]
services_dir = "services.d"
http = "127.0.0.1:8500"
lease_ttl = "10s"
drain = "5s"
[alert]
command = "/usr/local/bin/page-someone"
webhook = "http://127.0.0.1:9000/alerts"
"#,
        )
        .unwrap();
        assert_eq!(c.node, "host-1");
        assert_eq!(c.drain, Duration::from_secs(5));
        assert_eq!(c.services_path(), PathBuf::from("/etc/services.d"));
        assert_eq!(
            c.alert.webhook.as_deref(),
            Some("http://127.0.0.1:9000/alerts")
        );
    }

    #[test]
    fn a_relative_config_path_gives_absolute_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "node = \"h\"\ndatacenter = \"dc1\"\n").unwrap();
        let c = AgentConfig::load(&path).unwrap();
        assert!(c.services_path().is_absolute());
        let rel = AgentConfig::load(Path::new("Cargo.toml")).unwrap_err();
        assert_eq!(rel.path, PathBuf::from("Cargo.toml"));
    }

    #[test]
    fn the_local_dns_is_off_unless_asked_for() {
        let c = parse("node = \"h\"\ndatacenter = \"dc1\"\n").unwrap();
        assert_eq!(c.dns, None);
        assert!(c.upstreams.is_empty());
        assert_eq!(c.dns_zone, "ns.corp");
        assert_eq!(c.dns_ttl, Duration::from_secs(5));
        let allow: Vec<String> = c.dns_allow.iter().map(ToString::to_string).collect();
        assert_eq!(allow, ["127.0.0.0/8", "::1/128"], "loopback only");
        let c = parse(
            r#"
node = "h"
datacenter = "dc1"
dns = "127.0.0.1:8600"
upstreams = ["10.0.0.2:53", "[fd00::53]:5353"]
dns_allow = ["127.0.0.1/32", "10.1.0.0/16"]
dns_zone = "Corp.Example."
dns_ttl = "30s"
"#,
        )
        .unwrap();
        assert_eq!(c.dns.map(|a| a.port()), Some(8600));
        assert_eq!(c.upstreams.len(), 2);
        assert_eq!(c.dns_allow.len(), 2);
        let settings = crate::dnsd::DnsSettings::of(&c).unwrap();
        assert_eq!(settings.zone.to_string(), "corp.example.");
        assert_eq!(settings.ttl, 30);
    }

    #[test]
    fn the_example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agent.toml");
        let c = AgentConfig::load(&path).unwrap();
        assert_eq!(
            c.dns.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:8600")
        );
        assert!(c.services_path().ends_with("examples/services.d"));
    }

    #[test]
    fn defaults_apply() {
        let c = parse("node = \"h\"\ndatacenter = \"dc1\"\n").unwrap();
        assert_eq!(c.lease_ttl, Duration::from_secs(10));
        assert_eq!(c.http.port(), 8500);
        assert_eq!(c.state_path(), PathBuf::from("/etc/ns-agent.state.json"));
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let cases = [
            (
                "node = \"h\"\ndatacenter = \"dc1\"\nleas_ttl = \"1s\"\n",
                3,
                "leas_ttl",
            ),
            (
                "node = \"h\"\ndatacenter = \"dc1\"\nlease_ttl = 5\n",
                3,
                "lease_ttl",
            ),
            (
                "node = \"h\"\ndatacenter = \"dc1\"\ndrain = \"5\"\n",
                3,
                "drain",
            ),
            ("node = \"H_1\"\ndatacenter = \"dc1\"\n", 1, "node"),
            (
                "node = \"h\"\ndatacenter = \"dc1\"\n[alert]\nwebhook = \"ftp://x\"\n",
                4,
                "alert.webhook",
            ),
            (
                "node = \"h\"\ndatacenter = \"dc1\"\n[alert]\npager = \"x\"\n",
                4,
                "alert.pager",
            ),
            (
                "node = \"h\"\ndatacenter = \"dc1\"\nhttp = \"nope\"\n",
                3,
                "http",
            ),
            ("node = \"h\"\ndatacenter = \n", 2, "datacenter"),
            (
                "node = \"h\"\ndatacenter = \"dc1\"\ndns = \"localhost\"\n",
                3,
                "dns",
            ),
            (
                "node = \"h\"\ndatacenter = \"dc1\"\nupstreams = [\"10.0.0.1\"]\n",
                3,
                "upstreams",
            ),
            (
                "node = \"h\"\ndatacenter = \"dc1\"\nupstreams = [\"10.0.0.1:0\"]\n",
                3,
                "upstreams",
            ),
            (
                "node = \"h\"\ndatacenter = \"dc1\"\ndns_allow = [\"127.0.0.1\"]\n",
                3,
                "dns_allow",
            ),
            (
                "node = \"h\"\ndatacenter = \"dc1\"\ndns = \"127.0.0.1:8600\"\ndns_allow = []\n",
                4,
                "dns_allow",
            ),
            (
                "node = \"h\"\ndatacenter = \"dc1\"\ndns = \"127.0.0.1:8600\"\nupstreams = [\"127.0.0.1:8600\"]\n",
                4,
                "upstreams",
            ),
            (
                "node = \"h\"\ndatacenter = \"dc1\"\ndns_zone = \"a..b\"\n",
                3,
                "dns_zone",
            ),
            (
                "node = \"h\"\ndatacenter = \"dc1\"\ndns_ttl = \"0s\"\n",
                3,
                "dns_ttl",
            ),
            (
                "node = \"h\"\ndatacenter = \"dc1\"\nhttp = \"127.0.0.1:8600\"\ndns = \"127.0.0.1:8600\"\n",
                4,
                "dns",
            ),
        ];
        for (text, line, field) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, Some(line), "{text}: {e}");
            assert_eq!(e.field, field, "{text}: {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("/etc/agent.toml:{line}: {field}: ")),
                "{e}"
            );
        }
        let e = parse("datacenter = \"dc1\"\n").unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("node", "is required")
        );
    }
}
