//! The replies the local DNS encodes itself, with hickory-proto: a forwarded answer and the
//! REFUSED of a client outside `dns_allow`. Zone answers are `ns_core::zone::packet`'s.
//!
//! Both are encoded as hickory-server's response builder did before the fast path (question
//! echoed, OPT echoed with the clamped size and a scope-0 ECS, TC when the records do not fit
//! the UDP size), so moving the zone's names to the fast path changed nothing for the rest.

use hickory_proto::op::{
    Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode, emit_message_parts,
};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;
use ns_core::placement::Placement;
use ns_core::zone::wire;

use super::cache::Forwarded;

/// Writes into `out` the reply to `query` (a decoded question outside the zone) carrying
/// `fwd`, with RA when `recursion` (an upstream is configured).
pub fn forwarded(
    query: &Message,
    fwd: &Forwarded,
    placement: &Placement,
    recursion: bool,
    tcp: bool,
    out: &mut Vec<u8>,
) {
    // The answer is the upstream's, the same for every client: ECS scope 0.
    let edns = wire::reply_edns(query.edns.as_ref(), placement, false);
    let mut meta = Metadata::response_from_request(&query.metadata);
    meta.response_code = fwd.rcode;
    meta.authoritative = false;
    meta.recursion_available = recursion;
    let sections = Sections {
        answers: &fwd.answers,
        authority: &fwd.authority,
        additionals: &fwd.additionals,
    };
    encode(query, &meta, sections, edns.as_ref(), tcp, out);
}

/// Writes into `out` a REFUSED for `packet` (question and OPT echoed, no records); `false`
/// when the packet is not a query that decodes, which gets no reply at all.
pub fn refused(packet: &[u8], tcp: bool, out: &mut Vec<u8>) -> bool {
    out.clear();
    let Ok(query) = Message::from_vec(packet) else {
        return false;
    };
    if query.metadata.message_type != MessageType::Query {
        return false;
    }
    let edns = query.edns.as_ref().map(|_| {
        let mut e = Edns::new();
        e.set_max_payload(wire::MAX_UDP_PAYLOAD);
        e
    });
    let mut meta = Metadata::response_from_request(&query.metadata);
    meta.response_code = ResponseCode::Refused;
    let sections = Sections {
        answers: &[],
        authority: &[],
        additionals: &[],
    };
    encode(&query, &meta, sections, edns.as_ref(), tcp, out);
    true
}

/// The record sections of one reply.
struct Sections<'a> {
    answers: &'a [Record],
    authority: &'a [Record],
    additionals: &'a [Record],
}

/// Encodes a reply within the transport's size (TC set by hickory when it does not fit); one
/// that cannot be encoded at all becomes a bare SERVFAIL, as hickory-server sent.
fn encode(
    query: &Message,
    meta: &Metadata,
    sections: Sections<'_>,
    edns: Option<&Edns>,
    tcp: bool,
    out: &mut Vec<u8>,
) {
    let max = if tcp {
        u16::MAX
    } else {
        edns.map_or(wire::MIN_UDP_PAYLOAD, |e| {
            e.max_payload()
                .clamp(wire::MIN_UDP_PAYLOAD, wire::MAX_UDP_PAYLOAD)
        })
    };
    out.clear();
    let mut enc = BinEncoder::new(out);
    enc.set_max_size(max);
    let encoded = emit_message_parts(
        meta,
        &mut query.queries.iter(),
        &mut sections.answers.iter(),
        &mut sections.authority.iter(),
        &mut sections.additionals.iter(),
        edns,
        None,
        &mut enc,
    );
    if encoded.is_err() {
        let mut m = Metadata::new(query.metadata.id, MessageType::Response, OpCode::Query);
        m.response_code = ResponseCode::ServFail;
        out.clear();
        let mut enc = BinEncoder::new(out);
        // A bare header always encodes.
        let (no_queries, none): (&[Query], &[Record]) = (&[], &[]);
        let _ = emit_message_parts(
            &m,
            &mut no_queries.iter(),
            &mut none.iter(),
            &mut none.iter(),
            &mut none.iter(),
            None,
            None,
            &mut enc,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use hickory_proto::rr::{Name, RData, RecordType, rdata::A};
    use ns_core::routing::ClientCtx;

    use super::*;

    fn query(edns: bool) -> Message {
        let mut m = Message::query();
        m.metadata.id = 77;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(
            Name::from_str("example.org.").unwrap(),
            RecordType::A,
        ));
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(4096);
            m.edns = Some(e);
        }
        m
    }

    fn placement() -> Placement {
        Placement {
            client: ClientCtx { dc: None, key: 1 },
            scope: 0,
            source_prefix: 0,
        }
    }

    #[test]
    fn a_forwarded_answer_keeps_the_question_and_sets_ra_without_aa() {
        let q = query(true);
        let mut fwd = Forwarded::empty(ResponseCode::NoError);
        fwd.answers.push(Record::from_rdata(
            Name::from_str("example.org.").unwrap(),
            60,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        let mut out = Vec::new();
        forwarded(&q, &fwd, &placement(), true, false, &mut out);
        let r = Message::from_vec(&out).unwrap();
        assert_eq!(r.metadata.id, 77);
        assert!(r.metadata.recursion_available && r.metadata.recursion_desired);
        assert!(!r.metadata.authoritative);
        assert_eq!(r.queries, q.queries);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(
            r.edns.unwrap().max_payload(),
            wire::MAX_UDP_PAYLOAD,
            "size clamped"
        );
    }

    #[test]
    fn a_forwarded_answer_too_large_for_udp_is_truncated() {
        let q = query(false);
        let mut fwd = Forwarded::empty(ResponseCode::NoError);
        for i in 0..60u8 {
            fwd.answers.push(Record::from_rdata(
                Name::from_str("a-rather-long-label-to-fill-the-packet.example.org.").unwrap(),
                60,
                RData::A(A::new(192, 0, 2, i)),
            ));
        }
        let mut out = Vec::new();
        forwarded(&q, &fwd, &placement(), true, false, &mut out);
        assert!(out.len() <= 512);
        assert!(Message::from_vec(&out).unwrap().metadata.truncation);
        forwarded(&q, &fwd, &placement(), true, true, &mut out);
        let whole = Message::from_vec(&out).unwrap();
        assert!(!whole.metadata.truncation);
        assert_eq!(whole.answers.len(), 60, "TCP carries the whole answer");
    }

    #[test]
    fn refusals_echo_the_question_and_garbage_gets_nothing() {
        let q = query(true);
        let mut out = Vec::new();
        assert!(refused(&q.to_vec().unwrap(), false, &mut out));
        let r = Message::from_vec(&out).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);
        assert_eq!(r.queries, q.queries);
        assert!(r.edns.is_some());
        assert!(!refused(&[1, 2, 3], false, &mut out));
        assert!(out.is_empty());
    }
}
