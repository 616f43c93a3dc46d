//! Zone answers: from a snapshot, a DNS question and a placed client to the records of the
//! answer, its rcode and what the servers count. Used as is by the gateway and by the agent's
//! local DNS, so both give the same client the same answer.
//!
//! [`Zone`] wraps one [`Snapshot`] with what every query needs precomputed (SOA, NS, the empty
//! non-terminals); build one per published snapshot. [`Zone::answer`] is pure: the time and
//! the seed come in as parameters, nothing is read from a socket or a clock. Names, in the
//! order they are tried (`L` are the labels left of the zone):
//! - the apex: SOA and NS; other types are NODATA;
//! - `_TAG._tcp.REST` (or `_udp`): SRV of REST's instances carrying tag `TAG`;
//! - `NAME`: the service `NAME` as routing answers this client;
//! - `NAME.DC` where `DC` is in `/ns/datacenters/` and `NAME` a service: that datacenter's
//!   instances only, wherever the client is;
//! - `HEX.addr`: the address spelled in hex (8 digits for IPv4, 32 for IPv6), the targets of
//!   SRV answers, as Consul's `.addr.` names;
//! - a suffix of a service name (`hotel` when only `search.hotel` exists): NODATA;
//! - anything else: NXDOMAIN. Outside the zone: REFUSED, not authoritative.
//!
//! The reserved-label rule keeps `NAME.DC` and a dotted service name apart: a service's last
//! label may not be a datacenter's name, and a datacenter may not take the last label of an
//! existing service ([`crate::name::check_dc_label`], applied by the store's typed API). Data
//! written around it (raw `/v1/kv`) resolves the exact service name first. Record building is
//! in `zone/records.rs`; the reply's OPT (UDP size, ECS echo) in [`wire`]; packets in and
//! out (parsing, encoding, truncation, the answer cache) in [`packet`]; sockets and framing
//! are the servers' job.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, Record, RecordType};

use crate::mirror::Snapshot;
use crate::name::{DcName, ServiceName};
use crate::routing::{ClientCtx, Filter, Params, select_filtered};

pub mod packet;
mod records;
pub mod wire;

/// Source of [`Zone::id`]: a process-wide counter, so no two zones ever share an id (an
/// address could be reused once a zone is freed; an id cannot).
static NEXT_ZONE_ID: AtomicU64 = AtomicU64::new(1);

/// Longest dotted text of a name (255 wire bytes make at most 253 characters).
const NAME_TEXT_MAX: usize = 255;

/// What a zone is, beyond the data: its origin, TTLs and answer cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneConfig {
    /// The zone's apex, e.g. `ns.corp.` (stored lowercase and fully qualified).
    pub origin: Name,
    /// TTL of services without a definition (theirs is `ttl_secs`), of `.addr.` names, of the
    /// SOA and NS, and the negative-caching TTL (SOA minimum) of NXDOMAIN and NODATA.
    pub ttl: u32,
    /// Most instances in one answer.
    pub max_answers: usize,
}

/// Per-query inputs that are not the question: time and seed (see [`Params`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryParams {
    /// Now, as Unix milliseconds (policy expiry).
    pub now_ms: u64,
    /// Seed of the weighted order.
    pub seed: u64,
}

/// A snapshot ready to answer queries. Cheap to share (`Arc`) between server tasks.
#[derive(Debug)]
pub struct Zone {
    config: ZoneConfig,
    snapshot: Arc<Snapshot>,
    soa: Record,
    ns: Record,
    /// Every proper suffix of a dotted service name (`hotel` for `search.hotel`): names that
    /// exist because something lies below them. Looked up for every unknown name (NXDOMAIN),
    /// hence foldhash rather than SipHash.
    parents: foldhash::HashSet<Box<str>>,
    /// Unique per zone built in this process, so answer caches notice a new zone.
    id: u64,
    /// Every traffic policy's `expires_at`, sorted: the instants at which answers change
    /// without a new snapshot.
    expiries: Vec<u64>,
    /// The origin in lowercase wire form, for [`Zone::classify_wire`].
    origin_wire: Box<[u8]>,
}

/// The outcome of one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// NoError (answer or NODATA), NXDomain or Refused.
    pub rcode: ResponseCode,
    /// Whether this is the zone's own answer (AA): true for everything but REFUSED.
    pub authoritative: bool,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section: the SOA on NXDOMAIN and NODATA.
    pub authority: Vec<Record>,
    /// The additional section: addresses of SRV targets.
    pub additionals: Vec<Record>,
    /// What the name turned out to be, for metrics and logs.
    pub kind: NameKind,
    /// Routing failed open for this answer (count it).
    pub fail_open: bool,
    /// The answer depends on the client key (gray groups or forced shifts in force), so an
    /// ECS scope must cover the client's own prefix, not only its datacenter's.
    pub per_client: bool,
}

/// What a question's name resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// Outside the zone.
    Outside,
    /// The zone's apex.
    Apex,
    /// A service (plain, `NAME.DC` or `_TAG._tcp.NAME`).
    Service,
    /// A `HEX.addr` name.
    Address,
    /// A name that exists only because a service lies below it.
    Parent,
    /// Nothing by that name.
    Unknown,
}

/// What a name under the apex means, before the record type is considered.
enum Target<'q> {
    Service {
        name: ServiceName,
        dc: Option<DcName>,
        tag: Option<&'q str>,
    },
    Address(std::net::IpAddr),
    Parent,
    Unknown,
}

impl Zone {
    /// Prepares `snapshot` for answering as `config` says.
    pub fn new(config: ZoneConfig, snapshot: Arc<Snapshot>) -> Zone {
        let origin = config.origin.to_lowercase();
        let config = ZoneConfig { origin, ..config };
        let serial = snapshot.revision as u32;
        let soa = records::soa(&config, serial);
        let ns = records::ns(&config);
        let mut parents = foldhash::HashSet::default();
        for name in snapshot.catalog.services.keys() {
            let s = name.as_str();
            for (i, _) in s.match_indices('.') {
                parents.insert(Box::from(&s[i + 1..]));
            }
        }
        let mut expiries: Vec<u64> = snapshot
            .catalog
            .services
            .values()
            .filter_map(|e| e.traffic.as_ref()?.expires_at)
            .collect();
        expiries.sort_unstable();
        let mut origin_wire = Vec::new();
        for label in config.origin.iter() {
            origin_wire.push(label.len() as u8);
            origin_wire.extend(label.iter().map(u8::to_ascii_lowercase));
        }
        origin_wire.push(0);
        Zone {
            config,
            snapshot,
            soa,
            ns,
            parents,
            id: NEXT_ZONE_ID.fetch_add(1, Ordering::Relaxed),
            expiries,
            origin_wire: origin_wire.into(),
        }
    }

    /// An id no other zone of this process has: caches of answers compare it to know they
    /// still answer from this zone.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The first policy expiry after `now_ms` (`u64::MAX` if none): until then, answers to the
    /// same question and client decision stay what they are at `now_ms`.
    pub fn next_expiry(&self, now_ms: u64) -> u64 {
        let i = self.expiries.partition_point(|&e| e <= now_ms);
        self.expiries.get(i).copied().unwrap_or(u64::MAX)
    }

    /// The service (and the datacenter of the `NAME.DC` form) a name in the zone answers
    /// for, if it names one; `None` for the apex, `.addr.` names, parents, unknown names and
    /// names outside the zone, whose answers do not depend on the client.
    pub fn service_of(&self, qname: &Name) -> Option<(ServiceName, Option<DcName>)> {
        let origin = &self.config.origin;
        if !origin.zone_of(qname) {
            return None;
        }
        let depth = usize::from(qname.num_labels() - origin.num_labels());
        let labels: Vec<&[u8]> = qname.iter().take(depth).collect();
        if labels.is_empty() {
            return None;
        }
        match self.resolve(&labels) {
            Target::Service { name, dc, .. } => Some((name, dc)),
            _ => None,
        }
    }

    /// The snapshot this zone answers from.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// The zone's configuration (origin lowercased).
    pub fn config(&self) -> &ZoneConfig {
        &self.config
    }

    /// Answers `qtype` at `qname` for `client`; see the module doc for the name forms.
    pub fn answer(
        &self,
        qname: &Name,
        qtype: RecordType,
        client: &ClientCtx,
        params: QueryParams,
    ) -> Answer {
        let mut out = Answer {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
            kind: NameKind::Outside,
            fail_open: false,
            per_client: false,
        };
        let origin = &self.config.origin;
        if !origin.zone_of(qname) {
            out.rcode = ResponseCode::Refused;
            out.authoritative = false;
            return out;
        }
        let depth = usize::from(qname.num_labels() - origin.num_labels());
        // At most 127 labels fit in a name, so this never allocates on the heap twice.
        let labels: Vec<&[u8]> = qname.iter().take(depth).collect();
        if labels.is_empty() {
            out.kind = NameKind::Apex;
            match qtype {
                RecordType::SOA => out.answers.push(self.soa.clone()),
                RecordType::NS => out.answers.push(self.ns.clone()),
                RecordType::ANY => out.answers.extend([self.soa.clone(), self.ns.clone()]),
                _ => {}
            }
            return self.finish(out);
        }
        match self.resolve(&labels) {
            Target::Service { name, dc, tag } => {
                out.kind = NameKind::Service;
                self.service(&mut out, qname, qtype, client, params, &name, dc, tag);
            }
            Target::Address(ip) => {
                out.kind = NameKind::Address;
                if let Some(r) = records::address(qname.clone(), self.config.ttl, ip, qtype) {
                    out.answers.push(r);
                }
            }
            Target::Parent => out.kind = NameKind::Parent,
            Target::Unknown => {
                out.kind = NameKind::Unknown;
                out.rcode = ResponseCode::NXDomain;
            }
        }
        self.finish(out)
    }

    /// An empty answer carries the SOA, for negative caching (RFC 2308).
    fn finish(&self, mut out: Answer) -> Answer {
        if out.answers.is_empty() {
            out.authority.push(self.soa.clone());
        }
        out
    }

    /// The origin in lowercase wire form.
    pub(crate) fn origin_wire(&self) -> &[u8] {
        &self.origin_wire
    }

    /// The apex SOA record (for replies built without [`Zone::answer`]).
    pub(crate) fn soa_record(&self) -> &Record {
        &self.soa
    }

    /// What a name in lowercase wire form (labels, then the terminal zero) is, as
    /// [`Zone::answer`] would resolve it, without allocating: the fast path answers unknown
    /// and outside names without caching them (a flood of random names must cost no more
    /// than a hit, nor evict the hits).
    pub fn classify_wire(&self, wire: &[u8]) -> NameKind {
        // Most names have a few labels: a small array then, as zeroing room for the most a
        // name can have (127) costs more than the rest of an NXDOMAIN answer.
        let mut labels = 0;
        let mut pos = 0;
        while let Some(&len) = wire.get(pos)
            && len != 0
        {
            labels += 1;
            pos += 1 + usize::from(len);
        }
        if labels <= 8 {
            self.classify_labels::<8>(wire)
        } else {
            self.classify_labels::<128>(wire)
        }
    }

    /// [`Zone::classify_wire`] for a name of at most `N` labels.
    fn classify_labels<const N: usize>(&self, wire: &[u8]) -> NameKind {
        let mut labels: [&[u8]; N] = [&[]; N];
        let mut starts = [0usize; N];
        let (mut n, mut pos) = (0usize, 0usize);
        while let Some(&len) = wire.get(pos) {
            let len = usize::from(len);
            if len == 0 {
                break;
            }
            let (Some(label), Some(slot)) = (wire.get(pos + 1..pos + 1 + len), labels.get_mut(n))
            else {
                return NameKind::Unknown;
            };
            *slot = label;
            starts[n] = pos;
            n += 1;
            pos += 1 + len;
        }
        let origin = &self.origin_wire[..];
        if !wire.ends_with(origin) {
            return NameKind::Outside;
        }
        // In the zone only if the origin starts at a label boundary (`xns.corp` is outside).
        let cut = wire.len() - origin.len();
        let Some(depth) = starts[..n].iter().position(|&s| s == cut) else {
            return NameKind::Outside;
        };
        if depth == 0 {
            return NameKind::Apex;
        }
        match self.resolve(&labels[..depth]) {
            Target::Service { .. } => NameKind::Service,
            Target::Address(_) => NameKind::Address,
            Target::Parent => NameKind::Parent,
            Target::Unknown => NameKind::Unknown,
        }
    }

    /// What the labels under the apex name, in the order of the module doc.
    fn resolve<'q>(&self, labels: &[&'q [u8]]) -> Target<'q> {
        let mut buf = [0u8; NAME_TEXT_MAX];
        let Some(text) = labels_text(labels, &mut buf) else {
            return Target::Unknown;
        };
        let services = &self.snapshot.catalog.services;
        if let [first, proto, rest @ ..] = labels
            && !rest.is_empty()
            && (*proto == b"_tcp" || *proto == b"_udp")
            && let Some(tag) = first.strip_prefix(b"_")
            && let Ok(tag) = std::str::from_utf8(tag)
        {
            return match self.resolve(rest) {
                Target::Service { name, dc, .. } => Target::Service {
                    name,
                    dc,
                    tag: Some(tag),
                },
                Target::Parent => Target::Parent,
                _ => Target::Unknown,
            };
        }
        if let Some((name, _)) = services.get_key_value(text) {
            return Target::Service {
                name: name.clone(),
                dc: None,
                tag: None,
            };
        }
        if let Some((svc, dc)) = text.rsplit_once('.')
            && let Some((dc, _)) = self.snapshot.catalog.datacenters.get_key_value(dc)
            && let Some((name, _)) = services.get_key_value(svc)
        {
            return Target::Service {
                name: name.clone(),
                dc: Some(dc.clone()),
                tag: None,
            };
        }
        if let [hex, b"addr"] = labels
            && let Some(ip) = records::parse_hex_addr(hex)
        {
            return Target::Address(ip);
        }
        if self.parents.contains(text) {
            return Target::Parent;
        }
        Target::Unknown
    }

    /// The records of a service name.
    #[allow(clippy::too_many_arguments)]
    fn service(
        &self,
        out: &mut Answer,
        qname: &Name,
        qtype: RecordType,
        client: &ClientCtx,
        params: QueryParams,
        name: &ServiceName,
        dc: Option<DcName>,
        tag: Option<&str>,
    ) {
        let catalog = &self.snapshot.catalog;
        let Some(entry) = catalog.service(name) else {
            return;
        };
        out.per_client = entry.traffic.as_ref().is_some_and(|p| {
            p.is_active(params.now_ms) && (p.groups.len() > 1 || !p.shifts.is_empty())
        });
        let ttl = entry.def.as_ref().map_or(self.config.ttl, |d| d.ttl_secs);
        let ipv4 = match (tag, qtype) {
            // `_TAG._tcp` names hold SRV records only.
            (Some(_), t) if t != RecordType::SRV => return,
            (_, RecordType::A) => Some(true),
            (_, RecordType::AAAA) => Some(false),
            (_, RecordType::SRV | RecordType::TXT | RecordType::ANY) => None,
            _ => return,
        };
        let filter = Filter {
            dc: dc.as_ref(),
            tag,
            ipv4,
        };
        let routing = Params {
            now_ms: params.now_ms,
            seed: params.seed,
            max_answers: self.config.max_answers,
        };
        let sel = select_filtered(catalog, name, client, &routing, &filter);
        out.fail_open = sel.fail_open;
        let owner = || qname.clone();
        match qtype {
            RecordType::A | RecordType::AAAA | RecordType::ANY => {
                for s in &sel.instances {
                    let t = records::address_type(s.instance.address);
                    if let Some(r) = records::address(owner(), ttl, s.instance.address, t) {
                        out.answers.push(r);
                    }
                }
            }
            RecordType::SRV => {
                let priority = if sel.dc_fallback { 2 } else { 1 };
                for s in &sel.instances {
                    let (srv, target) = records::srv(&self.config, owner(), ttl, priority, s);
                    out.answers.push(srv);
                    out.additionals.extend(target);
                }
            }
            RecordType::TXT => {
                if let Some(def) = &entry.def {
                    out.answers.push(records::txt_service(owner(), ttl, def));
                }
                for s in &sel.instances {
                    out.answers.push(records::txt_instance(owner(), ttl, s));
                }
            }
            _ => {}
        }
    }
}

/// The labels as one lowercase dotted string, written into `buf`, if every byte can be in a
/// service or DC name or an SRV label (`[a-z0-9-_]`); anything else cannot exist in this zone.
fn labels_text<'b>(labels: &[&[u8]], buf: &'b mut [u8; NAME_TEXT_MAX]) -> Option<&'b str> {
    let mut n = 0;
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            *buf.get_mut(n)? = b'.';
            n += 1;
        }
        for &b in *l {
            let c = b.to_ascii_lowercase();
            if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_') {
                return None;
            }
            *buf.get_mut(n)? = c;
            n += 1;
        }
    }
    std::str::from_utf8(&buf[..n]).ok()
}

#[cfg(test)]
mod tests;
