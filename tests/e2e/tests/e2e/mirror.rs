//! The `/ns/` mirror (`ns_core::Mirror`) against real `pyxis` processes:
//! - under load: it follows 1,000 instance registrations and deregistrations while the leader
//!   is killed twice and ends equal to a fresh linearizable listing; with the whole cluster
//!   down it keeps serving and says it is stale;
//! - after a gap: cut off from its node (through a [`harness::Proxy`]) while the node is
//!   restarted and more changes are written than `--watch-history` keeps, its watch gives up,
//!   its resume is refused with 410, and it re-lists and again equals a fresh listing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use harness::{Cluster, Proxy, eventually};
use ns_core::{Mirror, MirrorOptions, Snapshot};
use pyxis_client::api::{RangeResponse, Revision};
use pyxis_client::{Client, ClientOptions, Error};

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
    // The mirror catches up to that listing and then holds exactly the same catalog.
    let cl = Client::new(addrs).unwrap();
    let listing = wait_converged(&mirror, &cl, &model).await;
    assert!(listing.revision >= last_rev);
    let fresh = Snapshot::from_listing(&listing);
    let snap = mirror.snapshot();
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
    wait_out_of_sync(&mirror).await;
    let status = mirror.status();
    assert!(
        status.since_contact.unwrap() >= Duration::from_secs(1),
        "{status:?}"
    );
    assert!(status.revision >= listing.revision);
    check_equal(&mirror.snapshot(), &fresh);
}

/// Events the node of [`mirror_relists_after_its_resume_point_is_compacted`] keeps for
/// watches (`--watch-history`).
const HISTORY: usize = 16;

/// A mirror whose watch was down while its node restarted and then took more changes than
/// its watch history keeps re-lists and converges. Cut off from the node by a proxy, the
/// mirror's watch gives up (status: not synced, with the error); the node is killed and
/// restarted; registrations, deregistrations, an update and a service delete, several times
/// `HISTORY` events, are written directly; the node is checked to answer 410 `compacted` to
/// the mirror's resume revision, so the re-list is certain, not likely. Once the link is back,
/// the mirror's resume is refused, it lists `/ns/` a second time (`status().listings`), says
/// it is synced again and holds exactly a fresh linearizable listing, deletes made in the gap
/// included. Before the cut, fewer changes than the history keeps are followed by the watch
/// alone, without a re-list.
///
/// The restart alone would not compact the resume point: the node replays its Raft log at
/// start-up and so refills its history. The writes beyond `--watch-history` while the mirror
/// cannot see them are what make the 410 certain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_relists_after_its_resume_point_is_compacted() {
    let history = HISTORY.to_string();
    // A one-node cluster rather than `Cluster::single`: its port is claimed for the test, so
    // the restart gets it back even with other tests starting servers meanwhile.
    let mut c = Cluster::start_with(1, &["--watch-history", &history])
        .await
        .unwrap();
    let direct = Client::new(vec![c.addr(1).to_owned()]).unwrap();
    let mut w = Recorder::new(direct.clone());

    // Listed by the mirror when it starts: every service and 30 instances.
    for s in 0..SERVICES {
        let (key, def) = service_def(s);
        w.put(key, def).await;
    }
    for i in 0..30 {
        w.put(instance_key(i), instance_value(i)).await;
    }
    let proxy = Proxy::start(c.addr(1)).await.unwrap();
    // A short retry budget, so that the watch gives up soon after the cut.
    let via_proxy = Client::with_options(
        vec![proxy.addr().to_owned()],
        ClientOptions::default().retry_budget(Duration::from_secs(2)),
    )
    .unwrap();
    let mirror = Mirror::start(via_proxy, MirrorOptions::default());
    wait_converged(&mirror, &direct, &w.model).await;
    assert_eq!(mirror.status().listings, 1, "{:?}", mirror.status());

    // Ten changes, fewer than the history keeps: followed through the watch.
    for i in 30..35 {
        w.put(instance_key(i), instance_value(i)).await;
    }
    for i in 0..5 {
        w.delete(instance_key(i)).await;
    }
    wait_converged(&mirror, &direct, &w.model).await;
    assert_eq!(mirror.status().listings, 1, "{:?}", mirror.status());

    // Cut off: the mirror's watch breaks, retries through the proxy and gives up.
    proxy.cut();
    wait_out_of_sync(&mirror).await;
    let cut = mirror.status();
    eprintln!("mirror cut off: {cut:?}");
    // The mirror resumes its watch right after the revision it is current up to.
    let resume = cut.revision + 1;

    // The node restarts, then takes far more changes than its history keeps.
    c.kill9(1).unwrap();
    c.restart(1).await.unwrap();
    c.leader().await.unwrap();
    for i in 35..35 + 2 * HISTORY {
        w.put(instance_key(i), instance_value(i)).await;
    }
    for i in (5..30).filter(|i| i % 3 != 0) {
        w.delete(instance_key(i)).await;
    }
    // Changed registrations (another address and port).
    for i in 30..35 {
        w.put(instance_key(i), instance_value(i + 500)).await;
    }
    w.delete(service_def(SERVICES - 1).0).await;

    // The mirror's resume point is gone from the node's history: its resume will get 410.
    match direct
        .watch("/ns/", true, Some(resume))
        .unwrap()
        .next()
        .await
    {
        Err(Error::Compacted { revision }) => {
            assert!(revision >= resume, "compacted up to {revision} only")
        }
        other => panic!("expected 410 compacted for from_rev {resume}, got {other:?}"),
    }
    // The mirror saw nothing of it.
    let status = mirror.status();
    assert!(!status.synced && status.listings == 1, "{status:?}");
    assert_eq!(status.revision, cut.revision, "{status:?}");

    // Link back: 410 on resume, a second listing, synced, equal to a fresh listing.
    proxy.restore();
    let listing = wait_converged(&mirror, &direct, &w.model).await;
    let status = mirror.status();
    eprintln!(
        "mirror after the gap: {status:?}; {} failed calls retried",
        w.errors
    );
    assert!(status.listings >= 2, "no re-list: {status:?}");
    assert!(status.last_error.is_none(), "{status:?}");
    assert!(status.revision >= listing.revision, "{status:?}");
    let live: usize = mirror
        .snapshot()
        .catalog
        .services
        .values()
        .map(|s| s.instances.len())
        .sum();
    assert_eq!(
        live,
        w.model
            .keys()
            .filter(|k| k.starts_with("/ns/instances/"))
            .count()
    );
}

/// Writes through one client, each retried until acknowledged, and the content of `/ns/`
/// they should leave.
struct Recorder {
    cl: Client,
    model: BTreeMap<String, String>,
    /// Failed calls that were retried.
    errors: usize,
}

impl Recorder {
    fn new(cl: Client) -> Recorder {
        Recorder {
            cl,
            model: BTreeMap::new(),
            errors: 0,
        }
    }

    async fn put(&mut self, key: String, value: String) {
        put(&self.cl, &key, &value, &mut self.errors).await;
        self.model.insert(key, value);
    }

    async fn delete(&mut self, key: String) {
        delete(&self.cl, &key, &mut self.errors).await;
        self.model.remove(&key);
    }
}

/// Checks that the store holds exactly `model` under `/ns/` (linearizable listing), then
/// waits until `mirror` is synced, current up to that listing and equal to it in content.
/// Returns the listing.
async fn wait_converged(
    mirror: &Mirror,
    cl: &Client,
    model: &BTreeMap<String, String>,
) -> RangeResponse {
    let listing = cl.range("/ns/").await.unwrap();
    assert_eq!(
        &contents(&listing),
        model,
        "store content differs from the writer's model"
    );
    let fresh = Snapshot::from_listing(&listing);
    assert!(fresh.invalid.is_empty(), "{:?}", fresh.invalid);
    eventually(LONG, async || {
        let status = mirror.status();
        anyhow::ensure!(
            status.synced && status.revision >= listing.revision,
            "mirror at {status:?}, listing at {}",
            listing.revision
        );
        // Compared inside the retry: the status may run ahead of the published snapshot.
        differences(&mirror.snapshot(), &fresh).map_err(anyhow::Error::msg)
    })
    .await
    .unwrap();
    listing
}

/// Keys and values of a listing, as text.
fn contents(listing: &RangeResponse) -> BTreeMap<String, String> {
    listing
        .entries
        .iter()
        .map(|kv| {
            let v = String::from_utf8(kv.value.to_vec()).unwrap();
            (kv.key.clone(), v)
        })
        .collect()
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
        let (key, def) = service_def(s);
        last = last.max(put(&cl, &key, &def, &mut errors).await);
        model.insert(key, def);
    }
    for i in 0..INSTANCES {
        let inst = instance_value(i);
        last = last.max(put(&cl, &instance_key(i), &inst, &mut errors).await);
        model.insert(instance_key(i), inst);
        if i >= LAG && !(i - LAG).is_multiple_of(3) {
            let key = instance_key(i - LAG);
            last = last.max(delete(&cl, &key, &mut errors).await);
            model.remove(&key);
        }
        progress.store(i + 1, Ordering::Relaxed);
    }
    for i in INSTANCES - LAG..INSTANCES {
        if !i.is_multiple_of(3) {
            last = last.max(delete(&cl, &instance_key(i), &mut errors).await);
            model.remove(&instance_key(i));
        }
    }
    (model, last, errors)
}

/// Key and definition of service `svc{s}`.
fn service_def(s: usize) -> (String, String) {
    (
        format!("/ns/services/svc{s}"),
        format!(r#"{{"owner":"team-{s}","description":"service {s}"}}"#),
    )
}

/// Key of instance `i` (of service `svc{i % SERVICES}`).
fn instance_key(i: usize) -> String {
    format!("/ns/instances/svc{}/inst-{i:04}", i % SERVICES)
}

/// A valid registration of instance `i`.
fn instance_value(i: usize) -> String {
    format!(
        r#"{{"address":"10.{}.{}.{}","port":{},"datacenter":"dc{}","version":"v{}","weight":{},"node":"host-{i}"}}"#,
        i % 2,
        i / 256,
        i % 256,
        8000 + i,
        i % 3,
        i % 4,
        i % 200
    )
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
    if let Err(e) = differences(mirror, fresh) {
        panic!("{e}");
    }
}

/// `Err` naming the services that differ unless the two snapshots hold the same content.
fn differences(mirror: &Snapshot, fresh: &Snapshot) -> Result<(), String> {
    if mirror.catalog == fresh.catalog && mirror.invalid == fresh.invalid {
        return Ok(());
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
    Err(format!(
        "mirror (revision {}) differs from a fresh listing (revision {}): {diff:?}; datacenters equal: {}; invalid {:?} vs {:?}",
        mirror.revision,
        fresh.revision,
        mirror.catalog.datacenters == fresh.catalog.datacenters,
        mirror.invalid,
        fresh.invalid
    ))
}

/// Waits until the mirror reports that it lost the store (not synced, with an error).
async fn wait_out_of_sync(mirror: &Mirror) {
    eventually(LONG, async || {
        let s = mirror.status();
        anyhow::ensure!(!s.synced && s.last_error.is_some(), "still synced: {s:?}");
        Ok(())
    })
    .await
    .unwrap();
}
