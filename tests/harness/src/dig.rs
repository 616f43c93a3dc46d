//! Running the real `dig` against a DNS server and reading its answer: rcode, flags, the
//! records of each section and the echoed client subnet. Batch mode (`dig -f FILE`) asks many
//! questions with one process, for tests that need thousands of queries.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::run_cmd;

/// One dig answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigAnswer {
    /// `NOERROR`, `NXDOMAIN`, `REFUSED`, ...
    pub status: String,
    /// Header flags: `qr`, `aa`, `tc`, `rd`, ...
    pub flags: Vec<String>,
    /// Answer records, as `name ttl class type rdata` with single spaces.
    pub answer: Vec<String>,
    /// Authority records.
    pub authority: Vec<String>,
    /// Additional records (the OPT pseudo-record is not among them).
    pub additional: Vec<String>,
    /// The echoed EDNS client subnet (`addr/source/scope`), if any.
    pub client_subnet: Option<String>,
    /// Whether the reply had an OPT record.
    pub edns: bool,
    /// The UDP payload size the reply's OPT offers.
    pub udp: Option<u16>,
}

impl DigAnswer {
    /// Whether the header flags include `flag`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// The rdata (last field group after the type) of the answer records of `rtype`, sorted.
    pub fn rdata(&self, rtype: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .answer
            .iter()
            .filter_map(|r| {
                let f: Vec<&str> = r.split(' ').collect();
                (f.len() >= 5 && f[3] == rtype).then(|| f[4..].join(" "))
            })
            .collect();
        v.sort();
        v
    }
}

/// `dig @server -p port NAME TYPE args..` (one try, 5 s timeout), parsed.
pub async fn dig(
    server: SocketAddr,
    name: &str,
    rtype: &str,
    args: &[&str],
) -> anyhow::Result<DigAnswer> {
    let mut all = vec![
        format!("@{}", server.ip()),
        "-p".into(),
        server.port().to_string(),
        name.into(),
        rtype.into(),
        "+tries=1".into(),
        "+time=5".into(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    let out = run_cmd(&dig_path()?, &all, Duration::from_secs(30)).await?;
    let answers = parse(&out.stdout);
    match answers.into_iter().next() {
        Some(a) => Ok(a),
        None => bail!(
            "dig {all:?} gave no answer:\n{}\n{}",
            out.stdout,
            out.stderr
        ),
    }
}

/// Asks every line of `queries` (`NAME TYPE [+options]`) with one `dig -f` process and returns
/// the answers in order.
pub async fn dig_batch(server: SocketAddr, queries: &[String]) -> anyhow::Result<Vec<DigAnswer>> {
    let mut file = tempfile::NamedTempFile::new()?;
    std::io::Write::write_all(&mut file, queries.join("\n").as_bytes())?;
    let args = vec![
        format!("@{}", server.ip()),
        "-p".into(),
        server.port().to_string(),
        "+tries=1".into(),
        "+time=5".into(),
        "-f".into(),
        file.path().display().to_string(),
    ];
    let out = run_cmd(&dig_path()?, &args, Duration::from_secs(300))
        .await
        .context("dig -f")?;
    let answers = parse(&out.stdout);
    if answers.len() != queries.len() {
        bail!(
            "dig -f answered {} of {} queries; stderr: {}",
            answers.len(),
            queries.len(),
            out.stderr
        );
    }
    Ok(answers)
}

/// `dig` on `$PATH` (Debian's `bind9-dnsutils`; `scripts/test.sh` installs it).
fn dig_path() -> anyhow::Result<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("dig"))
        .find(|p| p.is_file())
        .context("dig not found on $PATH: install bind9-dnsutils")
}

/// Every answer in dig's output, split at its `->>HEADER<<-` lines.
fn parse(text: &str) -> Vec<DigAnswer> {
    let mut out: Vec<DigAnswer> = Vec::new();
    let mut section = "";
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.split_once("status: ").map(|(_, r)| r) {
            out.push(DigAnswer {
                status: rest.split(',').next().unwrap_or("").to_owned(),
                ..DigAnswer::default()
            });
            section = "";
            continue;
        }
        let Some(cur) = out.last_mut() else {
            continue;
        };
        if let Some(rest) = line.strip_prefix(";; flags: ") {
            let flags = rest.split(';').next().unwrap_or("");
            cur.flags = flags.split_whitespace().map(str::to_owned).collect();
        } else if line.starts_with(";; OPT PSEUDOSECTION") {
            cur.edns = true;
        } else if let Some(rest) = line.strip_prefix("; EDNS: ") {
            cur.udp = rest
                .rsplit_once("udp: ")
                .and_then(|(_, n)| n.trim().parse().ok());
        } else if let Some(rest) = line.strip_prefix("; CLIENT-SUBNET: ") {
            cur.client_subnet = Some(rest.trim().to_owned());
        } else if line.starts_with(";; ANSWER SECTION") {
            section = "answer";
        } else if line.starts_with(";; AUTHORITY SECTION") {
            section = "authority";
        } else if line.starts_with(";; ADDITIONAL SECTION") {
            section = "additional";
        } else if line.is_empty() || line.starts_with(';') {
            section = "";
        } else {
            let record = line.split_whitespace().collect::<Vec<_>>().join(" ");
            match section {
                "answer" => cur.answer.push(record),
                "authority" => cur.authority.push(record),
                "additional" => cur.additional.push(record),
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dig_output() {
        let text = "\
; <<>> DiG 9.18 <<>> web.ns.corp
;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1
;; flags: qr aa tc; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 2

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags:; udp: 1232
; CLIENT-SUBNET: 10.2.9.0/24/16
;; QUESTION SECTION:
;web.ns.corp.\t\t\tIN\tA

;; ANSWER SECTION:
web.ns.corp.\t\t5\tIN\tA\t10.0.1.5

;; ADDITIONAL SECTION:
x.addr.ns.corp.\t5\tIN\tA\t10.0.1.5

;; Query time: 0 msec
;; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 2
;; flags: qr aa; QUERY: 1, ANSWER: 0, AUTHORITY: 1, ADDITIONAL: 0

;; AUTHORITY SECTION:
ns.corp.\t\t5\tIN\tSOA\tns.corp. hostmaster.ns.corp. 3 3600 600 86400 5
";
        let a = parse(text);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].status, "NOERROR");
        assert!(a[0].has_flag("tc") && a[0].has_flag("aa") && a[0].edns);
        assert_eq!(a[0].udp, Some(1232));
        assert_eq!(a[0].rdata("A"), ["10.0.1.5"]);
        assert_eq!(a[0].additional, ["x.addr.ns.corp. 5 IN A 10.0.1.5"]);
        assert_eq!(a[0].client_subnet.as_deref(), Some("10.2.9.0/24/16"));
        assert_eq!(a[1].status, "NXDOMAIN");
        assert!(!a[1].edns);
        assert_eq!(a[1].authority.len(), 1);
    }
}
