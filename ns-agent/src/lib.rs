//! The per-host agent of pyxis: it registers this host's services from description files,
//! runs their lifecycle scripts, health-checks them, and never puts an unhealthy instance into
//! traffic.
//!
//! Modules:
//! - [`cli`]: the one-shot commands `validate`, `status` and `maint`.
//! - [`config`]: [`AgentConfig`], the agent's own `agent.toml`.
//! - [`health`]: exit codes to health, and flap damping ([`health::Tracker`]).
//! - [`service_file`]: description files, [`ServiceSpec`] and [`ServiceFileError`].
//! - [`supervisor`]: runs one script in its own process group, with a timeout and bounded output.
//! - `toml_span` (private): lines and fields of TOML errors; durations.
//!
//! The agent talks to the store only through `pyxis-client` and reads the naming model from
//! `ns-core`; it never links the store server or openraft.

pub mod cli;
pub mod config;
pub mod health;
pub mod service_file;
pub mod supervisor;
mod toml_span;

pub use config::{AgentConfig, ConfigError};
pub use service_file::{ServiceFileError, ServiceSpec};
