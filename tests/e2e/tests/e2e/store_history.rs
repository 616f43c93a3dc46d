//! History test (issue 7, point 1): many clients put unique values and read linearizably on
//! 8 keys of a 3-node cluster while the `nemesis` kills -9 and SIGSTOPs leaders and
//! followers; `harness::history` then checks that every write applied once at its
//! acknowledged revision, no read was stale or went back in time, and acknowledged writes
//! survived. Short by default (CI); `PYXIS_HISTORY_SECS`, `PYXIS_HISTORY_CLIENTS`,
//! `PYXIS_HISTORY_MIN_ACKS` and `PYXIS_HISTORY_MIN_FAULTS` make the long run that
//! `bench/history.sh` drives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use harness::history::{self, Call, Op, PutOutcome, ReadOutcome, Recorder};
use harness::{Api, Cluster, eventually};
use pyxis_client::api::{ErrorCode, KeyValue, PutResponse};
use pyxis_client::{Client, ClientOptions};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::nemesis;

/// Keys the clients share: few, so puts and reads of one key overlap all the time.
const KEYS: usize = 8;

/// Longer than the server's own 3 s wait for a leader, so its 503 arrives before we give up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Generous deadline for reads and catch-up after healing, on a loaded 2-core machine.
const SETTLE: Duration = Duration::from_secs(120);

/// Run size: the CI defaults, or what the environment asks for.
#[derive(Debug)]
struct Settings {
    secs: u64,
    clients: usize,
    min_acks: usize,
    min_faults: usize,
}

impl Settings {
    fn from_env() -> Settings {
        let num = |name: &str, default: u64| -> u64 {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
                Err(_) => default,
            }
        };
        Settings {
            secs: num("PYXIS_HISTORY_SECS", 20),
            clients: num("PYXIS_HISTORY_CLIENTS", 8) as usize,
            min_acks: num("PYXIS_HISTORY_MIN_ACKS", 200) as usize,
            min_faults: num("PYXIS_HISTORY_MIN_FAULTS", 7) as usize,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_holds_under_kill_and_sigstop() {
    let settings = Settings::from_env();
    let seed: u64 = rand::random();
    eprintln!("history settings: {settings:?} seed={seed}");
    let mut c = Cluster::start(3).await.unwrap();
    let urls: Vec<String> = c.ids().iter().map(|id| c.url(*id)).collect();
    let keys: Vec<String> = (0..KEYS).map(|k| format!("/hist/k{k}")).collect();
    let rec = Recorder::new();

    // Every key exists before the workload, so a not-found read is always a violation.
    let api = Api::with_timeout(REQUEST_TIMEOUT);
    for key in &keys {
        let value = format!("init-{key}");
        let invoked = rec.now();
        let revision = api.put_ok(&urls[0], key, value.clone()).await.unwrap();
        let outcome = PutOutcome::Acked(revision);
        let call = Call::Put { value, outcome };
        rec.record(op("init", key, invoked, rec.now(), call));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..settings.clients {
        let conn = Conn::new(i, &urls);
        let worker = Worker {
            name: format!("c{i}"),
            conn,
            keys: keys.clone(),
            rec: rec.clone(),
            rng: StdRng::seed_from_u64(seed.wrapping_add(i as u64)),
        };
        tasks.push(tokio::spawn(worker.run(stop.clone())));
    }

    let run_for = Duration::from_secs(settings.secs);
    let faults = nemesis::run(&mut c, &rec, run_for, settings.min_faults, seed)
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let workload_secs = rec.now().as_secs_f64();
    let workload = rec.ops();

    // Final state, with every member up: one linearizable read per key, then every member
    // must hold the same data (nothing left diverged).
    c.heal().await.unwrap();
    for key in &keys {
        final_read(&api, &urls, key, &rec).await;
    }
    let finals = rec.ops().split_off(workload.len());
    eventually(SETTLE, async || {
        let mut views = Vec::new();
        for url in &urls {
            let r = api.range_serializable_ok(url, "/hist/").await?;
            let entries: Vec<(String, String, u64)> = r.entries.iter().map(kv_triple).collect();
            views.push(entries);
        }
        anyhow::ensure!(
            views.windows(2).all(|w| w[0] == w[1]),
            "members differ: {views:?}"
        );
        Ok(())
    })
    .await
    .unwrap();

    let report = history::check(&workload, &finals);
    eprintln!("history faults:\n  {}", faults.log.join("\n  "));
    eprintln!(
        "history summary: secs={workload_secs:.1} clients={} acked_writes={} faults={} violations={} {}",
        settings.clients,
        report.stats.acked,
        faults.count,
        report.violations.len(),
        report.stats
    );
    // The fault log is on stderr just above, to match violation times against faults.
    assert!(report.violations.is_empty(), "{}", report.summary(10));
    assert!(
        report.stats.acked >= settings.min_acks,
        "only {} acknowledged writes (want >= {}): the run proves little",
        report.stats.acked,
        settings.min_acks
    );
    assert!(
        faults.count >= settings.min_faults,
        "only {} faults injected (want >= {})",
        faults.count,
        settings.min_faults
    );
}

fn op(client: &str, key: &str, invoked: Duration, completed: Duration, call: Call) -> Op {
    Op {
        id: 0,
        client: client.to_owned(),
        key: key.to_owned(),
        invoked,
        completed,
        call,
    }
}

fn kv_triple(kv: &KeyValue) -> (String, String, u64) {
    let value = String::from_utf8_lossy(&kv.value).into_owned();
    (kv.key.clone(), value, kv.mod_rev)
}

/// Reads `key` linearizably from any member until one answers, and records that read.
async fn final_read(api: &Api, urls: &[String], key: &str, rec: &Recorder) {
    let mut turn = 0;
    eventually(SETTLE, async || {
        let url = &urls[turn % urls.len()];
        turn += 1;
        let invoked = rec.now();
        let outcome = raw_read(api, url, key).await;
        if let ReadOutcome::Failed(e) = &outcome {
            anyhow::bail!("final read of {key} via {url}: {e}");
        }
        rec.record(op("final", key, invoked, rec.now(), Call::Read(outcome)));
        Ok(())
    })
    .await
    .unwrap();
}

/// How one client reaches the cluster.
enum Conn {
    /// `pyxis_client::Client` over every member, with its own rotation and retries, as an
    /// application would use it.
    Client(Client),
    /// One plain HTTP request per operation to one member (followers forward writes);
    /// moves on to the next member after a failure.
    Raw {
        api: Api,
        urls: Vec<String>,
        at: usize,
    },
}

impl Conn {
    /// Even clients use `pyxis_client`, odd ones raw HTTP; each starts at another member.
    fn new(i: usize, urls: &[String]) -> Conn {
        let mut urls = urls.to_vec();
        let n = urls.len();
        urls.rotate_left(i % n);
        if i.is_multiple_of(2) {
            let options = ClientOptions::default()
                .request_timeout(REQUEST_TIMEOUT)
                .retry_budget(Duration::from_secs(8));
            Conn::Client(Client::with_options(urls, options).unwrap())
        } else {
            let api = Api::with_timeout(REQUEST_TIMEOUT);
            Conn::Raw { api, urls, at: 0 }
        }
    }

    /// Which member the next request goes to, for reports.
    fn via(&self) -> String {
        match self {
            Conn::Client(_) => "client".into(),
            Conn::Raw { urls, at, .. } => urls[*at].clone(),
        }
    }

    /// Moves a raw client on after a failure.
    fn failed(&mut self) {
        if let Conn::Raw { urls, at, .. } = self {
            *at = (*at + 1) % urls.len();
        }
    }

    async fn put(&self, key: &str, value: &str) -> PutOutcome {
        match self {
            Conn::Client(client) => match client.put(key, value.to_owned()).await {
                Ok(r) => PutOutcome::Acked(r.revision),
                Err(e) => client_put_error(&e),
            },
            Conn::Raw { api, urls, at } => raw_put(api, &urls[*at], key, value).await,
        }
    }

    async fn read(&self, key: &str) -> ReadOutcome {
        match self {
            Conn::Client(client) => match client.get(key).await {
                Ok(Some(g)) => ReadOutcome::Value {
                    value: String::from_utf8_lossy(&g.value).into_owned(),
                    mod_rev: g.mod_rev,
                    revision: g.revision,
                },
                Ok(None) => ReadOutcome::Missing,
                Err(e) => ReadOutcome::Failed(e.to_string()),
            },
            Conn::Raw { api, urls, at } => raw_read(api, &urls[*at], key).await,
        }
    }
}

/// One client of the workload: half puts of fresh values, half reads, on random keys.
struct Worker {
    name: String,
    conn: Conn,
    keys: Vec<String>,
    rec: Recorder,
    rng: StdRng,
}

impl Worker {
    async fn run(mut self, stop: Arc<AtomicBool>) {
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let key = self.keys[self.rng.random_range(0..self.keys.len())].clone();
            let client = format!("{} via {}", self.name, self.conn.via());
            let invoked = self.rec.now();
            let (call, ok) = if self.rng.random_bool(0.5) {
                let value = format!("{}-{seq}", self.name);
                seq += 1;
                let outcome = self.conn.put(&key, &value).await;
                let ok = matches!(outcome, PutOutcome::Acked(_));
                (Call::Put { value, outcome }, ok)
            } else {
                let outcome = self.conn.read(&key).await;
                let ok = !matches!(outcome, ReadOutcome::Failed(_));
                (Call::Read(outcome), ok)
            };
            self.rec
                .record(op(&client, &key, invoked, self.rec.now(), call));
            if !ok {
                self.conn.failed();
                // A refused connection must not become a busy loop.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Classifies a failed `pyxis_client` put: only refusals that promise nothing was applied
/// (503 `no_leader`/`unavailable`, which the client already retried, or a 4xx) are failures.
fn client_put_error(e: &pyxis_client::Error) -> PutOutcome {
    let text = e.to_string();
    match e {
        pyxis_client::Error::Api {
            status: 503,
            code: ErrorCode::NoLeader | ErrorCode::Unavailable,
            message,
        } if !message.contains("unknown_outcome") => PutOutcome::Failed(text),
        pyxis_client::Error::Api { status, .. } if (400..500).contains(status) => {
            PutOutcome::Failed(text)
        }
        pyxis_client::Error::InvalidArgument(_) => PutOutcome::Failed(text),
        _ => PutOutcome::Unknown(text),
    }
}

/// One raw `PUT`: a connect error or a 503 `no_leader`/`unavailable` means not applied; a
/// timeout, a reset, a 5xx or any other 503 (such as `unknown_outcome`) leaves it unknown.
async fn raw_put(api: &Api, url: &str, key: &str, value: &str) -> PutOutcome {
    let reply = match api.put(url, key, value.to_owned()).await {
        Ok(r) => r,
        Err(e) if is_connect_error(&e) => return PutOutcome::Failed(format!("{e:#}")),
        Err(e) => return PutOutcome::Unknown(format!("{e:#}")),
    };
    if reply.is_success() {
        return match reply.json::<PutResponse>() {
            Ok(r) => PutOutcome::Acked(r.revision),
            Err(e) => PutOutcome::Unknown(format!("{e:#}")),
        };
    }
    let code = serde_json::from_slice::<serde_json::Value>(&reply.body)
        .ok()
        .and_then(|v| Some(v.get("error")?.as_str()?.to_owned()))
        .unwrap_or_default();
    let text = format!("HTTP {} {}", reply.status, reply.text());
    match (reply.status, code.as_str()) {
        (503, "no_leader" | "unavailable") | (400..=499, _) => PutOutcome::Failed(text),
        _ => PutOutcome::Unknown(text),
    }
}

/// One raw linearizable `GET`.
async fn raw_read(api: &Api, url: &str, key: &str) -> ReadOutcome {
    let reply = match api.get(url, key).await {
        Ok(r) => r,
        Err(e) => return ReadOutcome::Failed(format!("{e:#}")),
    };
    match (reply.status, reply.mod_revision(), reply.revision()) {
        (200, Some(mod_rev), Some(revision)) => ReadOutcome::Value {
            value: reply.text(),
            mod_rev,
            revision,
        },
        (404, _, _) => ReadOutcome::Missing,
        _ => ReadOutcome::Failed(format!("HTTP {} {}", reply.status, reply.text())),
    }
}

/// Whether the request failed before a connection existed, so it was never received.
fn is_connect_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<reqwest::Error>()
            .is_some_and(|r| r.is_connect())
    })
}
