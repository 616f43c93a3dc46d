//! [`AgentHandler`]: the agent's hickory `RequestHandler`, between the wire and the answer
//! logic: the ACL, then `ns_core::zone` for the zone's names, then the [`Forwarder`] for the
//! rest.
//!
//! Like the gateway's handler it has no logic of its own about names: records and rcodes are
//! `ns_core::zone`'s, the reply's OPT `ns_core::zone::wire`'s. It does not place clients:
//! every client of an agent is on its host, so the client context is fixed at start (the
//! agent's datacenter, and a key from the host's own address). Malformed packets never reach
//! it (hickory answers FORMERR when the header decodes, and drops the rest). A zone answer
//! takes no lock and does no I/O (the zone is an `ArcSwap`); only forwarding awaits.

use std::iter;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use ns_core::placement::Placement;
use ns_core::routing::ClientCtx;
use ns_core::zone::{NameKind, wire};
use ns_core::{QueryParams, Zone};

use super::acl::Acl;
use super::forward::Forwarder;
use super::stats::Stats;

/// The local DNS's request handler.
#[derive(Debug, Clone)]
pub struct AgentHandler {
    zone: Arc<ArcSwap<Zone>>,
    /// Where every client of this agent is: its datacenter, its host's key; no ECS scope.
    placement: Placement,
    acl: Arc<Acl>,
    forwarder: Arc<Forwarder>,
    stats: Arc<Stats>,
}

/// The sections and header bits of one reply.
struct Reply<'a> {
    rcode: ResponseCode,
    authoritative: bool,
    answers: &'a [Record],
    authority: &'a [Record],
    additionals: &'a [Record],
}

impl AgentHandler {
    /// A handler answering the zone `zone` holds at each query for `client`, forwarding the
    /// rest, for the clients `acl` allows.
    pub fn new(
        zone: Arc<ArcSwap<Zone>>,
        client: ClientCtx,
        acl: Arc<Acl>,
        forwarder: Arc<Forwarder>,
        stats: Arc<Stats>,
    ) -> AgentHandler {
        let placement = Placement {
            client,
            scope: 0,
            source_prefix: 0,
        };
        AgentHandler {
            zone,
            placement,
            acl,
            forwarder,
            stats,
        }
    }

    /// Sends `reply`, echoing the query's OPT (clamped size; ECS with scope 0, since the
    /// answer does not depend on the client's subnet).
    async fn send<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
        reply: Reply<'_>,
    ) -> ResponseInfo {
        let edns = wire::reply_edns(request.edns.as_ref(), &self.placement, false);
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.authoritative = reply.authoritative;
        meta.response_code = reply.rcode;
        meta.recursion_available = self.forwarder.enabled();
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let msg = builder.build(
            meta,
            reply.answers.iter(),
            reply.authority.iter(),
            iter::empty(),
            reply.additionals.iter(),
        );
        match response.send_response(msg).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, src = %request.src(), "reply not sent");
                serve_failed(&request.metadata)
            }
        }
    }

    /// A reply with no records and `rcode`, the OPT echoed if the query had one.
    async fn error<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
        rcode: ResponseCode,
    ) -> ResponseInfo {
        let edns = request.edns.as_ref().map(|_| {
            let mut e = Edns::new();
            e.set_max_payload(wire::MAX_UDP_PAYLOAD);
            e
        });
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let msg = builder.error_msg(&request.metadata, rcode);
        match response.send_response(msg).await {
            Ok(info) => info,
            Err(_) => serve_failed(&request.metadata),
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for AgentHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response: R,
    ) -> ResponseInfo {
        if !self.acl.allows(request.src().ip()) {
            self.stats.refused_acl();
            self.stats
                .query(RecordType::Unknown(0), ResponseCode::Refused);
            return self.error(request, response, ResponseCode::Refused).await;
        }
        if request.metadata.op_code != OpCode::Query {
            self.stats
                .query(RecordType::Unknown(0), ResponseCode::NotImp);
            return self.error(request, response, ResponseCode::NotImp).await;
        }
        let Ok(info) = request.request_info() else {
            self.stats
                .query(RecordType::Unknown(0), ResponseCode::FormErr);
            return self.error(request, response, ResponseCode::FormErr).await;
        };
        let query = info.query.original();
        let (qname, qtype) = (query.name(), query.query_type());
        let zone = self.zone.load();
        let params = QueryParams {
            now_ms: now_ms(),
            seed: rand::random(),
        };
        let answer = zone.answer(qname, qtype, &self.placement.client, params);
        if answer.kind != NameKind::Outside {
            if answer.fail_open {
                self.stats.fail_open();
            }
            self.stats.query(qtype, answer.rcode);
            let reply = Reply {
                rcode: answer.rcode,
                authoritative: answer.authoritative,
                answers: &answer.answers,
                authority: &answer.authority,
                additionals: &answer.additionals,
            };
            return self.send(request, response, reply).await;
        }
        // Not ours: the zone must not be held across the upstream's wait.
        drop(zone);
        let fwd = self.forwarder.resolve(qname, qtype).await;
        if self.forwarder.enabled() {
            self.stats.forwarded(fwd.rcode, fwd.cached);
        }
        self.stats.query(qtype, fwd.rcode);
        let reply = Reply {
            rcode: fwd.rcode,
            authoritative: false,
            answers: &fwd.answers,
            authority: &fwd.authority,
            additionals: &fwd.additionals,
        };
        self.send(request, response, reply).await
    }
}

/// What the handler reports when a reply could not be sent.
fn serve_failed(request: &Metadata) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(request);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

/// Unix time in milliseconds (policy expiry); a clock before 1970 reads as 0.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
