//! End-to-end tests: `pyxis` servers (and `ns-agent`) as real processes on loopback.
//!
//! Modules:
//! - `acl`: ACL tokens on 3 nodes: every endpoint refused without its role (nothing written),
//!   a revoke seen by every node within 1 s.
//! - `acl_roles`: each role's happy path and the audit history, register tokens bound to their
//!   node, the CLI printing only the secret, `dns-gateway --token`.
//! - `acl_retry`: `acl bootstrap` and `acl token create` whose replies are lost answer the
//!   token stored, one of it, never an unstored secret.
//! - `store_cluster`: cluster formation, linearizable reads from every node, membership changes.
//! - `store_faults`: kill -9 of the leader, full-cluster restart, a large snapshot sent to a new
//!   member, a reused address refusing the old cluster's calls.
//! - `store_purge`: a dead or frozen follower does not stop the leader purging its log; back, it
//!   installs the leader's snapshot.
//! - `store_once`: a write whose reply is lost and that is sent again (by the forwarding node, by a
//!   client with the same request id) applies once.
//! - `store_peer_api`: peer calls need the peer token; forwarded commands are validated as the
//!   API's own; small peer routes have small body limits; a cluster with a token fails over.
//! - `store_conns`: idle, trickling and slow connections are closed; connections over the bound get 503.
//! - `store_damage`: a damaged WAL stops the node (a torn tail does not), a full disk during a log
//!   write exits it, a failing snapshot build is retried while it serves.
//! - `store_input`: bad requests are refused with a JSON error and change nothing.
//! - `store_leases`: lease expiry, survival across a leader kill, revoke.
//! - `store_limits`: read-only txns take no log entry; op and reply caps keep one request from
//!   exhausting the nodes or the log.
//! - `store_health`: `/healthz` and `/v1/cluster` report a member that is behind or leaderless.
//! - `store_truth`: errors and states that tell the truth: `?all=true` to delete every key, a
//!   removed member that says so, clean 413s, watch and `wait_rev` edges, `members add` probing.
//! - `store_watch`: watches resume across nodes without gap or duplicate; compacted starts.
//! - `store_history`: clients put unique values and read on 8 keys under kill -9 and SIGSTOP of
//!   leaders and followers; the history checker finds no double apply, stale or backward read
//!   and no lost write (short here, long via `bench/history.sh`).
//! - `naming`: the typed `/v1/services|traffic|datacenters` endpoints: every validation rule is a
//!   400 naming the field with nothing written; registration, filtered listings and deletes.
//! - `mirror`: the `/ns/` mirror follows registrations under leader kills and equals a fresh listing;
//!   it re-lists when its resume point was compacted away.
//! - `gateway`: `dns-gateway` asked with the real `dig`: every record type and rcode, placement
//!   by source and ECS (scope), `NAME.DC`, NODATA without usable instances, fail-open, TC over
//!   UDP and the whole answer over TCP.
//! - `gateway_policy`: a 10/90 gray split over 2,000 ECS subnets, sticky; a forced shift within
//!   1 s of its PUT and ending at its expiry; a critical instance gone within 1 s.
//! - `gateway_faults`: answering from last known data with the whole store killed (staleness
//!   in `/metrics`); 10,000 malformed packets, then a valid answer.
//! - `console`: the web console at `/ui` in a headless Chromium (WebDriver): services and
//!   instances live, a gray split to the API and `dig` within 1 s, drain with confirmation, the
//!   server's message for a bad weight, a conflict instead of an overwrite; `console_agents`:
//!   the agents page with a real agent, frozen until it goes stale and vanishes.
//! - `console_acl`: the console with ACLs on: the token dialog before any data, the server's
//!   401 for an unknown token and 403 for a `read` token's drain (nothing written), an
//!   operator's drain in the audit page, a revoke making the open page ask again.
//! - `cli`: the operator CLI (`pyxis kv`, `pyxis snapshot save|restore`, concurrent `pyxis traffic`,
//!   `pyxis traffic drain|shift` over an expired policy).
//! - `agent`: the host agent (`ns-agent`) with real scripts: `health` (admission after passes,
//!   flap-damped health and alerts, hung checks), `changes` (drain before stop, bad files, in-place
//!   changes), `faults` (kill -9, store outage, SIGTERM), `ops` (SIGHUP, maintenance, metrics),
//!   `dns` and `dns_forward` (the local DNS with `dig`: the zone, `dns_allow`, store down,
//!   malformed packets, forwarding and its cache), `resolve` (`/v1/resolve`, `wait_rev`) and
//!   `callbacks` (delivery, retry, drop, DELETE).
//! - `writer`: a background task that streams puts and records which ones were acknowledged.
//! - `nemesis`: kills, restarts, pauses and resumes leaders and followers for history tests.
//!
//! Each test starts its own processes on its own ports and waits with `harness::eventually`,
//! never with a fixed sleep. The binaries must be built first (`cargo build --workspace --bins`).

mod acl;
mod acl_retry;
mod acl_roles;
mod agent;
mod cli;
mod console;
mod console_acl;
mod console_agents;
mod gateway;
mod gateway_faults;
mod gateway_policy;
mod mirror;
mod naming;
mod nemesis;
mod store_cluster;
mod store_conns;
mod store_damage;
mod store_faults;
mod store_health;
mod store_history;
mod store_input;
mod store_leases;
mod store_limits;
mod store_once;
mod store_peer_api;
mod store_purge;
mod store_truth;
mod store_watch;
mod tls;
mod writer;
