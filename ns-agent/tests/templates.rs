//! Every template in `templates/`, rendered against a known catalog and checked by its own
//! tool: `nginx -t`, `haproxy -c`, `python3 -m json.tool` (installed by `scripts/test.sh`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use ns_agent::kv::KvData;
use ns_agent::render::Compiled;
use ns_agent::render::deps::Inputs;
use ns_agent::render::functions::Who;
use ns_core::{
    DcName, Health, Instance, InstanceId, ServiceName, Snapshot, TrafficPolicy, VersionGroup,
};

fn template(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../templates")
        .join(name)
}

fn instance(addr: &str, port: u16, dc: &str, version: &str, status: Health) -> Instance {
    Instance {
        address: addr.parse().unwrap(),
        port,
        datacenter: DcName::parse(dc).unwrap(),
        version: version.into(),
        weight: 100,
        tags: vec!["http".into()],
        meta: BTreeMap::new(),
        status,
        node: "host-1".into(),
    }
}

/// `web`: two v1 and one v2 in dc1 (gray 90/10), one critical, one in dc2, one IPv6;
/// `search.hotel`: one instance; `empty`: only a critical instance.
fn inputs() -> Inputs {
    let mut snap = Snapshot {
        revision: 7,
        ..Snapshot::default()
    };
    let web = snap
        .catalog
        .service_mut(&ServiceName::parse("web").unwrap());
    for (id, i) in [
        (
            "web-1",
            instance("10.0.0.1", 8080, "dc1", "v1", Health::Passing),
        ),
        (
            "web-2",
            instance("10.0.0.2", 8080, "dc1", "v1", Health::Warning),
        ),
        (
            "web-3",
            instance("10.0.0.3", 8080, "dc1", "v2", Health::Passing),
        ),
        (
            "web-4",
            instance("10.0.0.4", 8080, "dc1", "v1", Health::Critical),
        ),
        (
            "web-5",
            instance("10.1.0.5", 8080, "dc2", "v1", Health::Passing),
        ),
        (
            "web-6",
            instance("fd00::6", 8080, "dc2", "v1", Health::Passing),
        ),
    ] {
        web.instances.insert(InstanceId::parse(id).unwrap(), i);
    }
    web.traffic = Some(TrafficPolicy {
        prefer_same_dc: true,
        groups: vec![
            VersionGroup {
                version: "v1".into(),
                weight: 90,
            },
            VersionGroup {
                version: "v2".into(),
                weight: 10,
            },
        ],
        shifts: Vec::new(),
        overrides: BTreeMap::new(),
        expires_at: None,
    });
    snap.catalog
        .service_mut(&ServiceName::parse("search.hotel").unwrap())
        .instances
        .insert(
            InstanceId::parse("s-1").unwrap(),
            instance("10.0.0.9", 9000, "dc1", "", Health::Passing),
        );
    snap.catalog
        .service_mut(&ServiceName::parse("empty").unwrap())
        .instances
        .insert(
            InstanceId::parse("e-1").unwrap(),
            instance("10.0.0.8", 9000, "dc1", "", Health::Critical),
        );
    Inputs {
        snap: Arc::new(snap),
        kv: Arc::new(KvData {
            listed: true,
            ..KvData::default()
        }),
    }
}

fn who() -> Who {
    Who {
        node: "host-1".into(),
        datacenter: DcName::parse("dc1").unwrap(),
        kv_prefix: "/config/".into(),
    }
}

/// Renders template `name`, with `edit` applied to its source first (to set its variables).
fn render(name: &str, edit: impl Fn(String) -> String) -> String {
    let path = template(name);
    let text = edit(std::fs::read_to_string(&path).unwrap());
    let compiled = Compiled::parse(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    let (out, _) = compiled.render(&inputs(), &who(), 1_000);
    out.unwrap_or_else(|e| panic!("{e}"))
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `nginx -t` of a minimal configuration that includes `upstream` and proxies to it.
fn nginx_t(upstream: &str, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("upstream.conf"), upstream).unwrap();
    let conf = format!(
        "pid {0}/nginx.pid;\nerror_log {0}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  include {0}/upstream.conf;\n  server {{ listen 127.0.0.1:1; location / {{ proxy_pass http://{name}; }} }}\n}}\n",
        dir.path().display()
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let (ok, out) = run(Command::new("nginx")
        .arg("-t")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .arg("-e")
        .arg(dir.path().join("error.log")));
    assert!(ok, "nginx -t refused:\n{upstream}\n{out}");
}

#[test]
fn nginx_upstream_follows_route() {
    let out = render("nginx-upstream.conf.tera", |t| t);
    let servers: Vec<&str> = out.lines().filter(|l| l.contains("server ")).collect();
    assert_eq!(servers.len(), 5, "{out}");
    assert!(out.contains("server 10.0.0.1:8080 weight=45;"), "{out}");
    assert!(out.contains("server 10.0.0.2:8080 weight=45;"), "{out}");
    assert!(out.contains("server 10.0.0.3:8080 weight=10;"), "{out}");
    assert!(
        out.contains("server 10.1.0.5:8080 weight=50 backup;"),
        "{out}"
    );
    assert!(
        out.contains("server [fd00::6]:8080 weight=50 backup;"),
        "{out}"
    );
    assert!(!out.contains("10.0.0.4"), "critical left out:\n{out}");
    nginx_t(&out, "web");

    let down = render("nginx-upstream.conf.tera", |t| {
        t.replace("mark_down = false", "mark_down = true")
    });
    assert!(down.contains("server 10.0.0.4:8080 down;"), "{down}");
    nginx_t(&down, "web");

    let empty = render("nginx-upstream.conf.tera", |t| {
        t.replace("name = \"web\"", "name = \"empty\"")
    });
    assert!(empty.contains("server 127.0.0.1:1 down;"), "{empty}");
    nginx_t(&empty, "empty");

    let dotted = render("nginx-upstream.conf.tera", |t| {
        t.replace("name = \"web\"", "name = \"search.hotel\"")
    });
    assert!(dotted.contains("upstream search_hotel {"), "{dotted}");
    nginx_t(&dotted, "search_hotel");
}

#[test]
fn haproxy_backend_passes_haproxy_c() {
    let out = render("haproxy-backend.cfg.tera", |t| {
        t.replace("mark_down = false", "mark_down = true")
    });
    assert!(
        out.contains("server web-3 10.0.0.3:8080 weight 10\n"),
        "{out}"
    );
    assert!(
        out.contains("server web-5 10.1.0.5:8080 weight 50 backup"),
        "{out}"
    );
    assert!(out.contains("server web-4 10.0.0.4:8080 disabled"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("haproxy.cfg");
    std::fs::write(
        &base,
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\nfrontend fe\n    bind 127.0.0.1:1\n    default_backend web\n",
    )
    .unwrap();
    let backend = dir.path().join("web.cfg");
    std::fs::write(&backend, &out).unwrap();
    let (ok, text) = run(Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&base)
        .arg("-f")
        .arg(&backend));
    assert!(ok, "haproxy -c refused:\n{out}\n{text}");
}

fn json_tool(text: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.json");
    std::fs::write(&path, text).unwrap();
    let (ok, out) = run(Command::new("python3")
        .arg("-m")
        .arg("json.tool")
        .arg(&path));
    assert!(ok, "python3 -m json.tool refused:\n{text}\n{out}");
    serde_json::from_str(text).unwrap()
}

#[test]
fn prometheus_file_sd_lists_every_instance() {
    let out = render("prometheus-file-sd.json.tera", |t| t);
    let v = json_tool(&out);
    let groups = v.as_array().unwrap();
    assert_eq!(groups.len(), 8, "{out}");
    let web4 = groups
        .iter()
        .find(|g| g["labels"]["instance"] == "web-4")
        .unwrap();
    assert_eq!(web4["targets"][0], "10.0.0.4:8080");
    assert_eq!(web4["labels"]["status"], "critical");
    assert_eq!(web4["labels"]["service"], "web");
}

#[test]
fn json_dump_and_hosts() {
    let out = render("services.json.tera", |t| t);
    let v = json_tool(&out);
    assert_eq!(v["datacenter"], "dc1");
    assert_eq!(
        v["services"]["web"]["instances"].as_array().unwrap().len(),
        6
    );
    assert_eq!(v["services"]["web"]["route"].as_array().unwrap().len(), 5);
    assert_eq!(v["services"]["empty"]["route"].as_array().unwrap().len(), 0);

    let hosts = render("hosts.tera", |t| t);
    assert!(
        hosts.contains("10.0.0.9\ts-1.search.hotel.ns.corp search.hotel.ns.corp"),
        "{hosts}"
    );
    assert!(
        hosts.contains("10.0.0.2\tweb-2.web.ns.corp web.ns.corp"),
        "{hosts}"
    );
    assert!(!hosts.contains("10.0.0.4"), "{hosts}");
    for line in hosts.lines().filter(|l| !l.starts_with('#')) {
        let mut f = line.split_whitespace();
        let addr = f.next().unwrap();
        assert!(addr.parse::<std::net::IpAddr>().is_ok(), "{line}");
        assert!(f.count() >= 1, "{line}");
    }
}
