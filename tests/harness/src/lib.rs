//! Test harness: runs the real `pyxis` and `ns-agent` binaries as child processes on loopback.
//!
//! Modules:
//! - [`agent`]: [`Agent`], one `ns-agent` process with its config; [`WebhookSink`] for alerts.
//! - [`browser`]: [`Browser`], a headless Chromium session over WebDriver (`chromedriver`).
//! - [`gateway`]: [`Gateway`], one `dns-gateway` process, its DNS and HTTP addresses and metrics.
//! - [`dig`]: run the real `dig` (one question, or thousands with `dig -f`) and parse its answer.
//! - [`binary`]: find a built binary (`$PYXIS_BIN` or the cargo target dir) and run CLI commands.
//! - [`process`]: [`Proc`], a child process whose output is kept and dumped when a test panics.
//! - [`ports`]: reserve free loopback ports for nodes that need fixed addresses.
//! - [`eventually`]: retry an async check until it passes or a deadline expires (no sleeps in tests).
//! - [`acl`]: [`acl::Authed`], calls with a bearer token, bootstrap and token creation.
//! - [`http`]: a thin reqwest wrapper for the `/v1/` API that returns status, headers and body.
//! - [`cluster`]: start, kill, restart and grow a cluster of `pyxis server` processes.
//! - [`proxy`]: a TCP relay in front of one server whose link a test can cut and restore.
//! - [`backend`]: [`Backend`], a tiny HTTP server that answers with its name (proxy tests).
//! - [`nginx`]: [`Nginx`], a real nginx with its own prefix on an ephemeral port, and
//!   [`nginx::tally`] to count which backend answered.
//! - [`haproxy`]: [`Haproxy`], a real HAProxy (master-worker) on an ephemeral port.
//! - [`history`]: record puts and reads with their real-time spans and check the history
//!   (a value applied once at its acknowledged revision, no stale or backward reads).
//!
//! The harness never links the server crate: it drives binaries only as processes and speaks
//! the wire types of `pyxis_client::api`. Assertions belong in the tests, not here.

pub mod acl;
pub mod agent;
pub mod backend;
pub mod binary;
pub mod browser;
pub mod cluster;
pub mod dig;
pub mod eventually;
pub mod gateway;
pub mod haproxy;
pub mod history;
pub mod http;
pub mod nginx;
pub mod ports;
pub mod process;
pub mod proxy;
pub mod tls;

pub use agent::{Agent, WebhookSink, replace_file, write_script};
pub use backend::Backend;
pub use binary::{CmdOutput, bin, run_cmd};
pub use browser::Browser;
pub use cluster::{Cluster, wait_healthy};
pub use dig::{DigAnswer, dig, dig_batch};
pub use eventually::eventually;
pub use gateway::Gateway;
pub use haproxy::Haproxy;
pub use http::{Api, Reply};
pub use nginx::{Nginx, tally};
pub use ports::reserve_ports;
pub use process::Proc;
pub use proxy::Proxy;
pub use tls::Certs;
