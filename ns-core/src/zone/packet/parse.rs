//! The strict hand parser of the fast path: the header, the one question and an optional OPT
//! with its client subnet, read straight from the packet without allocating.
//!
//! Strict means it accepts only what it can answer exactly as the hickory path would, and
//! says [`Parse::Slow`] for everything else (other opcodes or classes, compression pointers
//! or several questions, records besides one OPT, EDNS versions above 0, options it does not
//! know, trailing bytes); the slow path then decides, FORMERR included. It never builds a
//! reply: that is `packet.rs` and `encode.rs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest name on the wire, terminal zero included (RFC 1035 2.3.4).
pub(super) const NAME_MAX: usize = 255;
/// Longest cache key: the query type then the lowercase wire name.
pub(super) const KEY_MAX: usize = 2 + NAME_MAX;

const HEADER: usize = 12;
const TYPE_OPT: u16 = 41;
const OPTION_ECS: u16 = 8;
const OPTION_COOKIE: u16 = 10;
const OPTION_PADDING: u16 = 12;

/// What the parser made of a packet.
pub(super) enum Parse<'p> {
    /// A plain query the fast path answers.
    Fast(Question<'p>),
    /// Readable, but not plain enough: the slow path answers it.
    Slow,
    /// No reply at all: shorter than a header, or itself a response (replying to responses
    /// would let two servers ping-pong forever).
    Drop,
}

/// A plain query.
pub(super) struct Question<'p> {
    /// The query id, echoed.
    pub(super) id: u16,
    /// Recursion desired, echoed.
    pub(super) rd: bool,
    /// Checking disabled, echoed.
    pub(super) cd: bool,
    /// The question as sent (name, type, class), echoed byte for byte so the case is kept.
    pub(super) wire: &'p [u8],
    /// The query type.
    pub(super) qtype: u16,
    /// The OPT record, if the query had one.
    pub(super) edns: Option<Opt<'p>>,
}

/// The query's OPT record, as far as the reply depends on it.
pub(super) struct Opt<'p> {
    /// The UDP payload size the client offers.
    pub(super) payload: u16,
    /// The client subnet option, if any.
    pub(super) ecs: Option<Ecs<'p>>,
}

/// An EDNS Client Subnet option (RFC 7871).
pub(super) struct Ecs<'p> {
    /// The address, zero-padded past the bytes sent.
    pub(super) addr: IpAddr,
    /// The source prefix length.
    pub(super) source: u8,
    /// Family (2 bytes) and address bytes as sent, echoed in the reply around the new scope.
    pub(super) family: u16,
    /// The address bytes as sent.
    pub(super) addr_bytes: &'p [u8],
}

/// Query types the fast path answers; others (zone transfers, meta types, anything new) take
/// the slow path, whose answer they keep.
fn fast_type(t: u16) -> bool {
    matches!(t, 1 | 2 | 5 | 6 | 12 | 15 | 16 | 28 | 33 | 255)
}

fn u16_at(p: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]))
}

/// Parses `p`, writing the cache key (type, lowercase name) into `key` and its length into
/// `key_len` when the answer is [`Parse::Fast`].
pub(super) fn parse<'p>(p: &'p [u8], key: &mut [u8; KEY_MAX], key_len: &mut usize) -> Parse<'p> {
    if p.len() < HEADER || p[2] & 0x80 != 0 {
        return Parse::Drop;
    }
    let (flags, flags2) = (p[2], p[3]);
    // Opcode QUERY and no TC; counts: one question, nothing but at most one OPT after it.
    let counts = [u16_at(p, 4), u16_at(p, 6), u16_at(p, 8), u16_at(p, 10)];
    if flags & 0x7a != 0 || counts[..3] != [Some(1), Some(0), Some(0)] {
        return Parse::Slow;
    }
    let additional = counts[3].unwrap_or(0);
    if additional > 1 {
        return Parse::Slow;
    }
    let mut pos = HEADER;
    let mut k = 2;
    loop {
        let Some(&len) = p.get(pos) else {
            return Parse::Slow;
        };
        let len = usize::from(len);
        if len & 0xc0 != 0 {
            // A compression pointer (or an extended label type) in the question.
            return Parse::Slow;
        }
        if k + 1 + len > KEY_MAX {
            return Parse::Slow;
        }
        let Some(label) = p.get(pos + 1..pos + 1 + len) else {
            return Parse::Slow;
        };
        key[k] = len as u8;
        for (dst, b) in key[k + 1..k + 1 + len].iter_mut().zip(label) {
            *dst = b.to_ascii_lowercase();
        }
        k += 1 + len;
        pos += 1 + len;
        if len == 0 {
            break;
        }
    }
    let (Some(qtype), Some(qclass)) = (u16_at(p, pos), u16_at(p, pos + 2)) else {
        return Parse::Slow;
    };
    if qclass != 1 || !fast_type(qtype) {
        return Parse::Slow;
    }
    let wire = &p[HEADER..pos + 4];
    pos += 4;
    let edns = if additional == 1 {
        match opt(p, &mut pos) {
            Some(o) => Some(o),
            None => return Parse::Slow,
        }
    } else {
        None
    };
    if pos != p.len() {
        return Parse::Slow;
    }
    key[..2].copy_from_slice(&qtype.to_be_bytes());
    *key_len = k;
    Parse::Fast(Question {
        id: u16::from_be_bytes([p[0], p[1]]),
        rd: flags & 0x01 != 0,
        cd: flags2 & 0x10 != 0,
        wire,
        qtype,
        edns,
    })
}

/// The OPT record at `pos`: root owner, version 0, well-formed options of the kinds the
/// reply does not depend on, at most one client subnet.
fn opt<'p>(p: &'p [u8], pos: &mut usize) -> Option<Opt<'p>> {
    let at = *pos;
    if *p.get(at)? != 0 || u16_at(p, at + 1)? != TYPE_OPT {
        return None;
    }
    let payload = u16_at(p, at + 3)?;
    // TTL: extended rcode, version, flags; the reply needs rcode 0 and version 0.
    if *p.get(at + 5)? != 0 || *p.get(at + 6)? != 0 {
        return None;
    }
    let rdlen = usize::from(u16_at(p, at + 9)?);
    let rdata = p.get(at + 11..at + 11 + rdlen)?;
    *pos = at + 11 + rdlen;
    let mut ecs = None;
    let mut i = 0;
    while i < rdata.len() {
        let code = u16_at(rdata, i)?;
        let len = usize::from(u16_at(rdata, i + 2)?);
        let data = rdata.get(i + 4..i + 4 + len)?;
        i += 4 + len;
        match code {
            OPTION_ECS if ecs.is_none() => ecs = Some(client_subnet(data)?),
            OPTION_COOKIE if len == 8 || (16..=40).contains(&len) => {}
            OPTION_PADDING => {}
            _ => return None,
        }
    }
    Some(Opt { payload, ecs })
}

/// A client subnet option whose length matches its source prefix exactly.
fn client_subnet(data: &[u8]) -> Option<Ecs<'_>> {
    let family = u16_at(data, 0)?;
    let source = *data.get(2)?;
    let max = match family {
        1 => 32,
        2 => 128,
        _ => return None,
    };
    if source > max {
        return None;
    }
    let n = usize::from(source).div_ceil(8);
    let addr_bytes = data.get(4..)?;
    if addr_bytes.len() != n {
        return None;
    }
    let addr = if family == 1 {
        let mut o = [0u8; 4];
        o[..n].copy_from_slice(addr_bytes);
        IpAddr::V4(Ipv4Addr::from(o))
    } else {
        let mut o = [0u8; 16];
        o[..n].copy_from_slice(addr_bytes);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    Some(Ecs {
        addr,
        source,
        family,
        addr_bytes,
    })
}
