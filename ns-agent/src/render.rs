//! Config templates: files rendered from the mirror with Tera, installed atomically, checked
//! and reloaded (confd / consul-template style).
//!
//! Modules:
//! - [`spec`]: the `[[templates]]` block and its checks.
//! - [`functions`]: the template functions and filters, over one render's inputs.
//! - [`deps`]: what a render read, and whether a change touches it.
//! - [`engine`]: one compiled template; render errors with `file:line:column`.
//! - [`debounce`]: `wait.min` / `wait.max`.
//! - [`write`]: temp file, fsync, rename; restoring the previous file.
//! - [`group`]: the pipeline of one service's templates (render, check, reload, roll back).
//! - [`manager`]: one group task per declared group.
//! - [`once`]: `ns-agent render --once`.
//!
//! Data comes only from the agent's mirror and config-key copy, never from a store call per
//! render; the mirror itself is `ns_core::mirror`, the config keys `crate::kv`.

pub mod debounce;
pub mod deps;
pub mod engine;
pub mod functions;
pub mod group;
pub mod manager;
pub mod once;
pub mod spec;
pub mod write;

pub use engine::{Compiled, RenderError};
pub use group::GroupDef;
pub use spec::TemplateSpec;
