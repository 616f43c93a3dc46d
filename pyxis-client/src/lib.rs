//! Client side of the pyxis store: the wire types and an async HTTP client.
//!
//! Modules:
//! - [`api`]: request/response types of the `/v1/` HTTP API, shared with the server.
//!
//! This crate has no openraft, no storage engine and no axum: the agent and the DNS
//! gateway link it without pulling in the server.

pub mod api;
