//! The command line, `dns-gateway --store ENDPOINTS --listen HOST:PORT [--zone ns.corp]
//! [--ttl 5s] [--http HOST:PORT] [--threads N] [--token TOKEN]`, and the [`Config`] it becomes.
//!
//! Parsing and checking only: nothing here opens a socket (that is `server`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use hickory_proto::rr::Name;

/// Default DNS address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8053";
/// Most instances in one answer.
pub const MAX_ANSWERS: usize = 64;

/// Authoritative DNS for the pyxis zone, answering from a live mirror of the store.
#[derive(Debug, Clone, Parser)]
#[command(name = "dns-gateway", version)]
pub struct Cli {
    /// The store's nodes, comma-separated `host:port` (or `http://host:port`).
    #[arg(long, value_delimiter = ',', required = true)]
    pub store: Vec<String>,
    /// PEM file of the CA that signed the store's certificates, for `https://` endpoints
    /// (`pyxis tls gen` writes `ca.pem`); without it the system's roots are trusted.
    #[arg(long, value_name = "PATH")]
    pub ca: Option<std::path::PathBuf>,
    /// Address of the DNS listeners, UDP and TCP on the same port (port 0: any free port).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// The zone served.
    #[arg(long, default_value = "ns.corp", value_parser = parse_zone)]
    pub zone: Name,
    /// TTL of the SOA, NS and negative answers, and of services without a definition
    /// (`5s`, `1m`, `500ms` rounds down to whole seconds).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Address of the HTTP listener for `/metrics` and `/healthz`; none when absent.
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// UDP worker threads, each with its own socket on the port (default: the CPUs this
    /// process may run on, which respects `taskset`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// ACL token for the store (a `read` token is enough); none while its ACLs are off.
    #[arg(long, env = "PYXIS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// What the gateway runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Store endpoints.
    pub store: Vec<String>,
    /// CA file for `https://` store endpoints.
    pub ca: Option<std::path::PathBuf>,
    /// DNS address (UDP and TCP).
    pub listen: SocketAddr,
    /// The zone's apex, fully qualified and lowercase.
    pub zone: Name,
    /// Zone TTL in seconds.
    pub ttl: u32,
    /// HTTP address, if any.
    pub http: Option<SocketAddr>,
    /// Answer cap.
    pub max_answers: usize,
    /// UDP worker threads.
    pub threads: usize,
    /// ACL token sent to the store.
    pub token: Option<String>,
}

impl From<Cli> for Config {
    fn from(cli: Cli) -> Config {
        Config {
            store: cli.store,
            ca: cli.ca,
            listen: cli.listen,
            zone: cli.zone,
            ttl: u32::try_from(cli.ttl.as_secs()).unwrap_or(u32::MAX),
            http: cli.http,
            max_answers: MAX_ANSWERS,
            threads: cli.threads.map_or_else(
                || std::thread::available_parallelism().map_or(1, |n| n.get()),
                usize::from,
            ),
            token: cli.token,
        }
    }
}

/// A zone name: DNS labels, made fully qualified and lowercase.
pub fn parse_zone(s: &str) -> Result<Name, String> {
    let mut name = Name::from_ascii(s.trim_end_matches('.'))
        .map_err(|e| format!("not a DNS name: {e}"))?
        .to_lowercase();
    if name.is_root() {
        return Err("must not be the root".into());
    }
    name.set_fqdn(true);
    Ok(name)
}

/// `5s`, `250ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 5s, 500ms or 1m"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use ms, s, m or h")),
    };
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_contract() {
        let cli =
            Cli::try_parse_from(["dns-gateway", "--store", "127.0.0.1:1,127.0.0.1:2"]).unwrap();
        let c = Config::from(cli);
        assert_eq!(c.store, ["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.zone.to_string(), "ns.corp.");
        assert_eq!(c.ttl, 5);
        assert_eq!(c.http, None);
        assert!(c.threads >= 1);
    }

    #[test]
    fn flags_are_checked() {
        assert!(Cli::try_parse_from(["dns-gateway"]).is_err());
        let bad = |flag: &str, v: &str| {
            Cli::try_parse_from(["dns-gateway", "--store", "x:1", flag, v])
                .unwrap_err()
                .to_string()
        };
        assert!(bad("--ttl", "5x").contains("unknown unit"));
        assert!(bad("--ttl", "s").contains("not a duration"));
        assert!(bad("--listen", "nope").contains("--listen"));
        assert!(bad("--zone", "a..b").contains("not a DNS name"));
        assert!(bad("--threads", "0").contains("--threads"));
        let cli = Cli::try_parse_from(["dns-gateway", "--store", "x:1", "--threads", "3"]).unwrap();
        assert_eq!(Config::from(cli).threads, 3);
        let cli = Cli::try_parse_from([
            "dns-gateway",
            "--store",
            "x:1",
            "--zone",
            "Corp.Example.",
            "--ttl",
            "2m",
        ])
        .unwrap();
        assert_eq!(cli.zone.to_string(), "corp.example.");
        assert_eq!(Config::from(cli).ttl, 120);
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
    }
}
