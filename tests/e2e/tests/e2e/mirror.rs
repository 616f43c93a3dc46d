//! The `/ns/` mirror (`ns_core::Mirror`) against a real cluster: it follows 1,000 instance
//! registrations and deregistrations while the leader is killed twice and ends equal to a
//! fresh linearizable listing; with the whole cluster down it keeps serving and says it is stale.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use harness::{Cluster, eventually};
use ns_core::{Mirror, MirrorOptions, Snapshot};
use pyxis_client::Client;
use pyxis_client::api::Revision;

/// Instances registered in total; each one with `i % 3 != 0` is deregistered again later.
const INSTANCES: usize = 1000;
/// Services the instances are spread over.
const SERVICES: usize = 5;
/// How far behind its registration an instance is deregistered.
const LAG: usize = 7;
/// Generous bound for a loaded 2-core machine running debug builds.
const LONG: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_follows_registrations_under_leader_kills() {
    let mut c = Cluster::start(3).await.unwrap();
    // Every node's address: they keep their ports across restarts.
    let addrs: Vec<String> = c.ids().iter().map(|id| c.addr(*id).to_owned()).collect();
    // The leader first, so the mirror's watch starts on the node killed first and must move.
    let leader = c.leader().await.unwrap();
    let mut order = vec![c.addr(leader).to_owned()];
    order.extend(c.followers(leader).iter().map(|id| c.addr(*id).to_owned()));
    let mirror = Mirror::start(Client::new(order).unwrap(), MirrorOptions::default());
    eventually(LONG, async || {
        anyhow::ensure!(mirror.status().synced, "not synced: {:?}", mirror.status());
        Ok(())
    })
    .await
    .unwrap();

    let progress = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn(write_all(
        Client::new(addrs.clone()).unwrap(),
        progress.clone(),
    ));
    for at in [INSTANCES / 4, INSTANCES * 3 / 5] {
        eventually(LONG, async || {
            let n = progress.load(Ordering::Relaxed);
            anyhow::ensure!(n >= at, "writer at {n} of {at}");
            Ok(())
        })
        .await
        .unwrap();
        let leader = c.leader().await.unwrap();
        c.kill9(leader).unwrap();
        eprintln!("killed leader {leader} after {at} registrations");
        // A new leader first, so the restarted node rejoins a working cluster.
        c.leader().await.unwrap();
        c.restart(leader).await.unwrap();
    }
    let (model, last_rev, errors) = writer.await.unwrap();
    eprintln!(
        "writer done: last revision {last_rev}, {errors} failed calls retried; mirror {:?}",
        mirror.status()
    );

    // The store itself holds exactly what the writer meant (every call was retried until acked).
    let cl = Client::new(addrs).unwrap();
    let listing = cl.range("/ns/").await.unwrap();
    assert!(listing.revision >= last_rev);
    let stored: BTreeMap<String, String> = listing
        .entries
        .iter()
        .map(|kv| {
            let v = String::from_utf8(kv.value.to_vec()).unwrap();
            (kv.key.clone(), v)
        })
        .collect();
    assert_eq!(
        stored, model,
        "store content differs from the writer's model"
    );

    // The mirror catches up to the listing and then holds exactly the same catalog.
    let fresh = Snapshot::from_listing(&listing);
    assert!(fresh.invalid.is_empty(), "{:?}", fresh.invalid);
    eventually(LONG, async || {
        let status = mirror.status();
        anyhow::ensure!(
            status.revision >= listing.revision,
            "mirror at {status:?}, listing at {}",
            listing.revision
        );
        Ok(())
    })
    .await
    .unwrap();
    let snap = mirror.snapshot();
    assert!(snap.revision <= listing.revision);
    check_equal(&snap, &fresh);
    let live: usize = snap
        .catalog
        .services
        .values()
        .map(|s| s.instances.len())
        .sum();
    assert_eq!(live, INSTANCES.div_ceil(3));

    // Whole cluster down: the mirror keeps the last data and reports itself out of sync.
    for id in c.ids() {
        c.kill9(id).unwrap();
    }
    eventually(LONG, async || {
        let s = mirror.status();
        anyhow::ensure!(!s.synced && s.last_error.is_some(), "still synced: {s:?}");
        Ok(())
    })
    .await
    .unwrap();
    let status = mirror.status();
    assert!(
        status.since_contact.unwrap() >= Duration::from_secs(1),
        "{status:?}"
    );
    assert!(status.revision >= listing.revision);
    check_equal(&mirror.snapshot(), &fresh);
}

/// Registers `INSTANCES` instances and deregisters two thirds of them, plus one definition
/// per service, through a client over every node. Each call is retried until acknowledged.
/// Returns the expected content of `/ns/`, the highest revision acknowledged, and the number
/// of failed calls.
async fn write_all(
    cl: Client,
    progress: Arc<AtomicUsize>,
) -> (BTreeMap<String, String>, Revision, usize) {
    let mut model = BTreeMap::new();
    let mut last = 0;
    let mut errors = 0;
    for s in 0..SERVICES {
        let key = format!("/ns/services/svc{s}");
        let def = format!(r#"{{"owner":"team-{s}","description":"service {s}"}}"#);
        last = last.max(put(&cl, &key, &def, &mut errors).await);
        model.insert(key, def);
    }
    let key_of = |i: usize| format!("/ns/instances/svc{}/inst-{i:04}", i % SERVICES);
    for i in 0..INSTANCES {
        let inst = format!(
            r#"{{"address":"10.{}.{}.{}","port":{},"datacenter":"dc{}","version":"v{}","weight":{},"node":"host-{i}"}}"#,
            i % 2,
            i / 256,
            i % 256,
            8000 + i,
            i % 3,
            i % 4,
            i % 200
        );
        last = last.max(put(&cl, &key_of(i), &inst, &mut errors).await);
        model.insert(key_of(i), inst);
        if i >= LAG && !(i - LAG).is_multiple_of(3) {
            let key = key_of(i - LAG);
            last = last.max(delete(&cl, &key, &mut errors).await);
            model.remove(&key);
        }
        progress.store(i + 1, Ordering::Relaxed);
    }
    for i in INSTANCES - LAG..INSTANCES {
        if !i.is_multiple_of(3) {
            last = last.max(delete(&cl, &key_of(i), &mut errors).await);
            model.remove(&key_of(i));
        }
    }
    (model, last, errors)
}

async fn put(cl: &Client, key: &str, value: &str, errors: &mut usize) -> Revision {
    loop {
        match cl.put(key, value.to_owned()).await {
            Ok(r) => return r.revision,
            Err(e) => {
                *errors += 1;
                eprintln!("put {key}: {e} (retrying)");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn delete(cl: &Client, key: &str, errors: &mut usize) -> Revision {
    loop {
        match cl.delete(key).await {
            Ok(r) => return r.revision,
            Err(e) => {
                *errors += 1;
                eprintln!("delete {key}: {e} (retrying)");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Full equality of content, with a readable message naming the services that differ.
fn check_equal(mirror: &Snapshot, fresh: &Snapshot) {
    if mirror.catalog == fresh.catalog && mirror.invalid == fresh.invalid {
        return;
    }
    let mut diff = Vec::new();
    let names: std::collections::BTreeSet<_> = mirror
        .catalog
        .services
        .keys()
        .chain(fresh.catalog.services.keys())
        .collect();
    for name in names {
        let (m, f) = (
            mirror.catalog.services.get(name),
            fresh.catalog.services.get(name),
        );
        if m != f {
            let ids = |e: Option<&ns_core::ServiceEntry>| {
                e.map(|e| {
                    e.instances
                        .keys()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                })
            };
            diff.push(format!("{name}: mirror {:?} vs list {:?}", ids(m), ids(f)));
        }
    }
    panic!(
        "mirror (revision {}) differs from a fresh listing (revision {}): {diff:?}; datacenters equal: {}; invalid {:?} vs {:?}",
        mirror.revision,
        fresh.revision,
        mirror.catalog.datacenters == fresh.catalog.datacenters,
        mirror.invalid,
        fresh.invalid
    );
}
