//! One node of the pyxis replicated store, and the operator CLI.
//!
//! Modules:
//! - `store`: the key space (map, revisions, commands), pure and deterministic.
//! - `raft`: openraft glue: durable log, state machine, snapshots, peer RPC.
//! - `node`: a running node (`start_node`) and the write/read paths handlers use.
//! - `cluster`: membership listing and runtime changes; `cluster_id`: which cluster a node
//!   belongs to, checked on every peer call; `peer_token`: the secret that admits a peer call.
//! - `lease_timer`: lease expiry on the leader, committed through Raft.
//! - `member_started`: a member with an empty data dir that peers know as started refuses to start.
//! - `removal`: a member removed from the cluster notices, says so and stops serving clients.
//! - `snapshot_policy`: when a node builds a snapshot (scaled with the state).
//! - `acl`: tokens' secrets and hashes, the route table per role, the request's caller.
//! - `http`: the router: client API, operator routes, peer RPC.
//! - `tls`: the node's TLS (server config, peer transport) from `--tls-cert/key/ca`.
//! - `metrics`: Prometheus recorder, Raft gauges, HTTP middleware.
//! - `config`: node settings; `restore`: building a data dir from a backup.
//! - `cli`: the client subcommands of the `pyxis` binary.

pub mod acl;
pub mod cli;
pub mod cluster;
pub mod cluster_id;
pub mod config;
pub mod health;
pub mod heap;
pub mod http;
pub mod lease_timer;
pub mod member_started;
pub mod metrics;
pub mod node;
pub mod peer_token;
pub mod raft;
pub mod removal;
pub mod restore;
pub mod snapshot_policy;
pub mod store;
pub mod tls;
