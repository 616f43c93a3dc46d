//! The per-host agent of pyxis: it registers this host's services from description files,
//! runs their lifecycle scripts, health-checks them, and never puts an unhealthy instance into
//! traffic.
//!
//! Modules:
//! - [`agent`]: [`run`], the process wired together, and its signals.
//! - [`config`]: [`AgentConfig`], the agent's own `agent.toml`.
//! - [`service_file`]: description files, [`ServiceSpec`] and [`ServiceFileError`].
//! - [`directory`]: watches the services directory and keeps one lifecycle per service.
//! - [`lifecycle`]: one service's start, admission, checks, re-registration, drain and stop.
//! - [`supervisor`]: runs one script in its own process group, with a timeout and bounded output.
//! - [`health`]: exit codes to health, and flap damping ([`health::Tracker`]).
//! - [`registrar`]: the agent's lease and the one writer of its registrations.
//! - [`publish`]: the agent's status record (`/ns/agents/NODE`) on its lease, on change only.
//! - [`alert`]: the alert payload, command and webhook.
//! - [`maintenance`]: maintenance mode, persisted next to the config.
//! - [`status`]: the status board behind `GET /v1/agent/status`.
//! - [`http_api`]: the local HTTP API (status, metrics, maintenance).
//! - [`metrics`]: the Prometheus recorder.
//! - [`render`]: config templates over the mirror: render, install, check, reload.
//! - [`kv`]: the copy of the config keys templates read.
//! - [`dnsd`]: the local DNS: the zone from the mirror, other names forwarded, `dns_allow`.
//! - [`resolve`]: a name's policy-applied list for this agent, and since when it holds.
//! - [`callbacks`]: URLs the agent POSTs a name's list to on every change.
//! - [`cli`]: the one-shot commands `validate`, `status`, `maint` and `render --once`.
//! - `toml_span` (private): lines and fields of TOML errors; durations.
//!
//! The agent talks to the store only through `pyxis-client` and reads the naming model from
//! `ns-core`; it never links the store server or openraft. It keeps one mirror of `/ns/`
//! (`ns_core::Mirror`), shared by everything that reads the naming model: templates, the
//! local DNS, `/v1/resolve` and callbacks.

pub mod agent;
pub mod alert;
pub mod callbacks;
pub mod cli;
pub mod config;
pub mod directory;
pub mod dnsd;
pub mod health;
pub mod http_api;
pub mod kv;
pub mod lifecycle;
pub mod maintenance;
pub mod metrics;
pub mod publish;
pub mod registrar;
pub mod render;
pub mod resolve;
pub mod service_file;
pub mod status;
pub mod supervisor;
mod toml_span;

pub use agent::{RunOptions, run, shutdown_on_signals};
pub use config::{AgentConfig, ConfigError};
pub use service_file::{ServiceFileError, ServiceSpec};
