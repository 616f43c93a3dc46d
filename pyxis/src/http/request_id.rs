//! The request id of a write: the `x-pyxis-request-id` header, or a fresh one.
//!
//! A client that sends the header (every `pyxis_client::Client` write does) may repeat the
//! write as often as it likes: the store applies it once. A write without the header gets
//! an id from this node, so at least the node's own forwarding retries are safe. What the
//! id means to the state machine is in `store::session`.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use pyxis_client::RequestId;
use pyxis_client::request_id::HEADER_REQUEST_ID;

use super::error::ApiError;
use crate::node::Node;

/// The id a write handler proposes its command under.
#[derive(Debug, Clone, Copy)]
pub struct WriteId(pub RequestId);

impl FromRequestParts<Arc<Node>> for WriteId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, node: &Arc<Node>) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all(HEADER_REQUEST_ID).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            if parts.headers.contains_key(HEADER_REQUEST_ID) {
                return Err(ApiError::bad_request(format!(
                    "{HEADER_REQUEST_ID}: give it once"
                )));
            }
            return Ok(WriteId(node.ids.next_id()));
        };
        let text = value.to_str().map_err(|_| {
            ApiError::bad_request(format!("{HEADER_REQUEST_ID}: must be ASCII text"))
        })?;
        text.parse().map(WriteId).map_err(ApiError::bad_request)
    }
}
