//! The hickory side of the packet path: the slow path, which decodes with hickory-proto and
//! encodes [`Zone::answer`] exactly as hickory-server's response builder does (same header
//! flags, sections, OPT and truncation), and the builder of the fast path's cached replies,
//! which are the same encoding of the same answer.
//!
//! Parsing by hand and patching cached bytes is `packet.rs`; this file is the reference the
//! fast path must equal.

use std::net::IpAddr;

use hickory_proto::op::{
    Edns, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode, emit_message_parts,
};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_proto::serialize::binary::BinEncoder;

use super::{Outcome, Request};
use crate::name::DcName;
use crate::placement::{Placement, place};
use crate::routing::ClientCtx;
use crate::zone::{Answer, NameKind, QueryParams, Zone, wire};

/// Largest TCP message.
pub(super) const TCP_MAX: u16 = u16::MAX;

/// Where `src` (or its client subnet) is, with the agent's datacenter in place of the
/// subnets' when `dc` is given (the answer then does not depend on the subnet: scope 0).
pub(super) fn placement(
    zone: &Zone,
    src: IpAddr,
    ecs: Option<(IpAddr, u8)>,
    dc: Option<&DcName>,
) -> Placement {
    let mut p = place(&zone.snapshot().catalog.datacenters, src, ecs);
    if let Some(dc) = dc {
        p.client.dc = Some(dc.clone());
        p.scope = 0;
    }
    p
}

/// The size a UDP reply may take: the OPT's clamped size, 512 without one.
pub(super) fn udp_limit(edns_payload: Option<u16>) -> u16 {
    edns_payload.map_or(wire::MIN_UDP_PAYLOAD, |p| {
        p.clamp(wire::MIN_UDP_PAYLOAD, wire::MAX_UDP_PAYLOAD)
    })
}

/// Encodes a reply into `out` (cleared first) with at most `max` bytes, truncating (TC) as
/// hickory does when the records do not fit.
fn emit(
    out: &mut Vec<u8>,
    meta: &Metadata,
    queries: &[Query],
    answer: Option<&Answer>,
    edns: Option<&Edns>,
    max: u16,
) -> Result<Header, hickory_proto::ProtoError> {
    out.clear();
    let mut enc = BinEncoder::new(out);
    enc.set_max_size(max);
    let empty = &[][..];
    let (an, ns, ad) = answer.map_or((empty, empty, empty), |a| {
        (&a.answers[..], &a.authority[..], &a.additionals[..])
    });
    emit_message_parts(
        meta,
        &mut queries.iter(),
        &mut an.iter(),
        &mut ns.iter(),
        &mut ad.iter(),
        edns,
        None,
        &mut enc,
    )
}

/// The reply header hickory-server builds for a request: id, opcode, RD and CD echoed.
fn response_meta(request: &Metadata, rcode: ResponseCode, authoritative: bool) -> Metadata {
    let mut meta = Metadata::response_from_request(request);
    meta.response_code = rcode;
    meta.authoritative = authoritative;
    meta.recursion_available = false;
    meta
}

/// A bare header (no sections) with `rcode`, from the first 12 bytes of the query: what a
/// packet whose body does not decode gets.
fn header_only(p: &[u8], rcode: ResponseCode, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&p[..2]);
    // QR, the query's opcode and RD; then the rcode.
    out.push(0x80 | (p[2] & 0x79));
    out.push(rcode.low());
    out.extend_from_slice(&[0; 8]);
}

/// An error reply hickory-server's `error_msg` would send: the questions echoed, the OPT
/// (at the largest UDP size) if the query had one, no records.
fn error_reply(msg: &Message, p: &[u8], rcode: ResponseCode, tcp: bool, out: &mut Vec<u8>) {
    let edns = msg.edns.as_ref().map(|_| {
        let mut e = Edns::new();
        e.set_max_payload(wire::MAX_UDP_PAYLOAD);
        e
    });
    let meta = response_meta(&msg.metadata, rcode, false);
    let max = if tcp {
        TCP_MAX
    } else {
        udp_limit(edns.as_ref().map(Edns::max_payload))
    };
    if emit(out, &meta, &msg.queries, None, edns.as_ref(), max).is_err() {
        header_only(p, ResponseCode::ServFail, out);
    }
}

/// The slow path: decode with hickory, answer with [`Zone::answer`], encode as hickory-server
/// does. Everything the fast path does not take ends here, so its answers are the gateway's
/// reference behaviour.
pub(super) fn slow(zone: &Zone, req: &Request<'_>, out: &mut Vec<u8>) -> Outcome {
    out.clear();
    let p = req.packet;
    if p.len() < 12 || p[2] & 0x80 != 0 {
        return Outcome::Malformed { replied: false };
    }
    let msg = match Message::from_vec(p) {
        Ok(m) => m,
        Err(_) => {
            header_only(p, ResponseCode::FormErr, out);
            return Outcome::Malformed { replied: true };
        }
    };
    if msg.metadata.op_code != OpCode::Query {
        error_reply(&msg, p, ResponseCode::NotImp, req.tcp, out);
        return Outcome::NotImplemented;
    }
    let [query] = &msg.queries[..] else {
        error_reply(&msg, p, ResponseCode::FormErr, req.tcp, out);
        return Outcome::Malformed { replied: true };
    };
    let ecs = wire::client_subnet(msg.edns.as_ref());
    let placed = placement(zone, req.src, ecs, req.dc);
    let answer = zone.answer(query.name(), query.query_type(), &placed.client, req.params);
    let edns = wire::reply_edns(msg.edns.as_ref(), &placed, answer.per_client);
    let meta = response_meta(&msg.metadata, answer.rcode, answer.authoritative);
    let max = if req.tcp {
        TCP_MAX
    } else {
        udp_limit(edns.as_ref().map(Edns::max_payload))
    };
    let queries = std::slice::from_ref(query);
    if emit(out, &meta, queries, Some(&answer), edns.as_ref(), max).is_err() {
        // hickory-server's answer to a reply it cannot encode.
        let mut m = Metadata::new(msg.metadata.id, MessageType::Response, OpCode::Query);
        m.response_code = ResponseCode::ServFail;
        let _ = emit(out, &m, &[], None, None, wire::MIN_UDP_PAYLOAD);
        return Outcome::Answered {
            rcode: ResponseCode::ServFail,
            qtype: query.query_type(),
            fail_open: answer.fail_open,
        };
    }
    outcome(&answer, query.query_type())
}

/// What the caller counts for an answer.
pub(super) fn outcome(answer: &Answer, qtype: RecordType) -> Outcome {
    if answer.kind == NameKind::Outside {
        Outcome::Outside { qtype }
    } else {
        Outcome::Answered {
            rcode: answer.rcode,
            qtype,
            fail_open: answer.fail_open,
        }
    }
}

/// A cached reply: the whole answer encoded for id 0, RD and CD clear, the lowercase
/// question and no OPT, which the fast path patches and appends per query.
pub(super) struct Built {
    /// The encoded reply.
    pub(super) bytes: Box<[u8]>,
    /// The answer's rcode and counters.
    pub(super) outcome: Outcome,
    /// The answer depends on the client key (the ECS scope widens to the client's prefix).
    pub(super) per_client: bool,
}

/// Builds the cached reply for `name` (lowercase) and `qtype` answered to `client`; `None`
/// when it does not fit one TCP message (such answers are not cached).
pub(super) fn build(
    zone: &Zone,
    name: &Name,
    qtype: RecordType,
    client: &ClientCtx,
    params: QueryParams,
    scratch: &mut Vec<u8>,
) -> Option<Built> {
    let answer = zone.answer(name, qtype, client, params);
    let mut query = Query::query(name.clone(), qtype);
    query.set_query_class(DNSClass::IN);
    let request = Metadata::new(0, MessageType::Query, OpCode::Query);
    let meta = response_meta(&request, answer.rcode, answer.authoritative);
    let header = emit(scratch, &meta, &[query], Some(&answer), None, TCP_MAX).ok()?;
    if header.metadata.truncation {
        return None;
    }
    Some(Built {
        bytes: scratch.as_slice().into(),
        outcome: outcome(&answer, qtype),
        per_client: answer.per_client,
    })
}
