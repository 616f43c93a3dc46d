//! End-to-end tests: `pyxis` servers (and `ns-agent`) as real processes on loopback.
//!
//! Modules:
//! - `store_cluster`: cluster formation, linearizable reads from every node, membership changes.
//! - `store_faults`: kill -9 of the leader, full-cluster restart, catch-up by snapshot install,
//!   a reused address refusing the old cluster's calls.
//! - `store_input`: bad requests are refused with a JSON error and change nothing.
//! - `store_leases`: lease expiry, survival across a leader kill, revoke.
//! - `store_watch`: watches resume across nodes without gap or duplicate; compacted starts.
//! - `naming`: the typed `/v1/services|traffic|datacenters` endpoints: every validation rule is a
//!   400 naming the field with nothing written; registration, filtered listings and deletes.
//! - `mirror`: the `/ns/` mirror follows registrations under leader kills and equals a fresh listing;
//!   it re-lists when its resume point was compacted away.
//! - `cli`: the operator CLI (`pyxis kv`, `pyxis snapshot save|restore`, concurrent `pyxis traffic`).
//! - `agent`: the host agent (`ns-agent`) with real scripts: `health` (admission after passes,
//!   flap-damped health and alerts, hung checks), `changes` (drain before stop, bad files, in-place
//!   changes), `faults` (kill -9, store outage, SIGTERM), `ops` (SIGHUP, maintenance, metrics).
//! - `writer`: a background task that streams puts and records which ones were acknowledged.
//!
//! Each test starts its own processes on its own ports and waits with `harness::eventually`,
//! never with a fixed sleep. The binaries must be built first (`cargo build --workspace --bins`).

mod agent;
mod cli;
mod mirror;
mod naming;
mod store_cluster;
mod store_faults;
mod store_input;
mod store_leases;
mod store_watch;
mod writer;
