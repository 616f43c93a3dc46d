//! The answer path's own cost, without sockets: `Responder::respond` over the peers' bench
//! shape (1,000 services of 5 instances in one datacenter, a 90/10 gray policy on every tenth,
//! clients on 127.0.0.1), for hits and for NXDOMAIN of names never seen before. Prints the
//! thread's CPU time per query (from /proc/thread-self/schedstat, so other processes on the
//! machine change it little), best of `ROUNDS`.
//!   cargo run --release -p ns-core --example respond_cost [QUERIES]

// Printing the figures is what this program is for.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use ns_core::zone::packet::{Request, Responder};
use ns_core::{
    Catalog, Datacenter, DcName, Health, Instance, InstanceId, QueryParams, ServiceName, Snapshot,
    TrafficPolicy, VersionGroup, Zone, ZoneConfig,
};

const ROUNDS: usize = 5;

fn main() {
    let queries: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let zone = zone();
    let hits: Vec<Vec<u8>> = (0..1000)
        .map(|i| packet(&format!("svc{:05}.ns.corp.", i + 1), i as u16))
        .collect();
    // Distinct names, as the peers' query files have: none repeats, so none is cached.
    let nx: Vec<Vec<u8>> = (0..queries)
        .map(|i| packet(&format!("nx{}.ns.corp.", 500_000_000 + i * 7919), i as u16))
        .collect();
    let src: IpAddr = "127.0.0.1".parse().expect("address");
    for (label, packets) in [("hit", &hits), ("nxdomain", &nx)] {
        let mut best = f64::MAX;
        for _ in 0..ROUNDS {
            let mut responder = Responder::new();
            let mut out = Vec::with_capacity(512);
            let mut seed = 0u64;
            let t0 = thread_cpu_ns();
            for i in 0..queries {
                seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let req = Request {
                    packet: &packets[i % packets.len()],
                    src,
                    tcp: false,
                    dc: None,
                    params: QueryParams {
                        now_ms: 1_000_000,
                        seed,
                    },
                };
                std::hint::black_box(responder.respond(&zone, &req, &mut out));
            }
            let ns = (thread_cpu_ns() - t0) as f64 / queries as f64;
            best = best.min(ns);
        }
        println!("{label}: {best:.0} ns CPU per query (best of {ROUNDS} x {queries})");
    }
}

fn zone() -> Zone {
    let mut c = Catalog::default();
    let dc1 = DcName::parse("dc1").expect("dc");
    c.datacenters.insert(
        dc1.clone(),
        Datacenter {
            subnets: vec!["127.0.0.0/8".parse().expect("subnet")],
            fallback: Vec::new(),
        },
    );
    for s in 0..1000 {
        let name = ServiceName::parse(&format!("svc{:05}", s + 1)).expect("name");
        let e = c.service_mut(&name);
        for j in 0..5 {
            let version = if s % 10 == 0 && j % 3 == 0 {
                "v2"
            } else {
                "v1"
            };
            e.instances.insert(
                InstanceId::parse(&format!("i{j}")).expect("id"),
                Instance {
                    address: format!("10.{}.{}.{}", s / 250, s % 250, j + 1)
                        .parse()
                        .expect("ip"),
                    port: 80,
                    datacenter: dc1.clone(),
                    version: version.into(),
                    weight: 100,
                    tags: Vec::new(),
                    meta: BTreeMap::new(),
                    status: Health::Passing,
                    node: format!("h{j}"),
                },
            );
        }
        if s % 10 == 0 {
            e.traffic = Some(TrafficPolicy {
                groups: vec![
                    VersionGroup {
                        version: "v1".into(),
                        weight: 90,
                    },
                    VersionGroup {
                        version: "v2".into(),
                        weight: 10,
                    },
                ],
                ..TrafficPolicy::default()
            });
        }
    }
    let snap = Snapshot {
        catalog: c,
        revision: 7,
        ..Snapshot::default()
    };
    let config = ZoneConfig {
        origin: Name::from_ascii("ns.corp.").expect("origin"),
        ttl: 5,
        max_answers: 64,
    };
    Zone::new(config, Arc::new(snap))
}

/// A plain A query for `name`, as dnsperf sends it (no OPT).
fn packet(name: &str, id: u16) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(
        Name::from_ascii(name).expect("name"),
        RecordType::A,
    ));
    m.to_vec().expect("encode")
}

/// This thread's time on a CPU, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
