//! The Tera functions and filters templates call, over the inputs of one render.
//!
//! Functions: `service(name, dc?, healthy?, tag?)`, `route(name, dc?)`, `services()`,
//! `key(path)`, `keys(prefix)`, `node()`. Filters: `by_dc(dc)`, `by_version(version)`,
//! `by_tag(tag)`, `json(pretty?)`. Each function reads the [`Scope`] set for the render in
//! progress (never the store) and records what it read in the scope's [`Deps`]. Tera needs its
//! functions before any template is added, and they are `'static`; so they share one cell with
//! the template's engine (`render::engine`), which fills it for each render.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ns_core::routing::weights::route_view;
use ns_core::{DcName, Instance, InstanceId, ServiceName};
use serde_json::{Value as Json, json};
use tera::{Error, Kwargs, State, Tera, TeraResult, Value};

use super::deps::{Deps, Inputs};

/// Who renders, and when: the agent's node and datacenter, and the time for policy expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    /// The agent's node name.
    pub node: String,
    /// The agent's datacenter (the default `dc` of `route()`).
    pub datacenter: DcName,
    /// The config key prefix `key()` and `keys()` may read.
    pub kv_prefix: String,
}

/// The state of one render in progress.
#[derive(Debug)]
pub(crate) struct Scope {
    pub(crate) inputs: Inputs,
    pub(crate) who: Who,
    pub(crate) now_ms: u64,
    pub(crate) deps: Deps,
}

/// The cell the functions read the current render's scope from.
pub(crate) type Cell = Arc<Mutex<Option<Scope>>>;

/// Registers every function and filter on `tera`, reading `cell`.
pub(crate) fn register(tera: &mut Tera, cell: &Cell) {
    let c = cell.clone();
    tera.register_function("service", move |kw: Kwargs, _: &State<'_>| {
        with(&c, |s| service(s, &kw))
    });
    let c = cell.clone();
    tera.register_function("route", move |kw: Kwargs, _: &State<'_>| {
        with(&c, |s| route(s, &kw))
    });
    let c = cell.clone();
    tera.register_function("services", move |_: Kwargs, _: &State<'_>| {
        with(&c, |s| {
            s.deps.service_names = true;
            let names: Vec<Json> = s
                .inputs
                .snap
                .catalog
                .services
                .keys()
                .map(|n| Json::from(n.as_str()))
                .collect();
            Ok(Value::from_serializable(&names))
        })
    });
    let c = cell.clone();
    tera.register_function("key", move |kw: Kwargs, _: &State<'_>| {
        with(&c, |s| {
            let path = kw.must_get::<&str>("path")?;
            inside_prefix(s, "key", "path", path)?;
            s.deps.keys.insert(path.to_owned());
            Ok(match s.inputs.kv.entries.get(path) {
                Some(v) => Value::from(v.as_str()),
                None => Value::none(),
            })
        })
    });
    let c = cell.clone();
    tera.register_function("keys", move |kw: Kwargs, _: &State<'_>| {
        with(&c, |s| {
            let prefix = kw.must_get::<&str>("prefix")?;
            inside_prefix(s, "keys", "prefix", prefix)?;
            s.deps.prefixes.insert(prefix.to_owned());
            let out: Vec<Json> = s
                .inputs
                .kv
                .entries
                .range(prefix.to_owned()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| json!({ "key": k, "value": v }))
                .collect();
            Ok(Value::from_serializable(&out))
        })
    });
    let c = cell.clone();
    tera.register_function("node", move |_: Kwargs, _: &State<'_>| {
        with(&c, |s| {
            Ok(Value::from_serializable(&json!({
                "node": s.who.node,
                "datacenter": s.who.datacenter.as_str(),
            })))
        })
    });
    tera.register_filter("by_dc", |v: &[Value], kw: Kwargs, _: &State<'_>| {
        let dc = kw.must_get::<&str>("dc")?;
        Ok::<_, Error>(keep(v, |i| field(i, "datacenter") == Some(dc)))
    });
    tera.register_filter("by_version", |v: &[Value], kw: Kwargs, _: &State<'_>| {
        let version = kw.must_get::<&str>("version")?;
        Ok::<_, Error>(keep(v, |i| field(i, "version") == Some(version)))
    });
    tera.register_filter("by_tag", |v: &[Value], kw: Kwargs, _: &State<'_>| {
        let tag = kw.must_get::<&str>("tag")?;
        Ok::<_, Error>(keep(v, |i| {
            i.get_from_path("tags")
                .and_then(Value::as_array)
                .is_some_and(|t| t.iter().any(|x| x.as_str() == Some(tag)))
        }))
    });
    tera.register_filter("json", |v: &Value, kw: Kwargs, _: &State<'_>| {
        let pretty = kw.get::<bool>("pretty")?.unwrap_or(false);
        let text = if pretty {
            serde_json::to_string_pretty(v)
        } else {
            serde_json::to_string(v)
        };
        text.map_err(|e| Error::message(format!("json: {e}")))
    });
}

/// Runs `f` on the scope of the render in progress.
fn with(cell: &Cell, f: impl FnOnce(&mut Scope) -> TeraResult<Value>) -> TeraResult<Value> {
    let mut guard: MutexGuard<'_, Option<Scope>> =
        cell.lock().unwrap_or_else(PoisonError::into_inner);
    match guard.as_mut() {
        Some(s) => f(s),
        None => Err(Error::message("template function called outside a render")),
    }
}

fn service(s: &mut Scope, kw: &Kwargs) -> TeraResult<Value> {
    let name = service_name(kw)?;
    let dc = kw.get::<&str>("dc")?;
    let healthy = kw.get::<bool>("healthy")?.unwrap_or(false);
    let tag = kw.get::<&str>("tag")?;
    s.deps.services.insert(name.clone());
    let Some(entry) = s.inputs.snap.catalog.service(&name) else {
        return Ok(Value::from_serializable(&Vec::<Json>::new()));
    };
    let out: Vec<Json> = entry
        .instances
        .iter()
        .filter(|(_, i)| dc.is_none_or(|d| i.datacenter.as_str() == d))
        .filter(|(_, i)| !healthy || i.status.is_routable())
        .filter(|(_, i)| tag.is_none_or(|t| i.tags.iter().any(|x| x == t)))
        .map(|(id, i)| instance_json(id, i))
        .collect();
    Ok(Value::from_serializable(&out))
}

fn route(s: &mut Scope, kw: &Kwargs) -> TeraResult<Value> {
    let name = service_name(kw)?;
    let dc = match kw.get::<&str>("dc")? {
        Some(d) => DcName::parse(d).map_err(|e| Error::message(format!("route: dc: {e}")))?,
        None => s.who.datacenter.clone(),
    };
    s.deps.services.insert(name.clone());
    s.deps.datacenters = true;
    let catalog = &s.inputs.snap.catalog;
    if let Some(at) = catalog
        .service(&name)
        .and_then(|e| e.traffic.as_ref())
        .and_then(|t| t.expires_at)
        .filter(|at| *at > s.now_ms)
    {
        s.deps.expiring(at);
    }
    let view = route_view(catalog, &name, Some(&dc), s.now_ms);
    let out: Vec<Json> = view
        .instances
        .iter()
        .map(|r| {
            let mut j = instance_json(r.id, r.instance);
            j["weight"] = json!(r.weight);
            j["own_weight"] = json!(r.instance.weight);
            j["share"] = json!(r.share);
            j["backup"] = json!(r.backup);
            j
        })
        .collect();
    Ok(Value::from_serializable(&out))
}

fn service_name(kw: &Kwargs) -> TeraResult<ServiceName> {
    let name = kw.must_get::<&str>("name")?;
    ServiceName::parse(name).map_err(|e| Error::message(format!("name {name:?}: {e}")))
}

fn inside_prefix(s: &Scope, func: &str, arg: &str, path: &str) -> TeraResult<()> {
    if path.starts_with(&s.who.kv_prefix) {
        Ok(())
    } else {
        Err(Error::message(format!(
            "{func}: {arg} {path:?} is outside the config prefix {:?} the agent follows (kv_prefix)",
            s.who.kv_prefix
        )))
    }
}

/// An instance as templates see it.
fn instance_json(id: &InstanceId, i: &Instance) -> Json {
    json!({
        "id": id.as_str(),
        "address": i.address.to_string(),
        "port": i.port,
        "weight": i.weight,
        "version": i.version,
        "datacenter": i.datacenter.as_str(),
        "tags": i.tags,
        "meta": i.meta,
        "status": crate::lifecycle::health_name(i.status),
        "node": i.node,
    })
}

fn field<'v>(v: &'v Value, name: &'v str) -> Option<&'v str> {
    v.get_from_path(name).and_then(Value::as_str)
}

fn keep(v: &[Value], f: impl Fn(&Value) -> bool) -> Value {
    Value::from(v.iter().filter(|i| f(i)).cloned().collect::<Vec<Value>>())
}
