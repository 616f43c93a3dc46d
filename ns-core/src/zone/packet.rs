//! The query path from wire bytes to wire bytes, shared by the gateway and the agent's local
//! DNS: [`Responder::respond`] takes a packet and writes the reply, with no socket, no clock
//! and no randomness of its own (the caller passes [`QueryParams`]).
//!
//! Two paths give the same reply. The fast path parses the header, the single question and
//! the OPT by hand (`packet/parse.rs`, strict), looks the answer up in a per-responder cache
//! of encoded replies and patches the id, RD, CD, the question's case and the OPT (size, ECS
//! scope) in; a hit allocates nothing. The slow path (`packet/encode.rs`) decodes with
//! hickory-proto and encodes [`Zone::answer`] as hickory-server does; it takes everything the
//! parser finds unusual, every reply that must be truncated, and fills the cache.
//!
//! The cache key is what the answer depends on: the lowercase name and the type, and for a
//! service the client's routing decision ([`routing::decide`]: target datacenter and version
//! group), never the raw client. Each key holds [`VARIANTS`] weighted orders, filled lazily and
//! picked by the query's seed, so answers still rotate. It is dropped whole when the zone
//! changes ([`Zone::id`]), when a policy expires ([`Zone::next_expiry`]), or when it would pass
//! its bounds ([`Limits`]).

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, RecordType};

use crate::catalog::ServiceEntry;
use crate::name::{DcName, ServiceName};
use crate::routing;
use crate::zone::{NameKind, QueryParams, Zone};

mod encode;
mod parse;

use parse::{KEY_MAX, Parse, Question};

/// Weighted orders cached per key and client decision.
pub const VARIANTS: usize = 8;
/// Client decisions cached per name (datacenters times version groups); beyond, the slow path.
const DECISIONS_MAX: usize = 64;
/// What one cache entry costs beyond its bytes (map slot, vectors, names), for the bound.
const ENTRY_OVERHEAD: usize = 128;

/// One query as the server received it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The packet (for TCP, without the length prefix).
    pub packet: &'a [u8],
    /// The sender's address (the client, unless an EDNS Client Subnet says otherwise).
    pub src: IpAddr,
    /// Received over TCP: the whole answer is sent, never truncated.
    pub tcp: bool,
    /// The client's datacenter when the server knows it (the agent's own), instead of placing
    /// the client by the datacenters' subnets; its key still comes from its address or subnet.
    pub dc: Option<&'a DcName>,
    /// Time and seed.
    pub params: QueryParams,
}

/// What [`Responder::respond`] did, for the caller's counters and forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A zone answer was written.
    Answered {
        /// Its rcode (NoError, NXDomain, or ServFail when it could not be encoded).
        rcode: ResponseCode,
        /// The question's type.
        qtype: RecordType,
        /// Routing failed open for it.
        fail_open: bool,
    },
    /// The name is outside the zone: REFUSED was written (the agent forwards these instead).
    Outside {
        /// The question's type.
        qtype: RecordType,
    },
    /// Not a readable query: FORMERR was written when `replied`, else nothing (no header, or
    /// the packet is a response).
    Malformed {
        /// Whether `out` holds a FORMERR to send.
        replied: bool,
    },
    /// Another opcode than QUERY: NOTIMP was written.
    NotImplemented,
}

/// Bounds of one responder's cache; past either, the cache is emptied and refilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most names (name and type) cached.
    pub entries: usize,
    /// Most bytes of encoded replies (plus a fixed overhead per entry).
    pub bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            entries: 20_000,
            bytes: 32 << 20,
        }
    }
}

/// The cache's map. foldhash rather than SipHash: a lookup per query, on a key of a few dozen
/// bytes; its per-process random seed still keeps clients from choosing colliding names, and
/// the map is bounded ([`Limits::entries`]) anyway.
type Names = HashMap<Box<[u8]>, Entry, foldhash::fast::RandomState>;

/// Answers packets from a [`Zone`], with a cache of encoded replies. One per worker thread:
/// it is not shared, so the hot path takes no lock.
#[derive(Debug, Default)]
pub struct Responder {
    limits: Limits,
    zone_id: u64,
    valid_until: u64,
    names: Names,
    bytes: usize,
    key: KeyBuf,
    scratch: Vec<u8>,
    /// The zone's SOA as it follows an owner in a negative reply: type, class, TTL, length
    /// and RDATA with its names spelled out, so NXDOMAIN needs no cache entry.
    soa: Vec<u8>,
}

#[derive(Debug)]
struct KeyBuf([u8; KEY_MAX]);

impl Default for KeyBuf {
    fn default() -> KeyBuf {
        KeyBuf([0; KEY_MAX])
    }
}

/// What is cached for one name and type.
#[derive(Debug)]
struct Entry {
    /// The name, lowercase, to build replies with.
    name: Name,
    /// The service it names, if any: then the reply depends on the client's decision.
    service: Option<Service>,
    /// One slot per client decision seen.
    slots: Vec<Slot>,
}

/// A cached name's service, with what routing decides from: a copy of its catalog entry
/// (cheap: the instances are a persistent map), so a hit needs no catalog lookup. The cache is
/// dropped with the zone, so the copy is never older than the zone answered from.
#[derive(Debug)]
struct Service {
    name: ServiceName,
    dc: Option<DcName>,
    entry: ServiceEntry,
}

/// The replies for one client decision.
#[derive(Debug)]
struct Slot {
    target_dc: Option<DcName>,
    group: Option<Box<str>>,
    per_client: bool,
    outcome: Option<Outcome>,
    variants: [Option<Box<[u8]>>; VARIANTS],
}

impl Responder {
    /// A responder with the default cache bounds.
    pub fn new() -> Responder {
        Responder::with_limits(Limits::default())
    }

    /// A responder whose cache stays within `limits`.
    pub fn with_limits(limits: Limits) -> Responder {
        Responder {
            limits,
            ..Responder::default()
        }
    }

    /// Entries cached now (for tests and metrics).
    pub fn cached(&self) -> usize {
        self.names.len()
    }

    /// Answers `req` from `zone`, writing the reply into `out` (cleared first; empty when
    /// nothing is to be sent).
    pub fn respond(&mut self, zone: &Zone, req: &Request<'_>, out: &mut Vec<u8>) -> Outcome {
        let mut key_len = 0;
        let q = match parse::parse(req.packet, &mut self.key.0, &mut key_len) {
            Parse::Fast(q) => q,
            Parse::Slow => return encode::slow(zone, req, out),
            Parse::Drop => {
                out.clear();
                return Outcome::Malformed { replied: false };
            }
        };
        self.refresh(zone, req.params.now_ms);
        match self.fast(zone, req, &q, key_len, out) {
            Some(outcome) => outcome,
            None => encode::slow(zone, req, out),
        }
    }

    /// Empties the cache when it no longer answers for `zone` at `now_ms`.
    fn refresh(&mut self, zone: &Zone, now_ms: u64) {
        if self.zone_id != zone.id() || now_ms >= self.valid_until {
            self.names.clear();
            self.bytes = 0;
            self.zone_id = zone.id();
            self.valid_until = zone.next_expiry(now_ms);
            self.soa = soa_wire(zone);
        }
    }

    /// The fast path; `None` sends the query to the slow path (reply too large for its
    /// transport, or not cacheable).
    fn fast(
        &mut self,
        zone: &Zone,
        req: &Request<'_>,
        q: &Question<'_>,
        key_len: usize,
        out: &mut Vec<u8>,
    ) -> Option<Outcome> {
        let ecs = q.edns.as_ref().and_then(|o| o.ecs.as_ref());
        let place = || encode::placement(zone, req.src, ecs.map(|e| (e.addr, e.source)), req.dc);
        let key = &self.key.0[..key_len];
        if !self.names.contains_key(key) {
            // Unknown and outside names are answered from the SOA and the question alone, so
            // a flood of random names neither costs a build nor evicts the cached names.
            let qtype = RecordType::from(q.qtype);
            let (rcode, outcome) = match zone.classify_wire(&key[2..]) {
                NameKind::Unknown => (
                    ResponseCode::NXDomain,
                    Outcome::Answered {
                        rcode: ResponseCode::NXDomain,
                        qtype,
                        fail_open: false,
                    },
                ),
                NameKind::Outside => (ResponseCode::Refused, Outcome::Outside { qtype }),
                _ => (ResponseCode::NoError, Outcome::NotImplemented),
            };
            if rcode != ResponseCode::NoError {
                let origin = zone.origin_wire().len();
                negative(q, rcode, &self.soa, key_len - 2, origin, out);
                // Only an ECS echo reads the placement (its scope): placing costs a walk of
                // every datacenter subnet, which a plain negative answer need not pay.
                let scope = if ecs.is_some() { place().scope } else { 0 };
                append_opt(q, scope, out);
                return fits(req, q, out).then_some(outcome);
            }
            let entry = new_entry(zone, key)?;
            self.admit(key_len + ENTRY_OVERHEAD);
            self.names.insert(self.key.0[..key_len].into(), entry);
        }
        let placed = place();
        let key = &self.key.0[..key_len];
        let entry = self.names.get_mut(key)?;
        let (target_dc, group) = match &entry.service {
            Some(s) => {
                let d = routing::decide(
                    &s.entry,
                    &s.name,
                    &placed.client,
                    req.params.now_ms,
                    s.dc.as_ref(),
                );
                (d.target_dc, d.group)
            }
            None => (None, None),
        };
        let slot_index = match entry
            .slots
            .iter()
            .position(|s| s.target_dc == target_dc && s.group.as_deref() == group)
        {
            Some(i) => i,
            None if entry.slots.len() < DECISIONS_MAX => {
                entry.slots.push(Slot {
                    target_dc,
                    group: group.map(Box::from),
                    per_client: false,
                    outcome: None,
                    variants: Default::default(),
                });
                entry.slots.len() - 1
            }
            None => return None,
        };
        let variant = (req.params.seed % VARIANTS as u64) as usize;
        let slot = &mut entry.slots[slot_index];
        if slot.variants[variant].is_none() {
            let qtype = RecordType::from(q.qtype);
            let built = encode::build(
                zone,
                &entry.name,
                qtype,
                &placed.client,
                req.params,
                &mut self.scratch,
            )?;
            let size = built.bytes.len();
            if self.bytes + size > self.limits.bytes {
                // Over the byte bound: answer this one from the slow path, start afresh later.
                self.names.clear();
                self.bytes = 0;
                return None;
            }
            self.bytes += size;
            slot.per_client = built.per_client;
            slot.outcome = Some(built.outcome);
            slot.variants[variant] = Some(built.bytes);
        }
        let bytes = slot.variants[variant].as_deref()?;
        let outcome = slot.outcome?;
        let scope = if slot.per_client {
            placed.scope.max(placed.source_prefix)
        } else {
            placed.scope
        };
        assemble(bytes, q, out);
        append_opt(q, scope, out);
        // Too large for this transport: the slow path truncates it exactly as hickory does.
        fits(req, q, out).then_some(outcome)
    }

    /// Makes room for a new entry of `cost` bytes, emptying the cache at its bounds.
    fn admit(&mut self, cost: usize) {
        if self.names.len() >= self.limits.entries || self.bytes + cost > self.limits.bytes {
            self.names.clear();
            self.bytes = 0;
        }
        self.bytes += cost;
    }
}

/// A fresh entry for `key` (type, lowercase wire name); `None` if the name does not decode
/// (it always does: the parser checked it) or names a service the catalog lacks (it cannot:
/// the zone resolved it from that catalog), which the slow path then answers.
fn new_entry(zone: &Zone, key: &[u8]) -> Option<Entry> {
    let mut labels = Vec::new();
    let mut rest = &key[2..];
    while let [len, tail @ ..] = rest {
        let len = usize::from(*len);
        if len == 0 {
            break;
        }
        labels.push(tail.get(..len)?);
        rest = &tail[len..];
    }
    let name = Name::from_labels(labels).ok()?;
    let service = match zone.service_of(&name) {
        Some((name, dc)) => {
            let entry = zone.snapshot().catalog.service(&name)?.clone();
            Some(Service { name, dc, entry })
        }
        None => None,
    };
    Some(Entry {
        name,
        service,
        slots: Vec::new(),
    })
}

/// Whether the reply in `out` fits the transport (512 bytes, the OPT's size, or TCP's 65,535).
fn fits(req: &Request<'_>, q: &Question<'_>, out: &[u8]) -> bool {
    let limit = if req.tcp {
        encode::TCP_MAX
    } else {
        encode::udp_limit(q.edns.as_ref().map(|o| o.payload))
    };
    out.len() <= usize::from(limit)
}

/// Writes the reply's start: the cached bytes with the query's id, RD, CD and question (case
/// kept).
fn assemble(cached: &[u8], q: &Question<'_>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(cached);
    out[..2].copy_from_slice(&q.id.to_be_bytes());
    out[2] |= u8::from(q.rd);
    out[3] |= u8::from(q.cd) << 4;
    out[12..12 + q.wire.len()].copy_from_slice(q.wire);
}

/// Writes an NXDOMAIN (with the SOA in authority, its owner a pointer to the origin inside
/// the question) or a REFUSED (no records, not authoritative), as the slow path answers an
/// unknown or an outside name. `name_len` is the question name's wire length, `origin` the
/// origin's.
fn negative(
    q: &Question<'_>,
    rcode: ResponseCode,
    soa: &[u8],
    name_len: usize,
    origin: usize,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(&q.id.to_be_bytes());
    let nx = rcode == ResponseCode::NXDomain;
    // QR, AA for the zone's own answer, RD echoed; CD echoed and the rcode.
    out.push(0x80 | if nx { 0x04 } else { 0 } | u8::from(q.rd));
    out.push(u8::from(q.cd) << 4 | rcode.low());
    out.extend_from_slice(&[0, 1, 0, 0, 0, u8::from(nx), 0, 0]);
    out.extend_from_slice(q.wire);
    if nx {
        // The origin's labels end the question name, which starts at offset 12.
        let at = (12 + name_len - origin) as u16;
        out.extend_from_slice(&(0xc000 | at).to_be_bytes());
        out.extend_from_slice(soa);
    }
}

/// Appends the OPT when the query had one: the clamped size, the ECS echo with `scope`.
fn append_opt(q: &Question<'_>, scope: u8, out: &mut Vec<u8>) {
    let Some(opt) = &q.edns else {
        return;
    };
    let additional = u16::from_be_bytes([out[10], out[11]]).wrapping_add(1);
    out[10..12].copy_from_slice(&additional.to_be_bytes());
    let size = encode::udp_limit(Some(opt.payload));
    // Root owner, type OPT, class = UDP size, TTL 0 (rcode high 0, version 0, no DO).
    out.extend_from_slice(&[0, 0, 41]);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    match &opt.ecs {
        Some(ecs) => {
            let len = 4 + ecs.addr_bytes.len() as u16;
            out.extend_from_slice(&(4 + len).to_be_bytes());
            out.extend_from_slice(&8u16.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&ecs.family.to_be_bytes());
            out.extend_from_slice(&[ecs.source, scope]);
            out.extend_from_slice(ecs.addr_bytes);
        }
        None => out.extend_from_slice(&[0, 0]),
    }
}

/// The zone's SOA after its owner: type, class IN, TTL, RDATA length, and the RDATA with
/// both names in full (no compression: it is built once per zone, not per reply).
fn soa_wire(zone: &Zone) -> Vec<u8> {
    let record = zone.soa_record();
    let RData::SOA(soa) = &record.data else {
        return Vec::new();
    };
    let mut rdata = Vec::with_capacity(64);
    for name in [&soa.mname, &soa.rname] {
        for label in name.iter() {
            rdata.push(label.len() as u8);
            rdata.extend_from_slice(label);
        }
        rdata.push(0);
    }
    rdata.extend_from_slice(&soa.serial.to_be_bytes());
    for v in [soa.refresh, soa.retry, soa.expire] {
        rdata.extend_from_slice(&v.to_be_bytes());
    }
    rdata.extend_from_slice(&soa.minimum.to_be_bytes());
    let mut out = Vec::with_capacity(10 + rdata.len());
    out.extend_from_slice(&6u16.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&record.ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(&rdata);
    out
}

#[cfg(test)]
mod tests;
