//! Client side of the pyxis store: the wire types and an async HTTP client.
//!
//! Modules:
//! - [`api`]: request/response types of the `/v1/` HTTP API, shared with the server.
//! - [`client`]: [`Client`], the async HTTP client, with [`ClientOptions`] and [`GetResult`].
//! - [`error`]: [`Error`], every way a client call can fail, and [`Error::is_retryable`].
//! - [`request_id`]: [`RequestId`], carried by every write and its retries so a repeat applies once.
//! - [`secret`]: the shape of ACL token secrets, and new ones made by the caller.
//! - [`tls`]: the rustls crypto provider and PEM readers for https endpoints.
//! - `retry` (private): endpoint rotation and the retry loop with exponential backoff.
//! - `url` (private): endpoint normalisation and key-to-path percent-encoding.
//!
//! This crate has no openraft, no storage engine and no axum: the agent and the DNS
//! gateway link it without pulling in the server.

pub mod api;
pub mod client;
pub mod error;
pub mod request_id;
mod retry;
pub mod secret;
pub mod tls;
mod url;

pub use client::{
    Client, ClientOptions, GetResult, KeepAlive, LeaseLost, ReadConsistency, SnapshotStream, Watch,
};
pub use error::{Error, Result};
pub use request_id::{IdSource, RequestId};
