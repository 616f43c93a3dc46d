//! The template functions and filters over a known catalog, what they record, and located
//! errors.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ns_core::{
    DcName, Health, Instance, InstanceId, ServiceName, Snapshot, TrafficPolicy, VersionGroup,
};

use super::*;
use crate::kv::KvData;

fn instance(dc: &str, version: &str, status: Health, port: u16, tags: &[&str]) -> Instance {
    Instance {
        address: "10.0.0.1".parse().unwrap(),
        port,
        datacenter: DcName::parse(dc).unwrap(),
        version: version.into(),
        weight: 100,
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        meta: BTreeMap::new(),
        status,
        node: "host-1".into(),
    }
}

/// `web`: a (dc1 v1), b (dc1 v2, critical), c (dc2 v1); `db`: d (dc1).
fn inputs() -> Inputs {
    let mut snap = Snapshot {
        revision: 42,
        ..Snapshot::default()
    };
    let web = ServiceName::parse("web").unwrap();
    let entry = snap.catalog.service_mut(&web);
    let rows = [
        (
            "b",
            instance("dc1", "v2", Health::Critical, 8002, &["canary"]),
        ),
        ("a", instance("dc1", "v1", Health::Passing, 8001, &["main"])),
        ("c", instance("dc2", "v1", Health::Warning, 8003, &["main"])),
    ];
    for (id, i) in rows {
        entry.instances.insert(InstanceId::parse(id).unwrap(), i);
    }
    let db = ServiceName::parse("db").unwrap();
    snap.catalog.service_mut(&db).instances.insert(
        InstanceId::parse("d").unwrap(),
        instance("dc1", "", Health::Passing, 5432, &[]),
    );
    let mut kv = KvData {
        listed: true,
        revision: 40,
        ..KvData::default()
    };
    kv.entries.insert("/config/web/timeout".into(), "5s".into());
    kv.entries.insert("/config/web/retries".into(), "3".into());
    Inputs {
        snap: Arc::new(snap),
        kv: Arc::new(kv),
    }
}

fn who() -> Who {
    Who {
        node: "host-1".into(),
        datacenter: DcName::parse("dc1").unwrap(),
        kv_prefix: "/config/".into(),
    }
}

/// What a render gave: the text, and what it read.
#[derive(Debug)]
struct Out {
    text: String,
    deps: Deps,
}

fn render(text: &str, inputs: &Inputs) -> Result<Out, Box<(RenderError, Deps)>> {
    let c = Compiled::parse(Path::new("/t/test.tera"), text)
        .map_err(|e| Box::new((e, Deps::default())))?;
    match c.render(inputs, &who(), 1_000) {
        (Ok(text), deps) => Ok(Out { text, deps }),
        (Err(e), deps) => Err(Box::new((e, deps))),
    }
}

fn ok(text: &str) -> Out {
    render(text, &inputs()).unwrap_or_else(|b| panic!("{}", b.0))
}

#[test]
fn service_lists_instances_sorted_by_id_with_filters() {
    let r =
        ok("{% for i in service(name='web') %}{{ i.id }}:{{ i.port }}:{{ i.status }} {% endfor %}");
    assert_eq!(r.text, "a:8001:passing b:8002:critical c:8003:warning ");
    let r = ok("{% for i in service(name='web', healthy=true, dc='dc1') %}{{ i.id }}{% endfor %}");
    assert_eq!(r.text, "a");
    let r = ok("{% for i in service(name='web', tag='main') %}{{ i.id }}{% endfor %}");
    assert_eq!(r.text, "ac");
    assert_eq!(r.deps.services.len(), 1);
    assert!(!r.deps.service_names && !r.deps.datacenters);
    let r = ok("{{ service(name='nope') | length }}");
    assert_eq!(r.text, "0");
}

#[test]
fn route_weighs_and_flags_backups() {
    let r = ok(
        "{% for i in route(name='web') %}{{ i.id }} w={{ i.weight }} b={{ i.backup }};{% endfor %}",
    );
    assert_eq!(r.text, "a w=100 b=false;c w=100 b=true;");
    assert!(r.deps.datacenters);
    let r = ok("{% for i in route(name='web', dc='dc2') %}{{ i.id }}{{ i.backup }};{% endfor %}");
    assert_eq!(
        r.text,
        "afalse;ctrue;"
            .replace("afalse", "atrue")
            .replace("ctrue;", "cfalse;")
    );
}

#[test]
fn route_follows_gray_weights() {
    let mut inputs = inputs();
    let mut snap = (*inputs.snap).clone();
    let web = ServiceName::parse("web").unwrap();
    let e = snap.catalog.service_mut(&web);
    e.instances.insert(
        InstanceId::parse("b").unwrap(),
        instance("dc1", "v2", Health::Passing, 8002, &[]),
    );
    e.traffic = Some(TrafficPolicy {
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
        expires_at: Some(5_000),
    });
    inputs.snap = Arc::new(snap);
    let r = render(
        "{% for i in route(name='web') | by_dc(dc='dc1') %}{{ i.id }}={{ i.weight }} {% endfor %}",
        &inputs,
    )
    .unwrap_or_else(|b| panic!("{}", b.0));
    assert_eq!(r.text, "a=90 b=10 ");
    assert_eq!(r.deps.expires_at, Some(5_000));
}

#[test]
fn services_keys_node_and_filters() {
    let r = ok("{{ services() | join(sep=',') }}");
    assert_eq!(r.text, "db,web");
    assert!(r.deps.service_names);
    let r = ok("{{ key(path='/config/web/timeout') }}|{{ key(path='/config/none') is none }}");
    assert_eq!(r.text, "5s|true");
    assert_eq!(r.deps.keys.len(), 2);
    let r = ok("{% for k in keys(prefix='/config/web/') %}{{ k.key }}={{ k.value }};{% endfor %}");
    assert_eq!(r.text, "/config/web/retries=3;/config/web/timeout=5s;");
    let r = ok("{% set n = node() %}{{ n.node }}@{{ n.datacenter }}");
    assert_eq!(r.text, "host-1@dc1");
    let r = ok(
        "{% for i in service(name='web') | by_version(version='v1') | by_tag(tag='main') %}{{ i.id }}{% endfor %}",
    );
    assert_eq!(r.text, "ac");
    let r = ok("{{ service(name='db') | json }}");
    let v: serde_json::Value = serde_json::from_str(&r.text).unwrap();
    assert_eq!(v[0]["address"], "10.0.0.1");
    assert_eq!(v[0]["port"], 5432);
}

#[test]
fn errors_carry_line_and_column() {
    let (e, _) = *render("line one\n  {{ service(name='web' }}\n", &inputs()).unwrap_err();
    assert_eq!(e.file, Path::new("/t/test.tera"));
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.column.is_some(), "{e}");
    assert!(e.to_string().starts_with("/t/test.tera:2:"), "{e}");
    // A render error (a function refusing its argument) is located too, and keeps the deps
    // read before it.
    let (e, deps) = *render(
        "{{ service(name='web') | length }}\n{{ key(path='/etc/passwd') }}",
        &inputs(),
    )
    .unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.message.contains("outside the config prefix"), "{e}");
    assert_eq!(deps.services.len(), 1);
    let (e, _) = *render("{{ service(name='Bad Name') }}", &inputs()).unwrap_err();
    assert_eq!(e.line, Some(1), "{e}");
}
