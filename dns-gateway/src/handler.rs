//! [`GatewayHandler`]: the thin hickory `RequestHandler` between the wire and
//! `ns_core::zone`. It places the client, asks the zone, and hands the records to hickory,
//! which encodes them (TC when they do not fit the UDP size) and frames them.
//!
//! No logic of its own: names, records and rcodes are `ns_core::zone`'s, the reply's OPT is
//! `ns_core::zone::wire`'s, placement `ns_core::placement`'s. Malformed packets never reach it
//! (hickory answers FORMERR when the header decodes, and drops the rest); a query with no or
//! several questions gets FORMERR here, another opcode NOTIMP. The zone comes from an
//! `ArcSwap`, so the query path takes no lock and does no I/O.

use std::iter;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use hickory_proto::op::{Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use ns_core::zone::wire;
use ns_core::{QueryParams, Zone, place};

use crate::metrics;

/// The gateway's request handler: answers every question from the current [`Zone`].
#[derive(Debug, Clone)]
pub struct GatewayHandler {
    zone: Arc<ArcSwap<Zone>>,
}

impl GatewayHandler {
    /// A handler answering from whatever zone `zone` holds at each query.
    pub fn new(zone: Arc<ArcSwap<Zone>>) -> GatewayHandler {
        GatewayHandler { zone }
    }

    /// A reply with no records and `rcode`, the OPT echoed if the query had one.
    async fn error<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
        rcode: ResponseCode,
    ) -> ResponseInfo {
        let edns = request.edns.as_ref().map(|_| {
            let mut e = hickory_proto::op::Edns::new();
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
impl RequestHandler for GatewayHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let started = Instant::now();
        if request.metadata.op_code != OpCode::Query {
            metrics::query("other", ResponseCode::NotImp, started);
            return self.error(request, response, ResponseCode::NotImp).await;
        }
        let Ok(info) = request.request_info() else {
            metrics::query("other", ResponseCode::FormErr, started);
            return self.error(request, response, ResponseCode::FormErr).await;
        };
        let zone = self.zone.load();
        let query = info.query.original();
        let ecs = wire::client_subnet(request.edns.as_ref());
        let placement = place(&zone.snapshot().catalog.datacenters, info.src.ip(), ecs);
        let params = QueryParams {
            now_ms: now_ms(),
            seed: rand::random(),
        };
        let answer = zone.answer(query.name(), query.query_type(), &placement.client, params);
        if answer.fail_open {
            metrics::fail_open();
        }
        let edns = wire::reply_edns(request.edns.as_ref(), &placement, answer.per_client);
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.authoritative = answer.authoritative;
        meta.response_code = answer.rcode;
        meta.recursion_available = false;
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let msg = builder.build(
            meta,
            answer.answers.iter(),
            answer.authority.iter(),
            iter::empty(),
            answer.additionals.iter(),
        );
        let info = match response.send_response(msg).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, src = %info.src, "reply not sent");
                serve_failed(&request.metadata)
            }
        };
        metrics::query(
            metrics::qtype_label(query.query_type()),
            answer.rcode,
            started,
        );
        info
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
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
