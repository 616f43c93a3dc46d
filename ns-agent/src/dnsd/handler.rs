//! [`Handler`]: between the socket loops and the answer logic: the ACL, then
//! `ns_core::zone::packet::Responder` (the gateway's fast path) for the zone's names, then the
//! [`Forwarder`] for the rest.
//!
//! It has no logic of its own about names: records, rcodes and the reply bytes of the zone are
//! `ns_core`'s. It does not place clients in a datacenter: the request carries the agent's.
//! The client's key (its sticky gray group) is derived by the responder exactly as at the
//! gateway, from the query's EDNS Client Subnet or else the source address ([`source_of`]): a
//! client on the host's loopback counts as the host, at its advertised address (what the
//! gateway sees when this host asks it); a client elsewhere (a container network in
//! `dns_allow`) by its own address. A zone answer
//! takes no lock and does no I/O (the zone is an `ArcSwap`, the responder is the worker's);
//! only forwarding awaits, and the socket loops run it apart from the zone's answers.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use ns_core::placement::Placement;
use ns_core::routing::ClientCtx;
use ns_core::zone::packet::{Outcome, Request, Responder};
use ns_core::{DcName, QueryParams, Zone};

use super::acl::Acl;
use super::forward::Forwarder;
use super::reply;
use super::stats::Stats;

/// The source address a query from `peer` is keyed by: the host's advertised address for a
/// loopback peer (the host itself), else the peer's own, as the gateway would see it.
pub fn source_of(peer: IpAddr, host: IpAddr) -> IpAddr {
    if peer.is_loopback() { host } else { peer }
}

/// What to do with a packet after [`Handler::answer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send the reply written to `out`.
    Reply,
    /// Send nothing (no header, a response, or garbage from a client outside `dns_allow`).
    Drop,
    /// The name is outside the zone: [`Handler::forward`] the packet.
    Forward,
}

/// The local DNS's query handler, shared by every socket loop.
#[derive(Debug)]
pub struct Handler {
    zone: Arc<ArcSwap<Zone>>,
    /// The agent's datacenter, every client's.
    dc: Option<DcName>,
    /// The host's own address, the source the zone's answers are computed for.
    host: IpAddr,
    /// The client's placement for the forwarded replies' OPT (no ECS scope).
    placement: Placement,
    acl: Acl,
    forwarder: Forwarder,
    stats: Arc<Stats>,
}

impl Handler {
    /// A handler answering the zone `zone` holds at each query for `client` (whose key is
    /// the one of `host`), forwarding the rest, for the clients `acl` allows.
    pub fn new(
        zone: Arc<ArcSwap<Zone>>,
        client: ClientCtx,
        host: IpAddr,
        acl: Acl,
        forwarder: Forwarder,
        stats: Arc<Stats>,
    ) -> Handler {
        Handler {
            zone,
            dc: client.dc.clone(),
            host,
            placement: Placement {
                client,
                scope: 0,
                source_prefix: 0,
            },
            acl,
            forwarder,
            stats,
        }
    }

    /// Answers `packet` from `peer` with the worker's `responder`, writing any reply into
    /// `out`; the caller then sends it, drops the packet, or forwards it.
    pub fn answer(
        &self,
        responder: &mut Responder,
        packet: &[u8],
        peer: IpAddr,
        tcp: bool,
        out: &mut Vec<u8>,
    ) -> Step {
        if !self.acl.allows(peer) {
            self.stats.refused_acl();
            if !reply::refused(packet, tcp, out) {
                return Step::Drop;
            }
            self.stats
                .query(RecordType::Unknown(0), ResponseCode::Refused);
            return Step::Reply;
        }
        let zone = self.zone.load();
        let req = Request {
            packet,
            src: source_of(peer, self.host),
            tcp,
            dc: self.dc.as_ref(),
            params: QueryParams {
                now_ms: now_ms(),
                seed: rand::random(),
            },
        };
        match responder.respond(&zone, &req, out) {
            Outcome::Answered {
                rcode,
                qtype,
                fail_open,
            } => {
                if fail_open {
                    self.stats.fail_open();
                }
                self.stats.query(qtype, rcode);
                Step::Reply
            }
            Outcome::Outside { .. } => Step::Forward,
            Outcome::Malformed { replied: true } => {
                self.stats
                    .query(RecordType::Unknown(0), ResponseCode::FormErr);
                Step::Reply
            }
            Outcome::Malformed { replied: false } => Step::Drop,
            Outcome::NotImplemented => {
                self.stats
                    .query(RecordType::Unknown(0), ResponseCode::NotImp);
                Step::Reply
            }
        }
    }

    /// The reply to `packet`, a query [`Handler::answer`] found outside the zone: the
    /// upstreams' answer (or the cache's); `None` if it no longer decodes.
    pub async fn forward(&self, packet: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let query = Message::from_vec(packet).ok()?;
        let question = query.queries.first()?;
        let (name, qtype) = (question.name(), question.query_type());
        let fwd = self.forwarder.resolve(name, qtype).await;
        if self.forwarder.enabled() {
            self.stats.forwarded(fwd.rcode, fwd.cached);
        }
        self.stats.query(qtype, fwd.rcode);
        let mut out = Vec::new();
        reply::forwarded(
            &query,
            &fwd,
            &self.placement,
            self.forwarder.enabled(),
            tcp,
            &mut out,
        );
        Some(out)
    }
}

/// Unix time in milliseconds (policy expiry); a clock before 1970 reads as 0.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
