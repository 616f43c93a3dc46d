//! What one render of a template read ([`Deps`]), and whether a change of the inputs touches
//! it. Recorded by the template functions (`render::functions`) while rendering, so a template
//! depends on exactly the names, keys and prefixes it asked for (consul-template's model); an
//! unrelated service's change never schedules it. Scheduling is `render::group`'s.

use std::collections::BTreeSet;
use std::sync::Arc;

use ns_core::{ServiceName, Snapshot};

use crate::kv::KvData;

/// The data a render sees: the naming mirror and the config keys, both as immutable copies.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The `/ns/` mirror's snapshot.
    pub snap: Arc<Snapshot>,
    /// The config keys' copy.
    pub kv: Arc<KvData>,
}

impl Inputs {
    /// The store revision these inputs reflect.
    pub fn revision(&self) -> u64 {
        self.snap.revision.max(self.kv.revision)
    }
}

/// Everything a render read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deps {
    /// Services read by `service()` or `route()`.
    pub services: BTreeSet<ServiceName>,
    /// Whether `route()` was called: it also reads the datacenters' fallback lists.
    pub datacenters: bool,
    /// Whether `services()` was called: the list of names.
    pub service_names: bool,
    /// Keys read by `key()`.
    pub keys: BTreeSet<String>,
    /// Prefixes read by `keys()`.
    pub prefixes: BTreeSet<String>,
    /// The earliest `expires_at` (Unix ms) of a traffic policy `route()` applied: the view
    /// changes then without any store change.
    pub expires_at: Option<u64>,
}

impl Deps {
    /// Whether going from `old` to `new` changes anything this render read.
    pub fn touched(&self, old: &Inputs, new: &Inputs) -> bool {
        let (a, b) = (&old.snap.catalog, &new.snap.catalog);
        if self.services.iter().any(|n| a.service(n) != b.service(n)) {
            return true;
        }
        if self.datacenters && a.datacenters != b.datacenters {
            return true;
        }
        if self.service_names && !a.services.keys().eq(b.services.keys()) {
            return true;
        }
        let (ka, kb) = (&old.kv.entries, &new.kv.entries);
        if self.keys.iter().any(|k| ka.get(k) != kb.get(k)) {
            return true;
        }
        self.prefixes.iter().any(|p| {
            let range = |m: &imbl::OrdMap<String, String>| {
                m.range(p.clone()..)
                    .take_while(|(k, _)| k.starts_with(p.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<Vec<_>>()
            };
            range(ka) != range(kb)
        })
    }

    /// Adds everything `other` read.
    pub fn union(&mut self, other: Deps) {
        self.services.extend(other.services);
        self.datacenters |= other.datacenters;
        self.service_names |= other.service_names;
        self.keys.extend(other.keys);
        self.prefixes.extend(other.prefixes);
        if let Some(at) = other.expires_at {
            self.expiring(at);
        }
    }

    /// Records a policy expiry; the earliest one is kept.
    pub fn expiring(&mut self, at: u64) {
        self.expires_at = Some(self.expires_at.map_or(at, |e| e.min(at)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ns_core::{DcName, Health, Instance, InstanceId};

    fn with(names: &[&str]) -> Inputs {
        let mut snap = Snapshot::default();
        for n in names {
            let name = ServiceName::parse(n).unwrap();
            let inst = Instance {
                address: "10.0.0.1".parse().unwrap(),
                port: 80,
                datacenter: DcName::parse("dc1").unwrap(),
                version: String::new(),
                weight: 100,
                tags: Vec::new(),
                meta: Default::default(),
                status: Health::Passing,
                node: "h".into(),
            };
            snap.catalog
                .service_mut(&name)
                .instances
                .insert(InstanceId::parse("i1").unwrap(), inst);
        }
        Inputs {
            snap: Arc::new(snap),
            kv: Arc::new(KvData::default()),
        }
    }

    #[test]
    fn only_what_was_read_counts() {
        let web = Deps {
            services: [ServiceName::parse("web").unwrap()].into(),
            ..Deps::default()
        };
        let (a, b) = (with(&["web"]), with(&["web", "db"]));
        assert!(!web.touched(&a, &b), "db is not read");
        assert!(web.touched(&with(&[]), &a));
        let names = Deps {
            service_names: true,
            ..Deps::default()
        };
        assert!(names.touched(&a, &b));
        let mut kv = KvData::default();
        kv.entries.insert("/config/a/x".into(), "1".into());
        let c = Inputs {
            kv: Arc::new(kv),
            ..a.clone()
        };
        let prefix = Deps {
            prefixes: ["/config/a/".to_owned()].into(),
            ..Deps::default()
        };
        assert!(prefix.touched(&a, &c));
        let other = Deps {
            prefixes: ["/config/b/".to_owned()].into(),
            ..Deps::default()
        };
        assert!(!other.touched(&a, &c));
    }
}
